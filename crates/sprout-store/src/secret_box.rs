//! Secrets at rest. Property values and SQS secret keys (and, later, resource passwords) are
//! sealed with XChaCha20-Poly1305 before they reach the database and opened when they leave
//! it, so a copy of `sprout.db` (a backup, a stray `cp`) gives none of them away.
//!
//! The key is 32 random bytes in `secrets.key` in the data directory (mode 0600), made on
//! first start; a store with another home for its key (a Postgres store with a master key
//! given by flag) builds the same [`SecretBox`] with [`SecretBox::from_key`]. Losing the key
//! loses the secrets: back it up with the database.
//!
//! A sealed value is text: `sealed:v1:` and the base64 of a random 24-byte nonce followed by
//! the ciphertext and its tag. The purpose (`properties`, `sqs-secret`) is bound in as
//! associated data, so a value cannot be moved to a column of another kind. A value without
//! the prefix was written by a Sprout from before sealing: [`SecretBox::open`] returns it as
//! it is, and the store seals such rows when it opens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const PREFIX: &str = "sealed:v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "secret key {path} has {len} bytes, not {KEY_LEN}: put back the file this data was \
         sealed with (sealed secrets cannot be read without it)"
    )]
    KeyLength { path: String, len: usize },
    #[error("a sealed {purpose} value cannot be opened: it was sealed with another key, or it is corrupt")]
    Open { purpose: String },
    #[error("sealing a {purpose} value failed")]
    Seal { purpose: String },
}

/// Seals and opens secrets with one key (see the module's documentation).
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A box with a fresh random key that is kept nowhere (tests, throwaway stores).
    pub fn ephemeral() -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&XChaCha20Poly1305::generate_key(&mut OsRng)),
        }
    }

    /// Reads the key at `path`, or makes one there (mode 0600, never overwriting a file that
    /// appeared meanwhile). A key file of the wrong size is an error, never replaced: the
    /// secrets sealed with the old key would be lost.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path);
                match created {
                    Ok(mut file) => {
                        file.write_all(&key).map_err(io)?;
                        file.sync_all().map_err(io)?;
                        tracing::info!(path = %path.display(), "made the key that seals secrets at rest");
                        key.to_vec()
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read(path).map_err(io)?
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        };
        let key: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::KeyLength {
                    path: path.display().to_string(),
                    len: bytes.len(),
                })?;
        Ok(Self::from_key(&key))
    }

    /// Whether `stored` is a sealed value (rather than plaintext from an older Sprout).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Seals `plaintext` for a column holding `purpose` values; a fresh nonce every time.
    pub fn seal(&self, purpose: &str, plaintext: &str) -> Result<String, SecretError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(purpose);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Seal {
                purpose: purpose.into(),
            })?;
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens a value read from a `purpose` column. Plaintext (no prefix) comes back as it is.
    pub fn open(&self, purpose: &str, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bad = || SecretError::Open {
            purpose: purpose.into(),
        };
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let aad = aad(purpose);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Seals a value that may still be plaintext; a sealed one is left as it is.
    pub fn reseal(&self, purpose: &str, stored: &str) -> Result<String, SecretError> {
        if Self::is_sealed(stored) {
            return Ok(stored.to_string());
        }
        self.seal(purpose, stored)
    }
}

fn aad(purpose: &str) -> Vec<u8> {
    format!("sprout:{purpose}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seals_and_opens() {
        let b = SecretBox::ephemeral();
        let sealed = b.seal("properties", "postgres://u:supersecret@db").unwrap();
        assert!(SecretBox::is_sealed(&sealed));
        assert!(!sealed.contains("supersecret"));
        assert_ne!(
            sealed,
            b.seal("properties", "postgres://u:supersecret@db").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(
            b.open("properties", &sealed).unwrap(),
            "postgres://u:supersecret@db"
        );
    }

    #[test]
    fn another_key_purpose_or_a_flipped_byte_does_not_open() {
        let b = SecretBox::ephemeral();
        let sealed = b.seal("properties", "x").unwrap();
        assert!(SecretBox::ephemeral().open("properties", &sealed).is_err());
        assert!(b.open("sqs-secret", &sealed).is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(b.open("properties", &tampered).is_err());
        assert!(b.open("properties", "sealed:v1:!!").is_err());
        assert!(b.open("properties", "sealed:v1:").is_err());
    }

    #[test]
    fn plaintext_from_an_older_sprout_passes_and_reseals() {
        let b = SecretBox::ephemeral();
        assert_eq!(
            b.open("properties", "{\"A\":\"1\"}").unwrap(),
            "{\"A\":\"1\"}"
        );
        let sealed = b.reseal("properties", "{\"A\":\"1\"}").unwrap();
        assert!(SecretBox::is_sealed(&sealed));
        assert_eq!(b.reseal("properties", &sealed).unwrap(), sealed);
    }

    #[test]
    fn the_key_file_is_private_kept_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        let sealed = first.seal("p", "v").unwrap();
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open("p", &sealed).unwrap(), "v");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretError::KeyLength { len: 5, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"short", "left as it was");
    }
}
