//! The change poller: every `[notifications] poll_interval_ms`, each practice whose
//! adapter tracks changes is asked what changed since the cursor stored for it
//! (`changes:{ODS}` in the audit database), and the changes made in the GP system itself
//! become outbox events, committed with the new cursor (compare-and-set: with several
//! replicas polling, each change is recorded once). Changes the gateway made
//! (`by_practice: false`) were announced from its own outbox already and are skipped.
//! Every change also makes the gateway's cached copy of that patient's record stale.
//!
//! A practice's first poll stores the log's current end: history is not replayed. A
//! cursor the GP system no longer honours starts again from the current end, logged and
//! counted (`gp_gateway_change_cursor_resets_total`): changes in between are missed.

use std::sync::Arc;

use gp_adapter::{Adapter, ChangeKind, ChangesRequest, DocumentSearchRequest, RecordChange};
use gp_audit::NewEvent;
use gp_fhir::OdsCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;

/// Pages read from one practice in one poll, at most.
const MAX_PAGES: usize = 20;

/// Starts the poller for `app`'s notifier; it stops when `stop` turns true.
pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let notifier = app.notifier.clone()?;
    let interval = std::time::Duration::from_millis(notifier.config.poll_interval_ms);
    Some(tokio::spawn(async move {
        loop {
            // A poll under way stops with the gateway: each practice's changes are
            // committed with its cursor at once, so the next start goes on from there.
            tokio::select! {
                () = poll_all(&app) => {}
                _ = stop.changed() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.changed() => break,
            }
        }
    }))
}

/// Polls every practice once, concurrently (each GP system's bulkhead bounds its own).
pub async fn poll_all(app: &App) {
    let practices: Vec<(OdsCode, Arc<dyn Adapter>)> = app
        .practices
        .iter()
        .filter_map(|(ods, p)| {
            let adapter = app.adapters.get(&p.system)?;
            adapter
                .tracks_changes()
                .then(|| (ods.clone(), adapter.clone()))
        })
        .collect();
    let polls = practices
        .iter()
        .map(|(ods, adapter)| poll(app, ods, adapter.as_ref()));
    futures_util::future::join_all(polls).await;
}

/// Reads practice `ods`'s changes since its stored cursor, page by page.
pub async fn poll(app: &App, ods: &OdsCode, adapter: &dyn Adapter) {
    let Some(n) = &app.notifier else {
        return;
    };
    let source = format!("changes:{ods}");
    for _ in 0..MAX_PAGES {
        let stored = match n.store.change_cursor(&source).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, practice = %ods, "change poll: cursor unreadable");
                return;
            }
        };
        let ids = crate::context::RequestIds::minted(&app.public_base);
        let req = ChangesRequest {
            practice: ods.clone(),
            cursor: stored.clone(),
            context: ids.call_context(),
        };
        let page = match adapter.changes_since(&req).await {
            Ok(p) => p,
            Err(gp_adapter::AdapterError::Unprocessable { detail, .. }) if stored.is_some() => {
                tracing::warn!(practice = %ods, detail = %detail, "change poll: the GP system no longer honours the cursor; starting again from its current end (changes in between are missed)");
                app.metrics.change_cursor_reset();
                restart(app, ods, adapter, &source, stored.as_deref()).await;
                return;
            }
            Err(e) => {
                tracing::info!(practice = %ods, error = %e, "change poll failed; trying again next interval");
                return;
            }
        };
        let mut events = Vec::new();
        for change in page.changes.iter().filter(|c| c.by_practice) {
            app.records.invalidate(ods, change.nhs_number).await;
            app.invalidator.publish(ods, change.nhs_number).await;
            events.push(event_of(app, ods, adapter, change).await);
        }
        let count = events.len();
        match n
            .store
            .record_changes(&source, stored.as_deref(), &page.cursor, events)
            .await
        {
            Ok(true) => {
                if count > 0 {
                    tracing::info!(practice = %ods, changes = count, "changes made at the practice recorded for notification");
                    n.wake.notify_one();
                }
            }
            // Another replica recorded this page first.
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(practice = %ods, error = %e, "change poll: not recorded; read again next interval");
                return;
            }
        }
        if !page.more || stored.as_deref() == Some(page.cursor.as_str()) {
            return;
        }
    }
}

async fn restart(app: &App, ods: &OdsCode, adapter: &dyn Adapter, source: &str, old: Option<&str>) {
    let Some(n) = &app.notifier else {
        return;
    };
    let ids = crate::context::RequestIds::minted(&app.public_base);
    let req = ChangesRequest {
        practice: ods.clone(),
        cursor: None,
        context: ids.call_context(),
    };
    if let Ok(end) = adapter.changes_since(&req).await {
        let _ = n
            .store
            .record_changes(source, old, &end.cursor, Vec::new())
            .await;
    }
}

/// The outbox event of a change made at practice `ods`.
async fn event_of(app: &App, ods: &OdsCode, adapter: &dyn Adapter, c: &RecordChange) -> NewEvent {
    NewEvent {
        id: crate::audit::new_row_id(),
        kind: c.kind.code().to_owned(),
        patient: c.nhs_number.to_string(),
        practice: ods.to_string(),
        resource_type: c.kind.resource_type().to_owned(),
        resource_id: fhir_id(app, ods, adapter, c).await,
        occurred: c.occurred.clone(),
        source: "gp-system".to_owned(),
        supplier: None,
    }
}

/// The FHIR id the gateway serves the changed resource under: an Observation's is the
/// adapter's; an appointment's is practice-prefixed; a document's is its content's,
/// practice-prefixed (one more native call, to find it).
async fn fhir_id(
    app: &App,
    ods: &OdsCode,
    adapter: &dyn Adapter,
    c: &RecordChange,
) -> Option<String> {
    let id = c.resource_id.as_deref()?;
    match c.kind {
        ChangeKind::ReadingRecorded => Some(id.to_owned()),
        ChangeKind::AppointmentBooked
        | ChangeKind::AppointmentAmended
        | ChangeKind::AppointmentCancelled => Some(gp_adapter::practice_ids::fhir_id(ods, id)),
        ChangeKind::DocumentFiled => {
            let ids = crate::context::RequestIds::minted(&app.public_base);
            let docs = adapter
                .search_documents(&DocumentSearchRequest {
                    nhs_number: c.nhs_number,
                    practice: ods.clone(),
                    context: ids.call_context(),
                })
                .await
                .ok()?;
            docs.iter()
                .find(|d| d.id == id)
                .map(|d| gp_adapter::practice_ids::fhir_id(ods, &d.content_id))
        }
        ChangeKind::ContactDetailsChanged | ChangeKind::Registered | ChangeKind::Deregistered => {
            None
        }
    }
}
