//! A seat image as a microVM root disk (issue 11: "the same image serves both backends"). The
//! sandbox binds a seat image's tree read-only as `/`; a microVM boots a disk, so this packs a
//! copy of that tree, with ClaraTeach's guest init added (`rootfs::customize`), into an ext4
//! kept beside the tree in the image's digest directory:
//! `<store>/<name>/<digest>/microvm-<binary key>.ext4`.
//!
//! Cached by the image digest (the directory) and the guest binary (its size and mtime, in the
//! file name): a second seat of the same image, or an agent restart, reuses the disk; a rebuilt
//! image gets a new digest directory, so a seat created before keeps the disk it was created
//! with (its qcow2 overlay points at that path) and a running seat's root never changes.
//! Conversions in one process are serialised; the disk appears under its name only when
//! complete (packed as `.partial`, then renamed), so a crash leaves no half-made root behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::rootfs;
use crate::store::ImageStore;
use crate::tools::run;
use crate::ImageError;

/// What the guest's second stage runs from the root: `ip` for eth0 (`guest::system`).
const GUEST_NEEDS: &[(&str, &str)] = &[("usr/sbin/ip", "iproute2")];

static CONVERTING: Mutex<()> = Mutex::new(());

/// The microVM root disk of a seat image.
#[derive(Debug, Clone)]
pub struct MicrovmRoot {
    pub path: PathBuf,
    /// The image digest it was made from.
    pub digest: String,
    /// False when it was made by this call.
    pub cached: bool,
    pub elapsed: Duration,
}

/// The root disk of image `name` for guests running `binary` (`clarateach guest-init`), made
/// on first use; see the module docs.
pub fn microvm_root(
    store: &ImageStore,
    name: &str,
    binary: &Path,
) -> Result<MicrovmRoot, ImageError> {
    let started = Instant::now();
    let dir = store
        .current_dir(name)
        .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
    let info = store.inspect(name)?;
    let meta = std::fs::metadata(binary).map_err(ImageError::io("reading", binary))?;
    let path = dir.join(disk_name(&meta));
    let done = |cached| MicrovmRoot {
        path: path.clone(),
        digest: info.digest.clone(),
        cached,
        elapsed: started.elapsed(),
    };
    if path.is_file() {
        return Ok(done(true));
    }
    let _one = CONVERTING.lock().unwrap_or_else(|e| e.into_inner());
    if path.is_file() {
        return Ok(done(true)); // another seat made it while this one waited
    }
    let tree = dir.join("rootfs");
    for (file, package) in GUEST_NEEDS {
        if !tree.join(file).exists() {
            return Err(ImageError::NotForMicrovm {
                name: name.to_string(),
                missing: format!("/{file}"),
                package: (*package).to_string(),
            });
        }
    }
    let work = dir.join(".microvm-tree.partial");
    remove_tree(&work)?;
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&tree)
        .arg(&work))?;
    let packed =
        rootfs::customize(&work, binary, &[]).and_then(|()| rootfs::pack_ext4(&work, &path));
    remove_tree(&work)?;
    packed?;
    Ok(done(false))
}

/// Where the root disk of `name`'s current digest for `binary` is (made or not), or None when
/// the image is not built.
pub fn root_path(store: &ImageStore, name: &str, binary: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(binary).ok()?;
    Some(store.current_dir(name)?.join(disk_name(&meta)))
}

/// The disk's file name: the guest binary's size and mtime (a new binary, a new disk).
fn disk_name(binary: &std::fs::Metadata) -> String {
    let mtime = binary
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("microvm-{:x}-{mtime:x}.ext4", binary.len())
}

fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ImageError::io("removing", dir)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ImageInfo;
    use crate::Recipe;

    /// A store holding image `img` (digest `d1`) whose tree has `files`.
    fn store_with(files: &[&str]) -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let digest_dir = dir.path().join("img/d1");
        let tree = digest_dir.join("rootfs");
        for d in ["etc", "sbin", "usr/local/bin", "usr/sbin"] {
            std::fs::create_dir_all(tree.join(d)).expect("mkdir");
        }
        for f in ["etc/passwd", "etc/group", "etc/shadow"]
            .iter()
            .chain(files)
        {
            std::fs::write(tree.join(f), "").expect("write");
        }
        let info = ImageInfo {
            name: "img".into(),
            digest: "d1".into(),
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
        let json = serde_json::to_vec(&info).expect("json");
        std::fs::write(digest_dir.join("image.json"), json).expect("write");
        std::os::unix::fs::symlink("d1", dir.path().join("img/current")).expect("link");
        let store = ImageStore::new(dir.path());
        (dir, store)
    }

    fn binary(dir: &Path, bytes: &[u8]) -> PathBuf {
        let b = dir.join(format!("clarateach-{}", bytes.len()));
        std::fs::write(&b, bytes).expect("write binary");
        b
    }

    #[test]
    fn an_image_without_ip_is_refused_naming_the_package_and_leaves_nothing() {
        let (dir, store) = store_with(&[]);
        let bin = binary(dir.path(), b"bin");
        let err = microvm_root(&store, "img", &bin).expect_err("no ip");
        assert!(
            matches!(&err, ImageError::NotForMicrovm { package, .. } if package == "iproute2"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("img/d1"))
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "only rootfs and image.json: {left:?}");
        assert!(matches!(
            microvm_root(&store, "nope", &bin),
            Err(ImageError::NotFound(_))
        ));
    }

    #[test]
    fn the_disk_is_made_once_per_digest_and_binary() {
        if crate::tools::which("mkfs.ext4").is_none() {
            clarateach_core::skip::report(
                "the_disk_is_made_once_per_digest_and_binary",
                "no mkfs.ext4",
            );
            return;
        }
        let (dir, store) = store_with(&["usr/sbin/ip"]);
        let bin = binary(dir.path(), b"guest binary");
        let first = microvm_root(&store, "img", &bin).expect("made");
        assert!(!first.cached && first.path.is_file(), "{first:?}");
        assert_eq!(first.digest, "d1");
        assert_eq!(root_path(&store, "img", &bin), Some(first.path.clone()));
        assert!(
            !dir.path().join("img/d1/.microvm-tree.partial").exists(),
            "the working copy is gone"
        );
        // The image's own tree is untouched (the guest init went into the copy only).
        assert!(!dir.path().join("img/d1/rootfs/sbin/init").exists());
        let again = microvm_root(&store, "img", &bin).expect("cached");
        assert!(again.cached && again.path == first.path);
        // Another guest binary: another disk.
        let other = binary(dir.path(), b"another guest binary");
        let second = microvm_root(&store, "img", &other).expect("made");
        assert!(!second.cached && second.path != first.path);
    }
}
