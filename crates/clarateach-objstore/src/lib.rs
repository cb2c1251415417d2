//! Seat volumes in S3-compatible object storage (issue 13): which bucket and prefix
//! (`--object-store s3://bucket[/prefix]`, endpoint and credentials from the usual `AWS_*`
//! environment), and where each seat's files live in it ([`keys`]). The agent syncs a running
//! seat's files there and restores them into a seat recreated on another host; the control
//! plane reads them for an export when the seat's host is gone. Without `--object-store`
//! nothing here is used.

#![forbid(unsafe_code)]

pub mod keys;

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStore;

pub use keys::SeatFiles;
pub use object_store;

/// The environment variable `--object-store` falls back to.
pub const OBJECT_STORE_ENV: &str = "CLARATEACH_OBJECT_STORE";

/// Why the object store setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("the object store must be written s3://BUCKET[/PREFIX], not {0:?}")]
    Url(String),
    #[error("cannot set up the S3 client")]
    Client(#[source] object_store::Error),
}

/// Where seat volumes go: a bucket and a key prefix (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreUrl {
    pub bucket: String,
    pub prefix: String,
}

impl std::str::FromStr for ObjectStoreUrl {
    type Err = ObjectStoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ObjectStoreError::Url(s.to_string());
        let rest = s.trim().strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        let prefix = prefix.trim_matches('/');
        // The prefix is the operator's, but it still becomes key parts: no empty, `.` or `..`.
        let prefix_ok = prefix.is_empty()
            || prefix
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && Path::parse(p).is_ok());
        if !bucket_ok || !prefix_ok {
            return Err(bad());
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectStoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            p => write!(f, "s3://{}/{p}", self.bucket),
        }
    }
}

/// A connected object store and the prefix seat volumes live under. The client holds the
/// credentials; its `Debug` shows only the URL.
#[derive(Clone)]
pub struct VolumeStore {
    pub url: ObjectStoreUrl,
    pub store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for VolumeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStore")
            .field("url", &self.url.to_string())
            .finish_non_exhaustive()
    }
}

impl VolumeStore {
    /// An S3 client for `url` configured from the environment: `AWS_ENDPOINT_URL` (or
    /// `AWS_ENDPOINT`), `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, and `AWS_ALLOW_HTTP=true` for a plain-HTTP test server. Path-style
    /// requests, so any S3-compatible server works without DNS for bucket names.
    pub fn from_env(url: ObjectStoreUrl) -> Result<Self, ObjectStoreError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            b = b.with_endpoint(endpoint);
        }
        if let Ok(region) = std::env::var("AWS_REGION") {
            b = b.with_region(region);
        }
        let allow_http = std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        let store = b
            .with_allow_http(allow_http)
            .with_virtual_hosted_style_request(false)
            .build()
            .map_err(ObjectStoreError::Client)?;
        Ok(Self {
            url,
            store: Arc::new(store),
        })
    }

    /// A store over any [`ObjectStore`] (tests use the in-memory one).
    pub fn new(url: ObjectStoreUrl, store: Arc<dyn ObjectStore>) -> Self {
        Self { url, store }
    }

    /// Where one seat's files are.
    pub fn seat(&self, workshop_id: &str, seat: u32) -> SeatFiles {
        SeatFiles::new(&self.url.prefix, workshop_id, seat)
    }

    /// The prefix of every seat of a workshop (deleted with the workshop).
    pub fn workshop_prefix(&self, workshop_id: &str) -> Path {
        keys::workshop_prefix(&self.url.prefix, workshop_id)
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<usize, object_store::Error> {
        use futures::TryStreamExt;
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        for m in &metas {
            match self.store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(metas.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_refuse_what_is_not_a_bucket() {
        let u: ObjectStoreUrl = "s3://seats".parse().expect("bucket");
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("seats", ""));
        let u: ObjectStoreUrl = "s3://my-bucket/ct/prod/".parse().expect("prefix");
        assert_eq!(u.prefix, "ct/prod");
        assert_eq!(u.to_string(), "s3://my-bucket/ct/prod");
        for bad in [
            "seats",
            "http://x/y",
            "s3://",
            "s3://UPPER",
            "s3://ok-bucket/../x",
            "s3://ok-bucket/a//b",
            "s3://b",
        ] {
            assert!(bad.parse::<ObjectStoreUrl>().is_err(), "{bad}");
        }
    }
}
