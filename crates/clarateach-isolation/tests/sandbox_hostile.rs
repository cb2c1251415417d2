//! The seat is hostile: each test performs an attack from inside a real seat, as a learner
//! would, through the daemon's `/run` (the stand-in daemon, or the real `clarateach
//! workspace-server` where its own hardening is under test), and checks the host holds.
//! Needs root and bubblewrap; skips with a printed reason otherwise.

mod sandbox_support;
mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::sandbox::{health, SandboxBackend};
use clarateach_isolation::{Backend, DaemonAddr, DaemonEndpoint, WorkspaceSpec, WorkspaceStatus};
use sandbox_support::{config, ok, run, skipped, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn socket_of(ep: &DaemonEndpoint) -> PathBuf {
    match &ep.addr {
        DaemonAddr::Unix(p) => p.clone(),
        other => panic!("sandbox endpoints are Unix sockets, got {other:?}"),
    }
}

/// Prints a skip line that survives output capture.
fn skip(test: &str, why: &str) {
    clarateach_core::skip::report(test, why);
}

/// `perl -e` with the program in single quotes (the programs below use no single quote).
fn perl(program: &str) -> String {
    format!("perl -e '{program}'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learner_cannot_replace_the_daemon_socket() {
    if skipped("the_learner_cannot_replace_the_daemon_socket") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, Limits::default(), &[]).await;
    let socket = socket_of(&ep);
    let dir = socket.parent().expect("socket dir");
    // On the host: a root-only directory the seat's uid cannot even enter.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).expect("socket dir");
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.permissions().mode() & 0o077, 0, "{}", dir.display());
    // Inside: neither the socket nor anything of the data dir is visible, no run dir exists.
    let data = h.dir.path().display().to_string();
    let out = ok(
        &ep,
        &format!(
            "test -e {s} && echo SOCKET; test -e {d} && echo DIR; test -e {data} && echo DATA; \
             test -e /run/clarateach && echo RUNDIR; echo done",
            s = socket.display(),
            d = dir.display()
        ),
    )
    .await;
    assert_eq!(out, "done");
    // No process the daemon starts holds the listening socket (close-on-exec).
    let fds = ok(
        &ep,
        &perl(r#"opendir D, "/proc/self/fd"; for (readdir D) { next if /^\./; my $l = readlink "/proc/self/fd/$_"; print "$_=$l\n" if defined $l && $l =~ /^socket:/ }"#),
    )
    .await;
    assert_eq!(fds, "", "a command inherited a socket");
    // The attack: kill the daemon and put an impostor wherever the agent might look. Killing the
    // daemon (the sandbox's main process) ends the seat; the impostor's sockets live only in the
    // learner's own dirs, and the agent's socket never answers again.
    let impostor = perl(
        r#"use IO::Socket::UNIX; for my $p ("/workspace/daemon.sock", "/tmp/daemon.sock", "/home/learner/daemon.sock") { unlink $p; IO::Socket::UNIX->new(Local => $p, Listen => 5) or die "$p: $!" } print "bound\n""#,
    );
    let (_, out) = run(&ep, &format!("{impostor}; kill -9 $PPID")).await;
    assert!(
        out.is_empty() || out.contains("bound"),
        "unexpected output: {out}"
    );
    assert!(
        h.backend.volume_dir(&h.key(1)).join("daemon.sock").exists(),
        "the impostor did bind in its volume"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while matches!(
        h.backend.status(&h.key(1)).await.expect("status"),
        WorkspaceStatus::Running
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the seat outlived its daemon"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !health(&socket, &ep.token).await,
        "something answered on the agent's socket"
    );
    // A restart binds a fresh socket and works again.
    let ep = h.backend.start(&h.key(1)).await.expect("restart");
    assert!(health(&socket_of(&ep), &ep.token).await);
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_mounts_and_kernel_interfaces_are_refused() {
    if skipped("namespaces_mounts_and_kernel_interfaces_are_refused") {
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        skip(
            "namespaces_mounts_and_kernel_interfaces_are_refused",
            "syscall numbers below are x86_64's",
        );
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, Limits::default(), &[]).await;
    for cmd in ["unshare -U true", "unshare -m true", "unshare -n true"] {
        let (status, out) = run(&ep, cmd).await;
        assert_ne!(status, "exit=0 signal=0", "`{cmd}` worked: {out}");
        assert!(out.contains("Operation not permitted"), "`{cmd}`: {out}");
    }
    let (status, out) = run(&ep, "mount -t tmpfs none /tmp").await;
    assert_ne!(status, "exit=0 signal=0", "mount worked: {out}");
    // Raw syscalls: (name, number, args, errno expected). EPERM 1, ENOSYS 38. Perl passes
    // strings by pointer and insists they be variables.
    let calls: &[(&str, i64, &str, i32)] = &[
        ("mount", 165, "$n, $t, $f, 0, 0", 1),
        ("umount2", 166, "$w, 0", 1),
        ("pivot_root", 155, "$t, $t", 1),
        ("unshare(CLONE_NEWUSER)", 272, "0x10000000", 1),
        ("setns", 308, "0, 0", 1),
        ("clone(CLONE_NEWUSER)", 56, "0x10000011, 0, 0, 0, 0", 1),
        ("clone3", 435, "0, 0", 38),
        ("keyctl", 250, "0, -3, 0", 1),
        ("add_key", 248, "$u, $k, $v, 1, -3", 1),
        ("bpf", 321, "0, 0, 0", 1),
        ("perf_event_open", 298, "0, 0, -1, -1, 0", 1),
        ("userfaultfd", 323, "0", 1),
        ("io_uring_setup", 425, "1, 0", 1),
        ("personality(ADDR_NO_RANDOMIZE)", 135, "0x0040000", 1),
        ("init_module", 175, "0, 0, 0", 1),
        ("kexec_load", 246, "0, 0, 0, 0", 1),
        ("open_by_handle_at", 304, "0, 0, 0", 1),
        ("process_vm_readv", 310, "1, 0, 0, 0, 0, 0", 1),
        ("iopl", 172, "3", 1),
        ("settimeofday", 164, "0, 0", 1),
        ("swapon", 167, "$x, 0", 1),
        // x32 getpid: EPERM from the filter (a kernel without x32 would say ENOSYS).
        ("x32 getpid", 0x4000_0027, "0", 1),
    ];
    for (name, nr, args, want) in calls {
        let out = ok(
            &ep,
            &perl(&format!(
                r#"my ($n, $t, $f, $w, $u, $k, $v, $x) = ("none", "/tmp", "tmpfs", "/workspace", "user", "k", "v", "/tmp/x"); my $r = syscall({nr}, {args}); print $r, " ", $!+0"#
            )),
        )
        .await;
        assert_eq!(out, format!("-1 {want}"), "{name} from inside a seat");
    }
    // What a workshop needs still works: threads (clone without namespace flags, after the
    // clone3 fallback), the personality query, and ptrace of one's own processes.
    let out = ok(
        &ep,
        &perl(r#"print syscall(135, 0xffffffff) >= 0 ? "ok" : "no $!""#),
    )
    .await;
    assert_eq!(out, "ok");
    if Path::new("/usr/bin/strace").exists() {
        let out = ok(&ep, "strace -f -e trace=none true 2>&1; echo rc=$?").await;
        assert!(out.ends_with("rc=0"), "strace of one's own process: {out}");
    }
    if Path::new("/usr/bin/python3").exists() {
        let out = ok(
            &ep,
            "/usr/bin/python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'",
        )
        .await;
        assert_eq!(out, "thread");
    }
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_have_their_own_uid_and_inotify_exhaustion_stays_in_one_seat() {
    let test = "seats_have_their_own_uid_and_inotify_exhaustion_stays_in_one_seat";
    if skipped(test) {
        return;
    }
    let max: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    if max > 1000 {
        skip(
            test,
            "fs.inotify.max_user_instances is too high to exhaust in a test",
        );
        return;
    }
    let h = Harness::new();
    let a = h.seat(1, Limits::default(), &[]).await;
    let b = h.seat(2, Limits::default(), &[]).await;
    let (ua, ub) = (
        h.backend.seat_uid(&h.key(1)).expect("uid of seat 1"),
        h.backend.seat_uid(&h.key(2)).expect("uid of seat 2"),
    );
    assert_ne!(ua, ub, "two seats share a host uid");
    use std::os::unix::fs::MetadataExt;
    for (seat, uid) in [(1, ua), (2, ub)] {
        let vol = h.backend.volume_dir(&h.key(seat));
        assert_eq!(std::fs::metadata(&vol).expect("volume").uid(), uid);
        for pid in h.backend.pids(&h.key(seat)) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
                let real: u32 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.parse().ok())
                    .expect("uid");
                assert_eq!(real, uid, "pid {pid} of seat {seat}");
            }
        }
    }
    // Seat A takes every inotify instance its uid may have and holds them.
    let hog = perl(
        r#"my @f; while (1) { my $r = syscall(294, 0); last if $r < 0; push @f, $r } my $e = $!+0; open my $o, ">", "/tmp/hog"; print $o scalar(@f), " ", $e, "\n"; close $o; sleep 30"#,
    );
    ok(
        &a,
        &format!("({hog}) >/dev/null 2>&1 </dev/null & echo started"),
    )
    .await;
    let mut got = String::new();
    for _ in 0..200 {
        got = ok(&a, "cat /tmp/hog 2>/dev/null || true").await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (n, errno) = got.split_once(' ').expect("hog result");
    let n: u64 = n.parse().expect("count");
    assert_eq!(errno, "24", "seat A stops at EMFILE");
    assert!(n <= max, "seat A hit the per-uid cap ({n} <= {max})");
    // In seat A nothing more; in seat B inotify works.
    let out = ok(&a, &perl(r#"print syscall(294, 0) < 0 ? "denied" : "got""#)).await;
    assert_eq!(out, "denied");
    let out = ok(
        &b,
        &perl(r#"print syscall(294, 0) < 0 ? "denied $!" : "got""#),
    )
    .await;
    assert_eq!(out, "got", "seat B lost inotify to seat A");
    for seat in [1, 2] {
        h.backend
            .destroy(&h.key(seat), true)
            .await
            .expect("destroy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seat_sees_no_host_configuration_and_bounded_tmp() {
    if skipped("the_seat_sees_no_host_configuration_and_bounded_tmp") {
        return;
    }
    let marker = format!("/etc/clarateach-h1-marker-{}", std::process::id());
    std::fs::write(&marker, "host config").expect("marker");
    let h = Harness::new();
    let limits = Limits {
        disk_mb: 64,
        ..Limits::default()
    };
    let ep = h.seat(1, limits, &[]).await;
    let out = ok(
        &ep,
        &format!(
            "for p in {marker} /etc/shadow /etc/gshadow /etc/ssh /etc/sudoers /root /var /opt /srv /mnt; do \
             test -e $p && echo VISIBLE $p; done; grep -c learner /etc/passwd"
        ),
    )
    .await;
    let _ = std::fs::remove_file(&marker);
    assert_eq!(out, "1", "host paths visible in the seat: {out}");
    assert_eq!(
        ok(&ep, "cat /etc/resolv.conf | head -1").await,
        "nameserver 127.0.0.1"
    );
    if Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        ok(&ep, "test -r /etc/ssl/certs/ca-certificates.crt").await;
    }
    if Path::new("/etc/alternatives/awk").exists() {
        ok(&ep, "echo x | awk '{print}'").await;
    }
    // The etc the seat sees is read-only.
    let (status, _) = run(&ep, "echo x > /etc/passwd").await;
    assert_ne!(status, "exit=0 signal=0");
    // /tmp and /dev/shm are 16 MiB here (a quarter and an eighth of 64, at least 16).
    for dir in ["/tmp", "/dev/shm"] {
        let out = ok(
            &ep,
            &format!(
                "dd if=/dev/zero of={dir}/fill bs=1M count=40 2>&1; echo rc=$?; rm -f {dir}/fill"
            ),
        )
        .await;
        assert!(out.contains("No space left on device"), "{dir}: {out}");
        assert!(out.ends_with("rc=1"), "{dir}: {out}");
    }
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_api_key_in_the_data_dir_during_and_after_a_run() {
    if skipped("no_plaintext_api_key_in_the_data_dir_during_and_after_a_run") {
        return;
    }
    let key = format!("sk-ant-h1-{}-secret", std::process::id());
    let h = Harness::new();
    // A small disk: the scan below reads every seat image in the data dir.
    let small = Limits {
        disk_mb: 64,
        ..Limits::default()
    };
    let ep = h.seat(1, small, &[("ANTHROPIC_API_KEY", &key)]).await;
    assert_eq!(ok(&ep, "printf %s \"$ANTHROPIC_API_KEY\"").await, key);
    let hits = scan::files_containing(h.dir.path(), key.as_bytes());
    assert!(hits.is_empty(), "key on disk while running: {hits:?}");
    h.backend.stop(&h.key(1)).await.expect("stop");
    let hits = scan::files_containing(h.dir.path(), key.as_bytes());
    assert!(hits.is_empty(), "key on disk after stop: {hits:?}");
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_shared_uid_seat_is_moved_to_its_own_uid() {
    if skipped("an_old_shared_uid_seat_is_moved_to_its_own_uid") {
        return;
    }
    let h = Harness::new();
    // A seat of the old layout: a plain dir every seat's shared uid 61000 owned.
    let old = h.dir.path().join("volumes").join(&h.ws).join("seat-01");
    std::fs::create_dir_all(old.join("src")).expect("mkdir");
    std::fs::write(old.join("src/main.py"), "print('kept')").expect("write");
    for p in [old.clone(), old.join("src"), old.join("src/main.py")] {
        std::os::unix::fs::chown(&p, Some(61000), Some(61000)).expect("chown");
    }
    let ep = h.seat(1, Limits::default(), &[]).await;
    let vol = h.backend.volume_dir(&h.key(1));
    assert_eq!(ok(&ep, "cat /workspace/src/main.py").await, "print('kept')");
    let uid = h.backend.seat_uid(&h.key(1)).expect("uid");
    assert_ne!(uid, 61000);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(vol.join("src/main.py"))
            .expect("meta")
            .uid(),
        uid
    );
    ok(&ep, "echo more >> /workspace/src/main.py").await;
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

/// `POST /run` against the real daemon: (exit code, stdout + stderr).
async fn real_run(ep: &DaemonEndpoint, cmd: &str) -> (Option<i64>, String) {
    let body = serde_json::json!({ "command": cmd }).to_string();
    let mut s = tokio::net::UnixStream::connect(socket_of(ep))
        .await
        .expect("connect");
    let req = format!(
        "POST /run HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        ep.token,
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let json = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // The body may be chunked: take the JSON object inside.
    let start = json.find('{').unwrap_or(0);
    let end = json.rfind('}').map(|i| i + 1).unwrap_or(json.len());
    let v: serde_json::Value = serde_json::from_str(&json[start..end]).unwrap_or_default();
    let out = format!(
        "{}{}",
        v["stdout"].as_str().unwrap_or(""),
        v["stderr"].as_str().unwrap_or("")
    );
    (v["exit_code"].as_i64(), out.trim_end().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_keeps_its_socket_to_itself() {
    let test = "the_real_daemon_keeps_its_socket_to_itself";
    if skipped(test) {
        return;
    }
    let Some(bin) = sandbox_support::real_daemon() else {
        skip(
            test,
            "no clarateach binary with workspace-server (set CLARATEACH_BIN)",
        );
        return;
    };
    let dir = sandbox_support::data_dir();
    let backend = SandboxBackend::new(config(dir.path(), bin)).expect("backend");
    let key = SeatKey {
        workshop_id: format!("ws-hostile-{}", std::process::id()),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: Limits::default(),
        image: None,
        env: BTreeMap::new(),
        daemon_token: "real-token".into(),
    };
    backend.create(&spec).await.expect("create");
    let ep = backend.start(&key).await.expect("start");
    // The daemon is pid 2 (bwrap's init is 1). It is non-dumpable: the learner's uid cannot read
    // its descriptors (nor ptrace it); bwrap's init holds nothing but stdio; commands inherit no
    // socket.
    let (code, out) = real_run(&ep, "ls /proc/2/fd 2>&1; echo rc=$?").await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Permission denied"),
        "daemon fds readable: {out}"
    );
    let (_, out) = real_run(&ep, "echo x >> /proc/1/fd/2 && echo REOPENED-LOG").await;
    assert!(
        !out.contains("REOPENED"),
        "the seat reopened its log pipe: {out}"
    );
    let (_, out) = real_run(
        &ep,
        "for f in /proc/1/fd/*; do echo \"${f##*/} $(readlink $f)\"; done",
    )
    .await;
    for line in out.lines() {
        let (fd, target) = line.split_once(' ').unwrap_or((line, ""));
        let fd: i32 = fd.parse().expect("fd number");
        assert!(
            fd <= 2 || target == "anon_inode:[eventfd]",
            "bwrap's init holds more than stdio and its eventfd: {out}"
        );
        // bwrap's init is traceable by the seat's uid, so what it holds must be harmless: its
        // stdout and stderr are the agent's capped log pipe, never a file on the host's disk.
        if fd == 1 || fd == 2 {
            assert!(target.ends_with(".logpipe"), "init's fd {fd} is {target}");
        }
    }
    let (_, out) = real_run(
        &ep,
        "for f in /proc/self/fd/*; do readlink $f; done | grep -c socket: || true",
    )
    .await;
    assert_eq!(out, "0", "a command inherited a socket");
    if Path::new("/usr/bin/strace").exists() {
        let (_, out) = real_run(&ep, "strace -p 2 -e trace=none 2>&1 | head -1").await;
        assert!(
            out.contains("Operation not permitted"),
            "strace of the daemon: {out}"
        );
    }
    backend.destroy(&key, true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_still_reports_the_seats_last_words_through_the_log_pipe() {
    if skipped("a_failed_start_still_reports_the_seats_last_words_through_the_log_pipe") {
        return;
    }
    let dir = sandbox_support::data_dir();
    let daemon = dir.path().join("dying-daemon");
    std::fs::write(&daemon, "#!/bin/sh\necho last-words-h1 >&2\nexit 3\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&daemon, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let backend = SandboxBackend::new(config(dir.path(), daemon)).expect("backend");
    let key = SeatKey {
        workshop_id: format!("ws-dying-{}", std::process::id()),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: Limits::default(),
        image: None,
        env: BTreeMap::new(),
        daemon_token: "t".into(),
    };
    backend.create(&spec).await.expect("create");
    let err = backend.start(&key).await.expect_err("the daemon dies");
    let text = format!("{err}");
    assert!(text.contains("last-words-h1"), "{text}");
    backend.destroy(&key, true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_uids_survive_agent_restarts_and_are_reused_only_after_the_volume_goes() {
    if skipped("seat_uids_survive_agent_restarts_and_are_reused_only_after_the_volume_goes") {
        return;
    }
    let dir = sandbox_support::data_dir();
    let daemon = sandbox_support::fake_daemon(dir.path());
    let mut cfg = config(dir.path(), daemon);
    cfg.uid_range = "230000-230002".parse().expect("range");
    let ws = format!("ws-uids-{}", std::process::id());
    let key = |seat| SeatKey {
        workshop_id: ws.clone(),
        seat,
    };
    let spec = |seat| WorkspaceSpec {
        key: key(seat),
        limits: Limits::default(),
        image: None,
        env: BTreeMap::new(),
        daemon_token: format!("t{seat}"),
    };
    let first = SandboxBackend::new(cfg.clone()).expect("backend");
    for seat in [1, 2] {
        first.create(&spec(seat)).await.expect("create");
    }
    let (u1, u2) = (
        first.seat_uid(&key(1)).expect("uid"),
        first.seat_uid(&key(2)).expect("uid"),
    );
    // Seat 1 goes but keeps its volume; the agent "restarts".
    first
        .destroy(&key(1), false)
        .await
        .expect("destroy, keep volume");
    drop(first);
    let second = SandboxBackend::new(cfg.clone()).expect("restarted backend");
    second.create(&spec(3)).await.expect("create 3");
    let u3 = second.seat_uid(&key(3)).expect("uid");
    assert!(
        u3 != u1 && u3 != u2,
        "a kept volume's uid was handed out again"
    );
    // The range is full now; seat 1 comes back to its own uid.
    second.create(&spec(1)).await.expect("recreate 1");
    assert_eq!(second.seat_uid(&key(1)), Some(u1));
    assert!(second.create(&spec(4)).await.is_err(), "range exhausted");
    // Deleting seat 2's volume frees its uid for seat 4.
    second
        .destroy(&key(2), true)
        .await
        .expect("destroy with volume");
    second.create(&spec(4)).await.expect("create 4");
    assert_eq!(second.seat_uid(&key(4)), Some(u2));
    for seat in [1, 3, 4] {
        second.destroy(&key(seat), true).await.expect("destroy");
    }
}
