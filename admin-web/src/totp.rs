//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, six digits), the codes
//! authenticator apps show, and the base32 their setup keys are written in.

use hmac::{Hmac, Mac};

/// Seconds per code.
const STEP_SECONDS: i64 = 30;
/// Codes of the step before and after now are taken too (a clock a little off, a slow typist).
const DRIFT_STEPS: i64 = 1;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random secret (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 20];
    rand::thread_rng().fill_bytes(&mut secret);
    secret
}

/// The six-digit code of `step` (RFC 4226's HOTP with the step as its counter).
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", value % 1_000_000)
}

/// The step `code` belongs to near `unix_seconds`, if it is right; spaces a person typed are ignored.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_seconds.div_euclid(STEP_SECONDS);
    (now - DRIFT_STEPS..=now + DRIFT_STEPS).find(|step| crate::panel::auth::constant_time_eq(&code_at(secret, *step), &code))
}

/// RFC 4648 base32, without padding (how setup keys are shown).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Reads base32 (any case, spaces and padding ignored); None when it is not base32.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = ALPHABET.iter().position(|a| char::from(*a) == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The `otpauth://` address an authenticator app reads (typed in, or from a QR code).
pub fn setup_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20");
    format!("otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30", enc(issuer), enc(account), base32(secret), enc(issuer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_in_six_digits() {
        let secret = b"12345678901234567890";
        for (time, code) in [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(code_at(secret, time / 30), code, "at {time}");
        }
    }

    #[test]
    fn a_code_is_taken_one_step_either_side_and_not_further() {
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "287 082", 59), Some(1));
        assert_eq!(matching_step(secret, "287082", 89), Some(1), "the step before");
        assert_eq!(matching_step(secret, "287082", 30 * 4), None, "too old");
        assert_eq!(matching_step(secret, "28708", 59), None);
        assert_eq!(matching_step(secret, "abcdef", 59), None);
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(from_base32("mzxw6ytboi======").unwrap(), b"foobar");
        let secret = new_secret();
        assert_eq!(from_base32(&base32(&secret)).unwrap(), secret);
        assert!(from_base32("not base32!").is_none());
    }
}
