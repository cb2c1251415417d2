//! The bubblewrap command line of a seat, built as a pure function of its inputs so every flag is
//! unit-tested. Secrets never appear here: the environment reaches the sandbox through the
//! environment of the bwrap process itself, which only root and the seat's uid can read.
//! Nothing of the host's `/etc` and no directory of the agent (the daemon's socket included) is
//! visible inside: the daemon's socket arrives as an inherited descriptor.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::paths::LEARNER_ID;

/// Where the daemon binary appears inside the sandbox (on bwrap's tmpfs root, so it works with
/// the host's directories and with an image rootfs alike).
pub const DAEMON_PATH: &str = "/run/clarateach-bin/clarateach";
/// Host directories that make up the read-only root when no image rootfs is given.
/// The host's `/etc` is not among them (see `etc`).
pub const HOST_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Top-level entries of an image rootfs that the sandbox provides itself.
const OWN_DIRS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "home",
    "workspace",
    "root",
];

/// One top-level entry of the read-only root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootEntry {
    /// `--ro-bind source /name`
    Dir { source: PathBuf, name: String },
    /// `--symlink target /name` (merged-/usr hosts: `/bin -> usr/bin`).
    Symlink { target: PathBuf, name: String },
    /// `--dir /name`: an empty directory of an image (`/boot`, `/mnt`, `/srv`...) is made on
    /// bwrap's root, read-only after its remount like the rest, instead of bound: the same view
    /// for the learner, one mount less per seat start (an image has five of them).
    EmptyDir { name: String },
}

/// Reads the top-level entries of `root` that make up the sandbox's root: the `HOST_DIRS` of the
/// host when `root` is `/`, else every directory of the image except those the sandbox provides.
pub fn root_entries(root: &Path) -> std::io::Result<Vec<RootEntry>> {
    let names: Vec<String> = if root == Path::new("/") {
        HOST_DIRS.iter().map(|s| s.to_string()).collect()
    } else {
        let mut names: Vec<String> = std::fs::read_dir(root)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !OWN_DIRS.contains(&n.as_str()))
            .collect();
        names.sort();
        names
    };
    let mut out = Vec::new();
    for name in names {
        let source = root.join(&name);
        match std::fs::symlink_metadata(&source) {
            Ok(m) if m.file_type().is_symlink() => {
                out.push(RootEntry::Symlink {
                    target: std::fs::read_link(&source)?,
                    name,
                });
            }
            Ok(m) if m.is_dir() && root != Path::new("/") && is_empty_dir(&source)? => {
                out.push(RootEntry::EmptyDir { name })
            }
            Ok(m) if m.is_dir() => out.push(RootEntry::Dir { source, name }),
            _ => {}
        }
    }
    Ok(out)
}

fn is_empty_dir(path: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(path)?.next().is_none())
}

/// Descriptor numbers bwrap is started with (`spawn` moves the real ones there).
pub const LISTEN_FD: i32 = 3;
/// The two seccomp programs (`seccomp::SeccompPrograms::pipes`), read and closed by bwrap.
pub const SECCOMP_FDS: [i32; 2] = [4, 5];

/// Where the seat's `/etc` comes from.
#[derive(Debug, Clone)]
pub enum Etc<'a> {
    /// Host system dirs: the generated dir is `/etc`, with `host_binds` (full host paths under
    /// `/etc`) bound read-only over it.
    Generated {
        dir: &'a Path,
        host_binds: &'a [PathBuf],
    },
    /// Image rootfs: its own `/etc` (part of `root`), with the generated passwd, group, hosts
    /// and resolv.conf from `dir` over it (the seat's users and name resolution are ours; the
    /// image's own copies came from whatever machine built it). The image store writes all four
    /// as files, so the mount points exist in the read-only tree.
    Image { dir: &'a Path },
}

