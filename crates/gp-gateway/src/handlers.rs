//! Interaction handlers: what each FHIR route does once the pipeline has let it through
//! (reads, searches and operations here; writes in `writes`), each patient first passing
//! the release policy (`release`).

use bytes::Bytes;
use gp_adapter::ClinicalType;
use gp_fhir::NhsNumber;
use gp_fhir::bundle::{Bundle, EntryResource, Searchset};
use gp_fhir::json::{Names, RawJson};
use gp_fhir::model::Resource;
use gp_fhir::search::{
    Paging, PatientSearchParams, Shape, parse_clinical_search, parse_patient_search,
};
use gp_fhir::subset::Subset;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::{GatewayError, Rescue};
use crate::release::{Released, is_confidential, released_for, released_patient};
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
        Route::SlotSearch => crate::appointments::search_slots(app, query, ids, caller).await,
        Route::AppointmentCreate => {
            crate::appointments::book(app, query, headers, ids, caller, body).await
        }
        Route::AppointmentRead(id) => {
            reject_params(query, &["_format"])?;
            crate::appointments::read(app, &id, headers, ids, caller).await
        }
        Route::AppointmentVread(id, vid) => {
            reject_params(query, &["_format"])?;
            crate::appointments::vread(app, &id, &vid, ids, caller).await
        }
        Route::AppointmentSearch => crate::appointments::search(app, query, ids, caller).await,
        Route::AppointmentUpdate(ref id) | Route::AppointmentPatch(ref id) => {
            reject_params(query, &["_format"])?;
            let whole = matches!(route, Route::AppointmentUpdate(_));
            crate::appointments::change(app, id, whole, headers, ids, caller, body).await
        }
        Route::DocumentReferenceSearch => crate::documents::search(app, query, ids, caller).await,
        Route::DocumentReferenceRead(id) => {
            reject_params(query, &["_format"])?;
            crate::documents::read(app, &id, ids, caller).await
        }
        Route::BinaryRead(id) => {
            crate::documents::read_binary(app, &id, query, headers, ids, caller).await
        }
        // The pipeline serves these with their body in a buffer of their own
        // (`pipeline::upload`); a body given here is copied into one.
        Route::DocumentReferenceCreate => {
            let body = bytes::BytesMut::from(body);
            crate::documents::create_document(app, query, headers, ids, caller, body).await
        }
        Route::BinaryCreate => {
            let body = bytes::BytesMut::from(body);
            crate::documents::create_binary(app, query, headers, ids, caller, body).await
        }
        Route::SubscriptionCreate => {
            reject_params(query, &["_format"])?;
            crate::subscriptions::create(app, ids, caller, body).await
        }
        Route::SubscriptionRead(id) => {
            reject_params(query, &["_format"])?;
            crate::subscriptions::read(app, &id, caller).await
        }
        Route::SubscriptionSearch => crate::subscriptions::search(app, query, ids, caller).await,
        Route::SubscriptionDelete(id) => {
            reject_params(query, &["_format"])?;
            crate::subscriptions::delete(app, &id, caller).await
        }
        Route::SubscriptionStatus(id) => {
            if id.is_some() {
                reject_params(query, &["_format"])?;
            } else {
                reject_params(query, &["_format", "id", "status"])?;
            }
            crate::subscriptions::status_of(app, id.as_deref(), query, caller).await
        }
        Route::SubscriptionEvents(id) => {
            crate::subscriptions::events(app, &id, query, caller, read_changed_boxed).await
        }
        Route::TopicRead(code) => {
            reject_params(query, &["_format"])?;
            crate::subscriptions::topic(&code)
        }
        Route::TopicSearch => crate::subscriptions::topic_search(query, &ids.base_url),
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
        Route::ListRead(id) => {
            reject_params(query, &["_format"])?;
            structured_read(app, "List", &id, ids, caller).await
        }
        Route::BundleRead(id) => {
            reject_params(query, &["_format"])?;
            structured_read(app, "Bundle", &id, ids, caller).await
        }
        Route::Metadata => Ok(fhir_response(StatusCode::OK, app.capability.clone())),
        Route::PatientRead(id) => {
            reject_params(query, &["_format"])?;
            let nhs = NhsNumber::parse(&id)?;
            let Released {
                record, practice, ..
            } = released_patient(app, nhs, ids, caller).await?;
            remember_people(app, &practice, [&Resource::Patient(record.patient.clone())]).await;
            let version_id = gp_fhir::ids::version_id(&record.version);
            if crate::respond::unchanged(headers, &version_id) {
                return Ok(crate::respond::not_modified(&version_id));
            }
            Ok(crate::respond::patient(StatusCode::OK, &record))
        }
        Route::PatientSearch => {
            let search = parse_patient_search(query, app.paging)?;
            crate::include::authorise(&search.includes, caller)?;
            let (found, released) = match released_patient(app, search.nhs_number, ids, caller)
                .await
            {
                Ok(released) => {
                    let patient = Resource::Patient(crate::people::named_patient(&released.record));
                    remember_people(app, &released.practice, [&patient]).await;
                    (vec![patient], Some(released))
                }
                Err(GatewayError::NotFound(_)) => (Vec::new(), None),
                Err(other) => return Err(other.into()),
            };
            let total = found.len() as u32;
            let Paging { count, offset } = search.paging;
            let page: Vec<Resource> = found
                .into_iter()
                .skip(offset as usize)
                .take(count as usize)
                .collect();
            let included = match &released {
                Some(released) => {
                    included(
                        app,
                        search.nhs_number,
                        released,
                        &page,
                        &search.includes,
                        ids,
                    )
                    .await?
                }
                None => Vec::new(),
            };
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
            .build_with(page, included);
            Ok(shaped(&bundle, &search.shape))
        }
        Route::ClinicalSearch(resource_type) => {
            clinical_search(app, resource_type, query, ids, caller).await
        }
        // The pipeline serves a batch entry by entry, each through this function.
        Route::Batch => Err(GatewayError::Internal(
            "a batch reached the handlers whole; the pipeline serves it entry by entry".into(),
        )
        .into()),
        Route::OrganizationRead(id) => {
            reject_params(query, &["_format"])?;
            organization_read(app, &id, caller)
        }
        Route::PractitionerRead(id) => {
            reject_params(query, &["_format"])?;
            practitioner_read(app, &id, ids, caller).await
        }
        Route::ClinicalRead(resource_type, id) => {
            reject_params(query, &["_format"])?;
            let entry = clinical_entry(app, resource_type, &id, ids, caller).await?;
            // A client refreshing what it holds (fhirpy's refresh()) is told it is current.
            if let Some(v) = entry.meta().and_then(|m| m.version_id.as_deref())
                && crate::respond::unchanged(headers, v)
            {
                return Ok(crate::respond::not_modified(v));
            }
            Ok(crate::respond::entry(StatusCode::OK, &entry))
        }
        Route::ClinicalVread(resource_type, id, vid) => {
            reject_params(query, &["_format"])?;
            let entry = clinical_entry(app, resource_type, &id, ids, caller).await?;
            let current = entry.meta().and_then(|m| m.version_id.as_deref());
            if current != Some(vid.as_str()) {
                return Err(GatewayError::NotFound(format!(
                    "{resource_type}/{}/_history/{} is not kept: GP systems keep only an entry's current version, which is {}; read {resource_type}/{}",
                    gp_fhir::text::shown(&id),
                    gp_fhir::text::shown(&vid),
                    current.unwrap_or("unnamed"),
                    gp_fhir::text::shown(&id),
                ))
                .into());
            }
            Ok(crate::respond::entry(StatusCode::OK, &entry))
        }
    }
}

