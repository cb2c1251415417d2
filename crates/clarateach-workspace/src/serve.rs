//! The HTTP surface: routes, bearer-token auth, listeners (TCP, Unix socket, or a listening
//! socket inherited from the sandbox's creator) and shutdown.

use clarateach_core::ErrorCode;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clarateach_core::HealthResponse;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::{activate, files, preview, run, terminal, watch, AppState, Config};

/// Where the daemon listens: `127.0.0.1:7681`, `unix:/run/clarateach.sock`, or `fd:3`, a listening
/// Unix socket the sandbox's creator bound in a directory the learner cannot reach and handed
/// down as an open file descriptor (so the learner can never put another program on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(n) = s.strip_prefix("fd:") {
            return match n.parse::<i32>() {
                Ok(fd) if fd > 2 => Ok(Listen::Fd(fd)),
                _ => Err(format!("{s:?}: fd: needs a descriptor number above 2")),
            };
        }
        match s.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Ok(Listen::Unix(PathBuf::from(p))),
            Some(_) => Err("unix: needs a socket path".into()),
            None => s
                .parse()
                .map(Listen::Tcp)
                .map_err(|e| format!("{s:?} is not ADDR:PORT, unix:/path or fd:N ({e})")),
        }
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the workspace root {0}")]
    Root(PathBuf, #[source] std::io::Error),
    #[error("cannot listen on {0:?}")]
    Bind(Listen, #[source] std::io::Error),
    #[error("the same fd: listener is given twice")]
    DuplicateFd,
    #[error("no --listen address given")]
    NoListener,
    #[error("the token must not be empty")]
    EmptyToken,
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// All routes. `/health` is open; everything else needs `Authorization: Bearer <token>`.
pub fn router(state: AppState) -> Router {
    let body_limit = (state.max_file_bytes as usize).saturating_mul(4) / 3 + (1 << 20);
    let protected = Router::new()
        .route("/terminal", get(terminal::handler))
        .route("/files", get(files::list))
        .route(
            "/files/watch",
            get(watch::handler).put(put_watch).delete(delete_watch),
        )
        .route(
            "/files/{*path}",
            get(files::read).put(files::write).delete(files::delete),
        )
        .route("/files-rename", post(files::rename))
        .route("/files-mkdir", post(files::mkdir))
        .route("/files-sync", post(files::sync))
        .route("/run", post(run::handler))
        .route("/screen", get(terminal::screen_handler))
        .route("/previews", get(preview::list))
        .route("/preview/{port}", any(preview::relay))
        .route("/preview/{port}/", any(preview::relay))
        .route("/preview/{port}/{*rest}", any(preview::relay))
        .route("/activate", post(activate::handler))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

// `/files/watch` is also a file path: PUT and DELETE of a file named `watch` land here.
async fn put_watch(
    state: State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<clarateach_core::SuccessResponse>, ApiError> {
    files::write(state, axum::extract::Path("watch".into()), headers, body).await
}
async fn delete_watch(
    state: State<AppState>,
) -> Result<Json<clarateach_core::SuccessResponse>, ApiError> {
    files::delete(state, axum::extract::Path("watch".into())).await
}

async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The bearer token must be the daemon's (the activation's once a daemon started ahead got
/// it); a daemon started ahead serves `/activate` alone until then.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let expected = state.activation.token(&state.token);
    match clarateach_core::secret::bearer_token(req.headers()) {
        Some(t) if clarateach_core::secret::constant_time_eq(t, expected) => {
            if !state.activation.serving() && req.uri().path() != "/activate" {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::NotActivated,
                    "The seat has not started yet.",
                )
                .into_response();
            }
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token",
        )
        .into_response(),
    }
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    /// The path to remove on shutdown (none for an inherited socket: its creator owns it).
    Unix(tokio::net::UnixListener, Option<PathBuf>),
}

/// A daemon with its sockets bound, ready to [`Server::run`].
pub struct Server {
    state: AppState,
    listeners: Vec<Bound>,
}

impl Server {
    pub async fn bind(cfg: &Config) -> Result<Self, Error> {
        if cfg.listen.is_empty() {
            return Err(Error::NoListener);
        }
        if cfg.token.is_empty() {
            return Err(Error::EmptyToken);
        }
        let mut fds: Vec<i32> = cfg
            .listen
            .iter()
            .filter_map(|l| match l {
                Listen::Fd(fd) => Some(*fd),
                _ => None,
            })
            .collect();
        fds.sort_unstable();
        if fds.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::DuplicateFd);
        }
        let state = AppState::new(cfg, CancellationToken::new())?;
        let mut listeners = Vec::new();
        for l in &cfg.listen {
            let bind_err = |e| Error::Bind(l.clone(), e);
            listeners.push(match l {
                Listen::Tcp(addr) => Bound::Tcp(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(bind_err)?,
                ),
                Listen::Unix(path) => {
                    remove_stale_socket(path);
                    Bound::Unix(
                        tokio::net::UnixListener::bind(path).map_err(bind_err)?,
                        Some(path.clone()),
                    )
                }
                Listen::Fd(fd) => inherited_listener(*fd).map_err(bind_err)?,
            });
        }
        Ok(Self { state, listeners })
    }

    /// The bound TCP addresses (port 0 resolved).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Bound::Tcp(t) => t.local_addr().ok(),
                Bound::Unix(..) => None,
            })
            .collect()
    }

    /// Serves until `shutdown` completes, then closes WebSockets and hangs up every shell.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let app = router(self.state.clone());
        let cancel = self.state.cancel.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let mut sockets = Vec::new();
        for l in self.listeners {
            let (app, stop) = (app.clone(), cancel.clone().cancelled_owned());
            match l {
                Bound::Tcp(t) => {
                    tracing::info!(addr = ?t.local_addr().ok(), "listening");
                    // Keystroke echo frames are tiny: no Nagle delay (microVM daemons are on TCP).
                    let t = t.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    tasks.spawn(
                        async move { axum::serve(t, app).with_graceful_shutdown(stop).await },
                    );
                }
                Bound::Unix(u, path) => {
                    tracing::info!(path = ?path, "listening");
                    sockets.extend(path);
                    tasks.spawn(
                        async move { axum::serve(u, app).with_graceful_shutdown(stop).await },
                    );
                }
            }
        }
        let stopper = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.cancel();
        });
        let mut result = Ok(());
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                cancel.cancel();
                result = Err(Error::Serve(e));
            }
        }
        self.state.sessions.shutdown();
        for p in sockets {
            let _ = std::fs::remove_file(p);
        }
        result
    }
}

