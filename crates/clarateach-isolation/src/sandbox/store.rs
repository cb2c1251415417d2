//! The seat store: every seat's `/workspace` and home live in the seat's own ext4 file system,
//! an image of exactly `limits.disk_mb` on the data dir's file system, loop-mounted:
//!
//! ```text
//! <data>/seat-images/.templates/<disk_mb>.img   a fresh seat file system per size, made once
//! <data>/seat-images/.spare/<disk_mb>-N.img     spares, mounted at <data>/seats/.spare/...
//! <data>/seat-images/<ws>/seat-NN.img           one seat's file system (root-only)
//! <data>/seats/                                 a private bind mount of itself
//! <data>/seats/<ws>/seat-NN/                    the seat's mount
//!     workspace/  -> /workspace                 learner-owned
//!     home/       -> /home/learner              learner-owned
//! ```
//!
//! A new seat takes a spare of its size when one is ready (the image renamed, the mount moved:
//! well under a millisecond of syscalls) and a background thread makes the next spares, so the
//! loop mount (5-40 ms on a loaded host) stays off the seat's path except in bursts that drain
//! the spares ([`SPARES_PER_SIZE`] per size). Spares are dropped and remade after a restart.
//!
//! A seat filling its file system gets ENOSPC from it and nothing else notices (see `seatfs`).
//! Images are sparse (a seat costs the host what it wrote). By default (`StoreSize::Auto`) a new
//! image is made while its whole limit fits in 90% of the free space, so one seat can never take
//! the host's last tenth (the state files and keys). The images together may be overcommitted:
//! 30 learners with the default 2 GiB rarely write 60 GiB, and refusing a class on a laptop with
//! 40 GiB free is not what an instructor expects; a warning says when the seats could together
//! outgrow the free space (then a full host would turn into I/O errors in seats' file systems;
//! give the data dir its own file system, or set a size). An operator who sets a size
//! (`--seat-store-size 500G`) takes that decision: images may then add up to that size,
//! whatever is free now.
//!
//! Mounts stay across agent restarts (`open` reuses them) and are made again after a host reboot
//! (`open` mounts every seat image). With `StoreSize::Off` there are no images: the same dirs
//! are plain dirs on the data dir's file system and nothing is enforced; `open` logs one loud
//! warning. Where the host cannot loop-mount ext4, seat creation fails with an error that names
//! that switch, rather than silently running seats that can fill the host.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clarateach_core::agent_proto::SeatKey;

use super::paths::{owned_dir, remove_empty_parent, remove_tree, seat_name};
use super::seatfs::{self, DiskUsage, MkfsError, MountError};

mod ahead;

/// Seat images under the data dir.
pub const IMAGES_DIR: &str = "seat-images";
pub use super::paths::SEATS_DIR;
/// The smallest budget accepted.
pub const MIN_SIZE: u64 = 256 << 20;
/// Spare seat file systems kept made and mounted per size in use, so a new seat takes one (a
/// rename and a mount move, microseconds) instead of waiting for a loop mount.
pub const SPARES_PER_SIZE: usize = 2;
/// The share of the free space seat images may grow into; the rest stays the host's.
pub const GROWTH_SHARE: f64 = 0.90;

