//! Join throttling: a 4-character join code is guessable, so each client address gets a
//! budget of failed joins (unknown code or reconnect code) per minute; past it every join from
//! that address is 429 with `Retry-After` until the window ends.
//!
//! A plain mutex is fine here: it is held for a map lookup, never across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, expired windows are swept on the next failure.
const SWEEP_AT: usize = 4096;

/// Failed-attempt counters per client address.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` when `ip` is over its budget.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    /// Counts one failed attempt from `ip`.
    pub fn fail(&self, ip: IpAddr) {
        self.fail_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some((start, n)) if *n >= self.limit && now.duration_since(*start) < WINDOW => {
                let left = WINDOW.saturating_sub(now.duration_since(*start));
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    fn fail_at(&self, ip: IpAddr, now: Instant) {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_window_ends() {
        let t = Throttle::new(3);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.check_at(ip, t0).is_ok());
            t.fail_at(ip, t0);
        }
        assert_eq!(t.check_at(ip, t0 + Duration::from_secs(10)), Err(50));
        assert!(t.check_at(other, t0).is_ok());
        assert!(t.check_at(ip, t0 + WINDOW).is_ok());
        t.fail_at(ip, t0 + WINDOW);
        assert!(
            t.check_at(ip, t0 + WINDOW).is_ok(),
            "new window starts at one failure"
        );
    }
}
