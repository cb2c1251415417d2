//! `clarateach sandbox` end to end through the real binary, as a script would use it: create ->
//! run a staged `python3 hello.py` -> `exit 3` -> stderr and a timeout (124) -> output live while
//! the command runs -> the documented exit statuses of bad input -> stop/start with and without
//! `--persist`, clean of a `--persist` sandbox keeping only its unmounted file system for the next
//! `create --persist` -> exec through a pipe -> cp in and out -> clean, after which no process,
//! mount, cgroup or state of the sandbox is left; `--json` output parsed; two CLIs creating and
//! running at once; the HTTP API with its token (exec over WebSocket too); the microVM backend
//! under TCG.
//! Needs root and bubblewrap (microVM: QEMU and the cached guest image); skips with the reason.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{skip_reason, BIN};

/// A state dir of its own, cleaned (`clean --all`) when dropped.
struct State {
    dir: tempfile::TempDir,
}

impl State {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("sbx")
                .tempdir()
                .expect("tmp"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("sandbox")
            .args(args)
            .env("CLARATEACH_STATE_DIR", self.path())
            // Seat images are sparse and tests write little (see support::Proc).
            .env("CLARATEACH_SEAT_STORE_SIZE", "1T")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run clarateach")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        support::succeeded(args, self.run(args))
    }

    /// `--json` output: one object per line.
    fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    fn create(&self, extra: &[&str]) -> String {
        let mut args = vec!["create"];
        args.extend_from_slice(extra);
        let lines = self.json(&args);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["status"], "running", "{lines:?}");
        lines[0]["id"].as_str().expect("id").to_string()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = self.run(&["clean", "--all", "--purge"]);
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn skip() -> bool {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        println!("SKIP: {why}");
        return true;
    }
    false
}

