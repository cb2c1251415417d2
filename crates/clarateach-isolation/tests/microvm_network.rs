//! `limits.network` of microVM seats seen from inside real QEMU guests (TCG where KVM does not
//! work), as a learner would probe it: an `open` seat reaches the test's internet (a netns on
//! TEST-NET-2, `net_support`) by address and through the DNS forwarder, but not the host's own
//! addresses, its gateway's other ports, a link-local metadata stand-in, another microVM seat or
//! a sandbox seat; an allow-list seat reaches only its listed names through the proxy; an agent
//! restart brings the proxy back; no file under the data dir holds the API key; destroy leaves
//! no TAP and no nft table. Needs root, /dev/net/tun, nft, ip, curl, python3, bubblewrap and what
//! the other microVM tests need; prints `SKIPPED` with the reason otherwise.
//!
//! TAP setup cost (ignored by default):
//! cargo test -p clarateach-isolation --release --test microvm_network -- --ignored --nocapture

mod microvm_support;
mod net_support;
mod sandbox_support;
mod scan;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{Limits, NetworkPolicy};
use clarateach_isolation::microvm::{AccelChoice, MicrovmBackend, MicrovmConfig};
use clarateach_isolation::netpolicy::{NetConfig, NetManager, Resolver};
use clarateach_isolation::{Backend, DaemonAddr, DaemonEndpoint, WorkspaceSpec};
use net_support::{host_addrs, missing_tool, sh, Internet, PY};

const SECRET: &str = "sk-ant-microvm-net-7f3a9c";

fn skipped(test: &str) -> bool {
    let why = microvm_support::skip_reason()
        .or_else(|| missing_tool(&["nft", "ip", "curl", PY]))
        .or_else(|| (!Path::new("/dev/net/tun").exists()).then(|| "/dev/net/tun is missing".into()))
        .or_else(sandbox_support::skip_reason);
    match why {
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            println!("SKIPPED {test}: {why}");
            true
        }
        None => false,
    }
}

fn tag() -> u32 {
    std::process::id() % 0xfffff
}

/// Removes everything the test could have left in the kernel, also after a failed assertion.
struct Cleanup {
    data: std::path::PathBuf,
    nets: Vec<NetConfig>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in microvm_support::qemu_pids_mentioning(&self.data.to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for net in &self.nets {
            for n in 0..net.seat_subnet.slots().min(64) {
                let a = net.seat_subnet.slot(n).expect("slot");
                sh(&format!("ip link del {} 2>/dev/null", a.veth()));
                sh(&format!("ip netns del {} 2>/dev/null", a.netns()));
            }
            sh(&format!("nft delete table inet {}", net.nft_table));
        }
    }
}

fn seat_net(t: u32, third: u32, table: &str, inet: &Internet, dir: &Path) -> NetConfig {
    NetConfig {
        seat_subnet: format!("10.{third}.{}.0/24", t % 250)
            .parse()
            .expect("subnet"),
        egress_iface: Some(inet.veth.clone()),
        nft_table: format!("{table}_{t}"),
        resolver: Resolver::from_file(&inet.hosts_file(dir)).expect("hosts"),
        dns_upstream: Some(
            format!("{}:53", inet.server(10))
                .parse()
                .expect("dns upstream"),
        ),
        ..NetConfig::default()
    }
}

