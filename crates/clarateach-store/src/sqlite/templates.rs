//! `TemplateStore` on SQLite: plain portable SQL (no SQLite-only functions).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::templates::{TemplateRecord, WorkshopStarter};
use crate::{Result, TemplateStore};

const COLUMNS: &str = "instructor_id, name, description, image, readme, check_cmd, limits_json, \
                       files, files_sha256, created_at";

fn record(r: &SqliteRow) -> Result<TemplateRecord> {
    Ok(TemplateRecord {
        instructor_id: r.try_get("instructor_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        image: r.try_get("image")?,
        readme: r.try_get("readme")?,
        check_cmd: r.try_get("check_cmd")?,
        limits_json: r.try_get("limits_json")?,
        files: r.try_get("files")?,
        files_sha256: r.try_get("files_sha256")?,
        created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
    })
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn insert_template(&self, t: &TemplateRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO templates ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&t.instructor_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.image)
        .bind(&t.readme)
        .bind(&t.check_cmd)
        .bind(&t.limits_json)
        .bind(&t.files)
        .bind(&t.files_sha256)
        .bind(t.created_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_template(
        &self,
        instructor_id: &str,
        name: &str,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM templates WHERE instructor_id = ? AND name = ?"
        ))
        .bind(instructor_id)
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn list_templates(&self, instructor_id: &str) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM templates WHERE instructor_id = ? ORDER BY name"
        ))
        .bind(instructor_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn delete_template(&self, instructor_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM templates WHERE instructor_id = ? AND name = ?")
            .bind(instructor_id)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_workshop_starter(&self, workshop_id: &str, s: &WorkshopStarter) -> Result<()> {
        sqlx::query(
            "INSERT INTO workshop_starters (workshop_id, template, readme, check_cmd, files, \
             files_sha256) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(workshop_id)
        .bind(&s.template)
        .bind(&s.readme)
        .bind(&s.check_cmd)
        .bind(&s.files)
        .bind(&s.files_sha256)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn workshop_starter(&self, workshop_id: &str) -> Result<Option<WorkshopStarter>> {
        let row = sqlx::query(
            "SELECT template, readme, check_cmd, files, files_sha256 FROM workshop_starters \
             WHERE workshop_id = ?",
        )
        .bind(workshop_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(WorkshopStarter {
                template: r.try_get("template")?,
                readme: r.try_get("readme")?,
                check_cmd: r.try_get("check_cmd")?,
                files: r.try_get("files")?,
                files_sha256: r.try_get("files_sha256")?,
            })
        })
        .transpose()
    }
}

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
