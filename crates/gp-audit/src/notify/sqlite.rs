//! The notification store of the SQLite trail: the `notify_*` tables in the trail's own
//! file, written through a connection of their own on a thread of their own, so that
//! delivery work never waits on the runtime, nor the trail's log writer on it.
//!
//! Outbox events reach `notify_event` two ways: the trail's indexer inserts those of
//! each log frame in the transaction that inserts the frame's rows (see `log.rs`), and
//! [`NotificationStore::record_changes`] inserts a poller's. SQLite lets one transaction
//! write at a time and each takes the next `seq` as it inserts (`AUTOINCREMENT`, never
//! reused), so `seq` order is commit order and a reader never sees a later event
//! without every earlier one.
//!
//! An event written with an audit row is in the outbox once the indexer has taken its
//! frame: after the row's answer, within the indexer's gathering time
//! (`INDEX_EVERY`, 100 ms) and its commit; sooner when a query of the trail arrives,
//! which ends the gathering; longer while the index is behind its log (an insert failed,
//! and the trail reports itself unready until it has caught up). Until then
//! [`NotificationStore::events_after`] does not answer it (nor anything after it).

use std::path::Path;
use std::sync::mpsc as std_mpsc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{
    Delivery, NewEvent, Notification, NotificationStore, StoredEvent, SubscriptionRow,
    SubscriptionStatus,
};
use crate::{AuditError, Synchronous};

/// The notification tables, created if absent when the trail opens.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notify_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    patient TEXT NOT NULL,
    practice TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT,
    occurred TEXT NOT NULL,
    source TEXT NOT NULL,
    supplier TEXT
);
CREATE TABLE IF NOT EXISTS notify_subscription (
    id TEXT PRIMARY KEY,
    supplier TEXT NOT NULL,
    resource TEXT NOT NULL,
    topic TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    events_since_start INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_sent_ms INTEGER NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notify_subscription_supplier ON notify_subscription (supplier);
CREATE TABLE IF NOT EXISTS notify_notification (
    subscription TEXT NOT NULL,
    number INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    outcome TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription, number)
);
CREATE TABLE IF NOT EXISTS notify_change_cursor (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
";

/// How long a statement waits for another connection's write (the trail's indexer) to
/// end before it fails.
const BUSY_TIMEOUT_MS: u32 = 5_000;

const SUBSCRIPTION_COLUMNS: &str = "id, supplier, resource, topic, status, created, events_since_start, cursor, failures, next_attempt_ms, last_sent_ms, last_error";
const EVENT_COLUMNS: &str =
    "seq, id, kind, patient, practice, resource_type, resource_id, occurred, source, supplier";

fn sql_error(e: rusqlite::Error) -> AuditError {
    AuditError(format!("SQLite notifications: {e}"))
}

fn stopped() -> AuditError {
    AuditError("the notification store's thread has stopped".into())
}

/// Inserts `events` into the outbox in order, in the caller's transaction. An event whose
/// id the outbox already holds is left as it is.
pub(crate) fn insert_events<'e>(
    tx: &Transaction<'_>,
    events: impl IntoIterator<Item = &'e NewEvent>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO notify_event (id, kind, patient, practice, resource_type, resource_id, occurred, source, supplier) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    )?;
    for e in events {
        stmt.execute(params![
            e.id,
            e.kind,
            e.patient,
            e.practice,
            e.resource_type,
            e.resource_id,
            e.occurred,
            e.source,
            e.supplier
        ])?;
    }
    Ok(())
}

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite notification store.
pub(crate) struct SqliteNotify {
    tx: std_mpsc::Sender<Work>,
}

impl SqliteNotify {
    /// Opens a connection of its own to the trail at `path` (whose tables exist) and
    /// starts its thread, which ends when the store is dropped. Its commits are flushed
    /// as `synchronous` says, as the trail's rows are.
    pub(crate) fn open(path: &Path, synchronous: Synchronous) -> Result<Self, AuditError> {
        let mut conn = Connection::open(path)
            .map_err(|e| AuditError(format!("cannot open {}: {e}", path.display())))?;
        // `FULL` in WAL mode flushes the WAL at each commit: what `full` promises for a
        // subscription's or a delivery's state, as the log's flush does for rows.
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA synchronous = {sync};"
        ))
        .map_err(sql_error)?;
        let (tx, rx) = std_mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("audit-notify".into())
            .spawn(move || {
                while let Ok(work) = rx.recv() {
                    work(&mut conn);
                }
            })
            .map_err(|e| AuditError(format!("cannot start the notification thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` on the store's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AuditError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = done.send(f(conn).map_err(sql_error));
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A write transaction: it takes SQLite's write lock at once, so it never fails half way
/// for another writer having committed since it began reading.
fn write(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

fn subscription_row(row: &Row<'_>) -> rusqlite::Result<SubscriptionRow> {
    let status: String = row.get(4)?;
    Ok(SubscriptionRow {
        id: row.get(0)?,
        supplier: row.get(1)?,
        resource: row.get(2)?,
        topic: row.get(3)?,
        status: SubscriptionStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown subscription status {status:?}").into(),
            )
        })?,
        created: row.get(5)?,
        events_since_start: row.get(6)?,
        cursor: row.get(7)?,
        failures: row.get(8)?,
        next_attempt_ms: row.get(9)?,
        last_sent_ms: row.get(10)?,
        last_error: row.get(11)?,
    })
}

/// An event from `EVENT_COLUMNS`, starting at column `at`.
fn event_row(row: &Row<'_>, at: usize) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(at)?,
        event: NewEvent {
            id: row.get(at + 1)?,
            kind: row.get(at + 2)?,
            patient: row.get(at + 3)?,
            practice: row.get(at + 4)?,
            resource_type: row.get(at + 5)?,
            resource_id: row.get(at + 6)?,
            occurred: row.get(at + 7)?,
            source: row.get(at + 8)?,
            supplier: row.get(at + 9)?,
        },
    })
}

