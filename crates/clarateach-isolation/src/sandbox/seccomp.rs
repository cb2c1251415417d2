//! The seccomp filters every seat runs under, built with `seccompiler` (Firecracker's) once per
//! backend and handed to bubblewrap per seat as `--add-seccomp-fd` pipes.
//!
//! The reference is Docker's default profile for a container without added capabilities: a seat
//! needs no mount, no namespaces, no kernel keyring, no eBPF, no perf, no module loading, no
//! clock setting and no io_uring (a frequent source of kernel bugs, blocked by Docker too). The
//! filter is a deny list (everything else is allowed) because a workshop runs arbitrary
//! toolchains; each denied call fails with `EPERM`, except `clone3`, which fails with `ENOSYS` so
//! glibc falls back to `clone`, whose flags a classic filter can inspect (the arguments of
//! `clone3` live in memory, out of seccomp's reach).
//!
//! Decisions:
//! - `ptrace` is allowed: `gdb` and `strace` of one's own programs are workshop material, the
//!   kernel only lets a seat trace its own uid's dumpable processes, and the workspace daemon
//!   (the one process holding something the learner must not get, its listening socket) makes
//!   itself non-dumpable. bwrap's pid-1 init stays traceable (it runs as the seat's uid), but it
//!   holds only stdio and an eventfd, and its stdout/stderr are a capped log pipe (`log`), not a
//!   host file. `process_vm_readv/writev`, `kcmp` and `pidfd_getfd` are denied: no
//!   debugger a workshop uses needs them.
//! - `personality` is allowed only with the values Docker allows (Linux, 32-bit, UNAME26, query).
//! - On x86_64 every x32 ABI call (`nr >= 0x4000_0000`) is denied, in case a host kernel enables
//!   x32 (seat programs are x86_64; x32 numbers would slip past a list of x86_64 numbers); other
//!   architectures' ABIs fail seccompiler's arch check. That check and `clone3 -> ENOSYS` form a
//!   second, eight-instruction program written out by hand (`x86_64_extra`), because
//!   seccompiler's rules match exact numbers and listing an x32 twin of every denied call doubled
//!   the main filter, whose size the kernel pays for at every seat start (it pre-computes a
//!   per-syscall cache by running the filter) and in every system call.
//!
//! `fs.inotify.max_user_instances/watches` are per (user namespace, uid) and charged up the
//! namespace chain to the host uid that created the seat's namespace: with a host uid per seat
//! (`uids`), one seat exhausting its inotify instances leaves every other seat's untouched.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the filters could not be built (a bug in the rule tables, or an unsupported arch).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filters are not built for the {0} architecture")]
    Arch(&'static str),
    #[error("building the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    #[error("compiling the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
    #[error("writing a seccomp program to its pipe")]
    Pipe(#[source] std::io::Error),
}

/// Namespace flags of `clone` that a seat may not use (the last three overlap nothing in
/// `CSIGNAL`, unlike `CLONE_NEWTIME`, which only `clone3` and `unshare` take).
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// `personality` values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, both, and the query.
const PERSONALITIES: &[u64] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// Calls denied outright with EPERM.
const DENIED: &[i64] = &[
    // mounts and root changes
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // namespaces
    libc::SYS_unshare,
    libc::SYS_setns,
    // kernel attack surface a seat does not need
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_fanotify_init,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    // other processes' memory and descriptors
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    // the machine itself
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
];

/// Bit that marks an x32 ABI syscall number on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

/// Both compiled filters, as the bytes of `struct sock_filter[]` bwrap reads from a descriptor.
#[derive(Clone)]
pub struct SeccompPrograms {
    /// Every denied call -> EPERM.
    deny: Vec<u8>,
    /// `clone3` -> ENOSYS (and, on x86_64, x32 calls -> EPERM).
    clone3: Vec<u8>,
}

impl std::fmt::Debug for SeccompPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompPrograms")
            .field("deny_instructions", &(self.deny.len() / 8))
            .field("clone3_instructions", &(self.clone3.len() / 8))
            .finish()
    }
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))
}

/// One `struct sock_filter`, as bwrap reads it.
#[cfg(target_arch = "x86_64")]
fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..2].copy_from_slice(&code.to_ne_bytes());
    out[2] = jt;
    out[3] = jf;
    out[4..].copy_from_slice(&k.to_ne_bytes());
    out
}

