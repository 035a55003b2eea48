//! The Bot page and its API: the bot's intents as recorded versions. Admins read what the bot
//! understands and answers, edit the intents text and save it ("Save and retrain"), download or
//! restore any version, and teach customer messages from the Reports page's "Needs teaching"
//! list as examples of an intent (or of a new one). Each change is checked as the bot would
//! load it, recorded as the next version, and trained in the background on every node; the
//! versions list shows how each classified the labelled messages before and after.

use super::json_body;
use super::auth::{ApiCaller, Signed, SignedAdmin};
use super::{error_page, page};
use crate::AppState;
use crate::error::ApiError;
use crate::limits;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use switchboard_core::IntentsEdit;
use switchboard_core::ports::{BotIntents, IntentOutline, IntentsOutline, IntentsVersion};
use switchboard_models::{Agent, Category, DETECTED_LANGUAGES, Role};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/bot", get(bot_page).post(save_page))
        .route("/panel/bot/teach", post(teach_page))
        .route("/panel/bot/versions/{number}/restore", post(restore_page))
        .route("/panel/bot/versions/{number}/intents.toml", get(download))
        .route("/api/intents", get(intents_api).post(save_api))
        .route("/api/intents/teach", post(teach_api))
        .route("/api/intents/versions/{number}", get(version_api))
        .route("/api/intents/versions/{number}/restore", post(restore_api))
        .route("/panel/bot/intent", get(intent_page).post(save_intent_page))
        .route("/api/intents/intent", post(save_intent_api))
        .route("/panel/bot/escalate-words", post(escalate_words_page))
        .route("/api/intents/escalate-words", post(escalate_words_api))
}

/// The longest list of words, as typed.
const WORDS_CHARS: usize = 16 * 1024;

#[derive(Deserialize)]
struct WordsForm {
    csrf: String,
    after: String,
    /// One word or phrase per line.
    #[serde(default)]
    words: String,
}

async fn escalate_words_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(form): Form<WordsForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let result = match (limits::check(&[("words", &form.words, WORDS_CHARS)]), form_version(&form.after)) {
        (Err(error), _) | (_, Err(error)) => Err(error),
        (Ok(()), Ok(after)) => {
            let words = form.words.lines().map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect();
            save(&state, &signed.agent, IntentsEdit::EscalateWords { after, words }).await
        }
    };
    match result {
        Ok(version) => Ok(Redirect::to(&format!("/panel/bot?saved={}", version.number)).into_response()),
        Err(error) => Ok(error_page(&state, error, "/panel/bot")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WordsBody {
    after: i64,
    words: Vec<String>,
}

async fn escalate_words_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, body: Result<Json<WordsBody>, axum::extract::rejection::JsonRejection>) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let typed: usize = body.words.iter().map(|w| w.chars().count() + 1).sum();
    if typed > WORDS_CHARS {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_long", format!("`words` has {typed} characters; the limit is {WORDS_CHARS}. Shorten it.")));
    }
    let version = save(&state, &agent, IntentsEdit::EscalateWords { after: body.after, words: body.words }).await?;
    Ok(saved(&version))
}

/// The longest answer and examples taken in the intent editor.
const ANSWER_CHARS: usize = 4000;
const EXAMPLES_CHARS: usize = 64 * 1024;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct IntentQuery {
    /// The intent to edit; none: a new intent.
    name: String,
}

/// One intent's editor: its category, examples (one per line), answer with a preview,
/// always-escalate and enabled.
async fn intent_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, query: Result<Query<IntentQuery>, axum::extract::rejection::QueryRejection>) -> Result<Response, ApiError> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "The intent editor takes name."));
    };
    let bot = model_of(&state)?;
    let (latest, _, outline) = newest(&state, bot.as_ref()).await?;
    let intent = match query.name.trim() {
        "" => IntentOutline {
            name: String::new(),
            category: Category::GeneralInquiry,
            examples: Vec::new(),
            answer: None,
            answers: BTreeMap::new(),
            always_escalate: false,
            enabled: true,
        },
        name => outline.intents.into_iter().find(|i| i.name == name).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no intent `{}`.", limits::shown(name, 64))))?,
    };
    let known = !query.name.trim().is_empty();
    let translations: Vec<(String, String)> = intent.answers.clone().into_iter().collect();
    render_intent(&state, &signed, latest.number, &intent, &translations, known, None, None, StatusCode::OK)
}