/// How big all seat images may be together, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreSize {
    /// Each new image's limit fits in [`GROWTH_SHARE`] of the free space; together they may be
    /// overcommitted, with a warning.
    #[default]
    Auto,
    /// At most this many bytes of seat images in all, not checked against the free space (the
    /// operator vouches for it, or accepts overcommit).
    Bytes(u64),
    /// No per-seat file systems: plain dirs, no disk limit.
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
        let bad = || format!("bad size {s:?} (use e.g. 200G, 512M, auto or off)");
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let bytes = n
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("size {s:?} is too large"))?;
        if bytes < MIN_SIZE {
            return Err(format!(
                "the seat disk budget must be at least {} MiB",
                MIN_SIZE >> 20
            ));
        }
        Ok(Self::Bytes(bytes))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeatStoreError {
    #[error("creating the directory {0}")]
    Dir(PathBuf, #[source] io::Error),
    #[error("measuring the free space of {0}")]
    FreeSpace(PathBuf, #[source] nix::Error),
    #[error("no disk space for another seat of {want_mib} MiB: {reason} (--seat-store-size, or smaller limits.disk_mb)")]
    NoRoom { want_mib: u64, reason: String },
    #[error("making the image {0}")]
    Mkfs(PathBuf, #[source] MkfsError),
    #[error("mounting {0} (loop devices and ext4 are needed; --seat-store-size off runs without disk limits)")]
    Mount(PathBuf, #[source] MountError),
    #[error("{0} holds files but is not mounted; move them away before seats use it")]
    NotEmpty(PathBuf),
    #[error("making the seat image {0} from its template")]
    CopyTemplate(PathBuf, #[source] io::Error),
    #[error("unmounting {0}")]
    Unmount(PathBuf, #[source] io::Error),
    #[error("removing {0}")]
    Remove(PathBuf, #[source] io::Error),
    #[error("reading the usage of {0}")]
    Usage(PathBuf, #[source] io::Error),
    #[error("moving {0} into the seat store")]
    Migrate(PathBuf, #[source] io::Error),
}

/// Where one seat's files are.
#[derive(Debug, Clone)]
pub struct SeatDirs {
    /// Mount point of the seat's file system.
    pub root: PathBuf,
    /// The seat's image.
    pub image: PathBuf,
    pub volume: PathBuf,
    pub home: PathBuf,
    /// The dirs from before the store (`<data>/volumes|homes/<ws>/seat-NN`).
    pub old_volume: PathBuf,
    pub old_home: PathBuf,
    /// Where an old dir goes when something in it could not be copied (root-only).
    pub leftovers: PathBuf,
}

impl SeatDirs {
    pub fn new(data_dir: &Path, key: &SeatKey) -> Self {
        let seat = seat_name(key.seat);
        let ws = &key.workshop_id;
        let root = data_dir.join(SEATS_DIR).join(ws).join(&seat);
        Self {
            image: data_dir
                .join(IMAGES_DIR)
                .join(ws)
                .join(format!("{seat}.img")),
            volume: root.join("workspace"),
            home: root.join("home"),
            root,
            old_volume: data_dir.join("volumes").join(ws).join(&seat),
            old_home: data_dir.join("homes").join(ws).join(&seat),
            leftovers: data_dir.join("migration-leftovers"),
        }
    }
}

/// Bytes of seat images: their sizes added up, and what they hold on the host now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub nominal: u64,
    pub allocated: u64,
}

/// Whether another image of `want` bytes fits next to `have`, with `avail` bytes free on the
/// file system. `Err` says why not.
pub fn fits(size: StoreSize, want: u64, have: Reserved, avail: u64) -> Result<(), String> {
    match size {
        StoreSize::Bytes(budget) if have.nominal.saturating_add(want) > budget => Err(format!(
            "seat images already take {} of the {} MiB budget",
            have.nominal >> 20,
            budget >> 20
        )),
        StoreSize::Bytes(_) | StoreSize::Off => Ok(()),
        StoreSize::Auto => {
            let growth = have.nominal.saturating_sub(have.allocated);
            let room = (avail as f64 * GROWTH_SHARE) as u64;
            if want > room {
                return Err(format!(
                    "a seat of {} MiB does not fit: {} MiB are free, of which {} MiB may be given \
                     to seats (a --seat-store-size accepts overcommit)",
                    want >> 20,
                    avail >> 20,
                    room >> 20
                ));
            }
            if growth.saturating_add(want) > room {
                tracing::warn!(
                    growth_mib = growth >> 20,
                    free_mib = avail >> 20,
                    "seat disks are overcommitted: together the seats could fill the host's disk"
                );
            }
            Ok(())
        }
    }
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), SeatStoreError> {
    match std::fs::DirBuilder::new()
        .mode(mode)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SeatStoreError::Dir(dir.to_path_buf(), e)),
        Err(e) => Err(SeatStoreError::Dir(dir.to_path_buf(), e)),
    }
}

/// The seat store of one agent.
#[derive(Debug)]
pub struct SeatStore {
    data_dir: PathBuf,
    size: StoreSize,
    enforced: bool,
    /// Serialises image creation and mounting.
    lock: Mutex<()>,
    /// Serialises taking and making spares; names them.
    spares: Mutex<u64>,
    /// Whether a seat's create starts making spares (`SandboxConfig::spare_seat_fs`).
    make_spares: bool,
    /// Spares made ahead of a start for a workshop that has not started (see `ahead`):
    /// workshop id -> (disk_mb, seats). Counted on top of [`SPARES_PER_SIZE`].
    ahead: Mutex<std::collections::HashMap<String, (u32, usize)>>,
}

impl SeatStore {
    /// Prepares the dirs of `data_dir` and mounts every seat image that is not mounted (after a
    /// host reboot); mounted ones are reused (after an agent restart).
    pub fn open(data_dir: &Path, size: StoreSize) -> Result<Self, SeatStoreError> {
        Self::open_with(data_dir, size, true)
    }

    /// [`SeatStore::open`]; `make_spares` false: seats never start making spares.
    pub fn open_with(
        data_dir: &Path,
        size: StoreSize,
        make_spares: bool,
    ) -> Result<Self, SeatStoreError> {
        mkdir(&data_dir.join(SEATS_DIR), 0o711)?;
        let store = Self {
            data_dir: data_dir.to_path_buf(),
            size,
            enforced: size != StoreSize::Off,
            lock: Mutex::new(()),
            spares: Mutex::new(0),
            make_spares,
            ahead: Mutex::new(Default::default()),
        };
        if !store.enforced {
            tracing::warn!(
                seats = %data_dir.join(SEATS_DIR).display(),
                "DISK LIMITS ARE OFF (--seat-store-size off): any seat can fill the file system of the data dir"
            );
            return Ok(store);
        }
        mkdir(&data_dir.join(IMAGES_DIR).join(".templates"), 0o700)?;
        mkdir(&data_dir.join(IMAGES_DIR).join(".spare"), 0o700)?;
        mkdir(&data_dir.join(IMAGES_DIR), 0o700)?;
        store.private_seats_mount()?;
        store.drop_spares();
        store.mount_all();
        Ok(store)
    }

    /// Makes `<data>/seats` a private mount of itself (with what is mounted below it), so seat
    /// mounts can be moved inside it: the kernel refuses to move a mount under a shared parent,
    /// and host roots are shared. Kept across agent restarts like the seat mounts.
    fn private_seats_mount(&self) -> Result<(), SeatStoreError> {
        use nix::mount::{mount, MsFlags};
        let seats = self.data_dir.join(SEATS_DIR);
        let canonical = seats
            .canonicalize()
            .map_err(|e| SeatStoreError::Dir(seats.clone(), e))?;
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| SeatStoreError::Dir(seats.clone(), e))?;
        let bind_err = |e: nix::Error| SeatStoreError::Dir(seats.clone(), io::Error::from(e));
        if !mount_points(&text).contains(&canonical) {
            mount(
                Some(&canonical),
                &canonical,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(bind_err)?;
        }
        mount(
            None::<&str>,
            &canonical,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(bind_err)
    }

    fn spare_images(&self) -> PathBuf {
        self.data_dir.join(IMAGES_DIR).join(".spare")
    }

    fn spare_mounts(&self) -> PathBuf {
        self.data_dir.join(SEATS_DIR).join(".spare")
    }

    /// Unmounts and deletes the spares a previous run left (they are remade on demand).
    fn drop_spares(&self) {
        for dir in read_dirs(&self.spare_mounts()) {
            let _ = seatfs::unmount(&dir);
            let _ = std::fs::remove_dir(&dir);
        }
        for entry in std::fs::read_dir(self.spare_images())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    /// Gives the seat a ready spare of its size, if there is one: the image renamed to the
    /// seat's (first, so a crash in between leaves an image the seat mounts again) and its
    /// mount moved to the seat's root.
    fn take_spare(&self, dirs: &SeatDirs, disk_mb: u32) -> Result<bool, SeatStoreError> {
        let _guard = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = format!("{disk_mb}-");
        let ready = read_dirs(&self.spare_mounts()).into_iter().find(|m| {
            m.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && seatfs::is_mount_point(m).unwrap_or(false)
        });
        let Some(mnt) = ready else {
            return Ok(false);
        };
        let Some(name) = mnt.file_name() else {
            return Ok(false);
        };
        let image = self.spare_images().join(name).with_extension("img");
        if let Some(parent) = dirs.image.parent() {
            mkdir(parent, 0o700)?;
        }
        if let Some(parent) = dirs.root.parent() {
            mkdir(parent, 0o711)?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(&dirs.root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(SeatStoreError::Dir(dirs.root.clone(), e))
            }
            _ => {}
        }
        std::fs::rename(&image, &dirs.image)
            .map_err(|e| SeatStoreError::Dir(dirs.image.clone(), e))?;
        nix::mount::mount(
            Some(&mnt),
            &dirs.root,
            None::<&str>,
            nix::mount::MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| SeatStoreError::Dir(dirs.root.clone(), io::Error::from(e)))?;
        let _ = std::fs::remove_dir(&mnt);
        Ok(true)
    }

    /// Makes spares of `disk_mb` up to [`SPARES_PER_SIZE`] plus those made ahead for workshops
    /// (`ahead`), at most `max` in this call, within the budget; returns how many it made. Names
    /// and mount dirs are taken under the lock (so concurrent refills count each other's), the
    /// slow image and mount outside it (so taking a ready spare never waits for a refill).
    fn refill_spares(&self, disk_mb: u32, max: usize) -> Result<usize, SeatStoreError> {
        let prefix = format!("{disk_mb}-");
        let wanted = self.spares_wanted(disk_mb);
        let planned: Vec<String> = {
            let mut seq = self.spares.lock().unwrap_or_else(|p| p.into_inner());
            let have = read_dirs(&self.spare_mounts())
                .iter()
                .filter(|m| {
                    m.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .count();
            let mut names = Vec::new();
            for _ in (have..wanted).take(max) {
                self.check_room(disk_mb)?;
                *seq += 1;
                let name = format!("{disk_mb}-{}", *seq);
                mkdir(&self.spare_mounts().join(&name), 0o711)?;
                names.push(name);
            }
            names
        };
        let template = self.template(disk_mb);
        let made = planned.len();
        for name in planned {
            let image = self.spare_images().join(format!("{name}.img"));
            let mnt = self.spare_mounts().join(&name);
            let made = seatfs::image_from_template(&template, &image)
                .map_err(|e| SeatStoreError::CopyTemplate(image.clone(), e))
                .and_then(|()| {
                    seatfs::mount_fresh(&image, &mnt)
                        .map_err(|e| SeatStoreError::Mount(image.clone(), e))
                });
            if let Err(e) = made {
                let _ = std::fs::remove_dir(&mnt);
                let _ = std::fs::remove_file(&image);
                return Err(e);
            }
            std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| SeatStoreError::Dir(mnt.clone(), e))?;
            // The first write to a fresh file system costs milliseconds (journal, bitmaps read
            // through the loop device): pay it here, off the seat's path.
            for sub in ["workspace", "home"] {
                mkdir(&mnt.join(sub), 0o700)?;
            }
        }
        Ok(made)
    }

    /// The template of `disk_mb`, made by a mkfs the first time; call with `lock` held.
    fn made_template(&self, disk_mb: u32) -> Result<PathBuf, SeatStoreError> {
        let template = self.template(disk_mb);
        if !template.exists() {
            let began = std::time::Instant::now();
            seatfs::mkfs(
                &template,
                seatfs::image_bytes(disk_mb),
                "clarateach-seat",
                &[],
            )
            .map_err(|e| SeatStoreError::Mkfs(template.clone(), e))?;
            tracing::info!(
                disk_mb,
                mkfs_ms = began.elapsed().as_secs_f64() * 1e3,
                "seat template made"
            );
        }
        Ok(template)
    }

    fn template(&self, disk_mb: u32) -> PathBuf {
        self.data_dir
            .join(IMAGES_DIR)
            .join(".templates")
            .join(format!("{disk_mb}.img"))
    }

    fn check_room(&self, disk_mb: u32) -> Result<(), SeatStoreError> {
        let want = seatfs::image_bytes(disk_mb);
        let st = nix::sys::statvfs::statvfs(&self.data_dir)
            .map_err(|e| SeatStoreError::FreeSpace(self.data_dir.clone(), e))?;
        let avail = st.blocks_available() * st.fragment_size();
        fits(self.size, want, self.reserved(), avail).map_err(|reason| SeatStoreError::NoRoom {
            want_mib: want >> 20,
            reason,
        })
    }

    /// What all seat images add up to (sizes, and blocks held on the host).
    fn reserved(&self) -> Reserved {
        read_dirs(&self.data_dir.join(IMAGES_DIR))
            .into_iter()
            .filter(|d| d.file_name().is_some_and(|n| n != ".templates"))
            .flat_map(|ws| std::fs::read_dir(ws).into_iter().flatten().flatten())
            .filter_map(|e| e.metadata().ok())
            .fold(Reserved::default(), |r, m| Reserved {
                nominal: r.nominal + m.len(),
                allocated: r.allocated + (m.blocks() * 512).min(m.len()),
            })
    }

    /// Mounts every seat image whose mount is missing; a failure is logged and left to the
    /// seat's next start, which reports it.
    fn mount_all(&self) {
        let images = self.data_dir.join(IMAGES_DIR);
        for ws in read_dirs(&images) {
            let Some(ws_name) = ws.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            for entry in std::fs::read_dir(&ws).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let Some(seat) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".img"))
                    .and_then(|n| n.strip_prefix("seat-"))
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let dirs = SeatDirs::new(
                    &self.data_dir,
                    &SeatKey {
                        workshop_id: ws_name.clone(),
                        seat,
                    },
                );
                if let Err(e) = self.mount_seat(&dirs) {
                    tracing::warn!(image = %dirs.image.display(), error = %e, "mounting a seat file system failed");
                }
            }
        }
    }

    /// Whether the kernel bounds each seat (false with `StoreSize::Off`).
    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// The dirs of a seat.
    pub fn dirs(&self, key: &SeatKey) -> SeatDirs {
        SeatDirs::new(&self.data_dir, key)
    }

    /// Mounts the seat's image at its root if it is not mounted. Cheap when it is.
    fn mount_seat(&self, dirs: &SeatDirs) -> Result<(), SeatStoreError> {
        let dir_err = |e| SeatStoreError::Dir(dirs.root.clone(), e);
        if seatfs::is_mount_point(&dirs.root).map_err(dir_err)? {
            return Ok(());
        }
        if let Some(parent) = dirs.root.parent() {
            mkdir(parent, 0o711)?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(&dirs.root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(dir_err(e)),
            _ => {}
        }
        if std::fs::read_dir(&dirs.root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            // Mounting over it would hide those files.
            return Err(SeatStoreError::NotEmpty(dirs.root.clone()));
        }
        seatfs::mount(&dirs.image, &dirs.root)
            .map_err(|e| SeatStoreError::Mount(dirs.image.clone(), e))?;
        std::fs::set_permissions(&dirs.root, std::fs::Permissions::from_mode(0o711))
            .map_err(dir_err)
    }

    /// Makes the seat's image from the template of its size (made once per size by a mkfs).
    /// The budget check, the template and the image's reservation (its file at full size) are
    /// made under the store's lock, so concurrent seats count each other; the copy is not.
    fn make_seat_image(&self, dirs: &SeatDirs, disk_mb: u32) -> Result<(), SeatStoreError> {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.check_room(disk_mb)?;
        let template = self.made_template(disk_mb)?;
        if let Some(parent) = dirs.image.parent() {
            mkdir(parent, 0o700)?;
        }
        let copy_err = |e| SeatStoreError::CopyTemplate(dirs.image.clone(), e);
        let tmp = seatfs::reserve_image(&template, &dirs.image).map_err(copy_err)?;
        drop(guard);
        seatfs::fill_image(&template, tmp, &dirs.image).map_err(copy_err)
    }

    /// Mounts a seat image made just now (no loop device can be bound to it yet, so none is
    /// looked for), then makes the mount point root's.
    fn mount_fresh(&self, dirs: &SeatDirs) -> Result<(), SeatStoreError> {
        let dir_err = |e| SeatStoreError::Dir(dirs.root.clone(), e);
        if let Some(parent) = dirs.root.parent() {
            mkdir(parent, 0o711)?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(&dirs.root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(dir_err(e)),
            _ => {}
        }
        if std::fs::read_dir(&dirs.root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            return Err(SeatStoreError::NotEmpty(dirs.root.clone()));
        }
        seatfs::mount_fresh(&dirs.image, &dirs.root)
            .map_err(|e| SeatStoreError::Mount(dirs.image.clone(), e))?;
        std::fs::set_permissions(&dirs.root, std::fs::Permissions::from_mode(0o711))
            .map_err(dir_err)
    }

    /// Makes the seat's file system (first time), mounts it if needed, moves old-style dirs in
    /// and makes the volume and home owned by `uid:gid`. `migrate` is false while the seat runs
    /// on old-style dirs: then nothing is made, and the next start migrates.
    pub fn prepare_seat(
        self: &Arc<Self>,
        dirs: &SeatDirs,
        disk_mb: u32,
        uid: u32,
        gid: u32,
        migrate: bool,
    ) -> Result<(), SeatStoreError> {
        if !migrate && (dirs.old_volume.exists() || dirs.old_home.exists()) {
            return Ok(());
        }
        if self.enforced {
            if !dirs.image.exists() {
                // A seat's own image and mount are its own: only the budget check and the
                // template are shared (`make_seat_image`), so a class's seats make theirs side by
                // side (a mount mostly waits for the loop device's reads: 3 ms of CPU in 25-60 ms).
                if !self.take_spare(dirs, disk_mb)? {
                    self.make_seat_image(dirs, disk_mb)?;
                    self.mount_fresh(dirs)?;
                }
                // Ready the next seats of this size off this one's path.
                if self.make_spares {
                    let store = Arc::clone(self);
                    std::thread::spawn(move || {
                        if let Err(e) = store.refill_spares(disk_mb, usize::MAX) {
                            tracing::warn!(disk_mb, error = %e, "making spare seat file systems failed");
                        }
                    });
                }
            } else if let Ok(m) = std::fs::metadata(&dirs.image) {
                if m.len() != seatfs::image_bytes(disk_mb) {
                    tracing::warn!(image = %dirs.image.display(), disk_mb, size_mib = m.len() >> 20,
                        "limits.disk_mb changed: the seat keeps the size it was made with");
                }
            }
            self.mount_seat(dirs)?;
        } else {
            mkdir(&dirs.root, 0o711)?;
        }
        for (old, new) in [
            (&dirs.old_volume, &dirs.volume),
            (&dirs.old_home, &dirs.home),
        ] {
            if migrate {
                super::migrate::migrate(old, new, &dirs.leftovers)
                    .map_err(|e| SeatStoreError::Migrate(old.clone(), e))?;
            }
            owned_dir(new, uid, gid).map_err(|e| SeatStoreError::Dir(new.clone(), e))?;
        }
        Ok(())
    }

    /// Unmounts and deletes the seat's file system (its files with it).
    pub fn release_seat(&self, dirs: &SeatDirs) -> Result<(), SeatStoreError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        seatfs::unmount(&dirs.root).map_err(|e| SeatStoreError::Unmount(dirs.root.clone(), e))?;
        // Unmounted, so this removes only the empty mount point (or Off mode's plain dirs).
        remove_tree(&dirs.root).map_err(|e| SeatStoreError::Remove(dirs.root.clone(), e))?;
        remove_empty_parent(&dirs.root);
        match std::fs::remove_file(&dirs.image) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(SeatStoreError::Remove(dirs.image.clone(), e))
            }
            _ => {}
        }
        remove_empty_parent(&dirs.image);
        Ok(())
    }

    /// What the seat uses of its file system and how much it holds; zeros when disk limits are
    /// off or the seat has no mounted file system.
    pub fn usage(&self, dirs: &SeatDirs) -> Result<DiskUsage, SeatStoreError> {
        let err = |e| SeatStoreError::Usage(dirs.root.clone(), e);
        if !self.enforced || !seatfs::is_mount_point(&dirs.root).map_err(err)? {
            return Ok(DiskUsage::default());
        }
        seatfs::usage(&dirs.root).map_err(err)
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

/// Unmounts every seat file system of `data_dir` (tests, a host reboot simulated, an operator
/// retiring an agent). Lazily: running sandboxes keep their own view.
pub fn unmount_all(data_dir: &Path) -> io::Result<()> {
    unmount_under(&data_dir.join(SEATS_DIR).canonicalize()?)
}

/// Lazily unmounts every mount at or below `dir`, deepest first (test clean-up of a temp dir
/// that held agent data dirs anywhere inside it).
pub fn unmount_under(dir: &Path) -> io::Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)?;
    }
    Ok(())
}

/// The mount points of mountinfo text (`proc(5)`: the fifth field, octal escapes undone).
pub(super) fn mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|field| {
            let b = field.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let oct = b
                    .get(i + 1..i + 4)
                    .and_then(|o| std::str::from_utf8(o).ok())
                    .and_then(|o| u8::from_str_radix(o, 8).ok());
                match (b[i], oct) {
                    (b'\\', Some(c)) => {
                        out.push(c);
                        i += 4;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
            95 22 7:3 / /d/my\\040data/seats/ws/seat-01 rw,nosuid - ext4 /dev/loop3 rw\n";
        assert_eq!(
            mount_points(text),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/d/my data/seats/ws/seat-01")
            ]
        );
    }

    use super::*;

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
    fn images_fit_while_their_growth_fits_and_the_budget_holds() {
        let gib = 1u64 << 30;
        let none = Reserved::default();
        assert!(fits(StoreSize::Auto, 2 * gib, none, 10 * gib).is_ok());
        // Four images of 2 GiB with 1 GiB written: 7 GiB of growth; 7 + 2 > 90% of 9, allowed
        // (overcommit, with a warning); one seat bigger than 90% of the free space is not.
        let four = Reserved {
            nominal: 8 * gib,
            allocated: gib,
        };
        assert!(fits(StoreSize::Auto, 2 * gib, four, 9 * gib).is_ok());
        let why = fits(StoreSize::Auto, 9 * gib, four, 9 * gib).expect_err("too big");
        assert!(why.contains("does not fit"), "{why}");
        let budget = StoreSize::Bytes(9 * gib);
        let why = fits(budget, 2 * gib, four, 100 * gib).expect_err("over budget");
        assert!(why.contains("budget"), "{why}");
        assert!(fits(budget, gib, four, 100 * gib).is_ok());
        assert!(
            fits(budget, gib, four, gib).is_ok(),
            "a set size is the operator's call"
        );
    }

    #[test]
    fn seat_dirs_follow_the_layout() {
        let key = SeatKey {
            workshop_id: "ws-a".into(),
            seat: 3,
        };
        let d = SeatDirs::new(Path::new("/d"), &key);
        assert_eq!(d.root, Path::new("/d/seats/ws-a/seat-03"));
        assert_eq!(d.volume, Path::new("/d/seats/ws-a/seat-03/workspace"));
        assert_eq!(d.home, Path::new("/d/seats/ws-a/seat-03/home"));
        assert_eq!(d.image, Path::new("/d/seat-images/ws-a/seat-03.img"));
        assert_eq!(d.old_volume, Path::new("/d/volumes/ws-a/seat-03"));
    }
}
