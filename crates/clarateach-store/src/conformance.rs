//! The store's behaviour, tested once and run on every back end: each test below is
//! instantiated for SQLite (always) and PostgreSQL (when `CLARATEACH_TEST_DATABASE_URL` names a
//! test server, see `test_support`; otherwise it prints SKIP). A new store trait gets its tests
//! here and one line in `on_every_back_end!`.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use clarateach_core::{SeatState, WorkshopStatus};

use crate::sqlite::new_workshop;
use crate::{PgStore, Store, StoreError};

/// A store holding instructor `i1` and workshop `ws-a` (code CLAUDE-AAAA) with `seats` seats.
async fn with_workshop(s: &dyn Store, seats: u32) {
    s.create_instructor("i1", "ada", "h")
        .await
        .expect("instructor");
    s.insert_workshop(&new_workshop("ws-a", "CLAUDE-AAAA", seats))
        .await
        .expect("insert");
}

pub(crate) async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let (d, s) = crate::sqlite::temp_store().await;
    (d, Arc::new(s))
}

/// A store on a new database of the test server, `None` (after a SKIP line) without one.
pub(crate) async fn postgres(test: &str) -> Option<Arc<dyn Store>> {
    match crate::test_support::fresh_database_url()
        .await
        .expect("create a test database")
    {
        Some(url) => Some(Arc::new(PgStore::open(&url).await.expect("open pg store"))),
        None => {
            crate::test_support::skip_postgres(test);
            None
        }
    }
}

macro_rules! on_every_back_end {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (_dir, s) = super::sqlite().await;
                super::$name(s).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(s) = super::postgres(concat!(stringify!($name), "::postgres")).await {
                    super::$name(s).await;
                }
            }
        }
    )*};
}

on_every_back_end!(
    instructors_by_hash_and_unique,
    agent_tokens_bind_once_and_revoke,
    sessions_expire_and_revoke,
    insert_get_transition_delete,
    concurrent_claims_get_distinct_seats,
    a_taken_reconnect_code_fails_only_its_own_claim_in_a_batch,
    placement_reports_and_promotion,
    counters_upsert_load_and_expire,
    agent_presence_command_queues_and_loads,
    placement_lock_excludes_and_a_dropped_one_frees,
    lost_seats_move_exactly_once,
);

