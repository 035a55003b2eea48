//! Mail in the support mailbox that no person wrote: delivery failures (RFC 3464 reports and the
//! common informal bounces) and auto-replies (RFC 3834 and the vendor headers). A bounce names the
//! reply it returns, so the channel can mark that reply failed instead of opening a conversation.
//! Pure functions over the raw mail; no I/O.

use mail_parser::{HeaderValue, Message, MessageParser, MessagePart, MimeHeaders};

/// A mail written by a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Automatic {
    /// A delivery status notification (RFC 3464) or a bounce in a common non-standard form.
    Bounce(Bounce),
    /// An auto-reply (out-of-office, vacation, autoresponder), a read receipt or a report of a
    /// successful delivery: not a customer message; ignore it.
    AutoReply,
}

/// What a delivery report says about the message it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// Message-IDs (without angle brackets) of the original message(s) this report is about, from
    /// the first of these that names any: the returned original's headers (a message/rfc822 or
    /// text/rfc822-headers part, or a copy inline in the notice), the report's In-Reply-To, its
    /// References (newest first). May be empty.
    pub original_message_ids: Vec<String>,
    /// The failed recipient (Final-Recipient, else Original-Recipient; the "rfc822;" type
    /// stripped), lowercased, if given.
    pub recipient: Option<String>,
    /// RFC 3463 status code like "5.1.1", if given (in a Status field or the server's reply).
    pub status: Option<String>,
    /// The server's reply (Diagnostic-Code without its "smtp;" type), trimmed, whitespace
    /// collapsed, at most 300 characters.
    pub diagnostic: Option<String>,
    /// true for a failure; false for a "delayed" report: the mail may still arrive.
    pub permanent: bool,
    /// The reason in plain words for an agent, e.g. "The mailbox does not exist (5.1.1).".
    pub reason: String,
}

/// Longest diagnostic kept: enough for the server's sentence, not a whole transcript.
const MAX_DIAGNOSTIC: usize = 300;

/// Classifies a raw RFC 5322 message; None means it is an ordinary message (a customer's).
pub fn classify(raw: &[u8]) -> Option<Automatic> {
    classify_parsed(&MessageParser::default().parse(raw)?)
}

/// `classify` for a mail parsed already.
pub fn classify_parsed(mail: &Message<'_>) -> Option<Automatic> {
    // Reports first: MTAs put Auto-Submitted on bounces too, and a bounce read as a mere
    // auto-reply would hide a failed reply.
    if let Some(report) = report(&mail) {
        return Some(report);
    }
    let from = mail
        .from()
        .and_then(|list| list.first())
        .and_then(|addr| addr.address())
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let local = from.split('@').next().unwrap_or_default();
    let null_sender = null_return_path(&mail);
    if is_robot_local_part(local) || null_sender {
        match notice_kind(mail.subject().unwrap_or_default()) {
            Some(kind) => return Some(Automatic::Bounce(bounce_from_text(&mail, kind == Notice::Failure))),
            // Only machines send from a null reverse-path (RFC 5321 4.5.5) or as MAILER-DAEMON; a
            // postmaster may be a person and is read like anyone else.
            None if local == "mailer-daemon" || null_sender => return Some(Automatic::AutoReply),
            None => {}
        }
    }
    is_auto_reply(&mail).then_some(Automatic::AutoReply)
}


// --- RFC 3464 reports -------------------------------------------------------------------------

/// A multipart/report anywhere in the outer message (some gateways wrap it in a multipart/mixed).
/// Parts of an attached message are not looked at: a customer forwarding a bounce wrote to us.
fn report(mail: &Message<'_>) -> Option<Automatic> {
    let mut other_report = false;
    for part in &mail.parts {
        let Some(content_type) = part.content_type() else { continue };
        if !content_type.ctype().eq_ignore_ascii_case("multipart")
            || !content_type.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        {
            continue;
        }
        match content_type.attribute("report-type") {
            Some(kind) if kind.eq_ignore_ascii_case("delivery-status") || kind.eq_ignore_ascii_case("global-delivery-status") => {
                return Some(delivery_report(mail));
            }
            _ => other_report = true,
        }
    }
    // Read receipts (disposition-notification) and other machine reports: no person wrote them.
    other_report.then_some(Automatic::AutoReply)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Delayed,
    /// delivered, relayed or expanded: nothing went wrong.
    Fine,
}

type Fields = Vec<(String, String)>;

fn delivery_report(mail: &Message<'_>) -> Automatic {
    let status_part = mail
        .parts
        .iter()
        .find(|p| p.is_content_type("message", "delivery-status") || p.is_content_type("message", "global-delivery-status"));
    // mail-parser gives this part as binary (or text, if mislabelled): its decoded bytes either way.
    let fields = status_part.map(|p| String::from_utf8_lossy(p.contents()).into_owned()).unwrap_or_default();
    let records = recipient_records(&fields);
    // A report may cover several recipients; the worst outcome is the one to act on.
    let chosen = [Outcome::Failed, Outcome::Delayed]
        .into_iter()
        .find_map(|wanted| records.iter().find(|r| outcome(r) == Some(wanted)).map(|r| (r, wanted)));
    let Some((record, worst)) = chosen else {
        if records.iter().any(|r| outcome(r) == Some(Outcome::Fine)) {
            // A success notice (NOTIFY=SUCCESS): nothing to mark, nothing to answer.
            return Automatic::AutoReply;
        }
        // No usable Action or Status: read the human part like an informal bounce.
        let delayed = notice_kind(mail.subject().unwrap_or_default()) == Some(Notice::Delay);
        return Automatic::Bounce(bounce_from_text(mail, !delayed));
    };
    let diagnostic = field(record, "diagnostic-code").and_then(diagnostic_code);
    let status = field(record, "status")
        .and_then(|s| status_in(s, true))
        .or_else(|| diagnostic.as_deref().and_then(|d| status_in(d, false)));
    let permanent = worst == Outcome::Failed || status.as_deref().is_some_and(|s| s.starts_with('5'));
    let recipient = field(record, "final-recipient")
        .or_else(|| field(record, "original-recipient"))
        .and_then(typed_address)
        .or_else(|| failed_recipients_header(mail));
    let reason = reason(status.as_deref(), diagnostic.as_deref(), permanent);
    Automatic::Bounce(Bounce {
        original_message_ids: original_ids(mail, &notice_text(mail)),
        recipient,
        status,
        diagnostic,
        permanent,
        reason,
    })
}

