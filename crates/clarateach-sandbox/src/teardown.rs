//! What `clean --all` removes once no sandbox is left: the parts the backend shares between
//! sandboxes (the seat store's bind mount and spare file systems, the generated `/etc`, the
//! parent cgroup). Per-sandbox parts go with each sandbox's `destroy`; after this the state dir
//! holds only the store and the lock.

use std::path::{Path, PathBuf};

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort();
    found.dedup();
    found.reverse();
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 4).unwrap_or(""), 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything under the backend's data dir, removes it and the state dir's cgroup.
pub fn shared_parts(backend_dir: &Path, cgroup: &str) -> std::io::Result<()> {
    for m in mounts_under(backend_dir) {
        // Detached: a sandbox is gone, so nothing holds these; detach never blocks on it.
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "unmount failed");
        }
    }
    match std::fs::remove_dir_all(backend_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Ok(cg) = clarateach_isolation::cgroups::host_manager() {
        if let Err(e) = cg.remove(cgroup) {
            tracing::warn!(error = %e, "removing the sandbox cgroup parent failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/x\134"), r"/x\");
    }
}
