//! The default audit store: one SQLite file in WAL mode, behind a log of its own.
//!
//! One thread (the writer) takes whatever rows have queued up as one batch, appends it
//! to the trail's write-ahead log ([`super::log`]) and, with `synchronous = FULL` (the
//! default), flushes the log before the batch's requests are answered. A second thread
//! (the indexer) inserts the rows into SQLite behind the log, with the log position they
//! end at, in one transaction per tenth of a second; it also answers queries, after every row
//! already acknowledged, and once a second checkpoints SQLite's WAL into the database
//! file and recycles or deletes the log segments whose rows are now there on disk. So a request
//! waits for one small sequential write and its flush, never for SQLite's page writes
//! nor a checkpoint; and on opening, whatever the log holds past the index's position
//! is inserted before anything else happens.
//!
//! `synchronous = NORMAL` leaves out the per-batch flush of the log: rows are on disk
//! once the indexer's next checkpoint has flushed the database file, within about a
//! second.
//!
//! Notification events committed with a batch's rows are in the batch's log frame, and
//! the indexer inserts them into the outbox (`notify_event`) in the transaction that
//! inserts the rows; subscriptions and delivery state live in the same file, written by
//! the notification store's own connection ([`crate::notify`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};
use tokio::sync::mpsc;

use super::log::{self, Frame, Log, Position, Spares};
use super::notify::sqlite::{self as notify_sqlite, SqliteNotify};
use super::{
    AuditError, AuditQuery, AuditRecord, AuditStore, COLUMNS, Job, NewEvent, NotificationStore,
    QUEUE, Synchronous, Writer, gather, query_sql, submit, submit_append,
};

/// How often the indexer checkpoints SQLite's WAL into the database file (and then drops
/// the log segments it no longer needs).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How long the indexer gathers rows into one transaction. Each SQLite commit writes
/// every page it touched in full, so a commit per frame wrote (and the checkpoint then
/// flushed) several times the rows' own bytes, and those flushes stalled the log's;
/// measured in BENCHMARKS.md ("An audit log of its own").
const INDEX_EVERY: Duration = Duration::from_millis(100);

/// SQLite's own automatic checkpoint, in WAL pages (4 KiB): a backstop, about 64 MiB.
const BACKSTOP_CHECKPOINT_PAGES: u32 = 16_384;

/// How long the indexer naps between looks at its queue while it gathers a transaction:
/// the most a query or a readiness ping waits on top of the rows before it.
const GATHER_NAP: Duration = Duration::from_millis(10);

/// Batches the writer may hand the indexer before it waits (and with it, the requests).
const INDEX_QUEUE: usize = 1_024;

/// While the index is behind its log (an insert failed), how often the indexer tries to
/// catch up from the log.
const INDEX_RETRY: Duration = Duration::from_millis(200);

/// The SQLite audit store.
pub struct SqliteAudit {
    tx: Option<mpsc::Sender<Job>>,
    timeout: Duration,
    writer: Option<JoinHandle<()>>,
    notify: Arc<SqliteNotify>,
    #[cfg_attr(not(test), expect(dead_code, reason = "only tests play a bad disk"))]
    disk: DiskFault,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    recorded TEXT NOT NULL,
    request_id TEXT NOT NULL,
    supplier TEXT,
    token_id TEXT,
    patient TEXT,
    practice TEXT,
    interaction TEXT NOT NULL,
    resource_type TEXT,
    status INTEGER NOT NULL,
    outcome_code TEXT,
    replica TEXT NOT NULL,
    request_id_supplied INTEGER
);
CREATE INDEX IF NOT EXISTS audit_event_patient ON audit_event (patient, recorded);
CREATE INDEX IF NOT EXISTS audit_event_supplier ON audit_event (supplier, recorded);
CREATE TABLE IF NOT EXISTS audit_log_position (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    segment INTEGER NOT NULL,
    end_offset INTEGER NOT NULL
);
";

fn sql_error(e: rusqlite::Error) -> AuditError {
    AuditError(format!("SQLite: {e}"))
}

impl SqliteAudit {
    /// Opens (creating if needed) the trail at `path` and its log beside it
    /// (`<path>-log/`), inserts what the log holds past the index, and starts the writer
    /// and indexer threads, which stop when the store is dropped.
    pub fn open(
        path: &Path,
        timeout: Duration,
        synchronous: Synchronous,
    ) -> Result<Self, AuditError> {
        Self::open_sized(path, timeout, synchronous, log::SEGMENT_BYTES)
    }

