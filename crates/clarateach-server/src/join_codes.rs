//! Join codes of running workshops, remembered so that a join in a burst goes straight to the
//! seat claim instead of first looking its workshop up in the store.
//!
//! An entry is only a hint: the claim itself checks in the store that the workshop is running,
//! and a claim that gets no seat looks the code up again before answering, so an entry left
//! behind by a stopped or deleted workshop (or a code reused by a later one) is never trusted.
//!
//! That is also why the cache needs no invalidation between control-plane replicas (issue 13):
//! a workshop stopped or deleted through replica A leaves an entry in replica B's map, and B's
//! next join with that code claims nothing (the store says the workshop is not running), looks
//! the code up afresh and answers from the store. Nothing a replica caches here can make it
//! answer differently from another replica.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Past this many codes the map is emptied rather than swept: it only holds running workshops.
const MAX_CODES: usize = 4096;

/// What a join needs to know about its workshop; a workshop's id and name never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget {
    pub id: String,
    pub name: String,
}

/// Running workshops by join code. The lock is held for a map access, never across `.await`.
#[derive(Debug, Default)]
pub struct JoinCodes {
    codes: RwLock<HashMap<String, Arc<JoinTarget>>>,
}

impl JoinCodes {
    pub fn get(&self, code: &str) -> Option<Arc<JoinTarget>> {
        let codes = self.codes.read().unwrap_or_else(|p| p.into_inner());
        codes.get(code).cloned()
    }

    pub fn insert(&self, code: &str, target: Arc<JoinTarget>) {
        let mut codes = self.codes.write().unwrap_or_else(|p| p.into_inner());
        if codes.len() >= MAX_CODES && !codes.contains_key(code) {
            codes.clear();
        }
        codes.insert(code.to_string(), target);
    }

    pub fn forget(&self, code: &str) {
        let mut codes = self.codes.write().unwrap_or_else(|p| p.into_inner());
        codes.remove(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let codes = JoinCodes::default();
        let t = |id: &str| {
            Arc::new(JoinTarget {
                id: id.into(),
                name: "n".into(),
            })
        };
        codes.insert("CLAUDE-AAAA", t("ws-a"));
        assert_eq!(
            codes.get("CLAUDE-AAAA").map(|x| x.id.clone()),
            Some("ws-a".into())
        );
        codes.forget("CLAUDE-AAAA");
        assert_eq!(codes.get("CLAUDE-AAAA"), None);
        for i in 0..=MAX_CODES {
            codes.insert(&format!("C-{i}"), t("ws"));
        }
        assert!(codes.codes.read().expect("lock").len() <= MAX_CODES);
    }
}
