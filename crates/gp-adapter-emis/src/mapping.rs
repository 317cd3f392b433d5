//! EMIS Open MedicalRecord XML → UK Core R4. Pure functions, no I/O.
//!
//! The whole record is mapped or nothing is: any element that is missing or malformed
//! fails the record with an [`EmisDataError`] naming it, so a caller never sees a
//! half-mapped resource. The format is `docs/native-formats/emis.md`.

use gp_fhir::text::shown;
use std::collections::HashSet;

use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::{fhir_date, fhir_year, fhir_year_month, local_date_time};
use gp_adapter::uk_core::{self, meta};
use gp_adapter::vital_signs::{self, PanelLink};
use gp_adapter::xml::{Document, Marked, Node, SkipItems};
use gp_adapter::{AdapterError, Coded, ContactDetails, NewObservation, PatientFlags, UtcDateTime};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Condition,
    ContactPoint, Dosage, Encounter, EncounterParticipant, HumanName, Identifier, Immunization,
    ImmunizationPerformer, MedicationStatement, NhsVerification, Observation, Organization,
    Patient, PatientCommunication, Period, Practitioner, ProtocolApplied, Quantity, Reference,
    Resource, SDS_USER_ID_SYSTEM,
};
use gp_fhir::{NhsNumber, OdsCode};

use crate::error::EmisDataError;

pub use crate::NS;
/// Base of the identifier systems holding EMIS GUIDs (`{base}{element}-guid`).
pub const EMIS_ID_BASE: &str = "https://emis.com/Id/";
/// GMC reference number of a doctor.
pub use gp_adapter::uk_core::GMC_SYSTEM;

/// A mapped MedicalRecord.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    pub nhs_number: NhsNumber,
    pub ods: OdsCode,
    pub patient: Patient,
    pub organization: Organization,
    /// The usual GP, when the record names one.
    pub practitioner: Option<Practitioner>,
    /// `Registration/LastModified` as a FHIR instant: changes whenever demographics change.
    pub version: String,
    pub flags: PatientFlags,
    /// Every clinical entry, in document order.
    pub clinical: Vec<Resource>,
}

type Result<T> = std::result::Result<T, EmisDataError>;

/// A native XML body (bytes as received) as a document.
pub(crate) fn document(body: &[u8]) -> Result<Document<'_>> {
    document_skipping(body, &[], &[])
}

/// [`document`], the root's child elements named in `skip` built without their content
/// where that is plainly safe ([`Document::parse_data_skipping`]).
fn document_skipping<'b>(
    body: &'b [u8],
    skip: &[&'static str],
    items: &[SkipItems],
) -> Result<Document<'b>> {
    let text = std::str::from_utf8(body).map_err(|e| EmisDataError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Document::parse_data_skipping_items(text, skip, items)
        .map_err(|e| EmisDataError::MalformedXml(e.to_string()))
}

/// Maps a MedicalRecord body (bytes as received) to UK Core.
pub fn map_record(body: &[u8]) -> Result<MappedRecord> {
    map_record_for(body, Want::Everything)
}

/// What a read needs of a MedicalRecord (see [`Want`]).
pub use gp_adapter::Want;

/// Maps what `want` asks of a MedicalRecord (see [`Want`]).
pub fn map_record_for(body: &[u8], want: Want) -> Result<MappedRecord> {
    if want == Want::Demographics
        && let Some(head) = demographics_head(body)
        && let Ok(doc) = Document::parse_data(&head)
        && let Ok(record) = map_root(doc.root_element(), want)
    {
        return Ok(record);
    }
    // A search reads only its own area's lists: the others are not built.
    let (skip, items) = match want {
        Want::Area(_) => (unread_lists(want), unread_items(want)),
        Want::Everything | Want::Demographics => (Vec::new(), Vec::new()),
    };
    let doc = document_skipping(body, &skip, &items)?;
    let root = doc.root_element();
    if root.tag_name().name() != "MedicalRecord" || root.tag_name().namespace() != Some(NS) {
        return Err(EmisDataError::WrongRoot {
            found: qualified(root),
        });
    }
    map_root(root, want)
}

/// The items [`map_root`] does not read for `want`, in the lists it reads: the events
/// whose `EventType` maps to another resource type (an Observation search builds no
/// Problem or Immunisation event), and, unless Encounters are wanted, all but the `GUID`
/// of each consultation (what its events refer to).
fn unread_items(want: Want) -> Vec<SkipItems> {
    let values: Vec<&'static str> = EVENT_KINDS
        .iter()
        .filter(|(_, t)| !want.takes(t))
        .map(|(kind, _)| *kind)
        .collect();
    let mut items = Vec::new();
    if values.len() < EVENT_KINDS.len() {
        items.push(SkipItems {
            list: "EventList",
            item: "Event",
            marker: "EventType",
            marked: Marked::Reading(values),
        });
    }
    if !want.takes("Encounter") {
        items.push(SkipItems {
            list: "ConsultationList",
            item: "Consultation",
            marker: "GUID",
            marked: Marked::First,
        });
    }
    items
}

/// The clinical lists [`map_root`] does not read for `want`: those of other areas (an
/// event's area still reads the consultations, whose ids its events refer to).
fn unread_lists(want: Want) -> Vec<&'static str> {
    let events = EVENT_TYPES.iter().any(|t| want.takes(t));
    LISTS
        .iter()
        .filter(|(list, types)| {
            let read = types.iter().any(|t| want.takes(t)) || events && *list == "ConsultationList";
            !read
        })
        .map(|(list, _)| *list)
        .collect()
}

/// Maps a `<Person>` document (a people read) to a UK Core Practitioner, as the
/// record's `PeopleList/Person` is mapped.
pub fn map_person_document(body: &[u8]) -> Result<Practitioner> {
    let doc = document(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "Person" || root.tag_name().namespace() != Some(NS) {
        return Err(EmisDataError::Invalid {
            path: "Person".into(),
            reason: format!(
                "the root element is <{}>, expected <Person> in namespace {NS}",
                qualified(root)
            ),
        });
    }
    let at = At::root("Person");
    let id = guid(&at, root, "GUID")?;
    map_person(&at, root, id)
}

/// Reads an EMIS `<Error>` document's `(Code, Message)`, if the body is one.
pub fn parse_error_document(body: &[u8]) -> Option<(String, String)> {
    let doc = Document::parse_data(std::str::from_utf8(body).ok()?).ok()?;
    let root = doc.root_element();
    if root.tag_name().name() != "Error" {
        return None;
    }
    let code = text(child(root, "Code"))?.to_owned();
    let message = text(child(root, "Message")).unwrap_or_default().to_owned();
    Some((code, message))
}

fn qualified(n: Node) -> String {
    match n.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", n.tag_name().name()),
        None => n.tag_name().name().to_owned(),
    }
}

// ---- element access ------------------------------------------------------------------

fn is(n: &Node, name: &str) -> bool {
    n.has_tag_name(Some(NS), name)
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(c, name))
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(c, name))
}

/// Trimmed text of an element; `None` when absent or empty (`<Title/>`).
fn text<'a>(n: Option<Node<'a, '_>>) -> Option<&'a str> {
    n.and_then(|n| n.trimmed_text())
}

/// Where an element sits, for error messages (`EventList/Event[3]`); built only on error.
#[derive(Clone, Copy)]
struct At<'p> {
    parent: Option<&'p At<'p>>,
    name: &'static str,
    index: Option<usize>,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}/")?;
        }
        f.write_str(self.name)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

impl<'p> At<'p> {
    fn root(name: &'static str) -> Self {
        Self {
            parent: None,
            name,
            index: None,
        }
    }
    fn nth(parent: &'p At<'p>, name: &'static str, index: usize) -> At<'p> {
        At {
            parent: Some(parent),
            name,
            index: Some(index),
        }
    }
    fn path(&self, element: &str) -> String {
        format!("{self}/{element}")
    }
    fn missing(&self, element: &str) -> EmisDataError {
        EmisDataError::Missing {
            path: self.path(element),
        }
    }
    fn invalid(&self, element: &str, reason: impl Into<String>) -> EmisDataError {
        EmisDataError::Invalid {
            path: self.path(element),
            reason: reason.into(),
        }
    }
    fn req<'a>(&self, n: Node<'a, '_>, element: &'static str) -> Result<&'a str> {
        text(child(n, element)).ok_or_else(|| self.missing(element))
    }
}

fn opt<'a>(n: Node<'a, '_>, element: &str) -> Option<&'a str> {
    text(child(n, element))
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn boolean(at: &At, n: Node, element: &'static str) -> Result<bool> {
    match opt(n, element) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(at.invalid(element, format!("'{}' is not true or false", shown(v)))),
    }
}

/// An EMIS GUID as a FHIR id: braces dropped, lower case, only `A-Za-z0-9-.`, ≤ 64.
fn guid(at: &At, n: Node, element: &'static str) -> Result<String> {
    guid_text(at, opt(n, element), element)
}

