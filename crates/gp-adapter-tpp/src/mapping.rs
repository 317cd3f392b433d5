//! SystmOne PatientRecord XML → UK Core R4. Pure functions, no I/O.
//!
//! The record arrives in pages ([`map_page`] maps one, [`assemble`] checks the pages
//! add up to one record and joins them). The whole record is mapped or nothing is: any
//! element that is missing or malformed, or pages that disagree, fail the record with a
//! [`TppDataError`] naming what is wrong, so a caller never sees a half-mapped
//! resource. The format is `docs/native-formats/tpp.md`.

use gp_fhir::text::shown;
use std::collections::HashSet;

use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::{fhir_date, fhir_year, fhir_year_month, uk_local_from_utc};
use gp_adapter::uk_core::{self, meta};
use gp_adapter::vital_signs::{self, PanelLink};
use gp_adapter::write::{Coded, ContactDetails, Created, NewObservation, ReadingSupport};
use gp_adapter::xml::{Document, Node};
use gp_adapter::{AdapterError, PatientFlags, Want};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Coding, Condition,
    ContactPoint, Dosage, Encounter, EncounterParticipant, HumanName, Identifier, Immunization,
    ImmunizationPerformer, MedicationStatement, NhsVerification, Observation, Organization,
    Patient, PatientCommunication, Period, Practitioner, ProtocolApplied, Quantity, Reference,
    Resource, SDS_USER_ID_SYSTEM,
};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::MAX_PAGE_SIZE;
use crate::error::TppDataError;

/// Base of the identifier systems holding SystmOne UIDs (`{base}{type}-uid`).
pub const TPP_ID_BASE: &str = "https://tpp-uk.com/Id/";
/// GMC reference number of a doctor.
pub use gp_adapter::uk_core::GMC_SYSTEM;
/// Most pages a record may have (10,000 pages of 100 events): a bound against a
/// `TotalEvents` that would have the adapter fetch forever.
pub const MAX_PAGES: u32 = 10_000;

/// A whole mapped record (every page).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    pub nhs_number: NhsNumber,
    pub ods: OdsCode,
    pub patient: Patient,
    pub organization: Organization,
    /// The usual GP, when the record names one.
    pub practitioner: Option<Practitioner>,
    /// `Demographics/LastUpdated`: changes whenever demographics change.
    pub version: String,
    pub flags: PatientFlags,
    /// Every clinical entry, in journal (document) order across pages.
    pub clinical: Vec<Resource>,
}

/// The `<Paging>` element of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page number.
    pub page: u32,
    /// Top-level events per page.
    pub page_size: u32,
    /// Top-level events in the whole record.
    pub total_events: u32,
}

impl Paging {
    /// Pages the record has (an empty journal still has one page).
    pub fn pages(&self) -> u32 {
        self.total_events.div_ceil(self.page_size.max(1)).max(1)
    }

    /// Top-level events page `page` must hold.
    pub fn events_on(&self, page: u32) -> u32 {
        let before = u64::from(page.saturating_sub(1)) * u64::from(self.page_size);
        let left = u64::from(self.total_events).saturating_sub(before);
        u32::try_from(left.min(u64::from(self.page_size))).unwrap_or(self.page_size)
    }
}

/// One mapped page: the demographics (repeated on every page) and its clinical events.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    pub paging: Paging,
    /// Top-level `Clinical/Event`s on this page.
    pub events: u32,
    /// `PatientUID`, lower case.
    pub patient_uid: String,
    pub nhs_number: NhsNumber,
    pub ods: OdsCode,
    pub patient: Patient,
    pub organization: Organization,
    pub practitioner: Option<Practitioner>,
    pub version: String,
    pub flags: PatientFlags,
    pub clinical: Vec<Resource>,
    /// Diastolic readings linked to their systolic one (`ParentEventUID`), which may be
    /// on another page.
    pub links: Vec<PanelLink>,
    /// A blood pressure's own interpretation (`PanelInterpretation`), by the EventUID of
    /// the systolic reading holding it: the panel's once the pages are assembled.
    pub panel_interpretations: Vec<(String, CodeableConcept)>,
}

pub(crate) type Result<T> = std::result::Result<T, TppDataError>;

/// Maps every page of a record, in page order, and joins them; `page_size` is the
/// `pageSize` the pages were requested with.
pub fn map_record(pages: &[&[u8]], page_size: u32) -> Result<MappedRecord> {
    map_record_for(pages, page_size, Want::Everything)
}

/// Maps what `want` asks of every page of a record (see [`Want`]) and joins them.
pub fn map_record_for(pages: &[&[u8]], page_size: u32, want: Want) -> Result<MappedRecord> {
    let mut mapped = Vec::with_capacity(pages.len());
    for (i, body) in pages.iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        mapped.push(map_page_for(body, want).map_err(|e| e.on_page(number))?);
    }
    assemble(mapped, page_size)
}

/// A native XML body (bytes as received) as a document.
pub(crate) fn document(body: &[u8]) -> Result<Document<'_>> {
    let text = std::str::from_utf8(body).map_err(|e| TppDataError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Document::parse_data(text).map_err(|e| TppDataError::MalformedXml(e.to_string()))
}

/// Maps one page body (bytes as received).
pub fn map_page(body: &[u8]) -> Result<RecordPage> {
    map_page_for(body, Want::Everything)
}

/// Maps what `want` asks of one page body (see [`Want`]): the Events of other clinical
/// areas are counted but not mapped.
pub fn map_page_for(body: &[u8], want: Want) -> Result<RecordPage> {
    let doc = document(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "PatientRecord" {
        return Err(TppDataError::WrongRoot {
            found: root.tag_name().name().to_owned(),
        });
    }
    map_root(root, want)
}

/// Maps a `<StaffMember>` document (a staff read) to a UK Core Practitioner, as the
/// record's `Organisation/Staff/StaffMember` is mapped.
pub fn map_staff_document(body: &[u8]) -> Result<Practitioner> {
    let doc = document(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "StaffMember" {
        return Err(TppDataError::Invalid {
            path: "StaffMember".into(),
            reason: format!(
                "the root element is <{}>, expected <StaffMember>",
                root.tag_name().name()
            ),
        });
    }
    let at = At::DOC.under("StaffMember");
    let id = uid_attr(&at, root, "StaffUID")?;
    map_staff(&at, root, id)
}

/// How many pages to fetch, judged from page 1 (checked again by [`assemble`]).
pub fn pages_to_fetch(first: &RecordPage, page_size: u32) -> Result<u32> {
    check_first(&first.paging, page_size)?;
    Ok(first.paging.pages())
}

pub(crate) fn check_first(p: &Paging, page_size: u32) -> Result<()> {
    if p.page != 1 {
        return Err(TppDataError::Paging(format!(
            "page 1 was requested, but Page {} was answered",
            p.page
        )));
    }
    if p.page_size != page_size {
        return Err(TppDataError::Paging(format!(
            "pageSize {page_size} was requested, but page 1 has PageSize {}",
            p.page_size
        )));
    }
    if p.pages() > MAX_PAGES {
        return Err(TppDataError::Paging(format!(
            "TotalEvents {} needs {} pages, more than the {MAX_PAGES} accepted",
            p.total_events,
            p.pages()
        )));
    }
    Ok(())
}

/// Checks `pages` (in the order requested, from page 1) are one consistent record and
/// joins them: every page numbered as asked, the same PageSize and TotalEvents, the
/// same patient and demographics version, each holding the events its number implies,
/// all pages present and no event twice.
pub fn assemble(pages: Vec<RecordPage>, page_size: u32) -> Result<MappedRecord> {
    let first = pages
        .first()
        .ok_or_else(|| TppDataError::Paging("no page was read".into()))?;
    let expected = first.paging;
    check_first(&expected, page_size)?;
    let n = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if n != expected.pages() {
        return Err(TppDataError::Paging(format!(
            "{n} pages were read, but TotalEvents {} at PageSize {} makes {}",
            expected.total_events,
            expected.page_size,
            expected.pages()
        )));
    }
    for (number, p) in (1u32..).zip(&pages) {
        let bad = |what: String| Err(TppDataError::Paging(format!("page {number} {what}")));
        if p.paging.page != number {
            return bad(format!("was answered as Page {}", p.paging.page));
        }
        if (p.paging.page_size, p.paging.total_events)
            != (expected.page_size, expected.total_events)
        {
            return bad(format!(
                "has PageSize {} and TotalEvents {}, but page 1 has {} and {}",
                p.paging.page_size,
                p.paging.total_events,
                expected.page_size,
                expected.total_events
            ));
        }
        if p.events != expected.events_on(number) {
            return bad(format!(
                "holds {} events, but {} were expected",
                p.events,
                expected.events_on(number)
            ));
        }
        if p.nhs_number != first.nhs_number
            || p.ods != first.ods
            || p.patient_uid != first.patient_uid
        {
            return bad(format!(
                "is for patient {} at {}, not {} at {}",
                p.nhs_number, p.ods, first.nhs_number, first.ods
            ));
        }
        if p.version != first.version || p.flags != first.flags {
            return bad(
                "shows demographics or sharing flags changed while the pages were read".into(),
            );
        }
    }
    let total: usize = pages.iter().map(|p| p.clinical.len()).sum();
    let mut seen = HashSet::with_capacity(total);
    for p in &pages {
        for r in &p.clinical {
            if !seen.insert((r.resource_type(), r.id())) {
                return Err(TppDataError::Paging(format!(
                    "event {} appears more than once",
                    r.id()
                )));
            }
        }
    }
    let mut pages = pages.into_iter();
    let Some(first) = pages.next() else {
        return Err(TppDataError::Paging("no page was read".into()));
    };
    let mut clinical = first.clinical;
    let mut links = first.links;
    let mut panel_interpretations = first.panel_interpretations;
    clinical.reserve(total.saturating_sub(clinical.len()));
    for p in pages {
        clinical.extend(p.clinical);
        links.extend(p.links);
        panel_interpretations.extend(p.panel_interpretations);
    }
    // A blood pressure is one panel, whichever pages its two events were on.
    vital_signs::finish(&mut clinical, &links);
    set_panel_interpretations(&mut clinical, panel_interpretations);
    Ok(MappedRecord {
        nhs_number: first.nhs_number,
        ods: first.ods,
        patient: first.patient,
        organization: first.organization,
        practitioner: first.practitioner,
        version: first.version,
        flags: first.flags,
        clinical,
    })
}

/// Reads a SystmOne `<ErrorResponse>`'s `(ErrorCode, Description)`, if the body is one.
pub fn parse_error_document(body: &[u8]) -> Option<(String, String)> {
    let doc = Document::parse_data(std::str::from_utf8(body).ok()?).ok()?;
    let root = doc.root_element();
    if root.tag_name().name() != "ErrorResponse" {
        return None;
    }
    let code = text(child(root, "ErrorCode"))?.to_owned();
    let description = text(child(root, "Description"))
        .unwrap_or_default()
        .to_owned();
    Some((code, description))
}

// ---- element access ------------------------------------------------------------------

// The format has no namespace; readers match local names.
pub(crate) fn is(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name
}

pub(crate) fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(c, name))
}

