//! Seats: atomic assignment to learners, placement on agents, states reported by agents.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::SeatState;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use tokio::sync::oneshot;

use super::claims::Claim;
use super::{seat_state, to_u32, SqliteStore};
use crate::{Result, SeatRecord, SeatStore, StoreError};

/// The claim task only ends when its store is dropped or its runtime shut down.
fn claim_task_gone() -> StoreError {
    StoreError::Query(sqlx::Error::PoolClosed)
}

pub(super) const COLUMNS: &str =
    "workshop_id, seat, state, agent_id, odehash, name, joined_at, last_activity_at, generation";

pub(super) fn record(r: &SqliteRow) -> Result<SeatRecord> {
    Ok(SeatRecord {
        workshop_id: r.try_get("workshop_id")?,
        seat: to_u32(r.try_get("seat")?, "seat")?,
        state: seat_state(&r.try_get::<String, _>("state")?)?,
        agent_id: r.try_get("agent_id")?,
        odehash: r.try_get("odehash")?,
        name: r.try_get("name")?,
        joined_at: r.try_get::<Option<DateTime<Utc>>, _>("joined_at")?,
        last_activity_at: r.try_get::<Option<DateTime<Utc>>, _>("last_activity_at")?,
        generation: to_u32(r.try_get("generation")?, "generation")?,
    })
}

