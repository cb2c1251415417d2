//! Workshop secrets (the api_key) at rest: ChaCha20-Poly1305 with a 256-bit key kept in
//! `DATA_DIR/secret.key` (0600). Stored as `nonce || ciphertext`, with the workshop id as
//! associated data so a ciphertext cannot be moved to another workshop.

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::files::{read_or_create_secret_file, FileError};

const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the secret key file must hold exactly 32 bytes")]
    KeyLength,
    #[error("cannot encrypt the secret")]
    Seal,
    #[error("cannot decrypt the secret (wrong key or corrupted data)")]
    Open,
}

/// An api key in memory; its Debug never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The plaintext, for the provisioner only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Seals and opens secrets with the data dir's key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    /// Loads `path`, creating a random key (0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let key = read_or_create_secret_file(path, || {
            Ok::<_, SecretError>(ChaCha20Poly1305::generate_key(&mut rand::rngs::OsRng).to_vec())
        })?;
        if key.len() != 32 {
            return Err(SecretError::KeyLength);
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    pub fn seal(&self, owner_id: &str, secret: &ApiKey) -> Result<Vec<u8>, SecretError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut rand::rngs::OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.0.as_bytes(),
                    aad: owner_id.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, owner_id: &str, sealed: &[u8]) -> Result<ApiKey, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: owner_id.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain)
            .map(ApiKey)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_binds_owner_and_hides_debug() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = SecretBox::load_or_create(&dir.path().join("secret.key")).expect("key");
        let key = ApiKey::new("sk-ant-very-secret".into());
        let sealed = b.seal("ws-a", &key).expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(b.open("ws-a", &sealed).expect("open"), key);
        assert!(b.open("ws-b", &sealed).is_err());
        assert!(!format!("{key:?}").contains("secret"));
        let reloaded = SecretBox::load_or_create(&dir.path().join("secret.key")).expect("reload");
        assert_eq!(reloaded.open("ws-a", &sealed).expect("open"), key);
    }
}