/// The per-recipient field groups of a message/delivery-status body (the per-message group, which
/// names no recipient, action or status, is left out).
fn recipient_records(text: &str) -> Vec<Fields> {
    let mut records = Vec::new();
    for block in field_blocks(text) {
        let mut record = Fields::new();
        for (name, value) in block {
            // Some MTAs run recipients together without the blank line: a second Final-Recipient
            // starts the next one.
            if name == "final-recipient" && record.iter().any(|(n, _)| n == "final-recipient") {
                records.push(std::mem::take(&mut record));
            }
            record.push((name, value));
        }
        records.push(record);
    }
    records.retain(|record| {
        record
            .iter()
            .any(|(n, _)| matches!(n.as_str(), "action" | "status" | "final-recipient" | "original-recipient"))
    });
    records
}

/// Header-style groups ("Name: value", folded continuation lines joined) separated by blank
/// lines; names lowercased, values trimmed.
fn field_blocks(text: &str) -> Vec<Fields> {
    let mut blocks = Vec::new();
    let mut block = Fields::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

fn field<'a>(record: &'a [(String, String)], name: &str) -> Option<&'a str> {
    record.iter().find(|(n, v)| n.as_str() == name && !v.is_empty()).map(|(_, v)| v.as_str())
}

fn outcome(record: &[(String, String)]) -> Option<Outcome> {
    let action = field(record, "action")
        .and_then(|a| a.split(|c: char| !c.is_ascii_alphabetic()).next())
        .map(str::to_ascii_lowercase);
    match action.as_deref() {
        Some("failed") => Some(Outcome::Failed),
        Some("delayed") => Some(Outcome::Delayed),
        Some("delivered" | "relayed" | "expanded") => Some(Outcome::Fine),
        // No (known) Action: the status class says it.
        _ => match status_in(field(record, "status")?, true)?.as_bytes()[0] {
            b'5' => Some(Outcome::Failed),
            b'4' => Some(Outcome::Delayed),
            _ => Some(Outcome::Fine),
        },
    }
}

/// "rfc822; Ann@Example.com" → "ann@example.com".
fn typed_address(value: &str) -> Option<String> {
    let address = value.split_once(';').map_or(value, |(_, address)| address);
    let address = address.trim().trim_start_matches('<').trim_end_matches('>').trim();
    (!address.is_empty()).then(|| address.to_lowercase())
}

/// A Diagnostic-Code without its type ("smtp; 550 …" → "550 …"), tidied.
fn diagnostic_code(value: &str) -> Option<String> {
    let text = match value.split_once(';') {
        Some((kind, rest)) if is_token(kind.trim()) => rest,
        // A ';' inside the server's own text ("RecipNotFound; not found") is not a type.
        _ => value,
    };
    tidy(text)
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.len() <= 32 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

// --- Informal bounces -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    Failure,
    Delay,
}

/// Subjects bounces start with (lowercase). Prefixes, not substrings: an auto-reply or a person
/// quoting "Re: undeliverable parcel" must not read as a bounce.
const FAILURE_SUBJECTS: &[&str] = &[
    "undeliverable",
    "undelivered mail",
    "delivery status notification (failure)",
    "mail delivery failed",
    "mail delivery failure",
    "delivery failure",
    "delivery has failed",
    "failure notice",
    "returned mail",
    "message not delivered",
    "mail system error - returned mail",
    "non remis",
    "unzustellbar",
    "nicht zustellbar",
    "no se puede entregar",
    "non recapitabile",
    "onbestelbaar",
];

/// Subjects of "still trying" warnings (lowercase prefixes): not failures yet.
const DELAY_SUBJECTS: &[&str] = &[
    "delivery status notification (delay)",
    "delayed mail",
    "delivery delayed",
    "mail delivery delayed",
    "message delayed",
    "warning: message",
    "warning: could not send message",
];

fn notice_kind(subject: &str) -> Option<Notice> {
    let subject = subject.trim().to_lowercase();
    if FAILURE_SUBJECTS.iter().any(|p| subject.starts_with(p)) {
        Some(Notice::Failure)
    } else if DELAY_SUBJECTS.iter().any(|p| subject.starts_with(p)) {
        Some(Notice::Delay)
    } else {
        None
    }
}

fn is_robot_local_part(local: &str) -> bool {
    matches!(local, "mailer-daemon" | "postmaster")
}

fn null_return_path(mail: &Message<'_>) -> bool {
    mail.header_raw("Return-Path").is_some_and(|value| {
        let value = value.trim().trim_start_matches('<').trim_end_matches('>').trim();
        value.is_empty() || value.eq_ignore_ascii_case("mailer-daemon")
    })
}

/// A bounce read from its human-readable text: the recipient from X-Failed-Recipients or the
/// first other address in the notice, the diagnostic from the first line with an SMTP reply.
fn bounce_from_text(mail: &Message<'_>, permanent: bool) -> Bounce {
    let text = notice_text(mail);
    let notice = before_returned_copy(&text);
    let own = own_addresses(mail);
    let recipient = failed_recipients_header(mail)
        .or_else(|| addresses_in(notice).find(|a| !own.contains(a) && !is_robot_local_part(a.split('@').next().unwrap_or_default())));
    let diagnostic = diagnostic_line(notice);
    let status = diagnostic.as_deref().and_then(|d| status_in(d, false));
    let reason = reason(status.as_deref(), diagnostic.as_deref(), permanent);
    Bounce { original_message_ids: original_ids(mail, &text), recipient, status, diagnostic, permanent, reason }
}

/// The first text body (HTML converted by mail-parser): the notice a person would read.
fn notice_text(mail: &Message<'_>) -> String {
    mail.body_text(0).map(|text| text.into_owned()).unwrap_or_default()
}

/// Lines (lowercase) that start the copy of the returned message in a plain-text bounce.
const RETURNED_COPY_MARKERS: &[&str] = &[
    "copy of the message",
    "original message headers",
    "original message follows",
    "----- original message",
    "undelivered message headers",
];

