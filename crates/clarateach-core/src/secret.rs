//! The one home of the small security helpers every role needs: making a secret, comparing one
//! without leaking where it differs, and reading a bearer token from a request. Each existed in
//! two or three copies with different rules (a case-sensitive `Bearer ` in some, RFC 7235's
//! case-insensitive scheme in others); one copy means one rule.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use rand::RngCore;

/// A fresh random secret: `prefix` followed by 64 hex digits (256 bits from the OS's generator).
/// The prefix says what the token is for (`cti_` instructor, `cta_` agent, ...); pass `""` for
/// none.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Compares two secrets in time independent of where they differ (the length is not secret).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request's `Authorization` header: the scheme is case-insensitive
/// (RFC 7235), the token is trimmed, and an empty token is no token.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_hex() {
        let a = random_token("cti_");
        assert!(a.starts_with("cti_") && a.len() == 4 + 64, "{a}");
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_token("cti_"));
    }

    #[test]
    fn secret_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "a"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(AUTHORIZATION, v.parse().expect("header"));
            m
        };
        assert_eq!(bearer_token(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("BEARER  abc ")), Some("abc"));
        assert_eq!(bearer_token(&h("Basic abc")), None);
        assert_eq!(bearer_token(&h("Bearer ")), None);
        assert_eq!(bearer_token(&h("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
