//! The multi-host harness (issue 13): PostgreSQL, `serve` replicas and sandbox agents, each
//! agent in a network namespace of its own that the harness creates, as if every agent were a
//! host of its own.
//!
//! Network: one bridge in the root namespace holds the gateway address `10.213.N.1/24` (N: the
//! first third octet not in use on this machine); agent `i` lives in namespace `ctmh<pid><x>-<i>`
//! behind a veth pair on that bridge, at `10.213.N.(11+i)`. The replicas listen on the gateway
//! address only; the agents reach them over their veth, and the replicas' gateways reach the
//! agents' data listeners the same way. The namespaces have no default route and the root
//! namespace does not forward, so nothing a test does can leave this machine. [`TestNet`]'s Drop
//! removes every link and namespace even when the test panics, after [`Cluster`]'s processes
//! (and the seats they left behind) are killed.
//!
//! Object store (with [`ClusterSpec::s3s_fs`]): an s3s-fs server of the test's own on the
//! gateway address ([`ObjectStoreServer`]; scripts/s3.sh's listens on the root namespace's
//! loopback, which the agents in their namespaces cannot reach); the replicas and the agents
//! run with `--object-store` and its credentials, the replicas with `--host-loss-grace`.
//!
//! Steps are methods ([`Cluster::kill_replica`], [`Cluster::kill_agent`],
//! [`Cluster::restart_agent`], [`Cluster::lose_host`], [`Cluster::seats_on`],
//! [`Cluster::learner_terminal`], ...) so a test composes them and a new
//! step (host loss) slots in after any other.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clarateach_client::Client;

use crate::support::{agent_token_with, data_dir, eventually, instructor_token, DataDir, Proc};

/// The `clarateach` binary the processes run: `CLARATEACH_BIN` (e.g. a release build for a
/// benchmark) or the one cargo built for this test.
pub fn bin() -> String {
    std::env::var("CLARATEACH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| crate::support::BIN.to_string())
}

/// Why the multi-host harness cannot run here (root, bubblewrap, `ip`, `nsenter`), if it cannot.
pub fn skip_reason() -> Option<String> {
    if let Some(why) = crate::support::skip_reason() {
        return Some(why);
    }
    for tool in ["/usr/sbin/ip", "/usr/bin/nsenter"] {
        if !Path::new(tool).exists() {
            return Some(format!("needs {tool} (network namespaces)"));
        }
    }
    None
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The bridge, veth pairs and network namespaces of one test; removed on drop.
pub struct TestNet {
    tag: String,
    octet: u8,
    bridge: Option<String>,
    /// (namespace, root-side veth) per agent, in creation order.
    hosts: Vec<(String, String)>,
}

impl TestNet {
    /// Creates the bridge and `n` namespaces (at most 40), after removing those a killed
    /// earlier run left (its Drop never ran).
    pub fn create(n: usize) -> Result<Self, String> {
        assert!(n <= 40, "at most 40 test hosts");
        // Tests of one binary run in parallel: one creates at a time (the address check below
        // then sees the other's bridge), each under a tag of its own.
        static CREATING: std::sync::Mutex<u8> = std::sync::Mutex::new(0);
        let mut serial = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        *serial = serial.wrapping_add(1);
        let tag = format!(
            "ctmh{}{}",
            std::process::id() % 100_000,
            (b'a' + *serial % 26) as char
        );
        remove_stale();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .map_err(|e| format!("ip addr: {e}"))?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let octet = (20u8..250)
            .find(|o| !used.contains(&format!("10.213.{o}.")))
            .ok_or("no free 10.213.N.0/24 on this machine")?;
        let mut net = Self {
            tag: tag.clone(),
            octet,
            bridge: None,
            hosts: Vec::new(),
        };
        let bridge = format!("{tag}b");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{tag}-{i}");
            let outside = format!("{tag}v{i}");
            ip(&["netns", "add", &ns])?;
            net.hosts.push((ns.clone(), outside.clone()));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let addr = format!("{}/24", net.host(i));
            for args in [
                vec!["addr", "add", addr.as_str(), "dev", "eth0"],
                vec!["link", "set", "eth0", "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                let mut full = vec!["-n", ns.as_str()];
                full.extend(args);
                ip(&full)?;
            }
        }
        Ok(net)
    }

    /// The root namespace's address on the bridge (the replicas listen here).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.octet, 1)
    }

    /// Test host `i`'s address.
    pub fn host(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.octet, 11 + i as u8)
    }

    /// Test host `i`'s namespace, for `nsenter --net=`.
    pub fn netns_path(&self, i: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.hosts[i].0)
    }

    /// Takes test host `i` off the network (its veth pair is deleted): its address stops
    /// answering, as a dead machine's does.
    pub fn unplug(&mut self, i: usize) {
        let _ = ip(&["link", "del", &self.hosts[i].1]);
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for (ns, outside) in self.hosts.drain(..).rev() {
            // Deleting one end of a veth pair deletes both, even while a process (a seat not
            // killed yet) keeps the namespace alive.
            let _ = ip(&["link", "del", &outside]);
            let _ = ip(&["netns", "del", &ns]);
        }
        if let Some(bridge) = self.bridge.take() {
            let _ = ip(&["link", "del", &bridge]);
        }
    }
}

