//! Name resolution for `open` seats: a UDP DNS forwarder on the seat's gateway address that
//! relays each query to the host's own resolver and the answer back. The host's resolver is
//! usually a loopback or private address (systemd-resolved's 127.0.0.53, a VPC resolver in
//! 10/8) that nft rightly keeps the seat from reaching; the forwarder is the one door to it, and
//! only for DNS. Answers are passed through unchanged: what an answer names is still subject to
//! the forward chain, so a name resolving to 127.0.0.1 or 10.x gives the seat nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// Queries in flight per seat; more are dropped (the stub resolver retries).
const MAX_INFLIGHT: usize = 64;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// The first `nameserver` of a resolv.conf, on port 53.
pub fn upstream_from(resolv_conf: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(resolv_conf).ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next())
            .flatten()
            .and_then(|ip| ip.parse().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Relays queries arriving on `socket` to `upstream` until the task is aborted.
pub fn spawn(socket: UdpSocket, upstream: SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let socket = Arc::new(socket);
        let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let mut buf = vec![0u8; 4096];
        loop {
            while tasks.try_join_next().is_some() {}
            let Ok((n, client)) = socket.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = inflight.clone().try_acquire_owned() else {
                continue;
            };
            let query = buf[..n].to_vec();
            let socket = socket.clone();
            tasks.spawn(async move {
                let _permit = permit;
                if let Some(answer) = ask(&query, upstream).await {
                    let _ = socket.send_to(&answer, client).await;
                }
            });
        }
    })
}

async fn ask(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_a_query_and_its_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("resolv.conf");
        std::fs::write(
            &conf,
            "# x\nsearch a\nnameserver 127.0.0.1\nnameserver 9.9.9.9\n",
        )
        .expect("write");
        assert_eq!(
            upstream_from(&conf),
            Some("127.0.0.1:53".parse().expect("addr"))
        );

        // A fake upstream that answers every query with its reverse.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let up_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = upstream.recv_from(&mut b).await {
                let mut r = b[..n].to_vec();
                r.reverse();
                let _ = upstream.send_to(&r, from).await;
            }
        });
        let fwd = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let fwd_addr = fwd.local_addr().expect("addr");
        let task = spawn(fwd, up_addr);
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        client.send_to(b"abc", fwd_addr).await.expect("send");
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut b))
            .await
            .expect("answer in time")
            .expect("recv");
        assert_eq!(&b[..n], b"cba");
        task.abort();
    }
}
