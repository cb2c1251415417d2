//! Searching a data dir for a secret, shared by the tests that check none reaches the agent's
//! disk (the sandbox's and the microVM's seat records, config disks and seat images).

use std::path::{Path, PathBuf};

/// Every regular file under `dir` whose bytes contain `needle` (sockets and other specials
/// skipped). Seat images are large and mostly holes: a fast substring search.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if memchr::memmem::find(&bytes, needle).is_some() {
                        hits.push(e.path());
                    }
                }
            }
        }
    }
    hits
}
