//! The sync and restore against an in-memory object store and a plain directory (the agent-level
//! test with a real seat and a real S3 server is tests/volume_sync.rs).

use std::sync::Arc;
use std::time::Duration;

use clarateach_objstore::object_store::memory::InMemory;
use clarateach_objstore::object_store::{ObjectStore, PutPayload};
use clarateach_objstore::{ObjectStoreUrl, VolumeStore};
use futures::TryStreamExt;

use super::*;

fn store() -> (VolumeStore, Arc<InMemory>) {
    let mem = Arc::new(InMemory::new());
    let url: ObjectStoreUrl = "s3://test-bucket/pfx".parse().expect("url");
    (VolumeStore::new(url, mem.clone()), mem)
}

fn key() -> SeatKey {
    SeatKey {
        workshop_id: "ws-abc123".into(),
        seat: 3,
    }
}

async fn keys(mem: &InMemory) -> Vec<String> {
    let mut v: Vec<String> = mem
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    v.sort();
    v
}

fn fast() -> SyncSettings {
    SyncSettings {
        interval: Duration::from_millis(50),
        ..SyncSettings::default()
    }
}

async fn wait_for(mem: &InMemory, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = keys(mem).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "keys {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn edits_reach_the_bucket_deletes_follow_and_links_never_leave() {
    let dir = tempfile::tempdir().expect("tmp");
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(vol.join("src")).expect("vol");
    std::fs::write(vol.join("src/main.py"), "print(1)").expect("write");
    std::fs::write(dir.path().join("host-secret"), "host").expect("secret");
    std::os::unix::fs::symlink(dir.path().join("host-secret"), vol.join("x")).expect("link");
    let (vs, mem) = store();
    let sync = VolumeSync::new(vs, fast());
    sync.start(&key(), vol.clone(), None);
    let main = "pfx/workshops/ws-abc123/seats/3/files/src/main.py";
    wait_for(&mem, &[main]).await;
    std::fs::write(vol.join("notes.txt"), "n").expect("write");
    std::fs::remove_file(vol.join("src/main.py")).expect("rm");
    wait_for(&mem, &["pfx/workshops/ws-abc123/seats/3/files/notes.txt"]).await;
    // Idle: no request at all over several passes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sync.request_counts();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sync.request_counts().puts,
        before.puts,
        "idle seat uploaded"
    );
    // The last edit before a stop gets out with the final pass.
    std::fs::write(vol.join("notes.txt"), "last words").expect("write");
    assert!(
        sync.finish(&key(), Duration::from_secs(5)).await,
        "the last pass reports everything uploaded"
    );
    assert!(!sync.is_syncing(&key()));
    let got = mem
        .get(&"pfx/workshops/ws-abc123/seats/3/files/notes.txt".into())
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&got[..], b"last words");
    assert!(manifest_path(&vol).is_file());
}