    /// [`SqliteAudit::open`] with log segments of `segment_bytes`, for crash tests
    /// that must cross many segments and spares quickly; not for production use.
    #[doc(hidden)]
    pub fn open_sized(
        path: &Path,
        timeout: Duration,
        synchronous: Synchronous,
        segment_bytes: u64,
    ) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| AuditError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| AuditError(format!("cannot open {}: {e}", path.display())))?;
        // The index needs no flush of its own per commit: the log is where a row becomes
        // durable, and a checkpoint flushes the database file before a segment goes.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
             PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES};"
        ))
        .map_err(sql_error)?;
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        conn.execute_batch(notify_sqlite::SCHEMA)
            .map_err(sql_error)?;
        upgrade(&conn)?;
        let log_dir = log::dir_for(path);
        let indexed = position(&conn)?;
        let (log, pending, spares) = Log::open_sized(
            &log_dir,
            indexed,
            synchronous == Synchronous::Full,
            segment_bytes,
        )?;
        if !pending.is_empty() {
            let rows: usize = pending.iter().map(|f| f.rows.len()).sum();
            let events: usize = pending.iter().map(|f| f.events.len()).sum();
            tracing::info!(
                rows,
                events,
                "audit rows and notification events from the log inserted into the trail's index"
            );
        }
        insert(&mut conn, &pending)?;
        let notify = Arc::new(SqliteNotify::open(path, synchronous)?);
        let (index_tx, index_rx) = std_mpsc::sync_channel(INDEX_QUEUE);
        let indexer = std::thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || indexer(conn, index_rx, log_dir, spares))
            .map_err(|e| AuditError(format!("cannot start the audit indexer: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let disk = DiskFault::default();
        let writer = std::thread::Builder::new()
            .name("audit-sqlite".into())
            .spawn({
                let disk = disk.clone();
                move || writer(log, rx, index_tx, indexer, disk)
            })
            .map_err(|e| AuditError(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            timeout,
            writer: Some(writer),
            notify,
            disk,
        })
    }

    fn sender(&self) -> Result<&mpsc::Sender<Job>, AuditError> {
        self.tx
            .as_ref()
            .ok_or_else(|| AuditError("the audit store is closed".into()))
    }
}

impl Drop for SqliteAudit {
    /// Closes the queue and waits for the writer, which waits for the indexer: every
    /// acknowledged row is in the index, the index is checkpointed and the log is free
    /// for the next opening.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Columns added since the first release, for trails created before them (SQLite has
/// no `ADD COLUMN IF NOT EXISTS`: the table's columns are looked up first).
const ADDED_COLUMNS: [(&str, &str); 1] = [("request_id_supplied", "INTEGER")];

fn upgrade(conn: &Connection) -> Result<(), AuditError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('audit_event')")
        .map_err(sql_error)?;
    let present = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    for (column, kind) in ADDED_COLUMNS {
        if !present.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE audit_event ADD COLUMN {column} {kind}"
            ))
            .map_err(sql_error)?;
        }
    }
    Ok(())
}

/// How far into the log the index has taken rows (none for a new trail, or one from
/// before the log).
fn position(conn: &Connection) -> Result<Option<Position>, AuditError> {
    conn.query_row(
        "SELECT segment, end_offset FROM audit_log_position WHERE one = 1",
        [],
        |row| {
            Ok(Position {
                segment: row.get::<_, i64>(0)? as u64,
                offset: row.get::<_, i64>(1)? as u64,
            })
        },
    )
    .optional()
    .map_err(sql_error)
}

/// Work for the indexer, in the writer's order.
enum Index {
    /// Rows already durable in the log, and where their frame ends.
    Rows(Frame),
    /// A query or ping, answered after every row sent before it.
    Job(Box<Job>),
}

/// A slow or failing disk under the log, played by tests; a no-op otherwise.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiskFault {
    #[cfg(test)]
    stall_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    #[cfg(test)]
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DiskFault {
    #[cfg(test)]
    pub(crate) fn stall(&self, ms: u64) {
        self.stall_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn fail(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    fn before_write(&self) -> Result<(), AuditError> {
        #[cfg(test)]
        {
            let ms = self.stall_ms.load(std::sync::atomic::Ordering::SeqCst);
            if ms > 0 {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the writer's own thread, not the async runtime"
                )]
                std::thread::sleep(Duration::from_millis(ms));
            }
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(AuditError("write: injected disk failure".into()));
            }
        }
        Ok(())
    }
}

