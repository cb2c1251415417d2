//! `sandbox cp FILE ID:PATH` and `sandbox cp ID:PATH FILE`: one file in or out of the sandbox's
//! `/workspace`, through its daemon's file API (which walks by file descriptor, so a learner's
//! symlink cannot send the copy elsewhere).

use std::path::PathBuf;

use clarateach_sandbox::{SandboxError, Sandboxes};

use super::output::Out;

#[derive(clap::Args)]
pub struct CpArgs {
    /// A host file, or ID:PATH.
    src: String,
    /// ID:PATH, or a host file.
    dst: String,
}

/// `ID:PATH` -> (id, path), when `s` names a sandbox side.
fn remote(s: &str) -> Option<(&str, &str)> {
    let (id, path) = s.split_once(':')?;
    (!id.is_empty() && !id.contains('/')).then_some((id, path))
}

pub async fn cp(sbx: &Sandboxes, a: CpArgs, out: &Out) -> Result<(), SandboxError> {
    match (remote(&a.src), remote(&a.dst)) {
        (None, Some((id, path))) => {
            let data = std::fs::read(&a.src).map_err(|source| SandboxError::File {
                path: a.src.clone(),
                source,
            })?;
            let bytes = data.len();
            sbx.daemon(id)
                .await?
                .write_file(path, data)
                .await
                .map_err(|e| SandboxError::from_daemon(id, e))?;
            out.message(
                &format!("copied {} -> {id}:{path} ({bytes} bytes)", a.src),
                serde_json::json!({ "id": id, "path": path, "bytes": bytes }),
            );
        }
        (Some((id, path)), None) => {
            let data = sbx
                .daemon(id)
                .await?
                .read_file(path)
                .await
                .map_err(|e| SandboxError::from_daemon(id, e))?;
            let target = PathBuf::from(&a.dst);
            std::fs::write(&target, &data).map_err(|source| SandboxError::Output {
                path: a.dst.clone(),
                source,
            })?;
            out.message(
                &format!("copied {id}:{path} -> {} ({} bytes)", a.dst, data.len()),
                serde_json::json!({ "id": id, "path": path, "bytes": data.len() }),
            );
        }
        _ => return Err(SandboxError::BadCopy),
    }
    Ok(())
}
