//! Appointment management (GP Connect Appointment Management 1.2's rules, in R4): free
//! slots, booking, reading, a patient's appointments, amending and cancelling.
//!
//! Ids are `{ODS}-{native id}` (`gp_adapter::appointments::fhir`), so each request is
//! routed to its practice without state; an id naming a practice the supplier is not
//! paired with reads exactly as an unknown one. Nothing here is cached: free slots
//! change by the second, and a booking decision is never made on a stale answer. Every
//! patient passes the release policy (`release`) as on every other route.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use gp_adapter::appointments::fhir::{
    self as map, BOOKING_ORGANISATION_EXTENSION, SlotFilter, SlotIncludes,
};
use gp_adapter::appointments::{
    AppointmentChange, AppointmentRequest, AppointmentStatus, BookRequest, BookedAppointment,
    ChangeAppointmentRequest, DeliveryChannel, NewAppointment, PatientAppointmentsRequest,
    SlotSearchRequest, SlotStatus,
};
use gp_adapter::time::UtcDateTime;
use gp_adapter::{Adapter, AdapterError};
use gp_fhir::bundle::Searchset;
use gp_fhir::model::Resource;
use gp_fhir::search::{Paging, SearchError};
use gp_fhir::{FhirError, IssueType, NhsNumber, OdsCode, SpineCode};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::{GatewayError, Rescue};
use crate::release::released_patient;
use crate::write_body::Invalid;
use crate::writes::{IfMatch, PreconditionFailed};

/// The widest free-slot search (GP Connect's rule).
pub const MAX_SLOT_SEARCH_DAYS: i64 = 14;
/// The widest search of a patient's appointments.
pub const MAX_APPOINTMENT_SEARCH_DAYS: i64 = 31;
/// Practices searched for free slots at once when a search spans several.
const FAN_OUT: usize = 4;
/// GP Connect's limits on the booker's text.
const MAX_DESCRIPTION: usize = 100;
const MAX_COMMENT: usize = 500;
/// The ODS code identifier system, as `practice` and the booking organisation take it.
const ODS_SYSTEM: &str = gp_fhir::ids::ODS_CODE_SYSTEM;
/// Elements GP Connect forbids in a booking: the reason for an appointment, its
/// specialty and category belong to the clinical record, not to a third party's booking.
const FORBIDDEN_IN_BOOKING: &[&str] = &[
    "reasonCode",
    "reasonReference",
    "specialty",
    "serviceCategory",
    "appointmentType",
    "priority",
    "basedOn",
    "supportingInformation",
    "patientInstruction",
    "requestedPeriod",
    "minutesDuration",
    "cancelationReason",
];
/// What an amend or cancel may change.
const CHANGEABLE: &[&str] = &["description", "comment", "status", "cancelationReason"];

// ---------------------------------------------------------------------------------------
// Time: instants as seconds since 1970, and UK days.

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn epoch(t: UtcDateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day) * 86_400
        + i64::from(t.hour) * 3600
        + i64::from(t.minute) * 60
        + i64::from(t.second)
}

fn from_epoch(s: i64) -> UtcDateTime {
    let (days, secs) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    UtcDateTime {
        year,
        month,
        day,
        hour: (secs / 3600) as u8,
        minute: (secs % 3600 / 60) as u8,
        second: (secs % 60) as u8,
    }
}

fn now_epoch() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The instant a UK day (`y-m-d`) begins.
fn uk_midnight((y, m, d): (i32, u8, u8)) -> i64 {
    let midnight = days_from_civil(y, m, d) * 86_400;
    if gp_fhir::date::is_bst_local(y, m, d, 0) {
        midnight - 3600
    } else {
        midnight
    }
}

/// A date search value's bound: a date alone is a whole UK day (`from_day_end`: the
/// instant after it ends), a dateTime is its instant.
pub(crate) fn date_bound(value: &str, day_end: bool) -> Option<i64> {
    if value.contains('T') {
        return map::parse_instant(value).map(epoch);
    }
    let d = gp_fhir::date::PartialDate::parse(value).ok()?;
    let (Some(m), Some(day)) = (d.month, d.day) else {
        return None;
    };
    let start = (d.year, m, day);
    Some(if day_end {
        uk_midnight(gp_fhir::date::day_after(start))
    } else {
        uk_midnight(start)
    })
}

// ---------------------------------------------------------------------------------------
// Refusals.

/// 422 INVALID_PARAMETER naming the parameter in `expression`.
fn bad_parameter(name: &str, why: impl std::fmt::Display) -> Invalid {
    Invalid {
        status: 422,
        code: SpineCode::InvalidParameter,
        issue: IssueType::Invalid,
        path: name.to_owned(),
        message: format!("search parameter '{name}': {why}"),
    }
}

/// A supplier the registry holds no ODS code for: it cannot be recorded as the booking
/// organisation, so it cannot book.
#[derive(Debug, thiserror::Error)]
#[error(
    "supplier {0} has no ODS code in the supplier registry, and a booking records its booker's ODS code in the GP system: ask the gateway's operator to add ods_code to your registry entry"
)]
pub struct NoBookingOrganisation(pub(crate) String);

impl FhirError for NoBookingOrganisation {
    fn status(&self) -> u16 {
        403
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::AccessDenied
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Forbidden
    }
}

/// Elements an amend or cancel may not change.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} may not be changed: an appointment's description and comment may be amended, and a booked appointment cancelled (status cancelled with a cancelationReason); send every other element as a read gives it, or book a new appointment",
    .0.join(", ")
)]
pub struct Unchangeable(Vec<String>);

impl FhirError for Unchangeable {
    fn status(&self) -> u16 {
        422
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::InvalidResource
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Invalid
    }
    fn expression(&self) -> Vec<String> {
        self.0.clone()
    }
}

pub(crate) fn unknown(resource_type: &str, id: &str) -> GatewayError {
    GatewayError::NotFound(format!(
        "no {resource_type}/{} is known to you",
        gp_fhir::text::shown(id)
    ))
}

