//! Change notifications' durable state, in the audit database: the **outbox** of events
//! (what changed, about whom), the **subscriptions** suppliers made, and each
//! subscription's **delivery state** (how far through the outbox it is, the numbered
//! notifications made for it, which were delivered).
//!
//! Where events come from:
//! - a write through the gateway: [`AuditStore::append_with_events`](crate::AuditStore)
//!   commits its events with the write's audit row, in the same transaction (the same log
//!   frame, for SQLite), and only when the row commits as the success it records: an event
//!   is never announced for a write the supplier was told failed, and never lost for one
//!   it was told succeeded. (One race is beyond any store: a request that gives up at its
//!   deadline while its row's commit is already running is answered 503, yet that commit,
//!   events included, goes through; the row is then overwritten as the 503 it got, and its
//!   events stand: the change they announce was made.)
//! - a change made in the GP system itself: the gateway's poller reads each practice's
//!   change log and commits the events with the log's new cursor
//!   ([`NotificationStore::record_changes`]), compare-and-set, so two replicas polling the
//!   same practice record each change once.
//!
//! The outbox is one sequence (`seq`) in commit order: [`NotificationStore::events_after`]
//! never answers an event while one with a lower `seq` may still commit (PostgreSQL: only
//! events of transactions older than every one still running), so a reader moving its
//! cursor past what it read skips nothing.
//!
//! Delivery: a replica leases a subscription ([`NotificationStore::claim`]) and only the
//! lease holder moves its state on (every write names the `owner` and does nothing, answering
//! `false`/`None`, when the lease is no longer theirs). It delivers the subscription's oldest
//! undelivered notification, else numbers the next matching event
//! ([`NotificationStore::enqueue`]) and delivers that: in order, one at a time, at least
//! once. A replica killed mid-delivery loses its lease when it expires, and the next holder
//! delivers the same notification again (same id: receivers de-duplicate by it).
//!
//! # Tables
//!
//! Both backends keep them beside `audit_event` (SQLite: in the trail's file; PostgreSQL:
//! in its schema), created if absent when the store opens:
//!
//! | table | holds | key |
//! |---|---|---|
//! | `notify_event` | the outbox: `seq, id, kind, patient, practice, resource_type, resource_id, occurred, source, supplier` (PostgreSQL also `xid8`, the writing transaction's id) | `seq`; `id` unique |
//! | `notify_subscription` | each subscription and its delivery state: the [`SubscriptionRow`] fields, and its lease (`lease_owner`, `lease_until_ms`) | `id` |
//! | `notify_notification` | numbered notifications: `subscription, number, event_seq, id, created, outcome, attempts` (`outcome`: `sent`, `withheld`, or null while undelivered) | `(subscription, number)`; `id` unique |
//! | `notify_change_cursor` | each GP system change log's cursor | `source` |
//!
//! # The outbox's order
//!
//! `seq` is the commit order, and [`NotificationStore::events_after`] answers a prefix of
//! it: never an event while one with a lower `seq` may still commit. SQLite commits one
//! transaction at a time, each taking the next `seq`s. PostgreSQL's transactions commit
//! side by side: transactions inserting events take an advisory lock just before they do
//! and hold it to their commit, and a reader stops at the first event whose transaction
//! is not older than every one still running (`xid8 < pg_snapshot_xmin(pg_current_snapshot())`);
//! see `notify/postgres.rs`. [`NotificationStore::last_seq`] is the last `seq` that prefix
//! holds.
//!
//! How soon an event is answered: one committed with an audit row on SQLite once the
//! trail's indexer has inserted the row's log frame, within its gathering time (100 ms)
//! after the row's answer; on PostgreSQL once every transaction that was running when it
//! committed has ended. One written by [`NotificationStore::record_changes`], at once on
//! SQLite, as PostgreSQL's on PostgreSQL.
//!
//! # Leases
//!
//! A lease stays its holder's until the holder releases it or another owner claims it
//! once it has expired (`lease_until_ms <= now_ms` of that claim): the lease holder's
//! writes are checked against `lease_owner` alone, since they carry no time. A claim
//! answers the owner's own leases first (renewing them), then the subscriptions due the
//! longest. The writes do only what they say: [`NotificationStore::enqueue`] does not
//! check that `event_seq` is past the cursor, and [`NotificationStore::finish`] leaves a
//! notification that has already ended as it ended (the subscription's part of a `Sent`
//! still applies).
//!
//! Every write is committed as `[audit] synchronous` says: with `full`, flushed to disk
//! before it returns.

