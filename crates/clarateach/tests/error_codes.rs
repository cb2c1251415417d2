//! One error vocabulary across every service (issue 15): the same malformed request gets the
//! same `{code}` from the control plane (`POST /api/workshops`), from a seat's real workspace
//! daemon reached through the gateway (`POST /api/session/files-mkdir`, `PUT /api/session/files`)
//! and from the host agent's local API (`POST /vms`). Against real `clarateach serve` and
//! `clarateach agent` processes with a real sandbox seat; needs root and bubblewrap.

mod support;

use std::time::Duration;

use clarateach_client::Client;
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

/// One malformed request: a body and its content type.
struct Case {
    what: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    status: StatusCode,
    code: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "invalid JSON",
            // Broken at its second byte, so no service gets as far as a field name (`{"name": `
            // would be an unknown field, 422, to a route whose body has no `name`).
            body: b"{,}".to_vec(),
            content_type: "application/json",
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            what: "wrong content type",
            body: b"{\"path\": \"d\"}".to_vec(),
            content_type: "text/plain",
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            what: "too-large body",
            // Over every route's limit (the control plane's JSON and file limits are lowered to
            // 16 KiB for this test; the agent's is 64 KiB) and small enough to fit in
            // loopback socket buffers: a service answers 413 from the declared length and
            // closes, and a larger upload would break the pipe before the answer is read.
            body: {
                let mut b = b"{\"path\": \"".to_vec();
                b.extend(std::iter::repeat_n(b'a', 80 << 10));
                b.extend(b"\"}");
                b
            },
            content_type: "application/json",
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
    ]
}

async fn code_of(req: reqwest::RequestBuilder, case: &Case) -> (StatusCode, String) {
    // A service that refuses a too-large body from its declared length answers 413 and closes
    // with the body unread; now and then the connection is reset before the client has read
    // the answer (seen from the control plane's gateway routes, about one run in three; a
    // known issue reported with this test). Such a transport failure is retried, a wrong code
    // never is.
    let mut tries = 0;
    let res = loop {
        let attempt = req
            .try_clone()
            .expect("clonable request")
            .header("content-type", case.content_type)
            .body(case.body.clone())
            .send()
            .await;
        match attempt {
            Ok(res) => break res,
            Err(e) if case.status == StatusCode::PAYLOAD_TOO_LARGE && tries < 8 => {
                eprintln!("retrying after a reset connection: {e}");
                tries += 1;
            }
            Err(e) => panic!("send: {e:?}"),
        }
    };
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        body["code"].as_str().unwrap_or("<no code>").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_malformed_body_gets_the_same_code_from_every_service() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report(
            "the_same_malformed_body_gets_the_same_code_from_every_service",
            &why,
        );
        return;
    }
    // Inherited by `clarateach serve` (only this test runs in this binary).
    std::env::set_var("CLARATEACH_BODY_LIMIT_KB", "16");
    std::env::set_var("CLARATEACH_FILE_BODY_LIMIT_KB", "16");
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cp = serve(&dir, port);
    let instructor = instructor_token(&dir);
    let agent_token = agent_token(&dir);
    let agent_port = free_port();
    let args: Vec<String> = [
        "agent",
        "--id",
        AGENT_ID,
        "--control-plane",
        &base,
        "--token",
        &agent_token,
        "--data-dir",
        &dir.join("agent-host").display().to_string(),
        "--listen",
        &format!("127.0.0.1:{agent_port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ag = Proc::start(&dir, "agent", &args, "listening on");

    let admin = Client::new(&base, Some(instructor.clone())).expect("client");
    let ws = start_workshop(&admin, &workshop_request("Codes", 1)).await;
    let learner = join(&base, &ws.code).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http");

    for case in cases() {
        eprintln!("case: {}", case.what);
        let answers = [
            (
                "control plane POST /api/workshops",
                code_of(
                    http.post(format!("{base}/api/workshops"))
                        .bearer_auth(&instructor),
                    &case,
                )
                .await,
            ),
            (
                "daemon via gateway POST /api/session/files-mkdir",
                code_of(
                    http.post(format!("{base}/api/session/files-mkdir"))
                        .bearer_auth(&learner.token),
                    &case,
                )
                .await,
            ),
            (
                "daemon via gateway PUT /api/session/files/x",
                code_of(
                    http.put(format!("{base}/api/session/files/x"))
                        .bearer_auth(&learner.token),
                    &case,
                )
                .await,
            ),
            (
                "agent POST /vms",
                code_of(
                    http.post(format!("http://127.0.0.1:{agent_port}/vms"))
                        .bearer_auth(&agent_token),
                    &case,
                )
                .await,
            ),
        ];
        for (service, (status, code)) in &answers {
            assert_eq!(
                (*status, code.as_str()),
                (case.status, case.code),
                "{}: {service}",
                case.what
            );
        }
    }

    // The daemon still works after all that: a well-formed request goes through.
    let ok = http
        .post(format!("{base}/api/session/files-mkdir"))
        .bearer_auth(&learner.token)
        .json(&serde_json::json!({"path": "made"}))
        .send()
        .await
        .expect("mkdir");
    assert!(ok.status().is_success(), "{}", ok.status());

    admin.stop_workshop(&ws.id).await.expect("stop");
    ag.stop("-TERM");
    cp.stop("-TERM");
}
