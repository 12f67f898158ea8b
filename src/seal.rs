//! Secrets at rest: what the server must use again (a destination's access token, later webhook
//! and signing secrets) is sealed with AES-256-GCM under `--secrets-key` before it reaches a
//! store, so a table export, a backup or a read-only principal reveals no business's token
//! (`docs/accounts.md#secrets-at-rest`).
//!
//! A sealed value is the text `pgs1:` followed by base64 (standard, padded) of a fresh random
//! 96-bit nonce and the ciphertext with its tag. The value's *place* (which pixel, which field) is
//! bound in as associated data, so a sealed token copied onto another pixel does not open.
//! A stored value without the prefix is plaintext written before sealing existed (Part I): it is
//! still read, and sealed when next written.
//!
//! Keys the server only has to *check* (API keys) are never sealed: they are stored as SHA-256
//! digests (the registry).

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

/// What starts a sealed value.
pub const PREFIX: &str = "pgs1:";
/// The key file created under `--data-dir` when no `--secrets-key` is given.
pub const KEY_FILE: &str = "secrets.key";

/// Seals and opens secrets under one 256-bit key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Why a stored value could not be opened. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not base64, or too short to hold a nonce and a tag.
    #[error("a sealed secret is malformed")]
    Malformed,
    /// The tag does not check: another `--secrets-key`, or the value was moved or changed.
    #[error("a sealed secret does not open with this --secrets-key [PIXELGATE_SECRETS_KEY] (another key sealed it, or it was altered)")]
    WrongKey,
}

impl Sealer {
    /// A sealer over 32 raw key bytes.
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer { cipher: Aes256Gcm::new(key.into()) }
    }

    /// A sealer over a key given as base64 text (`--secrets-key`): exactly 32 bytes once decoded.
    pub fn from_base64(text: &str) -> Result<Sealer, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| "--secrets-key [PIXELGATE_SECRETS_KEY] must be base64 (e.g. `openssl rand -base64 32`)".to_owned())?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| format!("--secrets-key [PIXELGATE_SECRETS_KEY] must decode to 32 bytes, not {}", bytes.len()))?;
        Ok(Sealer::new(&key))
    }

    /// The key file under `data_dir`, created with a fresh random key (mode 0600) when it does not
    /// exist yet: the embedded default, so a first start needs no flag.
    pub fn from_key_file(data_dir: &Path) -> anyhow::Result<Sealer> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Sealer::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                create_key_file(&path, &STANDARD.encode(key))
                    .map_err(|e| anyhow::anyhow!("cannot create the secrets key file {} (--data-dir [PIXELGATE_DATA_DIR]): {e}", path.display()))?;
                // Another process may have won the race to create it: read what is there.
                let text = std::fs::read_to_string(&path)?;
                Sealer::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) => {
                Err(anyhow::anyhow!("cannot read the secrets key file {} (--data-dir [PIXELGATE_DATA_DIR], or give --secrets-key [PIXELGATE_SECRETS_KEY]): {e}", path.display()))
            }
        }
    }

    /// `secret` sealed for `place` (e.g. `meta_token:123`).
    pub fn seal(&self, place: &str, secret: &Secret) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: secret.expose().as_bytes(), aad: place.as_bytes() }).expect("AES-GCM encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// The secret a stored value holds for `place`: opened when sealed, as it is when it is
    /// plaintext from before sealing ([`is_sealed`] tells which).
    pub fn open(&self, place: &str, stored: &str) -> Result<Secret, OpenError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let bytes = STANDARD.decode(b64).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: place.as_bytes() }).map_err(|_| OpenError::WrongKey)?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| OpenError::Malformed)
    }
}

/// Whether a stored value is sealed (not Part I plaintext).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

fn create_key_file(path: &PathBuf, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_the_place() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal("meta_token:1", &Secret::new("EAAB-secret"));
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("EAAB"), "{sealed}");
        assert_ne!(sealed, s.seal("meta_token:1", &Secret::new("EAAB-secret")), "a fresh nonce each time");
        assert_eq!(s.open("meta_token:1", &sealed).unwrap().expose(), "EAAB-secret");
        assert_eq!(s.open("meta_token:2", &sealed).unwrap_err(), OpenError::WrongKey, "moved to another pixel");
        assert_eq!(Sealer::new(&[8; 32]).open("meta_token:1", &sealed).unwrap_err(), OpenError::WrongKey);
        assert_eq!(s.open("meta_token:1", "pgs1:!!").unwrap_err(), OpenError::Malformed);
        assert_eq!(s.open("meta_token:1", "plain-from-part-one").unwrap().expose(), "plain-from-part-one");
    }

    #[test]
    fn keys_from_base64_and_from_a_generated_file() {
        assert!(Sealer::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(Sealer::from_base64(&STANDARD.encode([1u8; 31])).unwrap_err().contains("32 bytes"));
        assert!(Sealer::from_base64("not base64 !").unwrap_err().contains("base64"));
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::from_key_file(dir.path()).unwrap();
        let sealed = a.seal("x", &Secret::new("v"));
        let b = Sealer::from_key_file(dir.path()).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().expose(), "v", "the second start reads the same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