/// Removes the bridges, veths and namespaces of runs whose process is gone (named
/// `ctmh<pid mod 100000><letter>...`; a live process of that number keeps them).
fn remove_stale() {
    let me = std::process::id() % 100_000;
    let alive = |tag: &str| {
        let Ok(n) = tag.parse::<u32>() else {
            return true;
        };
        n == me
            || std::fs::read_dir("/proc").is_ok_and(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| p % 100_000 == n)
                })
            })
    };
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    // `ip -o link` lines: "7: ctmh123v0@if2: <...>"; `ip netns list`: "ctmh123-0 (id: 3)".
    let links = list(&["-o", "link"]);
    for name in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
    {
        if let Some(rest) = name.strip_prefix("ctmh") {
            let tag: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !alive(&tag) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
    let namespaces = list(&["netns", "list"]);
    for ns in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if let Some(rest) = ns.strip_prefix("ctmh") {
            let tag: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !alive(&tag) {
                let _ = ip(&["netns", "del", ns]);
            }
        }
    }
}

/// A free TCP port on `addr`.
pub fn free_port_on(addr: Ipv4Addr) -> u16 {
    let l = TcpListener::bind(SocketAddr::from((addr, 0))).expect("bind on the test bridge");
    l.local_addr().expect("addr").port()
}

/// How a [`Cluster`] is laid out.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub replicas: usize,
    pub agents: usize,
    /// Seat slots per agent (`agent --capacity`).
    pub capacity: u32,
    /// Agent heartbeat (`serve --heartbeat-ms`).
    pub heartbeat_ms: u64,
    /// The s3s-fs binary ([`s3s_fs_bin`]): seats are synced to an [`ObjectStoreServer`] and
    /// a lost host's seats move after [`Self::host_loss_grace`]. `None`: no object store.
    pub s3s_fs: Option<PathBuf>,
    /// `serve --host-loss-grace` (with [`Self::s3s_fs`]).
    pub host_loss_grace: Duration,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            agents: 3,
            capacity: 50,
            heartbeat_ms: 300,
            s3s_fs: None,
            host_loss_grace: Duration::from_secs(2),
        }
    }
}