/// Trimmed text of an element; `None` when absent or empty (`<Title/>`).
pub(crate) fn text<'a>(n: Option<Node<'a, '_>>) -> Option<&'a str> {
    n.and_then(|n| n.trimmed_text())
}

pub(crate) fn opt<'a>(n: Node<'a, '_>, element: &str) -> Option<&'a str> {
    text(child(n, element))
}

/// Trimmed attribute value; `None` when absent or empty.
pub(crate) fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name).map(str::trim).filter(|s| !s.is_empty())
}

/// Where an element sits, for error messages (`Patient/Clinical/Event[3]/Event[1]`);
/// built only on error.
#[derive(Clone, Copy)]
pub(crate) struct At<'p> {
    parent: Option<&'p At<'p>>,
    name: &'static str,
    index: Option<usize>,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent
            && !p.name.is_empty()
        {
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
    /// The document element itself: paths under it start with the child's name.
    pub(crate) const DOC: At<'static> = At {
        parent: None,
        name: "",
        index: None,
    };

    pub(crate) fn under(&'p self, name: &'static str) -> At<'p> {
        At {
            parent: Some(self),
            name,
            index: None,
        }
    }
    pub(crate) fn nth(&'p self, name: &'static str, index: usize) -> At<'p> {
        At {
            parent: Some(self),
            name,
            index: Some(index),
        }
    }
    fn path(&self, element: &str) -> String {
        if self.name.is_empty() {
            element.to_owned()
        } else {
            format!("{self}/{element}")
        }
    }
    pub(crate) fn missing(&self, element: &str) -> TppDataError {
        TppDataError::Missing {
            path: self.path(element),
        }
    }
    pub(crate) fn invalid(&self, element: &str, reason: impl Into<String>) -> TppDataError {
        TppDataError::Invalid {
            path: self.path(element),
            reason: reason.into(),
        }
    }
    pub(crate) fn req<'a>(&self, n: Node<'a, '_>, element: &'static str) -> Result<&'a str> {
        opt(n, element).ok_or_else(|| self.missing(element))
    }
    pub(crate) fn node<'a, 'i>(
        &self,
        n: Node<'a, 'i>,
        element: &'static str,
    ) -> Result<Node<'a, 'i>> {
        child(n, element).ok_or_else(|| self.missing(element))
    }
}

/// An attribute's path segment, `@Name`.
pub(crate) fn at_attr(name: &str) -> String {
    format!("@{name}")
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// A boolean attribute; `None` when absent. Paths are built only on error.
pub(crate) fn bool_value(at: &At, n: Node, name: &str) -> Result<Option<bool>> {
    match attr(n, name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
        Some(v) => Err(at.invalid(
            &at_attr(name),
            format!("'{}' is not true or false", shown(v)),
        )),
    }
}

/// A boolean attribute, `false` when absent.
fn bool_attr(at: &At, n: Node, name: &str) -> Result<bool> {
    Ok(bool_value(at, n, name)?.unwrap_or(false))
}

fn uid_checked(at: &At, what: &str, raw: &str) -> Result<String> {
    uk_core::guid_id(raw).ok_or_else(|| at.invalid(what, format!("'{}' is not a UID", shown(raw))))
}

pub(crate) fn uid_attr(at: &At, n: Node, name: &str) -> Result<String> {
    opt_uid_attr(at, n, name)?.ok_or_else(|| at.missing(&at_attr(name)))
}

pub(crate) fn opt_uid_attr(at: &At, n: Node, name: &str) -> Result<Option<String>> {
    let Some(raw) = attr(n, name) else {
        return Ok(None);
    };
    uk_core::guid_id(raw)
        .map(Some)
        .ok_or_else(|| at.invalid(&at_attr(name), format!("'{}' is not a UID", shown(raw))))
}

fn positive(at: &At, what: &str, v: Option<&str>) -> Result<u32> {
    let v = v.ok_or_else(|| at.missing(what))?;
    v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        at.invalid(
            what,
            format!("'{}' is not a positive whole number", shown(v)),
        )
    })
}

// ---- dates ---------------------------------------------------------------------------

