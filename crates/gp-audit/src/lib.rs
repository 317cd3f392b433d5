//! The audit trail (the gp-audit crate): one durable row for every request through the gateway, written
//! before a clinical response is released. No audit, no data: when the store cannot
//! commit the row, the supplier gets a 503, never the record.
//!
//! Stores sit behind [`AuditStore`]: an embedded SQLite file by default (nothing to
//! install; rows become durable in a log of its own and are indexed behind it, see
//! `log.rs`), PostgreSQL when several replicas must share one trail. Both batch the rows
//! that arrive together (group commit), so durability does not cost a disk flush per
//! request, and each request waits only for its own batch.
//!
//! The same database keeps change notifications' state ([`notify`]): an **outbox** of
//! events (`notify_event`), which a write's audit row commits with it
//! ([`AuditStore::append_with_events`]: same transaction, same SQLite log frame, and only
//! when the row commits as given), subscriptions and their delivery state
//! (`notify_subscription`, `notify_notification`) and the GP systems' change-log cursors
//! (`notify_change_cursor`). The outbox is read in commit order (`seq`), never past an
//! event a still-running transaction may yet precede; see [`notify`] for the tables and
//! that rule.

mod log;
pub mod notify;
mod pg;
mod postgres;
pub mod search;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gp_fhir::{FhirError, IssueType, SpineCode};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use notify::{
    Delivery, NewEvent, Notification, NotificationStore, StoredEvent, SubscriptionRow,
    SubscriptionStatus,
};
pub use postgres::PostgresAudit;
pub use sqlite::SqliteAudit;

/// One audited request. Never holds a token, a key or a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unique id of the row (a UUID), the AuditEvent id.
    pub id: String,
    /// When the response was decided, RFC 3339 UTC with milliseconds.
    pub recorded: String,
    /// `X-Request-ID`.
    pub request_id: String,
    /// Whether the caller sent that `X-Request-ID` (`false`: the gateway minted it).
    /// `None` on rows written before this was recorded.
    pub request_id_supplied: Option<bool>,
    /// The supplier's client id (none before authentication). On a token request's row:
    /// the registered client its assertion names, whether the token was issued or not
    /// (never a name the registry does not hold).
    pub supplier: Option<String>,
    /// The access token's id (`jti`), never the token: the one a request carried, or on a
    /// token request's row the one issued.
    pub token_id: Option<String>,
    /// The patient's NHS number, when the request named one.
    pub patient: Option<String>,
    /// The practice the patient's record was located at.
    pub practice: Option<String>,
    /// `read`, `search-type`, `create`, `update`, `patch`, `operation`, `token` or `none`
    /// (unrouted).
    pub interaction: String,
    /// The FHIR resource type, when routed.
    pub resource_type: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The Spine (or OAuth2) error code of a refusal.
    pub outcome_code: Option<String>,
    /// Which gateway replica answered.
    pub replica: String,
}

/// What an operator asks of the trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub patient: Option<String>,
    pub supplier: Option<String>,
    /// Recorded at or after (RFC 3339 or a date).
    pub from: Option<String>,
    /// Recorded before.
    pub before: Option<String>,
    /// Only rows after this one in the trail's order (`recorded`, then `id`, both
    /// descending): where the previous page ended.
    pub after: Option<Cursor>,
    /// Most rows (most recent first).
    pub limit: u32,
}

/// A row's place in the trail's order: its `recorded` time and its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub recorded: String,
    pub id: String,
}

/// The trail could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the audit trail is unavailable ({0}); no patient data is released without an audit record"
)]
pub struct AuditError(pub String);

impl FhirError for AuditError {
    fn status(&self) -> u16 {
        503
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::ServiceUnavailable
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Transient
    }
    fn blame(&self) -> gp_fhir::Blame {
        gp_fhir::Blame::Gateway
    }
}

