//! The shared audit store: PostgreSQL, for several replicas writing one trail. One
//! writer task per replica commits queued rows as one multi-row INSERT, and reconnects
//! after a failure (the rows of a failed batch are refused, never silently dropped).
//! A batch carrying notification events commits them in the same transaction, after its
//! rows (see [`crate::notify`] for the outbox's order); the notification store has a
//! connection of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, Row};

use super::notify::postgres::{self as notify_pg, PostgresNotify};
use super::pg::{CLIENT_GRACE, connect, pg_error};
use super::{
    AuditError, AuditQuery, AuditRecord, AuditStore, COLUMNS, Job, NewEvent, NotificationStore,
    QUEUE, Synchronous, Writer, gather, query_sql, submit, submit_append, valid_schema,
};

/// The PostgreSQL audit store.
pub struct PostgresAudit {
    tx: mpsc::Sender<Job>,
    timeout: Duration,
    notify: Arc<PostgresNotify>,
}

impl PostgresAudit {
    /// Connects (creating schema and tables if needed) and starts the writer task, which
    /// reconnects with the same settings after a failure; connects the notification
    /// store's own client too.
    pub async fn connect(
        config: Config,
        schema: &str,
        timeout: Duration,
        synchronous: Synchronous,
    ) -> Result<Self, AuditError> {
        if !valid_schema(schema) {
            return Err(AuditError(format!("invalid schema name {schema:?}")));
        }
        let client = connect(&config, schema, synchronous, timeout).await?;
        let notify =
            Arc::new(PostgresNotify::connect(config.clone(), schema, synchronous, timeout).await?);
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(
            config,
            schema.to_owned(),
            synchronous,
            timeout,
            Some(client),
            rx,
        ));
        Ok(Self {
            tx,
            timeout,
            notify,
        })
    }
}

async fn writer(
    config: Config,
    schema: String,
    synchronous: Synchronous,
    timeout: Duration,
    mut client: Option<Client>,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut w = Writer::default();
    while let Some(first) = rx.recv().await {
        let (appends, others) = gather(first, &mut rx);
        let taken = w.take(appends);
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&config, &schema, synchronous, timeout).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "audit PostgreSQL unreachable");
                    None
                }
            };
        }
        if w.owes() {
            pay(&mut client, &schema, timeout, &mut w).await;
        }
        if !taken.is_empty() {
            let rows: Vec<&AuditRecord> = Writer::rows(&taken).collect();
            let events = Writer::events(&taken);
            let result = commit(
                &mut client,
                &schema,
                timeout,
                &rows,
                &events,
                Conflict::Refuse,
            )
            .await;
            drop((rows, events));
            let committed = result.is_ok();
            w.settle(taken, result, |_, _| {});
            // A request that gave up while its rows committed is owed its refusal now.
            if committed && w.owes() {
                pay(&mut client, &schema, timeout, &mut w).await;
            }
        }
        for job in others {
            match (job, &mut client) {
                (Job::Query(q, done), Some(c)) => {
                    let _ = done.send(query(c, &schema, &q).await);
                }
                (Job::Ping(done), Some(c)) => {
                    let _ = done.send(match w.ready() {
                        Ok(()) => probe(c, &schema).await,
                        Err(e) => Err(e),
                    });
                }
                (Job::Query(_, done), None) => {
                    let _ = done.send(Err(unreachable()));
                }
                (Job::Ping(done), None) => {
                    let _ = done.send(Err(unreachable()));
                }
                (Job::Append(..), _) => {}
            }
        }
    }
}

fn unreachable() -> AuditError {
    AuditError("PostgreSQL unreachable".into())
}

/// Commits the rows owed to the trail, over rows of the same id. Owed rows carry no
/// events.
async fn pay(client: &mut Option<Client>, schema: &str, timeout: Duration, w: &mut Writer) {
    let rows = w.owed();
    let refs: Vec<&AuditRecord> = rows.iter().collect();
    let result = commit(client, schema, timeout, &refs, &[], Conflict::Replace).await;
    drop(refs);
    w.paid(result.map_err(|e| (rows, e)));
}

