//! The kernel objects of one microVM seat's network: a persistent TAP device in the root
//! namespace, named like a sandbox seat's host-side veth (`addr::SlotAddrs::veth`), with the
//! host end of the seat's /30. Because the name is the same, the agent's nft table applies
//! exactly the sandbox veth's rules to it (`nft::add_seat`): the guest on the other side of the
//! TAP is just another seat. The guest configures its own `eth0` from the config disk.
//!
//! The TAP is persistent (`ip tuntap add`), so it outlives the VMM process and the agent: a
//! restarted agent finds it (`exists`) and only brings the rules and listeners back. It has no
//! IPv6 (the seat would otherwise talk to the host over an automatic link-local address; nft
//! drops such packets anyway, this keeps them from being made). `link::remove` deletes it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::NetworkPolicy;

use super::addr::SlotAddrs;
use super::{link, mode_of, nft, proxy_env, Active, NetError, NetManager, SeatMode};

/// What a microVM seat's VMM and guest need from its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNet {
    /// The TAP the VMM attaches to.
    pub ifname: String,
    pub addrs: SlotAddrs,
    pub mode: SeatMode,
    /// Extra guest environment (the proxy variables of an allow seat).
    pub env: BTreeMap<String, String>,
}

impl TapNet {
    /// The guest's `eth0` address, `a.b.c.d/30`.
    pub fn guest_address(&self) -> String {
        format!("{}/30", self.addrs.seat)
    }
    /// The guest's default route: only an open seat has one. An allow seat reaches its /30 (the
    /// proxy on the TAP's address) and nothing else, a closed one not even that.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.mode == SeatMode::Open).then_some(self.addrs.host)
    }
    /// The guest's resolver: the DNS forwarder on the TAP's address, for open seats only (an
    /// allow seat's proxy resolves names itself).
    pub fn dns(&self) -> Option<Ipv4Addr> {
        self.gateway()
    }
}

impl NetManager {
    /// Brings up the network of a microVM seat about to start: its slot (recorded, the same one
    /// across restarts), its TAP, and the same nft rules, forwarding and proxy or DNS forwarder
    /// as a sandbox seat of that policy. `none` gets a closed TAP (replies to the host only).
    pub async fn setup_tap(
        &self,
        key: &SeatKey,
        policy: &NetworkPolicy,
        owner: Option<(u32, u32)>,
    ) -> Result<TapNet, NetError> {
        policy.validate().map_err(NetError::Policy)?;
        let addrs = self.allocate(key)?;
        let mode = mode_of(policy).unwrap_or(SeatMode::Closed);
        let up = async {
            create(&addrs, owner).await?;
            self.activate_tap(key, policy, mode, &addrs).await
        };
        if let Err(e) = up.await {
            self.teardown(key).await.ok();
            return Err(e);
        }
        Ok(TapNet {
            ifname: addrs.veth(),
            addrs,
            mode,
            env: if mode == SeatMode::Proxy {
                proxy_env(addrs.host)
            } else {
                BTreeMap::new()
            },
        })
    }

    /// After an agent restart, for a running microVM seat: its TAP is still there (the VMM holds
    /// it); the rules and the proxy or forwarder come back. A vanished TAP is torn down.
    pub async fn readopt_tap(&self, key: &SeatKey, policy: &NetworkPolicy) -> Result<(), NetError> {
        let addrs = self.allocate(key)?;
        if !exists(&addrs) {
            tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, "microVM seat TAP gone after restart");
            return self.teardown(key).await;
        }
        let mode = mode_of(policy).unwrap_or(SeatMode::Closed);
        let r = self.activate_tap(key, policy, mode, &addrs).await;
        if r.is_err() {
            self.teardown(key).await.ok();
        }
        r
    }

    /// The TAP name of a seat that has a slot.
    pub fn tap_name(&self, key: &SeatKey) -> Option<String> {
        self.addrs(key).map(|a| a.veth())
    }

    async fn activate_tap(
        &self,
        key: &SeatKey,
        policy: &NetworkPolicy,
        mode: SeatMode,
        addrs: &SlotAddrs,
    ) -> Result<(), NetError> {
        if mode != SeatMode::Closed {
            return self.activate(key, policy, mode, addrs).await;
        }
        let egress = self.egress().await?;
        let rule = nft::SeatRule {
            addrs: *addrs,
            mode,
        };
        {
            let mut st = self.lock();
            st.pending
                .push(nft::add_seat(&self.cfg.nft_table, &egress, &rule));
            // No listener: a closed seat talks to nothing on the host.
            let task = tokio::spawn(async {});
            st.active.insert(key.clone(), Active { rule, task });
            st.version += 1;
        }
        self.apply().await
    }
}

