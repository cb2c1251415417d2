//! `limits.network` seen from inside real seats, as a learner would probe it. The test builds its
//! own "internet": a network namespace joined to the root namespace by a veth in 203.0.113.0/24
//! (TEST-NET-3), serving HTTP on 203.0.113.10 and .11 and a metadata stand-in on
//! 169.254.169.254 (routed into that namespace, so even a failing block keeps every packet on
//! this machine). Seats NAT out of that veth only (the egress interface is the test's), and the
//! proxy resolves names from a static hosts map, including `rebind.example.test -> 127.0.0.1`.
//!
//! Figures (ignored by default):
//! cargo test -p clarateach-isolation --release --test sandbox_network -- --ignored --nocapture

mod net_support;
mod sandbox_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{Limits, NetworkPolicy};
use clarateach_isolation::netpolicy::{NetConfig, Resolver, SeatSubnet, SlotAddrs};
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, DaemonEndpoint, WorkspaceSpec};
use net_support::{must, sh, Internet, PY};
use sandbox_support::{config, fake_daemon, ok, run, skipped};

/// The test internet takes 203.0.113.1 on the host: one test at a time uses it.
static INTERNET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Prints why the network tests cannot run here, if they cannot.
fn net_skipped(test: &str) -> bool {
    if skipped(test) {
        return true;
    }
    for tool in ["nft", "ip", "curl", PY] {
        if !sh(&format!("command -v {tool}")) {
            clarateach_core::skip::report(test, &format!("{tool} is not installed"));
            return true;
        }
    }
    false
}

/// A sandbox backend whose seats use `subnet`, NAT out of the test veth, with its own nft table.
struct Net {
    dir: sandbox_support::DataDir,
    backend: Option<SandboxBackend>,
    net: NetConfig,
    ws: String,
}

fn hosts_file(dir: &Path) -> PathBuf {
    let path = dir.join("egress-hosts");
    std::fs::write(
        &path,
        "api.example.test 203.0.113.10\nevil.example.test 203.0.113.11\n\
         rebind.example.test 127.0.0.1\nmeta.example.test 169.254.169.254\n",
    )
    .expect("write hosts");
    path
}

impl Net {
    fn new(tag: u32, subnet: &str, egress: &str) -> Self {
        let dir = sandbox_support::data_dir();
        let net = NetConfig {
            seat_subnet: subnet.parse().expect("subnet"),
            egress_iface: Some(egress.to_string()),
            nft_table: format!("ct_test_{tag}"),
            resolver: Resolver::from_file(&hosts_file(dir.path())).expect("hosts"),
            dns_upstream: Some("203.0.113.10:53".parse().expect("addr")),
            ..NetConfig::default()
        };
        let mut n = Self {
            dir,
            backend: None,
            net,
            ws: format!("ws-net-{tag}"),
        };
        n.restart();
        n
    }

    /// A fresh backend over the same data dir: what an agent restart looks like.
    fn restart(&mut self) {
        self.backend = None;
        let mut cfg = config(self.dir.path(), self.dir.path().join("fake-daemon"));
        cfg.net = self.net.clone();
        self.backend = Some(SandboxBackend::new(cfg).expect("backend"));
        fake_daemon(self.dir.path());
    }

    fn b(&self) -> &SandboxBackend {
        self.backend.as_ref().expect("backend")
    }

