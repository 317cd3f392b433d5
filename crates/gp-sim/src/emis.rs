//! EMIS Web simulator: serves exactly `docs/native-formats/emis.md` (MedicalRecord XML)
//! for patients of practices whose system is EMIS.

use std::sync::Arc;

use gp_fhir::NhsNumber;
use hyper::Method;
use tokio::net::TcpListener;

use crate::concepts::Concept;
use crate::date::{Precision, SimDate};
use crate::model::*;
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::SimStore;
use crate::xml::{XmlWriter, insert_after, remove_element};

/// Default namespace of every EMIS Open document.
pub const NAMESPACE: &str = "http://www.e-mis.com/emisopen/MedicalRecord";
const XML: &str = "application/xml";

/// Starts the EMIS simulator on `listener` (bind it to `127.0.0.1:0` in tests).
pub async fn start_emis(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Emis { store }), listener)
}

struct Emis {
    store: SimStore,
}

impl Simulator for Emis {
    fn name(&self) -> &'static str {
        "emis"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let not_record = |reply| Routed {
            reply,
            record: false,
        };
        match segments.as_slice() {
            ["", "emis", "health"] if method == Method::GET => not_record(health()),
            [
                "",
                "emis",
                "practices",
                ods,
                "patients",
                nhs,
                "medicalrecord",
            ] if method == Method::GET => Routed {
                reply: self.medical_record(ods, nhs),
                record: true,
            },
            ["", "emis", ..] if method != Method::GET => {
                not_record(error(405, "METHOD_NOT_ALLOWED", "Only GET is supported"))
            }
            _ => not_record(error(404, "NOT_FOUND", &format!("No endpoint at {path}"))),
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        let code = match status {
            400 => "INVALID_NHS_NUMBER",
            404 => "PATIENT_NOT_FOUND",
            503 => "SERVICE_UNAVAILABLE",
            _ => "INTERNAL_ERROR",
        };
        error(status, code, "Injected fault")
    }

    fn garbage(&self) -> Vec<u8> {
        b"\x00\x01PK this is not XML at all }{ ][".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // 0xC3 0x28 is an invalid two-byte UTF-8 sequence, placed inside an element's text.
        insert_after(body, b"<FamilyName>", b"\xC3\x28")
            .or_else(|| insert_after(body, b"<Message>", b"\xC3\x28"))
            .unwrap_or_else(|| [body, b"\xC3\x28"].concat())
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        remove_element(body, "NhsNumber")
    }
}

impl Emis {
    fn medical_record(&self, ods: &str, nhs: &str) -> Reply {
        let practice = match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Emis => p,
            _ => {
                return error(
                    404,
                    "PRACTICE_NOT_FOUND",
                    &format!("No EMIS Web practice with ODS code {ods}"),
                );
            }
        };
        if NhsNumber::parse(nhs).is_err() {
            return error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            );
        }
        match self.store.patient(ods, nhs) {
            Some((_, patient)) => Reply {
                status: 200,
                content_type: XML,
                body: render_record(&practice, &patient).into_bytes(),
            },
            None => error(
                404,
                "PATIENT_NOT_FOUND",
                &format!("No patient with that NHS number is registered at {ods}"),
            ),
        }
    }
}