/// The notice without the returned copy after it, whose addresses and numbers are not the failure.
fn before_returned_copy(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let lower = line.trim().to_lowercase();
        if RETURNED_COPY_MARKERS.iter().any(|m| lower.contains(m))
            || lower.starts_with("received:")
            || lower.starts_with("return-path:")
        {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// The first line carrying an SMTP reply code ("550", "#550") or an enhanced status ("5.1.1"),
/// with its more deeply indented continuation lines.
fn diagnostic_line(notice: &str) -> Option<String> {
    let lines: Vec<&str> = notice.lines().collect();
    let at = lines.iter().position(|line| tokens(line).any(|t| is_reply_code(t) || is_status(t, false)))?;
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut text = lines[at].to_string();
    for &line in &lines[at + 1..] {
        if line.trim().is_empty() || indent(line) <= indent(lines[at]) {
            break;
        }
        text.push(' ');
        text.push_str(line);
    }
    tidy(&text)
}

fn failed_recipients_header(mail: &Message<'_>) -> Option<String> {
    mail.header_raw("X-Failed-Recipients")?
        .split(',')
        .map(|a| a.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|a| looks_like_address(a))
        .map(str::to_lowercase)
}

/// Our side of the bounce (its To, Delivered-To) and its sender: never the failed recipient.
fn own_addresses(mail: &Message<'_>) -> Vec<String> {
    let mut own: Vec<String> = [mail.from(), mail.to(), mail.cc()]
        .into_iter()
        .flatten()
        .flat_map(|list| list.iter())
        .filter_map(|addr| addr.address())
        .map(str::to_lowercase)
        .collect();
    own.extend(
        ["Delivered-To", "X-Original-To"]
            .into_iter()
            .filter_map(|name| mail.header_raw(name))
            .map(|value| value.trim().trim_start_matches('<').trim_end_matches('>').trim().to_lowercase()),
    );
    own
}

fn addresses_in(text: &str) -> impl Iterator<Item = String> {
    text.split(|c: char| c.is_whitespace() || "<>()[]\"',;:".contains(c))
        .map(|t| t.trim_end_matches('.'))
        .filter(|t| looks_like_address(t))
        .map(str::to_lowercase)
}

fn looks_like_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.contains('@')
        && text.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

// --- Shared -----------------------------------------------------------------------------------

/// The original's ids, from the first source that names any (see `Bounce::original_message_ids`).
fn original_ids(mail: &Message<'_>, text: &str) -> Vec<String> {
    let returned: Vec<String> =
        mail.parts.iter().skip(1).filter(|p| is_returned_original(p)).filter_map(returned_message_id).collect();
    let sources = [
        returned,
        // A plain-text bounce quotes the original's headers in its body.
        message_id_field(text).into_iter().collect(),
        header_ids(mail.in_reply_to()),
        header_ids(mail.references()).into_iter().rev().collect(),
    ];
    sources.into_iter().map(dedup).find(|ids| !ids.is_empty()).unwrap_or_default()
}

fn is_returned_original(part: &MessagePart<'_>) -> bool {
    part.is_content_type("message", "rfc822")
        || part.is_content_type("message", "global")
        || part.is_content_type("text", "rfc822-headers")
        || part.is_content_type("message", "global-headers")
}

fn returned_message_id(part: &MessagePart<'_>) -> Option<String> {
    let id = match part.message() {
        Some(original) => original.message_id().map(bare_id),
        // Headers only (text/rfc822-headers), or an original mail-parser could not open.
        None => message_id_field(&String::from_utf8_lossy(part.contents())),
    };
    id.filter(|id| !id.is_empty())
}

/// The value of the first "Message-ID:" line in header-shaped text, without angle brackets.
fn message_id_field(text: &str) -> Option<String> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if !line.get(..11).is_some_and(|name| name.eq_ignore_ascii_case("message-id:")) {
            continue;
        }
        let mut value = line[11..].trim().to_string();
        if value.is_empty() {
            // Folded: the id is on the next line.
            value = lines.next().unwrap_or_default().trim().to_string();
        }
        let id = match (value.find('<'), value.find('>')) {
            (Some(start), Some(end)) if start < end => value[start + 1..end].trim(),
            _ => value.split_whitespace().next().unwrap_or_default(),
        };
        if !id.is_empty() {
            return Some(id.to_string());
        }
    }
    None
}

fn header_ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        HeaderValue::Text(id) => vec![id.to_string()],
        _ => Vec::new(),
    }
}

fn bare_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for id in ids {
        let id = bare_id(&id);
        if !id.is_empty() && !kept.contains(&id) {
            kept.push(id);
        }
    }
    kept
}

/// Words of a server reply, split where codes touch punctuation ("550-5.1.1", "#550", "'550").
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || "()[]<>'\";,:#=-".contains(c))
        .map(|t| t.trim_end_matches('.'))
        .filter(|t| !t.is_empty())
}

/// An SMTP reply code of a refusal: 4xx or 5xx.
fn is_reply_code(token: &str) -> bool {
    matches!(token.as_bytes(), [b'4' | b'5', b'0'..=b'5', b'0'..=b'9'])
}

/// An RFC 3463 enhanced status code "class.subject.detail"; class 2 (success) only where the
/// text is a Status field, since in prose "2.0.1" is more often a version number.
fn is_status(token: &str, allow_success: bool) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [class, subject, detail] = parts.as_slice() else { return false };
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    (matches!(*class, "4" | "5") || (allow_success && *class == "2")) && number(*subject) && number(*detail)
}

/// The first enhanced status code in `text`.
fn status_in(text: &str, allow_success: bool) -> Option<String> {
    tokens(text).find(|t| is_status(t, allow_success)).map(str::to_string)
}

/// Whitespace collapsed, Exchange's "#…##" decoration dropped, at most MAX_DIAGNOSTIC characters.
fn tidy(text: &str) -> Option<String> {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = collapsed.trim_matches(|c: char| c == '#' || c.is_whitespace());
    if trimmed.is_empty() {
        return None;
    }
    Some(match trimmed.char_indices().nth(MAX_DIAGNOSTIC) {
        Some((cut, _)) => trimmed[..cut].trim_end().to_string(),
        None => trimmed.to_string(),
    })
}

const DELAYED: &str = "Delivery is delayed; the mail server keeps trying";

/// Words in a 5.7.x reply that say the refusal was a spam verdict rather than another policy.
const SPAM_WORDS: &[&str] = &["spam", "unsolicited", "blocklist", "blacklist", "blocked", "reputation", "junk"];

