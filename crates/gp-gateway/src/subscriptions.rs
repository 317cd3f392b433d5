//! The FHIR interactions of notifications: `Subscription` create, read, search and
//! delete (a supplier sees and manages only its own), `$status` and `$events`, and the
//! topics as `Basic` resources; and the delivery-time decision ([`decide`]) both
//! `$events` and the delivery worker (`crate::delivery`) make.
//!
//! Delivery-time authorisation: whether a supplier may learn of an event *now*. Decided
//! when each notification is delivered (and again when `$events` answers it), never when
//! the subscription was made, with the rules every read obeys:
//! - the supplier is still registered and not suspended;
//! - its registered scopes still allow reading the resource type changed;
//! - it is paired with the practice whose record changed;
//! - the patient is not restricted (sensitive) nor dissenting, as PDS and their GP
//!   system hold them now ([`crate::release::may_learn_of`]).
//!
//! A `full-resource` payload is then read as the supplier would read it, through the same
//! handler and release rules as its own `GET` (`crate::handlers::read_changed`, handed in).

use bytes::Bytes;
use gp_adapter::ChangeKind;
use gp_audit::{Delivery, SubscriptionRow, SubscriptionStatus};
use gp_fhir::{FhirError, IssueType, SpineCode};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::notify::payload::{
    About, Event, Kind, bundle, focus_url, method_of, status, status_bundle,
};
use crate::notify::subscription::{self, Content};
use crate::notify::{Notifier, topics};
use gp_audit::NewEvent;
use gp_auth::{Permission, RateDecision};
use gp_fhir::{NhsNumber, OdsCode};

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::{GatewayError, Rescue};
use crate::respond::fhir as fhir_response;
use crate::write_body::Invalid;

/// Reads the resource an event changed as a caller would read it now (`Ok(None)`:
/// refused or gone; `Err`: the GP system could not answer). The handlers hand theirs in:
/// this module sits below them.
pub type ReadChanged = for<'a> fn(&'a App, &'a Caller, &'a NewEvent, &'a RequestIds) -> Fetch<'a>;

/// The future of a [`ReadChanged`], boxed with its type named.
pub type Fetch<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Option<serde_json::Value>, GatewayError>>
            + Send
            + 'a,
    >,
>;

/// Most notifications one `$events` call answers.
pub const MAX_EVENTS: i64 = 100;

/// A refusal of the notification interactions.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifications are not configured on this gateway ([notifications])")]
    NotConfigured,
    #[error("{0}")]
    Forbidden(String),
    #[error("you hold {0} subscriptions, the most one supplier may hold: delete one first")]
    TooMany(usize),
    #[error("notification state is unavailable: {0}")]
    Store(String),
}

impl FhirError for NotifyError {
    fn status(&self) -> u16 {
        match self {
            Self::NotConfigured => 501,
            Self::Forbidden(_) => 403,
            Self::TooMany(_) => 422,
            Self::Store(_) => 503,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NotConfigured => SpineCode::NotImplemented,
            Self::Forbidden(_) => SpineCode::AccessDenied,
            Self::TooMany(_) => SpineCode::InvalidResource,
            Self::Store(_) => SpineCode::ServiceUnavailable,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::NotConfigured => IssueType::NotSupported,
            Self::Forbidden(_) => IssueType::Forbidden,
            Self::TooMany(_) => IssueType::TooCostly,
            Self::Store(_) => IssueType::Transient,
        }
    }
    fn blame(&self) -> gp_fhir::Blame {
        match self {
            Self::Store(_) => gp_fhir::Blame::Gateway,
            _ => gp_fhir::Blame::Client,
        }
    }
}

/// 422 INVALID_PARAMETER naming `name`.
fn param_error(name: &str, why: &str) -> gp_fhir::search::SearchError {
    gp_fhir::search::SearchError::Invalid {
        name: crate::routes::shown(name),
        why: why.to_owned(),
    }
}

fn store_err(e: gp_audit::AuditError) -> Rescue {
    NotifyError::Store(e.0).into()
}

fn notifier(app: &App) -> Result<&Notifier, Rescue> {
    app.notifier
        .as_deref()
        .ok_or_else(|| NotifyError::NotConfigured.into())
}

