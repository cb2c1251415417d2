//! Streams a seat volume as a tar archive while it is being written: a blocking thread walks the
//! directory with the `tar` crate and hands chunks to the HTTP body through a bounded channel,
//! so memory stays flat whatever the volume's size. Symlinks are stored as links and never
//! followed (a learner's `ln -s /etc/shadow` must not leak host files).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
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

/// A `Write` that forwards each chunk to the response body; drops writes once `closed`.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    closed: Arc<AtomicBool>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
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

fn write_archive<W: Write>(out: W, dir: &Path, prefix: &Path) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    if dir.is_dir() {
        builder.append_dir_all(prefix, dir)?;
    }
    builder.into_inner()
}

/// Starts archiving `dir` (entries under `prefix/`, or at the root when `None`) and returns the
/// stream of archive bytes.
pub fn stream(
    dir: PathBuf,
    prefix: Option<String>,
    format: ExportFormat,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel(16);
    let closed = Arc::new(AtomicBool::new(false));
    let writer = ChannelWriter {
        tx: tx.clone(),
        closed: closed.clone(),
    };
    let prefix = PathBuf::from(prefix.unwrap_or_else(|| ".".into()));
    tokio::task::spawn_blocking(move || {
        let result = match format {
            ExportFormat::TarGz => {
                let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
                write_archive(gz, &dir, &prefix)
                    .and_then(|gz| gz.finish())
                    .map(drop)
            }
            ExportFormat::TarFragment => {
                // Everything but the two zero blocks `into_inner` appends at the end.
                let mut builder = tar::Builder::new(writer);
                builder.follow_symlinks(false);
                let r = if dir.is_dir() {
                    builder.append_dir_all(&prefix, &dir)
                } else {
                    Ok(())
                };
                closed.store(true, Ordering::Relaxed);
                r.and_then(|()| builder.into_inner().map(drop))
            }
        };
        if let Err(e) = result {
            tracing::warn!(dir = %dir.display(), error = %e, "export failed");
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn collect(s: impl futures::Stream<Item = std::io::Result<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        futures::pin_mut!(s);
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn exports_files_without_following_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/main.py"), "print('hi')\n").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("leak")).expect("symlink");

        let gz = collect(stream(
            dir.path().into(),
            Some("seat-01".into()),
            ExportFormat::TarGz,
        ))
        .await;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().to_string();
            if path == "seat-01/src/main.py" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).expect("read");
                assert_eq!(s, "print('hi')\n");
            }
            if path == "seat-01/leak" {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
            }
            seen.push(path);
        }
        assert!(
            seen.contains(&"seat-01/src/main.py".to_string()),
            "{seen:?}"
        );
        assert!(seen.contains(&"seat-01/leak".to_string()), "{seen:?}");

        let frag = collect(stream(
            dir.path().into(),
            Some("seat-02".into()),
            ExportFormat::TarFragment,
        ))
        .await;
        assert_eq!(frag.len() % 512, 0);
        assert!(
            frag[frag.len() - 512..].iter().any(|b| *b != 0),
            "no end-of-archive blocks in a fragment"
        );
    }

    #[test]
    fn prefixes() {
        assert!(valid_prefix("seat-01"));
        assert!(!valid_prefix("../x"));
        assert!(!valid_prefix(".."));
        assert!(!valid_prefix(""));
    }
}
