//! The guest kernel: resolves `linux-image-cloud-amd64` to its versioned package with the host's
//! apt configuration, fetches the .deb with `apt-get download` and unpacks it with `dpkg-deb -x`
//! (no install, no mount). The extraction is cached by package name and version.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::run;
use crate::ImageError;

/// The metapackage that tracks Debian's current cloud kernel.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";

/// A concrete kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelPackage {
    pub name: String,
    pub version: String,
}

/// An unpacked kernel package.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub bzimage: PathBuf,
    pub release: String,
    pub modules_root: PathBuf,
}

/// Asks apt which package the metapackage points at and which version it would fetch.
pub(crate) fn resolve() -> Result<KernelPackage, ImageError> {
    let deps = run(Command::new("apt-cache").args(["depends", "--no-recommends", KERNEL_META]))?;
    let name = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| {
            ImageError::Kernel(format!("apt knows no {KERNEL_META}; run apt-get update"))
        })?
        .to_string();
    let show = run(Command::new("apt-cache").args(["show", "--no-all-versions", &name]))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| ImageError::Kernel(format!("no version for {name}")))?;
    Ok(KernelPackage { name, version })
}

/// Downloads and unpacks `pkg` under `cache`, reusing an earlier extraction.
pub(crate) fn fetch(pkg: &KernelPackage, cache: &Path) -> Result<Kernel, ImageError> {
    let dir = cache.join(format!(
        "kernel-{}_{}",
        pkg.name,
        pkg.version.replace(':', "_")
    ));
    let tree = dir.join("tree");
    if !dir.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
        run(Command::new("apt-get")
            .args(["download", "-q", &format!("{}={}", pkg.name, pkg.version)])
            .current_dir(&dir))?;
        let deb = std::fs::read_dir(&dir)
            .map_err(ImageError::io("listing", &dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| {
                ImageError::Kernel(format!(
                    "apt-get download left no .deb in {}",
                    dir.display()
                ))
            })?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        let _ = std::fs::remove_file(&deb);
        std::fs::write(dir.join(".complete"), b"").map_err(ImageError::io("writing", &dir))?;
    }
    let boot = tree.join("boot");
    let bzimage = std::fs::read_dir(&boot)
        .map_err(ImageError::io("listing", &boot))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| ImageError::Kernel(format!("no vmlinuz in {}", boot.display())))?;
    let release = bzimage
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    let modules_root = tree.join("lib/modules").join(&release);
    Ok(Kernel {
        bzimage,
        release,
        modules_root,
    })
}

impl Kernel {
    /// Finds `<name>.ko` for each module name (files use `_` or `-` interchangeably).
    pub(crate) fn module_files(&self, names: &[&str]) -> Result<Vec<PathBuf>, ImageError> {
        let mut all = Vec::new();
        collect_ko(&self.modules_root, &mut all)?;
        names
            .iter()
            .map(|name| {
                all.iter()
                    .find(|p| {
                        p.file_stem()
                            .is_some_and(|s| s.to_string_lossy().replace('-', "_") == *name)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        ImageError::Kernel(format!("module {name}.ko not in the kernel package"))
                    })
            })
            .collect()
    }
}

fn collect_ko(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    for entry in std::fs::read_dir(dir).map_err(ImageError::io("listing", dir))? {
        let path = entry.map_err(ImageError::io("listing", dir))?.path();
        if path.is_dir() {
            collect_ko(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}
