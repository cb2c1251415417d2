//! The export of a seat whose host is gone (issue 13): its last synced files are read from
//! object storage and written into the workshop's archive under `seat-NN/`, as the agent's
//! fragment would have been. Keys are turned back into paths by the same rules as a restore
//! (plain relative components only), and the tar builder refuses anything else again.

use clarateach_objstore::object_store::ObjectStore;
use clarateach_objstore::VolumeStore;
use futures::TryStreamExt;

use super::export_sink::Sink;
use crate::scheduler::SeatRoute;

/// Where one seat's files are read from for an export.
pub(super) enum SeatSource {
    /// Its agent is connected: the volume on its host.
    Agent(SeatRoute),
    /// Its agent is gone: the bucket.
    Bucket(VolumeStore),
}

/// Why a seat's files could not be read from the bucket.
#[derive(Debug, thiserror::Error)]
pub(super) enum BucketError {
    #[error("the seat's files could not be listed")]
    List(#[source] clarateach_objstore::object_store::Error),
    #[error("a file could not be downloaded")]
    Get(#[source] clarateach_objstore::object_store::Error),
}

pub(super) enum BucketCopy {
    ClientGone,
    Failed(BucketError),
}

/// One file entry (header and padded data), without the end-of-archive blocks.
fn file_entry(path: &str, data: &[u8], mtime: i64) -> Option<Vec<u8>> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    let mut out = Vec::with_capacity(data.len() + 1536);
    let mut b = tar::Builder::new(&mut out);
    b.append_data(&mut h, path, data).ok()?;
    b.into_inner().ok()?;
    out.truncate(out.len().saturating_sub(1024));
    Some(out)
}

/// Writes the seat's synced files into the archive.
pub(super) async fn copy_seat(
    sink: &mut Sink,
    store: &VolumeStore,
    workshop_id: &str,
    seat: u32,
) -> Result<(), BucketCopy> {
    let files = store.seat(workshop_id, seat);
    let metas: Vec<_> = store
        .store
        .list(Some(files.prefix()))
        .try_collect()
        .await
        .map_err(|e| BucketCopy::Failed(BucketError::List(e)))?;
    for m in metas {
        let Some(rel) = files.relative(&m.location) else {
            tracing::warn!(key = %m.location, "export: key refused");
            continue;
        };
        let data = match store.store.get(&m.location).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        }
        .map_err(|e| BucketCopy::Failed(BucketError::Get(e)))?;
        let path = format!("seat-{seat:02}/{}", rel.join("/"));
        let Some(entry) = file_entry(&path, &data, m.last_modified.timestamp()) else {
            tracing::warn!(path, "export: entry refused by the archive");
            continue;
        };
        sink.write(&entry)
            .await
            .map_err(|()| BucketCopy::ClientGone)?;
    }
    Ok(())
}
