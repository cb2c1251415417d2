//! A seat's network, for the sandbox backend: `limits.network` made real, enforced on the host.
//!
//! - `none`: no network objects at all; bwrap's `--unshare-net` leaves loopback only.
//! - `open` and `allow`: the agent (root) makes a network namespace per seat before bwrap starts,
//!   with a veth pair from a per-seat /30 of the agent's `--seat-subnet`, and the sandbox enters it
//!   (`setns` in the spawn's pre-exec, before dropping to the learner's uid). The agent's nft
//!   table (`nft`) drops everything from a seat to this host, its loopback, link-local/metadata,
//!   private ranges and other seats. `open` seats are masqueraded out of the egress interface and
//!   resolve names through a DNS forwarder on their gateway (`dns`); `allow` seats reach only an
//!   HTTP CONNECT proxy on their gateway (`proxy`), which applies the allow-list.
//!
//! The namespaces and the nft table live in the kernel, so seats keep their network across an
//! agent restart; the proxies and forwarders are tasks of the agent and `readopt` brings them
//! back. Slots are recorded in `<data>/net/<ws>/seat-NN.json` and reused after `release`.
//!
//! Forwarding: the kernel forwards a packet only when the interface it arrives on has
//! `net.ipv4.conf.<if>.forwarding=1`. The agent sets it on each open seat's veth and on the
//! egress interface, never the global `net.ipv4.ip_forward`; the forward chain drops every other
//! packet from or to a seat interface.

pub mod addr;
mod conntrack;
mod dns;
mod link;
mod netlink;
pub mod nft;
pub mod proxy;
pub mod tap;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::NetworkPolicy;
use serde::{Deserialize, Serialize};

pub use addr::{SeatSubnet, SeatSubnetError, SlotAddrs};
pub use nft::{SeatMode, DNS_PORT, PROXY_PORT};
pub use proxy::Resolver;
pub use tap::TapNet;

/// Default `--seat-subnet`: room for 16384 seats per agent.
pub const DEFAULT_SEAT_SUBNET: &str = "10.214.0.0/16";

/// Errors of the seat network, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("running `{cmd}` failed")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {step}")]
    Netlink {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("opening the network namespace {name}")]
    OpenNetns {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("setting {path}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the host has no IPv4 default route: give the egress interface explicitly")]
    NoDefaultRoute,
    #[error("{0:?} is not a usable interface or nft table name")]
    BadName(String),
    #[error("the seat subnet {0} is full")]
    SubnetFull(SeatSubnet),
    #[error("binding the seat's {what} on {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no upstream DNS resolver (no nameserver in /etc/resolv.conf)")]
    NoUpstreamDns,
    #[error("invalid network policy: {0}")]
    Policy(String),
    #[error("{action} in the net state dir")]
    State {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the egress hosts file {path}")]
    ReadHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line} is not `NAME IP`")]
    BadHostsLine { path: PathBuf, line: usize },
}

/// How the agent networks its seats.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One /30 per networked seat comes from here (`--seat-subnet`).
    pub seat_subnet: SeatSubnet,
    /// Where open seats' traffic leaves the host (NAT); None: the default route's interface.
    pub egress_iface: Option<String>,
    /// The agent's own nft table (`inet <name>`); no other table is ever touched.
    pub nft_table: String,
    /// How the proxy resolves allow-listed names (`--egress-hosts FILE`: a static map).
    pub resolver: Resolver,
    /// Upstream of the open seats' DNS forwarder; None: the first nameserver of /etc/resolv.conf.
    pub dns_upstream: Option<SocketAddr>,
    /// Namespaces kept made ahead of networked seats, once this agent has networked one: a
    /// seat start then skips the namespace, the veth pair and the addresses (about three of
    /// the four milliseconds of its network setup on a loaded host). 0: none.
    pub spare_namespaces: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            seat_subnet: DEFAULT_SEAT_SUBNET
                .parse()
                .expect("the default seat subnet is valid"),
            egress_iface: None,
            nft_table: "clarateach".into(),
            resolver: Resolver::System,
            dns_upstream: None,
            spare_namespaces: 2,
        }
    }
}

/// What a started seat's sandbox needs from its network.
#[derive(Debug)]
pub struct SeatNet {
    /// The namespace to `setns` into before exec.
    pub netns: File,
    /// Extra environment (the proxy variables of an allow seat).
    pub env: BTreeMap<String, String>,
    /// A root-owned, world-readable resolv.conf to bind over `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    pub addrs: SlotAddrs,
}

