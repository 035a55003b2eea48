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

    /// The visitor id a token carries, if the token is genuine.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (visitor, signature) = token.split_once('.')?;
        Uuid::parse_str(visitor).ok()?;
        let signature = hex::decode(signature).ok()?;
        self.mac(visitor).verify_slice(&signature).ok()?;
        Some(visitor.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
