//! Write-back: `POST /Observation` and `PATCH`/`PUT /Patient/{nhsNumber}`, so what one supplier
//! captures is in the GP record every other supplier reads.
//!
//! Order, for both: check the body (nothing reaches a GP system unless it is valid UK
//! Core the GP system can hold) → locate the patient and apply pairing, sensitivity and
//! consent exactly as reads do → one adapter write → forget the cached record, whatever
//! the outcome (a write that timed out may still have happened).

use bytes::Bytes;
use gp_adapter::{CreateObservationRequest, UpdateContactRequest};
use gp_fhir::model::Resource;
use gp_fhir::{FhirError, IssueType, NhsNumber, SpineCode};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::{GatewayError, Rescue};
use crate::patient_change::Change;
use crate::release::{Released, released_patient, released_patient_fresh};
use crate::respond::fhir as fhir_response;
use crate::write_body::Invalid;

/// A write precondition the caller sent that does not hold.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreconditionFailed(pub(crate) String);

impl FhirError for PreconditionFailed {
    fn status(&self) -> u16 {
        412
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::PreconditionFailed
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Conflict
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Invalid> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| s.len() <= 500)
            .map(Some)
            .ok_or_else(|| {
                Invalid::request(format!(
                    "{name} must be printable ASCII of at most 500 characters"
                ))
            }),
    }
}

/// `identifier=<system>|<value>`, the only condition a create takes; `source` names
/// where it was given, for messages.
fn identifier_condition(value: &str, source: &str) -> Result<(String, String), Invalid> {
    match value.split_once('|') {
        Some((system, value)) if !system.is_empty() && !value.is_empty() => {
            Ok((system.to_owned(), value.to_owned()))
        }
        _ => Err(Invalid::request(format!(
            "{source}: expected identifier=<system>|<value>"
        ))),
    }
}

/// `If-None-Exist: identifier=system|value` (the only conditional create supported).
fn if_none_exist(headers: &HeaderMap) -> Result<Option<(String, String)>, Invalid> {
    let Some(raw) = header_text(headers, "if-none-exist")? else {
        return Ok(None);
    };
    let query = raw.trim().trim_start_matches('?');
    let pairs = gp_fhir::search::parse_query(query)
        .map_err(|e| Invalid::request(format!("If-None-Exist: {e}")))?;
    match pairs.as_slice() {
        [(k, v)] if k == "identifier" => identifier_condition(v, "If-None-Exist").map(Some),
        _ => Err(Invalid::request(
            "If-None-Exist: only identifier=<system>|<value> is supported (a retried create is recognised by its identifier)",
        )),
    }
}

/// Longest identifier system or value the GP systems keep with a reading.
const MAX_IDENTIFIER: usize = 200;

/// Refuses an identifier the GP systems would not keep exactly as sent (they keep 1 to
/// 200 characters, and some trim spaces), so it reads back as it was written.
fn keepable(identifier: &(String, String)) -> Result<(), Invalid> {
    keepable_as(identifier, "Observation", "the reading")
}

/// Checks a create's identifier (of `resource_type`, kept with `what`) can be kept and
/// read back as written.
pub(crate) fn keepable_as(
    (system, value): &(String, String),
    resource_type: &str,
    what: &str,
) -> Result<(), Invalid> {
    for (part, v) in [("system", system), ("value", value)] {
        let ok = (1..=MAX_IDENTIFIER).contains(&v.chars().count())
            && v.trim() == v
            && !v.chars().any(char::is_control);
        if !ok {
            return Err(Invalid::resource(
                format!("{resource_type}.identifier[0].{part}"),
                format!(
                    "must be 1 to {MAX_IDENTIFIER} characters without surrounding spaces or control characters: the GP system keeps it with {what}, and it must read back as written"
                ),
            ));
        }
    }
    Ok(())
}

/// A create's condition: `If-None-Exist`, or the same search in the query string, as
/// fhirpy's `get_or_create` sends it (`POST /Observation?identifier=system|value`).
pub(crate) fn create_condition(
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Option<(String, String)>, Rescue> {
    if let Some((k, _)) = query
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "identifier" | "_format"))
    {
        return Err(gp_fhir::search::SearchError::UnknownParameter(
            crate::routes::shown(k),
            "_format, and identifier=<system>|<value> for a conditional create (as If-None-Exist)"
                .into(),
        )
        .into());
    }
    let in_query = match query
        .iter()
        .filter(|(k, _)| k == "identifier")
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => None,
        [(_, v)] => Some(identifier_condition(v, "the identifier parameter")?),
        _ => {
            return Err(Invalid::request(
                "a conditional create names one identifier: give the identifier parameter once",
            )
            .into());
        }
    };
    match (if_none_exist(headers)?, in_query) {
        (Some(h), Some(q)) if h != q => Err(Invalid::request(format!(
            "If-None-Exist names identifier {}|{} but the query string names {}|{}: give one condition",
            crate::routes::shown(&h.0),
            crate::routes::shown(&h.1),
            crate::routes::shown(&q.0),
            crate::routes::shown(&q.1)
        ))
        .into()),
        (h, q) => Ok(h.or(q)),
    }
}