#[async_trait]
impl SeatStore for SqliteStore {
    async fn list_seats(&self, workshop_id: &str) -> Result<Vec<SeatRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = ? ORDER BY seat"
        ))
        .bind(workshop_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn get_seat(&self, workshop_id: &str, seat: u32) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = ? AND seat = ?"
        ))
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn claim_seat(
        &self,
        workshop_id: &str,
        odehash: &str,
        name: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<SeatRecord>> {
        let (reply, answer) = oneshot::channel();
        let claim = Claim {
            workshop_id: workshop_id.to_string(),
            odehash: odehash.to_string(),
            name: name.map(str::to_string),
            at,
            reply,
        };
        self.claims.send(claim).map_err(|_| claim_task_gone())?;
        answer.await.map_err(|_| claim_task_gone())?
    }

    async fn seat_by_odehash(
        &self,
        workshop_id: &str,
        odehash: &str,
    ) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = ? AND odehash = ?"
        ))
        .bind(workshop_id)
        .bind(odehash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn place_seats(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (seat, agent_id) in placements {
            sqlx::query(
                "UPDATE seats SET agent_id = ?, state = ? WHERE workshop_id = ? AND seat = ?",
            )
            .bind(agent_id)
            .bind(state.as_str())
            .bind(workshop_id)
            .bind(i64::from(*seat))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn report_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        agent_id: &str,
        state: SeatState,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE seats SET state = ? WHERE workshop_id = ? AND seat = ? AND agent_id = ? AND state <> ?",
        )
        .bind(state.as_str())
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(agent_id)
        .bind(state.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_seats_state(
        &self,
        workshop_id: &str,
        seats: Option<&[u32]>,
        state: SeatState,
    ) -> Result<()> {
        match seats {
            None => {
                sqlx::query("UPDATE seats SET state = ? WHERE workshop_id = ?")
                    .bind(state.as_str())
                    .bind(workshop_id)
                    .execute(&self.writer)
                    .await?;
            }
            Some(list) => {
                let mut tx = self.writer.begin().await?;
                for seat in list {
                    sqlx::query("UPDATE seats SET state = ? WHERE workshop_id = ? AND seat = ?")
                        .bind(state.as_str())
                        .bind(workshop_id)
                        .bind(i64::from(*seat))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn mark_agent_seats_lost(&self, agent_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE seats SET state = 'lost' WHERE agent_id = ? AND state IN ('creating', 'ready', 'paused') AND workshop_id IN \
             (SELECT id FROM workshops WHERE status IN ('provisioning', 'running'))",
        )
        .bind(agent_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn seats_for_agent(&self, agent_id: &str) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT s.workshop_id, s.seat FROM seats s JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.agent_id = ? AND w.status IN ('provisioning', 'running') ORDER BY s.workshop_id, s.seat",
        )
        .bind(agent_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("workshop_id")?,
                    to_u32(r.try_get("seat")?, "seat")?,
                ))
            })
            .collect()
    }

    async fn touch_activity(&self, workshop_id: &str, seat: u32, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE seats SET last_activity_at = ? WHERE workshop_id = ? AND seat = ?")
            .bind(at)
            .bind(workshop_id)
            .bind(i64::from(seat))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn reset_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        odehash: &str,
    ) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "UPDATE seats SET odehash = ?, generation = generation + 1 \
             WHERE workshop_id = ? AND seat = ? AND odehash IS NOT NULL RETURNING {COLUMNS}"
        ))
        .bind(odehash)
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn count_seats_by_state(&self) -> Result<Vec<(SeatState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM seats GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    seat_state(&r.try_get::<String, _>("state")?)?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::super::temp_store;
    use super::super::workshops::tests::new_workshop;
    use super::*;
    use crate::{AccountStore, StoreError, WorkshopStore};
    use clarateach_core::WorkshopStatus;

    /// A store holding instructor `i1` and workshop `ws-a` (code CLAUDE-AAAA) with `seats` seats.
    async fn store_with_workshop(seats: u32) -> (tempfile::TempDir, SqliteStore) {
        let (d, s) = temp_store().await;
        s.create_instructor("i1", "ada", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&new_workshop("ws-a", "CLAUDE-AAAA", seats))
            .await
            .expect("insert");
        (d, s)
    }

    #[tokio::test]
    async fn concurrent_claims_get_distinct_seats() {
        let (_d, s) = store_with_workshop(10).await;
        assert_eq!(
            s.claim_seat("ws-a", "early", None, Utc::now())
                .await
                .expect("claim"),
            None,
            "a workshop that is not running gives no seat"
        );
        s.transition("ws-a", &[WorkshopStatus::Created], WorkshopStatus::Running)
            .await
            .expect("t");
        let s = Arc::new(s);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.claim_seat("ws-a", &format!("h{i:04}"), None, Utc::now())
                        .await
                })
            })
            .collect();
        let mut got = BTreeSet::new();
        let mut full = 0;
        for t in tasks {
            match t.await.expect("join").expect("claim") {
                Some(seat) => assert!(got.insert(seat.seat)),
                None => full += 1,
            }
        }
        assert_eq!(got, (1..=10).collect::<BTreeSet<u32>>());
        assert_eq!(full, 40);
        let dup = s.claim_seat("ws-a", "h0001", None, Utc::now()).await;
        assert!(matches!(dup, Ok(None) | Err(StoreError::Conflict)));
    }

    #[tokio::test]
    async fn a_taken_reconnect_code_fails_only_its_own_claim_in_a_batch() {
        let (_d, s) = store_with_workshop(10).await;
        s.transition("ws-a", &[WorkshopStatus::Created], WorkshopStatus::Running)
            .await
            .expect("t");
        // Queued together, so the claim task commits them in one transaction.
        let (a, b, c) = tokio::join!(
            s.claim_seat("ws-a", "aaaaa", None, Utc::now()),
            s.claim_seat("ws-a", "aaaaa", None, Utc::now()),
            s.claim_seat("ws-a", "bbbbb", None, Utc::now()),
        );
        assert_eq!(a.expect("first").map(|x| x.seat), Some(1));
        assert!(matches!(b, Err(StoreError::Conflict)));
        assert_eq!(c.expect("third").map(|x| x.seat), Some(2));
        let kept: Vec<_> = s
            .list_seats("ws-a")
            .await
            .expect("list")
            .into_iter()
            .filter_map(|x| x.odehash)
            .collect();
        assert_eq!(kept, vec!["aaaaa".to_string(), "bbbbb".to_string()]);
    }

    #[tokio::test]
    async fn placement_reports_and_promotion() {
        let (_d, s) = store_with_workshop(2).await;
        s.transition(
            "ws-a",
            &[WorkshopStatus::Created],
            WorkshopStatus::Provisioning,
        )
        .await
        .expect("t");
        s.place_seats(
            "ws-a",
            &[(1, "ag1".into()), (2, "ag2".into())],
            SeatState::Creating,
        )
        .await
        .expect("place");
        assert_eq!(
            s.seats_for_agent("ag1").await.expect("q"),
            vec![("ws-a".to_string(), 1)]
        );
        assert!(!s
            .report_seat("ws-a", 1, "ag2", SeatState::Ready)
            .await
            .expect("wrong agent"));
        assert!(s
            .report_seat("ws-a", 1, "ag1", SeatState::Ready)
            .await
            .expect("report"));
        assert!(!s.promote_if_all_ready("ws-a").await.expect("promote"));
        assert!(s
            .report_seat("ws-a", 2, "ag2", SeatState::Ready)
            .await
            .expect("report"));
        assert!(s.promote_if_all_ready("ws-a").await.expect("promote"));
        assert_eq!(s.mark_agent_seats_lost("ag2").await.expect("lost"), 1);
        assert_eq!(
            s.get_seat("ws-a", 2).await.expect("q").map(|x| x.state),
            Some(SeatState::Lost)
        );
        let claimed = s
            .claim_seat("ws-a", "abcde", Some("Ann"), Utc::now())
            .await
            .expect("claim")
            .expect("seat");
        assert_eq!(
            s.seat_by_odehash("ws-a", "abcde").await.expect("q"),
            Some(claimed.clone())
        );
        s.touch_activity("ws-a", 1, Utc::now())
            .await
            .expect("touch");
        assert!(s
            .get_seat("ws-a", 1)
            .await
            .expect("q")
            .and_then(|x| x.last_activity_at)
            .is_some());
        s.set_seats_state("ws-a", Some(&[1]), SeatState::Destroyed)
            .await
            .expect("set");
        let states: Vec<_> = s
            .list_seats("ws-a")
            .await
            .expect("list")
            .into_iter()
            .map(|x| x.state)
            .collect();
        assert_eq!(states, vec![SeatState::Destroyed, SeatState::Lost]);
        assert_eq!(claimed.generation, 0);
        let reset = s
            .reset_seat("ws-a", claimed.seat, "fghij")
            .await
            .expect("reset")
            .expect("held seat");
        assert_eq!(
            (reset.generation, reset.odehash.as_deref()),
            (1, Some("fghij"))
        );
        assert_eq!(
            reset.name.as_deref(),
            Some("Ann"),
            "the learner's name is kept"
        );
        assert!(s
            .seat_by_odehash("ws-a", "abcde")
            .await
            .expect("q")
            .is_none());
        assert!(
            s.reset_seat("ws-a", 2, "klmno")
                .await
                .expect("reset")
                .is_none(),
            "a free seat has no learner to reset"
        );
        assert_eq!(s.count_seats_by_state().await.expect("count").len(), 2);
    }
}
