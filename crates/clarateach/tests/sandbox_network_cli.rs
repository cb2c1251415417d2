//! `clarateach sandbox create --network open|allow:...` through the real binary, probed from
//! inside the sandboxes as a learner would (`sandbox run ID --cmd ...`): an `open` sandbox
//! reaches the test's internet and nothing of the host, its loopback, the metadata stand-in or
//! another sandbox; an `allow` sandbox reaches only listed names through its proxy (no rebinding
//! to loopback, no metadata by name, no address, no direct connection); a second networked
//! sandbox made by another CLI process does not undo the first one's rules; the proxy and DNS
//! forwarder outlive the CLI that made them (they live in the sandbox's keeper process); a dead
//! keeper is repaired by `start`; `stop`/`start` tear the network down and bring it back; and
//! `clean --all` leaves no keeper, veth, namespace or nft table. The same through
//! `/api/sandboxes` (`network` in the create request) of a real `clarateach up`.
//!
//! The internet is the isolation tests' (`net_support`): a netns joined by a veth in
//! 192.0.2.0/24 (TEST-NET-1, /32 routes only) with a metadata stand-in at 169.254.170.14 routed
//! into it, so no packet leaves this machine even if a block fails.
//! Needs root, bubblewrap, nft, ip, curl and python3; skips with the reason.

#[path = "../../clarateach-isolation/tests/net_support/mod.rs"]
mod net_support;
mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use net_support::{host_addrs, missing_tool, sh, Internet, PY};
use support::{skip_reason, BIN};

fn tag() -> u32 {
    std::process::id() % 0xfffff
}

/// The test internet takes 192.0.2.1 on the host: one test at a time uses it.
static INTERNET: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Sbx {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Sbx {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("sandbox")
            .args(args)
            .env("CLARATEACH_STATE_DIR", self.dir.path())
            .env("CLARATEACH_SEAT_STORE_SIZE", "1T")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run clarateach")
    }

    fn ok(&self, args: &[&str]) -> String {
        support::succeeded(args, self.run(args))
    }

    /// Stdout of a command run inside sandbox `id` (whatever its exit status).
    fn inside(&self, id: &str, cmd: &str) -> String {
        let out = self.run(&["run", id, "--timeout", "20", "--cmd", cmd]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn connects(&self, id: &str, ip: &str, port: u16) -> bool {
        self.inside(
            id,
            &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' && echo connected"),
        )
        .contains("connected")
    }

    /// (http code or 000, body) of `curl` inside `id`.
    fn curl(&self, id: &str, args: &str) -> (String, String) {
        let out = self.inside(
            id,
            &format!("curl -s -m 5 -o body -w '%{{http_code}}' {args}; echo; cat body 2>/dev/null"),
        );
        let (code, body) = out.split_once('\n').unwrap_or((&out, ""));
        (code.trim().to_string(), body.to_string())
    }

    /// The keeper's pid of `id` (its process runs `sandbox ... keep ID`).
    fn keeper(&self, id: &str) -> Option<u32> {
        let state = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .expect("proc")
            .flatten()
            .find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (cmd.contains(&state) && cmd.trim_end().ends_with(&format!("keep {id}")))
                    .then_some(pid)
            })
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        let _ = self.run(&["clean", "--all", "--purge"]);
    }
}

fn ctsbx_tables() -> Vec<String> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with("ctsbx_"))
        .map(str::to_string)
        .collect()
}

/// Veths and namespaces of the test's seat subnet `10.217.N.0/24`.
fn links_of(n: u32) -> Vec<String> {
    let hex = format!("{:02x}{:02x}{:02x}", 10, 217, n);
    let mut out = Vec::new();
    for (dir, prefix) in [
        ("/sys/class/net", format!("ct{hex}")),
        ("/run/netns", format!("ctns-{hex}")),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                out.push(name);
            }
        }
    }
    out
}

fn skipped() -> bool {
    let why = skip_reason().or_else(|| missing_tool(&["nft", "ip", "curl", PY]));
    if let Some(why) = why {
        clarateach_core::skip::report("sandbox_network_cli", &why);
        return true;
    }
    false
}

