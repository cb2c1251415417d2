//! `sandbox exec ID`: an interactive terminal in the sandbox, a PTY session of its daemon
//! attached to our tty (raw mode, window size passed on). Ctrl-] detaches and leaves the session
//! running (`exec` again re-attaches with its scrollback); the shell's `exit` ends it.
//! Without a tty (a pipe) the input is sent as it comes, for scripts.

use std::io::{IsTerminal, Write};

use clarateach_client::{Terminal, TerminalEvent};
use clarateach_core::TerminalServerMessage;
use clarateach_isolation::DaemonAddr;
use clarateach_sandbox::{DaemonError, SandboxError, Sandboxes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Ctrl-]: detach, as telnet and `docker attach` taught.
const DETACH: u8 = 0x1d;

#[derive(clap::Args)]
pub struct ExecArgs {
    id: String,
    /// Terminal session name; the same name re-attaches to the same shell.
    #[arg(long, default_value = "main")]
    session: String,
}

/// Puts the tty in raw mode and restores it when dropped.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Self { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn terminal_error(e: clarateach_client::ClientError) -> SandboxError {
    SandboxError::Daemon(DaemonError::Connect(std::io::Error::other(e)))
}

pub async fn exec(sbx: &Sandboxes, a: ExecArgs) -> Result<u8, SandboxError> {
    let daemon = sbx.daemon(&a.id).await?;
    let ep = daemon.endpoint().clone();
    let path = format!("/terminal?session={}", a.session);
    match &ep.addr {
        DaemonAddr::Unix(socket) => {
            let term = Terminal::connect_unix(socket, &path, Some(&ep.token))
                .await
                .map_err(terminal_error)?;
            attach(term).await
        }
        DaemonAddr::Tcp(addr) => {
            let term = Terminal::connect(&format!("ws://{addr}{path}"), Some(&ep.token))
                .await
                .map_err(terminal_error)?;
            attach(term).await
        }
    }
}

async fn attach<S: AsyncRead + AsyncWrite + Unpin>(
    mut term: Terminal<S>,
) -> Result<u8, SandboxError> {
    if std::io::stdout().is_terminal() {
        if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout()) {
            let _ = term.resize(ws.ws_col, ws.ws_row).await;
        }
    }
    let tty = std::io::stdin().is_terminal();
    let raw = RawMode::enter();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut stdin_open = true;
    let code = loop {
        tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let chunk = &buf[..n];
                    let (send, detach) = match chunk.iter().position(|b| *b == DETACH) {
                        Some(i) if tty => (&chunk[..i], true),
                        _ => (chunk, false),
                    };
                    if !send.is_empty() {
                        term.send_input(&String::from_utf8_lossy(send)).await.map_err(terminal_error)?;
                    }
                    if detach {
                        break 0;
                    }
                }
            },
            ev = term.next_event() => match ev.map_err(terminal_error)? {
                Some(TerminalEvent::Output(bytes)) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                Some(TerminalEvent::Control(TerminalServerMessage::Exit { code })) => {
                    break u8::try_from(code).unwrap_or(1);
                }
                Some(TerminalEvent::Closed { .. }) | None => break 0,
                Some(_) => {}
            },
        }
    };
    drop(raw);
    if tty && code == 0 {
        eprintln!("\r\n[detached]");
    }
    let _ = term.close().await;
    Ok(code)
}
