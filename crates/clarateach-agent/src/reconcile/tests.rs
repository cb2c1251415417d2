//! Reconciler logic against a fake backend: adoption, desired-state reconciliation, failures
//! that are not retried in a loop, deletes of unknown seats, and shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatKey, SeatSpec};
use clarateach_core::{Limits, SeatState};
use clarateach_isolation::{
    Backend, BackendError, BackendKind, DaemonAddr, DaemonEndpoint, WorkspaceSpec, WorkspaceStatus,
};
use tokio::sync::mpsc;

use crate::identity::DaemonTokens;

#[derive(Default)]
struct Fake {
    seats: Mutex<BTreeMap<SeatKey, WorkspaceStatus>>,
    calls: Mutex<Vec<String>>,
    fail_create: Mutex<bool>,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().expect("lock").push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Backend for Fake {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }
    async fn create(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        self.log(format!("create {}", spec.key.seat));
        if *self.fail_create.lock().expect("lock") {
            return Err(BackendError::Unavailable("boom".into()));
        }
        self.seats
            .lock()
            .expect("lock")
            .entry(spec.key.clone())
            .or_insert(WorkspaceStatus::Stopped);
        Ok(())
    }
    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError> {
        self.log(format!("start {}", key.seat));
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.seats
            .lock()
            .expect("lock")
            .insert(key.clone(), WorkspaceStatus::Running);
        Ok(self.endpoint(key).expect("running"))
    }
    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.log(format!("stop {}", key.seat));
        if let Some(s) = self.seats.lock().expect("lock").get_mut(key) {
            *s = WorkspaceStatus::Stopped;
        }
        Ok(())
    }
    async fn destroy(&self, key: &SeatKey, delete_volume: bool) -> Result<(), BackendError> {
        self.log(format!("destroy {} {delete_volume}", key.seat));
        self.seats.lock().expect("lock").remove(key);
        Ok(())
    }
    async fn status(&self, key: &SeatKey) -> Result<WorkspaceStatus, BackendError> {
        Ok(self
            .seats
            .lock()
            .expect("lock")
            .get(key)
            .copied()
            .unwrap_or(WorkspaceStatus::Missing))
    }
    fn endpoint(&self, key: &SeatKey) -> Option<DaemonEndpoint> {
        let running = self.seats.lock().expect("lock").get(key) == Some(&WorkspaceStatus::Running);
        running.then(|| DaemonEndpoint {
            addr: DaemonAddr::Unix(format!("/fake/{}.sock", key.seat).into()),
            token: "backend".into(),
        })
    }
    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
        Ok(self
            .seats
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, s)| (k.clone(), *s))
            .collect())
    }
    fn volume_dir(&self, key: &SeatKey) -> PathBuf {
        PathBuf::from(format!("/fake/{}", key.seat))
    }
    async fn pause(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.log(format!("pause {}", key.seat));
        Ok(())
    }
    async fn resume(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.log(format!("resume {}", key.seat));
        Ok(())
    }
    /// Seats of the image "unbuilt" must be prepared (as a real backend builds a missing image).
    fn needs_prepare(&self, spec: &WorkspaceSpec) -> bool {
        spec.image.as_deref() == Some("unbuilt")
    }
    async fn prepare(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        if self.needs_prepare(spec) {
            self.log(format!("prepare {}", spec.key.seat));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
    async fn prepare_ahead(
        &self,
        workshop_id: &str,
        limits: &Limits,
        _image: Option<&str>,
        seats: u32,
    ) -> Result<u32, BackendError> {
        self.log(format!("ahead {workshop_id} {seats} {}", limits.disk_mb));
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(seats)
    }
    async fn release_ahead(&self, workshop_id: &str) -> Result<(), BackendError> {
        self.log(format!("give back {workshop_id}"));
        Ok(())
    }
}

fn key(seat: u32) -> SeatKey {
    SeatKey {
        workshop_id: "ws-test01".into(),
        seat,
    }
}

fn spec(seat: u32) -> SeatSpec {
    SeatSpec {
        starter: None,
        workshop_id: "ws-test01".into(),
        seat,
        image: None,
        limits: Limits::default(),
        env: BTreeMap::new(),
    }
}

/// Reads status reports until `want` of them have `state`.
async fn wait_reports(
    rx: &mut mpsc::Receiver<AgentMessage>,
    state: SeatState,
    want: usize,
) -> Vec<u32> {
    let mut seen = Vec::new();
    while seen.len() < want {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("report in time")
            .expect("open");
        if let AgentMessage::SeatStatus(r) = msg {
            if r.state == state {
                seen.push(r.seat);
            }
        }
    }
    seen.sort();
    seen
}

async fn setup(
    fake: Arc<Fake>,
    dir: &std::path::Path,
) -> (
    crate::StateHandle,
    mpsc::Receiver<AgentMessage>,
    Vec<clarateach_core::agent_proto::SeatReport>,
) {
    let tokens = DaemonTokens::load(dir).expect("tokens");
    let handle = super::spawn(fake, tokens).await.expect("spawn");
    let (tx, rx) = mpsc::channel(64);
    let reports = handle.connected(tx).await.expect("connected");
    (handle, rx, reports)
}

#[tokio::test]
async fn registered_creates_missing_seats_and_publishes_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let (handle, mut rx, reports) = setup(fake.clone(), dir.path()).await;
    assert!(reports.is_empty());
    handle
        .control(ControlMessage::Registered {
            heartbeat_interval_ms: 1000,
            desired: vec![spec(1), spec(2)],
            data_tls: None,
        })
        .await
        .expect("send");
    assert_eq!(wait_reports(&mut rx, SeatState::Ready, 2).await, vec![1, 2]);
    let ep = handle.route(&key(1)).expect("route");
    // The agent's own token, persisted, not whatever the backend echoed.
    let tokens = DaemonTokens::load(dir.path()).expect("tokens");
    assert_eq!(Some(ep.token.as_str()), tokens.get(&key(1)));
    assert_eq!(handle.used(), 2);
}