/// Where audit rows are kept.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// `sqlite` or `postgres`, for readiness and logs.
    fn backend(&self) -> &'static str;
    /// Durably appends one row within `[audit] write_timeout_ms`. `Ok` once it is
    /// committed as given. On `Err` (the deadline passed, or the trail refused it) the
    /// trail holds the row, if at all, as [`AuditRecord::withheld`]: the answer the
    /// caller must then send. A commit that ended after the deadline is overwritten so.
    async fn append(&self, record: AuditRecord) -> Result<(), AuditError>;
    /// As [`append`](Self::append), committing `events` to the notification outbox in
    /// the same transaction as the row, and only when the row commits as given (a
    /// success withheld or refused carries no event; see [`notify`]). `Ok` means the
    /// events are committed; [`NotificationStore::events_after`] answers them once they
    /// are settled (see [`notify`], "The outbox's order"). Default: a store without an
    /// outbox refuses events.
    async fn append_with_events(
        &self,
        record: AuditRecord,
        events: Vec<NewEvent>,
    ) -> Result<(), AuditError> {
        if events.is_empty() {
            self.append(record).await
        } else {
            Err(AuditError(format!(
                "the {} audit store keeps no notification outbox",
                self.backend()
            )))
        }
    }
    /// The subscriptions, outbox and delivery state kept in the same database
    /// ([`notify`]); `None` for a store without them.
    fn notifications(&self) -> Option<Arc<dyn NotificationStore>> {
        None
    }
    /// Rows matching `query`, most recent first.
    async fn query(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, AuditError>;
    /// Whether rows can be written now: not while the last write failed (within
    /// [`FAILURE_MEMORY`]), nor while the store's own probe fails.
    async fn ready(&self) -> Result<(), AuditError>;
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `sqlite` (default) or `postgres`.
    #[serde(default)]
    pub backend: AuditBackend,
    /// SQLite file, relative to the config file (created if absent). Its write-ahead
    /// log, where rows become durable, is the directory beside it named `<file>-log`;
    /// keep both on the same volume, and back them up together.
    #[serde(default = "default_sqlite_path")]
    pub sqlite_path: PathBuf,
    /// libpq-style connection string (`host=… user=… dbname=…`, or a `postgresql://`
    /// URL) for `postgres`. Keep the password out of it: use `postgres_password_file`.
    #[serde(default)]
    pub postgres_url: Option<String>,
    /// File holding the PostgreSQL password (relative to the config file; one line,
    /// trailing newline ignored), e.g. a mounted Kubernetes secret. Read at start-up
    /// only, never by `check-config`; `postgres_url` must then carry no password.
    #[serde(default)]
    pub postgres_password_file: Option<PathBuf>,
    /// Schema the `audit_event` table lives in (created if absent).
    #[serde(default = "default_schema")]
    pub postgres_schema: String,
    /// How long a request waits for its row to commit before it is refused (ms).
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// When a committed row is on disk: `full` (default) or `normal`. See [`Synchronous`].
    #[serde(default)]
    pub synchronous: Synchronous,
}

/// `[audit] synchronous`: what "committed" means before an answer is released.
///
/// Either way every answer waits for its row to be committed, and a crash of the
/// gateway process loses no row. They differ on a crash of the machine holding the trail
/// (power loss, kernel panic):
/// - `full` (default): the commit is flushed to disk (fsync) first, so nothing is lost.
/// - `normal`: the commit is written but its flush may lag (SQLite: the trail's log is
///   not flushed per batch, and rows are on disk once the index's next checkpoint has
///   flushed it, within about a second; PostgreSQL: `synchronous_commit = off`, flushed
///   within `3 × wal_writer_delay`, 600 ms by default), so rows of that last moment can
///   be lost. It takes the flush off every request's path (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("audit.sqlite")
}
fn default_schema() -> String {
    "gp_gateway".into()
}
fn default_write_timeout_ms() -> u64 {
    2_000
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            backend: AuditBackend::default(),
            sqlite_path: default_sqlite_path(),
            postgres_url: None,
            postgres_password_file: None,
            postgres_schema: default_schema(),
            write_timeout_ms: default_write_timeout_ms(),
            synchronous: Synchronous::default(),
        }
    }
}