/// Replicas and agents on one PostgreSQL database and one data dir (every replica has the same
/// keys, as an operator copies them). Fields drop in order: processes, data dir, network.
pub struct Cluster {
    replicas: Vec<Option<Proc>>,
    agents: Vec<Option<Proc>>,
    /// After the processes that use it, before the data dir it stores into.
    pub object_store: Option<ObjectStoreServer>,
    pub bases: Vec<String>,
    pub agent_ids: Vec<String>,
    agent_tokens: Vec<String>,
    capacity: u32,
    pub instructor: String,
    pub db: String,
    pub dir: PathBuf,
    _tmp: DataDir,
    pub net: TestNet,
}

impl Cluster {
    /// Starts the replicas, then the agents (each told every replica's URL, replica 0 first:
    /// they register there), and waits until every agent registered.
    pub async fn start(db: &str, spec: &ClusterSpec) -> Self {
        let net = TestNet::create(spec.agents).expect("create the test network");
        let (tmp, dir) = data_dir();
        let object_store = spec.s3s_fs.as_deref().map(|bin| {
            ObjectStoreServer::start(bin, net.gateway(), &dir.join("s3"), &dir.join("s3s-fs.log"))
        });
        let mut replicas = Vec::new();
        let mut bases = Vec::new();
        for r in 0..spec.replicas {
            let port = free_port_on(net.gateway());
            let mut cmd = Command::new(bin());
            cmd.args(["serve", "--listen"])
                .arg(format!("{}:{port}", net.gateway()))
                .arg("--data-dir")
                .arg(&dir)
                .args(["--heartbeat-ms", &spec.heartbeat_ms.to_string()])
                .args(["--database-url", db]);
            if let Some(s3) = &object_store {
                cmd.args(["--object-store", &s3.url()])
                    .arg("--host-loss-grace")
                    .arg(format!("{}ms", spec.host_loss_grace.as_millis()))
                    .envs(s3.env());
            }
            replicas.push(Some(Proc::start_command(
                &dir,
                &replica_name(r),
                cmd,
                "control plane on",
                "info",
            )));
            bases.push(format!("http://{}:{port}", net.gateway()));
        }
        let instructor = instructor_token(&dir);
        let mut cluster = Self {
            replicas,
            agents: Vec::new(),
            object_store,
            bases,
            agent_ids: Vec::new(),
            agent_tokens: Vec::new(),
            capacity: spec.capacity,
            instructor,
            db: db.to_string(),
            dir,
            _tmp: tmp,
            net,
        };
        for i in 0..spec.agents {
            let id = format!("{}-host{i}", cluster.net.tag());
            let token = agent_token_with(&cluster.dir, &id, &["--database-url", db]);
            cluster.agent_ids.push(id);
            cluster.agent_tokens.push(token);
            let agent = cluster.spawn_agent(i);
            cluster.agents.push(Some(agent));
        }
        for i in 0..spec.agents {
            cluster
                .wait_registered(i, 0, 0, Duration::from_secs(30))
                .await;
        }
        cluster
    }

