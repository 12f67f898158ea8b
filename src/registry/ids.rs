//! The registry's ids and key secrets: parsed once, so an invalid one cannot travel.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Longest part after `acc_`.
const ACCOUNT_ID_MAX: usize = 40;
/// What starts every API key, so secret scanners can find a leaked one.
pub const KEY_PREFIX: &str = "pgk_";
/// Random bytes in a key (256 bits; the spec asks for at least 128).
const KEY_BYTES: usize = 32;

/// An account id: `acc_` + 1–40 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// `s` as an account id, or the reason it is not one.
    pub fn parse(s: &str) -> Result<AccountId, String> {
        let rest = s.strip_prefix("acc_").ok_or_else(|| format!("an account id starts with 'acc_' (got {:?})", clip(s)))?;
        if rest.is_empty() || rest.len() > ACCOUNT_ID_MAX || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("an account id is 'acc_' and 1-{ACCOUNT_ID_MAX} of A-Z, a-z, 0-9, '_', '-' (got {:?})", clip(s)));
        }
        Ok(AccountId(s.to_owned()))
    }

    /// A fresh random id.
    pub fn generate() -> AccountId {
        AccountId(format!("acc_{}", hex(&rand::random::<[u8; 8]>())))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> String {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's id (`key_` + 20 hex digits): how a key is listed and revoked, never how it signs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// `s` as a key id.
    pub fn parse(s: &str) -> Result<KeyId, String> {
        match s.strip_prefix("key_") {
            Some(rest) if rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => Ok(KeyId(s.to_owned())),
            _ => Err(format!("a key id is 'key_' and 20 lowercase hex digits (got {:?})", clip(s))),
        }
    }

    /// A fresh random id.
    pub fn generate() -> KeyId {
        KeyId(format!("key_{}", hex(&rand::random::<[u8; 10]>())))
    }

    /// The id of the bootstrap key (`--admin-key`), which is not stored.
    pub fn bootstrap() -> KeyId {
        KeyId("key_admin".into())
    }

    /// The id the CLI's changes are audited under.
    pub fn cli() -> KeyId {
        KeyId("key_cli".into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "key_admin" || s == "key_cli" { Ok(KeyId(s)) } else { KeyId::parse(&s) }
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh API key: `pgk_` and 43 base64url characters (256 random bits).
pub fn new_key() -> Secret {
    Secret::new(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; KEY_BYTES]>())))
}

/// Whether `given` has the shape of a key this server makes: checked before any store read, so
/// garbage costs nothing.
pub fn looks_like_key(given: &str) -> bool {
    given.len() == KEY_PREFIX.len() + 43
        && given.starts_with(KEY_PREFIX)
        && given.as_bytes()[KEY_PREFIX.len()..].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// The stored form of a key: SHA-256, hex. One unsalted hash is right for 256 random bits
/// (nothing to guess), and lets the store find a key by it.
pub fn key_digest(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// At most 64 characters of `s`, for error messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_generate() {
        assert!(AccountId::parse("acc_shop-A_1").is_ok());
        for bad in ["", "acc_", "shop", "acc_a b", &format!("acc_{}", "a".repeat(41)), "acc_é"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
        assert!(AccountId::parse(AccountId::generate().as_str()).is_ok());
        assert!(KeyId::parse(KeyId::generate().as_str()).is_ok());
        assert!(KeyId::parse("key_admin").is_err(), "the bootstrap id is not a key id anyone can name");
    }

    #[test]
    fn keys_are_random_recognisable_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(looks_like_key(a.expose()), "{}", a.expose());
        assert!(!looks_like_key("pgk_short") && !looks_like_key(&a.expose().replace("pgk_", "xxx_")));
        assert_eq!(key_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
