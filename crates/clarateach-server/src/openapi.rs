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
        handlers::templates::create,
        handlers::templates::list,
        handlers::templates::get,
        handlers::templates::delete,
        handlers::images::list,
        handlers::sandboxes::create,
        handlers::sandboxes::list,
        handlers::sandboxes::get,
        handlers::sandboxes::delete,
        handlers::sandboxes::run,
        handlers::sandboxes::exec,
        handlers::sandboxes::read_file,
        handlers::sandboxes::write_file,
        handlers::seats::list,
        handlers::seats::reset,
        handlers::moves::move_seat,
        handlers::moves::session_seat,
        handlers::pause::pause_workshop,
        handlers::pause::resume_workshop,
        handlers::pause::pause_seat,
        handlers::pause::resume_seat,
        handlers::pause::idle_policy,
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
        handlers::presenter::announce,
        handlers::presenter::list_announcements,
        handlers::presenter::dismiss,
        handlers::presenter::spotlight_on,
        handlers::presenter::spotlight_get,
        handlers::presenter::spotlight_off,
        handlers::presenter::events,
        crate::gateway::spotlight::spotlight,
        handlers::recordings::list,
        handlers::recordings::get,
        handlers::help::ask,
        handlers::help::mine,
        handlers::help::list,
        handlers::help::claim,
        handlers::help::resolve,
        handlers::previews::list,
        handlers::previews::set_public,
        handlers::previews::open,
        handlers::broadcast::broadcast,
        handlers::broadcast::latest,
        handlers::broadcast::mine,
        handlers::checks::run,
        handlers::checks::latest,
        handlers::audit::list,
        handlers::audit::presence,
    ),
    components(schemas(
        clarateach_core::ErrorBody,
        clarateach_core::api::TerminalClientMessage,
        clarateach_core::api::TerminalServerMessage,
        clarateach_core::classroom::ScreenFrame
    )),
    modifiers(&BearerAuth, &UniqueOperationIds),
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

/// utoipa names an operation after its handler function, so `workshops::list` and `seats::list`
/// would both be `list`; generators (the web app's `openapi-typescript`) need unique ids. A
/// shared name gets the last literal segment of its path (`list_workshops`, `list_seats`), and the
/// whole path if that still clashes.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use std::collections::HashMap;
        let mut ops: Vec<(&String, &mut utoipa::openapi::path::Operation)> = Vec::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                ops.push((path, op));
            }
        }
        let id_of =
            |op: &utoipa::openapi::path::Operation| op.operation_id.clone().unwrap_or_default();
        let count = |ops: &[(&String, &mut utoipa::openapi::path::Operation)]| {
            let mut n: HashMap<String, usize> = HashMap::new();
            for (_, op) in ops {
                *n.entry(id_of(op)).or_default() += 1;
            }
            n
        };
        type Naming = fn(&str, &str) -> String;
        let namings: [Naming; 2] = [
            |id, path| {
                let last = path
                    .split('/')
                    .rfind(|s| !s.is_empty() && !s.starts_with('{'))
                    .unwrap_or("root");
                format!("{id}_{}", last.replace(['-', '.'], "_"))
            },
            |id, path| {
                let words: Vec<String> = path
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != "api")
                    .map(|s| {
                        s.trim_matches(|c| c == '{' || c == '}')
                            .replace(['-', '.', '*'], "_")
                    })
                    .collect();
                format!("{id}_{}", words.join("_"))
            },
        ];
        for naming in namings {
            let n = count(&ops);
            for (path, op) in ops.iter_mut() {
                let id = id_of(op);
                if n.get(&id).copied().unwrap_or(0) > 1 {
                    op.operation_id = Some(naming(&id, path));
                }
            }
        }
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
    fn operation_ids_are_unique() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("valid JSON");
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(
                    seen.insert(id.clone()),
                    "{method} {path}: duplicate operationId {id}"
                );
            }
        }
    }

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