    /// Starts agent `i` in its namespace, told every replica's URL (replica 0 first: it
    /// registers there), listening on its host address.
    fn spawn_agent(&self, i: usize) -> Proc {
        let id = &self.agent_ids[i];
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.net.netns_path(i).display()))
            .arg(bin())
            .args([
                "agent",
                "--id",
                id,
                "--control-plane",
                &self.bases.join(","),
            ])
            .args(["--token", &self.agent_tokens[i], "--data-dir"])
            .arg(self.agent_data_dir(i))
            .arg("--listen")
            .arg(format!("{}:0", self.net.host(i)))
            .args(["--capacity", &self.capacity.to_string()]);
        if let Some(s3) = &self.object_store {
            // nsenter hands its environment on to the agent.
            cmd.args(["--object-store", &s3.url()]).envs(s3.env());
        }
        let agent = Proc::start_command(&self.dir, id, cmd, "listening on", "info");
        let theirs = std::fs::read_link(format!("/proc/{}/ns/net", agent.child.id()));
        let ours = std::fs::read_link("/proc/self/ns/net");
        assert!(
            matches!((&theirs, &ours), (Ok(t), Ok(o)) if t != o),
            "agent {id} runs in a network namespace of its own ({theirs:?} vs {ours:?})"
        );
        agent
    }

    /// Agent `i`'s data dir (its seats' volumes).
    pub fn agent_data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}-data", self.agent_ids[i]))
    }

    /// Starts agent `i` again after [`Self::kill_agent`] (same id, token and data dir: it
    /// re-adopts its seats); wait for it with [`Self::wait_registered`].
    pub fn restart_agent(&mut self, i: usize) {
        assert!(self.agents[i].is_none(), "agent {i} is running");
        self.agents[i] = Some(self.spawn_agent(i));
    }

    /// Host `i` lost for good, as when its machine dies: `kill -9` of its agent and of every
    /// seat process it started, its seats' file systems unmounted, and its veth deleted, so
    /// nothing answers at its address any more. Its data dir stays where it is (a dead
    /// machine's disk); nothing may read it to bring a seat back. The instant it was lost.
    pub fn lose_host(&mut self, i: usize) -> Instant {
        if let Some(p) = self.agents[i].take() {
            let _ = p.stop("-KILL");
        }
        let data = self.agent_data_dir(i);
        crate::support::kill_processes_naming(&data);
        let _ = clarateach_isolation::sandbox::store::unmount_under(&data);
        self.net.unplug(i);
        Instant::now()
    }

    /// Replica `r`'s base URL.
    pub fn base(&self, r: usize) -> &str {
        &self.bases[r]
    }

    /// An instructor client of replica `r`.
    pub fn admin(&self, r: usize) -> Client {
        Client::new(self.base(r), Some(self.instructor.clone())).expect("client")
    }

    /// `kill -9` of replica `r`; the instant it was sent.
    pub fn kill_replica(&mut self, r: usize) -> Instant {
        let p = self.replicas[r].take().expect("replica running");
        let _ = p.stop("-KILL");
        Instant::now()
    }

    /// `kill -9` of agent `i` (its seats keep running until the harness ends, as on a host
    /// whose agent died; a host-loss step also removes them); the instant it was sent.
    pub fn kill_agent(&mut self, i: usize) -> Instant {
        let p = self.agents[i].take().expect("agent running");
        let _ = p.stop("-KILL");
        Instant::now()
    }

    /// Bytes in agent `i`'s log so far (for [`Self::wait_registered`] after an event).
    pub fn agent_log_len(&self, i: usize) -> usize {
        std::fs::metadata(self.dir.join(format!("{}.log", self.agent_ids[i])))
            .map_or(0, |m| m.len() as usize)
    }

    /// The replicas agent `i`'s log says it registered with after byte `from`, in order.
    fn registrations(&self, i: usize, from: usize) -> Vec<usize> {
        let log = std::fs::read_to_string(self.dir.join(format!("{}.log", self.agent_ids[i])))
            .unwrap_or_default();
        let Some(tail) = log.get(from..) else {
            return Vec::new();
        };
        tail.lines()
            .filter(|l| l.contains("connected to the control plane"))
            .filter_map(|l| {
                let url = l
                    .split("control_plane=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?;
                let url = url.trim_matches('"').trim_end_matches('/');
                self.bases.iter().position(|b| b == url)
            })
            .collect()
    }

    /// Whether agent `i`'s log says, after byte `from`, that it registered with replica `r`.
    pub fn registered_with(&self, i: usize, r: usize, from: usize) -> bool {
        self.registrations(i, from).contains(&r)
    }

    /// Whether replica `r` holds agent `i` now: the last registration in its log is with `r`
    /// (an agent that left a stalled replica before a kill has nothing left to move).
    pub fn held_by(&self, i: usize, r: usize) -> bool {
        self.registrations(i, 0).last() == Some(&r)
    }

    /// Waits until agent `i` registered with replica `r` after log byte `from`.
    pub async fn wait_registered(&self, i: usize, r: usize, from: usize, timeout: Duration) {
        eventually(
            &format!("agent {} registered with replica {r}", self.agent_ids[i]),
            timeout,
            || async { self.registered_with(i, r, from).then_some(()) },
        )
        .await;
    }

    /// Waits until replica `r` holds agent `i` ([`Self::held_by`]).
    pub async fn wait_held_by(&self, i: usize, r: usize, timeout: Duration) {
        eventually(
            &format!("agent {} held by replica {r}", self.agent_ids[i]),
            timeout,
            || async { self.held_by(i, r).then_some(()) },
        )
        .await;
    }

    /// Seats of `workshop_id` the store (through replica `r`) places on agent `i`.
    pub async fn seats_on(&self, r: usize, workshop_id: &str, i: usize) -> Vec<u32> {
        let seats = self
            .admin(r)
            .list_seats(workshop_id)
            .await
            .expect("list seats");
        seats
            .into_iter()
            .filter(|s| s.agent_id.as_deref() == Some(self.agent_ids[i].as_str()))
            .map(|s| s.seat)
            .collect()
    }

    /// A real terminal round trip for the learner with `token` through replica `r`: opens the
    /// WebSocket terminal, runs `echo` of a marker and waits for the shell's answer.
    pub async fn learner_terminal(&self, r: usize, token: &str, marker: &str) -> bool {
        crate::support::terminal_round_trip(self.base(r), token, marker).await
    }
}

