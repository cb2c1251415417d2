//! Just enough netlink to make a seat's network without forking `ip` or `nft`: a blocking
//! request/acknowledge socket and a message builder, used for rtnetlink (links, addresses,
//! routes: `link`) and for nftables set-element transactions (`nft`). Every request asks for an
//! acknowledgement and is matched to it by sequence number, so a stale answer of an earlier,
//! failed request is never taken for the answer of a later one.
//!
//! Only fixed, well-known message layouts of `linux/netlink.h`, `linux/rtnetlink.h`,
//! `linux/if_link.h`, `linux/veth.h` and `linux/netfilter/nf_tables.h` are written here; nothing
//! is read back from the kernel but acknowledgements and the answer to a link query.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const NETLINK_ROUTE: libc::c_int = 0;
pub const NETLINK_NETFILTER: libc::c_int = 12;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

/// One netlink message under construction: header, fixed part, attributes.
pub struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    /// A request of `ty` with `flags` (NLM_F_REQUEST and NLM_F_ACK are added).
    pub fn new(ty: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    /// A message that asks for no acknowledgement (nftables batch begin/end markers).
    pub fn unacked(ty: u16) -> Self {
        let mut m = Self::new(ty, 0);
        m.buf[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        m
    }

    fn acked(&self) -> bool {
        u16::from_ne_bytes([self.buf[6], self.buf[7]]) & NLM_F_ACK != 0
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// The fixed part after the header (ifinfomsg, ifaddrmsg, rtmsg, nfgenmsg).
    pub fn fixed(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    pub fn attr(mut self, ty: u16, data: &[u8]) -> Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(self, ty: u16, s: &str) -> Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(ty, &b)
    }

    pub fn attr_u32(self, ty: u16, v: u32) -> Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    pub fn nest(mut self, ty: u16) -> Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(mut self) -> Self {
        if let Some(at) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// A netlink socket of one protocol, bound to the network namespace it was opened in.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

// The socket calls are plain libc ones (nix's socket feature is not enabled in this workspace);
// each block passes a valid fd and a buffer or struct of exactly the length it states.
#[allow(unsafe_code)]
impl Socket {
    /// Opens a socket of `proto` in the calling thread's network namespace.
    pub fn open(proto: libc::c_int) -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A kernel that never answers must not hang the agent.
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer and length of a timeval.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_nl is plain data; zeroed means "kernel picks the port id".
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd, pointer and length of a sockaddr_nl.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, seq: 0 })
    }

    /// Sends `msgs` in one datagram (an nftables batch is applied as one transaction) and waits
    /// for the acknowledgement of every acked message; the first error reported is returned.
    /// `reply` sees the payload of every non-error answer to these messages (link queries).
    pub fn request(&mut self, msgs: Vec<Msg>, mut reply: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut out = Vec::new();
        let mut waiting = std::collections::BTreeSet::new();
        for m in msgs {
            self.seq = self.seq.wrapping_add(1);
            if m.acked() {
                waiting.insert(self.seq);
            }
            out.extend_from_slice(&m.finish(self.seq));
        }
        // SAFETY: valid fd and buffer; the kernel is the destination (zeroed address, pid 0).
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                out.as_ptr().cast(),
                out.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        while !waiting.is_empty() {
            // SAFETY: valid fd and buffer of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                if len < NLMSG_HDRLEN || len > rest.len() {
                    break;
                }
                let payload = &rest[NLMSG_HDRLEN..len];
                if waiting.contains(&seq) {
                    match ty {
                        NLMSG_ERROR if payload.len() >= 4 => {
                            let code = i32::from_ne_bytes([
                                payload[0], payload[1], payload[2], payload[3],
                            ]);
                            waiting.remove(&seq);
                            if code != 0 {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                        }
                        NLMSG_DONE => {}
                        _ => reply(ty, payload),
                    }
                }
                rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_the_kernel_reads_them() {
        let m = Msg::new(16, NLM_F_CREATE)
            .fixed(&[1, 2, 3])
            .attr_str(3, "ab")
            .nest(18)
            .attr_u32(1, 7)
            .end()
            .finish(9);
        // Header: length, type, flags (+request +ack), sequence.
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 16);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x405);
        assert_eq!(u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), 9);
        // The fixed part is padded to 4, the string attribute carries its NUL.
        assert_eq!(&m[16..20], &[1, 2, 3, 0]);
        assert_eq!(&m[20..27], &[7, 0, 3, 0, b'a', b'b', 0]);
        // The nest covers its inner attribute and is flagged nested.
        let nest = &m[28..];
        assert_eq!(u16::from_ne_bytes([nest[0], nest[1]]), 12);
        assert_eq!(u16::from_ne_bytes([nest[2], nest[3]]), 18 | NLA_F_NESTED);
        assert_eq!(&nest[4..12], &[8, 0, 1, 0, 7, 0, 0, 0]);
        assert_eq!(Msg::unacked(16).finish(1)[6], 1);
    }
}
