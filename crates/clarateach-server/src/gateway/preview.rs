//! Preview hosts (issue 12): a request whose `Host` is `p{port}-{seat handle}.{preview domain}`
//! is never the control plane's: it goes, whole and streamed, to `127.0.0.1:{port}` inside the
//! seat (gateway -> agent's data path -> the seat's daemon, `preview/{port}/...`), WebSocket
//! upgrades spliced byte for byte. Nothing of the main origin is reachable there: no API route,
//! no UI, no main-origin cookie (browsers keep host-only cookies per host), no token.
//!
//! Access: a session cookie of that one preview host, set by `/__clarateach/auth?ticket=`, a
//! one-time ticket the main origin issued to the seat's learner or an instructor of its
//! workshop (`POST /api/session/previews/{port}/open`); or anyone, when the learner made the
//! port public. The cookie is never forwarded to the seat's app, and the app cannot set a cookie
//! for another host (a `Set-Cookie` with `Domain` is dropped) or overwrite the session cookie.
//! Tickets and sessions live in memory: a restart signs preview viewers out. Public ports are in
//! the store (`PreviewStore`): a restart or another replica keeps each port as the learner set
//! it, and a reset seat starts with every port private.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clarateach_core::hop::{forward_headers, is_upgrade};
use clarateach_core::preview::{parse_preview_host, preview_label, PreviewTarget};
use clarateach_core::{ErrorCode, TerminalMode};
use hyper_util::rt::TokioIo;

use super::access::{Role, SeatAccess};
use super::preview_grants::SESSION_TTL;
pub use super::preview_grants::{PreviewGrant, Previews};
use crate::auth::Learner;
use crate::error::ApiError;
use crate::state::AppState;

/// The preview host's own session cookie.
pub const COOKIE: &str = "clarateach_preview";
/// Where a preview host trades a ticket for its cookie.
pub const AUTH_PATH: &str = "/__clarateach/auth";
/// The preview domain for a request that reached us as `host`: the configured one, else
/// `localhost` with the port in `host`.
pub fn domain(state: &AppState, host: &str) -> String {
    if let Some(d) = &state.config().preview_domain {
        return d.clone();
    }
    match host.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("localhost:{port}")
        }
        _ => "localhost".into(),
    }
}

/// The URL of a seat's preview, for a browser that reached the control plane as `host`.
pub fn url(state: &AppState, host: &str, workshop_id: &str, seat: u32, port: u16) -> String {
    let scheme = match &state.config().public_url {
        Some(u) if u.starts_with("https://") => "https",
        _ if state.config().tls.is_some() => "https",
        _ => "http",
    };
    let label = preview_label(port, workshop_id, seat);
    format!("{scheme}://{label}.{}/", domain(state, host))
}

fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// Middleware, outermost: a preview host's request is served here and never reaches the
/// control plane's routes (nor its UI headers: the page is the learner's, on its own origin).
pub async fn route_by_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(host) = request_host(&req) else {
        return next.run(req).await;
    };
    let Some(target) = parse_preview_host(&host, &domain(&state, &host)) else {
        return next.run(req).await;
    };
    match serve(&state, target, &host, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's cookies minus the preview session's, for the seat's app.
fn app_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(COOKIE))
        .collect();
    (!kept.is_empty())
        .then(|| HeaderValue::from_str(&kept.join("; ")).ok())
        .flatten()
}

/// A `Set-Cookie` from the seat's app that stays: host-only, and not the session cookie.
fn app_may_set(value: &HeaderValue) -> bool {
    let Ok(v) = value.to_str() else { return false };
    let mut parts = v.split(';');
    let name = parts
        .next()
        .and_then(|kv| kv.split('=').next())
        .map(str::trim);
    let domain = parts.any(|a| {
        a.trim()
            .split('=')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("domain"))
    });
    !domain && name.is_some_and(|n| !n.eq_ignore_ascii_case(COOKIE))
}

fn query_param<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `/__clarateach/auth?ticket=`: the ticket must be for this very host; answers with the cookie
/// and a redirect to `/`.
fn sign_in(state: &AppState, target: &PreviewTarget, uri: &Uri) -> Result<Response, ApiError> {
    let grant = query_param(uri, "ticket")
        .and_then(|t| state.previews().redeem_ticket(t))
        .ok_or_else(|| {
            ApiError::unauthorized("The preview ticket is not valid: unknown, expired or used.")
        })?;
    if grant.target != *target {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::TicketMismatch,
            "The ticket was issued for another preview.",
        ));
    }
    let session = state.previews().open_session(grant).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SeatUnavailable,
            "Too many preview sessions; try again later.",
        )
    })?;
    let cookie = format!(
        "{COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(header::SET_COOKIE, cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(Body::empty())
        .map_err(|_| ApiError::invalid_request("The ticket is not valid."))
}

