//! Reading a seat's volume from the host. The volume is a raw ext4 image the guest writes, so
//! its bytes are hostile: it is never mounted in the host kernel and never copied out to a host
//! directory (`debugfs rdump` would expand a 100 GiB sparse file onto the host disk). Instead
//! [`walk`] parses it in user space with the `ext4-view` crate (read-only, written to return
//! errors on corrupt input rather than trust it) and streams each entry into a [`VolumeSink`],
//! which caps sizes and archives as it goes: nothing is written to the host, memory stays bounded.
//! Symlinks are read as links (resolution inside the image never reaches host files anyway),
//! FIFOs, sockets and devices are reported and skipped. While the VM runs the walk sees what the
//! guest has flushed (ext4 commits every few seconds) and may meet half-written metadata, which
//! ends up in the report; after a stop it is exact.

use std::io::Read;

use ext4_view::{Ext4, FileType};

use crate::export::{join, EntryMeta, VolumeSink, MAX_DEPTH};

/// Streams every entry of the ext4 image `image` (already opened by the caller, who may then
/// drop privileges before calling this) into `sink`. Problems with the image itself are
/// reported through the sink; an `Err` only means the sink's output failed.
pub fn walk(image: std::fs::File, sink: &mut dyn VolumeSink) -> std::io::Result<()> {
    let fs = match Ext4::load(Box::new(image)) {
        Ok(fs) => fs,
        Err(e) => {
            sink.skip(
                b"",
                "volume",
                &format!("the volume image cannot be read: {e}"),
            );
            return Ok(());
        }
    };
    // (absolute path inside the image, path relative to the volume root, depth)
    let mut stack = vec![(ext4_view::PathBuf::new("/"), Vec::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let entries = match fs.read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                sink.skip(&rel, "directory", &format!("cannot be listed: {e}"));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    sink.skip(&rel, "directory", &format!("listing failed part-way: {e}"));
                    break;
                }
            };
            let name = entry.file_name();
            let name = name.as_ref();
            if name == b"." || name == b".." || (depth == 0 && name == b"lost+found") {
                continue;
            }
            let path = join(&rel, name);
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    sink.skip(&path, "unknown", &format!("inode cannot be read: {e}"));
                    continue;
                }
            };
            let em = EntryMeta {
                mode: u32::from(meta.mode()),
                mtime: meta.modified().seconds(),
            };
            match meta.file_type() {
                FileType::Directory if depth + 1 >= MAX_DEPTH => {
                    sink.skip(&path, "directory", "nested too deep; not walked");
                }
                FileType::Directory => {
                    sink.dir(&path, em)?;
                    stack.push((entry.path(), path, depth + 1));
                }
                FileType::Regular => match fs.open(&entry.path()) {
                    Ok(mut file) => sink.file(&path, em, meta.len(), &mut file as &mut dyn Read)?,
                    Err(e) => sink.skip(&path, "file", &format!("cannot be opened: {e}")),
                },
                FileType::Symlink => match fs.read_link(&entry.path()) {
                    Ok(target) => sink.symlink(&path, em, target.as_ref())?,
                    Err(e) => sink.skip(&path, "symlink", &format!("cannot be read: {e}")),
                },
                other => sink.skip(&path, special_kind(other), "special files are not exported"),
            }
        }
    }
    Ok(())
}

