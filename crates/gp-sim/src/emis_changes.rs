//! EMIS Web's change log, as `docs/native-formats/emis.md` ("Changes") describes it: the
//! changes made to an EMIS practice's records after a change number, oldest first, over
//! the practice's log in [`crate::SimStore`] ([`crate::SimStore::changes_since`]). Times
//! are UK local `dd/mm/yyyy HH:MM:SS` (no offset) and entries are named by their
//! GUIDs, as everywhere in EMIS Open. A record request for fault injection.

use hyper::Method;

use super::book::emis_practice;
use super::{NAMESPACE, XML, date_time, error, invalid_request, practice_not_found, spaced_nhs};
use crate::appointments;
use crate::changes::{ChangeKind, ChangesError, ChangesPage, SimChange};
use crate::model::SystemKind;
use crate::server::{Reply, Routed};
use crate::store::SimStore;
use crate::xml::XmlWriter;

/// Largest `PageSize` a change list takes.
pub const MAX_PAGE_SIZE: usize = 100;
/// `PageSize` when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Answers `GET /emis/practices/{ODS}/changes`, or `None` when `segments` is not that
/// path (a wrong method on it is left to the catch-all `405`).
pub(crate) fn route_read(
    store: &SimStore,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
) -> Option<Routed> {
    match segments {
        ["", "emis", "practices", ods, "changes"] if method == Method::GET => Some(Routed {
            reply: changes(store, ods, query),
            record: true,
        }),
        _ => None,
    }
}

/// What a change list asks for: the changes after `After` (none: only where the log
/// stands), at most `PageSize` of them.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    after: Option<u64>,
    page_size: usize,
}

/// `After` (a change number, 0 for the first) and `PageSize` (1 to [`MAX_PAGE_SIZE`]);
/// any other parameter is refused, as EMIS refuses them elsewhere.
fn query(raw: Option<&str>) -> Result<Query, Reply> {
    let mut q = Query {
        after: None,
        page_size: DEFAULT_PAGE_SIZE,
    };
    let digits = |name: &str, v: &str| {
        (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| invalid_request(&format!("{name} '{v}' is not a whole number")))
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "After" => q.after = Some(digits(name, value)?),
            "PageSize" => {
                q.page_size = usize::try_from(digits(name, value)?)
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        invalid_request(&format!("PageSize must be between 1 and {MAX_PAGE_SIZE}"))
                    })?;
            }
            _ => {
                return Err(invalid_request(&format!(
                    "Unknown parameter {name}; a change list takes After and PageSize"
                )));
            }
        }
    }
    Ok(q)
}

/// `GET /emis/practices/{ODS}/changes[?After={n}&PageSize={m}]`: a `ChangeList`.
fn changes(store: &SimStore, ods: &str, raw_query: Option<&str>) -> Reply {
    if let Err(reply) = emis_practice(store, ods) {
        return reply;
    }
    let q = match query(raw_query) {
        Ok(q) => q,
        Err(reply) => return reply,
    };
    // Without After, no changes: only the number of the latest, to start from.
    let page = match q.after {
        Some(after) => store.changes_since(SystemKind::Emis, ods, after, q.page_size),
        None => store
            .latest_change(SystemKind::Emis, ods)
            .map(|latest| ChangesPage {
                changes: Vec::new(),
                latest,
            }),
    };
    match page {
        Ok(page) => {
            let mut w = XmlWriter::new();
            w.open_with("ChangeList", &[("xmlns", NAMESPACE)]);
            w.text("LatestChangeNumber", &page.latest.to_string());
            for c in &page.changes {
                change(&mut w, c);
            }
            w.close("ChangeList");
            Reply {
                status: 200,
                content_type: XML,
                body: w.finish().into_bytes(),
            }
        }
        Err(e) => changes_error(ods, &e),
    }
}

/// One `<Change>`.
fn change(w: &mut XmlWriter, c: &SimChange) {
    w.open("Change");
    w.text("ChangeNumber", &c.seq.to_string());
    w.text(
        "ChangeDateTime",
        &date_time(appointments::local_date_time(c.at)),
    );
    w.text("NhsNumber", &spaced_nhs(&c.nhs));
    w.text("ChangeType", change_type(c.kind));
    // The entry's GUID, as the record, the document list and the book name it.
    w.opt("EntryGUID", c.entry.as_deref());
    w.text(
        "ChangedBy",
        if c.by_practice {
            "Practice"
        } else {
            "ThirdParty"
        },
    );
    w.close("Change");
}

/// EMIS's name for what happened.
fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::ReadingRecorded => "ObservationAdded",
        ChangeKind::DocumentFiled => "DocumentFiled",
        ChangeKind::AppointmentBooked => "AppointmentBooked",
        ChangeKind::AppointmentAmended => "AppointmentAmended",
        ChangeKind::AppointmentCancelled => "AppointmentCancelled",
        ChangeKind::ContactChanged => "ContactDetailsChanged",
        ChangeKind::Registered => "PatientRegistered",
        ChangeKind::Deregistered => "PatientDeregistered",
    }
}