/// Appends queued rows to the log until every sender is gone, then waits for the
/// indexer to finish.
fn writer(
    mut log: Log,
    mut rx: mpsc::Receiver<Job>,
    index: std_mpsc::SyncSender<Index>,
    indexer: JoinHandle<()>,
    disk: DiskFault,
) {
    let mut w = Writer::default();
    while let Some(first) = rx.blocking_recv() {
        let (appends, others) = gather(first, &mut rx);
        let taken = w.take(appends);
        if w.owes() {
            pay(&mut log, &mut w, &index, &disk);
        }
        if !taken.is_empty() {
            let written = disk
                .before_write()
                .and_then(|()| log.append(Writer::rows(&taken), Writer::events(&taken)));
            let end = written.as_ref().ok().copied();
            w.settle(taken, written.map(|_| ()), |rows, events| {
                if let Some(end) = end {
                    let _ = index.send(Index::Rows(Frame { rows, events, end }));
                }
            });
            // A request that gave up while its frame was written is owed its refusal
            // now, while the log works, not at the next request.
            if end.is_some() && w.owes() {
                pay(&mut log, &mut w, &index, &disk);
            }
        }
        for job in others {
            match job {
                Job::Ping(done) => match w.ready().and_then(|()| log.ready()) {
                    Ok(()) => {
                        let _ = index.send(Index::Job(Box::new(Job::Ping(done))));
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                },
                job => {
                    let _ = index.send(Index::Job(Box::new(job)));
                }
            }
        }
    }
    drop(index);
    let _ = indexer.join();
}

/// Writes the rows owed to the trail as a frame of their own (the index writes them
/// over rows of the same id). Owed rows carry no events.
fn pay(log: &mut Log, w: &mut Writer, index: &std_mpsc::SyncSender<Index>, disk: &DiskFault) {
    let rows = w.owed();
    match disk.before_write().and_then(|()| log.append(&rows, [])) {
        Ok(end) => {
            let _ = index.send(Index::Rows(Frame {
                rows,
                events: Vec::new(),
                end,
            }));
            w.paid(Ok(()));
        }
        Err(e) => w.paid(Err((rows, e))),
    }
}

/// Inserts the writer's rows into SQLite, answers queries in order, and checkpoints
/// every [`CHECKPOINT_EVERY`]; ends, after a last checkpoint, when the writer is gone.
///
/// When an insert fails (a full disk, say), the rows are still safe in the log: the
/// indexer is then *behind*. It drops what the writer hands it, refuses pings and
/// queries (an incomplete answer would mislead), and at every turn tries to catch up by
/// reading the log from the index's position; once that succeeds it goes on as before.
fn indexer(mut conn: Connection, rx: std_mpsc::Receiver<Index>, log_dir: PathBuf, spares: Spares) {
    let mut last_checkpoint = Instant::now();
    let mut behind: Option<AuditError> = None;
    let mut open = true;
    while open {
        let mut frames = Vec::new();
        let mut jobs = Vec::new();
        match rx.recv_timeout(if behind.is_some() {
            INDEX_RETRY
        } else {
            CHECKPOINT_EVERY
        }) {
            Ok(Index::Rows(frame)) => frames.push(frame),
            Ok(Index::Job(job)) => jobs.push(*job),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        // What arrives within INDEX_EVERY joins this transaction, up to the first query
        // (answered within a GATHER_NAP, after the rows before it). The indexer naps
        // rather than waits on the channel meanwhile: a batch sent to a waiting indexer
        // wakes it, and the writer, which has yet to answer that batch's requests, can
        // lose its CPU to it; a batch sent during a nap wakes no one.
        let until = Instant::now() + INDEX_EVERY;
        while open && jobs.is_empty() && !frames.is_empty() && Instant::now() < until {
            match rx.try_recv() {
                Ok(Index::Rows(frame)) => frames.push(frame),
                Ok(Index::Job(job)) => jobs.push(*job),
                Err(std_mpsc::TryRecvError::Empty) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "the indexer's own thread, not the async runtime"
                    )]
                    std::thread::sleep(left.min(GATHER_NAP));
                }
                Err(std_mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        if behind.is_some() {
            // The log holds these frames too: catching up reads them from there.
            frames.clear();
            behind = catch_up(&mut conn, &log_dir).err();
            if behind.is_none() {
                tracing::info!("audit index caught up with its log");
            }
        } else if !frames.is_empty()
            && let Err(e) = insert_new(&mut conn, &frames)
        {
            tracing::error!(error = %e, "audit rows not inserted into the index (they are safe in the log); catching up from the log");
            behind = Some(e);
        }
        for job in jobs {
            let refused =
                |e: &AuditError| AuditError(format!("the index is behind its log ({})", e.0));
            match (job, &behind) {
                (Job::Query(_, done), Some(e)) => {
                    let _ = done.send(Err(refused(e)));
                }
                (Job::Ping(done), Some(e)) => {
                    let _ = done.send(Err(refused(e)));
                }
                (Job::Query(q, done), None) => {
                    let _ = done.send(query(&conn, &q));
                }
                (Job::Ping(done), None) => {
                    let _ = done.send(
                        conn.query_row(
                            "SELECT count(*) FROM (SELECT 1 FROM audit_event LIMIT 1)",
                            [],
                            |_| Ok(()),
                        )
                        .map_err(sql_error),
                    );
                }
                (Job::Append(..), _) => {}
            }
        }
        if !open || last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            let recycled = checkpoint(&conn).and_then(|indexed| match indexed {
                Some(indexed) => spares.recycle(indexed),
                None => Ok(()),
            });
            if let Err(e) = recycled {
                tracing::warn!(error = %e, "audit checkpoint failed; the log keeps its segments");
            }
            last_checkpoint = Instant::now();
        }
    }
}

/// Inserts the frames that end past the index's position (a frame the index already
/// took from the log while catching up is skipped).
fn insert_new(conn: &mut Connection, frames: &[Frame]) -> Result<(), AuditError> {
    let indexed = position(conn)?;
    let first_new = frames
        .iter()
        .position(|f| indexed.is_none_or(|p| f.end > p))
        .unwrap_or(frames.len());
    insert(conn, &frames[first_new..])
}

/// Inserts every frame the log holds past the index's position.
fn catch_up(conn: &mut Connection, log_dir: &Path) -> Result<(), AuditError> {
    let frames = log::read_after(log_dir, position(conn)?)?;
    insert(conn, &frames)
}

/// Copies SQLite's WAL into the database file and flushes it. Once all of it is there,
/// the index's position: the log segments below its segment are no longer needed.
fn checkpoint(conn: &Connection) -> Result<Option<Position>, AuditError> {
    let (busy, wal_frames, copied) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql_error)?;
    if busy != 0 || wal_frames != copied {
        return Ok(None);
    }
    position(conn)
}