/// The practice and adapter of an `{ODS}-{native}` id, when the caller may see that
/// practice; anything else is "unknown" (not paired looks exactly like not served).
pub(crate) fn practice_of<'a>(
    app: &'a App,
    id: &'a str,
    caller: &Caller,
) -> Option<(OdsCode, &'a str, std::sync::Arc<dyn Adapter>)> {
    let (ods, native) = map::split_id(id)?;
    let adapter = app
        .practices
        .get(&ods)
        .and_then(|p| app.adapters.get(&p.system))?
        .clone();
    if !caller.paired_with(&ods) {
        tracing::info!(reason = "not-paired", supplier = caller.client_id().unwrap_or("-"), practice = %ods, "id withheld");
        return None;
    }
    Some((ods, native, adapter))
}

fn searchset_response(
    resource_type: &str,
    query: &[(String, String)],
    ids: &RequestIds,
    matches: Vec<Resource>,
    included: Vec<Resource>,
    outcomes: Vec<Value>,
) -> Response<Full<Bytes>> {
    let total = matches.len() as u32;
    let last_updated = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_count" | "_offset"))
        .cloned()
        .collect();
    let bundle = Searchset {
        base_url: &ids.base_url,
        resource_type,
        params: &params,
        // Every match in one page: a free-slot answer is one instant's view.
        paging: Paging {
            count: total.max(1),
            offset: 0,
        },
        total,
        id: &ids.request_id,
        last_updated: &last_updated,
    }
    .build_with(matches, included);
    let mut value = serde_json::to_value(&bundle).unwrap_or_default();
    if !outcomes.is_empty()
        && let Some(o) = value.as_object_mut()
    {
        let entries = o.entry("entry").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = entries.as_array_mut() {
            list.extend(
                outcomes
                    .into_iter()
                    .map(|r| json!({ "resource": r, "search": { "mode": "outcome" } })),
            );
        }
    }
    crate::respond::fhir(
        StatusCode::OK,
        serde_json::to_vec(&value).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------
// GET /Slot

/// A free-slot search, as parsed.
#[derive(Debug, Clone, PartialEq)]
struct SlotSearch {
    start: i64,
    end: i64,
    practice: Option<OdsCode>,
    filter_channel: Option<DeliveryChannel>,
    service_type: Option<String>,
    includes: SlotIncludes,
    organization: bool,
}

fn one<'a>(query: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, Invalid> {
    let mut found = query.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(bad_parameter(name, "may appear only once"));
    }
    Ok(first)
}

fn parse_slot_search(query: &[(String, String)], now: i64) -> Result<SlotSearch, Rescue> {
    const KNOWN: &[&str] = &[
        "start",
        "end",
        "status",
        "_include",
        "_include:iterate",
        "_include:recurse",
        "_include:recursive",
        "practice",
        "delivery-channel",
        "service-type",
        "_format",
    ];
    if let Some((k, _)) = query.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(
            SearchError::UnknownParameter(crate::routes::shown(k), KNOWN.join(", ")).into(),
        );
    }
    let start_value = one(query, "start")?
        .ok_or_else(|| bad_parameter("start", "is required: ge{date}, the first day searched"))?;
    let end_value = one(query, "end")?
        .ok_or_else(|| bad_parameter("end", "is required: le{date}, the last day searched"))?;
    let start = match start_value.split_at_checked(2) {
        Some(("ge" | "gt", v)) => date_bound(v, false),
        _ => None,
    }
    .ok_or_else(|| {
        bad_parameter(
            "start",
            "expected ge{date} or ge{dateTime}, e.g. ge2026-12-07",
        )
    })?;
    let end = match end_value.split_at_checked(2) {
        Some(("le", v)) => date_bound(v, true),
        Some(("lt", v)) => date_bound(v, false),
        _ => None,
    }
    .ok_or_else(|| {
        bad_parameter(
            "end",
            "expected le{date} or le{dateTime}, e.g. le2026-12-20",
        )
    })?;
    if start >= end {
        return Err(bad_parameter("start", "the range starts after it ends").into());
    }
    if end - start > MAX_SLOT_SEARCH_DAYS * 86_400 {
        return Err(bad_parameter(
            "end",
            format!("a search spans at most {MAX_SLOT_SEARCH_DAYS} days"),
        )
        .into());
    }
    match one(query, "status")? {
        Some("free") => {}
        Some(other) => {
            return Err(bad_parameter(
                "status",
                format!(
                    "only free slots are offered to third parties (status=free), not '{}'",
                    crate::routes::shown(other)
                ),
            )
            .into());
        }
        None => return Err(bad_parameter("status", "is required: status=free").into()),
    }
    let mut includes = SlotIncludes::default();
    let mut organization = false;
    for (k, v) in query
        .iter()
        .filter(|(k, _)| crate::routes::SLOT_INCLUDE_PARAMETERS.contains(&k.as_str()))
    {
        match v.as_str() {
            "Slot:schedule" | "Slot:schedule:Schedule" => includes.schedule = true,
            "Schedule:actor:Practitioner" => includes.practitioner = true,
            "Schedule:actor:PractitionerRole" => includes.practitioner_role = true,
            "Schedule:actor:Location" => includes.location = true,
            "Schedule:actor" => {
                includes.practitioner = true;
                includes.practitioner_role = true;
                includes.location = true;
            }
            "Location:managingOrganization"
            | "Location:organization"
            | "Location:organization:Organization" => organization = true,
            other => {
                return Err(bad_parameter(
                    k,
                    format!(
                        "'{}' is not offered: Slot:schedule, Schedule:actor:Practitioner, Schedule:actor:PractitionerRole, Schedule:actor:Location, Location:managingOrganization",
                        crate::routes::shown(other)
                    ),
                )
                .into());
            }
        }
    }
    if !includes.schedule {
        return Err(bad_parameter(
            "_include",
            "_include=Slot:schedule is required: a slot is booked with its schedule's location",
        )
        .into());
    }
    let practice = one(query, "practice")?
        .map(|v| {
            let code = match v.split_once('|') {
                Some((ODS_SYSTEM, code)) => code,
                Some(_) => {
                    return Err(bad_parameter(
                        "practice",
                        format!("a practice is named by its ODS code ({ODS_SYSTEM}|{{code}} or the code alone)"),
                    ));
                }
                None => v,
            };
            OdsCode::parse(code).map_err(|e| bad_parameter("practice", e))
        })
        .transpose()?;
    let filter_channel = one(query, "delivery-channel")?
        .map(|v| {
            DeliveryChannel::from_code(v).ok_or_else(|| {
                bad_parameter("delivery-channel", "expected In-person, Telephone or Video")
            })
        })
        .transpose()?;
    let service_type = one(query, "service-type")?
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned);
    Ok(SlotSearch {
        start: start.max(now),
        end,
        practice,
        filter_channel,
        service_type,
        includes,
        organization,
    })
}

