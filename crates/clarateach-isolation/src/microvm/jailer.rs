//! Firecracker through its jailer, when one is installed: the jailer chroots into
//! `<data>/jail/<exec name>/<seat id>/root`, creates `/dev/kvm` and `/dev/net/tun` there, drops to
//! an unprivileged uid/gid and execs Firecracker, so a VMM escape lands in an empty chroot as
//! nobody. Everything Firecracker opens must therefore be inside the chroot: the kernel, initrd,
//! the seat's rootfs, volume and config disk are hard-linked in (copied when linking is not
//! possible and the file is read-only to the guest), and the API socket is
//! `<root>/run/firecracker.socket`, which the seat dir's `firecracker.sock` points to.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;

/// Firecracker's API socket as seen from inside the chroot.
pub const JAIL_API_SOCK: &str = "/run/firecracker.socket";

/// One seat's jail.
#[derive(Debug, Clone)]
pub struct Jail {
    pub jailer: PathBuf,
    pub firecracker: PathBuf,
    /// `--id`: letters, digits and dashes only (see `jail_id`).
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    pub chroot_base: PathBuf,
}

/// A file the VM needs, and its name inside the chroot.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub host: PathBuf,
    pub name: &'static str,
    /// Hard-linked (never copied) and chowned to the jail's uid: the guest writes it (a copy would
    /// lose the writes), or it is private (0600) and the jailed VMM must read it.
    pub owned: bool,
}

impl Jail {
    /// `<chroot_base>/<exec file name>/<id>`: what a destroy removes.
    pub fn dir(&self) -> PathBuf {
        let exec = self.firecracker.file_name().unwrap_or_default();
        self.chroot_base.join(exec).join(&self.id)
    }
    /// The chroot itself.
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }
    /// The API socket from the host's point of view.
    pub fn api_socket(&self) -> PathBuf {
        self.root().join(JAIL_API_SOCK.trim_start_matches('/'))
    }

    /// The jailer's argument list (without the program name); Firecracker's own come after `--`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        a.extend(["--id".into(), self.id.clone().into()]);
        a.extend(["--exec-file".into(), self.firecracker.clone().into()]);
        a.extend(["--uid".into(), self.uid.to_string().into()]);
        a.extend(["--gid".into(), self.gid.to_string().into()]);
        a.extend(["--chroot-base-dir".into(), self.chroot_base.clone().into()]);
        a.extend(["--".into(), "--api-sock".into(), JAIL_API_SOCK.into()]);
        a
    }

    /// Rebuilds the chroot from scratch (the jailer refuses to mknod over a previous run's
    /// `/dev/kvm`) and puts `files` in its root; returns each file's path inside the chroot.
    pub fn stage(&self, files: &[StagedFile]) -> io::Result<Vec<PathBuf>> {
        match std::fs::remove_dir_all(self.dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let root = self.root();
        std::fs::create_dir_all(root.join("run"))?;
        std::os::unix::fs::chown(root.join("run"), Some(self.uid), Some(self.gid))?;
        let mut inside = Vec::new();
        for f in files {
            let target = root.join(f.name);
            if let Err(e) = std::fs::hard_link(&f.host, &target) {
                if f.owned {
                    // A copy would take the guest's writes away from the real volume.
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot hard-link {} into the jail: {e}", f.host.display()),
                    ));
                }
                std::fs::copy(&f.host, &target)?;
            }
            if f.owned {
                std::os::unix::fs::chown(&target, Some(self.uid), Some(self.gid))?;
            }
            inside.push(Path::new("/").join(f.name));
        }
        Ok(inside)
    }
}

/// The jailer to use: the configured one, else a `jailer` next to the firecracker binary.
pub fn find_jailer(configured: Option<&Path>, firecracker: &Path) -> Option<PathBuf> {
    match configured {
        Some(p) => super::find_binary(p),
        None => firecracker
            .parent()
            .map(|d| d.join("jailer"))
            .filter(|p| p.is_file()),
    }
}