fn health() -> Reply {
    let mut w = XmlWriter::new();
    w.open("Health");
    w.text("Status", "OK");
    w.close("Health");
    Reply {
        status: 200,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    let mut w = XmlWriter::new();
    w.open_with("Error", &[("xmlns", NAMESPACE)]);
    w.text("Code", code);
    w.text("Message", message);
    w.close("Error");
    Reply {
        status,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

/// Renders a patient's whole record as an EMIS MedicalRecord document.
pub fn render_record(practice: &Practice, p: &SimPatient) -> String {
    let mut w = XmlWriter::new();
    w.open_with("MedicalRecord", &[("xmlns", NAMESPACE)]);

    w.open("Registration");
    w.text("GUID", &p.id);
    w.text("Title", &p.title);
    w.text("FirstNames", &p.given.join(" "));
    w.text("FamilyName", &p.family);
    w.text("DateOfBirth", &date(p.birth_date));
    w.text("Sex", sex(p.sex));
    w.text("NhsNumber", &spaced_nhs(&p.nhs_number));
    w.text("NhsNumberStatus", &p.nhs_status);
    address(&mut w, &p.address);
    w.opt("HomeTelephone", p.home_phone.as_deref());
    w.opt("MobileTelephone", p.mobile.as_deref());
    w.opt("Email", p.email.as_deref());
    w.text("UsualGpID", &p.usual_gp);
    w.text("DateOfRegistration", &date(p.registered_on));
    w.text("DateOfDeath", &p.deceased_on.map(date).unwrap_or_default());
    w.text("Confidential", bool_text(p.flags.sensitive));
    w.text("SharingDissent", bool_text(p.flags.dissent));
    w.text("LastModified", &date_time(p.last_modified));
    w.close("Registration");

    w.open("Organisation");
    w.text("GUID", &practice.guid);
    w.text("Name", &practice.name);
    w.text("OdsCode", &practice.ods);
    address(&mut w, &practice.address);
    w.text("Telephone", &practice.phone);
    w.close("Organisation");

    w.open("PeopleList");
    for c in &practice.clinicians {
        w.open("Person");
        w.text("GUID", &c.id);
        w.text("Title", &c.title);
        w.text("FirstNames", &c.given);
        w.text("FamilyName", &c.family);
        w.text("Sex", sex(c.sex));
        w.text("Role", &c.role);
        w.text("SdsUserId", &c.sds_user_id);
        w.text("GmcCode", c.gmc.as_deref().unwrap_or(""));
        w.close("Person");
    }
    w.close("PeopleList");

    w.open("ConsultationList");
    for c in &p.consultations {
        w.open("Consultation");
        w.text("GUID", &c.meta.id);
        assigned(&mut w, c.meta.date, true);
        w.text("UserID", &c.clinician);
        w.open("Type");
        coded(&mut w, "Code", c.kind, &c.meta);
        w.close("Type");
        w.text("Duration", &c.duration_minutes.to_string());
        w.close("Consultation");
    }
    w.close("ConsultationList");

    w.open("EventList");
    for x in &p.problems {
        event_head(&mut w, "Problem", &x.meta, x.concept);
        w.open("Problem");
        w.text(
            "Status",
            match x.status {
                ProblemStatus::Active => "Active",
                ProblemStatus::Past => "Past",
            },
        );
        w.text(
            "Significance",
            match x.significance {
                Significance::Major => "Major",
                Significance::Minor => "Minor",
            },
        );
        w.text("EndDate", &x.end_date.map(date).unwrap_or_default());
        w.close("Problem");
        event_tail(&mut w, &x.meta);
    }
    for x in &p.observations {
        event_head(&mut w, "Observation", &x.meta, x.concept);
        if let Some(v) = x.value {
            w.text("NumericValue", &v.to_string());
            w.text("Units", x.units.unwrap_or(""));
        }
        event_tail(&mut w, &x.meta);
    }
    for x in &p.immunisations {
        event_head(&mut w, "Immunisation", &x.meta, x.concept);
        w.text("Batch", &x.batch);
        w.text("DoseSequence", &x.dose_sequence.to_string());
        event_tail(&mut w, &x.meta);
    }
    w.close("EventList");

    w.open("AllergyList");
    for a in &p.allergies {
        w.open("Allergy");
        w.text("GUID", &a.meta.id);
        assigned(&mut w, a.meta.date, true);
        w.text("AuthorID", &a.meta.author);
        coded(&mut w, "Code", a.concept, &a.meta);
        w.text(
            "Category",
            match a.category {
                AllergyCategory::Drug => "Drug",
                AllergyCategory::Food => "Food",
                AllergyCategory::Environment => "Environment",
            },
        );
        w.text(
            "Status",
            match a.status {
                AllergyStatus::Active => "Active",
                AllergyStatus::Resolved => "Resolved",
            },
        );
        w.text("EndDate", &a.end_date.map(date).unwrap_or_default());
        if let Some(r) = a.reaction {
            coded(&mut w, "Reaction", r, &a.meta);
        }
        w.text(
            "Severity",
            match a.severity {
                Severity::Mild => "Mild",
                Severity::Moderate => "Moderate",
                Severity::Severe => "Severe",
            },
        );
        w.text("Confidential", bool_text(a.meta.confidential));
        w.close("Allergy");
    }
    w.close("AllergyList");

    w.open("MedicationList");
    for m in &p.medications {
        w.open("Medication");
        w.text("GUID", &m.meta.id);
        // DatePart is left out for full dates here: the doc makes YMD the default, and
        // readers must handle its absence.
        assigned(&mut w, m.meta.date, false);
        w.text("AuthorID", &m.meta.author);
        w.open("Drug");
        coded(&mut w, "Code", m.drug, &m.meta);
        w.close("Drug");
        w.text("Dosage", &m.dosage);
        w.text("Quantity", &m.quantity.to_string());
        w.text("QuantityUnits", &m.quantity_units);
        w.text(
            "PrescriptionType",
            match m.kind {
                MedicationKind::Acute => "Acute",
                MedicationKind::Repeat => "Repeat",
            },
        );
        w.text(
            "Status",
            match m.status {
                MedicationStatus::Active => "Active",
                MedicationStatus::Completed => "Completed",
                MedicationStatus::Cancelled => "Cancelled",
            },
        );
        w.text("EndDate", &m.end_date.map(date).unwrap_or_default());
        w.text("Confidential", bool_text(m.meta.confidential));
        w.close("Medication");
    }
    w.close("MedicationList");

    w.close("MedicalRecord");
    w.finish()
}

fn event_head(w: &mut XmlWriter, kind: &str, meta: &EntryMeta, concept: &Concept) {
    w.open("Event");
    w.text("GUID", &meta.id);
    w.text("EventType", kind);
    assigned(w, meta.date, true);
    w.text("AuthorID", &meta.author);
    w.opt("ConsultationID", meta.consultation.as_deref());
    coded(w, "Code", concept, meta);
}

fn event_tail(w: &mut XmlWriter, meta: &EntryMeta) {
    w.text("Confidential", bool_text(meta.confidential));
    w.close("Event");
}

/// `AssignedDate`, `DatePart` and (for YMDT) `AssignedTime`.
fn assigned(w: &mut XmlWriter, d: SimDate, always_date_part: bool) {
    w.text("AssignedDate", &date(d));
    let part = match d.precision() {
        Precision::Y => "Y",
        Precision::YM => "YM",
        Precision::YMD => "YMD",
        Precision::YMDT => "YMDT",
    };
    if always_date_part || d.precision() != Precision::YMD {
        w.text("DatePart", part);
    }
    if let Some((h, m, s)) = d.time {
        w.text("AssignedTime", &format!("{h:02}:{m:02}:{s:02}"));
    }
}

/// Writes a coded item inside `<tag>`. Which scheme EMIS would use: dm+d for drugs,
/// its local code where it has one, SNOMED for concepts without Read v2 and for some
/// recent entries (EMIS moved to SNOMED CT in 2018), Read v2 otherwise. Which entries
/// carry a SNOMED `MapCode` depends on the entry GUID, so output stays deterministic.
fn coded(w: &mut XmlWriter, tag: &str, c: &Concept, meta: &EntryMeta) {
    let odd = meta.id.bytes().last().is_some_and(|b| b % 2 == 1);
    let (value, scheme, map) = if let Some(dmd) = c.dmd {
        (dmd, "DMD", false)
    } else if let Some(local) = c.emis {
        (local, "EMISCLINICAL", true)
    } else {
        match c.read2 {
            Some(read2) if !(meta.date.year >= 2023 && odd) => (read2, "READ2", !odd),
            _ => (c.snomed, "SNOMED", false),
        }
    };
    w.open(tag);
    w.text("Value", value);
    w.text("Scheme", scheme);
    w.text("Term", c.term);
    if map {
        w.text("MapCode", c.snomed);
        w.text("MapScheme", "SNOMED");
    }
    w.close(tag);
}

fn address(w: &mut XmlWriter, a: &Address) {
    w.open("Address");
    w.text("HouseNameFlat", &a.house);
    w.text("Street", &a.street);
    w.text("Village", &a.village);
    w.text("Town", &a.town);
    w.text("County", &a.county);
    w.text("PostCode", &a.postcode);
    w.close("Address");
}

/// `dd/mm/yyyy` with `00` for unknown parts.
fn date(d: SimDate) -> String {
    format!(
        "{:02}/{:02}/{:04}",
        d.day.unwrap_or(0),
        d.month.unwrap_or(0),
        d.year
    )
}

fn date_time(d: SimDate) -> String {
    let (h, m, s) = d.time.unwrap_or((0, 0, 0));
    format!("{} {h:02}:{m:02}:{s:02}", date(d))
}

fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Male => "M",
        Sex::Female => "F",
        Sex::Indeterminate => "I",
        Sex::Unknown => "U",
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `9690937278` → `969 093 7278`.
fn spaced_nhs(n: &str) -> String {
    match (n.get(0..3), n.get(3..6), n.get(6..)) {
        (Some(a), Some(b), Some(c)) => format!("{a} {b} {c}"),
        _ => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirky_formats() {
        assert_eq!(spaced_nhs("9690937278"), "969 093 7278");
        assert_eq!(
            date(SimDate::ymd(1998, 3, 2).truncate(Precision::Y)),
            "00/00/1998"
        );
        assert_eq!(
            date(SimDate::ymd(1998, 3, 2).truncate(Precision::YM)),
            "00/03/1998"
        );
        assert_eq!(
            date_time(SimDate::ymd(2024, 1, 15).at(10, 30, 0)),
            "15/01/2024 10:30:00"
        );
        assert_eq!(
            remove_element(b"<a>\n  <NhsNumber>1</NhsNumber>\n  <b/></a>", "NhsNumber"),
            b"<a>\n  <b/></a>"
        );
    }
}
