//! SystmOne's appointment book (`docs/native-formats/tpp.md`, "Appointment book"): the
//! native calls, and the native ⇄ vendor-neutral mapping. Ids are SystmOne's numbers
//! (slots, sessions, appointments) and UIDs (staff, sites), times are UTC.
//!
//! Concurrency is SystmOne's own: a booking names the `Version` of each slot it books,
//! read just before, so a slot changed or taken since is refused (`409`), and an amend
//! or cancel carries the appointment's `Version` in `If-Match`. Every answer is mapped
//! whole or refused as [`TppDataError`], never half-mapped.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use gp_adapter::appointments::{
    AppointmentStatus, BookClinician, BookLocation, BookSession, BookSlot, DeliveryChannel,
    JobRole, NewAppointment, SlotStatus,
};
use gp_adapter::native::{Call, Method, NativeResponse, status_error};
use gp_adapter::time::UtcDateTime;
use gp_adapter::xml::Node;
use gp_adapter::{
    AdapterError, AppointmentBook, AppointmentChange, BookedAppointment, CallContext,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::client::{TppClient, XML, refusal};
use crate::error::TppDataError;
use crate::mapping::{
    At, Result, at_attr, attr, bool_value, child, document, escape, gender, is, iso_utc, opt,
    uid_attr,
};

/// The most slots SystmOne books (or reads by id) at a time.
pub const MAX_SLOTS: usize = 8;

/// The slots a search or a read by id answered, and each slot's `Version` (what a
/// booking must name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSearch {
    pub book: AppointmentBook,
    /// Slot id → its `Version`.
    pub versions: BTreeMap<String, u64>,
}

/// Which native call was refused: the same answer means something else for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Search,
    Book,
    Read,
    List,
    Change,
}

// ---- native calls --------------------------------------------------------------------

impl TppClient {
    /// `GET …/organisations/{ODS}/slots?from=…&to=…`: the slots starting in the range.
    pub async fn slots_in_range(
        &self,
        ods: &OdsCode,
        start: UtcDateTime,
        end: UtcDateTime,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/slots?from={}&to={}",
            ods.as_str(),
            start.to_rfc3339(),
            end.to_rfc3339()
        );
        let response = self.http.get(&path, ctx).await?;
        response.ok_body(|r| refused(Op::Search, ods, r))
    }

    /// `GET …/organisations/{ODS}/slots?slotIds=…`: the slots with these SlotIDs (digits).
    pub async fn slots_by_id(
        &self,
        ods: &OdsCode,
        ids: &[String],
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/slots?slotIds={}",
            ods.as_str(),
            ids.join(",")
        );
        let response = self.http.get(&path, ctx).await?;
        response.ok_body(|r| refused(Op::Book, ods, r))
    }

    /// `POST …/organisations/{ODS}/patients/{NHS}/appointments` with a
    /// `BookAppointmentRequest`: `(created, body)`. Never retried here.
    pub async fn book(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> std::result::Result<(bool, Bytes), AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/appointments",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((XML, body.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .created_body(|r| refused(Op::Book, ods, r))
    }

    /// `GET …/organisations/{ODS}/appointments/{AppointmentID}`; `None` when SystmOne
    /// holds no such appointment.
    pub async fn appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<Bytes>, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/appointments/{id}",
            ods.as_str()
        );
        let response = self.http.get(&path, ctx).await?;
        if response.status == 404 && native_code(&response).as_deref() == Some(NO_APPOINTMENT) {
            return Ok(None);
        }
        response.ok_body(|r| refused(Op::Read, ods, r)).map(Some)
    }

    /// `GET …/organisations/{ODS}/patients/{NHS}/appointments?from=…&to=…`.
    pub async fn patient_appointments(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        start: UtcDateTime,
        end: UtcDateTime,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/appointments?from={}&to={}",
            ods.as_str(),
            start.to_rfc3339(),
            end.to_rfc3339()
        );
        let response = self.http.get(&path, ctx).await?;
        response.ok_body(|r| refused(Op::List, ods, r))
    }

    /// `PUT …/appointments/{AppointmentID}` (amend) or `POST …/{AppointmentID}/cancel`,
    /// with `If-Match: {Version}`: the changed `<Appointment>`. Never retried here.
    pub async fn change_appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        version: u64,
        change: &AppointmentChange,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let base = format!(
            "/systmone/api/v1/organisations/{}/appointments/{id}",
            ods.as_str()
        );
        let (method, path) = match change {
            AppointmentChange::Amend { .. } => (Method::PUT, base),
            AppointmentChange::Cancel { .. } => (Method::POST, format!("{base}/cancel")),
        };
        let body = render_change(change);
        self.http
            .send(
                method,
                &path,
                Some((XML, body.into_bytes())),
                &[("if-match", version.to_string())],
                ctx,
            )
            .await?
            .ok_body(|r| refused(Op::Change, ods, r))
    }
}