#[tokio::test]
async fn a_seat_whose_image_must_be_built_is_preparing_then_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let (handle, mut rx, _) = setup(fake.clone(), dir.path()).await;
    let mut unbuilt = spec(1);
    unbuilt.image = Some("unbuilt".into());
    handle
        .control(ControlMessage::Registered {
            heartbeat_interval_ms: 1000,
            desired: vec![unbuilt, spec(2)],
            data_tls: None,
        })
        .await
        .expect("send");
    // Only the seat that needs its image built reports `preparing`; both end up ready, and
    // the build came before the create.
    let mut seen = Vec::new();
    while seen.iter().filter(|(_, s)| *s == SeatState::Ready).count() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("report in time")
            .expect("open");
        if let AgentMessage::SeatStatus(r) = msg {
            seen.push((r.seat, r.state));
        }
    }
    let pos = |x: (u32, SeatState)| seen.iter().position(|y| *y == x);
    assert!(
        pos((1, SeatState::Preparing)) < pos((1, SeatState::Ready))
            && pos((1, SeatState::Preparing)).is_some(),
        "{seen:?}"
    );
    assert_eq!(pos((2, SeatState::Preparing)), None, "{seen:?}");
    let calls = fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).expect(c);
    assert!(at("prepare 1") < at("create 1"), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "prepare 2"), "{calls:?}");
}

#[tokio::test]
async fn reconnect_reconciles_adopted_workspaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    {
        let mut seats = fake.seats.lock().expect("lock");
        seats.insert(key(1), WorkspaceStatus::Running); // wanted, running: re-adopted as is
        seats.insert(key(2), WorkspaceStatus::Stopped); // wanted, stopped: started
        seats.insert(key(3), WorkspaceStatus::Running); // orphan: destroyed, volume kept
    }
    let mut tokens = DaemonTokens::load(dir.path()).expect("tokens");
    for s in [1, 3] {
        tokens.get_or_create(&key(s)).expect("token");
    }
    let (handle, mut rx, reports) = setup(fake.clone(), dir.path()).await;
    let states: Vec<(u32, SeatState)> = reports.iter().map(|r| (r.seat, r.state)).collect();
    assert_eq!(
        states,
        vec![
            (1, SeatState::Ready),
            (2, SeatState::Pending),
            (3, SeatState::Ready)
        ]
    );
    assert!(
        handle.route(&key(1)).is_some(),
        "adopted running seat is routable before registration"
    );
    assert!(
        fake.calls().is_empty(),
        "nothing touched before the control plane speaks: {:?}",
        fake.calls()
    );

    handle
        .control(ControlMessage::Registered {
            heartbeat_interval_ms: 1000,
            desired: vec![spec(1), spec(2), spec(4)],
            data_tls: None,
        })
        .await
        .expect("send");
    assert_eq!(wait_reports(&mut rx, SeatState::Ready, 2).await, vec![2, 4]);
    let calls = fake.calls();
    assert!(calls.contains(&"destroy 3 false".to_string()), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.ends_with(" 1")),
        "seat 1 must not be recreated: {calls:?}"
    );
    assert!(handle.route(&key(3)).is_none());
}

#[tokio::test]
async fn failures_are_reported_and_not_retried_until_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    *fake.fail_create.lock().expect("lock") = true;
    let (handle, mut rx, _) = setup(fake.clone(), dir.path()).await;
    handle
        .control(ControlMessage::CreateSeat(spec(1)))
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Failed, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.calls(), vec!["create 1".to_string()]);

    *fake.fail_create.lock().expect("lock") = false;
    handle
        .control(ControlMessage::CreateSeat(spec(1)))
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Ready, 1).await;
}

