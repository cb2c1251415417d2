//! `clarateach up --backend microvm --image-dir DIR` as a user runs it: the instructor CLI
//! creates and starts a one-seat workshop, a learner joins over HTTP and `uname -r` through the
//! gateway answers the guest's kernel, not the host's; stop and Ctrl-C leave no QEMU behind.
//! Reuses the guest image cached in `$CLARATEACH_IMAGE_CACHE` or /var/cache/clarateach/images/ci
//! (built with `clarateach image build` when missing). Under TCG a seat boots in 7-15 s. Skips
//! with the reason when QEMU (or, to build the image, debootstrap) or root is missing. Also: a
//! missing image is refused up front with the command that builds one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clarateach_image::ImageLayout;
use support::*;

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

fn image_cache() -> PathBuf {
    std::env::var_os("CLARATEACH_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/images/ci"))
}

/// Why this host cannot run the test, if it cannot.
fn skip_reason(image: &Path) -> Option<String> {
    if !is_root() {
        return Some("needs root (guest image build, seat volumes)".into());
    }
    if !on_path("qemu-system-x86_64") {
        return Some(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
        );
    }
    if ImageLayout::new(image).load().is_err() {
        for tool in ["debootstrap", "mkfs.ext4", "dpkg-deb"] {
            if !on_path(tool) {
                return Some(format!(
                    "no cached image in {} and {tool} is not installed to build one",
                    image.display()
                ));
            }
        }
    }
    None
}

/// The cached image brought up to this binary by `clarateach image build --out DIR`: instant when
/// it matches, seconds when only the binary changed (the initramfs carries the guest's binary),
/// minutes when there is none; so the guest never runs a stale daemon.
fn ensure_image(dir: &Path) {
    if ImageLayout::new(dir).load().is_ok() {
        eprintln!(
            "checking the guest image in {} against this binary",
            dir.display()
        );
    } else {
        eprintln!("building the guest image in {} (minutes)", dir.display());
    }
    let status = Command::new(BIN)
        .args(["image", "build", "--out", &dir.display().to_string()])
        .status()
        .expect("run clarateach image build");
    assert!(status.success(), "clarateach image build failed");
}

/// `clarateach workshop <args> --api-url URL --data-dir DIR`; stdout on success.
fn workshop(base: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("workshop")
        .args(args)
        .args(["--api-url", base, "--data-dir", &dir.display().to_string()])
        .output()
        .expect("run clarateach workshop");
    assert!(
        out.status.success(),
        "workshop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn up_microvm_without_image_says_how_to_build() {
    let (_tmp, dir) = data_dir();
    let empty = dir.join("no-image");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = Command::new(BIN)
        .args(["up", "--backend", "microvm", "--listen", "127.0.0.1:0"])
        .args(["--image-dir", &empty.display().to_string()])
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .output()
        .expect("run clarateach up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "up without an image must fail");
    let hint = format!("clarateach image build --out {}", empty.display());
    assert!(
        stderr.contains("no built guest image") && stderr.contains(&hint),
        "{stderr}"
    );
    assert!(
        !stderr.contains("listening"),
        "failed before listening: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_microvm_runs_the_guest_kernel() {
    let image = image_cache();
    if let Some(why) = skip_reason(&image) {
        clarateach_core::skip::report("up_microvm_runs_the_guest_kernel", &why);
        return;
    }
    ensure_image(&image);
    let guest_kernel = ImageLayout::new(&image)
        .load()
        .expect("image manifest")
        .kernel_release;
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = ["up", "--backend", "microvm", "--heartbeat-ms", "300"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--image-dir".into(),
            image.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.display().to_string(),
        ])
        .collect();
    let up = Proc::start(&dir, "up", &args, "ClaraTeach is up");

    let created: serde_json::Value = serde_json::from_str(&workshop(
        &base,
        &dir,
        &["create", "--name", "microvm", "--seats", "1", "--json"],
    ))
    .expect("create json");
    let id = created["workshop"]["id"].as_str().expect("id").to_string();
    let code = created["workshop"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    let started = std::time::Instant::now();
    workshop(&base, &dir, &["start", &id, "--timeout", "120"]);
    eprintln!("seat ready in {:.1}s", started.elapsed().as_secs_f64());

    let http = reqwest::Client::new();
    let join: serde_json::Value = http
        .post(format!("{base}/api/join"))
        .json(&serde_json::json!({ "code": code, "name": "Ada" }))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("join json");
    let token = join["token"].as_str().expect("learner token");
    let run: serde_json::Value = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": "uname -r", "timeout_s": 60 }))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("run json");
    assert_eq!(run["exit_code"], 0, "{run}");
    let uname = run["stdout"].as_str().unwrap_or_default().trim();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel");
    assert_eq!(uname, guest_kernel, "{run}");
    assert_ne!(uname, host.trim(), "the seat must run the guest kernel");

    workshop(&base, &dir, &["stop", &id, "--yes"]);
    let pid = up.child.id();
    assert!(up.stop("-INT").success(), "up exits cleanly on Ctrl-C");
    let left = processes_using(&dir, &[pid]);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
