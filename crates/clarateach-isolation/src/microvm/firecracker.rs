//! The Firecracker flavour: configure a microVM through Firecracker's REST API on its Unix socket
//! (machine-config, boot-source, drives, network-interfaces, then `InstanceStart`). The request
//! list is a pure function, unit-tested against a fake API server; networking is a per-seat TAP
//! device with a /30 (the daemon is reached at the guest's address).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_core::Limits;
use serde_json::{json, Value};

use super::http;
use super::qemu::{memory_mb, vcpus};

/// Boot arguments: like QEMU's, plus what Firecracker guests want (no PCI, reboot via keyboard
/// controller). Firecracker appends `virtio_mmio.device=` entries guest-init passes to the module.
pub const FC_BOOT_ARGS: &str =
    "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw tsc_early_khz=2500000 quiet -- guest-init";

/// One API call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    pub method: &'static str,
    pub path: String,
    pub body: Value,
}

/// What a seat's microVM is made of (paths as Firecracker sees them).
#[derive(Debug, Clone)]
pub struct FcSpec {
    pub limits: Limits,
    pub vmlinux: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
    pub volume: PathBuf,
    pub config_disk: PathBuf,
    pub tap: String,
    pub guest_mac: String,
}

/// The configuration requests, in the order Firecracker needs them, then `InstanceStart`.
pub fn requests(s: &FcSpec) -> Vec<ApiCall> {
    let put = |path: &str, body: Value| ApiCall {
        method: "PUT",
        path: path.to_string(),
        body,
    };
    let drive = |id: &str, path: &Path, ro: bool| {
        put(
            &format!("/drives/{id}"),
            json!({ "drive_id": id, "path_on_host": path, "is_root_device": false, "is_read_only": ro }),
        )
    };
    vec![
        put(
            "/machine-config",
            json!({ "vcpu_count": vcpus(&s.limits), "mem_size_mib": memory_mb(&s.limits), "smt": false }),
        ),
        put(
            "/boot-source",
            json!({ "kernel_image_path": s.vmlinux, "initrd_path": s.initrd, "boot_args": FC_BOOT_ARGS }),
        ),
        // Attachment order is the guest's vda, vdb, vdc.
        drive("rootfs", &s.rootfs, false),
        drive("volume", &s.volume, false),
        drive("config", &s.config_disk, true),
        put(
            "/network-interfaces/eth0",
            json!({ "iface_id": "eth0", "host_dev_name": s.tap, "guest_mac": s.guest_mac }),
        ),
        put("/actions", json!({ "action_type": "InstanceStart" })),
    ]
}

/// Sends `calls` in order over the API socket; stops at the first non-2xx answer.
pub async fn apply(socket: &Path, calls: &[ApiCall]) -> std::io::Result<()> {
    for call in calls {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let body = call.body.to_string();
        let resp = http::request(
            stream,
            call.method,
            &call.path,
            &[("Accept", "application/json")],
            Some(&body),
            Duration::from_secs(10),
        )
        .await?;
        if !(200..300).contains(&resp.status) {
            return Err(std::io::Error::other(format!(
                "firecracker {} {} answered {}: {}",
                call.method, call.path, resp.status, resp.body
            )));
        }
    }
    Ok(())
}

/// Asks the guest to shut down (Ctrl-Alt-Del; guest-init turns it into a clean power-off).
pub async fn send_ctrl_alt_del(socket: &Path) -> std::io::Result<()> {
    let call = ApiCall {
        method: "PUT",
        path: "/actions".into(),
        body: json!({ "action_type": "SendCtrlAltDel" }),
    };
    apply(socket, &[call]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec() -> FcSpec {
        FcSpec {
            limits: Limits {
                memory_mb: 512,
                cpu_millis: 2000,
                ..Limits::default()
            },
            vmlinux: "/img/vmlinux".into(),
            initrd: "/img/initrd.cpio".into(),
            rootfs: "/seat/rootfs.ext4".into(),
            volume: "/vol/seat-01.img".into(),
            config_disk: "/seat/config.img".into(),
            tap: "ctap0001".into(),
            guest_mac: "06:00:ac:1e:00:02".into(),
        }
    }

    /// A fake Firecracker API: records each request line + body, answers 204.
    async fn fake_api(sock: PathBuf, n: usize) -> Vec<(String, Value)> {
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let k = s.read(&mut buf).await.expect("read");
                raw.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        let line = head.lines().next().unwrap_or_default().to_string();
                        seen.push((line, serde_json::from_str(body).expect("json body")));
                        break;
                    }
                }
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .expect("answer");
        }
        seen
    }

    #[tokio::test]
    async fn request_sequence_reaches_the_api_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("fc.sock");
        let calls = requests(&spec());
        let server = tokio::spawn(fake_api(sock.clone(), calls.len()));
        while !sock.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        apply(&sock, &calls).await.expect("apply");
        let seen = server.await.expect("server");
        let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "PUT /machine-config HTTP/1.1",
                "PUT /boot-source HTTP/1.1",
                "PUT /drives/rootfs HTTP/1.1",
                "PUT /drives/volume HTTP/1.1",
                "PUT /drives/config HTTP/1.1",
                "PUT /network-interfaces/eth0 HTTP/1.1",
                "PUT /actions HTTP/1.1",
            ]
        );
        assert_eq!(
            seen[0].1,
            json!({"vcpu_count": 2, "mem_size_mib": 512, "smt": false})
        );
        assert!(seen[1].1["boot_args"]
            .as_str()
            .expect("args")
            .ends_with("-- guest-init"));
        assert_eq!(seen[1].1["initrd_path"], "/img/initrd.cpio");
        assert_eq!(seen[4].1["is_read_only"], true);
        assert_eq!(seen[5].1["host_dev_name"], "ctap0001");
        assert_eq!(seen[6].1, json!({"action_type": "InstanceStart"}));
    }
}