const NO_APPOINTMENT: &str = "APPOINTMENT_NOT_FOUND";

fn native_code(response: &NativeResponse) -> Option<String> {
    refusal(response).0
}

/// Maps a refused appointment call. SystmOne's own codes first: a slot taken or changed
/// since read → [`AdapterError::SlotUnavailable`]; an appointment changed since its
/// version → [`AdapterError::VersionConflict`]; a `422` (a slot kept from third parties,
/// started already, not adjacent, a text too long, a cancelled appointment) or an unknown
/// slot in a booking → [`AdapterError::Unprocessable`]; an unknown appointment on a
/// change, or an unknown organisation where no patient is named →
/// [`AdapterError::NotFound`]. The rest by the shared status table, as the record reads
/// and writes map them (unknown patient → `PatientNotFound`, 5xx → `Unavailable`).
fn refused(op: Op, ods: &OdsCode, response: &NativeResponse) -> AdapterError {
    let system = crate::SYSTEM;
    let (code, detail) = refusal(response);
    match (response.status, code.as_deref()) {
        (409, Some("SLOT_UNAVAILABLE" | "SLOT_CHANGED")) => {
            AdapterError::SlotUnavailable { system, detail }
        }
        (409, Some("RECORD_MODIFIED")) if op == Op::Change => {
            AdapterError::VersionConflict { system, detail }
        }
        (422, Some(_)) if matches!(op, Op::Book | Op::Change) => {
            AdapterError::Unprocessable { system, detail }
        }
        (404, Some("SLOT_NOT_FOUND")) if op == Op::Book => {
            AdapterError::Unprocessable { system, detail }
        }
        (404, Some(NO_APPOINTMENT)) if op == Op::Change => AdapterError::NotFound {
            system,
            what: format!("such appointment at {ods}"),
        },
        (404, Some("ORGANISATION_NOT_FOUND"))
            if matches!(op, Op::Search | Op::Read | Op::Change) =>
        {
            AdapterError::NotFound {
                system,
                what: format!("practice {ods}"),
            }
        }
        (404, Some("PATIENT_NOT_FOUND" | "ORGANISATION_NOT_FOUND")) => {
            AdapterError::PatientNotFound
        }
        // A 409 or 422 that is not SystmOne's own answer (or not one this call can get)
        // is not trusted as one.
        (409 | 422, _) => AdapterError::Rejected { system, detail },
        (status, _) => {
            let call = if matches!(op, Op::Book | Op::Change) {
                Call::Write
            } else {
                Call::Read
            };
            status_error(system, call, status, false, detail)
        }
    }
}

// ---- ids and times -------------------------------------------------------------------