/// Language names for the translation rows' choices.
const LANGUAGE_NAMES: &[(&str, &str)] = &[
    ("ar", "Arabic"), ("cs", "Czech"), ("da", "Danish"), ("de", "German"), ("el", "Greek"), ("en", "English"), ("es", "Spanish"),
    ("fi", "Finnish"), ("fr", "French"), ("he", "Hebrew"), ("hi", "Hindi"), ("hu", "Hungarian"), ("id", "Indonesian"), ("it", "Italian"),
    ("ja", "Japanese"), ("ko", "Korean"), ("nl", "Dutch"), ("pl", "Polish"), ("pt", "Portuguese"), ("ro", "Romanian"), ("ru", "Russian"),
    ("sv", "Swedish"), ("th", "Thai"), ("tr", "Turkish"), ("uk", "Ukrainian"), ("vi", "Vietnamese"), ("zh", "Chinese"),
];

/// The answer's translations as rows of the form (`translation_language_N`,
/// `translation_text_N`): the rows given, then one empty row to add another; with their
/// previews when `previewing`.
fn translation_rows(translations: &[(String, String)], previewing: bool) -> Vec<Value> {
    translations
        .iter()
        .map(|(language, text)| (language.as_str(), text.as_str()))
        .chain(std::iter::once(("", "")))
        .enumerate()
        .map(|(index, (language, text))| {
            let choices: Vec<Value> = LANGUAGE_NAMES
                .iter()
                .map(|(code, name)| json!({"value": code, "label": format!("{name} ({code})"), "selected": *code == language}))
                .collect();
            let preview = (previewing && !text.trim().is_empty()).then(|| preview_answer(text));
            json!({
                "index": index, "number": index + 1, "text": text, "choices": choices,
                "preview": preview.as_ref().and_then(|p| p.as_ref().ok()),
                "preview_error": preview.as_ref().and_then(|p| p.as_ref().err()),
            })
        })
        .collect()
}

/// The translation rows of a posted intent form (`translation_language_N`,
/// `translation_text_N`) in row order, as typed; rows with neither are left out.
fn posted_translations(fields: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut indexes: Vec<usize> = fields.keys().filter_map(|k| k.strip_prefix("translation_text_")?.parse().ok()).collect();
    indexes.sort_unstable();
    let field = |name: String| fields.get(&name).map_or(String::new(), |v| v.trim().to_string());
    indexes
        .into_iter()
        .map(|i| (field(format!("translation_language_{i}")), field(format!("translation_text_{i}"))))
        .filter(|(language, text)| !language.is_empty() || !text.is_empty())
        .collect()
}

/// The answers by language from posted rows: a text needs its language, and a language is
/// given once; a language without a text is skipped (that removes its translation).
fn translations_from(rows: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut answers = BTreeMap::new();
    for (language, text) in rows.iter().filter(|(_, text)| !text.is_empty()) {
        let shown: String = text.chars().take(40).collect();
        if language.is_empty() {
            return Err(format!("The translation \"{shown}\" has no language: choose one, or empty its text."));
        }
        if !DETECTED_LANGUAGES.contains(&language.as_str()) {
            return Err(format!("`{}` is not a language the bot tells apart; choose one from the list.", limits::shown(language, 8)));
        }
        if text.chars().count() > ANSWER_CHARS {
            return Err(format!("The {language} translation is longer than {ANSWER_CHARS} characters; shorten it."));
        }
        if answers.insert(language.clone(), text.clone()).is_some() {
            return Err(format!("Two translations are in {language}: keep one."));
        }
    }
    Ok(answers)
}