/// What an insert does with a row whose id the trail already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// Fail, with the whole statement: ids are new.
    Refuse,
    /// Take the new row's status and outcome: a row owed to the trail.
    Replace,
}

/// Inserts `rows` in one statement (and `events`, if any, in the same transaction, after
/// them), bounded in time. When no answer comes, the connection is dropped: whether the
/// rows committed is unknown, and they are treated as not committed (owed rows then
/// replace them).
async fn commit(
    client: &mut Option<Client>,
    schema: &str,
    timeout: Duration,
    rows: &[&AuditRecord],
    events: &[&NewEvent],
    conflict: Conflict,
) -> Result<(), AuditError> {
    let Some(c) = client.as_mut() else {
        return Err(unreachable());
    };
    let work = async {
        if events.is_empty() {
            return insert(c, schema, rows, conflict).await;
        }
        let tx = c.transaction().await.map_err(pg_error)?;
        insert(&tx, schema, rows, conflict).await?;
        // Last: the outbox lock is held from here to the commit.
        notify_pg::insert_events(&tx, schema, events).await?;
        tx.commit().await.map_err(pg_error)
    };
    match tokio::time::timeout(timeout + CLIENT_GRACE, work).await {
        Ok(result) => result,
        Err(_) => {
            *client = None;
            Err(AuditError(format!(
                "PostgreSQL: no answer within {} ms; connection dropped",
                (timeout + CLIENT_GRACE).as_millis()
            )))
        }
    }
}

/// Readiness: a row is inserted and rolled back, so a trail that refuses rows (a
/// revoked INSERT grant, a constraint, a read-only standby after failover) is not
/// ready though it still answers a `SELECT`.
async fn probe(client: &mut Client, schema: &str) -> Result<(), AuditError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let row = AuditRecord {
        id: format!("readiness-probe-{}", super::new_row_id()),
        recorded: super::now_recorded(),
        request_id: "readiness-probe".into(),
        request_id_supplied: Some(false),
        supplier: None,
        token_id: None,
        patient: None,
        practice: None,
        interaction: "read".into(),
        resource_type: None,
        status: 200,
        outcome_code: None,
        replica: super::replica_name(),
    };
    insert(&tx, schema, &[&row], Conflict::Refuse).await?;
    tx.rollback().await.map_err(pg_error)
}

/// Bind parameters per row: one per column in [`COLUMNS`].
const PER_ROW: usize = 13;

async fn insert(
    client: &impl GenericClient,
    schema: &str,
    rows: &[&AuditRecord],
    conflict: Conflict,
) -> Result<(), AuditError> {
    let statuses: Vec<i32> = rows.iter().map(|r| i32::from(r.status)).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * PER_ROW);
    let mut values = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let n = i * PER_ROW;
        let placeholders: Vec<String> = (1..=PER_ROW).map(|k| format!("${}", n + k)).collect();
        values.push(format!("({})", placeholders.join(",")));
        params.extend_from_slice(&[
            &r.id,
            &r.recorded,
            &r.request_id,
            &r.supplier,
            &r.token_id,
            &r.patient,
            &r.practice,
            &r.interaction,
            &r.resource_type,
            &statuses[i],
            &r.outcome_code,
            &r.replica,
            &r.request_id_supplied,
        ]);
    }
    // One statement is one transaction: all rows commit or none do.
    let on_conflict = match conflict {
        Conflict::Refuse => "",
        Conflict::Replace => {
            " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, outcome_code = EXCLUDED.outcome_code"
        }
    };
    let sql = format!(
        "INSERT INTO {schema}.audit_event ({COLUMNS}) VALUES {}{on_conflict}",
        values.join(",")
    );
    client
        .execute(sql.as_str(), &params)
        .await
        .map(|_| ())
        .map_err(pg_error)
}

