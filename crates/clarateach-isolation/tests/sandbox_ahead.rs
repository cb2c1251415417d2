//! Seats run ahead of their workshop's Start (issue 12), with real sandboxes and the real
//! `clarateach workspace-server`: `prepare_ahead` runs seats 1..=N frozen with a start-up token
//! and none of the workshop's environment; Start thaws and activates them (the same process,
//! the workshop's token and environment from then on, the start-up token dead); a seat whose
//! spec changed starts the usual way; what no Start took, a deleted workshop, and seats an
//! agent finds after a restart are given back. Needs root and bubblewrap, and the debug
//! binary (`cargo test --workspace` builds it); prints why it skips otherwise.

mod sandbox_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::cgroups::freezer_state_of;
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, DaemonAddr, DaemonEndpoint, WorkspaceSpec};
use sandbox_support::{alive, config, data_dir, real_daemon, skipped, DataDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "sk-ant-ahead-secret-7171";

struct Ahead {
    dir: DataDir,
    bin: PathBuf,
    backend: SandboxBackend,
    ws: String,
}

fn setup(test: &str) -> Option<Ahead> {
    if skipped(test) {
        return None;
    }
    let Some(bin) = real_daemon() else {
        clarateach_core::skip::report(
            test,
            "target/debug/clarateach is not built (cargo test --workspace builds it)",
        );
        return None;
    };
    let dir = data_dir();
    let backend = SandboxBackend::new(config(dir.path(), bin.clone())).expect("backend");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Some(Ahead {
        dir,
        bin,
        backend,
        ws: format!("ws-ah-{}-{nanos}", std::process::id()),
    })
}

impl Ahead {
    fn key(&self, seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: self.ws.clone(),
            seat,
        }
    }

    fn record(&self, key: &SeatKey) -> Option<serde_json::Value> {
        let file = self
            .dir
            .path()
            .join("sandboxes")
            .join(&key.workshop_id)
            .join(format!("seat-{:02}.json", key.seat));
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()
    }

    fn pid(&self, key: &SeatKey) -> i32 {
        self.record(key).expect("record")["pid"]
            .as_i64()
            .expect("pid") as i32
    }

    fn spec(&self, seat: u32, limits: Limits) -> WorkspaceSpec {
        WorkspaceSpec {
            key: self.key(seat),
            limits,
            image: None,
            env: BTreeMap::from([("ANTHROPIC_API_KEY".to_string(), SECRET.to_string())]),
            daemon_token: format!("the-start-token-of-seat-{seat}-0123456789"),
        }
    }

    async fn start(&self, spec: &WorkspaceSpec) -> DaemonEndpoint {
        self.backend.create(spec).await.expect("create");
        self.backend.start(&spec.key).await.expect("start")
    }
}

/// One HTTP request to a seat's daemon over its socket: (status, body), or None when no answer
/// came within `wait` (a frozen daemon answers nothing).
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    wait: Duration,
) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.ok()?;
        let status = resp.get(9..12)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    };
    tokio::time::timeout(wait, exchange).await.ok().flatten()
}

fn socket_of(ep: &DaemonEndpoint) -> &Path {
    match &ep.addr {
        DaemonAddr::Unix(p) => p,
        other => panic!("sandbox endpoints are Unix sockets, not {other:?}"),
    }
}

async fn run(socket: &Path, token: &str, command: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "command": command }).to_string();
    let (status, body) = request(
        socket,
        "POST",
        "/run",
        token,
        &body,
        Duration::from_secs(20),
    )
    .await
    .expect("the daemon answers");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// The environment of every process of the seat, as one string.
