//! Interaction handlers: what each FHIR route does once the pipeline has let it through
//! (reads, searches and operations here; writes in `writes`), each patient first passing
//! the release policy (`release`).

use bytes::Bytes;
use gp_adapter::ClinicalType;
use gp_fhir::NhsNumber;
use gp_fhir::bundle::Searchset;
use gp_fhir::model::Resource;
use gp_fhir::search::{Paging, PatientSearchParams, parse_clinical_search, parse_patient_search};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::{GatewayError, Rescue};
use crate::release::{Released, is_confidential, released_patient};
use crate::respond::fhir as fhir_response;
use crate::routes::Route;

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
    headers: &http::HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    match route {
        Route::ObservationCreate => {
            crate::writes::create_observation(app, query, headers, ids, caller, body).await
        }
        Route::AuditEventSearch => {
            let search = crate::audit::search::parse(query, caller.audit_scope())?;
            let rows = app.audit.query(search.query.clone()).await?;
            let bundle =
                crate::audit::search::bundle(&ids.base_url, &ids.request_id, query, &search, &rows);
            Ok(fhir_response(
                StatusCode::OK,
                serde_json::to_vec(&bundle).unwrap_or_default(),
            ))
        }
        Route::AccessLog(id) => {
            reject_params(query, &["_format"])?;
            let nhs = NhsNumber::parse(&id)?;
            // Operators may answer any patient; a supplier (a patient-facing app) only
            // for patients it may see at all.
            if caller.audit_scope().is_some() {
                released_patient(app, nhs, ids, caller).await?;
            }
            let rows = app
                .audit
                .query(crate::audit::AuditQuery {
                    patient: Some(nhs.to_string()),
                    limit: 1000,
                    ..crate::audit::AuditQuery::default()
                })
                .await?;
            let names = app.auth.as_ref().map(|a| a.registry.snapshot());
            let bundle = crate::audit::search::access_log(
                &ids.base_url,
                &ids.request_id,
                &nhs.to_string(),
                &rows,
                |c| names.as_ref().and_then(|n| n.name_of(c)).map(str::to_owned),
            );
            Ok(fhir_response(
                StatusCode::OK,
                serde_json::to_vec(&bundle).unwrap_or_default(),
            ))
        }
        Route::PatientPatch(ref id) | Route::PatientUpdate(ref id) => {
            reject_params(query, &["_format"])?;
            let whole = matches!(route, Route::PatientUpdate(_));
            crate::writes::update_patient(app, id, whole, headers, ids, caller, body).await
        }
        Route::StructuredRecord => structured_record(app, query, ids, caller, body).await,
        Route::Metadata => Ok(fhir_response(StatusCode::OK, app.capability.clone())),
        Route::PatientRead(id) => {
            reject_params(query, &["_format"])?;
            let nhs = NhsNumber::parse(&id)?;
            let record = released_patient(app, nhs, ids, caller).await?.record;
            if crate::respond::unchanged(headers, &record) {
                return Ok(crate::respond::not_modified(&record));
            }
            Ok(crate::respond::patient(StatusCode::OK, &record))
        }
        Route::PatientSearch => {
            let search = parse_patient_search(query, app.paging)?;
            let found = match released_patient(app, search.nhs_number, ids, caller).await {
                Ok(released) => vec![Resource::Patient(released.record.patient.clone())],
                Err(GatewayError::NotFound(_)) => Vec::new(),
                Err(other) => return Err(other.into()),
            };
            let total = found.len() as u32;
            let Paging { count, offset } = search.paging;
            let page = found
                .into_iter()
                .skip(offset as usize)
                .take(count as usize)
                .collect();
            let last_updated = now_rfc3339();
            let link_params = PatientSearchParams::link_params(query);
            let bundle = searchset(
                "Patient",
                &link_params,
                search.paging,
                total,
                ids,
                &last_updated,
            )
            .build(page);
            Ok(fhir_response(StatusCode::OK, bundle.to_json()))
        }
        Route::ClinicalSearch(resource_type) => {
            clinical_search(app, resource_type, query, ids, caller).await
        }
        Route::OrganizationRead(id) => {
            reject_params(query, &["_format"])?;
            organization_read(app, &id, caller)
        }
        Route::ClinicalRead(resource_type, id) => {
            reject_params(query, &["_format"])?;
            clinical_read(app, resource_type, &id, ids, caller).await
        }
    }
}

/// A practice this gateway serves, to a supplier paired with it; any other looks
/// exactly like one that does not exist.
fn organization_read(
    app: &App,
    id: &str,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let not_found = || {
        GatewayError::NotFound(format!(
            "no Organization/{} is served to you: read the practice Patient.managingOrganization names",
            gp_fhir::text::shown(id)
        ))
    };
    let ods = gp_fhir::OdsCode::parse(id).map_err(|_| not_found())?;
    let practice = app.practices.get(&ods).ok_or_else(not_found)?;
    if !caller.paired_with(&ods) {
        return Err(not_found().into());
    }
    let organization = gp_fhir::model::Organization {
        id: ods.as_str().to_owned(),
        meta: Some(gp_fhir::model::Meta::uk_core("Organization")),
        identifier: vec![gp_fhir::model::Identifier::ods(&ods)],
        name: Some(practice.name.clone()),
        ..Default::default()
    };
    Ok(fhir_response(
        StatusCode::OK,
        Resource::Organization(organization).to_json(),
    ))
}

