//! The notification store of the PostgreSQL trail: the `notify_*` tables in the trail's
//! schema, shared by every replica, through a connection of each replica's own (its
//! audit writer keeps the other).
//!
//! **The outbox's order.** `seq` comes from a sequence, drawn as each event is inserted,
//! and transactions commit in any order: a reader could see seq 6 committed while seq 5
//! is still running, move its cursor past 6 and never see 5. Two rules prevent it:
//! - every transaction that inserts events takes the outbox lock ([`OUTBOX_LOCK`], a
//!   transaction-level advisory lock) just before it inserts them and holds it to its
//!   commit, as the last thing it does: such transactions draw their `seq`s and commit one
//!   after the other, so their `seq` order is their commit order;
//! - a reader answers only the events before the first one written by a transaction
//!   that may still be running, by its `xid8` column (the writing transaction's id,
//!   `pg_current_xact_id()`): those with `xid8 < pg_snapshot_xmin(pg_current_snapshot())`
//!   are settled (every transaction older than the oldest still running has ended), and
//!   the answer stops at the first event that is not.
//!
//! The xid rule alone holds back a later event while an *older* transaction (one that
//! began writing first) may still commit a lower `seq`; it cannot see a *younger*
//! transaction that drew a lower `seq` and is still running while an older one commits a
//! higher one (xids are taken at a transaction's first write, `seq`s at its inserts).
//! The lock rules that out among the trail's own writers; it is why an event must never
//! be inserted without it.
//!
//! So an event is answered once its transaction, and every transaction running when it
//! committed, has ended: a long-running writing transaction anywhere on the server (not
//! a read-only one) holds later events back until it ends. PostgreSQL 13 or later.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Transaction};

use super::sqlite::outcome_text;
use super::{
    Delivery, NewEvent, Notification, NotificationStore, StoredEvent, SubscriptionRow,
    SubscriptionStatus,
};
use crate::pg::{CLIENT_GRACE, connect, pg_error};
use crate::{AuditError, Synchronous};

/// The advisory lock (transaction level) held by a transaction inserting outbox events,
/// from just before the inserts to its commit. (The schema's DDL takes 7242170651.)
pub(crate) const OUTBOX_LOCK: i64 = 7_242_170_652;

/// Events per INSERT statement (9 bind parameters each, far below PostgreSQL's 65,535).
const EVENTS_PER_STATEMENT: usize = 1_000;

/// Inserts `events` into the outbox in order, in the caller's transaction, under the
/// outbox lock (held to the caller's commit: insert events last). An event whose id the
/// outbox already holds is left as it is.
pub(crate) async fn insert_events(
    tx: &Transaction<'_>,
    schema: &str,
    events: &[&NewEvent],
) -> Result<(), AuditError> {
    if events.is_empty() {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OUTBOX_LOCK])
        .await
        .map_err(pg_error)?;
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 9);
        let mut values = Vec::with_capacity(chunk.len());
        for (i, e) in chunk.iter().enumerate() {
            let placeholders: Vec<String> = (1..=9).map(|k| format!("${}", i * 9 + k)).collect();
            values.push(format!("({})", placeholders.join(",")));
            params.extend_from_slice(&[
                &e.id,
                &e.kind,
                &e.patient,
                &e.practice,
                &e.resource_type,
                &e.resource_id,
                &e.occurred,
                &e.source,
                &e.supplier,
            ]);
        }
        // VALUES rows are inserted, and draw their `seq`s, in order.
        let sql = format!(
            "INSERT INTO {schema}.notify_event (id, kind, patient, practice, resource_type, resource_id, occurred, source, supplier) \
             VALUES {} ON CONFLICT (id) DO NOTHING",
            values.join(",")
        );
        tx.execute(sql.as_str(), &params).await.map_err(pg_error)?;
    }
    Ok(())
}

/// The outbox's settled horizon, as a subquery: the first `seq` after `$1` written by a
/// transaction that may still be running (`NULL`: none). It reads `notify_event_xid8`.
fn unsettled_after(schema: &str) -> String {
    format!(
        "(SELECT min(seq) FROM {schema}.notify_event \
          WHERE seq > $1 AND xid8 >= pg_snapshot_xmin(pg_current_snapshot()))"
    )
}

