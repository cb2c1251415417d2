//! The gzip stream of a workshop's export archive, fed by the agents' tar fragments
//! (`export`) and by the bucket's copy of a seat whose host is gone (`export_bucket`).

use std::io::Write;

use axum::body::Bytes;
use tokio::sync::mpsc;

/// Feeds compressed bytes to the response as they come out of the encoder.
pub(super) struct Sink {
    gz: flate2::write::GzEncoder<Vec<u8>>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Sink {
    pub(super) fn new(tx: mpsc::Sender<std::io::Result<Bytes>>) -> Self {
        Self {
            gz: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
            tx,
        }
    }

    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        self.gz.write_all(data).map_err(|_| ())?;
        let out = std::mem::take(self.gz.get_mut());
        if out.is_empty() {
            return Ok(());
        }
        self.tx.send(Ok(Bytes::from(out))).await.map_err(|_| ())
    }

    pub(super) async fn finish(mut self) -> Result<(), ()> {
        self.write(&[0u8; 1024]).await?;
        let rest = self.gz.finish().map_err(|_| ())?;
        self.tx.send(Ok(Bytes::from(rest))).await.map_err(|_| ())
    }
}
