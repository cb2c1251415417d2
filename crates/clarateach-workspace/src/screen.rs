//! The live screen of a terminal session, for the instructor's grid and the help queue.
//!
//! A [`Screen`] is a VT state (the `vt100` crate) fed with the session's output, plus what the
//! shell says about itself through shell-integration escapes the daemon asks bash for (see
//! [`shell_integration_env`]): OSC 133 prompt/command marks (`A` prompt, `C` command started,
//! `D;status` command finished, and `E;text` carrying the command line, as VS Code's 633;E
//! does) and OSC 7 (`file://host/cwd`). Marks are scanned from the raw byte stream by
//! [`OscScanner`], which keeps its state across reads, so a mark split between two PTY reads is
//! still seen.
//!
//! The screen follows the session as one more broadcast subscriber that never takes part in
//! flow control: a flood that outruns it costs it a resync from the scrollback tail, never the
//! shell's speed. The follower scans only the marks. The VT state, which costs several times
//! what the rest of the daemon spends on a byte of output, is brought up to date when a
//! snapshot is asked for (the grid asks every second while it is open): from the scrollback
//! ring, the bytes since the last snapshot, or the ring's last [`CATCH_UP_BYTES`] when more went
//! by (as after a lag). A flood costs the mark scan per byte and at most that many bytes of VT
//! work per snapshot, watched or not. Everything here is data the learner controls (they can print any mark): it is
//! bounded and shown as text, never trusted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use clarateach_core::classroom::{
    bounded_text, CommandRecord, ScreenCursor, ScreenSnapshot, COMMAND_CHARS, COMMAND_HISTORY,
    SCREEN_LINES, SCREEN_LINE_CHARS,
};

/// Longest OSC payload kept; longer ones (pictures, clipboard pastes) are skipped.
const MAX_OSC: usize = 4096;

/// The most output a snapshot feeds the VT state: further behind, it starts over from this
/// much of the scrollback's tail.
pub const CATCH_UP_BYTES: usize = 64 * 1024;

/// Environment that makes bash emit the marks: `PROMPT_COMMAND` reports the last status (`D`),
/// the cwd (OSC 7) and a new prompt (`A`); `PS0`, shown after a command line is read and before
/// it runs, reports the line (`E`, from history) and its start (`C`). An empty line runs no PS0,
/// so its `D` has no `C` before it and is ignored. A learner's own rc files may override these;
/// the grid then shows the screen without command facts.
pub fn shell_integration_env() -> Vec<(String, String)> {
    let prompt = r#"__ct_status=$?; printf '\033]133;D;%s\007\033]7;file://%s%s\007\033]133;A\007' "$__ct_status" "${HOSTNAME-}" "$PWD""#;
    let ps0 = r#"$(__ct_h=$(HISTTIMEFORMAT= builtin history 1); __ct_h="${__ct_h#*[0-9]  }"; printf '\033]133;E;%s\007\033]133;C\007' "${__ct_h//[[:cntrl:]]/ }")"#;
    // `help [message]`: asks the instructor for help. It prints a mark (`OSC 7700;help;ID;text`)
    // the learner's IDE (the browser attached to this terminal) turns into
    // `POST /api/session/help` with the learner's own credentials: the seat never gets a
    // credential of its own. The ID (time and a random number) lets the IDE skip a mark it
    // already handled when the scrollback is replayed. Shadows bash's `help`
    // builtin, which stays reachable as `builtin help`.
    let help = r#"() { printf '\033]7700;help;%s;%s\007' "${EPOCHSECONDS:-0}-$RANDOM" "${*//[[:cntrl:]]/ }"; echo "Asked the instructor for help; your IDE shows your place in the queue."; }"#;
    vec![
        ("PROMPT_COMMAND".into(), prompt.into()),
        ("PS0".into(), ps0.into()),
        ("BASH_FUNC_help%%".into(), help.into()),
    ]
}

/// A shell-integration fact from one OSC sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    PromptStart,
    /// `133;E;text`: the command line about to run.
    CommandLine(String),
    CommandStart,
    /// `133;D[;status]`.
    CommandEnd(Option<i32>),
    /// OSC 7: the shell's working directory.
    Cwd(String),
}

/// Finds OSC sequences (`ESC ] ... BEL` or `ESC ] ... ESC \`) in a byte stream fed in pieces.
#[derive(Debug, Default)]
pub struct OscScanner {
    state: ScanState,
    buf: Vec<u8>,
    overflow: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    #[default]
    Ground,
    Esc,
    Osc,
    OscEsc,
}

