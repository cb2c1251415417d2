//! Forwards one authorised request to the data path of the agent hosting the seat
//! (`{data_url}/seats/{workshop_id}/{seat}/{rest}`, `Authorization: Bearer <data token>`).
//! Plain HTTP goes through a pooled client with streamed bodies; a WebSocket upgrade gets its own
//! connection and, after `101`, the two upgraded sockets are spliced byte for byte, so terminal
//! frames are never parsed, buffered whole or re-framed on the way.
//!
//! An `https://` data URL is dialed with rustls trusting only the control plane's data-path CA
//! and verifying the SAN of the agent the seat is routed to (`data_ca::agent_server_name`), so
//! a certificate from another CA or issued to another agent is refused before the data token is
//! sent. Plain requests to such an agent share a pooled client of their own (one per agent id,
//! in [`TlsClients`]); upgrades get a connection each, as over plain HTTP.

use clarateach_core::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use clarateach_core::hop::{forward_headers, is_upgrade};
use clarateach_tls::data_ca;
use clarateach_tls::ClientConfig;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::access::SeatAccess;
use super::answer::{self, BodyKind};
use crate::error::ApiError;
use crate::scheduler::SeatRoute;
use crate::state::AppState;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

pub(super) fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector)
    })
}

/// The query the daemon sees: the caller's, minus credentials and seat selectors, with the
/// mode the gateway decided for terminals. Kept as raw pairs so nothing is re-encoded.
pub(super) fn daemon_query(raw: Option<&str>, access: &SeatAccess, terminal: bool) -> String {
    let mut pairs: Vec<String> = raw
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("");
            !matches!(key, "token" | "ticket" | "workshop_id" | "seat" | "mode")
        })
        .map(str::to_string)
        .collect();
    if terminal {
        pairs.push(format!("mode={}", access.mode.as_str()));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

pub(super) fn unreachable(e: &dyn std::fmt::Display, access: &SeatAccess) -> ApiError {
    tracing::warn!(workshop.id = %access.workshop_id, seat = access.seat, error = %e, "agent data path failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::WorkspaceUnreachable,
        "The seat's workspace did not answer.",
    )
}

/// Sends `req` to `rest` (e.g. `terminal`, `files/a.py`) on the seat's daemon through its agent.
pub(super) async fn forward(
    state: &AppState,
    access: &SeatAccess,
    rest: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let route = state.seat_route(&access.workshop_id, access.seat).await?;
    if access.role == super::access::Role::Learner {
        state.touch_activity(&access.workshop_id, access.seat).await;
    }
    let query = daemon_query(req.uri().query(), access, rest == "terminal");
    let uri: Uri = format!(
        "{}/seats/{}/{}/{rest}{query}",
        route.data_url.trim_end_matches('/'),
        access.workshop_id,
        access.seat
    )
    .parse()
    .map_err(|_| ApiError::invalid_request("The request path is not valid."))?;
    let upgrade = is_upgrade(req.headers());
    let kind = BodyKind::of_request(req.method(), rest, req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = axum::http::Request::builder().method(parts.method).uri(uri);
    if let Some(h) = out.headers_mut() {
        forward_headers(&parts.headers, h, upgrade, &[header::COOKIE]);
        let bearer = HeaderValue::try_from(format!("Bearer {}", route.data_token))
            .map_err(|e| unreachable(&e, access))?;
        h.insert(header::AUTHORIZATION, bearer);
    }
    let out = out.body(body).map_err(|e| unreachable(&e, access))?;

    let tls = state.data_ca().client_config();
    let Some(client_upgrade) = client_upgrade else {
        let resp = send(state.data_clients(), &tls, &route, out, false)
            .await
            .map_err(|e| unreachable(&e, access))?;
        return Ok(distrusted(resp.map(Body::new), kind, false));
    };
    let mut resp = send(state.data_clients(), &tls, &route, out, true)
        .await
        .map_err(|e| unreachable(&e, access))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(distrusted(resp.map(Body::new), kind, false));
    }
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    let (state, access) = (state.clone(), access.clone());
    // A seat reset signs its learner out: their open WebSockets close too.
    let reset = (access.role == super::access::Role::Learner)
        .then(|| state.seat_reset(&access.workshop_id, access.seat));
    // An open learner connection keeps the idle policy away from the seat.
    let open = (access.role == super::access::Role::Learner)
        .then(|| crate::pause::connection_opened(&state, &access.workshop_id, access.seat));
    // An instructor's terminal is audited and shown to the learner while it is open.
    let present = crate::audit::instructor_terminal(&state, &access, rest).await;
    tokio::spawn(async move {
        let _open = open;
        let _present = present;
        match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok((client, agent)) => {
                let spliced = splice(&state, &access, TokioIo::new(client), TokioIo::new(agent));
                match reset {
                    Some(reset) => tokio::select! {
                        () = spliced => {}
                        () = reset => tracing::info!(workshop.id = %access.workshop_id, seat = access.seat, "learner connection closed: seat reset"),
                    },
                    None => spliced.await,
                }
            }
            Err(e) => tracing::debug!(error = %e, "gateway upgrade failed"),
        }
    });
    Ok(distrusted(resp.map(|_| Body::empty()), kind, true))
}

