//! Seat volumes in object storage (issue 13): every running seat's `/workspace` files are
//! synced to the bucket so that a seat whose host is lost, or that an instructor moves, comes
//! back on another agent with its files ([`restore`]).
//!
//! One task per running seat scans the volume every [`SyncSettings::interval`] (2 s) against a
//! manifest of what it uploaded ([`manifest`]): changed files are uploaded, deleted ones
//! deleted, an idle seat sends no request at all. The scan runs on a thread holding the seat's
//! own uid ([`seat_thread`]) through the export's fd walker, so a learner's symlink, FIFO or
//! device is never followed or opened: `ln -s /etc/shadow x` uploads nothing. A final pass runs
//! before the workspace is stopped or destroyed; a seat the control plane no longer gives this
//! agent (it moved while this host was away) is abandoned without one, so a stale copy never
//! overwrites the files of the seat's new host. The manifest is kept beside the volume
//! (`<volume>.sync.json`, root's, outside the seat's view) so an agent restart does not upload
//! everything again.
//!
//! Objects are deleted by the control plane, never here: a workshop's when it is deleted, a
//! seat's when it is reset.

pub mod manifest;
pub mod restore;
pub mod seat_thread;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;
use clarateach_objstore::object_store::{self, ObjectStore, PutPayload};
use clarateach_objstore::{SeatFiles, VolumeStore};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use manifest::{Caps, Manifest, Scan};
use seat_thread::{SeatThread, SeatThreadError};

/// Seconds an object may be newer than the local manifest before the local copy counts as
/// stale (clock skew between the agent and the object store).
const STALE_SLACK_S: i64 = 2;

/// Requests at most in flight per seat.
const CONCURRENCY: usize = 8;

/// How the sync runs.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    pub interval: Duration,
    pub caps: Caps,
}

impl Default for SyncSettings {
    /// Every 2 s; files up to 64 MiB, 1 GiB per seat, 64 MiB of file data per pass.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            caps: Caps {
                file_bytes: 64 << 20,
                seat_bytes: 1 << 30,
                batch_bytes: 64 << 20,
            },
        }
    }
}

/// Object-store requests this process made, by kind (for the figures and `/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub puts: u64,
    pub deletes: u64,
    pub lists: u64,
    pub gets: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.puts + self.deletes + self.lists + self.gets
    }
}

