//! Typed calls for every control-plane route. Each method returns the API's own types from
//! clarateach-core, so the CLI, the agent and the tests cannot drift from the server.

use std::fmt;
use std::time::Duration;

use clarateach_core::{
    CreateWorkshopRequest, HealthResponse, JoinRequest, JoinResponse, ListSeatsResponse,
    ListWorkshopsResponse, ResetSeatResponse, Seat, TicketRequest, TicketResponse, Workshop,
    WorkshopResponse,
};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{from_error_body, from_reqwest, from_reqwest_at, ClientError};
use crate::export::Export;

/// How long a JSON call may take before it is reported as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A download may be long, but must not stall for longer than this between reads.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Client of one control plane, optionally authenticated with a bearer token (an instructor
/// token for the instructor routes; none is needed for `health` and `join`).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// `base_url` is where the control plane listens, e.g. `http://127.0.0.1:8080`; a missing
    /// scheme means `http://`, and a path prefix (behind a reverse proxy) is kept.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::build(base_url, token, None)
    }

    /// Like [`Client::new`], trusting also the CA certificate(s) in `ca_pem` for an `https://`
    /// control plane whose certificate is from a private CA.
    pub fn with_ca(
        base_url: &str,
        token: Option<String>,
        ca_pem: &[u8],
    ) -> Result<Self, ClientError> {
        Self::build(base_url, token, Some(ca_pem))
    }

    fn build(
        base_url: &str,
        token: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let base = parse_base(base_url)?;
        let invalid = |e: reqwest::Error| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(invalid)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("clarateach-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(invalid)?;
        Ok(Self { http, base, token })
    }

    /// The base URL calls are made against.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET /api/health`
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.call(Method::GET, &["health"], None::<&()>).await
    }

    /// `GET /api/workshops`: the caller's workshops.
    pub async fn list_workshops(&self) -> Result<Vec<Workshop>, ClientError> {
        let r: ListWorkshopsResponse = self.call(Method::GET, &["workshops"], None::<&()>).await?;
        Ok(r.workshops)
    }

    /// `POST /api/workshops`
    pub async fn create_workshop(
        &self,
        req: &CreateWorkshopRequest,
    ) -> Result<Workshop, ClientError> {
        let r: WorkshopResponse = self.call(Method::POST, &["workshops"], Some(req)).await?;
        Ok(r.workshop)
    }

    /// `GET /api/templates`: the caller's templates.
    pub async fn list_templates(&self) -> Result<Vec<clarateach_core::Template>, ClientError> {
        let r: clarateach_core::ListTemplatesResponse =
            self.call(Method::GET, &["templates"], None::<&()>).await?;
        Ok(r.templates)
    }

    /// `POST /api/templates`
    pub async fn create_template(
        &self,
        req: &clarateach_core::CreateTemplateRequest,
    ) -> Result<clarateach_core::Template, ClientError> {
        let r: clarateach_core::TemplateResponse =
            self.call(Method::POST, &["templates"], Some(req)).await?;
        Ok(r.template)
    }

    /// `GET /api/templates/{name}`
    pub async fn get_template(&self, name: &str) -> Result<clarateach_core::Template, ClientError> {
        let r: clarateach_core::TemplateResponse = self
            .call(Method::GET, &["templates", name], None::<&()>)
            .await?;
        Ok(r.template)
    }

    /// `DELETE /api/templates/{name}`
    pub async fn delete_template(&self, name: &str) -> Result<(), ClientError> {
        let url = self.url(&["templates", name])?;
        let resp = self
            .send(
                Method::DELETE,
                url.clone(),
                None::<&()>,
                Some(REQUEST_TIMEOUT),
            )
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(url.as_str(), e))?;
        Err(from_error_body(url.as_str(), status.as_u16(), &bytes))
    }

    /// `GET /api/workshops/{id}`
    pub async fn get_workshop(&self, id: &str) -> Result<Workshop, ClientError> {
        let r: WorkshopResponse = self
            .call(Method::GET, &["workshops", id], None::<&()>)
            .await?;
        Ok(r.workshop)
    }

    /// `POST /api/workshops/{id}/start`: provisioning begins; poll `get_workshop` until running.
    pub async fn start_workshop(&self, id: &str) -> Result<Workshop, ClientError> {
        let r: WorkshopResponse = self
            .call(Method::POST, &["workshops", id, "start"], None::<&()>)
            .await?;
        Ok(r.workshop)
    }

    /// `POST /api/workshops/{id}/stop`: the workshop when the server returns it, `None` when it
    /// answers only `{success}`.
    pub async fn stop_workshop(&self, id: &str) -> Result<Option<Workshop>, ClientError> {
        let v: serde_json::Value = self
            .call(Method::POST, &["workshops", id, "stop"], None::<&()>)
            .await?;
        match v.get("workshop") {
            Some(w) => {
                let url = self.url(&["workshops", id, "stop"])?;
                serde_json::from_value(w.clone())
                    .map(Some)
                    .map_err(|source| ClientError::Decode {
                        url: url.to_string(),
                        source,
                    })
            }
            None => Ok(None),
        }
    }

    /// `DELETE /api/workshops/{id}` (refused with 409 `workshop_running` while running).
    pub async fn delete_workshop(&self, id: &str) -> Result<(), ClientError> {
        let url = self.url(&["workshops", id])?;
        let resp = self
            .send(
                Method::DELETE,
                url.clone(),
                None::<&()>,
                Some(REQUEST_TIMEOUT),
            )
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(url.as_str(), e))?;
        Err(from_error_body(url.as_str(), status.as_u16(), &body))
    }

    /// `GET /api/workshops/{id}/seats`
    pub async fn list_seats(&self, id: &str) -> Result<Vec<Seat>, ClientError> {
        let r: ListSeatsResponse = self
            .call(Method::GET, &["workshops", id, "seats"], None::<&()>)
            .await?;
        Ok(r.seats)
    }

    /// `GET /api/workshops/{id}/export`: a tar.gz of every seat's files, as a stream.
    pub async fn export_workshop(&self, id: &str) -> Result<Export, ClientError> {
        let url = self.url(&["workshops", id, "export"])?;
        let resp = self
            .send(Method::GET, url.clone(), None::<&()>, None)
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .bytes()
                .await
                .map_err(|e| from_reqwest(url.as_str(), e))?;
            return Err(from_error_body(url.as_str(), status.as_u16(), &body));
        }
        Ok(Export::new(url.to_string(), resp))
    }

    /// `POST /api/workshops/{id}/seats/{seat}/reset`: a new reconnect code for the seat; every
    /// earlier learner token and the old code stop working, the files stay.
    pub async fn reset_seat(&self, id: &str, seat: u32) -> Result<ResetSeatResponse, ClientError> {
        let seat = seat.to_string();
        self.call(
            Method::POST,
            &["workshops", id, "seats", &seat, "reset"],
            None::<&()>,
        )
        .await
    }

    /// `POST /api/workshops/{id}/start {"at"}`: schedules the start (a time in the past starts
    /// at once).
    pub async fn start_workshop_at(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Workshop, ClientError> {
        let body = clarateach_core::StartWorkshopRequest { at: Some(at) };
        let r: WorkshopResponse = self
            .call(Method::POST, &["workshops", id, "start"], Some(&body))
            .await?;
        Ok(r.workshop)
    }

    /// `POST /api/workshops/{id}[/seats/{seat}]/pause` (or `resume` when `!paused`): the
    /// workshop's seats once the agents froze or thawed them.
    pub async fn pause(
        &self,
        id: &str,
        seat: Option<u32>,
        paused: bool,
    ) -> Result<Vec<Seat>, ClientError> {
        let verb = if paused { "pause" } else { "resume" };
        let seat = seat.map(|s| s.to_string());
        let segments: Vec<&str> = match &seat {
            Some(s) => vec!["workshops", id, "seats", s, verb],
            None => vec!["workshops", id, verb],
        };
        let r: ListSeatsResponse = self.call(Method::POST, &segments, None::<&()>).await?;
        Ok(r.seats)
    }

    /// `GET /api/workshops/{id}/help`: the help queue, longest waiting first.
    pub async fn list_help(
        &self,
        id: &str,
    ) -> Result<clarateach_core::classroom::ListHelpResponse, ClientError> {
        self.call(Method::GET, &["workshops", id, "help"], None::<&()>)
            .await
    }

    /// `POST /api/workshops/{id}/help/{help_id}/claim|resolve` (`action`).
    pub async fn act_on_help(
        &self,
        id: &str,
        help_id: &str,
        action: HelpAction,
    ) -> Result<clarateach_core::classroom::HelpRequest, ClientError> {
        let verb = match action {
            HelpAction::Claim => "claim",
            HelpAction::Resolve => "resolve",
        };
        self.call(
            Method::POST,
            &["workshops", id, "help", help_id, verb],
            None::<&()>,
        )
        .await
    }

    /// `POST /api/session/ticket`: a one-time ticket for one WebSocket (`?ticket=`), for
    /// callers that cannot send an Authorization header on the upgrade.
    pub async fn session_ticket(&self, req: &TicketRequest) -> Result<TicketResponse, ClientError> {
        self.call(Method::POST, &["session", "ticket"], Some(req))
            .await
    }

    /// `POST /api/join` (no token needed).
    pub async fn join(&self, req: &JoinRequest) -> Result<JoinResponse, ClientError> {
        self.call(Method::POST, &["join"], Some(req)).await
    }

    /// `{base}/api/{segments...}`, each segment percent-encoded so an id cannot change the route.
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.base.to_string(),
                reason: "cannot be a base".into(),
            })?
            .pop_if_empty()
            .push("api")
            .extend(segments);
        Ok(url)
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, url.clone());
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send()
            .await
            .map_err(|e| from_reqwest_at(self.base.as_str(), url.as_str(), e))
    }

    pub(crate) async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(method, segments, body, REQUEST_TIMEOUT)
            .await
    }

    /// [`Client::call`] with another deadline (a check runs for its command's timeout).
    pub(crate) async fn call_within<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = self.url(segments)?;
        let resp = self.send(method, url.clone(), body, Some(timeout)).await?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(url.as_str(), e))?;
        if !status.is_success() {
            return Err(from_error_body(url.as_str(), status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }

    /// `POST /api/workshops/{id}/announcements`: a banner for every learner.
    pub async fn announce(
        &self,
        id: &str,
        message: &str,
    ) -> Result<clarateach_core::presenter::Announcement, ClientError> {
        let body = clarateach_core::presenter::AnnounceRequest {
            message: message.to_string(),
        };
        self.call(
            Method::POST,
            &["workshops", id, "announcements"],
            Some(&body),
        )
        .await
    }

    /// `GET /api/workshops/{id}/announcements`.
    pub async fn announcements(
        &self,
        id: &str,
    ) -> Result<clarateach_core::presenter::AnnouncementList, ClientError> {
        self.call(
            Method::GET,
            &["workshops", id, "announcements"],
            None::<&()>,
        )
        .await
    }

    /// `DELETE /api/workshops/{id}/announcements/{announcement_id}`.
    pub async fn dismiss_announcement(
        &self,
        id: &str,
        announcement_id: &str,
    ) -> Result<(), ClientError> {
        self.no_content(
            Method::DELETE,
            &["workshops", id, "announcements", announcement_id],
            None::<&()>,
        )
        .await
    }

    /// `PUT /api/workshops/{id}/spotlight`: share a seat's terminal with every learner.
    pub async fn spotlight(
        &self,
        id: &str,
        seat: u32,
        session: Option<&str>,
    ) -> Result<clarateach_core::presenter::SpotlightState, ClientError> {
        let body = clarateach_core::presenter::SpotlightRequest {
            seat,
            session: session.map(str::to_string),
        };
        self.call(Method::PUT, &["workshops", id, "spotlight"], Some(&body))
            .await
    }

    /// `DELETE /api/workshops/{id}/spotlight`.
    pub async fn spotlight_off(&self, id: &str) -> Result<(), ClientError> {
        self.no_content(Method::DELETE, &["workshops", id, "spotlight"], None::<&()>)
            .await
    }

    /// `GET /api/workshops/{id}/seats/{seat}/recordings`.
    pub async fn recordings(
        &self,
        id: &str,
        seat: u32,
    ) -> Result<clarateach_core::presenter::RecordingList, ClientError> {
        let seat = seat.to_string();
        self.call(
            Method::GET,
            &["workshops", id, "seats", &seat, "recordings"],
            None::<&()>,
        )
        .await
    }

    /// `GET /api/workshops/{id}/seats/{seat}/recordings/{name}`: the asciicast v2 bytes.
    pub async fn recording(&self, id: &str, seat: u32, name: &str) -> Result<Vec<u8>, ClientError> {
        let seat = seat.to_string();
        let url = self.url(&["workshops", id, "seats", &seat, "recordings", name])?;
        let resp = self
            .send(Method::GET, url.clone(), None::<&()>, Some(REQUEST_TIMEOUT))
            .await?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(url.as_str(), e))?;
        if !status.is_success() {
            return Err(from_error_body(url.as_str(), status.as_u16(), &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// A call answered with no body (204).
    async fn no_content<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let url = self.url(segments)?;
        let resp = self
            .send(method, url.clone(), body, Some(REQUEST_TIMEOUT))
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(url.as_str(), e))?;
        Err(from_error_body(url.as_str(), status.as_u16(), &bytes))
    }
}

/// Parses a base URL, defaulting the scheme to http.
fn parse_base(base_url: &str) -> Result<Url, ClientError> {
    let trimmed = base_url.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: base_url.to_string(),
        reason,
    };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(invalid("no host".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls_with_encoded_segments() {
        let c = Client::new("127.0.0.1:8080", None).expect("valid");
        assert_eq!(
            c.url(&["workshops", "ws-abc123"]).expect("url").as_str(),
            "http://127.0.0.1:8080/api/workshops/ws-abc123"
        );
        let evil = c.url(&["workshops", "../agents"]).expect("url");
        assert_eq!(
            evil.as_str(),
            "http://127.0.0.1:8080/api/workshops/..%2Fagents"
        );
        let prefixed = Client::new("https://example.org/teach/", None).expect("valid");
        assert_eq!(
            prefixed.url(&["health"]).expect("url").as_str(),
            "https://example.org/teach/api/health"
        );
    }

    #[test]
    fn rejects_unusable_base_urls() {
        assert!(matches!(
            Client::new("ftp://x", None),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("http://", None),
            Err(ClientError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Client::new("http://127.0.0.1:1", Some("secret-token".into())).expect("valid");
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}

/// What to do with a help request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpAction {
    Claim,
    Resolve,
}
