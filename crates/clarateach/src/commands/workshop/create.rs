//! `clarateach workshop create --name NAME --seats N`: registers a workshop (not started). The
//! optional API key comes from a flag, an environment variable or stdin, and is never printed.

use std::io::{IsTerminal, Read};

use anyhow::{anyhow, bail};
use clarateach_core::{CreateWorkshopRequest, Limits, NetworkPolicy};
use serde_json::json;

use super::output::{print_json, workshop_details};
use super::Ctx;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("api_key_source").multiple(false))]
pub struct Args {
    /// Workshop name shown to learners (1-100 characters).
    #[arg(long)]
    name: String,

    /// Number of seats (1-200).
    #[arg(long)]
    seats: u32,

    /// API key injected into every seat's shell (visible in your shell history; prefer
    /// --api-key-env or --api-key-stdin).
    #[arg(
        long,
        group = "api_key_source",
        value_name = "KEY",
        hide_default_value = true
    )]
    api_key: Option<String>,

    /// Read the API key from this environment variable.
    #[arg(long, group = "api_key_source", value_name = "VAR")]
    api_key_env: Option<String>,

    /// Read the API key from stdin (prompted without echo on a terminal).
    #[arg(long, group = "api_key_source")]
    api_key_stdin: bool,

    /// Guest image name (default: the template's, else the control plane's default).
    #[arg(long)]
    image: Option<String>,

    /// Template (`clarateach template list`): image, limits, starter files and README; the
    /// flags given here override it.
    #[arg(long)]
    template: Option<String>,

    /// Memory limit per seat in MiB [default: 512].
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<u32>,

    /// Process limit per seat [default: 256].
    #[arg(long)]
    pids: Option<u32>,

    /// CPU quota per seat in thousandths of a CPU [default: 1000].
    #[arg(long, value_name = "MILLIS")]
    cpu_millis: Option<u32>,

    /// Disk quota per seat in MiB (workspace, home and tmpfs; default 2048).
    #[arg(long, value_name = "MIB")]
    disk_mb: Option<u32>,

    /// What seats may reach: `none` (default), `open`, or `allow:HOST,HOST,...`.
    #[arg(long, value_name = "POLICY", value_parser = parse_network, conflicts_with = "egress")]
    network: Option<NetworkPolicy>,

    /// Deprecated spelling of `--network open`.
    #[arg(long)]
    egress: bool,
}

/// `none`, `open` or `allow:api.anthropic.com,github.com`.
fn parse_network(s: &str) -> Result<NetworkPolicy, String> {
    let policy = match s {
        "none" => NetworkPolicy::None,
        "open" => NetworkPolicy::Open,
        _ => match s.strip_prefix("allow:") {
            Some(hosts) => NetworkPolicy::Allow {
                allow: hosts.split(',').map(|h| h.trim().to_string()).collect(),
            },
            None => return Err("expected none, open or allow:HOST,HOST,...".into()),
        },
    };
    policy.validate()?;
    Ok(policy)
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let api_key = api_key(&args).await?;
    let limits = limits(&args);
    let req = CreateWorkshopRequest {
        template: args.template,
        name: args.name,
        seats: args.seats,
        api_key,
        image: args.image,
        limits,
    };
    let workshop = ctx.client.create_workshop(&req).await?;
    if ctx.json {
        return print_json(&json!({ "workshop": workshop }));
    }
    println!(
        "Created workshop {}.\n{}",
        workshop.id,
        workshop_details(&workshop)
    );
    println!("\nStart it with: clarateach workshop start {}", workshop.id);
    Ok(())
}

/// Limits only when one was given, so the server's defaults apply otherwise.
fn limits(args: &Args) -> Option<Limits> {
    if args.memory_mb.is_none()
        && args.pids.is_none()
        && args.cpu_millis.is_none()
        && args.disk_mb.is_none()
        && args.network.is_none()
        && !args.egress
    {
        return None;
    }
    let d = Limits::default();
    let network = match (&args.network, args.egress) {
        (Some(n), _) => n.clone(),
        (None, true) => NetworkPolicy::Open,
        (None, false) => NetworkPolicy::None,
    };
    Some(
        Limits {
            memory_mb: args.memory_mb.unwrap_or(d.memory_mb),
            pids: args.pids.unwrap_or(d.pids),
            cpu_millis: args.cpu_millis.unwrap_or(d.cpu_millis),
            disk_mb: args.disk_mb.unwrap_or(d.disk_mb),
            ..d
        }
        .with_network(network),
    )
}

async fn api_key(args: &Args) -> anyhow::Result<Option<String>> {
    let key = if let Some(key) = &args.api_key {
        key.clone()
    } else if let Some(var) = &args.api_key_env {
        std::env::var(var)
            .map_err(|_| anyhow!("--api-key-env: environment variable {var} is not set"))?
    } else if args.api_key_stdin {
        tokio::task::spawn_blocking(read_stdin_key).await??
    } else {
        return Ok(None);
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!("the API key is empty");
    }
    Ok(Some(key))
}

fn read_stdin_key() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return dialoguer::Password::new()
            .with_prompt("API key (input hidden)")
            .interact()
            .map_err(|e| anyhow!("cannot read the API key: {e}"));
    }
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .map_err(|e| anyhow!("cannot read the API key from stdin: {e}"))?;
    Ok(key)
}