fn check_calendar(y: i32, m: u8, d: u8) -> bool {
    (1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && d >= 1
        && d <= gp_fhir::date::days_in_month(y, m)
}

/// `YYYY-MM-DDTHH:MM:SSZ` → parts, calendar and clock checked.
pub(crate) fn iso_utc(s: &str) -> Option<(i32, u8, u8, u8, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let y = i32::try_from(num(0..4)?).ok()?;
    let m = u8::try_from(num(5..7)?).ok()?;
    let d = u8::try_from(num(8..10)?).ok()?;
    let h = u8::try_from(num(11..13)?).ok()?;
    let mi = u8::try_from(num(14..16)?).ok()?;
    let sec = u8::try_from(num(17..19)?).ok()?;
    (check_calendar(y, m, d) && h < 24 && mi < 60 && sec < 60).then_some((y, m, d, h, mi, sec))
}

/// A SystmOne date (`raw`, ISO-8601 UTC) at its `DatePrecision` → FHIR date/dateTime.
/// `what` names the value and `precision_on` the element holding `DatePrecision`
/// (`None`: an attribute beside `what`), for errors.
fn precise(
    at: &At,
    what: &str,
    raw: &str,
    precision_on: Option<&str>,
    precision: Option<&str>,
) -> Result<String> {
    let (y, m, d, h, mi, s) = iso_utc(raw).ok_or_else(|| {
        at.invalid(
            what,
            format!("'{}' is not a YYYY-MM-DDTHH:MM:SSZ date-time", shown(raw)),
        )
    })?;
    // Partial dates are the first instant they denote and are never shifted to local time.
    Ok(match precision {
        None | Some("DateTime") => uk_local_from_utc(y, m, d, h, mi, s),
        Some("Date") => fhir_date(y, m, d),
        Some("Month") => fhir_year_month(y, m),
        Some("Year") => fhir_year(y),
        Some(other) => {
            let precision_what = match precision_on {
                Some(element) => format!("{element}/@DatePrecision"),
                None => "@DatePrecision".to_owned(),
            };
            return Err(at.invalid(
                &precision_what,
                format!("'{}' is not Year, Month, Date or DateTime", shown(other)),
            ));
        }
    })
}

/// A date element (`<DateOfBirth DatePrecision="Date">1970-03-02T00:00:00Z</DateOfBirth>`).
fn date_element(at: &At, n: Node, element: &'static str) -> Result<Option<String>> {
    let Some(e) = child(n, element) else {
        return Ok(None);
    };
    let Some(raw) = text(Some(e)) else {
        return Ok(None);
    };
    precise(at, element, raw, Some(element), attr(e, "DatePrecision")).map(Some)
}

// ---- shared pieces -------------------------------------------------------------------

pub(crate) fn gender(at: &At, n: Node) -> Result<Option<String>> {
    Ok(match opt(n, "Sex") {
        None => None,
        Some("Male") => Some("male".into()),
        Some("Female") => Some("female".into()),
        Some("Indeterminate") => Some("other".into()),
        Some("Unknown") => Some("unknown".into()),
        Some(v) => {
            return Err(at.invalid(
                "Sex",
                format!(
                    "'{}' is not Male, Female, Indeterminate or Unknown",
                    shown(v)
                ),
            ));
        }
    })
}

fn human_name(n: Node, use_: Option<&str>) -> Option<HumanName> {
    let family = owned(opt(n, "Surname"));
    let mut given: Vec<String> = opt(n, "Forename")
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(middle) = opt(n, "MiddleNames") {
        given.extend(middle.split_whitespace().map(str::to_owned));
    }
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
    let line: Vec<String> = ["AddressLine1", "AddressLine2", "AddressLine3"]
        .iter()
        .filter_map(|e| opt(a, e))
        .map(str::to_owned)
        .collect();
    let addr = Address {
        use_: None,
        line,
        city: owned(opt(a, "AddressLine4")),
        district: None,
        postal_code: owned(opt(a, "PostCode")),
        country: None,
    };
    (addr != Address::default()).then_some(addr)
}

/// `Demographics/MainSpokenLanguage/@Code`, the patient's preferred language (the
/// element's text is only the language's name).
fn main_spoken_language<'a>(demo: Node<'a, '_>) -> Option<&'a str> {
    child(demo, "MainSpokenLanguage").and_then(|l| attr(l, "Code"))
}

fn contact(value: Option<&str>, system: &str, use_: Option<&str>) -> Option<ContactPoint> {
    value.map(|v| ContactPoint {
        system: Some(system.to_owned()),
        value: Some(v.to_owned()),
        use_: use_.map(str::to_owned),
    })
}

/// The kinds of native object whose UIDs become identifiers.
#[derive(Clone, Copy)]
enum UidKind {
    Patient,
    Organisation,
    Staff,
    Event,
}

/// `https://tpp-uk.com/Id/{kind}-uid` (see [`TPP_ID_BASE`]), without a per-resource format.
fn tpp_id(kind: UidKind, uid: &str) -> Identifier {
    let system = match kind {
        UidKind::Patient => "https://tpp-uk.com/Id/patient-uid",
        UidKind::Organisation => "https://tpp-uk.com/Id/organisation-uid",
        UidKind::Staff => "https://tpp-uk.com/Id/staff-uid",
        UidKind::Event => "https://tpp-uk.com/Id/event-uid",
    };
    Identifier::new(system, uid)
}

/// The `<Code Scheme=…>` and `<Rubric>` children of `n` → CodeableConcept via the
/// gateway's terminology maps. `None` when `n` has no `<Code>`.
fn coded(at: &At, n: Node) -> Result<Option<CodeableConcept>> {
    let Some(code) = child(n, "Code") else {
        return Ok(None);
    };
    let value = text(Some(code)).ok_or_else(|| at.missing("Code"))?;
    let scheme = match attr(code, "Scheme") {
        None => return Err(at.missing("Code/@Scheme")),
        Some(s) if s.eq_ignore_ascii_case("CTV3") => CodeScheme::Ctv3,
        Some(s) if s.eq_ignore_ascii_case("Snomed") => CodeScheme::Snomed,
        Some(s) if s.eq_ignore_ascii_case("DMD") => CodeScheme::Dmd,
        Some(other) => {
            return Err(at.invalid(
                "Code/@Scheme",
                format!("'{}' is not CTV3, Snomed or DMD", shown(other)),
            ));
        }
    };
    let rubric = opt(n, "Rubric").unwrap_or_default();
    Ok(Some(terminology::coded(
        crate::SYSTEM,
        scheme,
        value,
        rubric,
        None,
    )))
}

fn required_code(at: &At, n: Node) -> Result<CodeableConcept> {
    coded(at, n)?.ok_or_else(|| at.missing("Code"))
}

fn practitioner_ref(uid: Option<&str>) -> Option<Reference> {
    uid.map(|g| Reference::to("Practitioner", g))
}

// ---- the page ------------------------------------------------------------------------

struct Ctx {
    patient_ref: Reference,
    org_ref: Reference,
    want: Want,
}

fn map_root(root: Node, want: Want) -> Result<RecordPage> {
    let doc = At::DOC;
    let paging = map_paging(&doc, root)?;
    let patient_uid = uid_checked(&doc, "PatientUID", doc.req(root, "PatientUID")?)?;
    let raw_ods = doc.req(root, "OrganisationID")?;
    let ods = OdsCode::parse(raw_ods).map_err(|e| doc.invalid("OrganisationID", e.to_string()))?;

    let patient_at = doc.under("Patient");
    let patient_node = doc.node(root, "Patient")?;
    let identity_at = patient_at.under("Identity");
    let identity = patient_at.node(patient_node, "Identity")?;
    let raw_nhs = identity_at.req(identity, "NHSNumber")?;
    // SystmOne writes the bare 10 digits; spaces are a different system's habit.
    if raw_nhs.len() != 10 || !raw_nhs.bytes().all(|b| b.is_ascii_digit()) {
        return Err(identity_at.invalid(
            "NHSNumber",
            format!("'{}' is not 10 digits", shown(raw_nhs)),
        ));
    }
    let nhs =
        NhsNumber::parse(raw_nhs).map_err(|e| identity_at.invalid("NHSNumber", e.to_string()))?;
    let status = identity_at.req(identity, "NHSNumberStatus")?;
    let verification = NhsVerification::from_code(status).ok_or_else(|| {
        identity_at.invalid(
            "NHSNumberStatus",
            format!("'{}' is not a code 01 to 08", shown(status)),
        )
    })?;

    let demo_at = patient_at.under("Demographics");
    let demo = patient_at.node(patient_node, "Demographics")?;
    if opt(demo, "Surname").is_none() {
        return Err(demo_at.missing("Surname"));
    }
    let birth_date = date_element(&demo_at, demo, "DateOfBirth")?
        .ok_or_else(|| demo_at.missing("DateOfBirth"))?;
    let version = demo_at.req(demo, "LastUpdated")?;
    if iso_utc(version).is_none() {
        return Err(demo_at.invalid(
            "LastUpdated",
            format!(
                "'{}' is not a YYYY-MM-DDTHH:MM:SSZ date-time",
                shown(version)
            ),
        ));
    }
    let usual_gp = match child(demo, "UsualGP") {
        Some(gp) => opt_uid_attr(&demo_at.under("UsualGP"), gp, "StaffUID")?,
        None => None,
    };

    // The sharing flags decide what may leave the gateway, so they are never assumed.
    let flags_at = patient_at.under("SharingFlags");
    let flags_node = patient_at.node(patient_node, "SharingFlags")?;
    let flag = |name: &str| -> Result<bool> {
        bool_value(&flags_at, flags_node, name)?.ok_or_else(|| flags_at.missing(&at_attr(name)))
    };
    let restricted = flag("Sensitive")?;
    let dissent = flag("ThirdPartyDissent")?;

    let org_at = doc.under("Organisation");
    let org_node = doc.node(root, "Organisation")?;
    let organization = Organization {
        id: ods.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![
            Identifier::ods(&ods),
            tpp_id(
                UidKind::Organisation,
                &uid_attr(&org_at, org_node, "OrganisationUID")?,
            ),
        ],
        name: owned(opt(org_node, "Name")),
        telecom: contact(opt(org_node, "Telephone"), "phone", Some("work"))
            .into_iter()
            .collect(),
        address: address(org_node).into_iter().collect(),
    };

    let mut practitioner = None;
    if let Some(staff) = child(org_node, "Staff") {
        let staff_at = org_at.under("Staff");
        for (i, member) in staff
            .children()
            .filter(|c| is(c, "StaffMember"))
            .enumerate()
        {
            let at = staff_at.nth("StaffMember", i + 1);
            let id = uid_attr(&at, member, "StaffUID")?;
            if practitioner.is_none() && usual_gp.as_deref() == Some(id.as_str()) {
                practitioner = Some(map_staff(&at, member, id)?);
            }
        }
    }
    if let (Some(gp), None) = (&usual_gp, &practitioner) {
        return Err(demo_at.invalid(
            "UsualGP/@StaffUID",
            format!("{gp} is not a StaffMember of the Organisation"),
        ));
    }

    let mut telecom: Vec<ContactPoint> = Vec::new();
    telecom.extend(contact(opt(demo, "HomeTelephone"), "phone", Some("home")));
    telecom.extend(contact(
        opt(demo, "MobileTelephone"),
        "phone",
        Some("mobile"),
    ));
    telecom.extend(contact(opt(demo, "Email"), "email", None));
    let patient = Patient {
        id: nhs.to_string(),
        meta: meta("Patient", restricted),
        identifier: vec![
            Identifier::nhs_number(nhs, verification),
            tpp_id(UidKind::Patient, &patient_uid),
        ],
        active: Some(true),
        name: human_name(demo, Some("official")).into_iter().collect(),
        telecom,
        gender: gender(&demo_at, demo)?,
        birth_date: Some(birth_date),
        deceased_date_time: date_element(&demo_at, demo, "DateOfDeath")?,
        address: address(demo)
            .map(|a| Address {
                use_: Some("home".into()),
                ..a
            })
            .into_iter()
            .collect(),
        general_practitioner: practitioner_ref(usual_gp.as_deref()).into_iter().collect(),
        managing_organization: Some(Reference::to("Organization", ods.as_str())),
        communication: main_spoken_language(demo)
            .map(PatientCommunication::preferred)
            .into_iter()
            .collect(),
    };

    let ctx = Ctx {
        patient_ref: Reference::to("Patient", &patient.id),
        org_ref: Reference::to("Organization", ods.as_str()),
        want,
    };
    let clinical_list = child(patient_node, "Clinical");
    // One resource per event at least (nested events add more): reserve once.
    let mut clinical = Vec::with_capacity(
        clinical_list.map_or(0, |l| l.children().filter(|c| is(c, "Event")).count()),
    );
    let mut events = 0u32;
    let mut links = Vec::new();
    let mut panel_interpretations = Vec::new();
    if let Some(list) = clinical_list {
        let clinical_at = patient_at.under("Clinical");
        for (i, e) in list.children().filter(|c| is(c, "Event")).enumerate() {
            events += 1;
            if want == Want::Demographics {
                continue;
            }
            map_event(
                &ctx,
                &clinical_at.nth("Event", i + 1),
                e,
                None,
                &mut Mapped {
                    resources: &mut clinical,
                    links: &mut links,
                    panel_interpretations: &mut panel_interpretations,
                },
            )?;
        }
    }
    if events > paging.page_size {
        return Err(TppDataError::Paging(format!(
            "page {} holds {events} events, more than its PageSize {}",
            paging.page, paging.page_size
        )));
    }

    Ok(RecordPage {
        links,
        panel_interpretations,
        paging,
        events,
        patient_uid,
        nhs_number: nhs,
        ods,
        patient,
        organization,
        practitioner,
        version: version.to_owned(),
        flags: PatientFlags {
            restricted,
            dissent,
        },
        clinical,
    })
}

fn map_paging(doc: &At, root: Node) -> Result<Paging> {
    let at = doc.under("Paging");
    let n = doc.node(root, "Paging")?;
    let page = positive(&at, "@Page", attr(n, "Page"))?;
    let page_size = positive(&at, "@PageSize", attr(n, "PageSize"))?;
    if page_size > MAX_PAGE_SIZE {
        return Err(at.invalid(
            "@PageSize",
            format!("{page_size} is more than the maximum {MAX_PAGE_SIZE}"),
        ));
    }
    let raw_total = attr(n, "TotalEvents").ok_or_else(|| at.missing("@TotalEvents"))?;
    let total_events = raw_total.parse::<u32>().map_err(|_| {
        at.invalid(
            "@TotalEvents",
            format!("'{}' is not a whole number", shown(raw_total)),
        )
    })?;
    Ok(Paging {
        page,
        page_size,
        total_events,
    })
}

fn map_staff(at: &At, n: Node, id: String) -> Result<Practitioner> {
    let mut identifier = vec![tpp_id(UidKind::Staff, &id)];
    identifier.extend(opt(n, "SmartcardID").map(|s| Identifier::new(SDS_USER_ID_SYSTEM, s)));
    identifier.extend(opt(n, "GmcNumber").map(uk_core::gmc_identifier));
    Ok(Practitioner {
        meta: meta("Practitioner", false),
        identifier,
        name: human_name(n, Some("official")).into_iter().collect(),
        gender: gender(at, n)?,
        id,
    })
}

/// What every Event carries, read from its attributes.
struct EventHead {
    id: String,
    date: String,
    done_by: Option<String>,
    confidential: bool,
    /// `Encounter/{uid}` of the consultation Event this one is grouped in.
    encounter: Option<Reference>,
    /// The supplier's identifier of a reading it recorded (`ExternalIdentifier`).
    supplier_identifier: Option<Identifier>,
}

/// What a page's Events map to.
struct Mapped<'a> {
    resources: &'a mut Vec<Resource>,
    links: &'a mut Vec<PanelLink>,
    /// `(systolic EventUID, PanelInterpretation)`.
    panel_interpretations: &'a mut Vec<(String, CodeableConcept)>,
}