/// Everything that varies between seats.
#[derive(Debug, Clone)]
pub struct ArgsInput<'a> {
    pub hostname: &'a str,
    pub root: &'a [RootEntry],
    pub etc: Etc<'a>,
    /// Bound over `/etc/resolv.conf` when set (a networked seat's resolver).
    pub resolv_conf: Option<&'a Path>,
    pub daemon_binary: &'a Path,
    /// Host path bound at `/workspace` (a plain directory or the mount point of a quota-backed
    /// volume: the sandbox only sees a path).
    pub volume: &'a Path,
    pub home: &'a Path,
    /// Sizes of the `/tmp` and `/dev/shm` tmpfs in bytes.
    pub tmp_bytes: u64,
    pub shm_bytes: u64,
    /// The seat has its own network namespace (entered before bwrap): no `--unshare-net`.
    pub egress: bool,
    /// Run ahead of the seat's Start: the daemon serves nothing before its activation.
    pub await_activation: bool,
}

/// Sizes of `/tmp` and `/dev/shm` for a seat's disk limit: a quarter and an eighth of it (at
/// least 16 MiB). tmpfs pages are memory, charged to the seat's memory cgroup as well, so the
/// memory limit bounds them too.
pub fn tmpfs_sizes(disk_mb: u32) -> (u64, u64) {
    let mib = |m: u32| u64::from(m.max(16)) << 20;
    (mib(disk_mb / 4), mib(disk_mb / 8))
}

/// Builds bwrap's arguments. bwrap runs as the seat's unprivileged host uid, so it makes a user
/// namespace where that uid appears as `LEARNER_ID`; with `--cap-drop ALL` nothing inside holds a
/// capability even in its own namespace, `--disable-userns` forbids nested user namespaces, and
/// the seccomp programs deny mounts, namespaces and the kernel interfaces a seat does not need.
/// The daemon gets its listening socket as descriptor `LISTEN_FD`: bwrap's pid-1 init closes
/// every descriptor but stdio, the daemon (pid 2) keeps it.
pub fn build(input: &ArgsInput<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::with_capacity(80);
    let mut push = |items: &[&dyn AsRefOs]| a.extend(items.iter().map(|i| i.os()));
    let id = LEARNER_ID.to_string();
    push(&[
        &"--unshare-user",
        &"--disable-userns",
        &"--uid",
        &id,
        &"--gid",
        &id,
    ]);
    push(&[
        &"--unshare-pid",
        &"--unshare-ipc",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
    ]);
    if !input.egress {
        push(&[&"--unshare-net"]);
    }
    push(&[
        &"--hostname",
        &input.hostname,
        &"--new-session",
        &"--cap-drop",
        &"ALL",
    ]);
    for fd in SECCOMP_FDS {
        push(&[&"--add-seccomp-fd", &fd.to_string()]);
    }
    for entry in input.root {
        match entry {
            RootEntry::Dir { source, name } => push(&[&"--ro-bind", source, &format!("/{name}")]),
            RootEntry::Symlink { target, name } => {
                push(&[&"--symlink", target, &format!("/{name}")])
            }
            RootEntry::EmptyDir { name } => push(&[&"--dir", &format!("/{name}")]),
        }
    }
    match &input.etc {
        Etc::Generated { dir, host_binds } => {
            push(&[&"--ro-bind", dir, &"/etc"]);
            for host in host_binds.iter() {
                push(&[&"--ro-bind", host, host]);
            }
        }
        Etc::Image { dir } => {
            for name in ["passwd", "group", "hosts"] {
                push(&[&"--ro-bind", &dir.join(name), &format!("/etc/{name}")]);
            }
            if input.resolv_conf.is_none() {
                push(&[&"--ro-bind", &dir.join("resolv.conf"), &"/etc/resolv.conf"]);
            }
        }
    }
    if let Some(resolv) = input.resolv_conf {
        push(&[&"--ro-bind", &resolv, &"/etc/resolv.conf"]);
    }
    push(&[&"--ro-bind", &input.daemon_binary, &DAEMON_PATH]);
    push(&[&"--bind", &input.volume, &"/workspace"]);
    push(&[&"--bind", &input.home, &"/home/learner"]);
    push(&[
        &"--size",
        &input.tmp_bytes.to_string(),
        &"--tmpfs",
        &"/tmp",
        &"--dev",
        &"/dev",
        &"--size",
        &input.shm_bytes.to_string(),
        &"--tmpfs",
        &"/dev/shm",
        &"--proc",
        &"/proc",
    ]);
    // bwrap's root and /dev are writable tmpfs; the learner may write only to the mounts above
    // (the remount does not recurse into them).
    push(&[
        &"--remount-ro",
        &"/dev",
        &"--remount-ro",
        &"/",
        &"--chdir",
        &"/workspace",
    ]);
    let listen = format!("fd:{LISTEN_FD}");
    push(&[
        &"--",
        &DAEMON_PATH,
        &"workspace-server",
        &"--listen",
        &listen,
        &"--root",
        &"/workspace",
    ]);
    if input.await_activation {
        push(&[&"--await-activation"]);
    }
    a
}

