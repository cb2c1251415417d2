//! Export of a stopped workshop after the control plane restarts: the new process knows no
//! placement, so it must find each seat's volume through the agent the store recorded. And when
//! that agent is away, the export fails with 503 `agent_unavailable` naming the seat instead of
//! handing over an archive without the learner's files. `clarateach serve` and `clarateach
//! agent` as separate processes; needs root and bubblewrap.

mod support;

use std::io::Read;
use std::time::Duration;

use clarateach_client::Client;
use clarateach_core::WorkshopStatus;
use support::*;

/// `GET /api/workshops/{id}/export`: the status, and the body (the archive or the error).
async fn export(http: &reqwest::Client, base: &str, token: &str, id: &str) -> (u16, Vec<u8>) {
    let r = http
        .get(format!("{base}/api/workshops/{id}/export"))
        .bearer_auth(token)
        .send()
        .await
        .expect("export");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("export body").to_vec())
}

/// The content of `name` in a tar.gz export, if present.
fn entry(archive: &[u8], name: &str) -> Option<String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for e in tar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").display().to_string() == name {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read entry");
            return Some(s);
        }
    }
    None
}

/// Waits until the export answers 200, then checks it carries the learner's file.
async fn export_has_answer(what: &str, http: &reqwest::Client, base: &str, token: &str, id: &str) {
    let archive = eventually(what, Duration::from_secs(30), || async {
        let (status, body) = export(http, base, token, id).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(
        entry(&archive, "seat-01/work/answer.py").as_deref(),
        Some("print(42)\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_after_stop_survives_control_plane_restart() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("export_after_stop_survives_control_plane_restart", &why);
        return;
    }
    let SplitStack {
        tmp: _tmp,
        dir,
        port,
        base,
        cp,
        ag,
        instructor,
        agent_token,
    } = serve_and_agent();

    let admin = Client::new(&base, Some(instructor.clone())).expect("client");
    let http = reqwest::Client::new();
    let req = workshop_request("export-restart", 1);
    let ws = start_workshop(&admin, &req).await;
    let join = join(&base, &ws.code).await;
    put_file(&http, &base, &join.token, "work/answer.py", "print(42)\n").await;
    admin.stop_workshop(&ws.id).await.expect("stop");
    eventually("stopped", Duration::from_secs(30), || async {
        let w = admin.get_workshop(&ws.id).await.ok()?;
        (w.status == WorkshopStatus::Stopped).then_some(())
    })
    .await;

    // A new control plane process: nothing placed, nothing remembered; the store knows the agent.
    let _ = cp.stop("-KILL");
    let cp = serve(&dir, port);
    // 503 until the agent has reconnected to the new process.
    export_has_answer(
        "export after the restart",
        &http,
        &base,
        &instructor,
        &ws.id,
    )
    .await;

    // The agent away: a clear refusal naming the seat, not an archive missing its files.
    let _ = ag.stop("-TERM");
    let refusal = eventually("agent_unavailable", Duration::from_secs(30), || async {
        let (status, body) = export(&http, &base, &instructor, &ws.id).await;
        (status == 503).then_some(body)
    })
    .await;
    let err: serde_json::Value = serde_json::from_slice(&refusal).expect("error json");
    assert_eq!(err["code"], "agent_unavailable", "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("seat 1 ")),
        "{err}"
    );

    // Back again: the volume was kept, the export works.
    let ag = agent(&dir, port, &agent_token);
    export_has_answer(
        "export with the agent back",
        &http,
        &base,
        &instructor,
        &ws.id,
    )
    .await;
    let _ = ag.stop("-TERM");
    let _ = cp.stop("-TERM");
}