#[allow(clippy::too_many_arguments)]
fn render_intent(
    state: &AppState,
    signed: &Signed,
    after: i64,
    intent: &IntentOutline,
    translations: &[(String, String)],
    known: bool,
    preview: Option<Result<String, String>>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let title = if known { format!("Intent {}", intent.name) } else { "A new intent".to_string() };
    let data = json!({
        "after": after,
        "known": known,
        "intent": {
            "name": intent.name,
            "examples": intent.examples.join("\n"),
            "answer": intent.answer.clone().unwrap_or_default(),
            "always_escalate": intent.always_escalate,
            "enabled": intent.enabled,
        },
        "translations": translation_rows(translations, preview.is_some()),
        "showing_previews": preview.is_some(),
        "categories": Category::ALL.iter().map(|c| json!({"value": c.as_str(), "label": super::views::title_case(&c.as_str().replace('_', " ")), "selected": *c == intent.category})).collect::<Vec<_>>(),
        "preview": preview.as_ref().and_then(|p| p.as_ref().ok()),
        "preview_error": preview.as_ref().and_then(|p| p.as_ref().err()),
        "error": error,
        "limits": {"answer": ANSWER_CHARS, "examples": EXAMPLES_CHARS},
    });
    Ok((status, state.views.render("intent", &page(signed, "bot", &title, data))?).into_response())
}

/// The answer as a customer would read it, with stand-ins for what is filled in at reply time.
fn preview_answer(answer: &str) -> Result<String, String> {
    let mut templates = handlebars::Handlebars::new();
    templates.register_escape_fn(handlebars::no_escape);
    let fields = json!({
        "message": "(the customer's message)",
        "business_hours": "(your business hours)",
        "next_open": "(when you open next)",
        "customer": {"name": "(the customer's name)"},
        "channel": "(their channel)",
    });
    templates.render_template(answer, &fields).map_err(|e| format!("the answer is not a valid template: {e}"))
}

#[derive(Deserialize)]
struct IntentForm {
    csrf: String,
    after: String,
    name: String,
    #[serde(default)]
    known: String,
    category: String,
    #[serde(default)]
    examples: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    always_escalate: String,
    #[serde(default)]
    enabled: String,
    /// `preview` shows the answer without saving.
    #[serde(default, rename = "do")]
    action: String,
    /// The translation rows (`translation_language_N`, `translation_text_N`).
    #[serde(flatten)]
    rows: HashMap<String, String>,
}

async fn save_intent_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(form): Form<IntentForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    limits::check(&[("answer", &form.answer, ANSWER_CHARS), ("examples", &form.examples, EXAMPLES_CHARS), ("name", &form.name, 64)])?;
    let after = form_version(&form.after)?;
    let category: Category = form.category.parse().map_err(|e: switchboard_models::UnknownVariant| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let typed = posted_translations(&form.rows);
    let translated = translations_from(&typed);
    let intent = IntentOutline {
        name: form.name.trim().to_string(),
        category,
        examples: form.examples.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        answer: Some(form.answer.trim().to_string()).filter(|a| !a.is_empty()),
        answers: translated.clone().unwrap_or_default(),
        always_escalate: form.always_escalate == "true",
        enabled: form.enabled == "true",
    };
    let known = form.known == "true";
    if form.action == "preview" {
        let preview = intent.answer.as_deref().map(preview_answer);
        return render_intent(&state, &signed, after, &intent, &typed, known, preview, translated.err(), StatusCode::OK);
    }
    if let Err(reason) = translated {
        return render_intent(&state, &signed, after, &intent, &typed, known, None, Some(reason), StatusCode::UNPROCESSABLE_ENTITY);
    }
    match save_intent(&state, &signed.agent, after, intent.clone()).await {
        Ok(version) => Ok(Redirect::to(&format!("/panel/bot?saved={}", version.number)).into_response()),
        Err(error) if matches!(error.status, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT) => {
            render_intent(&state, &signed, after, &intent, &typed, known, None, Some(error.message), error.status)
        }
        Err(error) => Err(error),
    }
}

