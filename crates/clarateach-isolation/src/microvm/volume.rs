//! Reading a seat's volume from the host. The volume is a raw ext4 image attached to the VM, so
//! export copies its files out with `debugfs -R "rdump / DIR"`: read-only, no loop mount, no root
//! privileges beyond reading the file. While the VM runs the copy reflects what the guest has
//! flushed (ext4 commits every few seconds); after a stop it is exact.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::BackendError;

/// Replaces `dest` with the files of the ext4 image `volume`.
pub fn export_blocking(volume: &Path, dest: &Path) -> Result<(), BackendError> {
    let io = |action| move |source| BackendError::Io { action, source };
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io("clearing the export dir"))?;
    }
    std::fs::create_dir_all(dest).map_err(io("creating the export dir"))?;
    if !volume.is_file() {
        return Ok(());
    }
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dest.display()))
        .arg(volume)
        .stdin(Stdio::null())
        .output()
        .map_err(io("running debugfs (e2fsprogs)"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(BackendError::Io {
            action: "debugfs rdump",
            source: std::io::Error::other(msg),
        });
    }
    let _ = std::fs::remove_dir_all(dest.join("lost+found"));
    Ok(())
}

/// Async wrapper for `export_blocking`.
pub async fn export(volume: &Path, dest: &Path) -> Result<(), BackendError> {
    let (v, d) = (volume.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || export_blocking(&v, &d))
        .await
        .map_err(|e| BackendError::Io {
            action: "export task",
            source: std::io::Error::other(e),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdump_copies_files_out_of_an_ext4_image() {
        if which("mkfs.ext4").is_none() || which("debugfs").is_none() {
            eprintln!("skipping: e2fsprogs (mkfs.ext4, debugfs) not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("proj")).expect("mkdir");
        std::fs::write(src.join("proj/main.py"), "print(1)\n").expect("write");
        let img = dir.path().join("vol.img");
        std::fs::File::create(&img)
            .expect("create")
            .set_len(16 << 20)
            .expect("size");
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&img)
            .status()
            .expect("mkfs");
        assert!(ok.success());
        let out = dir.path().join("out");
        export_blocking(&img, &out).expect("export");
        assert_eq!(
            std::fs::read_to_string(out.join("proj/main.py")).expect("read"),
            "print(1)\n"
        );
        assert!(!out.join("lost+found").exists());
    }

    fn which(name: &str) -> Option<std::path::PathBuf> {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    }
}