impl OscScanner {
    /// Feeds bytes; calls `found` with every complete mark in them.
    pub fn feed(&mut self, data: &[u8], mut found: impl FnMut(Mark)) {
        let mut i = 0;
        while i < data.len() {
            if self.state == ScanState::Ground {
                // Most output has no escape at all: skip to the next one.
                match memchr::memchr(0x1b, &data[i..]) {
                    Some(at) => i += at,
                    None => return,
                }
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (ScanState::Ground, 0x1b) => ScanState::Esc,
                (ScanState::Ground, _) => ScanState::Ground,
                (ScanState::Esc, b']') => {
                    self.buf.clear();
                    self.overflow = false;
                    ScanState::Osc
                }
                (ScanState::Esc, 0x1b) => ScanState::Esc,
                (ScanState::Esc, _) => ScanState::Ground,
                (ScanState::Osc, 0x07) => {
                    self.finish(&mut found);
                    ScanState::Ground
                }
                (ScanState::Osc, 0x1b) => ScanState::OscEsc,
                // CAN and SUB abort a sequence, as in a terminal.
                (ScanState::Osc, 0x18 | 0x1a) => ScanState::Ground,
                (ScanState::Osc, b) => {
                    if self.buf.len() < MAX_OSC {
                        self.buf.push(b);
                    } else {
                        self.overflow = true;
                    }
                    ScanState::Osc
                }
                (ScanState::OscEsc, b'\\') => {
                    self.finish(&mut found);
                    ScanState::Ground
                }
                // ESC followed by anything else ends the OSC unterminated: a new sequence starts.
                (ScanState::OscEsc, b']') => {
                    self.buf.clear();
                    self.overflow = false;
                    ScanState::Osc
                }
                (ScanState::OscEsc, 0x1b) => ScanState::Esc,
                (ScanState::OscEsc, _) => ScanState::Ground,
            };
        }
    }

    fn finish(&mut self, found: &mut impl FnMut(Mark)) {
        if !self.overflow {
            if let Some(m) = parse_osc(&self.buf) {
                found(m);
            }
        }
        self.buf.clear();
    }
}