/// `GET /Slot`: the free slots of every practice the supplier is paired with (or the
/// one `practice` names). Practices are asked [`FAN_OUT`] at a time; one that cannot
/// answer does not hide the others: its failure is an OperationOutcome entry
/// (`search.mode` `outcome`, severity warning) naming it, and only when every practice
/// asked fails is the search refused with the first failure.
pub(crate) async fn search_slots(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let now = now_epoch();
    let search = parse_slot_search(query, now)?;
    let practices: Vec<(OdsCode, std::sync::Arc<dyn Adapter>)> = app
        .practices
        .iter()
        .filter(|(ods, _)| search.practice.as_ref().is_none_or(|p| p == *ods))
        .filter(|(ods, _)| caller.paired_with(ods))
        // A range already over offers nothing: no GP system is asked.
        .filter(|_| search.start < search.end)
        .filter_map(|(ods, p)| Some((ods.clone(), app.adapters.get(&p.system)?.clone())))
        .collect();
    if let Some(p) = &search.practice {
        ids.facts.practice(p.as_str());
    }
    let filter = SlotFilter {
        channel: search.filter_channel,
        service_type: search.service_type.clone(),
        not_before: Some(from_epoch(now)),
    };
    type Answer = (OdsCode, Result<gp_adapter::AppointmentBook, AdapterError>);
    // Boxed, so the stream's item type names no adapter lifetime.
    let mut calls: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>> =
        Vec::with_capacity(practices.len());
    for (ods, adapter) in practices {
        let req = SlotSearchRequest {
            practice: ods.clone(),
            start: from_epoch(search.start),
            end: from_epoch(search.end),
            context: ids.call_context(),
        };
        calls.push(Box::pin(async move {
            let answer = adapter.search_slots(&req).await;
            (ods, answer)
        }));
    }
    let answers: Vec<Answer> = stream::iter(calls).buffered(FAN_OUT).collect().await;
    let asked = answers.len();
    let mut matches = Vec::new();
    let mut included = Vec::new();
    let mut outcomes = Vec::new();
    let mut first_failure = None;
    for (ods, answer) in answers {
        match answer {
            Ok(book) => {
                let found = map::free_slots(&ods, &book, &filter, search.includes);
                if search.organization
                    && found
                        .included
                        .iter()
                        .any(|r| matches!(r, Resource::Location(_)))
                    && let Some(org) = crate::include::practice_organization(app, &ods)
                {
                    included.extend(found.included);
                    included.push(Resource::Organization(org));
                } else {
                    included.extend(found.included);
                }
                matches.extend(found.slots);
            }
            Err(e) => {
                tracing::warn!(practice = %ods, error = %e, "a practice's free slots could not be read");
                outcomes.push(json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{
                        "severity": "warning",
                        "code": "incomplete",
                        "diagnostics": format!("the free slots of practice {ods} could not be read now ({}): this answer leaves them out; search again later", e.status()),
                    }]
                }));
                first_failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_failure
        && outcomes.len() == asked
    {
        return Err(GatewayError::Adapter(e).into());
    }
    // Each Practitioner, PractitionerRole and Location once, even when two practices
    // share a clinician's id.
    let mut seen = HashSet::new();
    included.retain(|r| seen.insert(format!("{}/{}", r.resource_type(), r.id())));
    for r in &included {
        if let Resource::Schedule(s) = r
            && let Some((ods, _)) = map::split_id(&s.id)
        {
            let people = app.entries.unknown_people([r]);
            app.entries.remember_people(&ods, people).await;
        }
    }
    Ok(searchset_response(
        "Slot", query, ids, matches, included, outcomes,
    ))
}

// ---------------------------------------------------------------------------------------
// POST /Appointment

/// A booking, as the body asks for it (nothing looked up yet).
#[derive(Debug, Clone, PartialEq)]
struct Booking {
    nhs: NhsNumber,
    /// `(ODS part, native id)` of each slot, in body order.
    slots: Vec<(OdsCode, String)>,
    start: UtcDateTime,
    end: UtcDateTime,
    location: String,
    description: Option<String>,
    comment: Option<String>,
    identifier: Option<(String, String)>,
    /// The ODS code and name of a contained booking organisation.
    organisation: Option<(OdsCode, Option<String>)>,
}

fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).filter(|v| !v.is_null())
}

