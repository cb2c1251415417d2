//! `clarateach template create|list|show|rm`: workshop templates on a running control plane.
//! `create` packs the starter files (a directory, a .tar.gz, or a local git repository at a
//! commit: `--files REPO@COMMIT`) into a gzipped tar sent with the template.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use base64::Engine;
use clarateach_core::{CreateTemplateRequest, Limits, Template};

use super::workshop::conn::ConnArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Create a template.
    Create(CreateArgs),
    /// Your templates.
    List,
    /// One template.
    Show { name: String },
    /// Delete a template (workshops made from it keep their copy).
    Rm { name: String },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Template name.
    name: String,
    /// Seat image (`clarateach image list`).
    #[arg(long)]
    image: String,
    /// Starter files: a directory, a .tar.gz, or a git repository (`DIR@COMMIT`, default HEAD).
    #[arg(long, value_name = "DIR|TAR|GIT[@COMMIT]")]
    files: Option<String>,
    /// README (Markdown) shown to learners.
    #[arg(long, value_name = "FILE")]
    readme: Option<PathBuf>,
    /// Command that checks a learner's work.
    #[arg(long, value_name = "CMD")]
    check: Option<String>,
    /// One line describing it.
    #[arg(long, default_value = "")]
    description: String,
    /// Default memory limit per seat, MiB.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Default disk limit per seat, MiB.
    #[arg(long)]
    disk_mb: Option<u32>,
    /// Default CPU quota per seat, thousandths of a CPU.
    #[arg(long)]
    cpu_millis: Option<u32>,
    /// Default network policy: `none`, `open`.
    #[arg(long)]
    network: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.conn.resolve()?.client()?;
    match args.verb {
        Verb::Create(a) => {
            let req = request(a)?;
            let t = client.create_template(&req).await.map_err(api_line)?;
            print(&t, args.json)?;
        }
        Verb::List => {
            let list = client.list_templates().await.map_err(api_line)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!(
                    "no templates (create one: clarateach template create NAME --image IMAGE)"
                );
            } else {
                println!("{:<20} {:<12} {:>9}  DESCRIPTION", "NAME", "IMAGE", "FILES");
                for t in list {
                    println!(
                        "{:<20} {:<12} {:>9}  {}",
                        t.name,
                        t.image,
                        format!("{} KiB", t.files_bytes.div_ceil(1024)),
                        t.description
                    );
                }
            }
        }
        Verb::Show { name } => {
            let t = client.get_template(&name).await.map_err(api_line)?;
            print(&t, args.json)?;
        }
        Verb::Rm { name } => {
            client.delete_template(&name).await.map_err(api_line)?;
            println!("removed template {name}");
        }
    }
    Ok(())
}

fn api_line(e: clarateach_client::ClientError) -> anyhow::Error {
    match &e {
        clarateach_client::ClientError::Api { code, message, .. } => {
            anyhow::anyhow!("{} ({code})", message.trim_end_matches('.'))
        }
        other => anyhow::anyhow!(other.summary()),
    }
}

fn print(t: &Template, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    println!("template {}", t.name);
    println!("  image    {}", t.image);
    if !t.description.is_empty() {
        println!("  about    {}", t.description);
    }
    println!(
        "  files    {}",
        match &t.files_sha256 {
            Some(sha) => format!("{} bytes (sha256 {})", t.files_bytes, &sha[..12]),
            None => "none".into(),
        }
    );
    if let Some(c) = &t.check {
        println!("  check    {c}");
    }
    if let Some(l) = &t.limits {
        println!(
            "  limits   {} MiB memory, {} MiB disk, {} mCPU, network {:?}",
            l.memory_mb, l.disk_mb, l.cpu_millis, l.network
        );
    }
    if !t.readme.is_empty() {
        println!("  readme   {} bytes", t.readme.len());
    }
    Ok(())
}

fn request(a: CreateArgs) -> anyhow::Result<CreateTemplateRequest> {
    let readme = match &a.readme {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let files = a
        .files
        .as_deref()
        .map(starter_tar_gz)
        .transpose()?
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    let limits = if a.memory_mb.is_some()
        || a.disk_mb.is_some()
        || a.cpu_millis.is_some()
        || a.network.is_some()
    {
        let mut l = Limits::default();
        if let Some(m) = a.memory_mb {
            l.memory_mb = m;
        }
        if let Some(d) = a.disk_mb {
            l.disk_mb = d;
        }
        if let Some(c) = a.cpu_millis {
            l.cpu_millis = c;
        }
        match a.network.as_deref() {
            None | Some("none") => {}
            Some("open") => {
                l.network = clarateach_core::NetworkPolicy::Open;
                l.egress = true;
            }
            Some(other) => bail!("--network must be none or open, not {other:?}"),
        }
        Some(l)
    } else {
        None
    };
    Ok(CreateTemplateRequest {
        name: a.name,
        image: a.image,
        description: a.description,
        readme,
        check: a.check,
        limits,
        files_tar_gz: files,
    })
}

/// The starter files as a gzipped tar: a .tar.gz as it is, a directory packed (its contents
/// at the top, no links followed), a git repository's tree at a commit (`git archive`).
fn starter_tar_gz(spec: &str) -> anyhow::Result<Vec<u8>> {
    let (path, commit) = match spec.rsplit_once('@') {
        Some((p, c)) if Path::new(p).join(".git").exists() => (p, Some(c)),
        _ => (spec, None),
    };
    let p = Path::new(path);
    if p.join(".git").exists() {
        let commit = commit.unwrap_or("HEAD");
        if commit.starts_with('-') {
            bail!("invalid commit {commit:?}");
        }
        let out = Command::new("git")
            .arg("-C")
            .arg(p)
            .args(["archive", "--format=tar.gz", commit, "--"])
            .output()
            .context("running git archive")?;
        if !out.status.success() {
            bail!(
                "git archive {commit} in {path} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(out.stdout);
    }
    if p.is_file() {
        let bytes = std::fs::read(p).with_context(|| format!("reading {path}"))?;
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            bail!("{path} is not a .tar.gz");
        }
        return Ok(bytes);
    }
    if p.is_dir() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", p)
            .with_context(|| format!("packing {path}"))?;
        let gz = tar.into_inner().context("finishing the tar")?;
        return gz.finish().context("finishing the gzip");
    }
    bail!("--files {spec:?} is neither a directory, a .tar.gz nor a git repository")
}