/// The consultation Event a grouped Event inherits from.
struct Grouping<'a> {
    consultation_id: &'a str,
    confidential: bool,
}

/// The one element that says what an Event is.
const CONTENT: [&str; 4] = ["Consultation", "ClinicalCode", "Medication", "Vaccination"];

/// Maps an `<Event>` (and, for a consultation, the Events grouped in it) into `out`.
/// A confidential consultation makes everything recorded in it confidential.
fn map_event(
    ctx: &Ctx,
    at: &At,
    n: Node,
    grouped_in: Option<&Grouping>,
    mapped: &mut Mapped,
) -> Result<()> {
    let id = uid_attr(at, n, "EventUID")?;
    if let Some(parent) = opt_uid_attr(at, n, "ParentEventUID")? {
        mapped.links.push(PanelLink {
            systolic: parent,
            diastolic: id.clone(),
        });
    }
    if let Some(resource_type) = resource_type(n)
        && !ctx.want.takes(resource_type)
    {
        // Not wanted: skipped unmapped, but a consultation still groups the Events
        // recorded in it, which may be.
        if resource_type != "Encounter" {
            return Ok(());
        }
        let grouping = Grouping {
            consultation_id: &id,
            confidential: grouped_in.is_some_and(|g| g.confidential)
                || bool_attr(at, n, "Confidential")?,
        };
        for (i, e) in n.children().filter(|c| is(c, "Event")).enumerate() {
            map_event(ctx, &at.nth("Event", i + 1), e, Some(&grouping), mapped)?;
        }
        return Ok(());
    }
    let out = &mut *mapped.resources;
    let raw_date = attr(n, "DateTime").ok_or_else(|| at.missing("@DateTime"))?;
    let date = precise(at, "@DateTime", raw_date, None, attr(n, "DatePrecision"))?;
    let head = EventHead {
        id,
        date,
        done_by: opt_uid_attr(at, n, "DoneBy")?,
        confidential: grouped_in.is_some_and(|g| g.confidential)
            || bool_attr(at, n, "Confidential")?,
        encounter: grouped_in.map(|g| Reference::to("Encounter", g.consultation_id)),
        supplier_identifier: child(n, "ExternalIdentifier")
            .and_then(|e| vital_signs::supplier_identifier(attr(e, "System"), e.text())),
    };
    let mut content = n
        .children()
        .filter(|c| c.is_element() && CONTENT.contains(&c.tag_name().name()));
    let Some(item) = content.next() else {
        return Err(at.missing("Consultation, ClinicalCode, Medication or Vaccination"));
    };
    if let Some(extra) = content.next() {
        return Err(at.invalid(
            extra.tag_name().name(),
            format!(
                "an Event holds one entry, but this one also holds <{}>",
                item.tag_name().name()
            ),
        ));
    }
    let nested = n.children().filter(|c| is(c, "Event"));
    let name = item.tag_name().name();
    if name != "Consultation" && nested.clone().next().is_some() {
        return Err(at.invalid("Event", "only a consultation Event groups other Events"));
    }
    match name {
        "Consultation" => {
            if at.parent.is_some_and(|p| p.name == "Event") {
                return Err(at.invalid(
                    "Consultation",
                    "a consultation cannot be grouped inside another consultation",
                ));
            }
            // The grouped Events reference the Encounter by the id it is given here.
            let id = head.id.clone();
            let grouping = Grouping {
                consultation_id: &id,
                confidential: head.confidential,
            };
            out.push(map_consultation(
                ctx,
                &at.under("Consultation"),
                item,
                head,
            )?);
            for (i, e) in nested.enumerate() {
                map_event(ctx, &at.nth("Event", i + 1), e, Some(&grouping), mapped)?;
            }
        }
        "ClinicalCode" => {
            let code_at = at.under("ClinicalCode");
            if let Some(p) = child(item, "PanelInterpretation") {
                let panel = interpretation(&code_at, p, "PanelInterpretation")?;
                mapped.panel_interpretations.push((head.id.clone(), panel));
            }
            mapped
                .resources
                .push(map_clinical_code(ctx, &code_at, item, head)?);
        }
        "Medication" => out.push(Resource::MedicationStatement(map_medication(
            ctx,
            &at.under("Medication"),
            item,
            head,
        )?)),
        _ => out.push(Resource::Immunization(map_vaccination(
            ctx,
            &at.under("Vaccination"),
            item,
            head,
        )?)),
    }
    Ok(())
}

