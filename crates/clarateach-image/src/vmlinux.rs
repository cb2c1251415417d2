//! Extracts the uncompressed ELF kernel from Debian's LZ4-compressed bzImage, as the kernel's
//! `scripts/extract-vmlinux` does: find the LZ4 "legacy frame" magic, decompress its chunks, keep
//! the first candidate that yields an ELF file. Firecracker (and PVH boot) need the ELF.

use std::path::Path;

use crate::ImageError;

/// Magic of the LZ4 legacy frame format the kernel's `lz4 -l` writes.
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Every legacy chunk decompresses to at most 8 MiB.
const CHUNK_MAX: usize = 8 << 20;

/// Reads `bzimage` and writes the ELF vmlinux to `out`.
pub(crate) fn extract(bzimage: &Path, out: &Path) -> Result<(), ImageError> {
    let data = std::fs::read(bzimage).map_err(ImageError::io("reading the kernel", bzimage))?;
    let elf = find_vmlinux(&data).ok_or_else(|| ImageError::Vmlinux(bzimage.to_path_buf()))?;
    crate::layout::write_atomic(out, &elf)
}

/// Tries every occurrence of the magic; returns the first stream that decodes to an ELF image.
pub(crate) fn find_vmlinux(data: &[u8]) -> Option<Vec<u8>> {
    let mut start = 0;
    while let Some(pos) = find(&data[start..], &LZ4_LEGACY_MAGIC) {
        let at = start + pos;
        if let Some(out) = decode_legacy(&data[at + 4..]) {
            if out.starts_with(b"\x7fELF") {
                return Some(out);
            }
        }
        start = at + 1;
    }
    None
}

/// Decodes chunks `[u32 le size][lz4 block]` until the data ends or a size cannot be a chunk
/// (the kernel appends the uncompressed length after the last chunk).
fn decode_legacy(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK_MAX];
    while rest.len() >= 4 {
        let word = [rest[0], rest[1], rest[2], rest[3]];
        if word == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        let size = u32::from_le_bytes(word) as usize;
        if size == 0 || size > rest.len() - 4 || size > CHUNK_MAX + CHUNK_MAX / 255 + 16 {
            break;
        }
        let n = lz4_flex::block::decompress_into(&rest[4..4 + size], &mut buf).ok()?;
        out.extend_from_slice(&buf[..n]);
        rest = &rest[4 + size..];
    }
    (!out.is_empty()).then_some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_stream(payload: &[u8]) -> Vec<u8> {
        let mut s = LZ4_LEGACY_MAGIC.to_vec();
        for chunk in payload.chunks(CHUNK_MAX) {
            let block = lz4_flex::block::compress(chunk);
            s.extend_from_slice(&(block.len() as u32).to_le_bytes());
            s.extend_from_slice(&block);
        }
        s.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        s
    }

    #[test]
    fn finds_elf_after_setup_code_and_a_false_magic() {
        let mut payload = b"\x7fELF".to_vec();
        payload.extend((0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()));
        let mut image = b"MZ setup code".to_vec();
        image.extend_from_slice(&LZ4_LEGACY_MAGIC); // a stray magic that decodes to nothing
        image.extend_from_slice(&[0xff; 16]);
        image.extend(legacy_stream(&payload));
        image.extend_from_slice(b"trailing junk");
        assert_eq!(find_vmlinux(&image).expect("found"), payload);
    }

    #[test]
    fn no_magic_is_none() {
        assert!(find_vmlinux(b"no kernel in here").is_none());
    }
}
