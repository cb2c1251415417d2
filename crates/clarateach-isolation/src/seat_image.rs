//! What both backends do before creating a seat of a seat image: build the image from its
//! built-in recipe when this host has not (issue 11's `preparing`; see
//! `clarateach_image::prepare`). The microVM backend then also makes the image's root disk.

use std::path::Path;

use clarateach_core::agent_proto::SeatKey;

use crate::BackendError;

/// Builds seat image `name` from its built-in recipe when it is not built in `images` (both
/// backends call it from `prepare`); an image neither built nor built-in is left alone, for
/// `create`/`start` to refuse with its name.
pub(crate) async fn prepare(images: &Path, key: &SeatKey, name: &str) -> Result<(), BackendError> {
    let store = clarateach_image::ImageStore::new(images);
    if !clarateach_image::prepare::needs_build(&store, name) {
        return Ok(());
    }
    let owned = name.to_string();
    let built = tokio::task::spawn_blocking(move || {
        clarateach_image::prepare::ensure_built(&store, &owned)
    })
    .await
    .map_err(|e| BackendError::Task(key.clone(), e))?
    .map_err(|e| BackendError::Image(key.clone(), name.to_string(), Box::new(e)))?;
    if let Some(b) = built {
        tracing::info!(image = name, digest = %b.info.digest, cached = b.cached,
            secs = b.elapsed.as_secs_f64(), "seat image built for a seat");
    }
    Ok(())
}