/// The FHIR resource type an Event maps to, read leniently, to skip one not wanted
/// unmapped; `None` when that is not plain (the Event is then mapped, and refused as it
/// is in the whole record).
fn resource_type(n: Node) -> Option<&'static str> {
    let item = n
        .children()
        .find(|c| c.is_element() && CONTENT.contains(&c.tag_name().name()))?;
    Some(match item.tag_name().name() {
        "Consultation" => "Encounter",
        "Medication" => "MedicationStatement",
        "Vaccination" => "Immunization",
        _ => match bool_value(&At::DOC, item, "IsAllergy").ok()? {
            Some(true) => "AllergyIntolerance",
            _ if child(item, "Problem").is_some() => "Condition",
            _ => "Observation",
        },
    })
}

fn map_consultation(ctx: &Ctx, at: &At, n: Node, head: EventHead) -> Result<Resource> {
    Ok(Resource::Encounter(Encounter {
        meta: meta("Encounter", head.confidential),
        identifier: vec![tpp_id(UidKind::Event, &head.id)],
        status: "finished".into(),
        class: uk_core::ambulatory(),
        type_: coded(at, n)?.into_iter().collect(),
        subject: ctx.patient_ref.clone(),
        participant: practitioner_ref(head.done_by.as_deref())
            .map(|r| EncounterParticipant {
                individual: Some(r),
            })
            .into_iter()
            .collect(),
        period: Some(Period {
            start: Some(head.date),
            end: None,
        }),
        service_provider: Some(ctx.org_ref.clone()),
        id: head.id,
    }))
}

fn map_clinical_code(ctx: &Ctx, at: &At, n: Node, head: EventHead) -> Result<Resource> {
    let code = required_code(at, n)?;
    let is_allergy = bool_attr(at, n, "IsAllergy")?;
    let problem = child(n, "Problem");
    let author = practitioner_ref(head.done_by.as_deref());
    let identifier = vec![tpp_id(UidKind::Event, &head.id)];
    if is_allergy {
        if problem.is_some() {
            return Err(at.invalid(
                "Problem",
                "a ClinicalCode with IsAllergy=\"true\" cannot also be a problem",
            ));
        }
        return map_allergy(ctx, at, n, head, code).map(Resource::AllergyIntolerance);
    }
    if let Some(problem) = problem {
        let problem_at = at.under("Problem");
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
        return Ok(Resource::Condition(Condition {
            meta: meta("Condition", head.confidential),
            identifier,
            clinical_status: Some(uk_core::condition_clinical_status(status)),
            verification_status: Some(uk_core::condition_confirmed()),
            category: vec![uk_core::problem_list_item()],
            code,
            subject: ctx.patient_ref.clone(),
            encounter: head.encounter,
            onset_date_time: Some(head.date),
            abatement_date_time: date_element(&problem_at, problem, "EndDate")?,
            recorder: author,
            id: head.id,
            ..Condition::default()
        }));
    }
    let value_quantity = match opt(n, "Value") {
        None => None,
        Some(v) => {
            let value: f64 = v
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| at.invalid("Value", format!("'{}' is not a number", shown(v))))?;
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
    let interpretation = match child(n, "Interpretation") {
        Some(i) => vec![self::interpretation(at, i, "Interpretation")?],
        None => Vec::new(),
    };
    let body_site = snomed_qualifier(at, n, "BodySite")?;
    let method = snomed_qualifier(at, n, "Method")?;
    // The supplier's identifier of a reading it recorded comes first, then SystmOne's.
    let identifier = head
        .supplier_identifier
        .into_iter()
        .chain(identifier)
        .collect();
    Ok(Resource::Observation(Observation {
        meta: meta("Observation", head.confidential),
        identifier,
        status: "final".into(),
        code,
        subject: ctx.patient_ref.clone(),
        encounter: head.encounter,
        effective_date_time: Some(head.date),
        performer: author.into_iter().collect(),
        value_quantity,
        interpretation,
        body_site,
        method,
        id: head.id,
        ..Observation::default()
    }))
}

/// An `<Interpretation System=… Code=…>display</Interpretation>` (or
/// `PanelInterpretation`): the one coding it holds, as it was written.
fn interpretation(at: &At, n: Node, element: &str) -> Result<CodeableConcept> {
    let system = attr(n, "System").ok_or_else(|| at.missing(&format!("{element}/@System")))?;
    let code = attr(n, "Code").ok_or_else(|| at.missing(&format!("{element}/@Code")))?;
    Ok(CodeableConcept {
        coding: vec![Coding::new(system, code, n.text().unwrap_or_default())],
        text: None,
    })
}

/// A SNOMED CT qualifier of a reading (`<BodySite>`, `<Method>`): its `<Code
/// Scheme="Snomed">` and `<Rubric>`, as written. Any other scheme is refused.
fn snomed_qualifier(at: &At, n: Node, element: &'static str) -> Result<Option<CodeableConcept>> {
    let Some(q) = child(n, element) else {
        return Ok(None);
    };
    let q_at = at.under(element);
    let code = q_at.node(q, "Code")?;
    if !attr(code, "Scheme").is_some_and(|s| s.eq_ignore_ascii_case("Snomed")) {
        return Err(q_at.invalid(
            "Code/@Scheme",
            "a reading's qualifier is SNOMED CT (Snomed)",
        ));
    }
    let value = text(Some(code)).ok_or_else(|| q_at.missing("Code"))?;
    Ok(Some(CodeableConcept {
        coding: vec![Coding::new(
            gp_fhir::model::SNOMED,
            value,
            opt(q, "Rubric").unwrap_or_default(),
        )],
        text: None,
    }))
}

/// Puts each blood pressure's own interpretation on its panel (the Observation with the
/// systolic reading's id); a single reading that has none of its own takes it too.
fn set_panel_interpretations(
    resources: &mut [Resource],
    panel_interpretations: Vec<(String, CodeableConcept)>,
) {
    for (id, concept) in panel_interpretations {
        for r in resources.iter_mut() {
            if let Resource::Observation(o) = r
                && o.id == id
                && (!o.component.is_empty() || o.interpretation.is_empty())
            {
                o.interpretation = vec![concept.clone()];
            }
        }
    }
}

fn map_allergy(
    ctx: &Ctx,
    at: &At,
    n: Node,
    head: EventHead,
    code: CodeableConcept,
) -> Result<AllergyIntolerance> {
    let details_at = at.under("Allergy");
    let details = at.node(n, "Allergy")?;
    let category = match opt(details, "Category") {
        None => None,
        Some("Drug") => Some("medication"),
        Some("Food") => Some("food"),
        Some("Environment") => Some("environment"),
        Some(v) => {
            return Err(details_at.invalid(
                "Category",
                format!("'{}' is not Drug, Food or Environment", shown(v)),
            ));
        }
    };
    let status = match details_at.req(details, "Status")? {
        "Active" => "active",
        "Resolved" => "resolved",
        v => {
            return Err(details_at.invalid(
                "Status",
                format!("'{}' is not Active or Resolved", shown(v)),
            ));
        }
    };
    let severity = match opt(details, "Severity") {
        None => None,
        Some("Mild") => Some("mild"),
        Some("Moderate") => Some("moderate"),
        Some("Severe") => Some("severe"),
        Some(v) => {
            return Err(details_at.invalid(
                "Severity",
                format!("'{}' is not Mild, Moderate or Severe", shown(v)),
            ));
        }
    };
    // FHIR needs a manifestation for a reaction, so a severity alone is not emitted.
    let reaction = match child(details, "Reaction") {
        Some(r) => coded(&details_at.under("Reaction"), r)?,
        None => None,
    }
    .map(|m| AllergyReaction {
        manifestation: vec![m],
        severity: severity.map(str::to_owned),
    });
    let ended = date_element(&details_at, details, "EndDate")?;
    Ok(AllergyIntolerance {
        meta: meta("AllergyIntolerance", head.confidential),
        identifier: vec![tpp_id(UidKind::Event, &head.id)],
        clinical_status: Some(uk_core::allergy_clinical_status(status)),
        verification_status: Some(uk_core::allergy_confirmed()),
        category: category.map(str::to_owned).into_iter().collect(),
        code,
        patient: ctx.patient_ref.clone(),
        encounter: head.encounter,
        onset_date_time: Some(head.date),
        recorder: practitioner_ref(head.done_by.as_deref()),
        reaction: reaction.into_iter().collect(),
        // R4 AllergyIntolerance has no end date element; keep it readable rather than lose it.
        note: ended
            .map(|d| Annotation {
                text: format!("Ended {d}"),
            })
            .into_iter()
            .collect(),
        id: head.id,
        ..AllergyIntolerance::default()
    })
}

fn map_medication(ctx: &Ctx, at: &At, n: Node, head: EventHead) -> Result<MedicationStatement> {
    let drug_at = at.under("Drug");
    let drug = at.node(n, "Drug")?;
    let medication = required_code(&drug_at, drug)?;
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
    let end = date_element(at, n, "EndDate")?;
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
        meta: meta("MedicationStatement", head.confidential),
        identifier: vec![tpp_id(UidKind::Event, &head.id)],
        status: status.into(),
        medication_codeable_concept: medication,
        subject: ctx.patient_ref.clone(),
        context: head.encounter,
        effective_period: Some(Period {
            start: Some(head.date.clone()),
            end,
        }),
        date_asserted: Some(head.date),
        information_source: practitioner_ref(head.done_by.as_deref()),
        dosage: opt(n, "Dosage")
            .map(|d| Dosage {
                text: Some(d.to_owned()),
                patient_instruction: None,
            })
            .into_iter()
            .collect(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
        id: head.id,
    })
}

