//! Isolation seen from inside a seat, with real bubblewrap and real cgroups: not root, only its
//! own processes, no other seat's files, no writes outside /workspace, /tmp and home, no host
//! ports, the api key in its environment and in no command line; destroy leaves no process.

mod sandbox_support;

use clarateach_core::Limits;
use clarateach_isolation::{Backend, WorkspaceStatus};
use sandbox_support::{alive, fake_daemon_after, ok, run, skipped, Harness};

const SECRET: &str = "sk-test-secret-4242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_is_isolated_from_the_host_and_other_seats() {
    if skipped("a_seat_is_isolated_from_the_host_and_other_seats") {
        return;
    }
    let h = Harness::new();
    let one = h
        .seat(1, Limits::default(), &[("ANTHROPIC_API_KEY", SECRET)])
        .await;
    let two = h.seat(2, Limits::default(), &[]).await;

    assert_eq!(
        ok(&one, "id -u; id -un; hostname").await,
        "1000\nlearner\nseat-01"
    );
    // Only the seat's own processes: bwrap's init, the daemon, this shell and ls.
    let procs = ok(&one, "ls /proc | grep -c '^[0-9]*$'").await;
    assert!(
        procs.parse::<u32>().expect("count") <= 5,
        "saw {procs} processes"
    );
    let caps = ok(&one, "grep CapEff /proc/self/status").await;
    assert!(caps.ends_with("0000000000000000"), "{caps}");

    // The other seat's files and the host's data dir are out of sight.
    std::fs::write(h.backend.volume_dir(&h.key(2)).join("mine.txt"), "seat two").expect("write");
    assert_eq!(ok(&two, "cat /workspace/mine.txt").await, "seat two");
    let data = h.dir.path().display().to_string();
    assert_eq!(
        ok(
            &one,
            &format!("ls /workspace; test -e {data} || echo hidden; ls /home")
        )
        .await,
        "hidden\nlearner"
    );

    // Writable: the volume, the home, /tmp (and /dev/shm, a private tmpfs). Nothing else.
    ok(&one, "echo a > /workspace/a && echo b > /home/learner/b && echo c > /tmp/c && echo d > /dev/shm/d").await;
    assert_eq!(
        std::fs::read_to_string(h.backend.volume_dir(&h.key(1)).join("a")).expect("read"),
        "a\n"
    );
    for path in [
        "/x",
        "/usr/x",
        "/etc/x",
        "/run/x",
        "/dev/x",
        "/proc/x",
        "/run/clarateach-bin/x",
    ] {
        let (status, out) = run(&one, &format!("touch {path}")).await;
        assert_ne!(status, "exit=0 signal=0", "{path} was writable: {out}");
    }

    // No route to the host's ports; loopback inside works.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (status, _) = run(
        &one,
        &format!("timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/{port}'"),
    )
    .await;
    assert_ne!(status, "exit=0 signal=0", "reached the host's port {port}");
    assert_eq!(
        ok(&one, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").await,
        "lo"
    );

    // The api key: in this seat's environment only, never on a command line.
    assert_eq!(ok(&one, "echo $ANTHROPIC_API_KEY").await, SECRET);
    assert_eq!(ok(&two, "echo ${ANTHROPIC_API_KEY:-none}").await, "none");
    let pids = h.backend.pids(&h.key(1));
    assert!(pids.len() >= 2, "{pids:?}");
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(SECRET),
            "secret on the command line of {pid}"
        );
    }

    // Destroy leaves no process and no cgroup; the volume goes only when asked.
    let all: Vec<i32> = pids
        .iter()
        .chain(h.backend.pids(&h.key(2)).iter())
        .copied()
        .collect();
    h.backend.destroy(&h.key(1), false).await.expect("destroy");
    h.backend.destroy(&h.key(2), true).await.expect("destroy");
    assert!(all.iter().all(|p| !alive(*p)), "a process survived destroy");
    assert!(h.backend.pids(&h.key(1)).is_empty());
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/clarateach-test/{}", h.ws)).exists()
    );
    assert!(h.backend.volume_dir(&h.key(1)).join("a").exists());
    assert!(!h.backend.volume_dir(&h.key(2)).exists());
    assert_eq!(
        h.backend.status(&h.key(1)).await.expect("status"),
        WorkspaceStatus::Missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_the_seat_and_start_brings_it_back() {
    if skipped("stop_keeps_the_seat_and_start_brings_it_back") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(3, Limits::default(), &[]).await;
    ok(&ep, "echo kept > /workspace/f; echo home > ~/g").await;
    assert_eq!(
        h.backend.start(&h.key(3)).await.expect("idempotent start"),
        ep
    );
    h.backend.stop(&h.key(3)).await.expect("stop");
    assert_eq!(
        h.backend.status(&h.key(3)).await.expect("status"),
        WorkspaceStatus::Stopped
    );
    assert!(h.backend.endpoint(&h.key(3)).is_none());
    assert!(h.backend.pids(&h.key(3)).is_empty());
    let ep = h.backend.start(&h.key(3)).await.expect("restart");
    assert_eq!(ok(&ep, "cat /workspace/f ~/g").await, "kept\nhome");
    h.backend.destroy(&h.key(3), true).await.expect("destroy");
    h.backend
        .destroy(&h.key(3), true)
        .await
        .expect("destroy is idempotent");
}

/// The agent binds the daemon's socket before the daemon runs, so the first health probe waits
/// on a daemon still starting (a cold image's interpreter, a loaded host). That probe must not
/// give up and close its connection early: the daemon would answer a closed socket (CI once saw
/// the stand-in killed by SIGPIPE that way, exit 141) and the seat would fail to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_slow_to_start_still_gets_its_seat() {
    if skipped("a_daemon_slow_to_start_still_gets_its_seat") {
        return;
    }
    let h = Harness::new();
    fake_daemon_after(h.dir.path(), 3);
    // The stand-in dies of SIGPIPE like any program that does not ignore it.
    let script = std::fs::read_to_string(h.dir.path().join("fake-daemon")).expect("read");
    std::fs::write(
        h.dir.path().join("fake-daemon"),
        script.replace("$SIG{PIPE} = \"IGNORE\";", ""),
    )
    .expect("write");
    let ep = h.seat(1, Limits::default(), &[]).await;
    assert_eq!(ok(&ep, "echo up").await, "up");
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}
