//! The egress proxy of an `allow` seat: an HTTP CONNECT proxy (and a plain-HTTP forward proxy for
//! `http://` URLs) listening on the seat's own gateway address, the only thing nft lets that
//! seat reach. The allow-list is enforced here, on the host: the proxy takes the host name from
//! the request, checks it against the list (exact, or `*.suffix` for subdomains) and the port
//! against 80/443, resolves it itself, refuses when any resolved address is in a blocked range or
//! is this host's own (so DNS rebinding to 127.0.0.1 fails), and connects to the address it
//! checked, never re-resolving. One listener per seat, so the seat is known by the address it
//! connected to and cannot borrow another seat's list.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::addr::is_blocked;
use super::NetError;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its request head, and the proxy to connect upstream.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections per seat; more wait in the accept queue.
const MAX_CONNS: usize = 256;

/// How the proxy turns a host name into addresses.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The agent's system resolver (`getaddrinfo`).
    #[default]
    System,
    /// A fixed map (`--egress-hosts FILE`, lines `NAME IP`): air-gapped sites and tests. A name
    /// not in the map does not resolve.
    Static(Arc<HashMap<String, Vec<IpAddr>>>),
}

impl Resolver {
    /// Reads a hosts file of `NAME IP` lines (`#` comments, blank lines ignored).
    pub fn from_file(path: &Path) -> Result<Self, NetError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetError::ReadHosts {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|line| NetError::BadHostsLine {
            path: path.to_path_buf(),
            line,
        })
    }

    /// Parses hosts text; the error is the 1-based number of the first bad line.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(ip), None) = (words.next(), words.next(), words.next()) else {
                return Err(i + 1);
            };
            let ip: IpAddr = ip.parse().map_err(|_| i + 1)?;
            map.entry(normalise(name)).or_default().push(ip);
        }
        Ok(Self::Static(Arc::new(map)))
    }

    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Self::System => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
            Self::Static(map) => map
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host")),
        }
    }
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is on the list: an exact name, or a subdomain of a `*.suffix` entry.
pub fn host_allowed(allow: &[String], host: &str) -> bool {
    let host = normalise(host);
    allow.iter().any(|entry| {
        let entry = normalise(entry);
        match entry.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == entry,
        }
    })
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `CONNECT host:port`: a tunnel.
    Tunnel { host: String, port: u16 },
    /// `GET http://host[:port]/path`: forwarded with the head rewritten to origin form.
    Forward {
        host: String,
        port: u16,
        head: Vec<u8>,
    },
}

/// Why a request is refused; the status line and a sentence for the learner.
#[derive(Debug, PartialEq, Eq)]
struct Refusal(&'static str, String);

/// Splits `host[:port]`; bracketed IPv6 literals are kept as the host (they never match a name).
fn split_authority(auth: &str, default_port: u16) -> Option<(String, u16)> {
    if auth.contains('@') || auth.is_empty() {
        return None;
    }
    if let Some(rest) = auth.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match auth.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((auth.to_string(), default_port)),
    }
}

/// Parses a request head (everything up to and including the blank line).
fn parse_head(head: &[u8]) -> Result<Target, Refusal> {
    let bad = || Refusal("400 Bad Request", "not an HTTP proxy request".into());
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or_else(bad)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(target, 443).ok_or_else(bad)?;
        return Ok(Target::Tunnel {
            host: normalise(&host),
            port,
        });
    }
    let rest = target
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &target[7..])
        .ok_or_else(|| {
            Refusal(
                "400 Bad Request",
                "only CONNECT and absolute http:// URLs go through this proxy".into(),
            )
        })?;
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (host, port) = split_authority(auth, 80).ok_or_else(bad)?;
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        let drop = [
            "host",
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !drop {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // The Host header names what the URL named: no other virtual host behind an allowed address.
    out.push_str(&format!("Host: {auth}\r\nConnection: close\r\n\r\n"));
    Ok(Target::Forward {
        host: normalise(&host),
        port,
        head: out.into_bytes(),
    })
}

/// Applies the policy to a host and port: the list, the ports, then every resolved address.
async fn check(
    allow: &[String],
    resolver: &Resolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Refusal> {
    let forbidden = |why: String| Refusal("403 Forbidden", why);
    if !host_allowed(allow, host) {
        return Err(forbidden(format!(
            "{host} is not on this workshop's allow-list"
        )));
    }
    if port != 80 && port != 443 {
        return Err(forbidden(format!(
            "port {port} is not allowed (80 and 443 only)"
        )));
    }
    let addrs = resolver
        .resolve(host, port)
        .await
        .map_err(|_| Refusal("502 Bad Gateway", format!("{host} does not resolve")))?;
    if addrs.is_empty() {
        return Err(Refusal(
            "502 Bad Gateway",
            format!("{host} does not resolve"),
        ));
    }
    if let Some(a) = addrs.iter().find(|a| is_blocked(a.ip())) {
        tracing::warn!(host, addr = %a.ip(), "egress refused: the name resolves to a blocked address");
        return Err(forbidden(format!("{host} resolves to a blocked address")));
    }
    Ok(addrs)
}

async fn connect(addrs: &[SocketAddr]) -> Option<TcpStream> {
    for addr in addrs {
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            return Some(s);
        }
    }
    None
}

/// Reads up to the end of the head; returns (head, bytes already read past it).
async fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

async fn refuse(client: &mut TcpStream, r: Refusal) {
    let body = format!("{}\n", r.1);
    let resp = format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.0,
        body.len()
    );
    let _ = client.write_all(resp.as_bytes()).await;
    let _ = client.shutdown().await;
}

