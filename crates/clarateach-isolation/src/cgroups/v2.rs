//! Cgroup v2: one unified tree. Controllers must be enabled in every ancestor's
//! `cgroup.subtree_control`; the intermediate groups hold no processes, as v2 requires.

use std::fs::File;
use std::path::PathBuf;

use clarateach_core::Limits;

use super::{
    open_procs, read_keyed, read_pids, remove_dirs, write_file, CgroupError, CgroupManager,
    CgroupVersion, CPU_PERIOD_US,
};

/// The unified hierarchy mounted at `mount`.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    mount: PathBuf,
}

impl CgroupV2 {
    pub fn new(mount: PathBuf) -> Self {
        Self { mount }
    }

    /// Directory of group `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    /// Enables memory, pids and cpu for the children of every ancestor of `name`.
    fn enable_controllers(&self, name: &str) -> Result<(), CgroupError> {
        let mut dir = self.mount.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            let control = dir.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            for ctrl in ["memory", "pids", "cpu"] {
                if !enabled.split_whitespace().any(|c| c == ctrl) {
                    write_file(&control, &format!("+{ctrl}"))?;
                }
            }
            dir = dir.join(part);
            super::mkdir_all(&dir)?;
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        self.enable_controllers(name)?;
        let dir = self.dir(name);
        let bytes = u64::from(limits.memory_mb) * 1024 * 1024;
        write_file(&dir.join("memory.max"), &bytes.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
        }
        write_file(&dir.join("pids.max"), &limits.pids.to_string())?;
        let quota = u64::from(limits.cpu_millis) * CPU_PERIOD_US / 1000;
        write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        Ok(())
    }

    fn procs_files(&self, name: &str) -> Result<Vec<File>, CgroupError> {
        Ok(vec![open_procs(&self.dir(name).join("cgroup.procs"))?])
    }

    fn pids(&self, name: &str) -> Result<Vec<i32>, CgroupError> {
        read_pids(&self.dir(name).join("cgroup.procs"))
    }

    fn freeze(&self, name: &str, frozen: bool) -> Result<bool, CgroupError> {
        let file = self.dir(name).join("cgroup.freeze");
        if !file.exists() {
            return Ok(false);
        }
        write_file(&file, if frozen { "1" } else { "0" })?;
        Ok(true)
    }

    fn remove(&self, name: &str) -> Result<(), CgroupError> {
        remove_dirs(&self.dir(name))
    }

    fn exists(&self, name: &str) -> bool {
        self.dir(name).exists()
    }

    fn oom_kills(&self, name: &str) -> Result<u64, CgroupError> {
        read_keyed(&self.dir(name).join("memory.events"), "oom_kill")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_enables_controllers_down_the_tree_and_writes_limits() {
        let root = tempfile::tempdir().expect("tempdir");
        let cg = CgroupV2::new(root.path().to_path_buf());
        std::fs::write(
            root.path().join("cgroup.subtree_control"),
            "memory pids cpu",
        )
        .expect("write");
        let name = "ct/ws-a/seat-01";
        let limits = Limits {
            memory_mb: 128,
            pids: 64,
            cpu_millis: 1500,
            ..Limits::default()
        };
        cg.create(name, &limits).expect("create");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        // The fake file keeps only the last write; a real one accumulates.
        assert_eq!(read(root.path().join("ct/cgroup.subtree_control")), "+cpu");
        assert_eq!(
            read(root.path().join("ct/ws-a/cgroup.subtree_control")),
            "+cpu"
        );
        assert_eq!(read(cg.dir(name).join("memory.max")), "134217728");
        assert_eq!(read(cg.dir(name).join("pids.max")), "64");
        assert_eq!(read(cg.dir(name).join("cpu.max")), "150000 100000");
        std::fs::write(
            cg.dir(name).join("memory.events"),
            "low 0\noom 2\noom_kill 1\n",
        )
        .expect("write");
        assert_eq!(cg.oom_kills(name).expect("events"), 1);
    }
}
