//! `clarateach serve` and `clarateach agent` as separate processes: restarting the control
//! plane keeps seats reachable (the agent reconnects and re-registers), and `kill -9` of the
//! agent followed by a restart brings the seats back with their files and their terminal
//! sessions (the daemons live in the sandboxes, not in the agent). Needs root and bubblewrap.

mod support;

use std::time::Duration;

use clarateach_client::{Client, TerminalOptions};
use support::*;

async fn file_reachable(http: &reqwest::Client, base: &str, token: &str) -> Option<String> {
    let r = http
        .get(format!("{base}/api/session/files/keep.txt"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["content"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_agent_restarts_keep_seats() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("control_plane_and_agent_restarts_keep_seats", &why);
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

    let admin = Client::new(&base, Some(instructor)).expect("client");
    let http = reqwest::Client::new();
    let req = workshop_request("restart", 2);
    let ws = start_workshop(&admin, &req).await;
    let join = join(&base, &ws.code).await;
    put_file(&http, &base, &join.token, "keep.txt", "survives restarts").await;
    let learner = Client::new(&base, Some(join.token.clone())).expect("client");
    let mut term = learner
        .terminal(&TerminalOptions::default())
        .await
        .expect("terminal");
    term.send_input("export MARK=still-$((40+2)); echo marked-$((1+1))\r")
        .await
        .expect("input");
    // Wait until the shell ran it: killing the control plane right after sending could drop the
    // input in the gateway before it reached the seat.
    term.read_until(b"marked-2", Duration::from_secs(10))
        .await
        .expect("the shell ran the export");

    // Control plane restart (kill -9): the agent reconnects; the seat answers again.
    let _ = cp.stop("-KILL");
    let cp = serve(&dir, port);
    let content = eventually(
        "seat reachable after control-plane restart",
        Duration::from_secs(30),
        || file_reachable(&http, &base, &join.token),
    )
    .await;
    assert_eq!(content, "survives restarts");

    // Agent kill -9 and restart: seats re-adopted, files intact, the shell session survived.
    let agent_pid = ag.child.id();
    let _ = ag.stop("-KILL");
    let ag = agent(&dir, port, &agent_token);
    let content = eventually(
        "seat reachable after agent restart",
        Duration::from_secs(30),
        || file_reachable(&http, &base, &join.token),
    )
    .await;
    assert_eq!(content, "survives restarts");
    let mut term = learner
        .terminal(&TerminalOptions::default())
        .await
        .expect("terminal again");
    term.send_input("echo $MARK\r").await.expect("input");
    term.read_until(b"still-42\r\n", Duration::from_secs(10))
        .await
        .expect("same shell after the agent restart");

    admin.stop_workshop(&ws.id).await.expect("stop");
    let keep = [cp.child.id(), ag.child.id(), agent_pid];
    eventually(
        "no seat process after stop",
        Duration::from_secs(20),
        || async {
            processes_using(&dir.join("agent-host"), &keep)
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let _ = ag.stop("-TERM");
    let _ = cp.stop("-TERM");
}
