//! Path confinement of the daemon's file API, as a learner attacks it: the input first plants
//! symlinks inside the root (what a shell in the seat can do), then runs one file operation with
//! a hostile path. Whatever happens, nothing outside the root may be read, listed, written,
//! renamed or deleted, and nothing may panic. Counts escapes by checking the outside directory
//! after every run and the bytes every read returned.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clarateach_workspace::fsroot::{RelPath, Root};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"FUZZ-SECRET-7f3a9c";

struct Fixture {
    base: PathBuf,
    root_dir: PathBuf,
    outside: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // tmpfs when there is one: the target is syscall-bound.
        let tmp = Path::new("/dev/shm");
        let tmp = if tmp.is_dir() { tmp.to_path_buf() } else { std::env::temp_dir() };
        let base = tmp.join(format!("ct-fuzz-{}", std::process::id()));
        let root_dir = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root_dir).expect("root");
        std::fs::create_dir_all(outside.join("dir")).expect("outside");
        std::fs::write(outside.join("secret"), SECRET).expect("secret");
        std::fs::write(outside.join("dir/secret2"), SECRET).expect("secret2");
        Fixture {
            base,
            root_dir,
            outside,
        }
    })
}

fn outside_intact(f: &Fixture) -> bool {
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    names(&f.outside) == ["dir", "secret"]
        && names(&f.outside.join("dir")) == ["secret2"]
        && std::fs::read(f.outside.join("secret")).ok().as_deref() == Some(SECRET)
        && std::fs::read(f.outside.join("dir/secret2")).ok().as_deref() == Some(SECRET)
        && names(&f.base) == ["outside", "root"]
}

/// Empties the root back to just `sub/` (cheap when the last run changed nothing).
fn reset(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.filter_map(Result::ok) {
            if e.file_name() == "sub"
                && e.file_type().is_ok_and(|t| t.is_dir())
                && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none())
            {
                continue;
            }
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let _ = if is_dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Symlink targets a learner would try.
const TARGETS: [&str; 8] = [
    "..",
    "../outside",
    "../outside/secret",
    "/",
    "/proc/self/root",
    "../../",
    "sub/../../outside",
    "link0",
];

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    reset(&f.root_dir);
    let _ = std::fs::create_dir(f.root_dir.join("sub"));
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let links = parts.next().unwrap_or("");
    // Up to 4 planted symlinks: `name=targetIndex;...`
    for spec in links.split(';').take(4) {
        let (name, idx) = spec.split_once('=').unwrap_or((spec, "0"));
        // One component, at the top or in `sub/`: the fixture itself must not follow an earlier
        // planted link out of the root (a learner's shell resolves links inside the seat).
        let (dir, name) = match name.strip_prefix("sub/") {
            Some(rest) => (f.root_dir.join("sub"), rest),
            None => (f.root_dir.clone(), name),
        };
        if name.is_empty() || name.contains(['\0', '/']) || name == "." || name == ".." {
            continue;
        }
        let target = TARGETS[idx.bytes().map(usize::from).sum::<usize>() % TARGETS.len()];
        let _ = std::os::unix::fs::symlink(target, dir.join(name));
    }
    let op = parts.next().and_then(|s| s.bytes().next()).unwrap_or(0) % 6;
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("x");
    let Ok(root) = Root::open(&f.root_dir) else {
        return;
    };
    let (Ok(pa), pb) = (RelPath::parse(a), RelPath::parse(b)) else {
        return;
    };
    match op {
        0 => {
            if let Ok(bytes) = root.read(&pa, 1 << 20) {
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET),
                    "read escaped the root: {a:?}"
                );
            }
        }
        1 => {
            if let Ok(list) = root.list(&pa) {
                assert!(
                    !list.iter().any(|i| i.name == "secret" || i.name == "secret2"),
                    "list escaped the root: {a:?}"
                );
            }
        }
        2 => {
            let _ = root.write(&pa, b"overwritten");
        }
        3 => {
            if let Ok(pb) = pb {
                let _ = root.rename(&pa, &pb);
            }
        }
        4 => {
            let _ = root.mkdir(&pa);
        }
        _ => {
            let _ = root.delete(&pa);
        }
    }
    assert!(outside_intact(f), "op {op} on {a:?}/{b:?} touched outside the root");
});
