//! Where a seat's files live on the host, and preparing those directories with owners and modes
//! that let the unprivileged bubblewrap reach its own seat and nothing else.
//!
//! ```text
//! <data>/seats/<ws>/seat-NN/workspace -> /workspace  (learner-owned, kept; a per-seat file
//! <data>/seats/<ws>/seat-NN/home      -> /home/learner system of disk_mb, see `store`)
//! <data>/run/<ws>/seat-NN          -> /run/clarateach  (daemon.sock lives here)
//! <data>/sandboxes/<ws>/seat-NN.json                   (state for re-adoption, 0600, root)
//! <data>/sandboxes/<ws>/seat-NN.log                    (bubblewrap and daemon stderr)
//! <data>/sandbox-etc/{passwd,group}                    (the learner's view of users)
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use nix::unistd::{chown, Gid, Uid};

use super::store::SEATS_DIR;

/// Uid and gid of the learner inside every sandbox.
pub const LEARNER_ID: u32 = 1000;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
learner:x:1000:1000:learner:/home/learner:/bin/bash\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nlearner:x:1000:\nnogroup:x:65534:\n";

/// Every host path of one seat.
#[derive(Debug, Clone)]
pub struct SeatPaths {
    pub volume: PathBuf,
    pub home: PathBuf,
    pub run: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

/// `seat-01`: the seat's name in paths, cgroups and its hostname.
pub fn seat_name(seat: u32) -> String {
    format!("seat-{seat:02}")
}

/// Rejects workshop ids that could escape the data dir or the cgroup tree.
pub fn validate(key: &SeatKey) -> std::io::Result<()> {
    let id = &key.workshop_id;
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad workshop id {id:?}"),
        ))
    }
}

impl SeatPaths {
    pub fn new(data_dir: &Path, key: &SeatKey) -> Self {
        let seat = seat_name(key.seat);
        let ws = &key.workshop_id;
        let run = data_dir.join("run").join(ws).join(&seat);
        Self {
            volume: data_dir
                .join(SEATS_DIR)
                .join(ws)
                .join(&seat)
                .join("workspace"),
            home: data_dir.join(SEATS_DIR).join(ws).join(&seat).join("home"),
            socket: run.join("daemon.sock"),
            run,
            state: data_dir
                .join("sandboxes")
                .join(ws)
                .join(format!("{seat}.json")),
            log: data_dir
                .join("sandboxes")
                .join(ws)
                .join(format!("{seat}.log")),
        }
    }
}

/// Creates `dir` and its missing parents; parents get `0711` so the learner can pass through
/// without listing other seats.
fn mkdir_traversable(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        if !parent.exists() {
            mkdir_traversable(parent)?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Creates a directory owned by `uid:gid` with mode 0700 (or fixes an existing one).
pub fn owned_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    mkdir_traversable(dir)?;
    chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates a root-only directory (state files hold secrets).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes the data dir passable (not listable) for the learner uid that bubblewrap runs as, and
/// writes the shared passwd/group files. Returns the directory holding them.
pub fn prepare_data_dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)?;
    let mode = std::fs::metadata(data_dir)?.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(
            data_dir,
            std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
        )?;
    }
    mkdir_traversable(&data_dir.join("run"))?;
    private_dir(&data_dir.join("sandboxes"))?;
    let etc = data_dir.join("sandbox-etc");
    mkdir_traversable(&etc)?;
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755))?;
    for (name, text) in [("passwd", PASSWD), ("group", GROUP)] {
        let path = etc.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(etc)
}

/// Removes a directory tree; a missing one is fine. Never follows symlinks the learner planted.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes `dir`'s parent (the workshop level) when it is empty.
pub fn remove_empty_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_layout() {
        let key = SeatKey {
            workshop_id: "ws-abc123".into(),
            seat: 3,
        };
        let p = SeatPaths::new(Path::new("/d"), &key);
        assert_eq!(p.volume, Path::new("/d/seats/ws-abc123/seat-03/workspace"));
        assert_eq!(p.home, Path::new("/d/seats/ws-abc123/seat-03/home"));
        assert_eq!(p.socket, Path::new("/d/run/ws-abc123/seat-03/daemon.sock"));
        assert_eq!(p.state, Path::new("/d/sandboxes/ws-abc123/seat-03.json"));
        assert_eq!(seat_name(12), "seat-12");
    }

    #[test]
    fn workshop_ids_cannot_escape() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                validate(&SeatKey {
                    workshop_id: bad.into(),
                    seat: 1
                })
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(validate(&SeatKey {
            workshop_id: "ws-a1_B".into(),
            seat: 1
        })
        .is_ok());
    }
}
