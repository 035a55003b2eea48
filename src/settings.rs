//! The settings admins change in the panel (`SettingsCatalog`): which config keys, how a typed
//! value is read and checked, where each value in force comes from, and the policy they make.
//! A stored setting overrides the configuration the server started with (defaults, the file);
//! an environment variable still wins over it.

use crate::config::Config;
use std::sync::Arc;
use switchboard_admin_web::signin::SignInGuard;
use switchboard_channels::webchat::AddressLimits;
use switchboard_core::RateLimiter;
use serde::{Deserialize, Serialize};
use switchboard_core::ports::{SettingError, SettingKind, SettingSource, SettingView, SettingsCatalog, StoredSetting};

/// One setting the panel changes.
struct Setting {
    key: &'static str,
    group: &'static str,
    label: &'static str,
    help: &'static str,
    kind: SettingKind,
}

const JUDGEMENT: &str = "When the bot hands over";
const TEXTS: &str = "What the bot says";
const PRIORITY: &str = "Priority";
const LIMITS: &str = "Limits";
const ACCOUNTS: &str = "Accounts";
use switchboard_core::ports::WIDGET_SETTINGS as WIDGET;

const SETTINGS: &[Setting] = &[
    Setting {
        key: "webchat.title",
        group: WIDGET,
        label: "Title",
        help: "The widget's header.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "webchat.welcome_message",
        group: WIDGET,
        label: "Welcome message",
        help: "The first thing a new visitor reads.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "webchat.primary_color",
        group: WIDGET,
        label: "Main colour",
        help: "The header, the button and the visitor's messages, like #2563eb.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "webchat.text_color",
        group: WIDGET,
        label: "Text colour on the main colour",
        help: "Like #ffffff; choose one that reads well on the main colour.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "webchat.position",
        group: WIDGET,
        label: "Position",
        help: "Which bottom corner of the page: right or left.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "webchat.prechat_fields",
        group: WIDGET,
        label: "Asked before the first message",
        help: "One per line: name, email (both optional for the visitor to answer); empty asks nothing.",
        kind: SettingKind::List,
    },
    Setting {
        key: "webchat.allowed_origins",
        group: WIDGET,
        label: "Sites that may embed the widget",
        help: "One origin per line, like https://shop.example.com; * allows any. Switchboard's own address always may.",
        kind: SettingKind::List,
    },
    Setting {
        key: "bot.low_confidence_threshold",
        group: JUDGEMENT,
        label: "Unsure below",
        help: "Below this confidence (0 to 1) the bot asks the customer to put it another way instead of answering.",
        kind: SettingKind::Number,
    },
    Setting {
        key: "bot.low_confidence_escalate_after",
        group: JUDGEMENT,
        label: "Unsure answers before a person takes over",
        help: "How many unsure messages in a row the bot answers with the clarifying question before it hands over.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "bot.escalate_at_least",
        group: JUDGEMENT,
        label: "Hand over when a person is this likely needed",
        help: "The model's judgement (0 to 1) that a person should take over, at or above which the bot hands over at once.",
        kind: SettingKind::Number,
    },
    Setting {
        key: "bot.negative_sentiment_threshold",
        group: JUDGEMENT,
        label: "Hand over at this sentiment",
        help: "Sentiment (-1 to 1) at or below which the bot hands over at once, when the model makes no judgement (keyword rules).",
        kind: SettingKind::Number,
    },
    Setting {
        key: "bot.clarifying_question",
        group: TEXTS,
        label: "Clarifying question",
        help: "Asked when the bot is unsure what the customer means.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "bot.handoff_queued",
        group: TEXTS,
        label: "Handing over, agents online",
        help: "{position} is the customer's place in the queue.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "bot.handoff_offline",
        group: TEXTS,
        label: "Handing over, no agent online",
        help: "Said when nobody is online to take the conversation.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "bot.handoff_closed",
        group: TEXTS,
        label: "Handing over, outside business hours",
        help: "{next_open} is when the team is back, {business_hours} the weekly schedule.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "bot.waiting_notice",
        group: TEXTS,
        label: "Waiting in the queue",
        help: "Told to a customer who writes while queued: {position} and {expected_wait}.",
        kind: SettingKind::Text,
    },
    Setting {
        key: "bot.priority_rules",
        group: PRIORITY,
        label: "Priority rules",
        help: "[[bot.priority_rules]] tables with words, category, intent (each optional) and priority; a matching rule can only raise a conversation's priority.",
        kind: SettingKind::Rules,
    },
    Setting {
        key: "webchat.rate_limit_per_minute",
        group: LIMITS,
        label: "Widget messages per visitor per minute",
        help: "More are refused with a clear message until the minute passes.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "webchat.messages_per_address_per_minute",
        group: LIMITS,
        label: "Widget messages per address per minute",
        help: "For all visitors behind one IP address together.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "server.sign_in_per_minute",
        group: LIMITS,
        label: "Sign-in attempts per address per minute",
        help: "Failed and successful attempts count alike.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "server.session_days",
        group: ACCOUNTS,
        label: "Sign-ins last (days)",
        help: "How long a panel sign-in stays valid; a change applies to the next sign-ins.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "server.password_min_chars",
        group: ACCOUNTS,
        label: "Shortest password (characters)",
        help: "Applies to new accounts and passwords set from now on; a password must also be hard to guess.",
        kind: SettingKind::Integer,
    },
    Setting {
        key: "server.api_requests_per_minute",
        group: LIMITS,
        label: "API requests per token per minute",
        help: "Beyond it the API answers 429 and says when to try again.",
        kind: SettingKind::Integer,
    },
];

