//! The default audit store: one SQLite file in WAL mode, written by one thread that
//! commits whatever rows have queued up as one transaction. `synchronous = FULL` (the
//! default) flushes the WAL at every commit; `NORMAL` leaves the flush to checkpoints.
//!
//! Checkpoints (copying the WAL back into the database file, with its own flush) run on
//! a second thread and connection, once a second, so the writer never stops for one and a
//! request never waits behind a checkpoint's flush. The writer's own automatic checkpoint
//! is only a backstop, at a WAL far larger than a second's rows.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params_from_iter};
use tokio::sync::mpsc;

use super::{
    AuditError, AuditQuery, AuditRecord, AuditStore, COLUMNS, Job, QUEUE, Synchronous, answer,
    filters, gather, submit,
};

/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The writer's own automatic checkpoint, in WAL pages (4 KiB): a backstop for a
/// checkpoint thread that cannot keep up, about 64 MiB.
const BACKSTOP_CHECKPOINT_PAGES: u32 = 16_384;

/// The SQLite audit store.
pub struct SqliteAudit {
    tx: mpsc::Sender<Job>,
    timeout: Duration,
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
";

fn sql_error(e: rusqlite::Error) -> AuditError {
    AuditError(format!("SQLite: {e}"))
}

impl SqliteAudit {
    /// Opens (creating if needed) the trail at `path` and starts its writer and
    /// checkpoint threads, which stop when the store is dropped.
    pub fn open(
        path: &Path,
        timeout: Duration,
        synchronous: Synchronous,
    ) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| AuditError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = connect(
            path,
            synchronous,
            &format!(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES};"
            ),
        )?;
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        upgrade(&conn)?;
        let checkpoints = connect(path, synchronous, "")?;
        let (stop, stopped) = std_mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, stopped))
            .map_err(|e| AuditError(format!("cannot start the audit checkpoints: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-sqlite".into())
            .spawn(move || writer(conn, rx, stop))
            .map_err(|e| AuditError(format!("cannot start the audit writer: {e}")))?;
        Ok(Self { tx, timeout })
    }
}

/// A connection to the trail at `path` with the configured `synchronous`, a busy timeout
/// and the `extra` pragmas.
fn connect(path: &Path, synchronous: Synchronous, extra: &str) -> Result<Connection, AuditError> {
    let conn = Connection::open(path)
        .map_err(|e| AuditError(format!("cannot open {}: {e}", path.display())))?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; {extra}"
    ))
    .map_err(sql_error)?;
    Ok(conn)
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

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`] (PASSIVE: it never
/// waits for, nor blocks, the writer) until the writer drops `stop`.
fn checkpointer(conn: Connection, stop: std_mpsc::Receiver<()>) {
    while let Err(std_mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "audit checkpoint failed; the writer's backstop remains");
        }
    }
}

/// Commits queued rows until every sender is gone; `_stop` ends the checkpoint thread
/// when the writer ends.
fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Job>, _stop: std_mpsc::Sender<()>) {
    while let Some(first) = rx.blocking_recv() {
        let (appends, others) = gather(first, &mut rx);
        if !appends.is_empty() {
            let rows: Vec<&AuditRecord> = appends.iter().map(|(r, _)| r).collect();
            let result = commit(&mut conn, &rows);
            answer(appends, result);
        }
        for job in others {
            match job {
                Job::Query(q, done) => {
                    let _ = done.send(query(&conn, &q));
                }
                Job::Ping(done) => {
                    let _ = done.send(
                        conn.query_row(
                            "SELECT count(*) FROM (SELECT 1 FROM audit_event LIMIT 1)",
                            [],
                            |_| Ok(()),
                        )
                        .map_err(sql_error),
                    );
                }
                Job::Append(..) => {}
            }
        }
    }
}

fn commit(conn: &mut Connection, rows: &[&AuditRecord]) -> Result<(), AuditError> {
    let tx = conn.transaction().map_err(sql_error)?;
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO audit_event ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))
            .map_err(sql_error)?;
        for r in rows {
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
    }
    tx.commit().map_err(sql_error)
}

fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_event WHERE 1 = 1");
    let mut args: Vec<&String> = Vec::new();
    for (column, op, value) in filters(q) {
        args.push(value);
        sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
    }
    sql.push_str(&format!(
        " ORDER BY recorded DESC, seq DESC LIMIT {}",
        q.limit.max(1)
    ));
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
        submit(&self.tx, self.timeout, |done| Job::Append(record, done)).await
    }
    async fn query(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        submit(&self.tx, self.timeout, |done| Job::Query(query, done)).await
    }
    async fn ready(&self) -> Result<(), AuditError> {
        submit(&self.tx, self.timeout, Job::Ping).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FIRST_RELEASE_ROW, check_upgraded, sample};
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
        let dup = store
            .append(sample(0, "9000000009", "x", "2026-11-01T00:00:00.000Z"))
            .await;
        assert!(dup.is_err(), "ids are unique");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn rows_reach_the_database_file_by_the_checkpoint_thread_in_either_mode() {
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
            // 300 rows are far below the writer's backstop: only the checkpoint thread
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
}
