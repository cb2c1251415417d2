//! `clarateach workshop export ID -o FILE`: saves a tar.gz of every seat's files. The archive is
//! streamed into a temporary file beside the target and renamed into place only when complete,
//! so a failed download never leaves a truncated archive under the final name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::json;

use super::output::print_json;
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,

    /// Where to save the archive; `-` writes it to stdout [default: ID.tar.gz].
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let target = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.tar.gz", args.id)));
    // Ask first, so a refusal (unknown workshop, bad token) creates no file at all.
    let export = ctx.client.export_workshop(&args.id).await?;

    if target.as_os_str() == "-" {
        let mut stdout = tokio::io::stdout();
        export.write_to(&mut stdout, |_| {}).await?;
        return Ok(());
    }

    let bar = if ctx.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} exporting {msg}: {bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(args.id.clone());
    bar.enable_steady_tick(Duration::from_millis(120));

    let temp = temp_path(&target);
    let result = download(export, &temp, &target, &bar).await;
    bar.finish_and_clear();
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    if ctx.json {
        return print_json(&json!({ "path": target, "bytes": bytes }));
    }
    println!(
        "Saved the export of {} to {} ({}).",
        args.id,
        target.display(),
        HumanBytes(bytes)
    );
    Ok(())
}

async fn download(
    export: clarateach_client::Export,
    temp: &Path,
    target: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(|e| anyhow!("cannot create {}: {e}", temp.display()))?;
    let bytes = export.write_to(&mut file, |n| bar.set_position(n)).await?;
    file.sync_all()
        .await
        .map_err(|e| anyhow!("cannot write {}: {e}", temp.display()))?;
    drop(file);
    tokio::fs::rename(temp, target)
        .await
        .map_err(|e| anyhow!("cannot move the export to {}: {e}", target.display()))?;
    Ok(bytes)
}

/// `dir/.name.PID.part`, in the target's directory so the final rename stays on one filesystem.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    target.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_sits_beside_the_target() {
        let t = temp_path(Path::new("/tmp/out/class.tar.gz"));
        assert_eq!(t.parent(), Some(Path::new("/tmp/out")));
        assert!(t
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".class.tar.gz.")));
        assert!(temp_path(Path::new("a.tgz"))
            .to_string_lossy()
            .starts_with(".a.tgz."));
    }
}