fn text_field(o: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, Invalid> {
    match field(o, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Invalid::resource(
            format!("Appointment.{name}"),
            "must not be empty: leave it out instead",
        )),
        Some(Value::String(s)) if s.chars().count() > max => Err(Invalid::resource(
            format!("Appointment.{name}"),
            format!("is at most {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid::resource(
            format!("Appointment.{name}"),
            "must be a string",
        )),
    }
}

fn instant_field(o: &Map<String, Value>, name: &str) -> Result<UtcDateTime, Invalid> {
    let path = format!("Appointment.{name}");
    let s = field(o, name)
        .ok_or_else(|| Invalid::resource(&path, "is required"))?
        .as_str()
        .ok_or_else(|| Invalid::resource(&path, "must be an instant"))?;
    map::parse_instant(s).ok_or_else(|| {
        Invalid::resource(
            &path,
            "must be an instant with its offset, e.g. 2026-12-07T09:00:00+00:00",
        )
    })
}

/// The NHS number a patient reference names: `Patient/{nhs}`, or an NHS number
/// identifier.
fn patient_reference(actor: &Value) -> Option<Result<NhsNumber, gp_fhir::NhsNumberError>> {
    if let Some(r) = actor.get("reference").and_then(Value::as_str) {
        return r.strip_prefix("Patient/").map(NhsNumber::parse);
    }
    let id = actor.get("identifier")?;
    (id.get("system").and_then(Value::as_str) == Some(gp_fhir::ids::NHS_NUMBER_SYSTEM))
        .then(|| NhsNumber::parse(id.get("value").and_then(Value::as_str).unwrap_or("")))
}

fn parse_booking(body: &[u8], now: i64) -> Result<Booking, Rescue> {
    let value = crate::write_body::parse_json(body)?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Appointment") {
        return Err(Invalid::request("POST /Appointment takes an Appointment").into());
    }
    let o = crate::write_body::object(&value, "Appointment")?;
    if let Some(name) = FORBIDDEN_IN_BOOKING.iter().find(|n| field(o, n).is_some()) {
        return Err(Invalid::resource(
            format!("Appointment.{name}"),
            "may not be sent by a booking supplier (GP Connect): the practice records why and with whom, not the booker",
        )
        .into());
    }
    match field(o, "status").and_then(Value::as_str) {
        Some("booked") => {}
        _ => {
            return Err(
                Invalid::resource("Appointment.status", "a booking is status booked").into(),
            );
        }
    }
    let refs = field(o, "slot")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Invalid::resource("Appointment.slot", "is required: the Slot(s) to book"))?;
    let mut slots = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let slot = r
            .get("reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Slot/"))
            .and_then(map::split_id)
            .ok_or_else(|| {
                Invalid::resource(
                    format!("Appointment.slot[{i}]"),
                    "must reference a Slot a free-slot search gave (Slot/{id})",
                )
            })?;
        if slots.iter().any(|(o, n)| *o == slot.0 && n == slot.1) {
            return Err(
                Invalid::resource(format!("Appointment.slot[{i}]"), "names a slot twice").into(),
            );
        }
        slots.push((slot.0, slot.1.to_owned()));
    }
    let start = instant_field(o, "start")?;
    let end = instant_field(o, "end")?;
    if epoch(start) <= now {
        return Err(Invalid::resource(
            "Appointment.start",
            "is in the past: only future slots can be booked",
        )
        .into());
    }
    if epoch(end) <= epoch(start) {
        return Err(Invalid::resource("Appointment.end", "must be after start").into());
    }
    if epoch(end) - epoch(start) > 86_400 {
        return Err(Invalid::resource(
            "Appointment.end",
            "an appointment's slots are adjacent slots of one session: at most a day",
        )
        .into());
    }
    match field(o, "created").and_then(Value::as_str) {
        Some(s) if gp_fhir::date::PartialDate::parse(s).is_ok() => {}
        _ => {
            return Err(Invalid::resource(
                "Appointment.created",
                "is required: when the booking was made (a dateTime)",
            )
            .into());
        }
    }
    let description = text_field(o, "description", MAX_DESCRIPTION)?;
    let comment = text_field(o, "comment", MAX_COMMENT)?;
    let participants = field(o, "participant")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Invalid::resource(
                "Appointment.participant",
                "is required: the patient (Patient/{nhsNumber}) and the location (Location/{id})",
            )
        })?;
    let mut nhs = None;
    let mut location = None;
    for (i, p) in participants.iter().enumerate() {
        let Some(actor) = p.get("actor") else {
            continue;
        };
        if let Some(found) = patient_reference(actor) {
            let n = found.map_err(|e| {
                Invalid::resource(format!("Appointment.participant[{i}].actor"), e.to_string())
            })?;
            if nhs.is_some_and(|m| m != n) {
                return Err(Invalid::resource(
                    format!("Appointment.participant[{i}].actor"),
                    "an appointment is for one patient",
                )
                .into());
            }
            nhs = Some(n);
        } else if let Some(l) = actor
            .get("reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Location/"))
        {
            location = Some(l.to_owned());
        }
    }
    let nhs = nhs.ok_or_else(|| {
        Invalid::resource(
            "Appointment.participant",
            "names no patient: add a participant whose actor is Patient/{nhsNumber}",
        )
    })?;
    let location = location.ok_or_else(|| {
        Invalid::resource(
            "Appointment.participant",
            "names no location: add a participant whose actor is the Location of the slots' Schedule",
        )
    })?;
    let identifier = match field(o, "identifier").and_then(Value::as_array) {
        Some(ids) => match ids.first() {
            Some(i) => match (
                i.get("system").and_then(Value::as_str),
                i.get("value").and_then(Value::as_str),
            ) {
                (Some(s), Some(v)) if !s.is_empty() && !v.is_empty() => {
                    Some((s.to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(Invalid::resource(
                        "Appointment.identifier[0]",
                        "needs a system and a value",
                    )
                    .into());
                }
            },
            None => None,
        },
        None => None,
    };
    let organisation = booking_organisation(o)?;
    Ok(Booking {
        nhs,
        slots,
        start,
        end,
        location,
        description,
        comment,
        identifier,
        organisation,
    })
}

/// The contained Organization the booking organisation extension refers to: its ODS
/// code and name.
fn booking_organisation(
    o: &Map<String, Value>,
) -> Result<Option<(OdsCode, Option<String>)>, Invalid> {
    let Some((i, ext)) = field(o, "extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(_, e)| {
            e.get("url").and_then(Value::as_str) == Some(BOOKING_ORGANISATION_EXTENSION)
        })
    else {
        return Ok(None);
    };
    let path = format!("Appointment.extension[{i}].valueReference");
    let local = ext
        .pointer("/valueReference/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .ok_or_else(|| Invalid::resource(&path, "must refer to a contained Organization (#id)"))?;
    let (c, org) = field(o, "contained")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(_, r)| {
            r.get("resourceType").and_then(Value::as_str) == Some("Organization")
                && r.get("id").and_then(Value::as_str) == Some(local)
        })
        .ok_or_else(|| Invalid::resource(&path, "refers to no contained Organization"))?;
    let ods = org
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|id| id.get("system").and_then(Value::as_str) == Some(ODS_SYSTEM))
        .and_then(|id| id.get("value").and_then(Value::as_str))
        .and_then(|v| OdsCode::parse(v).ok())
        .ok_or_else(|| {
            Invalid::resource(
                format!("Appointment.contained[{c}].identifier"),
                format!("the booking organisation needs its ODS code ({ODS_SYSTEM})"),
            )
        })?;
    let name = org.get("name").and_then(Value::as_str).map(str::to_owned);
    Ok(Some((ods, name)))
}