async fn instructors_by_hash_and_unique(s: Arc<dyn Store>) {
    s.create_instructor("i1", "ada", "h1")
        .await
        .expect("create");
    assert!(matches!(
        s.create_instructor("i2", "bob", "h1").await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.instructor_by_token_hash("h1")
            .await
            .expect("q")
            .map(|i| i.name),
        Some("ada".into())
    );
    assert!(s
        .instructor_by_token_hash("nope")
        .await
        .expect("q")
        .is_none());
    assert_eq!(s.count_instructors().await.expect("count"), 1);
    s.create_agent_token("a1", "ah").await.expect("agent token");
    assert!(s.agent_token_exists("ah").await.expect("q"));
    assert!(!s.agent_token_exists("x").await.expect("q"));
}

async fn agent_tokens_bind_once_and_revoke(s: Arc<dyn Store>) {
    s.create_bound_agent_token("t1", "h1", "agent-a")
        .await
        .expect("bound");
    s.create_agent_token("t2", "h2").await.expect("legacy");
    s.create_agent_token("t3", "h3").await.expect("legacy");
    let t1 = s.agent_token_by_hash("h1").await.expect("q").expect("t1");
    assert_eq!(t1.agent_id.as_deref(), Some("agent-a"));
    let t2 = s.agent_token_by_hash("h2").await.expect("q").expect("t2");
    assert_eq!((t2.agent_id, t2.revoked), (None, false));
    // A legacy token cannot take an id another live token holds, but can take a free one,
    // and only once.
    assert!(!s.bind_agent_token("t2", "agent-a").await.expect("bind"));
    assert!(s.bind_agent_token("t2", "agent-b").await.expect("bind"));
    assert!(!s.bind_agent_token("t2", "agent-c").await.expect("rebind"));
    assert!(!s.bind_agent_token("t3", "agent-b").await.expect("taken"));
    // Revoking refuses the token at once; other ids' tokens are untouched.
    assert_eq!(s.revoke_agent_tokens("agent-a").await.expect("revoke"), 1);
    assert!(!s.agent_token_exists("h1").await.expect("q"));
    assert!(!s.agent_token_active("t1").await.expect("q"));
    assert!(
        s.agent_token_by_hash("h1")
            .await
            .expect("q")
            .expect("t1")
            .revoked
    );
    assert!(s.agent_token_active("t2").await.expect("q"));
    assert_eq!(s.revoke_agent_tokens("agent-a").await.expect("again"), 0);
}

async fn sessions_expire_and_revoke(s: Arc<dyn Store>) {
    s.create_instructor("i1", "ada", "h1")
        .await
        .expect("create");
    let now = Utc::now();
    let later = now + chrono::Duration::hours(12);
    s.create_instructor_session("sh", "i1", later)
        .await
        .expect("session");
    let found = s.instructor_by_session_hash("sh", now).await.expect("q");
    assert_eq!(found.map(|i| i.id), Some("i1".into()));
    assert!(
        s.instructor_by_session_hash("sh", later)
            .await
            .expect("q")
            .is_none(),
        "expired at its expiry"
    );
    assert!(
        s.instructor_by_session_hash("h1", now)
            .await
            .expect("q")
            .is_none(),
        "the instructor's own token hash is not a session"
    );
    assert!(s.delete_instructor_session("sh").await.expect("delete"));
    assert!(!s.delete_instructor_session("sh").await.expect("again"));
    assert!(s
        .instructor_by_session_hash("sh", now)
        .await
        .expect("q")
        .is_none());
}

async fn insert_get_transition_delete(s: Arc<dyn Store>) {
    s.create_instructor("i1", "ada", "h")
        .await
        .expect("instructor");
    s.insert_workshop(&new_workshop("ws-a", "CLAUDE-AAAA", 3))
        .await
        .expect("insert");
    let dup = s
        .insert_workshop(&new_workshop("ws-b", "CLAUDE-AAAA", 3))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict)));
    let w = s.get_workshop("ws-a").await.expect("get").expect("exists");
    assert_eq!(
        (w.seats, w.status, w.seats_ready),
        (3, WorkshopStatus::Created, 0)
    );
    assert_eq!(
        s.workshop_by_code("CLAUDE-AAAA")
            .await
            .expect("q")
            .map(|w| w.id),
        Some("ws-a".into())
    );
    assert_eq!(s.list_workshops("i1").await.expect("list").len(), 1);
    assert!(s.list_workshops("other").await.expect("list").is_empty());
    use WorkshopStatus::*;
    assert!(s
        .transition("ws-a", &[Created, Stopped], Provisioning)
        .await
        .expect("t"));
    assert!(!s
        .transition("ws-a", &[Created], Provisioning)
        .await
        .expect("t"));
    assert!(!s.promote_if_all_ready("ws-a").await.expect("promote"));
    s.clear_api_key("ws-a").await.expect("clear");
    assert!(s
        .get_workshop("ws-a")
        .await
        .expect("get")
        .expect("exists")
        .api_key_enc
        .is_none());
    assert_eq!(
        s.count_workshops_by_status().await.expect("count"),
        vec![(Provisioning, 1)]
    );
    assert!(s.delete_workshop("ws-a").await.expect("delete"));
    assert!(s.get_workshop("ws-a").await.expect("get").is_none());
}