/// [`guid`] of the element's trimmed text, `None` when it has none.
fn guid_text(at: &At, raw: Option<&str>, element: &'static str) -> Result<String> {
    let raw = raw.ok_or_else(|| at.missing(element))?;
    uk_core::guid_id(raw)
        .ok_or_else(|| at.invalid(element, format!("'{}' is not a GUID", shown(raw))))
}

fn opt_guid(at: &At, n: Node, element: &'static str) -> Result<Option<String>> {
    match opt(n, element) {
        None => Ok(None),
        Some(raw) => uk_core::guid_id(raw)
            .map(Some)
            .ok_or_else(|| at.invalid(element, format!("'{}' is not a GUID", shown(raw)))),
    }
}

// ---- dates ---------------------------------------------------------------------------

/// `dd/mm/yyyy` → (year, month, day); zeros allowed for day/month (partial dates).
fn dmy(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[2] != b'/' || b[5] != b'/' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    Some((
        i32::try_from(num(6..10)?).ok()?,
        u8::try_from(num(3..5)?).ok()?,
        u8::try_from(num(0..2)?).ok()?,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePart {
    Y,
    Ym,
    Ymd,
    Ymdt,
}

fn check_calendar(y: i32, m: u8, d: u8) -> bool {
    (1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && d >= 1
        && d <= gp_fhir::date::days_in_month(y, m)
}

/// `HH:MM:SS` → seconds-precise parts.
fn hms(s: &str) -> Option<(u8, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let p = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<u8>()
            .ok()
    };
    let (h, m, sec) = (p(0..2)?, p(3..5)?, p(6..8)?);
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

/// An EMIS date element with its `DatePart`/`AssignedTime` siblings → FHIR date/dateTime.
fn assigned_date(at: &At, n: Node, element: &'static str) -> Result<Option<String>> {
    let Some(raw) = opt(n, element) else {
        return Ok(None);
    };
    let part = match opt(n, "DatePart") {
        None | Some("YMD") => DatePart::Ymd,
        Some("Y") => DatePart::Y,
        Some("YM") => DatePart::Ym,
        Some("YMDT") => DatePart::Ymdt,
        Some(other) => {
            return Err(at.invalid(
                "DatePart",
                format!("'{}' is not Y, YM, YMD or YMDT", shown(other)),
            ));
        }
    };
    let bad = || {
        at.invalid(
            element,
            format!(
                "'{}' is not a dd/mm/yyyy date of precision {part:?}",
                shown(raw)
            ),
        )
    };
    let (y, m, d) = dmy(raw).ok_or_else(bad)?;
    Ok(Some(match part {
        DatePart::Y if (1..=9999).contains(&y) => fhir_year(y),
        DatePart::Ym if (1..=9999).contains(&y) && (1..=12).contains(&m) => fhir_year_month(y, m),
        DatePart::Ymd if check_calendar(y, m, d) => fhir_date(y, m, d),
        DatePart::Ymdt if check_calendar(y, m, d) => {
            let t = at.req(n, "AssignedTime")?;
            let time = hms(t).ok_or_else(|| {
                at.invalid("AssignedTime", format!("'{}' is not HH:MM:SS", shown(t)))
            })?;
            local_date_time(y, m, d, time)
        }
        _ => return Err(bad()),
    }))
}

/// A date with no `DatePart` sibling; precision inferred from zeros (`00/00/1998` = 1998).
fn plain_date(at: &At, n: Node, element: &'static str) -> Result<Option<String>> {
    let Some(raw) = opt(n, element) else {
        return Ok(None);
    };
    let bad = || {
        at.invalid(
            element,
            format!("'{}' is not a dd/mm/yyyy date", shown(raw)),
        )
    };
    let (y, m, d) = dmy(raw).ok_or_else(bad)?;
    Ok(Some(match (m, d) {
        (0, 0) if (1..=9999).contains(&y) => fhir_year(y),
        (1..=12, 0) if (1..=9999).contains(&y) => fhir_year_month(y, m),
        _ if check_calendar(y, m, d) => fhir_date(y, m, d),
        _ => return Err(bad()),
    }))
}

/// `dd/mm/yyyy HH:MM:SS` (UK local) → FHIR instant.
fn timestamp(at: &At, n: Node, element: &'static str) -> Result<String> {
    let raw = at.req(n, element)?;
    version_from_last_modified(raw).ok_or_else(|| {
        at.invalid(
            element,
            format!("'{}' is not dd/mm/yyyy HH:MM:SS", shown(raw)),
        )
    })
}

/// A `LastModified` value (`dd/mm/yyyy HH:MM:SS`, UK local) as the record version the
/// adapter answers: a FHIR instant with its UK offset.
pub fn version_from_last_modified(raw: &str) -> Option<String> {
    let (date, time) = raw.trim().split_once(' ')?;
    let (y, m, d) = dmy(date).filter(|&(y, m, d)| check_calendar(y, m, d))?;
    Some(local_date_time(y, m, d, hms(time.trim())?))
}

// ---- shared pieces -------------------------------------------------------------------

fn gender(at: &At, n: Node) -> Result<Option<String>> {
    Ok(match opt(n, "Sex") {
        None => None,
        Some("M") => Some("male".into()),
        Some("F") => Some("female".into()),
        Some("I") => Some("other".into()),
        Some("U") => Some("unknown".into()),
        Some(v) => return Err(at.invalid("Sex", format!("'{}' is not M, F, I or U", shown(v)))),
    })
}

fn human_name(n: Node, use_: Option<&str>) -> Option<HumanName> {
    let family = owned(opt(n, "FamilyName"));
    let given: Vec<String> = opt(n, "FirstNames")
        .map(|g| g.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let prefix: Vec<String> = opt(n, "Title")
        .map(|t| vec![t.to_owned()])
        .unwrap_or_default();
    (family.is_some() || !given.is_empty()).then(|| HumanName {
        use_: use_.map(str::to_owned),
        family,
        given,
        prefix,
    })
}

fn address(n: Node) -> Option<Address> {
    let a = child(n, "Address")?;
    let line: Vec<String> = ["HouseNameFlat", "Street", "Village"]
        .iter()
        .filter_map(|e| opt(a, e))
        .map(str::to_owned)
        .collect();
    let addr = Address {
        use_: None,
        line,
        city: owned(opt(a, "Town")),
        district: owned(opt(a, "County")),
        postal_code: owned(opt(a, "PostCode")),
        country: None,
    };
    (addr != Address::default()).then_some(addr)
}

fn phone(value: Option<&str>, system: &str, use_: Option<&str>) -> Option<ContactPoint> {
    value.map(|v| ContactPoint {
        system: Some(system.to_owned()),
        value: Some(v.to_owned()),
        use_: use_.map(str::to_owned),
    })
}

/// `{EMIS_ID_BASE}{element}-guid`; the systems are constants so an entry's identifier
/// costs no formatting.
fn emis_id(element: &str, guid: &str) -> Identifier {
    let system = match element {
        "registration" => "https://emis.com/Id/registration-guid",
        "organisation" => "https://emis.com/Id/organisation-guid",
        "person" => "https://emis.com/Id/person-guid",
        "consultation" => "https://emis.com/Id/consultation-guid",
        "event" => "https://emis.com/Id/event-guid",
        "allergy" => "https://emis.com/Id/allergy-guid",
        "medication" => "https://emis.com/Id/medication-guid",
        other => return Identifier::new(&format!("{EMIS_ID_BASE}{other}-guid"), guid),
    };
    Identifier::new(system, guid)
}

/// A `<Code>` coded item → CodeableConcept via the gateway's terminology maps.
fn coded_item(at: &At, code: Node) -> Result<CodeableConcept> {
    let value = at.req(code, "Value")?;
    let scheme = match at.req(code, "Scheme")? {
        "READ2" => CodeScheme::ReadV2,
        "CTV3" => CodeScheme::Ctv3,
        "EMISCLINICAL" => CodeScheme::EmisLocal,
        "SNOMED" => CodeScheme::Snomed,
        "DMD" => CodeScheme::Dmd,
        other => {
            return Err(at.invalid(
                "Scheme",
                format!(
                    "'{}' is not READ2, CTV3, EMISCLINICAL, SNOMED or DMD",
                    shown(other)
                ),
            ));
        }
    };
    let term = opt(code, "Term").unwrap_or_default();
    // EMIS's own map is used only when it says it is SNOMED CT (or does not say).
    let supplied =
        opt(code, "MapCode").filter(|_| opt(code, "MapScheme").is_none_or(|s| s == "SNOMED"));
    Ok(terminology::coded(
        crate::SYSTEM,
        scheme,
        value,
        term,
        supplied,
    ))
}

/// The coded item under `wrapper` (`<Type>`, `<Drug>`, `<Reaction>`, or `<Code>` itself):
/// a wrapper holds a `<Code>`; for robustness a `<Reaction>` holding `Value`/`Scheme`
/// directly is read too.
fn coded_under(parent: &At, n: Node, wrapper: &'static str) -> Result<Option<CodeableConcept>> {
    let Some(w) = child(n, wrapper) else {
        return Ok(None);
    };
    let at = At {
        parent: Some(parent),
        name: wrapper,
        index: None,
    };
    if wrapper == "Code" {
        return coded_item(&at, w).map(Some);
    }
    match child(w, "Code") {
        Some(code) => {
            let code_at = At {
                parent: Some(&at),
                name: "Code",
                index: None,
            };
            coded_item(&code_at, code).map(Some)
        }
        None if child(w, "Value").is_some() => coded_item(&at, w).map(Some),
        // An empty optional wrapper (`<Reaction/>`) carries nothing.
        None => Ok(None),
    }
}

fn required_code(at: &At, n: Node, wrapper: &'static str) -> Result<CodeableConcept> {
    coded_under(at, n, wrapper)?.ok_or_else(|| at.missing(wrapper))
}

fn practitioner_ref(guid: Option<String>) -> Option<Reference> {
    guid.map(|g| Reference::to("Practitioner", &g))
}

// ---- the record ----------------------------------------------------------------------

struct Ctx {
    patient_ref: Reference,
    org_ref: Reference,
    /// Ids of the Encounters mapped from `ConsultationList`, so entries link only to those.
    encounters: HashSet<String>,
}

/// `Encounter/{id}` for an entry's `ConsultationID`, which must name a mapped Consultation.
fn encounter_ref(ctx: &Ctx, at: &At, n: Node) -> Result<Option<Reference>> {
    match opt_guid(at, n, "ConsultationID")? {
        None => Ok(None),
        Some(id) if ctx.encounters.contains(&id) => Ok(Some(Reference::to("Encounter", &id))),
        Some(id) => Err(at.invalid(
            "ConsultationID",
            format!("{id} is not a Consultation in ConsultationList"),
        )),
    }
}

fn map_root(root: Node, want: Want) -> Result<MappedRecord> {
    let reg_at = At::root("Registration");
    let reg = child(root, "Registration").ok_or_else(|| EmisDataError::Missing {
        path: "Registration".into(),
    })?;
    let raw_nhs = reg_at.req(reg, "NhsNumber")?;
    // EMIS writes the number spaced 3 3 4; anything else must still be 10 digits.
    let compact: String = raw_nhs.chars().filter(|c| *c != ' ').collect();
    let nhs = NhsNumber::parse(&compact).map_err(|e| reg_at.invalid("NhsNumber", e.to_string()))?;
    let status = reg_at.req(reg, "NhsNumberStatus")?;
    let verification = NhsVerification::from_code(status).ok_or_else(|| {
        reg_at.invalid(
            "NhsNumberStatus",
            format!("'{}' is not a code 01 to 08", shown(status)),
        )
    })?;
    let patient_guid = guid(&reg_at, reg, "GUID")?;
    let version = timestamp(&reg_at, reg, "LastModified")?;
    let restricted = boolean(&reg_at, reg, "Confidential")?;
    let dissent = boolean(&reg_at, reg, "SharingDissent")?;
    let usual_gp = opt_guid(&reg_at, reg, "UsualGpID")?;
    if opt(reg, "FamilyName").is_none() {
        return Err(reg_at.missing("FamilyName"));
    }

    let org_at = At::root("Organisation");
    let org_node = child(root, "Organisation").ok_or_else(|| EmisDataError::Missing {
        path: "Organisation".into(),
    })?;
    let raw_ods = org_at.req(org_node, "OdsCode")?;
    let ods = OdsCode::parse(raw_ods).map_err(|e| org_at.invalid("OdsCode", e.to_string()))?;
    let organization = Organization {
        id: ods.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![
            Identifier::ods(&ods),
            emis_id("organisation", &guid(&org_at, org_node, "GUID")?),
        ],
        name: owned(opt(org_node, "Name")),
        telecom: phone(opt(org_node, "Telephone"), "phone", Some("work"))
            .into_iter()
            .collect(),
        address: address(org_node).into_iter().collect(),
    };

    let people_at = At::root("PeopleList");
    let mut practitioner = None;
    if let Some(people) = child(root, "PeopleList") {
        for (i, person) in children(people, "Person").enumerate() {
            let at = At::nth(&people_at, "Person", i + 1);
            let id = guid(&at, person, "GUID")?;
            if usual_gp.as_deref() == Some(id.as_str()) {
                practitioner = Some(map_person(&at, person, id)?);
            }
        }
    }
    if let (Some(gp), None) = (&usual_gp, &practitioner) {
        return Err(reg_at.invalid("UsualGpID", format!("{gp} is not a Person in PeopleList")));
    }

    let mut telecom: Vec<ContactPoint> = Vec::new();
    telecom.extend(phone(opt(reg, "HomeTelephone"), "phone", Some("home")));
    telecom.extend(phone(opt(reg, "MobileTelephone"), "phone", Some("mobile")));
    telecom.extend(phone(opt(reg, "Email"), "email", None));
    let patient = Patient {
        id: nhs.to_string(),
        meta: meta("Patient", restricted),
        identifier: vec![
            Identifier::nhs_number(nhs, verification),
            emis_id("registration", &patient_guid),
        ],
        active: Some(true),
        name: human_name(reg, Some("official")).into_iter().collect(),
        telecom,
        gender: gender(&reg_at, reg)?,
        birth_date: Some(
            plain_date(&reg_at, reg, "DateOfBirth")?
                .ok_or_else(|| reg_at.missing("DateOfBirth"))?,
        ),
        deceased_date_time: plain_date(&reg_at, reg, "DateOfDeath")?,
        address: address(reg)
            .map(|a| Address {
                use_: Some("home".into()),
                ..a
            })
            .into_iter()
            .collect(),
        general_practitioner: practitioner_ref(usual_gp).into_iter().collect(),
        managing_organization: Some(Reference::to("Organization", ods.as_str())),
        communication: child(reg, "MainSpokenLanguage")
            .and_then(|l| opt(l, "Value"))
            .map(PatientCommunication::preferred)
            .into_iter()
            .collect(),
    };

    let ctx = Ctx {
        patient_ref: Reference::to("Patient", &patient.id),
        org_ref: Reference::to("Organization", ods.as_str()),
        encounters: HashSet::new(),
    };
    // One resource per entry: sized once rather than grown (a Resource is large to move).
    let entries = LISTS
        .iter()
        .filter(|(_, resource_types)| resource_types.iter().any(|t| want.takes(t)))
        .filter_map(|(list, _)| child(root, list))
        .map(|list| list.children().count())
        .sum();
    let mut clinical = Vec::with_capacity(entries);
    if want.takes("Encounter") {
        map_list(
            root,
            "ConsultationList",
            "Consultation",
            &mut clinical,
            |at, n| map_consultation(&ctx, at, n),
        )?;
    }
    let wants_events = EVENT_TYPES.iter().any(|t| want.takes(t));
    let ctx = if wants_events {
        // Events refer to their consultation: its id is its GUID, mapped or not.
        Ctx {
            encounters: consultation_ids(root)?,
            ..ctx
        }
    } else {
        ctx
    };
    if wants_events {
        map_events(root, &mut clinical, |at, n| {
            if n.content_skipped() {
                // Another type's event, not built (`unread_items`).
                return Ok(None);
            }
            let kind = opt(n, "EventType").and_then(|k| EVENT_KINDS.iter().find(|(e, _)| *e == k));
            let kept = match kind {
                Some((_, t)) => want.takes(t),
                // Missing or unknown: mapped, so it is refused as the whole record's is.
                None => true,
            };
            kept.then(|| map_event(&ctx, at, n)).transpose()
        })?;
    }
    let links = if want.takes("Observation") {
        panel_links(root)?
    } else {
        Vec::new()
    };
    if want.takes("AllergyIntolerance") {
        map_list(root, "AllergyList", "Allergy", &mut clinical, |at, n| {
            map_allergy(&ctx, at, n).map(Resource::AllergyIntolerance)
        })?;
    }
    if want.takes("MedicationStatement") {
        map_list(
            root,
            "MedicationList",
            "Medication",
            &mut clinical,
            |at, n| map_medication(&ctx, at, n).map(Resource::MedicationStatement),
        )?;
    }

    let panel_interpretations = if want.takes("Observation") {
        panel_interpretations(root)?
    } else {
        Vec::new()
    };
    gp_adapter::vital_signs::finish(&mut clinical, &links);
    // A joined blood pressure panel carries its own interpretation; a reading left
    // alone (not a panel) has only its own.
    for (id, interpretation) in panel_interpretations {
        for r in &mut clinical {
            if let Resource::Observation(o) = r
                && o.id == id
                && !o.component.is_empty()
            {
                o.interpretation = vec![interpretation.clone()];
            }
        }
    }
    Ok(MappedRecord {
        nhs_number: nhs,
        ods,
        patient,
        organization,
        practitioner,
        version,
        flags: PatientFlags {
            restricted,
            dissent,
        },
        clinical,
    })
}

/// The part of a MedicalRecord a Patient read needs, as a document of its own: the text
/// before the first clinical list, closed. Parsing the whole record is most of a Patient
/// read's cost, and the demographics (`Registration`, `Organisation`, `PeopleList`) come
/// before the clinical lists. `None`, and the whole record is parsed, whenever that is not
/// plainly so: the body is not UTF-8, does not end with the root's end tag (a cut answer
/// must fail as it always has), has no clinical list, or names a demographic element after
/// the first clinical list. A head that does not parse or map is parsed whole too, so
/// every error is the whole record's.
fn demographics_head(body: &[u8]) -> Option<String> {
    const END: &str = "</MedicalRecord>";
    let text = std::str::from_utf8(body).ok()?;
    if !text.trim_end().ends_with(END) {
        return None;
    }
    // One pass over the `<`s (memchr), not a substring search per name over the body.
    let bytes = text.as_bytes();
    let opens = |from: usize| memchr::memchr_iter(b'<', &bytes[from..]).map(move |i| from + i);
    let is_start_tag = |at: usize, name: &str| {
        let rest = &bytes[at + 1..];
        rest.starts_with(name.as_bytes())
            && matches!(
                rest.get(name.len()),
                Some(b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n')
            )
    };
    let cut = opens(0).find(|&i| LISTS.iter().any(|(list, _)| is_start_tag(i, list)))?;
    // The rest is searched for each name with `memmem` (vectorised), not tag by tag: the
    // clinical lists are most of the body.
    let rest = &bytes[cut..];
    let demographic = ["<Registration", "<Organisation", "<PeopleList"]
        .iter()
        .any(|tag| memchr::memmem::find(rest, tag.as_bytes()).is_some());
    if demographic {
        return None;
    }
    Some(format!("{}{END}", &text[..cut]))
}

/// The lists of clinical entries, in the order they are mapped, with the resource types
/// each gives.
const LISTS: [(&str, &[&str]); 4] = [
    ("ConsultationList", &["Encounter"]),
    ("EventList", &EVENT_TYPES),
    ("AllergyList", &["AllergyIntolerance"]),
    ("MedicationList", &["MedicationStatement"]),
];

/// Each `EventType` an event may have, and the resource type it maps to.
const EVENT_KINDS: [(&str, &str); 3] = [
    ("Observation", "Observation"),
    ("Problem", "Condition"),
    ("Immunisation", "Immunization"),
];

/// The resource types of the EventList's events.
const EVENT_TYPES: [&str; 3] = [EVENT_KINDS[0].1, EVENT_KINDS[1].1, EVENT_KINDS[2].1];

/// The id of every Consultation (its GUID, as [`map_consultation`] gives it).
fn consultation_ids(root: Node) -> Result<HashSet<String>> {
    let Some(list) = child(root, "ConsultationList") else {
        return Ok(HashSet::new());
    };
    let list_at = At::root("ConsultationList");
    children(list, "Consultation")
        .enumerate()
        .map(|(i, n)| {
            let at = At::nth(&list_at, "Consultation", i + 1);
            match n.skipped_marker() {
                // Built without its content (`unread_items`): its GUID, read as `guid` reads one.
                Some(raw) => guid_text(&at, Some(raw.trim()).filter(|t| !t.is_empty()), "GUID"),
                None => guid(&at, n, "GUID"),
            }
        })
        .collect()
}

/// Maps the EventList's events that `f` keeps (`Ok(None)`: skipped unmapped).
fn map_events(
    root: Node,
    out: &mut Vec<Resource>,
    f: impl Fn(&At, Node) -> Result<Option<Resource>>,
) -> Result<()> {
    let Some(l) = child(root, "EventList") else {
        return Ok(());
    };
    let list_at = At::root("EventList");
    for (i, n) in children(l, "Event").enumerate() {
        out.extend(f(&At::nth(&list_at, "Event", i + 1), n)?);
    }
    Ok(())
}

fn map_list(
    root: Node,
    list: &'static str,
    item: &'static str,
    out: &mut Vec<Resource>,
    f: impl Fn(&At, Node) -> Result<Resource>,
) -> Result<()> {
    let Some(l) = child(root, list) else {
        return Ok(());
    };
    let list_at = At::root(list);
    for (i, n) in children(l, item).enumerate() {
        out.push(f(&At::nth(&list_at, item, i + 1), n)?);
    }
    Ok(())
}

/// Each Event's `ParentGUID`: the diastolic reading of a blood pressure names the
/// systolic one it was taken with, so the two read as one panel.
fn panel_links(root: Node) -> Result<Vec<PanelLink>> {
    let Some(list) = child(root, "EventList") else {
        return Ok(Vec::new());
    };
    let list_at = At::root("EventList");
    let mut links = Vec::new();
    for (i, n) in children(list, "Event").enumerate() {
        let at = At::nth(&list_at, "Event", i + 1);
        if let Some(parent) = opt_guid(&at, n, "ParentGUID")? {
            links.push(PanelLink {
                systolic: parent,
                diastolic: guid(&at, n, "GUID")?,
            });
        }
    }
    Ok(links)
}

/// A written reading's coded detail (`Interpretation`, `PanelInterpretation`,
/// `BodySite`: `Value`, `Scheme`, `Term`) as the CodeableConcept of its one coding;
/// `snomed_only` for a body site. A scheme EMIS does not hold it in is invalid.
fn coded_detail(
    parent: &At,
    n: Node,
    element: &'static str,
    snomed_only: bool,
) -> Result<Option<CodeableConcept>> {
    let Some(d) = child(n, element) else {
        return Ok(None);
    };
    let at = At {
        parent: Some(parent),
        name: element,
        index: None,
    };
    let value = at.req(d, "Value")?;
    let scheme = at.req(d, "Scheme")?;
    let system = system_of_scheme(scheme)
        .filter(|_| !snomed_only || scheme == "SNOMED")
        .ok_or_else(|| {
            at.invalid(
                "Scheme",
                format!(
                    "'{}' is not {}",
                    shown(scheme),
                    if snomed_only {
                        "SNOMED"
                    } else {
                        "HL7V3 or SNOMED"
                    }
                ),
            )
        })?;
    Ok(Some(
        Coded {
            system: system.to_owned(),
            code: value.to_owned(),
            display: owned(opt(d, "Term")),
        }
        .concept(),
    ))
}

/// Each Event's `PanelInterpretation`: a blood pressure's own interpretation, which EMIS
/// keeps on the systolic reading, keyed by that reading's id (the panel's, once joined).
fn panel_interpretations(root: Node) -> Result<Vec<(String, CodeableConcept)>> {
    let Some(list) = child(root, "EventList") else {
        return Ok(Vec::new());
    };
    let list_at = At::root("EventList");
    let mut out = Vec::new();
    for (i, n) in children(list, "Event").enumerate() {
        let at = At::nth(&list_at, "Event", i + 1);
        if let Some(c) = coded_detail(&at, n, "PanelInterpretation", false)? {
            out.push((guid(&at, n, "GUID")?, c));
        }
    }
    Ok(out)
}

fn map_person(at: &At, n: Node, id: String) -> Result<Practitioner> {
    let mut identifier = vec![emis_id("person", &id)];
    identifier.extend(opt(n, "SdsUserId").map(|s| Identifier::new(SDS_USER_ID_SYSTEM, s)));
    identifier.extend(opt(n, "GmcCode").map(uk_core::gmc_identifier));
    Ok(Practitioner {
        meta: meta("Practitioner", false),
        identifier,
        name: human_name(n, Some("official")).into_iter().collect(),
        gender: gender(at, n)?,
        id,
    })
}

fn map_consultation(ctx: &Ctx, at: &At, n: Node) -> Result<Resource> {
    let id = guid(at, n, "GUID")?;
    let start = assigned_date(at, n, "AssignedDate")?.ok_or_else(|| at.missing("AssignedDate"))?;
    Ok(Resource::Encounter(Encounter {
        meta: meta("Encounter", boolean(at, n, "Confidential")?),
        identifier: vec![emis_id("consultation", &id)],
        status: "finished".into(),
        class: uk_core::ambulatory(),
        type_: coded_under(at, n, "Type")?.into_iter().collect(),
        subject: ctx.patient_ref.clone(),
        participant: practitioner_ref(opt_guid(at, n, "UserID")?)
            .map(|r| EncounterParticipant {
                individual: Some(r),
            })
            .into_iter()
            .collect(),
        period: Some(Period {
            start: Some(start),
            end: None,
        }),
        service_provider: Some(ctx.org_ref.clone()),
        id,
    }))
}

fn map_event(ctx: &Ctx, at: &At, n: Node) -> Result<Resource> {
    let id = guid(at, n, "GUID")?;
    let confidential = boolean(at, n, "Confidential")?;
    let date = assigned_date(at, n, "AssignedDate")?;
    let author = practitioner_ref(opt_guid(at, n, "AuthorID")?);
    let code = required_code(at, n, "Code")?;
    // The supplier's identifier of a reading it filed comes first, then EMIS's own.
    let mut identifier: Vec<Identifier> = child(n, "ExternalIdentifier")
        .and_then(|e| vital_signs::supplier_identifier(opt(e, "System"), opt(e, "Value")))
        .into_iter()
        .collect();
    identifier.push(emis_id("event", &id));
    let encounter = encounter_ref(ctx, at, n)?;
    match at.req(n, "EventType")? {
        "Observation" => {
            let value_quantity = match opt(n, "NumericValue") {
                None => None,
                Some(v) => {
                    let value: f64 =
                        v.parse()
                            .ok()
                            .filter(|x: &f64| x.is_finite())
                            .ok_or_else(|| {
                                at.invalid(
                                    "NumericValue",
                                    format!("'{}' is not a number", shown(v)),
                                )
                            })?;
                    Some(match opt(n, "Units") {
                        Some(u) => Quantity::ucum(value, u),
                        None => Quantity {
                            value: gp_fhir::model::Decimal(value),
                            unit: None,
                            system: None,
                            code: None,
                        },
                    })
                }
            };
            Ok(Resource::Observation(Observation {
                id,
                meta: meta("Observation", confidential),
                identifier,
                status: "final".into(),
                code,
                subject: ctx.patient_ref.clone(),
                encounter,
                effective_date_time: date,
                performer: author.into_iter().collect(),
                value_quantity,
                interpretation: coded_detail(at, n, "Interpretation", false)?
                    .into_iter()
                    .collect(),
                body_site: coded_detail(at, n, "BodySite", true)?,
                ..Observation::default()
            }))
        }
        "Problem" => {
            let problem_at = At {
                parent: Some(at),
                name: "Problem",
                index: None,
            };
            let problem = child(n, "Problem").ok_or_else(|| at.missing("Problem"))?;
            let status = match problem_at.req(problem, "Status")? {
                "Active" => "active",
                "Past" => "inactive",
                other => {
                    return Err(problem_at.invalid(
                        "Status",
                        format!("'{}' is not Active or Past", shown(other)),
                    ));
                }
            };
            Ok(Resource::Condition(Condition {
                id,
                meta: meta("Condition", confidential),
                identifier,
                clinical_status: Some(uk_core::condition_clinical_status(status)),
                verification_status: Some(uk_core::condition_confirmed()),
                category: vec![uk_core::problem_list_item()],
                code,
                subject: ctx.patient_ref.clone(),
                encounter,
                onset_date_time: date,
                abatement_date_time: plain_date(&problem_at, problem, "EndDate")?,
                recorder: author,
                ..Condition::default()
            }))
        }
        "Immunisation" => {
            let occurrence = date.ok_or_else(|| at.missing("AssignedDate"))?;
            let dose = match opt(n, "DoseSequence") {
                None => None,
                Some(v) => Some(v.parse::<u32>().ok().filter(|d| *d >= 1).ok_or_else(|| {
                    at.invalid(
                        "DoseSequence",
                        format!("'{}' is not a positive whole number", shown(v)),
                    )
                })?),
            };
            Ok(Resource::Immunization(Immunization {
                id,
                meta: meta("Immunization", confidential),
                identifier,
                status: "completed".into(),
                vaccine_code: code,
                patient: ctx.patient_ref.clone(),
                encounter,
                occurrence_date_time: occurrence,
                primary_source: Some(true),
                lot_number: owned(opt(n, "Batch")),
                performer: author
                    .map(|actor| ImmunizationPerformer { actor })
                    .into_iter()
                    .collect(),
                protocol_applied: dose
                    .map(|d| ProtocolApplied {
                        dose_number_positive_int: Some(d),
                    })
                    .into_iter()
                    .collect(),
                ..Immunization::default()
            }))
        }
        other => Err(at.invalid(
            "EventType",
            format!(
                "'{}' is not Observation, Problem or Immunisation",
                shown(other)
            ),
        )),
    }
}

fn map_allergy(ctx: &Ctx, at: &At, n: Node) -> Result<AllergyIntolerance> {
    let id = guid(at, n, "GUID")?;
    let category = match opt(n, "Category") {
        None => None,
        Some("Drug") => Some("medication"),
        Some("Food") => Some("food"),
        Some("Environment") => Some("environment"),
        Some(v) => {
            return Err(at.invalid(
                "Category",
                format!("'{}' is not Drug, Food or Environment", shown(v)),
            ));
        }
    };
    let status = match at.req(n, "Status")? {
        "Active" => "active",
        "Resolved" => "resolved",
        v => {
            return Err(at.invalid(
                "Status",
                format!("'{}' is not Active or Resolved", shown(v)),
            ));
        }
    };
    let severity = match opt(n, "Severity") {
        None => None,
        Some("Mild") => Some("mild"),
        Some("Moderate") => Some("moderate"),
        Some("Severe") => Some("severe"),
        Some(v) => {
            return Err(at.invalid(
                "Severity",
                format!("'{}' is not Mild, Moderate or Severe", shown(v)),
            ));
        }
    };
    // FHIR needs a manifestation for a reaction, so a severity alone is not emitted.
    let reaction = coded_under(at, n, "Reaction")?.map(|m| AllergyReaction {
        manifestation: vec![m],
        severity: severity.map(str::to_owned),
    });
    let ended = plain_date(at, n, "EndDate")?;
    Ok(AllergyIntolerance {
        meta: meta("AllergyIntolerance", boolean(at, n, "Confidential")?),
        identifier: vec![emis_id("allergy", &id)],
        clinical_status: Some(uk_core::allergy_clinical_status(status)),
        verification_status: Some(uk_core::allergy_confirmed()),
        category: category.map(str::to_owned).into_iter().collect(),
        code: required_code(at, n, "Code")?,
        patient: ctx.patient_ref.clone(),
        onset_date_time: assigned_date(at, n, "AssignedDate")?,
        recorder: practitioner_ref(opt_guid(at, n, "AuthorID")?),
        reaction: reaction.into_iter().collect(),
        // R4 AllergyIntolerance has no end date element; keep it readable rather than lose it.
        note: ended
            .map(|d| Annotation {
                text: format!("Ended {d}"),
            })
            .into_iter()
            .collect(),
        id,
        ..AllergyIntolerance::default()
    })
}

fn map_medication(ctx: &Ctx, at: &At, n: Node) -> Result<MedicationStatement> {
    let id = guid(at, n, "GUID")?;
    let status = match at.req(n, "Status")? {
        "Active" => "active",
        "Completed" => "completed",
        "Cancelled" => "stopped",
        v => {
            return Err(at.invalid(
                "Status",
                format!("'{}' is not Active, Completed or Cancelled", shown(v)),
            ));
        }
    };
    let start = assigned_date(at, n, "AssignedDate")?;
    let end = plain_date(at, n, "EndDate")?;
    let kind = match opt(n, "PrescriptionType") {
        None => None,
        Some("Acute") => Some("Acute"),
        Some("Repeat") => Some("Repeat"),
        Some(v) => {
            return Err(at.invalid(
                "PrescriptionType",
                format!("'{}' is not Acute or Repeat", shown(v)),
            ));
        }
    };
    let quantity = opt(n, "Quantity").map(|q| match opt(n, "QuantityUnits") {
        Some(u) => format!("{q} {u}"),
        None => q.to_owned(),
    });
    let note = match (kind, quantity) {
        (None, None) => None,
        (Some(k), None) => Some(format!("{k} prescription")),
        (None, Some(q)) => Some(format!("Quantity {q}")),
        (Some(k), Some(q)) => Some(format!("{k} prescription, quantity {q}")),
    };
    Ok(MedicationStatement {
        meta: meta("MedicationStatement", boolean(at, n, "Confidential")?),
        identifier: vec![emis_id("medication", &id)],
        status: status.into(),
        medication_codeable_concept: required_code(at, n, "Drug")?,
        subject: ctx.patient_ref.clone(),
        effective_period: (start.is_some() || end.is_some()).then(|| Period {
            start: start.clone(),
            end,
        }),
        date_asserted: start,
        information_source: practitioner_ref(opt_guid(at, n, "AuthorID")?),
        dosage: opt(n, "Dosage")
            .map(|d| Dosage {
                text: Some(d.to_owned()),
                patient_instruction: None,
            })
            .into_iter()
            .collect(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
        id,
        ..MedicationStatement::default()
    })
}

// ---- writes: neutral → native --------------------------------------------------------

/// Content type of every EMIS write request.
pub const XML: &str = "application/xml";

fn unprocessable(detail: impl Into<String>) -> AdapterError {
    AdapterError::Unprocessable {
        system: crate::SYSTEM,
        detail: detail.into(),
    }
}

fn invalid_answer(detail: impl Into<String>) -> AdapterError {
    AdapterError::InvalidNativeData {
        system: crate::SYSTEM,
        detail: detail.into(),
    }
}

/// Builds a small request document with escaped text.
pub(crate) struct Doc(String);

impl Doc {
    pub(crate) fn new(root: &str) -> Self {
        Doc(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NS}\">"
        ))
    }
    pub(crate) fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
    }
    pub(crate) fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }
    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.open(name);
        for ch in text.chars() {
            match ch {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&apos;"),
                c => self.0.push(c),
            }
        }
        self.close(name);
    }
    pub(crate) fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.0.push('\n');
        self.0
    }
}

/// HL7 v3 ObservationInterpretation: the code system of `H`, `L`, `N` and the rest.
pub const V3_INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// The native scheme EMIS holds a code system in: `HL7V3` for v3 ObservationInterpretation,
/// `SNOMED` for SNOMED CT (the only two an `Interpretation` may be coded in; a `BodySite`
/// is SNOMED CT only).
fn native_scheme(system: &str) -> Option<&'static str> {
    match system {
        V3_INTERPRETATION => Some("HL7V3"),
        gp_fhir::model::SNOMED => Some("SNOMED"),
        _ => None,
    }
}

