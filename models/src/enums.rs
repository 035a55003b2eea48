use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A text that names no variant of an enum; says which values are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

/// A value as an error message may repeat it: at most 40 characters, so a huge input is
/// never echoed back.
fn shortened(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// Enums stored as text: one table of (variant, name) gives `as_str`, `FromStr`, `Display`
/// and serde in snake_case, so storage, config and JSON agree on spelling.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(value: &str) -> Result<Self, UnknownVariant> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: shortened(value),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(value: String) -> Result<Self, UnknownVariant> {
                value.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> &'static str {
                value.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a customer writes from; replies go back on the same channel.
    Channel, "channel" {
        WebChat => "webchat",
        Telegram => "telegram",
        Discord => "discord",
        Email => "email",
    }
);

text_enum!(
    /// The ticket lifecycle shown to agents (`confirmed`: the customer confirmed a resolution).
    Status, "status" {
        Open => "open",
        Assigned => "assigned",
        InProgress => "in_progress",
        WaitingOnCustomer => "waiting_on_customer",
        Resolved => "resolved",
        Confirmed => "confirmed",
        Closed => "closed",
        Rejected => "rejected",
    }
);

impl Status {
    /// Closed and rejected conversations are finished: a new customer message starts a new one.
    /// (A resolved or confirmed one is picked up again when the customer writes.)
    pub fn is_final(self) -> bool {
        matches!(self, Status::Closed | Status::Rejected)
    }
}

text_enum!(
    /// Who wrote a message.
    Sender, "sender" {
        Customer => "customer",
        Bot => "bot",
        Agent => "agent",
        System => "system",
    }
);

text_enum!(
    /// What a conversation is about (seed categories; shown and filtered on in the panel).
    Category, "category" {
        Billing => "billing",
        TechnicalSupport => "technical_support",
        Account => "account",
        GeneralInquiry => "general_inquiry",
        Complaint => "complaint",
        FeatureRequest => "feature_request",
    }
);

text_enum!(
    /// How soon a ticket needs a person. Ordered from most to least urgent.
    Priority, "priority" {
        Urgent => "urgent",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

text_enum!(
    /// What the customer wants from this message, apart from what it is about: a complaint about
    /// billing is a billing message whose need is a complaint. A harm report is fraud, an account
    /// takeover, a safety incident or an outage affecting many people.
    Need, "need" {
        Question => "question",
        Complaint => "complaint",
        HumanRequest => "human_request",
        FeatureRequest => "feature_request",
        HarmReport => "harm_report",
        Greeting => "greeting",
        Thanks => "thanks",
        Goodbye => "goodbye",
        Other => "other",
    }
);

text_enum!(
    /// What happened to a conversation, as the reports count it.
    EventKind, "conversation event" {
        Created => "created",
        Escalated => "escalated",
        Assigned => "assigned",
        FirstReply => "first_reply",
        Resolved => "resolved",
        Reopened => "reopened",
        Closed => "closed",
    }
);

text_enum!(
    /// Why an agent is told something in the panel.
    NotificationKind, "notification kind" {
        Assigned => "assigned",
        CustomerReplied => "customer_replied",
        Mentioned => "mentioned",
        SlaWarning => "sla_warning",
        SlaBreach => "sla_breach",
        WebhookDisabled => "webhook_disabled",
        InboundFailed => "inbound_failed",
    }
);

text_enum!(
    /// Where a reply is on its way to the customer.
    DeliveryState, "delivery state" {
        Queued => "queued",
        Retrying => "retrying",
        Sent => "sent",
        Seen => "seen",
        Failed => "failed",
    }
);

text_enum!(
    /// What an account may do in the admin panel.
    Role, "role" {
        Agent => "agent",
        Admin => "admin",
    }
);

text_enum!(
    /// Whether an agent takes conversations now.
    Presence, "presence" {
        Online => "online",
        Away => "away",
        Offline => "offline",
    }
);

text_enum!(
    /// What an agent or admin did, for the audit log.
    AuditAction, "audit action" {
        Reply => "reply",
        Note => "note",
        Assign => "assign",
        Release => "release",
        Resolve => "resolve",
        Status => "status",
        Priority => "priority",
        Category => "category",
        HandBack => "hand_back",
        Presence => "presence",
        CreateAccount => "create_account",
        UpdateAccount => "update_account",
        SignInFailed => "sign_in_failed",
        SignInRefused => "sign_in_refused",
        CannedResponse => "canned_response",
        ReviewDocument => "review_document",
        JoinContacts => "join_contacts",
        SeparateContacts => "separate_contacts",
        Intents => "intents",
        SignIn => "sign_in",
        SignOut => "sign_out",
        ApiToken => "api_token",
        Settings => "settings",
        Webhook => "webhook",
        TwoFactor => "two_factor",
    }
);

text_enum!(
    /// What an outbound webhook can be told about.
    WebhookEvent, "webhook event" {
        ConversationCreated => "conversation.created",
        ConversationEscalated => "conversation.escalated",
        ConversationAssigned => "conversation.assigned",
        ConversationResolved => "conversation.resolved",
        ConversationReopened => "conversation.reopened",
        ConversationClosed => "conversation.closed",
        MessageStored => "message.stored",
        RatingReceived => "rating.received",
        Ping => "ping",
    }
);

text_enum!(
    /// Where a version of the bot's intents came from: the intents file (read at start or
    /// reload, first or changed on disk), the built-in default, an admin's edit in the panel,
    /// messages taught from traffic, or an earlier version restored.
    IntentsOrigin, "intents origin" {
        File => "file",
        BuiltIn => "built_in",
        Panel => "panel",
        Teaching => "teaching",
        Restore => "restore",
    }
);

text_enum!(
    /// How two identities were shown to be one person: a code shown on one channel was sent
    /// from the other; a code mailed to the address was typed back; the embedding site signed
    /// the visitor's identity, mail address included; an agent joined them by hand.
    LinkProof, "link proof" {
        LinkCode => "link_code",
        EmailCode => "email_code",
        SiteIdentity => "site_identity",
        Agent => "agent",
    }
);

text_enum!(
    /// Where a document sent for review stands.
    DocumentState, "document state" {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_unknown_values_name_the_choices() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), *status);
        }
        let err = "pending".parse::<Status>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown status `pending`; expected one of: open, assigned, in_progress, \
             waiting_on_customer, resolved, confirmed, closed, rejected"
        );
    }
}