/// `404` for a read by id of something not served to the caller: unknown and withheld
/// alike, saying how to get an id that is.
fn not_served(resource_type: &str, id: &str, how: &str) -> GatewayError {
    GatewayError::NotFound(format!(
        "no {resource_type}/{} {how}",
        gp_fhir::text::shown(id)
    ))
}

/// A practice this gateway serves, to a supplier paired with it; any other looks
/// exactly like one that does not exist.
fn organization_read(
    app: &App,
    id: &str,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let not_found = || {
        not_served(
            "Organization",
            id,
            "is served to you: read the practice Patient.managingOrganization names",
        )
    };
    let ods = gp_fhir::OdsCode::parse(id).map_err(|_| not_found())?;
    let organization = crate::include::practice_organization(app, &ods).ok_or_else(not_found)?;
    if !caller.paired_with(&ods) {
        return Err(not_found().into());
    }
    Ok(fhir_response(
        StatusCode::OK,
        Resource::Organization(organization).to_json(),
    ))
}

/// Remembers the practice of each Practitioner `answered` refers to, so a read of the
/// reference finds them.
async fn remember_people<'a>(
    app: &App,
    practice: &gp_fhir::OdsCode,
    answered: impl IntoIterator<Item = &'a Resource>,
) {
    let people = app.entries.unknown_people(answered);
    app.entries.remember_people(practice, people).await;
}

