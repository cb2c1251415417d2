//! `build`: the whole image pipeline with a progress spinner, skipped entirely when the manifest
//! in the output directory already records the same inputs (suite, mirror, packages, kernel
//! package and version, binary hash, module list, builder version).

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
    let key = hash(&[
        &tree_key,
        &kernel_package,
        &binary_sha256,
        &GUEST_MODULES.join(","),
    ]);

    if !opts.force {
        if let Ok(m) = layout.load() {
            if m.key == key {
                bar.finish_and_clear();
                return Ok(BuildOutcome {
                    layout,
                    manifest: m,
                    cached: true,
                    elapsed: started.elapsed(),
                });
            }
        }
    }

    bar.set_message(format!("fetching {kernel_package}"));
    let kernel = kernel::fetch(&kpkg, &cache)?;
    let modules = kernel.module_files(GUEST_MODULES)?;
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
    bar.set_message("writing the initramfs");
    rootfs::initramfs(&opts.binary, &modules, &layout.initrd())?;

    let manifest = Manifest {
        key,
        suite: opts.suite.clone(),
        mirror: opts.mirror.clone(),
        packages: opts.packages.clone(),
        kernel_package,
        kernel_release: kernel.release.clone(),
        binary_sha256,
        modules: GUEST_MODULES.iter().map(|s| s.to_string()).collect(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    layout.save(&manifest)?;
    bar.finish_and_clear();
    Ok(BuildOutcome {
        layout,
        manifest,
        cached: false,
        elapsed: started.elapsed(),
    })
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