/// `[audit] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditBackend {
    #[default]
    Sqlite,
    Postgres,
}

impl AuditConfig {
    /// Pure checks for `check-config`: each problem as (key, message). Reads no file
    /// (the password file is only named here) and never echoes the connection string.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let url = self.postgres_url.as_deref().filter(|u| !u.is_empty());
        match (self.backend, url) {
            (AuditBackend::Postgres, None) => out.push((
                "audit.postgres_url",
                "is required when backend = \"postgres\"".into(),
            )),
            (AuditBackend::Postgres, Some(url)) => match url.parse::<tokio_postgres::Config>() {
                Err(_) => out.push((
                    "audit.postgres_url",
                    "is not a PostgreSQL connection string (`host=… user=… dbname=…` or a postgresql:// URL)".into(),
                )),
                Ok(c) if c.get_password().is_some() && self.postgres_password_file.is_some() => {
                    out.push((
                        "audit.postgres_password_file",
                        "postgres_url already carries a password: give it once, in the file".into(),
                    ))
                }
                Ok(_) => {}
            },
            (AuditBackend::Sqlite, _) => {}
        }
        if self.postgres_password_file.is_some() && self.backend != AuditBackend::Postgres {
            out.push((
                "audit.postgres_password_file",
                "is only used with backend = \"postgres\"".into(),
            ));
        }
        if !valid_schema(&self.postgres_schema) {
            out.push((
                "audit.postgres_schema",
                "must be 1 to 63 lower-case letters, digits or underscores, starting with a letter"
                    .into(),
            ));
        }
        if !(50..=60_000).contains(&self.write_timeout_ms) {
            out.push((
                "audit.write_timeout_ms",
                "must be between 50 and 60000".into(),
            ));
        }
        out
    }
}

/// A schema name safe to put in SQL (it cannot be a bind parameter).
pub fn valid_schema(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Opens the configured store. `base` is the config file's directory.
pub async fn open(config: &AuditConfig, base: &Path) -> Result<Arc<dyn AuditStore>, AuditError> {
    let timeout = Duration::from_millis(config.write_timeout_ms);
    match config.backend {
        AuditBackend::Sqlite => {
            let path = if config.sqlite_path.is_absolute() {
                config.sqlite_path.clone()
            } else {
                base.join(&config.sqlite_path)
            };
            Ok(Arc::new(SqliteAudit::open(
                &path,
                timeout,
                config.synchronous,
            )?))
        }
        AuditBackend::Postgres => Ok(Arc::new(
            PostgresAudit::connect(
                config.postgres_config(base)?,
                &config.postgres_schema,
                timeout,
                config.synchronous,
            )
            .await?,
        )),
    }
}

impl AuditConfig {
    /// The PostgreSQL connection settings: `postgres_url`, with the password read from
    /// `postgres_password_file` (relative to `base`, the config file's directory) when
    /// one is named. Errors name the file, never the password or the connection string.
    pub fn postgres_config(&self, base: &Path) -> Result<tokio_postgres::Config, AuditError> {
        let url = self
            .postgres_url
            .as_deref()
            .ok_or_else(|| AuditError("audit.postgres_url is not set".into()))?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            AuditError("audit.postgres_url is not a PostgreSQL connection string".into())
        })?;
        if let Some(file) = &self.postgres_password_file {
            let password = read_secret(&base.join(file))
                .map_err(|e| AuditError(format!("audit.postgres_password_file: {e}")))?;
            config.password(password);
        }
        Ok(config)
    }
}

/// Work for a store's writer.
pub(crate) enum Job {
    Append(PendingAppend),
    Query(
        AuditQuery,
        oneshot::Sender<Result<Vec<AuditRecord>, AuditError>>,
    ),
    Ping(oneshot::Sender<Result<(), AuditError>>),
}