fn microvm_config(data: &Path, net: &NetConfig) -> MicrovmConfig {
    let mut cfg = MicrovmConfig::new(data, microvm_support::guest_image());
    cfg.accel = match std::env::var("CLARATEACH_TEST_ACCEL").as_deref() {
        Ok("kvm") => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    cfg.volume_mb = 256;
    cfg.seat_net = net.clone();
    cfg
}

fn spec(key: &SeatKey, network: NetworkPolicy) -> WorkspaceSpec {
    WorkspaceSpec {
        key: key.clone(),
        limits: Limits {
            memory_mb: 256,
            ..Limits::default()
        }
        .with_network(network),
        image: None,
        env: [("ANTHROPIC_API_KEY".to_string(), SECRET.to_string())].into(),
        daemon_token: format!("tok-{}", key.seat),
    }
}

fn tcp(ep: &DaemonEndpoint) -> SocketAddr {
    match ep.addr {
        DaemonAddr::Tcp(a) => a,
        ref other => panic!("expected a TCP endpoint, got {other:?}"),
    }
}

/// Runs `cmd` in the guest; its stdout, trimmed.
async fn sh_in(ep: &DaemonEndpoint, cmd: &str) -> String {
    microvm_support::run(tcp(ep), &ep.token, cmd)
        .await
        .0
        .trim()
        .to_string()
}

/// Whether a TCP connection from inside the guest to `ip:port` succeeds within 3 s.
async fn connects(ep: &DaemonEndpoint, ip: &str, port: u16) -> bool {
    let cmd = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null && echo connected || echo blocked");
    sh_in(ep, &cmd).await == "connected"
}

/// GET `url` with Python's urllib (which honours the proxy variables); "CODE\nBODY", or "000"
/// when no HTTP answer came.
async fn get(ep: &DaemonEndpoint, url: &str) -> String {
    let cmd = format!(
        "cat > /tmp/get.py <<'EOF'\n\
import sys, urllib.request, urllib.error\n\
try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=5)\n    print(r.status)\n    print(r.read().decode(), end='')\n\
except urllib.error.HTTPError as e:\n    print(e.code)\n\
except Exception:\n    print('000')\n\
EOF\n\
{PY} /tmp/get.py '{url}'"
    );
    sh_in(ep, &cmd).await
}

/// A CONNECT through the seat's proxy to `host:443`, then a plain GET over the tunnel (the
/// test's "443" speaks HTTP): the first line of the proxy's answer and the body, if any.
async fn connect_via_proxy(ep: &DaemonEndpoint, host: &str) -> String {
    let cmd = format!(
        "cat > /tmp/connect.py <<'EOF'\n\
import os, socket, sys\n\
p = os.environ['HTTPS_PROXY'].split('//')[1].split(':')\n\
s = socket.create_connection((p[0], int(p[1])), 5)\n\
s.sendall(('CONNECT %s:443 HTTP/1.1\\r\\nHost: %s:443\\r\\n\\r\\n' % (sys.argv[1], sys.argv[1])).encode())\n\
head = s.recv(4096).decode(errors='replace')\n\
print(head.split('\\r\\n')[0])\n\
if ' 200' in head.split('\\r\\n')[0]:\n    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n    data = b''\n    while True:\n        c = s.recv(4096)\n        if not c: break\n        data += c\n    print(data.decode(errors='replace').split('\\r\\n\\r\\n', 1)[-1], end='')\n\
EOF\n\
{PY} /tmp/connect.py '{host}'"
    );
    sh_in(ep, &cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microvm_seats_reach_only_what_their_policy_allows() {
    let test = "microvm_seats_reach_only_what_their_policy_allows";
    if skipped(test) {
        return;
    }
    let t = tag();
    let mut inet = Internet::new(t, "198.51.100", "169.254.170.2");
    inet.serve();
    let data = tempfile::tempdir().expect("tempdir");
    let sbx_dir = sandbox_support::data_dir();
    let mv_net = seat_net(t, 217, "ct_mv", &inet, data.path());
    let sb_net = seat_net(t, 218, "ct_sb", &inet, sbx_dir.path());
    let _cleanup = Cleanup {
        data: data.path().to_path_buf(),
        nets: vec![mv_net.clone(), sb_net.clone()],
    };

    // A sandbox seat with a learner's server on it: no microVM seat may reach it.
    let mut sb_cfg = sandbox_support::config(sbx_dir.path(), sbx_dir.path().join("fake-daemon"));
    sb_cfg.net = sb_net.clone();
    let sandbox =
        clarateach_isolation::sandbox::SandboxBackend::new(sb_cfg).expect("sandbox backend");
    sandbox_support::fake_daemon(sbx_dir.path());
    let sb_key = SeatKey {
        workshop_id: format!("ws-sbnet-{t}"),
        seat: 1,
    };
    let mut sb_spec = spec(&sb_key, NetworkPolicy::Open);
    sb_spec.env.clear();
    sandbox.create(&sb_spec).await.expect("sandbox create");
    let sb_ep = sandbox.start(&sb_key).await.expect("sandbox start");
    sandbox_support::ok(
        &sb_ep,
        &format!("nohup {PY} -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &"),
    )
    .await;
    sandbox_support::ok(&sb_ep, &format!("for i in $(seq 50); do {PY} -c \"import socket;socket.create_connection(('127.0.0.1',8000),1)\" 2>/dev/null && exit 0; sleep 0.1; done; exit 1")).await;
    let sb_addr = sandbox
        .net()
        .addrs(&sb_key)
        .expect("sandbox seat addrs")
        .seat;

    // Host services a learner would go for: a loopback port and a port on every address.
    let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let lo_port = lo.local_addr().expect("addr").port();
    let any = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let any_port = any.local_addr().expect("addr").port();

    let mut backend = MicrovmBackend::new(microvm_config(data.path(), &mv_net)).expect("backend");
    let ws = format!("ws-mvnet-{t}");
    let key = |seat| SeatKey {
        workshop_id: ws.clone(),
        seat,
    };
    let allow_list = NetworkPolicy::Allow {
        allow: vec![
            "api.example.test".into(),
            "rebind.example.test".into(),
            "meta.example.test".into(),
        ],
    };
    backend
        .create(&spec(&key(1), NetworkPolicy::Open))
        .await
        .expect("create open");
    backend
        .create(&spec(&key(2), allow_list.clone()))
        .await
        .expect("create allow");
    let started = Instant::now();
    let (k1, k2) = (key(1), key(2));
    let (open, allow) = tokio::join!(backend.start(&k1), backend.start(&k2));
    let (open, allow) = (open.expect("start open"), allow.expect("start allow"));
    eprintln!(
        "two networked microVM seats ready in {} ms ({:?})",
        started.elapsed().as_millis(),
        backend.accel().await
    );
    let a1 = backend.net().addrs(&key(1)).expect("seat 1 addrs");
    let a2 = backend.net().addrs(&key(2)).expect("seat 2 addrs");
    assert_eq!(tcp(&open).ip(), std::net::IpAddr::V4(a1.seat));
    assert_eq!(tcp(&allow).ip(), std::net::IpAddr::V4(a2.seat));
    for a in [a1, a2] {
        assert!(
            Path::new("/sys/class/net")
                .join(a.veth())
                .join("tun_flags")
                .exists(),
            "{} is a TAP",
            a.veth()
        );
        let v6 =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", a.veth()))
                .unwrap_or_default();
        assert_ne!(v6.trim(), "0", "the TAP has IPv6");
    }

    // open: eth0 has the /30 seat address, the internet answers by address and through DNS.
    assert_eq!(
        sh_in(&open, "ip -o -4 addr show dev eth0 | awk '{print $4}'").await,
        format!("{}/30", a1.seat)
    );
    assert_eq!(
        get(&open, &format!("http://{}/", inet.server(10))).await,
        "200\nhello from the internet"
    );
    assert_eq!(
        get(&open, &format!("http://{}:443/", inet.server(11))).await,
        "200\nhello from the internet"
    );
    assert_eq!(
        sh_in(&open, "cat /etc/resolv.conf").await,
        format!("nameserver {}", a1.host)
    );
    let dns = format!(
        "{PY} -c \"import socket;s=socket.socket(2,2);s.settimeout(3);s.sendto(b'abc',('{}',53));print(s.recv(64))\"",
        a1.host
    );
    assert_eq!(sh_in(&open, &dns).await, "b'cba'");
    // ...but not the host, its gateway's other ports, metadata, another seat or a sandbox seat.
    assert!(!connects(&open, "127.0.0.1", lo_port).await);
    assert!(
        !connects(&open, "10.0.2.2", lo_port).await,
        "user-net's alias of the host loopback"
    );
    let mut host = host_addrs();
    assert!(host.contains(&a1.host.to_string()) && host.contains(&inet.server(1)));
    host.sort();
    for addr in &host {
        assert!(
            !connects(&open, addr, any_port).await,
            "open seat reached the host at {addr}"
        );
    }
    assert!(
        !connects(&open, &a1.host.to_string(), 3128).await,
        "a proxy port on its gateway"
    );
    assert!(
        !connects(&open, &a2.host.to_string(), 3128).await,
        "another seat's proxy"
    );
    assert_eq!(
        get(&open, &format!("http://{}/", inet.metadata)).await,
        "000",
        "the metadata stand-in answered"
    );
    assert!(
        !connects(&open, &sb_addr.to_string(), 8000).await,
        "reached a sandbox seat"
    );
    sh_in(
        &allow,
        &format!("nohup {PY} -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1"),
    )
    .await;
    assert!(
        !connects(&open, &a2.seat.to_string(), 8000).await,
        "reached another microVM seat"
    );
    let (_, code) = microvm_support::run(
        tcp(&open),
        &open.token,
        "ip route add 198.51.100.0/24 dev eth0",
    )
    .await;
    assert_ne!(code, 0, "the learner changed the guest's routes");

    // allow: the listed names through the proxy (both forms), nothing else, no route out.
    assert_eq!(
        sh_in(&allow, "echo $HTTPS_PROXY").await,
        format!("http://{}:3128", a2.host)
    );
    assert_eq!(
        get(&allow, "http://api.example.test/").await,
        "200\nhello from the internet"
    );
    assert_eq!(
        connect_via_proxy(&allow, "api.example.test").await,
        "HTTP/1.1 200 Connection established\nhello from the internet"
    );
    assert_eq!(get(&allow, "http://evil.example.test/").await, "403");
    assert!(
        !connect_via_proxy(&allow, "evil.example.test")
            .await
            .contains(" 200"),
        "CONNECT to an unlisted name"
    );
    assert_eq!(
        get(&allow, "http://rebind.example.test/").await,
        "403",
        "DNS rebinding to loopback"
    );
    assert_eq!(get(&allow, "http://meta.example.test/").await, "403");
    assert!(!connects(&allow, &inet.server(10), 80).await, "direct");
    assert!(!connects(&allow, &a2.host.to_string(), any_port).await);
    assert!(!connects(&allow, &sb_addr.to_string(), 8000).await);
    assert!(
        sh_in(&allow, "ip route")
            .await
            .lines()
            .all(|l| !l.starts_with("default")),
        "an allow seat has no default route"
    );

    // The API key reached both guests, and no file under the data dir holds it.
    assert_eq!(sh_in(&allow, "echo $ANTHROPIC_API_KEY").await, SECRET);
    let on_disk = scan::files_containing(data.path(), SECRET.as_bytes());
    assert!(on_disk.is_empty(), "the API key is on disk: {on_disk:?}");

    // An agent restart: the backend goes (its proxy and DNS forwarder with it), a new one
    // adopts the running VMs and brings them back.
    drop(backend);
    backend = MicrovmBackend::new(microvm_config(data.path(), &mv_net)).expect("backend");
    let adopted = backend.adopt().await.expect("adopt");
    assert_eq!(adopted.len(), 2, "{adopted:?}");
    assert_eq!(
        get(&allow, "http://api.example.test/").await,
        "200\nhello from the internet",
        "the proxy came back"
    );
    assert_eq!(get(&allow, "http://evil.example.test/").await, "403");
    assert_eq!(
        sh_in(&open, &dns).await,
        "b'cba'",
        "the DNS forwarder came back"
    );
    assert!(!connects(&open, &a1.host.to_string(), any_port).await);

    // Stop and destroy leave no TAP, and the last seat takes the nft table with it.
    backend.stop(&key(1)).await.expect("stop");
    assert!(
        !Path::new("/sys/class/net").join(a1.veth()).exists(),
        "stop left the TAP"
    );
    for seat in [1, 2] {
        backend.destroy(&key(seat), true).await.expect("destroy");
    }
    for a in [a1, a2] {
        assert!(
            !Path::new("/sys/class/net").join(a.veth()).exists(),
            "destroy left {}",
            a.veth()
        );
    }
    assert!(
        !sh(&format!("nft list table inet {}", mv_net.nft_table)),
        "the nft table outlived the last seat"
    );
    assert!(microvm_support::qemu_pids_mentioning(&data.path().to_string_lossy()).is_empty());
    sandbox
        .destroy(&sb_key, true)
        .await
        .expect("sandbox destroy");
    drop((lo, any));
}

/// TAP setup alone (slot, TAP, forwarding, DNS forwarder, nft delta) and teardown, for an open
/// seat, against a table that already holds 30 other seats: p50/p99 over 200 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_tap_setup() {
    let test = "bench_tap_setup";
    if skipped(test) {
        return;
    }
    let t = tag();
    let dir = tempfile::tempdir().expect("tempdir");
    // No internet needed: nothing is sent, and `lo` as the egress keeps it so.
    let net = NetConfig {
        seat_subnet: format!("10.219.{}.0/22", (t % 60) * 4)
            .parse()
            .expect("subnet"),
        egress_iface: Some("lo".into()),
        nft_table: format!("ct_bn_{t}"),
        resolver: Resolver::parse("").expect("empty hosts"),
        dns_upstream: Some("127.0.0.1:53".parse().expect("addr")),
        ..NetConfig::default()
    };
    let _cleanup = Cleanup {
        data: dir.path().to_path_buf(),
        nets: vec![net.clone()],
    };
    let m = NetManager::new(net, dir.path()).expect("manager");
    let key = |seat| SeatKey {
        workshop_id: "ws-bench".into(),
        seat,
    };
    for seat in 1..=30 {
        m.setup_tap(&key(seat), &NetworkPolicy::Open, None)
            .await
            .expect("setup");
    }
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t0 = Instant::now();
        m.setup_tap(&key(99), &NetworkPolicy::Open, None)
            .await
            .expect("setup");
        up.push(t0.elapsed());
        let t0 = Instant::now();
        m.teardown(&key(99)).await.expect("teardown");
        down.push(t0.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0
    };
    let line = format!(
        "TAP setup (open seat, 30 others in the table), 200 rounds: setup p50 {:.1} ms p99 {:.1} ms; teardown p50 {:.1} ms p99 {:.1} ms",
        pct(&mut up, 0.5),
        pct(&mut up, 0.99),
        pct(&mut down, 0.5),
        pct(&mut down, 0.99)
    );
    eprintln!("{line}");
    println!("{line}");
    for seat in 1..=30 {
        m.release(&key(seat)).await.expect("release");
    }
}

/// A `none` seat's TAP (Firecracker has no user-mode networking): no gateway, no resolver, no
/// proxy; nft lets nothing in from it but replies to the host's own connections, forwards
/// nothing, and the rules come back after an agent restart. No VM needed: the kernel objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_none_seats_tap_is_closed_and_survives_a_restart() {
    let test = "a_none_seats_tap_is_closed_and_survives_a_restart";
    let why = missing_tool(&["nft", "ip"])
        .or_else(|| (!nix::unistd::Uid::effective().is_root()).then(|| "needs root".into()))
        .or_else(|| {
            (!Path::new("/dev/net/tun").exists()).then(|| "/dev/net/tun is missing".into())
        });
    if let Some(why) = why {
        eprintln!("SKIPPED {test}: {why}");
        println!("SKIPPED {test}: {why}");
        return;
    }
    let t = tag();
    let dir = tempfile::tempdir().expect("tempdir");
    let net = NetConfig {
        seat_subnet: format!("10.221.{}.0/24", t % 250).parse().expect("subnet"),
        egress_iface: Some("lo".into()),
        nft_table: format!("ct_cl_{t}"),
        resolver: Resolver::parse("").expect("empty hosts"),
        dns_upstream: Some("127.0.0.1:53".parse().expect("addr")),
        ..NetConfig::default()
    };
    let _cleanup = Cleanup {
        data: dir.path().to_path_buf(),
        nets: vec![net.clone()],
    };
    let key = SeatKey {
        workshop_id: "ws-closed".into(),
        seat: 1,
    };
    let m = NetManager::new(net.clone(), dir.path()).expect("manager");
    let tap = m
        .setup_tap(&key, &NetworkPolicy::None, None)
        .await
        .expect("setup");
    assert_eq!(tap.mode, clarateach_isolation::netpolicy::SeatMode::Closed);
    assert_eq!((tap.gateway(), tap.dns()), (None, None));
    assert!(tap.env.is_empty());
    assert!(Path::new("/sys/class/net")
        .join(&tap.ifname)
        .join("tun_flags")
        .exists());
    // The table's chains are fixed; a seat is elements of its sets. A closed seat's TAP is a
    // seat interface with its own address (so the input chain's established-reply rule covers
    // it) and nothing else: no service on its gateway, no way out, no NAT.
    let set = |name: &str| {
        let out = std::process::Command::new("nft")
            .args(["list", "set", "inet", &net.nft_table, name])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let quoted = format!("\"{}\"", tap.ifname);
    assert!(set("seat_ifs").contains(&quoted), "{}", set("seat_ifs"));
    assert!(set("seat_src").contains(&quoted), "{}", set("seat_src"));
    for none in ["seat_svc", "open_src"] {
        assert!(
            !set(none).contains(&quoted),
            "a closed seat is in {none}: {}",
            set(none)
        );
    }
    assert!(
        !set("masq").contains(&tap.addrs.seat.to_string()),
        "a closed seat is masqueraded"
    );
    let input = {
        let out = std::process::Command::new("nft")
            .args(["list", "chain", "inet", &net.nft_table, "seat_in"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(input.contains("ct state established accept"), "{input}");
    // An agent restart: the TAP stayed in the kernel, the rules are brought back.
    drop(m);
    sh(&format!("nft delete table inet {}", net.nft_table));
    let m = NetManager::new(net.clone(), dir.path()).expect("manager");
    m.readopt_tap(&key, &NetworkPolicy::None)
        .await
        .expect("readopt");
    assert_eq!(
        m.addrs(&key),
        Some(tap.addrs),
        "same slot after the restart"
    );
    assert!(
        set("seat_ifs").contains(&quoted),
        "rules back after the restart"
    );
    m.release(&key).await.expect("release");
    assert!(!Path::new("/sys/class/net").join(&tap.ifname).exists());
    assert!(!sh(&format!("nft list table inet {}", net.nft_table)));
}
