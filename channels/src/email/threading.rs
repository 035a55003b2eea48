//! Email threading and cleanup, as pure functions: our Message-IDs and Reply-To addresses carry
//! the conversation, quoted replies and signatures are cut from what the bot and agents read
//! first, and automatic mail is recognised so the bot never answers it.

use switchboard_models::{ConversationId, MessageId};

/// `<sb.<conversation>.<message>@<domain>>`: replies quoting it find their conversation even when
/// the customer's client drops our other headers.
pub fn our_message_id(conversation: ConversationId, message: MessageId, domain: &str) -> String {
    format!("<sb.{}.{}@{domain}>", conversation.0.simple(), message.0.simple())
}

/// The conversation in one of our Message-IDs (with or without angle brackets).
pub fn conversation_in_message_id(id: &str) -> Option<ConversationId> {
    our_reply_in_message_id(id).map(|(conversation, _)| conversation)
}

/// The conversation and message named by one of our Message-IDs (`our_message_id`), with or
/// without angle brackets: what a reply or a bounce refers to.
pub fn our_reply_in_message_id(id: &str) -> Option<(ConversationId, MessageId)> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let (local, _domain) = id.rsplit_once('@')?;
    let (conversation, message) = local.strip_prefix("sb.")?.split_once('.')?;
    Some((ConversationId(uuid::Uuid::parse_str(conversation).ok()?), MessageId(uuid::Uuid::parse_str(message).ok()?)))
}

/// `support+c<conversation>@domain`, the Reply-To of our mail: a reply to it lands in the same
/// mailbox and names its conversation even without any threading headers.
pub fn token_address(support: &str, conversation: ConversationId) -> String {
    let (local, domain) = support.split_once('@').unwrap_or((support, ""));
    format!("{local}+c{}@{domain}", conversation.0.simple())
}

/// The conversation named by a `support+c<id>@domain` recipient, if this is one.
pub fn conversation_in_address(address: &str, support: &str) -> Option<ConversationId> {
    let (local, domain) = address.trim().split_once('@')?;
    let (support_local, support_domain) = support.split_once('@')?;
    if !domain.eq_ignore_ascii_case(support_domain) {
        return None;
    }
    let (base, tag) = local.split_once('+')?;
    if !base.eq_ignore_ascii_case(support_local) {
        return None;
    }
    uuid::Uuid::parse_str(tag.strip_prefix(['c', 'C'])?).ok().map(ConversationId)
}

/// What the customer wrote this time: the text before the quoted earlier mail and before the
/// signature. Falls back to the whole text when cutting would leave nothing.
pub fn strip_quotes_and_signature(text: &str) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if starts_quote_block(trimmed) || is_signature_start(line) {
            break;
        }
        if trimmed.starts_with('>') {
            continue;
        }
        kept.push(line.trim_end());
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let cleaned = kept.join("\n").trim().to_string();
    if cleaned.is_empty() { text.trim().to_string() } else { cleaned }
}

/// "On Mon, 3 Jun 2024 at 10:00, Ann <a@b> wrote:", Outlook's separators and headers, phones.
fn starts_quote_block(line: &str) -> bool {
    let lower = line.to_lowercase();
    (lower.starts_with("on ") && lower.ends_with("wrote:"))
        || (lower.starts_with("am ") && lower.ends_with("schrieb:"))
        || (lower.starts_with("le ") && lower.ends_with("a écrit :"))
        || lower.starts_with("-----original message-----")
        || lower.starts_with("________________________________")
        || (lower.starts_with("from:") && lower.contains('@'))
}

fn is_signature_start(line: &str) -> bool {
    let lower = line.trim().to_lowercase();
    line == "-- "
        || line.trim_end() == "--"
        || lower.starts_with("sent from my ")
        || lower.starts_with("get outlook for ")
}

/// Headers of an incoming mail that decide whether it was written by a person.
#[derive(Debug, Default)]
pub struct AutomationSigns<'a> {
    pub from: &'a str,
    pub auto_submitted: Option<&'a str>,
    pub precedence: Option<&'a str>,
    pub has_auto_reply_header: bool,
    pub is_delivery_report: bool,
    pub return_path_empty: bool,
}

/// Auto-replies, bounces and bulk mail (RFC 3834 and the common vendor headers): the bot must
/// not answer these, or two robots talk forever.
pub fn is_automatic(signs: &AutomationSigns<'_>) -> bool {
    let from = signs.from.to_lowercase();
    let local = from.split('@').next().unwrap_or_default();
    signs.auto_submitted.is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"))
        || signs
            .precedence
            .is_some_and(|v| ["bulk", "junk", "list", "auto_reply"].contains(&v.trim().to_lowercase().as_str()))
        || signs.has_auto_reply_header
        || signs.is_delivery_report
        || signs.return_path_empty
        || ["mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply"].contains(&local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_and_addresses_carry_the_conversation() {
        let conversation = ConversationId::new();
        let id = our_message_id(conversation, MessageId::new(), "example.test");
        assert_eq!(conversation_in_message_id(&id), Some(conversation));
        assert_eq!(conversation_in_message_id("<CAF=abc@mail.gmail.com>"), None);
        let address = token_address("support@example.test", conversation);
        assert_eq!(conversation_in_address(&address, "support@example.test"), Some(conversation));
        assert_eq!(conversation_in_address(&address.to_uppercase(), "support@example.test"), Some(conversation));
        assert_eq!(conversation_in_address(&address, "help@example.test"), None);
        assert_eq!(conversation_in_address("support@example.test", "support@example.test"), None);
    }

    #[test]
    fn quotes_and_signatures_are_cut() {
        let gmail = "Still broken, see below.\n\nOn Mon, 3 Jun 2024 at 10:00, Support <s@x.test> wrote:\n> Try restarting.\n> Thanks";
        assert_eq!(strip_quotes_and_signature(gmail), "Still broken, see below.");
        let outlook = "It works now\r\n\r\n-----Original Message-----\r\nFrom: Support <s@x.test>\r\nSent: Monday";
        assert_eq!(strip_quotes_and_signature(outlook), "It works now");
        let signed = "Thanks!\n-- \nAnn Lee\nACME Corp";
        assert_eq!(strip_quotes_and_signature(signed), "Thanks!");
        let phone = "ok\n\nSent from my iPhone";
        assert_eq!(strip_quotes_and_signature(phone), "ok");
        let interleaved = "> question one\nanswer one\n> question two\nanswer two";
        assert_eq!(strip_quotes_and_signature(interleaved), "answer one\nanswer two");
        assert_eq!(strip_quotes_and_signature("> only a quote"), "> only a quote", "never empty");
    }

    #[test]
    fn robots_are_recognised() {
        let person = AutomationSigns { from: "ann@example.test", ..Default::default() };
        assert!(!is_automatic(&person));
        assert!(is_automatic(&AutomationSigns { auto_submitted: Some("auto-replied"), ..person_like() }));
        assert!(!is_automatic(&AutomationSigns { auto_submitted: Some("no"), ..person_like() }));
        assert!(is_automatic(&AutomationSigns { precedence: Some("bulk"), ..person_like() }));
        assert!(is_automatic(&AutomationSigns { from: "MAILER-DAEMON@example.test", ..Default::default() }));
        assert!(is_automatic(&AutomationSigns { is_delivery_report: true, ..person_like() }));
    }

    fn person_like() -> AutomationSigns<'static> {
        AutomationSigns { from: "ann@example.test", ..Default::default() }
    }
}