/// Most rows committed in one transaction.
pub(crate) const MAX_BATCH: usize = 512;

/// Queue between request tasks and a store's single writer.
pub(crate) const QUEUE: usize = 8_192;

/// Most rows a writer keeps to commit as refusals (see [`Writer`]) while the trail
/// refuses them; past this they are dropped, and each drop is logged.
pub(crate) const MAX_OWED: usize = QUEUE;

/// How long a failed write keeps a store unready when nothing has been written since:
/// long enough for a load balancer to take the replica out of service, short enough that
/// a replica no longer sent traffic comes back by itself once its probe passes.
#[cfg(not(test))]
pub(crate) const FAILURE_MEMORY: Duration = Duration::from_secs(10);
#[cfg(test)]
pub(crate) const FAILURE_MEMORY: Duration = Duration::from_millis(400);

/// Whether an answer with this status releases anything: only a success does. A
/// success whose row is not committed in time is withheld (503); a refusal is sent as
/// it is, since it releases nothing.
pub fn releases(status: u16) -> bool {
    (200..300).contains(&status)
}

impl AuditRecord {
    /// The row as the answer the client gets when this row is not committed in time:
    /// a success is withheld, as a 503 SERVICE_UNAVAILABLE; a refusal is unchanged.
    pub fn withheld(mut self) -> Self {
        if releases(self.status) {
            self.status = 503;
            self.outcome_code = Some(SpineCode::ServiceUnavailable.as_str().to_owned());
        }
        self
    }
}

/// Who decides what an append's row records: the writer, when it takes the row into a
/// commit before the request's deadline, or the request, when the deadline passes
/// first. Whichever moves first wins, so the trail says what the client was sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claim(Arc<AtomicU8>);

const PENDING: u8 = 0;
const TAKEN: u8 = 1;
const SETTLED: u8 = 2;
const ABANDONED: u8 = 3;

impl Claim {
    /// The writer takes the row into a commit as it is; `false` when the request has
    /// already given up (its row must then record the refusal it sent).
    fn take(&self) -> bool {
        self.0
            .compare_exchange(PENDING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The writer, once the commit's outcome is known: the request will act on it;
    /// `false` when the request gave up while the commit ran.
    fn settle(&self) -> bool {
        self.0
            .compare_exchange(TAKEN, SETTLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The request, at its deadline: gives up (`true`) unless the writer has settled the
    /// row, whose outcome is then on its way.
    fn abandon(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                matches!(s, PENDING | TAKEN).then_some(ABANDONED)
            })
            .is_ok()
    }
}

/// An append waiting for its commit.
pub(crate) struct PendingAppend {
    record: AuditRecord,
    /// Notification events to commit with the row, only as it is given ([`Writer`]).
    events: Vec<NewEvent>,
    claim: Claim,
    done: oneshot::Sender<Result<(), AuditError>>,
}

/// `first` and whatever else is already queued (at most [`MAX_BATCH`] appends): the
/// appends to commit together, and the other jobs to answer after them.
pub(crate) fn gather(first: Job, rx: &mut mpsc::Receiver<Job>) -> (Vec<PendingAppend>, Vec<Job>) {
    let mut appends = Vec::new();
    let mut others = Vec::new();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Append(a) => appends.push(a),
            other => others.push(other),
        }
        if appends.len() < MAX_BATCH {
            next = rx.try_recv().ok();
        }
    }
    (appends, others)
}