/// What the host still has of sandbox `id` of state dir `state`.
fn leftovers(state: &Path, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let state_s = state.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        if cmdline.contains(&state_s) && cmdline.contains(id) {
            found.push(format!(
                "process {}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if m.starts_with(&state_s) && m.contains(id) {
            found.push(format!("mount {m}"));
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroupfs")
        .flatten()
    {
        let parent = hierarchy.path().join("clarateach-sandbox");
        for group in walk(&parent) {
            if group.to_string_lossy().contains(id) {
                found.push(format!("cgroup {}", group.display()));
            }
        }
    }
    for path in walk(state) {
        if path.to_string_lossy().contains(id) {
            found.push(format!("state {}", path.display()));
        }
    }
    found
}

/// Every directory entry under `dir` (not following symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn create_run_bad_input_and_clean_leaves_nothing() {
    if skip() {
        return;
    }
    let state = State::new();
    let id = state.create(&["--language", "python", "--cpu", "1", "--mem", "256"]);
    assert!(
        id.starts_with("python-") && id.len() == "python-".len() + 26,
        "{id}"
    );

    // The staged file runs in the run directory and its output is ours and kept in out/.
    let hello = state.path().join("hello.py");
    std::fs::write(&hello, "print('Hello from VM!')\n").expect("write hello.py");
    let hello_s = hello.to_string_lossy().into_owned();
    let out = state.run(&["run", &id, "--cmd", "python3 hello.py", "--file", &hello_s]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello from VM!\n");
    let kept = state.path().join("sandbox").join(&id).join("out");
    assert_eq!(
        std::fs::read_to_string(kept.join("stdout.log")).expect("stdout.log"),
        "Hello from VM!\n"
    );

    // The command's own status, stderr to stderr, a timeout is 124.
    assert_eq!(code(&state.run(&["run", &id, "--cmd", "exit 3"])), 3);
    let out = state.run(&[
        "run",
        &id,
        "--cmd",
        "echo oops >&2; sleep 30",
        "--timeout",
        "1",
    ]);
    assert_eq!(code(&out), 124);
    assert!(
        text(&out.stderr).starts_with("oops\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(kept.join("stderr.log")).expect("stderr.log"),
        "oops\n"
    );

    // --json: one object, parsed.
    let out = state.run(&[
        "--json",
        "run",
        &id,
        "--cmd",
        "echo out; echo err >&2; exit 5",
    ]);
    assert_eq!(code(&out), 5);
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // The output chunks as they came, then the outcome.
    let (last, chunks) = lines.split_last().expect("a line");
    let streamed = |stream: &str| -> String {
        chunks
            .iter()
            .filter(|l| l["message"] == "output" && l["stream"] == stream)
            .filter_map(|l| l["data"].as_str())
            .collect()
    };
    assert_eq!(streamed("stdout"), "out\n", "{lines:?}");
    assert_eq!(streamed("stderr"), "err\n", "{lines:?}");
    assert_eq!(last["message"], "run finished");
    assert_eq!(last["exit_code"], 5);
    assert_eq!(last["stdout"], "out\n");
    assert_eq!(last["stderr"], "err\n");
    assert_eq!(last["timed_out"], false);

    // Live: the first line is on our stdout while the command still runs.
    live_output_arrives_before_the_command_ends(&state, &id);

    // The run happens in the sandbox: its own uid, no network, no host files.
    let out = state.ok(&[
        "run",
        &id,
        "--cmd",
        "id -un; cat /etc/shadow 2>&1 | head -c 60; ls /root 2>&1 | head -c 60",
    ]);
    assert!(out.starts_with("learner\n"), "{out}");
    assert!(
        !out.contains("root:"),
        "the host's /etc/shadow is readable: {out}"
    );

    // Bad input: one line and a distinct, documented status each.
    let bad = |args: &[&str], want: i32, needle: &str| {
        let out = state.run(args);
        let err = text(&out.stderr);
        assert_eq!(code(&out), want, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    bad(&["run", "no-such", "--cmd", "true"], 66, "no sandbox");
    bad(&["status", "no-such"], 66, "no sandbox");
    bad(
        &["run", &id, "--cmd", "true", "--file", "/no/such/file"],
        65,
        "/no/such/file",
    );
    bad(
        &["run", &id, "--cmd", "./hello.py", "--file", &hello_s],
        126,
        "Permission denied",
    );
    bad(&["run", &id, "--cmd", "no-such-program"], 127, "not found");
    bad(&["create", "--network", "everywhere"], 64, "--network");
    bad(&["create", "--mem", "1"], 64, "limits");
    bad(&["create", "--name", "../x"], 64, "name");
    bad(&["create", "--name", &id], 64, "exists already");
    bad(
        &["create", "--language", "cobol-image"],
        64,
        "no language or image",
    );
    bad(&["cp", "a", "b"], 64, "ID:PATH");
    state.ok(&["stop", &id]);
    bad(&["run", &id, "--cmd", "true"], 69, "stopped");
    state.ok(&["start", &id]);

    assert!(
        !leftovers(state.path(), &id).is_empty(),
        "the probe sees nothing of a live sandbox"
    );
    let lines = state.json(&["clean", &id]);
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(leftovers(state.path(), &id), Vec::<String>::new());
    bad(&["status", &id], 66, "no sandbox");
}

/// `run` prints the command's output as it is written, not when it ends.
fn live_output_arrives_before_the_command_ends(state: &State, id: &str) {
    use std::io::BufRead;
    let began = std::time::Instant::now();
    let mut child = state
        .cmd(&["run", id, "--cmd", "echo first; sleep 3; echo second"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn run");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    let first_at = began.elapsed();
    assert_eq!(first, "first");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended before its first line was read ({first_at:?}): output is not live"
    );
    let second = lines.next().expect("a second line").expect("read");
    assert_eq!(second, "second");
    assert!(
        began.elapsed() >= first_at + std::time::Duration::from_secs(2),
        "the second line came {:?} after the first: not 3 s apart",
        began.elapsed() - first_at
    );
    assert!(child.wait().expect("wait").success());
}

#[test]
fn stop_keeps_workspace_only_with_persist() {
    if skip() {
        return;
    }
    let state = State::new();
    let kept = state.create(&["--persist", "--name", "kept"]);
    let gone = state.create(&["--name", "gone"]);
    assert_eq!(kept, "kept");
    for id in [&kept, &gone] {
        state.ok(&["run", id, "--cmd", "echo data > /workspace/f.txt"]);
        let info = state.json(&["stop", id]);
        assert_eq!(info[0]["status"], "stopped");
        // Stopped means no process left.
        let procs: Vec<_> = leftovers(state.path(), id)
            .into_iter()
            .filter(|l| l.starts_with("process"))
            .collect();
        assert!(procs.is_empty(), "{procs:?}");
        assert_eq!(state.json(&["status", id])[0]["status"], "stopped");
        state.ok(&["start", id]);
    }
    assert_eq!(
        state.ok(&["run", &kept, "--cmd", "cat /workspace/f.txt"]),
        "data\n"
    );
    assert_eq!(
        state
            .ok(&["run", &gone, "--cmd", "ls -A /workspace | wc -l"])
            .trim(),
        "0"
    );
    let list = state.json(&["list"]);
    let ids: Vec<_> = list.iter().map(|l| l["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["kept", "gone"]);
    assert_eq!(list[0]["persist"], true);

    // clean of a --persist sandbox: no process, mount, cgroup or record left, only its
    // unmounted file system, which `create --persist --name` takes back (writable by the new
    // sandbox's learner).
    let lines = state.json(&["clean", &kept]);
    assert_eq!(lines[0]["message"], "sandbox cleaned", "{lines:?}");
    assert_eq!(lines[1]["message"], "workspace kept", "{lines:?}");
    let image = state.path().join("persist/kept.img");
    let meta = state.path().join("persist/kept.json");
    let mut left = leftovers(state.path(), &kept);
    left.sort();
    assert_eq!(
        left,
        [
            format!("state {}", image.display()),
            format!("state {}", meta.display())
        ],
    );
    assert_eq!(state.run(&["status", &kept]).status.code(), Some(66));
    state.create(&["--persist", "--name", "kept"]);
    assert_eq!(
        state.ok(&[
            "run",
            &kept,
            "--cmd",
            "echo more >> /workspace/f.txt && cat /workspace/f.txt"
        ]),
        "data\nmore\n"
    );
    assert!(!image.exists(), "the kept image was not taken back");

    // clean --all --purge: nothing of either sandbox, and none of the shared mounts.
    let cleaned = state.json(&["clean", "--all", "--purge"]);
    assert_eq!(cleaned.len(), 2);
    for id in [&kept, &gone] {
        assert_eq!(leftovers(state.path(), id), Vec::<String>::new());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let state_s = state.path().to_string_lossy().into_owned();
    assert!(
        !mounts.contains(&state_s),
        "mounts left under the state dir"
    );
    assert!(state.json(&["list"]).is_empty());
}

#[test]
fn exec_and_cp() {
    if skip() {
        return;
    }
    let state = State::new();
    let id = state.create(&[]);
    // A terminal through a pipe: the shell runs in the sandbox and `exit` ends the session.
    // No CLI drains the sandbox's log FIFO now: the daemon must not fail on its dead stderr.
    let mut child = state
        .cmd(&["exec", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo inside-$((40+2)) $(hostname)\nexit\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("exec output");
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        text(&out.stdout).contains("inside-42 seat-01"),
        "{}",
        text(&out.stdout)
    );

    // cp in, use, out; binary content survives.
    let src = state.path().join("data.bin");
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&src, &data).expect("write");
    let dst_in = format!("{id}:sub/data.bin");
    state.ok(&["cp", &src.to_string_lossy(), &dst_in]);
    assert_eq!(
        state
            .ok(&["run", &id, "--cmd", "wc -c < /workspace/sub/data.bin"])
            .trim(),
        "70000"
    );
    let back = state.path().join("back.bin");
    state.ok(&["cp", &dst_in, &back.to_string_lossy()]);
    assert_eq!(std::fs::read(&back).expect("read"), data);
    // The daemon confines paths to /workspace.
    let out = state.run(&[
        "cp",
        &format!("{id}:../../etc/passwd"),
        &back.to_string_lossy(),
    ]);
    assert_eq!(code(&out), 64, "{}", text(&out.stderr));
}

#[test]
fn two_clis_create_and_run_at_once() {
    if skip() {
        return;
    }
    let state = State::new();
    let path = state.path().to_path_buf();
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let name = format!("twin-{i}");
                let st = |args: &[&str]| {
                    Command::new(BIN)
                        .arg("sandbox")
                        .args(args)
                        .env("CLARATEACH_STATE_DIR", &path)
                        .env("CLARATEACH_SEAT_STORE_SIZE", "1T")
                        .output()
                        .expect("run")
                };
                let out = st(&["create", "--name", &name]);
                assert!(out.status.success(), "{}", text(&out.stderr));
                let out = st(&["run", &name, "--cmd", &format!("echo I am {i}; id -u")]);
                assert!(out.status.success(), "{}", text(&out.stderr));
                text(&out.stdout)
            })
        })
        .collect();
    let outs: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().expect("join"))
        .collect();
    assert!(
        outs[0].starts_with("I am 0\n") && outs[1].starts_with("I am 1\n"),
        "{outs:?}"
    );
    let list = state.json(&["list"]);
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|l| l["status"] == "running"), "{list:?}");
}

fn image_cache() -> PathBuf {
    std::env::var_os("CLARATEACH_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/images/ci"))
}

#[test]
fn microvm_backend_runs_one_command() {
    if skip() {
        return;
    }
    let image = image_cache();
    if clarateach_image::ImageLayout::new(&image).load().is_err() {
        let why = format!(
            "no cached guest image in {} (the microvm tests of clarateach-isolation build it)",
            image.display()
        );
        eprintln!("SKIP: {why}");
        println!("SKIP: {why}");
        return;
    }
    let qemu = [
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ];
    if !qemu.iter().any(|q| Path::new(q).exists()) {
        eprintln!("SKIP: qemu-system-x86_64 is not installed");
        println!("SKIP: qemu-system-x86_64 is not installed");
        return;
    }
    // Bring the cached image up to this binary (seconds: only the initramfs, which carries the
    // guest's binary, is rewritten), so the guest never runs a stale daemon.
    let built = Command::new(support::BIN)
        .args(["image", "build", "--out", &image.display().to_string()])
        .status()
        .expect("run clarateach image build");
    assert!(built.success(), "clarateach image build failed");
    let state = State::new();
    let mut c = state.cmd(&[
        "--json",
        "create",
        "--backend",
        "microvm",
        "--language",
        "base",
        "--name",
        "vm1",
    ]);
    c.env("CLARATEACH_IMAGE_DIR", &image);
    let out = c.output().expect("create");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let guest = state.ok(&["run", "vm1", "--cmd", "uname -r; echo Hello from VM!"]);
    assert!(guest.ends_with("Hello from VM!\n"), "{guest}");
    assert_ne!(
        guest.lines().next(),
        Some(host_kernel.trim()),
        "ran on the host kernel"
    );
    state.ok(&["clean", "vm1"]);
    let qemu_left: Vec<_> = leftovers(state.path(), "vm1")
        .into_iter()
        .filter(|l| l.starts_with("process"))
        .collect();
    assert!(qemu_left.is_empty(), "{qemu_left:?}");
}

#[test]
fn http_api_with_the_instructors_token_and_quota() {
    if skip() {
        return;
    }
    let state = State::new();
    let data = tempfile::tempdir().expect("data dir");
    // `up` inherits these: the same state dir as the CLI of this test, a quota of 2.
    std::env::set_var("CLARATEACH_STATE_DIR", state.path());
    std::env::set_var("CLARATEACH_SANDBOX_QUOTA", "2");
    let port = support::free_port();
    let (up, url, token) = support::start_up(data.path(), port);
    let other = Command::new(BIN)
        .args(["instructor", "add", "other", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("instructor add");
    let other = text(&other.stdout).trim().to_string();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let api = |m: reqwest::Method, p: &str, tok: Option<&str>| {
            let r = http.request(m, format!("{url}{p}"));
            match tok {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
        };
        use reqwest::Method as M;
        let r = api(M::POST, "/api/sandboxes", None)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);

        let r = api(M::POST, "/api/sandboxes", Some(&token))
            .json(&serde_json::json!({"name": "api-1", "mem_mib": 256}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let info: serde_json::Value = r.json().await.expect("json");
        assert_eq!(info["id"], "api-1");
        assert_eq!(info["status"], "running");

        let r = api(M::POST, "/api/sandboxes/api-1/run", Some(&token))
            .json(&serde_json::json!({"command": "python3 hello.py; exit 4",
                "files": {"hello.py": "print('Hello from VM!')"}}))
            .send()
            .await
            .expect("run");
        assert_eq!(r.status(), 200);
        let run: serde_json::Value = r.json().await.expect("json");
        assert_eq!(run["stdout"], "Hello from VM!\n");
        assert_eq!(run["exit_code"], 4);

        let r = api(M::PUT, "/api/sandboxes/api-1/files/dir/a.txt", Some(&token))
            .body("file body")
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 204, "{:?}", r.text().await);
        let r = api(M::GET, "/api/sandboxes/api-1/files/dir/a.txt", Some(&token))
            .send()
            .await
            .expect("get");
        assert_eq!(r.text().await.expect("body"), "file body");

        // exec over WebSocket with the token: a shell in the sandbox, output as it comes.
        let ws_base = url.replacen("http://", "ws://", 1);
        let exec_url = format!("{ws_base}/api/sandboxes/api-1/exec");
        let mut term = clarateach_client::Terminal::connect(&exec_url, Some(&token))
            .await
            .expect("exec websocket");
        term.send_input("echo api-$((6*7)) $(id -un)\n")
            .await
            .expect("input");
        let mut seen = String::new();
        while !seen.contains("api-42 learner") {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(20), term.next_event())
                .await
                .unwrap_or_else(|_| panic!("no output in 20 s: {seen:?}"));
            match ev.expect("terminal event") {
                Some(clarateach_client::TerminalEvent::Output(b)) => {
                    seen.push_str(&String::from_utf8_lossy(&b))
                }
                Some(_) => {}
                None => panic!("the terminal closed: {seen:?}"),
            }
        }
        let _ = term.close().await;
        // Without the token, or with another instructor's, there is no terminal.
        assert!(clarateach_client::Terminal::connect(&exec_url, None)
            .await
            .is_err());
        assert!(
            clarateach_client::Terminal::connect(&exec_url, Some(&other))
                .await
                .is_err()
        );

        // Another instructor sees none of it.
        for (m, p) in [
            (M::GET, "/api/sandboxes/api-1"),
            (M::DELETE, "/api/sandboxes/api-1"),
        ] {
            let r = api(m, p, Some(&other)).send().await.expect("other");
            assert_eq!(r.status(), 404);
        }
        let r = api(M::POST, "/api/sandboxes/api-1/run", Some(&other))
            .json(&serde_json::json!({"command": "true"}))
            .send()
            .await
            .expect("other run");
        assert_eq!(r.status(), 404);
        let list: serde_json::Value = api(M::GET, "/api/sandboxes", Some(&other))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(list["sandboxes"].as_array().map(Vec::len), Some(0));

        // Quota 2: the third is refused.
        let r = api(M::POST, "/api/sandboxes", Some(&token))
            .json(&serde_json::json!({"name": "api-2"}))
            .send()
            .await
            .expect("2");
        assert_eq!(r.status(), 201);
        let r = api(M::POST, "/api/sandboxes", Some(&token))
            .json(&serde_json::json!({"name": "api-3"}))
            .send()
            .await
            .expect("3");
        assert_eq!(r.status(), 429);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["code"], "quota_exceeded");
        let r = api(M::POST, "/api/sandboxes", Some(&token))
            .json(&serde_json::json!({"mem_mib": 1}))
            .send()
            .await
            .expect("bad");
        assert!(r.status() == 422 || r.status() == 429, "{}", r.status());

        // The CLI sees the same sandboxes.
        assert_eq!(state.json(&["status", "api-1"])[0]["status"], "running");

        for id in ["api-1", "api-2"] {
            let r = api(M::DELETE, &format!("/api/sandboxes/{id}"), Some(&token))
                .send()
                .await
                .expect("delete");
            assert_eq!(r.status(), 204);
        }
        let r = api(M::GET, "/api/sandboxes/api-1", Some(&token))
            .send()
            .await
            .expect("gone");
        assert_eq!(r.status(), 404);
    });
    up.stop("-TERM");
    assert_eq!(leftovers(state.path(), "api-1"), Vec::<String>::new());
}
