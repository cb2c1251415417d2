//! How workshops and seats are shown: tables for people, JSON for scripts, and the small
//! formatting helpers (ages, sizes) the verbs share.
//!
//! Every string that came from the server (names, learner names, images, agent ids) goes through
//! [`escape`] before it reaches the terminal: a learner named `\u{1b}]0;...` must not retitle,
//! recolour or rewrite the instructor's terminal, and bidi overrides must not reorder a row.

use std::time::{SystemTime, UNIX_EPOCH};

use clarateach_core::{NetworkPolicy, Seat, Workshop};
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `text` with every character that could steer a terminal or reorder text shown as a Rust-style
/// escape (`\u{1b}`): C0 and C1 controls, DEL, bidi embeddings/overrides/isolates and marks,
/// line and paragraph separators. Everything else, other scripts and emoji included, is kept.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
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
            escape(&w.id),
            escape(&w.name),
            escape(&w.code),
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
            (Some(name), _) => escape(name),
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
            s.agent_id
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// The fields of one workshop as aligned `key: value` lines.
pub fn workshop_details(w: &Workshop) -> String {
    let limits = &w.limits;
    let mut lines = vec![
        ("id", escape(&w.id)),
        ("name", escape(&w.name)),
        ("join code", escape(&w.code)),
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
                    NetworkPolicy::Allow { allow } => escape(&format!("only {}", allow.join(", "))),
                }
            ),
        ),
    ];
    if let Some(image) = &w.image {
        lines.push(("image", escape(image)));
    }
    if let Some(endpoint) = &w.endpoint {
        lines.push(("endpoint", escape(endpoint)));
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

    #[test]
    fn escapes_what_could_steer_a_terminal() {
        for (raw, shown) in [
            ("Ada Lovelace", "Ada Lovelace"),
            ("Zoë 李 🙂", "Zoë 李 🙂"),
            ("\u{1b}]0;pwned\u{7}", "\\u{1b}]0;pwned\\u{7}"),
            ("a\nb\rc\td", "a\\u{a}b\\u{d}c\\u{9}d"),
            ("\u{7f}\u{9b}", "\\u{7f}\\u{9b}"),
            ("evil\u{202e}gpj.exe", "evil\\u{202e}gpj.exe"),
            ("\u{2066}x\u{2069}\u{200f}", "\\u{2066}x\\u{2069}\\u{200f}"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn tables_escape_learner_names() {
        let seat: Seat = serde_json::from_value(serde_json::json!({
            "seat": 1, "state": "ready", "name": "\u{1b}[2Jgone", "joined": true,
        }))
        .expect("seat");
        let text = seats_table(&[seat]).to_string();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("\\u{1b}[2Jgone"), "{text}");
    }
}