/// The reason for an agent: the common RFC 3463 codes in plain words, else the server's reply.
fn reason(status: Option<&str>, diagnostic: Option<&str>, permanent: bool) -> String {
    let code = status.and_then(|s| {
        let mut parts = s.split('.').map(|p| p.parse::<u16>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    });
    let spam = diagnostic.is_some_and(|d| {
        let d = d.to_lowercase();
        SPAM_WORDS.iter().any(|w| d.contains(w))
    });
    let plain = match code {
        Some((5, 1, 1)) => Some("The mailbox does not exist"),
        Some((5, 1, 2)) => Some("The recipient's domain does not exist"),
        Some((5, 1, 10)) => Some("The recipient's domain accepts no mail"),
        Some((5, 2, 1)) => Some("The mailbox is disabled"),
        Some((4 | 5, 2, 2)) => Some("The mailbox is full"),
        Some((5, 2, 3) | (5, 3, 4)) => Some("The message is too large for the recipient"),
        Some((4 | 5, 4, 7)) if permanent => Some("Delivery gave up: the recipient's server could not be reached in time"),
        Some((5, 4, _)) => Some("The recipient's server could not be reached"),
        Some((5, 7, _)) if spam => Some("The recipient's server refused the message as spam"),
        Some((5, 7, _)) => Some("The recipient's server refused the message by its policy"),
        Some((4, _, _)) if permanent => Some("Delivery failed after repeated temporary errors"),
        Some((4, _, _)) => Some(DELAYED),
        _ => None,
    };
    match (plain, status) {
        (Some(plain), Some(status)) if permanent || plain == DELAYED => format!("{plain} ({status})."),
        // A temporary condition with its own words (a full mailbox): say it is not final yet.
        (Some(plain), Some(status)) => format!("{plain} ({status}). The mail server keeps trying."),
        _ if !permanent => format!("{DELAYED}."),
        _ => match diagnostic.or(status) {
            Some(detail) => format!("The message could not be delivered: {}.", detail.trim_end_matches('.')),
            None => "The message could not be delivered.".to_string(),
        },
    }
}

// --- Auto-replies -----------------------------------------------------------------------------

/// Subjects autoresponders use (lowercase prefixes). Only trusted together with a header typical
/// of an autoresponder: a person may well write "Autoreply not working".
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "automatic reply",
    "auto:",
    "autoreply",
    "auto-reply",
    "auto reply",
    "[auto-reply]",
    "[autoreply]",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatisch antwoord",
    "autosvar",
];

/// Words in an X-Mailer that name an autoresponder.
const AUTO_REPLY_MAILERS: &[&str] = &["vacation", "autorespond", "autoreply", "auto-reply", "out of office"];