/// Names the Practitioners `entries` refer to (`display`), as far as the GP system
/// answers now: `false` when it did not answer for someone (their references stay
/// unnamed this time).
async fn name_people(
    app: &App,
    adapter: &dyn gp_adapter::Adapter,
    practice: &gp_fhir::OdsCode,
    entries: &mut [Resource],
    ctx: &gp_adapter::CallContext,
) -> bool {
    let refs: Vec<&Resource> = entries.iter().collect();
    let (names, answered) = people_names(app, adapter, practice, &refs, ctx).await;
    for entry in entries {
        crate::people::name_references(entry, &names);
    }
    answered
}

/// The names of the Practitioners `entries` refer to, by reference, to be written on
/// them ([`gp_fhir::json::to_vec_named`]), as far as the GP system answers now: `false`
/// when it did not answer for someone.
async fn people_names(
    app: &App,
    adapter: &dyn gp_adapter::Adapter,
    practice: &gp_fhir::OdsCode,
    entries: &[&Resource],
    ctx: &gp_adapter::CallContext,
) -> (Names, bool) {
    let (people, answered) = app
        .staff
        .referred_all(adapter, practice, entries, ctx)
        .await;
    let names = crate::people::names_of(people.iter().map(|p| p.as_ref()));
    (names, answered)
}

/// A member of a practice's staff, by the id an answer referred to them with: to a
/// supplier paired with their practice; anyone else looks exactly like nobody.
async fn practitioner_read(
    app: &App,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let not_found = || {
        not_served(
            "Practitioner",
            id,
            "is known to you: read a person by the reference an answer gave (within a day)",
        )
    };
    let Some(ods) = app.entries.practice_of(id).await else {
        return Err(not_found().into());
    };
    ids.facts.practice(ods.as_str());
    if !caller.paired_with(&ods) {
        tracing::info!(reason = "not-paired", supplier = caller.client_id().unwrap_or("-"), practice = %ods, "practitioner withheld");
        return Err(not_found().into());
    }
    let adapter = app
        .practices
        .get(&ods)
        .and_then(|p| app.adapters.get(&p.system))
        .ok_or_else(not_found)?;
    let person = app
        .staff
        .read(adapter.as_ref(), &ods, id, &ids.call_context())
        .await
        .map_err(GatewayError::Adapter)?
        .ok_or_else(not_found)?;
    Ok(fhir_response(
        StatusCode::OK,
        Resource::Practitioner(person.as_ref().clone()).to_json(),
    ))
}