fn map_vaccination(ctx: &Ctx, at: &At, n: Node, head: EventHead) -> Result<Immunization> {
    let dose = match opt(n, "DoseSequence") {
        None => None,
        Some(v) => Some(positive(at, "DoseSequence", Some(v))?),
    };
    Ok(Immunization {
        meta: meta("Immunization", head.confidential),
        identifier: vec![tpp_id(UidKind::Event, &head.id)],
        status: "completed".into(),
        vaccine_code: required_code(at, n)?,
        patient: ctx.patient_ref.clone(),
        encounter: head.encounter,
        occurrence_date_time: head.date,
        primary_source: Some(true),
        lot_number: owned(opt(n, "Batch")),
        performer: practitioner_ref(head.done_by.as_deref())
            .map(|actor| ImmunizationPerformer { actor })
            .into_iter()
            .collect(),
        protocol_applied: dose
            .map(|d| ProtocolApplied {
                dose_number_positive_int: Some(d),
            })
            .into_iter()
            .collect(),
        id: head.id,
        ..Immunization::default()
    })
}

// ---- write-back: neutral → native ----------------------------------------------------

/// XML-escapes `s` for element text and attribute values, dropping the characters
/// XML 1.0 cannot carry.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn unprocessable(detail: String) -> AdapterError {
    AdapterError::Unprocessable {
        system: crate::SYSTEM,
        detail,
    }
}

/// What SystmOne holds with a reading (`docs/native-formats/tpp.md`, "Reading details").
pub const READING_SUPPORT: ReadingSupport = ReadingSupport {
    date_only: true,
    interpretation: true,
    body_site: true,
    method: true,
    performer: true,
    original_codings: false,
    device: false,
};

/// `<{name} System="…" Code="…">display</{name}>`.
fn render_interpretation(name: &str, c: &Coded) -> String {
    format!(
        "<{name} System=\"{}\" Code=\"{}\">{}</{name}>",
        escape(&c.system),
        escape(&c.code),
        escape(c.display.as_deref().unwrap_or(""))
    )
}

/// `<{name}><Code Scheme="Snomed">…</Code><Rubric>…</Rubric></{name}>`; a coding that is
/// not SNOMED CT is [`AdapterError::Unprocessable`] (SystmOne qualifies in SNOMED CT).
fn render_snomed_qualifier(name: &str, c: &Coded) -> std::result::Result<String, AdapterError> {
    if c.system != gp_fhir::model::SNOMED {
        return Err(unprocessable(format!(
            "SystmOne records a reading's {name} in SNOMED CT, not {}",
            shown(&c.system)
        )));
    }
    Ok(format!(
        "  <{name}><Code Scheme=\"Snomed\">{}</Code><Rubric>{}</Rubric></{name}>\n",
        escape(&c.code),
        escape(c.display.as_deref().unwrap_or(""))
    ))
}

