//! An incremental WebSocket frame reader (RFC 6455 section 5.2) for the recorder's tap on the
//! relay: the relay still copies the upgraded bytes through untouched, and this only watches
//! them go by. It never buffers a whole binary frame: payload pieces are handed on as they
//! arrive (unmasked when the client masked them); text frames, which carry small JSON control
//! messages, are collected up to [`MAX_TEXT`] so they can be parsed.

/// Longest text frame collected; a longer one is skipped (it is not a control message).
pub const MAX_TEXT: usize = 64 * 1024;

/// What the tap saw in the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A piece of a binary message's payload, in order.
    Binary(&'a [u8]),
    /// A whole text message (at most [`MAX_TEXT`] bytes).
    Text(&'a [u8]),
}

#[derive(Debug)]
enum State {
    /// Reading a frame header (at most 14 bytes).
    Header,
    /// Inside a payload: bytes left, mask and position in it, and the message type.
    Payload {
        left: u64,
        mask: Option<[u8; 4]>,
        pos: usize,
        kind: Kind,
        fin: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Text,
    /// Control frames, compressed frames and text past the limit.
    Skip,
}

/// Follows one direction of a WebSocket connection.
#[derive(Debug)]
pub struct FrameTap {
    state: State,
    header: Vec<u8>,
    /// Type of the message a continuation frame continues.
    message: Kind,
    text: Vec<u8>,
    scratch: Vec<u8>,
}

impl Default for FrameTap {
    fn default() -> Self {
        Self {
            state: State::Header,
            header: Vec::with_capacity(14),
            message: Kind::Skip,
            text: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// Header length once its first two bytes are known.
fn header_len(b1: u8) -> usize {
    let masked = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + masked
        + match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

impl FrameTap {
    /// Feeds the next bytes of the stream; `seen` gets every binary piece and whole text message.
    pub fn feed(&mut self, mut data: &[u8], seen: &mut impl FnMut(Seen<'_>)) {
        while !data.is_empty() {
            match &mut self.state {
                State::Header => {
                    let want = if self.header.len() < 2 {
                        2
                    } else {
                        header_len(self.header[1])
                    };
                    let take = (want - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == 2 && header_len(self.header[1]) > 2 {
                        continue;
                    }
                    if self.header.len() == want {
                        self.start_payload(seen);
                    }
                }
                State::Payload {
                    left,
                    mask,
                    pos,
                    kind,
                    fin,
                } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    let (piece, rest) = data.split_at(take);
                    data = rest;
                    *left -= take as u64;
                    let piece: &[u8] = match mask {
                        Some(m) => {
                            self.scratch.clear();
                            self.scratch.extend(
                                piece.iter().enumerate().map(|(i, b)| b ^ m[(*pos + i) % 4]),
                            );
                            *pos = (*pos + take) % 4;
                            &self.scratch
                        }
                        None => piece,
                    };
                    match kind {
                        Kind::Binary if !piece.is_empty() => seen(Seen::Binary(piece)),
                        Kind::Text => {
                            if self.text.len() + piece.len() > MAX_TEXT {
                                self.text.clear();
                                *kind = Kind::Skip;
                                self.message = Kind::Skip;
                            } else {
                                self.text.extend_from_slice(piece);
                            }
                        }
                        _ => {}
                    }
                    if *left == 0 {
                        let (kind, fin) = (*kind, *fin);
                        self.end_frame(kind, fin, seen);
                    }
                }
            }
        }
    }

    fn start_payload(&mut self, seen: &mut impl FnMut(Seen<'_>)) {
        let h = std::mem::take(&mut self.header);
        let (b0, b1) = (h[0], h[1]);
        let fin = b0 & 0x80 != 0;
        let compressed = b0 & 0x40 != 0;
        let opcode = b0 & 0x0f;
        let mut at = 2;
        let len = match b1 & 0x7f {
            126 => {
                at += 2;
                u64::from(u16::from_be_bytes([h[2], h[3]]))
            }
            127 => {
                at += 8;
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mask = (b1 & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        self.header = h;
        self.header.clear();
        let kind = match opcode {
            0x1 | 0x2 if compressed => Kind::Skip,
            0x1 => Kind::Text,
            0x2 => Kind::Binary,
            0x0 => self.message,
            _ => Kind::Skip,
        };
        if matches!(opcode, 0x1 | 0x2) {
            self.message = kind;
            self.text.clear();
        }
        self.state = State::Payload {
            left: len,
            mask,
            pos: 0,
            kind,
            fin,
        };
        if len == 0 {
            self.end_frame(kind, fin, seen);
        }
    }

    fn end_frame(&mut self, kind: Kind, fin: bool, seen: &mut impl FnMut(Seen<'_>)) {
        self.state = State::Header;
        if kind == Kind::Text && fin {
            seen(Seen::Text(&self.text));
            self.text.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    /// Everything seen, binary pieces joined, for any split of the stream.
    fn run(stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<String>) {
        let mut tap = FrameTap::default();
        let (mut bin, mut texts) = (Vec::new(), Vec::new());
        for c in stream.chunks(chunk) {
            tap.feed(c, &mut |s| match s {
                Seen::Binary(b) => bin.extend_from_slice(b),
                Seen::Text(t) => texts.push(String::from_utf8_lossy(t).into_owned()),
            });
        }
        (bin, texts)
    }

    #[test]
    fn frames_across_any_split() {
        let big = vec![b'x'; 70_000];
        let mut s = frame(0x1, true, br#"{"type":"attached"}"#, None);
        s.extend(frame(0x2, true, b"hello ", None));
        s.extend(frame(0x9, true, b"ping", None));
        s.extend(frame(0x2, false, b"wor", Some([1, 2, 3, 4])));
        s.extend(frame(0x0, true, b"ld", Some([9, 8, 7, 6])));
        s.extend(frame(0x2, true, &big, None));
        s.extend(frame(
            0x1,
            true,
            br#"{"type":"resize","cols":100,"rows":30}"#,
            Some([5, 6, 7, 8]),
        ));
        s.extend(frame(0x2, true, b"", None));
        for chunk in [1, 2, 3, 7, 13, 4096, usize::MAX] {
            let (bin, texts) = run(&s, chunk.min(s.len()));
            let mut want = b"hello world".to_vec();
            want.extend_from_slice(&big);
            assert_eq!(bin, want, "chunk {chunk}");
            assert_eq!(
                texts,
                [
                    r#"{"type":"attached"}"#,
                    r#"{"type":"resize","cols":100,"rows":30}"#
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn oversized_text_and_compressed_frames_are_skipped() {
        let mut s = frame(0x1, true, &vec![b'a'; MAX_TEXT + 1], None);
        s.extend(frame(0x42, true, b"zz", None)); // RSV1: compressed
        s.extend(frame(0x1, true, b"ok", None));
        let (bin, texts) = run(&s, 1000);
        assert!(bin.is_empty());
        assert_eq!(texts, ["ok"]);
    }
}