async fn concurrent_claims_get_distinct_seats(s: Arc<dyn Store>) {
    with_workshop(s.as_ref(), 10).await;
    assert_eq!(
        s.claim_seat("ws-a", "early", None, Utc::now())
            .await
            .expect("claim"),
        None,
        "a workshop that is not running gives no seat"
    );
    s.transition("ws-a", &[WorkshopStatus::Created], WorkshopStatus::Running)
        .await
        .expect("t");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_seat("ws-a", &format!("h{i:04}"), None, Utc::now())
                    .await
            })
        })
        .collect();
    let mut got = BTreeSet::new();
    let mut full = 0;
    for t in tasks {
        match t.await.expect("join").expect("claim") {
            Some(seat) => assert!(got.insert(seat.seat)),
            None => full += 1,
        }
    }
    assert_eq!(got, (1..=10).collect::<BTreeSet<u32>>());
    assert_eq!(full, 40);
    let dup = s.claim_seat("ws-a", "h0001", None, Utc::now()).await;
    assert!(matches!(dup, Ok(None) | Err(StoreError::Conflict)));
}

async fn a_taken_reconnect_code_fails_only_its_own_claim_in_a_batch(s: Arc<dyn Store>) {
    with_workshop(s.as_ref(), 10).await;
    s.transition("ws-a", &[WorkshopStatus::Created], WorkshopStatus::Running)
        .await
        .expect("t");
    // Queued together, so the claim task commits them in one transaction.
    let (a, b, c) = tokio::join!(
        s.claim_seat("ws-a", "aaaaa", None, Utc::now()),
        s.claim_seat("ws-a", "aaaaa", None, Utc::now()),
        s.claim_seat("ws-a", "bbbbb", None, Utc::now()),
    );
    assert_eq!(a.expect("first").map(|x| x.seat), Some(1));
    assert!(matches!(b, Err(StoreError::Conflict)));
    assert_eq!(c.expect("third").map(|x| x.seat), Some(2));
    let kept: Vec<_> = s
        .list_seats("ws-a")
        .await
        .expect("list")
        .into_iter()
        .filter_map(|x| x.odehash)
        .collect();
    assert_eq!(kept, vec!["aaaaa".to_string(), "bbbbb".to_string()]);
}

async fn placement_reports_and_promotion(s: Arc<dyn Store>) {
    with_workshop(s.as_ref(), 2).await;
    s.transition(
        "ws-a",
        &[WorkshopStatus::Created],
        WorkshopStatus::Provisioning,
    )
    .await
    .expect("t");
    s.place_seats(
        "ws-a",
        &[(1, "ag1".into()), (2, "ag2".into())],
        SeatState::Creating,
    )
    .await
    .expect("place");
    assert_eq!(
        s.seats_for_agent("ag1").await.expect("q"),
        vec![("ws-a".to_string(), 1)]
    );
    assert!(!s
        .report_seat("ws-a", 1, "ag2", SeatState::Ready)
        .await
        .expect("wrong agent"));
    assert!(s
        .report_seat("ws-a", 1, "ag1", SeatState::Ready)
        .await
        .expect("report"));
    assert!(!s.promote_if_all_ready("ws-a").await.expect("promote"));
    assert!(s
        .report_seat("ws-a", 2, "ag2", SeatState::Ready)
        .await
        .expect("report"));
    assert!(s.promote_if_all_ready("ws-a").await.expect("promote"));
    assert_eq!(s.mark_agent_seats_lost("ag2").await.expect("lost"), 1);
    assert_eq!(
        s.get_seat("ws-a", 2).await.expect("q").map(|x| x.state),
        Some(SeatState::Lost)
    );
    let claimed = s
        .claim_seat("ws-a", "abcde", Some("Ann"), Utc::now())
        .await
        .expect("claim")
        .expect("seat");
    assert_eq!(
        s.seat_by_odehash("ws-a", "abcde").await.expect("q"),
        Some(claimed.clone())
    );
    s.touch_activity("ws-a", 1, Utc::now())
        .await
        .expect("touch");
    assert!(s
        .get_seat("ws-a", 1)
        .await
        .expect("q")
        .and_then(|x| x.last_activity_at)
        .is_some());
    s.set_seats_state("ws-a", Some(&[1]), SeatState::Destroyed)
        .await
        .expect("set");
    let states: Vec<_> = s
        .list_seats("ws-a")
        .await
        .expect("list")
        .into_iter()
        .map(|x| x.state)
        .collect();
    assert_eq!(states, vec![SeatState::Destroyed, SeatState::Lost]);
    assert_eq!(claimed.generation, 0);
    let reset = s
        .reset_seat("ws-a", claimed.seat, "fghij")
        .await
        .expect("reset")
        .expect("held seat");
    assert_eq!(
        (reset.generation, reset.odehash.as_deref()),
        (1, Some("fghij"))
    );
    assert_eq!(
        reset.name.as_deref(),
        Some("Ann"),
        "the learner's name is kept"
    );
    assert!(s
        .seat_by_odehash("ws-a", "abcde")
        .await
        .expect("q")
        .is_none());
    assert!(
        s.reset_seat("ws-a", 2, "klmno")
            .await
            .expect("reset")
            .is_none(),
        "a free seat has no learner to reset"
    );
    assert_eq!(s.count_seats_by_state().await.expect("count").len(), 2);
}

