//! TPP SystmOne's change log, as `docs/native-formats/tpp.md` ("Changes") describes it:
//! the changes made to an organisation's records after a `ChangeID`, oldest first, over
//! the practice's log in [`crate::SimStore`] ([`crate::SimStore::changes_since`]), in
//! SystmOne's XML with UTC times. Entries are named as the rest of the API names them:
//! journal events by `EventUID`, documents by `DocumentID` and appointments by
//! `AppointmentID` (numbers). A record request for fault injection.

use super::book::utc;
use super::{MAX_PAGE_SIZE, XML, error, organisation_not_found};
use crate::changes::{ChangeKind, ChangesError, ChangesPage, SimChange};
use crate::model::SystemKind;
use crate::server::Reply;
use crate::store::SimStore;
use crate::xml::XmlWriter;

/// `pageSize` when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// What a change request asks for: the changes after `after` (none: only where the log
/// stands), at most `page_size` of them.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    after: Option<u64>,
    page_size: usize,
}

/// `after` (a `ChangeID`, 0 for the first) and `pageSize` (1 to [`MAX_PAGE_SIZE`]);
/// other parameters are ignored, as the record's paging ignores them.
fn query(raw: Option<&str>) -> Result<Query, String> {
    let mut q = Query {
        after: None,
        page_size: DEFAULT_PAGE_SIZE,
    };
    let number = |name: &str, v: &str| {
        (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| format!("{name} '{v}' is not a whole number"))
    };
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => q.after = Some(number(k, v)?),
            "pageSize" => {
                q.page_size = usize::try_from(number(k, v)?)
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| format!("pageSize must be between 1 and {MAX_PAGE_SIZE}"))?;
            }
            _ => {}
        }
    }
    Ok(q)
}

/// `GET …/organisations/{ODS}/changes[?after={ChangeID}&pageSize={M}]`: a
/// `RecordChanges` answer.
pub(crate) fn changes(store: &SimStore, ods: &str, raw_query: Option<&str>) -> Reply {
    let q = match query(raw_query) {
        Ok(q) => q,
        Err(why) => return error(400, "INVALID_PARAMETER", &why),
    };
    // Without `after`, no changes: only the latest ChangeID, to start from.
    let page = match q.after {
        Some(after) => store.changes_since(SystemKind::Tpp, ods, after, q.page_size),
        None => store
            .latest_change(SystemKind::Tpp, ods)
            .map(|latest| ChangesPage {
                changes: Vec::new(),
                latest,
            }),
    };
    match page {
        Ok(page) => {
            let latest = page.latest.to_string();
            let after_text = q.after.map(|a| a.to_string());
            let mut attrs = vec![("OrganisationID", ods)];
            if let Some(a) = after_text.as_deref() {
                attrs.push(("After", a));
            }
            attrs.push(("LatestChangeID", latest.as_str()));
            let mut w = XmlWriter::new();
            w.open_with("RecordChanges", &attrs);
            for c in &page.changes {
                change(&mut w, c);
            }
            w.close("RecordChanges");
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
    w.open_with(
        "Change",
        &[
            ("ChangeID", &c.seq.to_string()),
            ("DateTime", &utc(c.at)),
            (
                "MadeBy",
                if c.by_practice {
                    "Organisation"
                } else {
                    "ThirdParty"
                },
            ),
        ],
    );
    w.text("NHSNumber", &c.nhs);
    w.text("ChangeType", change_type(c.kind));
    let number = c.entry_number.map(|n| n.to_string());
    match c.kind {
        ChangeKind::ReadingRecorded => {
            if let Some(uid) = &c.entry {
                w.text_with("Event", &[("EventUID", uid)], "");
            }
        }
        ChangeKind::DocumentFiled => {
            if let Some(n) = &number {
                w.text_with("Document", &[("DocumentID", n)], "");
            }
        }
        ChangeKind::AppointmentBooked
        | ChangeKind::AppointmentAmended
        | ChangeKind::AppointmentCancelled => {
            if let Some(n) = &number {
                w.text_with("Appointment", &[("AppointmentID", n)], "");
            }
        }
        ChangeKind::ContactChanged | ChangeKind::Registered | ChangeKind::Deregistered => {}
    }
    w.close("Change");
}

/// SystmOne's name for what happened.
fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::ReadingRecorded => "EventRecorded",
        ChangeKind::DocumentFiled => "DocumentFiled",
        ChangeKind::AppointmentBooked => "AppointmentBooked",
        ChangeKind::AppointmentAmended => "AppointmentAmended",
        ChangeKind::AppointmentCancelled => "AppointmentCancelled",
        ChangeKind::ContactChanged => "ContactDetailsUpdated",
        ChangeKind::Registered => "Registered",
        ChangeKind::Deregistered => "Deregistered",
    }
}

