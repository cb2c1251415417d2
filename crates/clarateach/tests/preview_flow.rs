//! Previews of learners' web apps (issue 12), end to end with `clarateach up` and real
//! sandboxes (network `none`): in a seat, `python3 -m http.server 8000` and a small WebSocket
//! echo server on 9000; their preview hosts `p{port}-{handle}.localhost:{port}` answer the
//! learner (signed in with a one-time ticket traded for a host cookie), an instructor of the
//! workshop, and anyone once the port is public; an anonymous client, another learner's token
//! and another seat's ticket are refused. The app never sees the session cookie and cannot set
//! cookies for other hosts. Needs root and bubblewrap.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clarateach_client::{Client, TerminalOptions};
use futures::{SinkExt, StreamExt};
use support::*;

const ECHO: &str = include_str!("preview_echo.py");

/// The in-seat side of the figures: the same GETs from the seat's own loopback (a new
/// connection each, as `http.server` closes them), and the same large download.
const DIRECT_BENCH: &str = r#"
import http.client, json, sys, time
def get(path):
    c = http.client.HTTPConnection("127.0.0.1", 8000)
    c.request("GET", path)
    r = c.getresponse()
    n = 0
    while True:
        b = r.read(1 << 16)
        if not b:
            break
        n += len(b)
    c.close()
    return n