async fn save_intent(state: &AppState, agent: &Agent, after: i64, intent: IntentOutline) -> Result<IntentsVersion, ApiError> {
    if switchboard_models::IntentName::parse(&intent.name).is_err() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("`{}` is not an intent name: use 1-64 characters of a-z, 0-9 and _.", limits::shown(&intent.name, 64)),
        ));
    }
    save(state, agent, IntentsEdit::Intent { after, intent }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentBody {
    after: i64,
    name: String,
    category: Category,
    examples: Vec<String>,
    #[serde(default)]
    answer: Option<String>,
    /// The answer in other languages, by language code.
    #[serde(default)]
    answers: BTreeMap<String, String>,
    #[serde(default)]
    always_escalate: bool,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

async fn save_intent_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, body: Result<Json<IntentBody>, axum::extract::rejection::JsonRejection>) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    for (field, text) in body.answer.iter().map(|a| ("answer".to_string(), a)).chain(body.answers.iter().map(|(l, a)| (format!("answers.{l}"), a))) {
        let chars = text.chars().count();
        if chars > ANSWER_CHARS {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_long", format!("`{field}` has {chars} characters; the limit is {ANSWER_CHARS}. Shorten it.")));
        }
    }
    let intent = IntentOutline {
        name: body.name.trim().to_string(),
        category: body.category,
        examples: body.examples.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).map(String::from).collect(),
        answer: body.answer.map(|a| a.trim().to_string()).filter(|a| !a.is_empty()),
        answers: body.answers.into_iter().map(|(l, a)| (l, a.trim().to_string())).filter(|(_, a)| !a.is_empty()).collect(),
        always_escalate: body.always_escalate,
        enabled: body.enabled,
    };
    let version = save_intent(&state, &agent, body.after, intent).await?;
    Ok(saved(&version))
}

/// Versions listed on the page and in the API.
const VERSIONS_SHOWN: u32 = 50;

fn model_of(state: &AppState) -> Result<Arc<dyn BotIntents>, ApiError> {
    state.intents.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_model",
            "The keyword classifier is running (no NLP model loaded), so the bot has no intents to change. Install the model (nlp.model_dir) and restart.",
        )
    })
}

/// The version a form was filled in on (its hidden `after`).
fn form_version(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "The form's version is not a number; reload the page."))
}

fn admin_only(agent: &Agent) -> Result<(), ApiError> {
    match agent.role {
        Role::Admin => Ok(()),
        Role::Agent => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins read and change the bot's intents.")),
    }
}

fn number_of(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("`{text}` is not a version number.")))
}

/// The newest version, its text and what it defines.
async fn newest(state: &AppState, bot: &dyn BotIntents) -> Result<(IntentsVersion, String, IntentsOutline), ApiError> {
    let Some((version, text)) = state.engine.intent_versions().latest_intents().await? else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "The bot's intents are not recorded yet; try again in a minute."));
    };
    let outline = bot.outline(&text).map_err(|why| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_intents", format!("The newest version does not load: {why}")))?;
    Ok((version, text, outline))
}

/// The intent names in the newest version, for the teaching form.
pub(super) async fn intent_names(state: &AppState) -> Vec<String> {
    let Ok(bot) = model_of(state) else { return Vec::new() };
    match newest(state, bot.as_ref()).await {
        Ok((_, _, outline)) => outline.intents.into_iter().map(|i| i.name).collect(),
        Err(_) => Vec::new(),
    }
}

fn version_json(version: &IntentsVersion, names: &std::collections::HashMap<switchboard_models::AgentId, String>) -> Value {
    let percent = |share: f64| format!("{:.0} %", share * 100.0);
    json!({
        "number": version.number,
        "origin": version.origin.as_str(),
        "note": version.note,
        "author": version.author.map(|a| names.get(&a).cloned().unwrap_or_else(|| "a former account".into())),
        "created_at": version.created_at.to_rfc3339(),
        "created": version.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        "accuracy": version.accuracy.map(|a| json!({
            "labelled": a.labelled,
            "before": a.before,
            "after": a.after,
            "before_text": percent(a.before),
            "after_text": percent(a.after),
            "worse": a.after < a.before,
        })),
    })
}

