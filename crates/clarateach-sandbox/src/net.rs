//! `--network open|allow:HOST,...` for standalone sandboxes, which have no long-lived agent to
//! hold a seat network's user-space half.
//!
//! A networked sandbox is a seat of the same seat network as a workshop seat (`netpolicy`: its
//! own namespace and veth, the same nft sets and chains, so the same guarantees: no host, no
//! loopback, no metadata or private ranges, no other seat; `allow` reaches only the HTTP CONNECT
//! proxy on its gateway, which applies the allow-list by host name). What differs is who holds
//! the proxy (allow) or DNS forwarder (open): a small **keeper** process per sandbox
//! (`clarateach sandbox keep ID`, its own session), started by `create`/`start`, which builds the
//! sandbox's backend, starts the seat (so the listener lives in it), reports the daemon's address
//! on its stdout and then only serves the proxy or forwarder until `stop`/`clean` ends it.
//!
//! Each networked sandbox has an nft table of its own (`ctsbx_<hash>`): a seat network loads
//! its whole table at its first change in a process, and separate CLI processes (and keepers)
//! only know their own seat, so a shared table would lose the other sandboxes' elements, and a
//! seat interface missing from `seat_ifs` meets only the base chains' `policy accept`. With one
//! table per sandbox a reload can only ever hold that sandbox's own elements. Tables of other
//! sandboxes never match its interface, so they do not change its verdicts.
//!
//! What the sandbox uses (table, seat subnet, egress interface, hosts file, DNS upstream) is
//! fixed at `create` in its record ([`NetRecord`]), so a later `start`, `stop` or `clean` from
//! another environment tears down and restores the same objects. `stop`/`clean` end the keeper
//! (checked by pid and start time, never a reused pid), then the backend removes the processes,
//! veth and namespace, then the table goes: the processes are gone before their rules are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_isolation::netpolicy::{nft, NetConfig, Resolver, SeatSubnet};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::record::StoredAddr;
pub use crate::record::{KeeperRecord, NetRecord};
use crate::{SandboxError, StateDir};

/// Networked sandboxes of a state dir take a /22 of this /16 (256 sandboxes), apart from the
/// agent's default seat subnet (10.214.0.0/16); [`SUBNET_ENV`] overrides it.
const SUBNET_BASE: [u8; 2] = [10, 215];
/// A seat subnet for this state dir's networked sandboxes, instead of the derived /22.
pub const SUBNET_ENV: &str = "CLARATEACH_SANDBOX_SUBNET";
/// Where `open` sandboxes' traffic leaves (as the agent's `--egress-iface`).
pub const EGRESS_IFACE_ENV: &str = "CLARATEACH_EGRESS_IFACE";
/// A `NAME IP` file the proxy resolves allow-listed names from (as the agent's `--egress-hosts`).
pub const EGRESS_HOSTS_ENV: &str = "CLARATEACH_EGRESS_HOSTS";
/// Upstream of `open` sandboxes' DNS forwarder (`IP:PORT`; default the first nameserver of
/// /etc/resolv.conf).
pub const DNS_UPSTREAM_ENV: &str = "CLARATEACH_SANDBOX_DNS_UPSTREAM";

/// How long a keeper may take to start its sandbox and report.
const KEEPER_START: Duration = Duration::from_secs(90);

/// What a keeper prints on its stdout once: where the daemon listens, or why it could not start.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeeperReport {
    Ready {
        daemon: StoredAddr,
    },
    Failed {
        code: String,
        message: String,
        exit: u8,
    },
}

