//! `sandbox run ID --cmd CMD [--file PATH]... [--timeout S] [--env K=V]...`: stages the files in a
//! fresh run directory of the sandbox (by their file names), runs `sh -c CMD` there, prints its
//! stdout and stderr to ours live, as the command writes them (also kept in the sandbox's
//! `out/`), and exits with its status, 124 on a timeout. With `--json` each chunk is a line
//! `{"message": "output", "stream": "stdout"|"stderr", "data": ...}` before the final outcome.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clarateach_core::RunEvent;
use clarateach_sandbox::{exit, RunOptions, SandboxError, Sandboxes};

use super::output::Out;

#[derive(clap::Args)]
pub struct RunArgs {
    id: String,
    /// The command line, run with `sh -c`.
    #[arg(long)]
    cmd: String,
    /// A file to stage into the run directory (by its file name); repeatable.
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Seconds before the command is killed (1-600, default 30).
    #[arg(long)]
    timeout: Option<u64>,
    /// An environment variable for the command; repeatable.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

pub async fn run(sbx: &Sandboxes, a: RunArgs, out: &Out) -> Result<u8, SandboxError> {
    let mut files = BTreeMap::new();
    for path in &a.files {
        let shown = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| SandboxError::File {
                path: shown.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            })?;
        let data = std::fs::read(path).map_err(|source| SandboxError::File {
            path: shown.clone(),
            source,
        })?;
        files.insert(name, data);
    }
    let json = out.json();
    let outcome = sbx
        .run_live(
            &a.id,
            RunOptions {
                command: a.cmd,
                files,
                env: a.env.into_iter().collect(),
                timeout_s: a.timeout,
            },
            |ev| {
                if json {
                    out.run_output(ev);
                    return;
                }
                // Live, as the command writes: unbuffered to our own stdout and stderr.
                let _ = match ev {
                    RunEvent::Stdout { data } => {
                        let mut o = std::io::stdout().lock();
                        o.write_all(data.as_bytes()).and_then(|()| o.flush())
                    }
                    RunEvent::Stderr { data } => std::io::stderr().write_all(data.as_bytes()),
                    RunEvent::Exit { .. } => Ok(()),
                };
            },
        )
        .await?;
    if json {
        out.run(&outcome);
    } else {
        if outcome.timed_out {
            eprintln!(
                "error: the command did not finish within {} s and was killed",
                a.timeout.unwrap_or(30)
            );
        }
        if outcome.truncated {
            eprintln!("warning: output was cut at 1 MiB per stream");
        }
    }
    Ok(match (outcome.timed_out, outcome.exit_code) {
        (true, _) => exit::TIMEOUT,
        (false, Some(code)) => u8::try_from(code).unwrap_or(exit::INTERNAL),
        (false, None) => exit::INTERNAL,
    })
}
