//! A minimal HTTP/1.1 client over any byte stream: one request per connection, `Connection:
//! close`, body read to EOF. Enough for Firecracker's API socket and the daemon's `/health`,
//! without pulling an HTTP stack into the isolation crate.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Status code and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request and reads the whole response.
pub async fn request<S>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let io = async {
        stream.write_all(req.as_bytes()).await?;
        stream.flush().await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(resp) = parse_complete(&raw) {
                return Ok(resp);
            }
        }
        parse_at_eof(&raw).ok_or_else(|| bad("truncated HTTP response"))
    };
    tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| bad("HTTP request timed out"))?
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Parses a response once the head and `Content-Length` bytes of body have arrived. A response
/// without a length (or chunked) is complete only at EOF, which the caller handles.
fn parse_complete(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[head_end + 4..];
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) if body.len() >= n => Some(Response {
            status,
            body: String::from_utf8_lossy(&body[..n]).into_owned(),
        }),
        Some(_) => None,
        None if status == 204 || status == 304 => Some(Response {
            status,
            body: String::new(),
        }),
        None => None,
    }
}

/// Like `parse_complete`, but accepts a body cut by EOF (used once the peer closed).
pub(crate) fn parse_at_eof(raw: &[u8]) -> Option<Response> {
    parse_complete(raw).or_else(|| {
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..head_end]).ok()?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some(Response {
            status,
            body: String::from_utf8_lossy(&raw[head_end + 4..]).into_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(
            parse_complete(raw),
            Some(Response {
                status: 200,
                body: "ok".into()
            })
        );
        assert_eq!(
            parse_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"),
            None
        );
        assert_eq!(
            parse_complete(b"HTTP/1.1 204 No Content\r\n\r\n").map(|r| r.status),
            Some(204)
        );
        assert_eq!(
            parse_at_eof(b"HTTP/1.1 200 OK\r\n\r\nall").map(|r| r.body),
            Some("all".into())
        );
    }
}