#[test]
fn networked_sandboxes_reach_only_what_their_policy_allows_and_clean_leaves_nothing() {
    if skipped() {
        return;
    }
    let _one_at_a_time = INTERNET.lock().unwrap_or_else(|p| p.into_inner());
    let t = tag();
    let mut inet = Internet::new(t, "192.0.2", "169.254.170.14");
    inet.serve();
    let dir = tempfile::Builder::new()
        .prefix("sbxnet")
        .tempdir()
        .expect("tmp");
    let hosts: PathBuf = inet.hosts_file(dir.path());
    let n = t % 250;
    let tables_before = ctsbx_tables();
    let sbx = Sbx {
        dir,
        env: vec![
            ("CLARATEACH_EGRESS_IFACE".into(), inet.veth.clone()),
            (
                "CLARATEACH_EGRESS_HOSTS".into(),
                hosts.display().to_string(),
            ),
            (
                "CLARATEACH_SANDBOX_DNS_UPSTREAM".into(),
                "192.0.2.10:53".into(),
            ),
            (
                "CLARATEACH_SANDBOX_SUBNET".into(),
                format!("10.217.{n}.0/24"),
            ),
        ],
    };
    let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let lo_port = lo.local_addr().expect("addr").port();
    let any = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let any_port = any.local_addr().expect("addr").port();

    // Three CLI processes, one sandbox each; each later one must not undo the earlier rules.
    sbx.ok(&[
        "create",
        "--language",
        "base",
        "--name",
        "op",
        "--network",
        "open",
    ]);
    sbx.ok(&[
        "create",
        "--language",
        "base",
        "--name",
        "al",
        "--network",
        "allow:api.example.test,rebind.example.test,meta.example.test",
    ]);
    sbx.ok(&["create", "--language", "base", "--name", "no"]);
    let status: serde_json::Value =
        serde_json::from_str(&sbx.ok(&["--json", "status", "op"])).expect("json");
    assert_eq!(status["status"], "running", "{status}");
    assert!(sbx.keeper("op").is_some() && sbx.keeper("al").is_some());
    assert!(sbx.keeper("no").is_none(), "a none sandbox needs no keeper");
    assert_eq!(
        ctsbx_tables().len(),
        tables_before.len() + 2,
        "one table each"
    );

    // open: the internet by address and through the DNS forwarder (served by the keeper: the
    // CLI that made the sandbox has exited).
    assert_eq!(
        sbx.curl("op", "http://192.0.2.10/").1,
        "hello from the internet\n"
    );
    let gw = sbx.inside("op", "grep nameserver /etc/resolv.conf | cut -d' ' -f2");
    let gw = gw.trim();
    assert!(gw.starts_with(&format!("10.217.{n}.")), "resolv.conf: {gw}");
    let dns = format!(
        "{PY} -c \"import socket;s=socket.socket(2,2);s.settimeout(3);s.sendto(b'abc',('{gw}',53));print(s.recv(64))\""
    );
    assert_eq!(sbx.inside("op", &dns).trim(), "b'cba'");
    // ...never the host, its loopback, its gateway's other ports, metadata or another seat.
    assert!(!sbx.connects("op", "127.0.0.1", lo_port), "host loopback");
    for addr in host_addrs() {
        assert!(!sbx.connects("op", &addr, any_port), "the host at {addr}");
    }
    assert!(!sbx.connects("op", gw, any_port), "its gateway");
    assert!(!sbx.connects("op", gw, 3128), "a proxy port on its gateway");
    assert_eq!(
        sbx.curl("op", "http://169.254.170.14/").0,
        "000",
        "metadata"
    );
    let al_gw = sbx.inside("al", "echo $HTTPS_PROXY");
    let al_gw = al_gw
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches(":3128")
        .to_string();
    assert!(al_gw.starts_with(&format!("10.217.{n}.")), "{al_gw}");
    assert!(!sbx.connects("op", &al_gw, 3128), "another sandbox's proxy");

    // allow: listed names through the proxy, nothing else.
    assert_eq!(
        sbx.curl("al", "http://api.example.test/"),
        ("200".into(), "hello from the internet\n".into())
    );
    assert_eq!(
        sbx.curl("al", "-p http://api.example.test:443/").1,
        "hello from the internet\n"
    );
    assert_eq!(sbx.curl("al", "http://evil.example.test/").0, "403");
    assert_eq!(
        sbx.curl("al", "http://rebind.example.test/").0,
        "403",
        "DNS rebinding to loopback"
    );
    assert_eq!(
        sbx.curl("al", "http://meta.example.test/").0,
        "403",
        "metadata by name"
    );
    assert_eq!(sbx.curl("al", "http://192.0.2.10/").0, "403", "an address");
    assert_eq!(
        sbx.curl("al", "--noproxy '*' http://192.0.2.10/").0,
        "000",
        "direct, around the proxy"
    );
    assert!(!sbx.connects("al", "127.0.0.1", lo_port));
    assert!(!sbx.connects("al", &al_gw, any_port), "its gateway");
    assert!(!sbx.connects("al", &al_gw, 53));

    // none: loopback only.
    assert_eq!(
        sbx.inside("no", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
            .trim(),
        "lo"
    );
    assert!(!sbx.connects("no", "192.0.2.10", 80));

    // A killed keeper: the sandbox counts as stopped (it lost its proxy) and `start` brings
    // the whole sandbox back with a new keeper, rules and all.
    let k = sbx.keeper("al").expect("keeper");
    assert!(sh(&format!("kill -9 {k}")));
    for _ in 0..100 {
        if sbx.keeper("al").is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status: serde_json::Value =
        serde_json::from_str(&sbx.ok(&["--json", "status", "al"])).expect("json");
    assert_eq!(status["status"], "stopped", "{status}");
    sbx.ok(&["start", "al"]);
    assert_ne!(sbx.keeper("al"), Some(k));
    assert_eq!(
        sbx.curl("al", "http://api.example.test/").1,
        "hello from the internet\n"
    );
    assert_eq!(sbx.curl("al", "http://evil.example.test/").0, "403");
    assert!(!sbx.connects("al", "127.0.0.1", lo_port));

    // stop: keeper, veth, namespace and table go; start brings them back.
    sbx.ok(&["stop", "op"]);
    assert!(sbx.keeper("op").is_none(), "keeper left after stop");
    assert_eq!(ctsbx_tables().len(), tables_before.len() + 1);
    sbx.ok(&["start", "op"]);
    assert_eq!(
        sbx.curl("op", "http://192.0.2.10/").1,
        "hello from the internet\n"
    );
    assert!(!sbx.connects("op", "127.0.0.1", lo_port), "after start");

    // clean: nothing of the networks is left.
    sbx.ok(&["clean", "--all"]);
    assert!(sbx.keeper("op").is_none() && sbx.keeper("al").is_none());
    assert_eq!(links_of(n), Vec::<String>::new(), "links left");
    let mut left = ctsbx_tables();
    left.retain(|t| !tables_before.contains(t));
    assert_eq!(left, Vec::<String>::new(), "nft tables left");
    let state = sbx.dir.path().to_string_lossy().into_owned();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&state))
        .map(str::to_string)
        .collect();
    assert_eq!(mounts, Vec::<String>::new(), "mounts left");
    drop(inet);
}

