//! The Settings page and `/api/settings` (admins): thresholds, the bot's texts, priority rules
//! and limits, stored in the database over the config file, audited, and in force without a
//! restart (`Engine::change_settings`).

use super::auth::{ApiCaller, Signed, SignedAdmin};
use super::page;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchboard_core::EngineError;
use switchboard_core::ports::{SettingKind, SettingSource, SettingView, WIDGET_SETTINGS};
use switchboard_models::Role;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/admin/settings", get(settings_page).post(save_settings))
        .route("/panel/admin/widget", get(widget_page).post(save_widget))
        .route("/api/settings", get(list_settings).post(change_settings))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SettingsQuery {
    done: String,
}

/// The Settings page, or the Widget page: the same settings form over different groups.
#[derive(Clone, Copy, PartialEq)]
enum SettingsForm {
    Settings,
    Widget,
}

impl SettingsForm {
    fn shows(self, group: &str) -> bool {
        (group == WIDGET_SETTINGS) == (self == SettingsForm::Widget)
    }

    fn path(self) -> &'static str {
        match self {
            SettingsForm::Settings => "/panel/admin/settings",
            SettingsForm::Widget => "/panel/admin/widget",
        }
    }

    /// (template, navigation key, title)
    fn page(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SettingsForm::Settings => ("settings", "settings", "Settings"),
            SettingsForm::Widget => ("widget", "widget", "Widget"),
        }
    }
}

async fn settings_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Query(query): Query<SettingsQuery>) -> Result<Html<String>, ApiError> {
    show(&state, &signed, SettingsForm::Settings, &query).await
}

async fn widget_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Query(query): Query<SettingsQuery>) -> Result<Html<String>, ApiError> {
    show(&state, &signed, SettingsForm::Widget, &query).await
}

async fn show(state: &AppState, signed: &Signed, form: SettingsForm, query: &SettingsQuery) -> Result<Html<String>, ApiError> {
    let views = state.engine.settings(state.settings.as_ref()).await?;
    let mut data = page_data(state, &views, &BTreeMap::new(), None, form).await?;
    if !query.done.is_empty() {
        data["flash"] = json!({"kind": "ok", "text": "Settings saved and in force."});
    }
    let (template, key, title) = form.page();
    state.views.render(template, &page(signed, key, title, data))
}

/// Who changed a setting, by name.
async fn names(state: &AppState) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(state.engine.accounts().list_agents().await?.into_iter().map(|a| (a.id.to_string(), a.name)).collect())
}

fn source_text(source: &SettingSource, names: &BTreeMap<String, String>) -> String {
    match source {
        SettingSource::Default => "Default.".into(),
        SettingSource::File => "From the config file.".into(),
        SettingSource::Panel { by, at } => {
            let who = by.and_then(|by| names.get(&by.to_string()).cloned()).unwrap_or_else(|| "an admin".into());
            format!("Set here by {who} on {}.", at.format("%Y-%m-%d %H:%M UTC"))
        }
        SettingSource::Environment { variable } => format!("Set by the environment variable {variable}; change it there."),
    }
}

/// The page's groups of settings; `typed` keeps what the admin typed after a refused save.
async fn page_data(state: &AppState, views: &[SettingView], typed: &BTreeMap<String, String>, error: Option<(String, String)>, form: SettingsForm) -> Result<Value, ApiError> {
    let names = names(state).await?;
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for view in views.iter().filter(|view| form.shows(view.group)) {
        let value = typed.get(&view.key).cloned().unwrap_or_else(|| view.value.clone());
        let multiline = matches!(view.kind, SettingKind::Text | SettingKind::List | SettingKind::Rules);
        let rows = match view.kind {
            SettingKind::Rules => 8,
            SettingKind::List => 3,
            _ => 2,
        };
        let row = json!({
            "key": view.key,
            "id": view.key.replace('.', "-").replace('_', "-"),
            "label": view.label,
            "help": view.help,
            "value": value,
            "multiline": multiline,
            "code": view.kind == SettingKind::Rules,
            "rows": rows,
            "source": source_text(&view.source, &names),
            "locked": matches!(view.source, SettingSource::Environment { .. }),
            "resettable": matches!(view.source, SettingSource::Panel { .. }),
            "invalid": error.as_ref().is_some_and(|(key, _)| *key == view.key),
        });
        match groups.iter_mut().find(|(name, _)| name == view.group) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((view.group.to_string(), vec![row])),
        }
    }
    let value_of = |key: &str| typed.get(key).cloned().or_else(|| views.iter().find(|v| v.key == key).map(|v| v.value.clone())).unwrap_or_default();
    Ok(json!({
        "action": form.path(),
        "preview": {"title": value_of("webchat.title"), "welcome_message": value_of("webchat.welcome_message")},
        "embed": embed_snippet(state),
        "groups": groups.into_iter().map(|(name, settings)| json!({"name": name, "settings": settings})).collect::<Vec<_>>(),
        "error": error.map(|(key, problem)| {
            let label = views.iter().find(|v| v.key == key).map_or(key.clone(), |v| v.label.to_string());
            format!("Not saved. {label} ({key}): {problem}")
        }),
    }))
}