async fn counters_upsert_load_and_expire(s: Arc<dyn Store>) {
    s.save_throttle("a:10.0.0.1", 100, 1).await.expect("save");
    s.save_throttle("a:10.0.0.1", 100, 2).await.expect("update");
    s.save_throttle("a:10.0.0.2", 10, 5).await.expect("old");
    let loaded = s.load_throttle(50).await.expect("load");
    assert_eq!(loaded, vec![("a:10.0.0.1".to_string(), 100, 2)]);
    assert_eq!(
        s.load_throttle(0).await.expect("reload").len(),
        1,
        "old row deleted"
    );
}

/// Two stores on one PostgreSQL database stand for two control-plane replicas: a burst of
/// claims split across both gets distinct seats, the lowest first, and no claim is told
/// "full" while a seat is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_claim_distinct_seats_postgres() {
    let Some(url) = crate::test_support::fresh_database_url()
        .await
        .expect("create a test database")
    else {
        crate::test_support::skip_postgres("two_replicas_claim_distinct_seats_postgres");
        return;
    };
    let a: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.expect("open a"));
    let b: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.expect("open b"));
    a.create_instructor("i1", "ada", "h")
        .await
        .expect("instructor");
    // Several rounds, each a fresh workshop, so the two replicas' batches overlap in time.
    for round in 0..3 {
        let ws = format!("ws-{round}");
        a.insert_workshop(&new_workshop(&ws, &format!("CODE-{round}"), 600))
            .await
            .expect("insert");
        a.transition(&ws, &[WorkshopStatus::Created], WorkshopStatus::Running)
            .await
            .expect("t");
        let tasks: Vec<_> = (0..800)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let ws = ws.clone();
                tokio::spawn(async move {
                    s.claim_seat(&ws, &format!("r{i:04}"), None, Utc::now())
                        .await
                })
            })
            .collect();
        let mut got = BTreeSet::new();
        let mut full = 0;
        for t in tasks {
            match t.await.expect("join").expect("claim") {
                Some(seat) => assert!(got.insert(seat.seat), "seat {} given twice", seat.seat),
                None => full += 1,
            }
        }
        assert_eq!(got, (1..=600).collect::<BTreeSet<u32>>(), "round {round}");
        assert_eq!(full, 200, "round {round}: refused while seats were free");
    }
}