/// The catalog over the configuration the server started with.
pub struct ConfigSettings {
    base: Config,
    /// The running rate limiters, once built: `apply` gives them the new limits.
    limits: std::sync::OnceLock<LiveLimits>,
}

/// The rate limiters admins change on the Settings page, held so new limits apply at once.
pub struct LiveLimits {
    pub visitor: Arc<RateLimiter>,
    pub address: Arc<AddressLimits>,
    pub sign_in: Arc<SignInGuard>,
    pub api: Arc<RateLimiter>,
    pub accounts: Arc<switchboard_admin_web::accounts::AccountRules>,
    pub widget: Arc<switchboard_channels::webchat::LiveAppearance>,
}

/// The widget's look, pre-chat questions and allowed sites as `config` sets them.
pub fn widget_appearance(config: &Config) -> switchboard_channels::webchat::WidgetAppearance {
    use switchboard_channels::webchat::{AllowedOrigins, WidgetAppearance, WidgetLook};
    let w = &config.webchat;
    WidgetAppearance {
        look: WidgetLook {
            title: w.title.clone(),
            primary_color: w.primary_color.clone(),
            text_color: w.text_color.clone(),
            position: w.position.clone(),
            welcome_message: w.welcome_message.clone(),
        },
        prechat_fields: w.prechat_fields.clone(),
        allowed_origins: match w.allowed_origins.iter().any(|o| o == "*") {
            true => AllowedOrigins::Any,
            false => AllowedOrigins::List(w.allowed_origins.clone()),
        },
    }
}

impl LiveLimits {
    fn set(&self, config: &Config) {
        let (w, server) = (&config.webchat, &config.server);
        self.visitor.set(w.rate_limit_per_minute, w.rate_limit_burst);
        self.address.set(w.sessions_per_address_per_minute, w.messages_per_address_per_minute);
        self.sign_in.set_limits(server.sign_in_per_minute, server.sign_in_burst);
        self.api.set(server.api_requests_per_minute, server.api_requests_per_minute.div_ceil(5));
        self.accounts.set(server.session_days, server.password_min_chars);
        self.widget.set(widget_appearance(config));
    }
}

/// `[[bot.priority_rules]]` as the panel shows and reads them.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesText {
    #[serde(default)]
    bot: RulesTable,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesTable {
    #[serde(default)]
    priority_rules: Vec<switchboard_core::policy::PriorityRule>,
}

impl ConfigSettings {
    pub fn new(base: Config) -> Self {
        Self { base, limits: std::sync::OnceLock::new() }
    }

    /// The rate limiters `apply` sets from now on.
    pub fn hold_limits(&self, limits: LiveLimits) {
        let _ = self.limits.set(limits);
    }

    /// The configuration in force: the one the server started with, the stored settings over
    /// it (not those an environment variable sets), checked as the config file is.
    pub fn effective(&self, stored: &[StoredSetting]) -> Result<Config, SettingError> {
        let mut tree = serde_json::to_value(&self.base).map_err(|e| SettingError { key: "settings".into(), problem: e.to_string() })?;
        for setting in stored.iter().filter(|s| environment_variable(&s.key).is_none() && known(&s.key).is_some()) {
            let value: serde_json::Value = serde_json::from_str(&setting.value)
                .map_err(|e| SettingError { key: setting.key.clone(), problem: format!("the stored value is not JSON ({e}); reset it") })?;
            if let Some(slot) = tree.pointer_mut(&pointer(&setting.key)) {
                *slot = value;
            }
        }
        let config: Config = serde_json::from_value(tree).map_err(|e| SettingError { key: "settings".into(), problem: e.to_string() })?;
        config.check().map_err(|error| match error {
            crate::config::ConfigError::Invalid { key, problem } => SettingError { key, problem },
            other => SettingError { key: "settings".into(), problem: other.to_string() },
        })?;
        Ok(config)
    }
}