/// The change a settings form asks for: `value:<key>` fields, `reset:<key>` boxes.
fn form_changes(fields: &[(String, String)]) -> (Vec<(String, Option<String>)>, BTreeMap<String, String>) {
    let resets: Vec<&str> = fields.iter().filter_map(|(name, _)| name.strip_prefix("reset:")).collect();
    let mut typed = BTreeMap::new();
    let mut changes: Vec<(String, Option<String>)> = resets.iter().map(|key| (key.to_string(), None)).collect();
    for (name, value) in fields {
        if let Some(key) = name.strip_prefix("value:") {
            typed.insert(key.to_string(), value.replace("\r\n", "\n"));
            if !resets.contains(&key) {
                changes.push((key.to_string(), Some(value.replace("\r\n", "\n"))));
            }
        }
    }
    (changes, typed)
}

/// How a site embeds the widget: one script tag from this server (its `server.public_url`
/// when set); the look then comes from the Widget page.
fn embed_snippet(state: &AppState) -> String {
    let base = state.public_url.as_deref().unwrap_or("https://support.example.com").trim_end_matches('/');
    format!("<script src=\"{base}/widget.js\" async></script>")
}

async fn save_settings(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    save(&state, &signed, SettingsForm::Settings, &fields).await
}

async fn save_widget(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    save(&state, &signed, SettingsForm::Widget, &fields).await
}

async fn save(state: &AppState, signed: &Signed, form: SettingsForm, fields: &[(String, String)]) -> Result<Response, ApiError> {
    let csrf = fields.iter().find(|(name, _)| name == "csrf").map(|(_, value)| value.as_str()).unwrap_or_default();
    signed.check_csrf(csrf)?;
    let (changes, typed) = form_changes(fields);
    match state.engine.change_settings(state.settings.as_ref(), &changes, &signed.agent).await {
        Ok(()) => Ok(Redirect::to(&format!("{}?done=1", form.path())).into_response()),
        Err(EngineError::Invalid(problem)) => refused(state, signed, &typed, problem, form).await,
        Err(error) => Err(error.into()),
    }
}

/// The page again with what the admin typed and why it was refused.
async fn refused(state: &AppState, signed: &Signed, typed: &BTreeMap<String, String>, problem: String, form: SettingsForm) -> Result<Response, ApiError> {
    let views = state.engine.settings(state.settings.as_ref()).await?;
    let (key, problem) = problem.split_once(": ").map_or((String::new(), problem.clone()), |(k, p)| (k.to_string(), p.to_string()));
    let data = page_data(state, &views, typed, Some((key, problem)), form).await?;
    let (template, key, title) = form.page();
    let html = state.views.render(template, &page(signed, key, title, data))?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

fn admin_only(caller: &ApiCaller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Admin => Ok(()),
        Role::Agent => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins read and change settings.".to_string())),
    }
}

async fn settings_json(state: &AppState) -> Result<Json<Value>, ApiError> {
    let views = state.engine.settings(state.settings.as_ref()).await?;
    Ok(Json(json!({"settings": views})))
}

/// Every setting with its value and where it comes from.
async fn list_settings(State(state): State<AppState>, caller: ApiCaller) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    settings_json(&state).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// Key → the value as typed in the panel, or `null` to use the config file's again.
    settings: BTreeMap<String, Option<String>>,
}

/// Changes settings, all or none: `{"settings": {"bot.low_confidence_threshold": "0.4"}}`.
async fn change_settings(State(state): State<AppState>, caller: ApiCaller, body: Result<Json<ChangeBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let Json(body) = body.map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", rejection.body_text()))?;
    let changes: Vec<(String, Option<String>)> = body.settings.into_iter().collect();
    state.engine.change_settings(state.settings.as_ref(), &changes, &caller.0).await?;
    settings_json(&state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_box_wins_over_its_field_and_line_ends_are_the_browsers() {
        let fields = [("csrf", "x"), ("value:bot.a", "one\r\ntwo"), ("value:bot.b", "2"), ("reset:bot.b", "1")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let (changes, typed) = form_changes(&fields);
        assert_eq!(changes, [("bot.b".to_string(), None), ("bot.a".to_string(), Some("one\ntwo".to_string()))]);
        assert_eq!(typed.get("bot.a").map(String::as_str), Some("one\ntwo"));
    }
}
