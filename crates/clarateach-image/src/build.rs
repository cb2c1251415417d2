//! `build`: the whole image pipeline with a progress spinner, skipped entirely when the manifest
//! in the output directory already records the same inputs (suite, mirror, packages, kernel
//! package and version, binary hash, module list, builder version).
//!
//! The root disk is keyed without the `clarateach` binary: the guest runs the initramfs's own
//! copy, bind-mounted over the root disk's (`guest::boot`). So a new binary (every code change on
//! a CI runner that keeps its image cache) only rewrites the initramfs, in seconds, instead of
//! packing the root disk again; and a cached root disk can never boot a stale daemon, because
//! the binary it boots is always the one whose hash the manifest records.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::layout::{ImageLayout, Manifest, GUEST_MODULES};
use crate::{debootstrap, kernel, rootfs, tools, vmlinux, ImageError};

/// Bump when the pipeline changes what it produces from the same inputs.
const BUILDER_VERSION: &str = "clarateach-image/3";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory (created if missing); also holds the `.cache` of intermediate steps.
    pub out: PathBuf,
    /// The `clarateach` binary to install as daemon and init (usually `std::env::current_exe()`).
    pub binary: PathBuf,
    /// Debian suite; defaults to the host's (the binary links against the host's glibc).
    pub suite: String,
    /// Debian mirror; defaults to the one the host's apt uses.
    pub mirror: String,
    /// Packages on top of minbase.
    pub packages: Vec<String>,
    /// Rebuild even when the manifest matches.
    pub force: bool,
    /// Draw a spinner on stderr.
    pub show_progress: bool,
}

impl BuildOptions {
    /// Defaults for everything but the output directory and the binary.
    pub fn new(out: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        let suite = debootstrap::host_suite();
        Self {
            out: out.into(),
            binary: binary.into(),
            mirror: debootstrap::host_mirror(&suite),
            suite,
            packages: debootstrap::DEFAULT_PACKAGES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            force: false,
            show_progress: true,
        }
    }
}

/// The result of `build`.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub layout: ImageLayout,
    pub manifest: Manifest,
    /// True when the existing image matched and nothing was rebuilt.
    pub cached: bool,
    /// True when the root disk was kept (nothing or only the initramfs was rewritten).
    pub rootfs_reused: bool,
    pub elapsed: Duration,
}

