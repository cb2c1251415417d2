//! Two `clarateach serve` replicas on one PostgreSQL with two real agents (sandbox seats):
//! a workshop created and started through replica A, learners joined through replica B,
//! terminals typed through both; then `kill -9` of A: the agents fail over to B, the learners'
//! terminals are live again through B (the time is printed: goal <= 5 s), and a stop and a new
//! start through B reach the agents that A held. Needs root, bubblewrap and
//! `CLARATEACH_TEST_DATABASE_URL` (scripts/test.sh starts a throwaway PostgreSQL); prints SKIP
//! otherwise. The agents run on this host's loopback, not in network namespaces of their own.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use clarateach_client::Client;
use support::*;

fn serve_replica(dir: &Path, port: u16, db: &str, name: &str) -> Proc {
    let args: Vec<String> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.display().to_string(),
        "--heartbeat-ms",
        "300",
        "--database-url",
        db,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(dir, name, &args, "control plane on")
}

/// `clarateach agent --id ID --control-plane A,B` (A first: it registers there).
fn agent_of_replicas(dir: &Path, urls: &str, token: &str, id: &str) -> Proc {
    let args: Vec<String> = [
        "agent",
        "--id",
        id,
        "--control-plane",
        urls,
        "--token",
        token,
        "--data-dir",
        &dir.join(format!("{id}-host")).display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(dir, id, &args, "listening on")
}

/// Whether agent `id`'s log says it registered with the replica at `base` after byte `from`.
fn connected_to(dir: &Path, id: &str, base: &str, from: usize) -> bool {
    let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
    log.get(from..).is_some_and(|tail| {
        tail.lines()
            .any(|l| l.contains("connected to the control plane") && l.contains(base))
    })
}

/// The replica agent `id`'s log says it registered with last (an agent that left a stalled
/// replica before the kill is already where the kill would move it).
fn last_connected(dir: &Path, id: &str) -> Option<String> {
    let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("connected to the control plane"))
        .filter_map(|l| l.split("control_plane=").nth(1)?.split_whitespace().next())
        .map(|u| u.trim_matches('"').trim_end_matches('/').to_string())
        .next_back()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_survive_the_kill_of_one() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("two_replicas_on_postgres_survive_the_kill_of_one", &why);
        return;
    }
    let Some(db) = clarateach_store::test_support::fresh_database_url()
        .await
        .expect("create a test database")
    else {
        clarateach_core::skip::report(
            "two_replicas_on_postgres_survive_the_kill_of_one",
            "needs CLARATEACH_TEST_DATABASE_URL (PostgreSQL)",
        );
        return;
    };
    let (_tmp, dir) = data_dir();
    // One data dir for both replicas: the same signing, secret and CA keys, as an operator
    // copies them to every replica.
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let a = serve_replica(&dir, port_a, &db, "serve-a");
    let b = serve_replica(&dir, port_b, &db, "serve-b");
    let instructor = instructor_token(&dir);
    let urls = format!("{base_a},{base_b}");
    let ids = ["rep-agent-1", "rep-agent-2"];
    let agents: Vec<Proc> = ids
        .iter()
        .map(|id| {
            agent_of_replicas(
                &dir,
                &urls,
                &agent_token_with(&dir, id, &["--database-url", &db]),
                id,
            )
        })
        .collect();
    for id in ids {
        eventually(
            "agent registered with A",
            Duration::from_secs(20),
            || async { connected_to(&dir, id, &base_a, 0).then_some(()) },
        )
        .await;
    }

    // Created and started through A, spread over both agents (2 seats each at most).
    let admin_a = Client::new(&base_a, Some(instructor.clone())).expect("client");
    let admin_b = Client::new(&base_b, Some(instructor.clone())).expect("client");
    let ws = start_workshop(&admin_a, &workshop_request("replicas", 4)).await;
    let seats = admin_b.list_seats(&ws.id).await.expect("seats through B");
    let mut hosts: Vec<String> = seats.iter().filter_map(|s| s.agent_id.clone()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts, ids, "seats spread over both agents");

    // Learners joined through B; terminals typed through both replicas.
    let mut learners = Vec::new();
    for _ in 0..4 {
        learners.push(join(&base_b, &ws.code).await);
    }
    for (i, l) in learners.iter().enumerate() {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        assert!(
            terminal_live(base, &l.token, &format!("before{i}")).await,
            "terminal of seat {} through {base}",
            l.seat
        );
    }

    // kill -9 A: both agents were registered there.
    let _ = a.stop("-KILL");
    let killed = Instant::now();
    for id in ids {
        eventually(
            "agent re-registered on B",
            Duration::from_secs(20),
            || async {
                (last_connected(&dir, id).as_deref() == Some(base_b.as_str())).then_some(())
            },
        )
        .await;
    }
    let registered = killed.elapsed();
    for (i, l) in learners.iter().enumerate() {
        eventually(
            "terminal live through B",
            Duration::from_secs(20),
            || async {
                terminal_live(&base_b, &l.token, &format!("after{i}"))
                    .await
                    .then_some(())
            },
        )
        .await;
    }
    let live = killed.elapsed();
    println!(
        "replica kill -> both agents re-registered on B: {:.2} s; all 4 learners' terminals \
         live through B: {:.2} s (goal <= 5 s)",
        registered.as_secs_f64(),
        live.as_secs_f64()
    );

    // Stop through B reaches the agents A held; a new start through B places on them again.
    admin_b.stop_workshop(&ws.id).await.expect("stop through B");
    eventually("stopped", Duration::from_secs(20), || async {
        let w = admin_b.get_workshop(&ws.id).await.ok()?;
        (w.status == clarateach_core::WorkshopStatus::Stopped).then_some(())
    })
    .await;
    let after = admin_b.list_seats(&ws.id).await.expect("seats");
    assert!(
        after
            .iter()
            .all(|s| s.state == clarateach_core::SeatState::Destroyed),
        "every seat destroyed by its agent: {after:?}"
    );
    let again = start_workshop(&admin_b, &workshop_request("again", 2)).await;
    let l = join(&base_b, &again.code).await;
    assert!(terminal_live(&base_b, &l.token, "again").await);
    admin_b.stop_workshop(&again.id).await.expect("stop");
    for ag in agents {
        let _ = ag.stop("-TERM");
    }
    let _ = b.stop("-TERM");
}