/// FNV-1a over the parts: stable across builds.
fn hash(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter().chain(&[0u8]))
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl NetRecord {
    /// The network objects sandbox `id` of `dir` will use, from the environment.
    pub fn for_sandbox(dir: &StateDir, id: &str) -> Result<Self, SandboxError> {
        let root = dir.root().as_os_str().as_encoded_bytes();
        let h = hash(&[root, id.as_bytes()]);
        let seat_subnet = match std::env::var(SUBNET_ENV) {
            Ok(s) => s,
            Err(_) => {
                let slice = (hash(&[root]) % 64) as u8;
                format!("{}.{}.{}.0/22", SUBNET_BASE[0], SUBNET_BASE[1], slice * 4)
            }
        };
        let dns_upstream = match std::env::var(DNS_UPSTREAM_ENV) {
            Ok(s) => Some(s.parse().map_err(|_| {
                SandboxError::NetSetting(format!("{DNS_UPSTREAM_ENV}={s} (want IP:PORT)"))
            })?),
            Err(_) => None,
        };
        let rec = Self {
            nft_table: format!("ctsbx_{:012x}", h & 0xffff_ffff_ffff),
            seat_subnet,
            egress_iface: std::env::var(EGRESS_IFACE_ENV)
                .ok()
                .filter(|s| !s.is_empty()),
            egress_hosts: std::env::var_os(EGRESS_HOSTS_ENV)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            dns_upstream,
        };
        // Checked now, so a bad setting is the create's error, not a keeper's.
        rec.config()?;
        Ok(rec)
    }

    /// The seat-network configuration of the sandbox's backend.
    pub fn config(&self) -> Result<NetConfig, SandboxError> {
        let seat_subnet: SeatSubnet = self.seat_subnet.parse().map_err(|_| {
            SandboxError::NetSetting(format!(
                "{SUBNET_ENV}={} (want A.B.C.D/N)",
                self.seat_subnet
            ))
        })?;
        let resolver = match &self.egress_hosts {
            Some(file) => Resolver::from_file(file).map_err(|e| {
                SandboxError::NetSetting(format!(
                    "{EGRESS_HOSTS_ENV}={}: {}",
                    file.display(),
                    clarateach_core::error::error_chain(&e)
                ))
            })?,
            None => Resolver::System,
        };
        Ok(NetConfig {
            seat_subnet,
            egress_iface: self.egress_iface.clone(),
            nft_table: self.nft_table.clone(),
            resolver,
            dns_upstream: self.dns_upstream,
            // A sandbox is the only seat of its backend: nothing to make ahead.
            spare_namespaces: 0,
        })
    }
}

/// Starts the keeper of sandbox `id` and waits for its report. The caller holds the state lock
/// (the keeper takes none: it only reads the record written before).
pub async fn spawn_keeper(
    dir: &StateDir,
    id: &str,
) -> Result<(KeeperRecord, StoredAddr), SandboxError> {
    let exe = std::env::current_exe().map_err(|source| SandboxError::StateDir {
        path: "the clarateach binary".into(),
        source,
    })?;
    let own = dir.sandbox(id);
    let out_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| SandboxError::Output { path, source }
    };
    std::fs::create_dir_all(&own).map_err(out_err(&own))?;
    let log_path = own.join("keeper.log");
    let log = std::fs::File::create(&log_path).map_err(out_err(&log_path))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("sandbox")
        .arg("--state-dir")
        .arg(dir.root())
        .arg("keep")
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| SandboxError::Keeper(format!("cannot start the keeper: {e}")))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| SandboxError::Keeper("the keeper exited at once".into()))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(SandboxError::Keeper("no pipe from the keeper".into()));
    };
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let read = tokio::time::timeout(KEEPER_START, reader.read_line(&mut line)).await;
    let report = match read {
        Ok(Ok(n)) if n > 0 => serde_json::from_str::<KeeperReport>(line.trim()).ok(),
        _ => None,
    };
    let tail = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    };
    let outcome = match report {
        Some(KeeperReport::Ready { daemon }) => {
            match clarateach_isolation::sandbox::process_start_time(pid) {
                Some(start_time) => Ok((KeeperRecord { pid, start_time }, daemon)),
                None => Err(SandboxError::Keeper(format!(
                    "the keeper ended after starting the sandbox: {}",
                    tail()
                ))),
            }
        }
        Some(KeeperReport::Failed { code, message, .. }) => {
            Err(SandboxError::Keeper(format!("{message} ({code})")))
        }
        None => {
            let _ = child.start_kill();
            Err(SandboxError::Keeper(format!(
                "the keeper did not report: {}",
                tail()
            )))
        }
    };
    // Reaped whenever it ends (a long-lived caller, the control plane, keeps no zombies).
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = child.wait().await;
        });
    }
    outcome
}

