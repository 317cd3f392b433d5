//! The delivery worker: off the request path, bounded, one subscription at a time each.
//!
//! Every tick (and at once when this replica commits events) the worker leases from the
//! store the subscriptions that are due, up to its free delivery slots
//! (`max_concurrent_deliveries`), and runs each in a task of its own:
//! 1. a `requested` subscription gets its handshake; delivered, it is `active`;
//! 2. its oldest undelivered notification is delivered again, else the next event for it
//!    in the outbox is authorised ([`super::authorise`]), numbered and delivered: in
//!    order, one at a time, never past a failure;
//! 3. a failure ends the turn: the subscription waits out an exponential backoff (one
//!    second, doubling, at most `max_backoff_ms`, never giving up) and goes to `error`
//!    after `failures_before_error` in a row; a success brings it back to `active`;
//! 4. a heartbeat goes when it is due and nothing else was sent.
//!
//! A receiver that is slow or dead costs its own subscription's task at most the delivery
//! timeout per attempt; other subscriptions have their own tasks and slots, and requests
//! never wait on any of it. Each released notification is audited before it is sent (the
//! supplier, the patient, the resource type, the notification id as the request id), and
//! a failed one again with the receiver's error: no audit, no delivery.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gp_adapter::ChangeKind;
use gp_audit::{Delivery, Notification, StoredEvent, SubscriptionRow, SubscriptionStatus};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::handlers::read_changed as fetch;
use crate::notify::deliver::{Outcome, parse_header, post};
use crate::notify::payload::{About, Event, Kind, bundle, focus_url, method_of};
use crate::notify::subscription::{Content, Spec};
use crate::notify::{Notifier, now_ms};
use crate::subscriptions::{Decision, decide};

/// How often the worker looks for due subscriptions when nothing wakes it.
pub const TICK: Duration = Duration::from_millis(100);

/// How often it looks, for [`EAGER_FOR`] after a wake.
const EAGER_TICK: Duration = Duration::from_millis(10);
const EAGER_FOR: Duration = Duration::from_millis(300);

/// Subscriptions are leased at least this often even when no event arrived: retries,
/// handshakes and heartbeats fall due within it.
const IDLE_CLAIM: Duration = Duration::from_millis(500);

/// Most notifications one turn delivers before giving the slot back.
const TURN: usize = 100;

/// Outbox events read at once.
const BATCH: u32 = 200;

/// Starts the worker for `app`'s notifier; it stops when `stop` turns true.
pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let notifier = app.notifier.clone()?;
    Some(tokio::spawn(async move {
        // Each subscription's turn, so that none outlives the gateway's shutdown.
        let mut turns = tokio::task::JoinSet::new();
        let slots = Arc::new(Semaphore::new(notifier.config.max_concurrent_deliveries));
        let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
        // After a wake (this replica committed events), look often for a while: the
        // events become readable once the trail has indexed them (SQLite: within about a
        // tenth of a second), and a notification should not wait a whole tick more.
        let mut eager_until = tokio::time::Instant::now();
        let mut seen_end = -1;
        let mut last_claim = tokio::time::Instant::now();
        loop {
            let pause = if tokio::time::Instant::now() < eager_until {
                EAGER_TICK
            } else {
                TICK
            };
            let mut woken = false;
            tokio::select! {
                () = notifier.wake.notified() => {
                    eager_until = tokio::time::Instant::now() + EAGER_FOR;
                    woken = true;
                }
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => break,
            }
            while turns.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 {
                continue;
            }
            // Subscriptions are leased when there may be work: an event committed (here,
            // or by another replica: the outbox's end moved), a wake (a new subscription),
            // or at least every IDLE_CLAIM for retries, handshakes and heartbeats falling
            // due. An idle gateway asks the store one cheap question per tick.
            let end = notifier.store.last_seq().await.unwrap_or(seen_end);
            if !woken && end == seen_end && last_claim.elapsed() < IDLE_CLAIM {
                continue;
            }
            seen_end = end;
            last_claim = tokio::time::Instant::now();
            let lease = i64::try_from(notifier.config.lease_ms).unwrap_or(i64::MAX);
            let claimed = match notifier
                .store
                .claim(
                    &notifier.owner,
                    now_ms(),
                    lease,
                    u32::try_from(free).unwrap_or(u32::MAX),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: cannot lease subscriptions");
                    continue;
                }
            };
            for sub in claimed {
                let fresh = busy
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sub.id.clone());
                if !fresh {
                    continue;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    busy.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&sub.id);
                    break;
                };
                let (app, notifier, busy) = (app.clone(), notifier.clone(), busy.clone());
                turns.spawn(async move {
                    let id = sub.id.clone();
                    turn(&app, &notifier, sub).await;
                    if let Err(e) = notifier.store.release(&id, &notifier.owner).await {
                        tracing::debug!(error = %e, "notifications: lease not given back (it will expire)");
                    }
                    busy.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    drop(permit);
                });
            }
        }
        // Stopping: turns under way finish (each stops well inside its lease), for at
        // most STOP_GRACE; any left are cut short, and their leases run out for the next
        // replica or start to deliver what they were sending.
        let finished = async { while turns.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, finished).await.is_err() {
            turns.abort_all();
            while turns.join_next().await.is_some() {}
        }
    }))
}