/// The idempotency key a create is recorded under: the supplier and the identifier,
/// hashed, so two suppliers' identifiers never collide and the GP system sees no supplier data.
pub(crate) fn idempotency_key(client: &str, (system, value): &(String, String)) -> String {
    let mut h = Sha256::new();
    for part in [client, system.as_str(), value.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /Observation`.
pub(crate) async fn create_observation(
    app: &App,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let now = time::OffsetDateTime::now_utc();
    let conditional = create_condition(headers, query)?;
    let mut incoming = crate::write_body::observation(body, now)?;
    let identifier = match (conditional, incoming.identifier.take()) {
        (Some(h), Some(b)) if h != b => {
            return Err(Invalid::request(format!(
                "the condition (If-None-Exist or identifier parameter) names identifier {}|{} but the Observation's identifier[0] is {}|{}",
                crate::routes::shown(&h.0),
                crate::routes::shown(&h.1),
                crate::routes::shown(&b.0),
                crate::routes::shown(&b.1)
            ))
            .into());
        }
        (Some(i), _) | (None, Some(i)) => i,
        (None, None) => {
            return Err(Invalid::resource(
                "Observation.identifier",
                "is required (or an If-None-Exist: identifier=<system>|<value> header): it is how a retried create is recognised, so a reading is never recorded twice",
            )
            .into());
        }
    };
    keepable(&identifier)?;
    let nhs = incoming.nhs_number;
    let Released {
        practice, adapter, ..
    } = released_patient(app, nhs, ids, caller).await?;
    // What the patient's GP system cannot hold is refused, naming the element.
    incoming.fit_to(adapter.reading_support(), adapter.system().display_name())?;
    if let Some(id) = &incoming.observation.details.performer {
        let known = app
            .staff
            .read(adapter.as_ref(), &practice, id, &ids.call_context())
            .await
            .map_err(GatewayError::Adapter)?;
        if known.is_none() {
            return Err(Invalid::resource(
                "Observation.performer[0].reference",
                format!(
                    "Practitioner/{} is not a member of staff {} knows at practice {practice}: the performer must be a clinician of the patient's practice, as this API names them",
                    crate::routes::shown(id),
                    adapter.system().display_name()
                ),
            )
            .into());
        }
    }
    let mut observation = incoming.observation;
    observation.key = idempotency_key(caller.client_id().unwrap_or("-"), &identifier);
    // Kept with the reading in the GP record: every supplier reading it sees it.
    observation.identifier = Some(identifier.clone());
    let req = CreateObservationRequest {
        nhs_number: nhs,
        practice: practice.clone(),
        observation,
        context: ids.call_context(),
    };
    let result = adapter.create_observation(&req).await;
    app.records.invalidate(&practice, nhs).await;
    app.invalidator.publish(&practice, nhs).await;
    let created = result.map_err(GatewayError::Adapter)?;
    tracing::info!(
        supplier = caller.client_id().unwrap_or("-"),
        practice = %practice,
        created = created.created,
        entries = created.ids.len(),
        "observation written back"
    );
    let Some(first) = created.ids.first() else {
        return Err(GatewayError::Internal(
            "the GP system recorded the observation without an id".into(),
        )
        .into());
    };
    let status = if created.created {
        ids.facts
            .changed(gp_adapter::ChangeKind::ReadingRecorded, Some(first.clone()));
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    app.entries
        .remember(
            nhs,
            vec![(gp_adapter::ClinicalType::Observation, first.clone())],
        )
        .await;
    // The answer is the reading as the GP system now holds it, read back as any reader
    // will read it (a blood pressure: one panel), so its versionId is the one reads give.
    let held = app
        .records
        .area(
            adapter.as_ref(),
            &practice,
            nhs,
            gp_adapter::ClinicalType::Observation,
            &ids.call_context(),
        )
        .await;
    let recorded = match &held {
        Ok(area) => area.iter().find(|r| r.id() == first.as_str()).cloned(),
        Err(e) => {
            tracing::warn!(error = %e, "the observation written back could not be read back");
            None
        }
    };
    let Some(mut recorded) = recorded else {
        // Recorded, but not (yet) readable: answer what was written, with its id.
        tracing::warn!(%practice, "the observation written back is not in the next read");
        let mut resource = crate::write_body::parse_json(body)?;
        if let Some(o) = resource.as_object_mut() {
            o.insert("id".into(), first.clone().into());
            o.remove("meta");
        }
        let mut resp = fhir_response(status, serde_json::to_vec(&resource).unwrap_or_default());
        insert_location(&mut resp, &format!("{}/Observation/{first}", ids.base_url));
        return Ok(resp);
    };
    let version = recorded
        .meta()
        .and_then(|m| m.version_id.clone())
        .unwrap_or_else(|| recorded.stamp_content_version());
    // Recorded now: meta.lastUpdated and Last-Modified say so (a retry's first recording
    // time is not known, so it names none).
    if created.created
        && let Some(m) = recorded.meta_mut()
    {
        m.last_updated = now.replace_nanosecond(0).ok().and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    }
    let mut resp = crate::respond::entry(status, &recorded);
    insert_location(
        &mut resp,
        &format!("{}/Observation/{first}/_history/{version}", ids.base_url),
    );
    Ok(resp)
}

fn insert_location(resp: &mut Response<Full<Bytes>>, location: &str) {
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
}

/// What an `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// `*`: any current version (the resource exists).
    Any,
    /// `W/"v"` or `"v"`: the version `v`.
    Version(String),
}

impl IfMatch {
    /// True when `version` (the GP system's) is what this asks for: quoted as its
    /// `meta.versionId` (the ETag a read gives), or as the version itself (the ETag
    /// before versionIds).
    pub(crate) fn accepts(&self, version: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Version(v) => *v == gp_fhir::ids::version_id(version) || v == version,
        }
    }
}