async fn handle(mut client: TcpStream, allow: Arc<Vec<String>>, resolver: Resolver) {
    let Ok(Some((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await
    else {
        return;
    };
    let target = match parse_head(&head) {
        Ok(t) => t,
        Err(r) => return refuse(&mut client, r).await,
    };
    let (host, port) = match &target {
        Target::Tunnel { host, port } | Target::Forward { host, port, .. } => (host.clone(), *port),
    };
    let addrs = match check(&allow, &resolver, &host, port).await {
        Ok(a) => a,
        Err(r) => {
            tracing::info!(host, port, status = r.0, "egress refused");
            return refuse(&mut client, r).await;
        }
    };
    let Some(mut upstream) = connect(&addrs).await else {
        let why = format!("cannot connect to {host}:{port}");
        return refuse(&mut client, Refusal("502 Bad Gateway", why)).await;
    };
    let sent = match &target {
        Target::Tunnel { .. } => client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok(),
        Target::Forward { head, .. } => upstream.write_all(head).await.is_ok(),
    };
    if !sent || upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Serves one seat's proxy until the returned task is aborted; aborting it also ends every open
/// connection (they live in its `JoinSet`).
pub fn spawn(
    listener: TcpListener,
    allow: Vec<String>,
    resolver: Resolver,
) -> tokio::task::JoinHandle<()> {
    let allow = Arc::new(allow);
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            if conns.len() >= MAX_CONNS {
                let _ = conns.join_next().await;
                continue;
            }
            match listener.accept().await {
                Ok((client, _)) => {
                    let _ = client.set_nodelay(true);
                    conns.spawn(handle(client, allow.clone(), resolver.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_list_matches_exact_names_and_subdomains() {
        let allow = list(&["api.example.test", "*.github.test"]);
        assert!(host_allowed(&allow, "api.example.test"));
        assert!(host_allowed(&allow, "API.Example.Test."));
        assert!(host_allowed(&allow, "raw.github.test"));
        assert!(host_allowed(&allow, "a.b.github.test"));
        for no in [
            "github.test",
            "evilgithub.test",
            "example.test",
            "api.example.test.evil",
            "xapi.example.test",
            "203.0.113.10",
            "",
        ] {
            assert!(!host_allowed(&allow, no), "{no}");
        }
    }

    #[test]
    fn heads_parse_into_tunnels_and_forwards() {
        assert_eq!(
            parse_head(b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Target::Tunnel {
                host: "api.example.test".into(),
                port: 443
            })
        );
        let Ok(Target::Forward { host, port, head }) = parse_head(
            b"GET http://Api.Example.Test/a?b HTTP/1.1\r\nHost: evil.example.test\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        ) else {
            panic!("not a forward");
        };
        assert_eq!((host.as_str(), port), ("api.example.test", 80));
        assert_eq!(
            String::from_utf8(head).expect("utf8"),
            "GET /a?b HTTP/1.1\r\nAccept: */*\r\nHost: Api.Example.Test\r\nConnection: close\r\n\r\n"
        );
        let Ok(Target::Forward { head, port, .. }) =
            parse_head(b"GET http://h.test:8080?q HTTP/1.0\r\n\r\n")
        else {
            panic!("not a forward");
        };
        assert_eq!(port, 8080);
        assert!(String::from_utf8(head)
            .expect("utf8")
            .starts_with("GET /?q HTTP/1.0\r\n"));
        for bad in [
            &b"GET /local HTTP/1.1\r\n\r\n"[..],
            b"CONNECT user@h.test:443 HTTP/1.1\r\n\r\n",
            b"CONNECT h.test:x HTTP/1.1\r\n\r\n",
            b"GET https://h.test/ HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
            b"GET http://h.test/ SPDY/3\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_head(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n"),
            Ok(Target::Tunnel {
                host: "::1".into(),
                port: 443
            })
        );
    }

    #[tokio::test]
    async fn checks_names_ports_and_every_resolved_address() {
        let r = Resolver::parse(
            "# test map\napi.example.test 203.0.113.10\nrebind.example.test 203.0.113.10\nrebind.example.test 127.0.0.1\nmeta.example.test 169.254.169.254\n",
        )
        .expect("parse");
        let allow = list(&[
            "api.example.test",
            "rebind.example.test",
            "meta.example.test",
            "gone.example.test",
        ]);
        assert_eq!(
            check(&allow, &r, "api.example.test", 443)
                .await
                .expect("allowed"),
            vec!["203.0.113.10:443".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            check(&allow, &r, "api.example.test", 22)
                .await
                .map_err(|e| e.0),
            Err("403 Forbidden")
        );
        assert_eq!(
            check(&allow, &r, "evil.example.test", 443)
                .await
                .map_err(|e| e.0),
            Err("403 Forbidden")
        );
        assert_eq!(
            check(&allow, &r, "rebind.example.test", 443)
                .await
                .map_err(|e| e.0),
            Err("403 Forbidden")
        );
        assert_eq!(
            check(&allow, &r, "meta.example.test", 80)
                .await
                .map_err(|e| e.0),
            Err("403 Forbidden")
        );
        assert_eq!(
            check(&allow, &r, "gone.example.test", 80)
                .await
                .map_err(|e| e.0),
            Err("502 Bad Gateway")
        );
        assert_eq!(
            Resolver::parse("a.test 1.2.3.4\nbad line here\n").err(),
            Some(2)
        );
        assert_eq!(Resolver::parse("a.test notanip\n").err(), Some(1));
    }
}
