//! The data-path clients: how the control plane reaches an agent's data path. Plain `http://`
//! goes through one pooled client; an upgrade gets a connection of its own.
//!
//! An `https://` data URL is dialed with rustls trusting only the control plane's data-path CA
//! and verifying the SAN of the agent the seat is routed to (`data_ca::agent_server_name`), so
//! a certificate from another CA or issued to another agent is refused before the data token is
//! sent. Plain requests to such an agent share a pooled client of their own (one per agent id,
//! in [`TlsClients`], which `AppState` holds); upgrades get a connection each, as over plain
//! HTTP. Nothing here knows `AppState`: the callers (proxy, preview, export) pass what it holds.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::Uri;
use clarateach_tls::data_ca;
use clarateach_tls::ClientConfig;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsConnector;

use crate::scheduler::SeatRoute;

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
