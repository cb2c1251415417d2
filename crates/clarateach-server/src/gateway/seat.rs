//! An authorised seat access as a value: whose token ([`Role`]), which seat and which
//! terminal mode ([`SeatAccess`]). Tickets, pause, audit and the gateway all speak of it; the
//! check that makes one (the extractor in [`super::access`]) needs the whole `AppState`, the
//! value does not, so it lives here, below both.

/// Terminal attach mode, as in api/ws-protocol.md (one definition in core).
pub use clarateach_core::TerminalMode;

/// Whose token opened the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Learner,
    Instructor,
}

/// An authorised request for one seat's traffic.
#[derive(Debug, Clone)]
pub struct SeatAccess {
    pub workshop_id: String,
    pub seat: u32,
    pub role: Role,
    pub mode: TerminalMode,
}

impl SeatAccess {
    /// Whether this access may change the workspace (write files, run commands): learners
    /// always; instructors only when they took over.
    pub fn may_write(&self) -> bool {
        self.role == Role::Learner || self.mode == TerminalMode::Takeover
    }
}
