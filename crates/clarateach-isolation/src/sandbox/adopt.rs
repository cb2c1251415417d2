//! Re-adoption after an agent restart (even `kill -9`): sandboxes do not die with the agent, so
//! the state files tell which seats exist; a seat whose bwrap is the same process as recorded and
//! whose daemon answers is running again, anything else is cleaned up and reported stopped, and a
//! volume with no state at all is reported missing (its files wait for the seat to be recreated).

use std::collections::BTreeSet;

use clarateach_core::agent_proto::SeatKey;

use super::record::SandboxRecord;
use super::{spawn, SandboxBackend, Seat};
use crate::{Backend, BackendError, WorkspaceStatus};

pub(super) fn subdirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    out.sort();
    out
}

/// Every seat volume directory on disk, with its seat.
pub(super) fn volumes(data_dir: &std::path::Path) -> Vec<(SeatKey, std::path::PathBuf)> {
    let mut out = Vec::new();
    // The seat store's `seats/<ws>/seat-NN/workspace`, then old-layout `volumes/<ws>/seat-NN`
    // not migrated yet.
    for (root, sub) in [
        (super::store::SEATS_DIR, Some("workspace")),
        ("volumes", None),
    ] {
        for (key, dir) in seat_dirs(&data_dir.join(root)) {
            out.push((key, sub.map(|s| dir.join(s)).unwrap_or(dir)));
        }
    }
    out
}

/// `<root>/<ws>/seat-NN` directories with their keys.
fn seat_dirs(root: &std::path::Path) -> Vec<(SeatKey, std::path::PathBuf)> {
    let mut out = Vec::new();
    for ws in subdirs(root) {
        let Some(workshop_id) = ws.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        for seat_dir in subdirs(&ws) {
            let Some(seat) = seat_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_seat)
            else {
                continue;
            };
            let key = SeatKey {
                workshop_id: workshop_id.clone(),
                seat,
            };
            out.push((key, seat_dir));
        }
    }
    out
}

/// `seat-07` -> 7.
fn parse_seat(name: &str) -> Option<u32> {
    name.strip_prefix("seat-")?.parse().ok()
}

pub(super) async fn adopt(
    b: &SandboxBackend,
) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
    let mut out = Vec::new();
    for ws in subdirs(&b.cfg.data_dir.join("sandboxes")) {
        for file in subdirs(&ws)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let mut rec = match SandboxRecord::load(&file) {
                Ok(rec) => rec,
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "unreadable seat state skipped");
                    continue;
                }
            };
            let key = rec.key.clone();
            if rec.warm {
                // Run ahead of a Start that this agent will not see: it holds nothing of
                // anyone, and its daemon only knows a start-up token this process forgot.
                b.lock().insert(key.clone(), Seat::adopted(rec, true));
                if let Err(e) = b.destroy(&key, true).await {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "a seat run ahead could not be given back");
                }
                continue;
            }
            if b.endpoint(&key).is_some() {
                out.push((key, WorkspaceStatus::Running));
                continue;
            }
            if rec.process_alive() {
                // A seat paused before the agent went away has a frozen daemon that would fail
                // the health check and be killed: thaw it first (it comes back running; the
                // control plane sees it ready and may pause it again).
                if let Err(e) = b.cg.freeze(&rec.cgroup, false) {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "cannot thaw an adopted seat");
                }
            }
            let alive = rec.process_alive() && spawn::health(&rec.socket, &rec.daemon_token).await;
            if alive {
                tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, pid = rec.pid, "seat re-adopted");
                super::log::attach(&b.paths(&key).log);
                // A record of an older version may hold the environment: rewrite it without.
                rec.env.clear();
                if let Err(e) = rec.save(&file) {
                    tracing::warn!(file = %file.display(), error = %e, "saving seat state failed");
                }
                b.lock().insert(key.clone(), Seat::adopted(rec, true));
                out.push((key, WorkspaceStatus::Running));
                continue;
            }
            // Half-dead (daemon gone, a shell left over) or stale: clear it out.
            if let Err(e) = b.empty_cgroup(rec.cgroup.clone()).await {
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "leftover processes");
            }
            let _ = std::fs::remove_file(&rec.socket);
            rec.env.clear();
            rec.pid = None;
            rec.start_time = None;
            if let Err(e) = rec.save(&file) {
                tracing::warn!(file = %file.display(), error = %e, "saving seat state failed");
            }
            b.lock().insert(key.clone(), Seat::adopted(rec, false));
            out.push((key, WorkspaceStatus::Stopped));
        }
    }
    // Volumes with no record (destroyed without deleting the volume): the seat store's and
    // old-style ones not migrated yet.
    let mut known: BTreeSet<SeatKey> = out.iter().map(|(k, _)| k.clone()).collect();
    for (key, _) in volumes(&b.cfg.data_dir) {
        if known.insert(key.clone()) {
            out.push((key, WorkspaceStatus::Missing));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seat_names_parse() {
        assert_eq!(super::parse_seat("seat-07"), Some(7));
        assert_eq!(super::parse_seat("seat-123"), Some(123));
        assert_eq!(super::parse_seat("other"), None);
    }
}