/// Whose subscriptions the caller manages: its client id (the sandbox's open mode has
/// one shared owner).
fn owner(caller: &Caller) -> String {
    caller.client_id().unwrap_or("open-sandbox").to_owned()
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    fhir_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// `POST /Subscription`.
pub async fn create(
    app: &App,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let v = crate::write_body::parse_json(body)?;
    let spec = subscription::parse(&v, &|url| n.endpoints.parse(url).map(|_| ()))?;
    // The endpoint must resolve now, to an address deliveries may reach.
    let endpoint = n
        .endpoints
        .parse(&spec.endpoint)
        .map_err(|m| Invalid::resource("Subscription.channel.endpoint", m))?;
    n.endpoints
        .resolve(&endpoint)
        .await
        .map_err(|m| Invalid::resource("Subscription.channel.endpoint", m))?;
    if let Caller::Supplier { view, .. } = caller {
        let readable: Vec<&str> = spec
            .filters
            .types
            .clone()
            .unwrap_or_else(|| spec.topic.resource_types())
            .into_iter()
            .filter(|t| view.require(t, gp_auth::Permission::Read).is_ok())
            .collect();
        if readable.is_empty() {
            return Err(NotifyError::Forbidden(format!(
                "your scopes allow reading none of the resource types this subscription is about ({}): it could never be told anything",
                spec.filters.types.clone().unwrap_or_else(|| spec.topic.resource_types()).join(", ")
            ))
            .into());
        }
        if let Some(p) = &spec.filters.practice
            && !view.paired_with(p)
        {
            return Err(Invalid::resource(
                "Subscription.criteria.extension",
                format!("practice {p} is not one you are paired with"),
            )
            .into());
        }
    }
    let supplier = owner(caller);
    let held = n
        .store
        .subscriptions(Some(&supplier))
        .await
        .map_err(store_err)?;
    if held.len() >= n.config.max_subscriptions_per_supplier {
        return Err(NotifyError::TooMany(held.len()).into());
    }
    let cursor = n.store.last_seq().await.map_err(store_err)?;
    let row = SubscriptionRow {
        id: uuid::Uuid::new_v4().to_string(),
        supplier,
        resource: subscription::stored(&v),
        topic: spec.topic.canonical(),
        status: SubscriptionStatus::Requested,
        created: crate::audit::now_recorded(),
        events_since_start: 0,
        cursor,
        failures: 0,
        next_attempt_ms: 0,
        last_sent_ms: 0,
        last_error: None,
    };
    n.store.insert_subscription(&row).await.map_err(store_err)?;
    n.wake.notify_one();
    tracing::info!(subscription = %row.id, supplier = %row.supplier, topic = spec.topic.code, content = spec.content.code(), "subscription made; handshake to follow");
    let mut resp = json_response(StatusCode::CREATED, &subscription::render(&row));
    let location = format!("{}/Subscription/{}", ids.base_url, row.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The caller's subscription `id`; another supplier's is not found, as an unknown one.
async fn own(n: &Notifier, id: &str, caller: &Caller) -> Result<SubscriptionRow, Rescue> {
    let not_found = || GatewayError::NotFound(format!("no subscription {id} of yours"));
    let row = n
        .store
        .subscription(id)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found)?;
    if row.supplier != owner(caller) {
        return Err(not_found().into());
    }
    Ok(row)
}

/// `GET /Subscription/{id}`.
pub async fn read(app: &App, id: &str, caller: &Caller) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let row = own(n, id, caller).await?;
    Ok(json_response(StatusCode::OK, &subscription::render(&row)))
}

/// `GET /Subscription` (`status` optional): the caller's subscriptions.
pub async fn search(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let mut wanted: Option<Vec<SubscriptionStatus>> = None;
    for (k, v) in query {
        match k.as_str() {
            "status" => {
                let list = v
                    .split(',')
                    .map(|s| {
                        SubscriptionStatus::parse(s).ok_or_else(|| {
                            Invalid::resource("status", "must be requested, active, error or off")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                wanted.get_or_insert_with(Vec::new).extend(list);
            }
            "_format" | "_count" => {}
            other => {
                return Err(param_error(
                    other,
                    "is not a search parameter of Subscription (status)",
                )
                .into());
            }
        }
    }
    let rows = n
        .store
        .subscriptions(Some(&owner(caller)))
        .await
        .map_err(store_err)?;
    let entries: Vec<Value> = rows
        .iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.status)))
        .map(|r| {
            json!({
                "fullUrl": format!("{}/Subscription/{}", ids.base_url, r.id),
                "resource": subscription::render(r),
                "search": { "mode": "match" }
            })
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": format!("{}/Subscription", ids.base_url) }]
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    Ok(json_response(StatusCode::OK, &b))
}

/// `DELETE /Subscription/{id}`: no more deliveries; its notifications go with it.
pub async fn delete(app: &App, id: &str, caller: &Caller) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let row = own(n, id, caller).await?;
    n.store
        .delete_subscription(&row.id)
        .await
        .map_err(store_err)?;
    tracing::info!(subscription = %row.id, supplier = %row.supplier, "subscription deleted");
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

fn about<'a>(n: &'a Notifier, row: &'a SubscriptionRow, content: Content) -> About<'a> {
    About {
        base_url: &n.base_url,
        subscription: &row.id,
        topic: &row.topic,
        status: row.status.as_str(),
        events_since_start: row.events_since_start,
        content,
        error: match row.status {
            SubscriptionStatus::Error => row.last_error.as_deref(),
            _ => None,
        },
    }
}

fn content_of(row: &SubscriptionRow) -> Content {
    serde_json::from_str::<Value>(&row.resource)
        .ok()
        .and_then(|v| subscription::parse(&v, &|_| Ok(())).ok())
        .map_or(Content::IdOnly, |s| s.content)
}

/// `GET /Subscription/{id}/$status`, or `GET /Subscription/$status` (`id` and `status`
/// narrowing): a searchset of the caller's subscriptions' statuses.
pub async fn status_of(
    app: &App,
    id: Option<&str>,
    query: &[(String, String)],
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let rows = match id {
        Some(id) => vec![own(n, id, caller).await?],
        None => {
            let ids: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == "id")
                .flat_map(|(_, v)| v.split(','))
                .collect();
            let statuses: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == "status")
                .flat_map(|(_, v)| v.split(','))
                .collect();
            n.store
                .subscriptions(Some(&owner(caller)))
                .await
                .map_err(store_err)?
                .into_iter()
                .filter(|r| ids.is_empty() || ids.contains(&r.id.as_str()))
                .filter(|r| statuses.is_empty() || statuses.contains(&r.status.as_str()))
                .collect()
        }
    };
    let statuses = rows
        .iter()
        .map(|r| status(&about(n, r, content_of(r)), Kind::QueryStatus, &[]))
        .collect();
    Ok(json_response(StatusCode::OK, &status_bundle(statuses)))
}

/// `GET /Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`:
/// the notifications numbered in that range (at most [`MAX_EVENTS`]), each authorised
/// again now: what the caller may no longer learn of is left out.
pub async fn events(
    app: &App,
    id: &str,
    query: &[(String, String)],
    caller: &Caller,
    read: ReadChanged,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let n = notifier(app)?;
    let row = own(n, id, caller).await?;
    let number = |name: &str| -> Result<Option<i64>, Rescue> {
        match query.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| param_error(name, "must be an event number, 1 or more").into()),
        }
    };
    let until = number("eventsUntilNumber")?.unwrap_or(row.events_since_start);
    let since = number("eventsSinceNumber")?.unwrap_or_else(|| (until - MAX_EVENTS + 1).max(1));
    let content = match query.iter().find(|(k, _)| k == "content") {
        None => content_of(&row),
        Some((_, v)) => Content::parse(v)
            .ok_or_else(|| param_error("content", "must be empty, id-only or full-resource"))?,
    };
    for (k, _) in query {
        if !matches!(
            k.as_str(),
            "eventsSinceNumber" | "eventsUntilNumber" | "content" | "_format"
        ) {
            return Err(param_error(
                k,
                "is not a parameter of $events (eventsSinceNumber, eventsUntilNumber, content)",
            )
            .into());
        }
    }
    let until = until.min(since.saturating_add(MAX_EVENTS - 1));
    let found = if since <= until {
        n.store
            .notifications(
                &row.id,
                since,
                until,
                u32::try_from(MAX_EVENTS).unwrap_or(100),
            )
            .await
            .map_err(store_err)?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (notification, event) in found {
        if notification.outcome == Some(Delivery::Withheld) {
            continue;
        }
        let ids = RequestIds::minted(&n.base_url);
        let who = match decide(app, &row.supplier, &event.event, &ids).await {
            Ok(Decision::Allow(c)) => c,
            Ok(Decision::Withhold(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let kind = ChangeKind::from_code(&event.event.kind);
        let resource = if content == Content::FullResource && kind != Some(ChangeKind::Deregistered)
        {
            match read(app, &who, &event.event, &ids).await {
                Ok(Some(r)) => Some(r),
                Ok(None) => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        out.push(Event {
            number: notification.number,
            timestamp: event.event.occurred.clone(),
            focus: Some(focus_url(&n.base_url, &event)),
            resource,
            method: kind.map_or("PUT", method_of),
        });
    }
    let b = bundle(
        &about(n, &row, content),
        Kind::QueryEvent,
        &out,
        &crate::audit::now_recorded(),
    );
    Ok(json_response(StatusCode::OK, &b))
}

/// `GET /Basic/{code}`: a topic, in the backport IG's R4 form.
pub fn topic(code: &str) -> Result<Response<Full<Bytes>>, Rescue> {
    let t = topics::by_code(code)
        .ok_or_else(|| GatewayError::NotFound(format!("no subscription topic {code}")))?;
    Ok(json_response(
        StatusCode::OK,
        &topics::as_basic(t, TOPICS_DATE),
    ))
}

/// When the topics were last changed (their `date`).
pub const TOPICS_DATE: &str = "2026-12-07";

/// `GET /Basic?code=SubscriptionTopic` (and `url=`): the topics.
pub fn topic_search(
    query: &[(String, String)],
    base: &str,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let mut url = None;
    for (k, v) in query {
        match k.as_str() {
            "code"
                if v == "SubscriptionTopic"
                    || v == "http://hl7.org/fhir/fhir-types|SubscriptionTopic" => {}
            "code" => {
                return Err(param_error(
                    "code",
                    "this gateway serves Basic only as SubscriptionTopic",
                )
                .into());
            }
            "url" => url = Some(v.as_str()),
            "_format" => {}
            other => {
                return Err(param_error(
                    other,
                    "is not a search parameter of Basic here (code, url)",
                )
                .into());
            }
        }
    }
    let entries: Vec<Value> = topics::TOPICS
        .iter()
        .filter(|t| url.is_none_or(|u| u == t.canonical()))
        .map(|t| {
            json!({
                "fullUrl": format!("{base}/Basic/{}", t.code),
                "resource": topics::as_basic(t, TOPICS_DATE),
                "search": { "mode": "match" }
            })
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": entries.len()
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    Ok(json_response(StatusCode::OK, &b))
}

/// What a supplier may be told of an event.
pub enum Decision {
    /// Deliver it, reading any payload as this caller.
    Allow(Caller),
    /// Tell the supplier nothing of it; why, for the logs (never patient data).
    Withhold(&'static str),
}

/// Decides whether `supplier` may learn of `event` now. `Err`: the answer is not known
/// yet (PDS or a GP system did not answer): deliver nothing, try again later.
pub async fn decide(
    app: &App,
    supplier: &str,
    event: &NewEvent,
    ids: &RequestIds,
) -> Result<Decision, GatewayError> {
    let caller = match &app.auth {
        // The sandbox's open mode: no suppliers, no pairings; release rules still hold.
        None => Caller::Open,
        Some(auth) => match auth.registry.view_of(supplier) {
            Err(_) => return Ok(Decision::Withhold("supplier-not-active")),
            Ok(view) => {
                if view
                    .require(&event.resource_type, Permission::Read)
                    .is_err()
                {
                    return Ok(Decision::Withhold("scope"));
                }
                Caller::Supplier {
                    view,
                    decision: RateDecision {
                        allowed: true,
                        limit: 0,
                        remaining: 0,
                        reset_after_secs: 0,
                        retry_after_secs: 0,
                        window_secs: 0,
                    },
                }
            }
        },
    };
    let Ok(practice) = OdsCode::parse(&event.practice) else {
        return Ok(Decision::Withhold("bad-practice"));
    };
    if !caller.paired_with(&practice) {
        return Ok(Decision::Withhold("not-paired"));
    }
    let Ok(nhs) = NhsNumber::parse(&event.patient) else {
        return Ok(Decision::Withhold("bad-patient"));
    };
    if !crate::release::may_learn_of(app, nhs, ids).await? {
        return Ok(Decision::Withhold("patient-withheld"));
    }
    Ok(Decision::Allow(caller))
}