fn outcome(text: Option<String>) -> rusqlite::Result<Option<Delivery>> {
    match text.as_deref() {
        None => Ok(None),
        Some("sent") => Ok(Some(Delivery::Sent)),
        Some("withheld") => Ok(Some(Delivery::Withheld)),
        Some(other) => Err(rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("unknown delivery outcome {other:?}").into(),
        )),
    }
}

pub(crate) fn outcome_text(d: Delivery) -> &'static str {
    match d {
        Delivery::Sent => "sent",
        Delivery::Withheld => "withheld",
    }
}

const NOTIFICATION_COLUMNS: &str =
    "subscription, number, event_seq, id, created, outcome, attempts";

fn notification_row(row: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        subscription: row.get(0)?,
        number: row.get(1)?,
        event_seq: row.get(2)?,
        id: row.get(3)?,
        created: row.get(4)?,
        outcome: outcome(row.get(5)?)?,
        attempts: row.get(6)?,
    })
}

/// Whether `owner` holds subscription `id`'s lease. A lease stays its holder's until
/// another owner claims it (expired), or the holder releases it.
fn holds(tx: &Transaction<'_>, id: &str, owner: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT count(*) FROM notify_subscription WHERE id = ?1 AND lease_owner = ?2",
        params![id, owner],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n == 1)
}

/// A successful delivery's mark on the subscription (see [`NotificationStore::finish`]).
const SENT: &str = "UPDATE notify_subscription SET last_sent_ms = ?2, failures = 0, last_error = NULL, \
     status = CASE WHEN status IN ('error', 'requested') THEN 'active' ELSE status END \
     WHERE id = ?1";