/// A log that cannot answer, as a SystmOne `ErrorResponse`.
fn changes_error(ods: &str, e: &ChangesError) -> Reply {
    match e {
        ChangesError::PracticeNotFound(ods) => organisation_not_found(ods),
        ChangesError::Expired { after, oldest } => error(
            410,
            "CHANGES_EXPIRED",
            &format!(
                "Changes after ChangeID {after} are no longer kept at {ods} (the oldest kept is {oldest}); read the records again"
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

    /// A store over the sandbox population, its first SystmOne practice and one of its
    /// patients.
    fn store() -> (SimStore, String, String) {
        let pop = Population::generate(42, &PopulationSpec::sandbox());
        let ods = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Tpp)
            .unwrap()
            .ods
            .clone();
        let nhs = pop
            .patients
            .iter()
            .find(|p| p.practice == ods)
            .unwrap()
            .nhs_number
            .clone();
        (SimStore::new(pop), ods, nhs)
    }

    fn code(reply: &Reply) -> String {
        let body = String::from_utf8(reply.body.clone()).unwrap();
        body.split("<ErrorCode>")
            .nth(1)
            .and_then(|r| r.split("</ErrorCode>").next())
            .unwrap_or_default()
            .to_owned()
    }

    fn body(reply: &Reply) -> String {
        String::from_utf8(reply.body.clone()).unwrap()
    }

    #[test]
    fn a_change_list_names_entries_as_the_api_does_in_utc() {
        let (store, ods, nhs) = store();
        let start = changes(&store, &ods, None);
        assert_eq!(start.status, 200);
        assert!(
            body(&start).contains(&format!(
                "<RecordChanges OrganisationID=\"{ods}\" LatestChangeID=\"0\""
            )),
            "{}",
            body(&start)
        );
        let pulse = crate::concepts::measurement_by_snomed("78564009").unwrap();
        let uid = store
            .record_reading_at_practice(SystemKind::Tpp, &ods, &nhs, pulse, 72.0)
            .unwrap();
        let end = body(&changes(&store, &ods, Some("pageSize=5")));
        assert!(end.contains("LatestChangeID=\"1\""), "{end}");
        assert!(!end.contains("<Change "), "no after: no changes");

        let page = body(&changes(&store, &ods, Some("after=0&pageSize=5&x=1")));
        assert!(page.contains("After=\"0\" LatestChangeID=\"1\""), "{page}");
        assert!(
            page.contains("<Change ChangeID=\"1\" DateTime=\"20"),
            "{page}"
        );
        assert!(page.contains("Z\" MadeBy=\"Organisation\">"), "{page}");
        assert!(page.contains(&format!("<NHSNumber>{nhs}</NHSNumber>")));
        assert!(page.contains("<ChangeType>EventRecorded</ChangeType>"));
        assert!(page.contains(&format!("<Event EventUID=\"{uid}\"")));
    }

    #[test]
    fn documents_and_appointments_are_named_by_number() {
        let mut w = XmlWriter::new();
        // 09:30 UTC (10:30 on a UK clock in July): SystmOne writes the instant in UTC.
        let at = crate::appointments::instant(crate::SimDate::ymd(2026, 7, 14).at(9, 30, 0));
        for (kind, entry) in [
            (
                ChangeKind::DocumentFiled,
                Some(("guid-d".to_owned(), Some(123))),
            ),
            (
                ChangeKind::AppointmentCancelled,
                Some(("guid-a".to_owned(), Some(5031))),
            ),
            (ChangeKind::ContactChanged, None),
        ] {
            let (entry, entry_number) = entry.map_or((None, None), |(g, n)| (Some(g), n));
            change(
                &mut w,
                &SimChange {
                    seq: 7,
                    at,
                    nhs: "9000000009".into(),
                    kind,
                    entry,
                    entry_number,
                    by_practice: false,
                },
            );
        }
        let xml = w.finish();
        assert!(
            xml.contains("DateTime=\"2026-07-14T09:30:00Z\""),
            "UTC: {xml}"
        );
        assert!(xml.contains("MadeBy=\"ThirdParty\""));
        assert!(xml.contains("<Document DocumentID=\"123\""), "{xml}");
        assert!(xml.contains("<Appointment AppointmentID=\"5031\""), "{xml}");
        assert!(!xml.contains("guid-"), "never by GUID: {xml}");
    }

    #[test]
    fn refusals_are_native_errors() {
        let (store, ods, nhs) = store();
        let r = changes(&store, "Z99999", None);
        assert_eq!((r.status, code(&r)), (404, "ORGANISATION_NOT_FOUND".into()));
        let emis = store
            .read(|p| {
                p.practices
                    .iter()
                    .find(|p| p.system == SystemKind::Emis)
                    .map(|p| p.ods.clone())
            })
            .unwrap();
        let r = changes(&store, &emis, None);
        assert_eq!(
            (r.status, code(&r)),
            (404, "ORGANISATION_NOT_FOUND".into()),
            "an EMIS practice is no SystmOne organisation"
        );
        let r = changes(&store, &ods, Some("after=3"));
        assert_eq!((r.status, code(&r)), (404, "CHANGE_NOT_FOUND".into()));
        for bad in [
            "after=x",
            "after=-1",
            "after=",
            "after=0&pageSize=0",
            "after=0&pageSize=101",
        ] {
            let r = changes(&store, &ods, Some(bad));
            assert_eq!(
                (r.status, code(&r)),
                (400, "INVALID_PARAMETER".into()),
                "{bad}"
            );
        }
        // Enough changes that the first are no longer kept.
        let pulse = crate::concepts::measurement_by_snomed("78564009").unwrap();
        for _ in 0..crate::changes::KEPT + 2 {
            store
                .record_reading_at_practice(SystemKind::Tpp, &ods, &nhs, pulse, 72.0)
                .unwrap();
        }
        let r = changes(&store, &ods, Some("after=1"));
        assert_eq!((r.status, code(&r)), (410, "CHANGES_EXPIRED".into()));
        let r = changes(&store, &ods, Some("after=2&pageSize=1"));
        assert_eq!(r.status, 200);
        assert!(body(&r).contains("<Change ChangeID=\"3\""));
        let end = changes(&store, &ods, None);
        let latest = crate::changes::KEPT + 2;
        assert_eq!(
            end.status, 200,
            "where the log stands, however much expired"
        );
        assert!(body(&end).contains(&format!("LatestChangeID=\"{latest}\"")));
    }

    #[test]
    fn change_types_are_systmone_own_words() {
        let names: std::collections::HashSet<&str> =
            ChangeKind::ALL.into_iter().map(change_type).collect();
        assert_eq!(names.len(), ChangeKind::ALL.len());
    }
}