fn is_auto_reply(mail: &Message<'_>) -> bool {
    let header = |name: &'static str| mail.header_raw(name).map(str::trim);
    let words = |value: &str| {
        value
            .split(|c: char| c == ',' || c == ';' || c == '(' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    let says_yes = |value: &str| !matches!(words(value).first().map(String::as_str), Some("no" | "false" | "0"));
    // RFC 3834: anything but "no" was sent by a machine.
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| words(v).first().map(String::as_str) != Some("no"));
    let vendor = header("X-Autoreply").is_some_and(says_yes)
        || header("X-Autorespond").is_some_and(says_yes)
        || header("X-Auto-Response-Suppress").is_some_and(|v| words(v).iter().any(|w| w == "oof" || w == "all"));
    // "bulk" and "list" are mailing lists, not auto-replies: those are left to the caller.
    let precedence = header("Precedence").is_some_and(|v| v.eq_ignore_ascii_case("auto_reply") || v.eq_ignore_ascii_case("auto-reply"));
    if auto_submitted || vendor || precedence {
        return true;
    }
    let generated = header("X-MS-Exchange-Generated-Message-Source").is_some()
        || header("X-Mailer").is_some_and(|v| {
            let v = v.to_lowercase();
            AUTO_REPLY_MAILERS.iter().any(|m| v.contains(m))
        });
    let subject = mail.subject().unwrap_or_default().trim().to_lowercase();
    generated && AUTO_REPLY_SUBJECTS.iter().any(|p| subject.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::threading::our_reply_in_message_id;
    use switchboard_models::{ConversationId, MessageId};

    /// Our Message-ID of the reply the fixtures return (see `our_message_id`).
    const SB_ID: &str = "sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com";

    /// Classifies the fixture with LF and with CRLF line endings; both must agree.
    fn classify_both(fixture: &str) -> Option<Automatic> {
        assert!(!fixture.contains('\r'), "fixtures are written with LF");
        let lf = classify(fixture.as_bytes());
        let crlf = classify(fixture.replace('\n', "\r\n").as_bytes());
        assert_eq!(lf, crlf, "LF and CRLF line endings classify alike");
        lf
    }

    fn bounce(fixture: &str) -> Bounce {
        match classify_both(fixture) {
            Some(Automatic::Bounce(bounce)) => bounce,
            other => panic!("expected a bounce, got {other:?}"),
        }
    }

    const POSTFIX_UNKNOWN_USER: &str = r#"Return-Path: <>
Delivered-To: support@support.example.com
Received: from mx.customer.example (mx.customer.example [203.0.113.5])
    by mail.support.example.com (Postfix) with ESMTPS id 5B3E2C0124
    for <support@support.example.com>; Tue,  4 Jun 2024 10:00:03 +0200 (CEST)
Date: Tue,  4 Jun 2024 10:00:02 +0200 (CEST)
From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: support@support.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="4F2A1C0123.1717488002/mx.customer.example"
Content-Transfer-Encoding: 8bit
Message-Id: <20240604080002.5B3E2C0124@mx.customer.example>

This is a MIME-encapsulated message.

--4F2A1C0123.1717488002/mx.customer.example
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.customer.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<nobody@customer.example>: unknown user: "nobody"

--4F2A1C0123.1717488002/mx.customer.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example
X-Postfix-Queue-ID: 4F2A1C0123
X-Postfix-Sender: rfc822; support@support.example.com
Arrival-Date: Tue,  4 Jun 2024 10:00:01 +0200 (CEST)

Final-Recipient: rfc822; nobody@customer.example
Original-Recipient: rfc822;Nobody@customer.example
Action: failed
Status: 5.1.1
Diagnostic-Code: X-Postfix; unknown user: "nobody"

--4F2A1C0123.1717488002/mx.customer.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <support@support.example.com>
Received: from mail.support.example.com (mail.support.example.com [192.0.2.25])
    by mx.customer.example (Postfix) with ESMTPS id 4F2A1C0123
    for <Nobody@customer.example>; Tue,  4 Jun 2024 10:00:01 +0200 (CEST)
From: Example Support <support@support.example.com>
Reply-To: support+c0190a1b2c3d47e8f9a0b1c2d3e4f5a6b@support.example.com
To: Nobody@customer.example
Subject: Re: Where is my order?
Message-ID: <reply-123@support.example.com>
In-Reply-To: <CAF=abc123@mail.gmail.com>
Date: Tue, 04 Jun 2024 08:00:01 +0000

--4F2A1C0123.1717488002/mx.customer.example--
"#;

    #[test]
    fn postfix_report_for_an_unknown_user() {
        assert_eq!(
            bounce(POSTFIX_UNKNOWN_USER),
            Bounce {
                original_message_ids: vec!["reply-123@support.example.com".to_string()],
                recipient: Some("nobody@customer.example".to_string()),
                status: Some("5.1.1".to_string()),
                diagnostic: Some(r#"unknown user: "nobody""#.to_string()),
                permanent: true,
                reason: "The mailbox does not exist (5.1.1).".to_string(),
            }
        );
    }

    const GMAIL_NO_SUCH_USER: &str = r#"Delivered-To: support@support.example.com
Return-Path: <>
Received: from mail-sor-f69.google.com (mail-sor-f69.google.com [209.85.220.69])
        by mail.support.example.com (Postfix) with ESMTPS id 7C1D2E0125
        for <support@support.example.com>; Tue, 04 Jun 2024 01:00:06 -0700 (PDT)
X-Failed-Recipients: ann.lee.typo@gmail.com
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: support@support.example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
In-Reply-To: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
Message-ID: <665ec8a6.170a0220.3c1d2.6f3aSMTPIN_ADDED_BROKEN@mx.google.com>
Date: Tue, 04 Jun 2024 01:00:06 -0700 (PDT)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="0000000000004e3b2a061a0c1d2e"; report-type=delivery-status

--0000000000004e3b2a061a0c1d2e
Content-Type: multipart/alternative; boundary="0000000000004e3b3a061a0c1d2e"

--0000000000004e3b3a061a0c1d2e
Content-Type: text/plain; charset="UTF-8"


** Address not found **

Your message wasn't delivered to ann.lee.typo@gmail.com because the address couldn't be found, or is unable to receive mail.

Learn more here: https://support.google.com/mail/?p=NoSuchUser

The response was:

The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser

--0000000000004e3b3a061a0c1d2e
Content-Type: text/html; charset="UTF-8"

<html><body><h2>Address not found</h2><p>Your message wasn't delivered to <b>ann.lee.typo@gmail.com</b> because the address couldn't be found, or is unable to receive mail.</p></body></html>

--0000000000004e3b3a061a0c1d2e--

--0000000000004e3b2a061a0c1d2e
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mail.support.example.com
Arrival-Date: Tue, 04 Jun 2024 01:00:05 -0700 (PDT)
X-Original-Message-ID: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>

Final-Recipient: rfc822; ann.lee.typo@gmail.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.102.27, the server for the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
 550-5.1.1 double-checking the recipient's email address for typos or
 550-5.1.1 unnecessary spaces. For more information, go to
 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-a6c8c2b1e0asi123456866b.123 - gsmtp
Last-Attempt-Date: Tue, 04 Jun 2024 01:00:06 -0700 (PDT)

--0000000000004e3b2a061a0c1d2e
Content-Type: message/rfc822

Return-Path: <support@support.example.com>
Received: from app.support.example.com (app.support.example.com [192.0.2.10])
        by mail.support.example.com (Postfix) with ESMTPSA id 6A0B1C0120
        for <ann.lee.typo@gmail.com>; Tue, 04 Jun 2024 10:00:04 +0200 (CEST)
MIME-Version: 1.0
From: Example Support <support@support.example.com>
Reply-To: support+c0190a1b2c3d47e8f9a0b1c2d3e4f5a6b@support.example.com
To: ann.lee.typo@gmail.com
Subject: Re: Refund for order 1234
Message-ID: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
In-Reply-To: <CAJx8fE3=k2p@mail.gmail.com>
References: <CAJx8fE3=k2p@mail.gmail.com>
Date: Tue, 04 Jun 2024 08:00:04 +0000
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hello Ann,

your refund for order 1234 is on its way.

--0000000000004e3b2a061a0c1d2e--
"#;

    #[test]
    fn gmail_report_with_the_original_attached() {
        // The folded reply, collapsed, is 311 characters: the first 300 are kept.
        let full = "550-5.1.1 The email account that you tried to reach does not exist. Please try \
            550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. \
            For more information, go to 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser \
            a640c23a62f3a-a6c8c2b1e0asi123456866b.123 - gsmtp";
        assert_eq!(full.chars().count(), 311);
        let diagnostic: String = full.chars().take(MAX_DIAGNOSTIC).collect();
        assert!(diagnostic.ends_with("a6c8c2b1e0asi123456866b."));
        assert_eq!(
            bounce(GMAIL_NO_SUCH_USER),
            Bounce {
                original_message_ids: vec![SB_ID.to_string()],
                recipient: Some("ann.lee.typo@gmail.com".to_string()),
                status: Some("5.1.1".to_string()),
                diagnostic: Some(diagnostic),
                permanent: true,
                reason: "The mailbox does not exist (5.1.1).".to_string(),
            }
        );
    }

    #[test]
    fn the_returned_original_names_the_reply_before_the_threading_headers() {
        // Threading headers that point elsewhere lose to the returned original…
        let elsewhere = GMAIL_NO_SUCH_USER
            .replace("In-Reply-To: <sb.", "In-Reply-To: <elsewhere.")
            .replace("References: <sb.", "References: <elsewhere.");
        assert_eq!(bounce(&elsewhere).original_message_ids, vec![SB_ID.to_string()]);
        // …and are used when the original is not returned.
        let without_original = elsewhere.replace("Content-Type: message/rfc822", "Content-Type: application/octet-stream");
        assert_eq!(
            bounce(&without_original).original_message_ids,
            vec![SB_ID.replace("sb.", "elsewhere.")]
        );
    }

    const GMAIL_DELAYED: &str = r#"Delivered-To: support@support.example.com
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: support@support.example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Delay)
References: <CAJx8fE3=k2p@mail.gmail.com> <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
In-Reply-To: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
Message-ID: <665f1a2b.050a0220.1b2c3.9d4eGMR@mx.google.com>
Date: Tue, 04 Jun 2024 03:00:12 -0700 (PDT)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="00000000000077aa88061a0d2e3f"; report-type=delivery-status

--00000000000077aa88061a0d2e3f
Content-Type: text/plain; charset="UTF-8"

** Delivery incomplete **

There was a temporary problem delivering your message to ben@slow.example. Gmail will retry for 46 more hours. You'll be notified if the delivery fails permanently.

The response was:

The recipient server did not accept our requests to connect. For more information, go to https://support.google.com/mail/answer/7720 [mx.slow.example. 198.51.100.7: timed out]

--00000000000077aa88061a0d2e3f
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Arrival-Date: Tue, 04 Jun 2024 01:00:05 -0700 (PDT)

Final-Recipient: rfc822; ben@slow.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; The recipient server did not accept our requests to connect. For more information, go to https://support.google.com/mail/answer/7720 [mx.slow.example. 198.51.100.7: timed out]
Last-Attempt-Date: Tue, 04 Jun 2024 03:00:12 -0700 (PDT)
Will-Retry-Until: Thu, 06 Jun 2024 01:00:05 -0700 (PDT)

--00000000000077aa88061a0d2e3f--
"#;

    #[test]
    fn a_delayed_report_is_not_a_failure_yet() {
        assert_eq!(
            bounce(GMAIL_DELAYED),
            Bounce {
                // No original returned: In-Reply-To names it (References is not needed).
                original_message_ids: vec![SB_ID.to_string()],
                recipient: Some("ben@slow.example".to_string()),
                status: Some("4.4.1".to_string()),
                diagnostic: Some(
                    "The recipient server did not accept our requests to connect. For more information, go to \
                     https://support.google.com/mail/answer/7720 [mx.slow.example. 198.51.100.7: timed out]"
                        .to_string()
                ),
                permanent: false,
                reason: "Delivery is delayed; the mail server keeps trying (4.4.1).".to_string(),
            }
        );
        // Without In-Reply-To, References, newest first.
        let only_references = GMAIL_DELAYED.replace(&format!("In-Reply-To: <{SB_ID}>\n"), "");
        assert_ne!(only_references, GMAIL_DELAYED);
        assert_eq!(
            bounce(&only_references).original_message_ids,
            vec![SB_ID.to_string(), "CAJx8fE3=k2p@mail.gmail.com".to_string()]
        );
    }

    const EXCHANGE_UNDELIVERABLE: &str = r#"Received: from EX01.customer.example (10.0.0.5) by mx.customer.example
 (203.0.113.5) with Microsoft SMTP Server id 14.3.498.0; Tue, 4 Jun 2024 08:05:12 +0000
From: postmaster@customer.example
To: support@support.example.com
Date: Tue, 4 Jun 2024 08:05:12 +0000
Subject: Undeliverable: Re: Your order 1234
Message-ID: <b8e2a1c41d2e4f009a6b3c2d1e0f9a8b@EX01.customer.example>
Content-Language: en-US
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit

Delivery has failed to these recipients or groups:

Ann Lee (ann.lee@customer.example)
The e-mail address you entered couldn't be found. Please check the recipient's e-mail address and try to resend the message. If the problem continues, please contact your helpdesk.

Diagnostic information for administrators:

Generating server: EX01.customer.example

ann.lee@customer.example
#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##

Original message headers:

Received: from mail.support.example.com (192.0.2.25) by EX01.customer.example
 (10.0.0.5) with Microsoft SMTP Server id 14.3.498.0; Tue, 4 Jun 2024 08:05:11 +0000
From: Example Support <support@support.example.com>
To: Ann Lee <ann.lee@customer.example>
Subject: Re: Your order 1234
Message-ID: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
In-Reply-To: <DB9PR01MB1234ABCD@DB9PR01MB1234.eurprd01.prod.exchangelabs.com>
Date: Tue, 4 Jun 2024 08:05:04 +0000
MIME-Version: 1.0
Content-Type: text/plain
"#;

    #[test]
    fn exchange_undeliverable_from_the_postmaster() {
        assert_eq!(
            bounce(EXCHANGE_UNDELIVERABLE),
            Bounce {
                // Quoted in the notice's "Original message headers".
                original_message_ids: vec![SB_ID.to_string()],
                recipient: Some("ann.lee@customer.example".to_string()),
                status: Some("5.1.1".to_string()),
                diagnostic: Some("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found".to_string()),
                permanent: true,
                reason: "The mailbox does not exist (5.1.1).".to_string(),
            }
        );
        // The same words from a person are a person's mail.
        let from_a_person = EXCHANGE_UNDELIVERABLE.replace("From: postmaster@", "From: dana.fox@");
        assert_eq!(classify_both(&from_a_person), None);
    }

    const EXIM_DELAYED: &str = r#"Return-Path: <>
Delivered-To: support@support.example.com
From: Mail Delivery System <Mailer-Daemon@mail.support.example.com>
To: support@support.example.com
Subject: Warning: message 1sEabc-000123-AB delayed 24 hours
Auto-Submitted: auto-replied
Message-Id: <E1sEfgh-000456-CD@mail.support.example.com>
Date: Wed, 05 Jun 2024 10:00:03 +0200

This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mail.support.example.com.

The message identifier is:     1sEabc-000123-AB
The subject of the message is: Re: Your order 1234
The date of the message is:    Tue, 04 Jun 2024 10:00:01 +0200

The address to which the message has not yet been delivered is:

  ben@slow.example
    host mx.slow.example [198.51.100.7]
    Connection timed out

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered. Eventually the mail delivery software will give up,
and when that happens, the message will be returned to you.

------ This is a copy of the message's headers. ------

Received: from app.support.example.com ([192.0.2.10])
    by mail.support.example.com with esmtpsa (Exim 4.97)
    id 1sEabc-000123-AB; Tue, 04 Jun 2024 10:00:01 +0200
From: Example Support <support@support.example.com>
To: ben@slow.example
Subject: Re: Your order 1234
Message-ID: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
Date: Tue, 04 Jun 2024 08:00:01 +0000
"#;

    #[test]
    fn an_informal_delay_warning_is_not_a_failure() {
        assert_eq!(
            bounce(EXIM_DELAYED),
            Bounce {
                original_message_ids: vec![SB_ID.to_string()],
                recipient: Some("ben@slow.example".to_string()),
                status: None,
                diagnostic: None,
                permanent: false,
                reason: "Delivery is delayed; the mail server keeps trying.".to_string(),
            }
        );
    }

    const VACATION_REPLY: &str = r#"Return-Path: <ann.lee@customer.example>
Delivered-To: support@support.example.com
From: Ann Lee <ann.lee@customer.example>
To: support+c0190a1b2c3d47e8f9a0b1c2d3e4f5a6b@support.example.com
Subject: Out of Office: Re: Your order 1234
In-Reply-To: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
References: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
Auto-Submitted: auto-replied (vacation)
Precedence: bulk
X-Sieve: Pigeonhole Sieve 0.5.21
Message-ID: <dovecot-sieve-1717488123-1234-0@mail.customer.example>
Date: Tue, 04 Jun 2024 10:02:03 +0200
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hello, I am on holiday until 10 June and will read your mail when I am back.

Ann
"#;

    #[test]
    fn an_out_of_office_reply_is_an_auto_reply() {
        assert_eq!(classify_both(VACATION_REPLY), Some(Automatic::AutoReply));
        // "Auto-Submitted: no" is a person; Precedence: bulk and the subject alone prove nothing.
        let written_by_hand = VACATION_REPLY.replace("Auto-Submitted: auto-replied (vacation)", "Auto-Submitted: no");
        assert_ne!(written_by_hand, VACATION_REPLY);
        assert_eq!(classify_both(&written_by_hand), None);
    }

    const EXCHANGE_AUTO_REPLY: &str = r#"Return-Path: <ben.ortiz@customer.example>
Delivered-To: support@support.example.com
From: Ben Ortiz <ben.ortiz@customer.example>
To: Example Support <support@support.example.com>
Subject: Automatic reply: Re: Invoice question
Thread-Topic: Re: Invoice question
Thread-Index: AQHatl2bq3MZ1x0pXkuO0f3p6Yq9Ag==
Date: Tue, 4 Jun 2024 08:03:10 +0000
Message-ID: <4a8f2c1d9e7b4e6aa1b2c3d4e5f60718@EX02.customer.example>
References: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
In-Reply-To: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
X-MS-Has-Attach:
X-MS-Exchange-Organization-SCL: -1
X-Auto-Response-Suppress: All
X-MS-Exchange-Organization-AuthAs: Internal
X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

I'm out of the office until Monday 10 June with no access to email. For urge=
nt matters please call the front desk.
"#;

    #[test]
    fn an_exchange_automatic_reply_is_an_auto_reply() {
        assert_eq!(classify_both(EXCHANGE_AUTO_REPLY), Some(Automatic::AutoReply));
        // Without X-Auto-Response-Suppress, the subject with Exchange's generator header still tells.
        let without_suppress = EXCHANGE_AUTO_REPLY.replace("X-Auto-Response-Suppress: All\n", "");
        assert_ne!(without_suppress, EXCHANGE_AUTO_REPLY);
        assert_eq!(classify_both(&without_suppress), Some(Automatic::AutoReply));
        // The subject alone does not.
        let subject_only =
            without_suppress.replace("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\n", "");
        assert_ne!(subject_only, without_suppress);
        assert_eq!(classify_both(&subject_only), None);
    }

    const CUSTOMER_ABOUT_AUTO: &str = r#"Return-Path: <carla@customer.example>
Delivered-To: support@support.example.com
From: Carla Diaz <carla@customer.example>
To: support@support.example.com
Subject: Autoreply keeps switching itself on (and auto-renewal charged twice)
X-Mailer: Apple Mail (2.3774.600.62)
Message-ID: <5E1C7F0A-3B2D-4C1E-9F8A-2D6B7C8E9F01@customer.example>
Date: Tue, 4 Jun 2024 09:12:44 +0200
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hi,

since the update the autoreply in my account turns itself on every morning, so my
customers get "Out of office" mails all day. And my auto-renewal was charged twice.

Carla
"#;

    #[test]
    fn a_customer_writing_about_auto_replies_is_a_customer() {
        assert_eq!(classify_both(CUSTOMER_ABOUT_AUTO), None);
        let out_of_office_subject =
            CUSTOMER_ABOUT_AUTO.replace("Subject: Autoreply keeps", "Subject: Out of office replies keep");
        assert_eq!(classify_both(&out_of_office_subject), None);
    }

    const MAILING_LIST: &str = r#"Return-Path: <bounces+news=support.example.com@lists.acme.example>
Delivered-To: support@support.example.com
From: ACME Product News <news@lists.acme.example>
To: support@support.example.com
Subject: June product update: auto-scaling is here
Precedence: bulk
List-Id: ACME product news <news.lists.acme.example>
List-Unsubscribe: <mailto:leave-news@lists.acme.example>, <https://lists.acme.example/leave>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
Message-ID: <news-2024-06.4711@lists.acme.example>
Date: Tue, 4 Jun 2024 06:00:00 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello,

this month: auto-scaling for every plan.
"#;

    #[test]
    fn a_mailing_list_is_left_to_the_caller() {
        assert_eq!(classify_both(MAILING_LIST), None);
    }

    const POSTFIX_DELIVERED: &str = r#"Return-Path: <>
Delivered-To: support@support.example.com
From: MAILER-DAEMON@mail.support.example.com (Mail Delivery System)
To: support@support.example.com
Subject: Successful Mail Delivery Report
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="8A1F2C0456.1717488100/mail.support.example.com"
Message-Id: <20240604080140.9B4C1C0457@mail.support.example.com>
Date: Tue,  4 Jun 2024 10:01:40 +0200 (CEST)

This is a MIME-encapsulated message.

--8A1F2C0456.1717488100/mail.support.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.support.example.com.

Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems.

                   The mail system

<carla@customer.example>: delivery via mx.customer.example[203.0.113.5]:25:
    250 2.0.0 Ok: queued as 7D1E2F0011

--8A1F2C0456.1717488100/mail.support.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.support.example.com
X-Postfix-Queue-ID: 8A1F2C0456
X-Postfix-Sender: rfc822; support@support.example.com
Arrival-Date: Tue,  4 Jun 2024 10:01:39 +0200 (CEST)

Final-Recipient: rfc822; carla@customer.example
Original-Recipient: rfc822;carla@customer.example
Action: delivered
Status: 2.0.0
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 7D1E2F0011

--8A1F2C0456.1717488100/mail.support.example.com
Content-Description: Message Headers
Content-Type: text/rfc822-headers

Return-Path: <support@support.example.com>
From: Example Support <support@support.example.com>
To: carla@customer.example
Subject: Re: Autoreply keeps switching itself on
Message-ID: <sb.0190a1b2c3d47e8f9a0b1c2d3e4f5a6b.0190a1b2c3d47e8f9a0b1c2d3e4f5a7c@support.example.com>
Date: Tue, 04 Jun 2024 08:01:39 +0000

--8A1F2C0456.1717488100/mail.support.example.com--
"#;

    #[test]
    fn a_delivered_report_is_ignored_not_a_failure() {
        assert_eq!(classify_both(POSTFIX_DELIVERED), Some(Automatic::AutoReply));
        // One recipient failed, one was delivered: the failure is the news.
        let mixed = POSTFIX_DELIVERED.replace(
            "Final-Recipient: rfc822; carla@customer.example\n",
            "Final-Recipient: rfc822; Dan@Customer.example\nAction: failed\nStatus: 5.2.2\n\n\
             Final-Recipient: rfc822; carla@customer.example\n",
        );
        assert_ne!(mixed, POSTFIX_DELIVERED);
        assert_eq!(
            bounce(&mixed),
            Bounce {
                original_message_ids: vec![SB_ID.to_string()],
                recipient: Some("dan@customer.example".to_string()),
                status: Some("5.2.2".to_string()),
                diagnostic: None,
                permanent: true,
                reason: "The mailbox is full (5.2.2).".to_string(),
            }
        );
    }

    #[test]
    fn other_machine_mail_is_ignored() {
        let read_receipt = "From: Ann Lee <ann.lee@customer.example>\n\
            To: support@support.example.com\n\
            Subject: Read: Re: Your order 1234\n\
            MIME-Version: 1.0\n\
            Content-Type: multipart/report; report-type=disposition-notification; boundary=\"mdn\"\n\
            \n\
            --mdn\n\
            Content-Type: text/plain\n\
            \n\
            Your message was read.\n\
            \n\
            --mdn\n\
            Content-Type: message/disposition-notification\n\
            \n\
            Final-Recipient: rfc822; ann.lee@customer.example\n\
            Disposition: manual-action/MDN-sent-manually; displayed\n\
            \n\
            --mdn--\n";
        assert_eq!(classify_both(read_receipt), Some(Automatic::AutoReply));
        let daemon_notice = "From: MAILER-DAEMON@mail.support.example.com\n\
            To: support@support.example.com\n\
            Subject: Postmaster notify: see transcript for details\n\
            \n\
            Queue report.\n";
        assert_eq!(classify_both(daemon_notice), Some(Automatic::AutoReply));
        let vendor_header = "From: Eve <eve@customer.example>\n\
            To: support@support.example.com\n\
            Subject: Thanks for your mail\n\
            X-Autoreply: yes\n\
            \n\
            We will answer soon.\n";
        assert_eq!(classify_both(vendor_header), Some(Automatic::AutoReply));
        let person = vendor_header.replace("X-Autoreply: yes\n", "");
        assert_eq!(classify_both(&person), None);
    }

    #[test]
    fn folded_fields_and_blocks() {
        for text in [
            "Reporting-MTA: dns; a.example\n\nFinal-Recipient: rfc822; x@y.example\nAction: failed\nDiagnostic-Code: smtp; 550 no\n  such user\n",
            "Reporting-MTA: dns; a.example\r\n\r\nFinal-Recipient: rfc822; x@y.example\r\nAction: failed\r\nDiagnostic-Code: smtp; 550 no\r\n\tsuch user\r\n",
        ] {
            let records = recipient_records(text);
            assert_eq!(records.len(), 1, "{text:?}");
            assert_eq!(field(&records[0], "diagnostic-code"), Some("smtp; 550 no such user"));
            assert_eq!(outcome(&records[0]), Some(Outcome::Failed));
        }
        // Recipients run together without the blank line.
        let together = recipient_records("Final-Recipient: rfc822; a@x.example\nAction: delivered\nFinal-Recipient: rfc822; b@x.example\nAction: failed\n");
        assert_eq!(together.len(), 2);
        assert_eq!(outcome(&together[1]), Some(Outcome::Failed));
    }

    #[test]
    fn status_codes_and_diagnostics() {
        assert_eq!(status_in("5.1.1 (bad destination mailbox address)", true).as_deref(), Some("5.1.1"));
        assert_eq!(status_in("550-5.7.26 Unauthenticated email", false).as_deref(), Some("5.7.26"));
        assert_eq!(status_in("2.0.0", true).as_deref(), Some("2.0.0"));
        assert_eq!(status_in("Exchange 2.0.1 at 192.0.2.1", false), None);
        assert!(is_reply_code("550") && is_reply_code("421") && !is_reply_code("250") && !is_reply_code("2024"));
        assert_eq!(diagnostic_code("smtp; 550  5.1.1\t user unknown").as_deref(), Some("550 5.1.1 user unknown"));
        assert_eq!(diagnostic_code("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found").as_deref(), Some("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"));
        assert_eq!(diagnostic_code("smtp;   "), None);
        let long = diagnostic_code(&format!("smtp; {}", "é".repeat(400))).unwrap();
        assert_eq!(long.chars().count(), MAX_DIAGNOSTIC);
        assert_eq!(typed_address("rfc822; <Ann@Example.COM>").as_deref(), Some("ann@example.com"));
        assert_eq!(typed_address("rfc822;"), None);
    }

    #[test]
    fn reasons_in_plain_words() {
        let cases = [
            (Some("5.1.1"), None, true, "The mailbox does not exist (5.1.1)."),
            (Some("5.1.2"), None, true, "The recipient's domain does not exist (5.1.2)."),
            (Some("5.1.10"), None, true, "The recipient's domain accepts no mail (5.1.10)."),
            (Some("5.2.1"), None, true, "The mailbox is disabled (5.2.1)."),
            (Some("5.2.2"), None, true, "The mailbox is full (5.2.2)."),
            (Some("4.2.2"), None, false, "The mailbox is full (4.2.2). The mail server keeps trying."),
            (Some("5.2.3"), None, true, "The message is too large for the recipient (5.2.3)."),
            (Some("5.4.4"), None, true, "The recipient's server could not be reached (5.4.4)."),
            (Some("4.4.7"), None, true, "Delivery gave up: the recipient's server could not be reached in time (4.4.7)."),
            (Some("5.7.1"), Some("550 5.7.1 Message rejected as spam"), true, "The recipient's server refused the message as spam (5.7.1)."),
            (Some("5.7.1"), Some("550 5.7.1 Relaying denied"), true, "The recipient's server refused the message by its policy (5.7.1)."),
            (Some("4.4.1"), None, false, "Delivery is delayed; the mail server keeps trying (4.4.1)."),
            (Some("4.3.0"), None, true, "Delivery failed after repeated temporary errors (4.3.0)."),
            (Some("5.3.0"), Some("554 5.3.0 Other mail system problem."), true, "The message could not be delivered: 554 5.3.0 Other mail system problem."),
            (Some("5.0.0"), None, true, "The message could not be delivered: 5.0.0."),
            (None, None, true, "The message could not be delivered."),
            (None, None, false, "Delivery is delayed; the mail server keeps trying."),
        ];
        for (status, diagnostic, permanent, expected) in cases {
            assert_eq!(reason(status, diagnostic, permanent), expected, "{status:?} {diagnostic:?}");
        }
    }

    #[test]
    fn our_reply_ids_name_conversation_and_message() {
        let conversation = ConversationId::new();
        let message = MessageId::new();
        let id = crate::email::our_message_id(conversation, message, "support.example.com");
        assert_eq!(our_reply_in_message_id(&id), Some((conversation, message)));
        assert_eq!(
            our_reply_in_message_id(SB_ID),
            Some((
                ConversationId(uuid::Uuid::parse_str("0190a1b2c3d47e8f9a0b1c2d3e4f5a6b").unwrap()),
                MessageId(uuid::Uuid::parse_str("0190a1b2c3d47e8f9a0b1c2d3e4f5a7c").unwrap()),
            ))
        );
        assert_eq!(our_reply_in_message_id("reply-123@support.example.com"), None);
        assert_eq!(our_reply_in_message_id("<sb.nothex.alsonot@support.example.com>"), None);
    }
}
