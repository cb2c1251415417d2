//! Issue 10's presenting tools through `clarateach up` with real sandboxes: an announcement
//! reaches every learner's event stream; a spotlighted terminal is seen live by another
//! learner, whose input on the spotlight is dropped (the attack: typing into the presenter's
//! shell), while a learner of another workshop gets nothing; every interactive terminal
//! connection is recorded host-side as asciicast v2 (outside the seat), listed and fetched by
//! the instructor only, and carried by the workshop export. Needs root and bubblewrap.

mod support;

use std::time::Duration;

use clarateach_client::{Client, Terminal, TerminalEvent, TerminalOptions};
use clarateach_core::CreateWorkshopRequest;
use futures::StreamExt;
use support::*;

fn request(name: &str, seats: u32) -> CreateWorkshopRequest {
    workshop_request(name, seats)
}

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http", "ws", 1))
}

/// Reads text frames of the event stream until one satisfies `want`.
async fn event_until(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("json event");
            if want(&v) {
                return v;
            }
        }
    }
}

async fn events(
    base: &str,
    token: &str,
) -> Terminal<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    Terminal::connect(&ws_url(base, "/api/session/events"), Some(token))
        .await
        .expect("event stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_spotlight_and_record_through_up() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("announce_spotlight_and_record_through_up", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let (_up, base, token) = start_up(&dir, port);
    let admin = Client::new(&base, Some(token.clone())).expect("client");
    let http = reqwest::Client::new();
    let ws = start_workshop(&admin, &request("present", 2)).await;
    let other = start_workshop(&admin, &request("other", 1)).await;
    let (ada, bob) = (join(&base, &ws.code).await, join(&base, &ws.code).await);
    let eve = join(&base, &other.code).await;

    // Announcements: both learners' streams get it live; a reload (a new stream) gets it too.
    let mut ada_events = events(&base, &ada.token).await.into_inner();
    let mut bob_events = events(&base, &bob.token).await.into_inner();
    let mut eve_events = events(&base, &eve.token).await.into_inner();
    for s in [&mut ada_events, &mut bob_events] {
        event_until(s, |v| v["type"] == "announcements").await;
    }
    let a = admin
        .announce(&ws.id, "Break until 11:00")
        .await
        .expect("announce");
    for s in [&mut ada_events, &mut bob_events] {
        let v = event_until(s, |v| {
            v["type"] == "announcements"
                && v["announcements"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
        assert_eq!(v["announcements"][0]["message"], "Break until 11:00");
    }
    let mut reloaded = events(&base, &bob.token).await.into_inner();
    let v = event_until(&mut reloaded, |v| v["type"] == "announcements").await;
    assert_eq!(
        v["announcements"][0]["id"],
        a.id.as_str(),
        "a reload sees it"
    );

    // Ada's terminal, with a marker in its output.
    let ada_client = Client::new(&base, Some(ada.token.clone())).expect("client");
    let mut ada_term = ada_client
        .terminal(&TerminalOptions::default())
        .await
        .expect("terminal");
    ada_term.resize(100, 30).await.expect("resize");
    ada_term
        .send_input("echo SPOT-$((6*7))\r")
        .await
        .expect("input");
    ada_term
        .read_until(b"SPOT-42", Duration::from_secs(10))
        .await
        .expect("echo");

    // Spotlight on Ada's terminal: Bob's event stream says so and his Presenter tab shows it.
    admin
        .spotlight(&ws.id, ada.seat, None)
        .await
        .expect("spotlight");
    let v = event_until(&mut bob_events, |v| {
        v["type"] == "spotlight" && !v["spotlight"].is_null()
    })
    .await;
    assert_eq!(v["spotlight"]["seat"], ada.seat);
    let mut bob_view =
        Terminal::connect(&ws_url(&base, "/api/session/spotlight"), Some(&bob.token))
            .await
            .expect("spotlight stream");
    bob_view
        .read_until(b"SPOT-42", Duration::from_secs(10))
        .await
        .expect("Bob sees Ada's scrollback");
    ada_term
        .send_input("echo LIVE-$((7*6))\r")
        .await
        .expect("input");
    bob_view
        .read_until(b"LIVE-42", Duration::from_secs(10))
        .await
        .expect("Bob sees Ada's terminal live");

    // The attack: Bob types into the spotlight. Nothing reaches Ada's shell.
    bob_view
        .send_input("echo PWNED-$((1+1)) > /workspace/pwned\r")
        .await
        .expect("Bob's frame is accepted by the socket");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(&ada.token)
        .json(&serde_json::json!({"command": "ls /workspace; cat /workspace/pwned 2>&1 || true", "timeout_s": 10}))
        .send()
        .await
        .expect("run")
        .json::<serde_json::Value>()
        .await
        .expect("run json");
    assert!(
        !run["stdout"].as_str().unwrap_or("").contains("PWNED"),
        "a learner's input on the spotlight reached the presenter's shell: {run}"
    );
    ada_term.send_input("echo AFTER\r").await.expect("input");
    let seen = ada_term
        .read_until(b"AFTER", Duration::from_secs(10))
        .await
        .expect("after");
    assert!(
        !String::from_utf8_lossy(&seen).contains("PWNED"),
        "Bob's keystrokes showed up in Ada's terminal"
    );

    // Eve, of another workshop, sees no spotlight and cannot open one.
    let v = event_until(&mut eve_events, |v| v["type"] == "spotlight").await;
    assert!(v["spotlight"].is_null(), "{v}");
    let eve_try =
        Terminal::connect(&ws_url(&base, "/api/session/spotlight"), Some(&eve.token)).await;
    assert!(
        eve_try.is_err(),
        "another workshop's learner opened the spotlight"
    );
    let st = http
        .get(format!("{base}/api/session/spotlight"))
        .bearer_auth(&eve.token)
        .send()
        .await
        .expect("get");
    let body: serde_json::Value = st.json().await.expect("json");
    assert!(body["spotlight"].is_null(), "{body}");

    // Stop: Bob's stream closes with 4000 and his event stream says null.
    admin.spotlight_off(&ws.id).await.expect("off");
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), bob_view.next_event())
            .await
            .expect("close in time")
        {
            Ok(Some(TerminalEvent::Closed { code, .. })) => break code,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break None,
        }
    };
    assert_eq!(closed, Some(4000));
    event_until(&mut bob_events, |v| {
        v["type"] == "spotlight" && v["spotlight"].is_null()
    })
    .await;

    // Recordings: Ada's interactive connection was recorded host-side.
    ada_term.close().await.ok();
    let rec = eventually("a recording", Duration::from_secs(10), || async {
        let list = admin.recordings(&ws.id, ada.seat).await.ok()?;
        list.recordings
            .into_iter()
            .find(|r| r.bytes > 0 && r.session == "main")
    })
    .await;
    let cast = eventually("the cast complete", Duration::from_secs(10), || async {
        let bytes = admin.recording(&ws.id, ada.seat, &rec.name).await.ok()?;
        let text = String::from_utf8(bytes).ok()?;
        text.contains("AFTER").then_some(text)
    })
    .await;
    let header: serde_json::Value =
        serde_json::from_str(cast.lines().next().expect("header")).expect("header json");
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(100), Some(30))
    );
    assert!(cast.contains("SPOT-42") && cast.contains("LIVE-42"));
    assert!(
        !cast.contains("PWNED"),
        "Bob's input is not in Ada's recording"
    );
    let on_host = dir
        .join("recordings")
        .join(&ws.id)
        .join(format!("seat-{}", ada.seat))
        .join(&rec.name);
    assert!(on_host.is_file(), "{} missing", on_host.display());
    // The seat cannot see it: the learner's own view of the file system has no such path.
    let run = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(&ada.token)
        .json(&serde_json::json!({"command": format!("find / -name '{}' 2>/dev/null | head -1", rec.name), "timeout_s": 20}))
        .send()
        .await
        .expect("run")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(run["stdout"].as_str().map(str::trim), Some(""), "{run}");
    // Learners cannot list recordings, not even their own seat's.
    let st = http
        .get(format!(
            "{base}/api/workshops/{}/seats/{}/recordings",
            ws.id, ada.seat
        ))
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(st, reqwest::StatusCode::UNAUTHORIZED);

    // The export carries the casts.
    let archive = http
        .get(format!("{base}/api/workshops/{}/export", ws.id))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("bytes");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]));
    let names: Vec<String> = tar
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let want = format!("recordings/seat-{:02}/{}", ada.seat, rec.name);
    assert!(names.contains(&want), "{want} not in {names:?}");
}
