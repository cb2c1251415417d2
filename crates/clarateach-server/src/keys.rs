//! Learner tokens: JWTs signed with the control plane's Ed25519 key (EdDSA).
//!
//! The key is created on first start as `DATA_DIR/jwt.key` (PKCS#8 PEM, mode 0600), so tokens
//! stay valid across restarts with the same data dir.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clarateach_core::TokenClaims;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::files::{read_or_create_secret_file, FileError};

/// Why the signing key could not be loaded or a token not signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the signing key file is not a valid Ed25519 PKCS#8 PEM key")]
    Parse,
    #[error("cannot encode the new signing key")]
    Encode,
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Signs and verifies learner tokens.
#[derive(Clone)]
pub struct SigningKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(<redacted>)")
    }
}

impl SigningKeys {
    /// Loads `path`, creating a fresh key (0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let pem = read_or_create_secret_file(path, || {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(Default::default())
                .map_err(|_| KeyError::Encode)?;
            Ok::<_, KeyError>(pem.as_bytes().to_vec())
        })?;
        let text = std::str::from_utf8(&pem).map_err(|_| KeyError::Parse)?;
        let key = SigningKey::from_pkcs8_pem(text).map_err(|_| KeyError::Parse)?;
        let der = key.to_pkcs8_der().map_err(|_| KeyError::Parse)?;
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
        })
    }

    /// Signs `claims` as a compact JWT.
    pub fn sign(&self, claims: &TokenClaims) -> Result<String, KeyError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
            .map_err(KeyError::Sign)
    }

    /// Verifies signature and expiry; `None` for any bad token (the caller answers 401).
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.required_spec_claims = ["exp".to_string()].into();
        jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

/// Seconds since the epoch, `ttl` from now.
pub fn expiry(ttl: Duration) -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (now, now + ttl.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims {
            workshop_id: "ws-abc123".into(),
            container_id: "ws-abc123-seat-01".into(),
            seat: 1,
            odehash: "abcde".into(),
            agent_id: None,
            exp,
            iat: 0,
            generation: 0,
        }
    }

    #[test]
    fn sign_verify_tamper_expire_and_reload() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("jwt.key");
        let keys = SigningKeys::load_or_create(&path).expect("create");
        let (_, exp) = expiry(Duration::from_secs(60));
        let token = keys.sign(&claims(exp)).expect("sign");
        assert_eq!(keys.verify(&token), Some(claims(exp)));
        let mut tampered = token.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert!(keys
            .verify(&String::from_utf8(tampered).expect("utf8"))
            .is_none());
        assert!(
            keys.verify(&keys.sign(&claims(1)).expect("sign")).is_none(),
            "expired"
        );
        let again = SigningKeys::load_or_create(&path).expect("reload");
        assert!(again.verify(&token).is_some(), "same key after reload");
        let other = SigningKeys::load_or_create(&dir.path().join("other.key")).expect("other");
        assert!(other.verify(&token).is_none());
    }
}
