//! The Firecracker flavour for real: needs the `firecracker` binary, a KVM that boots guests
//! (probed), root (TAP devices) and the guest image. Says why it skipped otherwise.

mod microvm_support;

use clarateach_core::agent_proto::SeatKey;
use clarateach_image::ImageLayout;
use clarateach_isolation::microvm::accel::{detect, Accel};
use clarateach_isolation::microvm::{Flavour, MicrovmBackend, MicrovmConfig};
use clarateach_isolation::{Backend, DaemonAddr};
use microvm_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firecracker_seat_boots_and_answers() {
    let Some(fc) = which("firecracker") else {
        clarateach_core::skip::report(
            "firecracker_seat_boots_and_answers",
            "the firecracker binary is not installed",
        );
        return;
    };
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("firecracker_seat_boots_and_answers", &why);
        return;
    }
    let image_dir = guest_image();
    let data = tempfile::tempdir().expect("tempdir");
    let qemu = which("qemu-system-x86_64").unwrap_or_default();
    if detect(&qemu, &ImageLayout::new(&image_dir), data.path()).await != Accel::Kvm {
        clarateach_core::skip::report(
            "firecracker_seat_boots_and_answers",
            "KVM does not boot guests on this host",
        );
        return;
    }
    let mut cfg = MicrovmConfig::new(data.path(), &image_dir);
    cfg.flavour = Flavour::Firecracker;
    cfg.firecracker_binary = fc;
    cfg.volume_mb = 256;
    let backend = MicrovmBackend::new(cfg).expect("backend");
    let key = SeatKey {
        workshop_id: "ws-fctest".into(),
        seat: 1,
    };
    let spec = seat_spec(&key, "fc-token");
    backend.create(&spec).await.expect("create");
    let ep = backend.start(&key).await.expect("start");
    let DaemonAddr::Tcp(addr) = ep.addr else {
        panic!("tcp endpoint")
    };
    let (uname, _) = run(addr, &ep.token, "uname -r").await;
    assert_eq!(uname.trim(), backend.kernel_release());
    backend.destroy(&key, true).await.expect("destroy");
}