/// Who this request is: a session of this host's, or the public when the port is public.
async fn admit(
    state: &AppState,
    target: &PreviewTarget,
    headers: &HeaderMap,
) -> Result<SeatAccess, ApiError> {
    let access = |role| SeatAccess {
        workshop_id: target.workshop_id.clone(),
        seat: target.seat,
        role,
        mode: TerminalMode::Interactive,
    };
    let grant = cookie_value(headers, COOKIE).and_then(|s| state.previews().session(s));
    match grant {
        Some(g) if g.target == *target => {
            if let Some(claims) = g.learner {
                Learner::check(state, claims).await?;
            }
            Ok(access(g.role))
        }
        _ if state
            .store()
            .is_preview_public(&target.workshop_id, target.seat, target.port)
            .await? =>
        {
            Ok(access(Role::Instructor))
        }
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This session is for another preview.",
        )),
        None => Err(ApiError::unauthorized(
            "This preview is private: open it from the workshop page.",
        )),
    }
}

async fn serve(
    state: &AppState,
    target: PreviewTarget,
    host: &str,
    req: Request,
) -> Result<Response, ApiError> {
    if req.uri().path() == AUTH_PATH {
        return sign_in(state, &target, req.uri());
    }
    let access = admit(state, &target, req.headers()).await?;
    let path = req.uri().path();
    if !path.starts_with('/') || path.split('/').any(|s| s == "..") {
        return Err(ApiError::invalid_request("The request path is not valid."));
    }
    crate::pause::admit(state, &access).await?;
    forward(state, &access, target.port, host, req).await
}

async fn forward(
    state: &AppState,
    access: &SeatAccess,
    port: u16,
    host: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let route = state.seat_route(&access.workshop_id, access.seat).await?;
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = format!(
        "{}/seats/{}/{}/preview/{port}{}{query}",
        route.data_url.trim_end_matches('/'),
        access.workshop_id,
        access.seat,
        req.uri().path()
    )
    .parse()
    .map_err(|_| ApiError::invalid_request("The request path is not valid."))?;
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = axum::http::Request::builder().method(parts.method).uri(uri);
    if let Some(h) = out.headers_mut() {
        forward_headers(&parts.headers, h, upgrade, &[header::COOKIE]);
        if let Some(c) = app_cookies(&parts.headers) {
            h.insert(header::COOKIE, c);
        }
        let forwarded = HeaderValue::from_str(host)
            .map_err(|_| ApiError::invalid_request("The Host header is not valid."))?;
        h.insert(clarateach_core::preview::FORWARDED_HOST, forwarded);
        let bearer = HeaderValue::try_from(format!("Bearer {}", route.data_token))
            .map_err(|e| super::proxy::unreachable(&e, access))?;
        h.insert(header::AUTHORIZATION, bearer);
    }
    let out = out
        .body(body)
        .map_err(|e| super::proxy::unreachable(&e, access))?;
    let tls = state.data_ca().client_config();
    let mut resp = super::proxy::send(state.data_clients(), &tls, &route, out, upgrade)
        .await
        .map_err(|e| super::proxy::unreachable(&e, access))?;
    let answer_headers = |from: &HeaderMap, upgraded: bool| {
        let mut to = HeaderMap::new();
        forward_headers(from, &mut to, upgraded, &[header::SET_COOKIE]);
        for c in from
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|c| app_may_set(c))
        {
            to.append(header::SET_COOKIE, c.clone());
        }
        to
    };
    let Some(client_upgrade) =
        client_upgrade.filter(|_| resp.status() == StatusCode::SWITCHING_PROTOCOLS)
    else {
        let (mut parts, body) = resp.into_parts();
        parts.headers = answer_headers(&parts.headers, false);
        parts.extensions = Default::default();
        return Ok(Response::from_parts(parts, Body::new(body)));
    };
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    let (state, access) = (state.clone(), access.clone());
    tokio::spawn(async move {
        if let Ok((client, agent)) = tokio::try_join!(client_upgrade, agent_upgrade) {
            super::proxy::splice(&state, &access, TokioIo::new(client), TokioIo::new(agent)).await;
        }
    });
    let (mut parts, _) = resp.into_parts();
    parts.headers = answer_headers(&parts.headers, true);
    parts.extensions = Default::default();
    Ok(Response::from_parts(parts, Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_never_reaches_the_app_and_the_app_cannot_set_it() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; clarateach_preview=cps_x; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("cps_x"));
        assert_eq!(app_cookies(&h).expect("kept"), "a=1; b=2");
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("clarateach_preview=x"),
        );
        assert!(app_cookies(&h).is_none());
        assert!(app_may_set(&HeaderValue::from_static("theme=dark; Path=/")));
        for bad in [
            "clarateach_preview=forged; Path=/",
            "x=1; Domain=localhost",
            "x=1; path=/; DOMAIN=.localhost",
        ] {
            assert!(!app_may_set(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn tickets_are_single_use_and_bound_to_their_target() {
        let p = Previews::default();
        let target = PreviewTarget {
            port: 8000,
            workshop_id: "ws-a".into(),
            seat: 1,
        };
        let grant = PreviewGrant {
            target: target.clone(),
            role: Role::Learner,
            learner: None,
        };
        let t = p.issue_ticket(grant).expect("ticket");
        assert!(p.redeem_ticket(&t).is_some());
        assert!(p.redeem_ticket(&t).is_none(), "second use");
    }
}
