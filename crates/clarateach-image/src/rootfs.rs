//! Turns the debootstrap tree into the guest: the `clarateach` binary as daemon and init, the
//! virtio modules, the learner account; then packs it with `mkfs.ext4 -d` (no loop mount) and
//! writes the initramfs that loads the modules and switches to that root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::Cpio;
use crate::layout::GUEST_MODULE_DIR;
use crate::tools::{run, tree_size, which};
use crate::ImageError;

/// The learner's uid and gid inside the guest.
pub const LEARNER_UID: u32 = 1000;

/// Marker file that tells guest-init it runs from the initramfs.
pub const INITRAMFS_MARKER: &str = "clarateach-initramfs";

/// Installs everything ClaraTeach adds to the Debian tree; idempotent, so the cached tree can be
/// reused when only the binary changed.
pub(crate) fn customize(tree: &Path, binary: &Path, modules: &[PathBuf]) -> Result<(), ImageError> {
    let bin = tree.join("usr/local/bin/clarateach");
    install_binary(binary, &bin)?;
    let init = tree.join("sbin/init");
    let _ = std::fs::remove_file(&init);
    write_mode(
        &init,
        b"#!/bin/sh\nexec /usr/local/bin/clarateach guest-init \"$@\"\n",
        0o755,
    )?;
    let moddir = tree.join(GUEST_MODULE_DIR);
    let _ = std::fs::remove_dir_all(&moddir);
    std::fs::create_dir_all(&moddir).map_err(ImageError::io("creating", &moddir))?;
    for m in modules {
        let name = m.file_name().unwrap_or_default();
        std::fs::copy(m, moddir.join(name)).map_err(ImageError::io("copying a module", m))?;
    }
    add_line(
        &tree.join("etc/passwd"),
        "learner:",
        &format!("learner:x:{LEARNER_UID}:{LEARNER_UID}:learner:/workspace:/bin/bash"),
    )?;
    add_line(
        &tree.join("etc/group"),
        "learner:",
        &format!("learner:x:{LEARNER_UID}:"),
    )?;
    add_line(
        &tree.join("etc/shadow"),
        "learner:",
        "learner:*:19000:0:99999:7:::",
    )?;
    std::fs::write(tree.join("etc/hostname"), b"clarateach\n")
        .map_err(ImageError::io("writing", tree))?;
    std::fs::write(
        tree.join("etc/hosts"),
        b"127.0.0.1 localhost\n127.0.1.1 clarateach\n",
    )
    .map_err(ImageError::io("writing", tree))?;
    for dir in ["workspace", "newroot"] {
        std::fs::create_dir_all(tree.join(dir))
            .map_err(ImageError::io("creating", tree.join(dir)))?;
    }
    Ok(())
}

/// Packs `tree` into a sparse ext4 image with room for learners to install a few things.
pub(crate) fn pack_ext4(tree: &Path, out: &Path) -> Result<(), ImageError> {
    let used = tree_size(tree)?;
    let size = (used + used / 4 + (768 << 20)).div_ceil(1 << 20) << 20;
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::File::create(&tmp).map_err(ImageError::io("creating", &tmp))?;
    file.set_len(size).map_err(ImageError::io("sizing", &tmp))?;
    drop(file);
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "clarateach-root",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(tree)
        .arg(&tmp))?;
    std::fs::rename(&tmp, out).map_err(ImageError::io("renaming", out))
}

/// The initramfs: `/init` is the clarateach binary (run with `-- guest-init` on the kernel
/// command line), with its shared libraries, `/dev/console` and the modules. It is also the
/// binary the booted guest runs (see `guest::boot`). Returns the SHA-256 of that `/init`.
pub(crate) fn initramfs(
    binary: &Path,
    modules: &[PathBuf],
    out: &Path,
) -> Result<String, ImageError> {
    let mut cpio = Cpio::new();
    for dir in [
        "dev",
        "proc",
        "sys",
        "newroot",
        "lib",
        "lib64",
        "lib/clarateach",
        GUEST_MODULE_DIR,
    ] {
        cpio.dir(dir);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file(INITRAMFS_MARKER, 0o644, b"");
    let staged = std::env::temp_dir().join(format!("clarateach-init-{}", std::process::id()));
    install_binary(binary, &staged)?;
    let data = std::fs::read(&staged).map_err(ImageError::io("reading", &staged))?;
    let _ = std::fs::remove_file(&staged);
    cpio.file("init", 0o755, &data);
    let init_sha256 = {
        use sha2::{Digest, Sha256};
        crate::tools::hex(&Sha256::digest(&data))
    };
    let mut made = std::collections::BTreeSet::new();
    for lib in shared_libs(binary)? {
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        let mut parent = PathBuf::new();
        for part in Path::new(&rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            parent.push(part);
            if made.insert(parent.clone()) {
                cpio.dir(&parent.to_string_lossy());
            }
        }
        let data = std::fs::read(&lib).map_err(ImageError::io("reading a library", &lib))?;
        cpio.file(&rel, 0o755, &data);
    }
    for m in modules {
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        let data = std::fs::read(m).map_err(ImageError::io("reading a module", m))?;
        cpio.file(&format!("{GUEST_MODULE_DIR}/{name}"), 0o644, &data);
    }
    crate::layout::write_atomic(out, &cpio.finish())?;
    Ok(init_sha256)
}

/// The libraries `ldd` lists for `binary`, including the dynamic loader.
fn shared_libs(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = run(Command::new("ldd").arg(binary))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies the binary without its debug info when `strip` exists (it halves a debug build).
fn install_binary(src: &Path, dest: &Path) -> Result<(), ImageError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
    }
    let _ = std::fs::remove_file(dest);
    let stripped = which("strip").is_some()
        && Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(dest)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(src, dest).map_err(ImageError::io("copying the binary", src))?;
    }
    set_mode(dest, 0o755)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), ImageError> {
    std::fs::write(path, data).map_err(ImageError::io("writing", path))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", path))
}

/// Appends `line` to `file` unless a line already starts with `prefix`.
fn add_line(file: &Path, prefix: &str, line: &str) -> Result<(), ImageError> {
    let text = std::fs::read_to_string(file).map_err(ImageError::io("reading", file))?;
    if text.lines().any(|l| l.starts_with(prefix)) {
        return Ok(());
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(file, format!("{text}{sep}{line}\n")).map_err(ImageError::io("writing", file))
}