fn special_kind(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "char-device",
        FileType::BlockDevice => "block-device",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Collects what a walk hands over, reading at most 1 MiB of each file (like a capped sink).
    #[derive(Default)]
    struct Collect {
        dirs: Vec<String>,
        files: Vec<(String, u64, Vec<u8>)>,
        links: Vec<(String, String)>,
        skipped: Vec<(String, String)>,
    }

    impl VolumeSink for Collect {
        fn dir(&mut self, path: &[u8], _: EntryMeta) -> std::io::Result<()> {
            self.dirs.push(String::from_utf8_lossy(path).into());
            Ok(())
        }
        fn file(
            &mut self,
            path: &[u8],
            _: EntryMeta,
            size: u64,
            data: &mut dyn Read,
        ) -> std::io::Result<()> {
            let mut buf = Vec::new();
            data.take(1 << 20).read_to_end(&mut buf)?;
            self.files
                .push((String::from_utf8_lossy(path).into(), size, buf));
            Ok(())
        }
        fn symlink(&mut self, path: &[u8], _: EntryMeta, target: &[u8]) -> std::io::Result<()> {
            self.links.push((
                String::from_utf8_lossy(path).into(),
                String::from_utf8_lossy(target).into(),
            ));
            Ok(())
        }
        fn skip(&mut self, path: &[u8], kind: &str, _: &str) {
            self.skipped
                .push((String::from_utf8_lossy(path).into(), kind.into()));
        }
    }

    fn which(name: &str) -> Option<std::path::PathBuf> {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    }

    /// The hostile volume of issue 16, built with `mkfs.ext4 -d`: a 100 GiB sparse file, a
    /// symlink to a host secret, a FIFO and a socket. The walk streams without writing anything
    /// to the host and leaves the image's size on disk unchanged.
    #[test]
    fn walks_a_hostile_ext4_image_without_expanding_it() {
        if which("mkfs.ext4").is_none() {
            eprintln!("SKIP: e2fsprogs (mkfs.ext4) not installed");
            println!("SKIP: e2fsprogs (mkfs.ext4) not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("proj/deep")).expect("mkdir");
        std::fs::write(src.join("proj/main.py"), "print(1)\n").expect("write");
        std::fs::File::create(src.join("huge.sparse"))
            .expect("create")
            .set_len(100 << 30)
            .expect("100 GiB sparse");
        std::os::unix::fs::symlink("/etc/shadow", src.join("proj/leak")).expect("symlink");
        let fifo = src.join("pipe");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success());
        let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).expect("socket");
        let img = dir.path().join("vol.img");
        std::fs::File::create(&img)
            .expect("create")
            .set_len(64 << 20)
            .expect("size");
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&img)
            .output()
            .expect("mkfs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = std::fs::metadata(dir.path()).expect("meta");

        let mut sink = Collect::default();
        walk(std::fs::File::open(&img).expect("open"), &mut sink).expect("walk");

        let main = sink
            .files
            .iter()
            .find(|f| f.0 == "proj/main.py")
            .expect("main.py");
        assert_eq!((main.1, &main.2[..]), (9, &b"print(1)\n"[..]));
        let huge = sink
            .files
            .iter()
            .find(|f| f.0 == "huge.sparse")
            .expect("sparse");
        assert_eq!(
            huge.1,
            100 << 30,
            "the size is reported, the sink decides the cap"
        );
        assert!(huge.2.iter().all(|b| *b == 0));
        assert_eq!(sink.links, vec![("proj/leak".into(), "/etc/shadow".into())]);
        assert!(
            sink.dirs.contains(&"proj/deep".to_string()),
            "{:?}",
            sink.dirs
        );
        assert!(!sink.dirs.iter().any(|d| d.contains("lost+found")));
        let mut skipped = sink.skipped.clone();
        skipped.sort();
        assert_eq!(
            skipped,
            vec![
                ("pipe".into(), "fifo".into()),
                ("sock".into(), "socket".into())
            ]
        );
        // Nothing new on the host: only src, the image and nothing else in the temp dir.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            before.len(),
            std::fs::metadata(dir.path()).expect("meta").len()
        );
    }

    #[test]
    fn garbage_image_is_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("vol.img");
        std::fs::write(&img, vec![0x5a; 1 << 20]).expect("write");
        let mut sink = Collect::default();
        walk(std::fs::File::open(&img).expect("open"), &mut sink).expect("walk");
        assert_eq!(sink.skipped, vec![(String::new(), "volume".into())]);
    }
}