async fn agent_names(state: &AppState) -> Result<std::collections::HashMap<switchboard_models::AgentId, String>, ApiError> {
    Ok(state.engine.accounts().list_agents().await?.into_iter().map(|a| (a.id, a.name)).collect())
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct BotQuery {
    /// Words in an intent's name, examples or answer.
    q: String,
    /// The version just saved.
    saved: Option<i64>,
}

async fn bot_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, query: Result<Query<BotQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error_page(&state, ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text()), "/panel/bot"),
    };
    let flash = query.saved.map(|n| json!({"kind": "ok", "text": format!("Version {n} saved. The bot is training it and answers with it in a few seconds.")}));
    match render_page(&state, &signed, &query.q, None, flash).await {
        Ok(response) => response,
        Err(error) => error_page(&state, error, "/panel/"),
    }
}

/// The page; `draft` keeps an admin's edit that was refused, shown with the reason.
async fn render_page(state: &AppState, signed: &Signed, search: &str, draft: Option<(&str, &str)>, flash: Option<Value>) -> Result<Response, ApiError> {
    let bot = model_of(state)?;
    let (latest, text, outline) = newest(state, bot.as_ref()).await?;
    let names = agent_names(state).await?;
    let versions = state.engine.intent_versions().intents_versions(VERSIONS_SHOWN).await?;
    let words = search.trim().to_lowercase();
    let matches = |i: &switchboard_core::ports::IntentOutline| {
        words.is_empty()
            || i.name.contains(&words)
            || i.examples.iter().any(|e| e.to_lowercase().contains(&words))
            || i.answer.as_deref().is_some_and(|a| a.to_lowercase().contains(&words))
            || i.answers.values().any(|a| a.to_lowercase().contains(&words))
    };
    let intents: Vec<Value> = outline
        .intents
        .iter()
        .filter(|i| matches(i))
        .map(|i| {
            json!({
                "name": i.name,
                "category": i.category.as_str(),
                "examples": i.examples,
                "example_count": i.examples.len(),
                "answer": i.answer,
                "answers": i.answers,
                "always_escalate": i.always_escalate,
                "enabled": i.enabled,
                "href": format!("/panel/bot/intent?name={}", i.name),
            })
        })
        .collect();
    let in_use = bot.in_use();
    let mut data = json!({
        "latest": latest.number,
        "in_use": in_use,
        "training": in_use != Some(latest.number),
        "intent_total": outline.intents.len(),
        "escalate_words": outline.escalate_words.join("\n"),
        "intents": intents,
        "search": search,
        "versions": versions.iter().map(|v| {
            let mut row = version_json(v, &names);
            row["newest"] = json!(v.number == latest.number);
            row
        }).collect::<Vec<_>>(),
        "text": draft.map_or(text.as_str(), |(text, _)| text),
        "draft_error": draft.map(|(_, why)| why),
        "limits": {"text": INTENTS_TEXT, "note": INTENTS_NOTE},
    });
    if let Some(flash) = flash {
        data["flash"] = flash;
    } else if let Some((_, why)) = draft {
        data["flash"] = json!({"kind": "error", "text": format!("Not saved: {why}")});
    }
    let status = if draft.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, state.views.render("bot", &page(signed, "bot", "Bot", data))?).into_response())
}

/// The longest intents text and version note taken.
const INTENTS_TEXT: usize = 512 * 1024;
const INTENTS_NOTE: usize = 200;

#[derive(Deserialize)]
struct SaveForm {
    csrf: String,
    after: String,
    text: String,
    #[serde(default)]
    note: String,
}

