//! Seats outlive the agent: a new backend over the same data dir re-adopts running sandboxes,
//! reports created-but-stopped seats and bare volumes, and cleans up a sandbox that died (or
//! half-died) while the agent was away. Also runs the real `clarateach workspace-server` when
//! the binary is built.

mod sandbox_support;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, DaemonAddr, WorkspaceSpec, WorkspaceStatus};
use sandbox_support::{alive, config, ok, real_daemon, skipped, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_survive_an_agent_restart_and_are_readopted() {
    if skipped("seats_survive_an_agent_restart_and_are_readopted") {
        return;
    }
    let h = Harness::new();
    let ep = h
        .seat(1, Limits::default(), &[("ANTHROPIC_API_KEY", "sk-x")])
        .await;
    ok(&ep, "echo kept > /workspace/f").await;
    let spec2 = WorkspaceSpec {
        key: h.key(2),
        limits: Limits::default(),
        image: None,
        env: Default::default(),
        daemon_token: "t2".into(),
    };
    h.backend.create(&spec2).await.expect("create");
    std::fs::create_dir_all(h.dir.path().join("volumes").join(&h.ws).join("seat-09"))
        .expect("mkdir");
    let (k1, k2, k9) = (h.key(1), h.key(2), h.key(9));
    let daemon = h.dir.path().join("fake-daemon");
    let Harness {
        dir,
        backend,
        ws: _,
    } = h;
    // The agent dies without stopping anything.
    drop(backend);

    let again = SandboxBackend::new(config(dir.path(), daemon.clone())).expect("backend");
    let mut found = again.adopt().await.expect("adopt");
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            (k1.clone(), WorkspaceStatus::Running),
            (k2.clone(), WorkspaceStatus::Stopped),
            (k9, WorkspaceStatus::Missing)
        ]
    );
    assert_eq!(again.endpoint(&k1), Some(ep.clone()));
    assert_eq!(
        ok(&ep, "cat /workspace/f; echo $ANTHROPIC_API_KEY").await,
        "kept\nsk-x"
    );
    // The stopped seat starts from its saved spec.
    let ep2 = again.start(&k2).await.expect("start adopted spec");
    assert_eq!(ok(&ep2, "hostname").await, "seat-02");

    // While the agent is away again, seat 1's outer bwrap dies; its inside lingers.
    let pids = again.pids(&k1);
    let state = dir
        .path()
        .join("sandboxes")
        .join(&k1.workshop_id)
        .join("seat-01.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state).expect("state")).expect("json");
    let outer = state["pid"].as_i64().expect("pid") as i32;
    assert!(pids.contains(&outer));
    drop(again);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(outer),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    while alive(outer) {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let third = SandboxBackend::new(config(dir.path(), daemon)).expect("backend");
    let found = third.adopt().await.expect("adopt");
    assert!(
        found.contains(&(k1.clone(), WorkspaceStatus::Stopped)),
        "{found:?}"
    );
    assert!(
        found.contains(&(k2.clone(), WorkspaceStatus::Running)),
        "{found:?}"
    );
    assert!(
        third.pids(&k1).is_empty(),
        "leftovers of a dead sandbox were not cleaned"
    );
    assert!(pids.iter().all(|p| !alive(*p)));
    let ep1 = third.start(&k1).await.expect("restart");
    assert_eq!(ok(&ep1, "cat /workspace/f").await, "kept");
    for k in [&k1, &k2] {
        third.destroy(k, true).await.expect("destroy");
        assert!(third.pids(k).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_workspace_daemon_runs_in_a_seat() {
    if skipped("the_real_workspace_daemon_runs_in_a_seat") {
        return;
    }
    let Some(bin) = real_daemon() else {
        clarateach_core::skip::report(
            "the_real_workspace_daemon_runs_in_a_seat",
            "no clarateach binary with workspace-server (set CLARATEACH_BIN)",
        );
        return;
    };
    let dir = sandbox_support::data_dir();
    let backend = SandboxBackend::new(config(dir.path(), bin)).expect("backend");
    let key = SeatKey {
        workshop_id: format!("ws-real-{}", std::process::id()),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: Limits::default(),
        image: None,
        env: Default::default(),
        daemon_token: "real-token".into(),
    };
    backend.create(&spec).await.expect("create");
    let ep = backend
        .start(&key)
        .await
        .expect("start with the real daemon");
    let DaemonAddr::Unix(socket) = &ep.addr else {
        panic!("unix")
    };
    assert!(clarateach_isolation::sandbox::health(socket, &ep.token).await);
    backend.destroy(&key, true).await.expect("destroy");
    assert!(backend.pids(&key).is_empty());
}