fn row_record(row: &Row) -> Result<AuditRecord, tokio_postgres::Error> {
    let status: i32 = row.try_get(9)?;
    Ok(AuditRecord {
        id: row.try_get(0)?,
        recorded: row.try_get(1)?,
        request_id: row.try_get(2)?,
        supplier: row.try_get(3)?,
        token_id: row.try_get(4)?,
        patient: row.try_get(5)?,
        practice: row.try_get(6)?,
        interaction: row.try_get(7)?,
        resource_type: row.try_get(8)?,
        status: u16::try_from(status).unwrap_or(0),
        outcome_code: row.try_get(10)?,
        replica: row.try_get(11)?,
        request_id_supplied: row.try_get(12)?,
    })
}

async fn query(
    client: &Client,
    schema: &str,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, AuditError> {
    let (tail, values) = query_sql(q, '$');
    let sql = format!("SELECT {COLUMNS} FROM {schema}.audit_event WHERE 1 = 1{tail}");
    let args: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| *v as &(dyn ToSql + Sync)).collect();
    let rows = client.query(sql.as_str(), &args).await.map_err(pg_error)?;
    rows.iter()
        .map(row_record)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pg_error)
}

#[async_trait]
impl AuditStore for PostgresAudit {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    async fn append(&self, record: AuditRecord) -> Result<(), AuditError> {
        submit_append(&self.tx, self.timeout, record, Vec::new()).await
    }
    async fn append_with_events(
        &self,
        record: AuditRecord,
        events: Vec<NewEvent>,
    ) -> Result<(), AuditError> {
        submit_append(&self.tx, self.timeout, record, events).await
    }
    fn notifications(&self) -> Option<Arc<dyn NotificationStore>> {
        Some(self.notify.clone())
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
    use super::super::notify::tests as checks;
    use super::super::{AuditConfig, FIRST_RELEASE_ROW, check_upgraded, sample, sample_event};
    use super::*;

    /// The machine's PostgreSQL (CI has it); a unique schema per run, dropped after.
    const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";

    /// A store on the machine's PostgreSQL in `schema`, failing clearly when it is absent.
    async fn store_in(schema: &str) -> PostgresAudit {
        store_waiting(schema, Duration::from_secs(10)).await
    }

    /// [`store_in`] whose writes wait at most `timeout`.
    async fn store_waiting(schema: &str, timeout: Duration) -> PostgresAudit {
        PostgresAudit::connect(URL.parse().unwrap(), schema, timeout, Synchronous::Full)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}"))
    }