/// The `RecordEventsRequest` body for `o`: one `ClinicalCode` (one SystmOne event) per
/// measurement, coded in CTV3 where the concept has a CTV3 code and in SNOMED CT
/// (`Scheme="Snomed"`) otherwise, at the measured instant in UTC (a date alone:
/// `T00:00:00Z` with `DatePrecision="Date"`), under the observation's idempotency key.
/// Each measurement carries its `Interpretation`; the whole reading its
/// `PanelInterpretation`, `BodySite`, `Method` and the clinician who took it (`DoneBy`).
/// A blood pressure panel is its systolic and diastolic measurements (SystmOne records
/// them as two events); the panel code itself is not sent. What SystmOne cannot hold (a
/// device, other codings) is [`AdapterError::Unprocessable`], never dropped.
pub fn render_record_events(o: &NewObservation) -> std::result::Result<String, AdapterError> {
    if o.measurements.is_empty() {
        return Err(unprocessable(format!(
            "observation {} ({}) has no measurements to record",
            o.snomed, o.display
        )));
    }
    let d = &o.details;
    if d.device.is_some() {
        return Err(unprocessable(
            "SystmOne holds no device with a reading".into(),
        ));
    }
    if !d.original_codings.is_empty() {
        return Err(unprocessable(
            "SystmOne holds a reading's SNOMED CT or CTV3 code only, no other codings".into(),
        ));
    }
    let e = o.effective;
    let when = if d.date_only {
        format!(
            "DateTime=\"{:04}-{:02}-{:02}T00:00:00Z\" DatePrecision=\"Date\"",
            e.year, e.month, e.day
        )
    } else {
        format!("DateTime=\"{}\"", e.to_rfc3339())
    };
    let done_by = match &d.performer {
        Some(id) => format!(" DoneBy=\"{}\"", escape(id)),
        None => String::new(),
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<RecordEventsRequest ExternalReference=\"{}\" {when}{done_by}>\n",
        escape(&o.key),
    );
    if let Some((system, value)) = &o.identifier {
        xml.push_str(&format!(
            "  <ExternalIdentifier System=\"{}\">{}</ExternalIdentifier>\n",
            escape(system),
            escape(value)
        ));
    }
    // A single reading's own interpretation may come as the whole reading's.
    let single = o.measurements.len() == 1;
    for (i, m) in o.measurements.iter().enumerate() {
        let (scheme, code) = match terminology::native_code(CodeScheme::Ctv3, &m.snomed) {
            Some(ctv3) => ("CTV3", ctv3),
            None => ("Snomed", m.snomed.as_str()),
        };
        if !m.value.is_finite() {
            return Err(unprocessable(format!(
                "{} ({}) has no finite value",
                m.snomed, m.display
            )));
        }
        let own = m
            .interpretation
            .as_ref()
            .or(d.interpretation.as_ref().filter(|_| single && i == 0));
        xml.push_str(&format!(
            "  <ClinicalCode IsAllergy=\"false\"><Code Scheme=\"{scheme}\">{}</Code><Rubric>{}</Rubric><Value>{}</Value><Units>{}</Units>{}</ClinicalCode>\n",
            escape(code),
            escape(&m.display),
            m.value,
            escape(&m.unit),
            own.map(|c| render_interpretation("Interpretation", c))
                .unwrap_or_default()
        ));
    }
    if let Some(c) = d.interpretation.as_ref().filter(|_| !single) {
        xml.push_str(&format!(
            "  {}\n",
            render_interpretation("PanelInterpretation", c)
        ));
    }
    if let Some(c) = &d.body_site {
        xml.push_str(&render_snomed_qualifier("BodySite", c)?);
    }
    if let Some(c) = &d.method {
        xml.push_str(&render_snomed_qualifier("Method", c)?);
    }
    xml.push_str("</RecordEventsRequest>\n");
    Ok(xml)
}

