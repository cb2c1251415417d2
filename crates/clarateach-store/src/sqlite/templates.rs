//! Unit tests of `queries/templates.rs` on SQLite (the conformance suite runs on both back ends).

#![cfg(test)]
#![allow(unused_imports)]

use super::SqliteStore;
use crate::templates::{TemplateRecord, WorkshopStarter};
use crate::{Result, TemplateStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::{AccountStore, WorkshopStore};

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

    #[tokio::test]
    async fn templates_are_per_instructor_and_starters_follow_their_workshop() {
        let (_d, s) = temp_store().await;
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

        let ws = crate::sqlite::workshops::tests::new_workshop("ws-t1", "CLAUDE-TTTT", 2);
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
}