fn environments(backend: &SandboxBackend, key: &SeatKey) -> String {
    backend
        .pids(key)
        .into_iter()
        .map(|p| {
            String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default(),
            )
            .into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_run_ahead_is_frozen_without_the_secret_and_its_start_activates_it() {
    let Some(a) = setup("a_seat_run_ahead_is_frozen_without_the_secret_and_its_start_activates_it")
    else {
        return;
    };
    let limits = Limits::default();
    let made = a
        .backend
        .prepare_ahead(&a.ws, &limits, None, 2)
        .await
        .expect("prepare ahead");
    assert_eq!(made, 2);
    let key = a.key(1);
    let rec = a.record(&key).expect("a record made ahead");
    assert_eq!(rec["warm"], true, "{rec}");
    let (pid, startup) = (
        a.pid(&key),
        rec["daemon_token"].as_str().unwrap().to_string(),
    );
    assert!(alive(pid));
    assert_eq!(freezer_state_of(pid).as_deref(), Some("FROZEN"));
    // Frozen: nothing in the seat answers, not even to the start-up token.
    let socket = PathBuf::from(rec["socket"].as_str().unwrap());
    assert_eq!(
        request(
            &socket,
            "GET",
            "/files",
            &startup,
            "",
            Duration::from_millis(300)
        )
        .await,
        None
    );
    assert!(
        a.backend.endpoint(&key).is_none(),
        "no route to a seat not started"
    );

    // Start: the same process, thawed, on the Start's token and with the workshop's secret.
    let spec = a.spec(1, limits.clone());
    let ep = a.start(&spec).await;
    assert_eq!(ep.token, spec.daemon_token);
    assert_eq!(a.pid(&key), pid, "the process run ahead is the seat");
    assert_eq!(freezer_state_of(pid).as_deref(), Some("THAWED"));
    assert_eq!(a.record(&key).unwrap().get("warm"), None);
    let (status, out) = run(socket_of(&ep), &ep.token, "printenv ANTHROPIC_API_KEY").await;
    assert_eq!(
        (status, out["stdout"].as_str()),
        (200, Some(&*format!("{SECRET}\n")))
    );
    // Attack: the start-up token (read here from root's record; a seat never sees it) is dead.
    let (status, _) = run(socket_of(&ep), &startup, "id").await;
    assert_eq!(
        status, 401,
        "the start-up token must not work after the Start"
    );
    let again = serde_json::json!({"token": "an-attackers-token-0123456789", "env": {"X": "y"}});
    let (status, _) = request(
        socket_of(&ep),
        "POST",
        "/activate",
        &ep.token,
        &again.to_string(),
        Duration::from_secs(5),
    )
    .await
    .expect("answer");
    assert_eq!(status, 409, "a started seat takes no second activation");
    // The secret came over the socket: no process of the seat holds it in its environment
    // (bwrap, its init and the daemon; the command that printed it has exited).
    let envs = environments(&a.backend, &key);
    assert!(
        envs.contains("CLARATEACH_DAEMON_TOKEN"),
        "environments read"
    );
    assert!(
        !envs.contains(SECRET),
        "the secret is in no process's environment"
    );

    // Seat 2 was run ahead for the default limits; its Start asks for others: the process
    // run ahead goes and the seat starts the usual way, with the new limits.
    let key2 = a.key(2);
    let warm_pid = a.pid(&key2);
    let mut other = limits.clone();
    other.memory_mb = limits.memory_mb / 2;
    let spec2 = a.spec(2, other);
    let ep2 = a.start(&spec2).await;
    assert_ne!(a.pid(&key2), warm_pid, "a fresh process for other limits");
    assert!(!alive(warm_pid));
    let (status, out) = run(socket_of(&ep2), &ep2.token, "printenv ANTHROPIC_API_KEY").await;
    assert_eq!(
        (status, out["stdout"].as_str()),
        (200, Some(&*format!("{SECRET}\n")))
    );

    for seat in [1, 2] {
        a.backend
            .destroy(&a.key(seat), true)
            .await
            .expect("destroy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_no_start_took_is_given_back() {
    let Some(a) = setup("what_no_start_took_is_given_back") else {
        return;
    };
    let limits = Limits::default();
    assert_eq!(
        a.backend
            .prepare_ahead(&a.ws, &limits, None, 3)
            .await
            .expect("prepare"),
        3
    );
    let pids: Vec<i32> = (1..=3).map(|s| a.pid(&a.key(s))).collect();
    // The Start placed only seat 1 here: the trim gives back 2 and 3, never seat 1.
    let ep = a.start(&a.spec(1, limits.clone())).await;
    a.backend.trim_ahead(&a.ws).await.expect("trim");
    for (seat, pid) in [(2, pids[1]), (3, pids[2])] {
        assert!(!alive(pid), "seat {seat} run ahead is gone");
        assert!(
            a.record(&a.key(seat)).is_none(),
            "seat {seat}'s record is gone"
        );
        assert!(
            !a.dir
                .path()
                .join("seats")
                .join(&a.ws)
                .join(format!("seat-{seat:02}"))
                .exists(),
            "seat {seat}'s file system is gone"
        );
    }
    assert!(alive(pids[0]));
    let (status, _) = run(socket_of(&ep), &ep.token, "true").await;
    assert_eq!(status, 200);

    // A workshop deleted before its Start: everything it had run ahead goes.
    let deleted = format!("{}-b", a.ws);
    a.backend
        .prepare_ahead(&deleted, &limits, None, 2)
        .await
        .expect("prepare b");
    let key_b = SeatKey {
        workshop_id: deleted.clone(),
        seat: 1,
    };
    let pid_b = a.pid(&key_b);
    a.backend.release_ahead(&deleted).await.expect("release");
    assert!(!alive(pid_b));
    assert!(a.record(&key_b).is_none());
    assert!(a.backend.pids(&key_b).is_empty());
    a.backend.destroy(&a.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_gives_back_seats_run_ahead() {
    let Some(a) = setup("an_agent_restart_gives_back_seats_run_ahead") else {
        return;
    };
    a.backend
        .prepare_ahead(&a.ws, &Limits::default(), None, 1)
        .await
        .expect("prepare");
    let key = a.key(1);
    let pid = a.pid(&key);
    let Ahead {
        dir, bin, backend, ..
    } = a;
    drop(backend);
    let again = SandboxBackend::new(config(dir.path(), bin)).expect("backend");
    let found = again.adopt().await.expect("adopt");
    assert!(
        found.iter().all(|(k, _)| k != &key),
        "a seat run ahead is not reported: {found:?}"
    );
    assert!(!alive(pid), "its processes are gone");
    assert!(again.pids(&key).is_empty());
    assert!(!dir
        .path()
        .join("sandboxes")
        .join(&key.workshop_id)
        .join("seat-01.json")
        .exists());
}

/// Two agents on one host (the multi-replica tests, a dev machine): one runs seat 1 of a
/// workshop ahead while the control plane placed that seat on the other. The other's start
/// empties its seat's cgroup first; with a shared cgroup name that killed the first's seat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_of_one_host_never_share_a_seat_cgroup() {
    let Some(a) = setup("two_backends_of_one_host_never_share_a_seat_cgroup") else {
        return;
    };
    let other_dir = data_dir();
    let own_groups = |dir: &Path| {
        let mut cfg = config(dir, a.bin.clone());
        cfg.cgroup_parent =
            clarateach_isolation::sandbox::SandboxConfig::new(dir, &a.bin).cgroup_parent;
        cfg
    };
    let first = SandboxBackend::new(own_groups(a.dir.path())).expect("backend");
    let second = SandboxBackend::new(own_groups(other_dir.path())).expect("backend");
    first
        .prepare_ahead(&a.ws, &Limits::default(), None, 1)
        .await
        .expect("prepare");
    let key = a.key(1);
    let warm = a.pid(&key);
    let spec = a.spec(1, Limits::default());
    second.create(&spec).await.expect("create on the other");
    let ep = second.start(&key).await.expect("start on the other");
    let (status, _) = run(socket_of(&ep), &ep.token, "true").await;
    assert_eq!(status, 200);
    assert!(
        alive(warm),
        "the other backend's start left this one's seat alone"
    );
    assert_eq!(freezer_state_of(warm).as_deref(), Some("FROZEN"));
    second.destroy(&key, true).await.expect("destroy");
    first.release_ahead(&a.ws).await.expect("release");
    assert!(!alive(warm));
}