/// The code system of a native scheme [`native_scheme`] gives.
fn system_of_scheme(scheme: &str) -> Option<&'static str> {
    match scheme {
        "HL7V3" => Some(V3_INTERPRETATION),
        "SNOMED" => Some(gp_fhir::model::SNOMED),
        _ => None,
    }
}

/// A coded detail (`<Interpretation>`, `<BodySite>`) as `Value`, `Scheme`, `Term`; a code
/// system EMIS cannot hold it in (`snomed_only` for a body site) is `Unprocessable`.
fn render_coded_detail(
    doc: &mut Doc,
    element: &str,
    coded: &Coded,
    snomed_only: bool,
) -> std::result::Result<(), AdapterError> {
    let scheme = native_scheme(&coded.system)
        .filter(|s| !snomed_only || *s == "SNOMED")
        .ok_or_else(|| {
            unprocessable(format!(
                "EMIS Web holds a reading's {element} coded in {}, not {}",
                if snomed_only {
                    "SNOMED CT"
                } else {
                    "SNOMED CT or HL7 v3 ObservationInterpretation"
                },
                coded.system
            ))
        })?;
    exact(&format!("the {element} code"), &coded.code)?;
    if coded.code.is_empty() {
        return Err(unprocessable(format!("the {element} code is empty")));
    }
    doc.open(element);
    doc.text("Value", &coded.code);
    doc.text("Scheme", scheme);
    if let Some(term) = coded.display.as_deref().filter(|t| !t.is_empty()) {
        exact(&format!("the {element} display"), term)?;
        doc.text("Term", term);
    }
    doc.close(element);
    Ok(())
}