/// How long a stopping gateway waits for deliveries under way.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// One subscription's turn: see the module's documentation.
async fn turn(app: &App, n: &Notifier, sub: SubscriptionRow) {
    let Some(spec) = spec_of(&sub) else {
        let _ = fail(
            n,
            &sub,
            "the stored subscription no longer reads (delete and recreate it)",
        )
        .await;
        return;
    };
    let channel = match Channel::of(n, &spec) {
        Ok(c) => c,
        Err(e) => {
            let _ = fail(n, &sub, &e).await;
            return;
        }
    };
    // Stop well inside the lease, so another replica never delivers alongside this one.
    let until = Instant::now() + Duration::from_millis(n.config.lease_ms / 2);
    let mut sub = sub;
    if sub.status == SubscriptionStatus::Requested {
        if supplier_active(app, &sub.supplier) {
            let _ = signal(app, n, &sub, &spec, &channel, Kind::Handshake).await;
        }
        return;
    }
    let mut sent = 0;
    while sent < TURN && Instant::now() < until {
        let next = match n.store.undelivered(&sub.id).await {
            Ok(Some(pending)) => Some((pending, None)),
            Ok(None) => match number_next(app, n, &mut sub, &spec).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::info!(subscription = %sub.id, error = %e, "notifications: the next event cannot be authorised yet; retrying later");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "notifications: cannot read delivery state");
                return;
            }
        };
        let Some((notification, caller)) = next else {
            break;
        };
        match deliver_one(app, n, &sub, &spec, &channel, &notification, caller).await {
            Step::Delivered => {
                sent += 1;
                sub.failures = 0;
                sub.last_sent_ms = now_ms();
                sub.events_since_start = sub.events_since_start.max(notification.number);
            }
            Step::Withheld => {}
            Step::Failed => return,
        }
    }
    if sent >= TURN || Instant::now() >= until {
        // More may be waiting: lease it again at once rather than at the next idle claim.
        n.wake.notify_one();
    }
    if sent == 0
        && let Some(period) = spec.heartbeat_secs
        && now_ms().saturating_sub(sub.last_sent_ms)
            >= i64::try_from(period * 1000).unwrap_or(i64::MAX)
        && supplier_active(app, &sub.supplier)
    {
        let _ = signal(app, n, &sub, &spec, &channel, Kind::Heartbeat).await;
    }
}

fn spec_of(sub: &SubscriptionRow) -> Option<Spec> {
    let v: serde_json::Value = serde_json::from_str(&sub.resource).ok()?;
    // Checked when it was made; the endpoint is checked again at each delivery.
    crate::notify::subscription::parse(&v, &|_| Ok(())).ok()
}

fn supplier_active(app: &App, supplier: &str) -> bool {
    app.auth
        .as_ref()
        .is_none_or(|a| a.registry.view_of(supplier).is_ok())
}

/// Where and how a subscription's notifications go.
struct Channel {
    endpoint: crate::notify::endpoint::Endpoint,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    timeout: Duration,
}

impl Channel {
    fn of(n: &Notifier, spec: &Spec) -> Result<Self, String> {
        let endpoint = n
            .endpoints
            .parse(&spec.endpoint)
            .map_err(|e| format!("the endpoint {e}"))?;
        let headers = spec
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut timeout = Duration::from_millis(n.config.delivery_timeout_ms);
        if let Some(secs) = spec.timeout_secs {
            timeout = timeout.min(Duration::from_secs(secs));
        }
        Ok(Self {
            endpoint,
            headers,
            timeout,
        })
    }
}