/// One record entry by its id: found through the patient it was answered for, then
/// read under the same release policy as a search of that patient's record.
async fn clinical_entry(
    app: &App,
    resource_type: ClinicalType,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Resource, Rescue> {
    let not_found = || {
        not_served(
            resource_type.as_str(),
            id,
            "is known: read an entry by the id a search, the structured record or a create gave (within a day)",
        )
    };
    let Some(nhs) = app.entries.patient_of(resource_type, id).await else {
        return Err(not_found().into());
    };
    // A patient withheld from the caller reads like an id never answered: the caller
    // did not name the patient, and the refusal must not name them either.
    let released = released_for(app, nhs, resource_type, ids, caller)
        .await
        .map_err(|e| match e {
            GatewayError::NotFound(_) => not_found(),
            other => other,
        })?;
    let area = released.area(app, nhs, resource_type, ids).await?;
    let Released {
        practice, adapter, ..
    } = &released;
    let entry = area
        .iter()
        .find(|r| r.id() == id && !is_confidential(r))
        .ok_or_else(not_found)?;
    remember_people(app, practice, [entry]).await;
    let mut entry = [entry.clone()];
    name_people(
        app,
        adapter.as_ref(),
        practice,
        &mut entry,
        &ids.call_context(),
    )
    .await;
    let [entry] = entry;
    Ok(entry)
}

pub(crate) fn reject_params(query: &[(String, String)], allowed: &[&str]) -> Result<(), Rescue> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some((k, _)) => Err(gp_fhir::search::SearchError::UnknownParameter(
            crate::routes::shown(k),
            "_format".into(),
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
    let params = parse_clinical_search(resource_type.as_str(), query, app.paging, &ids.base_url)?;
    crate::include::authorise(&params.includes, caller)?;
    let mut patient = released_for(app, params.patient, resource_type, ids, caller).await?;
    let (area, fresh) = patient
        .area_read(app, params.patient, resource_type, ids)
        .await?;
    let fresh = fresh.unwrap_or_default();
    let Released {
        practice, adapter, ..
    } = &patient;
    // Filtered after the cache: the cache holds what the GP system holds. Each match
    // keeps its place in the area, where its JSON is kept once answered.
    let mut released: Vec<(usize, &Resource)> = area
        .iter()
        .enumerate()
        .filter(|(_, r)| !is_confidential(r) && params.matches(r))
        .collect();
    params.sort_by(&mut released, |(_, r)| r);
    let total = released.len() as u32;
    let Paging { count, offset } = params.paging;
    let page: Vec<(usize, &Resource)> = released
        .into_iter()
        .skip(offset as usize)
        .take(count as usize)
        .collect();
    let included = if params.includes.is_empty() {
        Vec::new()
    } else {
        let matched: Vec<Resource> = page.iter().map(|(_, r)| (*r).clone()).collect();
        included(
            app,
            params.patient,
            &patient,
            &matched,
            &params.includes,
            ids,
        )
        .await?
    };
    // Each entry answered can be read by its fullUrl, and each person it names.
    let answered = app.entries.unknown(page.iter().map(|(_, r)| *r));
    app.entries.remember(params.patient, answered).await;
    remember_people(app, practice, page.iter().map(|(_, r)| *r)).await;
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
    let ctx = ids.call_context();
    if params.shape.subset != Subset::Full || params.shape.pretty {
        // Cut or indented: each entry named and shaped afresh.
        let mut page: Vec<Resource> = page.iter().map(|(_, r)| (*r).clone()).collect();
        name_people(app, adapter.as_ref(), practice, &mut page, &ctx).await;
        return Ok(shaped(&set.build_with(page, included), &params.shape));
    }
    let (names, kept) = matches_json(app, &patient, &area, &fresh, &page, &ctx).await;
    if kept {
        app.records
            .reweigh(practice, params.patient, resource_type, &area)
            .await;
    }
    Ok(fhir_response(
        StatusCode::OK,
        searchset_bytes(&set, &area, &fresh, &page, &names, included),
    ))
}

/// Entry `i`'s JSON as a searchset answers it with `names`, copied from the JSON its
/// version was named from when this request read it ([`gp_fhir::json::Fresh`]).
fn fresh_json(
    area: &crate::cache::Area,
    fresh: &crate::cache::FreshEntries,
    i: usize,
    names: &Names,
) -> Option<RawJson> {
    let version = area.get(i)?.meta()?.version_id.as_deref()?;
    fresh.get(i)?.as_ref()?.answer(version, names)
}

/// Names the matches whose JSON the cached area does not keep from an answer before,
/// and keeps their JSON, named, with the area (from its second answer:
/// [`crate::cache::Area`]) when the GP system answered for every person they name.
/// Answers the names, for the matches this answer writes itself (before the area keeps
/// JSON, or when someone's name could not be read: the next answer names them if it
/// can), and whether the area now keeps more JSON.
async fn matches_json(
    app: &App,
    released: &Released,
    area: &crate::cache::Area,
    fresh: &crate::cache::FreshEntries,
    page: &[(usize, &Resource)],
    ctx: &gp_adapter::CallContext,
) -> (Names, bool) {
    area.answering();
    let unanswered: Vec<usize> = page
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| area.answered(*i).is_none())
        .collect();
    if unanswered.is_empty() {
        return (Names::new(), false);
    }
    let entries: Vec<&Resource> = unanswered.iter().map(|i| &area[*i]).collect();
    let (adapter, practice) = (released.adapter.as_ref(), &released.practice);
    let (names, keep) = people_names(app, adapter, practice, &entries, ctx).await;
    if !keep || !area.keeps_answers() {
        return (names, false);
    }
    let mut kept = false;
    for i in unanswered {
        let entry = &area[i];
        let json = fresh_json(area, fresh, i, &names)
            .or_else(|| RawJson::of_named(entry, &names))
            .unwrap_or_else(|| RawJson::of(&named_copy(entry, &names)));
        kept |= area.keep_answered(i, json).is_ok();
    }
    (names, kept)
}

/// A copy of `entry` with `names` on its references.
fn named_copy(entry: &Resource, names: &Names) -> Resource {
    let mut copy = entry.clone();
    crate::people::name_references(&mut copy, names);
    copy
}

/// The searchset's bytes: the page's matches from the JSON kept with the area, copied
/// from what their versions were named from when this request read them, or written now,
/// each with `names` on their references; then what `_include` brought in.
fn searchset_bytes(
    set: &Searchset<'_>,
    area: &crate::cache::Area,
    fresh: &crate::cache::FreshEntries,
    page: &[(usize, &Resource)],
    names: &Names,
    included: Vec<Resource>,
) -> Vec<u8> {
    // Only a request that read the area has fresh JSON (a cache hit has none).
    let copied: Vec<Option<RawJson>> = if fresh.is_empty() {
        Vec::new()
    } else {
        page.iter()
            .map(|(i, _)| match area.answered(*i) {
                Some(_) => None,
                None => fresh_json(area, fresh, *i, names),
            })
            .collect()
    };
    let mut entries = Vec::with_capacity(page.len() + included.len());
    for (k, (i, r)) in page.iter().enumerate() {
        let json = area
            .answered(*i)
            .or_else(|| copied.get(k).and_then(Option::as_ref));
        let resource = match json {
            Some(json) => EntryResource::Json(json),
            None => EntryResource::Borrowed(r),
        };
        entries.push(set.entry(set.full_url(r), resource, "match"));
    }
    for r in included {
        entries.push(set.entry(
            set.full_url(&r),
            EntryResource::Typed(Box::new(r)),
            "include",
        ));
    }
    let mut bundle = set.build_from(page.len(), entries);
    if let Some(json) = gp_fhir::json::to_vec_named(&bundle, names) {
        return json;
    }
    // Part of it is serde_json's to write, which knows no names: named copies.
    for entry in &mut bundle.entry {
        if let EntryResource::Borrowed(r) = entry.resource {
            entry.resource = EntryResource::Typed(Box::new(named_copy(r, names)));
        }
    }
    bundle.to_json()
}

/// What `includes` bring in with `page`, remembered and named as the matches are:
/// each entry readable by its fullUrl, each person it names by theirs.
async fn included(
    app: &App,
    nhs: NhsNumber,
    released: &Released,
    page: &[Resource],
    includes: &gp_fhir::include::Includes,
    ids: &RequestIds,
) -> Result<Vec<Resource>, GatewayError> {
    let mut included = crate::include::resolve(app, nhs, released, page, includes, ids).await?;
    if included.is_empty() {
        return Ok(included);
    }
    let answered = app.entries.unknown(&included);
    app.entries.remember(nhs, answered).await;
    remember_people(app, &released.practice, &included).await;
    name_people(
        app,
        released.adapter.as_ref(),
        &released.practice,
        &mut included,
        &ids.call_context(),
    )
    .await;
    Ok(included)
}

/// A searchset answer, each match cut to the subset asked for (`_summary`, `_elements`;
/// as R4 says, what `_include` brought in comes whole) and the whole indented when
/// `_pretty=true`.
fn shaped(bundle: &Bundle, shape: &Shape) -> Response<Full<Bytes>> {
    fhir_response(StatusCode::OK, shaped_bytes(bundle, shape))
}

fn shaped_bytes(bundle: &Bundle, shape: &Shape) -> Vec<u8> {
    if shape.subset == Subset::Full && !shape.pretty {
        // Nothing to cut or indent: straight to bytes, without a JSON tree between.
        return bundle.to_json();
    }
    let mut value = serde_json::to_value(bundle).unwrap_or_default();
    if let Some(entries) = value.get_mut("entry").and_then(|e| e.as_array_mut()) {
        for entry in entries
            .iter_mut()
            .filter(|e| e["search"]["mode"] == "match")
        {
            if let Some(resource) = entry.get_mut("resource") {
                shape.subset.apply(resource);
            }
        }
    }
    let body = if shape.pretty {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    };
    body.unwrap_or_default()
}

/// `$gpc.getstructuredrecord`: the Bundle, under a fresh id, and how it and each of its
/// Lists were made remembered, so a read of their ids answers them again.
async fn structured_record(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    reject_params(query, &["_format"])?;
    let req = crate::structured::parse(body, today())?;
    // Every area asked for must be within the token's scopes, before any data is read.
    for area in &req.areas {
        caller.require_read(area.clinical_type().as_str())?;
    }
    let released = released_patient(app, req.nhs_number, ids, caller).await?;
    // Minted here, not the request id (which the client may choose): a read of the id
    // must find this answer and no other.
    let bundle_id = uuid::Uuid::new_v4().to_string();
    let answer = structured_answer(app, &req, &bundle_id, &released, ids).await?;
    let made = |req: &crate::structured::StructuredRequest| {
        serde_json::to_string(&MadeBy {
            bundle: bundle_id.clone(),
            parameters: req.to_parameters(),
        })
        .unwrap_or_default()
    };
    let mut answers = vec![("Bundle", bundle_id.clone(), made(&req))];
    for area in &req.areas {
        answers.push((
            "List",
            crate::structured::list_id(&bundle_id, area),
            made(&req.only(area)),
        ));
    }
    // Before the answer goes: a client may read it back at another replica at once.
    app.entries.remember_answers(answers).await;
    Ok(fhir_response(StatusCode::OK, answer))
}

/// How a structured record's Bundle or List was made, as the entry index remembers it:
/// the Bundle's id and the request (for a List, with its area alone), never the content.
#[derive(serde::Serialize, serde::Deserialize)]
struct MadeBy {
    bundle: String,
    parameters: serde_json::Value,
}

fn today() -> (i32, u8, u8) {
    let today = time::OffsetDateTime::now_utc().date();
    (today.year(), u8::from(today.month()), today.day())
}

/// The Bundle id and request that made the structured record's answer `id` of type
/// `resource_type` (`Bundle` or `List`), if the gateway answered it within a day.
async fn made_by(
    app: &App,
    resource_type: &str,
    id: &str,
) -> Option<(String, crate::structured::StructuredRequest)> {
    let remembered = app.entries.answer_of(resource_type, id).await?;
    let made: MadeBy = serde_json::from_str(&remembered).ok()?;
    let parameters = serde_json::to_vec(&made.parameters).ok()?;
    match crate::structured::parse(&parameters, today()) {
        Ok(req) => Some((made.bundle, req)),
        Err(e) => {
            tracing::warn!(error = %e, "a remembered structured record request no longer parses: answered as unknown");
            None
        }
    }
}

/// `GET /Bundle/{id}` and `GET /List/{id}`: a structured record answered, or one area's
/// List of it, answered again for the caller under the operation's rules (the caller's
/// scopes for each area, pairing, release rules, confidential entries withheld).
async fn structured_read(
    app: &App,
    resource_type: &'static str,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let not_found = || {
        not_served(
            resource_type,
            id,
            "is known: read the ids $gpc.getstructuredrecord gave (within a day)",
        )
    };
    let Some((bundle_id, req)) = made_by(app, resource_type, id).await else {
        return Err(not_found().into());
    };
    for area in &req.areas {
        caller.require_read(area.clinical_type().as_str())?;
    }
    // A patient the caller may not see looks exactly like an id never answered.
    let released = match released_patient(app, req.nhs_number, ids, caller).await {
        Ok(released) => released,
        Err(GatewayError::NotFound(_)) => return Err(not_found().into()),
        Err(other) => return Err(other.into()),
    };
    if resource_type == "Bundle" {
        let answer = structured_answer(app, &req, &bundle_id, &released, ids).await?;
        return Ok(fhir_response(StatusCode::OK, answer));
    }
    let [area] = req.areas.as_slice() else {
        return Err(not_found().into());
    };
    let entries = released
        .area(app, req.nhs_number, area.clinical_type(), ids)
        .await?;
    let listed = crate::structured::select(area, entries.iter().filter(|r| !is_confidential(r)));
    // Entries recorded since the Bundle was answered are listed too: each must resolve.
    let answered = app.entries.unknown(listed.iter().copied());
    app.entries.remember(req.nhs_number, answered).await;
    remember_people(app, &released.practice, listed.iter().copied()).await;
    let list = crate::structured::list(&bundle_id, &now_rfc3339(), req.nhs_number, area, &listed);
    Ok(fhir_response(StatusCode::OK, list.to_string()))
}