/// The resolv.conf a seat with `policy` should see, given its gateway. For the lead's generated
/// `/etc`: `none` has no nameserver (loopback only), `open` asks the DNS forwarder on its
/// gateway, `allow` resolves nothing itself (the proxy resolves; a nameserver would only be a
/// way to probe).
pub fn resolv_conf(policy: &NetworkPolicy, gateway: Option<Ipv4Addr>) -> String {
    match (policy, gateway) {
        (NetworkPolicy::Open, Some(gw)) => {
            format!("# ClaraTeach: the seat's DNS forwarder\nnameserver {gw}\noptions timeout:2 attempts:2\n")
        }
        (NetworkPolicy::Allow { .. }, _) => {
            "# ClaraTeach: names are resolved by the egress proxy (HTTPS_PROXY)\n".into()
        }
        _ => "# ClaraTeach: this seat has no network\n".into(),
    }
}

/// Proxy variables for an allow seat: every common spelling, loopback exempt.
fn proxy_env(gw: Ipv4Addr) -> BTreeMap<String, String> {
    let url = format!("http://{gw}:{PROXY_PORT}");
    let mut env = BTreeMap::new();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.to_string(), url.clone());
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.to_string(), "localhost,127.0.0.1".to_string());
    }
    env
}

/// A networked seat whose objects are up.
struct Active {
    rule: nft::SeatRule,
    /// Its proxy or DNS forwarder; aborted on drop.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct State {
    /// Recorded slot of every seat that has one (persisted).
    slots: HashMap<SeatKey, u32>,
    active: BTreeMap<SeatKey, Active>,
    /// Bumped on every change of `active`.
    version: u64,
    /// Free slots whose namespace is made ahead of a seat (recorded in `<net>/.spares`).
    spares: BTreeMap<u32, link::Spare>,
    /// Free slots whose spare is being made: no seat is given them meanwhile.
    making: BTreeSet<u32>,
    /// Spares recorded by an earlier agent: removed at `resync`.
    stale_spares: Vec<u32>,
    /// nft deltas of the changes not loaded yet, in order.
    pending: Vec<nft::Delta>,
    egress: Option<String>,
}

impl State {
    /// The lowest slot no seat holds and no spare is being made in; `spares_free`: whether a
    /// slot with a ready spare counts as free (a seat takes it, the spare maker does not).
    fn lowest_free(&self, subnet: SeatSubnet, spares_free: bool) -> Option<u32> {
        let used: std::collections::HashSet<u32> =
            self.slots.values().chain(&self.making).copied().collect();
        (0..subnet.slots())
            .find(|s| !used.contains(s) && (spares_free || !self.spares.contains_key(s)))
    }
}

/// What the kernel's copy of the table reflects.
#[derive(Default)]
struct Loaded {
    /// The `State::version` last loaded.
    version: u64,
    /// Whether the table is known to be in place with every active seat (false at agent start
    /// and after a failed load: the next load is the whole table).
    whole: bool,
}

#[derive(Serialize, Deserialize)]
struct SlotFile {
    key: SeatKey,
    slot: u32,
}

/// Owns every seat network of one agent.
pub struct NetManager {
    cfg: NetConfig,
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    /// Serialises nft loads and knows what the kernel's table reflects, so a burst of seat
    /// changes waiting here is covered by one load of all their deltas.
    nft_gate: tokio::sync::Mutex<Loaded>,
}

impl std::fmt::Debug for NetManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetManager")
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn mode_of(policy: &NetworkPolicy) -> Option<SeatMode> {
    match policy {
        NetworkPolicy::None => None,
        NetworkPolicy::Open => Some(SeatMode::Open),
        NetworkPolicy::Allow { .. } => Some(SeatMode::Proxy),
    }
}