async fn agent_presence_command_queues_and_loads(s: Arc<dyn Store>) {
    use crate::{AgentPresence, AgentPresenceInfo};
    use chrono::SubsecRound;
    // Whole milliseconds: PostgreSQL keeps microseconds.
    let t0 = Utc::now().trunc_subsecs(3);
    let presence = |agent: &str, replica: &str, at| AgentPresence {
        agent_id: agent.into(),
        replica_id: replica.into(),
        info: AgentPresenceInfo {
            hostname: "h".into(),
            capacity: 8,
            memory_mb: Some(4096),
            cpu_millis: None,
            data_url: format!("http://{agent}"),
            images: vec!["claude".into()],
            ..Default::default()
        },
        data_token_sealed: vec![0, 1, 255],
        heartbeat_at: at,
    };
    s.upsert_agent_presence(&presence("ag1", "rA", t0))
        .await
        .expect("upsert");
    s.upsert_agent_presence(&presence("ag2", "rA", t0))
        .await
        .expect("upsert");
    let live = s.live_agent_presence(t0).await.expect("live");
    assert_eq!(
        live,
        vec![presence("ag1", "rA", t0), presence("ag2", "rA", t0)]
    );
    // ag1 moves to replica B; A's refresh no longer touches it, and A cannot delete it.
    let t1 = t0 + chrono::Duration::seconds(5);
    s.upsert_agent_presence(&presence("ag1", "rB", t1))
        .await
        .expect("move");
    assert!(!s.delete_agent_presence("ag1", "rA").await.expect("del"));
    assert_eq!(s.touch_agent_presence("rA", t1).await.expect("touch"), 1);
    let t2 = t1 + chrono::Duration::seconds(1);
    assert_eq!(s.touch_agent_presence("rB", t2).await.expect("touch"), 1);
    let live = s.live_agent_presence(t2).await.expect("live");
    assert_eq!(
        live.iter()
            .map(|p| (p.agent_id.as_str(), p.replica_id.as_str()))
            .collect::<Vec<_>>(),
        vec![("ag1", "rB")],
        "ag2's holder is stale at t2"
    );
    assert!(s.delete_agent_presence("ag2", "rA").await.expect("del"));

    // Command queues: per replica, in order, taken once; old ones of a dead replica dropped.
    s.push_agent_command("rB", "ag1", b"one", t0)
        .await
        .expect("push");
    s.push_agent_command("rC", "ag9", b"dead", t0)
        .await
        .expect("push");
    s.push_agent_command("rB", "ag1", b"two", t2)
        .await
        .expect("push");
    let got = s.take_agent_commands("rB", t0).await.expect("take");
    assert_eq!(
        got.iter()
            .map(|c| c.payload_sealed.as_slice())
            .collect::<Vec<_>>(),
        vec![b"one".as_slice(), b"two"]
    );
    assert!(s
        .take_agent_commands("rB", t0)
        .await
        .expect("take")
        .is_empty());
    assert!(
        s.take_agent_commands("rC", t1)
            .await
            .expect("take")
            .is_empty(),
        "stale dropped"
    );

    // Loads: seats of live workshops, with their limits (defaults: 512 MiB, 1 CPU).
    with_workshop(s.as_ref(), 3).await;
    s.place_seats(
        "ws-a",
        &[(1, "ag1".into()), (2, "ag1".into()), (3, "ag2".into())],
        SeatState::Creating,
    )
    .await
    .expect("place");
    assert!(
        s.agent_loads("").await.expect("loads").is_empty(),
        "ws-a is not live yet"
    );
    s.transition(
        "ws-a",
        &[WorkshopStatus::Created],
        WorkshopStatus::Provisioning,
    )
    .await
    .expect("t");
    let loads = s.agent_loads("").await.expect("loads");
    let l = |id: &str| {
        loads
            .iter()
            .find(|l| l.agent_id == id)
            .map(|l| (l.seats, l.memory_mb, l.cpu_millis))
    };
    assert_eq!(l("ag1"), Some((2, 1024, 2000)));
    assert_eq!(l("ag2"), Some((1, 512, 1000)));
    assert!(s.agent_loads("ws-a").await.expect("loads").is_empty());
}

