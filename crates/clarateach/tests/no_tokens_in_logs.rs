//! No credential reaches a log: a real `clarateach up` at debug level, every kind of route used
//! with every kind of credential (instructor token, session, learner tokens, tickets, reconnect
//! codes), including the refused `?token=` forms, then its whole log is searched for each.

mod support;

use std::time::Duration;

use clarateach_client::{Client, Terminal, TerminalOptions};
use clarateach_core::{JoinRequest, TicketRequest};
use support::{data_dir, free_port, skip_reason, start_workshop, workshop_request, Proc};

#[test]
fn no_token_ticket_or_reconnect_code_in_the_debug_log() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("no_token_ticket_or_reconnect_code_in_the_debug_log", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let args: Vec<String> = [
        "up",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.display().to_string(),
        "--heartbeat-ms",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let up = Proc::start_logging(&dir, "up", &args, "ClaraTeach is up", "debug");
    let base = format!("http://127.0.0.1:{port}");
    let instructor = support::instructor_token(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secrets = rt.block_on(exercise(&base, &instructor));
    let status = up.stop("-INT");
    assert!(status.success(), "up exited with {status}");

    let log = std::fs::read_to_string(dir.join("up.log")).expect("log");
    assert!(
        log.contains("DEBUG") && log.contains("learner joined"),
        "the log is at debug level and saw the joins:\n{}",
        &log[..log.len().min(2000)]
    );
    for (what, secret) in &secrets {
        assert!(secret.len() >= 5, "{what} is empty");
        assert!(!log.contains(secret.as_str()), "{what} appears in the log");
    }
    println!(
        "checked {} secrets against {} log lines",
        secrets.len(),
        log.lines().count()
    );
}

/// Uses every route; returns every credential that was in play.
async fn exercise(base: &str, instructor: &str) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut secrets = vec![("instructor token".to_string(), instructor.to_string())];
    let session: serde_json::Value = http
        .post(format!("{base}/api/instructor/sessions"))
        .bearer_auth(instructor)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let session = session["token"]
        .as_str()
        .expect("session token")
        .to_string();
    secrets.push(("session token".into(), session.clone()));
    let admin = Client::new(base, Some(session.clone())).expect("client");
    let ws = start_workshop(&admin, &workshop_request("Logs", 2)).await;
    let anonymous = Client::new(base, None).expect("client");
    let join = |odehash: Option<String>| JoinRequest {
        code: ws.code.clone(),
        odehash,
        name: Some("Ada".into()),
    };
    let first = anonymous.join(&join(None)).await.expect("join");
    let again = anonymous
        .join(&join(Some(first.odehash.clone())))
        .await
        .expect("rejoin");
    let _ = anonymous.join(&join(Some("zzzzz".into()))).await; // refused guess
    secrets.push(("learner token".into(), first.token.clone()));
    secrets.push(("second learner token".into(), again.token.clone()));
    secrets.push(("reconnect code".into(), first.odehash.clone()));

    let learner = Client::new(base, Some(again.token.clone())).expect("client");
    support::put_file(&http, base, &again.token, "notes.txt", "hi").await;
    for url in [
        format!("{base}/api/me"),
        format!("{base}/api/session/files?path=/"),
        format!("{base}/api/session/files/notes.txt"),
    ] {
        let res = http
            .get(&url)
            .bearer_auth(&again.token)
            .send()
            .await
            .expect("get");
        assert!(res.status().is_success(), "{url}: {}", res.status());
    }
    // Refused forms: credentials in the URL.
    for url in [
        format!("{base}/api/me?token={}", again.token),
        format!("{base}/api/session/files?token={}", again.token),
        format!("{base}/api/workshops?token={instructor}"),
        format!("{base}/api/workshops?token={session}"),
    ] {
        let res = http.get(&url).send().await.expect("get");
        assert_eq!(res.status(), 401, "{url}");
    }
    let ws_base = base.replacen("http://", "ws://", 1);
    let refused = Terminal::connect(
        &format!("{ws_base}/api/session/terminal?token={}", again.token),
        None,
    )
    .await;
    assert!(refused.is_err(), "a token in a WebSocket URL");

    // Tickets: learner interactive, instructor watch; each used once and replayed once.
    let mut term = learner
        .terminal_with_ticket(&TerminalOptions::default(), &TicketRequest::default())
        .await
        .expect("terminal by ticket");
    term.send_input("echo via-ticket-$((6*7))\r")
        .await
        .expect("input");
    term.read_until(b"via-ticket-42", Duration::from_secs(15))
        .await
        .expect("echo");
    drop(term);
    let watch = TicketRequest {
        workshop_id: Some(ws.id.clone()),
        seat: Some(again.seat),
        mode: Some("watch".into()),
    };
    let ticket = admin.session_ticket(&watch).await.expect("ticket");
    secrets.push(("instructor ticket".into(), ticket.ticket.clone()));
    let url = format!(
        "{ws_base}/api/session/terminal?ticket={}&workshop_id={}&seat={}&mode=watch",
        ticket.ticket, ws.id, again.seat
    );
    let viewer = Terminal::connect(&url, None)
        .await
        .expect("watch by ticket");
    drop(viewer);
    assert!(
        Terminal::connect(&url, None).await.is_err(),
        "replayed ticket"
    );
    let learner_ticket = learner
        .session_ticket(&TicketRequest::default())
        .await
        .expect("ticket");
    secrets.push(("learner ticket".into(), learner_ticket.ticket.clone()));
    let url = format!(
        "{ws_base}/api/session/files/watch?ticket={}",
        learner_ticket.ticket
    );
    drop(
        Terminal::connect(&url, None)
            .await
            .expect("file watch by ticket"),
    );

    // Instructor routes with the session, a seat reset, the rejoin, the export, the revoke.
    admin.list_workshops().await.expect("list");
    admin.list_seats(&ws.id).await.expect("seats");
    let reset = admin.reset_seat(&ws.id, again.seat).await.expect("reset");
    secrets.push(("new reconnect code".into(), reset.odehash.clone()));
    let rejoined = anonymous
        .join(&join(Some(reset.odehash.clone())))
        .await
        .expect("rejoin after reset");
    secrets.push(("token after reset".into(), rejoined.token.clone()));
    let stale = http
        .get(format!("{base}/api/me"))
        .bearer_auth(&again.token)
        .send()
        .await
        .expect("me");
    assert_eq!(stale.status(), 401);
    let export = http
        .get(format!("{base}/api/workshops/{}/export", ws.id))
        .bearer_auth(&session)
        .send()
        .await
        .expect("export");
    assert!(export.status().is_success());
    let _ = export.bytes().await;
    let _ = http.get(format!("{base}/metrics")).send().await;
    let revoked = http
        .delete(format!("{base}/api/instructor/sessions"))
        .bearer_auth(&session)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    let admin = Client::new(base, Some(instructor.to_string())).expect("client");
    admin.stop_workshop(&ws.id).await.expect("stop");
    secrets
}
