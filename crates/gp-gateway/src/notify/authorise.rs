//! Delivery-time authorisation: whether a supplier may learn of an event *now*. Decided
//! when each notification is delivered (and again when `$events` answers it), never when
//! the subscription was made, with the rules every read obeys:
//! - the supplier is still registered and not suspended;
//! - its registered scopes still allow reading the resource type changed;
//! - it is paired with the practice whose record changed;
//! - the patient is not restricted (sensitive) nor dissenting, as PDS and their GP
//!   system hold them now ([`crate::release::may_learn_of`]).
//!
//! A `full-resource` payload is then read as the supplier would read it
//! ([`fetch`]), through the same handler and release rules as its own `GET`.

use gp_adapter::{ChangeKind, ClinicalType};
use gp_audit::NewEvent;
use gp_auth::{Permission, RateDecision};
use gp_fhir::{NhsNumber, OdsCode};

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::GatewayError;
use crate::routes::Route;

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

/// The changed resource, read as `caller` would read it now: `Ok(None)` when the read
/// is refused or finds nothing (the notification then carries no resource, or is
/// withheld: the caller decides), `Err` when the GP system could not answer (try later).
/// The read's future, boxed with its type named: `$events` (a handler) reads payloads
/// through the handlers themselves, and the compiler needs the cycle broken.
pub type Fetch<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Option<serde_json::Value>, GatewayError>>
            + Send
            + 'a,
    >,
>;

pub fn fetch<'a>(
    app: &'a App,
    caller: &'a Caller,
    event: &'a NewEvent,
    ids: &'a RequestIds,
) -> Fetch<'a> {
    Box::pin(read_changed(app, caller, event, ids))
}

async fn read_changed(
    app: &App,
    caller: &Caller,
    event: &NewEvent,
    ids: &RequestIds,
) -> Result<Option<serde_json::Value>, GatewayError> {
    let Ok(nhs) = NhsNumber::parse(&event.patient) else {
        return Ok(None);
    };
    let kind = ChangeKind::from_code(&event.kind);
    let route = match (kind.map(ChangeKind::resource_type), &event.resource_id) {
        (Some("Patient"), _) => Route::PatientRead(nhs.to_string()),
        (Some("Observation"), Some(id)) => {
            // A read by id finds its patient in the entry index: the event names them.
            app.entries
                .remember(nhs, vec![(ClinicalType::Observation, id.clone())])
                .await;
            Route::ClinicalRead(ClinicalType::Observation, id.clone())
        }
        (Some("Appointment"), Some(id)) => Route::AppointmentRead(id.clone()),
        (Some("DocumentReference"), Some(id)) => Route::DocumentReferenceRead(id.clone()),
        _ => return Ok(None),
    };
    let headers = http::HeaderMap::new();
    let answer = crate::handlers::serve(app, route, &[], &headers, ids, caller, &[]).await;
    let resp = match answer {
        Ok(r) => r,
        Err(rescue) => {
            let status = rescue.error.status();
            if status >= 500 {
                return Err(GatewayError::Internal(format!(
                    "reading the changed {} answered {status}",
                    event.resource_type
                )));
            }
            return Ok(None);
        }
    };
    if !resp.status().is_success() {
        return Ok(None);
    }
    // The gateway's own answer, already whole in memory (`Full`).
    #[allow(clippy::disallowed_methods)]
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    Ok(serde_json::from_slice(&body).ok())
}
