//! QEMU seats in bridge mode for real: a test bridge with its own name and subnet, one seat with
//! a TAP on it, the daemon answering on the guest's own address, no route out of the subnet
//! without egress, the TAP gone after destroy and the same address after a recreate. Needs root,
//! /dev/net/tun and what the user-net test needs; says why it skipped otherwise.

mod microvm_support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use clarateach_core::agent_proto::SeatKey;
use clarateach_isolation::microvm::{AccelChoice, MicrovmBackend, MicrovmConfig, Net};
use clarateach_isolation::{Backend, DaemonAddr};
use microvm_support::*;

/// Removes the test bridge (and the seat's TAP, should the test fail before destroy).
struct Cleanup {
    bridge: String,
    tap: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dev in [&self.tap, &self.bridge] {
            if Path::new("/sys/class/net").join(dev).exists() {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", dev])
                    .status();
            }
        }
    }
}

fn guest_ip_in_record(data: &Path) -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string(data.join("microvm/ws-brtest/seat-01/seat.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["guest_ip"].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_seat_answers_on_its_own_address() {
    let skip = skip_reason()
        .or_else(|| (!Path::new("/dev/net/tun").exists()).then(|| "/dev/net/tun is missing".into()))
        .or_else(|| {
            which("ip")
                .is_none()
                .then(|| "iproute2 (ip) is not installed".into())
        });
    if let Some(why) = skip {
        clarateach_core::skip::report("bridged_seat_answers_on_its_own_address", &why);
        return;
    }
    let pid = std::process::id();
    let bridge = format!("ctbr{}", pid % 1000);
    let subnet = format!("10.213.{}.0/24", pid % 250)
        .parse()
        .expect("subnet");
    let image_dir = guest_image();
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = MicrovmConfig::new(data.path(), &image_dir);
    cfg.accel = match std::env::var("CLARATEACH_TEST_ACCEL").as_deref() {
        Ok("kvm") => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    cfg.volume_mb = 256;
    cfg.net = Net::Bridge {
        bridge: bridge.clone(),
        subnet,
    };
    let backend = MicrovmBackend::new(cfg).expect("backend");
    let key = SeatKey {
        workshop_id: "ws-brtest".into(),
        seat: 1,
    };
    let tap = clarateach_isolation::microvm::net::tap_name(&key);
    let _cleanup = Cleanup {
        bridge: bridge.clone(),
        tap: tap.clone(),
    };
    let spec = seat_spec(&key, "bridge-token");

    backend.create(&spec).await.expect("create");
    let guest_ip = guest_ip_in_record(data.path()).expect("guest_ip in seat.json");
    assert!(subnet.contains(guest_ip) && guest_ip != subnet.gateway());
    let ep = backend.start(&key).await.expect("start");
    let DaemonAddr::Tcp(addr) = ep.addr else {
        panic!("expected a TCP endpoint, got {:?}", ep.addr)
    };
    assert_eq!(
        addr.ip(),
        IpAddr::V4(guest_ip),
        "the daemon is on the guest's address"
    );
    assert_eq!(addr.port(), 700);
    assert!(clarateach_isolation::microvm::health(addr).await, "/health");
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).expect("tap master");
    assert_eq!(
        master.file_name().and_then(|n| n.to_str()),
        Some(bridge.as_str())
    );

    let (out, code) = run(addr, &ep.token, "uname -r; ip -4 -o addr show eth0").await;
    assert_eq!(code, 0);
    assert!(out.starts_with(backend.kernel_release()), "{out}");
    assert!(out.contains(&format!("inet {guest_ip}/24")), "{out}");
    // Without egress: no default route, so nothing beyond the bridge's subnet is reachable.
    let (out, _) = run(addr, &ep.token, "ip route get 1.1.1.1 2>&1; ip route").await;
    assert!(
        out.contains("unreachable"),
        "a route out of the subnet: {out}"
    );
    assert!(!out.contains("default"), "{out}");

    backend.destroy(&key, false).await.expect("destroy");
    assert!(
        !Path::new("/sys/class/net").join(&tap).exists(),
        "destroy left the TAP"
    );
    assert!(qemu_pids_mentioning(&data.path().to_string_lossy()).is_empty());
    backend.create(&spec).await.expect("recreate");
    assert_eq!(
        guest_ip_in_record(data.path()),
        Some(guest_ip),
        "recreate keeps the address"
    );
    backend
        .destroy(&key, true)
        .await
        .expect("destroy with volume");
    assert!(!Path::new("/sys/class/net").join(&tap).exists());
}
