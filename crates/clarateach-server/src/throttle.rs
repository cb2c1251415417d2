//! Join throttling. A 4-character join code and a 5-character reconnect code are guessable,
//! so failed guesses are counted in one-minute windows; a client past a budget is answered 429
//! with `Retry-After` before its join is even looked at (answering it would tell a right guess
//! from a wrong one, which is all a guesser needs).
//!
//! - Addresses are counted by network, not exactly: an IPv4 /32 or an IPv6 /64 (a client
//!   holding a /64 rotates through it for free).
//! - Only failures count; a successful join never costs budget.
//! - A whole class behind one NAT address must not be locked out by ten typos: once an address
//!   has joined a workshop (in the last 15 minutes), its failed join codes are charged to the
//!   workshop's larger budget for that address instead of the address's own small one (a guesser
//!   has to hold one valid code first, and then still gets only that budget). It is kept per
//!   address so that one learner elsewhere cannot use up a classroom's budget.
//! - Unknown reconnect codes have their own budgets: per address, and per workshop across all
//!   addresses (many addresses guessing one workshop's seats are still bounded).
//! - Counters are written through to the store and loaded on start, so a restart does not
//!   hand out fresh budgets.
//!
//! A plain mutex is fine here: it is held for map operations, never across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use clarateach_store::{Store, StoreError};

use crate::config::ServerConfig;
use crate::ip::canonical;

/// Window length, seconds.
const WINDOW: i64 = 60;
/// How long a successful join lets its address charge the workshop's budget, seconds.
const CREDIT_TTL: i64 = 15 * 60;
/// Above this many tracked entries, expired ones are swept on the next write.
const SWEEP_AT: usize = 4096;

/// The name an address is counted under: the address for IPv4, its /64 for IPv6.
pub fn address_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Budgets, failures per minute.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub code_per_address: u32,
    pub code_per_workshop: u32,
    pub reconnect_per_address: u32,
    pub reconnect_per_workshop: u32,
}