const SUBSCRIPTION_COLUMNS: &str = "id, supplier, resource, topic, status, created, events_since_start, cursor, failures, next_attempt_ms, last_sent_ms, last_error";
const EVENT_COLUMNS: &str =
    "seq, id, kind, patient, practice, resource_type, resource_id, occurred, source, supplier";
const NOTIFICATION_COLUMNS: &str =
    "subscription, number, event_seq, id, created, outcome, attempts";

fn conversion(what: String) -> AuditError {
    AuditError(format!("PostgreSQL notifications: {what}"))
}

fn subscription_row(row: &Row) -> Result<SubscriptionRow, AuditError> {
    let status: String = row.try_get(4).map_err(pg_error)?;
    Ok(SubscriptionRow {
        id: row.try_get(0).map_err(pg_error)?,
        supplier: row.try_get(1).map_err(pg_error)?,
        resource: row.try_get(2).map_err(pg_error)?,
        topic: row.try_get(3).map_err(pg_error)?,
        status: SubscriptionStatus::parse(&status)
            .ok_or_else(|| conversion(format!("unknown subscription status {status:?}")))?,
        created: row.try_get(5).map_err(pg_error)?,
        events_since_start: row.try_get(6).map_err(pg_error)?,
        cursor: row.try_get(7).map_err(pg_error)?,
        failures: row.try_get(8).map_err(pg_error)?,
        next_attempt_ms: row.try_get(9).map_err(pg_error)?,
        last_sent_ms: row.try_get(10).map_err(pg_error)?,
        last_error: row.try_get(11).map_err(pg_error)?,
    })
}

/// An event from [`EVENT_COLUMNS`], starting at column `at`.
fn event_row(row: &Row, at: usize) -> Result<StoredEvent, AuditError> {
    let get = |i: usize| row.try_get::<_, String>(at + i).map_err(pg_error);
    let opt = |i: usize| row.try_get::<_, Option<String>>(at + i).map_err(pg_error);
    Ok(StoredEvent {
        seq: row.try_get(at).map_err(pg_error)?,
        event: NewEvent {
            id: get(1)?,
            kind: get(2)?,
            patient: get(3)?,
            practice: get(4)?,
            resource_type: get(5)?,
            resource_id: opt(6)?,
            occurred: get(7)?,
            source: get(8)?,
            supplier: opt(9)?,
        },
    })
}

fn notification_row(row: &Row) -> Result<Notification, AuditError> {
    let outcome: Option<String> = row.try_get(5).map_err(pg_error)?;
    Ok(Notification {
        subscription: row.try_get(0).map_err(pg_error)?,
        number: row.try_get(1).map_err(pg_error)?,
        event_seq: row.try_get(2).map_err(pg_error)?,
        id: row.try_get(3).map_err(pg_error)?,
        created: row.try_get(4).map_err(pg_error)?,
        outcome: match outcome.as_deref() {
            None => None,
            Some("sent") => Some(Delivery::Sent),
            Some("withheld") => Some(Delivery::Withheld),
            Some(other) => return Err(conversion(format!("unknown delivery outcome {other:?}"))),
        },
        attempts: row.try_get(6).map_err(pg_error)?,
    })
}

/// Whether `owner` holds subscription `id`'s lease, locking the row to the end of `tx`
/// (a claim waits for it). A lease stays its holder's until another owner claims it
/// (expired), or the holder releases it.
async fn holds(
    tx: &Transaction<'_>,
    schema: &str,
    id: &str,
    owner: &str,
) -> Result<bool, AuditError> {
    tx.query_opt(
        &format!(
            "SELECT 1 FROM {schema}.notify_subscription WHERE id = $1 AND lease_owner = $2 FOR UPDATE"
        ),
        &[&id, &owner],
    )
    .await
    .map(|row| row.is_some())
    .map_err(pg_error)
}

