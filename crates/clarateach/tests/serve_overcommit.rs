//! `serve --memory-overcommit` and the `memory_overcommit` key of `serve --config` (issue 13):
//! a bad factor is one clear line and a non-zero exit before anything is opened or bound.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clarateach");

fn serve(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .arg("serve")
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--listen", "127.0.0.1:1"])
        .args(args)
        .env_remove("CLARATEACH_MEMORY_OVERCOMMIT")
        .env_remove("CLARATEACH_CPU_OVERCOMMIT")
        .output()
        .expect("run clarateach serve");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_overcommit_flags_and_keys_exit_non_zero_with_a_clear_message() {
    for bad in ["0", "-1", "lots", "1e9"] {
        let (ok, err) = serve(&[&format!("--memory-overcommit={bad}")]);
        assert!(!ok, "--memory-overcommit={bad} accepted");
        assert!(
            err.contains("--memory-overcommit") && err.contains("overcommit factor"),
            "{bad}: {err}"
        );
    }
    let (ok, err) = serve(&["--cpu-overcommit=0"]);
    assert!(!ok && err.contains("--cpu-overcommit"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("serve.toml");
    std::fs::write(&file, "memory_overcommit = -3\n").expect("write");
    let (ok, err) = serve(&["--config", &file.display().to_string()]);
    assert!(!ok, "a negative memory_overcommit key accepted");
    assert!(
        err.contains("memory_overcommit") && err.contains("out of range"),
        "{err}"
    );
    std::fs::write(&file, "memory_overcommit = \"eight\"\n").expect("write");
    let (ok, err) = serve(&["--config", &file.display().to_string()]);
    assert!(!ok && err.contains("memory_overcommit"), "{err}");
}
