//! `GET /api/images`: the seat images the connected agents have built, with what each holds,
//! so the instructor picks one knowing it is there (issue 11). The agents are the truth: an
//! image is listed while at least one connected agent reported it in `register`, with the ids
//! of those agents (a workshop of that image is placed only on them).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use clarateach_core::{ErrorBody, ListImagesResponse, SeatImage, SeatImageSummary};

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::scheduler::AgentInfo;
use crate::state::AppState;

/// The seat images of the connected agents, by name.
#[utoipa::path(get, path = "/api/images", tag = "templates", security(("bearer" = [])),
    responses((status = 200, body = ListImagesResponse), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _instructor: Instructor,
) -> Result<Json<ListImagesResponse>, ApiError> {
    let agents = state.registry().list().await;
    Ok(Json(ListImagesResponse {
        images: merge(&agents),
    }))
}

/// One entry per image name; the details of the newest build among the agents (two hosts may
/// have built different digests of one recipe), the agents that have it sorted by id.
fn merge(agents: &[AgentInfo]) -> Vec<SeatImage> {
    let mut by_name: BTreeMap<String, SeatImage> = BTreeMap::new();
    for a in agents {
        for name in &a.images {
            let details = a
                .image_details
                .iter()
                .find(|d| &d.name == name)
                .cloned()
                .unwrap_or_else(|| SeatImageSummary {
                    name: name.clone(),
                    digest: String::new(),
                    description: String::new(),
                    packages: Vec::new(),
                    size_bytes: 0,
                    built_at: 0,
                });
            let entry = by_name.entry(name.clone()).or_insert_with(|| SeatImage {
                image: details.clone(),
                agents: Vec::new(),
            });
            if details.built_at > entry.image.built_at {
                entry.image = details;
            }
            entry.agents.push(a.agent_id.clone());
        }
    }
    by_name
        .into_values()
        .map(|mut i| {
            i.agents.sort();
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, digest: &str, built_at: u64) -> SeatImageSummary {
        SeatImageSummary {
            name: name.into(),
            digest: digest.into(),
            description: format!("{name} image"),
            packages: vec!["npm:@anthropic-ai/claude-code".into()],
            size_bytes: 1 << 20,
            built_at,
        }
    }

    fn agent(id: &str, details: Vec<SeatImageSummary>, bare: &[&str]) -> AgentInfo {
        let mut images: Vec<String> = details.iter().map(|d| d.name.clone()).collect();
        images.extend(bare.iter().map(|s| s.to_string()));
        AgentInfo {
            agent_id: id.into(),
            hostname: "h".into(),
            capacity: 4,
            placed: 0,
            used: 0,
            images,
            image_details: details,
            buildable: Vec::new(),
            memory_mb: None,
            reserved_memory_mb: 0,
            cpu_millis: None,
            reserved_cpu_millis: 0,
            held_by: None,
        }
    }

    #[test]
    fn one_entry_per_name_newest_details_every_agent() {
        let agents = [
            agent("b", vec![summary("claude", "old", 10)], &[]),
            agent(
                "a",
                vec![summary("claude", "new", 20), summary("base", "b1", 5)],
                &[],
            ),
            // An agent that reports names only (older protocol): listed, details empty.
            agent("c", vec![], &["python"]),
        ];
        let list = merge(&agents);
        let names: Vec<&str> = list.iter().map(|i| i.image.name.as_str()).collect();
        assert_eq!(names, ["base", "claude", "python"]);
        assert_eq!(list[1].image.digest, "new");
        assert_eq!(list[1].agents, ["a", "b"]);
        assert_eq!(list[2].agents, ["c"]);
        assert!(list[2].image.packages.is_empty());
        assert!(merge(&[]).is_empty());
    }
}
