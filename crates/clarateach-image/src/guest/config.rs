//! What the host tells a guest at boot: the daemon token, the seat's environment, the network.
//! It travels on a tiny raw "config disk" (a magic line, JSON, zero padding) rather than on the
//! kernel command line, which any host user can read in `ps` and which holds only 2 KiB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// First line of a config disk; guest-init recognises the disk by it.
pub const CONFIG_MAGIC: &[u8] = b"CLARATEACH-CONFIG-1\n";

/// Port the workspace daemon listens on inside the guest: privileged (below 1024), so only the
/// guest's PID 1 can bind it, never the learner.
pub const GUEST_DAEMON_PORT: u16 = 700;

/// Static network configuration of the guest's eth0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNet {
    /// Address with prefix, e.g. `10.0.2.15/24`.
    pub address: String,
    pub gateway: String,
    pub dns: String,
}

impl Default for GuestNet {
    /// QEMU user-mode networking's fixed layout (no DHCP client needed in the guest).
    fn default() -> Self {
        Self {
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            dns: "10.0.2.3".into(),
        }
    }
}

impl GuestNet {
    /// What guest-init applies: this configuration when its address is `a.b.c.d/prefix` and its
    /// gateway empty (no default route: a seat without egress) or an IPv4 address, else QEMU
    /// user-net's defaults, so a config disk from a bad or older host still brings eth0 up.
    pub fn or_default(&self) -> GuestNet {
        let addr_ok = self.address.split_once('/').is_some_and(|(ip, prefix)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
        });
        let gw_ok = self.gateway.is_empty() || self.gateway.parse::<std::net::Ipv4Addr>().is_ok();
        if addr_ok && gw_ok {
            self.clone()
        } else {
            GuestNet::default()
        }
    }
}

/// Everything guest-init needs from the host.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// Bearer token the workspace daemon requires.
    pub token: String,
    /// Environment of the learner's shells.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub net: GuestNet,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_hostname")]
    pub hostname: String,
}

fn default_port() -> u16 {
    GUEST_DAEMON_PORT
}

fn default_hostname() -> String {
    "clarateach".into()
}

impl std::fmt::Debug for GuestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestConfig")
            .field("token", &"<redacted>")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("net", &self.net)
            .field("port", &self.port)
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl GuestConfig {
    pub fn new(token: impl Into<String>, env: BTreeMap<String, String>) -> Self {
        Self {
            token: token.into(),
            env,
            net: GuestNet::default(),
            port: GUEST_DAEMON_PORT,
            hostname: default_hostname(),
        }
    }

    /// The bytes of a config disk: magic, JSON, newline, zero padding to a 4 KiB multiple.
    pub fn to_disk(&self) -> Vec<u8> {
        let mut out = CONFIG_MAGIC.to_vec();
        // Serializing plain strings and maps cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out.push(b'\n');
        out.resize(out.len().div_ceil(4096) * 4096, 0);
        out
    }

    /// Parses a config disk; `None` when `bytes` is not one.
    pub fn from_disk(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(CONFIG_MAGIC)?;
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == 0)
            .unwrap_or(rest.len());
        serde_json::from_slice(&rest[..end]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_round_trip_and_padding() {
        let cfg = GuestConfig::new(
            "tok-1",
            [("API_KEY".to_string(), "sk-x\ny".to_string())].into(),
        );
        let disk = cfg.to_disk();
        assert_eq!(disk.len() % 4096, 0);
        assert_eq!(GuestConfig::from_disk(&disk), Some(cfg.clone()));
        assert!(!format!("{cfg:?}").contains("tok-1"));
        assert!(!format!("{cfg:?}").contains("sk-x"));
    }

    #[test]
    fn bridged_network_or_the_user_net_defaults() {
        let bridged = GuestNet {
            address: "10.213.4.9/24".into(),
            gateway: String::new(),
            dns: String::new(),
        };
        assert_eq!(bridged.or_default(), bridged);
        for (address, gateway) in [("10.213.4.9", ""), ("", ""), ("10.0.0.2/24", "gw")] {
            let bad = GuestNet {
                address: address.into(),
                gateway: gateway.into(),
                dns: String::new(),
            };
            assert_eq!(
                bad.or_default(),
                GuestNet::default(),
                "{address} via {gateway}"
            );
        }
        // A config disk without a `net` entry (user-net seats) gets the defaults.
        let disk = b"CLARATEACH-CONFIG-1\n{\"token\":\"t\"}\n";
        let cfg = GuestConfig::from_disk(disk).expect("config");
        assert_eq!(cfg.net.or_default(), GuestNet::default());
    }

    #[test]
    fn other_disks_are_not_config() {
        assert_eq!(GuestConfig::from_disk(&[0u8; 4096]), None);
        assert_eq!(
            GuestConfig::from_disk(b"CLARATEACH-CONFIG-1\n{broken"),
            None
        );
    }
}