impl NetManager {
    /// Loads recorded slots from `<data_dir>/net`; touches no kernel state.
    pub fn new(cfg: NetConfig, data_dir: &Path) -> Result<Self, NetError> {
        if !nft::valid_table(&cfg.nft_table) {
            return Err(NetError::BadName(cfg.nft_table.clone()));
        }
        if let Some(ifn) = cfg
            .egress_iface
            .as_deref()
            .filter(|i| !nft::valid_ifname(i))
        {
            return Err(NetError::BadName(ifn.to_string()));
        }
        let dir = data_dir.join("net");
        let mut state = State::default();
        for slot in read_dir(&dir.join(SPARES_DIR))
            .iter()
            .filter_map(|f| f.file_name()?.to_str()?.parse::<u32>().ok())
        {
            state.stale_spares.push(slot);
        }
        for ws in read_dir(&dir)
            .into_iter()
            .filter(|d| !d.ends_with(SPARES_DIR))
        {
            for file in read_dir(&ws)
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
            {
                match std::fs::read(&file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<SlotFile>(&b).ok())
                {
                    Some(s) if s.slot < cfg.seat_subnet.slots() => {
                        state.slots.insert(s.key, s.slot);
                    }
                    _ => {
                        tracing::warn!(file = %file.display(), "unreadable seat net record skipped")
                    }
                }
            }
        }
        Ok(Self {
            cfg,
            dir,
            state: Arc::new(Mutex::new(state)),
            nft_gate: tokio::sync::Mutex::new(Loaded::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seat_file(&self, key: &SeatKey, ext: &str) -> PathBuf {
        self.dir
            .join(&key.workshop_id)
            .join(format!("seat-{:02}.{ext}", key.seat))
    }

    /// The seat's recorded slot, or the lowest free one, recorded now.
    fn allocate(&self, key: &SeatKey) -> Result<SlotAddrs, NetError> {
        let mut st = self.lock();
        let slot = match st.slots.get(key) {
            Some(s) => *s,
            None => {
                let slot = st
                    .lowest_free(self.cfg.seat_subnet, true)
                    .ok_or(NetError::SubnetFull(self.cfg.seat_subnet))?;
                let state = |action| move |source| NetError::State { action, source };
                let ws_dir = self.dir.join(&key.workshop_id);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(&ws_dir)
                    .map_err(state("create the workshop dir"))?;
                let rec = serde_json::to_vec(&SlotFile {
                    key: key.clone(),
                    slot,
                })
                .map_err(|e| state("encode the slot")(std::io::Error::other(e)))?;
                write_file(&self.seat_file(key, "json"), &rec, 0o600)
                    .map_err(state("record the slot"))?;
                st.slots.insert(key.clone(), slot);
                slot
            }
        };
        self.cfg
            .seat_subnet
            .slot(slot)
            .ok_or(NetError::SubnetFull(self.cfg.seat_subnet))
    }

    async fn egress(&self) -> Result<String, NetError> {
        if let Some(e) = self
            .cfg
            .egress_iface
            .clone()
            .or_else(|| self.lock().egress.clone())
        {
            return Ok(e);
        }
        let dev = link::default_route_iface()?;
        if !nft::valid_ifname(&dev) {
            return Err(NetError::BadName(dev));
        }
        self.lock().egress = Some(dev.clone());
        Ok(dev)
    }

    /// Brings the kernel's table up to date: the pending deltas (one netlink transaction), or the
    /// whole table when it is not known to be in place or a delta fails. The table stays while
    /// any seat has a slot (a stopped seat starts again without a whole reload) and goes when
    /// the last slot is released.
    async fn apply(&self) -> Result<(), NetError> {
        let wanted = self.lock().version;
        let mut loaded = self.nft_gate.lock().await;
        if loaded.version >= wanted {
            return Ok(());
        }
        let (version, deltas, rules, keep) = {
            let mut st = self.lock();
            let rules: Vec<nft::SeatRule> = st.active.values().map(|a| a.rule.clone()).collect();
            let keep = !rules.is_empty() || !st.slots.is_empty();
            (st.version, std::mem::take(&mut st.pending), rules, keep)
        };
        let table = &self.cfg.nft_table;
        let result = if !keep {
            nft_load(nft::render_delete(table)).await
        } else if loaded.whole {
            match nft::apply(&deltas) {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "nft delta failed; reloading the whole table");
                    nft_load(nft::render(table, &self.egress().await?, &rules)).await
                }
            }
        } else {
            nft_load(nft::render(table, &self.egress().await?, &rules)).await
        };
        match result {
            Ok(()) => {
                *loaded = Loaded {
                    version,
                    whole: keep,
                };
                Ok(())
            }
            Err(e) => {
                loaded.whole = false;
                Err(e)
            }
        }
    }

    /// Starts the seat's proxy (allow) or DNS forwarder (open) on its gateway address. A listener
    /// of a backend being replaced in this process may still hold the address for a moment.
    async fn listen(
        &self,
        addrs: &SlotAddrs,
        policy: &NetworkPolicy,
    ) -> Result<tokio::task::JoinHandle<()>, NetError> {
        match policy {
            NetworkPolicy::Allow { allow } => {
                let at = SocketAddr::from((addrs.host, PROXY_PORT));
                let l = retry_bind(|| tokio::net::TcpListener::bind(at))
                    .await
                    .map_err(|source| NetError::Bind {
                        what: "proxy",
                        addr: at,
                        source,
                    })?;
                Ok(proxy::spawn(l, allow.clone(), self.cfg.resolver.clone()))
            }
            _ => {
                let upstream = self
                    .cfg
                    .dns_upstream
                    .or_else(|| dns::upstream_from(Path::new("/etc/resolv.conf")))
                    .ok_or(NetError::NoUpstreamDns)?;
                let at = SocketAddr::from((addrs.host, DNS_PORT));
                let s = retry_bind(|| tokio::net::UdpSocket::bind(at))
                    .await
                    .map_err(|source| NetError::Bind {
                        what: "DNS forwarder",
                        addr: at,
                        source,
                    })?;
                Ok(dns::spawn(s, upstream))
            }
        }
    }

    /// Brings up the network of a seat about to start; None for `none` (bwrap unshares).
    pub async fn setup(
        &self,
        key: &SeatKey,
        policy: &NetworkPolicy,
    ) -> Result<Option<SeatNet>, NetError> {
        let Some(mode) = mode_of(policy) else {
            return Ok(None);
        };
        policy.validate().map_err(NetError::Policy)?;
        let addrs = self.allocate(key)?;
        let spare = {
            let mut st = self.lock();
            let slot = st.slots.get(key).copied();
            slot.and_then(|s| Some((s, st.spares.remove(&s)?)))
        };
        let spare = spare.map(|(slot, spare)| {
            // A claimed spare is an ordinary seat network from now on.
            let _ = std::fs::remove_file(self.dir.join(SPARES_DIR).join(slot.to_string()));
            spare
        });
        let up = self.bring_up(key, policy, mode, &addrs, spare).await;
        if let Err(e) = up {
            // Leave nothing half-made behind.
            self.teardown(key).await.ok();
            return Err(e);
        }
        self.replenish();
        let resolv = self.seat_file(key, "resolv.conf");
        write_file(
            &resolv,
            resolv_conf(policy, Some(addrs.host)).as_bytes(),
            0o644,
        )
        .map_err(|source| NetError::State {
            action: "write the seat's resolv.conf",
            source,
        })?;
        Ok(Some(SeatNet {
            netns: link::open_netns(&addrs)?,
            env: if mode == SeatMode::Proxy {
                proxy_env(addrs.host)
            } else {
                BTreeMap::new()
            },
            resolv_conf: resolv,
            addrs,
        }))
    }

    async fn bring_up(
        &self,
        key: &SeatKey,
        policy: &NetworkPolicy,
        mode: SeatMode,
        addrs: &SlotAddrs,
        spare: Option<link::Spare>,
    ) -> Result<(), NetError> {
        let began = std::time::Instant::now();
        match spare {
            Some(spare) => link::claim(spare, addrs, mode == SeatMode::Open)?,
            None => link::create(addrs, mode == SeatMode::Open).await?,
        }
        let link_us = began.elapsed().as_secs_f64() * 1e6;
        let r = self.activate(key, policy, mode, addrs).await;
        tracing::debug!(
            link_us,
            total_us = began.elapsed().as_secs_f64() * 1e6,
            "seat network up"
        );
        r
    }

    /// Forwarding, the listener and the rules for a seat whose link exists.
    async fn activate(
        &self,
        key: &SeatKey,
        policy: &NetworkPolicy,
        mode: SeatMode,
        addrs: &SlotAddrs,
    ) -> Result<(), NetError> {
        if mode == SeatMode::Open {
            link::enable_forwarding(&addrs.veth())?;
            link::enable_forwarding(&self.egress().await?)?;
        }
        let egress = self.egress().await?;
        let task = self.listen(addrs, policy).await?;
        let rule = nft::SeatRule {
            addrs: *addrs,
            mode,
        };
        {
            let mut st = self.lock();
            st.pending
                .push(nft::add_seat(&self.cfg.nft_table, &egress, &rule));
            st.active.insert(key.clone(), Active { rule, task });
            st.version += 1;
        }
        self.apply().await
    }

    /// After an agent restart: a running seat's namespace is still there; its listener and rules
    /// come back. A seat whose link vanished is torn down (it has no network until restarted).
    pub async fn readopt(&self, key: &SeatKey, policy: &NetworkPolicy) -> Result<(), NetError> {
        let Some(mode) = mode_of(policy) else {
            return Ok(());
        };
        let addrs = self.allocate(key)?;
        if !link::exists(&addrs) {
            tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, "seat network gone after restart");
            return self.teardown(key).await;
        }
        let r = self.activate(key, policy, mode, &addrs).await;
        if r.is_err() {
            self.teardown(key).await.ok();
        }
        r
    }

    /// Removes the seat's rules, listener, veth and namespace; keeps its slot. Idempotent.
    pub async fn teardown(&self, key: &SeatKey) -> Result<(), NetError> {
        let (was_active, slot) = {
            let mut st = self.lock();
            let removed = st.active.remove(key).map(|a| a.rule.clone());
            let was = removed.is_some();
            if let Some(rule) = removed {
                st.pending
                    .push(nft::remove_seat(&self.cfg.nft_table, &rule));
                st.version += 1;
            }
            (was, st.slots.get(key).copied())
        };
        if was_active {
            self.apply().await?;
        }
        if let Some(addrs) = slot.and_then(|s| self.cfg.seat_subnet.slot(s)) {
            link::remove(&addrs).await?;
            forget_connections(&addrs);
        }
        let _ = std::fs::remove_file(self.seat_file(key, "resolv.conf"));
        Ok(())
    }

    /// Tears down and frees the slot for another seat (on destroy).
    pub async fn release(&self, key: &SeatKey) -> Result<(), NetError> {
        self.teardown(key).await?;
        let last = {
            let mut st = self.lock();
            let had = st.slots.remove(key).is_some();
            let last = had && st.slots.is_empty() && st.active.is_empty();
            if last {
                // The table goes with the last slot.
                st.version += 1;
            }
            last
        };
        if last {
            self.apply().await?;
            // The spares go with the last seat: a host with no networked seat keeps nothing.
            let spares: Vec<u32> = std::mem::take(&mut self.lock().spares)
                .into_keys()
                .collect();
            self.remove_spares(&spares).await;
        }
        let file = self.seat_file(key, "json");
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(NetError::State {
                    action: "remove the slot record",
                    source: e,
                })
            }
            _ => {}
        }
        if let Some(dir) = file.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    /// After adopt: every slot without an active seat loses its link (an agent that died
    /// between making a seat's network and starting the seat leaves one behind), and the
    /// kernel's table is reloaded to hold exactly the active seats (or goes when no slot is
    /// left).
    pub async fn resync(&self) -> Result<(), NetError> {
        let idle: Vec<SlotAddrs> = {
            let st = self.lock();
            if st.slots.is_empty() && st.stale_spares.is_empty() {
                // This agent never networked a seat (or released them all): nothing to clear,
                // and no `nft` run on hosts that only have `none` seats.
                return Ok(());
            }
            st.slots
                .iter()
                .filter(|(k, _)| !st.active.contains_key(*k))
                .filter_map(|(_, s)| self.cfg.seat_subnet.slot(*s))
                .collect()
        };
        for addrs in &idle {
            link::remove(addrs).await?;
            forget_connections(addrs);
        }
        let stale = std::mem::take(&mut self.lock().stale_spares);
        self.remove_spares(&stale).await;
        self.nft_gate.lock().await.whole = false;
        self.lock().version += 1;
        self.apply().await
    }