fn known(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// `bot.handoff_queued` → `/bot/handoff_queued`.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('.', "/"))
}

/// The environment variable that sets `key`, when it is set.
fn environment_variable(key: &str) -> Option<String> {
    let variable = format!("SWITCHBOARD_{}", key.replace('.', "__").to_uppercase());
    std::env::var_os(&variable).map(|_| variable)
}

/// A value as the panel shows it.
fn shown(kind: SettingKind, value: &serde_json::Value) -> String {
    match (kind, value) {
        (SettingKind::Text, serde_json::Value::String(text)) => text.clone(),
        // Thresholds are f32 in the configuration: shown as written, not as their f64 widening.
        (SettingKind::Number, serde_json::Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), |n| (n as f32).to_string()),
        (SettingKind::List, serde_json::Value::Array(items)) => items.iter().filter_map(|item| item.as_str()).collect::<Vec<_>>().join("\n"),
        (SettingKind::Rules, rules) => {
            let rules = serde_json::from_value(rules.clone()).unwrap_or_default();
            toml::to_string(&RulesText { bot: RulesTable { priority_rules: rules } }).unwrap_or_default()
        }
        (_, value) => value.to_string(),
    }
}

/// What an admin typed, as the JSON value to store, or what is wrong with it.
fn typed(setting: &Setting, text: &str) -> Result<serde_json::Value, String> {
    let text = text.trim();
    match setting.kind {
        SettingKind::Number => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("`{text}` is not a number; write one like 0.45")),
        SettingKind::Integer => {
            text.parse::<u64>().map(serde_json::Value::from).map_err(|_| format!("`{text}` is not a whole number; write one like 20"))
        }
        SettingKind::Text if text.is_empty() => Err("write the text, or reset it to use the config file's".into()),
        SettingKind::Text => Ok(serde_json::Value::String(text.to_string())),
        SettingKind::List => Ok(serde_json::Value::from(text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>())),
        SettingKind::Rules => {
            let rules: RulesText = toml::from_str(text).map_err(|e| format!("not priority rules: {}", e.message()))?;
            serde_json::to_value(rules.bot.priority_rules).map_err(|e| e.to_string())
        }
    }
}

impl SettingsCatalog for ConfigSettings {
    fn describe(&self, stored: &[StoredSetting]) -> Vec<SettingView> {
        let effective = self.effective(stored).unwrap_or_else(|_| self.base.clone());
        let (now, defaults) = (serde_json::to_value(&effective).unwrap_or_default(), serde_json::to_value(Config::default()).unwrap_or_default());
        let base = serde_json::to_value(&self.base).unwrap_or_default();
        SETTINGS
            .iter()
            .map(|setting| {
                let at = pointer(setting.key);
                let source = match (environment_variable(setting.key), stored.iter().find(|s| s.key == setting.key)) {
                    (Some(variable), _) => SettingSource::Environment { variable },
                    (None, Some(s)) => SettingSource::Panel { by: s.updated_by, at: s.updated_at },
                    (None, None) if base.pointer(&at) != defaults.pointer(&at) => SettingSource::File,
                    (None, None) => SettingSource::Default,
                };
                SettingView {
                    key: setting.key.to_string(),
                    group: setting.group,
                    label: setting.label,
                    help: setting.help,
                    kind: setting.kind,
                    value: now.pointer(&at).map(|v| shown(setting.kind, v)).unwrap_or_default(),
                    source,
                }
            })
            .collect()
    }

    fn check(&self, stored: &[StoredSetting], changes: &[(String, Option<String>)]) -> Result<Vec<(String, Option<String>)>, SettingError> {
        let views = self.describe(stored);
        let mut values = Vec::new();
        let mut proposed: Vec<StoredSetting> = stored.to_vec();
        for (key, text) in changes {
            let refused = |problem: String| SettingError { key: key.clone(), problem };
            let setting = known(key).ok_or_else(|| refused("not a setting the panel changes".into()))?;
            let view = views.iter().find(|v| v.key == *key).expect("every setting is described");
            let is_stored = stored.iter().any(|s| s.key == *key);
            match text {
                // Reset: back to the config file's value.
                None if is_stored => {
                    proposed.retain(|s| s.key != *key);
                    values.push((key.clone(), None));
                }
                None => {}
                // Unchanged: a form sends every field; only what changed is stored.
                Some(text) if text.trim() == view.value.trim() => {}
                Some(text) => {
                    if let Some(variable) = environment_variable(key) {
                        return Err(refused(format!("set by the environment variable {variable}; change it there")));
                    }
                    let value = typed(setting, text).map_err(refused)?.to_string();
                    proposed.retain(|s| s.key != *key);
                    proposed.push(StoredSetting { key: key.clone(), value: value.clone(), updated_by: None, updated_at: chrono::Utc::now() });
                    values.push((key.clone(), Some(value)));
                }
            }
        }
        self.effective(&proposed)?;
        Ok(values)
    }

