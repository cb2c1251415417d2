//! The control plane's listening socket, with an accept backlog sized for a class.
//!
//! `tokio::net::TcpListener::bind` asks for a backlog of 128. When a class of 200 learners opens
//! the join page at the same instant the queue overflows before the server accepts, and every
//! dropped SYN costs its learner a 1 s retransmit (seen as a 1 s p99 in `bench join`).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use crate::ServerError;

/// Connections the kernel may queue before they are accepted; it caps this at
/// `net.core.somaxconn` (4096 by default on current kernels).
const BACKLOG: u32 = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_and_accepts() {
        let l = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = l.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_server, peer) = l.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().expect("local"));
    }
}
