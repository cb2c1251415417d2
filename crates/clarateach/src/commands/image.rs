//! `clarateach image build --out DIR [--force]`: builds the microVM guest image (kernel, vmlinux,
//! initramfs, ext4 rootfs) from Debian packages; a second build with the same inputs is instant.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build (or reuse) a guest image in DIR.
    Build(BuildArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Output directory (also keeps the cache of intermediate steps).
    #[arg(long, env = "CLARATEACH_IMAGE_DIR")]
    out: PathBuf,
    /// Rebuild even when the inputs did not change.
    #[arg(long)]
    force: bool,
    /// Debian mirror (default: the one the host's apt uses).
    #[arg(long)]
    mirror: Option<String>,
    /// Extra Debian packages on top of the defaults.
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// The clarateach binary to install in the guest (default: this one).
    #[arg(long)]
    binary: Option<PathBuf>,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Build(args) = cmd;
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().context("locating the clarateach binary")?,
    };
    let mut opts = clarateach_image::BuildOptions::new(&args.out, binary);
    opts.force = args.force;
    if let Some(m) = args.mirror {
        opts.mirror = m;
    }
    opts.packages.extend(args.packages);
    let outcome = tokio::task::spawn_blocking(move || clarateach_image::build(&opts))
        .await
        .context("the image build task failed")?
        .context("building the guest image")?;
    let m = &outcome.manifest;
    let how = if outcome.cached {
        "up to date (cached)"
    } else {
        "built"
    };
    println!(
        "image {how} in {:.1}s: {}",
        outcome.elapsed.as_secs_f64(),
        outcome.layout.dir.display()
    );
    println!("  kernel  {} ({})", m.kernel_release, m.kernel_package);
    println!(
        "  rootfs  {} on {} from {}",
        m.packages.join(","),
        m.suite,
        m.mirror
    );
    println!("  key     {}", &m.key[..16]);
    Ok(())
}
