//! The KVM probe boots the image's kernel under KVM with a timeout and caches its verdict: on a
//! host where /dev/kvm opens but guests hang (PVM) it must answer TCG in bounded time, and the
//! second call must come from the cache.

mod microvm_support;

use std::time::{Duration, Instant};

use clarateach_image::ImageLayout;
use clarateach_isolation::microvm::accel::{detect, Accel};
use microvm_support::*;

#[tokio::test]
async fn kvm_probe_is_bounded_and_cached() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("kvm_probe_is_bounded_and_cached", &why);
        return;
    }
    let Some(qemu) = which("qemu-system-x86_64") else {
        return;
    };
    let image = ImageLayout::new(guest_image());
    let cache = tempfile::tempdir().expect("tempdir");

    let t = Instant::now();
    let first = detect(&qemu, &image, cache.path()).await;
    let took = t.elapsed();
    eprintln!("KVM probe verdict: {first:?} in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(25), "the probe must not hang");
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm_usable {
        let verdict =
            std::fs::read_to_string(cache.path().join("kvm-probe.json")).expect("cached verdict");
        eprintln!("cached verdict: {verdict}");
        let t = Instant::now();
        assert_eq!(detect(&qemu, &image, cache.path()).await, first);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "second probe must come from the cache"
        );
    } else {
        assert_eq!(first, Accel::Tcg);
    }
}
