//! `clarateach workshop broadcast ID PATH...` (or `--from-seat N [--dir D]`): hand files out to
//! every running seat; a learner's edited file is merged, or kept with the new one beside it as
//! `name.new`. Prints per seat what happened to each file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use clarateach_core::toolkit::{
    BroadcastFile, BroadcastOutcome, BroadcastReport, BroadcastRequest, FileEncoding,
    BROADCAST_MAX_FILES,
};

use super::output::{escape, print_json};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Local files or directories to hand out (a directory's files keep their paths below it).
    #[arg(required_unless_present = "from_seat", conflicts_with = "from_seat")]
    pub paths: Vec<PathBuf>,
    /// Put the files under this directory of each workspace (default: the workspace itself).
    #[arg(long = "to", value_name = "DIR")]
    pub to: Option<String>,
    /// Hand out the files of this seat instead, as they are now.
    #[arg(long, value_name = "SEAT")]
    pub from_seat: Option<u32>,
    /// With --from-seat: the seat's directory to hand out (default: the whole workspace).
    #[arg(long, value_name = "DIR", requires = "from_seat")]
    pub dir: Option<String>,
}

/// Every regular file under `path`, with its path relative to `base` (`/`-separated).
fn gather(path: &Path, base: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            gather(&e.path(), base, out)?;
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Ok(());
    }
    if out.len() >= BROADCAST_MAX_FILES {
        anyhow::bail!("more than {BROADCAST_MAX_FILES} files");
    }
    let rel = path.strip_prefix(base).unwrap_or(path);
    let rel = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    out.push((rel, data));
    Ok(())
}

fn request(args: &Args) -> anyhow::Result<BroadcastRequest> {
    if let Some(seat) = args.from_seat {
        return Ok(BroadcastRequest {
            files: Vec::new(),
            from_seat: Some(seat),
            dir: args.dir.clone(),
        });
    }
    let mut found = Vec::new();
    for p in &args.paths {
        let base = if p.is_dir() {
            p.clone()
        } else {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        gather(p, &base, &mut found)?;
    }
    let prefix = args
        .to
        .as_deref()
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty());
    let files = found
        .into_iter()
        .map(|(rel, data)| {
            let path = match prefix {
                Some(d) => format!("{d}/{rel}"),
                None => rel,
            };
            match String::from_utf8(data) {
                Ok(text) => BroadcastFile {
                    path,
                    content: text,
                    encoding: FileEncoding::Utf8,
                },
                Err(e) => BroadcastFile {
                    path,
                    content: base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                    encoding: FileEncoding::Base64,
                },
            }
        })
        .collect();
    Ok(BroadcastRequest {
        files,
        from_seat: None,
        dir: None,
    })
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let req = request(&args)?;
    let report = ctx.client.broadcast(&args.id, &req).await?;
    if ctx.json {
        return print_json(&report);
    }
    print!("{}", summary(&report));
    Ok(())
}

fn summary(r: &BroadcastReport) -> String {
    let mut out = format!(
        "{} file(s) to {} seat(s) in {} ms\n",
        r.files.len(),
        r.seats.len(),
        r.duration_ms
    );
    for s in &r.seats {
        for f in &s.files {
            let what = match f.outcome {
                BroadcastOutcome::Written => "written".to_string(),
                BroadcastOutcome::Merged => "merged with the learner's edits".to_string(),
                BroadcastOutcome::Conflicted => format!(
                    "conflicted: the learner's file is kept, the new one is {}",
                    escape(f.new_path.as_deref().unwrap_or("?"))
                ),
                BroadcastOutcome::Failed => {
                    format!("FAILED: {}", escape(f.error.as_deref().unwrap_or("?")))
                }
            };
            out.push_str(&format!(
                "seat {:>3}  {}  {what}\n",
                s.seat,
                escape(&f.path)
            ));
        }
    }
    out
}
