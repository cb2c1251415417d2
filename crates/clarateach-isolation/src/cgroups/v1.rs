//! Cgroup v1: one directory per controller (`<memory mount>/<name>`, `<pids mount>/<name>`,
//! `<cpu mount>/<name>`, and the freezer when mounted). A process must join each hierarchy.

use std::fs::File;
use std::path::{Path, PathBuf};

use clarateach_core::Limits;

use super::{
    open_procs, read_keyed, read_pids, remove_dirs, write_file, CgroupError, CgroupManager,
    CgroupVersion, CPU_PERIOD_US,
};

/// Cgroup v1 hierarchies for memory, pids, cpu and optionally freezer.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    memory: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    freezer: Option<PathBuf>,
}

impl CgroupV1 {
    /// Mount points of each controller; group names are relative paths under them.
    pub fn new(memory: PathBuf, pids: PathBuf, cpu: PathBuf, freezer: Option<PathBuf>) -> Self {
        Self {
            memory,
            pids,
            cpu,
            freezer,
        }
    }

    /// Directory of group `name` in controller `ctrl` (`memory`, `pids`, `cpu`, `freezer`).
    pub fn dir_of(&self, ctrl: &str, name: &str) -> Option<PathBuf> {
        let mount = match ctrl {
            "memory" => &self.memory,
            "pids" => &self.pids,
            "cpu" => &self.cpu,
            "freezer" => self.freezer.as_ref()?,
            _ => return None,
        };
        Some(mount.join(name))
    }

    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        ["memory", "pids", "cpu", "freezer"]
            .iter()
            .filter_map(|c| self.dir_of(c, name))
            .collect()
    }
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    super::mkdir_all(dir)
}

impl CgroupManager for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        for dir in self.dirs(name) {
            mkdir(&dir)?;
        }
        let mem = self.memory.join(name);
        let bytes = u64::from(limits.memory_mb) * 1024 * 1024;
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        let has_memsw = memsw.exists();
        if has_memsw {
            // memsw must stay >= the memory limit, so lift it before changing the limit.
            write_file(&memsw, "-1")?;
        }
        write_file(&mem.join("memory.limit_in_bytes"), &bytes.to_string())?;
        if has_memsw {
            // Same value: the group may not use swap at all.
            write_file(&memsw, &bytes.to_string())?;
        }
        write_file(
            &self.pids.join(name).join("pids.max"),
            &limits.pids.to_string(),
        )?;
        let cpu = self.cpu.join(name);
        write_file(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        let quota = u64::from(limits.cpu_millis) * CPU_PERIOD_US / 1000;
        write_file(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        Ok(())
    }

    fn procs_files(&self, name: &str) -> Result<Vec<File>, CgroupError> {
        self.dirs(name)
            .iter()
            .map(|d| open_procs(&d.join("cgroup.procs")))
            .collect()
    }

    fn pids(&self, name: &str) -> Result<Vec<i32>, CgroupError> {
        // Every process of a workspace is in its pids group.
        read_pids(&self.pids.join(name).join("cgroup.procs"))
    }

    fn freeze(&self, name: &str, frozen: bool) -> Result<bool, CgroupError> {
        let Some(dir) = self.dir_of("freezer", name) else {
            return Ok(false);
        };
        if !dir.exists() {
            return Ok(false);
        }
        let state = dir.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_file(&state, want)?;
        // v1 answers the write at once and may report FREEZING for a while: a pause is done
        // only once every task is stopped.
        let deadline = std::time::Instant::now() + super::FREEZE_TIMEOUT;
        loop {
            let now =
                std::fs::read_to_string(&state).map_err(|e| CgroupError::Read(state.clone(), e))?;
            // The kernel's file ends with a newline; a test's plain file holds what we wrote.
            if now.trim() == want {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Err(CgroupError::FreezeTimeout(
                    name.to_string(),
                    super::FREEZE_TIMEOUT,
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
            // A task that was forking may have been missed; asking again is what the kernel
            // documentation recommends.
            write_file(&state, want)?;
        }
    }

    fn remove(&self, name: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(name) {
            remove_dirs(&dir)?;
        }
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        self.pids.join(name).exists()
    }

    fn oom_kills(&self, name: &str) -> Result<u64, CgroupError> {
        read_keyed(
            &self.memory.join(name).join("memory.oom_control"),
            "oom_kill",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_writes_limits_into_each_controller() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let cg = CgroupV1::new(
            r.join("memory"),
            r.join("pids"),
            r.join("cpu"),
            Some(r.join("freezer")),
        );
        let name = "ct/ws-a/seat-01";
        // A real memory group has memsw when swap accounting is on; emulate it.
        std::fs::create_dir_all(r.join("memory").join(name)).expect("mkdir");
        std::fs::write(
            r.join("memory")
                .join(name)
                .join("memory.memsw.limit_in_bytes"),
            "",
        )
        .expect("write");
        let limits = Limits {
            memory_mb: 64,
            pids: 32,
            cpu_millis: 500,
            ..Limits::default()
        };
        cg.create(name, &limits).expect("create");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        assert_eq!(
            read(r.join("memory").join(name).join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(
            read(
                r.join("memory")
                    .join(name)
                    .join("memory.memsw.limit_in_bytes")
            ),
            "67108864"
        );
        assert_eq!(read(r.join("pids").join(name).join("pids.max")), "32");
        assert_eq!(
            read(r.join("cpu").join(name).join("cpu.cfs_quota_us")),
            "50000"
        );
        assert!(r.join("freezer").join(name).is_dir());
        assert_eq!(cg.pids(name).expect("pids"), Vec::<i32>::new());
        std::fs::write(r.join("pids").join(name).join("cgroup.procs"), "12\n34\n").expect("write");
        assert_eq!(cg.pids(name).expect("pids"), vec![12, 34]);
        assert!(cg.freeze(name, true).expect("freeze"));
        assert_eq!(
            read(r.join("freezer").join(name).join("freezer.state")),
            "FROZEN"
        );
    }
}