/// The structured record's `collection` Bundle `bundle_id` for `req`, of a patient
/// released to the caller whose scopes cover each area.
async fn structured_answer(
    app: &App,
    req: &crate::structured::StructuredRequest,
    bundle_id: &str,
    released: &Released,
    ids: &RequestIds,
) -> Result<Vec<u8>, Rescue> {
    let Released {
        record,
        practice,
        adapter,
        ..
    } = released;
    let ctx = ids.call_context();
    let mut demographics = vec![Resource::Patient(crate::people::named_patient(record))];
    demographics.extend(record.organization.clone().map(Resource::Organization));
    let mut all_held = Vec::with_capacity(req.areas.len());
    for area in &req.areas {
        all_held.push(
            released
                .area(app, req.nhs_number, area.clinical_type(), ids)
                .await?,
        );
    }
    let areas: Vec<_> = req
        .areas
        .iter()
        .zip(&all_held)
        .map(|(area, entries)| {
            (
                area,
                crate::structured::select(area, entries.iter().filter(|r| !is_confidential(r))),
            )
        })
        .collect();
    // Everyone the record names goes in the Bundle (as GP Connect puts them there), the
    // usual GP first, and their names on the references to them.
    let named: Vec<&Resource> = demographics
        .iter()
        .chain(areas.iter().flat_map(|(_, e)| e.iter().copied()))
        .collect();
    let people = app
        .staff
        .referred(adapter.as_ref(), practice, &named, &ctx)
        .await;
    let mut staff: Vec<gp_fhir::model::Practitioner> =
        record.practitioner.iter().cloned().collect();
    for person in people {
        if !staff.iter().any(|s| s.id == person.id) {
            staff.push(person.as_ref().clone());
        }
    }
    let mut names = crate::people::names_of(&staff);
    if let Some(org) = &record.organization
        && let Some(name) = &org.name
    {
        names.insert(format!("Organization/{}", org.id), name.clone());
    }
    demographics.extend(staff.into_iter().map(Resource::Practitioner));
    let entries: Vec<Vec<Resource>> = areas
        .iter()
        .map(|(_, e)| {
            e.iter()
                .map(|r| {
                    let mut r = (*r).clone();
                    crate::people::name_references(&mut r, &names);
                    r
                })
                .collect()
        })
        .collect();
    let areas: Vec<_> = areas
        .into_iter()
        .zip(&entries)
        .map(|((area, _), e)| (area, e.iter().collect::<Vec<_>>()))
        .collect();
    let answered = app.entries.unknown(entries.iter().flatten());
    app.entries.remember(req.nhs_number, answered).await;
    remember_people(
        app,
        practice,
        demographics.iter().chain(entries.iter().flatten()),
    )
    .await;
    let last_updated = now_rfc3339();
    let bundle = crate::structured::bundle(
        &ids.base_url,
        bundle_id,
        &last_updated,
        req.nhs_number,
        demographics,
        areas,
    );
    Ok(gp_fhir::json::to_vec(&bundle))
}