/// Creates the seat's TAP with its host address, replacing a leftover of an earlier run.
/// `owner` (uid, gid) lets an unprivileged VMM (Firecracker under its jailer) open it.
pub async fn create(addrs: &SlotAddrs, owner: Option<(u32, u32)>) -> Result<(), NetError> {
    let tap = addrs.veth();
    link::remove(addrs).await?;
    let mut add = format!("tuntap add dev {tap} mode tap");
    if let Some((uid, gid)) = owner {
        add.push_str(&format!(" user {uid} group {gid}"));
    }
    let batch = format!(
        "{add}\naddr add {}/30 dev {tap}\nlink set {tap} up\n",
        addrs.host
    );
    link::run("ip", &["-batch", "-"], Some(batch)).await?;
    let v6 = format!("/proc/sys/net/ipv6/conf/{tap}/disable_ipv6");
    if Path::new(&v6).exists() {
        std::fs::write(&v6, "1").map_err(|source| NetError::Sysctl { path: v6, source })?;
    }
    Ok(())
}

/// True when the seat's TAP still exists (after an agent restart) and is a TAP, not a veth.
pub fn exists(addrs: &SlotAddrs) -> bool {
    Path::new("/sys/class/net")
        .join(addrs.veth())
        .join("tun_flags")
        .exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_is_named_like_the_seats_veth_so_nft_treats_it_the_same() {
        let s: crate::netpolicy::SeatSubnet = "10.214.0.0/16".parse().expect("subnet");
        let a = s.slot(3).expect("slot");
        let rule = crate::netpolicy::nft::SeatRule {
            addrs: a,
            mode: crate::netpolicy::SeatMode::Open,
        };
        let script = crate::netpolicy::nft::add_seat("t", "eth9", &rule).script();
        assert!(script.contains(&format!(
            "add element inet t seat_ifs {{ \"{}\" }}",
            a.veth()
        )));
        assert!(!exists(&s.slot(16000).expect("slot")), "no such TAP here");
    }

    /// Firecracker seats used to pick their /30 by a hash (a clash was likelier than not for
    /// 200 seats); they now take slots from the same recorded allocator as every other seat.
    #[test]
    fn two_hundred_firecracker_seats_get_disjoint_30s_that_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::netpolicy::NetConfig::default();
        let key = |seat| SeatKey {
            workshop_id: "ws-fc".into(),
            seat,
        };
        let m = NetManager::new(cfg.clone(), dir.path()).expect("manager");
        let mut nets = std::collections::BTreeSet::new();
        let mut firsts = Vec::new();
        for seat in 1..=200 {
            let a = m.allocate(&key(seat)).expect("slot");
            assert!(cfg.seat_subnet.contains(a.host) && cfg.seat_subnet.contains(a.seat));
            // The /30 is identified by its network address; host and seat lie inside it.
            let net = u32::from(a.host) & !3;
            assert_eq!((u32::from(a.host) - net, u32::from(a.seat) - net), (1, 2));
            assert!(nets.insert(net), "seat {seat} got a /30 already taken");
            firsts.push(a);
        }
        let names: std::collections::BTreeSet<String> = firsts.iter().map(|a| a.veth()).collect();
        assert_eq!(names.len(), 200, "TAP names are distinct");
        // An agent restart reads the records back: every seat keeps its /30, a new one gets a
        // free one.
        let m2 = NetManager::new(cfg, dir.path()).expect("manager");
        for (i, a) in firsts.iter().enumerate() {
            assert_eq!(m2.addrs(&key(i as u32 + 1)), Some(*a));
        }
        let new = m2.allocate(&key(201)).expect("slot");
        assert!(nets.insert(u32::from(new.host) & !3));
    }
}
