//! The asciicast v2 writer (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header
//! line, then one `[seconds, "o"|"r"|"m", data]` line per event. The header is written with the
//! first event, so a resize that arrives before any output sets the recording's size. Output
//! bytes are decoded as UTF-8 with an incomplete trailing sequence carried to the next event
//! (a character split across two reads is never mangled). A cast stops at its byte cap with a
//! marker event saying so; the seat-wide cap is the recorder's (see `super`).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// Size assumed when no resize came before the first output.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: u64,
    title: &'a str,
}

/// Writes one cast to `W`, at most `cap` bytes.
#[derive(Debug)]
pub struct CastWriter<W: Write> {
    out: W,
    timestamp: u64,
    title: String,
    header_written: bool,
    written: u64,
    cap: u64,
    truncated: bool,
    carry: Vec<u8>,
    line: Vec<u8>,
}

impl<W: Write> CastWriter<W> {
    /// `timestamp` is the start's Unix time in seconds, `title` e.g. `seat 3: main`.
    pub fn new(out: W, timestamp: u64, title: impl Into<String>, cap: u64) -> Self {
        Self {
            out,
            timestamp,
            title: title.into(),
            header_written: false,
            written: 0,
            cap,
            truncated: false,
            carry: Vec::new(),
            line: Vec::with_capacity(4096),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the cap ended the recording.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn header(&mut self, (width, height): (u16, u16)) -> std::io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        let h = Header {
            version: 2,
            width,
            height,
            timestamp: self.timestamp,
            title: &self.title,
        };
        let mut line = serde_json::to_vec(&h).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.written += line.len() as u64;
        self.out.write_all(&line)
    }

    fn event(&mut self, at: Duration, code: &str, data: &str) -> std::io::Result<()> {
        if self.truncated {
            return Ok(());
        }
        self.line.clear();
        // serde_json cannot fail on an (f64, &str, &str) tuple to a Vec.
        serde_json::to_writer(&mut self.line, &(secs(at), code, data))
            .map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        // Room is kept for the closing marker.
        if self.written + self.line.len() as u64 + 128 > self.cap {
            self.truncated = true;
            self.line.clear();
            serde_json::to_writer(
                &mut self.line,
                &(
                    secs(at),
                    "m",
                    "recording truncated: the seat's recording cap was reached",
                ),
            )
            .map_err(std::io::Error::other)?;
            self.line.push(b'\n');
        }
        self.written += self.line.len() as u64;
        self.out.write_all(&self.line)
    }

    /// Terminal output at `at` after the start.
    pub fn output(&mut self, at: Duration, bytes: &[u8]) -> std::io::Result<()> {
        self.header(DEFAULT_SIZE)?;
        let text = if self.carry.is_empty() {
            decode(bytes, &mut self.carry)
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            decode(&joined, &mut self.carry)
        };
        if text.is_empty() {
            return Ok(());
        }
        self.event(at, "o", &text)
    }

    /// The terminal was resized to `cols` x `rows`.
    pub fn resize(&mut self, at: Duration, cols: u16, rows: u16) -> std::io::Result<()> {
        if !self.header_written {
            return self.header((cols, rows));
        }
        self.event(at, "r", &format!("{cols}x{rows}"))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

/// Decodes `data` lossily, keeping an incomplete UTF-8 sequence at its end in `carry`.
fn decode(data: &[u8], carry: &mut Vec<u8>) -> String {
    let mut end = data.len();
    // An incomplete sequence is at most 3 bytes: find a lead byte in the last 3.
    for back in 1..=3.min(data.len()) {
        let b = data[data.len() - back];
        if b & 0xc0 == 0x80 {
            continue;
        }
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        if need > back {
            end = data.len() - back;
        }
        break;
    }
    carry.clear();
    carry.extend_from_slice(&data[end..]);
    String::from_utf8_lossy(&data[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(w: &CastWriter<Vec<u8>>) -> Vec<serde_json::Value> {
        String::from_utf8(w.out.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn asciicast_v2_header_and_events() {
        let mut w = CastWriter::new(Vec::new(), 1_764_590_000, "seat 3: main", 1 << 20);
        w.resize(Duration::ZERO, 120, 40).unwrap();
        w.output(Duration::from_millis(1500), b"$ ls\r\n").unwrap();
        w.resize(Duration::from_secs(2), 100, 30).unwrap();
        let l = lines(&w);
        assert_eq!(
            l[0],
            serde_json::json!({"version": 2, "width": 120, "height": 40, "timestamp": 1_764_590_000u64, "title": "seat 3: main"})
        );
        assert_eq!(l[1], serde_json::json!([1.5, "o", "$ ls\r\n"]));
        assert_eq!(l[2], serde_json::json!([2.0, "r", "100x30"]));
        assert_eq!(l.len(), 3);
        assert_eq!(w.written(), w.out.len() as u64);
    }

    #[test]
    fn default_size_when_output_comes_first() {
        let mut w = CastWriter::new(Vec::new(), 0, "t", 1 << 20);
        w.output(Duration::ZERO, b"\x1b[31mred\x1b[0m").unwrap();
        let l = lines(&w);
        assert_eq!(l[0]["width"], 80);
        assert_eq!(l[0]["height"], 24);
        assert_eq!(l[1][2], "\u{1b}[31mred\u{1b}[0m");
    }

    #[test]
    fn utf8_split_across_reads_is_kept_whole() {
        let mut w = CastWriter::new(Vec::new(), 0, "t", 1 << 20);
        let s = "héllo €𝄞".as_bytes();
        for (i, b) in s.iter().enumerate() {
            w.output(Duration::from_millis(i as u64), &[*b]).unwrap();
        }
        let text: String = lines(&w)[1..]
            .iter()
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, "héllo €𝄞");
        // Invalid bytes are replaced, not carried forever.
        let mut w = CastWriter::new(Vec::new(), 0, "t", 1 << 20);
        w.output(Duration::ZERO, b"a\xff\xfeb").unwrap();
        assert_eq!(lines(&w)[1][2], "a\u{fffd}\u{fffd}b");
    }

    #[test]
    fn cap_bounds_the_file_and_ends_with_a_marker() {
        let cap = 4096;
        let mut w = CastWriter::new(Vec::new(), 0, "t", cap);
        for i in 0..1000 {
            w.output(Duration::from_millis(i), b"0123456789abcdef\r\n")
                .unwrap();
        }
        assert!(w.truncated());
        assert!(w.out.len() as u64 <= cap, "{} > {cap}", w.out.len());
        let l = lines(&w);
        let last = l.last().unwrap();
        assert_eq!(last[1], "m");
        assert_eq!(l.iter().filter(|e| e[1] == "m").count(), 1);
    }
}