/// The half of a store's writer both stores share: which rows a commit takes, what
/// each request hears, the rows still owed to the trail, and whether writes work.
///
/// A row whose request gave up before the writer took it is not committed as the
/// request built it: it is *owed*, as the refusal the client was sent
/// ([`AuditRecord::withheld`]). So is a row whose commit failed (the client was refused),
/// and one whose request gave up while its commit ran (the commit may have succeeded:
/// the owed row replaces it, stores writing owed rows over rows with the same id). Owed
/// rows are committed in a commit of their own before the next batch, so a row the
/// trail refuses never holds up the others.
///
/// Notification events ([`AuditStore::append_with_events`]) go only with a row committed
/// as given: the row taken by the writer and its commit succeeding. They are committed in
/// the same transaction as the row (the same log frame, for SQLite), so they stand or
/// fall with it. An owed row carries no events: one whose request gave up before the
/// writer took it, or whose commit failed, has none committed, ever; the change its
/// events would announce is one the client was told failed. The one row owed *after* its
/// events committed is one whose request gave up while its commit ran: the commit
/// cannot be taken back, so its events stand (the change they announce was made, and
/// the client's 503 says the trail was late, not that the write failed), while the owed
/// row records the refusal the client got.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    owed: Vec<AuditRecord>,
    failed: Option<(std::time::Instant, AuditError)>,
}

impl Writer {
    /// The rows to commit now, as they are, from `appends`; the others become owed.
    pub(crate) fn take(&mut self, appends: Vec<PendingAppend>) -> Vec<PendingAppend> {
        let mut taken = Vec::with_capacity(appends.len());
        for a in appends {
            if a.claim.take() {
                taken.push(a);
            } else {
                // Its events go with it: never committed.
                self.owe(a.record.withheld());
            }
        }
        taken
    }

    /// The rows of a batch, to commit.
    pub(crate) fn rows(
        taken: &[PendingAppend],
    ) -> impl ExactSizeIterator<Item = &AuditRecord> + Clone {
        taken.iter().map(|a| &a.record)
    }

    /// The events of a batch, in the order of its rows, to commit with them.
    pub(crate) fn events(taken: &[PendingAppend]) -> Vec<&NewEvent> {
        taken.iter().flat_map(|a| &a.events).collect()
    }

    /// Tells each request of a batch the commit's outcome, and owes the rows the trail
    /// does not hold as their clients were answered. On success `committed` gets the
    /// batch's rows and the events committed with them before any request is answered (a
    /// query sent after an answer must find its row).
    pub(crate) fn settle(
        &mut self,
        taken: Vec<PendingAppend>,
        result: Result<(), AuditError>,
        committed: impl FnOnce(Vec<AuditRecord>, Vec<NewEvent>),
    ) {
        self.outcome(&result);
        if let Err(e) = &result {
            tracing::error!(error = %e, rows = taken.len(), "audit rows not committed");
        }
        let mut rows = Vec::with_capacity(taken.len());
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(taken.len());
        for PendingAppend {
            record,
            events: its_events,
            claim,
            done,
        } in taken
        {
            let told = claim.settle();
            if told {
                answers.push(done);
            }
            if result.is_err() {
                self.owe(record.withheld());
            } else {
                if !told {
                    // Committed as given, but its client was refused meanwhile: its
                    // events committed with it, and stand (see above).
                    self.owe(record.clone().withheld());
                }
                rows.push(record);
                events.extend(its_events);
            }
        }
        if result.is_ok() {
            committed(rows, events);
        }
        for done in answers {
            let _ = done.send(result.clone());
        }
    }

