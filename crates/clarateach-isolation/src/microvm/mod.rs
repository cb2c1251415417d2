//! The `microvm` backend: one real VM per seat, the strongest isolation for untrusted code.
//!
//! Two flavours share the seat layout (`seat.rs`), the image (`clarateach-image`), the seat
//! network (`seat_net.rs`) and the guest's PID 1: QEMU `-M microvm` (`qemu.rs`, lifecycle over
//! QMP) and Firecracker (`firecracker.rs`, its REST API over a Unix socket), each behind the
//! `Vmm` trait (`vmm.rs`: `QemuVmm`, `FirecrackerVmm` in `fc_launch.rs`), chosen by
//! `MicrovmConfig::flavour`; `backend.rs` does the shared part and dispatches. KVM is used when a real
//! boot under it works (`accel.rs`), TCG otherwise.
//!
//! ```no_run
//! # async fn f() -> Result<(), clarateach_isolation::BackendError> {
//! use clarateach_isolation::microvm::{MicrovmBackend, MicrovmConfig};
//! let backend = MicrovmBackend::new(MicrovmConfig::new("/var/lib/clarateach", "/var/lib/clarateach/images/default"))?;
//! # Ok(()) }
//! ```

pub mod accel;
mod backend;
pub mod bridge;
mod fc_launch;
pub mod firecracker;
pub mod http;
pub mod jailer;
mod lifecycle;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod seat;
mod seat_net;
mod vmm;
pub mod volume;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backend::MicrovmBackend;
pub use lifecycle::health;
pub use lifecycle::{BootError, StopError};
pub use net::{Ipv4Subnet, Net, SubnetFull};
pub use vmm::LaunchError;

/// Which VMM runs the seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Firecracker when its binary is installed and KVM works, QEMU otherwise.
    Auto,
    Qemu,
    Firecracker,
}

/// Acceleration choice; `Auto` probes KVM by booting a guest (cached in the data dir).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// Settings of the microvm backend. `MicrovmConfig::new(data_dir, image_dir)` fills the rest.
#[derive(Debug, Clone)]
pub struct MicrovmConfig {
    /// Seat dirs go in `<data_dir>/microvm/`, volumes in `<data_dir>/volumes/`, the KVM probe
    /// verdict in `<data_dir>/microvm/kvm-probe.json`.
    pub data_dir: PathBuf,
    /// A directory built by `clarateach image build --out DIR`.
    pub image_dir: PathBuf,
    pub flavour: Flavour,
    pub accel: AccelChoice,
    /// Size of a new seat volume (sparse) in MiB.
    pub volume_mb: u64,
    /// How long `start` waits for the daemon's `/health` (TCG boots take seconds).
    pub boot_timeout: Duration,
    pub qemu_binary: PathBuf,
    pub firecracker_binary: PathBuf,
    /// QEMU seats' networking: user-mode (default) or a TAP per seat on a bridge (root only).
    pub net: Net,
    /// Firecracker's jailer; `None` uses a `jailer` found next to the firecracker binary, if any.
    pub jailer_binary: Option<PathBuf>,
    /// Unprivileged user and group the jailer runs Firecracker as.
    pub jail_uid: u32,
    pub jail_gid: u32,
    /// The seat network of `open` and allow-list seats (and of every Firecracker seat): a TAP
    /// per seat with a /30 of `--seat-subnet`, under the same nft rules as a sandbox seat's veth
    /// (`netpolicy`). Root only.
    pub seat_net: crate::netpolicy::NetConfig,
    /// Seat images (`clarateach image build NAME`): a seat whose spec names one boots a disk
    /// made from that image's tree (`clarateach_image::microvm_root`) instead of `image_dir`'s
    /// rootfs; the kernel and initramfs stay `image_dir`'s. Default `<data_dir>/images`.
    pub seat_images: PathBuf,
    /// The `clarateach` binary put into those disks as the guest's init and daemon; `None` is
    /// this process's own executable (the agent's).
    pub guest_binary: Option<PathBuf>,
}

impl MicrovmConfig {
    pub fn new(data_dir: impl Into<PathBuf>, image_dir: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        Self {
            data_dir: data_dir.clone(),
            image_dir: image_dir.into(),
            flavour: Flavour::Auto,
            accel: AccelChoice::Auto,
            volume_mb: 2048,
            boot_timeout: Duration::from_secs(120),
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            firecracker_binary: PathBuf::from("firecracker"),
            net: Net::User,
            jailer_binary: None,
            jail_uid: 65534,
            jail_gid: 65534,
            seat_net: crate::netpolicy::NetConfig::default(),
            seat_images: data_dir.join("images"),
            guest_binary: None,
        }
    }
}

/// Finds `name` on PATH (or takes it as given when it is a path).
pub fn find_binary(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether this host can run the microvm backend at all (QEMU or Firecracker installed).
pub fn available() -> Result<(), String> {
    if find_binary(Path::new("qemu-system-x86_64")).is_some()
        || find_binary(Path::new("firecracker")).is_some()
    {
        Ok(())
    } else {
        Err("neither qemu-system-x86_64 nor firecracker is installed".into())
    }
}