/// The booking organisation recorded with a booking: the supplier registry's ODS code
/// and name (a contained one must match). The sandbox's open mode has no registry
/// entry: there the contained Organization is what is recorded, and it is required.
fn booker(
    caller: &Caller,
    asked: Option<(OdsCode, Option<String>)>,
) -> Result<(OdsCode, String), Rescue> {
    match caller.booking_organisation() {
        Some(Ok((ods, name))) => match asked {
            Some((given, _)) if given != ods => Err(Invalid::resource(
                "Appointment.contained",
                format!(
                    "the booking organisation's ODS code {given} is not yours ({ods}, as the supplier registry holds it)"
                ),
            )
            .into()),
            _ => Ok((ods, name)),
        },
        Some(Err(client)) => Err(NoBookingOrganisation(client).into()),
        None => match asked {
            Some((ods, name)) => Ok((ods.clone(), name.unwrap_or_else(|| ods.to_string()))),
            None => Err(Invalid::resource(
                "Appointment.extension",
                format!(
                    "without a supplier (open sandbox mode) the booking organisation must be given: a contained Organization with its ODS code, referred to by {BOOKING_ORGANISATION_EXTENSION}"
                ),
            )
            .into()),
        },
    }
}

/// `POST /Appointment`.
pub(crate) async fn book(
    app: &App,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let now = now_epoch();
    let conditional = crate::writes::create_condition(headers, query)?;
    let booking = parse_booking(body, now)?;
    let identifier = match (conditional, booking.identifier.clone()) {
        (Some(h), Some(b)) if h != b => {
            return Err(Invalid::request(format!(
                "the condition (If-None-Exist or identifier parameter) names identifier {}|{} but the Appointment's identifier[0] is {}|{}",
                crate::routes::shown(&h.0),
                crate::routes::shown(&h.1),
                crate::routes::shown(&b.0),
                crate::routes::shown(&b.1)
            ))
            .into());
        }
        (h, b) => h.or(b),
    };
    let (booked_by, booked_by_name) = booker(caller, booking.organisation.clone())?;
    let released = released_patient(app, booking.nhs, ids, caller).await?;
    let practice = released.practice.clone();
    for (i, (ods, _)) in booking.slots.iter().enumerate() {
        if *ods != practice {
            return Err(Invalid::resource(
                format!("Appointment.slot[{i}]"),
                "is not a slot of the patient's practice: a patient books at their own practice",
            )
            .into());
        }
    }
    // The slots as the GP system holds them now (never a cached view): the checks
    // below give clear refusals; the GP system's own check decides any race.
    let book = released
        .adapter
        .search_slots(&SlotSearchRequest {
            practice: practice.clone(),
            start: from_epoch(epoch(booking.start) - 86_400),
            end: from_epoch(epoch(booking.end) + 86_400),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    check_slots(&practice, &booking, &book)?;
    let key = match &identifier {
        Some(id) => crate::writes::idempotency_key(caller.client_id().unwrap_or("-"), id),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let req = BookRequest {
        practice: practice.clone(),
        appointment: NewAppointment {
            key,
            identifier,
            nhs_number: booking.nhs,
            slots: booking.slots.iter().map(|(_, n)| n.clone()).collect(),
            description: booking.description,
            comment: booking.comment,
            booked_by,
            booked_by_name,
        },
        context: ids.call_context(),
    };
    let booked = released
        .adapter
        .book_appointment(&req)
        .await
        .map_err(GatewayError::Adapter)?;
    tracing::info!(
        supplier = caller.client_id().unwrap_or("-"),
        practice = %practice,
        created = booked.created,
        "appointment booked"
    );
    let status = if booked.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut appointment = map::appointment(&practice, &booked.appointment, None);
    if booked.created {
        ids.facts.changed(
            gp_adapter::ChangeKind::AppointmentBooked,
            Some(appointment.id.clone()),
        );
    }
    if booked.created
        && let Some(m) = appointment.meta.as_mut()
    {
        m.last_updated = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
    }
    let location = format!(
        "{}/Appointment/{}/_history/{}",
        ids.base_url,
        appointment.id,
        gp_fhir::ids::version_id(&booked.appointment.version)
    );
    let mut resp = crate::respond::entry(status, &Resource::Appointment(appointment));
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The booking's slots against the book: known and offered to third parties, adjacent
/// on one session with one channel and type, matching start and end, at the location.
fn check_slots(
    practice: &OdsCode,
    booking: &Booking,
    book: &gp_adapter::AppointmentBook,
) -> Result<(), Invalid> {
    let mut slots = Vec::with_capacity(booking.slots.len());
    for (i, (_, native)) in booking.slots.iter().enumerate() {
        let slot = book
            .slots
            .iter()
            .find(|s| s.id == *native)
            .filter(|s| s.status != SlotStatus::Unavailable)
            .ok_or_else(|| {
                Invalid::resource(
                    format!("Appointment.slot[{i}]"),
                    "is not a slot offered for booking: search free slots again",
                )
            })?;
        // A taken slot goes on to the GP system: a retried booking (same identifier)
        // is answered there with the appointment it made; any other is a 409.
        slots.push(slot);
    }
    slots.sort_by_key(|s| s.start);
    for pair in slots.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.end != b.start
            || a.session != b.session
            || a.channel != b.channel
            || a.slot_type != b.slot_type
        {
            return Err(Invalid::resource(
                "Appointment.slot",
                "several slots are booked together only when adjacent, in one schedule, with one delivery channel and slot type",
            ));
        }
    }
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return Err(Invalid::resource("Appointment.slot", "is required"));
    };
    if first.start != booking.start {
        return Err(Invalid::resource(
            "Appointment.start",
            format!(
                "must be the first slot's start, {}",
                map::instant(first.start)
            ),
        ));
    }
    if last.end != booking.end {
        return Err(Invalid::resource(
            "Appointment.end",
            format!("must be the last slot's end, {}", map::instant(last.end)),
        ));
    }
    let site = book
        .sessions
        .iter()
        .find(|s| s.id == first.session)
        .map(|s| map::fhir_id(practice, &s.location));
    if site.as_deref() != Some(booking.location.as_str()) {
        return Err(Invalid::resource(
            "Appointment.participant",
            format!(
                "the location must be the slots' schedule's, Location/{}",
                site.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// GET /Appointment/{id}, GET /Appointment?patient=…

/// The appointment `id` as the GP system holds it now, when the caller may see it and
/// its patient: anything else is an unknown id (404).
async fn held(
    app: &App,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<(OdsCode, std::sync::Arc<dyn Adapter>, BookedAppointment), Rescue> {
    let (ods, native, adapter) =
        practice_of(app, id, caller).ok_or_else(|| unknown("Appointment", id))?;
    ids.facts.practice(ods.as_str());
    let found = adapter
        .read_appointment(&AppointmentRequest {
            practice: ods.clone(),
            id: native.to_owned(),
            context: ids.call_context(),
        })
        .await;
    let appointment = match found {
        Ok(Some(a)) => a,
        Ok(None) | Err(AdapterError::NotFound { .. }) => {
            return Err(unknown("Appointment", id).into());
        }
        Err(e) => return Err(GatewayError::Adapter(e).into()),
    };
    // The patient's release rules, as on every patient route; a withheld patient's
    // appointment reads exactly as an unknown id.
    match released_patient(app, appointment.nhs_number, ids, caller).await {
        Ok(_) => Ok((ods, adapter, appointment)),
        Err(GatewayError::NotFound(_)) => Err(unknown("Appointment", id).into()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /Appointment/{id}`.
pub(crate) async fn read(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let (ods, _, appointment) = held(app, id, ids, caller).await?;
    let version_id = gp_fhir::ids::version_id(&appointment.version);
    if crate::respond::unchanged(headers, &version_id) {
        return Ok(crate::respond::not_modified(&version_id));
    }
    let resource = Resource::Appointment(map::appointment(&ods, &appointment, None));
    Ok(crate::respond::entry(StatusCode::OK, &resource))
}

/// `GET /Appointment/{id}/_history/{vid}`: the current version only.
pub(crate) async fn vread(
    app: &App,
    id: &str,
    vid: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let (ods, _, appointment) = held(app, id, ids, caller).await?;
    let current = gp_fhir::ids::version_id(&appointment.version);
    if current != vid {
        return Err(GatewayError::NotFound(format!(
            "Appointment/{}/_history/{} is not kept: GP systems keep only an appointment's current version, which is {current}; read Appointment/{}",
            gp_fhir::text::shown(id),
            gp_fhir::text::shown(vid),
            gp_fhir::text::shown(id)
        ))
        .into());
    }
    let resource = Resource::Appointment(map::appointment(&ods, &appointment, None));
    Ok(crate::respond::entry(StatusCode::OK, &resource))
}

/// `GET /Appointment?patient=…&date=ge…&date=le…`: booked and cancelled appointments
/// overlapping a future range of at most [`MAX_APPOINTMENT_SEARCH_DAYS`] days.
pub(crate) async fn search(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    const KNOWN: &[&str] = &["patient", "patient:identifier", "date", "_format"];
    if let Some((k, _)) = query.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(
            SearchError::UnknownParameter(crate::routes::shown(k), KNOWN.join(", ")).into(),
        );
    }
    let patients: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "patient" || k == "patient:identifier")
        .map(|(_, v)| v.as_str())
        .collect();
    let raw = match patients.as_slice() {
        [one] => *one,
        [] => return Err(SearchError::Missing("patient").into()),
        _ => return Err(SearchError::Repeated("patient".into()).into()),
    };
    let nhs_text = raw
        .strip_prefix("Patient/")
        .or_else(|| raw.strip_prefix(&format!("{}|", gp_fhir::ids::NHS_NUMBER_SYSTEM)))
        .unwrap_or(raw);
    let nhs = NhsNumber::parse(nhs_text).map_err(SearchError::from)?;
    let (mut from, mut to) = (None, None);
    for (_, v) in query.iter().filter(|(k, _)| k == "date") {
        match v.split_at_checked(2) {
            Some(("ge" | "gt", d)) if from.is_none() => from = date_bound(d, false),
            Some(("le", d)) if to.is_none() => to = date_bound(d, true),
            Some(("lt", d)) if to.is_none() => to = date_bound(d, false),
            _ => {
                return Err(bad_parameter(
                    "date",
                    "give the range as date=ge{date}&date=le{date}, once each",
                )
                .into());
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(
            bad_parameter("date", "the range is required: date=ge{date}&date=le{date}").into(),
        );
    };
    let today = {
        let n = from_epoch(now_epoch()).uk_local();
        uk_midnight((n.year, n.month, n.day))
    };
    if from < today {
        return Err(bad_parameter(
            "date",
            "the range starts in the past: appointments are searched from today on (GP Connect)",
        )
        .into());
    }
    if to <= from {
        return Err(bad_parameter("date", "the range ends before it starts").into());
    }
    if to - from > MAX_APPOINTMENT_SEARCH_DAYS * 86_400 {
        return Err(bad_parameter(
            "date",
            format!("a search spans at most {MAX_APPOINTMENT_SEARCH_DAYS} days"),
        )
        .into());
    }
    let released = released_patient(app, nhs, ids, caller).await?;
    let found = released
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: released.practice.clone(),
            nhs_number: nhs,
            start: from_epoch(from),
            end: from_epoch(to),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    let matches = found
        .iter()
        .filter(|a| a.nhs_number == nhs)
        .map(|a| Resource::Appointment(map::appointment(&released.practice, a, None)))
        .collect();
    Ok(searchset_response(
        "Appointment",
        query,
        ids,
        matches,
        Vec::new(),
        Vec::new(),
    ))
}

// ---------------------------------------------------------------------------------------
// PUT /Appointment/{id}, PATCH /Appointment/{id}

/// How a change came.
enum Sent {
    /// `PUT`: the whole new Appointment.
    Whole(Value),
    /// `PATCH` with a JSON Patch.
    JsonPatch(json_patch::Patch),
    /// `PATCH` with a JSON Merge Patch (or a partial Appointment).
    Merge(Value),
}

fn sent(id: &str, whole: bool, headers: &HeaderMap, body: &[u8]) -> Result<Sent, Invalid> {
    if whole {
        let value = crate::write_body::parse_json(body)?;
        if value.get("resourceType").and_then(Value::as_str) != Some("Appointment") {
            return Err(Invalid::request(format!(
                "PUT /Appointment/{} takes an Appointment",
                crate::routes::shown(id)
            )));
        }
        if value.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Invalid::request(format!(
                "the Appointment's id is not the id in the URL, {}: an update keeps the id",
                crate::routes::shown(id)
            )));
        }
        return Ok(Sent::Whole(value));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format =
        gp_fhir::format::patch_format(content_type).map_err(|e| Invalid::request(e.to_string()))?;
    let value =
        gp_fhir::validate::precheck_json(body).map_err(|e| Invalid::request(e.to_string()))?;
    match format {
        gp_fhir::format::PatchFormat::JsonPatch => serde_json::from_value(value)
            .map(Sent::JsonPatch)
            .map_err(|e| {
                Invalid::request(format!(
                    "a JSON Patch is an array of RFC 6902 operations: {e}"
                ))
            }),
        _ if value.get("resourceType").and_then(Value::as_str) == Some("Parameters") => {
            Err(Invalid::request(
                "FHIRPath Patch is not supported for Appointment: send a JSON Patch (application/json-patch+json) or a JSON Merge Patch",
            ))
        }
        _ if value.is_object() => Ok(Sent::Merge(value)),
        _ => Err(Invalid::request(
            "a merge patch is a JSON object: the Appointment elements to change",
        )),
    }
}

/// `PUT` (`whole`) or `PATCH /Appointment/{id}`: amend the description and comment, or
/// cancel. `If-Match` names the version the change is made against (412 when stale);
/// without it, a PUT body's `meta.versionId`, else the version read now (the GP system
/// still refuses the change if the appointment changes before it is written).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn change(
    app: &App,
    id: &str,
    whole: bool,
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let sent = sent(id, whole, headers, body)?;
    let expected = crate::writes::if_match(headers)?;
    let (ods, adapter, current) = held(app, id, ids, caller).await?;
    let stale = |asked: String| -> Rescue {
        PreconditionFailed(format!(
            "{asked} is not the current version W/\"{}\" of Appointment/{}: it changed since you read it; read it again and reapply your change",
            gp_fhir::ids::version_id(&current.version),
            crate::routes::shown(id)
        ))
        .into()
    };
    match (&expected, &sent) {
        (Some(asked), _) if !asked.accepts(&current.version) => {
            return Err(stale(format!("If-Match {asked}")));
        }
        (None, Sent::Whole(v)) => {
            if let Some(vid) = v.pointer("/meta/versionId").and_then(Value::as_str)
                && !IfMatch::Version(vid.to_owned()).accepts(&current.version)
            {
                return Err(stale(format!(
                    "meta.versionId {}",
                    crate::routes::shown(vid)
                )));
            }
        }
        _ => {}
    }
    let was = serde_json::to_value(Resource::Appointment(map::appointment(
        &ods, &current, None,
    )))
    .map_err(|e| GatewayError::Internal(format!("appointment JSON: {e}")))?;
    let now = match sent {
        Sent::Whole(v) => v,
        Sent::JsonPatch(p) => {
            let mut doc = was.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| {
                Invalid::resource("Appointment", format!("the JSON Patch does not apply: {e}"))
            })?;
            doc
        }
        Sent::Merge(m) => {
            let mut doc = was.clone();
            json_patch::merge(&mut doc, &m);
            doc
        }
    };
    let Some(change) = appointment_change(&was, &now, current.status)? else {
        // Nothing changed: answered as it stands.
        let resource = Resource::Appointment(map::appointment(&ods, &current, None));
        return Ok(crate::respond::entry(StatusCode::OK, &resource));
    };
    let changed = adapter
        .change_appointment(&ChangeAppointmentRequest {
            practice: ods.clone(),
            id: current.id.clone(),
            expected_version: current.version.clone(),
            change,
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    tracing::info!(
        supplier = caller.client_id().unwrap_or("-"),
        practice = %ods,
        cancelled = changed.status == AppointmentStatus::Cancelled,
        "appointment changed"
    );
    let appointment = map::appointment(&ods, &changed, None);
    let kind = if changed.status == AppointmentStatus::Cancelled {
        gp_adapter::ChangeKind::AppointmentCancelled
    } else {
        gp_adapter::ChangeKind::AppointmentAmended
    };
    ids.facts.changed(kind, Some(appointment.id.clone()));
    let resource = Resource::Appointment(appointment);
    Ok(crate::respond::entry(StatusCode::OK, &resource))
}

/// What the GP system is asked to do for a new Appointment `now` against the current
/// `was`: only description and comment may be amended, and a booked appointment
/// cancelled with a reason; `None` when nothing differs.
fn appointment_change(
    was: &Value,
    now: &Value,
    status: AppointmentStatus,
) -> Result<Option<AppointmentChange>, Rescue> {
    let was = crate::write_body::object(was, "Appointment")?;
    let now = crate::write_body::object(now, "Appointment")?;
    let mut keys: Vec<&String> = was.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| !CHANGEABLE.contains(&k.as_str()))
        .filter(|k| !(matches!(k.as_str(), "meta" | "text")))
        .filter(|k| was.get(*k) != now.get(*k))
        .map(|k| format!("Appointment.{}", crate::routes::shown(k)))
        .collect();
    if !differing.is_empty() {
        return Err(Unchangeable(differing).into());
    }
    let changed = |k: &str| was.get(k) != now.get(k);
    if !CHANGEABLE.iter().any(|k| changed(k)) {
        return Ok(None);
    }
    if status == AppointmentStatus::Cancelled {
        let first = CHANGEABLE
            .iter()
            .find(|k| changed(k))
            .map_or("status", |k| k);
        return Err(Invalid::resource(
            format!("Appointment.{first}"),
            "a cancelled appointment cannot be changed",
        )
        .into());
    }
    let description = text_field(now, "description", MAX_DESCRIPTION)?;
    let comment = text_field(now, "comment", MAX_COMMENT)?;
    match now.get("status").and_then(Value::as_str) {
        Some("booked") => {
            if field(now, "cancelationReason").is_some() {
                return Err(Invalid::resource(
                    "Appointment.cancelationReason",
                    "is given only with status cancelled",
                )
                .into());
            }
            Ok(Some(AppointmentChange::Amend {
                description,
                comment,
            }))
        }
        Some("cancelled") => {
            for k in ["description", "comment"] {
                if changed(k) {
                    return Err(Invalid::resource(
                        format!("Appointment.{k}"),
                        "a cancel changes nothing else: amend first, then cancel",
                    )
                    .into());
                }
            }
            let reason = now
                .get("cancelationReason")
                .and_then(|r| r.get("text"))
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Invalid::resource(
                        "Appointment.cancelationReason",
                        "a cancel needs a reason: cancelationReason.text",
                    )
                })?;
            if reason.chars().count() > MAX_COMMENT {
                return Err(Invalid::resource(
                    "Appointment.cancelationReason",
                    format!("is at most {MAX_COMMENT} characters"),
                )
                .into());
            }
            Ok(Some(AppointmentChange::Cancel {
                reason: reason.to_owned(),
            }))
        }
        _ => Err(Invalid::resource(
            "Appointment.status",
            "an appointment may become cancelled, nothing else",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn instants_round_trip_through_seconds() {
        for s in [0, 951_782_400, 1_798_675_200, 1_782_864_000 + 3599] {
            assert_eq!(epoch(from_epoch(s)), s);
        }
        assert_eq!(
            epoch(map::parse_instant("2026-12-07T09:00:00+00:00").unwrap()),
            1_796_634_000
        );
    }

    #[test]
    fn slot_searches_are_refused_naming_the_parameter() {
        let now = 0;
        let good = [
            ("start", "ge2026-12-07"),
            ("end", "le2026-12-20"),
            ("status", "free"),
            ("_include", "Slot:schedule"),
        ];
        let s = parse_slot_search(&q(&good), now).unwrap();
        assert_eq!((s.end - s.start) / 86_400, 14, "14 whole UK days");
        let refused = |pairs: &[(&str, &str)]| {
            let e = parse_slot_search(&q(pairs), now).unwrap_err().error;
            (e.status(), e.expression())
        };
        let mut wide = good;
        wide[1] = ("end", "le2026-12-21");
        assert_eq!(refused(&wide), (422, vec!["end".to_owned()]));
        let mut backwards = good;
        backwards[1] = ("end", "le2026-12-01");
        assert_eq!(refused(&backwards), (422, vec!["start".to_owned()]));
        assert_eq!(
            refused(&good[..3]),
            (422, vec!["_include".to_owned()]),
            "no _include=Slot:schedule"
        );
        assert_eq!(
            refused(&[good[0], good[1], good[3]]),
            (422, vec!["status".to_owned()])
        );
        let mut busy = good;
        busy[2] = ("status", "busy");
        assert_eq!(refused(&busy), (422, vec!["status".to_owned()]));
        let with = |extra: (&'static str, &'static str)| {
            let mut v = good.to_vec();
            v.push(extra);
            v
        };
        assert_eq!(
            refused(&with(("practice", "https://example.org|B82617"))),
            (422, vec!["practice".to_owned()])
        );
        assert_eq!(
            refused(&with(("delivery-channel", "Carrier pigeon"))),
            (422, vec!["delivery-channel".to_owned()])
        );
        let s = parse_slot_search(
            &q(&with((
                "practice",
                "https://fhir.nhs.uk/Id/ods-organization-code|b82617",
            ))),
            now,
        )
        .unwrap();
        assert_eq!(s.practice.unwrap().as_str(), "B82617");
        // GP Connect's :recurse, R4's :iterate and fhirpy's recursive=True spelling.
        for modifier in ["_include:recurse", "_include:iterate", "_include:recursive"] {
            let s = parse_slot_search(&q(&with((modifier, "Location:managingOrganization"))), now)
                .unwrap();
            assert!(s.organization, "{modifier}");
        }
    }

    #[test]
    fn only_description_comment_and_a_cancel_may_change() {
        let was = json!({
            "resourceType": "Appointment", "id": "A1-1", "status": "booked",
            "start": "2026-12-07T09:00:00+00:00", "description": "Cough",
        });
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = was.clone();
            f(&mut v);
            appointment_change(&was, &v, AppointmentStatus::Booked)
        };
        assert_eq!(with(&|_| {}).unwrap(), None);
        assert_eq!(
            with(&|v| v["comment"] = json!("Bring inhaler")).unwrap(),
            Some(AppointmentChange::Amend {
                description: Some("Cough".into()),
                comment: Some("Bring inhaler".into())
            })
        );
        let e = with(&|v| v["start"] = json!("2026-12-07T10:00:00+00:00")).unwrap_err();
        assert_eq!(e.error.status(), 422);
        assert_eq!(e.error.expression(), ["Appointment.start"]);
        let e = with(&|v| v["status"] = json!("cancelled")).unwrap_err();
        assert_eq!(e.error.expression(), ["Appointment.cancelationReason"]);
        assert_eq!(
            with(&|v| {
                v["status"] = json!("cancelled");
                v["cancelationReason"] = json!({"text": "Feeling better"});
            })
            .unwrap(),
            Some(AppointmentChange::Cancel {
                reason: "Feeling better".into()
            })
        );
        let mut cancelled = was.clone();
        cancelled["comment"] = json!("x");
        let e = appointment_change(&was, &cancelled, AppointmentStatus::Cancelled).unwrap_err();
        assert_eq!(e.error.status(), 422);
        let long = "x".repeat(101);
        let e = with(&|v| v["description"] = json!(long)).unwrap_err();
        assert_eq!(e.error.expression(), ["Appointment.description"]);
    }
}