#[tokio::test]
async fn a_fresh_volume_is_restored_and_hostile_keys_write_nothing_outside() {
    let (vs, mem) = store();
    let seat = vs.seat("ws-abc123", 3);
    for (rel, data) in [("a.txt", "A"), ("d/e/b.txt", "B")] {
        mem.put(
            &seat.key(rel.as_bytes()).expect("key"),
            PutPayload::from(data.as_bytes().to_vec()),
        )
        .await
        .expect("put");
    }
    // Keys written by someone else into the seat's prefix.
    for raw in [
        "pfx/workshops/ws-abc123/seats/3/files/%2E%2E/escape",
        "pfx/workshops/ws-abc123/seats/3/files/link/through",
    ] {
        let p = clarateach_objstore::object_store::path::Path::parse(raw).expect("parse");
        mem.put(&p, PutPayload::from_static(b"x"))
            .await
            .expect("put");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).expect("vol");
    let sync = VolumeSync::new(vs, fast());
    let r = sync.restore(&key(), &vol, None).await.expect("restore");
    assert_eq!(std::fs::read_to_string(vol.join("a.txt")).expect("a"), "A");
    assert_eq!(
        std::fs::read_to_string(vol.join("d/e/b.txt")).expect("b"),
        "B"
    );
    assert!(!dir.path().join("escape").exists());
    // `%2E%2E` decodes to `..`: refused, not written anywhere.
    assert!(r.refused >= 1, "{r:?}");
    assert_eq!(r.files, 3, "a, b and link/through (a plain dir here)");
    // A volume with files is left alone.
    let again = sync.restore(&key(), &vol, None).await.expect("again");
    assert_eq!(again, Restored::default());
    // The restored manifest means the first pass sends nothing back.
    let before = sync.request_counts().puts;
    sync.start(&key(), vol.clone(), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sync.finish(&key(), Duration::from_secs(5)).await;
    assert_eq!(
        sync.request_counts().puts,
        before,
        "restored files uploaded again"
    );
}

#[tokio::test]
async fn a_volume_older_than_the_bucket_is_stale() {
    let dir = tempfile::tempdir().expect("tmp");
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).expect("vol");
    std::fs::write(vol.join("a.txt"), "mine").expect("write");
    let (vs, mem) = store();
    let sync = VolumeSync::new(vs.clone(), fast());
    // Never synced here: not stale, whatever the bucket holds.
    assert!(!sync.local_is_stale(&key(), &vol).await);
    sync.start(&key(), vol.clone(), None);
    wait_for(&mem, &["pfx/workshops/ws-abc123/seats/3/files/a.txt"]).await;
    sync.finish(&key(), Duration::from_secs(5)).await;
    // Synced by this agent last: current.
    assert!(!sync.local_is_stale(&key(), &vol).await);
    // The seat ran elsewhere since (an object newer than this agent's last save): stale.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(manifest_path(&vol))
        .and_then(|f| f.set_modified(old))
        .expect("age the manifest");
    mem.put(
        &vs.seat("ws-abc123", 3).key(b"b.txt").expect("key"),
        PutPayload::from_static(b"theirs"),
    )
    .await
    .expect("put");
    assert!(sync.local_is_stale(&key(), &vol).await);
}

/// An object store whose uploads fail (a bucket outage), everything else as in memory.
#[derive(Debug)]
struct FailingPuts(InMemory);

impl std::fmt::Display for FailingPuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailingPuts")
    }
}

mod failing {
    use clarateach_objstore::object_store::path::Path;
    use clarateach_objstore::object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    };
    use futures::stream::BoxStream;

    #[async_trait::async_trait]
    impl ObjectStore for super::FailingPuts {
        async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
            Err(clarateach_objstore::object_store::Error::NotImplemented)
        }
        async fn put_multipart_opts(
            &self,
            _: &Path,
            _: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            Err(clarateach_objstore::object_store::Error::NotImplemented)
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            self.0.get_opts(l, o).await
        }
        async fn delete(&self, l: &Path) -> Result<()> {
            self.0.delete(l).await
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy(&self, f: &Path, t: &Path) -> Result<()> {
            self.0.copy(f, t).await
        }
        async fn copy_if_not_exists(&self, f: &Path, t: &Path) -> Result<()> {
            self.0.copy_if_not_exists(f, t).await
        }
    }
}

#[tokio::test]
async fn a_final_pass_that_could_not_upload_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).expect("vol");
    std::fs::write(vol.join("only-copy.txt"), "unsynced").expect("write");
    let url: ObjectStoreUrl = "s3://test-bucket/pfx".parse().expect("url");
    let sync = VolumeSync::new(
        VolumeStore::new(url, Arc::new(FailingPuts(InMemory::new()))),
        fast(),
    );
    sync.start(&key(), vol.clone(), None);
    // The destroy that follows must keep the volume: it holds the only copy.
    assert!(!sync.finish(&key(), Duration::from_secs(5)).await);
    // Not being synced at all: nothing to lose.
    assert!(sync.finish(&key(), Duration::from_secs(5)).await);
}