/// Ends a keeper (SIGTERM, then SIGKILL after 2 s) and waits until it is gone. A keeper that is
/// not running (or a pid now used by another process) is left alone.
pub async fn stop_keeper(k: &KeeperRecord) {
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(k.pid);
    if !k.alive() {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    // A keeper ends within milliseconds of SIGTERM: poll finely, so `stop`/`clean` wait no
    // longer than it takes.
    for i in 0..800 {
        if !k.alive() {
            return;
        }
        if i == 400 {
            let _ = kill(pid, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!(pid = k.pid, "sandbox keeper did not end");
}

/// Ends the keeper of `rec`, if it has one running.
pub async fn stop_keeper_of(rec: &crate::SandboxRecord) {
    if let Some(k) = &rec.keeper {
        stop_keeper(k).await;
    }
}

/// Deletes the sandbox's nft table (once its seat is gone); a missing table is fine.
pub async fn delete_table(table: &str) -> Result<(), SandboxError> {
    if !nft::valid_table(table) {
        return Err(SandboxError::Keeper(format!(
            "bad nft table name {table:?}"
        )));
    }
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| SandboxError::Keeper(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(nft::render_delete(table).as_bytes())
            .await
            .map_err(|e| SandboxError::Keeper(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| SandboxError::Keeper(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::Keeper(format!(
            "nft could not delete table {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The keeper of a networked sandbox: its own session (no terminal's signals reach it), one
/// report line on stdout, then it serves the sandbox's proxy or DNS forwarder until SIGTERM.
pub async fn keeper_main(sbx: &crate::Sandboxes, id: &str) -> u8 {
    use std::io::Write;
    use tokio::signal::unix::{signal, SignalKind};
    let _ = nix::unistd::setsid();
    let report = match sbx.keep(id).await {
        Ok(daemon) => KeeperReport::Ready { daemon },
        Err(e) => KeeperReport::Failed {
            code: e.code().to_string(),
            message: clarateach_core::error::error_chain(&e),
            exit: e.exit_code(),
        },
    };
    let failed = matches!(report, KeeperReport::Failed { .. });
    let line = serde_json::to_string(&report).unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    // The parent may be gone already: nothing to do about a closed pipe.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    drop(stdout);
    if failed {
        return crate::exit::INTERNAL;
    }
    sbx.close().await;
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return crate::exit::INTERNAL;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // No terminal: a hangup means nothing here.
            _ = hup.recv() => continue,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sandbox_gets_its_own_table_and_the_state_dir_a_subnet_apart_from_the_agents() {
        let a = StateDir::at("/var/lib/clarateach");
        let r1 = NetRecord::for_sandbox(&a, "one").expect("net");
        let r2 = NetRecord::for_sandbox(&a, "two").expect("net");
        assert_ne!(r1.nft_table, r2.nft_table);
        assert!(nft::valid_table(&r1.nft_table), "{}", r1.nft_table);
        assert_ne!(r1.nft_table, "clarateach", "never the agent's table");
        if std::env::var_os(SUBNET_ENV).is_none() {
            assert_eq!(r1.seat_subnet, r2.seat_subnet);
            let subnet: SeatSubnet = r1.seat_subnet.parse().expect("subnet");
            assert_eq!(subnet.slots(), 256);
            let agents: SeatSubnet = clarateach_isolation::netpolicy::DEFAULT_SEAT_SUBNET
                .parse()
                .expect("agent subnet");
            let first = subnet.slot(0).expect("slot").host;
            assert!(!agents.contains(first));
        }
        // Stable: a later CLI finds the same objects.
        assert_eq!(NetRecord::for_sandbox(&a, "one").expect("net"), r1);
    }

    #[test]
    fn keeper_reports_round_trip() {
        let r = KeeperReport::Ready {
            daemon: StoredAddr::Unix {
                path: "/x/sock".into(),
            },
        };
        let line = serde_json::to_string(&r).expect("json");
        assert!(matches!(
            serde_json::from_str::<KeeperReport>(&line).expect("parse"),
            KeeperReport::Ready { .. }
        ));
        // Our own pid with a wrong start time is not "alive": pids are never trusted alone.
        let me = KeeperRecord {
            pid: std::process::id() as i32,
            start_time: 1,
        };
        assert!(!me.alive());
    }
}
