//! Per-seat files on the host. Under `<data_dir>/microvm/<workshop>/seat-NN/`: `seat.json` (the
//! spec, 0600: it holds the token and env), `config.img` (the guest's config disk, 0600),
//! `overlay.qcow2` (the seat's writable layer over the shared rootfs), `qmp.sock`, `qemu.pid`,
//! `console.log`. The volume lives apart, in `<data_dir>/volumes/<workshop>/seat-NN.img`, so
//! destroying the VM keeps the learner's files.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use serde::{Deserialize, Serialize};

use super::net::{allocate, Ipv4Subnet, SubnetFull};
use crate::WorkspaceSpec;

/// File layout of one seat.
#[derive(Debug, Clone)]
pub struct VmPaths {
    pub dir: PathBuf,
    pub volume: PathBuf,
    pub export: PathBuf,
}

impl VmPaths {
    pub fn new(data_dir: &Path, key: &SeatKey) -> Self {
        let seat = format!("seat-{:02}", key.seat);
        let vols = data_dir.join("volumes").join(&key.workshop_id);
        Self {
            dir: data_dir.join("microvm").join(&key.workshop_id).join(&seat),
            volume: vols.join(format!("{seat}.img")),
            export: vols.join(format!("{seat}.files")),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("seat.json")
    }
    pub fn config_disk(&self) -> PathBuf {
        self.dir.join("config.img")
    }
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.qcow2")
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("vmm.pid")
    }
    /// Written when the seat runs under the jailer: its `--id` (the jailed VMM's command line
    /// names the id, not the seat dir).
    pub fn jail_id(&self) -> PathBuf {
        self.dir.join("jail-id")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("firecracker.sock")
    }
    /// Full copy of the rootfs for Firecracker, which has no copy-on-write disk format.
    pub fn rootfs_copy(&self) -> PathBuf {
        self.dir.join("rootfs.ext4")
    }
}

/// What `create` stored, so `start` and `adopt` (after an agent restart) can run the seat.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub workshop_id: String,
    pub seat: u32,
    pub limits: Limits,
    pub token: String,
    /// Read from records of older versions only, never written: the environment holds the
    /// workshop's API key and stays in the backend's memory (`MicrovmBackend::envs`).
    #[serde(default, skip_serializing)]
    pub env: BTreeMap<String, String>,
    /// Where the daemon answers from the host (QEMU's forwarded port or the guest's TAP address).
    #[serde(default)]
    pub addr: Option<std::net::SocketAddr>,
    /// The seat's address on the host bridge (`Net::Bridge`), allocated once at create and kept
    /// across restarts, re-adoption and recreate (a recreate prefers the same address).
    #[serde(default)]
    pub guest_ip: Option<std::net::Ipv4Addr>,
    /// Seat image the seat was created from, and the root disk made from it at create (the
    /// qcow2 overlay's backing file: a rebuilt image never changes this seat's root). `None`:
    /// the backend's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<std::path::PathBuf>,
}

impl VmRecord {
    pub fn from_spec(spec: &WorkspaceSpec) -> Self {
        Self {
            workshop_id: spec.key.workshop_id.clone(),
            seat: spec.key.seat,
            limits: spec.limits.clone(),
            token: spec.daemon_token.clone(),
            env: spec.env.clone(),
            addr: None,
            guest_ip: None,
            image: spec.image.clone(),
            root: None,
        }
    }
    pub fn key(&self) -> SeatKey {
        SeatKey {
            workshop_id: self.workshop_id.clone(),
            seat: self.seat,
        }
    }
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_private(path, &text)
    }
}

/// The seat's bridge address: the one its record holds while still inside `subnet` (restart,
/// recreate), else a free one; never one that another seat's record in `seats` holds.
pub fn bridge_address(
    record: &VmRecord,
    subnet: &Ipv4Subnet,
    seats: &[PathBuf],
) -> Result<Ipv4Addr, SubnetFull> {
    if let Some(ip) = record.guest_ip.filter(|ip| subnet.contains(*ip)) {
        return Ok(ip);
    }
    let key = record.key();
    let used: BTreeSet<Ipv4Addr> = seats
        .iter()
        .filter_map(|p| VmRecord::load(p).ok())
        .filter(|r| r.key() != key)
        .filter_map(|r| r.guest_ip)
        .collect();
    allocate(subnet, &key, &used)
}

/// Writes a file readable by its owner only (it holds secrets).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates a blank sparse volume of `size_mb` and formats it as ext4 owned by the learner, so it
/// can be exported before the guest ever boots. Keeps an existing volume.
pub fn ensure_volume(path: &Path, size_mb: u64) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("partial");
    std::fs::File::create(&tmp)?.set_len(size_mb << 20)?;
    let owner = format!("root_owner={0}:{0}", LEARNER_UID);
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "workspace", "-E", &owner])
        .arg(&tmp)
        .stdin(std::process::Stdio::null())
        .output();
    // Without mkfs.ext4 on the host the guest formats the blank disk on first boot.
    if let Ok(o) = &out {
        if !o.status.success() {
            tracing::warn!(stderr = %String::from_utf8_lossy(&o.stderr), "mkfs.ext4 of a volume failed");
        }
    }
    std::fs::rename(&tmp, path)
}

/// The learner uid inside the guest (owner of /workspace).
pub const LEARNER_UID: u32 = 1000;

/// Reads the pid file; `Some(pid)` only when that process is alive and is a VMM of ours.
pub fn live_pid(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&cmdline);
    let seat_dir = pidfile.parent()?;
    let dir = seat_dir.to_string_lossy().into_owned();
    let jailed = std::fs::read_to_string(seat_dir.join("jail-id"))
        .ok()
        .is_some_and(|id| text.contains(&format!("--id\0{}\0", id.trim())));
    ((text.contains(&dir) || jailed) && !is_zombie(pid)).then_some(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seat: u32, ip: Option<Ipv4Addr>) -> VmRecord {
        VmRecord {
            workshop_id: "ws-abc".into(),
            seat,
            limits: Limits::default(),
            token: "t".into(),
            env: BTreeMap::new(),
            addr: None,
            guest_ip: ip,
            image: None,
            root: None,
        }
    }

    #[test]
    fn bridge_addresses_skip_other_seats_and_stay_with_their_seat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let subnet: Ipv4Subnet = "10.213.0.0/29".parse().expect("subnet");
        let mut seats = Vec::new();
        // Seats 1..=5 fill the five guest addresses of a /29 one by one.
        let mut taken = BTreeSet::new();
        for seat in 1..=5 {
            let r = record(seat, None);
            let ip = bridge_address(&r, &subnet, &seats).expect("free address");
            assert!(taken.insert(ip), "{ip} given twice");
            let path = dir.path().join(format!("seat-{seat}.json"));
            record(seat, Some(ip)).save(&path).expect("save");
            seats.push(path);
        }
        assert!(bridge_address(&record(6, None), &subnet, &seats).is_err());
        // A seat keeps its own address (restart, re-adoption, recreate over the record).
        let own = VmRecord::load(&seats[2]).expect("load");
        assert_eq!(
            bridge_address(&own, &subnet, &seats),
            Ok(own.guest_ip.expect("ip"))
        );
        // An address from another subnet (the bridge was reconfigured) is replaced.
        let moved = record(3, Some(Ipv4Addr::new(10, 9, 9, 9)));
        let other: Ipv4Subnet = "10.214.0.0/24".parse().expect("subnet");
        assert!(other.contains(bridge_address(&moved, &other, &seats).expect("ip")));
    }
}