/// `NewObservation` → an `ObservationBatch`: one `<Observation>` per measurement (EMIS
/// files a blood pressure as separate systolic `2469.` and diastolic `246A.` readings),
/// Read v2 coded where the concept has a Read v2 code and SNOMED CT coded otherwise, at
/// the measured instant in UK local time (or on the date alone, `DatePart` `YMD`).
/// EMIS holds a reading's interpretations (each measurement's, and a panel's own on the
/// batch), body site and the practice clinician who took it (`AuthorID`); a reading
/// carrying a method, a device or other codings is `Unprocessable`, naming the element.
pub fn render_observation_batch(o: &NewObservation) -> std::result::Result<String, AdapterError> {
    if o.measurements.is_empty() {
        return Err(unprocessable(format!(
            "observation {} ({}) has no measured value",
            o.snomed, o.display
        )));
    }
    let details = &o.details;
    for (held, what) in [
        (details.method.is_none(), "a method"),
        (details.device.is_none(), "a device"),
        (
            details.original_codings.is_empty(),
            "codings other than SNOMED CT",
        ),
    ] {
        if !held {
            return Err(unprocessable(format!(
                "EMIS Web cannot hold {what} with a reading"
            )));
        }
    }
    let mut doc = Doc::new("ObservationBatch");
    doc.text("ExternalKey", &o.key);
    if let Some((system, value)) = &o.identifier {
        doc.open("ExternalIdentifier");
        doc.text("System", system);
        doc.text("Value", value);
        doc.close("ExternalIdentifier");
    }
    if details.date_only {
        // The date as the supplier gave it: a calendar date has no time zone to convert.
        let e = o.effective;
        doc.text(
            "AssignedDate",
            &format!("{:02}/{:02}/{:04}", e.day, e.month, e.year),
        );
        doc.text("DatePart", "YMD");
    } else {
        let local = o.effective.uk_local();
        doc.text(
            "AssignedDate",
            &format!("{:02}/{:02}/{:04}", local.day, local.month, local.year),
        );
        doc.text("DatePart", "YMDT");
        doc.text(
            "AssignedTime",
            &format!("{:02}:{:02}:{:02}", local.hour, local.minute, local.second),
        );
    }
    if let Some(performer) = &details.performer {
        let guid = uk_core::guid_id(performer).ok_or_else(|| {
            unprocessable(format!(
                "performer {} is not an EMIS Web person GUID",
                shown(performer)
            ))
        })?;
        doc.text("AuthorID", &guid);
    }
    // A single reading's interpretation is its own; only a panel has one of its own too.
    let single = o.measurements.len() == 1;
    if let Some(i) = details.interpretation.as_ref().filter(|_| !single) {
        render_coded_detail(&mut doc, "Interpretation", i, false)?;
    }
    if let Some(site) = &details.body_site {
        render_coded_detail(&mut doc, "BodySite", site, true)?;
    }
    for m in &o.measurements {
        if !m.value.is_finite() {
            return Err(unprocessable(format!(
                "{} of {} is not a number",
                m.display, m.value
            )));
        }
        doc.open("Observation");
        doc.open("Code");
        match terminology::native_code(CodeScheme::ReadV2, &m.snomed) {
            Some(read2) => {
                doc.text("Value", read2);
                doc.text("Scheme", "READ2");
            }
            // EMIS Web has coded in SNOMED CT since 2018: a concept without a Read v2
            // code is filed by its SNOMED CT id.
            None => {
                if m.snomed.is_empty() || !m.snomed.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unprocessable(format!(
                        "'{}' ({}) is not a SNOMED CT id",
                        shown(&m.snomed),
                        m.display
                    )));
                }
                doc.text("Value", &m.snomed);
                doc.text("Scheme", "SNOMED");
            }
        }
        doc.text("Term", &m.display);
        doc.close("Code");
        // Display of an f64 is the shortest text that parses back to the same value.
        doc.text("NumericValue", &m.value.to_string());
        doc.text("Units", &m.unit);
        let own = m
            .interpretation
            .as_ref()
            .or(details.interpretation.as_ref().filter(|_| single));
        if let Some(i) = own {
            render_coded_detail(&mut doc, "Interpretation", i, false)?;
        }
        doc.close("Observation");
    }
    Ok(doc.finish("ObservationBatch"))
}