#[async_trait]
impl NotificationStore for SqliteNotify {
    async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), AuditError> {
        let s = s.clone();
        self.run(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO notify_subscription ({SUBSCRIPTION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    s.id,
                    s.supplier,
                    s.resource,
                    s.topic,
                    s.status.as_str(),
                    s.created,
                    s.events_since_start,
                    s.cursor,
                    s.failures,
                    s.next_attempt_ms,
                    s.last_sent_ms,
                    s.last_error
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, AuditError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscription WHERE id = ?1"),
                [id],
                subscription_row,
            )
            .optional()
        })
        .await
    }

    async fn subscriptions(
        &self,
        supplier: Option<&str>,
    ) -> Result<Vec<SubscriptionRow>, AuditError> {
        let supplier = supplier.map(str::to_owned);
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM notify_subscription \
                 WHERE ?1 IS NULL OR supplier = ?1 ORDER BY rowid"
            ))?;
            stmt.query_map([supplier], subscription_row)?.collect()
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
        self.run(move |conn| {
            conn.execute(
                "UPDATE notify_subscription SET status = ?2, last_error = ?3 WHERE id = ?1",
                params![id, status.as_str(), error],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, AuditError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = write(conn)?;
            let deleted = tx.execute("DELETE FROM notify_subscription WHERE id = ?1", [&id])?;
            tx.execute(
                "DELETE FROM notify_notification WHERE subscription = ?1",
                [&id],
            )?;
            tx.commit()?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<StoredEvent>, AuditError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM notify_event WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            stmt.query_map(params![seq, limit], |row| event_row(row, 0))?
                .collect()
        })
        .await
    }

    async fn last_seq(&self) -> Result<i64, AuditError> {
        self.run(|conn| {
            conn.query_row(
                "SELECT coalesce(max(seq), 0) FROM notify_event",
                [],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn change_cursor(&self, source: &str) -> Result<Option<String>, AuditError> {
        let source = source.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT cursor FROM notify_change_cursor WHERE source = ?1",
                [source],
                |row| row.get(0),
            )
            .optional()
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
        self.run(move |conn| {
            let tx = write(conn)?;
            let moved = match &expected {
                None => tx.execute(
                    "INSERT INTO notify_change_cursor (source, cursor) VALUES (?1, ?2) \
                     ON CONFLICT (source) DO NOTHING",
                    params![source, cursor],
                )?,
                Some(expected) => tx.execute(
                    "UPDATE notify_change_cursor SET cursor = ?2 WHERE source = ?1 AND cursor = ?3",
                    params![source, cursor, expected],
                )?,
            };
            if moved != 1 {
                // Dropped: rolled back, nothing written.
                return Ok(false);
            }
            insert_events(&tx, &events)?;
            tx.commit()?;
            Ok(true)
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
        self.run(move |conn| {
            let tx = write(conn)?;
            // Its own leases first (renewed before any is taken), then the longest due.
            let ids: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM notify_subscription \
                     WHERE status <> 'off' AND next_attempt_ms <= ?2 \
                       AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_until_ms <= ?2) \
                     ORDER BY lease_owner IS ?1 DESC, next_attempt_ms, rowid LIMIT ?3",
                )?
                .query_map(params![owner, now_ms, limit], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut claimed = Vec::with_capacity(ids.len());
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "UPDATE notify_subscription SET lease_owner = ?2, lease_until_ms = ?3 \
                     WHERE id = ?1 RETURNING {SUBSCRIPTION_COLUMNS}"
                ))?;
                for id in ids {
                    claimed.push(stmt.query_row(params![id, owner, until], subscription_row)?);
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<(), AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE notify_subscription SET lease_owner = NULL, lease_until_ms = 0 \
                 WHERE id = ?1 AND lease_owner = ?2",
                params![id, owner],
            )
            .map(drop)
        })
        .await
    }

    async fn undelivered(&self, id: &str) -> Result<Option<Notification>, AuditError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notify_notification \
                     WHERE subscription = ?1 AND outcome IS NULL ORDER BY number LIMIT 1"
                ),
                [id],
                notification_row,
            )
            .optional()
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
        self.run(move |conn| {
            let tx = write(conn)?;
            let number: Option<i64> = tx
                .query_row(
                    "UPDATE notify_subscription \
                     SET events_since_start = events_since_start + 1, cursor = ?3 \
                     WHERE id = ?1 AND lease_owner = ?2 AND cursor < ?3 RETURNING events_since_start",
                    params![id, owner, event_seq],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(number) = number else {
                return Ok(None);
            };
            let n = Notification {
                subscription: id,
                number,
                event_seq,
                id: notification_id,
                created: crate::now_recorded(),
                outcome: None,
                attempts: 0,
            };
            tx.execute(
                "INSERT INTO notify_notification (subscription, number, event_seq, id, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![n.subscription, n.number, n.event_seq, n.id, n.created],
            )?;
            tx.commit()?;
            Ok(Some(n))
        })
        .await
    }

    async fn advance(&self, id: &str, owner: &str, seq: i64) -> Result<bool, AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE notify_subscription SET cursor = ?3 WHERE id = ?1 AND lease_owner = ?2",
                params![id, owner, seq],
            )
            .map(|n| n == 1)
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
        self.run(move |conn| {
            let tx = write(conn)?;
            if !holds(&tx, &id, &owner)? {
                return Ok(false);
            }
            let attempt = i32::from(outcome == Delivery::Sent);
            tx.execute(
                "UPDATE notify_notification SET outcome = ?3, attempts = attempts + ?4 \
                 WHERE subscription = ?1 AND number = ?2 AND outcome IS NULL",
                params![id, number, outcome_text(outcome), attempt],
            )?;
            if outcome == Delivery::Sent {
                tx.execute(SENT, params![id, now_ms])?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn sent(&self, id: &str, owner: &str, now_ms: i64) -> Result<bool, AuditError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |conn| {
            conn.execute(
                &format!("{SENT} AND lease_owner = ?3"),
                params![id, now_ms, owner],
            )
            .map(|n| n == 1)
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
        self.run(move |conn| {
            let tx = write(conn)?;
            if !holds(&tx, &id, &owner)? {
                return Ok(false);
            }
            tx.execute(
                "UPDATE notify_notification SET attempts = attempts + 1 \
                 WHERE subscription = ?1 AND number = (SELECT min(number) FROM notify_notification \
                     WHERE subscription = ?1 AND outcome IS NULL)",
                [&id],
            )?;
            tx.execute(
                "UPDATE notify_subscription \
                 SET failures = ?2, next_attempt_ms = ?3, status = ?4, last_error = ?5 WHERE id = ?1",
                params![id, failures, next_attempt_ms, status.as_str(), error],
            )?;
            tx.commit()?;
            Ok(true)
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
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT n.subscription, n.number, n.event_seq, n.id, n.created, n.outcome, n.attempts, \
                        e.seq, e.id, e.kind, e.patient, e.practice, e.resource_type, e.resource_id, \
                        e.occurred, e.source, e.supplier \
                 FROM notify_notification n JOIN notify_event e ON e.seq = n.event_seq \
                 WHERE n.subscription = ?1 AND n.number BETWEEN ?2 AND ?3 \
                 ORDER BY n.number LIMIT ?4",
            )?;
            stmt.query_map(params![id, from, to, limit], |row| {
                Ok((notification_row(row)?, event_row(row, 7)?))
            })?
            .collect()
        })
        .await
    }
}