async fn save_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(form): Form<SaveForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let after = match form_version(&form.after) {
        Ok(after) => after,
        Err(error) => return Ok(error_page(&state, error, "/panel/bot")),
    };
    let result = save(&state, &signed.agent, IntentsEdit::Text { after, text: form.text.clone(), note: form.note }).await;
    match result {
        Ok(version) => Ok(Redirect::to(&format!("/panel/bot?saved={}", version.number)).into_response()),
        // The text did not load: the page again, with the admin's text and the reason.
        Err(error) if error.status == StatusCode::UNPROCESSABLE_ENTITY && form.text.chars().count() <= INTENTS_TEXT => {
            render_page(&state, &signed, "", Some((&form.text, &error.message)), None).await
        }
        Err(error) => Ok(error_page(&state, error, "/panel/bot")),
    }
}

async fn save(state: &AppState, agent: &Agent, edit: IntentsEdit) -> Result<IntentsVersion, ApiError> {
    admin_only(agent)?;
    if let IntentsEdit::Text { text, note, .. } = &edit {
        limits::check(&[("text", text, INTENTS_TEXT), ("note", note, INTENTS_NOTE)])?;
    }
    let bot = model_of(state)?;
    Ok(state.engine.edit_intents(bot.as_ref(), edit, agent).await?)
}

/// The teaching form: the messages (`seq`, repeated), the intent to teach them as, or a new
/// intent's name and category.
fn teach_edit(fields: &[(String, String)]) -> Result<IntentsEdit, ApiError> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or("");
    let invalid = |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why);
    let seqs = fields
        .iter()
        .filter(|(k, _)| k == "seq")
        .map(|(_, v)| v.parse::<i64>().map_err(|_| invalid(format!("`{v}` is not a message number."))))
        .collect::<Result<Vec<_>, _>>()?;
    let (intent, category) = match (field("intent"), field("new_intent")) {
        ("", "") => return Err(invalid("Choose the intent to teach the messages as, or name a new intent.".into())),
        ("", name) => {
            let category: Category = field("category").parse().map_err(|e: switchboard_models::UnknownVariant| invalid(format!("A new intent needs a category: {e}")))?;
            (name.to_string(), Some(category))
        }
        (name, _) => (name.to_string(), None),
    };
    if switchboard_models::IntentName::parse(&intent).is_err() {
        return Err(invalid(format!("`{}` is not an intent name: use 1-64 characters of a-z, 0-9 and _.", limits::shown(&intent, 64))));
    }
    Ok(IntentsEdit::Teach { seqs, intent, category })
}

async fn teach_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
    signed.check_csrf(csrf)?;
    // Back to the report the messages were chosen on (a panel path only).
    let back = fields
        .iter()
        .find(|(k, _)| k == "back")
        .map(|(_, v)| v.as_str())
        .filter(|v| v.starts_with("/panel/reports") && !v.contains("//"))
        .unwrap_or("/panel/reports");
    let result = match teach_edit(&fields) {
        Ok(edit) => save(&state, &signed.agent, edit).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(version) => {
            let joiner = if back.contains('?') { '&' } else { '?' };
            Ok(Redirect::to(&format!("{back}{joiner}taught={}#r-teaching", version.number)).into_response())
        }
        Err(error) => Ok(error_page(&state, error, back)),
    }
}

async fn restore_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(number): Path<String>, Form(form): Form<super::CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let result = match number_of(&number) {
        Ok(number) => save(&state, &signed.agent, IntentsEdit::Restore { number }).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(version) => Ok(Redirect::to(&format!("/panel/bot?saved={}", version.number)).into_response()),
        Err(error) => Ok(error_page(&state, error, "/panel/bot")),
    }
}

/// A version as an intents file, to keep in git or edit elsewhere.
async fn download(State(state): State<AppState>, SignedAdmin(_): SignedAdmin, Path(number): Path<String>) -> Result<Response, ApiError> {
    let number = number_of(&number)?;
    let (_, text) = state.engine.intent_versions().intents_text(number).await?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no version {number}.")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/toml; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"intents-v{number}.toml\"")),
        ],
        text,
    )
        .into_response())
}

