//! FHIR interactions: what each route does once the pipeline has let it through.

use bytes::Bytes;
use gp_adapter::{CallContext, ClinicalType, PatientRecord, PatientRequest, SearchRequest};
use gp_fhir::NhsNumber;
use gp_fhir::bundle::Searchset;
use gp_fhir::model::Resource;
use gp_fhir::search::{Paging, parse_clinical_search, parse_patient_search};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::access::Caller;
use crate::app::App;
use crate::error::{GatewayError, Rescue};
use crate::pipeline::RequestIds;
use crate::routes::Route;

/// Most entries of one clinical type fetched from a GP system for one search; the
/// gateway filters and pages within them so totals stay true after filtering.
const MAX_ENTRIES_PER_SEARCH: u32 = 10_000;

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(gp_fhir::format::FHIR_JSON),
    );
    resp
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Serves a matched route.
pub async fn serve(
    app: &App,
    route: Route,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    match route {
        Route::Metadata => Ok(fhir_response(StatusCode::OK, app.capability.clone())),
        Route::PatientRead(id) => {
            reject_params(query, &["_format"])?;
            let nhs = NhsNumber::parse(&id)?;
            let record = released_patient(app, nhs, ids, caller).await?.record;
            let mut resp =
                fhir_response(StatusCode::OK, Resource::Patient(record.patient).to_json());
            if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", record.version)) {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            Ok(resp)
        }
        Route::PatientSearch => {
            let nhs = parse_patient_search(query)?;
            let found = match released_patient(app, nhs, ids, caller).await {
                Ok(released) => vec![Resource::Patient(released.record.patient)],
                Err(GatewayError::NotFound(_)) => Vec::new(),
                Err(other) => return Err(other.into()),
            };
            let total = found.len() as u32;
            let paging = Paging {
                count: app.paging.default_count,
                offset: 0,
            };
            let last_updated = now_rfc3339();
            let bundle =
                searchset(app, "Patient", query, paging, total, ids, &last_updated).build(found);
            Ok(fhir_response(StatusCode::OK, bundle.to_json()))
        }
        Route::ClinicalSearch(resource_type) => {
            clinical_search(app, resource_type, query, ids, caller).await
        }
    }
}

fn reject_params(query: &[(String, String)], allowed: &[&str]) -> Result<(), Rescue> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some((k, _)) => Err(gp_fhir::search::SearchError::UnknownParameter(
            crate::routes::shown(k),
            "_format",
        )
        .into()),
    }
}

fn searchset<'a>(
    app: &'a App,
    resource_type: &'a str,
    params: &'a [(String, String)],
    paging: Paging,
    total: u32,
    ids: &'a RequestIds,
    last_updated: &'a str,
) -> Searchset<'a> {
    Searchset {
        base_url: &app.public_base,
        resource_type,
        params,
        paging,
        total,
        id: &ids.request_id,
        last_updated,
    }
}

/// A patient a third-party supplier may see, with where their record lives.
struct Released {
    record: PatientRecord,
    practice: gp_fhir::OdsCode,
    adapter: std::sync::Arc<dyn gp_adapter::Adapter>,
}

/// Reads a patient the way a third-party supplier may see them: restricted
/// (sensitive) patients are not found; dissenting patients are refused.
async fn released_patient(
    app: &App,
    nhs: NhsNumber,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Released, GatewayError> {
    let (location, practice, adapter) = app.locate(nhs, &ids.request_id).await?;
    let not_found =
        || GatewayError::NotFound(format!("no patient record found for NHS number {nhs}"));
    // Unpaired looks exactly like unregistered to the supplier; only our logs differ.
    if !caller.paired_with(&location.practice) {
        tracing::info!(reason = "not-paired", supplier = caller.client_id().unwrap_or("-"), practice = %location.practice, "patient withheld");
        return Err(not_found());
    }
    if location.restricted {
        tracing::debug!(reason = "restricted-in-pds", "patient withheld");
        return Err(not_found());
    }
    let req = PatientRequest {
        nhs_number: nhs,
        practice: location.practice.clone(),
        context: ids.call_context(),
    };
    let record = match adapter.read_patient(&req).await {
        Ok(r) => r,
        Err(gp_adapter::AdapterError::PatientNotFound) => {
            tracing::warn!(practice = %practice.ods, "PDS names a practice whose GP system does not hold the patient");
            return Err(not_found());
        }
        Err(e) => return Err(GatewayError::Adapter(e)),
    };
    if record.flags.restricted || record.patient.is_restricted() {
        tracing::debug!(reason = "restricted-in-gp-system", "patient withheld");
        return Err(not_found());
    }
    if record.flags.dissent {
        return Err(GatewayError::NoConsent);
    }
    Ok(Released {
        record,
        practice: location.practice,
        adapter,
    })
}

/// True when the GP system marked the entry confidential (`meta.security` R).
fn is_confidential(r: &Resource) -> bool {
    r.meta().is_some_and(|m| {
        m.security.iter().any(|c| {
            c.system.as_deref() == Some(gp_fhir::model::CONFIDENTIALITY_SYSTEM)
                && c.code.as_deref() == Some("R")
        })
    })
}

async fn clinical_search(
    app: &App,
    resource_type: ClinicalType,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let params = parse_clinical_search(query, app.paging)?;
    let Released {
        practice, adapter, ..
    } = released_patient(app, params.patient, ids, caller).await?;
    let req = SearchRequest {
        nhs_number: params.patient,
        practice,
        resource_type,
        date: params.date,
        count: MAX_ENTRIES_PER_SEARCH,
        offset: 0,
        context: ids.call_context(),
    };
    let page = adapter.search(&req).await.map_err(GatewayError::Adapter)?;
    let mut released: Vec<Resource> = page
        .resources
        .into_iter()
        .filter(|r| !is_confidential(r))
        .collect();
    let total = released.len() as u32;
    let Paging { count, offset } = params.paging;
    let page: Vec<Resource> = released
        .drain(..)
        .skip(offset as usize)
        .take(count as usize)
        .collect();
    let link_params = params.link_params(query);
    let last_updated = now_rfc3339();
    let set = searchset(
        app,
        resource_type.as_str(),
        &link_params,
        params.paging,
        total,
        ids,
        &last_updated,
    );
    Ok(fhir_response(StatusCode::OK, set.build(page).to_json()))
}

impl RequestIds {
    /// The context passed to adapters.
    pub fn call_context(&self) -> CallContext {
        CallContext {
            request_id: self.request_id.clone(),
            traceparent: self.traceparent.clone(),
        }
    }
}
