//! The control plane's listening socket and its accept loop, with the limits that keep slow or
//! abusive clients from holding file descriptors forever.
//!
//! `tokio::net::TcpListener::bind` asks for a backlog of 128. When a class of 200 learners opens
//! the join page at the same instant the queue overflows before the server accepts, and every
//! dropped SYN costs its learner a 1 s retransmit (seen as a 1 s p99 in `bench join`).
//!
//! `axum::serve` sets no timer on hyper, so a client that opens a socket and never finishes its
//! headers (or trickles a body, or never reads the answer) keeps its descriptor for ever, and
//! there is no cap on how many it may hold. [`serve`] is a small replacement that keeps what
//! `axum::serve` did (TCP_NODELAY, the peer address as `ConnectInfo`, graceful shutdown, WebSocket
//! upgrades) and adds, per [`ConnLimits`]:
//! - a header-read timeout: hyper's timer, which runs from the moment the connection waits for a
//!   request head, i.e. from accept and again from the end of each answer, so it is also the
//!   keep-alive idle timeout (an idle keep-alive connection is closed after it);
//! - a stall timeout: a request body whose next chunk does not arrive, or an answer the client does
//!   not read (a write that cannot progress), for that long ends the connection;
//! - a connection cap: beyond it a new connection is accepted and closed at once, so the process's
//!   descriptors stay bounded and the kernel's backlog keeps draining. The slot is held until the
//!   socket closes, also after a WebSocket upgrade.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::ServerError;

/// Connections the kernel may queue before they are accepted; it caps this at
/// `net.core.somaxconn` (4096 by default on current kernels).
const BACKLOG: u32 = 1024;

/// hyper's read buffer per connection, and so the largest request head (hyper's default is
/// ~400 KiB, which a full cap of slow clients sending huge heads would multiply into gigabytes).
/// Tokens and cookies fit many times over.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Binds `addr` (port 0 picks a free one) the way `TcpListener::bind` does, with a deeper
/// accept queue. Must be called inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ServerError::Bind)?;
    // Like `TcpListener::bind`: a restarted server can take its port back at once.
    socket.set_reuseaddr(true).map_err(ServerError::Bind)?;
    socket.bind(addr).map_err(ServerError::Bind)?;
    socket.listen(BACKLOG).map_err(ServerError::Bind)
}

/// Per-connection limits of [`serve`] (set from [`crate::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A request head must be complete this long after the connection starts waiting for it.
    pub header_read_timeout: Duration,
    /// A body chunk or a blocked write may wait this long before the connection is closed.
    pub stall_timeout: Duration,
    /// Connections open at once (including upgraded WebSockets).
    pub max_connections: usize,
}

/// Accepts on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (idle connections close at once) and returns. Upgraded connections live on their own. With
/// `tls`, each connection's handshake runs in its own task, inside its connection slot and
/// bounded by the header-read timeout, so a client that never finishes one holds nothing for
/// long and never delays the accept loop.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    tls: Option<Arc<clarateach_tls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a transient error: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = limits.max_connections,
                    refused,
                    "connection cap reached; closing new connections"
                );
            }
            drop(tcp);
            continue;
        };
        // Keystroke echo frames are tiny: send them at once rather than after Nagle's delay.
        let _ = tcp.set_nodelay(true);
        let guarded = Guarded {
            inner: tcp,
            stall: limits.stall_timeout,
            write_stall: None,
            _slot: permit,
        };
        let (app, closing) = (app.clone(), closing_rx.clone());
        match tls.clone() {
            None => conns.spawn(connection(guarded, peer, app, limits, closing)),
            Some(acceptor) => conns.spawn(async move {
                let handshake = acceptor.accept(guarded);
                match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => connection(stream, peer, app, limits, closing).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }),
        };
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stall = limits.stall_timeout;
    let io = TokioIo::new(stream);
    let service = hyper::service::service_fn(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let req = req.map(|body| Body::new(StallLimited::new(body, stall)));
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        },
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            changed = closing.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The accepted socket: holds its connection slot until dropped and fails a write that has been
/// blocked (the client not reading) for the stall timeout.
struct Guarded {
    inner: TcpStream,
    stall: Duration,
    write_stall: Option<Pin<Box<Sleep>>>,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.write_stall = None;
            return res;
        }
        let stall = self.stall;
        let timer = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body whose next chunk must arrive within the stall timeout (a trickled body would
/// otherwise keep a handler, and its connection, waiting for ever).
struct StallLimited<B> {
    inner: B,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> StallLimited<B> {
    fn new(inner: B, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            timer: None,
        }
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the request body failed")]
    Read(#[source] hyper::Error),
    #[error("the request body stalled")]
    Stalled,
}

impl<B> HttpBody for StallLimited<B>
where
    B: HttpBody<Data = bytes::Bytes, Error = hyper::Error> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        let stall = this.stall;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyError::Stalled)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn binds_and_accepts() {
        let l = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = l.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_server, peer) = l.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().expect("local"));
    }

    async fn start(limits: ConnLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .route("/big", axum::routing::get(|| async { vec![b'x'; BIG] }));
        let l = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(l, app, limits, None, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    const SHORT: ConnLimits = ConnLimits {
        header_read_timeout: Duration::from_millis(300),
        stall_timeout: Duration::from_millis(300),
        max_connections: 4,
    };

    /// Reads until EOF (or a reset); fails the test when the server keeps the socket open.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(limit, async {
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the server did not close the connection");
        got
    }

    #[tokio::test]
    async fn unfinished_headers_are_cut_off() {
        let (addr, _stop) = start(SHORT).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        closed_within(&mut s, Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn idle_keep_alive_is_closed_after_an_answer() {
        let (addr, _stop) = start(SHORT).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let got = closed_within(&mut s, Duration::from_secs(3)).await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let (addr, _stop) = start(SHORT).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 2 * MAX_HEAD_BYTES));
        req.extend_from_slice(b"\r\n\r\n");
        // The server may stop reading (and reset) before the whole head is sent.
        let _ = s.write_all(&req).await;
        let got = closed_within(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
        // A head within the limit is answered.
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Junk: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES / 2));
        req.extend_from_slice(b"\r\n\r\n");
        s.write_all(&req).await.expect("write");
        let got = closed_within(&mut s, Duration::from_secs(3)).await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn trickled_body_is_cut_off() {
        let (addr, _stop) = start(SHORT).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .expect("write");
        let got = closed_within(&mut s, Duration::from_secs(3)).await;
        // The handler saw a failed body (axum answers 400); the connection then closes.
        assert!(!String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }

    const BIG: usize = 64 << 20;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let (addr, _stop) = start(SHORT).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        // Read nothing while the socket buffers fill and the server's write blocks.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = closed_within(&mut s, Duration::from_secs(10)).await;
        assert!(
            got.len() < BIG,
            "the whole {} bytes arrived: the stalled write was not cut off",
            got.len()
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let (addr, _stop) = start(ConnLimits {
            header_read_timeout: Duration::from_secs(30),
            ..SHORT
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..SHORT.max_connections {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let got = closed_within(&mut extra, Duration::from_secs(2)).await;
        assert!(got.is_empty());
        // Freeing a slot lets the next client in.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let got = closed_within(&mut s, Duration::from_secs(3)).await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }
}
