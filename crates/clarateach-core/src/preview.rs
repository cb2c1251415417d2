//! Preview URLs of learners' web apps (issue 12): the wire shapes of `GET /api/session/previews`
//! and `PUT /api/session/previews/{port}`, the daemon's list of listening ports, and the one
//! definition of a preview host name, `p{port}-{seat handle}.{preview domain}`, which the
//! control plane both prints and parses. No IO.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The header carrying the browser's `Host` to the seat's daemon, so the app builds its own
/// absolute URLs.
pub const FORWARDED_HOST: &str = "x-forwarded-host";

/// Ports listening inside a seat, as its workspace daemon found them (`GET /previews`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListeningPorts {
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// One previewable port of a seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub port: u16,
    /// Where a browser opens it (its own origin, never the control plane's).
    pub url: String,
    /// Whether anyone with the URL may open it (else only the seat's learner and instructors).
    pub public: bool,
}

/// `GET /api/session/previews`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewList {
    pub previews: Vec<Preview>,
}

/// `PUT /api/session/previews/{port}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewAccess {
    pub public: bool,
}

/// `POST /api/session/previews/{port}/open`: a URL on the preview's origin carrying a one-time
/// ticket, which that origin trades for a cookie of its own host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewOpen {
    pub url: String,
}

/// Which seat and port a preview host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewTarget {
    pub port: u16,
    pub workshop_id: String,
    pub seat: u32,
}

/// A seat's handle in preview host names: the workshop id without `ws-`, `s`, the seat number
/// (`ws-a1b2c3` seat 3 -> `a1b2c3s3`). Lower case, so a host name's case never matters.
pub fn seat_handle(workshop_id: &str, seat: u32) -> String {
    let short = workshop_id.strip_prefix("ws-").unwrap_or(workshop_id);
    format!("{}s{seat}", short.to_ascii_lowercase())
}

/// The first DNS label of a preview host: `p8000-a1b2c3s3`.
pub fn preview_label(port: u16, workshop_id: &str, seat: u32) -> String {
    format!("p{port}-{}", seat_handle(workshop_id, seat))
}

/// Parses a `Host` header value against the preview domain (`localhost:8080`, `preview.example`):
/// `None` unless it is exactly `p{port}-{handle}.{domain}`, port 1-65535, handle well formed.
pub fn parse_preview_host(host: &str, domain: &str) -> Option<PreviewTarget> {
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let label = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
    let rest = label.strip_prefix('p')?;
    let (port, handle) = rest.split_once('-')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let (short, seat) = handle.rsplit_once('s')?;
    let well_formed = !short.is_empty()
        && short.len() <= 32
        && short
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !seat.is_empty()
        && seat.len() <= 6
        && seat.bytes().all(|b| b.is_ascii_digit())
        && !seat.starts_with('0');
    if !well_formed {
        return None;
    }
    Some(PreviewTarget {
        port,
        workshop_id: format!("ws-{short}"),
        seat: seat.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_round_trip_and_strangers_are_refused() {
        let label = preview_label(8000, "ws-a1b2c3", 3);
        assert_eq!(label, "p8000-a1b2c3s3");
        let t = parse_preview_host(&format!("{label}.localhost:8080"), "localhost:8080");
        assert_eq!(
            t,
            Some(PreviewTarget {
                port: 8000,
                workshop_id: "ws-a1b2c3".into(),
                seat: 3
            })
        );
        assert!(parse_preview_host("P8000-A1B2C3S3.LocalHost:8080", "localhost:8080").is_some());
        for bad in [
            "localhost:8080",
            "p8000-a1b2c3s3.localhost:9090",
            "p8000-a1b2c3s3.localhost",
            "x.p8000-a1b2c3s3.localhost:8080",
            "p0-a1b2c3s3.localhost:8080",
            "p70000-a1b2c3s3.localhost:8080",
            "p8000-a1b2c3.localhost:8080",
            "p8000-s3.localhost:8080",
            "p8000-a1b2c3s03.localhost:8080",
            "p8000-a1b_c3s3.localhost:8080",
            "p-a1b2c3s3.localhost:8080",
            "evillocalhost:8080",
        ] {
            assert_eq!(parse_preview_host(bad, "localhost:8080"), None, "{bad}");
        }
    }
}
