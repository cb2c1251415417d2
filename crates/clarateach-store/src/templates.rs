//! Records of workshop templates and of the starter a workshop was created from (issue 11).

use chrono::{DateTime, Utc};

/// A template as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub instructor_id: String,
    pub name: String,
    pub description: String,
    pub image: String,
    pub readme: String,
    pub check_cmd: Option<String>,
    /// `Limits` as JSON, when the template sets default limits.
    pub limits_json: Option<String>,
    /// Starter files, a gzipped tar.
    pub files: Option<Vec<u8>>,
    pub files_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a workshop copies from its template when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkshopStarter {
    pub template: String,
    pub readme: String,
    pub check_cmd: Option<String>,
    pub files: Option<Vec<u8>>,
    pub files_sha256: Option<String>,
}