/// Interprets one OSC payload (the bytes between `ESC ]` and the terminator).
pub fn parse_osc(payload: &[u8]) -> Option<Mark> {
    let text = String::from_utf8_lossy(payload);
    if let Some(rest) = text.strip_prefix("133;") {
        let mut parts = rest.splitn(2, ';');
        let kind = parts.next()?;
        let arg = parts.next();
        return match kind {
            "A" => Some(Mark::PromptStart),
            "C" => Some(Mark::CommandStart),
            "D" => Some(Mark::CommandEnd(
                arg.and_then(|a| a.split(';').next()?.trim().parse().ok()),
            )),
            "E" => Some(Mark::CommandLine(bounded_text(
                arg.unwrap_or("").trim(),
                COMMAND_CHARS,
            ))),
            _ => None,
        };
    }
    let url = text.strip_prefix("7;")?;
    let path = url
        .strip_prefix("file://")
        .map(|rest| rest.find('/').map_or("", |i| &rest[i..]))?;
    if path.is_empty() {
        return None;
    }
    Some(Mark::Cwd(bounded_text(
        &percent_decode(path),
        COMMAND_CHARS,
    )))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the shell said about itself, from its marks.
#[derive(Debug, Default, Clone)]
pub struct ShellFacts {
    pub cwd: Option<String>,
    pending_line: Option<String>,
    pub running: Option<String>,
    pub commands: VecDeque<CommandRecord>,
}

impl ShellFacts {
    /// Applies one mark.
    pub fn apply(&mut self, mark: Mark) {
        match mark {
            Mark::PromptStart => self.pending_line = None,
            Mark::CommandLine(line) => self.pending_line = Some(line),
            Mark::CommandStart => {
                self.running = Some(self.pending_line.take().unwrap_or_default());
            }
            Mark::CommandEnd(code) => {
                // A `D` without a `C` before it closes an empty line: nothing ran.
                if let Some(command) = self.running.take() {
                    if self.commands.len() == COMMAND_HISTORY {
                        self.commands.pop_front();
                    }
                    self.commands.push_back(CommandRecord {
                        command,
                        exit_code: code,
                        finished_at: chrono::Utc::now(),
                    });
                }
            }
            Mark::Cwd(dir) => self.cwd = Some(dir),
        }
    }
}

/// Output for the VT state at a snapshot, from the scrollback ring.
pub enum CatchUp {
    /// Every byte since the VT state's last one.
    Since(bytes::Bytes),
    /// More went by than [`CATCH_UP_BYTES`] or the ring still holds: its last bytes, to start
    /// over from.
    Tail(bytes::Bytes),
}

/// The VT state and shell facts of one session.
pub struct Screen {
    parser: vt100::Parser,
    /// Stream offset just past the last byte the VT state saw.
    vt_next: u64,
    osc: OscScanner,
    /// Stream offset just past the last byte the mark scanner saw.
    osc_next: u64,
    facts: ShellFacts,
    version: u64,
    last_input: Instant,
    exited: bool,
}

impl Screen {
    pub fn new(rows: u16, cols: u16) -> Self {
        Self {
            parser: vt100::Parser::new(rows.max(1), cols.max(1), 0),
            vt_next: 0,
            osc: OscScanner::default(),
            osc_next: 0,
            facts: ShellFacts::default(),
            version: 1,
            last_input: Instant::now(),
            exited: false,
        }
    }

    /// Scans session output that starts at stream offset `offset` for marks. Bytes already
    /// seen (an event older than a lag's catch-up) are skipped, so no mark counts twice.
    pub fn feed(&mut self, offset: u64, data: &[u8]) {
        if let Some(new) = unseen(self.osc_next, offset, data) {
            let facts = &mut self.facts;
            self.osc.feed(new, |m| facts.apply(m));
            self.osc_next = offset + data.len() as u64;
        }
        self.version += 1;
    }

    /// The shell exited: the grid shows it.
    pub fn mark_exited(&mut self) {
        self.exited = true;
        self.version += 1;
    }

    /// The follower lagged: `tail` is the scrollback's last bytes, ending at stream offset
    /// `next`. The marks in it that the scanner has not seen are applied (those that went by
    /// before the tail are lost).
    pub fn lagged(&mut self, tail: &[u8], next: u64) {
        let start = next - tail.len() as u64;
        if self.osc_next < start {
            self.osc = OscScanner::default();
        }
        let from = self.osc_next.max(start);
        if let Some(new) = unseen(from, start, tail) {
            let facts = &mut self.facts;
            self.osc.feed(new, |m| facts.apply(m));
        }
        self.osc_next = self.osc_next.max(next);
        self.version += 1;
    }

    /// Stream offset just past the last byte the VT state saw.
    pub fn vt_next(&self) -> u64 {
        self.vt_next
    }

    /// Brings the VT state up to stream offset `next` with the output it has not seen.
    pub fn catch_up(&mut self, next: u64, output: CatchUp) {
        match output {
            CatchUp::Since(bytes) => self.parser.process(&bytes),
            CatchUp::Tail(tail) => {
                let (rows, cols) = self.parser.screen().size();
                self.parser = vt100::Parser::new(rows, cols, 0);
                self.parser.process(&tail);
            }
        }
        self.vt_next = next;
    }

    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.set_size(rows.max(1), cols.max(1));
        self.version += 1;
    }

    pub fn input(&mut self) {
        self.last_input = Instant::now();
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The tail of the screen and the facts, as the grid shows them.
    pub fn snapshot(&self, session: &str) -> ScreenSnapshot {
        let screen = self.parser.screen();
        let (rows, cols) = screen.size();
        let all: Vec<String> = screen.rows(0, cols).collect();
        let (crow, ccol) = screen.cursor_position();
        let last_text = all.iter().rposition(|l| !l.trim().is_empty());
        let end = last_text.map_or(0, |i| i + 1).max(usize::from(crow) + 1);
        let end = end.min(all.len());
        let start = end.saturating_sub(SCREEN_LINES);
        let lines = all[start..end]
            .iter()
            .map(|l| bounded_text(l.trim_end(), SCREEN_LINE_CHARS))
            .collect();
        ScreenSnapshot {
            session: session.to_string(),
            version: self.version,
            rows,
            cols,
            lines,
            cursor: ScreenCursor {
                row: u16::try_from(usize::from(crow).saturating_sub(start)).unwrap_or(0),
                col: ccol,
                visible: !screen.hide_cursor(),
            },
            cwd: self.facts.cwd.clone(),
            running: self.facts.running.clone(),
            commands: self.facts.commands.iter().cloned().collect(),
            idle_s: self.last_input.elapsed().as_secs(),
            exited: self.exited,
        }
    }
}

/// A session's screen behind its lock.
pub type SharedScreen = Arc<Mutex<Screen>>;

pub fn lock(s: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The part of `data` (which starts at stream offset `offset`) past offset `seen`, if any.
fn unseen(seen: u64, offset: u64, data: &[u8]) -> Option<&[u8]> {
    let skip = usize::try_from(seen.saturating_sub(offset)).unwrap_or(usize::MAX);
    data.get(skip..).filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(chunks: &[&[u8]]) -> Vec<Mark> {
        let mut scanner = OscScanner::default();
        let mut out = Vec::new();
        for c in chunks {
            scanner.feed(c, |m| out.push(m));
        }
        out
    }

    #[test]
    fn osc_133_marks_are_parsed_with_either_terminator() {
        let got = marks(&[
            b"\x1b]133;A\x07$ \x1b]133;E;ls -l /tmp\x07\x1b]133;C\x1b\\out\r\n\x1b]133;D;2\x07",
        ]);
        assert_eq!(
            got,
            vec![
                Mark::PromptStart,
                Mark::CommandLine("ls -l /tmp".into()),
                Mark::CommandStart,
                Mark::CommandEnd(Some(2)),
            ]
        );
    }

    #[test]
    fn a_mark_split_across_reads_is_still_seen() {
        let stream: &[u8] = b"x\x1b]133;D;127\x07y\x1b]7;file://box/home/learner/my%20dir\x1b\\";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                marks(&[a, b]),
                vec![
                    Mark::CommandEnd(Some(127)),
                    Mark::Cwd("/home/learner/my dir".into())
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_and_foreign_sequences_are_ignored() {
        assert_eq!(parse_osc(b"0;window title"), None);
        assert_eq!(parse_osc(b"133;Z"), None);
        assert_eq!(parse_osc(b"133;D"), Some(Mark::CommandEnd(None)));
        assert_eq!(parse_osc(b"133;D;nope"), Some(Mark::CommandEnd(None)));
        assert_eq!(parse_osc(b"7;file://host"), None);
        assert_eq!(parse_osc(b"7;http://x/y"), None);
        // An over-long OSC is dropped whole; a CAN aborts one; the scanner recovers after both.
        let mut long = b"\x1b]133;E;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_OSC + 10));
        long.extend(b"\x07\x1b]133;C\x07");
        assert_eq!(marks(&[&long]), vec![Mark::CommandStart]);
        assert_eq!(
            marks(&[b"\x1b]133;A\x18\x1b]133;C\x07"]),
            vec![Mark::CommandStart]
        );
        // Controls in a command line cannot reach a client.
        assert_eq!(
            parse_osc(b"133;E;rm\x1b[2J -rf"),
            Some(Mark::CommandLine("rm [2J -rf".into()))
        );
    }

    #[test]
    fn facts_follow_the_shell() {
        let mut f = ShellFacts::default();
        for m in [
            Mark::Cwd("/w".into()),
            Mark::PromptStart,
            Mark::CommandLine("make".into()),
            Mark::CommandStart,
        ] {
            f.apply(m);
        }
        assert_eq!(f.running.as_deref(), Some("make"));
        f.apply(Mark::CommandEnd(Some(2)));
        // An empty line: D with no C before it records nothing.
        f.apply(Mark::PromptStart);
        f.apply(Mark::CommandEnd(Some(2)));
        assert_eq!(f.running, None);
        assert_eq!(f.commands.len(), 1);
        assert_eq!(f.commands[0].command, "make");
        assert_eq!(f.commands[0].exit_code, Some(2));
        assert_eq!(f.cwd.as_deref(), Some("/w"));
        for i in 0..20 {
            f.apply(Mark::CommandLine(format!("c{i}")));
            f.apply(Mark::CommandStart);
            f.apply(Mark::CommandEnd(Some(0)));
        }
        assert_eq!(f.commands.len(), COMMAND_HISTORY);
        assert_eq!(f.commands.back().map(|c| c.command.as_str()), Some("c19"));
    }

    /// A screen fed as the session feeds it: marks as output goes by, the VT state from the
    /// whole stream (a ring that keeps everything) at each look.
    struct Fed {
        screen: Screen,
        stream: Vec<u8>,
    }

    impl Fed {
        fn new() -> Self {
            Self {
                screen: Screen::new(24, 40),
                stream: Vec::new(),
            }
        }

        fn feed(&mut self, data: &[u8]) {
            self.screen.feed(self.stream.len() as u64, data);
            self.stream.extend_from_slice(data);
        }

        fn look(&mut self) -> ScreenSnapshot {
            let stream = bytes::Bytes::from(self.stream.clone());
            let next = stream.len() as u64;
            let from = usize::try_from(self.screen.vt_next()).unwrap();
            self.screen
                .catch_up(next, CatchUp::Since(stream.slice(from..)));
            self.screen.snapshot("main")
        }
    }

    #[test]
    fn the_vt_state_catches_up_at_each_look_or_starts_over_from_the_tail() {
        let mut f = Fed::new();
        f.feed(b"one\r\n");
        assert_eq!(f.look().lines, vec!["one", ""]);
        f.feed(b"two\r\n\x1b]133;E;make\x07\x1b]133;C\x07");
        // The marks were seen as the output went by; the VT state waits for a look.
        assert_eq!(f.screen.facts.running.as_deref(), Some("make"));
        assert_eq!(f.screen.vt_next, 5);
        assert_eq!(f.look().lines, vec!["one", "two", ""]);
        // Too far behind: the VT state starts over from the tail.
        let mut s = Screen::new(24, 40);
        s.catch_up(1 << 20, CatchUp::Tail(bytes::Bytes::from_static(b"tail")));
        assert_eq!(s.snapshot("main").lines, vec!["tail"]);
        assert_eq!(s.vt_next(), 1 << 20);
    }

    #[test]
    fn marks_already_seen_are_not_applied_twice() {
        // The follower lagged, and the tail holds a command it had half seen; then the
        // follower's older event arrives.
        let stream = b"\x1b]133;E;ls\x07\x1b]133;C\x07\x1b]133;D;0\x07";
        let mut s = Screen::new(24, 40);
        s.feed(0, &stream[..10]);
        s.lagged(stream, stream.len() as u64);
        s.feed(0, stream);
        let commands: Vec<_> = s.facts.commands.iter().map(|c| c.command.clone()).collect();
        assert_eq!(commands, vec!["ls"]);
    }

    #[test]
    fn the_snapshot_is_the_tail_up_to_the_cursor() {
        let mut f = Fed::new();
        for i in 0..12 {
            f.feed(format!("line {i}\r\n").as_bytes());
        }
        f.feed(b"$ \x1b[31mred\x1b[0m");
        let snap = f.look();
        assert_eq!(snap.lines.len(), SCREEN_LINES);
        assert_eq!(snap.lines.last().map(String::as_str), Some("$ red"));
        assert_eq!(snap.lines[0], "line 5");
        assert_eq!(snap.cursor.row as usize, SCREEN_LINES - 1);
        assert_eq!(snap.cursor.col, 5);
        // A cleared screen with the cursor at the top is one empty line.
        f.feed(b"\x1b[2J\x1b[H");
        let snap = f.look();
        assert_eq!(snap.lines, vec![String::new()]);
        assert_eq!(snap.cursor.row, 0);
    }

    #[test]
    fn the_integration_env_drives_real_bash() {
        // The marks bash emits with shell_integration_env are the ones the scanner expects.
        let bash = ["/bin/bash", "/usr/bin/bash"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(bash) = bash else {
            eprintln!("SKIP: no bash");
            println!("SKIP: no bash");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // One pipe for stdout and stderr (bash writes prompts to stderr), so the order holds.
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", &format!("exec {bash} --norc --noprofile -i 2>&1")])
            .current_dir(dir.path())
            .env("HISTFILE", dir.path().join("h"))
            .env("PS1", "$ ")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in shell_integration_env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("bash");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"false\n\ncd /\nexit\n")
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        let mut f = ShellFacts::default();
        OscScanner::default().feed(&out.stdout, |m| f.apply(m));
        let cmds: Vec<(&str, Option<i32>)> = f
            .commands
            .iter()
            .map(|c| (c.command.as_str(), c.exit_code))
            .collect();
        assert!(
            cmds.contains(&("false", Some(1))),
            "commands seen: {cmds:?}; output {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(cmds.contains(&("cd /", Some(0))), "{cmds:?}");
        assert_eq!(
            cmds.len(),
            2,
            "the empty line is no command, `exit` never finishes: {cmds:?}"
        );
        assert_eq!(f.cwd.as_deref(), Some("/"));
    }
}