/// x86_64's second program: x32 calls -> EPERM, `clone3` -> ENOSYS, everything else allowed (a
/// foreign arch is left to the main filter, which kills it).
#[cfg(target_arch = "x86_64")]
fn x86_64_extra() -> Vec<u8> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    // seccomp_data: nr at offset 0, arch at 4. Jumps count from the next instruction.
    [
        insn(LD_ABS, 0, 0, 4),
        insn(JEQ, 0, 4, AUDIT_ARCH_X86_64), // other arch -> 6 (allow here)
        insn(LD_ABS, 0, 0, 0),
        insn(JGE, 0, 1, X32_BIT), // x32 -> 4, else -> 5
        insn(RET, 0, 0, RET_ERRNO | libc::EPERM as u32),
        insn(JEQ, 1, 0, libc::SYS_clone3 as u32), // clone3 -> 7, else -> 6
        insn(RET, 0, 0, RET_ALLOW),
        insn(RET, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
    ]
    .concat()
}

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, len, op, value).expect("argument index below 6")
}

fn deny_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, Vec::new());
    }
    // clone with any namespace flag: one rule per flag (rules of a call are OR'ed).
    let clone_rules = CLONE_NS_FLAGS
        .iter()
        .map(|&flag| {
            SeccompRule::new(vec![cond(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )])
            .map_err(SeccompError::Build)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // personality with any value but the allowed ones (conditions of a rule are AND'ed).
    let personality = vec![SeccompRule::new(
        PERSONALITIES
            .iter()
            .map(|&p| cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p))
            .collect(),
    )
    .map_err(SeccompError::Build)?];
    rules.insert(libc::SYS_clone, clone_rules);
    rules.insert(libc::SYS_personality, personality);
    Ok(rules)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<Vec<u8>, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(SeccompError::Build)?;
    let prog: BpfProgram = filter.try_into().map_err(SeccompError::Compile)?;
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for insn in prog {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    Ok(bytes)
}

impl SeccompPrograms {
    /// Compiles both filters for this host's architecture.
    pub fn build() -> Result<Self, SeccompError> {
        let arch = arch()?;
        #[cfg(target_arch = "x86_64")]
        let clone3 = x86_64_extra();
        #[cfg(not(target_arch = "x86_64"))]
        let clone3 = compile(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            libc::ENOSYS,
            arch,
        )?;
        Ok(Self {
            deny: compile(deny_rules()?, libc::EPERM, arch)?,
            clone3,
        })
    }

    /// One pipe per filter holding its program, ready for `--add-seccomp-fd` (read end returned,
    /// close-on-exec until `spawn` moves it to its fixed number). A program is a few hundred
    /// bytes, far below a pipe's buffer, so writing never blocks.
    pub fn pipes(&self) -> Result<[OwnedFd; 2], SeccompError> {
        Ok([pipe_with(&self.deny)?, pipe_with(&self.clone3)?])
    }
}

fn pipe_with(bytes: &[u8]) -> Result<OwnedFd, SeccompError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SeccompError::Pipe(e.into()))?;
    let mut write = std::fs::File::from(write);
    write.write_all(bytes).map_err(SeccompError::Pipe)?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn builds_both_programs_and_pipes_them_whole() {
        let p = SeccompPrograms::build().expect("build");
        assert!(
            p.deny.len() > 8 * DENIED.len(),
            "one jump per denied call at least"
        );
        assert_eq!(p.deny.len() % 8, 0);
        assert!(
            p.deny.len() / 8 < 4096,
            "the kernel caps a filter at 4096 instructions"
        );
        let [deny, clone3] = p.pipes().expect("pipes");
        let mut back = Vec::new();
        std::fs::File::from(deny)
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, p.deny);
        let mut back = Vec::new();
        std::fs::File::from(clone3)
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, p.clone3);
    }

    #[test]
    fn clone_rules_cover_every_namespace_flag() {
        let rules = deny_rules().expect("rules");
        assert_eq!(rules[&libc::SYS_clone].len(), CLONE_NS_FLAGS.len());
        assert!(rules.contains_key(&libc::SYS_mount));
        assert!(rules.contains_key(&libc::SYS_unshare));
        assert!(
            !rules.contains_key(&libc::SYS_ptrace),
            "ptrace stays allowed for gdb/strace"
        );
    }
}
