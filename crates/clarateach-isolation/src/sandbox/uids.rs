//! A host uid (and gid of the same number) per seat, from a configured range, so per-uid kernel
//! limits (inotify instances and watches, user namespaces, RLIMIT_NPROC, ...) and any escape
//! stay inside one seat.
//!
//! Crash-safe by construction: the allocator keeps no file of its own. The truth is the owner of
//! each seat's volume directory (and the uid in its state record), both read at start, so a uid is
//! taken from the moment its volume is chowned and free again only once that volume is deleted
//! (`destroy` with `delete_volume`). Two seats never share a uid, across agent restarts too.
//!
//! Seats made before per-seat uids (owned by the old shared uid 61000, or anything outside the
//! range) are migrated on their next `create` while not running: they get a uid from the range
//! and their volume and home are chowned to it by a descriptor walk (`paths::chown_tree`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use clarateach_core::agent_proto::SeatKey;

/// An inclusive range of host uids for seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub start: u32,
    pub end: u32,
}

impl UidRange {
    /// 200000-265535: above the uids a distribution hands to people and services, and the size of
    /// a subordinate-uid block.
    pub const DEFAULT: UidRange = UidRange {
        start: 200_000,
        end: 265_535,
    };

    pub fn contains(&self, uid: u32) -> bool {
        (self.start..=self.end).contains(&uid)
    }
}

impl Default for UidRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Why a `START-END` range is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UidRangeError {
    #[error("a uid range is START-END, e.g. 200000-265535")]
    Syntax,
    #[error("the uid range must not include 0-999 (root and system users), nor run backwards")]
    Bounds,
}

impl FromStr for UidRange {
    type Err = UidRangeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').ok_or(UidRangeError::Syntax)?;
        let start: u32 = a.trim().parse().map_err(|_| UidRangeError::Syntax)?;
        let end: u32 = b.trim().parse().map_err(|_| UidRangeError::Syntax)?;
        // 65534 (nobody) and u32::MAX (-1, "no change" for chown) must never be a seat.
        if start < 1000 || end < start || end == u32::MAX {
            return Err(UidRangeError::Bounds);
        }
        Ok(Self { start, end })
    }
}

/// Which uid each seat holds. One per backend, behind its mutex.
#[derive(Debug)]
pub struct UidAllocator {
    range: UidRange,
    taken: BTreeMap<u32, SeatKey>,
    by_seat: BTreeMap<SeatKey, u32>,
}

/// The whole range is in use.
#[derive(Debug, thiserror::Error)]
#[error("every uid of the seat uid range {0} is taken")]
pub struct Exhausted(pub UidRange);

impl UidAllocator {
    pub fn new(range: UidRange) -> Self {
        Self {
            range,
            taken: BTreeMap::new(),
            by_seat: BTreeMap::new(),
        }
    }

    /// Records that `key` holds `uid` (from disk at start). A uid outside the range, or one
    /// already held by another seat, is not recorded: that seat gets a fresh uid when created.
    pub fn note(&mut self, key: &SeatKey, uid: u32) -> bool {
        if !self.range.contains(uid) || self.by_seat.contains_key(key) {
            return false;
        }
        if self.taken.get(&uid).is_some_and(|k| k != key) {
            tracing::warn!(uid, workshop.id = %key.workshop_id, seat = key.seat, "uid already held by another seat; this seat gets a new one");
            return false;
        }
        self.taken.insert(uid, key.clone());
        self.by_seat.insert(key.clone(), uid);
        true
    }

    /// The uid of `key`, if it holds one.
    pub fn get(&self, key: &SeatKey) -> Option<u32> {
        self.by_seat.get(key).copied()
    }

    /// The uid of `key`, allocating the lowest free one if it holds none.
    pub fn get_or_allocate(&mut self, key: &SeatKey) -> Result<u32, Exhausted> {
        if let Some(uid) = self.get(key) {
            return Ok(uid);
        }
        let mut uid = self.range.start;
        for (&held, _) in self.taken.range(self.range.start..=self.range.end) {
            if held != uid {
                break;
            }
            uid += 1;
        }
        if uid > self.range.end {
            return Err(Exhausted(self.range));
        }
        self.taken.insert(uid, key.clone());
        self.by_seat.insert(key.clone(), uid);
        Ok(uid)
    }

    /// Frees the uid of `key` (its volume is gone).
    pub fn release(&mut self, key: &SeatKey) {
        if let Some(uid) = self.by_seat.remove(key) {
            self.taken.remove(&uid);
        }
    }
}

/// The owner uid of a path, not following a symlink (None when it does not exist).
pub fn owner(path: &Path) -> Option<u32> {
    std::fs::symlink_metadata(path).ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: "ws-a".into(),
            seat,
        }
    }

    #[test]
    fn parses_ranges_and_refuses_system_uids() {
        assert_eq!("200000-265535".parse::<UidRange>(), Ok(UidRange::DEFAULT));
        assert_eq!("5-10".parse::<UidRange>(), Err(UidRangeError::Bounds));
        assert_eq!("3000-2000".parse::<UidRange>(), Err(UidRangeError::Bounds));
        assert_eq!("3000".parse::<UidRange>(), Err(UidRangeError::Syntax));
        assert_eq!("a-b".parse::<UidRange>(), Err(UidRangeError::Syntax));
    }

    #[test]
    fn seats_never_share_and_reuse_waits_for_release() {
        let mut a = UidAllocator::new(UidRange {
            start: 5000,
            end: 5002,
        });
        // Found on disk: seat 2 holds 5001, and a stale record claims the same uid for seat 9.
        assert!(a.note(&key(2), 5001));
        assert!(!a.note(&key(9), 5001));
        assert!(!a.note(&key(8), 61000), "outside the range: migrated later");
        assert_eq!(a.get_or_allocate(&key(1)).expect("free"), 5000);
        assert_eq!(a.get_or_allocate(&key(1)).expect("same"), 5000);
        assert_eq!(a.get_or_allocate(&key(9)).expect("free"), 5002);
        assert!(a.get_or_allocate(&key(3)).is_err(), "range exhausted");
        a.release(&key(2));
        assert_eq!(a.get_or_allocate(&key(3)).expect("freed"), 5001);
    }
}