#[derive(Default)]
struct Counters {
    puts: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
    gets: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Why a restore failed (the seat is not started without its files).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Thread(#[from] SeatThreadError),
    #[error("cannot read the volume")]
    Volume(#[source] restore::WriteError),
    #[error("cannot list the seat's files in the object store")]
    List(#[source] object_store::Error),
    #[error("cannot download {0}")]
    Get(String, #[source] object_store::Error),
}

/// What a restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub bytes: u64,
    /// Keys refused (not a plain relative path, over a cap, or in the way of another).
    pub refused: usize,
}

enum Control {
    /// One last pass, then end; answered when done, with whether every upload and delete of
    /// it succeeded.
    Final(oneshot::Sender<bool>),
}

struct Worker {
    tx: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

/// The syncs of this agent's seats.
pub struct VolumeSync {
    store: VolumeStore,
    settings: SyncSettings,
    workers: Mutex<HashMap<SeatKey, Worker>>,
    counters: Counters,
}

impl std::fmt::Debug for VolumeSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeSync")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Where the manifest of `volume` is kept: beside it, like the starter marker.
pub fn manifest_path(volume: &Path) -> PathBuf {
    let mut m = volume.as_os_str().to_owned();
    m.push(".sync.json");
    PathBuf::from(m)
}

impl VolumeSync {
    pub fn new(store: VolumeStore, settings: SyncSettings) -> Arc<Self> {
        Arc::new(Self {
            store,
            settings,
            workers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// Requests made so far by this agent's syncs and restores.
    pub fn request_counts(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            puts: c.puts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            lists: c.lists.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
        }
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<SeatKey, Worker>> {
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts syncing a running seat (nothing if it already is).
    pub fn start(self: &Arc<Self>, key: &SeatKey, volume: PathBuf, owner: Option<(u32, u32)>) {
        let mut workers = self.workers();
        if workers.get(key).is_some_and(|w| !w.task.is_finished()) {
            return;
        }
        let (tx, rx) = mpsc::channel(4);
        let me = Arc::clone(self);
        let k = key.clone();
        let task = tokio::spawn(async move { me.run(k, volume, owner, rx).await });
        workers.insert(key.clone(), Worker { tx, task });
    }

    /// Runs a last pass and stops syncing the seat; waits at most `timeout`. True when the
    /// bucket now has everything (or the seat was not being synced): only then may the caller
    /// drop the local volume.
    pub async fn finish(&self, key: &SeatKey, timeout: Duration) -> bool {
        let Some(w) = self.workers().remove(key) else {
            return true;
        };
        let (reply, done) = oneshot::channel();
        let clean = if w.tx.send(Control::Final(reply)).await.is_ok() {
            match tokio::time::timeout(timeout, done).await {
                Ok(Ok(clean)) => clean,
                Ok(Err(_)) => false,
                Err(_) => {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, "final sync timed out");
                    false
                }
            }
        } else {
            false
        };
        w.task.abort();
        clean
    }

    /// Stops syncing the seat at once, without a last pass (its copy here is stale).
    pub fn abandon(&self, key: &SeatKey) {
        if let Some(w) = self.workers().remove(key) {
            tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, "sync abandoned: the seat is no longer this agent's");
            w.task.abort();
        }
    }

    /// Final passes of every seat (agent shutdown).
    pub async fn finish_all(&self, timeout: Duration) {
        let keys: Vec<SeatKey> = self.workers().keys().cloned().collect();
        futures::future::join_all(keys.iter().map(|k| self.finish(k, timeout))).await;
    }

    /// Whether the seat is being synced.
    pub fn is_syncing(&self, key: &SeatKey) -> bool {
        self.workers()
            .get(key)
            .is_some_and(|w| !w.task.is_finished())
    }

    async fn run(
        self: Arc<Self>,
        key: SeatKey,
        volume: PathBuf,
        owner: Option<(u32, u32)>,
        mut rx: mpsc::Receiver<Control>,
    ) {
        let thread = match SeatThread::spawn(owner).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(workshop.id = %key.workshop_id, seat = key.seat, error = %clarateach_core::error::error_chain(&e), "cannot sync the seat");
                return;
            }
        };
        let files = self.store.seat(&key.workshop_id, key.seat);
        let mut manifest = self.load_manifest(&volume, &files).await;
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = tick.tick() => None,
                c = rx.recv() => match c {
                    Some(Control::Final(reply)) => Some(reply),
                    None => return,
                },
            };
            let clean = match self.pass(&thread, &volume, &files, manifest.clone()).await {
                Ok((next, clean)) => {
                    if next != *manifest {
                        manifest = Arc::new(next);
                        save_manifest(&volume, &manifest).await;
                    }
                    clean
                }
                Err(e) => {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %clarateach_core::error::error_chain(&e), "sync pass failed");
                    false
                }
            };
            if let Some(reply) = last {
                let _ = reply.send(clean);
                return;
            }
        }
    }

    /// The saved manifest, else one made from the bucket's listing (every object unknown by
    /// content: the first pass uploads what differs and deletes what is gone here).
    async fn load_manifest(&self, volume: &Path, files: &SeatFiles) -> Arc<Manifest> {
        let counters = &self.counters;
        let path = manifest_path(volume);
        if let Ok(bytes) = tokio::fs::read(&path).await {
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => return Arc::new(m),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "sync manifest unreadable; listing the bucket")
                }
            }
        }
        let mut m = Manifest::default();
        bump(&counters.lists);
        let mut list = self.store.store.list(Some(files.prefix()));
        while let Some(item) = list.next().await {
            match item {
                Ok(meta) => {
                    if let Some(rel) = files.relative(&meta.location) {
                        m.files.insert(
                            rel.join("/"),
                            manifest::Entry {
                                stamp: manifest::Stamp::default(),
                                sha256: None,
                                settled: false,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the seat's synced files");
                    break;
                }
            }
        }
        Arc::new(m)
    }

    /// One scan and what it takes to bring the bucket level with it; returns the manifest of
    /// what the bucket now holds (failed uploads and deletes are retried next pass) and whether
    /// nothing failed.
    async fn pass(
        &self,
        thread: &SeatThread,
        volume: &Path,
        files: &SeatFiles,
        old: Arc<Manifest>,
    ) -> Result<(Manifest, bool), SeatThreadError> {
        let counters = &self.counters;
        let (dir, caps, base) = (volume.to_path_buf(), self.settings.caps, Arc::clone(&old));
        let scan: Scan = thread
            .run(move || {
                let mut sink = manifest::ScanSink::new(&base, manifest::now_ns(), caps);
                // The sink never fails: walk errors are reported into it.
                let _ = crate::export::walk::walk(&dir, &mut sink);
                sink.finish()
            })
            .await?;
        if scan.is_idle() {
            return Ok((scan.next, true));
        }
        let Scan {
            mut next,
            puts,
            deletes,
            ..
        } = scan;
        let store: &Arc<dyn ObjectStore> = &self.store.store;
        let put_results: Vec<(String, bool)> = futures::stream::iter(puts)
            .map(|p| async move {
                let Some(key) = files.key(p.rel.as_bytes()) else {
                    return (p.rel, false);
                };
                bump(&counters.puts);
                let ok = store.put(&key, PutPayload::from(p.data)).await;
                if let Err(e) = &ok {
                    tracing::warn!(key = %key, error = %e, "sync upload failed");
                }
                (p.rel, ok.is_ok())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut clean = true;
        for (rel, ok) in put_results {
            if !ok {
                clean = false;
                match old.files.get(&rel) {
                    Some(e) => next.files.insert(rel, e.clone()),
                    None => next.files.remove(&rel),
                };
            }
        }
        let del_results: Vec<(String, bool)> = futures::stream::iter(deletes)
            .map(|rel| async move {
                let Some(key) = files.key(rel.as_bytes()) else {
                    return (rel, true);
                };
                bump(&counters.deletes);
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => (rel, true),
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "sync delete failed");
                        (rel, false)
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (rel, ok) in del_results {
            if !ok {
                clean = false;
                if let Some(e) = old.files.get(&rel) {
                    next.files.insert(rel, e.clone());
                }
            }
        }
        Ok((next, clean))
    }

    /// Whether the files in `volume` are older than the seat's synced files: the bucket holds
    /// an object written after this agent last saved the seat's manifest (the seat ran and was
    /// saved on another agent since). A volume this agent never synced is not stale; neither is
    /// one when the bucket cannot be listed (the restore then fails or finds it current).
    pub async fn local_is_stale(&self, key: &SeatKey, volume: &Path) -> bool {
        let Ok(saved) = tokio::fs::metadata(manifest_path(volume))
            .await
            .and_then(|m| m.modified())
        else {
            return false;
        };
        let saved: chrono::DateTime<chrono::Utc> = saved.into();
        let files = self.store.seat(&key.workshop_id, key.seat);
        bump(&self.counters.lists);
        let mut list = self.store.store.list(Some(files.prefix()));
        while let Some(item) = list.next().await {
            match item {
                // Slack for clock skew between this host and the object store.
                Ok(m) if m.last_modified > saved + chrono::Duration::seconds(STALE_SLACK_S) => {
                    return true
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the seat's synced files");
                    return false;
                }
            }
        }
        false
    }

    /// Downloads the seat's synced files into `volume` if it is empty (a seat recreated here);
    /// writes the manifest of what it restored so the first sync pass uploads nothing again.
    pub async fn restore(
        &self,
        key: &SeatKey,
        volume: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<Restored, RestoreError> {
        let counters = &self.counters;
        let thread = SeatThread::spawn(owner).await?;
        let dir = volume.to_path_buf();
        if !thread
            .run(move || restore::is_empty(&dir))
            .await?
            .map_err(RestoreError::Volume)?
        {
            return Ok(Restored::default());
        }
        let files = self.store.seat(&key.workshop_id, key.seat);
        bump(&counters.lists);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .store
            .list(Some(files.prefix()))
            .try_collect()
            .await
            .map_err(RestoreError::List)?;
        let mut out = Restored::default();
        if metas.is_empty() {
            return Ok(out);
        }
        let caps = self.settings.caps;
        let mut wanted = Vec::new();
        let mut total = 0u64;
        for m in metas {
            let size = m.size;
            match files.relative(&m.location) {
                Some(rel) if size <= caps.file_bytes && total + size <= caps.seat_bytes => {
                    total += size;
                    wanted.push((m.location, rel));
                }
                _ => {
                    tracing::warn!(key = %m.location, size, "restore: key refused");
                    out.refused += 1;
                }
            }
        }
        let dir = volume.to_path_buf();
        let root = Arc::new(
            thread
                .run(move || restore::open_root(&dir))
                .await?
                .map_err(RestoreError::Volume)?,
        );
        let store = &self.store.store;
        let mut downloads = futures::stream::iter(wanted)
            .map(|(loc, rel)| async move {
                bump(&counters.gets);
                let got = match store.get(&loc).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                };
                got.map(|b| (rel, b))
                    .map_err(|e| RestoreError::Get(loc.to_string(), e))
            })
            .buffer_unordered(CONCURRENCY);
        let mut manifest = Manifest::default();
        while let Some(item) = downloads.next().await {
            let (rel, bytes) = item?;
            if bytes.len() as u64 > caps.file_bytes {
                out.refused += 1;
                continue;
            }
            let root = Arc::clone(&root);
            let r = rel.clone();
            match thread
                .run(move || restore::write_file(&root, &r, &bytes).map(|e| (e, bytes.len())))
                .await?
            {
                Ok((entry, n)) => {
                    out.files += 1;
                    out.bytes += n as u64;
                    manifest.files.insert(rel.join("/"), entry);
                }
                Err(e) => {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %clarateach_core::error::error_chain(&e), "restore: file refused");
                    out.refused += 1;
                }
            }
        }
        save_manifest(volume, &manifest).await;
        tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, files = out.files, bytes = out.bytes, refused = out.refused, "seat files restored from the object store");
        Ok(out)
    }
}

/// Saves the manifest beside the volume (root's, 0600); a failure only costs a re-upload.
async fn save_manifest(volume: &Path, m: &Manifest) {
    let path = manifest_path(volume);
    let Ok(bytes) = serde_json::to_vec(m) else {
        return;
    };
    let saved = tokio::task::spawn_blocking(move || {
        clarateach_core::private_file::write_private(&path, &bytes, false)
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::debug!(volume = %volume.display(), "cannot save the sync manifest");
    }
}

#[cfg(test)]
mod tests;