/// The placement lock (issue 13): a second placer waits while one holds it, gets it once it
/// is released, and a lock dropped without release (an error path, a cancelled wait) frees it
/// too. On PostgreSQL the two placers are two sessions of the pool, as two replicas are.
async fn placement_lock_excludes_and_a_dropped_one_frees(s: Arc<dyn Store>) {
    use std::time::Duration;
    let held = s.lock_placement().await.expect("lock");
    let s2 = s.clone();
    let waiter = tokio::spawn(async move { s2.lock_placement().await.expect("second lock") });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "a second placer got the lock while it was held"
    );
    held.release().await.expect("release");
    let second = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the second placer gets the lock once it is released")
        .expect("task");
    // Dropped, not released: the next placer still gets it.
    drop(second);
    let third = tokio::time::timeout(Duration::from_secs(5), s.lock_placement())
        .await
        .expect("a dropped lock is freed")
        .expect("lock");
    // A placer cancelled while waiting leaves no lock behind either.
    let s3 = s.clone();
    let cancelled = tokio::spawn(async move { s3.lock_placement().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancelled.abort();
    let _ = cancelled.await;
    third.release().await.expect("release");
    let fourth = tokio::time::timeout(Duration::from_secs(5), s.lock_placement())
        .await
        .expect("a cancelled waiter holds nothing")
        .expect("lock");
    fourth.release().await.expect("release");
}

async fn lost_seats_move_exactly_once(s: Arc<dyn Store>) {
    with_workshop(s.as_ref(), 2).await;
    s.transition("ws-a", &[WorkshopStatus::Created], WorkshopStatus::Running)
        .await
        .expect("t");
    s.place_seats(
        "ws-a",
        &[(1, "ag1".into()), (2, "ag2".into())],
        SeatState::Ready,
    )
    .await
    .expect("place");
    assert!(s.lost_seats().await.expect("none").is_empty());
    assert_eq!(s.mark_agent_seats_lost("ag2").await.expect("lost"), 1);
    let lost = s.lost_seats().await.expect("lost");
    assert_eq!(
        lost,
        vec![crate::LostSeat {
            workshop_id: "ws-a".into(),
            seat: 2,
            agent_id: "ag2".into()
        }]
    );
    let at = Utc::now();
    // Two replicas race for the same seat: one wins, the other finds it gone.
    let (a, b) = tokio::join!(
        s.move_seat("ws-a", 2, "ag2", "ag1", true, at),
        s.move_seat("ws-a", 2, "ag2", "ag3", true, at)
    );
    assert_eq!(
        [a.expect("a"), b.expect("b")]
            .iter()
            .filter(|m| **m)
            .count(),
        1
    );
    let seat = s.get_seat("ws-a", 2).await.expect("q").expect("seat");
    assert_eq!(seat.state, SeatState::Creating);
    assert!(matches!(
        seat.agent_id.as_deref(),
        Some("ag1") | Some("ag3")
    ));
    assert!(s.lost_seats().await.expect("moved").is_empty());
    let moves = s.seat_moves("ws-a").await.expect("moves");
    assert_eq!(moves.len(), 1);
    assert_eq!((moves[0].seat, moves[0].from_agent.as_str()), (2, "ag2"));
    assert!((moves[0].moved_at - at).num_seconds().abs() <= 1);
    // A seat that is not lost moves only when asked to regardless (an instructor's move).
    assert!(!s
        .move_seat("ws-a", 1, "ag1", "ag2", true, at)
        .await
        .expect("not lost"));
    assert!(s
        .move_seat("ws-a", 1, "ag1", "ag2", false, at)
        .await
        .expect("move"));
    assert!(!s
        .move_seat("ws-a", 1, "ag1", "ag2", false, at)
        .await
        .expect("stale from"));
    assert_eq!(s.seat_moves("ws-a").await.expect("moves").len(), 2);
    // Seat 1 left ag1 for ag2: ag1's copy is stale. Seat 2 left ag2; it is elsewhere now.
    assert_eq!(
        s.seats_moved_from("ag1").await.expect("from ag1"),
        vec![("ws-a".to_string(), 1)]
    );
    assert_eq!(
        s.seats_moved_from("ag2").await.expect("from ag2"),
        vec![("ws-a".to_string(), 2)]
    );
    // Moved back to ag1: its copy is current again, ag2's is the stale one.
    assert!(s
        .move_seat("ws-a", 1, "ag2", "ag1", false, at)
        .await
        .expect("back"));
    assert!(s.seats_moved_from("ag1").await.expect("none").is_empty());
}
