//! Instructor accounts and agent tokens. Tokens are random, shown once, and stored only as
//! SHA-256 hashes, so a copy of the database does not let anyone in.

use std::path::Path;

use clarateach_store::{Store, StoreError};
use sha2::{Digest, Sha256};

use crate::files::{write_secret_file, FileError};

/// Name of the file holding the first instructor's token.
pub const INSTRUCTOR_TOKEN_FILE: &str = "instructor.token";

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot store the account")]
    Store(#[from] StoreError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the name must be 1 to 100 characters")]
    InvalidName,
    #[error("an agent id is 1 to 64 characters: letters, digits, '-', '_' or '.'")]
    InvalidAgentId,
}

/// A fresh random token with a prefix saying what it is for (`cti_` instructor, `cta_` agent).
pub use clarateach_core::secret::random_token as new_token;

/// Hex SHA-256 of a token, the only form the store keeps.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates an instructor and returns their token (shown once, never stored).
pub async fn create_instructor(store: &dyn Store, name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AccountError::InvalidName);
    }
    let token = new_token("cti_");
    store
        .create_instructor(&new_id("in-"), name, &hash_token(&token))
        .await?;
    Ok(token)
}

/// Whether `id` may name an agent: 1-64 characters of `[A-Za-z0-9._-]` (what the agent's own
/// generated ids are made of; nothing a log line or a URL would need to escape).
pub fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Issues a token that may register only as `agent_id` (`clarateach agent token --id NAME`).
/// Several tokens may be bound to one id (rotation); `revoke_agent` ends them all.
pub async fn issue_bound_agent_token(
    store: &dyn Store,
    agent_id: &str,
) -> Result<String, AccountError> {
    if !valid_agent_id(agent_id) {
        return Err(AccountError::InvalidAgentId);
    }
    let token = new_token("cta_");
    store
        .create_bound_agent_token(&new_id("at-"), &hash_token(&token), agent_id)
        .await?;
    Ok(token)
}

/// Revokes every token bound to `agent_id`: new connections are refused at once and a live
/// session ends at its next credential check (one heartbeat interval). Returns how many.
pub async fn revoke_agent(store: &dyn Store, agent_id: &str) -> Result<u64, AccountError> {
    if !valid_agent_id(agent_id) {
        return Err(AccountError::InvalidAgentId);
    }
    Ok(store.revoke_agent_tokens(agent_id).await?)
}

/// Issues an unbound token: it binds to the first agent id it registers with, and only if no
/// live token is bound to that id yet. This is how tokens issued before binding existed keep
/// working; new deployments use [`issue_bound_agent_token`].
pub async fn issue_agent_token(store: &dyn Store) -> Result<String, AccountError> {
    let token = new_token("cta_");
    store
        .create_agent_token(&new_id("at-"), &hash_token(&token))
        .await?;
    Ok(token)
}

/// On first start (no instructor yet): creates the `admin` instructor, writes its token to
/// `DATA_DIR/instructor.token` (0600) and returns it.
pub async fn ensure_first_instructor(
    store: &dyn Store,
    data_dir: &Path,
) -> Result<Option<String>, AccountError> {
    if store.count_instructors().await? > 0 {
        return Ok(None);
    }
    let token = create_instructor(store, "admin").await?;
    let path = data_dir.join(INSTRUCTOR_TOKEN_FILE);
    let _ = std::fs::remove_file(&path); // a stale file from a wiped database
    write_secret_file(&path, format!("{token}\n").as_bytes())?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = new_token("cti_");
        assert!(a.starts_with("cti_") && a.len() == 4 + 64);
        assert_ne!(a, new_token("cti_"));
        assert_eq!(hash_token("x"), hash_token("x"));
        assert_eq!(hash_token("x").len(), 64);
    }
}
