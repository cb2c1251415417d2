//! The test's own "internet" for the seat-network tests, kept on this machine: a network
//! namespace joined to the root namespace by a veth in a TEST-NET /24, serving HTTP on `.10`
//! and `.11` (ports 80 and 443), a DNS stand-in on `.10:53` (answers every datagram reversed)
//! and a link-local metadata stand-in routed into the namespace, so even a failing block keeps
//! every packet here. Seats NAT out of that veth only (the egress interface is the test's).
//! Each test picks its own /24 and metadata address, so tests of different binaries can run at
//! once.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PY: &str = "/usr/bin/python3";

pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn must(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first host tool of `tools` that is missing, as a skip reason.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    tools
        .iter()
        .find(|t| !sh(&format!("command -v {t}")))
        .map(|t| format!("{t} is not installed"))
}

/// The test's internet; everything is removed on drop, also when an assertion fails.
pub struct Internet {
    pub ns: String,
    pub veth: String,
    /// `a.b.c` of the /24: the host side is `.1`, servers `.10` and `.11`.
    pub prefix: String,
    pub metadata: String,
    servers: Vec<Child>,
    www: tempfile::TempDir,
}

impl Internet {
    /// `prefix` like "198.51.100" (a TEST-NET), `metadata` a link-local stand-in address.
    pub fn new(tag: u32, prefix: &str, metadata: &str) -> Self {
        let ns = format!("ctinet-{tag}");
        let veth = format!("cti{tag:x}");
        let www = tempfile::tempdir().expect("tempdir");
        let net = Self {
            ns: ns.clone(),
            veth: veth.clone(),
            prefix: prefix.to_string(),
            metadata: metadata.to_string(),
            servers: Vec::new(),
            www,
        };
        must(&format!("ip netns add {ns}"));
        must(&format!(
            "ip link add {veth} type veth peer name eth0 netns {ns} && \
             ip addr add {prefix}.1/32 dev {veth} && ip link set {veth} up && \
             ip route add {prefix}.10/32 dev {veth} && ip route add {prefix}.11/32 dev {veth} && \
             ip route add {metadata}/32 dev {veth}"
        ));
        // Host routes (/32), not the whole /24: a TEST-NET address may be something real on
        // the machine running the tests (203.0.113.80 is an apt mirror on some CI hosts).
        must(&format!(
            "ip -n {ns} link set lo up && ip -n {ns} addr add {prefix}.10/32 dev eth0 && \
             ip -n {ns} addr add {prefix}.11/32 dev eth0 && \
             ip -n {ns} addr add {metadata}/32 dev eth0 && ip -n {ns} link set eth0 up && \
             ip -n {ns} route add {prefix}.1/32 dev eth0"
        ));
        net
    }

    pub fn server(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    /// Starts the HTTP servers and the DNS stand-in, and waits until they answer.
    pub fn serve(&mut self) {
        std::fs::write(
            self.www.path().join("index.html"),
            "hello from the internet\n",
        )
        .expect("write");
        // 64 MiB for the proxy throughput figures.
        std::fs::write(self.www.path().join("big"), vec![b'x'; 64 << 20]).expect("write");
        for port in ["80", "443"] {
            let child = Command::new("ip")
                .args(["netns", "exec", &self.ns, PY, "-m", "http.server", port])
                .args(["--bind", "0.0.0.0", "--directory"])
                .arg(self.www.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("http server");
            self.servers.push(child);
        }
        let dns = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('{}',53))\nwhile True:\n d,a=s.recvfrom(4096)\n s.sendto(d[::-1],a)\n",
            self.server(10)
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, PY, "-c", &dns])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dns server");
        self.servers.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = self.server(10);
        while !(sh(&format!(
            "curl -sf -m 1 http://{s}:80/ && curl -sf -m 1 http://{s}:443/"
        ))) {
            assert!(Instant::now() < deadline, "test internet did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A `NAME IP` hosts file for the proxy: two servers, a name rebinding to loopback and one
    /// naming the metadata stand-in.
    pub fn hosts_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("egress-hosts");
        std::fs::write(
            &path,
            format!(
                "api.example.test {}\nevil.example.test {}\n\
                 rebind.example.test 127.0.0.1\nmeta.example.test {}\n",
                self.server(10),
                self.server(11),
                self.metadata
            ),
        )
        .expect("write hosts");
        path
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        sh(&format!(
            "ip route del {}/32 dev {}",
            self.metadata, self.veth
        ));
        sh(&format!("ip link del {}", self.veth));
        sh(&format!("ip netns pids {} | xargs -r kill -9", self.ns));
        sh(&format!("ip netns del {}", self.ns));
    }
}

/// The host's global IPv4 addresses.
pub fn host_addrs() -> Vec<String> {
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