/// A log that cannot answer, in EMIS's error format.
fn changes_error(ods: &str, e: &ChangesError) -> Reply {
    match e {
        ChangesError::PracticeNotFound(ods) => practice_not_found(ods),
        ChangesError::Expired { after, oldest } => error(
            410,
            "CHANGES_EXPIRED",
            &format!(
                "Changes after {after} are no longer kept at {ods} (the oldest kept is {oldest}); read the records again"
            ),
        ),
        ChangesError::Ahead(n) => error(
            404,
            "CHANGE_NOT_FOUND",
            &format!("No change {n} has been made at {ods} yet"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::{Population, PopulationSpec};

    /// A store over the sandbox population, its first EMIS practice and demo patient.
    fn store() -> (SimStore, String, String) {
        let pop = Population::generate(42, &PopulationSpec::sandbox());
        let nhs = "9000000009".to_owned();
        let ods = pop.patient_by_nhs(&nhs).unwrap().practice.clone();
        (SimStore::new(pop), ods, nhs)
    }

    fn read(store: &SimStore, path: &str, query: Option<&str>) -> Routed {
        let segments: Vec<&str> = path.split('/').collect();
        route_read(store, &Method::GET, &segments, query).unwrap()
    }

    fn code(reply: &Reply) -> String {
        let body = String::from_utf8(reply.body.clone()).unwrap();
        body.split("<Code>")
            .nth(1)
            .and_then(|r| r.split("</Code>").next())
            .unwrap_or_default()
            .to_owned()
    }

    fn body(reply: &Reply) -> String {
        String::from_utf8(reply.body.clone()).unwrap()
    }

    #[test]
    fn a_change_list_names_entries_by_guid_in_local_time() {
        let (store, ods, nhs) = store();
        let path = format!("/emis/practices/{ods}/changes");
        let start = read(&store, &path, None);
        assert!(start.record, "a record request: faults apply");
        assert_eq!(start.reply.status, 200);
        assert!(
            body(&start.reply).contains("<LatestChangeNumber>0</LatestChangeNumber>"),
            "{}",
            body(&start.reply)
        );
        let pulse = crate::concepts::measurement_by_snomed("78564009").unwrap();
        let guid = store
            .record_reading_at_practice(SystemKind::Emis, &ods, &nhs, pulse, 72.0)
            .unwrap();
        let end = read(&store, &path, None);
        assert!(body(&end.reply).contains("<LatestChangeNumber>1</LatestChangeNumber>"));
        assert!(
            !body(&end.reply).contains("<Change>"),
            "no After: no changes"
        );

        let page = read(&store, &path, Some("After=0&PageSize=5"));
        assert_eq!(page.reply.status, 200);
        let text = body(&page.reply);
        assert!(text.contains("<ChangeNumber>1</ChangeNumber>"), "{text}");
        assert!(text.contains(&format!("<EntryGUID>{guid}</EntryGUID>")));
        assert!(text.contains("<NhsNumber>900 000 0009</NhsNumber>"));
        assert!(text.contains("<ChangeType>ObservationAdded</ChangeType>"));
        assert!(text.contains("<ChangedBy>Practice</ChangedBy>"));
        assert!(
            read(&store, &path, Some("After=1"))
                .reply
                .body
                .windows(8)
                .all(|w| w != b"<Change>"),
            "nothing after the latest"
        );
    }

    #[test]
    fn change_types_are_emis_own_words() {
        let names: std::collections::HashSet<&str> =
            ChangeKind::ALL.into_iter().map(change_type).collect();
        assert_eq!(names.len(), ChangeKind::ALL.len());
    }

    #[test]
    fn refusals_are_native_errors() {
        let (store, ods, nhs) = store();
        let path = format!("/emis/practices/{ods}/changes");
        let r = read(&store, "/emis/practices/Z99999/changes", None).reply;
        assert_eq!((r.status, code(&r)), (404, "PRACTICE_NOT_FOUND".into()));
        let r = read(&store, &path, Some("After=3")).reply;
        assert_eq!((r.status, code(&r)), (404, "CHANGE_NOT_FOUND".into()));
        for bad in [
            "After=x",
            "After=-1",
            "After=",
            "After=0&PageSize=0",
            "After=0&PageSize=101",
            "After=0&Since=1",
        ] {
            let r = read(&store, &path, Some(bad)).reply;
            assert_eq!(
                (r.status, code(&r)),
                (400, "INVALID_REQUEST".into()),
                "{bad}"
            );
        }
        // Enough changes that the first are no longer kept.
        let pulse = crate::concepts::measurement_by_snomed("78564009").unwrap();
        for _ in 0..crate::changes::KEPT + 2 {
            store
                .record_reading_at_practice(SystemKind::Emis, &ods, &nhs, pulse, 72.0)
                .unwrap();
        }
        let r = read(&store, &path, Some("After=0")).reply;
        assert_eq!((r.status, code(&r)), (410, "CHANGES_EXPIRED".into()));
        let r = read(&store, &path, Some("After=2&PageSize=1")).reply;
        assert_eq!(r.status, 200);
        assert!(body(&r).contains("<ChangeNumber>3</ChangeNumber>"));
        let end = read(&store, &path, None).reply;
        let latest = crate::changes::KEPT + 2;
        assert_eq!(
            end.status, 200,
            "where the log stands, however much expired"
        );
        assert!(body(&end).contains(&format!(
            "<LatestChangeNumber>{latest}</LatestChangeNumber>"
        )));
    }

    #[test]
    fn a_query_reads_after_and_a_page_size() {
        assert_eq!(
            query(Some("After=12&PageSize=7")).unwrap(),
            Query {
                after: Some(12),
                page_size: 7
            }
        );
        assert_eq!(
            query(None).unwrap(),
            Query {
                after: None,
                page_size: DEFAULT_PAGE_SIZE
            }
        );
    }
}