impl Budgets {
    pub fn from_config(c: &ServerConfig) -> Self {
        Self {
            code_per_address: c.join_failures_per_minute,
            code_per_workshop: c.workshop_join_failures_per_minute,
            reconnect_per_address: c.reconnect_failures_per_minute,
            reconnect_per_workshop: c.workshop_reconnect_failures_per_minute,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// bucket -> (window start, failures)
    buckets: HashMap<String, (i64, u32)>,
    /// address key -> (workshop joined, when)
    credit: HashMap<String, (String, i64)>,
}

impl Counters {
    fn over(&self, bucket: &str, limit: u32, now: i64) -> Option<u64> {
        match self.buckets.get(bucket) {
            Some((start, n)) if *n >= limit && now - start < WINDOW => {
                Some(u64::try_from(WINDOW - (now - start)).unwrap_or(1).max(1))
            }
            _ => None,
        }
    }

    fn bump(&mut self, bucket: String, now: i64) -> (String, i64, u32) {
        if self.buckets.len() >= SWEEP_AT {
            self.buckets.retain(|_, (start, _)| now - *start < WINDOW);
        }
        let entry = self.buckets.entry(bucket.clone()).or_insert((now, 0));
        if now - entry.0 >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (bucket, entry.0, entry.1)
    }

    fn credited(&self, addr: &str, now: i64) -> Option<&str> {
        self.credit
            .get(addr)
            .filter(|(_, at)| now - at < CREDIT_TTL)
            .map(|(w, _)| w.as_str())
    }

    /// The bucket and limit a failed join code from `addr` is charged to.
    fn code_bucket(&self, addr: &str, b: &Budgets, now: i64) -> (String, u32) {
        match self.credited(addr, now) {
            // Keyed by address too: a learner of the workshop typing wrong codes at home must
            // not use up the budget of the classroom's NAT address.
            Some(w) => (format!("code-ws:{w}:{addr}"), b.code_per_workshop),
            None => (format!("code:{addr}"), b.code_per_address),
        }
    }
}

/// Failed-join counters (see the module header).
pub struct Throttle {
    budgets: Budgets,
    counters: Mutex<Counters>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    pub fn new(budgets: Budgets, store: Arc<dyn Store>) -> Self {
        Self {
            budgets,
            counters: Mutex::new(Counters::default()),
            store,
        }
    }

    /// Loads the counters of windows still open from the store.
    pub async fn restore(&self) -> Result<(), StoreError> {
        let rows = self.store.load_throttle(now_secs() - WINDOW).await?;
        let mut c = self.lock();
        for (bucket, start, failures) in rows {
            c.buckets.insert(bucket, (start, failures));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(seconds)` when joins from `ip` are over their budget for join codes.
    pub fn check_code(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_code_at(ip, now_secs())
    }

    /// `Err(seconds)` when reconnect codes from `ip` for `workshop_id` are over a budget.
    pub fn check_reconnect(&self, ip: IpAddr, workshop_id: &str) -> Result<(), u64> {
        self.check_reconnect_at(ip, workshop_id, now_secs())
    }

    /// Counts one unknown join code from `ip`.
    pub async fn fail_code(&self, ip: IpAddr) {
        let row = self.fail_code_at(ip, now_secs());
        self.save(vec![row]).await;
    }

    /// Counts one unknown reconnect code from `ip` for `workshop_id`.
    pub async fn fail_reconnect(&self, ip: IpAddr, workshop_id: &str) {
        let rows = self.fail_reconnect_at(ip, workshop_id, now_secs());
        self.save(rows).await;
    }

    /// A join from `ip` into `workshop_id` succeeded: its address may charge that workshop.
    pub fn succeeded(&self, ip: IpAddr, workshop_id: &str) {
        self.succeeded_at(ip, workshop_id, now_secs())
    }

    async fn save(&self, rows: Vec<(String, i64, u32)>) {
        for (bucket, start, failures) in rows {
            if let Err(e) = self.store.save_throttle(&bucket, start, failures).await {
                tracing::warn!(error = %e, "cannot save a join throttle counter");
            }
        }
    }

    fn check_code_at(&self, ip: IpAddr, now: i64) -> Result<(), u64> {
        let c = self.lock();
        let (bucket, limit) = c.code_bucket(&address_key(ip), &self.budgets, now);
        c.over(&bucket, limit, now).map_or(Ok(()), Err)
    }

    fn check_reconnect_at(&self, ip: IpAddr, workshop_id: &str, now: i64) -> Result<(), u64> {
        let c = self.lock();
        let addr = address_key(ip);
        let b = &self.budgets;
        if let Some(secs) = c.over(
            &format!("rc-ws:{workshop_id}"),
            b.reconnect_per_workshop,
            now,
        ) {
            return Err(secs);
        }
        if c.credited(&addr, now) == Some(workshop_id) {
            return Ok(());
        }
        c.over(&format!("rc:{addr}"), b.reconnect_per_address, now)
            .map_or(Ok(()), Err)
    }

    fn fail_code_at(&self, ip: IpAddr, now: i64) -> (String, i64, u32) {
        let mut c = self.lock();
        let (bucket, _) = c.code_bucket(&address_key(ip), &self.budgets, now);
        c.bump(bucket, now)
    }

    fn fail_reconnect_at(
        &self,
        ip: IpAddr,
        workshop_id: &str,
        now: i64,
    ) -> Vec<(String, i64, u32)> {
        let mut c = self.lock();
        let addr = address_key(ip);
        let mut rows = vec![c.bump(format!("rc-ws:{workshop_id}"), now)];
        if c.credited(&addr, now) != Some(workshop_id) {
            rows.push(c.bump(format!("rc:{addr}"), now));
        }
        rows
    }

    fn succeeded_at(&self, ip: IpAddr, workshop_id: &str, now: i64) {
        let mut c = self.lock();
        if c.credit.len() >= SWEEP_AT {
            c.credit.retain(|_, (_, at)| now - *at < CREDIT_TTL);
        }
        c.credit
            .insert(address_key(ip), (workshop_id.to_string(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    async fn throttle() -> (tempfile::TempDir, Arc<dyn Store>, Throttle) {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn Store> = Arc::new(
            clarateach_store::SqliteStore::open(&dir.path().join("t.db"))
                .await
                .expect("store"),
        );
        let budgets = Budgets {
            code_per_address: 3,
            code_per_workshop: 6,
            reconnect_per_address: 2,
            reconnect_per_workshop: 4,
        };
        let t = Throttle::new(budgets, store.clone());
        (dir, store, t)
    }

    #[test]
    fn addresses_are_counted_by_v4_address_and_v6_slash_64() {
        assert_eq!(address_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(address_key(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }

    #[tokio::test]
    async fn one_slash_64_shares_a_budget_until_the_window_ends() {
        let (_d, _s, t) = throttle().await;
        let t0 = 1_000_000;
        for i in 0..3 {
            let a = ip(&format!("2001:db8:1:2::{i}"));
            assert!(t.check_code_at(a, t0).is_ok());
            t.fail_code_at(a, t0);
        }
        assert_eq!(
            t.check_code_at(ip("2001:db8:1:2:ffff::9"), t0 + 10),
            Err(50)
        );
        assert!(
            t.check_code_at(ip("2001:db8:1:3::1"), t0).is_ok(),
            "next /64"
        );
        assert!(t.check_code_at(ip("203.0.113.1"), t0).is_ok());
        assert!(t.check_code_at(ip("2001:db8:1:2::1"), t0 + WINDOW).is_ok());
    }

    #[tokio::test]
    async fn a_joined_address_charges_the_workshop_budget() {
        let (_d, _s, t) = throttle().await;
        let nat = ip("198.51.100.1");
        let t0 = 1_000_000;
        t.succeeded_at(nat, "ws-a", t0);
        for _ in 0..5 {
            assert!(t.check_code_at(nat, t0).is_ok());
            t.fail_code_at(nat, t0);
        }
        assert!(t.check_code_at(nat, t0).is_ok(), "5 typos, budget 6");
        t.fail_code_at(nat, t0);
        assert!(
            t.check_code_at(nat, t0).is_err(),
            "the workshop budget ends too"
        );
        assert!(t.check_code_at(ip("198.51.100.2"), t0).is_ok());
    }

    #[tokio::test]
    async fn reconnect_guesses_have_their_own_budgets() {
        let (_d, _s, t) = throttle().await;
        let t0 = 1_000_000;
        let a = ip("203.0.113.1");
        t.fail_reconnect_at(a, "ws-a", t0);
        t.fail_reconnect_at(a, "ws-a", t0);
        assert!(t.check_reconnect_at(a, "ws-a", t0).is_err(), "per address");
        assert!(
            t.check_code_at(a, t0).is_ok(),
            "join codes are counted apart"
        );
        assert!(
            t.check_reconnect_at(a, "ws-b", t0).is_err(),
            "the address is out"
        );
        // Many addresses guessing one workshop.
        t.fail_reconnect_at(ip("203.0.113.2"), "ws-a", t0);
        t.fail_reconnect_at(ip("203.0.113.3"), "ws-a", t0);
        assert!(t.check_reconnect_at(ip("203.0.113.4"), "ws-a", t0).is_err());
        assert!(t.check_reconnect_at(ip("203.0.113.4"), "ws-b", t0).is_ok());
    }

    #[tokio::test]
    async fn counters_survive_a_restart() {
        let (_d, store, t) = throttle().await;
        let a = ip("203.0.113.9");
        for _ in 0..3 {
            t.fail_code(a).await;
        }
        assert!(t.check_code(a).is_err());
        let again = Throttle::new(t.budgets, store);
        assert!(again.check_code(a).is_ok(), "nothing loaded yet");
        again.restore().await.expect("restore");
        assert!(again.check_code(a).is_err(), "restored from the store");
    }
}