#[tokio::test]
async fn destroy_unknown_seat_deletes_volume_and_shutdown_stops_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let (handle, mut rx, _) = setup(fake.clone(), dir.path()).await;
    handle
        .control(ControlMessage::DestroySeat {
            workshop_id: "ws-test01".into(),
            seat: 9,
            delete_volume: true,
        })
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Destroyed, 1).await;
    assert!(fake.calls().contains(&"destroy 9 true".to_string()));

    let view = handle.create_local(key(5)).await.expect("local create");
    assert_eq!(view.state, "ready");
    assert_eq!(handle.list().await.expect("list").len(), 1);
    handle.shutdown().await;
    assert!(fake.calls().contains(&"stop 5".to_string()));
    assert!(handle.list().await.is_err(), "task ended");
}

#[tokio::test]
async fn pause_takes_the_seat_off_the_routes_and_resume_brings_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let (handle, mut rx, _) = setup(fake.clone(), dir.path()).await;
    handle
        .control(ControlMessage::CreateSeat(spec(1)))
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Ready, 1).await;
    let pause = || ControlMessage::PauseSeat {
        workshop_id: "ws-test01".into(),
        seat: 1,
    };
    handle.control(pause()).await.expect("send");
    wait_reports(&mut rx, SeatState::Paused, 1).await;
    assert!(
        handle.route(&key(1)).is_none(),
        "a frozen daemon is not routed"
    );
    assert_eq!(handle.used(), 1, "a paused seat still holds its place");
    let list = handle.list().await.expect("list");
    assert_eq!(list[0].state, "paused");
    // Asked again: reported again, not frozen twice.
    handle.control(pause()).await.expect("send");
    wait_reports(&mut rx, SeatState::Paused, 1).await;
    handle
        .control(ControlMessage::ResumeSeat {
            workshop_id: "ws-test01".into(),
            seat: 1,
        })
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Ready, 1).await;
    assert!(handle.route(&key(1)).is_some());
    let calls = fake.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("pause")).count(),
        1,
        "{calls:?}"
    );
    assert!(calls.contains(&"resume 1".to_string()), "{calls:?}");
    // A paused seat is destroyed like any other.
    handle.control(pause()).await.expect("send");
    wait_reports(&mut rx, SeatState::Paused, 1).await;
    handle
        .control(ControlMessage::DestroySeat {
            workshop_id: "ws-test01".into(),
            seat: 1,
            delete_volume: false,
        })
        .await
        .expect("send");
    wait_reports(&mut rx, SeatState::Destroyed, 1).await;
}

/// Polls the state task until the preparation of `ws` is no longer being made.
async fn prepared_state(handle: &crate::StateHandle, ws: &str) -> Option<crate::Prepared> {
    for _ in 0..500 {
        match handle.prepared(ws).await.expect("state task") {
            Some(crate::Prepared::Making { .. }) => {}
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{ws} still being prepared after 1 s");
}

async fn wait_call(fake: &Fake, call: &str) {
    for _ in 0..500 {
        if fake.calls().iter().any(|c| c == call) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no `{call}` in {:?}", fake.calls());
}

#[tokio::test]
async fn seats_prepared_ahead_are_taken_by_the_start_or_given_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let (handle, mut rx, _) = setup(fake.clone(), dir.path()).await;
    let prepare = |ws: &str| ControlMessage::PrepareSeats {
        workshop_id: ws.into(),
        seats: 3,
        limits: Limits::default(),
        image: None,
    };
    // Prepared, then started: the create ends the reservation, nothing is given back.
    handle.control(prepare("ws-test01")).await.expect("send");
    assert!(matches!(
        prepared_state(&handle, "ws-test01").await,
        Some(crate::Prepared::Ready { ready: 3, .. })
    ));
    let disk = Limits::default().disk_mb;
    assert!(fake.calls().contains(&format!("ahead ws-test01 3 {disk}")));
    handle
        .control(ControlMessage::CreateSeat(spec(1)))
        .await
        .expect("send");
    assert_eq!(wait_reports(&mut rx, SeatState::Ready, 1).await, vec![1]);
    assert_eq!(handle.prepared("ws-test01").await.expect("state"), None);
    // Preparing a workshop whose seats exist does nothing.
    handle.control(prepare("ws-test01")).await.expect("send");
    assert_eq!(handle.prepared("ws-test01").await.expect("state"), None);

    // Prepared, then deleted (or stopped before any start): given back.
    handle.control(prepare("ws-other")).await.expect("send");
    prepared_state(&handle, "ws-other").await;
    handle
        .control(ControlMessage::ReleasePrepared {
            workshop_id: "ws-other".into(),
        })
        .await
        .expect("send");
    wait_call(&fake, "give back ws-other").await;
    assert_eq!(handle.prepared("ws-other").await.expect("state"), None);
    assert!(!fake.calls().iter().any(|c| c == "give back ws-test01"));
    // A release for a workshop this agent never counted (after its restart) still reaches the
    // backend, which drops whatever it holds.
    handle
        .control(ControlMessage::ReleasePrepared {
            workshop_id: "ws-unknown".into(),
        })
        .await
        .expect("send");
    wait_call(&fake, "give back ws-unknown").await;
}
