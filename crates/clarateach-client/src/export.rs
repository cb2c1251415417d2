//! A workshop export being downloaded: the archive arrives in chunks and is written as it comes,
//! so an export of many seats never sits whole in memory.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{from_reqwest, ClientError};

/// The body of `GET /api/workshops/{id}/export` (application/gzip), not yet read.
#[derive(Debug)]
pub struct Export {
    url: String,
    response: reqwest::Response,
}

impl Export {
    pub(crate) fn new(url: String, response: reqwest::Response) -> Self {
        Self { url, response }
    }

    /// Size announced by the server, when it knows it up front.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// Content type the server announced (`application/gzip`).
    pub fn content_type(&self) -> Option<&str> {
        self.response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The next chunk of the archive; `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.response
            .chunk()
            .await
            .map_err(|e| from_reqwest(&self.url, e))
    }

    /// Copies the whole archive into `out`, calling `progress` with the bytes written so far
    /// after every chunk; returns the total. Flushes `out` at the end.
    pub async fn write_to<W>(
        mut self,
        out: &mut W,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let mut total = 0u64;
        while let Some(chunk) = self.chunk().await? {
            out.write_all(&chunk).await.map_err(ClientError::Io)?;
            total += chunk.len() as u64;
            progress(total);
        }
        out.flush().await.map_err(ClientError::Io)?;
        Ok(total)
    }
}