    fn key(&self, seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: self.ws.clone(),
            seat,
        }
    }

    async fn seat(&self, seat: u32, network: NetworkPolicy) -> DaemonEndpoint {
        let spec = WorkspaceSpec {
            key: self.key(seat),
            limits: Limits::default().with_network(network),
            image: None,
            env: BTreeMap::new(),
            daemon_token: format!("tok-{seat}"),
        };
        self.b().create(&spec).await.expect("create");
        self.b().start(&spec.key).await.expect("start")
    }

    fn subnet(&self) -> SeatSubnet {
        self.net.seat_subnet
    }

    /// Links, namespaces and the nft table this backend could have made.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in 0..self.subnet().slots().min(64) {
            let a = self.subnet().slot(n).expect("slot");
            if Path::new("/sys/class/net").join(a.veth()).exists() {
                out.push(a.veth());
            }
            if Path::new("/run/netns").join(a.netns()).exists() {
                out.push(a.netns());
            }
        }
        if sh(&format!("nft list table inet {}", self.net.nft_table)) {
            out.push(format!("table {}", self.net.nft_table));
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // After a failed assertion: kill the seats and remove every kernel object by name.
        if let Some(b) = &self.backend {
            for seat in 1..=64 {
                for pid in b.pids(&self.key(seat)) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        for n in 0..self.subnet().slots().min(64) {
            let a = self.subnet().slot(n).expect("slot");
            sh(&format!("ip link del {} 2>/dev/null", a.veth()));
            sh(&format!("ip netns del {} 2>/dev/null", a.netns()));
        }
        sh(&format!("nft delete table inet {}", self.net.nft_table));
    }
}

/// Whether a TCP connection from inside the seat to `ip:port` succeeds within 3 s.
async fn connects(ep: &DaemonEndpoint, ip: &str, port: u16) -> bool {
    let cmd = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' && echo connected");
    run(ep, &cmd).await.1.contains("connected")
}

/// `curl` inside the seat; returns (http status code or 000, body).
async fn curl(ep: &DaemonEndpoint, args: &str) -> (String, String) {
    let cmd = format!("rm -f /tmp/body; curl -s -m 5 -o /tmp/body -w '%{{http_code}}' {args}; echo; if [ -f /tmp/body ]; then cat /tmp/body; fi");
    let out = run(ep, &cmd).await.1;
    let (code, body) = out.split_once('\n').unwrap_or((&out, ""));
    (code.trim().to_string(), body.to_string())
}

fn host_addrs() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next())
        .map(str::to_string)
        .collect()
}

