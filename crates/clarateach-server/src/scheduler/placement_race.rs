//! Placement exactly once across replicas (issue 13), performed as the race it prevents: two
//! replicas (two registries on two connection pools of one PostgreSQL database, as two `serve`
//! processes have) start workshops at the same instant onto agents with room for only one of
//! them. Without the store's placement lock both read the same free room and both place,
//! overbooking the agents; with it exactly one start fits and the other is refused.

use std::sync::Arc;
use std::time::Duration;

use clarateach_core::agent_proto::{ControlMessage, SeatSpec};
use clarateach_core::{Limits, WorkshopStatus};
use clarateach_store::{NewWorkshop, PgStore, Store};
use tokio::sync::mpsc;

use super::registry::{AgentConn, RegistryHandle};
use super::{AgentScheduler, ProvisionError, Provisioner, Remote};
use crate::secrets::SecretBox;

/// Agent slots: each of the two agents takes this many seats.
const SLOTS: u32 = 3;
/// Seats per workshop: one workshop fits the two agents' 6 slots, two do not.
const SEATS: u32 = 4;
const ROUNDS: u32 = 12;

fn conn(id: &str) -> (AgentConn, mpsc::UnboundedReceiver<ControlMessage>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let c = AgentConn {
        agent_id: id.into(),
        hostname: id.into(),
        capacity: SLOTS,
        data_url: "http://127.0.0.1:9".into(),
        data_token: "data-secret".into(),
        token_id: format!("at-{id}"),
        tx,
        images: Vec::new(),
        image_details: Vec::new(),
        buildable: Vec::new(),
        memory_mb: None,
        cpu_millis: None,
    };
    (c, rx)
}

fn specs(workshop_id: &str) -> Vec<SeatSpec> {
    (1..=SEATS)
        .map(|seat| SeatSpec {
            workshop_id: workshop_id.into(),
            seat,
            image: None,
            limits: Limits::default(),
            env: Default::default(),
            starter: None,
        })
        .collect()
}

async fn provisioning_workshop(store: &dyn Store, id: &str) {
    store
        .insert_workshop(&NewWorkshop {
            id: id.into(),
            instructor_id: "i1".into(),
            name: id.into(),
            code: format!("RACE-{}", id.to_uppercase()),
            seats: SEATS,
            created_at: chrono::Utc::now(),
            image: None,
            limits: Limits::default(),
            api_key_enc: None,
        })
        .await
        .expect("insert workshop");
    assert!(store
        .transition(id, &[WorkshopStatus::Created], WorkshopStatus::Provisioning)
        .await
        .expect("transition"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_starting_at_once_never_overbook_an_agent() {
    let Some(url) = clarateach_store::test_support::fresh_database_url()
        .await
        .expect("create a test database")
    else {
        clarateach_store::test_support::skip_postgres(
            "two_replicas_starting_at_once_never_overbook_an_agent",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = SecretBox::load_or_create(&dir.path().join("secret.key")).expect("key");
    let beat = Duration::from_millis(200);
    let store_a: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.expect("pool A"));
    let store_b: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.expect("pool B"));
    let reg_a = RegistryHandle::spawn_shared(Remote::new(store_a.clone(), secrets.clone(), beat));
    let reg_b = RegistryHandle::spawn_shared(Remote::new(store_b.clone(), secrets, beat));
    // Each replica holds one agent; placement on either counts both.
    let (c1, _rx1) = conn("ag-1");
    let (c2, _rx2) = conn("ag-2");
    reg_a.register(c1, vec![]).await.expect("reg").expect("id");
    reg_b.register(c2, vec![]).await.expect("reg").expect("id");
    assert_eq!(reg_a.list().await.len(), 2, "A sees both agents");
    assert_eq!(reg_b.list().await.len(), 2, "B sees both agents");
    let a = AgentScheduler::new(store_a.clone(), reg_a);
    let b = AgentScheduler::new(store_b.clone(), reg_b);
    store_a
        .create_instructor("i1", "ada", "h")
        .await
        .expect("instructor");

    for round in 0..ROUNDS {
        let (wa, wb) = (format!("r{round}a"), format!("r{round}b"));
        provisioning_workshop(store_a.as_ref(), &wa).await;
        provisioning_workshop(store_a.as_ref(), &wb).await;
        let gate = Arc::new(tokio::sync::Barrier::new(2));
        let run = |sched: AgentScheduler, id: String, gate: Arc<tokio::sync::Barrier>| {
            tokio::spawn(async move {
                gate.wait().await;
                sched.place(&id, specs(&id)).await
            })
        };
        let ta = run(a.clone(), wa.clone(), gate.clone());
        let tb = run(b.clone(), wb.clone(), gate);
        let (ra, rb) = (ta.await.expect("task A"), tb.await.expect("task B"));

        let loads = store_a.agent_loads("").await.expect("loads");
        for l in &loads {
            assert!(
                l.seats <= SLOTS,
                "round {round}: agent {} holds {} seats, capacity {SLOTS} (A: {ra:?}, B: {rb:?})",
                l.agent_id,
                l.seats
            );
        }
        let placed: Vec<&str> = [(&wa, &ra), (&wb, &rb)]
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(w, _)| w.as_str())
            .collect();
        assert_eq!(
            placed.len(),
            1,
            "round {round}: exactly one start fits (A: {ra:?}, B: {rb:?})"
        );
        for r in [&ra, &rb].into_iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(ProvisionError::NoCapacity { needed: 4, .. })),
                "round {round}: the other start is refused for capacity: {r:?}"
            );
        }
        // Both workshops end, so the next round starts on empty agents.
        for w in [&wa, &wb] {
            store_a
                .transition(
                    w,
                    &[WorkshopStatus::Provisioning, WorkshopStatus::Running],
                    WorkshopStatus::Stopped,
                )
                .await
                .expect("stop");
        }
    }
}
