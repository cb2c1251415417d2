//! Exports of hostile volumes, on the host: what a learner can leave in (or race against) a
//! seat's directory. The same attacks from inside a real seat are in `tests/export_hostile.rs`.

use super::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

async fn collect(s: impl futures::Stream<Item = std::io::Result<Bytes>>) -> Vec<u8> {
    let mut out = Vec::new();
    futures::pin_mut!(s);
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

fn job(dir: &std::path::Path, prefix: &str, format: ExportFormat) -> ExportJob {
    ExportJob {
        source: ExportSource::Dir(dir.into()),
        owner: None,
        prefix: Some(prefix.into()),
        format,
        cap_bytes: archive::DEFAULT_CAP_BYTES,
    }
}

/// Entry path -> (type, contents or link target) of a plain tar.
fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().to_string();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        if kind == tar::EntryType::Symlink {
            let target = entry.link_name().expect("link").expect("target");
            data = target.to_string_lossy().as_bytes().to_vec();
        } else {
            entry.read_to_end(&mut data).expect("read");
        }
        out.insert(path, (kind, data));
    }
    out
}

fn report(map: &BTreeMap<String, (tar::EntryType, Vec<u8>)>, prefix: &str) -> serde_json::Value {
    let raw = &map
        .get(&format!("{prefix}/EXPORT-REPORT.json"))
        .unwrap_or_else(|| panic!("no report in {:?}", map.keys()))
        .1;
    serde_json::from_slice(raw).expect("report json")
}

fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["path"].as_str().expect("path").to_string(),
                p["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

#[tokio::test]
async fn exports_files_and_stores_symlinks_as_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/main.py"), "print('hi')\n").expect("write");
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("leak")).expect("symlink");

    let gz = collect(stream(job(dir.path(), "seat-01", ExportFormat::TarGz))).await;
    let map = entries(&gunzip(&gz));
    assert_eq!(
        map["seat-01/src/main.py"],
        (tar::EntryType::Regular, b"print('hi')\n".to_vec())
    );
    assert_eq!(
        map["seat-01/leak"],
        (tar::EntryType::Symlink, b"/etc/hostname".to_vec())
    );
    assert_eq!(map["seat-01/src"].0, tar::EntryType::Directory);
    let r = report(&map, "seat-01");
    assert_eq!(
        (r["files"].as_u64(), r["symlinks"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(problems(&r).is_empty(), "{r}");

    let frag = collect(stream(job(
        dir.path(),
        "seat-02",
        ExportFormat::TarFragment,
    )))
    .await;
    assert_eq!(frag.len() % 512, 0);
    assert!(
        frag[frag.len() - 512..].iter().any(|b| *b != 0),
        "no end-of-archive blocks in a fragment"
    );
    assert!(entries(&frag).contains_key("seat-02/EXPORT-REPORT.json"));
}

#[tokio::test]
async fn a_missing_volume_exports_only_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = collect(stream(job(
        &dir.path().join("none"),
        "seat-01",
        ExportFormat::TarGz,
    )))
    .await;
    let map = entries(&gunzip(&gz));
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        vec!["seat-01/EXPORT-REPORT.json"]
    );
}