/// Binds every `cfg.listen` address and serves until `shutdown` completes.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Server::bind(&cfg).await?.run(shutdown).await
}

/// A socket file left by an earlier run would make bind fail; anything else is left alone.
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Takes over the listening socket inherited as `fd`: a Unix socket the sandbox's agent bound, or
/// the TCP socket a microVM guest's PID 1 bound on a privileged port. Marks it close-on-exec at
/// once, so no shell or command the daemon starts ever holds it, and makes this process
/// non-dumpable, so other processes of the same uid (the learner's) can neither ptrace the daemon
/// nor open its `/proc/PID/fd/N` to steal the socket. Anything but a listening stream socket is
/// refused.
#[allow(unsafe_code)]
fn inherited_listener(fd: i32) -> std::io::Result<Bound> {
    use rustix::io::FdFlags;
    use rustix::net::sockopt;
    use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
    let not_ours =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    if fd <= 2 {
        return Err(not_ours("descriptors 0-2 are stdio"));
    }
    // SAFETY: only borrowed for the checks below; fcntl on a closed fd fails with EBADF before
    // anything else touches it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    let family = rustix::net::getsockname(borrowed).ok();
    let (is_unix, is_inet) = match &family {
        Some(rustix::net::SocketAddrAny::Unix(_)) => (true, false),
        Some(rustix::net::SocketAddrAny::V4(_) | rustix::net::SocketAddrAny::V6(_)) => {
            (false, true)
        }
        _ => (false, false),
    };
    if !(is_unix || is_inet)
        || sockopt::get_socket_type(borrowed)? != rustix::net::SocketType::STREAM
        || !sockopt::get_socket_acceptconn(borrowed)?
    {
        return Err(not_ours("not a listening stream socket"));
    }
    // SAFETY: the fd is open (fcntl succeeded), is a socket handed to this process at exec, and
    // nothing else in the process refers to it: `--listen fd:N` names each descriptor once (a
    // duplicate would be a double close, so `Server::bind` rejects it).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if is_inet {
        let std_listener = std::net::TcpListener::from(owned);
        std_listener.set_nonblocking(true)?;
        return Ok(Bound::Tcp(tokio::net::TcpListener::from_std(std_listener)?));
    }
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    std_listener.set_nonblocking(true)?;
    Ok(Bound::Unix(
        tokio::net::UnixListener::from_std(std_listener)?,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn listen_addresses_parse() {
        assert_eq!("fd:3".parse::<Listen>(), Ok(Listen::Fd(3)));
        assert!("fd:2".parse::<Listen>().is_err(), "stdio is no listener");
        assert!("fd:x".parse::<Listen>().is_err());
        assert_eq!(
            "unix:/s".parse::<Listen>(),
            Ok(Listen::Unix(PathBuf::from("/s")))
        );
    }

    #[tokio::test]
    async fn an_inherited_socket_is_taken_over_close_on_exec_and_anything_else_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        // As after exec: the descriptor without close-on-exec.
        let fd = std_listener.into_raw_fd();
        rustix::io::fcntl_setfd(
            // SAFETY: test-only borrow of the fd just created above.
            #[allow(unsafe_code)]
            unsafe {
                std::os::fd::BorrowedFd::borrow_raw(fd)
            },
            rustix::io::FdFlags::empty(),
        )
        .expect("clear cloexec");
        let Bound::Unix(listener, None) = inherited_listener(fd).expect("take over") else {
            panic!("a Unix socket comes back as one");
        };
        let flags = rustix::io::fcntl_getfd(&listener).expect("getfd");
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        assert_eq!(
            rustix::process::dumpable_behavior().expect("dumpable"),
            rustix::process::DumpableBehavior::NotDumpable
        );
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted.expect("accept");
        connected.expect("connect");
        // A plain file and a connected (not listening) socket are refused.
        let file = std::fs::File::create(dir.path().join("f")).expect("file");
        assert!(inherited_listener(file.as_raw_fd()).is_err());
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(inherited_listener(a.as_raw_fd()).is_err());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(inherited_listener(udp.into_raw_fd()).is_err());
    }

    #[tokio::test]
    async fn an_inherited_tcp_listener_serves_as_tcp() {
        // The microVM guest's PID 1 binds the privileged port and hands it down like this.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let fd = std_listener.into_raw_fd();
        let Bound::Tcp(listener) = inherited_listener(fd).expect("take over") else {
            panic!("a TCP socket comes back as TCP");
        };
        let (accepted, connected) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        accepted.expect("accept");
        connected.expect("connect");
    }
}