/// The next outbox event for `sub` that it wants and its supplier may learn of now,
/// numbered (with the caller to read its payload as); events passed over move the
/// cursor on. `Ok(None)`: nothing more for it now.
async fn number_next(
    app: &App,
    n: &Notifier,
    sub: &mut SubscriptionRow,
    spec: &Spec,
) -> Result<Option<(Notification, Option<Caller>)>, String> {
    loop {
        let events = n
            .store
            .events_after(sub.cursor, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let mut passed = None;
        for e in &events {
            let wanted = ChangeKind::from_code(&e.event.kind)
                .is_some_and(|k| spec.wants(k, &e.event.patient, &e.event.practice));
            if !wanted {
                passed = Some(e.seq);
                continue;
            }
            let ids = RequestIds::minted(&n.base_url);
            match decide(app, &sub.supplier, &e.event, &ids).await {
                Ok(Decision::Withhold(reason)) => {
                    tracing::debug!(subscription = %sub.id, reason, "notification withheld");
                    passed = Some(e.seq);
                }
                Ok(Decision::Allow(caller)) => {
                    if let Some(seq) = passed {
                        advance(n, sub, seq).await?;
                    }
                    let id = uuid::Uuid::now_v7().to_string();
                    return match n.store.enqueue(&sub.id, &n.owner, e.seq, &id).await {
                        Ok(Some(numbered)) => {
                            sub.cursor = e.seq;
                            Ok(Some((numbered, Some(caller))))
                        }
                        Ok(None) => Err("the lease was lost".into()),
                        Err(err) => Err(err.to_string()),
                    };
                }
                Err(err) => {
                    if let Some(seq) = passed {
                        advance(n, sub, seq).await?;
                    }
                    return Err(err.to_string());
                }
            }
        }
        advance(n, sub, last).await?;
    }
}

/// Moves `sub`'s cursor past outbox event `seq` (here and in the store).
async fn advance(n: &Notifier, sub: &mut SubscriptionRow, seq: i64) -> Result<(), String> {
    match n.store.advance(&sub.id, &n.owner, seq).await {
        Ok(true) => {
            sub.cursor = seq;
            Ok(())
        }
        Ok(false) => Err("the lease was lost".into()),
        Err(e) => Err(e.to_string()),
    }
}

enum Step {
    Delivered,
    Withheld,
    Failed,
}

/// Delivers `notification` (authorised again unless `caller` was just decided).
async fn deliver_one(
    app: &App,
    n: &Notifier,
    sub: &SubscriptionRow,
    spec: &Spec,
    channel: &Channel,
    notification: &Notification,
    caller: Option<Caller>,
) -> Step {
    let event = match n
        .store
        .notifications(&sub.id, notification.number, notification.number, 1)
        .await
    {
        Ok(mut found) if !found.is_empty() => found.remove(0).1,
        Ok(_) => {
            let _ = fail(n, sub, "a numbered notification lost its event").await;
            return Step::Failed;
        }
        Err(e) => {
            tracing::warn!(error = %e, "notifications: cannot read the notification's event");
            return Step::Failed;
        }
    };
    let ids = RequestIds::minted(&n.base_url);
    let caller = match caller {
        Some(c) => c,
        None => match decide(app, &sub.supplier, &event.event, &ids).await {
            Ok(Decision::Allow(c)) => c,
            Ok(Decision::Withhold(reason)) => {
                tracing::debug!(subscription = %sub.id, reason, "notification withheld at retry");
                let _ = n
                    .store
                    .finish(
                        &sub.id,
                        &n.owner,
                        notification.number,
                        Delivery::Withheld,
                        now_ms(),
                    )
                    .await;
                return Step::Withheld;
            }
            Err(e) => {
                let _ = fail(
                    n,
                    sub,
                    &format!("cannot decide who may see the event yet: {e}"),
                )
                .await;
                return Step::Failed;
            }
        },
    };
    let kind = ChangeKind::from_code(&event.event.kind);
    let mut resource = None;
    if spec.content == Content::FullResource && kind != Some(ChangeKind::Deregistered) {
        match fetch(app, &caller, &event.event, &ids).await {
            Ok(Some(r)) => resource = Some(r),
            Ok(None) => {
                // The release rules refuse what the event is about: nothing is said.
                let _ = n
                    .store
                    .finish(
                        &sub.id,
                        &n.owner,
                        notification.number,
                        Delivery::Withheld,
                        now_ms(),
                    )
                    .await;
                return Step::Withheld;
            }
            Err(e) => {
                let _ = fail(
                    n,
                    sub,
                    &format!("the changed resource cannot be read yet: {e}"),
                )
                .await;
                return Step::Failed;
            }
        }
    }
    let events_since_start = sub.events_since_start.max(notification.number);
    let about = About {
        base_url: &n.base_url,
        subscription: &sub.id,
        topic: &sub.topic,
        status: SubscriptionStatus::Active.as_str(),
        events_since_start,
        content: spec.content,
        error: None,
    };
    let one = Event {
        number: notification.number,
        timestamp: event.event.occurred.clone(),
        focus: Some(focus_url(&n.base_url, &event)),
        resource,
        method: kind.map_or("PUT", method_of),
    };
    let body = bundle(
        &about,
        Kind::EventNotification,
        &[one],
        &crate::audit::now_recorded(),
    );
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    // No audit, no delivery: the release is recorded before it leaves.
    if audit(app, sub, &notification.id, Some(&event), 202, None)
        .await
        .is_err()
    {
        let _ = fail(n, sub, "the audit trail is unavailable").await;
        return Step::Failed;
    }
    let signed = n.signer.sign(&notification.id, now_ms() / 1000, &body);
    match post(
        &n.endpoints,
        &channel.endpoint,
        &channel.headers,
        &signed,
        body,
        channel.timeout,
    )
    .await
    {
        Outcome::Delivered(status) => {
            app.metrics.notification(true);
            if let Err(e) = n
                .store
                .finish(
                    &sub.id,
                    &n.owner,
                    notification.number,
                    Delivery::Sent,
                    now_ms(),
                )
                .await
            {
                tracing::warn!(error = %e, status, "notifications: delivered, but not recorded (it will be sent again)");
            }
            Step::Delivered
        }
        Outcome::Failed(why) => {
            app.metrics.notification(false);
            let _ = audit(
                app,
                sub,
                &notification.id,
                Some(&event),
                502,
                Some("DELIVERY_FAILED"),
            )
            .await;
            let _ = fail(n, sub, &why).await;
            Step::Failed
        }
    }
}

/// Sends a handshake or heartbeat.
async fn signal(
    app: &App,
    n: &Notifier,
    sub: &SubscriptionRow,
    spec: &Spec,
    channel: &Channel,
    kind: Kind,
) -> Result<(), ()> {
    let status = match kind {
        Kind::Handshake => SubscriptionStatus::Requested,
        _ => sub.status,
    };
    let about = About {
        base_url: &n.base_url,
        subscription: &sub.id,
        topic: &sub.topic,
        status: status.as_str(),
        events_since_start: sub.events_since_start,
        content: spec.content,
        error: None,
    };
    let body = bundle(&about, kind, &[], &crate::audit::now_recorded());
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let id = uuid::Uuid::now_v7().to_string();
    let signed = n.signer.sign(&id, now_ms() / 1000, &body);
    match post(
        &n.endpoints,
        &channel.endpoint,
        &channel.headers,
        &signed,
        body,
        channel.timeout,
    )
    .await
    {
        Outcome::Delivered(_) => {
            let _ = n.store.sent(&sub.id, &n.owner, now_ms()).await;
            tracing::info!(subscription = %sub.id, kind = kind.code(), "notification channel answered");
            Ok(())
        }
        Outcome::Failed(why) => {
            let _ = audit(app, sub, &id, None, 502, Some("DELIVERY_FAILED")).await;
            let _ = fail(n, sub, &format!("{}: {why}", kind.code())).await;
            Err(())
        }
    }
}

/// Records a failed attempt: backoff, and `error` after enough failures in a row.
async fn fail(n: &Notifier, sub: &SubscriptionRow, why: &str) -> Result<(), ()> {
    let failures = sub.failures.saturating_add(1);
    let exp = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    let backoff = 1_000u64
        .saturating_mul(1u64 << exp)
        .min(n.config.max_backoff_ms);
    // Up to a quarter more, so many subscriptions failing together do not retry together.
    let jitter = backoff / 4 * u64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255;
    let next = now_ms().saturating_add(i64::try_from(backoff + jitter).unwrap_or(i64::MAX));
    let status = if u32::try_from(failures).unwrap_or(u32::MAX) >= n.config.failures_before_error {
        SubscriptionStatus::Error
    } else {
        sub.status
    };
    tracing::info!(subscription = %sub.id, failures, retry_in_ms = backoff + jitter, status = status.as_str(), error = why, "notification not delivered");
    n.store
        .failed(&sub.id, &n.owner, failures, next, status, why)
        .await
        .map(|_| ())
        .map_err(|_| ())
}

/// Audits a notification released (202) or failed (502), under its notification id.
async fn audit(
    app: &App,
    sub: &SubscriptionRow,
    notification_id: &str,
    event: Option<&StoredEvent>,
    status: u16,
    outcome: Option<&str>,
) -> Result<(), gp_audit::AuditError> {
    let record = gp_audit::AuditRecord {
        id: crate::audit::new_row_id(),
        recorded: crate::audit::now_recorded(),
        request_id: notification_id.to_owned(),
        request_id_supplied: Some(false),
        supplier: Some(sub.supplier.clone()),
        token_id: None,
        patient: event.map(|e| e.event.patient.clone()),
        practice: event.map(|e| e.event.practice.clone()),
        interaction: "notify".to_owned(),
        resource_type: Some(
            event
                .map_or("Subscription", |e| e.event.resource_type.as_str())
                .to_owned(),
        ),
        status,
        outcome_code: outcome.map(str::to_owned),
        replica: app.replica.clone(),
    };
    app.audit.append(record).await
}
