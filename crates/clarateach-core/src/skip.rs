//! How a test that cannot run here says so. A test needing root, a tool or KVM that returns early
//! would otherwise read as a pass; [`report`] prints `SKIP: <test>: <why>` on stdout (kept in
//! libtest's output of a failing run, and shown with `--nocapture`) and on stderr, and appends the
//! same line to the file named by `CLARATEACH_SKIP_LOG` when set, which `scripts/test.sh` sets
//! and prints at the end of a run, so CI's summary lists every skipped test and why.

use std::io::Write;

/// The environment variable naming the file skipped tests are appended to.
pub const SKIP_LOG_ENV: &str = "CLARATEACH_SKIP_LOG";

/// Reports that `test` was skipped because of `why` (see the module header). Call it, then
/// return from the test.
pub fn report(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}");
    println!("{line}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty()) {
        // One write of a whole line with O_APPEND: parallel test binaries do not interleave.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "cannot append to {SKIP_LOG_ENV}={}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_line_per_skip_to_the_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("skips");
        // Only this test sets the variable in this test binary.
        std::env::set_var(SKIP_LOG_ENV, &log);
        report("a_test", "needs root");
        report("b_test", "needs /dev/kvm");
        std::env::remove_var(SKIP_LOG_ENV);
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            text,
            "SKIP: a_test: needs root\nSKIP: b_test: needs /dev/kvm\n"
        );
    }
}
