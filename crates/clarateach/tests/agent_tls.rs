//! TLS between the control plane and its agent on loopback, with a CA this test makes (rcgen):
//! `serve --tls-cert/--tls-key` answers HTTPS and WSS on one listener, `agent --ca` verifies it
//! and registers over `wss://`, a learner joins over HTTPS and gets a terminal round trip
//! through the gateway over WSS; an agent given the wrong CA refuses to connect and never
//! registers. Needs root and bubblewrap (the agent runs a sandbox seat).

mod support;

use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A CA, and a server certificate it signs for `localhost` and 127.0.0.1; returns the CA's PEM.
fn make_pki(dir: &Path, name: &str, server: bool) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca.self_signed(&ca_key).expect("ca cert");
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).expect("write ca");
    if server {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
        std::fs::write(dir.join("server.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
    }
    ca.pem()
}

fn serve_tls(dir: &Path, port: u16) -> Proc {
    let d = dir.display().to_string();
    let args: Vec<String> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &d,
        "--heartbeat-ms",
        "300",
        "--tls-cert",
        &format!("{d}/server.pem"),
        "--tls-key",
        &format!("{d}/server.key"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(dir, "serve", &args, "control plane on https://")
}

fn agent_tls(dir: &Path, port: u16, token: &str, ca: &str, name: &str) -> Proc {
    agent_tls_data(dir, port, token, ca, name, "127.0.0.1:0", None)
}

fn agent_tls_data(
    dir: &Path,
    port: u16,
    token: &str,
    ca: &str,
    name: &str,
    listen: &str,
    data_url: Option<&str>,
) -> Proc {
    let mut args: Vec<String> = [
        "agent",
        "--id",
        AGENT_ID,
        "--control-plane",
        &format!("https://localhost:{port}"),
        "--ca",
        &dir.join(ca).display().to_string(),
        "--token",
        token,
        "--data-dir",
        &dir.join(format!("{name}-host")).display().to_string(),
        "--listen",
        listen,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(url) = data_url {
        args.extend(["--data-url".to_string(), url.to_string()]);
    }
    Proc::start(dir, name, &args, "listening on")
}

async fn agent_count(http: &reqwest::Client, base: &str, instructor: &str) -> usize {
    let v: serde_json::Value = http
        .get(format!("{base}/api/agents"))
        .bearer_auth(instructor)
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    v["agents"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_over_wss_with_a_private_ca_and_a_wrong_ca_is_refused() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("agent_over_wss_with_a_private_ca", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let ca_pem = make_pki(&dir, "good", true);
    make_pki(&dir, "wrong", false);
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let _cp = serve_tls(&dir, port);
    let instructor = instructor_token(&dir);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("https client");
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
            .await
            .is_err(),
        "the TLS listener must not answer plain HTTP"
    );

    // An agent that trusts another CA refuses the control plane's certificate.
    let token = agent_token(&dir);
    let wrong = agent_tls(&dir, port, &token, "wrong-ca.pem", "wrong");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = std::fs::read_to_string(dir.join("wrong.log")).unwrap_or_default();
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "the agent with the wrong CA must fail verification; log:\n{log}"
    );
    assert_eq!(agent_count(&http, &base, &instructor).await, 0);
    drop(wrong);

    // The right CA: registers over wss://.
    let _ag = agent_tls(&dir, port, &token, "good-ca.pem", "agent");
    eventually(
        "agent registered over wss",
        Duration::from_secs(20),
        || async { (agent_count(&http, &base, &instructor).await == 1).then_some(()) },
    )
    .await;

    // A workshop, a learner joining over HTTPS, a terminal round trip over WSS.
    let (mut term, learner, id) = learner_terminal(&http, &base, port, &dir, &instructor).await;
    echo_round_trip(&mut term).await;
    echo_figures(&mut term, "plain http:// data path").await;
    file_read_figures(&mut term, &http, &base, &learner, "plain http:// data path").await;
    let _ = id;
}

type Terminal =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Creates and starts a one-seat workshop, joins it and opens the learner's terminal over WSS.
async fn learner_terminal(
    http: &reqwest::Client,
    base: &str,
    port: u16,
    dir: &Path,
    instructor: &str,
) -> (Terminal, String, String) {
    let created: serde_json::Value = http
        .post(format!("{base}/api/workshops"))
        .bearer_auth(instructor)
        .json(&serde_json::json!({"name": "tls", "seats": 1}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let w = created.get("workshop").unwrap_or(&created);
    let (id, code) = (
        w["id"].as_str().expect("id").to_string(),
        w["code"].as_str().expect("code").to_string(),
    );
    let start = http
        .post(format!("{base}/api/workshops/{id}/start"))
        .bearer_auth(instructor)
        .send()
        .await
        .expect("start");
    assert!(start.status().is_success(), "{}", start.status());
    eventually("seat ready", Duration::from_secs(30), || async {
        let w: serde_json::Value = http
            .get(format!("{base}/api/workshops/{id}"))
            .bearer_auth(instructor)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let w = w.get("workshop").unwrap_or(&w);
        (w["seats_ready"] == 1).then_some(())
    })
    .await;
    let joined: serde_json::Value = http
        .post(format!("{base}/api/join"))
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("json");
    let learner = joined["token"].as_str().expect("token");

    let tls = clarateach_tls::client_config(Some(&dir.join("good-ca.pem"))).expect("tls");
    let mut req = format!("wss://localhost:{port}/api/session/terminal")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {learner}").parse().expect("header"),
    );
    let (term, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await
    .expect("terminal over wss");
    (term, learner.to_string(), id)
}

/// p50/p99 of 100 learner file reads (`GET /api/session/files/figure.txt` over HTTPS to the
/// gateway, which forwards each to the agent's data path): request sent to body read.
async fn file_read_figures(
    term: &mut Terminal,
    http: &reqwest::Client,
    base: &str,
    learner: &str,
    what: &str,
) {
    let input =
        serde_json::json!({"type": "input", "data": "echo fig > figure.txt; echo W$((1+1))W\r"})
            .to_string();
    term.send(Message::text(input)).await.expect("input");
    read_until(term, b"W2W").await.expect("file written");
    let mut samples = Vec::new();
    for _ in 0..100 {
        let started = std::time::Instant::now();
        let res = http
            .get(format!("{base}/api/session/files/figure.txt"))
            .bearer_auth(learner)
            .send()
            .await
            .expect("read");
        assert!(res.status().is_success(), "{}", res.status());
        let body = res.text().await.expect("body");
        assert!(body.contains("fig"), "{body}");
        samples.push(started.elapsed());
    }
    samples.sort();
    let (p50, p99) = (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    );
    let line = format!(
        "FIGURE learner file read through the gateway, {what}: p50 {:.2} ms, p99 {:.2} ms (n={})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
    eprintln!("{line}");
    println!("{line}");
}

/// Bytes of the terminal's output until `want` shows up (or 10 s pass).
async fn read_until(term: &mut Terminal, want: &[u8]) -> Result<(), String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = term.next().await {
            match msg {
                Message::Binary(b) => seen.extend_from_slice(&b),
                Message::Text(t) => seen.extend_from_slice(t.as_bytes()),
                _ => {}
            }
            if seen.windows(want.len()).any(|w| w == want) {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => Ok(()),
        _ => Err(String::from_utf8_lossy(&seen).into_owned()),
    }
}

async fn echo_round_trip(term: &mut Terminal) {
    let input = serde_json::json!({"type": "input", "data": "echo tls-$((6*7))\r"}).to_string();
    term.send(Message::text(input)).await.expect("input");
    if let Err(seen) = read_until(term, b"tls-42").await {
        panic!("echo over wss; got {seen:?}");
    }
}

/// p50/p99 of 100 command round trips: the time from sending `echo R$((i+1000))Z\r` as
/// terminal input to the evaluated `R<n>Z` arriving back (browser-side WSS to the gateway, the
/// data path to the agent, the seat's daemon and shell). Printed, not asserted.
async fn echo_figures(term: &mut Terminal, what: &str) {
    let mut samples = Vec::new();
    for i in 0..100u32 {
        let input = serde_json::json!({"type": "input", "data": format!("echo R$(({i}+1000))Z\r")})
            .to_string();
        let started = std::time::Instant::now();
        term.send(Message::text(input)).await.expect("input");
        let want = format!("R{}Z", i + 1000);
        if let Err(seen) = read_until(term, want.as_bytes()).await {
            panic!("round trip {i}; got {seen:?}");
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let (p50, p99) = (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    );
    let line = format!(
        "FIGURE echo command round trip through the gateway, {what}: p50 {:.2} ms, p99 {:.2} ms (n={})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
    eprintln!("{line}");
    println!("{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_over_a_tls_data_path() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("terminal_over_a_tls_data_path", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let ca_pem = make_pki(&dir, "good", true);
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let _cp = serve_tls(&dir, port);
    let instructor = instructor_token(&dir);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("https client");
    let token = agent_token(&dir);
    let data_port = free_port();
    let listen = format!("127.0.0.1:{data_port}");
    let _ag = agent_tls_data(
        &dir,
        port,
        &token,
        "good-ca.pem",
        "agent",
        &listen,
        Some(&format!("https://{listen}")),
    );
    eventually(
        "agent registered over wss",
        Duration::from_secs(20),
        || async { (agent_count(&http, &base, &instructor).await == 1).then_some(()) },
    )
    .await;
    eventually(
        "data-path certificate installed",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(dir.join("agent.log"))
                .ok()?
                .contains("data-path certificate installed")
                .then_some(())
        },
    )
    .await;
    // The control plane created its CA (key 0600) and the agent its key (0600).
    for key in [
        dir.join("data-ca-key.pem"),
        dir.join("agent-host").join("data-tls-key.pem"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    // The data port speaks only TLS now.
    assert!(
        reqwest::get(format!("http://{listen}/health"))
            .await
            .is_err(),
        "the agent's https:// data listener must not answer plain HTTP"
    );

    let (mut term, learner, id) = learner_terminal(&http, &base, port, &dir, &instructor).await;
    echo_round_trip(&mut term).await;
    echo_figures(&mut term, "TLS https:// data path").await;
    file_read_figures(&mut term, &http, &base, &learner, "TLS https:// data path").await;

    // The instructor's export streams from the agent over the TLS data path too.
    let res = http
        .get(format!("{base}/api/workshops/{id}/export"))
        .bearer_auth(&instructor)
        .send()
        .await
        .expect("export");
    assert_eq!(res.status().as_u16(), 200);
    let archive = res.bytes().await.expect("export body");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]));
    let names: Vec<String> = tar
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("figure.txt")),
        "the learner's file is in the export: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("EXPORT-ERROR")),
        "{names:?}"
    );
}