    /// Makes spares in the background up to `spare_namespaces`, one at a time, at the lowest free slots
    /// (where the next seats will be given theirs). Each is recorded before it is made, so an
    /// agent that dies meanwhile leaves a record for `resync` to clear.
    fn replenish(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, subnet) = (self.state.clone(), self.cfg.seat_subnet);
        let wanted = self.cfg.spare_namespaces;
        let dir = self.dir.join(SPARES_DIR);
        rt.spawn(async move {
            loop {
                let slot = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    if st.spares.len() + st.making.len() >= wanted || st.slots.is_empty() {
                        return;
                    }
                    let Some(slot) = st.lowest_free(subnet, false) else {
                        return;
                    };
                    st.making.insert(slot);
                    slot
                };
                let Some(addrs) = subnet.slot(slot) else {
                    return;
                };
                let record = dir.join(slot.to_string());
                let made = match std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .and_then(|()| write_file(&record, b"", 0o600))
                {
                    Ok(()) => link::make(&addrs).await,
                    Err(source) => Err(NetError::State {
                        action: "record a spare namespace",
                        source,
                    }),
                };
                let kept = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    st.making.remove(&slot);
                    match made {
                        // The last seat may have gone meanwhile: no spare outlives it.
                        Ok(spare) if !st.slots.is_empty() => {
                            st.spares.insert(slot, spare);
                            Ok(true)
                        }
                        Ok(_) => Ok(false),
                        Err(e) => Err(e),
                    }
                };
                match kept {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = link::remove(&addrs).await;
                        let _ = std::fs::remove_file(&record);
                        return;
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&record);
                        tracing::warn!(error = %e, "no spare seat namespace made");
                        return;
                    }
                }
            }
        });
    }

    /// Removes the namespaces and records of these spare slots (unless a seat holds the slot).
    async fn remove_spares(&self, slots: &[u32]) {
        for &slot in slots {
            if self.lock().slots.values().any(|s| *s == slot) {
                continue;
            }
            if let Some(addrs) = self.cfg.seat_subnet.slot(slot) {
                if let Err(e) = link::remove(&addrs).await {
                    tracing::warn!(error = %e, slot, "spare seat namespace not removed");
                    continue;
                }
            }
            let _ = std::fs::remove_file(self.dir.join(SPARES_DIR).join(slot.to_string()));
        }
    }

    /// The seat's addresses while it has a slot (for tests and status).
    pub fn addrs(&self, key: &SeatKey) -> Option<SlotAddrs> {
        let slot = self.lock().slots.get(key).copied()?;
        self.cfg.seat_subnet.slot(slot)
    }

    /// The configuration in use.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }
}

