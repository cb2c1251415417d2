//! Streams a seat volume as a tar archive while it is being read: a dedicated thread walks the
//! volume and hands chunks to the HTTP body through a bounded channel, so memory stays flat
//! whatever the volume's size. The volume is the learner's and hostile (issue 16): a directory
//! is walked by file descriptor ([`walk`]), a microVM's ext4 image is parsed in user space
//! ([`clarateach_isolation::microvm::volume`]), and the thread first takes the seat's own uid
//! ([`creds`]) so even a walker bug cannot read a root-only host file. [`archive`] caps each
//! seat (default 1 GiB) and ends its entries with `EXPORT-REPORT.json`, also when the walk
//! fails, so a fragment always ends cleanly and the other seats of a class export are unharmed.

pub mod archive;
pub mod creds;
pub mod walk;

use std::io::Write;

use bytes::Bytes;
use clarateach_isolation::export::ExportSource;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Archive flavours the export route offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A complete gzip-compressed tar (the default).
    TarGz,
    /// An uncompressed tar without the end-of-archive blocks, for concatenating several seats
    /// into one archive.
    TarFragment,
}

impl ExportFormat {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("tar.gz") | Some("tgz") => Some(Self::TarGz),
            Some("tar-fragment") => Some(Self::TarFragment),
            _ => None,
        }
    }
}

/// A `Write` that forwards each chunk to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "export reader went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// True when `prefix` is safe as the top directory of archive entries (`seat-01`).
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && prefix != "."
        && prefix != ".."
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub source: ExportSource,
    /// Host uid/gid the walk runs as (the seat's), when the backend names one.
    pub owner: Option<(u32, u32)>,
    /// Top directory of the entries (`seat-01`), or the archive root when `None`.
    pub prefix: Option<String>,
    pub format: ExportFormat,
    /// Per-seat cap on archived bytes (see [`archive::DEFAULT_CAP_BYTES`]).
    pub cap_bytes: u64,
}

/// Walks `source` into `sink` as `owner` (or, for an image with no owner, as `nobody`). The
/// image file is opened before the switch: it is the agent's file, the bytes inside are not.
fn walk_source<W: Write>(
    source: &ExportSource,
    owner: Option<(u32, u32)>,
    sink: &mut archive::TarSink<W>,
) -> std::io::Result<()> {
    use clarateach_isolation::export::VolumeSink;
    let image = match source {
        ExportSource::Ext4Image(path) => match std::fs::File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                sink.skip(
                    b"",
                    "volume",
                    &format!("the volume image cannot be opened: {e}"),
                );
                return Ok(());
            }
        },
        ExportSource::Dir(_) => None,
    };
    let run_as = match (owner, &image) {
        (Some(ids), _) => Some(ids),
        (None, Some(_)) => Some(creds::NOBODY),
        (None, None) => None,
    };
    if let Some((uid, gid)) = run_as.filter(|_| creds::can_switch()) {
        if let Err(e) = creds::become_owner(uid, gid) {
            tracing::warn!(error = %e, uid, "export: cannot take the seat's uid");
            sink.skip(
                b"",
                "volume",
                "not exported: the seat's user could not be taken on",
            );
            return Ok(());
        }
    }
    match (source, image) {
        (_, Some(image)) => clarateach_isolation::microvm::volume::walk(image, sink),
        (ExportSource::Dir(dir), None) => walk::walk(dir, sink),
        (ExportSource::Ext4Image(_), None) => Ok(()),
    }
}

/// Runs one export on the calling thread (which may lose its credentials: never a pooled one).
fn run<W: Write>(job: &ExportJob, out: W) -> std::io::Result<W> {
    let prefix = job.prefix.as_deref().unwrap_or(".");
    let mut sink = archive::TarSink::new(out, prefix, job.cap_bytes);
    walk_source(&job.source, job.owner, &mut sink)?;
    sink.finish(job.format == ExportFormat::TarGz)
}

/// Starts archiving `job` on a thread of its own and returns the stream of archive bytes. The
/// stream ends with an error only when the archive could not be produced at all.
pub fn stream(
    job: ExportJob,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel(16);
    let writer = ChannelWriter { tx: tx.clone() };
    let spawned = std::thread::Builder::new()
        .name("export".into())
        .spawn(move || {
            let result = match job.format {
                ExportFormat::TarGz => {
                    let gz = flate2::write::GzEncoder::new(
                        std::io::BufWriter::with_capacity(64 << 10, writer),
                        flate2::Compression::fast(),
                    );
                    run(&job, gz)
                        .and_then(|gz| gz.finish())
                        .and_then(|mut w| w.flush())
                }
                ExportFormat::TarFragment => {
                    run(&job, std::io::BufWriter::with_capacity(64 << 10, writer))
                        .and_then(|mut w| w.flush())
                }
            };
            if let Err(e) = result {
                tracing::warn!(source = ?job.source, error = %e, "export failed");
                let _ = tx.blocking_send(Err(e));
            }
        });
    let failed = spawned.err().map(|e| {
        tracing::warn!(error = %e, "export: cannot start the export thread");
        Err(e)
    });
    futures::stream::iter(failed).chain(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests;