    /// Rows owed to the trail, to commit with writes over rows of the same id; hand the
    /// outcome to [`Writer::paid`]. Each id is owed at most once (a row is either taken
    /// or not, and unpaid rows go back once), as PostgreSQL's upsert requires.
    pub(crate) fn owed(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.owed)
    }

    /// The outcome of committing [`Writer::owed`]'s rows: on failure they are kept to
    /// try again before the next batch (or readiness probe).
    pub(crate) fn paid(&mut self, result: Result<(), (Vec<AuditRecord>, AuditError)>) {
        match result {
            Ok(()) => self.outcome(&Ok(())),
            Err((rows, e)) => {
                tracing::error!(error = %e, rows = rows.len(), "audit rows of refused requests not committed; kept to try again");
                self.outcome(&Err(e));
                let newer = std::mem::replace(&mut self.owed, rows);
                for r in newer {
                    self.owe(r);
                }
            }
        }
    }

    /// Whether any rows are owed.
    pub(crate) fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    fn owe(&mut self, row: AuditRecord) {
        if self.owed.len() < MAX_OWED {
            self.owed.push(row);
        } else {
            tracing::error!(id = %row.id, status = row.status, "audit row of a refused request dropped: too many rows owed to the trail");
        }
    }

    fn outcome(&mut self, result: &Result<(), AuditError>) {
        match result {
            Ok(()) => self.failed = None,
            Err(e) => self.failed = Some((std::time::Instant::now(), e.clone())),
        }
    }

    /// Readiness as far as writes go: refused while the last write failed, within
    /// [`FAILURE_MEMORY`] (a probe that only reads cannot see a trail refusing rows).
    pub(crate) fn ready(&self) -> Result<(), AuditError> {
        match &self.failed {
            Some((at, e)) if at.elapsed() < FAILURE_MEMORY => Err(AuditError(format!(
                "the last write failed {} ms ago: {}",
                at.elapsed().as_millis(),
                e.0
            ))),
            _ => Ok(()),
        }
    }
}

/// The `WHERE` conditions (after `WHERE 1 = 1`), order and limit of `q`, with
/// numbered placeholders written `{mark}1`, `{mark}2`, … (`?` for SQLite, `$` for
/// PostgreSQL), and the values they bind, in order. The order (`recorded`, then `id`,
/// both descending) is total, so a page's cursor resumes exactly where it ended while
/// new rows arrive.
pub(crate) fn query_sql(q: &AuditQuery, mark: char) -> (String, Vec<&String>) {
    fn bind<'a>(args: &mut Vec<&'a String>, v: &'a String, mark: char) -> String {
        args.push(v);
        format!("{mark}{}", args.len())
    }
    let mut sql = String::new();
    let mut args: Vec<&String> = Vec::new();
    for (column, op, value) in [
        ("patient", "=", &q.patient),
        ("supplier", "=", &q.supplier),
        ("recorded", ">=", &q.from),
        ("recorded", "<", &q.before),
    ] {
        if let Some(v) = value {
            let p = bind(&mut args, v, mark);
            sql.push_str(&format!(" AND {column} {op} {p}"));
        }
    }
    if let Some(c) = &q.after {
        let r = bind(&mut args, &c.recorded, mark);
        let i = bind(&mut args, &c.id, mark);
        sql.push_str(&format!(
            " AND (recorded < {r} OR (recorded = {r} AND id < {i}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY recorded DESC, id DESC LIMIT {}",
        q.limit.max(1)
    ));
    (sql, args)
}

fn missed(timeout: Duration) -> AuditError {
    AuditError(format!("no commit within {} ms", timeout.as_millis()))
}

fn stopped() -> AuditError {
    AuditError("the audit writer has stopped".into())
}