/// The entry ids of an `ObservationBatchResult`, as the read mapping gives them.
pub fn parse_batch_result(body: &[u8]) -> std::result::Result<Vec<String>, AdapterError> {
    let body = std::str::from_utf8(body)
        .map_err(|_| invalid_answer("the ObservationBatchResult is not valid UTF-8"))?;
    let doc = Document::parse_data(body)
        .map_err(|e| invalid_answer(format!("the ObservationBatchResult is not XML: {e}")))?;
    let root = doc.root_element();
    if !is(&root, "ObservationBatchResult") {
        return Err(invalid_answer(format!(
            "the answer's root is <{}>, expected <ObservationBatchResult>",
            qualified(root)
        )));
    }
    let ids = children(root, "EventGUID")
        .map(|n| {
            let raw = text(Some(n)).unwrap_or_default();
            uk_core::guid_id(raw).ok_or_else(|| {
                invalid_answer(format!(
                    "ObservationBatchResult/EventGUID '{}' is not a GUID",
                    shown(raw)
                ))
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(invalid_answer(
            "the ObservationBatchResult holds no EventGUID",
        ));
    }
    Ok(ids)
}

/// The adapter's record version (a FHIR instant, see [`version_from_last_modified`]) as
/// the `LastModified` EMIS rendered: UK local `dd/mm/yyyy HH:MM:SS`. A version this
/// adapter issued carries the local wall-clock time itself, which is used as is (so even
/// a time in the skipped spring hour, which no UTC instant converts to, round-trips);
/// any other instant is converted to UK local time.
pub fn last_modified_from_version(version: &str) -> Option<String> {
    let (year, month, day, hour, minute, second) =
        gp_fhir::date::parse_instant_utc(version).ok()?;
    let issued = wall_clock(version).filter(|l| {
        local_date_time(l.year, l.month, l.day, (l.hour, l.minute, l.second)) == version
    });
    let l = issued.unwrap_or_else(|| {
        UtcDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
        .uk_local()
    });
    Some(format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        l.day, l.month, l.year, l.hour, l.minute, l.second
    ))
}

/// The `YYYY-MM-DDThh:mm:ss` a dateTime starts with, ignoring its zone.
fn wall_clock(v: &str) -> Option<UtcDateTime> {
    let n = |r: std::ops::Range<usize>| -> Option<u8> {
        v.get(r)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let year = v
        .get(0..4)
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()?;
    Some(UtcDateTime {
        year,
        month: n(5..7)?,
        day: n(8..10)?,
        hour: n(11..13)?,
        minute: n(14..16)?,
        second: n(17..19)?,
    })
}

/// A value that must read back exactly as written: no surrounding whitespace, no line
/// breaks (EMIS trims element text).
fn exact(what: &str, v: &str) -> std::result::Result<(), AdapterError> {
    if v.trim() != v || v.contains(['\n', '\r', '\t']) {
        return Err(unprocessable(format!(
            "{what} {v:?} has surrounding whitespace or line breaks EMIS Web would not keep"
        )));
    }
    Ok(())
}

/// `ContactDetails` → an `UpdateContactDetails` made against `version`. Address lines
/// go where the read mapping takes them from (`HouseNameFlat`, `Street`, `Village`, empty
/// ones skipped): one line → `Street`; two → `Street`, `Village`; three → all three.
/// `None` fields are sent empty (EMIS replaces every contact detail).
pub fn render_contact_details(
    version: &str,
    details: &ContactDetails,
) -> std::result::Result<String, AdapterError> {
    let last_modified =
        last_modified_from_version(version).ok_or_else(|| AdapterError::VersionConflict {
            system: crate::SYSTEM,
            detail: format!("'{}' is not a version EMIS Web issued", shown(version)),
        })?;
    let mut doc = Doc::new("UpdateContactDetails");
    doc.text("LastModified", &last_modified);
    doc.open("Address");
    let (house, street, village) = match &details.address {
        None => ("", "", ""),
        Some(a) => {
            for line in &a.lines {
                if line.is_empty() {
                    return Err(unprocessable("an address line is empty"));
                }
                exact("address line", line)?;
            }
            for (what, v) in [
                ("town", &a.town),
                ("county", &a.county),
                ("postcode", &a.postcode),
            ] {
                exact(what, v)?;
            }
            match a.lines.as_slice() {
                [street] => ("", street.as_str(), ""),
                [street, village] => ("", street.as_str(), village.as_str()),
                [house, street, village] => (house.as_str(), street.as_str(), village.as_str()),
                lines => {
                    return Err(unprocessable(format!(
                        "an address has 1 to 3 lines, not {}",
                        lines.len()
                    )));
                }
            }
        }
    };
    let town = details.address.as_ref().map_or("", |a| a.town.as_str());
    let county = details.address.as_ref().map_or("", |a| a.county.as_str());
    let postcode = details.address.as_ref().map_or("", |a| a.postcode.as_str());
    doc.text("HouseNameFlat", house);
    doc.text("Street", street);
    doc.text("Village", village);
    doc.text("Town", town);
    doc.text("County", county);
    doc.text("PostCode", postcode);
    doc.close("Address");
    for (name, value) in [
        ("HomeTelephone", &details.home_phone),
        ("MobileTelephone", &details.mobile),
        ("Email", &details.email),
    ] {
        if let Some(v) = value {
            if v.is_empty() {
                return Err(unprocessable(format!("{name} is empty")));
            }
            exact(name, v)?;
        }
        doc.text(name, value.as_deref().unwrap_or(""));
    }
    if let Some(code) = &details.language {
        exact("language", code)?;
        doc.open("MainSpokenLanguage");
        doc.text("Value", code);
        doc.close("MainSpokenLanguage");
    }
    Ok(doc.finish("UpdateContactDetails"))
}

/// The new record version from a `ContactDetailsResult`.
pub fn parse_contact_result(body: &[u8]) -> std::result::Result<String, AdapterError> {
    let body = std::str::from_utf8(body)
        .map_err(|_| invalid_answer("the ContactDetailsResult is not valid UTF-8"))?;
    let doc = Document::parse_data(body)
        .map_err(|e| invalid_answer(format!("the ContactDetailsResult is not XML: {e}")))?;
    let root = doc.root_element();
    if !is(&root, "ContactDetailsResult") {
        return Err(invalid_answer(format!(
            "the answer's root is <{}>, expected <ContactDetailsResult>",
            qualified(root)
        )));
    }
    let raw = opt(root, "LastModified").unwrap_or_default();
    version_from_last_modified(raw).ok_or_else(|| {
        invalid_answer(format!(
            "ContactDetailsResult/LastModified '{}' is not dd/mm/yyyy HH:MM:SS",
            shown(raw)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use gp_adapter::harness::{blood_pressure, body_weight};
    use gp_adapter::{HomeAddress, Measurement};

    /// `(path, text)` of every leaf element of a rendered request, in order.
    fn leaves(xml: &str) -> Vec<(String, String)> {
        let doc = Document::parse(xml).unwrap();
        assert_eq!(doc.root_element().tag_name().namespace(), Some(NS));
        let mut out = Vec::new();
        for n in doc.descendants().filter(|n| n.is_element()) {
            if n.children().any(|c| c.is_element()) {
                continue;
            }
            let path: Vec<&str> = n
                .ancestors()
                .filter(|a| a.is_element())
                .map(|a| a.tag_name().name())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .skip(1)
                .collect();
            out.push((path.join("/"), n.text().unwrap_or_default().to_owned()));
        }
        out
    }

    fn leaf<'a>(l: &'a [(String, String)], path: &str) -> Vec<&'a str> {
        l.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    #[test]
    fn a_blood_pressure_is_two_read_v2_readings_at_uk_local_time() {
        // 07:32:05Z on 14 July 2026 is 08:32:05 BST.
        let xml = render_observation_batch(&blood_pressure("key-1")).unwrap();
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "ExternalKey"), ["key-1"]);
        assert_eq!(leaf(&l, "AssignedDate"), ["14/07/2026"]);
        assert_eq!(leaf(&l, "DatePart"), ["YMDT"]);
        assert_eq!(leaf(&l, "AssignedTime"), ["08:32:05"]);
        assert_eq!(leaf(&l, "Observation/Code/Value"), ["2469.", "246A."]);
        assert_eq!(leaf(&l, "Observation/Code/Scheme"), ["READ2", "READ2"]);
        assert_eq!(leaf(&l, "Observation/NumericValue"), ["131", "84"]);
        assert_eq!(leaf(&l, "Observation/Units"), ["mm[Hg]", "mm[Hg]"]);

        let mut winter = body_weight("key-2");
        winter.effective = UtcDateTime {
            year: 2026,
            month: 1,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
        };
        let l = leaves(&render_observation_batch(&winter).unwrap());
        assert_eq!(leaf(&l, "AssignedDate"), ["31/01/2026"], "GMT: no shift");
        assert_eq!(leaf(&l, "AssignedTime"), ["23:59:59"]);
        assert_eq!(leaf(&l, "Observation/Code/Value"), ["22A.."]);
        assert_eq!(leaf(&l, "Observation/NumericValue"), ["72.4"]);
        assert_eq!(leaf(&l, "Observation/Units"), ["kg"]);

        // Late evening UTC in summer is the next day in the UK.
        let mut late = body_weight("key-3");
        late.effective = UtcDateTime {
            year: 2026,
            month: 6,
            day: 30,
            hour: 23,
            minute: 10,
            second: 0,
        };
        let l = leaves(&render_observation_batch(&late).unwrap());
        assert_eq!(leaf(&l, "AssignedDate"), ["01/07/2026"]);
        assert_eq!(leaf(&l, "AssignedTime"), ["00:10:00"]);
    }

    #[test]
    fn a_measurement_without_a_read_v2_code_is_filed_by_its_snomed_ct_id() {
        let mut o = body_weight("key-4");
        o.measurements[0] = Measurement {
            snomed: "431314004".into(),
            display: "Peripheral oxygen saturation".into(),
            value: 97.0,
            unit: "%".into(),
            interpretation: None,
        };
        let l = leaves(&render_observation_batch(&o).unwrap());
        assert_eq!(leaf(&l, "Observation/Code/Value"), ["431314004"]);
        assert_eq!(leaf(&l, "Observation/Code/Scheme"), ["SNOMED"]);
        assert_eq!(leaf(&l, "Observation/Units"), ["%"]);
        o.measurements[0].snomed = "not-a-code".into();
        match render_observation_batch(&o) {
            Err(AdapterError::Unprocessable { system, detail }) => {
                assert_eq!(system, crate::SYSTEM);
                assert!(detail.contains("not-a-code"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        o.measurements.clear();
        assert!(matches!(
            render_observation_batch(&o),
            Err(AdapterError::Unprocessable { .. })
        ));
    }

    fn coded(system: &str, code: &str, display: &str) -> Coded {
        Coded {
            system: system.into(),
            code: code.into(),
            display: Some(display.into()),
        }
    }

    #[test]
    fn reading_details_render_as_emis_holds_them() {
        let mut bp = blood_pressure("key-6");
        bp.measurements[0].interpretation = Some(coded(V3_INTERPRETATION, "H", "High"));
        bp.measurements[1].interpretation = Some(coded(V3_INTERPRETATION, "N", "Normal"));
        bp.details.interpretation = Some(coded(V3_INTERPRETATION, "H", "High"));
        bp.details.body_site = Some(coded(gp_fhir::model::SNOMED, "368209003", "Right arm"));
        bp.details.performer = Some("{ABCDEF01-2345-4678-9ABC-DEF012345678}".into());
        let l = leaves(&render_observation_batch(&bp).unwrap());
        assert_eq!(
            leaf(&l, "AuthorID"),
            ["abcdef01-2345-4678-9abc-def012345678"]
        );
        assert_eq!(leaf(&l, "Interpretation/Value"), ["H"]);
        assert_eq!(leaf(&l, "Interpretation/Scheme"), ["HL7V3"]);
        assert_eq!(leaf(&l, "BodySite/Value"), ["368209003"]);
        assert_eq!(leaf(&l, "BodySite/Scheme"), ["SNOMED"]);
        assert_eq!(leaf(&l, "Observation/Interpretation/Value"), ["H", "N"]);

        // A single reading: the whole reading's interpretation is the reading's own.
        let mut w = body_weight("key-7");
        w.details.interpretation = Some(coded(V3_INTERPRETATION, "L", "Low"));
        w.details.date_only = true;
        w.effective = UtcDateTime {
            year: 2026,
            month: 7,
            day: 14,
            hour: 0,
            minute: 0,
            second: 0,
        };
        let l = leaves(&render_observation_batch(&w).unwrap());
        assert_eq!(leaf(&l, "Interpretation/Value"), Vec::<&str>::new());
        assert_eq!(leaf(&l, "Observation/Interpretation/Value"), ["L"]);
        assert_eq!(
            leaf(&l, "AssignedDate"),
            ["14/07/2026"],
            "a date is not shifted"
        );
        assert_eq!(leaf(&l, "DatePart"), ["YMD"]);
        assert_eq!(leaf(&l, "AssignedTime"), Vec::<&str>::new());

        for (what, change) in [
            ("method", {
                let mut o = body_weight("k");
                o.details.method = Some(coded(gp_fhir::model::SNOMED, "37931006", "Auscultation"));
                o
            }),
            ("device", {
                let mut o = body_weight("k");
                o.details.device = Some("Acme scales".into());
                o
            }),
            ("codings", {
                let mut o = body_weight("k");
                o.details.original_codings =
                    vec![coded("http://loinc.org", "29463-7", "Body weight")];
                o
            }),
            ("BodySite", {
                let mut o = body_weight("k");
                o.details.body_site = Some(coded(V3_INTERPRETATION, "H", "High"));
                o
            }),
            ("Interpretation", {
                let mut o = body_weight("k");
                o.measurements[0].interpretation = Some(coded("http://example.org/x", "H", "High"));
                o
            }),
        ] {
            match render_observation_batch(&change) {
                Err(AdapterError::Unprocessable { detail, .. }) => {
                    assert!(detail.contains(what), "{what}: {detail}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn request_text_is_escaped() {
        let mut o = body_weight("key-5");
        o.measurements[0].display = "Weight <home> & \"scales\"".into();
        let xml = render_observation_batch(&o).unwrap();
        assert!(xml.contains("Weight &lt;home&gt; &amp; &quot;scales&quot;"));
        let l = leaves(&xml);
        assert_eq!(
            leaf(&l, "Observation/Code/Term"),
            ["Weight <home> & \"scales\""]
        );
    }

    fn details(lines: &[&str]) -> ContactDetails {
        ContactDetails {
            home_phone: Some("01632 960123".into()),
            mobile: None,
            email: Some("a.b@example.com".into()),
            address: Some(HomeAddress {
                lines: lines.iter().map(|l| (*l).to_owned()).collect(),
                town: "Leeds".into(),
                county: "West Yorkshire".into(),
                postcode: "LS1 4AP".into(),
            }),
            language: Some("cy".into()),
        }
    }

    #[test]
    fn contact_details_render_where_the_read_mapping_looks() {
        let version = "2024-07-15T10:30:00+01:00";
        let xml =
            render_contact_details(version, &details(&["12 Harness Row", "Testville"])).unwrap();
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "LastModified"), ["15/07/2024 10:30:00"]);
        assert_eq!(leaf(&l, "Address/HouseNameFlat"), [""]);
        assert_eq!(leaf(&l, "Address/Street"), ["12 Harness Row"]);
        assert_eq!(leaf(&l, "Address/Village"), ["Testville"]);
        assert_eq!(leaf(&l, "Address/Town"), ["Leeds"]);
        assert_eq!(leaf(&l, "Address/County"), ["West Yorkshire"]);
        assert_eq!(leaf(&l, "Address/PostCode"), ["LS1 4AP"]);
        assert_eq!(leaf(&l, "HomeTelephone"), ["01632 960123"]);
        assert_eq!(leaf(&l, "MobileTelephone"), [""], "None is sent empty");
        assert_eq!(leaf(&l, "Email"), ["a.b@example.com"]);
        assert_eq!(leaf(&l, "MainSpokenLanguage/Value"), ["cy"]);

        let l = leaves(
            &render_contact_details(version, &details(&["Flat 2", "1 High St", "Roundhay"]))
                .unwrap(),
        );
        assert_eq!(leaf(&l, "Address/HouseNameFlat"), ["Flat 2"]);
        assert_eq!(leaf(&l, "Address/Street"), ["1 High St"]);
        assert_eq!(leaf(&l, "Address/Village"), ["Roundhay"]);
        let l = leaves(&render_contact_details(version, &details(&["1 High St"])).unwrap());
        assert_eq!(leaf(&l, "Address/Street"), ["1 High St"]);
        assert_eq!(leaf(&l, "Address/Village"), [""]);

        let none = ContactDetails::default();
        let l = leaves(&render_contact_details(version, &none).unwrap());
        assert!(
            leaf(&l, "Address/Street") == [""] && leaf(&l, "Address/PostCode") == [""],
            "no address: every part empty"
        );
        assert!(leaf(&l, "MainSpokenLanguage/Value").is_empty());

        for bad in [
            details(&[]),
            details(&["a", "b", "c", "d"]),
            details(&["", "b"]),
            details(&[" 12 Row"]),
            ContactDetails {
                email: Some(String::new()),
                ..details(&["1 Row"])
            },
        ] {
            assert!(
                matches!(
                    render_contact_details(version, &bad),
                    Err(AdapterError::Unprocessable { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn versions_and_last_modified_round_trip() {
        for raw in [
            "15/01/2024 10:30:00",
            "15/07/2024 10:30:00",
            // The repeated autumn hour and the skipped spring hour.
            "27/10/2024 01:30:00",
            "31/03/2024 01:30:00",
            "31/03/2024 00:59:59",
            "31/12/2024 23:59:59",
        ] {
            let version = version_from_last_modified(raw).unwrap();
            assert_eq!(
                last_modified_from_version(&version).as_deref(),
                Some(raw),
                "{version}"
            );
        }
        // A UTC form of the same instant is converted to UK local time.
        assert_eq!(
            last_modified_from_version("2024-07-15T09:30:00Z").as_deref(),
            Some("15/07/2024 10:30:00")
        );
        assert_eq!(
            last_modified_from_version("2024-07-15T09:30:00+00:00").as_deref(),
            Some("15/07/2024 10:30:00")
        );
        assert_eq!(last_modified_from_version("W/\"3\""), None);
        assert!(matches!(
            render_contact_details("yesterday", &ContactDetails::default()),
            Err(AdapterError::VersionConflict { .. })
        ));
    }

    #[test]
    fn write_answers_are_read_strictly() {
        let ok = format!(
            "<ObservationBatchResult xmlns=\"{NS}\"><Outcome>Created</Outcome><EventGUID>{{AB-1}}</EventGUID><EventGUID>cd-2</EventGUID></ObservationBatchResult>"
        );
        assert_eq!(parse_batch_result(ok.as_bytes()).unwrap(), ["ab-1", "cd-2"]);
        for bad in [
            format!("<ObservationBatchResult xmlns=\"{NS}\"/>"),
            format!(
                "<ObservationBatchResult xmlns=\"{NS}\"><EventGUID>a b</EventGUID></ObservationBatchResult>"
            ),
            "<ObservationBatchResult><EventGUID>ab</EventGUID></ObservationBatchResult>".to_owned(),
            "not xml".to_owned(),
        ] {
            assert!(
                matches!(
                    parse_batch_result(bad.as_bytes()),
                    Err(AdapterError::InvalidNativeData { .. })
                ),
                "{bad}"
            );
        }
        let ok = format!(
            "<ContactDetailsResult xmlns=\"{NS}\"><LastModified>15/07/2024 10:30:01</LastModified></ContactDetailsResult>"
        );
        assert_eq!(
            parse_contact_result(ok.as_bytes()).unwrap(),
            "2024-07-15T10:30:01+01:00"
        );
        let bad = format!(
            "<ContactDetailsResult xmlns=\"{NS}\"><LastModified>soon</LastModified></ContactDetailsResult>"
        );
        assert!(matches!(
            parse_contact_result(bad.as_bytes()),
            Err(AdapterError::InvalidNativeData { .. })
        ));
    }
}
