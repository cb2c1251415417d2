//! Workshop templates (issue 11): an image, starter files, default limits and network policy, a
//! check command and a README shown to learners, named per instructor. `POST /api/workshops
//! {template}` takes its defaults from one; fields given explicitly override them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{valid_image_name, Limits};

/// Largest gzipped tar of starter files a template may carry (it travels to every seat's agent
/// with the seat's spec).
pub const MAX_STARTER_BYTES: usize = 2 * 1024 * 1024;
/// Longest README, in bytes.
pub const MAX_README_BYTES: usize = 64 * 1024;

/// A template as the API returns it (the starter files themselves are not returned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub name: String,
    pub description: String,
    /// Seat image (`clarateach image build NAME`).
    pub image: String,
    /// Markdown shown to learners.
    pub readme: String,
    /// Command that checks a learner's work (run in the seat by the instructor's tools).
    pub check: Option<String>,
    /// Default limits (network policy included) of workshops made from it.
    pub limits: Option<Limits>,
    /// Size of the gzipped tar of starter files, 0 when none.
    pub files_bytes: u64,
    /// SHA-256 of that tar.
    pub files_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/templates`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateRequest {
    /// 1-64 of letters, digits, '-', '_', '.'.
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub readme: String,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Starter files: a gzipped tar, base64 (standard alphabet), at most 2 MiB decoded.
    #[serde(default)]
    pub files_tar_gz: Option<String>,
}

impl CreateTemplateRequest {
    /// Returns a message naming the first invalid field.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_image_name(&self.name) {
            return Err(
                "name must be 1-64 characters of letters, digits, '-', '_' or '.', \
                        starting with a letter or digit and without '..'"
                    .into(),
            );
        }
        if !valid_image_name(&self.image) {
            return Err("image must be a valid image name".into());
        }
        if !self.description.trim().is_empty() {
            if let Err(e) = crate::text::display_text(&self.description, 200) {
                return Err(format!("description {e}"));
            }
        }
        if self.readme.len() > MAX_README_BYTES {
            return Err(format!("readme must be at most {MAX_README_BYTES} bytes"));
        }
        if let Some(c) = &self.check {
            if c.is_empty() || c.len() > 1000 || c.contains('\0') {
                return Err("check must be 1-1000 characters".into());
            }
        }
        if let Some(l) = &self.limits {
            l.validate()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateResponse {
    pub template: Template,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListTemplatesResponse {
    pub templates: Vec<Template>,
}

/// A seat image as an agent reports it in `register`: what `clarateach image inspect` shows,
/// minus the recipe, so the instructor can pick an image knowing what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeatImageSummary {
    pub name: String,
    /// Hash of the recipe's inputs the tree was built from.
    pub digest: String,
    #[serde(default)]
    pub description: String,
    /// The recipe's explicit packages: `apt:NAME`, `node:VERSION`, `npm:SPEC`, `pip:SPEC`.
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub size_bytes: u64,
    /// Seconds since the epoch.
    #[serde(default)]
    pub built_at: u64,
}

/// A seat image some connected agent has (`GET /api/images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeatImage {
    #[serde(flatten)]
    pub image: SeatImageSummary,
    /// Ids of the connected agents that have it built (seats of the image go only there).
    pub agents: Vec<String>,
}

/// `GET /api/images`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListImagesResponse {
    pub images: Vec<SeatImage>,
}

/// The starter a seat's agent copies into a new seat volume once (in `SeatSpec::starter`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatStarter {
    /// Template it came from.
    pub template: String,
    /// SHA-256 of `tar_gz` (the agent's marker records it).
    pub sha256: String,
    /// Gzipped tar, base64 (standard alphabet).
    pub tar_gz: String,
}

impl std::fmt::Debug for SeatStarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatStarter")
            .field("template", &self.template)
            .field("sha256", &self.sha256)
            .field("tar_gz_len", &self.tar_gz.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CreateTemplateRequest {
        CreateTemplateRequest {
            name: "py-intro".into(),
            image: "python".into(),
            description: "Intro".into(),
            readme: "# Hi".into(),
            check: Some("pytest -q".into()),
            limits: None,
            files_tar_gz: None,
        }
    }

    #[test]
    fn validates_each_field() {
        assert!(req().validate().is_ok());
        let mut r = req();
        r.name = "../x".into();
        assert!(r.validate().unwrap_err().contains("name"));
        let mut r = req();
        r.image = "-rf".into();
        assert!(r.validate().unwrap_err().contains("image"));
        let mut r = req();
        r.readme = "x".repeat(MAX_README_BYTES + 1);
        assert!(r.validate().unwrap_err().contains("readme"));
        let mut r = req();
        r.check = Some(String::new());
        assert!(r.validate().unwrap_err().contains("check"));
        let mut r = req();
        r.limits = Some(Limits {
            memory_mb: 1,
            ..Limits::default()
        });
        assert!(r.validate().is_err());
    }
}
