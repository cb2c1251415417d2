//! Relays one HTTP request (or WebSocket upgrade) to a seat's workspace daemon over its Unix
//! socket (or TCP for microVMs), with the daemon's own bearer token. Bodies stream through
//! hyper untouched; after a `101 Switching Protocols` both upgraded connections are spliced
//! byte for byte, so WebSocket frames cross the agent without being parsed or re-framed.

use axum::body::Body;
use clarateach_core::hop::{forward_headers, is_upgrade};
use clarateach_isolation::{DaemonAddr, DaemonEndpoint};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

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
    mut req: Request<Body>,
    path_and_query: &str,
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
                    if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                        &mut c,
                        &mut d,
                        64 * 1024,
                        64 * 1024,
                    )
                    .await
                    {
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