/// Lets strings and paths sit in one argument list.
trait AsRefOs {
    fn os(&self) -> OsString;
}
impl AsRefOs for &str {
    fn os(&self) -> OsString {
        OsString::from(*self)
    }
}
impl AsRefOs for String {
    fn os(&self) -> OsString {
        OsString::from(self)
    }
}
impl AsRefOs for PathBuf {
    fn os(&self) -> OsString {
        self.as_os_str().to_owned()
    }
}
impl AsRefOs for &Path {
    fn os(&self) -> OsString {
        self.as_os_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    const HOST_BINDS: &[PathBuf] = &[];

    fn input<'a>(root: &'a [RootEntry], egress: bool) -> ArgsInput<'a> {
        ArgsInput {
            hostname: "seat-07",
            root,
            etc: Etc::Generated {
                dir: Path::new("/d/sandbox-etc"),
                host_binds: HOST_BINDS,
            },
            resolv_conf: egress.then_some(Path::new("/d/net/ws-a/seat-07.resolv.conf")),
            daemon_binary: Path::new("/opt/ct/clarateach"),
            volume: Path::new("/d/volumes/ws-a/seat-07"),
            home: Path::new("/d/homes/ws-a/seat-07"),
            tmp_bytes: 512 << 20,
            shm_bytes: 256 << 20,
            egress,
            await_activation: false,
        }
    }

    #[test]
    fn isolates_everything_and_runs_the_daemon() {
        let root = [
            RootEntry::Dir {
                source: "/usr".into(),
                name: "usr".into(),
            },
            RootEntry::Symlink {
                target: "usr/bin".into(),
                name: "bin".into(),
            },
        ];
        let s = joined(&build(&input(&root, false)));
        for flag in [
            "--unshare-user --disable-userns --uid 1000 --gid 1000",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
        ] {
            assert!(s.contains(flag), "{flag} missing in {s}");
        }
        assert!(s.contains(
            "--unshare-cgroup-try --unshare-net --hostname seat-07 --new-session --cap-drop ALL \
             --add-seccomp-fd 4 --add-seccomp-fd 5"
        ));
        assert!(s.contains("--ro-bind /usr /usr --symlink usr/bin /bin"));
        assert!(s.contains("--ro-bind /d/sandbox-etc /etc"));
        assert!(!s.contains("--ro-bind /etc"), "never the host's /etc: {s}");
        assert!(s.contains("--bind /d/volumes/ws-a/seat-07 /workspace"));
        assert!(s.contains("--bind /d/homes/ws-a/seat-07 /home/learner"));
        assert!(!s.contains("/d/run"), "no agent directory inside: {s}");
        assert!(s.contains(
            "--size 536870912 --tmpfs /tmp --dev /dev --size 268435456 --tmpfs /dev/shm --proc /proc"
        ));
        assert!(s.contains("--remount-ro /dev --remount-ro / --chdir /workspace"));
        assert!(
            !s.contains("--die-with-parent"),
            "seats must outlive the agent"
        );
        assert!(s.ends_with(
            "-- /run/clarateach-bin/clarateach workspace-server --listen fd:3 --root /workspace"
        ));
    }

    #[test]
    fn generated_etc_gets_the_host_binds_and_a_resolver_hook() {
        let binds = [PathBuf::from("/etc/ssl/certs")];
        let mut i = input(&[], true);
        i.etc = Etc::Generated {
            dir: Path::new("/d/sandbox-etc"),
            host_binds: &binds,
        };
        i.resolv_conf = Some(Path::new("/d/net/resolv.conf"));
        let s = joined(&build(&i));
        assert!(s.contains(
            "--ro-bind /d/sandbox-etc /etc --ro-bind /etc/ssl/certs /etc/ssl/certs \
             --ro-bind /d/net/resolv.conf /etc/resolv.conf"
        ));
    }

    #[test]
    fn image_etc_only_gets_users() {
        let mut i = input(&[], false);
        i.etc = Etc::Image {
            dir: Path::new("/d/sandbox-etc"),
        };
        let s = joined(&build(&i));
        assert!(s.contains(
            "--ro-bind /d/sandbox-etc/passwd /etc/passwd --ro-bind /d/sandbox-etc/group /etc/group \
             --ro-bind /d/sandbox-etc/hosts /etc/hosts \
             --ro-bind /d/sandbox-etc/resolv.conf /etc/resolv.conf"
        ));
        assert!(!s.contains("/d/sandbox-etc /etc "));
        // A networked seat's resolver replaces the generated one, once.
        i.resolv_conf = Some(Path::new("/d/net/r.conf"));
        let s = joined(&build(&i));
        assert!(!s.contains("/d/sandbox-etc/resolv.conf"));
        assert_eq!(s.matches("/etc/resolv.conf").count(), 1);
    }

    #[test]
    fn tmpfs_sizes_follow_the_disk_limit() {
        assert_eq!(tmpfs_sizes(2048), (512 << 20, 256 << 20));
        assert_eq!(tmpfs_sizes(64), (16 << 20, 16 << 20));
    }

    #[test]
    fn a_networked_seat_keeps_its_own_namespace_and_resolv_conf() {
        let s = joined(&build(&input(&[], true)));
        assert!(!s.contains("--unshare-net"));
        assert!(s.contains("--ro-bind /d/net/ws-a/seat-07.resolv.conf /etc/resolv.conf"));
        assert!(!joined(&build(&input(&[], false))).contains("resolv.conf"));
    }

    #[test]
    fn image_rootfs_skips_the_dirs_the_sandbox_provides() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["usr", "etc", "proc", "tmp", "home", "opt"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        std::fs::create_dir(dir.path().join("usr/bin")).expect("mkdir");
        std::fs::write(dir.path().join("etc/hostname"), "").expect("write");
        std::os::unix::fs::symlink("usr/lib", dir.path().join("lib")).expect("symlink");
        std::fs::write(dir.path().join("file"), "").expect("write");
        let names: Vec<String> = root_entries(dir.path())
            .expect("entries")
            .into_iter()
            .map(|e| match e {
                RootEntry::Dir { name, .. } => name,
                RootEntry::Symlink { target, name } => format!("{name}->{}", target.display()),
                RootEntry::EmptyDir { name } => format!("{name} (empty)"),
            })
            .collect();
        assert_eq!(names, ["etc", "lib->usr/lib", "opt (empty)", "usr"]);
    }

    #[test]
    fn host_root_uses_the_system_dirs_only() {
        let entries = root_entries(Path::new("/")).expect("entries");
        assert!(entries
            .iter()
            .any(|e| matches!(e, RootEntry::Dir { name, .. } if name == "usr")));
        assert!(entries
            .iter()
            .all(|e| !matches!(e, RootEntry::Dir { name, .. }
            if ["root", "home", "etc", "var", "opt"].contains(&name.as_str()))));
    }
}