N = int(sys.argv[1])
lat = []
for _ in range(N):
    t = time.perf_counter()
    get("/index.html")
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
t = time.perf_counter()
n = get("/big.bin")
print(json.dumps({"p50": lat[N // 2], "p99": lat[N * 99 // 100], "mbps": n / (time.perf_counter() - t) / 1e6}))
"#;

/// An HTTP client that resolves every preview host of the test to the control plane and
/// never follows redirects (the sign-in answers one).
fn preview_http(port: u16, hosts: &[&str]) -> reqwest::Client {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().expect("client")
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .expect("host")
        .to_string()
}

/// Signs in to a preview with a ticket URL; returns the session cookie pair `name=value`.
async fn sign_in(http: &reqwest::Client, ticket_url: &str) -> String {
    let r = http.get(ticket_url).send().await.expect("sign in");
    assert_eq!(r.status().as_u16(), 303, "{}", r.status());
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && !cookie.to_ascii_lowercase().contains("domain"));
    cookie.split(';').next().expect("pair").to_string()
}

async fn open_url(base: &str, token: &str, port: u16, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/session/previews/{port}/open{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_reach_the_seats_apps_for_their_learner_only_unless_public() {
    if let Some(why) = skip_reason() {
        eprintln!(
            "SKIPPED previews_reach_the_seats_apps_for_their_learner_only_unless_public: {why}"
        );
        println!(
            "SKIPPED previews_reach_the_seats_apps_for_their_learner_only_unless_public: {why}"
        );
        return;
    }
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let (up, base, token) = start_up(&dir, port);
    let admin = Client::new(&base, Some(token.clone())).expect("client");
    let ws = start_workshop(&admin, &workshop_request("preview", 2)).await;
    let a = join(&base, &ws.code).await;
    let b = join(&base, &ws.code).await;
    let http = reqwest::Client::new();
    put_file(&http, &base, &a.token, "echo.py", ECHO).await;
    put_file(
        &http,
        &base,
        &a.token,
        "index.html",
        "<h1>hello from seat</h1>",
    )
    .await;
    let learner = Client::new(&base, Some(a.token.clone())).expect("client");
    let mut term = learner
        .terminal(&TerminalOptions::default())
        .await
        .expect("terminal");
    term.send_input(
        "python3 -m http.server 8000 >/dev/null 2>&1 & python3 echo.py 9000 & echo started\r",
    )
    .await
    .expect("input");
    term.read_until(b"started", Duration::from_secs(10))
        .await
        .expect("servers started");

    // The list shows both ports as soon as they listen, private by default.
    let list: clarateach_core::preview::PreviewList =
        eventually("ports listening", Duration::from_secs(10), || async {
            let l: clarateach_core::preview::PreviewList = http
                .get(format!("{base}/api/session/previews"))
                .bearer_auth(&a.token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (l.previews.len() == 2).then_some(l)
        })
        .await;
    let handle = clarateach_core::preview::seat_handle(&ws.id, a.seat);
    let (web_host, ws_host) = (
        format!("p8000-{handle}.localhost"),
        format!("p9000-{handle}.localhost"),
    );
    assert_eq!(list.previews[0].port, 8000);
    assert_eq!(list.previews[0].url, format!("http://{web_host}:{port}/"));
    assert!(list.previews.iter().all(|p| !p.public));
    let other = clarateach_core::preview::seat_handle(&ws.id, b.seat);
    let other_host = format!("p8000-{other}.localhost");
    let ph = preview_http(port, &[&web_host, &ws_host, &other_host]);
    let web_url = format!("http://{web_host}:{port}/");

    // Anonymous, and another learner's token: refused.
    let anon = ph.get(&web_url).send().await.expect("anon");
    assert_eq!(anon.status().as_u16(), 401);
    let with_b = ph
        .get(&web_url)
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("b");
    assert_eq!(
        with_b.status().as_u16(),
        401,
        "a bearer token is not a preview session"
    );
    let with_admin = ph
        .get(&web_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("i");
    assert_eq!(with_admin.status().as_u16(), 401);
    // Learner B's ticket is for B's own seat: refused on A's host.
    let b_open: clarateach_core::preview::PreviewOpen = open_url(&base, &b.token, 8000, "")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(host_of(&b_open.url), other_host);
    let on_a = b_open.url.replace(&other_host, &web_host);
    let r = ph.get(&on_a).send().await.expect("b ticket");
    assert_eq!(r.status().as_u16(), 403);
    // A learner naming another seat still gets only their own seat's preview.
    let named = format!("?workshop_id={}&seat={}", ws.id, a.seat);
    let r: clarateach_core::preview::PreviewOpen = open_url(&base, &b.token, 8000, &named)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(host_of(&r.url), other_host);

    // The learner: ticket -> cookie -> the page.
    let a_open: clarateach_core::preview::PreviewOpen = open_url(&base, &a.token, 8000, "")
        .await
        .json()
        .await
        .expect("json");
    let cookie = sign_in(&ph, &a_open.url).await;
    let again = ph.get(&a_open.url).send().await.expect("reuse");
    assert_eq!(again.status().as_u16(), 401, "a ticket is single use");
    let page = ph
        .get(format!("{web_url}index.html"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers().get("content-security-policy").is_none(),
        "not the UI's policy"
    );
    assert_eq!(page.text().await.expect("body"), "<h1>hello from seat</h1>");
    // The cookie is this host's (a browser never sends it elsewhere); replayed on the other
    // seat's host it is refused.
    let r = ph
        .get(format!("http://{other_host}:{port}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("other");
    assert_eq!(r.status().as_u16(), 403);
    // The main origin never serves a seat's app.
    let r = http
        .get(format!("{base}/api/session/preview/8000/"))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("main");
    assert_eq!(r.status().as_u16(), 404);

    // The echo app: cookies in and out.
    let ws_ticket: clarateach_core::preview::PreviewOpen = open_url(&base, &a.token, 9000, "")
        .await
        .json()
        .await
        .expect("json");
    let ws_cookie = sign_in(&ph, &ws_ticket.url).await;
    let r = ph
        .get(format!("http://{ws_host}:{port}/"))
        .header("cookie", format!("mine=1; {ws_cookie}"))
        .send()
        .await
        .expect("echo http");
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(
        set,
        vec!["app=1; Path=/".to_string()],
        "only a host-only app cookie passes"
    );
    let body = r.text().await.expect("body");
    assert!(body.starts_with("cookies=mine=1;"), "{body}");
    assert!(
        !body.contains("clarateach_preview"),
        "the session cookie reached the app: {body}"
    );
    assert!(body.contains(&format!("host={ws_host}:{port}")), "{body}");

    // WebSocket round trip through the preview host.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{port}/socket"),
    )
    .expect("request");
    req.headers_mut()
        .insert("host", format!("{ws_host}:{port}").parse().expect("host"));
    req.headers_mut()
        .insert("cookie", ws_cookie.parse().expect("cookie"));
    let (mut sock, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    let t = Instant::now();
    sock.send(tokio_tungstenite::tungstenite::Message::text("ping-42"))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), sock.next())
        .await
        .expect("in time")
        .expect("frame")
        .expect("ok");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping-42");
    println!(
        "FIGURE preview websocket round trip: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // The instructor opens any seat's preview.
    let i_open = open_url(
        &base,
        &token,
        8000,
        &format!("?workshop_id={}&seat={}", ws.id, a.seat),
    )
    .await;
    let i_open: clarateach_core::preview::PreviewOpen = i_open.json().await.expect("json");
    let i_cookie = sign_in(&ph, &i_open.url).await;
    let r = ph
        .get(&web_url)
        .header("cookie", &i_cookie)
        .send()
        .await
        .expect("i page");
    assert_eq!(r.status().as_u16(), 200);

    // Public: anyone; private again: refused again. Only the learner toggles.
    let put = |t: &str, public: bool| {
        http.put(format!("{base}/api/session/previews/8000"))
            .bearer_auth(t)
            .json(&serde_json::json!({ "public": public }))
            .send()
    };
    let r = put(&token, true).await.expect("instructor put");
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = put(&a.token, true).await.expect("put");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        ph.get(&web_url)
            .send()
            .await
            .expect("anon")
            .status()
            .as_u16(),
        200
    );
    let r = ph
        .get(format!("http://{ws_host}:{port}/"))
        .send()
        .await
        .expect("9000");
    assert_eq!(r.status().as_u16(), 401, "public is per port");
    put(&a.token, false).await.expect("put");
    assert_eq!(
        ph.get(&web_url)
            .send()
            .await
            .expect("anon")
            .status()
            .as_u16(),
        401
    );

    // Figures: small-page latency and one large download, through the gateway (this client ->
    // control plane -> agent -> daemon -> app) next to a client inside the seat on its loopback.
    let n = 300;
    term.send_input("head -c 33554432 /dev/zero > big.bin && echo big-made\r")
        .await
        .expect("input");
    term.read_until(b"big-made", Duration::from_secs(30))
        .await
        .expect("big file");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = ph
            .get(format!("{web_url}index.html"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.expect("body");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let t = Instant::now();
    let mut big = ph
        .get(format!("{web_url}big.bin"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("big");
    let mut bytes = 0usize;
    while let Some(chunk) = big.chunk().await.expect("chunk") {
        bytes += chunk.len();
    }
    let gw_mbps = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
    assert_eq!(bytes, 32 << 20);
    let run = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(&a.token)
        .json(&serde_json::json!({
            "command": format!("python3 bench.py {n}"),
            "files": { "bench.py": DIRECT_BENCH },
            "timeout_s": 120,
        }))
        .send()
        .await
        .expect("run");
    let out: clarateach_core::RunResponse = run.json().await.expect("run json");
    let direct: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "direct bench output {:?} / {:?}: {e}",
            out.stdout, out.stderr
        )
    });
    let figure = format!(
        "FIGURE preview {n} GETs of a 24-byte page: gateway p50 {:.2} ms p99 {:.2} ms, direct in the seat p50 {:.2} ms p99 {:.2} ms; 32 MiB download: gateway {:.0} MB/s, direct {:.0} MB/s",
        lat[n / 2],
        lat[n * 99 / 100],
        direct["p50"].as_f64().unwrap_or(-1.0),
        direct["p99"].as_f64().unwrap_or(-1.0),
        gw_mbps,
        direct["mbps"].as_f64().unwrap_or(-1.0),
    );
    println!("{figure}");
    eprintln!("{figure}");

    admin.stop_workshop(&ws.id).await.expect("stop");
    let _ = up.stop("-TERM");
}