/// A successful delivery's mark on the subscription (see [`NotificationStore::finish`]).
fn sent_sql(schema: &str) -> String {
    format!(
        "UPDATE {schema}.notify_subscription SET last_sent_ms = $2, failures = 0, last_error = NULL, \
         status = CASE WHEN status IN ('error', 'requested') THEN 'active' ELSE status END \
         WHERE id = $1"
    )
}

type Work<'a, T> = Pin<Box<dyn Future<Output = Result<T, AuditError>> + Send + 'a>>;

/// The PostgreSQL notification store.
pub(crate) struct PostgresNotify {
    config: Config,
    schema: String,
    synchronous: Synchronous,
    timeout: Duration,
    client: Mutex<Option<Client>>,
}

impl PostgresNotify {
    /// Connects a client of its own (creating the tables if needed); it reconnects with
    /// the same settings after a failure. `timeout` bounds each statement, as it does the
    /// audit writer's.
    pub(crate) async fn connect(
        config: Config,
        schema: &str,
        synchronous: Synchronous,
        timeout: Duration,
    ) -> Result<Self, AuditError> {
        let client = connect(&config, schema, synchronous, timeout).await?;
        Ok(Self {
            config,
            schema: schema.to_owned(),
            synchronous,
            timeout,
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `work` on the connection (reconnecting first if it was lost), one at a time.
    /// When no answer comes in time, the connection is dropped (the server then rolls
    /// back whatever `work` left open).
    async fn run<T: Send>(
        &self,
        work: impl for<'a> FnOnce(&'a mut Client, &'a str) -> Work<'a, T> + Send,
    ) -> Result<T, AuditError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard =
                Some(connect(&self.config, &self.schema, self.synchronous, self.timeout).await?);
        }
        let Some(client) = guard.as_mut() else {
            return Err(AuditError("PostgreSQL unreachable".into()));
        };
        let limit = self.timeout + CLIENT_GRACE;
        match tokio::time::timeout(limit, work(client, &self.schema)).await {
            Ok(result) => result,
            Err(_) => {
                *guard = None;
                Err(AuditError(format!(
                    "PostgreSQL: no answer within {} ms; connection dropped",
                    limit.as_millis()
                )))
            }
        }
    }
}

#[async_trait]
impl NotificationStore for PostgresNotify {
    async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), AuditError> {
        let s = s.clone();
        self.run(move |c, schema| {
            Box::pin(async move {
                c.execute(
                    &format!(
                        "INSERT INTO {schema}.notify_subscription ({SUBSCRIPTION_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                    ),
                    &[
                        &s.id,
                        &s.supplier,
                        &s.resource,
                        &s.topic,
                        &s.status.as_str(),
                        &s.created,
                        &s.events_since_start,
                        &s.cursor,
                        &s.failures,
                        &s.next_attempt_ms,
                        &s.last_sent_ms,
                        &s.last_error,
                    ],
                )
                .await
                .map(drop)
                .map_err(pg_error)
            })
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, AuditError> {
        let id = id.to_owned();
        self.run(move |c, schema| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT {SUBSCRIPTION_COLUMNS} FROM {schema}.notify_subscription WHERE id = $1"
                        ),
                        &[&id],
                    )
                    .await
                    .map_err(pg_error)?;
                row.as_ref().map(subscription_row).transpose()
            })
        })
        .await
    }

    async fn subscriptions(
        &self,
        supplier: Option<&str>,
    ) -> Result<Vec<SubscriptionRow>, AuditError> {
        let supplier = supplier.map(str::to_owned);
        self.run(move |c, schema| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {SUBSCRIPTION_COLUMNS} FROM {schema}.notify_subscription \
                             WHERE $1::text IS NULL OR supplier = $1 ORDER BY made"
                        ),
                        &[&supplier],
                    )
                    .await
                    .map_err(pg_error)?;
                rows.iter().map(subscription_row).collect()
            })
        })
        .await
    }

    async fn set_status(
        &self,
        id: &str,
        status: SubscriptionStatus,
        error: Option<&str>,
    ) -> Result<bool, AuditError> {
        let (id, error) = (id.to_owned(), error.map(str::to_owned));
        self.run(move |c, schema| {
            Box::pin(async move {
                c.execute(
                    &format!(
                        "UPDATE {schema}.notify_subscription SET status = $2, last_error = $3 WHERE id = $1"
                    ),
                    &[&id, &status.as_str(), &error],
                )
                .await
                .map(|n| n == 1)
                .map_err(pg_error)
            })
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, AuditError> {
        let id = id.to_owned();
        self.run(move |c, schema| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(pg_error)?;
                // The subscription first: a lease holder numbering a notification holds
                // its row, so this waits for that commit, and the next statement then
                // sees the notification it made.
                let deleted = tx
                    .execute(
                        &format!("DELETE FROM {schema}.notify_subscription WHERE id = $1"),
                        &[&id],
                    )
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    &format!("DELETE FROM {schema}.notify_notification WHERE subscription = $1"),
                    &[&id],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok(deleted == 1)
            })
        })
        .await
    }

    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<StoredEvent>, AuditError> {
        self.run(move |c, schema| {
            Box::pin(async move {
                let unsettled = unsettled_after(schema);
                let rows = c
                    .query(
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM {schema}.notify_event \
                             WHERE seq > $1 AND seq < coalesce({unsettled}, 9223372036854775807) \
                             ORDER BY seq LIMIT $2"
                        ),
                        &[&seq, &i64::from(limit)],
                    )
                    .await
                    .map_err(pg_error)?;
                rows.iter().map(|row| event_row(row, 0)).collect()
            })
        })
        .await
    }

    async fn last_seq(&self) -> Result<i64, AuditError> {
        self.run(move |c, schema| {
            Box::pin(async move {
                // The last event `events_after(0, ..)` would answer: the last one before the
                // first that may not be settled (not that one's seq - 1: a seq between
                // may belong to a transaction still running).
                let unsettled = unsettled_after(schema);
                let row = c
                    .query_one(
                        &format!(
                            "SELECT coalesce(max(seq), 0) FROM {schema}.notify_event \
                             WHERE seq < coalesce({unsettled}, 9223372036854775807)"
                        ),
                        &[&0i64],
                    )
                    .await
                    .map_err(pg_error)?;
                row.try_get(0).map_err(pg_error)
            })
        })
        .await
    }

    async fn change_cursor(&self, source: &str) -> Result<Option<String>, AuditError> {
        let source = source.to_owned();
        self.run(move |c, schema| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT cursor FROM {schema}.notify_change_cursor WHERE source = $1"
                        ),
                        &[&source],
                    )
                    .await
                    .map_err(pg_error)?;
                row.map(|r| r.try_get(0)).transpose().map_err(pg_error)
            })
        })
        .await
    }

    async fn record_changes(
        &self,
        source: &str,
        expected: Option<&str>,
        cursor: &str,
        events: Vec<NewEvent>,
    ) -> Result<bool, AuditError> {
        let (source, expected, cursor) = (
            source.to_owned(),
            expected.map(str::to_owned),
            cursor.to_owned(),
        );
        self.run(move |c, schema| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(pg_error)?;
                // Another replica's move of the same cursor holds its row (or its key)
                // until it commits; this one then finds the cursor moved and writes nothing.
                let moved = match &expected {
                    None => tx
                        .execute(
                            &format!(
                                "INSERT INTO {schema}.notify_change_cursor (source, cursor) VALUES ($1, $2) \
                                 ON CONFLICT (source) DO NOTHING"
                            ),
                            &[&source, &cursor],
                        )
                        .await,
                    Some(expected) => tx
                        .execute(
                            &format!(
                                "UPDATE {schema}.notify_change_cursor SET cursor = $2 \
                                 WHERE source = $1 AND cursor = $3"
                            ),
                            &[&source, &cursor, expected],
                        )
                        .await,
                }
                .map_err(pg_error)?;
                if moved != 1 {
                    tx.rollback().await.map_err(pg_error)?;
                    return Ok(false);
                }
                let refs: Vec<&NewEvent> = events.iter().collect();
                insert_events(&tx, schema, &refs).await?;
                tx.commit().await.map_err(pg_error)?;
                Ok(true)
            })
        })
        .await
    }

    async fn claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SubscriptionRow>, AuditError> {
        let owner = owner.to_owned();
        let until = now_ms.saturating_add(lease_ms);
        self.run(move |c, schema| {
            Box::pin(async move {
                // Rows another claimer has locked are skipped, and one it leased meanwhile
                // no longer matches when its row is locked here (both conditions are
                // checked again on the latest row): two claimers get disjoint sets. Its own
                // leases first (renewed before any is taken), then the longest due.
                let available = "status <> 'off' AND next_attempt_ms <= $2 \
                     AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until_ms <= $2)";
                let rows = c
                    .query(
                        &format!(
                            "WITH picked AS (
                                SELECT id AS picked_id FROM {schema}.notify_subscription
                                WHERE {available}
                                ORDER BY lease_owner IS NOT DISTINCT FROM $1 DESC, next_attempt_ms, made
                                LIMIT $4 FOR UPDATE SKIP LOCKED
                             ), leased AS (
                                UPDATE {schema}.notify_subscription
                                SET lease_owner = $1, lease_until_ms = $3
                                FROM picked WHERE id = picked_id AND {available}
                                RETURNING made, {SUBSCRIPTION_COLUMNS}
                             )
                             SELECT {SUBSCRIPTION_COLUMNS} FROM leased ORDER BY next_attempt_ms, made"
                        ),
                        &[&owner, &now_ms, &until, &i64::from(limit)],
                    )
                    .await
                    .map_err(pg_error)?;
                rows.iter().map(subscription_row).collect()
            })
        })
        .await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<(), AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                c.execute(
                    &format!(
                        "UPDATE {schema}.notify_subscription SET lease_owner = NULL, lease_until_ms = 0 \
                         WHERE id = $1 AND lease_owner = $2"
                    ),
                    &[&id, &owner],
                )
                .await
                .map(drop)
                .map_err(pg_error)
            })
        })
        .await
    }

    async fn undelivered(&self, id: &str) -> Result<Option<Notification>, AuditError> {
        let id = id.to_owned();
        self.run(move |c, schema| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT {NOTIFICATION_COLUMNS} FROM {schema}.notify_notification \
                             WHERE subscription = $1 AND outcome IS NULL ORDER BY number LIMIT 1"
                        ),
                        &[&id],
                    )
                    .await
                    .map_err(pg_error)?;
                row.as_ref().map(notification_row).transpose()
            })
        })
        .await
    }

    async fn enqueue(
        &self,
        id: &str,
        owner: &str,
        event_seq: i64,
        notification_id: &str,
    ) -> Result<Option<Notification>, AuditError> {
        let (id, owner, notification_id) =
            (id.to_owned(), owner.to_owned(), notification_id.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(pg_error)?;
                // The count and the cursor move in the subscription's row, locked to the
                // commit: numbers follow one another with no gap.
                let Some(row) = tx
                    .query_opt(
                        &format!(
                            "UPDATE {schema}.notify_subscription \
                             SET events_since_start = events_since_start + 1, cursor = $3 \
                             WHERE id = $1 AND lease_owner = $2 AND cursor < $3 RETURNING events_since_start"
                        ),
                        &[&id, &owner, &event_seq],
                    )
                    .await
                    .map_err(pg_error)?
                else {
                    tx.rollback().await.map_err(pg_error)?;
                    return Ok(None);
                };
                let n = Notification {
                    subscription: id,
                    number: row.try_get(0).map_err(pg_error)?,
                    event_seq,
                    id: notification_id,
                    created: crate::now_recorded(),
                    outcome: None,
                    attempts: 0,
                };
                tx.execute(
                    &format!(
                        "INSERT INTO {schema}.notify_notification (subscription, number, event_seq, id, created) \
                         VALUES ($1, $2, $3, $4, $5)"
                    ),
                    &[&n.subscription, &n.number, &n.event_seq, &n.id, &n.created],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok(Some(n))
            })
        })
        .await
    }

    async fn advance(&self, id: &str, owner: &str, seq: i64) -> Result<bool, AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                c.execute(
                    &format!(
                        "UPDATE {schema}.notify_subscription SET cursor = $3 WHERE id = $1 AND lease_owner = $2"
                    ),
                    &[&id, &owner, &seq],
                )
                .await
                .map(|n| n == 1)
                .map_err(pg_error)
            })
        })
        .await
    }

    async fn finish(
        &self,
        id: &str,
        owner: &str,
        number: i64,
        outcome: Delivery,
        now_ms: i64,
    ) -> Result<bool, AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(pg_error)?;
                if !holds(&tx, schema, &id, &owner).await? {
                    tx.rollback().await.map_err(pg_error)?;
                    return Ok(false);
                }
                let attempt = i32::from(outcome == Delivery::Sent);
                tx.execute(
                    &format!(
                        "UPDATE {schema}.notify_notification SET outcome = $3, attempts = attempts + $4 \
                         WHERE subscription = $1 AND number = $2 AND outcome IS NULL"
                    ),
                    &[&id, &number, &outcome_text(outcome), &attempt],
                )
                .await
                .map_err(pg_error)?;
                if outcome == Delivery::Sent {
                    tx.execute(&sent_sql(schema), &[&id, &now_ms])
                        .await
                        .map_err(pg_error)?;
                }
                tx.commit().await.map_err(pg_error)?;
                Ok(true)
            })
        })
        .await
    }

    async fn sent(&self, id: &str, owner: &str, now_ms: i64) -> Result<bool, AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                c.execute(
                    &format!("{} AND lease_owner = $3", sent_sql(schema)),
                    &[&id, &now_ms, &owner],
                )
                .await
                .map(|n| n == 1)
                .map_err(pg_error)
            })
        })
        .await
    }

    async fn failed(
        &self,
        id: &str,
        owner: &str,
        failures: i32,
        next_attempt_ms: i64,
        status: SubscriptionStatus,
        error: &str,
    ) -> Result<bool, AuditError> {
        let (id, owner, error) = (id.to_owned(), owner.to_owned(), error.to_owned());
        self.run(move |c, schema| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(pg_error)?;
                if !holds(&tx, schema, &id, &owner).await? {
                    tx.rollback().await.map_err(pg_error)?;
                    return Ok(false);
                }
                tx.execute(
                    &format!(
                        "UPDATE {schema}.notify_notification SET attempts = attempts + 1 \
                         WHERE subscription = $1 AND number = (SELECT min(number) FROM {schema}.notify_notification \
                             WHERE subscription = $1 AND outcome IS NULL)"
                    ),
                    &[&id],
                )
                .await
                .map_err(pg_error)?;
                tx.execute(
                    &format!(
                        "UPDATE {schema}.notify_subscription \
                         SET failures = $2, next_attempt_ms = $3, status = $4, last_error = $5 WHERE id = $1"
                    ),
                    &[&id, &failures, &next_attempt_ms, &status.as_str(), &error],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok(true)
            })
        })
        .await
    }

    async fn notifications(
        &self,
        id: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(Notification, StoredEvent)>, AuditError> {
        let id = id.to_owned();
        self.run(move |c, schema| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT n.subscription, n.number, n.event_seq, n.id, n.created, n.outcome, n.attempts, \
                                    e.seq, e.id, e.kind, e.patient, e.practice, e.resource_type, e.resource_id, \
                                    e.occurred, e.source, e.supplier \
                             FROM {schema}.notify_notification n \
                             JOIN {schema}.notify_event e ON e.seq = n.event_seq \
                             WHERE n.subscription = $1 AND n.number BETWEEN $2 AND $3 \
                             ORDER BY n.number LIMIT $4"
                        ),
                        &[&id, &from, &to, &i64::from(limit)],
                    )
                    .await
                    .map_err(pg_error)?;
                rows.iter()
                    .map(|row| Ok((notification_row(row)?, event_row(row, 7)?)))
                    .collect()
            })
        })
        .await
    }
}
