//! Our own request extractors, so malformed input gets the `{code, message}` shape:
//! malformed JSON or a missing content type is 400, wrong types or missing fields 422,
//! a body over the limit 413.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use clarateach_core::ErrorCode;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::ApiError;
pub use crate::ip::{canonical, Cidr, CidrError};
use crate::state::AppState;

/// `axum::Json` with our rejection.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::validation(format!("Invalid request body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::invalid_request("The request body is not valid JSON.")
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid_request("Expected a JSON body with `Content-Type: application/json`.")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "The request body is too large.",
        ),
        other => ApiError::invalid_request(format!(
            "Cannot read the request body: {}",
            other.body_text()
        )),
    }
}

/// `axum::extract::Path` with our rejection.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::validation(
                format!("Invalid path parameter: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::invalid_request(e.body_text())),
        }
    }
}

/// `axum::extract::Query` with our rejection.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::validation(
                format!("Invalid query: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::invalid_request(e.body_text())),
        }
    }
}

/// The client a request comes from: the peer address, or when the peer is a trusted proxy,
/// the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy (hops to the left of
/// it were written by the client and prove nothing). Unspecified when the router runs without
/// `into_make_service_with_connect_info`, e.g. in `oneshot` tests.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address for a request from `peer` with these `X-Forwarded-For` values.
    pub fn resolve<'a>(
        peer: IpAddr,
        forwarded: impl Iterator<Item = &'a str>,
        trusted: &[Cidr],
    ) -> IpAddr {
        let peer = canonical(peer);
        let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
        if !is_trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A hop we cannot read ends the chain we can trust: the last trusted proxy
                // is the client as far as we can tell.
                break;
            };
            client = canonical(ip);
            if !is_trusted(client) {
                break;
            }
        }
        client
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(Self(Self::resolve(
            peer,
            forwarded,
            &state.config().trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn cidr_parse_and_contains() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(net.contains(ip("::ffff:10.1.0.1")), "mapped v4");
        assert!(!net.contains(ip("10.2.0.1")));
        let one: Cidr = "192.0.2.7".parse().expect("bare");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = [
            "127.0.0.1".parse().expect("c"),
            "10.0.0.0/8".parse().expect("c"),
        ];
        // Not a trusted peer: its header is ignored.
        assert_eq!(
            ClientIp::resolve(ip("203.0.113.5"), ["198.51.100.1"].into_iter(), &trusted),
            ip("203.0.113.5")
        );
        // Rightmost untrusted hop; the client's own spoofed entry on the left is ignored.
        assert_eq!(
            ClientIp::resolve(
                ip("127.0.0.1"),
                ["1.2.3.4, 198.51.100.9", "10.0.0.2"].into_iter(),
                &trusted
            ),
            ip("198.51.100.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            ClientIp::resolve(ip("127.0.0.1"), std::iter::empty(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage ends the chain at the last trusted hop.
        assert_eq!(
            ClientIp::resolve(ip("127.0.0.1"), ["junk"].into_iter(), &trusted),
            ip("127.0.0.1")
        );
    }
}
