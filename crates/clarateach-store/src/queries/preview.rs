//! [`PreviewStore`] on both back ends. Portable SQL (`INSERT ... SELECT ... ON CONFLICT`, as
//! PostgreSQL spells it too): the share takes the seat's generation from the seat's row in the
//! same statement, and a read joins the seat to see whether that generation is still current.

use async_trait::async_trait;
use sqlx::Row;

use super::Store;
use crate::preview::to_port;
use crate::{PreviewStore, Result};

#[async_trait]
impl PreviewStore for Store {
    async fn set_preview_public(
        &self,
        workshop_id: &str,
        seat: u32,
        port: u16,
        public: bool,
    ) -> Result<()> {
        let sql = if public {
            "INSERT INTO preview_shares (workshop_id, seat, port, generation) \
             SELECT workshop_id, seat, $1, generation FROM seats \
             WHERE workshop_id = $2 AND seat = $3 \
             ON CONFLICT (workshop_id, seat, port) DO UPDATE SET generation = excluded.generation"
        } else {
            "DELETE FROM preview_shares WHERE port = $1 AND workshop_id = $2 AND seat = $3"
        };
        sqlx::query(sql)
            .bind(i64::from(port))
            .bind(workshop_id)
            .bind(i64::from(seat))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn is_preview_public(&self, workshop_id: &str, seat: u32, port: u16) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM preview_shares p JOIN seats s \
             ON s.workshop_id = p.workshop_id AND s.seat = p.seat AND s.generation = p.generation \
             WHERE p.workshop_id = $1 AND p.seat = $2 AND p.port = $3",
        )
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(i64::from(port))
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    async fn public_preview_ports(&self, workshop_id: &str, seat: u32) -> Result<Vec<u16>> {
        let rows = sqlx::query(
            "SELECT p.port FROM preview_shares p JOIN seats s \
             ON s.workshop_id = p.workshop_id AND s.seat = p.seat AND s.generation = p.generation \
             WHERE p.workshop_id = $1 AND p.seat = $2 ORDER BY p.port",
        )
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(|r| to_port(r.try_get("port")?)).collect()
    }
}
