//! How workshops and seats are shown: tables for people, JSON for scripts, and the small
//! formatting helpers (ages, sizes) the verbs share.

use std::time::{SystemTime, UNIX_EPOCH};

use clarateach_core::{NetworkPolicy, Seat, Workshop};
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// No borders, one rule under the header: reads like `kubectl get`, copies cleanly.
const HEADER_RULE_ONLY: &str = "     ──            ";

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(HEADER_RULE_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// One row per workshop.
pub fn workshops_table(workshops: &[Workshop]) -> Table {
    let mut t = table(&[
        "ID",
        "NAME",
        "JOIN CODE",
        "STATUS",
        "SEATS",
        "READY",
        "JOINED",
        "CREATED",
    ]);
    for w in workshops {
        t.add_row(vec![
            w.id.clone(),
            w.name.clone(),
            w.code.clone(),
            w.status.as_str().to_string(),
            w.seats.to_string(),
            w.seats_ready.to_string(),
            w.seats_joined.to_string(),
            ago(w.created_at.timestamp()),
        ]);
    }
    t
}

/// One row per seat.
pub fn seats_table(seats: &[Seat]) -> Table {
    let mut t = table(&[
        "SEAT",
        "STATE",
        "LEARNER",
        "JOINED",
        "LAST ACTIVITY",
        "AGENT",
    ]);
    for s in seats {
        let learner = match (&s.name, s.joined) {
            (Some(name), _) => name.clone(),
            (None, true) => "(anonymous)".into(),
            (None, false) => "-".into(),
        };
        t.add_row(vec![
            s.seat.to_string(),
            s.state.as_str().to_string(),
            learner,
            s.joined_at
                .map(|t| ago(t.timestamp()))
                .unwrap_or_else(|| "-".into()),
            s.last_activity_at
                .map(|t| ago(t.timestamp()))
                .unwrap_or_else(|| "-".into()),
            s.agent_id.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// The fields of one workshop as aligned `key: value` lines.
pub fn workshop_details(w: &Workshop) -> String {
    let limits = &w.limits;
    let mut lines = vec![
        ("id", w.id.clone()),
        ("name", w.name.clone()),
        ("join code", w.code.clone()),
        ("status", w.status.as_str().to_string()),
        (
            "seats",
            format!(
                "{} ({} ready, {} joined)",
                w.seats, w.seats_ready, w.seats_joined
            ),
        ),
        (
            "created",
            format!(
                "{} ({})",
                w.created_at.format("%Y-%m-%d %H:%M UTC"),
                ago(w.created_at.timestamp())
            ),
        ),
        (
            "api key",
            if w.has_api_key {
                "set (never shown)"
            } else {
                "none"
            }
            .to_string(),
        ),
        (
            "limits",
            format!(
                "{} MiB memory, {} processes, {:.1} CPU, {} MiB disk, network {}",
                limits.memory_mb,
                limits.pids,
                f64::from(limits.cpu_millis) / 1000.0,
                limits.disk_mb,
                match &limits.network {
                    NetworkPolicy::None => "off".to_string(),
                    NetworkPolicy::Open => "open".to_string(),
                    NetworkPolicy::Allow { allow } => format!("only {}", allow.join(", ")),
                }
            ),
        ),
    ];
    if let Some(image) = &w.image {
        lines.push(("image", image.clone()));
    }
    if let Some(endpoint) = &w.endpoint {
        lines.push(("endpoint", endpoint.clone()));
    }
    lines
        .iter()
        .map(|(k, v)| format!("{:<10} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago` for a Unix timestamp.
pub fn ago(timestamp: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(timestamp);
    human_age(now.saturating_sub(timestamp))
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 0 => "just now".into(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(-3), "just now");
        assert_eq!(human_age(59), "59s ago");
        assert_eq!(human_age(61), "1m ago");
        assert_eq!(human_age(7200), "2h ago");
        assert_eq!(human_age(3 * 86_400 + 5), "3d ago");
    }
}