fn replica_name(r: usize) -> String {
    format!("serve-{}", (b'a' + r as u8) as char)
}

/// The `p`-th percentile (0..=100) of `sorted` (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The s3s-fs binary scripts/s3.sh installs (`CLARATEACH_S3S_ROOT` or
/// `$HOME/.cache/clarateach/s3s-0.14.1`, `bin/s3s-fs`), if it is there.
pub fn s3s_fs_bin() -> Option<PathBuf> {
    let root = std::env::var_os("CLARATEACH_S3S_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clarateach/s3s-0.14.1"))
        })?;
    let bin = root.join("bin/s3s-fs");
    bin.is_file().then_some(bin)
}

/// `n` random bytes from the kernel, in hex (test credentials).
fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A real S3 server (s3s-fs over a directory, one bucket) listening on one address of the
/// test network, with fresh credentials; killed on drop.
pub struct ObjectStoreServer {
    child: std::process::Child,
    /// `http://ADDR:PORT`.
    pub endpoint: String,
    pub bucket: String,
    /// The directory that holds the bucket (a directory per bucket, a file per object).
    pub data: PathBuf,
    access_key: String,
    secret_key: String,
}

impl ObjectStoreServer {
    /// Starts `bin` on `addr` (a free port) over `data`, logging to `log`, and waits until it
    /// accepts connections.
    pub fn start(bin: &Path, addr: Ipv4Addr, data: &Path, log: &Path) -> Self {
        let bucket = "clarateach-multihost".to_string();
        std::fs::create_dir_all(data.join(&bucket)).expect("create the bucket dir");
        let (access_key, secret_key) = (random_hex(12), random_hex(24));
        let port = free_port_on(addr);
        let log_file = std::fs::File::create(log).expect("s3s-fs log");
        let err_file = log_file.try_clone().expect("s3s-fs log");
        // Credentials on the command line of a test server on a test-only bridge.
        let mut child = Command::new(bin)
            .args(["--host", &addr.to_string(), "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(data)
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .expect("spawn s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        let at = SocketAddr::from((addr, port));
        while std::net::TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "s3s-fs did not listen on {at} ({exited:?}); log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://{at}"),
            bucket,
            data: data.to_path_buf(),
            access_key,
            secret_key,
        }
    }

    /// `--object-store` for `serve` and `agent`.
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// The environment `serve` and `agent` read the endpoint and credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }
}

impl Drop for ObjectStoreServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
