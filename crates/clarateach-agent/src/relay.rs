//! Relays one HTTP request (or WebSocket upgrade) to a seat's workspace daemon over its Unix
//! socket (or TCP for microVMs), with the daemon's own bearer token. Bodies stream through
//! hyper untouched; after a `101 Switching Protocols` both upgraded connections are spliced
//! byte for byte, so WebSocket frames cross the agent without being parsed or re-framed. A
//! recorded terminal connection is spliced the same way, with a [`Tap`] watching the bytes go
//! by (see [`crate::recording`]).

use axum::body::Body;
use clarateach_core::hop::{forward_headers, is_upgrade};
use clarateach_isolation::{DaemonAddr, DaemonEndpoint};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::recording::Tap;

/// Why a relay attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot connect to the workspace daemon")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange with the workspace daemon failed")]
    Http(#[source] hyper::Error),
    #[error("invalid relayed request")]
    Build(#[source] http::Error),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn connect(addr: &DaemonAddr) -> Result<Box<dyn Io>, RelayError> {
    Ok(match addr {
        DaemonAddr::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(RelayError::Connect)?,
        ),
        DaemonAddr::Tcp(sa) => {
            let s = tokio::net::TcpStream::connect(sa)
                .await
                .map_err(RelayError::Connect)?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
    })
}

/// Sends `req` to the daemon at `path_and_query` (e.g. `/terminal?session=main`) and returns
/// its response; for an upgrade, splices the two upgraded connections in a background task.
pub async fn relay(
    ep: &DaemonEndpoint,
    req: Request<Body>,
    path_and_query: &str,
) -> Result<Response<Body>, RelayError> {
    relay_recorded(ep, req, path_and_query, None).await
}

/// [`relay`], with `tap` (if any) fed both directions of an upgraded connection.
pub async fn relay_recorded(
    ep: &DaemonEndpoint,
    mut req: Request<Body>,
    path_and_query: &str,
    tap: Option<Tap>,
) -> Result<Response<Body>, RelayError> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = Request::builder().method(parts.method).uri(path_and_query);
    if let Some(h) = out.headers_mut() {
        forward_headers(&parts.headers, h, upgrade, &[]);
        h.insert(header::HOST, HeaderValue::from_static("workspace"));
        let bearer = HeaderValue::try_from(format!("Bearer {}", ep.token))
            .map_err(|e| RelayError::Build(e.into()))?;
        h.insert(header::AUTHORIZATION, bearer);
    }
    let out = out.body(body).map_err(RelayError::Build)?;

    let io = connect(&ep.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(RelayError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "daemon connection ended with an error");
        }
    });
    let mut resp = sender.send_request(out).await.map_err(RelayError::Http)?;
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (resp.status(), client_upgrade)
    {
        let daemon_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, daemon_upgrade) {
                Ok((client, daemon)) => {
                    let (mut c, mut d) = (TokioIo::new(client), TokioIo::new(daemon));
                    let spliced = match tap {
                        Some(tap) => splice_tapped(c, d, tap).await,
                        None => tokio::io::copy_bidirectional_with_sizes(
                            &mut c,
                            &mut d,
                            64 * 1024,
                            64 * 1024,
                        )
                        .await
                        .map(|_| ()),
                    };
                    if let Err(e) = spliced {
                        tracing::debug!(error = %e, "upgraded relay ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    forward_headers(&headers, &mut parts.headers, false, &[]);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Copies both directions like `copy_bidirectional`, showing every chunk to `tap` after it was
/// written on (the tap only copies what it records to its queue; it never blocks the copy).
async fn splice_tapped<C: Io, D: Io>(client: C, daemon: D, tap: Tap) -> std::io::Result<()> {
    let tap = std::sync::Mutex::new(tap);
    let (mut c_rd, mut c_wr) = tokio::io::split(client);
    let (mut d_rd, mut d_wr) = tokio::io::split(daemon);
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = d_rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            c_wr.write_all(&buf[..n]).await?;
            if let Ok(mut t) = tap.lock() {
                t.from_daemon(&buf[..n]);
            }
        }
        c_wr.shutdown().await
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = c_rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            d_wr.write_all(&buf[..n]).await?;
            if let Ok(mut t) = tap.lock() {
                t.from_client(&buf[..n]);
            }
        }
        d_wr.shutdown().await
    };
    // Either side closing ends the connection, as with copy_bidirectional's error paths.
    let (a, b) = tokio::join!(down, up);
    a.and(b)
}