/// Builds (or reuses) the image described by `opts`.
pub fn build(opts: &BuildOptions) -> Result<BuildOutcome, ImageError> {
    let started = Instant::now();
    let layout = ImageLayout::new(&opts.out);
    let cache = layout.cache_dir();
    std::fs::create_dir_all(&cache).map_err(ImageError::io("creating", &cache))?;
    let bar = spinner(opts.show_progress);

    bar.set_message("hashing the inputs");
    let binary_sha256 = tools::sha256_file(&opts.binary)?;
    let kpkg = kernel::resolve()?;
    let kernel_package = format!("{} {}", kpkg.name, kpkg.version);
    let tree_key = hash(&[
        BUILDER_VERSION,
        &opts.suite,
        &opts.mirror,
        &opts.packages.join(","),
    ]);
    let rootfs_key = hash(&[&tree_key, &kernel_package, &GUEST_MODULES.join(",")]);
    let key = hash(&[&rootfs_key, &binary_sha256]);

    let found = layout.load().ok();
    let step = plan(
        found.as_ref(),
        &key,
        &rootfs_key,
        layout.rootfs().is_file(),
        opts.force,
    );
    if step == Step::Reuse {
        if let Some(m) = found {
            bar.finish_and_clear();
            return Ok(BuildOutcome {
                layout,
                manifest: m,
                cached: true,
                rootfs_reused: true,
                elapsed: started.elapsed(),
            });
        }
    }

    bar.set_message(format!("fetching {kernel_package}"));
    let kernel = kernel::fetch(&kpkg, &cache)?;
    let modules = kernel.module_files(GUEST_MODULES)?;
    if step == Step::Everything {
        std::fs::copy(&kernel.bzimage, layout.bzimage())
            .map_err(ImageError::io("copying", &kernel.bzimage))?;
        bar.set_message("extracting vmlinux from the LZ4 bzImage");
        vmlinux::extract(&kernel.bzimage, &layout.vmlinux())?;

        let tree = cache.join(format!("rootfs-{}", &tree_key[..16]));
        if opts.force || !tree.is_dir() {
            debootstrap::debootstrap(&opts.suite, &opts.mirror, &opts.packages, &tree, &bar)?;
        }
        bar.set_message("installing clarateach, modules and the learner account");
        rootfs::customize(&tree, &opts.binary, &modules)?;
        bar.set_message("packing rootfs.ext4 (mkfs.ext4 -d)");
        rootfs::pack_ext4(&tree, &layout.rootfs())?;
    }
    bar.set_message("writing the initramfs");
    let guest_binary_sha256 = rootfs::initramfs(&opts.binary, &modules, &layout.initrd())?;

    let manifest = Manifest {
        key,
        rootfs_key,
        suite: opts.suite.clone(),
        mirror: opts.mirror.clone(),
        packages: opts.packages.clone(),
        kernel_package,
        kernel_release: kernel.release.clone(),
        binary_sha256,
        guest_binary_sha256,
        modules: GUEST_MODULES.iter().map(|s| s.to_string()).collect(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    layout.save(&manifest)?;
    bar.finish_and_clear();
    Ok(BuildOutcome {
        layout,
        manifest,
        cached: false,
        rootfs_reused: step == Step::Initramfs,
        elapsed: started.elapsed(),
    })
}

/// What a build has to do, from the manifest found in the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Every input is the same: nothing to do.
    Reuse,
    /// Only the binary changed: rewrite the initramfs (which carries the binary the guest runs).
    Initramfs,
    /// Kernel, packages, modules or the builder changed (or nothing is there): build it all.
    Everything,
}

fn plan(
    found: Option<&Manifest>,
    key: &str,
    rootfs_key: &str,
    rootfs_exists: bool,
    force: bool,
) -> Step {
    match found {
        _ if force => Step::Everything,
        Some(m) if m.key == key => Step::Reuse,
        // An image of an older builder has no `rootfs_key` (its root disk's binary was not
        // overlaid at boot either): it is rebuilt once.
        Some(m) if rootfs_exists && !m.rootfs_key.is_empty() && m.rootfs_key == rootfs_key => {
            Step::Initramfs
        }
        _ => Step::Everything,
    }
}

fn spinner(visible: bool) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    tools::hex(&h.finalize())
}

/// True when `dir` holds a complete image (used by callers that only want to check).
pub fn is_built(dir: &Path) -> bool {
    ImageLayout::new(dir).load().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(key: &str, rootfs_key: &str) -> Manifest {
        Manifest {
            key: key.into(),
            rootfs_key: rootfs_key.into(),
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: vec![],
            kernel_package: "linux-image-cloud-amd64 1".into(),
            kernel_release: "6.1.0".into(),
            binary_sha256: "b".into(),
            guest_binary_sha256: "g".into(),
            modules: vec![],
            build_seconds: 1.0,
        }
    }

    #[test]
    fn a_new_binary_rewrites_only_the_initramfs() {
        let old = manifest("k1", "r1");
        assert_eq!(plan(Some(&old), "k1", "r1", true, false), Step::Reuse);
        // Same kernel, packages and modules, another binary: the root disk stays.
        assert_eq!(plan(Some(&old), "k2", "r1", true, false), Step::Initramfs);
        // The root disk's inputs changed, or it is gone, or a rebuild is forced.
        assert_eq!(plan(Some(&old), "k2", "r2", true, false), Step::Everything);
        assert_eq!(plan(Some(&old), "k2", "r1", false, false), Step::Everything);
        assert_eq!(plan(Some(&old), "k1", "r1", true, true), Step::Everything);
        assert_eq!(plan(None, "k1", "r1", true, false), Step::Everything);
        // An image of the builder before `rootfs_key` existed is rebuilt once.
        assert_eq!(
            plan(Some(&manifest("k0", "")), "k2", "", true, false),
            Step::Everything
        );
    }
}