/// A SystmOne number (SlotID, SessionID, AppointmentID, Version): 1 to 18 digits, no
/// leading zero (so each number has one spelling, and ids compare as strings).
pub fn is_number(v: &str) -> bool {
    (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0')
}

pub(crate) fn number_attr(at: &At, n: Node, name: &str) -> Result<String> {
    let v = attr(n, name).ok_or_else(|| at.missing(&at_attr(name)))?;
    if is_number(v) {
        Ok(v.to_owned())
    } else {
        Err(at.invalid(
            &at_attr(name),
            format!("'{}' is not a SystmOne number", shown(v)),
        ))
    }
}

/// A `StaffUID` or `SiteUID` as a book id: lower case, braces dropped, and at most 56
/// characters, the longest id the gateway can prefix with an ODS code.
fn uid(at: &At, n: Node, name: &str) -> Result<String> {
    let id = uid_attr(at, n, name)?;
    if id.len() > 56 {
        return Err(at.invalid(&at_attr(name), "is longer than 56 characters"));
    }
    Ok(id)
}

pub(crate) fn utc_value(at: &At, what: &str, raw: &str) -> Result<UtcDateTime> {
    let (year, month, day, hour, minute, second) = iso_utc(raw).ok_or_else(|| {
        at.invalid(
            what,
            format!("'{}' is not a YYYY-MM-DDTHH:MM:SSZ date-time", shown(raw)),
        )
    })?;
    Ok(UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

pub(crate) fn utc_element(at: &At, n: Node, element: &'static str) -> Result<UtcDateTime> {
    utc_value(at, element, at.req(n, element)?)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `t` plus `minutes`, in UTC.
fn plus_minutes(t: UtcDateTime, minutes: i64) -> UtcDateTime {
    let days = days_from_civil(i64::from(t.year), i64::from(t.month), i64::from(t.day));
    let secs = days * 86_400
        + i64::from(t.hour) * 3600
        + i64::from(t.minute) * 60
        + i64::from(t.second)
        + minutes * 60;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Every part is in range by construction; the fallbacks are never taken.
    UtcDateTime {
        year: i32::try_from(year).unwrap_or(t.year),
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
        hour: u8::try_from(rem / 3600).unwrap_or(0),
        minute: u8::try_from(rem % 3600 / 60).unwrap_or(0),
        second: u8::try_from(rem % 60).unwrap_or(0),
    }
}

/// `Duration` (whole minutes, 1 to a day) after `start`.
fn end_after(at: &At, n: Node, start: UtcDateTime) -> Result<UtcDateTime> {
    let raw = at.req(n, "Duration")?;
    let minutes: i64 = raw
        .parse()
        .ok()
        .filter(|m| (1..=1440).contains(m))
        .ok_or_else(|| {
            at.invalid(
                "Duration",
                format!("'{}' is not a number of minutes (1 to 1440)", shown(raw)),
            )
        })?;
    Ok(plus_minutes(start, minutes))
}

fn channel(at: &At, n: Node) -> Result<DeliveryChannel> {
    match at.req(n, "DeliveryChannel")? {
        "FaceToFace" => Ok(DeliveryChannel::InPerson),
        "Telephone" => Ok(DeliveryChannel::Telephone),
        "Video" => Ok(DeliveryChannel::Video),
        other => Err(at.invalid(
            "DeliveryChannel",
            format!("'{}' is not FaceToFace, Telephone or Video", shown(other)),
        )),
    }
}

fn root_named<'a, 'i>(doc: &'a gp_adapter::xml::Document<'i>, name: &str) -> Result<Node<'a, 'i>> {
    let root = doc.root_element();
    if root.tag_name().name() != name {
        return Err(TppDataError::WrongRoot {
            found: root.tag_name().name().to_owned(),
        });
    }
    Ok(root)
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(move |c| is(c, name))
}

// ---- native → neutral ------------------------------------------------------------------

/// Maps a `<SlotSearchResponse>` of organisation `ods`: every slot's session, and every
/// session's clinician and site, must be in the answer.
pub fn map_slot_search(body: &[u8], ods: &OdsCode) -> Result<SlotSearch> {
    let doc = document(body)?;
    let root = root_named(&doc, "SlotSearchResponse")?;
    let top = At::DOC;
    let at = top.under("SlotSearchResponse");
    let org = attr(root, "OrganisationID").ok_or_else(|| at.missing("@OrganisationID"))?;
    if !org.eq_ignore_ascii_case(ods.as_str()) {
        return Err(at.invalid(
            "@OrganisationID",
            format!("the book is of {}, but {ods} was asked for", shown(org)),
        ));
    }
    let mut book = AppointmentBook::default();
    let sites_at = at.under("Sites");
    for (i, n) in children(at.node(root, "Sites")?, "Site").enumerate() {
        let at = sites_at.nth("Site", i + 1);
        let address = child(n, "Address");
        book.locations.push(BookLocation {
            id: uid(&at, n, "SiteUID")?,
            name: at.req(n, "Name")?.to_owned(),
            lines: address
                .map(|a| {
                    ["AddressLine1", "AddressLine2", "AddressLine3"]
                        .iter()
                        .filter_map(|l| opt(a, l))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            town: address
                .and_then(|a| opt(a, "AddressLine4"))
                .map(str::to_owned),
            postcode: address.and_then(|a| opt(a, "PostCode")).map(str::to_owned),
        });
    }
    let staff_at = at.under("Staff");
    for (i, n) in children(at.node(root, "Staff")?, "StaffMember").enumerate() {
        let at = staff_at.nth("StaffMember", i + 1);
        let role = match child(n, "JobRole") {
            None => None,
            Some(r) => Some(JobRole {
                code: attr(r, "Code")
                    .ok_or_else(|| at.missing("JobRole/@Code"))?
                    .to_owned(),
                display: opt(n, "JobRole").unwrap_or_default().to_owned(),
            }),
        };
        book.clinicians.push(BookClinician {
            id: uid(&at, n, "StaffUID")?,
            prefix: opt(n, "Title").map(str::to_owned),
            given: opt(n, "Forename").unwrap_or_default().to_owned(),
            family: at.req(n, "Surname")?.to_owned(),
            gender: gender(&at, n)?,
            sds_user_id: opt(n, "SmartcardID").map(str::to_owned),
            role,
        });
    }
    let sessions_at = at.under("Sessions");
    for (i, n) in children(at.node(root, "Sessions")?, "Session").enumerate() {
        let at = sessions_at.nth("Session", i + 1);
        let clinician = match attr(n, "StaffUID") {
            None => None,
            Some(_) => Some(uid(&at, n, "StaffUID")?),
        };
        let session = BookSession {
            id: number_attr(&at, n, "SessionID")?,
            name: at.req(n, "Name")?.to_owned(),
            clinician,
            location: uid(&at, n, "SiteUID")?,
            service: opt(n, "Service").map(str::to_owned),
            start: utc_element(&at, n, "StartDateTime")?,
            end: utc_element(&at, n, "EndDateTime")?,
        };
        if !book.locations.iter().any(|l| l.id == session.location) {
            return Err(at.invalid("@SiteUID", "names a site the answer does not hold"));
        }
        if let Some(c) = &session.clinician
            && !book.clinicians.iter().any(|x| &x.id == c)
        {
            return Err(at.invalid("@StaffUID", "names staff the answer does not hold"));
        }
        book.sessions.push(session);
    }
    let mut versions = BTreeMap::new();
    let slots_at = at.under("Slots");
    for (i, n) in children(at.node(root, "Slots")?, "Slot").enumerate() {
        let at = slots_at.nth("Slot", i + 1);
        let id = number_attr(&at, n, "SlotID")?;
        let session = number_attr(&at, n, "SessionID")?;
        if !book.sessions.iter().any(|s| s.id == session) {
            return Err(at.invalid("@SessionID", "names a session the answer does not hold"));
        }
        let raw_version = attr(n, "Version").ok_or_else(|| at.missing("@Version"))?;
        let version: u64 = raw_version.parse().map_err(|_| {
            at.invalid(
                "@Version",
                format!("'{}' is not a version number", shown(raw_version)),
            )
        })?;
        let start = utc_element(&at, n, "StartDateTime")?;
        let status = match at.req(n, "Status")? {
            "Available" => SlotStatus::Free,
            "Booked" => SlotStatus::Busy,
            "Embargoed" | "PracticeOnly" => SlotStatus::Unavailable,
            other => {
                return Err(at.invalid(
                    "Status",
                    format!(
                        "'{}' is not Available, Booked, Embargoed or PracticeOnly",
                        shown(other)
                    ),
                ));
            }
        };
        if versions.insert(id.clone(), version).is_some() {
            return Err(at.invalid("@SlotID", format!("slot {id} is listed twice")));
        }
        book.slots.push(BookSlot {
            id,
            session,
            start,
            end: end_after(&at, n, start)?,
            slot_type: at.req(n, "SlotType")?.to_owned(),
            channel: channel(&at, n)?,
            status,
        });
    }
    Ok(SlotSearch { book, versions })
}

/// Maps one `<Appointment>` element.
fn map_appointment(at: &At, n: Node) -> Result<BookedAppointment> {
    let id = number_attr(at, n, "AppointmentID")?;
    let version = number_attr(at, n, "Version")?;
    let raw_nhs = at.req(n, "NHSNumber")?;
    let nhs_number =
        NhsNumber::parse(raw_nhs).map_err(|e| at.invalid("NHSNumber", e.to_string()))?;
    let status = match at.req(n, "Status")? {
        "Booked" => AppointmentStatus::Booked,
        "Cancelled" => AppointmentStatus::Cancelled,
        other => {
            return Err(at.invalid(
                "Status",
                format!("'{}' is not Booked or Cancelled", shown(other)),
            ));
        }
    };
    let session_at = at.under("Session");
    let session = at.node(n, "Session")?;
    let clinician = match attr(session, "StaffUID") {
        None => None,
        Some(_) => Some(uid(&session_at, session, "StaffUID")?),
    };
    let location = match attr(session, "SiteUID") {
        None => None,
        Some(_) => Some(uid(&session_at, session, "SiteUID")?),
    };
    let slots_at = at.under("Slots");
    let slots = children(at.node(n, "Slots")?, "Slot")
        .enumerate()
        .map(|(i, s)| number_attr(&slots_at.nth("Slot", i + 1), s, "SlotID"))
        .collect::<Result<Vec<_>>>()?;
    if slots.is_empty() {
        return Err(at.missing("Slots/Slot"));
    }
    let start = utc_element(at, n, "StartDateTime")?;
    let channel = match child(n, "DeliveryChannel") {
        None => None,
        Some(_) => Some(channel(at, n)?),
    };
    let booked_by = match child(n, "BookingOrganisation") {
        None => None,
        Some(org) => {
            let raw =
                attr(org, "ODSCode").ok_or_else(|| at.missing("BookingOrganisation/@ODSCode"))?;
            Some(
                OdsCode::parse(raw)
                    .map_err(|e| at.invalid("BookingOrganisation/@ODSCode", e.to_string()))?,
            )
        }
    };
    let identifier = match child(n, "ExternalIdentifier") {
        None => None,
        Some(e) => {
            let system =
                attr(e, "System").ok_or_else(|| at.missing("ExternalIdentifier/@System"))?;
            let value =
                opt(n, "ExternalIdentifier").ok_or_else(|| at.missing("ExternalIdentifier"))?;
            Some((system.to_owned(), value.to_owned()))
        }
    };
    Ok(BookedAppointment {
        id,
        version,
        nhs_number,
        status,
        slots,
        session: number_attr(&session_at, session, "SessionID")?,
        location,
        clinician,
        start,
        end: end_after(at, n, start)?,
        slot_type: opt(n, "SlotType").map(str::to_owned),
        channel,
        description: opt(n, "Description").map(str::to_owned),
        comment: opt(n, "Comment").map(str::to_owned),
        cancellation_reason: opt(n, "CancellationReason").map(str::to_owned),
        created: utc_element(at, n, "BookedDateTime")?,
        booked_by,
        identifier,
    })
}

/// Maps an `<Appointment>` document (a read, an amend or a cancel).
pub fn map_appointment_document(body: &[u8]) -> Result<BookedAppointment> {
    let doc = document(body)?;
    let root = root_named(&doc, "Appointment")?;
    map_appointment(&At::DOC.under("Appointment"), root)
}

/// Maps a `<BookAppointmentResponse>`; `created` is what the HTTP status said (`201`),
/// which `@Created` must agree with.
pub fn map_book_response(body: &[u8], created: bool) -> Result<(BookedAppointment, bool)> {
    let doc = document(body)?;
    let root = root_named(&doc, "BookAppointmentResponse")?;
    let top = At::DOC;
    let at = top.under("BookAppointmentResponse");
    let said = bool_value(&at, root, "Created")?.ok_or_else(|| at.missing("@Created"))?;
    if said != created {
        return Err(at.invalid(
            "@Created",
            format!(
                "Created=\"{said}\" came with HTTP {}",
                if created { 201 } else { 200 }
            ),
        ));
    }
    let n = at.node(root, "Appointment")?;
    Ok((map_appointment(&at.under("Appointment"), n)?, created))
}

/// Maps a `<PatientAppointments>` list, which must be `nhs`'s, in time order.
pub fn map_patient_appointments(body: &[u8], nhs: NhsNumber) -> Result<Vec<BookedAppointment>> {
    let doc = document(body)?;
    let root = root_named(&doc, "PatientAppointments")?;
    let top = At::DOC;
    let at = top.under("PatientAppointments");
    let whose = at.req(root, "NHSNumber")?;
    if whose != nhs.to_string() {
        return Err(at.invalid(
            "NHSNumber",
            format!("the list is of {}, but {nhs} was asked for", shown(whose)),
        ));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, n) in children(root, "Appointment").enumerate() {
        let at = at.nth("Appointment", i + 1);
        let a = map_appointment(&at, n)?;
        if a.nhs_number != nhs {
            return Err(at.invalid("NHSNumber", "an appointment of another patient"));
        }
        if !seen.insert(a.id.clone()) {
            return Err(at.invalid("@AppointmentID", "listed twice"));
        }
        out.push(a);
    }
    out.sort_by(|a, b| (a.start, a.id.len(), &a.id).cmp(&(b.start, b.id.len(), &b.id)));
    Ok(out)
}

// ---- neutral → native ------------------------------------------------------------------

/// The `BookAppointmentRequest` for `a`, naming each slot with the `Version` it was read at.
pub fn render_booking(a: &NewAppointment, versions: &[u64]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BookAppointmentRequest ExternalReference=\"{}\">\n",
        escape(&a.key)
    );
    for (id, version) in a.slots.iter().zip(versions) {
        xml.push_str(&format!(
            "  <Slot SlotID=\"{}\" Version=\"{version}\"/>\n",
            escape(id)
        ));
    }
    for (name, value) in [("Description", &a.description), ("Comment", &a.comment)] {
        if let Some(v) = value {
            xml.push_str(&format!("  <{name}>{}</{name}>\n", escape(v)));
        }
    }
    xml.push_str(&format!(
        "  <BookingOrganisation ODSCode=\"{}\">{}</BookingOrganisation>\n",
        escape(a.booked_by.as_str()),
        escape(&a.booked_by_name)
    ));
    if let Some((system, value)) = &a.identifier {
        xml.push_str(&format!(
            "  <ExternalIdentifier System=\"{}\">{}</ExternalIdentifier>\n",
            escape(system),
            escape(value)
        ));
    }
    xml.push_str("</BookAppointmentRequest>\n");
    xml
}

/// The `AmendAppointmentRequest` or `CancelAppointmentRequest` for `change`.
pub fn render_change(change: &AppointmentChange) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match change {
        AppointmentChange::Amend {
            description,
            comment,
        } => {
            xml.push_str("<AmendAppointmentRequest>\n");
            for (name, value) in [("Description", description), ("Comment", comment)] {
                if let Some(v) = value {
                    xml.push_str(&format!("  <{name}>{}</{name}>\n", escape(v)));
                }
            }
            xml.push_str("</AmendAppointmentRequest>\n");
        }
        AppointmentChange::Cancel { reason } => {
            xml.push_str(&format!(
                "<CancelAppointmentRequest>\n  <Reason>{}</Reason>\n</CancelAppointmentRequest>\n",
                escape(reason)
            ));
        }
    }
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> UtcDateTime {
        UtcDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second: 0,
        }
    }

    #[test]
    fn minutes_carry_over_days_months_and_years() {
        assert_eq!(
            plus_minutes(t(2026, 12, 7, 9, 50), 20),
            t(2026, 12, 7, 10, 10)
        );
        assert_eq!(
            plus_minutes(t(2026, 12, 31, 23, 55), 10),
            t(2027, 1, 1, 0, 5)
        );
        assert_eq!(
            plus_minutes(t(2028, 2, 28, 23, 30), 60),
            t(2028, 2, 29, 0, 30)
        );
        assert_eq!(
            plus_minutes(t(2027, 2, 28, 23, 30), 60),
            t(2027, 3, 1, 0, 30)
        );
    }

    const SEARCH: &str = r#"<SlotSearchResponse OrganisationID="A81001">
  <Sites><Site SiteUID="{0C3F-A}"><Name>Main</Name><Address><AddressLine1>1 High St</AddressLine1>
    <AddressLine4>Leeds</AddressLine4><PostCode>LS1 4AP</PostCode></Address></Site></Sites>
  <Staff><StaffMember StaffUID="5D1E-B"><Title>Dr</Title><Forename>Amir</Forename><Surname>Khan</Surname>
    <Sex>Male</Sex><JobRole Code="R0260">General Medical Practitioner</JobRole></StaffMember></Staff>
  <Sessions><Session SessionID="41" StaffUID="5d1e-b" SiteUID="0c3f-a"><Name>Morning surgery</Name>
    <StartDateTime>2026-12-07T08:30:00Z</StartDateTime><EndDateTime>2026-12-07T12:00:00Z</EndDateTime></Session></Sessions>
  <Slots><Slot SlotID="1207" SessionID="41" Version="3"><StartDateTime>2026-12-07T11:50:00Z</StartDateTime>
    <Duration>10</Duration><SlotType>GP consultation</SlotType><DeliveryChannel>Video</DeliveryChannel>
    <Status>PracticeOnly</Status></Slot></Slots>
</SlotSearchResponse>"#;

    #[test]
    fn a_slot_search_maps_whole_or_not_at_all() {
        let ods = OdsCode::parse("A81001").unwrap();
        let found = map_slot_search(SEARCH.as_bytes(), &ods).unwrap();
        let slot = &found.book.slots[0];
        assert_eq!((slot.id.as_str(), slot.session.as_str()), ("1207", "41"));
        assert_eq!(slot.end, t(2026, 12, 7, 12, 0));
        assert_eq!(slot.status, SlotStatus::Unavailable);
        assert_eq!(slot.channel, DeliveryChannel::Video);
        assert_eq!(found.versions.get("1207"), Some(&3));
        assert_eq!(found.book.sessions[0].clinician.as_deref(), Some("5d1e-b"));
        assert_eq!(found.book.locations[0].id, "0c3f-a");
        assert_eq!(found.book.locations[0].town.as_deref(), Some("Leeds"));
        let role = found.book.clinicians[0].role.clone().unwrap();
        assert_eq!(
            (role.code.as_str(), role.display.as_str()),
            ("R0260", "General Medical Practitioner")
        );
        let other = OdsCode::parse("B82002").unwrap();
        assert!(map_slot_search(SEARCH.as_bytes(), &other).is_err());
        for (from, to) in [
            (r#"SiteUID="0c3f-a">"#, r#"SiteUID="ffff">"#),
            (r#"StaffUID="5d1e-b""#, r#"StaffUID="eeee""#),
            (r#"SessionID="41" Version"#, r#"SessionID="42" Version"#),
            ("<Duration>10", "<Duration>0"),
            ("<Status>PracticeOnly", "<Status>Free"),
            ("<DeliveryChannel>Video", "<DeliveryChannel>In-person"),
            ("T11:50:00Z", "T11:50Z"),
            (r#"SlotID="1207""#, r#"SlotID="0127""#),
        ] {
            let broken = SEARCH.replacen(from, to, 1);
            assert_ne!(broken, SEARCH, "{from}");
            assert!(map_slot_search(broken.as_bytes(), &ods).is_err(), "{to}");
        }
    }

    fn resp(status: u16, code: &str) -> NativeResponse {
        NativeResponse {
            status,
            body: Bytes::from(format!(
                "<ErrorResponse><ErrorCode>{code}</ErrorCode><Description>x</Description></ErrorResponse>"
            )),
            content_type: None,
            headers: Default::default(),
        }
    }

    #[test]
    fn refusals_map_by_call_and_code() {
        let ods = OdsCode::parse("A81001").unwrap();
        assert!(matches!(
            refused(Op::Book, &ods, &resp(409, "SLOT_CHANGED")),
            AdapterError::SlotUnavailable { .. }
        ));
        assert!(matches!(
            refused(Op::Change, &ods, &resp(409, "RECORD_MODIFIED")),
            AdapterError::VersionConflict { .. }
        ));
        assert!(matches!(
            refused(Op::Book, &ods, &resp(422, "SLOT_IN_PAST")),
            AdapterError::Unprocessable { detail, .. } if detail.contains("SLOT_IN_PAST")
        ));
        assert!(matches!(
            refused(Op::Search, &ods, &resp(404, "ORGANISATION_NOT_FOUND")),
            AdapterError::NotFound { what, .. } if what == "practice A81001"
        ));
        assert_eq!(
            refused(Op::List, &ods, &resp(404, "PATIENT_NOT_FOUND")),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            refused(Op::Book, &ods, &resp(409, "SOMETHING_ELSE")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            refused(Op::Read, &ods, &resp(503, "SERVICE_UNAVAILABLE")),
            AdapterError::Unavailable { .. }
        ));
    }
}
