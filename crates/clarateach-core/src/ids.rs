//! Identifiers and human-facing codes. Codes use an alphabet without look-alike characters
//! (no 0/O, 1/I/l) because learners type them from a projector.

use rand::Rng;

/// Upper-case alphabet for join codes.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Lower-case alphabet for reconnect codes (odehash).
pub const ODEHASH_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Prefix of every join code.
pub const CODE_PREFIX: &str = "CLAUDE-";

fn pick(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A workshop id like `ws-a1b2c3`.
pub fn workshop_id() -> String {
    format!("ws-{}", pick(b"abcdefghijklmnopqrstuvwxyz0123456789", 6))
}

/// A join code like `CLAUDE-XY9Z`.
pub fn join_code() -> String {
    format!("{CODE_PREFIX}{}", pick(CODE_ALPHABET, 4))
}

/// A reconnect code like `x7k2m`.
pub fn odehash() -> String {
    pick(ODEHASH_ALPHABET, 5)
}

/// Normalises what a learner typed as a join code: drops spaces and dashes, upper-cases, and
/// accepts the bare 4-character suffix (`xy9z`, `claude xy9z`, `CLAUDEXY9Z` -> `CLAUDE-XY9Z`).
pub fn normalize_code(input: &str) -> String {
    let compact: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .collect::<String>()
        .to_uppercase();
    let prefix = CODE_PREFIX.trim_end_matches('-');
    // Found by fuzzing: "CLAUDE-" (and a bare "claude") used to become "CLAUDE-CLAUDE", so
    // normalising was not idempotent. A code's suffix is never the prefix itself.
    let suffix = compact.strip_prefix(prefix).unwrap_or(&compact);
    format!("{CODE_PREFIX}{suffix}")
}

/// Normalises a typed reconnect code: trims and lower-cases.
pub fn normalize_odehash(input: &str) -> String {
    input.trim().to_lowercase()
}

/// True when `s` is a well-formed reconnect code.
pub fn is_valid_odehash(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(|b| ODEHASH_ALPHABET.contains(&b))
}

/// Name of a seat's workspace, e.g. `ws-a1b2c3-seat-01`; also the container id in tokens.
pub fn container_id(workshop_id: &str, seat: u32) -> String {
    format!("{workshop_id}-seat-{seat:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = workshop_id();
        assert!(id.starts_with("ws-") && id.len() == 9);
        let code = join_code();
        assert!(code.starts_with("CLAUDE-") && code.len() == 11);
        assert!(code[7..].bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert!(is_valid_odehash(&odehash()));
        assert!(!is_valid_odehash("x7k2O"));
    }

    #[test]
    fn normalizes_typed_codes() {
        assert_eq!(normalize_code(" claude-xy9z "), "CLAUDE-XY9Z");
        assert_eq!(normalize_code("CLAUDE - XY 9Z"), "CLAUDE-XY9Z");
        assert_eq!(normalize_code("xy9z"), "CLAUDE-XY9Z");
        assert_eq!(normalize_code("claude zl9t"), "CLAUDE-ZL9T");
        assert_eq!(normalize_code("CLAUDEZL9T"), "CLAUDE-ZL9T");
        assert_eq!(normalize_code(" zl-9t "), "CLAUDE-ZL9T");
        for typed in ["", "claude", "CLAUDE-", "claude claude"] {
            let once = normalize_code(typed);
            assert_eq!(normalize_code(&once), once, "{typed:?}");
        }
        assert_eq!(container_id("ws-abc123", 3), "ws-abc123-seat-03");
    }
}
