//! `TemplateStore` on both back ends: plain portable SQL (no SQLite-only functions).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{DbRow, Store};
use crate::templates::{TemplateRecord, WorkshopStarter};
use crate::{Result, TemplateStore};

const COLUMNS: &str = "instructor_id, name, description, image, readme, check_cmd, limits_json, \
                       files, files_sha256, created_at";

fn record(r: &DbRow) -> Result<TemplateRecord> {
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
impl TemplateStore for Store {
    async fn insert_template(&self, t: &TemplateRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO templates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn get_template(
        &self,
        instructor_id: &str,
        name: &str,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM templates WHERE instructor_id = $1 AND name = $2"
        ))
        .bind(instructor_id)
        .bind(name)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn list_templates(&self, instructor_id: &str) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM templates WHERE instructor_id = $1 ORDER BY name"
        ))
        .bind(instructor_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(record).collect()
    }

    async fn delete_template(&self, instructor_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM templates WHERE instructor_id = $1 AND name = $2")
            .bind(instructor_id)
            .bind(name)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_workshop_starter(&self, workshop_id: &str, s: &WorkshopStarter) -> Result<()> {
        sqlx::query(
            "INSERT INTO workshop_starters (workshop_id, template, readme, check_cmd, files, \
             files_sha256) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(workshop_id)
        .bind(&s.template)
        .bind(&s.readme)
        .bind(&s.check_cmd)
        .bind(&s.files)
        .bind(&s.files_sha256)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn workshop_starter(&self, workshop_id: &str) -> Result<Option<WorkshopStarter>> {
        let row = sqlx::query(
            "SELECT template, readme, check_cmd, files, files_sha256 FROM workshop_starters \
             WHERE workshop_id = $1",
        )
        .bind(workshop_id)
        .fetch_optional(self.reader())
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
