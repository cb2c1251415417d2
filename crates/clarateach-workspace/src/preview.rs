//! Preview of a learner's web app: `/preview/{port}/{path}` relays one HTTP request (or a
//! WebSocket upgrade, for hot reload) to `127.0.0.1:{port}`, and `/previews` lists the ports
//! listening there. The daemon runs in the seat's own network namespace, so its loopback is the
//! seat's: the connection is made from inside the seat and no network is given to it, and the
//! address is fixed here (only the port comes from the caller), so a preview can never reach the
//! host or another seat. Bodies stream through hyper; upgraded connections are spliced byte for
//! byte. The seat's answer is data: the control plane's gateway decides which headers reach a
//! browser, and only ever on the preview's own origin.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::hop::{forward_headers, is_upgrade};
use clarateach_core::preview::{ListeningPorts, FORWARDED_HOST};
use clarateach_core::ErrorCode;
use hyper_util::rt::TokioIo;

use crate::error::ApiError;
use crate::AppState;

/// Why a preview request could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("nothing answers on port {0} in the seat")]
    Connect(u16, #[source] std::io::Error),
    #[error("HTTP exchange with the seat's app failed")]
    Http(#[source] hyper::Error),
    #[error("invalid relayed request")]
    Build(#[source] axum::http::Error),
}

/// `GET /previews`: TCP ports in LISTEN state that a loopback connection reaches.
pub async fn list(State(state): State<AppState>) -> Json<ListeningPorts> {
    let own = state.own_tcp_ports.clone();
    let ports = tokio::task::spawn_blocking(move || listening_ports(&own))
        .await
        .unwrap_or_default();
    Json(ListeningPorts { ports })
}

/// Reads `/proc/net/tcp{,6}` (this process's network namespace: the seat's) for listeners on
/// a wildcard or loopback address, leaving out the daemon's own ports.
pub fn listening_ports(own: &[u16]) -> Vec<u16> {
    let mut ports: Vec<u16> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| parse_proc_net_tcp(&text))
        .filter(|p| !own.contains(p))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The listening ports of one `/proc/net/tcp`-format table reachable over loopback.
fn parse_proc_net_tcp(text: &str) -> Vec<u16> {
    const LOOPBACK_OR_ANY: [&str; 4] = [
        "00000000",
        "0100007F",
        "00000000000000000000000000000000",
        "00000000000000000000000001000000",
    ];
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            let (addr, port) = local.split_once(':')?;
            (state == "0A" && LOOPBACK_OR_ANY.contains(&addr))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// `/preview/{port}/{path}`: the request, path and query as the browser sent them.
pub async fn relay(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    // The daemon's own TCP port (microVMs) is not a preview.
    let Some((port, rest)) = split_path(&path).filter(|(p, _)| !state.own_tcp_ports.contains(p))
    else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "expected /preview/{port}/{path}",
        )
        .into_response();
    };
    let mut target = format!("/{rest}");
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    match forward(port, req, &target).await {
        Ok(resp) => resp,
        Err(e @ PreviewError::Connect(..)) => {
            tracing::debug!(port, error = %e, "preview target not listening");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::WorkspaceUnreachable,
                format!("Nothing is listening on port {port} in this seat."),
            )
            .into_response()
        }
        Err(e) => {
            tracing::debug!(port, error = %e, "preview relay failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::WorkspaceUnreachable,
                "The app in this seat did not answer.",
            )
            .into_response()
        }
    }
}

/// `/preview/8000/a/b` -> `(8000, "a/b")`; the port must be 1-65535.
fn split_path(path: &str) -> Option<(u16, &str)> {
    let rest = path.strip_prefix("/preview/")?;
    let (port, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    Some((port, rest))
}

async fn forward(port: u16, mut req: Request, target: &str) -> Result<Response, PreviewError> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(FORWARDED_HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let mut out = axum::http::Request::builder()
        .method(parts.method)
        .uri(target);
    if let Some(h) = out.headers_mut() {
        forward_headers(&parts.headers, h, upgrade, &[]);
        h.insert(header::HOST, host);
    }
    let out = out.body(body).map_err(PreviewError::Build)?;
    // Always the seat's own loopback: only the port is the caller's.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| PreviewError::Connect(port, e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(PreviewError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "preview connection ended with an error");
        }
    });
    let mut resp = sender.send_request(out).await.map_err(PreviewError::Http)?;
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (resp.status(), client_upgrade)
    {
        let app_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let Ok((client, app)) = tokio::try_join!(client_upgrade, app_upgrade) {
                let (mut c, mut a) = (TokioIo::new(client), TokioIo::new(app));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut a).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_listeners_on_loopback_or_any_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0\n\
   2: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 100 0 0 10 0\n\
   3: 0200000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4 1 0 100 0 0 10 0\n";
        assert_eq!(parse_proc_net_tcp(table), vec![8000, 3000]);
    }

    #[test]
    fn preview_paths() {
        assert_eq!(split_path("/preview/8000/"), Some((8000, "")));
        assert_eq!(split_path("/preview/8000"), Some((8000, "")));
        assert_eq!(split_path("/preview/8000/a/b"), Some((8000, "a/b")));
        assert_eq!(split_path("/preview/0/"), None);
        assert_eq!(split_path("/preview/65536/"), None);
        assert_eq!(split_path("/preview/x/"), None);
    }
}