/// The jailer's `--id` for a seat: `ws-abc-seat-03` (it accepts letters, digits and dashes).
pub fn jail_id(key: &SeatKey) -> String {
    let ws: String = key
        .workshop_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(48)
        .collect();
    format!("{ws}-seat-{:02}", key.seat)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn jail(base: &Path) -> Jail {
        Jail {
            jailer: "/opt/fc/jailer".into(),
            firecracker: "/opt/fc/firecracker".into(),
            id: "ws-abc-seat-03".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            chroot_base: base.into(),
        }
    }

    #[test]
    fn jailer_command_line() {
        let mut j = jail(Path::new("/data/jail"));
        (j.uid, j.gid) = (65534, 65533);
        let line: Vec<String> = j
            .args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            line.join(" "),
            "--id ws-abc-seat-03 --exec-file /opt/fc/firecracker --uid 65534 --gid 65533 \
             --chroot-base-dir /data/jail -- --api-sock /run/firecracker.socket"
        );
        assert_eq!(
            j.api_socket(),
            Path::new("/data/jail/firecracker/ws-abc-seat-03/root/run/firecracker.socket")
        );
    }

    #[test]
    fn ids_and_finding_the_jailer() {
        let key = SeatKey {
            workshop_id: "ws-a_b/c".into(),
            seat: 3,
        };
        assert_eq!(jail_id(&key), "ws-a-b-c-seat-03");
        let dir = tempfile::tempdir().expect("tempdir");
        let fc = dir.path().join("firecracker");
        assert_eq!(find_jailer(None, &fc), None);
        std::fs::write(dir.path().join("jailer"), b"").expect("jailer");
        assert_eq!(find_jailer(None, &fc), Some(dir.path().join("jailer")));
        assert_eq!(find_jailer(Some(&dir.path().join("nope")), &fc), None);
    }

    #[test]
    fn staging_links_the_seat_files_into_a_fresh_chroot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vmlinux, volume) = (dir.path().join("vmlinux"), dir.path().join("seat-03.img"));
        std::fs::write(&vmlinux, b"kernel").expect("kernel");
        std::fs::write(&volume, b"volume").expect("volume");
        let j = jail(&dir.path().join("jail"));
        let files = [
            StagedFile {
                host: vmlinux.clone(),
                name: "vmlinux",
                owned: false,
            },
            StagedFile {
                host: volume.clone(),
                name: "volume.img",
                owned: true,
            },
        ];
        // A leftover from a previous run (the jailer's /dev/kvm) must not survive.
        std::fs::create_dir_all(j.root().join("dev")).expect("old dev");
        let inside = j.stage(&files).expect("stage");
        assert_eq!(inside, [Path::new("/vmlinux"), Path::new("/volume.img")]);
        assert!(!j.root().join("dev").exists());
        assert!(j.root().join("run").is_dir());
        let staged = std::fs::metadata(j.root().join("volume.img")).expect("staged volume");
        let original = std::fs::metadata(&volume).expect("volume");
        assert_eq!(
            staged.ino(),
            original.ino(),
            "the guest writes the real volume"
        );
        assert_eq!(staged.uid(), j.uid);
        // Staging again (a restart) works over the previous chroot.
        j.stage(&files).expect("stage again");
        assert_eq!(
            std::fs::read(j.root().join("vmlinux")).expect("kernel"),
            b"kernel"
        );
    }

    #[test]
    fn read_only_files_are_copied_across_file_systems_writable_ones_refused() {
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            return eprintln!("skipping: no /dev/shm");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let far = shm.path().join("initrd");
        std::fs::write(&far, b"initrd").expect("initrd");
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).unwrap_or(0);
        if dev(shm.path()) == dev(dir.path()) {
            return eprintln!("skipping: /dev/shm and the temp dir share a file system");
        }
        let j = jail(&dir.path().join("jail"));
        let ro = StagedFile {
            host: far.clone(),
            name: "initrd.cpio",
            owned: false,
        };
        j.stage(std::slice::from_ref(&ro)).expect("copied");
        assert_eq!(
            std::fs::read(j.root().join("initrd.cpio")).expect("copy"),
            b"initrd"
        );
        let rw = StagedFile { owned: true, ..ro };
        assert!(
            j.stage(&[rw]).is_err(),
            "a copied volume would lose the guest's writes"
        );
    }
}
