//! TLS for every ClaraTeach link that leaves the host (issue 9): the control plane's HTTPS/WSS
//! listener (`serve --tls-cert/--tls-key`), the agent's verified `wss://` dial to it (system
//! roots or `--ca FILE`), and the rule that plain `http://`/`ws://` is for loopback only.
//!
//! One home for it, because the control plane and the agent need the same pieces: PEM loading,
//! rustls configs on the one crypto provider the tree builds (ring), and a listener that runs
//! handshakes off the accept loop so a client that never finishes its handshake holds only its
//! own task, never the next learner's connection.

#![forbid(unsafe_code)]

pub mod data_ca;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub use rustls::{ClientConfig, ServerConfig};

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS material could not be loaded or a config built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificates in {0}")]
    ReadCerts(PathBuf, #[source] rustls_pki_types::pem::Error),
    #[error("{0} holds no certificate")]
    NoCerts(PathBuf),
    #[error("cannot read the private key in {0}")]
    ReadKey(PathBuf, #[source] rustls_pki_types::pem::Error),
    #[error("a CA certificate in {0} is not usable")]
    BadCa(PathBuf, #[source] rustls::Error),
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::ReadCerts(path.to_path_buf(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::ReadCerts(path.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts(path.to_path_buf()));
    }
    Ok(certs)
}

/// The server config for `--tls-cert` (PEM chain) and `--tls-key` (PEM private key), speaking
/// HTTP/1.1 (WebSocket upgrades need it).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::ReadKey(key.to_path_buf(), e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client config an agent dials the control plane with: it trusts only the certificates
/// in `ca` when given (a private CA), else the Mozilla root set (webpki-roots).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::BadCa(path.to_path_buf(), e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether `url`'s host is a loopback address or `localhost` (where plain HTTP is allowed).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` is encrypted (`https://` or `wss://`).
pub fn is_tls_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("wss://")
}

/// A TLS listener for `axum::serve`: one task accepts TCP connections and starts a handshake
/// task for each (bounded by [`HANDSHAKE_TIMEOUT`]); finished handshakes queue for `accept`.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on an already bound `listener`. Accepted sockets get
    /// `TCP_NODELAY` (keystroke echo frames are tiny).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(1024);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local_addr,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor task only ends when aborted (dropped with us): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_tls_urls() {
        for url in [
            "http://127.0.0.1:8080",
            "ws://localhost/x",
            "http://[::1]:9/a",
            "http://127.3.4.5",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:8080",
            "ws://cp.example.org",
            "http://[2001:db8::1]:80",
            "http://127.0.0.1.example.org/",
            "http://localhost@evil.example/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
        assert!(is_tls_url("https://x") && is_tls_url("WSS://x") && !is_tls_url("http://x"));
    }

    #[test]
    fn configs_from_pem_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        server_config(&c, &k).expect("server config");
        client_config(Some(&c)).expect("client config with a CA");
        client_config(None).expect("client config with system roots");
        assert!(matches!(server_config(&k, &k), Err(TlsError::NoCerts(_))));
        assert!(matches!(
            client_config(Some(&dir.path().join("missing.pem"))),
            Err(TlsError::ReadCerts(..))
        ));
    }
}
