//! The QEMU microvm backend for real, under TCG where KVM does not work (CI): build (or reuse)
//! the guest image, start one seat, the daemon answers, `uname -r` shows the guest kernel, the
//! guest's binary is the one the image manifest records (never a stale cached one), a
//! guest cannot reach the host without egress, pause (QMP stop) and resume keep its processes, a file in /workspace survives destroy +
//! recreate, export reads the volume, and a stop leaves no
//! qemu process. Skips with a printed reason when qemu or debootstrap is missing.

mod microvm_support;
mod scan;

use std::time::Instant;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::microvm::{AccelChoice, MicrovmBackend, MicrovmConfig};
use clarateach_isolation::{Backend, DaemonAddr, WorkspaceSpec, WorkspaceStatus};
use microvm_support::*;

fn spec(key: &SeatKey) -> WorkspaceSpec {
    WorkspaceSpec {
        key: key.clone(),
        limits: Limits {
            memory_mb: 256,
            cpu_millis: 1000,
            ..Limits::default()
        },
        image: None,
        env: [(
            "WORKSHOP_GREETING".to_string(),
            "hello-from-env".to_string(),
        )]
        .into(),
        daemon_token: "test-token-microvm".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_seat_lifecycle_keeps_the_volume() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("qemu_seat_lifecycle_keeps_the_volume", &why);
        return;
    }
    let image_dir = guest_image();
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = MicrovmConfig::new(data.path(), &image_dir);
    // The KVM probe has its own test; here the accelerator comes from the env or is TCG (CI).
    cfg.accel = match std::env::var("CLARATEACH_TEST_ACCEL").as_deref() {
        Ok("auto") => AccelChoice::Auto,
        Ok("kvm") => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    cfg.volume_mb = 256;
    let backend = MicrovmBackend::new(cfg).expect("backend");
    let key = SeatKey {
        workshop_id: "ws-mvtest".into(),
        seat: 1,
    };
    let seat_dir = data.path().join("microvm/ws-mvtest/seat-01");
    let seat_needle = seat_dir.to_string_lossy().into_owned();

    backend.create(&spec(&key)).await.expect("create");
    assert_eq!(
        backend.status(&key).await.expect("status"),
        WorkspaceStatus::Stopped
    );
    let t = Instant::now();
    let ep = backend.start(&key).await.expect("start");
    eprintln!(
        "seat ready in {} ms ({:?})",
        t.elapsed().as_millis(),
        backend.accel().await
    );
    assert_eq!(
        backend.status(&key).await.expect("status"),
        WorkspaceStatus::Running
    );
    let DaemonAddr::Tcp(addr) = ep.addr else {
        panic!("expected a TCP endpoint, got {:?}", ep.addr)
    };
    assert!(addr.ip().is_loopback());
    assert!(
        clarateach_isolation::microvm::health(addr).await,
        "daemon /health"
    );
    let pids = qemu_pids_mentioning(&seat_needle);
    assert_eq!(pids.len(), 1, "one qemu for the seat");
    eprintln!(
        "qemu RSS for an idle seat with -m 256: {} MiB",
        rss_mib(pids[0])
    );

    let (uname, code) = run(addr, &ep.token, "uname -r").await;
    assert_eq!(code, 0);
    assert_eq!(
        uname.trim(),
        backend.kernel_release(),
        "the daemon runs in the guest kernel"
    );
    // The guest runs the binary this build put in the image (the initramfs's, bound over the
    // root disk's possibly older copy), never a stale one from a cached root disk.
    let manifest = clarateach_image::ImageLayout::new(&image_dir)
        .load()
        .expect("manifest");
    let (sum, code) = run(addr, &ep.token, "sha256sum /usr/local/bin/clarateach").await;
    assert_eq!(code, 0, "{sum}");
    assert_eq!(
        sum.split_whitespace().next(),
        Some(manifest.guest_binary_sha256.as_str()),
        "the guest's clarateach is the one the manifest records"
    );
    // No egress by default: the guest cannot reach the host (10.0.2.2 is QEMU's host alias)
    // even on a port that is listening there.
    let host = std::net::TcpListener::bind("0.0.0.0:0").expect("host listener");
    let port = host.local_addr().expect("addr").port();
    let probe = format!(
        "timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{port}' && echo REACHED || echo BLOCKED"
    );
    let (reach, _) = run(addr, &ep.token, &probe).await;
    assert!(reach.contains("BLOCKED"), "guest reached the host: {reach}");
    drop(host);
    // Pause over a break (QMP stop): the guest does not answer; resume (QMP cont) and the same
    // guest goes on (same boot, same daemon).
    let (boot_before, code) = run(addr, &ep.token, "cat /proc/sys/kernel/random/boot_id").await;
    assert_eq!(code, 0);
    let t = Instant::now();
    Backend::pause(&backend, &key).await.expect("pause");
    eprintln!("microVM pause (QMP stop) took {:?}", t.elapsed());
    let answered = tokio::time::timeout(
        std::time::Duration::from_millis(800),
        clarateach_isolation::microvm::health(addr),
    )
    .await;
    assert!(
        !matches!(answered, Ok(true)),
        "a paused guest answered /health"
    );
    let t = Instant::now();
    Backend::resume(&backend, &key).await.expect("resume");
    eprintln!("microVM resume (QMP cont) took {:?}", t.elapsed());
    assert!(
        clarateach_isolation::microvm::health(addr).await,
        "daemon /health after resume"
    );
    let (boot_after, _) = run(addr, &ep.token, "cat /proc/sys/kernel/random/boot_id").await;
    assert_eq!(
        boot_after, boot_before,
        "the guest was restarted, not resumed"
    );
    let (who, _) = run(addr, &ep.token, "id -un; echo $WORKSHOP_GREETING").await;
    assert_eq!(
        who.split_whitespace().collect::<Vec<_>>(),
        ["learner", "hello-from-env"]
    );
    // The environment (where a workshop's API key lives) reached the guest without touching the
    // agent's disk: no seat record or config disk holds it (QEMU has it in a memfd).
    let on_disk = scan::files_containing(data.path(), b"hello-from-env");
    assert!(
        on_disk.is_empty(),
        "the seat's environment is on disk: {on_disk:?}"
    );
    let (_, code) = run(
        addr,
        &ep.token,
        "echo persisted > /workspace/keep.txt && sync",
    )
    .await;
    assert_eq!(code, 0);

    // Destroy the VM (keeping the volume) and recreate it: the file is still there.
    backend.destroy(&key, false).await.expect("destroy");
    assert!(
        qemu_pids_mentioning(&seat_needle).is_empty(),
        "destroy left a qemu process"
    );
    assert_eq!(
        backend.status(&key).await.expect("status"),
        WorkspaceStatus::Missing
    );
    backend.create(&spec(&key)).await.expect("recreate");
    let ep = backend.start(&key).await.expect("restart");
    let DaemonAddr::Tcp(addr) = ep.addr else {
        panic!("tcp")
    };
    let (kept, _) = run(addr, &ep.token, "cat /workspace/keep.txt").await;
    assert_eq!(kept.trim(), "persisted");

    // A graceful stop powers the guest off: no qemu left, and the export sees the file.
    backend.stop(&key).await.expect("stop");
    assert!(
        qemu_pids_mentioning(&seat_needle).is_empty(),
        "stop left a qemu process"
    );
    assert_eq!(
        backend.status(&key).await.expect("status"),
        WorkspaceStatus::Stopped
    );
    let console = std::fs::read_to_string(backend.console_log(&key)).unwrap_or_default();
    assert!(
        console.contains("powering off"),
        "the guest shut down cleanly:\n{console}"
    );
    let clarateach_isolation::export::ExportSource::Ext4Image(image) = backend.export_source(&key)
    else {
        panic!("a microVM volume is an ext4 image");
    };
    let mut sink = KeepFile::default();
    clarateach_isolation::microvm::volume::walk(
        std::fs::File::open(&image).expect("open the volume image"),
        &mut sink,
    )
    .expect("walk the volume");
    assert_eq!(
        String::from_utf8_lossy(&sink.0).trim(),
        "persisted",
        "keep.txt read from the volume image"
    );

    backend
        .destroy(&key, true)
        .await
        .expect("destroy with volume");
    assert!(!data.path().join("volumes/ws-mvtest/seat-01.img").exists());
    assert!(qemu_pids_mentioning(&seat_needle).is_empty());
}

/// Keeps the bytes of `keep.txt` from a volume walk.
#[derive(Default)]
struct KeepFile(Vec<u8>);

impl clarateach_isolation::export::VolumeSink for KeepFile {
    fn dir(&mut self, _: &[u8], _: clarateach_isolation::export::EntryMeta) -> std::io::Result<()> {
        Ok(())
    }
    fn file(
        &mut self,
        path: &[u8],
        _: clarateach_isolation::export::EntryMeta,
        _: u64,
        data: &mut dyn std::io::Read,
    ) -> std::io::Result<()> {
        if path == b"keep.txt" {
            std::io::Read::read_to_end(&mut std::io::Read::take(data, 1 << 20), &mut self.0)?;
        }
        Ok(())
    }
    fn symlink(
        &mut self,
        _: &[u8],
        _: clarateach_isolation::export::EntryMeta,
        _: &[u8],
    ) -> std::io::Result<()> {
        Ok(())
    }
    fn skip(&mut self, _: &[u8], _: &str, _: &str) {}
}