pub(crate) mod postgres;
pub(crate) mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use async_trait::async_trait;

use crate::AuditError;

/// An event to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A UUID (v7), unique.
    pub id: String,
    /// What happened: a `gp_adapter::ChangeKind` code (`reading-recorded`, …).
    pub kind: String,
    /// The patient's NHS number.
    pub patient: String,
    /// The ODS code of the practice whose record changed.
    pub practice: String,
    /// The FHIR resource type changed (`Observation`, `Appointment`, `Patient`, …).
    pub resource_type: String,
    /// The FHIR id of the resource changed (`None`: the Patient, by NHS number).
    pub resource_id: Option<String>,
    /// When the change was made, RFC 3339 UTC.
    pub occurred: String,
    /// `gateway` (a write through the gateway) or `gp-system` (found in the system's
    /// change log).
    pub source: String,
    /// The supplier whose write it was (`source` = `gateway`).
    pub supplier: Option<String>,
}

/// An event as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its place in the outbox, from 1, in commit order.
    pub seq: i64,
    pub event: NewEvent,
}

/// `Subscription.status` (R4): `requested` until the handshake is delivered, then
/// `active`; `error` after repeated failed deliveries (still retried, back to `active`
/// on the next success); `off` when the supplier turned it off or it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Requested,
    Active,
    Error,
    Off,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Error => "error",
            Self::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Requested, Self::Active, Self::Error, Self::Off]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A subscription and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// A UUID; the Subscription's id.
    pub id: String,
    /// The client id of the supplier that made it (only it sees and manages it).
    pub supplier: String,
    /// The Subscription resource as accepted (JSON), answered on reads with the
    /// current status filled in.
    pub resource: String,
    /// The topic's canonical URL.
    pub topic: String,
    pub status: SubscriptionStatus,
    /// When it was made, RFC 3339 UTC.
    pub created: String,
    /// Events numbered for it so far (`eventsSinceSubscriptionStart`).
    pub events_since_start: i64,
    /// The outbox `seq` it has read up to: events up to here are numbered for it or
    /// were not for it.
    pub cursor: i64,
    /// Deliveries failed in a row (0 after a success).
    pub failures: i32,
    /// Not to be tried again before this (Unix ms; 0: now).
    pub next_attempt_ms: i64,
    /// When something (a notification, a handshake, a heartbeat) was last delivered
    /// (Unix ms; 0: never).
    pub last_sent_ms: i64,
    /// The last delivery error, as the gateway worded it (never patient data).
    pub last_error: Option<String>,
}

/// A numbered notification of one event for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subscription: String,
    /// Its number in the subscription (`eventNumber`), from 1, with no gaps.
    pub number: i64,
    /// The outbox event it announces.
    pub event_seq: i64,
    /// Its id (a UUID): the `webhook-id` of every attempt to deliver it.
    pub id: String,
    /// When it was numbered, RFC 3339 UTC.
    pub created: String,
    /// How it ended: `None` while undelivered.
    pub outcome: Option<Delivery>,
    /// Attempts made so far.
    pub attempts: i32,
}

/// How a notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Sent,
    /// Not sent: when it was due, the supplier was no longer allowed to learn of it
    /// (pairing, scope, status, a sensitive or dissenting patient).
    Withheld,
}