/// Sends a job and waits for its answer, within `timeout`.
pub(crate) async fn submit<T>(
    tx: &mpsc::Sender<Job>,
    timeout: Duration,
    make: impl FnOnce(oneshot::Sender<Result<T, AuditError>>) -> Job,
) -> Result<T, AuditError> {
    let (done, answer) = oneshot::channel();
    let work = async {
        tx.send(make(done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(missed(timeout)))
}

/// Queues `record` (with `events`, committed only with the row as given) and waits for
/// its commit until `timeout`. `Ok` means the row is committed as given, its events
/// with it. On `Err` the row is either not in the trail, or (committed later) recorded
/// as [`AuditRecord::withheld`]: what the caller must then answer.
pub(crate) async fn submit_append(
    tx: &mpsc::Sender<Job>,
    timeout: Duration,
    record: AuditRecord,
    events: Vec<NewEvent>,
) -> Result<(), AuditError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let claim = Claim::default();
    let (done, answer) = oneshot::channel();
    let job = Job::Append(PendingAppend {
        record,
        events,
        claim: claim.clone(),
        done,
    });
    match tokio::time::timeout_at(deadline, tx.send(job)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(stopped()),
        // Never queued: no row is written.
        Err(_) => return Err(missed(timeout)),
    }
    let mut answer = std::pin::pin!(answer);
    match tokio::time::timeout_at(deadline, &mut answer).await {
        Ok(result) => result.map_err(|_| stopped())?,
        Err(_) if claim.abandon() => Err(missed(timeout)),
        // Settled just now: the commit's outcome is being sent.
        Err(_) => answer.await.map_err(|_| stopped())?,
    }
}

/// The SQL both stores share (a `?`/`$n` placeholder dialect aside).
pub(crate) const COLUMNS: &str = "id, recorded, request_id, supplier, token_id, patient, practice, interaction, resource_type, status, outcome_code, replica, request_id_supplied";

/// A new row's id: a time-ordered UUID (version 7). Rows are appended in id order, so
/// the trail's unique index on `id` grows at its end; random (v4) ids put every insert
/// on a random index page, and commits slowed down as the trail grew (BENCHMARKS.md).
pub fn new_row_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// This replica's name: `GP_GATEWAY_REPLICA`, else the host name, else `gateway`.
pub fn replica_name() -> String {
    std::env::var("GP_GATEWAY_REPLICA")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect())
        .unwrap_or_else(|| "gateway".into())
}

/// The current time as the trail records it.
pub fn now_recorded() -> String {
    let now = time::OffsetDateTime::now_utc();
    let ms = now.millisecond();
    now.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(|s| match s.strip_suffix('Z') {
            Some(base) => format!("{base}.{ms:03}Z"),
            None => s,
        })
        .unwrap_or_default()
}

/// Reads a one-line secret file (a password), trailing newline removed. The error names
/// the file and what is wrong, never the content.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() || secret.contains(['\r', '\n']) {
        return Err(format!(
            "secret file {} must hold exactly one non-empty line",
            path.display()
        ));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod row_id_tests {
    #[test]
    fn row_ids_are_uuids_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..2_000).map(|_| super::new_row_id()).collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{id}");
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "each id sorts after the one before"
        );
    }
}

#[cfg(test)]
pub(crate) fn sample(n: u32, patient: &str, supplier: &str, recorded: &str) -> AuditRecord {
    AuditRecord {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        recorded: recorded.into(),
        request_id: format!("req-{n}"),
        request_id_supplied: Some(n.is_multiple_of(2)),
        supplier: Some(supplier.into()),
        token_id: Some(format!("tok-{n}")),
        patient: Some(patient.into()),
        practice: Some("A12345".into()),
        interaction: "read".into(),
        resource_type: Some("Patient".into()),
        status: 200,
        outcome_code: None,
        replica: "test".into(),
    }
}

/// A notification event about `patient`, numbered `n`.
#[cfg(test)]
pub(crate) fn sample_event(n: u32, patient: &str) -> NewEvent {
    NewEvent {
        id: format!("00000000-0000-7000-9000-{n:012}"),
        kind: "reading-recorded".into(),
        patient: patient.into(),
        practice: "A12345".into(),
        resource_type: "Observation".into(),
        resource_id: Some(format!("obs-{n}")),
        occurred: "2026-12-01T10:00:00.000Z".into(),
        source: "gateway".into(),
        supplier: Some("demo-consult".into()),
    }
}

/// A first-release row (before `request_id_supplied`), for upgrade tests: `{table}`
/// is the table's qualified name.
#[cfg(test)]
pub(crate) const FIRST_RELEASE_ROW: &str = "INSERT INTO {table} (id, recorded, request_id, interaction, status, replica) VALUES ('old-1', '2026-11-01T00:00:00.000Z', 'req-old', 'read', 200, 'r1')";

