//! What `create` asks for, checked: the language or image (one function, `runtime_for`, decides
//! what a language means, so the image store can take over in one place), the network policy,
//! the limits and the id.

use std::path::Path;

use clarateach_core::{Limits, NetworkPolicy};
use rand::Rng;

use crate::SandboxError;

/// What a sandbox's root is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The language or image asked for (`python`, `node`, `claude`, `base`, or an image).
    pub language: String,
    /// The image whose rootfs is `/`; `None`: the host's read-only system directories.
    pub image: Option<String>,
    /// Said to the user at create: a built-in language runs on the host root because its seat
    /// image is not built.
    pub note: Option<String>,
}

/// Built-in languages and the program each needs on the host root.
const LANGUAGES: &[(&str, Option<&str>)] = &[
    ("base", None),
    ("python", Some("python3")),
    ("node", Some("node")),
    ("claude", Some("claude")),
];

/// Directories searched for a language's interpreter on the host root (the sandbox's `PATH`).
const HOST_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// Maps `--language` to a root. A built-in language with an interpreter is its seat image of
/// the image store `images` when one is built there (`clarateach image build python`): the
/// image's own `/usr`, none of the host's Python start-up files (a host `.pth` importing
/// certifi cost ~60 ms of every `python3` start). Otherwise it is the host root with its
/// interpreter checked, and a note saying so. `base` is the host root. Any other name must be
/// an image directory of the backend's data dir (`images/NAME/rootfs`); the backend would
/// otherwise fall back to the host root without a word.
pub fn runtime_for(
    language: &str,
    backend_data: &Path,
    images: &Path,
) -> Result<Runtime, SandboxError> {
    if let Some((name, program)) = LANGUAGES.iter().find(|(n, _)| *n == language) {
        let mut note = None;
        if let Some(program) = program {
            let store = clarateach_image::ImageStore::new(images);
            if store.rootfs(name).is_some_and(|r| r.is_dir()) {
                return Ok(Runtime {
                    language: name.to_string(),
                    image: Some(name.to_string()),
                    note: None,
                });
            }
            note = Some(format!(
                "no {name} seat image in {} (`clarateach image build {name}`): using the host's {program}",
                images.display()
            ));
            if !HOST_PATH
                .iter()
                .any(|d| Path::new(d).join(program).exists())
            {
                return Err(SandboxError::MissingInterpreter {
                    language: name.to_string(),
                    program: program.to_string(),
                });
            }
        }
        return Ok(Runtime {
            language: name.to_string(),
            image: None,
            note,
        });
    }
    if !valid_name(language)
        || !(backend_data
            .join("images")
            .join(language)
            .join("rootfs")
            .is_dir()
            || clarateach_image::ImageStore::new(images)
                .rootfs(language)
                .is_some_and(|r| r.is_dir()))
    {
        return Err(SandboxError::UnknownImage(language.to_string()));
    }
    Ok(Runtime {
        language: language.to_string(),
        image: Some(language.to_string()),
        note: None,
    })
}

/// `none`, `open` or `allow:HOST,...`.
pub fn parse_network(s: &str) -> Result<NetworkPolicy, SandboxError> {
    let bad = || SandboxError::BadNetwork(s.to_string());
    let policy = match s {
        "none" => NetworkPolicy::None,
        "open" => NetworkPolicy::Open,
        _ => {
            let hosts = s.strip_prefix("allow:").ok_or_else(bad)?;
            NetworkPolicy::Allow {
                allow: hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(String::from)
                    .collect(),
            }
        }
    };
    // The core type checks host names and counts.
    policy.validate().map_err(|_| bad())?;
    Ok(policy)
}

/// What `create` may set of the limits; the rest keep their defaults.
#[derive(Debug, Clone, Default)]
pub struct LimitArgs {
    pub cpu: Option<f64>,
    pub mem_mib: Option<u32>,
    pub disk_mib: Option<u32>,
    pub network: NetworkPolicy,
}