/// Subscriptions, the outbox and delivery state. See the module's documentation.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    // ---- subscriptions ----

    /// Stores a new subscription (its `id` is new).
    async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), AuditError>;

    /// Subscription `id`, whoever made it.
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, AuditError>;

    /// Every subscription (of `supplier`, when given), oldest first.
    async fn subscriptions(
        &self,
        supplier: Option<&str>,
    ) -> Result<Vec<SubscriptionRow>, AuditError>;

    /// Sets subscription `id`'s status and last error (a handshake's outcome, the
    /// supplier turning it off); `false` when there is no such subscription.
    async fn set_status(
        &self,
        id: &str,
        status: SubscriptionStatus,
        error: Option<&str>,
    ) -> Result<bool, AuditError>;

    /// Deletes subscription `id` and its notifications; `false` when there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool, AuditError>;

    // ---- the outbox ----

    /// Events after outbox `seq` (0: from the start), in order, at most `limit`, never
    /// past one whose transaction may still be running (see the module's documentation).
    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<StoredEvent>, AuditError>;

    /// The last outbox `seq` (0: empty): where a new subscription starts.
    async fn last_seq(&self) -> Result<i64, AuditError>;

    /// The change-log cursor stored for `source` (a practice's key), if any.
    async fn change_cursor(&self, source: &str) -> Result<Option<String>, AuditError>;

    /// Commits `events` and `source`'s new cursor together, if the stored cursor is
    /// still `expected` (`None`: none stored yet); `false` (nothing written) when
    /// another replica moved it first.
    async fn record_changes(
        &self,
        source: &str,
        expected: Option<&str>,
        cursor: &str,
        events: Vec<NewEvent>,
    ) -> Result<bool, AuditError>;

    // ---- delivery (lease holders only) ----

    /// Leases to `owner`, until `now_ms + lease_ms`, up to `limit` subscriptions that
    /// are not `off`, are due (`next_attempt_ms <= now_ms`), and are not leased to
    /// another owner (or whose lease expired); answers them. A lease already `owner`'s is
    /// renewed and answered too.
    async fn claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SubscriptionRow>, AuditError>;

    /// Gives back `owner`'s lease of subscription `id`.
    async fn release(&self, id: &str, owner: &str) -> Result<(), AuditError>;

    /// Subscription `id`'s oldest notification not yet delivered nor withheld.
    async fn undelivered(&self, id: &str) -> Result<Option<Notification>, AuditError>;

    /// Numbers outbox event `event_seq` for subscription `id` (number
    /// `events_since_start + 1`, notification id `notification_id`) and moves its cursor
    /// to `event_seq`, in one transaction; `None` when `owner` does not hold the lease, or
    /// when the cursor is at or past `event_seq` already (an event is never numbered twice
    /// for one subscription, whatever a stale reader asks).
    async fn enqueue(
        &self,
        id: &str,
        owner: &str,
        event_seq: i64,
        notification_id: &str,
    ) -> Result<Option<Notification>, AuditError>;

    /// Moves subscription `id`'s cursor to `seq` (past events not for it); `false` when
    /// `owner` does not hold the lease.
    async fn advance(&self, id: &str, owner: &str, seq: i64) -> Result<bool, AuditError>;

    /// Records notification `number` of subscription `id` as ended (`Sent` also records
    /// the attempt, sets `last_sent_ms`, clears `failures` and `last_error`, and makes an
    /// `error` or `requested` subscription `active`); `false` when `owner` does not hold
    /// the lease.
    async fn finish(
        &self,
        id: &str,
        owner: &str,
        number: i64,
        outcome: Delivery,
        now_ms: i64,
    ) -> Result<bool, AuditError>;

    /// Records a delivery that succeeded without a notification (a handshake, a
    /// heartbeat): as [`finish`](Self::finish) with `Sent`, for the subscription alone.
    async fn sent(&self, id: &str, owner: &str, now_ms: i64) -> Result<bool, AuditError>;

    /// Records a failed attempt: the undelivered notification's `attempts` (if any) goes
    /// up, `failures`, `next_attempt_ms`, `status` and `last_error` are set as given;
    /// `false` when `owner` does not hold the lease.
    async fn failed(
        &self,
        id: &str,
        owner: &str,
        failures: i32,
        next_attempt_ms: i64,
        status: SubscriptionStatus,
        error: &str,
    ) -> Result<bool, AuditError>;

    /// Subscription `id`'s notifications numbered `from..=to` (at most `limit`), with
    /// their events, in order: what `$events` answers (withheld ones included, for the
    /// caller to leave out).
    async fn notifications(
        &self,
        id: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(Notification, StoredEvent)>, AuditError>;
}