/// One record entry by its id: found through the patient it was answered for, then
/// read under the same release policy as a search of that patient's record.
async fn clinical_read(
    app: &App,
    resource_type: ClinicalType,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let not_found = || {
        GatewayError::NotFound(format!(
            "no {resource_type}/{} is known: read an entry by the id a search, the structured record or a create gave (within a day)",
            gp_fhir::text::shown(id)
        ))
    };
    let Some(nhs) = app.entries.patient_of(resource_type, id).await else {
        return Err(not_found().into());
    };
    let Released {
        practice, adapter, ..
    } = released_patient(app, nhs, ids, caller).await?;
    let area = app
        .records
        .area(
            adapter.as_ref(),
            &practice,
            nhs,
            resource_type,
            &ids.call_context(),
        )
        .await
        .map_err(GatewayError::Adapter)?;
    let entry = area
        .iter()
        .find(|r| r.id() == id && !is_confidential(r))
        .ok_or_else(not_found)?;
    Ok(fhir_response(StatusCode::OK, entry.to_json()))
}

pub(crate) fn reject_params(query: &[(String, String)], allowed: &[&str]) -> Result<(), Rescue> {
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
    resource_type: &'a str,
    params: &'a [(String, String)],
    paging: Paging,
    total: u32,
    ids: &'a RequestIds,
    last_updated: &'a str,
) -> Searchset<'a> {
    Searchset {
        base_url: &ids.base_url,
        resource_type,
        params,
        paging,
        total,
        id: &ids.request_id,
        last_updated,
    }
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
    let area = app
        .records
        .area(
            adapter.as_ref(),
            &practice,
            params.patient,
            resource_type,
            &ids.call_context(),
        )
        .await
        .map_err(GatewayError::Adapter)?;
    // Filtered after the cache: the cache holds what the GP system holds.
    let released: Vec<&Resource> = area
        .iter()
        .filter(|r| {
            !is_confidential(r)
                && params.date.contains(r.clinical_date())
                && params.codes_match(r)
                && (params.ids.is_empty() || params.ids.iter().any(|id| id == r.id()))
        })
        .collect();
    let total = released.len() as u32;
    let Paging { count, offset } = params.paging;
    let page: Vec<Resource> = released
        .into_iter()
        .skip(offset as usize)
        .take(count as usize)
        .cloned()
        .collect();
    // Each entry answered can be read by its fullUrl.
    let answered = app.entries.unknown(&page);
    app.entries.remember(params.patient, answered).await;
    let link_params = params.link_params(query);
    let last_updated = now_rfc3339();
    let set = searchset(
        resource_type.as_str(),
        &link_params,
        params.paging,
        total,
        ids,
        &last_updated,
    );
    Ok(fhir_response(StatusCode::OK, set.build(page).to_json()))
}

async fn structured_record(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    reject_params(query, &["_format"])?;
    let today = time::OffsetDateTime::now_utc().date();
    let req = crate::structured::parse(body, (today.year(), u8::from(today.month()), today.day()))?;
    // Every area asked for must be within the token's scopes, before any data is read.
    for area in &req.areas {
        caller.require_read(area.clinical_type().as_str())?;
    }
    let Released {
        record,
        practice,
        adapter,
    } = released_patient(app, req.nhs_number, ids, caller).await?;
    let ctx = ids.call_context();
    let mut demographics = vec![Resource::Patient(record.patient.clone())];
    demographics.extend(record.organization.clone().map(Resource::Organization));
    demographics.extend(record.practitioner.clone().map(Resource::Practitioner));
    let mut held = Vec::with_capacity(req.areas.len());
    for area in &req.areas {
        let entries = app
            .records
            .area(
                adapter.as_ref(),
                &practice,
                req.nhs_number,
                area.clinical_type(),
                &ctx,
            )
            .await
            .map_err(GatewayError::Adapter)?;
        held.push(entries);
    }
    let areas: Vec<_> = req
        .areas
        .iter()
        .zip(&held)
        .map(|(area, entries)| {
            (
                area,
                crate::structured::select(area, entries.iter().filter(|r| !is_confidential(r))),
            )
        })
        .collect();
    let answered = app
        .entries
        .unknown(areas.iter().flat_map(|(_, e)| e.iter().copied()));
    app.entries.remember(req.nhs_number, answered).await;
    let last_updated = now_rfc3339();
    let bundle = crate::structured::bundle(
        &ids.base_url,
        &ids.request_id,
        &last_updated,
        req.nhs_number,
        demographics,
        areas,
    );
    Ok(fhir_response(
        StatusCode::OK,
        serde_json::to_vec(&bundle).unwrap_or_default(),
    ))
}
