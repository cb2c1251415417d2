//! How bwrap is started (`sandbox::spawn`, issue 12's class start): a `clone(CLONE_VM |
//! CLONE_VFORK)` child of the agent, not a fork. What the child does before exec must come out
//! exactly as before: the seat's process is our child (so we reap it), runs as the seat's own
//! uid with no supplementary groups, in a session of its own, with no signal blocked and
//! SIGPIPE at its default (the Rust runtime ignores SIGPIPE in the agent; a vfork child that
//! kept the agent's signal state would hand it to every learner process); and a step that
//! fails before exec comes back as the start's error with its errno, leaving no child behind.
//! As root, with bwrap; skips with a printed reason otherwise.

mod sandbox_support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use clarateach_core::Limits;
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, WorkspaceSpec};
use sandbox_support::{config, data_dir, fake_daemon, ok, skipped, Harness};

/// The `Name:\tvalue` line of `/proc/{pid}/status`.
fn status_field(pid: i32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in the status of {pid}"))
        .trim()
        .to_string()
}

fn mask(pid: i32, name: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, name), 16).expect("hex mask")
}

/// Children of this test process that are zombies (started, exited, never reaped).
fn our_zombies() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next();
            state == Some("Z") && ppid == Some(me.as_str())
        })
        .collect()
}

const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);
const SIGCHLD_BIT: u64 = 1 << (libc::SIGCHLD - 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_is_our_child_as_its_own_uid_with_default_signals() {
    if skipped("a_seat_is_our_child_as_its_own_uid_with_default_signals") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, Limits::default(), &[]).await;
    let me = i32::try_from(std::process::id()).expect("pid");
    let pids = h.backend.pids(&h.key(1));
    let top: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|p| status_field(*p, "PPid").parse::<i32>().ok() == Some(me))
        .collect();
    assert_eq!(
        top.len(),
        1,
        "one process of the seat is our child: {pids:?}"
    );
    let bwrap = top[0];
    assert_eq!(status_field(bwrap, "Name"), "bwrap");
    let uid = status_field(bwrap, "Uid");
    assert!(
        uid.split_whitespace().all(|u| u != "0"),
        "bwrap runs as the seat's uid, not root: {uid}"
    );
    assert_eq!(status_field(bwrap, "Groups"), "", "no supplementary groups");
    // This test process ignores SIGPIPE (the Rust runtime does); the seat must not.
    // SAFETY: reading the current disposition of SIGPIPE.
    #[allow(unsafe_code)]
    let ours = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    assert_eq!(ours, libc::SIG_IGN, "the test runner ignores SIGPIPE");
    assert_eq!(
        mask(bwrap, "SigIgn") & SIGPIPE_BIT,
        0,
        "SIGPIPE at its default"
    );
    // bwrap's monitor blocks SIGCHLD for its signalfd; nothing else may be blocked.
    assert_eq!(
        mask(bwrap, "SigBlk") & !SIGCHLD_BIT,
        0,
        "no signal blocked in the seat's bwrap"
    );
    // In a session of its own: its own session id.
    let stat = std::fs::read_to_string(format!("/proc/{bwrap}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    let sid: i32 = after
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .expect("sid");
    assert_eq!(sid, bwrap, "bwrap leads its own session");
    // A learner's process too: nothing blocked, SIGPIPE default.
    let sig = ok(&ep, "grep -E '^Sig(Blk|Ign)' /proc/self/status").await;
    assert!(sig.contains("SigBlk:\t0000000000000000"), "{sig}");
    // The stop reaps bwrap: no zombie of ours stays.
    h.backend.stop(&h.key(1)).await.expect("stop");
    assert!(
        !our_zombies().contains(&bwrap),
        "bwrap was reaped after the stop"
    );
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_before_exec_is_the_starts_error_and_leaves_no_child() {
    if skipped("a_step_failing_before_exec_is_the_starts_error_and_leaves_no_child") {
        return;
    }
    let dir = data_dir();
    let daemon = fake_daemon(dir.path());
    // A copy of bwrap the backend accepts, made unexecutable afterwards: the child's execve
    // fails with EACCES after every other step ran.
    let bwrap = dir.path().join("bwrap");
    std::fs::copy(clarateach_isolation::sandbox::BWRAP, &bwrap).expect("copy bwrap");
    let mut cfg = config(dir.path(), daemon);
    cfg.bwrap = bwrap.clone();
    let backend = SandboxBackend::new(cfg).expect("backend");
    std::fs::set_permissions(&bwrap, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let key = clarateach_core::agent_proto::SeatKey {
        workshop_id: format!("ws-spawn-{}", std::process::id()),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: Limits::default(),
        image: None,
        env: BTreeMap::new(),
        daemon_token: "tok".into(),
    };
    backend.create(&spec).await.expect("create");
    let before = our_zombies();
    let err = backend
        .start(&key)
        .await
        .expect_err("an unexecutable bwrap cannot start");
    let chain = clarateach_core::error::error_chain(&err);
    assert!(
        chain.contains("Permission denied") || chain.contains("os error 13"),
        "the exec's errno comes back: {chain}"
    );
    assert!(
        backend.pids(&key).is_empty(),
        "nothing runs in the seat's cgroup"
    );
    let after = our_zombies();
    assert!(
        after.iter().all(|z| before.contains(z)),
        "the failed child was reaped: zombies {after:?}"
    );
    backend.destroy(&key, true).await.expect("destroy");
}
