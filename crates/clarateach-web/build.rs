//! Builds the web UI (`npm install` + `npm run build` in `web/`) when `web/dist` is missing or older
//! than its sources, and tells the crate where the files to embed are. With
//! `CLARATEACH_SKIP_WEB_BUILD=1` a one-page placeholder is embedded instead (clippy/CI speed only).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

fn main() {
    println!("cargo:rerun-if-env-changed=CLARATEACH_SKIP_WEB_BUILD");
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("..").join("..").join("web");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        web.join("dist").join("index.html").display()
    );

    let skip = std::env::var("CLARATEACH_SKIP_WEB_BUILD").is_ok_and(|v| !v.is_empty() && v != "0");
    let folder = if skip { placeholder() } else { build(&web) };
    println!("cargo:rustc-env=CLARATEACH_WEB_DIST={}", folder.display());
}

/// Returns `web/dist`, running npm first when it is missing or stale.
fn build(web: &Path) -> PathBuf {
    let dist = web.join("dist");
    let built = mtime(&dist.join("index.html"));
    let newest_input = INPUTS.iter().filter_map(|i| newest(&web.join(i))).max();
    let stale = match (built, newest_input) {
        (None, _) => true,
        (Some(b), Some(i)) => i > b,
        (Some(_), None) => false,
    };
    if !stale {
        return dist;
    }
    if Command::new("npm")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!(
            "\n\nclarateach-web: `npm` was not found, and the web UI in {} must be built.\n\
             Install Node.js 20+ with npm (Debian: `apt-get install nodejs npm`), or set \
             CLARATEACH_SKIP_WEB_BUILD=1 to embed a placeholder page instead of the UI.\n\n",
            web.display()
        );
    }
    let lock = web.join("package-lock.json");
    let installed = mtime(&web.join("node_modules").join(".package-lock.json"));
    let needs_install = match (installed, mtime(&lock), mtime(&web.join("package.json"))) {
        (None, _, _) => true,
        (Some(i), l, p) => l.is_some_and(|l| l > i) || p.is_some_and(|p| p > i),
    };
    if needs_install {
        // Not `npm ci`: npm 11 leaves other platforms' optional packages (rollup's, esbuild's)
        // out of the lock file it writes, and `npm ci` then refuses that lock as out of sync.
        // `install --no-save` installs the locked versions and never rewrites the lock.
        npm(web, &["install", "--no-save", "--no-audit", "--no-fund"]);
    }
    npm(web, &["run", "build"]);
    if !dist.join("index.html").exists() {
        panic!(
            "clarateach-web: `npm run build` succeeded but {} has no index.html",
            dist.display()
        );
    }
    dist
}

fn npm(web: &Path, args: &[&str]) {
    println!(
        "cargo:warning=clarateach-web: running `npm {}` in web/",
        args.join(" ")
    );
    let out = Command::new("npm")
        .args(args)
        .current_dir(web)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .unwrap_or_else(|e| panic!("clarateach-web: could not run npm: {e}"));
    if !out.status.success() {
        panic!(
            "\n\nclarateach-web: `npm {}` failed in {} ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            args.join(" "),
            web.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A one-page stand-in so the crate compiles without Node (`CLARATEACH_SKIP_WEB_BUILD=1`).
fn placeholder() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("web-placeholder");
    fs::create_dir_all(&out).expect("create the placeholder directory in OUT_DIR");
    fs::write(
        out.join("index.html"),
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ClaraTeach</title></head>\
         <body><h1>ClaraTeach</h1><p>This binary was built with CLARATEACH_SKIP_WEB_BUILD=1, so the web UI \
         is not included. Rebuild without it (Node.js 20+ and npm needed) to get the UI.</p></body></html>\n",
    )
    .expect("write the placeholder index.html");
    out
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Newest modification time of a file, or of anything under a directory.
fn newest(p: &Path) -> Option<SystemTime> {
    let meta = fs::metadata(p).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    let mut best = meta.modified().ok();
    for entry in fs::read_dir(p).ok()?.flatten() {
        if let Some(t) = newest(&entry.path()) {
            best = Some(best.map_or(t, |b| b.max(t)));
        }
    }
    best
}