async fn intents_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller) -> Result<Json<Value>, ApiError> {
    admin_only(&agent)?;
    let bot = model_of(&state)?;
    let (latest, _, outline) = newest(&state, bot.as_ref()).await?;
    let names = agent_names(&state).await?;
    let versions = state.engine.intent_versions().intents_versions(VERSIONS_SHOWN).await?;
    Ok(Json(json!({
        "version": latest.number,
        "in_use": bot.in_use(),
        "escalate_words": outline.escalate_words,
        "intents": outline.intents.iter().map(|i| json!({
            "name": i.name,
            "category": i.category.as_str(),
            "examples": i.examples,
            "answer": i.answer,
            "answers": i.answers,
            "always_escalate": i.always_escalate,
            "enabled": i.enabled,
        })).collect::<Vec<_>>(),
        "versions": versions.iter().map(|v| version_json(v, &names)).collect::<Vec<_>>(),
    })))
}

async fn version_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(number): Path<String>) -> Result<Json<Value>, ApiError> {
    admin_only(&agent)?;
    let number = number_of(&number)?;
    let (version, text) = state.engine.intent_versions().intents_text(number).await?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no version {number}.")))?;
    let names = agent_names(&state).await?;
    let mut body = version_json(&version, &names);
    body["text"] = json!(text);
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    /// The version the text was edited from.
    after: i64,
    text: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeachBody {
    /// Customer messages by `seq` (as the reports list them).
    messages: Vec<i64>,
    intent: String,
    /// Only for a new intent.
    #[serde(default)]
    category: Option<Category>,
}


fn saved(version: &IntentsVersion) -> Json<Value> {
    Json(json!({"version": version.number, "note": version.note, "training": true}))
}

async fn save_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, body: Result<Json<SaveBody>, axum::extract::rejection::JsonRejection>) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let version = save(&state, &agent, IntentsEdit::Text { after: body.after, text: body.text, note: body.note }).await?;
    Ok(saved(&version))
}

async fn teach_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, body: Result<Json<TeachBody>, axum::extract::rejection::JsonRejection>) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    if switchboard_models::IntentName::parse(&body.intent).is_err() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("`{}` is not an intent name: use 1-64 characters of a-z, 0-9 and _.", limits::shown(&body.intent, 64))));
    }
    let version = save(&state, &agent, IntentsEdit::Teach { seqs: body.messages, intent: body.intent, category: body.category }).await?;
    Ok(saved(&version))
}

async fn restore_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(number): Path<String>) -> Result<Json<Value>, ApiError> {
    let version = save(&state, &agent, IntentsEdit::Restore { number: number_of(&number)? }).await?;
    Ok(saved(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_the_bot_tells_apart_has_a_name_to_choose() {
        let named: Vec<&str> = LANGUAGE_NAMES.iter().map(|(code, _)| *code).collect();
        assert_eq!(named, DETECTED_LANGUAGES);
    }

    #[test]
    fn posted_translation_rows_become_answers_or_say_what_is_wrong() {
        let form = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let rows = posted_translations(&form(&[
            ("translation_language_1", "es"), ("translation_text_1", " Hola "),
            ("translation_language_0", "de"), ("translation_text_0", "Hallo"),
            ("translation_language_2", ""), ("translation_text_2", ""),
            ("translation_language_3", "fr"), ("translation_text_3", ""),
        ]));
        assert_eq!(rows, [("de".to_string(), "Hallo".to_string()), ("es".into(), "Hola".into()), ("fr".into(), String::new())], "in row order, trimmed");
        assert_eq!(translations_from(&rows).unwrap(), BTreeMap::from([("de".to_string(), "Hallo".to_string()), ("es".into(), "Hola".into())]));
        let unnamed = [(String::new(), "Bonjour".to_string())];
        assert!(translations_from(&unnamed).unwrap_err().contains("\"Bonjour\" has no language"));
        let twice = [("de".to_string(), "Hallo".to_string()), ("de".into(), "Guten Tag".into())];
        assert!(translations_from(&twice).unwrap_err().contains("Two translations are in de"));
        assert!(translations_from(&[("xx".to_string(), "?".to_string())]).unwrap_err().contains("not a language"));
    }
}