/// The daemon's answer as the browser gets it: its status (sanitised) and body, the gateway's
/// headers (see `answer`).
fn distrusted(resp: Response, kind: BodyKind, upgraded: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.status = answer::status(parts.status, upgraded);
    parts.headers = if upgraded {
        answer::upgrade_headers(&parts.headers)
    } else {
        answer::headers(&parts.headers, kind)
    };
    parts.extensions = Default::default();
    Response::from_parts(parts, body)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type TlsClient = Client<AgentTlsConnector, Body>;

/// Pooled HTTPS clients for agents' `https://` data paths, one per agent id: each one's
/// connector verifies that agent's SAN, so a pooled connection is only ever one that proved to
/// be the agent the request is routed to.
#[derive(Default)]
pub struct TlsClients(std::sync::Mutex<HashMap<String, TlsClient>>);

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClients").finish_non_exhaustive()
    }
}

impl TlsClients {
    fn get(&self, tls: &Arc<ClientConfig>, agent_id: &str) -> Result<TlsClient, BoxError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| "the data-path client pool is poisoned")?;
        if let Some(c) = map.get(agent_id) {
            return Ok(c.clone());
        }
        let connector = AgentTlsConnector {
            tls: Arc::clone(tls),
            name: data_ca::agent_server_name(agent_id)?,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        map.insert(agent_id.to_string(), client.clone());
        Ok(client)
    }
}

/// Dials one agent's `https://` data path, verifying its agent SAN.
#[derive(Clone)]
pub struct AgentTlsConnector {
    tls: Arc<ClientConfig>,
    name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl tower::Service<Uri> for AgentTlsConnector {
    type Response = AgentTlsConn;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<AgentTlsConn, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (tls, name) = (Arc::clone(&self.tls), self.name.clone());
        Box::pin(async move {
            let stream = tls_dial(&uri, tls, name).await?;
            Ok(AgentTlsConn(TokioIo::new(stream)))
        })
    }
}

/// A verified TLS connection to an agent's data path, for the pooled client.
pub struct AgentTlsConn(TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>);

impl hyper_util::client::legacy::connect::Connection for AgentTlsConn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl hyper::rt::Read for AgentTlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for AgentTlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn tls_dial(
    uri: &Uri,
    tls: Arc<ClientConfig>,
    name: tokio_rustls::rustls::pki_types::ServerName<'static>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, BoxError> {
    let tcp = dial(uri, 443).await?;
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await??)
}

/// Sends `req` (its URI is on `route.data_url`) to the agent: `http://` plain requests through the
/// pooled client, anything else on a connection of its own (kept open for an upgrade), over
/// TLS verified as `route`'s agent when the data URL is `https://`.
pub(super) async fn send(
    tls_clients: &TlsClients,
    tls: &Arc<ClientConfig>,
    route: &SeatRoute,
    req: axum::http::Request<Body>,
    upgrade: bool,
) -> Result<axum::http::Response<hyper::body::Incoming>, BoxError> {
    let uri = req.uri().clone();
    match uri.scheme_str() {
        Some("http") if !upgrade => Ok(client().request(req).await?),
        Some("https") if !upgrade => {
            Ok(tls_clients.get(tls, &route.agent_id)?.request(req).await?)
        }
        Some("http") => exchange(TokioIo::new(dial(&uri, 80).await?), req).await,
        Some("https") => {
            let name = data_ca::agent_server_name(&route.agent_id)?;
            let stream = tls_dial(&uri, Arc::clone(tls), name).await?;
            exchange(TokioIo::new(stream), req).await
        }
        _ => Err(format!("unsupported data path scheme in {}", route.data_url).into()),
    }
}

async fn dial(uri: &Uri, default_port: u16) -> Result<tokio::net::TcpStream, BoxError> {
    let host = uri.host().ok_or("data path URL without a host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn exchange<I>(
    io: TokioIo<I>,
    req: axum::http::Request<Body>,
) -> Result<axum::http::Response<hyper::body::Incoming>, BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });
    Ok(sender.send_request(req).await?)
}

/// Copies both directions until either side closes; browser -> workspace traffic from a
/// learner counts as seat activity.
pub(super) async fn splice<C, A>(state: &AppState, access: &SeatAccess, client: C, agent: A)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (agent_rd, mut agent_wr) = tokio::io::split(agent);
    let down = async {
        // Output floods come in 256 KiB frames: move them in 64 KiB writes, not tokio::io::copy's 8 KiB.
        let mut agent_rd = tokio::io::BufReader::with_capacity(64 * 1024, agent_rd);
        let _ = tokio::io::copy_buf(&mut agent_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_touch: Option<Instant> = None;
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if agent_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if access.role == super::access::Role::Learner
                && last_touch.is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                last_touch = Some(Instant::now());
                let (state, ws, seat) = (state.clone(), access.workshop_id.clone(), access.seat);
                tokio::spawn(async move { state.touch_activity(&ws, seat).await });
            }
        }
        let _ = agent_wr.shutdown().await;
    };
    tokio::join!(down, up);
}
