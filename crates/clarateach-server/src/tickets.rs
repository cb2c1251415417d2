//! One-time WebSocket tickets. Browsers cannot set headers on a WebSocket, and a long-lived
//! token in a URL lands in reverse proxies' access logs, so the browser first trades its token
//! (in a header) for a ticket: random, valid 30 s, good for one upgrade, and bound to the seat
//! and mode it was issued for. Tickets live only in memory: a restart voids them, which costs
//! a client one more `POST /api/session/ticket`.
//!
//! A plain mutex is fine: it is held for a map operation, never across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clarateach_core::TokenClaims;

use crate::accounts::new_token;
use crate::gateway::seat::SeatAccess;

/// How long a ticket stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Prefix of every ticket, so one is recognisable in a bug report (never in a log).
pub const TICKET_PREFIX: &str = "ctk_";
/// Above this many live tickets, new ones are refused (each is a few hundred bytes; a client
/// minting in a loop must not grow the map without bound).
const MAX_LIVE: usize = 50_000;
/// Live tickets per seat and role, so one seat minting in a loop cannot use up `MAX_LIVE` for
/// everyone else (a browser needs a handful: one per terminal tab and the file watcher).
const MAX_PER_SEAT: u32 = 64;
/// Expired tickets are swept once the map holds this many.
const SWEEP_AT: usize = 1024;

/// What a redeemed ticket grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access: SeatAccess,
    /// For a learner's ticket, the token's claims, re-checked against the store on redemption.
    pub learner: Option<TokenClaims>,
}

type SeatKey = (String, u32, bool);

fn seat_key(g: &Grant) -> SeatKey {
    (
        g.access.workshop_id.clone(),
        g.access.seat,
        g.learner.is_some(),
    )
}

#[derive(Debug, Default)]
struct Live {
    tickets: HashMap<String, (Instant, Grant)>,
    per_seat: HashMap<SeatKey, u32>,
    last_sweep: Option<Instant>,
}

impl Live {
    fn forget(&mut self, grant: &Grant) {
        let key = seat_key(grant);
        if let Some(n) = self.per_seat.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_seat.remove(&key);
            }
        }
    }

    /// Drops expired tickets; at most once a second, so a client hammering a full seat cannot
    /// make every request scan the whole map.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let expired: Vec<String> = self
            .tickets
            .iter()
            .filter(|(_, (issued, _))| now.duration_since(*issued) >= TICKET_TTL)
            .map(|(t, _)| t.clone())
            .collect();
        for t in expired {
            if let Some((_, g)) = self.tickets.remove(&t) {
                self.forget(&g);
            }
        }
    }
}

/// Live tickets.
#[derive(Debug, Default)]
pub struct Tickets {
    live: Mutex<Live>,
}

impl Tickets {
    /// A new ticket for `grant`; `None` when too many are live.
    pub fn issue(&self, grant: Grant) -> Option<String> {
        self.issue_at(grant, Instant::now())
    }

    /// Takes the ticket out (single use); `None` when unknown, used or expired.
    pub fn redeem(&self, ticket: &str) -> Option<Grant> {
        self.redeem_at(ticket, Instant::now())
    }

    fn issue_at(&self, grant: Grant, now: Instant) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let key = seat_key(&grant);
        let full = |l: &Live| {
            l.tickets.len() >= MAX_LIVE
                || l.per_seat.get(&key).copied().unwrap_or(0) >= MAX_PER_SEAT
        };
        if live.tickets.len() >= SWEEP_AT || full(&live) {
            live.sweep(now);
        }
        if full(&live) {
            return None;
        }
        let ticket = new_token(TICKET_PREFIX);
        *live.per_seat.entry(key).or_insert(0) += 1;
        live.tickets.insert(ticket.clone(), (now, grant));
        Some(ticket)
    }

    fn redeem_at(&self, ticket: &str, now: Instant) -> Option<Grant> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let (issued, grant) = live.tickets.remove(ticket)?;
        live.forget(&grant);
        (now.duration_since(issued) < TICKET_TTL).then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::seat::{Role, TerminalMode};

    fn grant() -> Grant {
        Grant {
            access: SeatAccess {
                workshop_id: "ws-a".into(),
                seat: 1,
                role: Role::Learner,
                mode: TerminalMode::Interactive,
            },
            learner: None,
        }
    }

    #[test]
    fn single_use_and_expiry() {
        let t = Tickets::default();
        let now = Instant::now();
        let a = t.issue_at(grant(), now).expect("issue");
        assert!(a.starts_with(TICKET_PREFIX));
        assert!(t.redeem_at(&a, now + Duration::from_secs(29)).is_some());
        assert!(t.redeem_at(&a, now).is_none(), "second use");
        let b = t.issue_at(grant(), now).expect("issue");
        assert!(t.redeem_at(&b, now + TICKET_TTL).is_none(), "expired");
        assert!(t.redeem_at(&b, now).is_none(), "an expired ticket is gone");
        assert!(t.redeem_at("ctk_guess", now).is_none());
    }

    #[test]
    fn one_seat_is_capped_and_expired_tickets_are_swept() {
        let t = Tickets::default();
        let now = Instant::now();
        for _ in 0..MAX_PER_SEAT {
            t.issue_at(grant(), now).expect("issue");
        }
        assert!(t.issue_at(grant(), now).is_none(), "seat over its cap");
        let mut other = grant();
        other.access.seat = 2;
        assert!(
            t.issue_at(other, now).is_some(),
            "another seat is unaffected"
        );
        let late = now + TICKET_TTL;
        t.issue_at(grant(), late).expect("issue after the sweep");
        let live = t.live.lock().expect("lock");
        assert_eq!(live.tickets.len(), 1);
        assert_eq!(live.per_seat.values().sum::<u32>(), 1);
    }
}