/// [`read_changed`], boxed with its type named (outside [`serve`], which awaits it
/// through `$events`: the compiler needs the cycle broken here).
pub fn read_changed_boxed<'a>(
    app: &'a App,
    caller: &'a Caller,
    event: &'a gp_audit::NewEvent,
    ids: &'a RequestIds,
) -> crate::subscriptions::Fetch<'a> {
    Box::pin(read_changed(app, caller, event, ids))
}

/// The resource `event` changed, read as `caller` would read it now, through the same
/// handler and release rules as its own `GET`: `Ok(None)` when the read is refused or
/// finds nothing, `Err` when the GP system could not answer.
pub async fn read_changed(
    app: &App,
    caller: &Caller,
    event: &gp_audit::NewEvent,
    ids: &RequestIds,
) -> Result<Option<serde_json::Value>, GatewayError> {
    let Ok(nhs) = NhsNumber::parse(&event.patient) else {
        return Ok(None);
    };
    let kind = gp_adapter::ChangeKind::from_code(&event.kind);
    let route = match (
        kind.map(gp_adapter::ChangeKind::resource_type),
        &event.resource_id,
    ) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gp_fhir::model::{Observation, Quantity};

    /// The direct path writes the very bytes the JSON-tree path wrote (member order,
    /// decimals as given), so skipping the tree changes nothing a client sees.
    #[test]
    fn an_unshaped_searchset_is_the_same_bytes_without_the_json_tree() {
        let observation = Observation {
            id: "obs-1".into(),
            status: "final".into(),
            value_quantity: Some(Quantity::ucum(72.50, "kg")),
            ..Observation::default()
        };
        let params = vec![("patient".to_owned(), "9000000009".to_owned())];
        let set = Searchset {
            base_url: "http://127.0.0.1/FHIR/R4",
            resource_type: "Observation",
            params: &params,
            paging: Paging {
                count: 50,
                offset: 0,
            },
            total: 1,
            id: "req-1",
            last_updated: "2026-12-07T00:00:00Z",
        };
        let bundle = set.build_with(vec![Resource::Observation(observation)], Vec::new());
        let full = Shape {
            subset: Subset::Full,
            pretty: false,
        };
        let through_tree = serde_json::to_vec(&serde_json::to_value(&bundle).unwrap()).unwrap();
        assert_eq!(shaped_bytes(&bundle, &full), through_tree);
        let text = String::from_utf8(shaped_bytes(&bundle, &full)).unwrap();
        assert!(text.contains("\"value\":72.5"), "{text}");
        // A subset still cuts the matches.
        let summary = Shape {
            subset: Subset::Elements(vec!["status".into()]),
            pretty: false,
        };
        let cut = String::from_utf8(shaped_bytes(&bundle, &summary)).unwrap();
        assert!(
            !cut.contains("valueQuantity") && cut.contains("SUBSETTED"),
            "{cut}"
        );
    }
}