    #[tokio::test]
    async fn rows_commit_in_batches_and_query_back() {
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let store = std::sync::Arc::new(store_in(&schema).await);
        let mut tasks = Vec::new();
        for n in 0..100u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let patient = if n % 2 == 0 {
                    "9000000009"
                } else {
                    "9690937278"
                };
                let at = format!("2026-11-{:02}T10:00:00.000Z", 1 + n % 20);
                store.append(sample(n, patient, "demo-consult", &at)).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let all = store
            .query(AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 100);
        let one = store
            .query(AuditQuery {
                patient: Some("9690937278".into()),
                from: Some("2026-11-10".into()),
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(
            one.iter()
                .all(|r| r.patient.as_deref() == Some("9690937278")
                    && r.recorded.as_str() >= "2026-11-10")
        );
        // Odd n whose day (1 + n % 20) is 10 or later: n % 20 in 9, 11, …, 19, five times each.
        assert_eq!(one.len(), 30);
        // Clean up.
        other_session()
            .await
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_trail_from_before_request_id_supplied_gains_the_column() {
        assert_eq!(COLUMNS.split(',').count(), PER_ROW);
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let client = other_session().await;
        // The first release's table, with one row in it.
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.audit_event (
                    seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, recorded TEXT NOT NULL,
                    request_id TEXT NOT NULL, supplier TEXT, token_id TEXT, patient TEXT,
                    practice TEXT, interaction TEXT NOT NULL, resource_type TEXT,
                    status INTEGER NOT NULL, outcome_code TEXT, replica TEXT NOT NULL);
                 {};",
                FIRST_RELEASE_ROW.replace("{table}", &format!("{schema}.audit_event"))
            ))
            .await
            .unwrap();
        let store = store_in(&schema).await;
        check_upgraded(&store).await;
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    /// `[audit] postgres_password_file` end to end against the local server. Its trust
    /// authentication accepts any password, so what this shows is the wiring: the file
    /// is read relative to the config directory, its one line (any characters, no
    /// quoting) becomes the password setting, and the store connects with it.
    #[tokio::test]
    async fn the_password_file_is_read_and_used_to_connect() {
        let dir = tempfile::tempdir().unwrap();
        let password = "p@ss word'\\=:/%x";
        std::fs::write(dir.path().join("pg-password"), format!("{password}\n")).unwrap();
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let config = AuditConfig {
            backend: super::super::AuditBackend::Postgres,
            postgres_url: Some(URL.into()),
            postgres_password_file: Some("pg-password".into()),
            postgres_schema: schema.clone(),
            ..AuditConfig::default()
        };
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        let pg = config.postgres_config(dir.path()).unwrap();
        assert_eq!(pg.get_password(), Some(password.as_bytes()));
        assert_eq!(
            pg.get_user(),
            Some("postgres"),
            "the URL's settings are kept"
        );
        let store = super::super::open(&config, dir.path()).await.unwrap();
        store.ready().await.unwrap();
        store
            .append(sample(
                1,
                "9000000009",
                "demo-consult",
                "2026-11-23T10:00:00.000Z",
            ))
            .await
            .unwrap();

        // A missing file: a clear error naming it, at start-up.
        std::fs::remove_file(dir.path().join("pg-password")).unwrap();
        let err = super::super::open(&config, dir.path())
            .await
            .err()
            .unwrap()
            .to_string();
        let path = dir.path().join("pg-password");
        assert!(
            err.contains("audit.postgres_password_file")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        // Two lines: refused, naming the file and showing neither.
        std::fs::write(&path, "first-secret\nsecond-secret\n").unwrap();
        let err = config.postgres_config(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("pg-password") && !err.contains("secret\n"),
            "{err}"
        );
        assert!(
            !err.contains("first-secret") && !err.contains("second-secret"),
            "{err}"
        );

        other_session()
            .await
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn synchronous_normal_turns_off_synchronous_commit_for_the_writer_only() {
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let config: Config = URL.parse().unwrap();
        let mut seen = Vec::new();
        for synchronous in [Synchronous::Full, Synchronous::Normal] {
            let client = connect(&config, &schema, synchronous, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}")
                });
            let row = client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .unwrap();
            seen.push(row.get::<_, String>(0));
        }
        assert_eq!(seen, ["on", "off"]);
        let client = connect(&config, &schema, Synchronous::Full, Duration::from_secs(10))
            .await
            .unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_server_refuses_rows() {
        let err = PostgresAudit::connect(
            "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=2"
                .parse()
                .unwrap(),
            "gp_gateway",
            Duration::from_secs(5),
            Synchronous::Full,
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
    }

    /// A plain connection to the machine's PostgreSQL, for a test to play another
    /// session (an operator, a migration) against the trail.
    async fn other_session() -> Client {
        let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}")
            });
        tokio::spawn(conn);
        client
    }

    async fn statuses(store: &PostgresAudit, ids: &[String]) -> Vec<Option<(u16, Option<String>)>> {
        let rows = store
            .query(AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        ids.iter()
            .map(|id| {
                rows.iter()
                    .find(|r| &r.id == id)
                    .map(|r| (r.status, r.outcome_code.clone()))
            })
            .collect()
    }

    #[tokio::test]
    async fn rows_refused_while_the_table_is_locked_are_recorded_as_refused() {
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let store = std::sync::Arc::new(store_waiting(&schema, Duration::from_millis(300)).await);
        let locker = other_session().await;
        locker
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {schema}.audit_event IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        let at = "2026-11-01T10:00:00.000Z";
        let mut tasks = Vec::new();
        let mut ids = Vec::new();
        for n in 0..6u32 {
            let row = sample(n, "9000000009", "demo-consult", at);
            ids.push(row.id.clone());
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 * u64::from(n))).await;
                store.append(row).await
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .expect_err("refused while the table is locked");
        }
        locker.batch_execute("COMMIT").await.unwrap();
        // The next row commits, and the refused ones are recorded as the 503 they got.
        let ok = sample(99, "9000000009", "demo-consult", at);
        store.append(ok.clone()).await.unwrap();
        let refusal = Some((503, Some("SERVICE_UNAVAILABLE".to_owned())));
        assert_eq!(statuses(&store, &ids).await, vec![refusal; ids.len()]);
        assert_eq!(statuses(&store, &[ok.id]).await, vec![Some((200, None))]);
        locker
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_trail_that_refuses_rows_is_not_ready_and_comes_back_by_itself() {
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let store = store_in(&schema).await;
        store.ready().await.expect("a new trail is ready");
        let other = other_session().await;
        // A constraint no row meets: in real life a revoked INSERT grant, a read-only
        // standby after failover. A SELECT still works.
        other
            .batch_execute(&format!(
                "ALTER TABLE {schema}.audit_event ADD CONSTRAINT refuse_all CHECK (status < 0) NOT VALID"
            ))
            .await
            .unwrap();
        let not_ready = store.ready().await.expect_err("no row can be written");
        assert!(not_ready.0.contains("refuse_all"), "{not_ready}");
        let row = sample(1, "9000000009", "demo-consult", "2026-11-01T10:00:00.000Z");
        store.append(row.clone()).await.unwrap_err();
        let not_ready = store.ready().await.unwrap_err();
        assert!(not_ready.0.contains("last write failed"), "{not_ready}");
        other
            .batch_execute(&format!(
                "ALTER TABLE {schema}.audit_event DROP CONSTRAINT refuse_all"
            ))
            .await
            .unwrap();
        // No request needed: the probe's turn writes the refused request's row.
        store.ready().await.expect("ready again");
        assert_eq!(
            statuses(&store, &[row.id]).await,
            vec![Some((503, Some("SERVICE_UNAVAILABLE".to_owned())))]
        );
        other
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    // ---- notifications ----

    fn new_schema() -> String {
        format!("audit_test_{}", uuid::Uuid::new_v4().simple())
    }

    async fn drop_schema(schema: &str) {
        other_session()
            .await
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn events_committed_with_rows_come_in_commit_order() {
        let schema = new_schema();
        let store = Arc::new(store_in(&schema).await);
        checks::events_committed_with_rows_come_in_commit_order(store).await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn record_changes_is_compare_and_set_between_replicas() {
        let schema = new_schema();
        let (one, two) = (store_in(&schema).await, store_in(&schema).await);
        checks::record_changes_is_compare_and_set(
            one.notifications().unwrap().as_ref(),
            two.notifications().unwrap().as_ref(),
        )
        .await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn claims_are_exclusive_between_replicas_renewed_and_handed_over() {
        let schema = new_schema();
        let (one, two) = (store_in(&schema).await, store_in(&schema).await);
        checks::claims_are_exclusive_renewed_and_handed_over(
            one.notifications().unwrap().as_ref(),
            two.notifications().unwrap().as_ref(),
        )
        .await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn many_claims_at_once_never_share_a_subscription() {
        let schema = new_schema();
        let replicas = [
            store_in(&schema).await,
            store_in(&schema).await,
            store_in(&schema).await,
        ];
        let stores: Vec<_> = replicas
            .iter()
            .map(|r| r.notifications().unwrap())
            .collect();
        for i in 0..40 {
            stores[0]
                .insert_subscription(&checks::subscription(
                    &format!("sub-{i:02}"),
                    "demo-consult",
                ))
                .await
                .unwrap();
        }
        let now = 1_800_000_000_000;
        // Each round's leases have expired by the next: all are claimable again.
        for round in 0..5 {
            let mut claims = tokio::task::JoinSet::new();
            for (i, n) in stores.iter().enumerate() {
                let (n, owner) = (n.clone(), format!("replica-{i}"));
                claims.spawn(async move { n.claim(&owner, now + round * 60_000, 60_000, 7).await });
            }
            let mut seen = std::collections::HashSet::new();
            let mut total = 0;
            while let Some(claimed) = claims.join_next().await {
                for s in claimed.unwrap().unwrap() {
                    total += 1;
                    assert!(
                        seen.insert(s.id.clone()),
                        "{} claimed twice in round {round}",
                        s.id
                    );
                }
            }
            assert_eq!(total, 21, "each replica got its 7");
        }
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn delivery_state_moves_only_for_the_lease_holder() {
        let schema = new_schema();
        let store = store_in(&schema).await;
        checks::delivery_state_moves_only_for_the_lease_holder(
            store.notifications().unwrap().as_ref(),
        )
        .await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn a_row_refused_or_withheld_carries_no_event() {
        let schema = new_schema();
        let store = Arc::new(store_waiting(&schema, Duration::from_millis(300)).await);
        let n = store.notifications().unwrap();
        let other = other_session().await;
        let at = "2026-11-01T10:00:00.000Z";
        let append = |i: u32| {
            let store = store.clone();
            async move {
                store
                    .append_with_events(
                        sample(i, "9000000009", "demo-consult", at),
                        vec![sample_event(i, "9000000009")],
                    )
                    .await
            }
        };
        // The table locked: the first batch's commit fails at the deadline, the rows
        // queued behind it miss theirs before they are taken.
        let locker = other_session().await;
        locker
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {schema}.audit_event IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 1..=4u32 {
            let append = append(i);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 * u64::from(i))).await;
                append.await
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .expect_err("refused while the table is locked");
        }
        locker.batch_execute("COMMIT").await.unwrap();
        // The events' insert fails: so does the row's commit, in the same transaction.
        other
            .batch_execute(&format!(
                "ALTER TABLE {schema}.notify_event ADD CONSTRAINT refuse_all CHECK (seq < 0) NOT VALID"
            ))
            .await
            .unwrap();
        append(5).await.expect_err("the outbox refuses the event");
        other
            .batch_execute(&format!(
                "ALTER TABLE {schema}.notify_event DROP CONSTRAINT refuse_all"
            ))
            .await
            .unwrap();
        append(6).await.unwrap();
        let ids: Vec<String> = (1..=6).map(|i| sample(i, "", "", "").id).collect();
        let refusal = Some((503, Some("SERVICE_UNAVAILABLE".to_owned())));
        let mut expected = vec![refusal; 5];
        expected.push(Some((200, None)));
        assert_eq!(statuses(&store, &ids).await, expected);
        let events = checks::wait_for_events(n.as_ref(), 0, 1).await;
        assert_eq!(
            checks::plain(&events),
            vec![sample_event(6, "9000000009")],
            "only the row committed as given has its event"
        );
        drop_schema(&schema).await;
    }

    /// The columns of an event inserted by hand, as another session would.
    fn raw_event(schema: &str, id: &str) -> String {
        format!(
            "INSERT INTO {schema}.notify_event (id, kind, patient, practice, resource_type, occurred, source) \
             VALUES ('{id}', 'reading-recorded', '9000000009', 'A12345', 'Observation', '2026-12-01T10:00:00.000Z', 'gp-system')"
        )
    }

    fn ids(events: &[super::super::StoredEvent]) -> Vec<String> {
        events.iter().map(|e| e.event.id.clone()).collect()
    }

    #[tokio::test]
    async fn an_event_is_not_answered_while_a_lower_seq_may_still_commit() {
        let schema = new_schema();
        let store = store_in(&schema).await;
        let n = store.notifications().unwrap();
        let at = "2026-11-01T10:00:00.000Z";
        let e = |i: u32| sample_event(i, "9000000009");
        store
            .append_with_events(sample(1, "9000000009", "x", at), vec![e(1)])
            .await
            .unwrap();
        let first = checks::wait_for_events(n.as_ref(), 0, 1).await;
        assert_eq!(ids(&first), [e(1).id]);

        // Another session takes the next seq and holds its transaction open; the store
        // then commits a higher seq.
        let held = other_session().await;
        held.batch_execute(&format!("BEGIN; {}", raw_event(&schema, "held")))
            .await
            .unwrap();
        store
            .append_with_events(sample(2, "9000000009", "x", at), vec![e(2)])
            .await
            .unwrap();
        let seqs: Vec<i64> = other_session()
            .await
            .query(
                &format!("SELECT seq FROM {schema}.notify_event ORDER BY seq"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(seqs.len(), 2, "the held one is not visible: {seqs:?}");
        assert_eq!(seqs[1], seqs[0] + 2, "the held one took the seq between");
        for _ in 0..3 {
            assert_eq!(
                ids(&n.events_after(0, 100).await.unwrap()),
                [e(1).id],
                "not past the held transaction"
            );
            assert!(n.events_after(first[0].seq, 100).await.unwrap().is_empty());
            assert_eq!(n.last_seq().await.unwrap(), first[0].seq);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        held.batch_execute("COMMIT").await.unwrap();
        let all = checks::wait_for_events(n.as_ref(), 0, 3).await;
        assert_eq!(ids(&all), [e(1).id, "held".to_owned(), e(2).id]);

        // Rolled back instead: the higher one is answered once it has ended.
        held.batch_execute(&format!("BEGIN; {}", raw_event(&schema, "aborted")))
            .await
            .unwrap();
        store
            .append_with_events(sample(3, "9000000009", "x", at), vec![e(3)])
            .await
            .unwrap();
        let last = all[2].seq;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(n.events_after(last, 100).await.unwrap().is_empty());
        held.batch_execute("ROLLBACK").await.unwrap();
        let after = checks::wait_for_events(n.as_ref(), last, 1).await;
        assert_eq!(ids(&after), [e(3).id]);
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn commits_carrying_events_take_their_seqs_one_after_the_other() {
        let schema = new_schema();
        let store = Arc::new(store_in(&schema).await);
        let n = store.notifications().unwrap();
        // Another writer of events (a replica's commit) holds the outbox lock, its
        // transaction open with a seq drawn.
        let replica = other_session().await;
        replica
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({}); {}",
                notify_pg::OUTBOX_LOCK,
                raw_event(&schema, "replica")
            ))
            .await
            .unwrap();
        let at = "2026-11-01T10:00:00.000Z";
        let appending = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .append_with_events(
                        sample(1, "9000000009", "x", at),
                        vec![sample_event(1, "9000000009")],
                    )
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !appending.is_finished(),
            "a commit with events waits for the one before it"
        );
        replica.batch_execute("COMMIT").await.unwrap();
        appending.await.unwrap().unwrap();
        let all = checks::wait_for_events(n.as_ref(), 0, 2).await;
        assert_eq!(
            ids(&all),
            ["replica".to_owned(), sample_event(1, "").id],
            "seq order is commit order"
        );
        drop_schema(&schema).await;
    }
}