/// Appends a new row to a store upgraded over a first-release table holding
/// [`FIRST_RELEASE_ROW`], and checks both read back: the new one knows who chose its
/// request id, the old one says it is unknown.
#[cfg(test)]
pub(crate) async fn check_upgraded(store: &dyn AuditStore) {
    let new = sample(2, "9000000009", "demo-consult", "2026-11-02T00:00:00.000Z");
    store.append(new).await.unwrap();
    let rows = store
        .query(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].request_id_supplied, Some(true), "new rows say");
    assert_eq!(
        (rows[1].id.as_str(), rows[1].request_id_supplied),
        ("old-1", None),
        "old rows are unknown"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_are_named() {
        let c = AuditConfig {
            backend: AuditBackend::Postgres,
            postgres_schema: "Robert'); DROP".into(),
            write_timeout_ms: 1,
            ..AuditConfig::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "audit.postgres_url",
                "audit.postgres_schema",
                "audit.write_timeout_ms"
            ]
        );
        assert!(AuditConfig::default().problems().is_empty());
    }

    #[test]
    fn the_password_file_is_checked_without_reading_it() {
        let pg = |url: &str| AuditConfig {
            backend: AuditBackend::Postgres,
            postgres_url: Some(url.into()),
            postgres_password_file: Some("no-such-dir/pg-password".into()),
            ..AuditConfig::default()
        };
        // Named, never read: check-config passes though the file does not exist.
        let ok = pg("host=db user=gateway dbname=audit");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert!(pg("postgresql://gateway@db/audit").problems().is_empty());
        for url in [
            "host=db user=gateway password=hunter2 dbname=audit",
            "postgresql://gateway:hunter2@db/audit",
        ] {
            let problems = pg(url).problems();
            assert_eq!(
                problems,
                [(
                    "audit.postgres_password_file",
                    "postgres_url already carries a password: give it once, in the file".into()
                )],
                "{url}"
            );
        }
        let not_a_url = pg("host='unterminated password=hunter2").problems();
        assert_eq!(not_a_url.len(), 1);
        assert_eq!(not_a_url[0].0, "audit.postgres_url");
        assert!(!not_a_url[0].1.contains("hunter2"), "{}", not_a_url[0].1);
        let sqlite = AuditConfig {
            postgres_password_file: Some("pg-password".into()),
            ..AuditConfig::default()
        };
        assert_eq!(
            sqlite.problems(),
            [(
                "audit.postgres_password_file",
                "is only used with backend = \"postgres\"".into()
            )]
        );
    }

    #[test]
    fn rows_owed_past_the_cap_are_dropped_and_the_first_kept() {
        let mut w = Writer::default();
        let at = "2026-11-01T10:00:00.000Z";
        for n in 0..MAX_OWED as u32 + 2 {
            w.owe(sample(n, "9000000009", "demo-consult", at));
        }
        let owed = w.owed();
        assert_eq!(
            owed.len(),
            MAX_OWED,
            "a trail refusing rows cannot grow the queue"
        );
        assert_eq!(owed[0].id, sample(0, "9000000009", "x", at).id);
        assert!(!w.owes());
    }

    #[test]
    fn a_failed_write_makes_the_store_unready_for_a_while_then_not() {
        let mut w = Writer::default();
        assert!(w.ready().is_ok());
        w.outcome(&Err(AuditError("disk full".into())));
        let e = w.ready().unwrap_err();
        assert!(e.0.contains("disk full"), "{e}");
        // No write since (a load balancer sends no traffic to an unready replica): the
        // failure is forgotten, and the store's own probe decides again.
        #[expect(clippy::disallowed_methods, reason = "a plain test, no async runtime")]
        std::thread::sleep(FAILURE_MEMORY + Duration::from_millis(50));
        assert!(w.ready().is_ok());
        w.outcome(&Err(AuditError("disk full".into())));
        w.outcome(&Ok(()));
        assert!(w.ready().is_ok(), "a write that succeeds clears it at once");
    }

    #[test]
    fn recorded_times_have_milliseconds() {
        let t = now_recorded();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z'));
    }
}