impl std::fmt::Display for IfMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Version(v) => write!(f, "W/\"{}\"", crate::routes::shown(v)),
        }
    }
}

/// The `If-Match` header, if any.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, Invalid> {
    let Some(raw) = header_text(headers, "if-match")? else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(Some(IfMatch::Any));
    }
    match crate::respond::entity_tag_value(raw) {
        Some(v) => Ok(Some(IfMatch::Version(v.to_owned()))),
        None => Err(Invalid::request(
            "If-Match must be * or quote the ETag of a read, e.g. W/\"2026-11-01T09.3A40.3A00\"",
        )),
    }
}

/// `PATCH /Patient/{nhsNumber}` (`whole`: false) with a JSON Patch, a JSON Merge Patch
/// (or a partial resource) or a FHIRPath Patch, as its `Content-Type` says; or `PUT`
/// (`whole`: true) with the whole Patient, of which only the contact details may differ.
pub(crate) async fn update_patient(
    app: &App,
    id: &str,
    whole: bool,
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let nhs = NhsNumber::parse(id)?;
    let change = if whole {
        Change::put(id, body)?
    } else {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Change::patch(gp_fhir::format::patch_format(content_type)?, body)?
    };
    change_patient(app, nhs, headers, ids, caller, &change).await
}

/// Makes `change` to the patient's current record, whatever form it came in: `If-Match`
/// against the version read now (without one, the change is made to the version read
/// now, and the GP system refuses it if the record changes before the write), the
/// writable-element and UK Core checks, then one adapter write.
async fn change_patient(
    app: &App,
    nhs: NhsNumber,
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    change: &Change,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let expected = if_match(headers)?;
    let Released {
        record,
        practice,
        adapter,
        ..
    } = released_patient_fresh(app, nhs, ids, caller).await?;
    if let Some(asked) = &expected
        && !asked.accepts(&record.version)
    {
        return Err(PreconditionFailed(format!(
            "If-Match {asked} is not the current version W/\"{}\" of Patient/{nhs}: it changed since you read it; read it again and reapply your change",
            gp_fhir::ids::version_id(&record.version)
        ))
        .into());
    }
    let current = serde_json::from_slice::<serde_json::Value>(
        &Resource::Patient(crate::respond::patient_as_read(&record)).to_json(),
    )
    .map_err(|e| GatewayError::Internal(format!("patient JSON: {e}")))?;
    let new = change.apply(&current)?;
    let details = crate::patient_change::contact_details(&current, &new)?;
    let req = UpdateContactRequest {
        nhs_number: nhs,
        practice: practice.clone(),
        expected_version: record.version.clone(),
        details,
        context: ids.call_context(),
    };
    let result = adapter.update_contact(&req).await;
    app.records.invalidate(&practice, nhs).await;
    app.invalidator.publish(&practice, nhs).await;
    let version = result.map_err(GatewayError::Adapter)?;
    ids.facts
        .changed(gp_adapter::ChangeKind::ContactDetailsChanged, None);
    tracing::info!(
        supplier = caller.client_id().unwrap_or("-"),
        practice = %practice,
        "contact details written back"
    );
    let updated = released_patient_fresh(app, nhs, ids, caller).await?.record;
    if updated.version != version {
        tracing::warn!(%practice, "the GP system changed the record again straight after our update");
    }
    Ok(crate::respond::patient(StatusCode::OK, &updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_suppliers_and_identifiers() {
        let id = ("https://example.com/r".to_owned(), "1".to_owned());
        let a = idempotency_key("demo-consult", &id);
        assert_eq!(a.len(), 64);
        assert_eq!(a, idempotency_key("demo-consult", &id));
        assert_ne!(a, idempotency_key("demo-monitoring", &id));
        assert_ne!(
            idempotency_key("a", &("bc".into(), "d".into())),
            idempotency_key("ab", &("c".into(), "d".into()))
        );
    }

    #[test]
    fn identifiers_the_gp_systems_cannot_keep_exactly_are_refused() {
        let id = |s: &str, v: &str| (s.to_owned(), v.to_owned());
        assert!(keepable(&id("https://x.example/r", "42")).is_ok());
        let long = "x".repeat(201);
        for bad in [
            id("https://x.example/r", &long),
            id(&long, "42"),
            id("https://x.example/r", " 42"),
            id("https://x.example/r", ""),
        ] {
            let e = keepable(&bad).unwrap_err();
            assert_eq!(e.status, 422, "{bad:?}");
            assert!(
                e.path.starts_with("Observation.identifier[0]."),
                "{}",
                e.path
            );
        }
    }

    #[test]
    fn a_create_condition_may_be_in_the_query_string() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let status = |r: Result<Option<(String, String)>, Rescue>| r.unwrap_err().error.status();
        let none = HeaderMap::new();
        let id = Some(("https://x.example/r".to_owned(), "42".to_owned()));
        assert_eq!(
            create_condition(&none, &q(&[("identifier", "https://x.example/r|42")])).unwrap(),
            id
        );
        assert_eq!(
            create_condition(&none, &q(&[("_format", "json")])).unwrap(),
            None
        );
        let mut header = HeaderMap::new();
        header.insert(
            "if-none-exist",
            HeaderValue::from_static("identifier=https://x.example/r|42"),
        );
        assert_eq!(
            create_condition(&header, &q(&[("identifier", "https://x.example/r|42")])).unwrap(),
            id,
            "both, agreeing"
        );
        for (headers, query) in [
            (&header, q(&[("identifier", "https://x.example/r|43")])),
            (&none, q(&[("identifier", "42")])),
            (&none, q(&[("identifier", "a|1"), ("identifier", "a|2")])),
            (&none, q(&[("code", "1234")])),
        ] {
            assert_eq!(status(create_condition(headers, &query)), 400, "{query:?}");
        }
    }

    #[test]
    fn conditional_headers_parse_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            "if-none-exist",
            HeaderValue::from_static("identifier=https://x.example/r|42"),
        );
        assert_eq!(
            if_none_exist(&h).unwrap(),
            Some(("https://x.example/r".into(), "42".into()))
        );
        h.insert("if-none-exist", HeaderValue::from_static("code=1234"));
        assert_eq!(if_none_exist(&h).unwrap_err().status, 400);
        let mut h = HeaderMap::new();
        h.insert(
            "if-match",
            HeaderValue::from_static("W/\"2026-11-01T09:40:00\""),
        );
        let asked = if_match(&h).unwrap().unwrap();
        assert_eq!(asked, IfMatch::Version("2026-11-01T09:40:00".into()));
        assert!(asked.accepts("2026-11-01T09:40:00"), "the version itself");
        assert!(!asked.accepts("2026-11-01T09:40:01"));
        h.insert(
            "if-match",
            HeaderValue::from_static("W/\"2026-11-01T09.3A40.3A00\""),
        );
        let asked = if_match(&h).unwrap().unwrap();
        assert!(asked.accepts("2026-11-01T09:40:00"), "its meta.versionId");
        assert!(!asked.accepts("2026-11-01T09:40:01"));
        h.insert("if-match", HeaderValue::from_static("*"));
        assert_eq!(if_match(&h).unwrap(), Some(IfMatch::Any));
        assert!(IfMatch::Any.accepts("anything"));
        h.insert("if-match", HeaderValue::from_static("2026"));
        assert_eq!(if_match(&h).unwrap_err().status, 400);
    }
}