    fn apply(&self, stored: &[StoredSetting]) -> Result<switchboard_core::Policy, String> {
        let config = self.effective(stored).map_err(|e| e.to_string())?;
        if let Some(limits) = self.limits.get() {
            limits.set(&config);
        }
        Ok(crate::policy(&config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key: &str, value: &str) -> StoredSetting {
        StoredSetting { key: key.into(), value: value.into(), updated_by: None, updated_at: chrono::Utc::now() }
    }

    #[test]
    fn every_setting_is_a_config_key() {
        let tree = serde_json::to_value(Config::default()).unwrap();
        for setting in SETTINGS {
            assert!(tree.pointer(&pointer(setting.key)).is_some(), "{} is not in the configuration", setting.key);
        }
    }

    #[test]
    fn typed_values_are_checked_as_the_config_file_is_and_only_changes_are_kept() {
        let catalog = ConfigSettings::new(Config::default());
        let change = |key: &str, text: &str| vec![(key.to_string(), Some(text.to_string()))];
        let kept = catalog.check(&[], &change("bot.low_confidence_threshold", "0.3")).unwrap();
        assert_eq!(kept, [("bot.low_confidence_threshold".to_string(), Some("0.3".to_string()))]);
        let current = catalog.describe(&[]).into_iter().find(|v| v.key == "bot.handoff_offline").unwrap();
        assert!(catalog.check(&[], &change("bot.handoff_offline", &current.value)).unwrap().is_empty(), "unchanged is not stored");
        let error = catalog.check(&[], &change("bot.low_confidence_threshold", "high")).unwrap_err();
        assert!(error.problem.contains("not a number"), "{error}");
        let error = catalog.check(&[], &change("bot.low_confidence_threshold", "7")).unwrap_err();
        assert_eq!(error.key, "bot.low_confidence_threshold", "the configuration's own check: {error}");
        let error = catalog.check(&[], &change("bot.priority_rules", "[[bot.priority_rules]]\npriority = \"soon\"")).unwrap_err();
        assert!(error.problem.contains("not priority rules"), "{error}");
        assert!(catalog.check(&[], &change("server.listen", "0.0.0.0:80")).is_err(), "only the listed settings");
        let rules = "[[bot.priority_rules]]\nwords = [\"lawyer\"]\npriority = \"urgent\"\n";
        let kept = catalog.check(&[], &change("bot.priority_rules", rules)).unwrap();
        let stored_rules = stored("bot.priority_rules", kept[0].1.as_deref().unwrap());
        let view = catalog.describe(&[stored_rules.clone()]).into_iter().find(|v| v.key == "bot.priority_rules").unwrap();
        assert_eq!(view.value, rules, "shown as typed");
        assert!(matches!(view.source, SettingSource::Panel { .. }));
        assert_eq!(catalog.apply(&[stored_rules]).unwrap().priority_rules.len(), 1);
        assert_eq!(catalog.check(&[stored("bot.handoff_offline", "\"x\"")], &[("bot.handoff_offline".into(), None)]).unwrap(), [("bot.handoff_offline".to_string(), None)]);
    }

    #[test]
    fn a_setting_the_environment_sets_is_shown_so_and_not_changed() {
        // Only this test sets this variable.
        let variable = "SWITCHBOARD_SERVER__SIGN_IN_PER_MINUTE";
        unsafe { std::env::set_var(variable, "7") };
        let catalog = ConfigSettings::new(Config::default());
        let view = catalog.describe(&[]).into_iter().find(|v| v.key == "server.sign_in_per_minute").unwrap();
        let refused = catalog.check(&[], &[("server.sign_in_per_minute".into(), Some("3".into()))]);
        let stored_anyway = catalog.effective(&[stored("server.sign_in_per_minute", "3")]).unwrap().server.sign_in_per_minute;
        unsafe { std::env::remove_var(variable) };
        assert_eq!(view.source, SettingSource::Environment { variable: variable.into() });
        assert!(refused.unwrap_err().problem.contains(variable));
        assert_eq!(stored_anyway, Config::default().server.sign_in_per_minute, "a stored value under an environment variable is not applied");
    }
}
