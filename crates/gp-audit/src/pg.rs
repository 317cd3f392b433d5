//! Connections to the trail's PostgreSQL database, shared by the audit store and the
//! notification store: the error wording, the client's grace past the server's timeout,
//! and a connection with every table (the trail's and the notifications') created if absent.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::{AuditError, Synchronous};

/// How long past the server's own `statement_timeout` the writer waits for an answer
/// before it gives the connection up (a silent network would otherwise hold it).
pub(crate) const CLIENT_GRACE: Duration = Duration::from_secs(1);

pub(crate) fn pg_error(e: tokio_postgres::Error) -> AuditError {
    // The Display of a server error is only "db error": the detail is in its source.
    let detail = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    AuditError(format!("PostgreSQL: {detail}"))
}

/// A connection to the trail, its tables created if absent (the notification tables
/// too), its session set for the audit's writes.
pub(crate) async fn connect(
    config: &Config,
    schema: &str,
    synchronous: Synchronous,
    timeout: Duration,
) -> Result<Client, AuditError> {
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls))
        .await
        .map_err(|_| AuditError("PostgreSQL: connect timed out".into()))?
        .map_err(pg_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "audit PostgreSQL connection closed");
        }
    });
    // `schema` was checked by `valid_schema`: safe to put in the statement.
    client
        .batch_execute(&format!(
            // Replicas start together: an advisory lock serialises their DDL (CREATE …
            // IF NOT EXISTS alone races on the catalogue's unique indexes).
            "BEGIN;
             SELECT pg_advisory_xact_lock(7242170651);
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.audit_event (
                seq BIGSERIAL PRIMARY KEY,
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
                replica TEXT NOT NULL
             );
             -- Added after the first release: trails created before it gain the column.
             ALTER TABLE {schema}.audit_event ADD COLUMN IF NOT EXISTS request_id_supplied BOOLEAN;
             CREATE INDEX IF NOT EXISTS audit_event_patient ON {schema}.audit_event (patient, recorded);
             CREATE INDEX IF NOT EXISTS audit_event_supplier ON {schema}.audit_event (supplier, recorded);
             {notify}
             COMMIT;",
            notify = notify_ddl(schema)
        ))
        .await
        .map_err(pg_error)?;
    // The server gives up a statement (an INSERT waiting on a locked table, say) at the
    // requests' own deadline, so the rows behind it are not held longer than theirs.
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            timeout.as_millis().max(1)
        ))
        .await
        .map_err(pg_error)?;
    if synchronous == Synchronous::Normal {
        // This session's commits return before their WAL is flushed (`[audit] synchronous`).
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(pg_error)?;
    }
    Ok(client)
}

/// The notification tables in `schema`, for the trail's DDL (run under its advisory
/// lock, so replicas starting together do not race).
pub(crate) fn notify_ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.notify_event (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            patient TEXT NOT NULL,
            practice TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT,
            occurred TEXT NOT NULL,
            source TEXT NOT NULL,
            supplier TEXT,
            xid8 xid8 NOT NULL DEFAULT pg_current_xact_id()
         );
         -- Finds the events of transactions that may still be running (few, recent).
         CREATE INDEX IF NOT EXISTS notify_event_xid8 ON {schema}.notify_event (xid8);
         CREATE TABLE IF NOT EXISTS {schema}.notify_subscription (
            id TEXT PRIMARY KEY,
            made BIGSERIAL NOT NULL,
            supplier TEXT NOT NULL,
            resource TEXT NOT NULL,
            topic TEXT NOT NULL,
            status TEXT NOT NULL,
            created TEXT NOT NULL,
            events_since_start BIGINT NOT NULL,
            cursor BIGINT NOT NULL,
            failures INTEGER NOT NULL,
            next_attempt_ms BIGINT NOT NULL,
            last_sent_ms BIGINT NOT NULL,
            last_error TEXT,
            lease_owner TEXT,
            lease_until_ms BIGINT NOT NULL DEFAULT 0
         );
         CREATE INDEX IF NOT EXISTS notify_subscription_supplier ON {schema}.notify_subscription (supplier);
         CREATE TABLE IF NOT EXISTS {schema}.notify_notification (
            subscription TEXT NOT NULL,
            number BIGINT NOT NULL,
            event_seq BIGINT NOT NULL,
            id TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            outcome TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (subscription, number)
         );
         CREATE TABLE IF NOT EXISTS {schema}.notify_change_cursor (
            source TEXT PRIMARY KEY,
            cursor TEXT NOT NULL
         );"
    )
}
