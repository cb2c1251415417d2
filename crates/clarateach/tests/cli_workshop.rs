//! `clarateach workshop ...` against a live `clarateach serve` child process with a temp data
//! dir: the instructor's everyday commands, and the one-line errors for an unreachable server, a
//! bad token and an unknown workshop. No agent is connected here, so `start` must fail cleanly
//! with no_capacity; the last test runs the verbs through `clarateach up` with real seats.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, is_root, BIN};

/// A `clarateach serve` child, killed on drop.
struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    /// Ctrl-C first, so `up` stops its seats' sandboxes; SIGKILL if it does not exit in 10 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `clarateach serve`: the control plane alone, no agent.
    fn start() -> Server {
        Self::start_role("serve")
    }

    /// `clarateach serve`, or `clarateach up` (control plane with a local agent).
    fn start_role(role: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(BIN)
            .args([role, "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clarateach");
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(server.dir.path().join("instructor.token").exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "clarateach {role} did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Runs `clarateach workshop ARGS` with the token from the data dir.
    fn cli(&self, args: &[&str]) -> Output {
        cli(&self.url, Some(self.dir.path()), args, None)
    }
}

fn cli(url: &str, data_dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("workshop")
        .args(args)
        .env("CLARATEACH_API_URL", url)
        .env_remove("CLARATEACH_TOKEN");
    match data_dir {
        Some(d) => cmd.env("CLARATEACH_DATA_DIR", d),
        None => cmd.env_remove("CLARATEACH_DATA_DIR"),
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn clarateach workshop");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "command failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    o
}

fn json(o: Output) -> Value {
    let o = ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

/// Asserts a failure that printed exactly one line, `error: ...`, containing `needle`.
fn one_line_error(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected a failure, got: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "want {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn create(server: &Server, name: &str, seats: &str) -> String {
    let v = json(server.cli(&["create", "--name", name, "--seats", seats, "--json"]));
    v["workshop"]["id"].as_str().expect("id").to_string()
}

#[test]
fn create_list_info_start_delete() {
    let server = Server::start();
    let id = create(&server, "Intro to Rust", "3");
    assert!(id.starts_with("ws-"), "{id}");

    let table = stdout(&ok(server.cli(&["list"])));
    assert!(
        table.contains(&id) && table.contains("Intro to Rust") && table.contains("created"),
        "{table}"
    );
    let list = json(server.cli(&["list", "--json"]));
    let workshops = list["workshops"].as_array().expect("array");
    assert_eq!(workshops.len(), 1);
    assert_eq!(workshops[0]["seats"], 3);

    let info = stdout(&ok(server.cli(&["info", &id])));
    let code = workshops[0]["code"].as_str().expect("code");
    assert!(
        info.contains(code) && info.contains("3 (0 ready, 0 joined)"),
        "{info}"
    );
    let info = json(server.cli(&["info", &id, "--json"]));
    assert_eq!(info["workshop"]["id"], id.as_str());
    assert_eq!(info["seats"].as_array().map(Vec::len), Some(3));

    // No agent is connected: a clear refusal, not a fake success, and the workshop is unchanged.
    one_line_error(&server.cli(&["start", &id]), "(no_capacity)");
    one_line_error(&server.cli(&["start", &id, "--no-wait"]), "(no_capacity)");
    assert_eq!(
        json(server.cli(&["info", &id, "--json"]))["workshop"]["status"],
        "created"
    );

    let out = stdout(&ok(server.cli(&["delete", &id])));
    assert!(out.contains(&id), "{out}");
    one_line_error(
        &server.cli(&["info", &id]),
        &format!("workshop {id} not found (workshop_not_found)"),
    );
    let out = stdout(&ok(server.cli(&["list"])));
    assert!(out.contains("No workshops yet"), "{out}");
}

#[test]
fn stop_needs_a_yes_without_a_terminal() {
    let server = Server::start();
    let id = create(&server, "Stop me", "2");
    one_line_error(&server.cli(&["stop", &id]), "pass --yes");
    assert_eq!(
        json(server.cli(&["info", &id, "--json"]))["workshop"]["status"],
        "created"
    );
    let v = json(server.cli(&["stop", &id, "--yes", "--json"]));
    assert_eq!(v["workshop"]["status"], "stopped");
    let out = stdout(&ok(server.cli(&["stop", &id, "--yes"])));
    assert!(out.contains("stopped"), "{out}");
    ok(server.cli(&["delete", &id, "--json"]));
}

#[test]
fn api_key_is_sent_but_never_printed() {
    let server = Server::start();
    let secret = "sk-test-very-secret-0123456789";
    let o = cli(
        &server.url,
        Some(server.dir.path()),
        &[
            "create",
            "--name",
            "K",
            "--seats",
            "1",
            "--api-key-stdin",
            "--json",
        ],
        Some(&format!("{secret}\n")),
    );
    let out = stdout(&o);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {}", stderr(&o)));
    assert_eq!(v["workshop"]["has_api_key"], true);
    assert!(!out.contains(secret) && !stderr(&o).contains(secret));

    let mut cmd = Command::new(BIN);
    cmd.args([
        "workshop",
        "create",
        "--name",
        "E",
        "--seats",
        "1",
        "--api-key-env",
        "MY_KEY",
    ])
    .env("CLARATEACH_API_URL", &server.url)
    .env("CLARATEACH_DATA_DIR", server.dir.path())
    .env("MY_KEY", secret);
    let o = ok(cmd.output().expect("run"));
    assert!(
        stdout(&o).contains("set (never shown)") && !stdout(&o).contains(secret),
        "{}",
        stdout(&o)
    );

    one_line_error(
        &server.cli(&[
            "create",
            "--name",
            "S",
            "--seats",
            "1",
            "--api-key-env",
            "NO_SUCH_VAR_X",
        ]),
        "NO_SUCH_VAR_X is not set",
    );
    one_line_error(
        &server.cli(&["create", "--name", "S", "--seats", "0"]),
        "seats",
    );
    one_line_error(
        &server.cli(&[
            "create",
            "--name",
            "S",
            "--seats",
            "1",
            "--api-key",
            "short",
        ]),
        "api_key",
    );
}

#[test]
fn refusals_are_one_clear_line() {
    let server = Server::start();
    // Bad token, given on the command line: 401 with a hint about where the token came from.
    let o = cli(&server.url, None, &["list", "--token", "not-a-token"], None);
    one_line_error(&o, "(unauthorized); check the token given by --token");
    // Unknown workshop, for every verb that takes an id.
    for verb in [
        &["info"][..],
        &["start"],
        &["delete"],
        &["stop", "--yes"],
        &["export"],
    ] {
        let mut args = verb.to_vec();
        args.insert(1, "ws-zzzzzz");
        one_line_error(
            &server.cli(&args),
            "workshop ws-zzzzzz not found (workshop_not_found)",
        );
    }
    assert!(
        !Path::new("ws-zzzzzz.tar.gz").exists(),
        "a refused export left a file"
    );
}

#[test]
fn unreachable_server_and_missing_token_are_one_clear_line() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let o = cli(&url, None, &["list", "--token", "t"], None);
    one_line_error(
        &o,
        &format!("cannot reach the control plane at {url}: connection refused"),
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let o = cli(&url, Some(empty.path()), &["list"], None);
    one_line_error(
        &o,
        "no instructor token: pass --token or set CLARATEACH_TOKEN",
    );
}

/// Why the sandbox backend cannot run here, if it cannot.
fn sandbox_skip_reason() -> Option<&'static str> {
    if !Path::new("/usr/bin/bwrap").exists() {
        return Some("needs bubblewrap (/usr/bin/bwrap)");
    }
    (!is_root()).then_some("needs root for cgroup limits")
}

#[test]
fn start_waits_for_seats_then_export_and_stop_through_up() {
    if let Some(why) = sandbox_skip_reason() {
        clarateach_core::skip::report("start_waits_for_seats_then_export_and_stop_through_up", why);
        return;
    }
    let server = Server::start_role("up");
    let id = create(&server, "Full stack", "2");

    let out = stdout(&ok(server.cli(&["start", &id])));
    assert!(
        out.contains(&format!("Workshop {id} is running: 2 seats ready")),
        "{out}"
    );
    let again = json(server.cli(&["start", &id, "--json"]));
    assert_eq!(again["workshop"]["status"], "running");
    one_line_error(&server.cli(&["delete", &id]), "(workshop_running)");

    // A learner writes a file through the gateway's terminal; the export must carry it.
    let code = again["workshop"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (old_token, old_code, mut old_term) = rt.block_on(async {
        let anonymous = clarateach_client::Client::new(&server.url, None).expect("client");
        let req = clarateach_core::JoinRequest {
            code,
            odehash: None,
            name: Some("Ada".into()),
        };
        let joined = anonymous.join(&req).await.expect("join");
        let learner =
            clarateach_client::Client::new(&server.url, Some(joined.token)).expect("client");
        let mut term = learner
            .terminal(&Default::default())
            .await
            .expect("terminal");
        term.send_input("echo cli-export-proof > /workspace/proof.txt && echo written-$((40+2))\r")
            .await
            .expect("input");
        term.read_until(b"written-42", Duration::from_secs(15))
            .await
            .expect("file written");
        (
            learner.token().expect("token").to_string(),
            joined.odehash,
            term,
        )
    });
    let info = stdout(&ok(server.cli(&["info", &id])));
    assert!(info.contains("Ada") && info.contains("ready"), "{info}");

    // Reset the seat: a new reconnect code; the old token and code are refused; files stay.
    let reset = json(server.cli(&["reset-seat", &id, "1", "--json"]));
    let new_code = reset["reset"]["odehash"]
        .as_str()
        .expect("new code")
        .to_string();
    assert_ne!(new_code, old_code);
    let out = stdout(&ok(server.cli(&["reset-seat", &id, "1"])));
    assert!(out.contains("New reconnect code"), "{out}");
    let newest = out
        .split("New reconnect code: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("code printed")
        .to_string();
    one_line_error(&server.cli(&["reset-seat", &id, "2"]), "(seat_not_joined)");
    rt.block_on(async {
        // The terminal the old learner still had open was closed by the reset.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match old_term.next_event().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the old learner's terminal stayed open after the reset"
        );
        let stale = clarateach_client::Client::new(&server.url, Some(old_token)).expect("client");
        let refused = stale.terminal(&Default::default()).await;
        assert!(refused.is_err(), "the old token still opens the terminal");
        let anonymous = clarateach_client::Client::new(&server.url, None).expect("client");
        let code = again["workshop"]["code"]
            .as_str()
            .expect("code")
            .to_string();
        let old = anonymous
            .join(&clarateach_core::JoinRequest {
                code: code.clone(),
                odehash: Some(old_code),
                name: None,
            })
            .await;
        assert_eq!(old.err().and_then(|e| e.status()), Some(404), "old code");
        for stale_code in [new_code] {
            let r = anonymous
                .join(&clarateach_core::JoinRequest {
                    code: code.clone(),
                    odehash: Some(stale_code),
                    name: None,
                })
                .await;
            assert_eq!(
                r.err().and_then(|e| e.status()),
                Some(404),
                "first reset's code"
            );
        }
        let joined = anonymous
            .join(&clarateach_core::JoinRequest {
                code,
                odehash: Some(newest),
                name: None,
            })
            .await
            .expect("rejoin with the new code");
        assert_eq!(joined.seat, 1);
        let learner =
            clarateach_client::Client::new(&server.url, Some(joined.token)).expect("client");
        let mut term = learner
            .terminal(&Default::default())
            .await
            .expect("terminal after reset");
        term.send_input("cat /workspace/proof.txt\r")
            .await
            .expect("input");
        term.read_until(b"cli-export-proof", Duration::from_secs(15))
            .await
            .expect("the seat's files survive the reset");
    });

    let target = server.dir.path().join("class.tar.gz");
    let out = stdout(&ok(server.cli(&[
        "export",
        &id,
        "-o",
        target.to_str().expect("utf-8 path"),
    ])));
    assert!(out.contains("class.tar.gz"), "{out}");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&target).expect("open"),
    ));
    let mut proof = None;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        if path.starts_with("seat-") && path.ends_with("proof.txt") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
            proof = Some(text);
        }
    }
    assert_eq!(proof.as_deref(), Some("cli-export-proof\n"));
    let leftovers: Vec<_> = std::fs::read_dir(server.dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    let v = json(server.cli(&["stop", &id, "--yes", "--json"]));
    assert_eq!(v["workshop"]["status"], "stopped");
    ok(server.cli(&["delete", &id]));
}
