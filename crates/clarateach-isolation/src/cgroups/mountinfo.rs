//! Chooses the cgroup layout from `/proc/self/mountinfo`: v1 when memory, pids and cpu each have
//! a v1 hierarchy (a hybrid host such as this one, whose cgroup2 mount holds only hugetlb), v2
//! when a cgroup2 mount offers those controllers. Pure over its input, so it is unit-tested with
//! a fake mount table and a fake filesystem root.

use std::path::PathBuf;

use super::{CgroupError, CgroupV1, CgroupV2};

/// The cgroup layout of a host.
#[derive(Debug)]
pub enum Layout {
    V1(CgroupV1),
    V2(CgroupV2),
}

/// One cgroup mount: filesystem type, mount point and super options.
struct Mount<'a> {
    fstype: &'a str,
    point: &'a str,
    options: &'a str,
}

fn parse(line: &str) -> Option<Mount<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let point = pre.split_whitespace().nth(4)?;
    let mut post = post.split_whitespace();
    let fstype = post.next()?;
    let _source = post.next()?;
    let options = post.next().unwrap_or("");
    Some(Mount {
        fstype,
        point,
        options,
    })
}

/// Mount points in mountinfo escape spaces and similar as octal (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Picks the layout from the text of a mountinfo file.
pub fn detect(mountinfo: &str) -> Result<Layout, CgroupError> {
    let mounts: Vec<Mount<'_>> = mountinfo.lines().filter_map(parse).collect();
    let v1 = |ctrl: &str| {
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == ctrl))
            .map(|m| PathBuf::from(unescape(m.point)))
    };
    if let (Some(memory), Some(pids), Some(cpu)) = (v1("memory"), v1("pids"), v1("cpu")) {
        return Ok(Layout::V1(CgroupV1::new(memory, pids, cpu, v1("freezer"))));
    }
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let point = PathBuf::from(unescape(m.point));
        let controllers =
            std::fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("memory") && has("pids") && has("cpu") {
            return Ok(Layout::V2(CgroupV2::new(point)));
        }
    }
    Err(CgroupError::NotFound)
}

/// Detects the layout of this host.
pub fn detect_host() -> Result<Layout, CgroupError> {
    let path = PathBuf::from("/proc/self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| CgroupError::Read(path, e))?;
    detect(&text)
}

/// The v1 freezer state (`FROZEN`, `FREEZING`, `THAWED`) of the group process `pid` is in, for
/// operators and tests; `None` without a v1 freezer or when the process is gone.
pub fn freezer_state_of(pid: i32) -> Option<String> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let group = groups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    })?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let point = mounts.lines().filter_map(parse).find_map(|m| {
        (m.fstype == "cgroup" && m.options.split(',').any(|o| o == "freezer"))
            .then(|| unescape(m.point))
    })?;
    let state = std::fs::read_to_string(format!("{point}{group}/freezer.state")).ok()?;
    Some(state.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::{CgroupManager, CgroupVersion};

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_uses_v1() {
        let Layout::V1(m) = detect(HYBRID).expect("layout") else {
            panic!("not v1")
        };
        assert_eq!(m.version(), CgroupVersion::V1);
        assert_eq!(
            m.dir_of("memory", "clarateach/ws-a/seat-01"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/clarateach/ws-a/seat-01"
            ))
        );
        assert!(m.dir_of("freezer", "x").is_some());
    }

    #[test]
    fn unified_host_uses_v2_when_it_has_the_controllers() {
        let root = tempfile::tempdir().expect("tempdir");
        let point = root.path().join("cg dir");
        std::fs::create_dir_all(&point).expect("mkdir");
        std::fs::write(
            point.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("write");
        let escaped = point.display().to_string().replace(' ', "\\040");
        let info = format!("30 23 0:26 / {escaped} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        let Layout::V2(m) = detect(&info).expect("layout") else {
            panic!("not v2")
        };
        assert_eq!(
            m.dir("clarateach/ws-a/seat-01"),
            point.join("clarateach/ws-a/seat-01")
        );
    }

    #[test]
    fn cgroup2_with_only_hugetlb_is_not_enough() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("cgroup.controllers"), "hugetlb\n").expect("write");
        let info = format!(
            "41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        );
        assert!(matches!(detect(&info), Err(CgroupError::NotFound)));
    }
}