/// Inserts the frames' rows and their events (into the outbox, in frame order) and moves
/// the index's position to the last frame's end, in one transaction. A row whose id is
/// already there takes the later frame's status and outcome: the same values for a frame
/// inserted again after a crash, the refusal its client got for a row owed to the trail
/// ([`Writer`]). The notification store writes to the same file: the transaction takes
/// the write lock at once, so it waits for (never fails on) one of its commits.
fn insert(conn: &mut Connection, frames: &[Frame]) -> Result<(), AuditError> {
    let Some(Frame { end, .. }) = frames.last() else {
        return Ok(());
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO audit_event ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, outcome_code = excluded.outcome_code"
            ))
            .map_err(sql_error)?;
        for r in frames.iter().flat_map(|f| &f.rows) {
            stmt.execute(rusqlite::params![
                r.id,
                r.recorded,
                r.request_id,
                r.supplier,
                r.token_id,
                r.patient,
                r.practice,
                r.interaction,
                r.resource_type,
                r.status,
                r.outcome_code,
                r.replica,
                r.request_id_supplied
            ])
            .map_err(sql_error)?;
        }
        notify_sqlite::insert_events(&tx, frames.iter().flat_map(|f| &f.events))
            .map_err(sql_error)?;
        tx.execute(
            "INSERT INTO audit_log_position (one, segment, end_offset) VALUES (1, ?1, ?2) \
             ON CONFLICT (one) DO UPDATE SET segment = excluded.segment, end_offset = excluded.end_offset",
            rusqlite::params![end.segment as i64, end.offset as i64],
        )
        .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)
}

fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    let (tail, args) = query_sql(q, '?');
    let sql = format!("SELECT {COLUMNS} FROM audit_event WHERE 1 = 1{tail}");
    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), |row| {
            Ok(AuditRecord {
                id: row.get(0)?,
                recorded: row.get(1)?,
                request_id: row.get(2)?,
                supplier: row.get(3)?,
                token_id: row.get(4)?,
                patient: row.get(5)?,
                practice: row.get(6)?,
                interaction: row.get(7)?,
                resource_type: row.get(8)?,
                status: row.get(9)?,
                outcome_code: row.get(10)?,
                replica: row.get(11)?,
                request_id_supplied: row.get(12)?,
            })
        })
        .map_err(sql_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

#[async_trait]
impl AuditStore for SqliteAudit {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    async fn append(&self, record: AuditRecord) -> Result<(), AuditError> {
        submit_append(self.sender()?, self.timeout, record, Vec::new()).await
    }
    async fn append_with_events(
        &self,
        record: AuditRecord,
        events: Vec<NewEvent>,
    ) -> Result<(), AuditError> {
        submit_append(self.sender()?, self.timeout, record, events).await
    }
    fn notifications(&self) -> Option<Arc<dyn NotificationStore>> {
        Some(self.notify.clone())
    }
    async fn query(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        submit(self.sender()?, self.timeout, |done| Job::Query(query, done)).await
    }
    async fn ready(&self) -> Result<(), AuditError> {
        submit(self.sender()?, self.timeout, Job::Ping).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::notify::tests as checks;
    use super::super::{FIRST_RELEASE_ROW, check_upgraded, sample, sample_event};
    use super::*;

    #[tokio::test]
    async fn rows_survive_reopening_and_queries_filter() {
        let dir = std::env::temp_dir().join(format!("gp-audit-{}", uuid::Uuid::new_v4()));
        let path = dir.join("trail.sqlite");
        {
            let store = std::sync::Arc::new(
                SqliteAudit::open(&path, Duration::from_secs(5), Synchronous::Full).unwrap(),
            );
            let mut tasks = Vec::new();
            for n in 0..40u32 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let patient = if n % 2 == 0 {
                        "9000000009"
                    } else {
                        "9690937278"
                    };
                    let supplier = if n % 4 < 2 {
                        "demo-consult"
                    } else {
                        "demo-monitoring"
                    };
                    let at = format!("2026-11-{:02}T10:00:00.000Z", 1 + n % 20);
                    store.append(sample(n, patient, supplier, &at)).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            store.ready().await.unwrap();
        }
        let store = SqliteAudit::open(&path, Duration::from_secs(5), Synchronous::Full).unwrap();
        let all = store
            .query(AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.len(),
            40,
            "every committed row is there after reopening"
        );
        let some = store
            .query(AuditQuery {
                patient: Some("9000000009".into()),
                supplier: Some("demo-consult".into()),
                from: Some("2026-11-05".into()),
                before: Some("2026-11-15".into()),
                after: None,
                limit: 100,
            })
            .await
            .unwrap();
        assert!(!some.is_empty());
        for r in &some {
            assert_eq!(r.patient.as_deref(), Some("9000000009"));
            assert_eq!(r.supplier.as_deref(), Some("demo-consult"));
            assert!(r.recorded.as_str() >= "2026-11-05" && r.recorded.as_str() < "2026-11-15");
        }
        assert!(
            some.windows(2).all(|w| w[0].recorded >= w[1].recorded),
            "most recent first"
        );
        // An id already in the trail (a frame inserted again after a crash) is kept once.
        store
            .append(sample(0, "9000000009", "x", "2026-11-01T00:00:00.000Z"))
            .await
            .unwrap();
        let again = store.query(all_rows()).await.unwrap();
        assert_eq!(again.len(), 40, "ids are unique");
        assert_eq!(
            again
                .iter()
                .filter(|r| r.id == sample(0, "", "", "").id)
                .count(),
            1
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn all_rows() -> AuditQuery {
        AuditQuery {
            limit: 10_000,
            ..AuditQuery::default()
        }
    }

    /// Appends the sample rows numbered `ns`, each committed before the next.
    async fn append_rows(store: &SqliteAudit, ns: std::ops::Range<u32>) {
        for n in ns {
            store
                .append(sample(
                    n,
                    "9000000009",
                    "demo-consult",
                    "2026-11-01T10:00:00.000Z",
                ))
                .await
                .unwrap();
        }
    }

    fn open(path: &Path) -> SqliteAudit {
        SqliteAudit::open(path, Duration::from_secs(5), Synchronous::Full).unwrap()
    }

    #[tokio::test]
    async fn a_query_right_after_an_answer_finds_its_row_while_the_indexer_gathers() {
        let dir = std::env::temp_dir().join(format!("gp-audit-{}", uuid::Uuid::new_v4()));
        let store = open(&dir.join("trail.sqlite"));
        // Each row's query arrives while the indexer is still gathering the batches
        // before it into a transaction: it must end the gathering, not miss the row.
        for n in 0..30u32 {
            append_rows(&store, n..n + 1).await;
            let rows = store.query(all_rows()).await.unwrap();
            assert_eq!(rows.len(), n as usize + 1, "after row {n}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn rows_flushed_to_the_log_but_not_yet_indexed_are_there_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        {
            append_rows(&open(&path), 0..5).await;
        }
        // What a crash right after the writer's flush leaves: frames in the log that the
        // index has not taken (written here by a log of our own, the store closed), and a
        // last frame cut short mid-write, never acknowledged.
        let log_dir = log::dir_for(&path);
        let indexed = position(&Connection::open(&path).unwrap()).unwrap();
        assert!(indexed.is_some(), "the index records how far it has read");
        let last_segment = {
            let (mut log, pending, _) = Log::open(&log_dir, indexed, true).unwrap();
            assert!(pending.is_empty(), "a clean close leaves nothing to insert");
            log.append(
                &[sample(
                    5,
                    "9690937278",
                    "demo-booking",
                    "2026-11-02T10:00:00.000Z",
                )],
                [],
            )
            .unwrap();
            let end = log
                .append(
                    &[sample(
                        6,
                        "9690937278",
                        "demo-booking",
                        "2026-11-02T10:00:01.000Z",
                    )],
                    [],
                )
                .unwrap();
            log.append(
                &[sample(
                    7,
                    "9690937278",
                    "demo-booking",
                    "2026-11-02T10:00:02.000Z",
                )],
                [],
            )
            .unwrap();
            end
        };
        let segment = log::segment_path(&log_dir, last_segment.segment);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(last_segment.offset + 10)
            .unwrap();

        let store = open(&path);
        let rows = store.query(all_rows()).await.unwrap();
        let mut ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        let mut expected: Vec<String> = (0..7).map(|n| sample(n, "", "", "").id).collect();
        expected.sort();
        assert_eq!(ids, expected, "every flushed row, and not the torn one");
        // And the trail goes on: a new row, a clean close, nothing inserted twice.
        store
            .append(sample(
                8,
                "9690937278",
                "demo-booking",
                "2026-11-03T10:00:00.000Z",
            ))
            .await
            .unwrap();
        drop(store);
        assert_eq!(open(&path).query(all_rows()).await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn log_segments_go_once_their_rows_are_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        for round in 0..3u32 {
            append_rows(&open(&path), round * 10..round * 10 + 10).await;
        }
        // Each opening starts a segment; each close checkpoints and drops the older ones.
        assert_eq!(log::segments(&log::dir_for(&path)).unwrap().len(), 1);
        assert_eq!(open(&path).query(all_rows()).await.unwrap().len(), 30);
    }

    #[tokio::test]
    async fn an_index_that_cannot_take_rows_is_reported_and_catches_up_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        let store = open(&path);
        append_rows(&store, 0..1).await;
        // The index refuses inserts, as a full disk would make it.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        for n in 1..4 {
            store
                .append(sample(
                    n,
                    "9000000009",
                    "demo-consult",
                    "2026-11-01T10:00:01.000Z",
                ))
                .await
                .expect("a row in the log is committed, whatever the index does");
        }
        let refused = store.ready().await.unwrap_err();
        assert!(refused.0.contains("behind its log"), "{refused}");
        assert!(refused.0.contains("disk full"), "{refused}");
        assert!(
            store.query(all_rows()).await.is_err(),
            "no incomplete answer"
        );

        other.execute_batch("DROP TRIGGER refuse;").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.ready().await.is_err() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.ready().await.expect("caught up");
        assert_eq!(store.query(all_rows()).await.unwrap().len(), 4);
        store
            .append(sample(
                4,
                "9000000009",
                "demo-consult",
                "2026-11-01T10:00:02.000Z",
            ))
            .await
            .unwrap();
        assert_eq!(store.query(all_rows()).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn rows_reach_the_database_file_by_the_indexers_checkpoint_in_either_mode() {
        for synchronous in [Synchronous::Full, Synchronous::Normal] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("trail.sqlite");
            let store = SqliteAudit::open(&path, Duration::from_secs(5), synchronous).unwrap();
            for n in 0..300u32 {
                let at = format!("2026-11-01T10:00:{:02}.000Z", n % 60);
                store
                    .append(sample(n, "9000000009", "demo-consult", &at))
                    .await
                    .unwrap();
            }
            // 300 rows are far below SQLite's backstop: only the indexer's checkpoint
            // copies them out of the WAL into the file itself.
            let file_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while file_len() < 32 * 1024 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                file_len() >= 32 * 1024,
                "{synchronous:?}: the database file is still {} bytes",
                file_len()
            );
            drop(store);
            let reopened = SqliteAudit::open(&path, Duration::from_secs(5), synchronous).unwrap();
            let rows = reopened
                .query(AuditQuery {
                    limit: 1000,
                    ..AuditQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(rows.len(), 300, "{synchronous:?}");
        }
    }

    #[tokio::test]
    async fn a_trail_from_before_request_id_supplied_is_upgraded_and_keeps_its_rows() {
        let dir = std::env::temp_dir().join(format!("gp-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.sqlite");
        {
            // The first release's table, with one row in it.
            let conn = Connection::open(&path).unwrap();
            let first_release = SCHEMA.replace(",\n    request_id_supplied INTEGER", "");
            assert!(!first_release.contains("request_id_supplied"));
            conn.execute_batch(&first_release).unwrap();
            conn.execute_batch(&FIRST_RELEASE_ROW.replace("{table}", "audit_event"))
                .unwrap();
        }
        let store = SqliteAudit::open(&path, Duration::from_secs(5), Synchronous::Full).unwrap();
        check_upgraded(&store).await;
        drop(store);
        // Opening again finds the column there and leaves it.
        SqliteAudit::open(&path, Duration::from_secs(5), Synchronous::Full).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The rows of `ids`, by id, from `store`.
    async fn statuses(store: &SqliteAudit, ids: &[&str]) -> Vec<(u16, Option<String>)> {
        let rows = store.query(all_rows()).await.unwrap();
        ids.iter()
            .map(|id| {
                let r = rows
                    .iter()
                    .find(|r| r.id == *id)
                    .unwrap_or_else(|| panic!("row {id} is in the trail"));
                (r.status, r.outcome_code.clone())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_row_that_misses_its_deadline_records_the_refusal_the_client_got() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        let store = std::sync::Arc::new(
            SqliteAudit::open(&path, Duration::from_millis(150), Synchronous::Full).unwrap(),
        );
        // A disk that takes 500 ms per write: the first row's frame is being written
        // when its deadline passes, the others queue behind it and miss theirs.
        store.disk.stall(500);
        let at = "2026-11-01T10:00:00.000Z";
        let mut refused = sample(3, "9690937278", "demo-consult", at);
        refused.status = 404;
        refused.outcome_code = Some("RESOURCE_NOT_FOUND".into());
        let rows = [
            sample(1, "9000000009", "demo-consult", at),
            sample(2, "9000000009", "demo-consult", at),
            refused,
        ];
        let mut tasks = Vec::new();
        for (i, row) in rows.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
                store.append(row).await
            }));
        }
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.0.contains("no commit within 150 ms"), "{err}");
        }
        store.disk.stall(0);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let refusal = (503, Some("SERVICE_UNAVAILABLE".to_owned()));
        let expected = vec![
            refusal.clone(),
            refusal,
            (404, Some("RESOURCE_NOT_FOUND".to_owned())),
        ];
        // The writer catches up on its own (the stalled writes end), with no new request.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Queries wait behind the stalled writes, and may miss their own deadline.
            let rows = store.query(all_rows()).await.unwrap_or_default();
            let settled = ids.iter().all(|id| {
                rows.iter()
                    .any(|r| r.id == *id && !super::super::releases(r.status))
            });
            if settled || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            statuses(&store, &ids).await,
            expected,
            "no row says a success the client never got"
        );
        // A row committed in time says what it was.
        let ok = sample(4, "9000000009", "demo-consult", at);
        store.append(ok.clone()).await.unwrap();
        assert_eq!(statuses(&store, &[&ok.id]).await, vec![(200, None)]);
        drop(store);
        let mut all_ids = ids;
        all_ids.push(&ok.id);
        let mut again = expected;
        again.push((200, None));
        assert_eq!(statuses(&open(&path), &all_ids).await, again, "kept");
    }

    #[tokio::test]
    async fn a_later_frame_of_the_log_overrides_a_rows_status_when_it_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        drop(open(&path));
        // What a crash leaves after a row was written, its client refused meanwhile, and
        // the refusal written as a later frame: neither in the index yet.
        let row = sample(1, "9000000009", "demo-consult", "2026-11-01T10:00:00.000Z");
        {
            let indexed = position(&Connection::open(&path).unwrap()).unwrap();
            let (mut log, _, _) = Log::open(&log::dir_for(&path), indexed, true).unwrap();
            log.append(std::slice::from_ref(&row), []).unwrap();
            log.append(&[row.clone().withheld()], []).unwrap();
        }
        assert_eq!(
            statuses(&open(&path), &[&row.id]).await,
            vec![(503, Some("SERVICE_UNAVAILABLE".to_owned()))]
        );
    }

    #[tokio::test]
    async fn readiness_reports_failing_writes_and_comes_back_when_they_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("trail.sqlite"));
        store.ready().await.expect("a new trail is ready");
        store.disk.fail(true);
        let row = sample(1, "9000000009", "demo-consult", "2026-11-01T10:00:00.000Z");
        store.append(row.clone()).await.unwrap_err();
        let not_ready = store.ready().await.unwrap_err();
        assert!(not_ready.0.contains("the last write failed"), "{not_ready}");
        // Still failing: each probe tries the owed row again, and still fails.
        tokio::time::sleep(super::super::FAILURE_MEMORY / 2).await;
        store.ready().await.unwrap_err();
        store.disk.fail(false);
        // No request needed: the probe's turn writes the refused request's row.
        store.ready().await.expect("ready once a write succeeds");
        assert_eq!(
            statuses(&store, &[&row.id]).await,
            vec![(503, Some("SERVICE_UNAVAILABLE".to_owned()))]
        );
    }

    // ---- notifications ----

    #[tokio::test]
    async fn events_committed_with_rows_come_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir.path().join("trail.sqlite")));
        checks::events_committed_with_rows_come_in_commit_order(store).await;
    }

    #[tokio::test]
    async fn record_changes_is_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("trail.sqlite"));
        let n = store.notifications().unwrap();
        checks::record_changes_is_compare_and_set(n.as_ref(), n.as_ref()).await;
    }

    #[tokio::test]
    async fn claims_are_exclusive_renewed_and_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("trail.sqlite"));
        let n = store.notifications().unwrap();
        checks::claims_are_exclusive_renewed_and_handed_over(n.as_ref(), n.as_ref()).await;
    }

    #[tokio::test]
    async fn delivery_state_moves_only_for_the_lease_holder_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        let store = open(&path);
        checks::delivery_state_moves_only_for_the_lease_holder(
            store.notifications().unwrap().as_ref(),
        )
        .await;
        drop(store);
        let n = open(&path).notifications().unwrap();
        let a = n.subscription("sub-a").await.unwrap().unwrap();
        assert_eq!(a.events_since_start, 1);
        assert_eq!(n.notifications("sub-b", 1, 1, 10).await.unwrap().len(), 1);
        assert_eq!(n.events_after(0, 100).await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_row_withheld_or_refused_carries_no_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        let store = Arc::new(
            SqliteAudit::open(&path, Duration::from_millis(150), Synchronous::Full).unwrap(),
        );
        let n = store.notifications().unwrap();
        let at = "2026-11-01T10:00:00.000Z";
        // A disk that takes 500 ms per write: row 1 is taken, and its request gives up
        // while its frame is written; rows 2 and 3 miss their deadline in the queue.
        store.disk.stall(500);
        let mut tasks = Vec::new();
        for i in 1..=3u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(i))).await;
                store
                    .append_with_events(
                        sample(i, "9000000009", "demo-consult", at),
                        vec![sample_event(i, "9000000009")],
                    )
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_err();
        }
        store.disk.stall(0);
        // The writer settles them on its own: all three recorded as the 503 sent.
        let ids: Vec<String> = (1..=3).map(|i| sample(i, "", "", "").id).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let rows = store.query(all_rows()).await.unwrap_or_default();
            if ids.iter().all(|id| {
                rows.iter()
                    .any(|r| &r.id == id && !super::super::releases(r.status))
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            statuses(&store, &refs).await,
            vec![(503, Some("SERVICE_UNAVAILABLE".to_owned())); 3]
        );
        // A commit that fails: no event.
        store.disk.fail(true);
        store
            .append_with_events(
                sample(4, "9000000009", "demo-consult", at),
                vec![sample_event(4, "9000000009")],
            )
            .await
            .unwrap_err();
        store.disk.fail(false);
        store.ready().await.expect("the refused row is written");
        assert_eq!(
            statuses(&store, &[&sample(4, "", "", "").id]).await,
            vec![(503, Some("SERVICE_UNAVAILABLE".to_owned()))]
        );
        // Then one that commits in time.
        store
            .append_with_events(
                sample(5, "9000000009", "demo-consult", at),
                vec![sample_event(5, "9000000009")],
            )
            .await
            .unwrap();
        // Rows 2 and 3 were never taken, row 4's commit failed: none of theirs. Row 1's
        // events committed with it before its request gave up, and stand (see `Writer`).
        let events = checks::wait_for_events(n.as_ref(), 0, 2).await;
        assert_eq!(
            checks::plain(&events),
            vec![sample_event(1, "9000000009"), sample_event(5, "9000000009")]
        );
        drop(store);
        let reopened = open(&path).notifications().unwrap();
        assert_eq!(reopened.events_after(0, 100).await.unwrap(), events, "kept");
    }

    #[tokio::test]
    async fn events_flushed_to_the_log_but_not_yet_indexed_are_there_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.sqlite");
        let at = "2026-11-02T10:00:00.000Z";
        {
            let store = open(&path);
            store
                .append_with_events(
                    sample(0, "9000000009", "demo-consult", at),
                    vec![sample_event(0, "9000000009")],
                )
                .await
                .unwrap();
        }
        // What a crash right after the writer's flushes leaves: frames the index has not
        // taken (one with events, one of rows only, as written before events existed,
        // one with events again) and a last frame with events cut short, never
        // acknowledged.
        let log_dir = log::dir_for(&path);
        let indexed = position(&Connection::open(&path).unwrap()).unwrap();
        let torn = {
            let (mut log, pending, _) = Log::open(&log_dir, indexed, true).unwrap();
            assert!(pending.is_empty(), "a clean close leaves nothing to insert");
            log.append(
                &[sample(1, "9690937278", "demo-booking", at)],
                &[sample_event(1, "9690937278"), sample_event(2, "9690937278")],
            )
            .unwrap();
            log.append(&[sample(2, "9690937278", "demo-booking", at)], [])
                .unwrap();
            let end = log
                .append(
                    &[sample(3, "9690937278", "demo-booking", at)],
                    &[sample_event(3, "9690937278")],
                )
                .unwrap();
            log.append(
                &[sample(4, "9690937278", "demo-booking", at)],
                &[sample_event(4, "9690937278")],
            )
            .unwrap();
            end
        };
        let segment = log::segment_path(&log_dir, torn.segment);
        let bytes = std::fs::read(&segment).unwrap();
        // Opening starts a new segment: the first frame written is at its start.
        assert_eq!(&bytes[..4], b"GPA2");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(torn.offset + 30)
            .unwrap();

        let store = open(&path);
        let n = store.notifications().unwrap();
        let expected: Vec<NewEvent> = [
            (0, "9000000009"),
            (1, "9690937278"),
            (2, "9690937278"),
            (3, "9690937278"),
        ]
        .into_iter()
        .map(|(i, p)| sample_event(i, p))
        .collect();
        let events = n.events_after(0, 100).await.unwrap();
        assert_eq!(
            checks::plain(&events),
            expected,
            "every flushed event, in order, not the torn one's"
        );
        let mut ids: Vec<String> = store
            .query(all_rows())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            (0..4).map(|i| sample(i, "", "", "").id).collect::<Vec<_>>()
        );
        // The outbox goes on after them; nothing is inserted twice on the next opening.
        store
            .append_with_events(
                sample(5, "9000000009", "demo-consult", at),
                vec![sample_event(5, "9000000009")],
            )
            .await
            .unwrap();
        let after = checks::wait_for_events(n.as_ref(), 0, 5).await;
        assert_eq!(after[..4], events[..]);
        assert!(after[4].seq > events[3].seq);
        drop((store, n));
        let reopened = open(&path).notifications().unwrap();
        assert_eq!(reopened.events_after(0, 100).await.unwrap(), after);
    }
}