/// A FIFO (whose open would block), a socket, a device-less special, a 100 GiB sparse file, an
/// unreadable file and a learner's fake report: the export completes at once, holds at most the
/// cap, lists each of them, and the ordinary files are intact.
#[tokio::test]
async fn hostile_entries_are_reported_and_the_sparse_file_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = dir.path();
    std::fs::write(v.join("a.txt"), "alpha").expect("write");
    std::fs::create_dir(v.join("z")).expect("mkdir");
    std::fs::write(v.join("z/last.txt"), "omega").expect("write");
    let status = std::process::Command::new("mkfifo")
        .arg(v.join("pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let _sock = std::os::unix::net::UnixListener::bind(v.join("sock")).expect("socket");
    std::fs::File::create(v.join("huge.sparse"))
        .expect("create")
        .set_len(100 << 30)
        .expect("100 GiB sparse");
    std::fs::write(v.join(archive::REPORT_NAME), "{\"fake\": true}").expect("write");

    let mut j = job(v, "seat-03", ExportFormat::TarFragment);
    j.cap_bytes = 4 << 20;
    let started = std::time::Instant::now();
    let frag = collect(stream(j)).await;
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(frag.len() < (5 << 20), "archive of {} bytes", frag.len());
    let map = entries(&frag);
    let r = report(&map, "seat-03");
    assert_ne!(
        r.get("fake"),
        Some(&serde_json::Value::Bool(true)),
        "the learner's report won"
    );
    let p = problems(&r);
    for want in [
        ("pipe", "fifo"),
        ("sock", "socket"),
        ("huge.sparse", "file"),
        (archive::REPORT_NAME, "file"),
    ] {
        assert!(
            p.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {r}"
        );
    }
    assert_eq!(r["truncated"], serde_json::Value::Bool(true));
    // Whatever the walk order, the huge file took at most half the cap: the rest is intact.
    assert_eq!(map["seat-03/a.txt"].1, b"alpha");
    assert_eq!(map["seat-03/z/last.txt"].1, b"omega");
    let huge = map["seat-03/huge.sparse"].1.len();
    assert!(
        huge <= 2 << 20 && huge > (1 << 20),
        "{huge} bytes of the sparse file"
    );
    assert!(!map.contains_key("seat-03/pipe") && !map.contains_key("seat-03/sock"));
}

/// With the seat's uid (root's tests give the walk a throwaway one), a file only root may read
/// is reported, not archived, and the other files still come through.
#[tokio::test]
async fn the_walk_runs_with_the_owners_rights() {
    if !creds::can_switch() {
        clarateach_core::skip::report(
            "the_walk_runs_with_the_owners_rights",
            "needs root to run the walk as another uid",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let v = dir.path().join("vol");
    std::fs::create_dir(&v).expect("mkdir");
    std::fs::write(v.join("mine.txt"), "mine").expect("write");
    std::fs::write(v.join("root-only"), "ROOTSECRET").expect("write");
    std::fs::set_permissions(v.join("root-only"), PermissionsExt::from_mode(0o600)).expect("chmod");
    for p in [v.clone(), v.join("mine.txt")] {
        std::os::unix::fs::chown(&p, Some(61998), Some(61998)).expect("chown");
    }
    let mut j = job(&v, "seat-04", ExportFormat::TarFragment);
    j.owner = Some((61998, 61998));
    let frag = collect(stream(j)).await;
    let map = entries(&frag);
    assert_eq!(map["seat-04/mine.txt"].1, b"mine");
    assert!(!map.contains_key("seat-04/root-only"));
    assert!(!frag.windows(10).any(|w| w == b"ROOTSECRET"));
    let r = report(&map, "seat-04");
    assert!(
        problems(&r).contains(&("root-only".into(), "file".into())),
        "{r}"
    );
}

/// The attack of issue 16 on the host: while exports run, a racer swaps a name between a
/// symlink to a root-only file and a real file as fast as it can. No archive may hold a byte
/// of the target, whether the walk has the seat's uid or (as here) root's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swapped_during_exports_never_leaks_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("MARKER-{:016x}", rand::random::<u64>());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &marker).expect("write");
    std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).expect("chmod");
    let v = dir.path().join("vol");
    std::fs::create_dir_all(v.join("sub")).expect("mkdir");
    for i in 0..300 {
        std::fs::write(v.join(format!("f{i:03}")), "filler").expect("write");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (stop, v, secret) = (stop.clone(), v.clone(), secret.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for x in [v.join("x"), v.join("sub")] {
                    let _ = std::fs::remove_file(&x).or_else(|_| std::fs::remove_dir_all(&x));
                    let _ = std::os::unix::fs::symlink(&secret, &x);
                    let _ = std::fs::remove_file(&x);
                    let _ = std::fs::write(&x, "hi\n");
                }
                swaps += 1;
            }
            swaps
        })
    };
    let mut saw_file = 0;
    for i in 0..50 {
        let frag = collect(stream(job(
            &v,
            &format!("seat-{i}"),
            ExportFormat::TarFragment,
        )))
        .await;
        assert!(
            !frag.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "export {i} leaked the root-only file"
        );
        let map = entries(&frag);
        if map
            .get(&format!("seat-{i}/x"))
            .is_some_and(|e| e.0 == tar::EntryType::Regular)
        {
            saw_file += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = racer.join().expect("racer");
    println!("50 exports raced {swaps} swaps; x was a regular file in {saw_file}");
    assert!(swaps > 50, "the racer barely ran ({swaps} swaps)");
}

/// The microVM path end to end: an ext4 image (made with `mkfs.ext4 -d`) holding a 100 GiB
/// sparse file, a symlink to a host secret, a FIFO and the learner's files is parsed (as
/// `nobody` when root) and archived within the cap, with the specials in the report.
#[tokio::test]
async fn an_ext4_volume_exports_capped_with_its_report() {
    let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(mkfs) = mkfs else {
        clarateach_core::skip::report(
            "an_ext4_volume_exports_capped_with_its_report",
            "e2fsprogs (mkfs.ext4) not installed",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("proj")).expect("mkdir");
    std::fs::write(src.join("proj/main.py"), "print(1)\n").expect("write");
    std::fs::File::create(src.join("huge.sparse"))
        .expect("create")
        .set_len(100 << 30)
        .expect("sparse");
    std::os::unix::fs::symlink("/etc/shadow", src.join("leak")).expect("symlink");
    assert!(std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .expect("mkfifo")
        .success());
    let img = dir.path().join("seat-01.img");
    std::fs::File::create(&img)
        .expect("create")
        .set_len(64 << 20)
        .expect("size");
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&img)
        .output()
        .expect("mkfs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The image is root's 0600 file, as the microVM backend keeps it: opened before the switch.
    std::fs::set_permissions(&img, PermissionsExt::from_mode(0o600)).expect("chmod");

    let frag = collect(stream(ExportJob {
        source: ExportSource::Ext4Image(img),
        owner: None,
        prefix: Some("seat-01".into()),
        format: ExportFormat::TarFragment,
        cap_bytes: 8 << 20,
    }))
    .await;
    assert!(frag.len() < 9 << 20, "{} bytes", frag.len());
    let map = entries(&frag);
    assert_eq!(map["seat-01/proj/main.py"].1, b"print(1)\n");
    assert_eq!(
        map["seat-01/leak"],
        (tar::EntryType::Symlink, b"/etc/shadow".to_vec())
    );
    let r = report(&map, "seat-01");
    let p = problems(&r);
    assert!(p.contains(&("pipe".into(), "fifo".into())), "{r}");
    assert!(p.contains(&("huge.sparse".into(), "file".into())), "{r}");
    assert!(!map.keys().any(|k| k.contains("lost+found")));
}