/// Drops the conntrack entries of a seat whose link is gone (a failure only delays them to
/// their timeout, so it is logged, not returned).
fn forget_connections(addrs: &SlotAddrs) {
    match conntrack::forget(addrs.seat) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(seat = %addrs.seat, entries = n, "seat connections forgotten"),
        Err(e) => tracing::warn!(seat = %addrs.seat, error = %e, "seat connections not forgotten"),
    }
}

/// Binds, retrying for up to a second while the address is in use.
async fn retry_bind<T, F, Fut>(bind: F) -> std::io::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let mut tries = 0;
    loop {
        match bind().await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn nft_load(script: String) -> Result<(), NetError> {
    link::run("nft", &["-f", "-"], Some(script))
        .await
        .map(|_| ())
}

/// Under the net state dir: one empty file per spare namespace, named by its slot (a name no
/// workshop id has).
const SPARES_DIR: &str = ".spares";

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Atomic write with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: "ws-a".into(),
            seat,
        }
    }

    #[test]
    fn slots_are_recorded_unique_and_reused_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = NetConfig {
            seat_subnet: "10.250.0.0/29".parse().expect("subnet"),
            ..NetConfig::default()
        };
        let m = NetManager::new(cfg.clone(), dir.path()).expect("manager");
        let a = m.allocate(&key(1)).expect("slot");
        let b = m.allocate(&key(2)).expect("slot");
        assert_ne!(a, b);
        assert_eq!(m.allocate(&key(1)).expect("same slot"), a);
        assert!(matches!(m.allocate(&key(3)), Err(NetError::SubnetFull(_))));
        // A new manager (agent restart) reads the records back.
        let m2 = NetManager::new(cfg, dir.path()).expect("manager");
        assert_eq!(m2.addrs(&key(2)), Some(b));
        // Release frees the slot (no kernel objects exist for these addresses).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(m2.release(&key(1))).expect("release");
        assert_eq!(m2.allocate(&key(3)).expect("reused"), a);
    }

    #[test]
    fn resolv_conf_and_env_follow_the_policy() {
        let gw: Ipv4Addr = "10.214.0.1".parse().expect("ip");
        assert!(resolv_conf(&NetworkPolicy::Open, Some(gw)).contains("nameserver 10.214.0.1\n"));
        let allow = NetworkPolicy::Allow {
            allow: vec!["a.test".into()],
        };
        assert!(!resolv_conf(&allow, Some(gw)).contains("nameserver"));
        assert!(!resolv_conf(&NetworkPolicy::None, None).contains("nameserver"));
        let env = proxy_env(gw);
        assert_eq!(env["HTTPS_PROXY"], "http://10.214.0.1:3128");
        assert_eq!(env["http_proxy"], "http://10.214.0.1:3128");
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1");
        assert!(NetManager::new(
            NetConfig {
                nft_table: "bad name".into(),
                ..NetConfig::default()
            },
            Path::new("/nonexistent")
        )
        .is_err());
    }
}
