//! One customer across channels, joined only with proof. A customer sends `/link` and is shown
//! a one-time code to send from their other channel; or sends `/link` with a mail address and
//! types back the code mailed there. Agents join two customers by hand. A join groups contacts
//! into one person (`Identities` port); messages and conversations keep their own contact.

use sha2::{Digest, Sha256};
use switchboard_models::Channel;

/// How long a code proves anything.
pub const CODE_LIFETIME_MINUTES: i64 = 15;

/// 32 letters and digits that cannot be misread for one another (no I, O, 0 or 1): a random
/// byte picks one evenly.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// What a customer message asks of the linking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRequest {
    /// `/link`: show a code to send from the other channel.
    ShowCode,
    /// `/link ann@example.com`: mail a code to the address, to be typed back here.
    MailCode(String),
    /// Something shaped like a code; it is one only if it was issued.
    Code(String),
}

/// The linking a message asks for, if any: a line that is `/link` (with an address after it,
/// or not), or a code `XXXX-XXXX` anywhere in it.
pub fn link_request(text: &str) -> Option<LinkRequest> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("/link")) {
            return Some(match words.next() {
                Some(address) => LinkRequest::MailCode(address.trim_matches(['<', '>']).to_lowercase()),
                None => LinkRequest::ShowCode,
            });
        }
    }
    code_in(text).map(LinkRequest::Code)
}

/// The first `XXXX-XXXX` of code letters standing alone in `text`, upper-cased.
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(|word| word.trim_matches('-').to_ascii_uppercase())
        .find(|word| {
            let bytes = word.as_bytes();
            bytes.len() == 9
                && bytes[4] == b'-'
                && bytes.iter().enumerate().all(|(i, b)| i == 4 || CODE_ALPHABET.contains(b))
        })
}

/// A new random code, `XXXX-XXXX` (40 bits).
pub fn new_code() -> String {
    let random = uuid::Uuid::new_v4().into_bytes();
    let letters: String = random[..8].iter().map(|b| CODE_ALPHABET[usize::from(*b) % 32] as char).collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// What is stored of a code.
pub fn code_hash(code: &str) -> String {
    Sha256::digest(code.to_ascii_uppercase().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// How a channel is named to the customer ("your Telegram account").
pub fn channel_words(channel: Channel) -> &'static str {
    match channel {
        Channel::WebChat => "the web chat",
        Channel::Telegram => "your Telegram account",
        Channel::Discord => "your Discord account",
        Channel::Email => "your email address",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_line_asks_for_a_code_and_a_code_is_found_anywhere() {
        assert_eq!(link_request("/link"), Some(LinkRequest::ShowCode));
        assert_eq!(link_request("Re: hello\n\n /LINK  "), Some(LinkRequest::ShowCode));
        assert_eq!(link_request("/link Ann@Example.com"), Some(LinkRequest::MailCode("ann@example.com".into())));
        assert_eq!(link_request("my code is k7q9-m2xa, thanks"), Some(LinkRequest::Code("K7Q9-M2XA".into())));
        assert_eq!(link_request("Subject\n\nK7Q9-M2XA"), Some(LinkRequest::Code("K7Q9-M2XA".into())));
        // Not code letters (0, 1, O, I), too long, or no dash: an ordinary message.
        for text in ["order 1000-2000", "AB10-CDEF", "K7Q9-M2XAB", "K7Q9M2XA", "please link my accounts", "-link"] {
            assert_eq!(link_request(text), None, "{text}");
        }
    }

    #[test]
    fn codes_are_random_readable_and_hashed_case_blind() {
        let (a, b) = (new_code(), new_code());
        assert_ne!(a, b);
        assert_eq!(link_request(&a.to_lowercase()), Some(LinkRequest::Code(a.clone())));
        assert_eq!(code_hash(&a), code_hash(&a.to_lowercase()));
        assert_eq!(code_hash(&a).len(), 64);
    }
}
