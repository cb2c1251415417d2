//! A thread that runs jobs as one seat's host user. Scans read and restores write the seat's
//! files with the seat's own credentials (see [`crate::export::creds`]): whatever a bug in the
//! walk did, the kernel checks it against the seat's uid, so a root-only host file stays
//! unreadable and unwritable. Credentials are per thread and dropping them is for good, so the
//! thread is the seat's own and ends with its sync or restore, never a pooled one.

use tokio::sync::{mpsc, oneshot};

use crate::export::creds;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job could not run as the seat.
#[derive(Debug, thiserror::Error)]
pub enum SeatThreadError {
    #[error("cannot start the seat's sync thread")]
    Spawn(#[source] std::io::Error),
    #[error("cannot take on the seat's user")]
    Creds(#[source] creds::CredsError),
    #[error("the seat's sync thread ended")]
    Gone,
}

/// Handle to the thread; dropping it ends the thread after its current job.
pub struct SeatThread {
    tx: mpsc::UnboundedSender<Job>,
}

impl SeatThread {
    /// Starts the thread as `owner` (as this process when `None` or not root).
    pub async fn spawn(owner: Option<(u32, u32)>) -> Result<Self, SeatThreadError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new()
            .name("seat-sync".into())
            .spawn(move || {
                let dropped = match owner.filter(|_| creds::can_switch()) {
                    Some((uid, gid)) => creds::become_owner(uid, gid),
                    None => Ok(()),
                };
                let ok = dropped.is_ok();
                let _ = ready.send(dropped);
                if !ok {
                    return;
                }
                while let Some(job) = rx.blocking_recv() {
                    job();
                }
            })
            .map_err(SeatThreadError::Spawn)?;
        match started.await {
            Ok(Ok(())) => Ok(Self { tx }),
            Ok(Err(e)) => Err(SeatThreadError::Creds(e)),
            Err(_) => Err(SeatThreadError::Gone),
        }
    }

    /// Runs `f` on the thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SeatThreadError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move || {
                let _ = reply.send(f());
            }))
            .map_err(|_| SeatThreadError::Gone)?;
        rx.await.map_err(|_| SeatThreadError::Gone)
    }
}
