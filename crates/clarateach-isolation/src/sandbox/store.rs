//! The seat store: one ext4 file system per agent, in a sparse image file in the data dir,
//! loop-mounted with project quotas at `<data>/seat-store`, holding every seat's `/workspace` and
//! home. A seat filling its quota gets ENOSPC; the store as a whole is bounded by its image size,
//! so even all seats together cannot fill the file system that holds the state files and keys.
//!
//! The image is made once (`mkfs.ext4 -O quota,project`, ~0.1 s) and stays mounted across agent
//! restarts: `open` reuses a mounted store and mounts it again after a host reboot. Each seat then
//! costs a few syscalls (`quota`), never a mkfs. Deleted files are discarded down to the image
//! (`-o discard`), so the sparse image gives space back to the host.
//!
//! With `StoreSize::Off` the same directory is a plain directory on the data dir's file system
//! and nothing is enforced; `open` logs one loud warning. Where the kernel or the host cannot
//! give quotas (no loop devices, no ext4 project quota) `open` fails with an error that names
//! that switch, rather than silently running seats that can fill the host.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use clarateach_core::agent_proto::SeatKey;

use super::quota::{self, DiskUsage, QuotaLimits};

/// The mount point (or plain dir) under the data dir.
pub const STORE_DIR: &str = "seat-store";
/// The image file under the data dir.
pub const STORE_IMAGE: &str = "seat-store.img";
/// The automatic size never exceeds this (the image is sparse; this bounds its growth).
pub const AUTO_CAP: u64 = 1 << 40;
/// The smallest store `open` makes.
pub const MIN_SIZE: u64 = 256 << 20;
const MOUNT_OPTIONS: &str = "loop,prjquota,nodev,nosuid,discard";

/// How big the seat store is, or whether there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreSize {
    /// 90% of the data dir's free space when the image is made, at most [`AUTO_CAP`].
    #[default]
    Auto,
    /// A fixed size in bytes.
    Bytes(u64),
    /// No store: seat dirs are plain dirs on the data dir's file system, no quota.
    Off,
}

impl std::str::FromStr for StoreSize {
    type Err = String;

    /// `auto`, `off`, or a size like `200G`, `512M`, `1T` or plain bytes.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "auto" => return Ok(Self::Auto),
            "off" | "none" => return Ok(Self::Off),
            _ => {}
        }
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(format!("bad size {s:?} (use e.g. 200G, 512M, auto or off)")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad size {s:?} (use e.g. 200G, 512M, auto or off)"))?;
        let bytes = n
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("size {s:?} is too large"))?;
        if bytes < MIN_SIZE {
            return Err(format!(
                "the seat store needs at least {} MiB",
                MIN_SIZE >> 20
            ));
        }
        Ok(Self::Bytes(bytes))
    }
}

