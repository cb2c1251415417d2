//! Prometheus metrics, rendered as text at `GET /metrics`. Request counters and the latency
//! histogram are kept in memory; workshop/seat gauges are read from the store at scrape time so
//! they can never drift from the truth.
//!
//! Every label value comes from a fixed set, so no client can grow the series without bound: the
//! method is one of [`METHODS`] or `other`, the route is the matched route template or
//! `unmatched`, the status is the server's own.
//!
//! Who may scrape: with `--metrics-token` only a request with that bearer token; without one only
//! a loopback client that did not come through a proxy (no `Forwarded`/`X-Forwarded-For`), so a
//! public deployment shows nothing and a scraper on the host needs no setup. Behind a reverse
//! proxy on the same host, set the token.

use clarateach_core::ErrorCode;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// Methods counted under their own name; anything else is `other`.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The route label of a request the router matched to no route template.
pub const UNMATCHED: &str = "unmatched";

/// The method label: a fixed name, never the client's text.
pub fn method_label(method: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

/// Whether this request may read `/metrics` (see the module header).
pub fn authorize(
    token: Option<&str>,
    headers: &HeaderMap,
    peer: std::net::IpAddr,
) -> Result<(), ApiError> {
    if let Some(expected) = token {
        let given = clarateach_core::secret::bearer_token(headers).unwrap_or("");
        if clarateach_core::secret::constant_time_eq(given, expected) {
            return Ok(());
        }
        return Err(ApiError::unauthorized(
            "The metrics token is missing or wrong.",
        ));
    }
    let proxied =
        headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
    let local = match peer {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if local && !proxied {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::MetricsForbidden,
            "Metrics are served to loopback clients only unless a metrics token is set.",
        ))
    }
}

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    joins: BTreeMap<String, u64>,
}

/// In-memory counters. The mutex is only held for map updates, never across `.await`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn observe_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let mut m = self.lock();
        *m.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        let secs = elapsed.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Counts a join by outcome: `accepted` or the refusal code.
    pub fn observe_join(&self, outcome: &str) {
        *self.lock().joins.entry(outcome.to_string()).or_default() += 1;
    }

    /// Renders the in-memory series; `gauges` adds store-derived ones (name, labels, value).
    pub fn render(&self, gauges: &[(&str, &str, String, i64)]) -> String {
        let m = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP clarateach_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE clarateach_http_requests_total counter");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "clarateach_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP clarateach_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(
            out,
            "# TYPE clarateach_http_request_duration_seconds histogram"
        );
        for (route, h) in &m.latency {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "clarateach_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "clarateach_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "clarateach_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "clarateach_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP clarateach_joins_total Learner joins by outcome (accepted or refusal code)."
        );
        let _ = writeln!(out, "# TYPE clarateach_joins_total counter");
        for (outcome, n) in &m.joins {
            let _ = writeln!(out, "clarateach_joins_total{{outcome=\"{outcome}\"}} {n}");
        }
        let mut last = "";
        for (name, help, labels, value) in gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{labels} {value}");
        }
        out
    }
}

/// Middleware: counts every request by its route template (never the raw path, which holds ids).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let route = route.unwrap_or_else(|| UNMATCHED.to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    metrics.observe_request(&route, method, res.status().as_u16(), started.elapsed());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.observe_request("/api/join", "POST", 200, Duration::from_millis(3));
        m.observe_join("accepted");
        let text = m.render(&[(
            "clarateach_workshops",
            "Workshops by status.",
            "{status=\"running\"}".into(),
            2,
        )]);
        assert!(text.contains(
            "clarateach_http_requests_total{route=\"/api/join\",method=\"POST\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "clarateach_http_request_duration_seconds_bucket{route=\"/api/join\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "clarateach_http_request_duration_seconds_bucket{route=\"/api/join\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains("clarateach_joins_total{outcome=\"accepted\"} 1"));
        assert!(text.contains("clarateach_workshops{status=\"running\"} 2"));
    }

    #[test]
    fn methods_come_from_a_fixed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        for odd in ["FOO", "get", "PROPFIND", "X\u{1b}"] {
            if let Ok(m) = Method::from_bytes(odd.as_bytes()) {
                assert_eq!(method_label(&m), "other", "{odd}");
            }
        }
    }

    #[test]
    fn metrics_access_rule() {
        let lo: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: std::net::IpAddr = "::1".parse().expect("ip");
        let far: std::net::IpAddr = "203.0.113.7".parse().expect("ip");
        let none = HeaderMap::new();
        assert!(authorize(None, &none, lo).is_ok());
        assert!(authorize(None, &none, lo6).is_ok());
        assert_eq!(
            authorize(None, &none, far).map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-for", "203.0.113.7".parse().expect("value"));
        assert!(authorize(None, &proxied, lo).is_err());
        let mut good = HeaderMap::new();
        good.insert(
            header::AUTHORIZATION,
            "Bearer s3cret".parse().expect("value"),
        );
        let mut bad = HeaderMap::new();
        bad.insert(
            header::AUTHORIZATION,
            "Bearer s3cre".parse().expect("value"),
        );
        assert!(authorize(Some("s3cret"), &good, far).is_ok());
        for (h, ip) in [(&bad, lo), (&none, lo), (&none, far)] {
            assert_eq!(
                authorize(Some("s3cret"), h, ip).map_err(|e| e.status),
                Err(StatusCode::UNAUTHORIZED)
            );
        }
    }
}
