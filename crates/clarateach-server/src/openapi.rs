//! The OpenAPI document, generated from the handlers' annotations and the core types.
//! Checked into `api/openapi.json`; `cargo test -p clarateach-server openapi` fails when they
//! drift, and `UPDATE_OPENAPI=1 cargo test -p clarateach-server openapi` rewrites the file.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers;

#[derive(OpenApi)]
#[openapi(
    info(title = "ClaraTeach control plane", description = "Workshops, seats, learner joins and agents. \
        Every error is `{code, message}`. Instructor routes take `Authorization: Bearer <instructor token or session token>`; \
        tokens are never accepted in URLs, WebSockets take a one-time `?ticket=` from `POST /api/session/ticket`."),
    paths(
        handlers::health::health,
        handlers::health::openapi,
        handlers::health::metrics,
        handlers::workshops::create,
        handlers::workshops::list,
        handlers::workshops::get,
        handlers::workshops::start,
        handlers::workshops::stop,
        handlers::workshops::delete,
        handlers::seats::list,
        handlers::seats::reset,
        handlers::sessions::create,
        handlers::sessions::revoke,
        handlers::sessions::ticket,
        handlers::join::join,
        handlers::join::me,
        handlers::agents::connect,
        handlers::agents::list,
        crate::gateway::export::export_workshop,
        crate::gateway::docs::terminal,
        crate::gateway::docs::list_files,
        crate::gateway::docs::read_file,
        crate::gateway::docs::write_file,
        crate::gateway::docs::delete_file,
        crate::gateway::docs::watch_files,
        crate::gateway::docs::rename,
        crate::gateway::docs::mkdir,
        crate::gateway::docs::run,
        handlers::screens::screens,
        handlers::help::ask,
        handlers::help::mine,
        handlers::help::list,
        handlers::help::claim,
        handlers::help::resolve,
    ),
    components(schemas(clarateach_core::ErrorBody, clarateach_core::classroom::ScreenFrame)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON (what `api/openapi.json` holds).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_matches_checked_in_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.json");
        let now = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &now).expect("write api/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == now,
            "api/openapi.json is out of date; regenerate with `UPDATE_OPENAPI=1 cargo test -p clarateach-server openapi`"
        );
    }
}
