//! The Debian root tree: `debootstrap --variant=minbase` plus the workshop packages, using the
//! same mirror and suite the host's apt uses. Cached by a hash of (suite, mirror, packages), so
//! only a change of package list pays the few minutes again.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::ProgressBar;

use crate::ImageError;

/// Packages added to minbase: the learner's tools plus what guest-init calls (`ip`, `mkfs.ext4`).
pub const DEFAULT_PACKAGES: &[&str] = &[
    "bash",
    "python3",
    "nodejs",
    "git",
    "ca-certificates",
    "iproute2",
    "e2fsprogs",
    "procps",
];

/// The host's Debian suite (`VERSION_CODENAME` in /etc/os-release), else bookworm.
pub fn host_suite() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".to_string())
}

/// The first Debian mirror the host's apt sources name for `suite`, else deb.debian.org.
pub fn host_mirror(suite: &str) -> String {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t, suite))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// Parses both one-line (`deb URI SUITE ...`) and deb822 (`URIs:`/`Suites:`) sources.
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"deb") {
            let rest: Vec<&str> = words[1..]
                .iter()
                .copied()
                .filter(|w| !w.starts_with('['))
                .collect();
            if rest.get(1) == Some(&suite) {
                return rest.first().map(|u| u.to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let suites = field("Suites:").unwrap_or_default();
        if field("Types:").is_some_and(|t| t.split_whitespace().any(|w| w == "deb"))
            && suites.split_whitespace().any(|s| s == suite)
        {
            return field("URIs:")
                .and_then(|u| u.split_whitespace().next())
                .map(str::to_string);
        }
    }
    None
}

/// Runs debootstrap into `dest` (via a temp dir renamed on success), showing its steps on `bar`.
pub(crate) fn debootstrap(
    suite: &str,
    mirror: &str,
    packages: &[String],
    dest: &Path,
    bar: &ProgressBar,
) -> Result<(), ImageError> {
    debootstrap_cached(suite, mirror, packages, None, dest, bar)
}

/// `debootstrap`, keeping the downloaded .debs in `debs` (when given) so the next build of any
/// recipe fetches only what changed.
pub(crate) fn debootstrap_cached(
    suite: &str,
    mirror: &str,
    packages: &[String],
    debs: Option<&Path>,
    dest: &Path,
    bar: &ProgressBar,
) -> Result<(), ImageError> {
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("debootstrap");
    cmd.args([
        "--variant=minbase",
        &format!("--include={}", packages.join(",")),
    ]);
    if let Some(d) = debs {
        std::fs::create_dir_all(d).map_err(ImageError::io("creating", d))?;
        cmd.arg(format!("--cache-dir={}", d.display()));
    }
    let mut child = cmd
        .arg(suite)
        .arg(&tmp)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageError::Spawn {
            tool: "debootstrap".into(),
            source,
        })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let mut last_lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(step) = line.strip_prefix("I: ") {
                bar.set_message(format!("debootstrap: {step}"));
            }
            last_lines.push(line);
            if last_lines.len() > 8 {
                last_lines.remove(0);
            }
        }
    }
    let status = child.wait().map_err(|source| ImageError::Spawn {
        tool: "debootstrap".into(),
        source,
    })?;
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(ImageError::Tool {
            tool: "debootstrap".into(),
            status: status.to_string(),
            stderr: format!("{}\n{stderr}", last_lines.join("\n")),
        });
    }
    // The package cache and lists are dead weight in a guest image.
    for junk in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = std::fs::read_dir(tmp.join(junk)) {
            for e in entries.filter_map(Result::ok) {
                if e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).map_err(ImageError::io("renaming the debootstrap tree", dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://sec.example\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        let one = "# comment\ndeb [arch=amd64] http://one.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one, "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
        assert_eq!(mirror_in(one, "trixie"), None);
    }
}