/// A program run by `open` that failed.
#[derive(Debug, thiserror::Error)]
#[error("`{program}` failed ({status}): {stderr}")]
pub struct CommandFailed {
    program: String,
    status: String,
    stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeatStoreError {
    #[error("creating the seat store directory {0}")]
    MountPoint(PathBuf, #[source] io::Error),
    #[error("measuring the free space of {0}")]
    FreeSpace(PathBuf, #[source] nix::Error),
    #[error(
        "the data dir has {free_mib} MiB free, too little for a seat store (set --seat-store-size)"
    )]
    TooSmall { free_mib: u64 },
    #[error("creating the seat store image {0}")]
    CreateImage(PathBuf, #[source] io::Error),
    #[error("making the file system of the seat store {0}")]
    Mkfs(PathBuf, #[source] CommandFailed),
    #[error("mounting the seat store {0} (loop devices and ext4 project quotas are needed; --seat-store-size off runs without disk quotas)")]
    Mount(PathBuf, #[source] CommandFailed),
    #[error("reading /proc/self/mountinfo")]
    MountInfo(#[source] io::Error),
    #[error("{dir} is mounted as {fstype} ({options}) without project quotas; unmount it, or start with --seat-store-size off")]
    NoPrjquota {
        dir: PathBuf,
        fstype: String,
        options: String,
    },
    #[error(
        "the kernel refuses project quotas on {0} (--seat-store-size off runs without disk quotas)"
    )]
    QuotaUnsupported(PathBuf, #[source] io::Error),
    #[error("preparing the seat directory {0}")]
    SeatDir(PathBuf, #[source] io::Error),
    #[error("tagging {0} with disk quota project {1}")]
    SetProject(PathBuf, u32, #[source] io::Error),
    #[error("setting the disk quota of project {0}")]
    SetQuota(u32, #[source] io::Error),
    #[error("reading the disk quota of {0}")]
    GetQuota(PathBuf, #[source] io::Error),
    #[error("moving {0} into the seat store")]
    Migrate(PathBuf, #[source] io::Error),
}

/// One line of `/proc/self/mountinfo`, the fields the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|oct| {
            std::str::from_utf8(oct)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (`proc(5)`): `id parent maj:min root mount-point opts [tags] - type
/// source super-opts`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: r.next()?.to_string(),
                source: unescape(r.next()?),
                super_options: r.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The topmost mount at `dir`, if any.
fn mounted_at(dir: &Path) -> Result<Option<MountEntry>, SeatStoreError> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(SeatStoreError::MountInfo)?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == dir))
}

/// The automatic size for `free` bytes available: 90%, capped, rounded down to 1 MiB.
pub fn auto_size(free: u64) -> u64 {
    (free / 10 * 9).min(AUTO_CAP) & !((1 << 20) - 1)
}

fn run(cmd: &mut Command) -> Result<(), CommandFailed> {
    let program = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(CommandFailed {
            program,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(CommandFailed {
            program,
            status: "not run".into(),
            stderr: e.to_string(),
        }),
    }
}

/// The seat store of one agent.
#[derive(Debug)]
pub struct SeatStore {
    root: PathBuf,
    /// The loop device, when quotas are enforced.
    device: Option<PathBuf>,
    /// Serialises project id allocation with the tagging that makes an id taken.
    alloc: Mutex<()>,
}

impl SeatStore {
    /// Mounts (making it first if needed) or reuses the store of `data_dir`.
    pub fn open(data_dir: &Path, size: StoreSize) -> Result<Self, SeatStoreError> {
        let root = data_dir.join(STORE_DIR);
        match std::fs::DirBuilder::new().mode(0o711).create(&root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(SeatStoreError::MountPoint(root, e))
            }
            _ => {}
        }
        let root = root
            .canonicalize()
            .map_err(|e| SeatStoreError::MountPoint(root.clone(), e))?;
        if size == StoreSize::Off {
            tracing::warn!(
                store = %root.display(),
                "DISK QUOTAS ARE OFF (--seat-store-size off): any seat can fill the file system of the data dir"
            );
            let store = Self::plain(root);
            store.make_layout()?;
            return Ok(store);
        }
        let mount = match mounted_at(&root)? {
            Some(m) => m,
            None => {
                let image = data_dir.join(STORE_IMAGE);
                if !image.exists() {
                    make_image(data_dir, &image, size)?;
                }
                let mut cmd = Command::new("mount");
                cmd.args(["-t", "ext4", "-o", MOUNT_OPTIONS])
                    .arg(&image)
                    .arg(&root);
                run(&mut cmd).map_err(|e| SeatStoreError::Mount(image.clone(), e))?;
                tracing::info!(image = %image.display(), store = %root.display(), "seat store mounted");
                mounted_at(&root)?.ok_or_else(|| {
                    SeatStoreError::Mount(
                        image,
                        CommandFailed {
                            program: "mount".into(),
                            status: "ok".into(),
                            stderr: "but the mount is not in mountinfo".into(),
                        },
                    )
                })?
            }
        };
        if mount.fstype != "ext4" || !mount.super_options.split(',').any(|o| o == "prjquota") {
            return Err(SeatStoreError::NoPrjquota {
                dir: root,
                fstype: mount.fstype,
                options: mount.super_options,
            });
        }
        let device = PathBuf::from(&mount.source);
        quota::usage(&device, 0).map_err(|e| SeatStoreError::QuotaUnsupported(root.clone(), e))?;
        let store = Self {
            root,
            device: Some(device),
            alloc: Mutex::new(()),
        };
        store.make_layout()?;
        Ok(store)
    }

    fn plain(root: PathBuf) -> Self {
        Self {
            root,
            device: None,
            alloc: Mutex::new(()),
        }
    }

    /// The store's root is passable, not listable, for the learner uids.
    fn make_layout(&self) -> Result<(), SeatStoreError> {
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| SeatStoreError::MountPoint(p, e)
        };
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711))
            .map_err(err(&self.root))?;
        for sub in ["volumes", "homes"] {
            let dir = self.root.join(sub);
            match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(err(&dir)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// The store's directory (`<data>/seat-store`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the kernel enforces quotas here (false with `StoreSize::Off`).
    pub fn enforced(&self) -> bool {
        self.device.is_some()
    }

    /// The project id a seat's `volume` dir carries, or a free one (the smallest id no seat's
    /// volume dir carries) when it has none yet. Call with the allocation lock held.
    fn project_for(&self, volume: &Path) -> io::Result<u32> {
        match quota::project_of(volume) {
            Ok(id) if id != 0 => return Ok(id),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut taken = Vec::new();
        for ws in read_dirs(&self.root.join("volumes")) {
            for seat in read_dirs(&ws) {
                if let Ok(id) = quota::project_of(&seat) {
                    taken.push(id);
                }
            }
        }
        taken.sort_unstable();
        Ok(smallest_free(&taken))
    }

    /// Makes a seat's volume and home (moving old-style dirs in first), owned by `uid:gid`,
    /// tagged with one project and capped at `disk_mb`. `project` picks the id (e.g. the seat's
    /// host uid); `None` keeps the one the volume carries or allocates one. `migrate` is false
    /// while the seat runs (its processes write the old dirs). Returns the project id.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_seat(
        &self,
        dirs: &SeatDirs,
        project: Option<u32>,
        disk_mb: u32,
        uid: u32,
        gid: u32,
        migrate: bool,
    ) -> Result<u32, SeatStoreError> {
        let _guard = self.alloc.lock().unwrap_or_else(|p| p.into_inner());
        let projid = match (self.enforced(), project) {
            (false, _) => 0,
            (true, Some(id)) => id,
            (true, None) => self
                .project_for(&dirs.volume)
                .map_err(|e| SeatStoreError::SeatDir(dirs.volume.clone(), e))?,
        };
        let tag = |dir: &Path| -> io::Result<()> {
            if projid != 0 {
                quota::set_project(dir, projid)?;
            }
            Ok(())
        };
        for (old, new) in [
            (&dirs.old_volume, &dirs.volume),
            (&dirs.old_home, &dirs.home),
        ] {
            if !migrate && old.exists() {
                // Its seat runs on the old dir; a new empty dir now would later read as a
                // finished migration. The next start migrates.
                continue;
            }
            if migrate {
                super::migrate::migrate(old, new, &dirs.leftovers, &tag)
                    .map_err(|e| SeatStoreError::Migrate(old.clone(), e))?;
            }
            super::paths::owned_dir(new, uid, gid)
                .map_err(|e| SeatStoreError::SeatDir(new.clone(), e))?;
            tag(new).map_err(|e| SeatStoreError::SetProject(new.clone(), projid, e))?;
        }
        if let Some(device) = &self.device {
            quota::set_limits(device, projid, QuotaLimits::from_disk_mb(disk_mb))
                .map_err(|e| SeatStoreError::SetQuota(projid, e))?;
        }
        Ok(projid)
    }

    /// Drops the limit of the project `volume` carries; call before removing the dirs.
    pub fn release_seat(&self, volume: &Path) -> Result<(), SeatStoreError> {
        let Some(device) = &self.device else {
            return Ok(());
        };
        let projid = match quota::project_of(volume) {
            Ok(0) => return Ok(()),
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SeatStoreError::GetQuota(volume.to_path_buf(), e)),
        };
        quota::set_limits(device, projid, QuotaLimits::from_disk_mb(0))
            .map_err(|e| SeatStoreError::SetQuota(projid, e))
    }

    /// Bytes (and inodes) used by the seat whose volume is `volume`, and its limit; zeros when
    /// quotas are off or the seat has no dirs.
    pub fn usage(&self, volume: &Path) -> Result<DiskUsage, SeatStoreError> {
        let Some(device) = &self.device else {
            return Ok(DiskUsage::default());
        };
        let err = |e| SeatStoreError::GetQuota(volume.to_path_buf(), e);
        match quota::project_of(volume) {
            Ok(0) => Ok(DiskUsage::default()),
            Ok(id) => quota::usage(device, id).map_err(err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DiskUsage::default()),
            Err(e) => Err(err(e)),
        }
    }
}

/// Where one seat's dirs are, in the store and from before the store.
#[derive(Debug, Clone)]
pub struct SeatDirs {
    pub volume: PathBuf,
    pub home: PathBuf,
    pub old_volume: PathBuf,
    pub old_home: PathBuf,
    /// Where an old dir goes when something in it could not be copied (root-only).
    pub leftovers: PathBuf,
}

impl SeatDirs {
    /// The dirs of the seat whose store dirs are `volume` and `home`.
    pub fn new(data_dir: &Path, key: &SeatKey, volume: PathBuf, home: PathBuf) -> Self {
        let seat = super::paths::seat_name(key.seat);
        let ws = &key.workshop_id;
        Self {
            volume,
            home,
            old_volume: data_dir.join("volumes").join(ws).join(&seat),
            old_home: data_dir.join("homes").join(ws).join(&seat),
            leftovers: data_dir.join("migration-leftovers"),
        }
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The smallest id >= 1 not in `taken` (sorted).
fn smallest_free(taken: &[u32]) -> u32 {
    let mut want = 1;
    for &id in taken {
        if id == want {
            want += 1;
        } else if id > want {
            break;
        }
    }
    want
}

/// Makes the sparse image: written as `.tmp` and renamed, so a crash never leaves a half-made
/// image that `open` would try to mount.
fn make_image(data_dir: &Path, image: &Path, size: StoreSize) -> Result<(), SeatStoreError> {
    let bytes = match size {
        StoreSize::Bytes(b) => b,
        _ => {
            let st = nix::sys::statvfs::statvfs(data_dir)
                .map_err(|e| SeatStoreError::FreeSpace(data_dir.to_path_buf(), e))?;
            let free = st.blocks_available() * st.fragment_size();
            let size = auto_size(free);
            if size < MIN_SIZE {
                return Err(SeatStoreError::TooSmall {
                    free_mib: free >> 20,
                });
            }
            size
        }
    };
    let tmp = image.with_extension("img.tmp");
    let create = |tmp: &Path| -> io::Result<()> {
        let _ = std::fs::remove_file(tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        file.set_len(bytes)
    };
    create(&tmp).map_err(|e| SeatStoreError::CreateImage(tmp.clone(), e))?;
    let began = std::time::Instant::now();
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-m", "0", "-L", "clarateach-seats"])
        .args(["-O", "quota,project"])
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(&tmp);
    run(&mut cmd).map_err(|e| SeatStoreError::Mkfs(tmp.clone(), e))?;
    std::fs::rename(&tmp, image)
        .map_err(|e| SeatStoreError::CreateImage(image.to_path_buf(), e))?;
    tracing::info!(
        image = %image.display(),
        size_mib = bytes >> 20,
        mkfs_ms = began.elapsed().as_secs_f64() * 1e3,
        "seat store created"
    );
    Ok(())
}

/// Unmounts the store of `data_dir` (tests, and operators retiring an agent). The loop device
/// goes with it (`mount -o loop` sets autoclear). Not mounted is fine.
pub fn unmount(data_dir: &Path) -> io::Result<()> {
    let root = match data_dir.join(STORE_DIR).canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mounted = mounted_at(&root).map_err(io::Error::other)?;
    if mounted.is_some() {
        nix::mount::umount(&root).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
            95 22 7:3 / /d/my\\040data/seat-store rw,nosuid,nodev,relatime shared:50 - ext4 /dev/loop3 rw,discard,prjquota\n\
            96 22 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, Path::new("/d/my data/seat-store"));
        assert_eq!(m[1].source, "/dev/loop3");
        assert_eq!(m[1].fstype, "ext4");
        assert!(m[1].super_options.contains("prjquota"));
        assert_eq!(m[2].fstype, "proc");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("auto".parse(), Ok(StoreSize::Auto));
        assert_eq!("OFF".parse(), Ok(StoreSize::Off));
        assert_eq!("200G".parse(), Ok(StoreSize::Bytes(200 << 30)));
        assert_eq!("512MiB".parse(), Ok(StoreSize::Bytes(512 << 20)));
        assert_eq!("1T".parse(), Ok(StoreSize::Bytes(1 << 40)));
        assert!("1M".parse::<StoreSize>().is_err(), "below the minimum");
        assert!("12Q".parse::<StoreSize>().is_err());
        assert!("G".parse::<StoreSize>().is_err());
        assert!("99999999999T".parse::<StoreSize>().is_err());
    }

    #[test]
    fn auto_size_keeps_a_tenth_and_caps() {
        assert_eq!(auto_size(100 << 30), (90 << 30) & !((1 << 20) - 1));
        assert_eq!(auto_size(10 << 40), AUTO_CAP);
        assert!(auto_size(100 << 20) < MIN_SIZE);
    }

    #[test]
    fn free_project_ids_fill_gaps() {
        assert_eq!(smallest_free(&[]), 1);
        assert_eq!(smallest_free(&[0, 1, 2, 4]), 3);
        assert_eq!(smallest_free(&[1, 1, 2]), 3);
        assert_eq!(smallest_free(&[5]), 1);
    }
}