/// Reads a `RecordEventsResponse`: the EventUIDs (as the read mapping gives them, so
/// they are the Observation ids) and whether they were created now. `status` is the
/// HTTP status it came with: `201` created, `200` a key seen before.
pub fn parse_record_events_response(body: &[u8], status: u16) -> Result<Created> {
    let text = std::str::from_utf8(body).map_err(|e| TppDataError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let doc = Document::parse_data(text).map_err(|e| TppDataError::MalformedXml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "RecordEventsResponse" {
        return Err(TppDataError::Invalid {
            path: root.tag_name().name().to_owned(),
            reason: "expected <RecordEventsResponse>".into(),
        });
    }
    let doc_at = At::DOC;
    let at = doc_at.under("RecordEventsResponse");
    let created = bool_value(&at, root, "Created")?.ok_or_else(|| at.missing("@Created"))?;
    if created != (status == 201) {
        return Err(at.invalid(
            "@Created",
            format!("Created=\"{created}\" came with HTTP {status}"),
        ));
    }
    let ids = root
        .children()
        .filter(|c| is(c, "Event"))
        .enumerate()
        .map(|(i, e)| uid_attr(&at.nth("Event", i + 1), e, "EventUID"))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(at.missing("Event"));
    }
    Ok(Created { ids, created })
}

/// The `ContactDetailsUpdate` body: the `LastUpdated` precondition (the record version
/// the update was made against) and the complete new contact details. Address lines go
/// to `AddressLine1..3` and the town to `AddressLine4`, as the read mapping takes them
/// back; blank lines are dropped (the read mapping skips them too). SystmOne holds no
/// county, so it is not sent. More than three lines is [`AdapterError::Unprocessable`];
/// a `version` that is not a `LastUpdated` value is [`AdapterError::VersionConflict`].
pub fn render_contact_update(
    version: &str,
    d: &ContactDetails,
) -> std::result::Result<String, AdapterError> {
    // A version SystmOne never gave cannot be the record's current one.
    if iso_utc(version).is_none() {
        return Err(AdapterError::VersionConflict {
            system: crate::SYSTEM,
            detail: format!(
                "'{}' is not a SystmOne LastUpdated value, so not the record's version",
                shown(version)
            ),
        });
    }
    let element = |name: &str, value: &str| format!("  <{name}>{}</{name}>\n", escape(value));
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ContactDetailsUpdate>\n");
    xml.push_str(&element("LastUpdated", version));
    if let Some(a) = &d.address {
        let lines: Vec<&str> = a
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > 3 {
            return Err(unprocessable(format!(
                "SystmOne holds at most three address lines before the town, not {}",
                lines.len()
            )));
        }
        xml.push_str("  <Address>");
        for (i, name) in ["AddressLine1", "AddressLine2", "AddressLine3"]
            .iter()
            .enumerate()
        {
            let line = lines.get(i).copied().unwrap_or("");
            xml.push_str(&format!("<{name}>{}</{name}>", escape(line)));
        }
        xml.push_str(&format!(
            "<AddressLine4>{}</AddressLine4><PostCode>{}</PostCode></Address>\n",
            escape(&a.town),
            escape(&a.postcode)
        ));
    }
    for (name, value) in [
        ("HomeTelephone", &d.home_phone),
        ("MobileTelephone", &d.mobile),
        ("Email", &d.email),
    ] {
        if let Some(v) = value {
            xml.push_str(&element(name, v));
        }
    }
    if let Some(code) = &d.language {
        xml.push_str(&format!(
            "  <MainSpokenLanguage Code=\"{}\"/>\n",
            escape(code)
        ));
    }
    xml.push_str("</ContactDetailsUpdate>\n");
    Ok(xml)
}

/// Reads a `ContactDetailsUpdateResponse`: the record's new `LastUpdated` (its version).
pub fn parse_contact_update_response(body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body).map_err(|e| TppDataError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let doc = Document::parse_data(text).map_err(|e| TppDataError::MalformedXml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "ContactDetailsUpdateResponse" {
        return Err(TppDataError::Invalid {
            path: root.tag_name().name().to_owned(),
            reason: "expected <ContactDetailsUpdateResponse>".into(),
        });
    }
    let doc_at = At::DOC;
    let at = doc_at.under("ContactDetailsUpdateResponse");
    let version = at.req(root, "LastUpdated")?;
    if iso_utc(version).is_none() {
        return Err(at.invalid(
            "LastUpdated",
            format!(
                "'{}' is not a YYYY-MM-DDTHH:MM:SSZ date-time",
                shown(version)
            ),
        ));
    }
    Ok(version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_strict() {
        assert_eq!(
            iso_utc("2024-01-12T09:40:00Z"),
            Some((2024, 1, 12, 9, 40, 0))
        );
        for bad in [
            "2024-01-12T09:40:00",
            "2024-01-12T09:40Z",
            "2024-02-30T09:40:00Z",
            "2024-01-12T24:00:00Z",
            "2024-01-12 09:40:00Z",
            "12/01/2024",
        ] {
            assert_eq!(iso_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn paging_arithmetic() {
        let p = Paging {
            page: 1,
            page_size: 100,
            total_events: 250,
        };
        assert_eq!(p.pages(), 3);
        assert_eq!(
            (
                p.events_on(1),
                p.events_on(2),
                p.events_on(3),
                p.events_on(4)
            ),
            (100, 100, 50, 0)
        );
        let empty = Paging {
            total_events: 0,
            ..p
        };
        assert_eq!((empty.pages(), empty.events_on(1)), (1, 0));
    }

    fn weight(unit: &str) -> NewObservation {
        NewObservation {
            key: "k-1".into(),
            identifier: None,
            snomed: "27113001".into(),
            display: "Body weight".into(),
            effective: gp_adapter::UtcDateTime {
                year: 2026,
                month: 7,
                day: 14,
                hour: 7,
                minute: 32,
                second: 5,
            },
            measurements: vec![gp_adapter::Measurement {
                snomed: "27113001".into(),
                display: "Body weight <home scales>".into(),
                value: 72.4,
                unit: unit.into(),
                interpretation: None,
            }],
            details: Default::default(),
        }
    }

    #[test]
    fn a_blood_pressure_is_two_ctv3_events_at_the_utc_instant() {
        let bp = gp_adapter::harness::blood_pressure("bp-key-1");
        let xml = render_record_events(&bp).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <RecordEventsRequest ExternalReference=\"bp-key-1\" DateTime=\"2026-07-14T07:32:05Z\">\n  \
             <ExternalIdentifier System=\"https://harness.example/readings\">bp-key-1</ExternalIdentifier>\n  \
             <ClinicalCode IsAllergy=\"false\"><Code Scheme=\"CTV3\">2469.</Code><Rubric>Systolic blood pressure</Rubric><Value>131</Value><Units>mm[Hg]</Units></ClinicalCode>\n  \
             <ClinicalCode IsAllergy=\"false\"><Code Scheme=\"CTV3\">246A.</Code><Rubric>Diastolic blood pressure</Rubric><Value>84</Value><Units>mm[Hg]</Units></ClinicalCode>\n\
             </RecordEventsRequest>\n"
        );
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "RecordEventsRequest");
    }

    #[test]
    fn values_and_text_are_rendered_exactly_and_escaped() {
        let xml = render_record_events(&weight("kg")).unwrap();
        assert!(xml.contains("<Code Scheme=\"CTV3\">22A..</Code>"), "{xml}");
        assert!(xml.contains("<Rubric>Body weight &lt;home scales&gt;</Rubric>"));
        assert!(xml.contains("<Value>72.4</Value><Units>kg</Units>"));
    }

    #[test]
    fn a_measurement_without_a_ctv3_code_is_written_in_snomed_ct() {
        let mut o = weight("%");
        o.measurements[0].snomed = "431314004".into();
        let xml = render_record_events(&o).unwrap();
        assert!(
            xml.contains("<Code Scheme=\"Snomed\">431314004</Code>"),
            "{xml}"
        );
        o.measurements.clear();
        assert!(matches!(
            render_record_events(&o),
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
    fn reading_details_are_rendered_where_systmone_takes_them() {
        let mut bp = gp_adapter::harness::blood_pressure("bp-key-2");
        let v3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
        bp.measurements[0].interpretation = Some(coded(v3, "H", "High"));
        bp.details.interpretation = Some(coded(v3, "A", "Abnormal"));
        bp.details.body_site = Some(coded(gp_fhir::model::SNOMED, "368209003", "Right arm"));
        bp.details.method = Some(coded(gp_fhir::model::SNOMED, "37931006", "Auscultation"));
        bp.details.performer = Some("0a1b".into());
        bp.details.date_only = true;
        let xml = render_record_events(&bp).unwrap();
        for part in [
            "DateTime=\"2026-07-14T00:00:00Z\" DatePrecision=\"Date\" DoneBy=\"0a1b\">",
            &format!(
                "<Units>mm[Hg]</Units><Interpretation System=\"{v3}\" Code=\"H\">High</Interpretation></ClinicalCode>"
            ),
            "<Units>mm[Hg]</Units></ClinicalCode>",
            &format!(
                "<PanelInterpretation System=\"{v3}\" Code=\"A\">Abnormal</PanelInterpretation>"
            ),
            "<BodySite><Code Scheme=\"Snomed\">368209003</Code><Rubric>Right arm</Rubric></BodySite>",
            "<Method><Code Scheme=\"Snomed\">37931006</Code><Rubric>Auscultation</Rubric></Method>",
        ] {
            assert!(xml.contains(part), "{part} not in {xml}");
        }
        Document::parse(&xml).unwrap();

        // A single reading's interpretation given as the whole reading's is its own.
        let mut w = weight("kg");
        w.details.interpretation = Some(coded(v3, "L", "Low"));
        let xml = render_record_events(&w).unwrap();
        assert!(xml.contains("<Interpretation System="), "{xml}");
        assert!(!xml.contains("PanelInterpretation"), "{xml}");

        for refused in [
            {
                let mut w = weight("kg");
                w.details.device = Some("scales".into());
                w
            },
            {
                let mut w = weight("kg");
                w.details.original_codings = vec![coded("http://loinc.org", "29463-7", "Weight")];
                w
            },
            {
                let mut w = weight("kg");
                w.details.method = Some(coded("http://example.org", "m", "M"));
                w
            },
        ] {
            assert!(matches!(
                render_record_events(&refused),
                Err(AdapterError::Unprocessable { .. })
            ));
        }
    }

    #[test]
    fn record_events_answers_are_read() {
        let body = br#"<RecordEventsResponse ExternalReference="k" Created="true"><Event EventUID="{AB-1}"/><Event EventUID="cd-2"/></RecordEventsResponse>"#;
        assert_eq!(
            parse_record_events_response(body, 201).unwrap(),
            Created {
                ids: vec!["ab-1".into(), "cd-2".into()],
                created: true
            }
        );
        let seen = br#"<RecordEventsResponse Created="false"><Event EventUID="ab-1"/></RecordEventsResponse>"#;
        assert!(!parse_record_events_response(seen, 200).unwrap().created);
        // The status and the Created flag must agree; there must be events.
        assert!(parse_record_events_response(seen, 201).is_err());
        assert!(
            parse_record_events_response(br#"<RecordEventsResponse Created="true"/>"#, 201)
                .is_err()
        );
        assert!(parse_record_events_response(b"<PatientRecord/>", 201).is_err());
    }

    fn details() -> ContactDetails {
        ContactDetails {
            home_phone: Some("01632 960123".into()),
            mobile: None,
            email: Some("a&b@example.com".into()),
            address: Some(gp_adapter::HomeAddress {
                lines: vec!["12 Harness Row".into(), " ".into(), "Testville".into()],
                town: "Leeds".into(),
                county: "West Yorkshire".into(),
                postcode: "LS1 4AP".into(),
            }),
            language: Some("cy".into()),
        }
    }

    #[test]
    fn contact_updates_are_rendered_as_the_read_mapping_takes_them_back() {
        let xml = render_contact_update("2024-07-15T09:30:00Z", &details()).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ContactDetailsUpdate>\n  \
             <LastUpdated>2024-07-15T09:30:00Z</LastUpdated>\n  \
             <Address><AddressLine1>12 Harness Row</AddressLine1><AddressLine2>Testville</AddressLine2><AddressLine3></AddressLine3><AddressLine4>Leeds</AddressLine4><PostCode>LS1 4AP</PostCode></Address>\n  \
             <HomeTelephone>01632 960123</HomeTelephone>\n  \
             <Email>a&amp;b@example.com</Email>\n  \
             <MainSpokenLanguage Code=\"cy\"/>\n\
             </ContactDetailsUpdate>\n"
        );
        // The Address element reads back through the read mapping as written (no county).
        let doc = Document::parse(&xml).unwrap();
        let a = address(doc.root_element()).unwrap();
        assert_eq!(a.line, ["12 Harness Row", "Testville"]);
        assert_eq!(a.city.as_deref(), Some("Leeds"));
        assert_eq!(a.postal_code.as_deref(), Some("LS1 4AP"));
        assert_eq!(a.district, None);
        assert_eq!(main_spoken_language(doc.root_element()), Some("cy"));
    }

    #[test]
    fn no_details_means_none_and_bad_input_is_refused() {
        let xml =
            render_contact_update("2024-07-15T09:30:00Z", &ContactDetails::default()).unwrap();
        assert!(
            !xml.contains("<Address>") && !xml.contains("Telephone") && !xml.contains("Language")
        );
        let mut four = details();
        if let Some(a) = four.address.as_mut() {
            a.lines = vec!["1".into(), "2".into(), "3".into(), "4".into()];
        }
        assert!(matches!(
            render_contact_update("2024-07-15T09:30:00Z", &four),
            Err(AdapterError::Unprocessable { .. })
        ));
        assert!(matches!(
            render_contact_update("\"etag\"", &details()),
            Err(AdapterError::VersionConflict { .. })
        ));
    }

    #[test]
    fn contact_update_answers_are_read() {
        assert_eq!(
            parse_contact_update_response(
                b"<ContactDetailsUpdateResponse><LastUpdated>2024-07-15T09:30:01Z</LastUpdated></ContactDetailsUpdateResponse>"
            )
            .unwrap(),
            "2024-07-15T09:30:01Z"
        );
        assert!(parse_contact_update_response(b"<ContactDetailsUpdateResponse/>").is_err());
        assert!(
            parse_contact_update_response(
                b"<ContactDetailsUpdateResponse><LastUpdated>yesterday</LastUpdated></ContactDetailsUpdateResponse>"
            )
            .is_err()
        );
    }
}
