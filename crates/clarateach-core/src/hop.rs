//! Header hygiene shared by the two proxies on a learner's path (the control plane's gateway and
//! the agent's relay to a seat daemon): which headers belong to one hop and must not be
//! forwarded, and how an upgrade keeps its `Connection`/`Upgrade` pair. Pure functions over
//! `http` types, no IO.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that belong to one hop and are never forwarded (RFC 9110 7.6.1), plus the caller's
/// credentials, which each proxy replaces with its own.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::AUTHORIZATION,
];

/// True for a WebSocket (or other) upgrade request.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(header::UPGRADE)
}

/// Copies end-to-end headers from `from` to `to`, leaving out hop-by-hop ones, `Host`,
/// `Keep-Alive` and any in `also_drop`; keeps `Connection`/`Upgrade` only for upgrades.
pub fn forward_headers(
    from: &HeaderMap,
    to: &mut HeaderMap,
    upgrade: bool,
    also_drop: &[HeaderName],
) {
    for (name, value) in from {
        if HOP_BY_HOP.contains(name)
            || name == header::HOST
            || name == "keep-alive"
            || also_drop.contains(name)
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    if upgrade {
        to.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = from.get(header::UPGRADE) {
            to.insert(header::UPGRADE, u.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }

    #[test]
    fn drops_hop_by_hop_credentials_and_extras() {
        let from = headers(&[
            ("authorization", "Bearer x"),
            ("host", "a"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("cookie", "c=1"),
            ("x-kept", "1"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        let mut to = HeaderMap::new();
        forward_headers(&from, &mut to, false, &[header::COOKIE]);
        assert_eq!(to.len(), 1);
        assert_eq!(to["x-kept"], "1");

        let mut to = HeaderMap::new();
        forward_headers(&from, &mut to, true, &[]);
        assert_eq!(to["cookie"], "c=1");
        assert_eq!(to["connection"], "upgrade");
        assert_eq!(to["upgrade"], "websocket");
    }
}
