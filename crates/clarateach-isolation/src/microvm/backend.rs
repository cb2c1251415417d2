//! `MicrovmBackend`: the `Backend` trait over per-seat VMs. Seat state lives on disk (seat dir,
//! pid file) so an agent restart re-adopts running VMs; the in-memory map only caches endpoints.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use clarateach_core::agent_proto::SeatKey;
use clarateach_image::{GuestConfig, ImageLayout, Manifest};
use tokio::sync::OnceCell;

use super::accel::{self, Accel};
use super::fc_launch::{self, FirecrackerVmm};
use super::seat::{bridge_address, ensure_volume, live_pid, write_private, VmPaths, VmRecord};
use super::vmm::{Launch, QemuVmm, VmNet, Vmm};
use super::{
    bridge, find_binary, lifecycle, net, seat_net, AccelChoice, Flavour, MicrovmConfig, Net,
};
use crate::netpolicy::NetError;
use crate::{Backend, BackendError, BackendKind, DaemonEndpoint, WorkspaceSpec, WorkspaceStatus};

/// One VM per seat; see the module docs.
pub struct MicrovmBackend {
    pub(super) cfg: MicrovmConfig,
    pub(super) image: ImageLayout,
    manifest: Manifest,
    accel: OnceCell<Accel>,
    /// The VMM that runs this backend's seats, chosen at the first start (it needs the probe).
    vmm: OnceCell<Box<dyn Vmm>>,
    pub(super) endpoints: Mutex<HashMap<SeatKey, DaemonEndpoint>>,
    /// Serialises bridge address allocation (scan the records, pick, save).
    alloc: Mutex<()>,
    /// Each seat's environment (the workshop's API key among it), in memory only: neither the
    /// seat record nor the config disk on the agent's disk holds it. `create` (which the agent
    /// always runs before `start`, with the spec the control plane re-sends after a restart)
    /// sets it; the VMM gets it in a memfd config disk (a jailed Firecracker: a tmpfs file).
    pub(super) envs: Mutex<HashMap<SeatKey, BTreeMap<String, String>>>,
    /// The seat network (TAPs, nft rules, proxies) of seats that have one (`seat_net`).
    pub(super) net: crate::netpolicy::NetManager,
}

impl MicrovmBackend {
    /// Checks the image and the VMM binary; probes nothing yet (the KVM probe runs at the first
    /// start, so constructing the backend is cheap).
    pub fn new(mut cfg: MicrovmConfig) -> Result<Self, BackendError> {
        let image = ImageLayout::new(&cfg.image_dir);
        let manifest = image
            .load()
            .map_err(|e| BackendError::ImageUnavailable(Box::new(e)))?;
        let qemu = find_binary(&cfg.qemu_binary);
        let fc = find_binary(&cfg.firecracker_binary);
        match (cfg.flavour, &qemu, &fc) {
            (Flavour::Qemu, None, _) | (Flavour::Auto, None, None) => {
                return Err(BackendError::Unavailable(format!(
                    "{} is not installed",
                    cfg.qemu_binary.display()
                )))
            }
            (Flavour::Firecracker, _, None) => {
                return Err(BackendError::Unavailable(
                    "firecracker is not installed".into(),
                ))
            }
            _ => {}
        }
        if let Some(q) = qemu {
            cfg.qemu_binary = q;
        }
        if let Some(f) = fc {
            cfg.firecracker_binary = f;
        }
        let net = crate::netpolicy::NetManager::new(cfg.seat_net.clone(), &cfg.data_dir)
            .map_err(BackendError::NetworkUnavailable)?;
        Ok(Self {
            cfg,
            image,
            manifest,
            accel: OnceCell::new(),
            vmm: OnceCell::new(),
            endpoints: Mutex::new(HashMap::new()),
            alloc: Mutex::new(()),
            envs: Mutex::new(HashMap::new()),
            net,
        })
    }

    /// The seat network (addresses of seats that have one, for tests and status).
    pub fn net(&self) -> &crate::netpolicy::NetManager {
        &self.net
    }

    /// `uname -r` of the guests.
    pub fn kernel_release(&self) -> &str {
        &self.manifest.kernel_release
    }

    /// KVM or TCG, probed once (and cached on disk across restarts).
    pub async fn accel(&self) -> Accel {
        *self
            .accel
            .get_or_init(|| async {
                match self.cfg.accel {
                    AccelChoice::Kvm => Accel::Kvm,
                    AccelChoice::Tcg => Accel::Tcg,
                    AccelChoice::Auto => {
                        accel::detect(
                            &self.cfg.qemu_binary,
                            &self.image,
                            &self.cfg.data_dir.join("microvm"),
                        )
                        .await
                    }
                }
            })
            .await
    }