#[test]
fn the_http_api_makes_networked_sandboxes_with_the_same_guarantees() {
    if skipped() {
        return;
    }
    let _one_at_a_time = INTERNET.lock().unwrap_or_else(|p| p.into_inner());
    let t = (tag() + 1) % 0xfffff;
    let mut inet = Internet::new(t, "192.0.2", "169.254.170.14");
    inet.serve();
    let state = tempfile::Builder::new()
        .prefix("sbxnetapi")
        .tempdir()
        .expect("tmp");
    let data = tempfile::tempdir().expect("data dir");
    let hosts = inet.hosts_file(state.path());
    let n = t % 250;
    let tables_before = ctsbx_tables();
    // `up` inherits these: the control plane's egress settings are the environment's.
    for (k, v) in [
        ("CLARATEACH_STATE_DIR", state.path().display().to_string()),
        ("CLARATEACH_SEAT_STORE_SIZE", "1T".into()),
        ("CLARATEACH_EGRESS_IFACE", inet.veth.clone()),
        ("CLARATEACH_EGRESS_HOSTS", hosts.display().to_string()),
        ("CLARATEACH_SANDBOX_SUBNET", format!("10.217.{n}.0/24")),
    ] {
        std::env::set_var(k, v);
    }
    let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let lo_port = lo.local_addr().expect("addr").port();
    let port = support::free_port();
    let (up, url, token) = support::start_up(data.path(), port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let post = |p: &str, body: serde_json::Value| {
            http.post(format!("{url}{p}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let r = post(
            "/api/sandboxes",
            serde_json::json!({"name": "netapi", "language": "base",
                "network": "allow:api.example.test"}),
        )
        .await
        .expect("create");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let r = post(
            "/api/sandboxes",
            serde_json::json!({"name": "bad", "network": "everything"}),
        )
        .await
        .expect("bad network");
        assert_eq!(r.status(), 422);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["code"], "bad_network");
        let run = |cmd: String| {
            let r = post(
                "/api/sandboxes/netapi/run",
                serde_json::json!({"command": cmd, "timeout_s": 20}),
            );
            async move {
                let v: serde_json::Value = r.await.expect("run").json().await.expect("json");
                v["stdout"].as_str().unwrap_or_default().to_string()
            }
        };
        let curl = |url: &str| format!("curl -s -m 5 -o /dev/null -w '%{{http_code}}' {url}");
        assert_eq!(run(curl("http://api.example.test/")).await, "200");
        assert_eq!(run(curl("http://evil.example.test/")).await, "403");
        assert_eq!(run(curl("--noproxy '*' http://192.0.2.10/")).await, "000");
        let probe =
            format!("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{lo_port}' && echo connected");
        assert!(!run(probe).await.contains("connected"), "host loopback");
        let r = http
            .delete(format!("{url}/api/sandboxes/netapi"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204);
    });
    let sbx = Sbx {
        dir: state,
        env: Vec::new(),
    };
    assert!(sbx.keeper("netapi").is_none(), "keeper left");
    up.stop("-TERM");
    assert_eq!(links_of(n), Vec::<String>::new(), "links left");
    let mut left = ctsbx_tables();
    left.retain(|t| !tables_before.contains(t));
    assert_eq!(left, Vec::<String>::new(), "nft tables left");
    drop(inet);
}
