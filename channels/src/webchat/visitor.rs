//! Visitor tokens: the widget's identity, `<visitor id>.<hmac>`, kept in its localStorage.
//! Signed so nobody can read another visitor's conversation by guessing an id.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

pub struct VisitorKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for VisitorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorKeys(<secret>)")
    }
}

impl VisitorKeys {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self { secret: secret.into() }
    }

    fn mac(&self, visitor: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"webchat-visitor:");
        mac.update(visitor.as_bytes());
        mac
    }

    /// A new visitor and its token.
    pub fn issue(&self) -> (String, String) {
        let visitor = Uuid::new_v4().to_string();
        let token = format!("{visitor}.{}", hex::encode(self.mac(&visitor).finalize().into_bytes()));
        (visitor, token)
    }

    /// The token of the embedding site's signed-in user `user_id`: the same visitor on every
    /// device, with an id derived from (not showing) the site's user id.
    pub fn issue_for_site_user(&self, user_id: &str) -> (String, String) {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"webchat-site-user:");
        mac.update(user_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let bytes: [u8; 16] = digest[..16].try_into().expect("a SHA-256 digest has 32 bytes");
        let visitor = uuid::Builder::from_random_bytes(bytes).into_uuid().to_string();
        let token = format!("{visitor}.{}", hex::encode(self.mac(&visitor).finalize().into_bytes()));
        (visitor, token)
    }

    /// The visitor id a token carries, if the token is genuine.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (visitor, signature) = token.split_once('.')?;
        Uuid::parse_str(visitor).ok()?;
        let signature = hex::decode(signature).ok()?;
        self.mac(visitor).verify_slice(&signature).ok()?;
        Some(visitor.to_string())
    }
}

/// What the embedding site computes on its server for its signed-in user: HMAC-SHA256 of the
/// user's id under the shared `webchat.identity_secret`, as lowercase hex.
pub fn sign_site_user(secret: &[u8], user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the embedding site's signature of its user id (`sign_site_user`).
pub fn site_signed(secret: &[u8], user_id: &str, hash: &str) -> bool {
    let Ok(given) = hex::decode(hash.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_user_is_the_same_visitor_everywhere_and_only_with_the_sites_signature() {
        let keys = VisitorKeys::new(b"one".to_vec());
        let (visitor, token) = keys.issue_for_site_user("42");
        assert_eq!(keys.issue_for_site_user("42").0, visitor, "the same user, the same visitor");
        assert_ne!(keys.issue_for_site_user("43").0, visitor);
        assert_eq!(keys.verify(&token), Some(visitor));
        let hash = sign_site_user(b"site", "42");
        assert!(site_signed(b"site", "42", &hash));
        assert!(!site_signed(b"site", "43", &hash), "another user's signature");
        assert!(!site_signed(b"other", "42", &hash));
        assert!(!site_signed(b"site", "42", "not hex"));
    }

    #[test]
    fn tokens_verify_only_with_their_own_key() {
        let keys = VisitorKeys::new(b"one".to_vec());
        let (visitor, token) = keys.issue();
        assert_eq!(keys.verify(&token), Some(visitor.clone()));
        assert_eq!(VisitorKeys::new(b"two".to_vec()).verify(&token), None);
        let forged = format!("{}.{}", Uuid::new_v4(), token.split_once('.').unwrap().1);
        assert_eq!(keys.verify(&forged), None);
        assert_eq!(keys.verify("garbage"), None);
    }
}