    /// The VMM that runs seats: Firecracker needs KVM, so `Auto` picks it only when KVM works.
    pub async fn flavour(&self) -> Flavour {
        match self.cfg.flavour {
            Flavour::Auto
                if self.cfg.firecracker_binary.is_file() && self.accel().await == Accel::Kvm =>
            {
                Flavour::Firecracker
            }
            Flavour::Auto => Flavour::Qemu,
            f => f,
        }
    }

    /// The VMM for this backend's flavour (probing KVM first when needed).
    async fn vmm(&self) -> &dyn Vmm {
        let accel = self.accel().await;
        let flavour = self.flavour().await;
        self.vmm
            .get_or_init(|| async {
                let vmm: Box<dyn Vmm> = match flavour {
                    Flavour::Firecracker => Box::new(FirecrackerVmm {
                        cfg: self.cfg.clone(),
                        image: self.image.clone(),
                    }),
                    _ => Box::new(QemuVmm {
                        qemu: self.cfg.qemu_binary.clone(),
                        image: self.image.clone(),
                        accel,
                        boot_timeout: self.cfg.boot_timeout,
                    }),
                };
                vmm
            })
            .await
            .as_ref()
    }

    pub fn paths(&self, key: &SeatKey) -> VmPaths {
        VmPaths::new(&self.cfg.data_dir, key)
    }

    /// The seat's serial console log (kernel and guest-init messages).
    pub fn console_log(&self, key: &SeatKey) -> PathBuf {
        self.paths(key).console()
    }

    /// Pauses a running seat's vCPUs (QMP `stop`); memory stays allocated.
    pub async fn pause(&self, key: &SeatKey) -> Result<(), BackendError> {
        lifecycle::qmp(&self.paths(key), "stop")
            .await
            .map_err(|e| BackendError::Qmp(key.clone(), "stop", e))
    }

    /// Resumes a paused seat (QMP `cont`).
    pub async fn resume(&self, key: &SeatKey) -> Result<(), BackendError> {
        lifecycle::qmp(&self.paths(key), "cont")
            .await
            .map_err(|e| BackendError::Qmp(key.clone(), "cont", e))
    }

    fn record(&self, key: &SeatKey) -> Result<VmRecord, BackendError> {
        VmRecord::load(&self.paths(key).record()).map_err(|_| BackendError::Unknown(key.clone()))
    }

    fn forget(&self, key: &SeatKey) {
        if let Ok(mut m) = self.endpoints.lock() {
            m.remove(key);
        }
    }

    /// The `clarateach` binary put into seat-image root disks.
    fn guest_binary(&self) -> Result<PathBuf, BackendError> {
        match &self.cfg.guest_binary {
            Some(b) => Ok(b.clone()),
            None => std::env::current_exe().map_err(|source| BackendError::Io {
                action: "locating the clarateach binary for the guest",
                source,
            }),
        }
    }

