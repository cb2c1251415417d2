//! `/files/watch`: a WebSocket of created/changed/deleted paths, so the file tree follows what
//! the learner does in the shell.
//!
//! Directories are watched one by one (non-recursive inotify watches added as they appear) and
//! never through a symlink, so a link to `/` inside the root cannot make the daemon watch the
//! whole disk. Each event's parent directory is re-resolved through [`Root`] before it is
//! reported, so a directory swapped for a symlink cannot leak names from outside. The watcher
//! exists only while someone is watching.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::fsroot::{RelPath, Root, TMP_MARKER};
use crate::AppState;

/// Most directories watched at once; past it, deeper directories are not reported.
const MAX_DIRS: usize = 4096;
/// Directories whose churn nobody wants in a file tree.
const SKIP_DIRS: [&str; 2] = [".git", "node_modules"];

/// One message of `/files/watch`. `resync` means events were lost: list again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileEvent {
    Created { path: String },
    Changed { path: String },
    Deleted { path: String },
    Resync,
}

/// Starts the watcher for the first subscriber and drops it after the last.
pub struct Watches {
    root_path: PathBuf,
    root: Arc<Root>,
    hub: Mutex<Weak<Hub>>,
}

pub struct Hub {
    tx: broadcast::Sender<FileEvent>,
    _watcher: Arc<Mutex<RecommendedWatcher>>,
}

impl Watches {
    pub fn new(root_path: PathBuf, root: Arc<Root>) -> Self {
        Self {
            root_path,
            root,
            hub: Mutex::new(Weak::new()),
        }
    }

    pub async fn subscribe(
        &self,
    ) -> Result<(Arc<Hub>, broadcast::Receiver<FileEvent>), notify::Error> {
        if let Some(hub) = self.hub.lock().unwrap_or_else(|e| e.into_inner()).upgrade() {
            let rx = hub.tx.subscribe();
            return Ok((hub, rx));
        }
        let (raw_tx, raw_rx) = mpsc::channel(4096);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let _ = raw_tx.blocking_send(res);
        })?;
        let watcher = Arc::new(Mutex::new(watcher));
        let (tx, rx) = broadcast::channel(1024);
        let (w, root_path) = (watcher.clone(), self.root_path.clone());
        let _ = tokio::task::spawn_blocking(move || add_tree(&w, &root_path, &mut 0)).await;
        tokio::spawn(forward(
            raw_rx,
            Arc::downgrade(&watcher),
            tx.clone(),
            self.root_path.clone(),
            self.root.clone(),
        ));
        let hub = Arc::new(Hub {
            tx,
            _watcher: watcher,
        });
        let mut slot = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        // Another subscriber may have raced us: keep theirs, ours is dropped.
        if let Some(existing) = slot.upgrade() {
            let rx = existing.tx.subscribe();
            return Ok((existing, rx));
        }
        *slot = Arc::downgrade(&hub);
        Ok((hub, rx))
    }
}

/// Watches `dir` and, depth first, every real (non-symlink) directory under it.
fn add_tree(watcher: &Mutex<RecommendedWatcher>, dir: &Path, count: &mut usize) {
    if *count >= MAX_DIRS {
        return;
    }
    if watcher
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .watch(dir, RecursiveMode::NonRecursive)
        .is_err()
    {
        return;
    }
    *count += 1;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir()); // does not follow symlinks
        if is_dir && !SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
            add_tree(watcher, &entry.path(), count);
        }
    }
}

async fn forward(
    mut raw: mpsc::Receiver<notify::Result<notify::Event>>,
    watcher: Weak<Mutex<RecommendedWatcher>>,
    tx: broadcast::Sender<FileEvent>,
    root_path: PathBuf,
    root: Arc<Root>,
) {
    while let Some(res) = raw.recv().await {
        let Ok(ev) = res else {
            let _ = tx.send(FileEvent::Resync);
            continue;
        };
        if ev.need_rescan() {
            let _ = tx.send(FileEvent::Resync);
        }
        let kinds: Vec<fn(String) -> FileEvent> = match ev.kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                vec![created]
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                vec![deleted]
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => vec![deleted, created],
            EventKind::Modify(ModifyKind::Name(_)) => vec![changed],
            EventKind::Modify(_) => vec![changed],
            _ => continue,
        };
        for (make, path) in kinds.iter().cycle().zip(ev.paths.iter()) {
            let Some(rel) = confined(&root, &root_path, path) else {
                continue;
            };
            let event = make(rel.display());
            if let (FileEvent::Created { .. }, Some(w)) = (&event, watcher.upgrade()) {
                let (w, p) = (w.clone(), path.clone());
                let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
                if is_dir
                    && !SKIP_DIRS
                        .iter()
                        .any(|s| p.file_name().is_some_and(|n| n == *s))
                {
                    let _ = tokio::task::spawn_blocking(move || add_tree(&w, &p, &mut 0)).await;
                }
            }
            let _ = tx.send(event);
        }
    }
}

fn created(path: String) -> FileEvent {
    FileEvent::Created { path }
}
fn changed(path: String) -> FileEvent {
    FileEvent::Changed { path }
}
fn deleted(path: String) -> FileEvent {
    FileEvent::Deleted { path }
}

/// The event path relative to the root, if its directory really is inside the root.
fn confined(root: &Root, root_path: &Path, path: &Path) -> Option<RelPath> {
    let rel = path.strip_prefix(root_path).ok()?.to_str()?;
    if rel.is_empty() || rel.contains(TMP_MARKER) {
        return None;
    }
    let rel = RelPath::parse(rel).ok()?;
    let parent = rel.parent();
    root.contains(&parent).then_some(rel)
}

/// `GET /files/watch`. Without a WebSocket upgrade this is a read of the file named `watch`.
pub async fn handler(
    state: State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(ws) = ws else {
        return crate::files::read(state, axum::extract::Path("watch".into()), headers).await;
    };
    let (hub, rx) = state
        .watches
        .subscribe()
        .await
        .map_err(|e| ApiError::internal("Cannot watch the workspace.", &e))?;
    let cancel = state.cancel.clone();
    Ok(ws
        .on_upgrade(move |socket| run(socket, hub, rx, cancel))
        .into_response())
}

async fn run(
    mut socket: WebSocket,
    _hub: Arc<Hub>,
    mut rx: broadcast::Receiver<FileEvent>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                _ => continue,
            },
            ev = rx.recv() => match ev {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(_)) => FileEvent::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let Ok(text) = serde_json::to_string(&event) else {
            continue;
        };
        let send = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            socket.send(Message::Text(text.into())),
        );
        if !matches!(send.await, Ok(Ok(()))) {
            return;
        }
    }
}