/// `gp_fhir::json` writes the very bytes serde_json wrote, on every record of the sandbox
/// population of every GP system: each resource, and the searchset Bundle of them all.
#[cfg(test)]
mod json_bytes {
    #![allow(clippy::unwrap_used)]
    use gp_fhir::bundle::Searchset;
    use gp_fhir::model::Resource;
    use gp_fhir::search::Paging;
    use gp_fhir::{NhsNumber, OdsCode};
    use gp_sim::{Population, PopulationSpec, SystemKind};

    fn mapped(
        kind: SystemKind,
        practice: &gp_sim::Practice,
        p: &gp_sim::SimPatient,
    ) -> Vec<Resource> {
        let ods = OdsCode::parse(&practice.ods).unwrap();
        let nhs = NhsNumber::parse(&p.nhs_number).unwrap();
        match kind {
            SystemKind::Emis => {
                let r = gp_adapter_emis::map_record(
                    gp_sim::emis::render_record(practice, p).as_bytes(),
                )
                .unwrap();
                [
                    Resource::Patient(r.patient),
                    Resource::Organization(r.organization),
                ]
                .into_iter()
                .chain(r.clinical)
                .collect()
            }
            SystemKind::Tpp => {
                let size = gp_adapter_tpp::config::MAX_PAGE_SIZE;
                let mut pages = vec![gp_sim::tpp::render_page(practice, p, 1, size as usize)];
                let count = gp_adapter_tpp::map_page(pages[0].as_bytes())
                    .unwrap()
                    .paging
                    .pages();
                for n in 2..=count as usize {
                    pages.push(gp_sim::tpp::render_page(practice, p, n, size as usize));
                }
                let bodies: Vec<&[u8]> = pages.iter().map(|s| s.as_bytes()).collect();
                let r = gp_adapter_tpp::map_record(&bodies, size).unwrap();
                [
                    Resource::Patient(r.patient),
                    Resource::Organization(r.organization),
                ]
                .into_iter()
                .chain(r.clinical)
                .collect()
            }
            SystemKind::Vision => {
                let patient = gp_adapter_vision::map_patient(
                    gp_sim::vision::render_patient(p).as_bytes(),
                    &ods,
                )
                .unwrap();
                let owner = gp_adapter_vision::JournalOwner {
                    pid: patient.pid.clone(),
                    nhs_number: nhs,
                    ods,
                };
                let journal = [gp_sim::vision::render_journal(p)];
                std::iter::once(Resource::Patient(patient.patient))
                    .chain(gp_adapter_vision::map_journal(&journal, &owner).unwrap())
                    .collect()
            }
            SystemKind::Microtest => {
                use gp_adapter_microtest::EntryType;
                let doc =
                    serde_json::to_vec(&gp_sim::microtest::render_patient(practice, p)).unwrap();
                let mut out = vec![Resource::Patient(
                    gp_adapter_microtest::map_patient(&doc).unwrap().patient,
                )];
                for kind in [
                    EntryType::Allergy,
                    EntryType::Medication,
                    EntryType::Problem,
                    EntryType::Observation,
                    EntryType::Immunisation,
                    EntryType::Consultation,
                ] {
                    let entries = gp_sim::microtest::render_entries(p, kind.as_str());
                    let body = serde_json::json!({"entries": entries, "next_cursor": null});
                    let page = gp_adapter_microtest::map_entries(
                        &serde_json::to_vec(&body).unwrap(),
                        kind,
                        nhs,
                        &ods,
                    )
                    .unwrap();
                    out.extend(page.resources);
                }
                out
            }
        }
    }

    #[test]
    fn every_sandbox_record_serialises_to_the_bytes_serde_json_wrote() {
        let population = Population::generate(20_261_123, &PopulationSpec::sandbox());
        let mut systems = std::collections::BTreeSet::new();
        for p in &population.patients {
            let practice = population.practice(&p.practice).unwrap();
            let resources = mapped(practice.system, practice, p);
            for r in &resources {
                assert_eq!(r.to_json(), serde_json::to_vec(r).unwrap(), "{}", r.id());
            }
            let params = [("patient".to_owned(), p.nhs_number.clone())];
            let total = resources.len() as u32;
            let bundle = Searchset {
                base_url: "http://127.0.0.1/FHIR/R4",
                resource_type: "Observation",
                params: &params,
                paging: Paging {
                    count: total,
                    offset: 0,
                },
                total,
                id: "req-1",
                last_updated: "2026-12-07T00:00:00Z",
            }
            .build(resources);
            assert_eq!(bundle.to_json(), serde_json::to_vec(&bundle).unwrap());
            systems.insert(format!("{:?}", practice.system));
        }
        assert_eq!(systems.len(), 4, "{systems:?}");
    }
}