fn tag() -> u32 {
    std::process::id() % 0xfffff
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_reach_only_what_their_policy_allows() {
    if net_skipped("seats_reach_only_what_their_policy_allows") {
        return;
    }
    let _one_at_a_time = INTERNET.lock().await;
    let t = tag();
    let mut inet = Internet::new(t, "203.0.113", "169.254.169.254");
    inet.serve();
    let mut n = Net::new(t, &format!("10.216.{}.0/24", t % 250), &inet.veth);

    // Host services a learner would go for: a loopback port and a port on every address.
    let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let lo_port = lo.local_addr().expect("addr").port();
    let any = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let any_port = any.local_addr().expect("addr").port();

    let open = n.seat(1, NetworkPolicy::Open).await;
    let allow = n
        .seat(
            2,
            NetworkPolicy::Allow {
                allow: vec![
                    "api.example.test".into(),
                    "rebind.example.test".into(),
                    "meta.example.test".into(),
                ],
            },
        )
        .await;
    let none = n.seat(3, NetworkPolicy::None).await;
    let a1 = n.b().net().addrs(&n.key(1)).expect("seat 1 addrs");
    let a2 = n.b().net().addrs(&n.key(2)).expect("seat 2 addrs");
    assert!(
        n.b().net().addrs(&n.key(3)).is_none(),
        "a none seat has no network"
    );

    // open: the internet, by address and through DNS (the forwarder on its gateway).
    assert_eq!(
        ok(&open, "ip -o -4 addr show dev eth0 | awk '{print $4}'").await,
        format!("{}/30", a1.seat)
    );
    assert_eq!(
        curl(&open, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );
    assert_eq!(curl(&open, "http://203.0.113.11:443/").await.0, "200");
    assert_eq!(
        ok(&open, "grep nameserver /etc/resolv.conf").await,
        format!("nameserver {}", a1.host)
    );
    let dns = format!(
        "{PY} -c \"import socket;s=socket.socket(2,2);s.settimeout(3);s.sendto(b'abc',('{}',53));print(s.recv(64))\"",
        a1.host
    );
    assert_eq!(ok(&open, &dns).await, "b'cba'");
    // ...but not the host, its loopback, its gateway's other ports, metadata or another seat.
    assert!(
        !connects(&open, "127.0.0.1", lo_port).await,
        "open seat reached the host's loopback"
    );
    for addr in host_addrs() {
        assert!(
            !connects(&open, &addr, any_port).await,
            "open seat reached the host at {addr}"
        );
    }
    assert!(
        !connects(&open, &a1.host.to_string(), any_port).await,
        "reached its gateway"
    );
    assert!(
        !connects(&open, &a1.host.to_string(), 3128).await,
        "reached a proxy port"
    );
    assert!(
        !connects(&open, &a2.host.to_string(), 3128).await,
        "reached another seat's proxy"
    );
    assert_eq!(
        curl(&open, "http://169.254.169.254/").await.0,
        "000",
        "metadata reachable"
    );
    ok(
        &allow,
        &format!("nohup {PY} -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &"),
    )
    .await;
    ok(&allow, &format!("for i in $(seq 50); do {PY} -c \"import socket;socket.create_connection(('127.0.0.1',8000),1)\" 2>/dev/null && exit 0; sleep 0.1; done; exit 1")).await;
    assert!(
        !connects(&open, &a2.seat.to_string(), 8000).await,
        "open seat reached another seat"
    );
    // IPv6 link-local to the host side of its veth: dropped too (the seat has no v6 route).
    let any6 = std::net::TcpListener::bind("[::]:0").expect("bind v6");
    let v6_port = any6.local_addr().expect("addr").port();
    let ll = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ip -6 -o addr show dev {} scope link | awk '{{print $4}}' | cut -d/ -f1",
                a1.veth()
            ),
        ])
        .output()
        .expect("ip");
    let ll = String::from_utf8_lossy(&ll.stdout).trim().to_string();
    assert!(
        ll.starts_with("fe80:"),
        "no link-local address on the veth: {ll:?}"
    );
    let v6 = format!("{PY} -c \"import socket;socket.create_connection(('{ll}%eth0',{v6_port}),2);print('connected')\"");
    assert!(
        !run(&open, &v6).await.1.contains("connected"),
        "open seat reached the host over IPv6 link-local"
    );
    // A port the learner binds is the seat's own, not the host's.
    ok(
        &open,
        &format!("nohup {PY} -m http.server 8001 --bind 0.0.0.0 >/dev/null 2>&1 &"),
    )
    .await;
    ok(&open, &format!("for i in $(seq 50); do {PY} -c \"import socket;socket.create_connection(('127.0.0.1',8001),1)\" 2>/dev/null && exit 0; sleep 0.1; done; exit 1")).await;
    assert!(
        std::net::TcpStream::connect("127.0.0.1:8001").is_err(),
        "the seat bound a host port"
    );
    let (status, out) = run(
        &open,
        "ip route add 203.0.113.0/24 dev eth0; ip link set eth0 down",
    )
    .await;
    assert_ne!(
        status, "exit=0 signal=0",
        "the learner changed the seat's network: {out}"
    );

    // allow: listed names through the proxy, in both proxy forms; nothing else.
    assert_eq!(
        curl(&allow, "http://api.example.test/").await,
        ("200".into(), "hello from the internet".into())
    );
    assert_eq!(
        curl(&allow, "-p http://api.example.test:443/").await.1,
        "hello from the internet"
    );
    assert_eq!(curl(&allow, "http://evil.example.test/").await.0, "403");
    let (code, body) = curl(&allow, "-p http://evil.example.test:443/").await;
    assert!(
        code != "200" && body.is_empty(),
        "CONNECT to an unlisted name: {code} {body}"
    );
    assert_eq!(
        curl(&allow, "http://rebind.example.test/").await.0,
        "403",
        "DNS rebinding to loopback"
    );
    assert_eq!(
        curl(&allow, "http://meta.example.test/").await.0,
        "403",
        "metadata via DNS"
    );
    assert_eq!(
        curl(&allow, "http://203.0.113.10/").await.0,
        "403",
        "an address is not a listed name"
    );
    assert_eq!(
        curl(&allow, "http://api.example.test:8080/").await.0,
        "403",
        "only ports 80/443"
    );
    assert_eq!(
        curl(&allow, "--noproxy '*' http://203.0.113.10/").await.0,
        "000",
        "direct, bypassing the proxy"
    );
    assert!(!connects(&allow, "203.0.113.10", 80).await);
    assert!(
        !connects(&allow, &a2.host.to_string(), any_port).await,
        "allow seat reached its gateway"
    );
    assert!(!connects(&allow, &a2.host.to_string(), 53).await);
    assert!(!connects(&allow, "127.0.0.1", lo_port).await);
    assert!(!connects(&allow, &a1.seat.to_string(), 8000).await);
    assert_eq!(
        ok(&allow, "echo $HTTPS_PROXY").await,
        format!("http://{}:3128", a2.host)
    );

    // none: loopback only.
    assert_eq!(
        ok(&none, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").await,
        "lo"
    );
    assert!(!connects(&none, "203.0.113.10", 80).await);
    assert!(!connects(&none, "127.0.0.1", lo_port).await);

    // An agent restart (the backend is dropped: its proxies die) brings the proxy back.
    n.restart();
    n.b().adopt().await.expect("adopt");
    assert_eq!(
        curl(&allow, "http://api.example.test/").await.1,
        "hello from the internet"
    );
    assert_eq!(curl(&allow, "http://evil.example.test/").await.0, "403");
    assert_eq!(
        curl(&open, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );

    // Someone removes the agent's table behind its back: the next seat change fails as a delta
    // and reloads the whole table, so the running seats are blocked again too.
    must(&format!("nft delete table inet {}", n.net.nft_table));
    let late = n.seat(4, NetworkPolicy::Open).await;
    assert_eq!(
        curl(&late, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );
    assert!(
        !connects(&open, &a1.host.to_string(), any_port).await,
        "blocks not restored"
    );
    assert_eq!(
        curl(&open, "http://169.254.169.254/").await.0,
        "000",
        "metadata after reload"
    );
    assert!(
        !connects(&late, &a1.seat.to_string(), 8001).await,
        "seat 4 reached seat 1"
    );

    // Stop takes the network down, start brings it back with the same addresses.
    n.b().stop(&n.key(1)).await.expect("stop");
    assert!(
        !Path::new("/sys/class/net").join(a1.veth()).exists(),
        "veth left after stop"
    );
    let open = n.b().start(&n.key(1)).await.expect("restart");
    assert_eq!(n.b().net().addrs(&n.key(1)), Some(a1));
    assert_eq!(
        curl(&open, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );

    // Destroy leaves no link, namespace or table behind.
    for seat in 1..=4 {
        n.b().destroy(&n.key(seat), true).await.expect("destroy");
    }
    assert_eq!(n.leftovers(), Vec::<String>::new());
    assert!(
        !n.dir.path().join("net").join(&n.ws).exists(),
        "slot records left"
    );
    drop((lo, any, any6));
}

/// Conntrack lines whose original source is `ip`; None when the kernel has no procfs listing.
fn conntrack_of(ip: &str) -> Option<Vec<String>> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").ok()?;
    let want = format!("src={ip} ");
    Some(
        table
            .lines()
            .filter(|l| l.contains(&want))
            .map(str::to_string)
            .collect(),
    )
}

fn nft_table(name: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", name])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_slot_carries_nothing_and_a_half_made_network_goes_at_adopt() {
    if net_skipped("a_reused_slot_carries_nothing_and_a_half_made_network_goes_at_adopt") {
        return;
    }
    let _one_at_a_time = INTERNET.lock().await;
    let t = tag() ^ 0x3c3c;
    let mut inet = Internet::new(t, "203.0.113", "169.254.169.254");
    inet.serve();
    let mut n = Net::new(t, &format!("10.218.{}.0/24", t % 250), &inet.veth);

    // Seat 1 stays up throughout (the table stays); seat 2 talks to the internet, then goes.
    let keep = n.seat(1, NetworkPolicy::Open).await;
    let first = n.seat(2, NetworkPolicy::Open).await;
    let a2 = n.b().net().addrs(&n.key(2)).expect("slot");
    assert_eq!(
        curl(&first, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );
    let tracked = conntrack_of(&a2.seat.to_string());
    if let Some(lines) = &tracked {
        assert!(!lines.is_empty(), "the seat's connection is not tracked");
    } else {
        eprintln!("SKIP part: no /proc/net/nf_conntrack, leftover connections not checked");
        println!("SKIP part: no /proc/net/nf_conntrack, leftover connections not checked");
    }
    assert!(nft_table(&n.net.nft_table).contains(&a2.veth()));
    n.b().destroy(&n.key(2), true).await.expect("destroy");
    let table = nft_table(&n.net.nft_table);
    assert!(
        !table.contains(&a2.veth()) && !table.contains(&format!("{} ", a2.seat)),
        "seat 2's elements left: {table}"
    );
    assert!(!Path::new("/sys/class/net").join(a2.veth()).exists());
    assert!(!Path::new("/run/netns").join(a2.netns()).exists());
    if tracked.is_some() {
        assert_eq!(
            conntrack_of(&a2.seat.to_string()),
            Some(Vec::new()),
            "seat 2's connections outlived it"
        );
    }

    // The next seat gets seat 2's slot, and nothing of seat 2 with it.
    let next = n.seat(3, NetworkPolicy::Open).await;
    assert_eq!(n.b().net().addrs(&n.key(3)), Some(a2), "slot not reused");
    let routes = ok(&next, "tail -n +2 /proc/net/route | cut -f1-3 | sort").await;
    let gw_hex: String = a2
        .host
        .octets()
        .iter()
        .rev()
        .map(|b| format!("{b:02X}"))
        .collect();
    let net_hex: String = {
        let o = a2.host.octets();
        [o[3] & 0xfc, o[2], o[1], o[0]]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    };
    assert_eq!(
        routes,
        format!("eth0\t00000000\t{gw_hex}\neth0\t{net_hex}\t00000000"),
        "routes of the reused slot"
    );
    let local = ok(
        &next,
        "awk '/\\/32 host LOCAL/ {print prev} {prev=$2}' /proc/net/fib_trie | sort -u | tr '\\n' ' '",
    )
    .await;
    let mut want = [a2.seat.to_string(), "127.0.0.1".to_string()];
    want.sort();
    assert_eq!(
        local,
        want.join(" "),
        "only lo and eth0's own address are local"
    );
    assert_eq!(
        ok(
            &next,
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '"
        )
        .await,
        "eth0 lo"
    );
    assert_eq!(
        curl(&next, "http://203.0.113.10/").await.1,
        "hello from the internet"
    );

    // The agent dies between making seat 4's network and starting its sandbox.
    let spec = WorkspaceSpec {
        key: n.key(4),
        limits: Limits::default().with_network(NetworkPolicy::Open),
        image: None,
        env: BTreeMap::new(),
        daemon_token: "tok-4".into(),
    };
    n.b().create(&spec).await.expect("create");
    let half = n
        .b()
        .net()
        .setup(&spec.key, &NetworkPolicy::Open)
        .await
        .expect("setup")
        .expect("a network");
    let a4 = half.addrs;
    drop(half);
    assert!(Path::new("/sys/class/net").join(a4.veth()).exists());
    assert!(nft_table(&n.net.nft_table).contains(&a4.veth()));
    // The agent keeps namespaces made ahead at free slots (spares); a dead agent's spares are
    // recorded, and adopt removes them with the rest.
    let seats: Vec<SlotAddrs> = [1, 3, 4]
        .iter()
        .filter_map(|s| n.b().net().addrs(&n.key(*s)))
        .collect();
    let spares = |n: &Net| -> Vec<String> {
        (0..16)
            .filter_map(|i| n.subnet().slot(i))
            .filter(|a| !seats.contains(a))
            .map(|a| a.netns())
            .filter(|ns| Path::new("/run/netns").join(ns).exists())
            .collect()
    };
    let waited = Instant::now();
    while spares(&n).len() < NetConfig::default().spare_namespaces
        && waited.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        spares(&n).len(),
        NetConfig::default().spare_namespaces,
        "spare namespaces made ahead"
    );
    // No seat runs when the agent comes back, so no re-adopted seat reloads the table: adopt
    // itself must clear what the half-made start left.
    for seat in [1, 3] {
        n.b().stop(&n.key(seat)).await.expect("stop");
    }
    n.restart();
    n.b().adopt().await.expect("adopt");
    assert!(
        !Path::new("/sys/class/net").join(a4.veth()).exists(),
        "half-made veth left after adopt"
    );
    assert!(
        !Path::new("/run/netns").join(a4.netns()).exists(),
        "half-made namespace left after adopt"
    );
    assert_eq!(
        spares(&n),
        Vec::<String>::new(),
        "a dead agent's spares left after adopt"
    );
    let table = nft_table(&n.net.nft_table);
    assert!(
        !table.contains(&a4.veth()),
        "half-made seat's elements left after adopt: {table}"
    );
    // The stopped seats start again with their network.
    drop((keep, next));
    for seat in [1, 3] {
        let ep = n.b().start(&n.key(seat)).await.expect("start");
        assert_eq!(
            curl(&ep, "http://203.0.113.10/").await.1,
            "hello from the internet"
        );
    }
    for seat in 1..=4 {
        n.b().destroy(&n.key(seat), true).await.expect("destroy");
    }
    assert_eq!(n.leftovers(), Vec::<String>::new());
}

/// CPU time of this process and its reaped children (user + system), in ms, from
/// `/proc/self/stat` (clock ticks of 10 ms): less at the mercy of the machine's load than wall time.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // Fields after the name: state is 3rd overall; utime, stime, cutime, cstime are 14..=17.
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11..15]
        .iter()
        .map(|v| v.parse::<f64>().expect("ticks"))
        .sum();
    ticks * 10.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_network_setup_and_proxy() {
    if net_skipped("bench_network_setup_and_proxy") {
        return;
    }
    let _one_at_a_time = INTERNET.lock().await;
    let t = tag() ^ 0x5a5a;
    let mut inet = Internet::new(t, "203.0.113", "169.254.169.254");
    inet.serve();
    let mut n = Net::new(t, &format!("10.217.{}.0/24", t % 250), &inet.veth);
    const SEATS: u32 = 30;

    // Network setup alone (netns + veth + forwarding + listener + one nft load), per seat.
    let mut setup = Vec::new();
    let mut down = Vec::new();
    let cpu_before = cpu_ms();
    for seat in 100..100 + SEATS {
        let began = Instant::now();
        let net = n
            .b()
            .net()
            .setup(&n.key(seat), &NetworkPolicy::Open)
            .await
            .expect("setup");
        setup.push(began.elapsed().as_secs_f64() * 1e3);
        drop(net);
    }
    let cpu_setup = cpu_ms() - cpu_before;
    for seat in 100..100 + SEATS {
        let began = Instant::now();
        n.b().net().release(&n.key(seat)).await.expect("release");
        down.push(began.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "net setup (open) CPU per seat, this process and its children (10 ms ticks / {SEATS}): {:.2} ms",
        cpu_setup / f64::from(SEATS)
    );
    summary(
        "net setup (open), sequential, spare namespaces made in the background",
        setup,
    );
    summary("net release, sequential", down);

    // The same without spares: what the first networked seat after an agent start, and every
    // seat of a burst larger than the spares, pays.
    n.net.spare_namespaces = 0;
    n.restart();
    let mut cold = Vec::new();
    for seat in 100..100 + SEATS {
        let began = Instant::now();
        let net = n.b().net().setup(&n.key(seat), &NetworkPolicy::Open).await;
        cold.push(began.elapsed().as_secs_f64() * 1e3);
        drop(net.expect("setup"));
    }
    for seat in 100..100 + SEATS {
        n.b().net().release(&n.key(seat)).await.expect("release");
    }
    summary("net setup (open), sequential, no spare namespace", cold);
    n.net.spare_namespaces = NetConfig::default().spare_namespaces;
    n.restart();

    // Seat start to ready, no network vs open vs allow, seats started one after another and
    // interleaved (none, open, allow, none, ...) so the machine's load hits all three alike.
    let policies = [
        ("seat ready, network none", NetworkPolicy::None),
        ("seat ready, network open", NetworkPolicy::Open),
        (
            "seat ready, network allow",
            NetworkPolicy::Allow {
                allow: vec!["api.example.test".into()],
            },
        ),
    ];
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
    for i in 0..SEATS {
        for (j, (_, policy)) in policies.iter().enumerate() {
            let seat = 200 + i * 3 + j as u32;
            let spec = WorkspaceSpec {
                key: n.key(seat),
                limits: Limits::default().with_network(policy.clone()),
                image: None,
                env: BTreeMap::new(),
                daemon_token: format!("tok-{seat}"),
            };
            n.b().create(&spec).await.expect("create");
            let began = Instant::now();
            n.b().start(&spec.key).await.expect("start");
            ms[j].push(began.elapsed().as_secs_f64() * 1e3);
        }
    }
    for ((label, _), ms) in policies.iter().zip(ms) {
        summary(label, ms);
    }
    for seat in 200..200 + SEATS * 3 {
        n.b().destroy(&n.key(seat), true).await.expect("destroy");
    }

    // 30 seats started at once, as the agent does on workshop start: wall time to all ready.
    for (label, policy, base) in [
        ("30 seats at once, network none", NetworkPolicy::None, 500),
        ("30 seats at once, network open", NetworkPolicy::Open, 600),
    ] {
        for seat in base..base + SEATS {
            let spec = WorkspaceSpec {
                key: n.key(seat),
                limits: Limits::default().with_network(policy.clone()),
                image: None,
                env: BTreeMap::new(),
                daemon_token: format!("tok-{seat}"),
            };
            n.b().create(&spec).await.expect("create");
        }
        let keys: Vec<SeatKey> = (base..base + SEATS).map(|s| n.key(s)).collect();
        let began = Instant::now();
        let started = futures::future::join_all(keys.iter().map(|k| n.b().start(k))).await;
        let wall = began.elapsed().as_secs_f64() * 1e3;
        let failed: Vec<String> = started
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| format!("{e:#}: {:?}", std::error::Error::source(e)))
            .collect();
        assert!(failed.is_empty(), "seats failed to start: {failed:?}");
        println!("{label}: all ready in {wall:.0} ms");
        for k in &keys {
            n.b().destroy(k, true).await.expect("destroy");
        }
    }

    // Proxy vs direct (NAT): 64 MiB download and 50 small requests, from inside seats.
    let open = n.seat(1, NetworkPolicy::Open).await;
    let allow = n
        .seat(
            2,
            NetworkPolicy::Allow {
                allow: vec!["api.example.test".into()],
            },
        )
        .await;
    for (label, ep, url) in [
        ("direct (open, NAT)", &open, "http://203.0.113.10/big"),
        (
            "proxy (allow, forward)",
            &allow,
            "http://api.example.test/big",
        ),
        (
            "proxy (allow, CONNECT)",
            &allow,
            "-p http://api.example.test:443/big",
        ),
    ] {
        let speeds = ok(ep, &format!("for i in 1 2 3; do curl -s -m 60 -o /dev/null -w '%{{speed_download}}\\n' {url}; done")).await;
        let best = speeds
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .fold(0.0, f64::max);
        println!(
            "{label}: 64 MiB download, best of 3: {:.0} MiB/s",
            best / 1048576.0
        );
        let small = url.trim_end_matches("big");
        let times = ok(ep, &format!("for i in $(seq 50); do curl -s -m 5 -o /dev/null -w '%{{time_total}}\\n' {small}; done")).await;
        let ms: Vec<f64> = times
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(|s| s * 1e3)
            .collect();
        summary(&format!("{label}: small GET, new connection each"), ms);
    }
    for seat in 1..=2 {
        n.b().destroy(&n.key(seat), true).await.expect("destroy");
    }
}