    /// The root disk of seat image `name` (made on first use, then cached by its digest).
    async fn seat_root(&self, key: &SeatKey, name: &str) -> Result<PathBuf, BackendError> {
        let store = clarateach_image::ImageStore::new(&self.cfg.seat_images);
        let binary = self.guest_binary()?;
        let name_owned = name.to_string();
        let root = tokio::task::spawn_blocking(move || {
            clarateach_image::microvm_root(&store, &name_owned, &binary)
        })
        .await
        .map_err(|e| BackendError::Task(key.clone(), e))?
        .map_err(|e| BackendError::Image(key.clone(), name.to_string(), Box::new(e)))?;
        tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, image = name,
            digest = %root.digest, cached = root.cached, ms = root.elapsed.as_millis() as u64,
            "microvm root disk of the seat image");
        Ok(root.path)
    }

    /// The seat's environment as `create` was given it (empty when unknown).
    pub(super) fn env_of(&self, key: &SeatKey) -> BTreeMap<String, String> {
        self.envs
            .lock()
            .map(|m| m.get(key).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Backend for MicrovmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Microvm
    }

    async fn create(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        spec.limits
            .network
            .validate()
            .map_err(|e| BackendError::Network(spec.key.clone(), NetError::Policy(e)))?;
        let paths = self.paths(&spec.key);
        let io = |action| move |source| BackendError::Io { action, source };
        std::fs::create_dir_all(&paths.dir).map_err(io("creating the seat dir"))?;
        let mut record = VmRecord::from_spec(spec);
        if let Ok(old) = VmRecord::load(&paths.record()) {
            (record.addr, record.guest_ip) = (old.addr, old.guest_ip);
            if old.image == record.image && paths.overlay().exists() {
                record.root = old.root; // the overlay is bound to that disk
            }
        }
        if record.root.is_none() {
            if let Some(name) = record.image.clone() {
                record.root = Some(self.seat_root(&spec.key, &name).await?);
            }
        }
        if let Ok(mut m) = self.envs.lock() {
            m.insert(spec.key.clone(), spec.env.clone());
        }
        // The disk copy carries no environment (see `envs`).
        let mut config = GuestConfig::new(spec.daemon_token.clone(), BTreeMap::new());
        {
            // Held across scan + save so two seats created at once cannot pick the same address.
            let _alloc = self.alloc.lock();
            // Only `none` seats are bridged; the others get a seat-network TAP at start.
            record.guest_ip = match &self.cfg.net {
                Net::Bridge { subnet, .. } if !spec.limits.network.reaches_out() => {
                    let seats = lifecycle::seat_records(&self.cfg.data_dir.join("microvm"));
                    let ip = bridge_address(&record, subnet, &seats)
                        .map_err(|e| BackendError::BridgeAddress(spec.key.clone(), e))?;
                    record.addr = Some((ip, config.port).into());
                    config.net = net::guest_net(subnet, ip, false);
                    Some(ip)
                }
                _ => None,
            };
            record
                .save(&paths.record())
                .map_err(io("writing seat.json"))?;
        }
        write_private(&paths.config_disk(), &config.to_disk())
            .map_err(io("writing the config disk"))?;
        let (vol, mb) = (paths.volume.clone(), self.cfg.volume_mb);
        tokio::task::spawn_blocking(move || ensure_volume(&vol, mb))
            .await
            .map_err(|e| BackendError::CreateVolume(spec.key.clone(), std::io::Error::other(e)))?
            .map_err(|e| BackendError::CreateVolume(spec.key.clone(), e))
    }

    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError> {
        let record = self.record(key)?;
        let paths = self.paths(key);
        if live_pid(&paths.pidfile()).is_some() {
            if let (Some(ep), _) | (None, Some(ep)) =
                (self.endpoint(key), lifecycle::endpoint_of(&record))
            {
                return Ok(ep);
            }
        }
        let vmm = self.vmm().await;
        let link = seat_net::bring_up(
            &self.cfg.net,
            &self.net,
            &record,
            &paths,
            vmm.flavour(),
            vmm.tap_owner(),
        )
        .await?;
        // The guest's config, the environment among it, in memory only (see `envs`).
        let mut config = GuestConfig::new(record.token.clone(), self.env_of(key));
        link.configure(&mut config);
        let net = match (link.tap(), link.guest_ip()) {
            (Some(ifname), Some(guest_ip)) => VmNet::Tap {
                ifname: ifname.to_string(),
                guest_ip,
            },
            _ => VmNet::User,
        };
        let launched = vmm
            .launch(Launch {
                record: &record,
                paths: &paths,
                net,
                config_disk: config.to_disk(),
                rootfs: record.root.clone().unwrap_or_else(|| self.image.rootfs()),
            })
            .await;
        let addr = match launched {
            Ok(addr) => addr,
            Err(e) => {
                if let Err(t) = self.net.teardown(key).await {
                    tracing::warn!(error = %t, "tearing down a failed seat's network failed");
                }
                return Err(BackendError::Launch(key.clone(), e));
            }
        };
        let endpoint =
            lifecycle::save_addr(&record, &paths, addr).map_err(|source| BackendError::Io {
                action: "recording the daemon's address in seat.json",
                source,
            })?;
        if let Ok(mut m) = self.endpoints.lock() {
            m.insert(key.clone(), endpoint.clone());
        }
        Ok(endpoint)
    }

    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.forget(key);
        lifecycle::stop_vm(&self.paths(key))
            .await
            .map_err(|e| BackendError::StopVm(key.clone(), e))?;
        // The VM is gone: its TAP, rules and proxy go too (the slot stays for the restart).
        self.net
            .teardown(key)
            .await
            .map_err(|e| BackendError::Network(key.clone(), e))
    }

    async fn destroy(&self, key: &SeatKey, delete_volume: bool) -> Result<(), BackendError> {
        self.forget(key);
        if let Ok(mut m) = self.envs.lock() {
            m.remove(key);
        }
        let paths = self.paths(key);
        lifecycle::stop_vm(&paths)
            .await
            .map_err(|e| BackendError::StopVm(key.clone(), e))?;
        release_host(&self.cfg, key, &paths).await;
        self.net
            .release(key)
            .await
            .map_err(|e| BackendError::Network(key.clone(), e))?;
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BackendError::RemoveFiles(key.clone(), e))
            }
            _ => Ok(()),
        };
        gone(std::fs::remove_dir_all(&paths.dir))?;
        if delete_volume {
            gone(std::fs::remove_file(&paths.volume))?;
            gone(std::fs::remove_dir_all(&paths.export))?;
        }
        for dir in [paths.dir.parent(), paths.volume.parent()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_dir(dir); // only succeeds when empty
        }
        Ok(())
    }

    async fn status(&self, key: &SeatKey) -> Result<WorkspaceStatus, BackendError> {
        let paths = self.paths(key);
        Ok(if !paths.record().is_file() {
            WorkspaceStatus::Missing
        } else if live_pid(&paths.pidfile()).is_some() {
            WorkspaceStatus::Running
        } else {
            WorkspaceStatus::Stopped
        })
    }

    fn endpoint(&self, key: &SeatKey) -> Option<DaemonEndpoint> {
        self.endpoints.lock().ok()?.get(key).cloned()
    }

    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
        let mut found = Vec::new();
        for record_path in lifecycle::seat_records(&self.cfg.data_dir.join("microvm")) {
            let Ok(record) = VmRecord::load(&record_path) else {
                continue;
            };
            let key = record.key();
            let running = live_pid(&self.paths(&key).pidfile()).is_some();
            if running {
                if let (Some(ep), Ok(mut m)) =
                    (lifecycle::endpoint_of(&record), self.endpoints.lock())
                {
                    m.insert(key.clone(), ep);
                }
                if let Err(e) = seat_net::readopt(&self.net, &record).await {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = ?e, "the seat's network did not come back");
                }
            } else if let Err(e) = self.net.teardown(&key).await {
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "tearing down a stopped seat's network failed");
            }
            found.push((
                key,
                if running {
                    WorkspaceStatus::Running
                } else {
                    WorkspaceStatus::Stopped
                },
            ));
        }
        Ok(found)
    }

    /// Where the ext4 volume image lives (it is a file, not a directory of files).
    fn volume_dir(&self, key: &SeatKey) -> PathBuf {
        self.paths(key).volume
    }

    /// The volume is an ext4 image the guest writes: the export parses it in user space
    /// ([`super::volume::walk`]) instead of mounting it or copying its files out.
    fn export_source(&self, key: &SeatKey) -> crate::export::ExportSource {
        crate::export::ExportSource::Ext4Image(self.paths(key).volume)
    }

    async fn pause(&self, key: &SeatKey) -> Result<(), BackendError> {
        MicrovmBackend::pause(self, key).await
    }

    async fn resume(&self, key: &SeatKey) -> Result<(), BackendError> {
        MicrovmBackend::resume(self, key).await
    }

    fn needs_prepare(&self, spec: &WorkspaceSpec) -> bool {
        let Some(name) = spec.image.as_deref() else {
            return false;
        };
        let store = clarateach_image::ImageStore::new(&self.cfg.seat_images);
        if clarateach_image::prepare::needs_build(&store, name) {
            return true;
        }
        // A seat of this seat image whose disk is not made yet (the first one, or after a rebuild).
        let has_root = VmRecord::load(&self.paths(&spec.key).record())
            .is_ok_and(|r| r.image.as_deref() == Some(name) && r.root.is_some());
        !has_root
            && self.guest_binary().is_ok_and(|b| {
                clarateach_image::microvm_root::root_path(&store, name, &b)
                    .is_some_and(|p| !p.is_file())
            })
    }

    /// Builds a missing built-in image, then makes its root disk (`create` finds it cached).
    async fn prepare(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        let Some(name) = spec.image.as_deref() else {
            return Ok(());
        };
        crate::seat_image::prepare(&self.cfg.seat_images, &spec.key, name).await?;
        self.seat_root(&spec.key, name).await.map(|_| ())
    }
}

/// Releases what a seat holds on the host besides its files and its seat network (the backend
/// releases that): its bridge TAP and its jail (Firecracker under the jailer). It lives here,
/// above both flavours, so `lifecycle` (which they share) does not reach into `fc_launch`.
async fn release_host(cfg: &MicrovmConfig, key: &SeatKey, paths: &VmPaths) {
    if let Ok(tap) = std::fs::read_to_string(paths.dir.join("tap")) {
        if let Err(e) = bridge::del_tap(tap.trim()).await {
            tracing::warn!(error = %e, "removing the seat's TAP failed");
        }
    }
    if let Some(j) = fc_launch::jail(cfg, key) {
        let _ = std::fs::remove_dir_all(j.dir());
    }
}