/// Limits from the flags, checked by the core type's own rules.
pub fn limits(args: &LimitArgs) -> Result<Limits, SandboxError> {
    let mut l = Limits::default().with_network(args.network.clone());
    if let Some(cpu) = args.cpu {
        if !cpu.is_finite() || cpu <= 0.0 || cpu > 1000.0 {
            return Err(SandboxError::BadLimits(format!("--cpu {cpu}")));
        }
        l.cpu_millis = (cpu * 1000.0).round() as u32;
    }
    if let Some(m) = args.mem_mib {
        l.memory_mb = m;
    }
    if let Some(d) = args.disk_mib {
        l.disk_mb = d;
    }
    l.validate().map_err(SandboxError::BadLimits)?;
    Ok(l)
}

/// A user-given name: what the backend accepts as a key, at most 40 characters, starting with a
/// letter or digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<language>-<ulid>` (lower case), the ERA style.
pub fn new_id(language: &str) -> String {
    let prefix: String = language
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(12)
        .collect();
    let prefix = if prefix.is_empty() {
        "sbx".into()
    } else {
        prefix
    };
    format!(
        "{prefix}-{}",
        ulid(chrono::Utc::now().timestamp_millis() as u64)
    )
}

/// A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, lower case.
fn ulid(millis: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let rand: u128 = rand::rngs::OsRng.gen::<u128>() & ((1u128 << 80) - 1);
    let value = (u128::from(millis & ((1 << 48) - 1)) << 80) | rand;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_network("none").expect("none"), NetworkPolicy::None);
        assert_eq!(parse_network("open").expect("open"), NetworkPolicy::Open);
        assert_eq!(
            parse_network("allow:pypi.org, files.pythonhosted.org").expect("allow"),
            NetworkPolicy::Allow {
                allow: vec!["pypi.org".into(), "files.pythonhosted.org".into()]
            }
        );
        assert!(parse_network("everything").is_err());
        assert!(parse_network("allow:").is_err());
        assert!(parse_network("allow:exa mple.com").is_err());
    }

    #[test]
    fn limits_take_the_flags_and_the_core_rules() {
        let l = limits(&LimitArgs {
            cpu: Some(2.0),
            mem_mib: Some(512),
            ..Default::default()
        })
        .expect("limits");
        assert_eq!((l.cpu_millis, l.memory_mb), (2000, 512));
        assert!(limits(&LimitArgs {
            mem_mib: Some(1),
            ..Default::default()
        })
        .is_err());
        assert!(limits(&LimitArgs {
            cpu: Some(-1.0),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn ids_are_language_dash_ulid() {
        let id = new_id("python");
        assert!(id.starts_with("python-"), "{id}");
        assert_eq!(id.len(), "python-".len() + 26);
        assert!(valid_name(&id));
        assert_ne!(new_id("python"), id);
        // Time-ordered: a later millisecond sorts after.
        assert!(ulid(2) > ulid(1));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("grader_1"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(41)));
    }

    #[test]
    fn an_unknown_image_is_refused_not_replaced_by_the_host_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(matches!(
            runtime_for("nope", tmp.path(), tmp.path()),
            Err(SandboxError::UnknownImage(_))
        ));
        std::fs::create_dir_all(tmp.path().join("images/mine/rootfs")).expect("mkdir");
        assert_eq!(
            runtime_for("mine", tmp.path(), tmp.path())
                .expect("image")
                .image
                .as_deref(),
            Some("mine")
        );
        assert_eq!(
            runtime_for("base", tmp.path(), tmp.path())
                .expect("base")
                .image,
            None
        );
        // python: the host's interpreter and a note until a python seat image is built, then
        // the image.
        if Path::new("/usr/bin/python3").exists() {
            let host = runtime_for("python", tmp.path(), tmp.path()).expect("python");
            assert_eq!(host.image, None);
            assert!(host.note.is_some_and(|n| n.contains("image build python")));
            let current = tmp.path().join("python/abc");
            std::fs::create_dir_all(current.join("rootfs")).expect("mkdir");
            std::fs::write(current.join("image.json"), "{}").expect("write");
            std::os::unix::fs::symlink("abc", tmp.path().join("python/current")).expect("link");
            let img = runtime_for("python", tmp.path(), tmp.path()).expect("python image");
            assert_eq!((img.image.as_deref(), img.note), (Some("python"), None));
        }
    }
}
