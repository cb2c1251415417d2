//! `clarateach image`: seat images built from recipes (`build NAME --recipe FILE|BUILTIN`,
//! `list`, `inspect`, `rm`) in the data dir's image store, and the microVM guest image
//! (`build --out DIR`: kernel, vmlinux, initramfs, ext4 rootfs). Both are cached by the hash of
//! their inputs, so an unchanged build costs seconds.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clarateach_image::{ImageInfo, ImageStore, Recipe, SeatBuildOptions};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build (or reuse) a seat image NAME from a recipe, or the microVM guest image with --out.
    Build(BuildArgs),
    /// The built seat images: name, digest, size, packages, when built.
    List(StoreArgs),
    /// One seat image in detail (its recipe included).
    Inspect(NameArgs),
    /// Remove a seat image (every digest of it); refused while a running seat uses it.
    Rm(NameArgs),
}

#[derive(clap::Args)]
pub struct StoreArgs {
    /// Image store [default: DATA_DIR/images].
    #[arg(long, env = "CLARATEACH_IMAGES_DIR")]
    images_dir: Option<PathBuf>,
    /// Data dir whose `images` store to use.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl StoreArgs {
    fn store(&self) -> anyhow::Result<ImageStore> {
        if let Some(d) = &self.images_dir {
            return Ok(ImageStore::new(d));
        }
        let data = super::agent::resolve_data_dir(self.data_dir.clone())?;
        Ok(ImageStore::in_data_dir(&data))
    }
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// Image name.
    name: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Seat image name (e.g. `claude`); omit it with --out for the microVM guest image.
    name: Option<String>,
    /// Recipe: a TOML file, or a built-in (base, python, node, claude) [default: NAME].
    #[arg(long)]
    recipe: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// microVM guest image: output directory (also keeps the cache of intermediate steps).
    #[arg(long, env = "CLARATEACH_IMAGE_DIR")]
    out: Option<PathBuf>,
    /// Rebuild even when the inputs did not change (a seat image gets a new digest).
    #[arg(long)]
    force: bool,
    /// Debian mirror (default: the one the host's apt uses).
    #[arg(long)]
    mirror: Option<String>,
    /// microVM guest image: extra Debian packages on top of the defaults.
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// microVM guest image: the clarateach binary to install in the guest (default: this one).
    #[arg(long)]
    binary: Option<PathBuf>,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Build(args) => match (&args.name, &args.out) {
            (Some(_), _) => build_seat(args).await,
            (None, Some(_)) => build_guest(args).await,
            (None, None) => bail!(
                "name the image to build (`clarateach image build claude`), or give --out DIR \
                 for the microVM guest image"
            ),
        },
        Command::List(s) => {
            let images = s.store()?.list()?;
            if s.json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else if images.is_empty() {
                println!("no images (build one: clarateach image build claude)");
            } else {
                println!(
                    "{:<16} {:<14} {:>9} {:>5}  {:<20} DESCRIPTION",
                    "NAME", "DIGEST", "SIZE", "DEBS", "BUILT"
                );
                for i in &images {
                    println!(
                        "{:<16} {:<14} {:>9} {:>5}  {:<20} {}",
                        i.name,
                        &i.digest[..12.min(i.digest.len())],
                        human(i.size_bytes),
                        i.dpkg_count,
                        when(i.built_at),
                        i.description
                    );
                }
            }
            Ok(())
        }
        Command::Inspect(a) => {
            let info = a.store.store()?.inspect(&a.name)?;
            if a.store.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
            Ok(())
        }
        Command::Rm(a) => {
            a.store.store()?.remove(&a.name)?;
            println!("removed image {}", a.name);
            Ok(())
        }
    }
}

async fn build_seat(args: BuildArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_default();
    let spec = args.recipe.clone().unwrap_or_else(|| name.clone());
    let recipe = Recipe::load(&spec)?;
    let store = args.store.store()?;
    let opts = SeatBuildOptions {
        name,
        recipe,
        mirror: args.mirror.clone(),
        force: args.force,
        show_progress: !args.store.json,
    };
    let outcome = tokio::task::spawn_blocking(move || store.build(&opts))
        .await
        .context("the image build task failed")??;
    if args.store.json {
        println!("{}", serde_json::to_string_pretty(&outcome.info)?);
        return Ok(());
    }
    let how = if outcome.cached {
        "up to date (cached)"
    } else {
        "built"
    };
    println!(
        "image {} {how} in {:.1}s: {}",
        outcome.info.name,
        outcome.elapsed.as_secs_f64(),
        outcome.dir.display()
    );
    print_info(&outcome.info);
    Ok(())
}

fn print_info(i: &ImageInfo) {
    println!("  name      {}", i.name);
    println!("  digest    {}", i.digest);
    if !i.description.is_empty() {
        println!("  about     {}", i.description);
    }
    println!(
        "  size      {} ({} Debian packages)",
        human(i.size_bytes),
        i.dpkg_count
    );
    println!("  suite     {} from {}", i.suite, i.mirror);
    println!("  packages  {}", i.packages.join(" "));
    if let Some(s) = &i.recipe.smoke {
        println!("  smoke     {s}");
    }
    println!(
        "  built     {} (took {:.1}s)",
        when(i.built_at),
        i.build_seconds
    );
}

fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

fn when(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

async fn build_guest(args: BuildArgs) -> anyhow::Result<()> {
    let out = args.out.context("--out is required")?;
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().context("locating the clarateach binary")?,
    };
    let mut opts = clarateach_image::BuildOptions::new(&out, binary);
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
