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

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    #![allow(unused_imports)]
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{postgres, sqlite};
    use crate::templates::{TemplateRecord, WorkshopStarter};
    use crate::Store;
    use crate::{AccountStore, WorkshopStore};
    use crate::{Result, TemplateStore};
    use chrono::{DateTime, Utc};

    fn template(owner: &str, name: &str) -> TemplateRecord {
        TemplateRecord {
            instructor_id: owner.into(),
            name: name.into(),
            description: "d".into(),
            image: "claude".into(),
            readme: "# Hello".into(),
            check_cmd: Some("pytest".into()),
            limits_json: None,
            files: Some(vec![1, 2, 3]),
            files_sha256: Some("abc".into()),
            created_at: Utc::now(),
        }
    }

    async fn templates_are_per_instructor_and_starters_follow_their_workshop(s: Arc<dyn Store>) {
        s.create_instructor("i1", "one", "h1").await.expect("i1");
        s.create_instructor("i-2", "two", "h2").await.expect("i2");
        let t = template("i1", "py");
        s.insert_template(&t).await.expect("insert");
        assert!(matches!(
            s.insert_template(&t).await,
            Err(crate::StoreError::Conflict)
        ));
        s.insert_template(&template("i-2", "py"))
            .await
            .expect("same name, other owner");
        let got = s
            .get_template("i1", "py")
            .await
            .expect("get")
            .expect("some");
        assert_eq!(got.files, Some(vec![1, 2, 3]));
        assert_eq!(got.readme, "# Hello");
        assert_eq!(s.list_templates("i1").await.expect("list").len(), 1);
        assert!(s.get_template("i1", "nope").await.expect("get").is_none());
        assert!(s.delete_template("i1", "py").await.expect("rm"));
        assert!(!s.delete_template("i1", "py").await.expect("rm again"));
        assert!(s.get_template("i-2", "py").await.expect("other").is_some());

        let ws = crate::sqlite::new_workshop("ws-t1", "CLAUDE-TTTT", 2);
        s.insert_workshop(&ws).await.expect("workshop");
        let starter = WorkshopStarter {
            template: "py".into(),
            readme: "r".into(),
            check_cmd: None,
            files: None,
            files_sha256: None,
        };
        s.set_workshop_starter("ws-t1", &starter)
            .await
            .expect("starter");
        assert_eq!(
            s.workshop_starter("ws-t1").await.expect("get"),
            Some(starter)
        );
        assert!(s.delete_workshop("ws-t1").await.expect("delete"));
        assert_eq!(s.workshop_starter("ws-t1").await.expect("gone"), None);
    }

    #[tokio::test]
    async fn templates_are_per_instructor_and_starters_follow_their_workshop_sqlite() {
        let (_dir, s) = sqlite().await;
        templates_are_per_instructor_and_starters_follow_their_workshop(s).await;
    }

    #[tokio::test]
    async fn templates_are_per_instructor_and_starters_follow_their_workshop_postgres() {
        if let Some(s) = postgres(
            "templates::templates_are_per_instructor_and_starters_follow_their_workshop_postgres",
        )
        .await
        {
            templates_are_per_instructor_and_starters_follow_their_workshop(s).await;
        }
    }
}
