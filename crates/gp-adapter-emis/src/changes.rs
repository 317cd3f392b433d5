//! EMIS Web's change log (`docs/native-formats/emis.md`, "Changes"): the native call and
//! the mapping of a `ChangeList` to the vendor-neutral [`gp_adapter::changes`] types.
//!
//! The cursor is `emis:{ODS}:{change number}`: the number of the last change read at that
//! practice. A cursor of any other shape, or of another practice, was not given out here
//! and is refused before any call. Times are UK local wall-clock times, read as UTC
//! instants (as the appointment book reads them); entries are EMIS GUIDs in lower case,
//! the ids this adapter's other methods answer. Every answer is mapped whole or refused
//! as [`AdapterError::InvalidNativeData`], never half-mapped.

use gp_adapter::changes::{PageFault, check_number, check_page};
use gp_adapter::native::{Call, NativeResponse, refusal_detail, status_error};
use gp_adapter::xml::Node;
use gp_adapter::{AdapterError, ChangeKind, ChangesPage, ChangesRequest, RecordChange};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::SYSTEM;
use crate::appointments::{At, DataResult, root_named};
use crate::client::EmisClient;
use crate::mapping::{document, parse_error_document};

type Result<T> = std::result::Result<T, AdapterError>;

/// Changes asked for per page (`PageSize`; EMIS takes 1 to 100).
pub const PAGE_SIZE: u32 = 100;

/// The cursor after change `number` at practice `ods`.
pub fn cursor(ods: &OdsCode, number: u64) -> String {
    format!("emis:{}:{number}", ods.as_str())
}

/// The change number of a cursor this adapter gave for practice `ods`; any other is
/// [`AdapterError::Unprocessable`] (never read as a fresh start).
pub fn cursor_number(raw: &str, ods: &OdsCode) -> Result<u64> {
    let number = raw
        .strip_prefix("emis:")
        .and_then(|rest| rest.strip_prefix(ods.as_str()))
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|n| (1..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        // One spelling per number: `007` was never given out.
        .filter(|n| cursor(ods, *n) == raw);
    number.ok_or_else(|| AdapterError::Unprocessable {
        system: SYSTEM,
        detail: format!(
            "cursor '{}' is not one this adapter gave for practice {ods}",
            shown(raw)
        ),
    })
}

/// `GET /emis/practices/{ODS}/changes`: without a cursor, where the log stands (an empty
/// page whose cursor is its end); with one, the next page of changes after it.
pub async fn changes_since(client: &EmisClient, req: &ChangesRequest) -> Result<ChangesPage> {
    let ods = &req.practice;
    let after = req
        .cursor
        .as_deref()
        .map(|c| cursor_number(c, ods))
        .transpose()?;
    let path = match after {
        None => format!("/emis/practices/{}/changes", ods.as_str()),
        Some(n) => format!(
            "/emis/practices/{}/changes?After={n}&PageSize={PAGE_SIZE}",
            ods.as_str()
        ),
    };
    let body = client
        .native()
        .get(&path, &req.context)
        .await?
        .ok_body(|r| refused(ods, after, r))?;
    let list = map_change_list(&body, after)?;
    Ok(list.page(after, |n| cursor(ods, n)))
}

/// Maps a refused change list: a cursor EMIS no longer honours (its changes expired, or
/// a change not made yet) is `Unprocessable`, an unknown practice `NotFound`; the rest by
/// the shared status table, as the record reads.
fn refused(ods: &OdsCode, after: Option<u64>, response: &NativeResponse) -> AdapterError {
    let native = parse_error_document(&response.body);
    let code = native.as_ref().map(|(c, _)| c.as_str());
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "an EMIS error document",
    );
    match (response.status, code) {
        (410, Some("CHANGES_EXPIRED")) | (404, Some("CHANGE_NOT_FOUND")) => {
            AdapterError::Unprocessable {
                system: SYSTEM,
                detail: format!(
                    "EMIS Web no longer honours the cursor after change {}: {detail}",
                    after.unwrap_or(0)
                ),
            }
        }
        (404, Some("PRACTICE_NOT_FOUND")) => AdapterError::NotFound {
            system: SYSTEM,
            what: format!("practice {ods}"),
        },
        (status, _) => status_error(SYSTEM, Call::Read, status, false, detail),
    }
}

/// A `ChangeList`, checked against what was asked: numbered changes (see
/// [`gp_adapter::changes::NumberedChanges`]).
pub type ChangeList = gp_adapter::changes::NumberedChanges;

/// A change number: digits, a whole number.
fn number(at: &At, n: Node, element: &str) -> DataResult<u64> {
    let raw = at.req(n, element)?;
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| at.invalid(element, format!("'{}' is not a whole number", shown(raw))))
}

/// Maps a `ChangeList` answered for `After` = `after` (`None`: asked without, so it holds
/// no changes). The changes must be numbered `after + 1, after + 2, …` up to at most
/// `LatestChangeNumber`, and an empty page must leave none waiting.
pub fn map_change_list(body: &[u8], after: Option<u64>) -> DataResult<ChangeList> {
    let doc = document(body)?;
    let root = root_named(&doc, "ChangeList")?;
    let top = At("ChangeList".into());
    let latest = number(&top, root, "LatestChangeNumber")?;
    let nodes: Vec<Node> = root
        .children()
        .filter(|c| c.has_tag_name(Some(crate::NS), "Change"))
        .collect();
    if let Err((fault, why)) = check_page(after, latest, nodes.len(), "After") {
        let element = match fault {
            PageFault::LatestBelowAfter => "LatestChangeNumber",
            PageFault::ChangesWithoutAfter | PageFault::NoneWhileMore => "Change",
        };
        return Err(top.invalid(element, why));
    }
    let Some(after) = after else {
        return Ok(ChangeList {
            latest,
            changes: Vec::new(),
        });
    };
    let mut changes = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.into_iter().enumerate() {
        let at = At::nth("ChangeList", "Change", i + 1);
        let seq = number(&at, n, "ChangeNumber")?;
        check_number(after, i, seq, latest).map_err(|why| at.invalid("ChangeNumber", why))?;
        changes.push((seq, map_change(&at, n)?));
    }
    Ok(ChangeList { latest, changes })
}

/// EMIS's `ChangeType`s, and whether each names an entry (`EntryGUID`).
fn change_kind(raw: &str) -> Option<(ChangeKind, bool)> {
    Some(match raw {
        "ObservationAdded" => (ChangeKind::ReadingRecorded, true),
        "DocumentFiled" => (ChangeKind::DocumentFiled, true),
        "AppointmentBooked" => (ChangeKind::AppointmentBooked, true),
        "AppointmentAmended" => (ChangeKind::AppointmentAmended, true),
        "AppointmentCancelled" => (ChangeKind::AppointmentCancelled, true),
        "ContactDetailsChanged" => (ChangeKind::ContactDetailsChanged, false),
        "PatientRegistered" => (ChangeKind::Registered, false),
        "PatientDeregistered" => (ChangeKind::Deregistered, false),
        _ => return None,
    })
}

fn map_change(at: &At, n: Node) -> DataResult<RecordChange> {
    let raw_nhs = at.req(n, "NhsNumber")?;
    // EMIS writes the number spaced 3 3 4.
    let compact: String = raw_nhs.chars().filter(|c| *c != ' ').collect();
    let nhs_number =
        NhsNumber::parse(&compact).map_err(|e| at.invalid("NhsNumber", e.to_string()))?;
    let raw_kind = at.req(n, "ChangeType")?;
    let (kind, names_entry) = change_kind(raw_kind).ok_or_else(|| {
        at.invalid(
            "ChangeType",
            format!("'{}' is not a change EMIS Web reports", shown(raw_kind)),
        )
    })?;
    // The patient kinds are about the patient, whatever entry might be named.
    let resource_id = if names_entry {
        Some(at.id(n, "EntryGUID")?)
    } else {
        None
    };
    let by_practice = match at.req(n, "ChangedBy")? {
        "Practice" => true,
        "ThirdParty" => false,
        other => {
            return Err(at.invalid(
                "ChangedBy",
                format!("'{}' is not Practice or ThirdParty", shown(other)),
            ));
        }
    };
    Ok(RecordChange {
        nhs_number,
        kind,
        resource_id,
        occurred: at.time(n, "ChangeDateTime")?.to_rfc3339(),
        by_practice,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ods() -> OdsCode {
        OdsCode::parse("A81001").unwrap()
    }

    fn list(latest: u64, changes: &str) -> String {
        format!(
            "<ChangeList xmlns=\"{}\"><LatestChangeNumber>{latest}</LatestChangeNumber>{changes}</ChangeList>",
            crate::NS
        )
    }

    fn change(number: u64, kind: &str, entry: &str) -> String {
        format!(
            "<Change><ChangeNumber>{number}</ChangeNumber>\
             <ChangeDateTime>07/07/2026 11:15:00</ChangeDateTime>\
             <NhsNumber>900 000 0009</NhsNumber><ChangeType>{kind}</ChangeType>{entry}\
             <ChangedBy>ThirdParty</ChangedBy></Change>"
        )
    }

    const GUID: &str = "<EntryGUID>{5E1B2C3D-0000-4000-8000-00000000000A}</EntryGUID>";

    #[test]
    fn a_change_list_maps_whole_with_local_bst_times_in_utc() {
        let body = list(
            9,
            &(change(8, "ObservationAdded", GUID)
                + &change(9, "ContactDetailsChanged", "")
                    .replace("ThirdParty", "Practice")
                    .replace("07/07/2026 11:15:00", "15/01/2026 09:30:00")),
        );
        let mapped = map_change_list(body.as_bytes(), Some(7)).unwrap();
        assert_eq!(mapped.latest, 9);
        let (seq, reading) = &mapped.changes[0];
        assert_eq!(*seq, 8);
        assert_eq!(reading.kind, ChangeKind::ReadingRecorded);
        assert_eq!(
            reading.resource_id.as_deref(),
            Some("5e1b2c3d-0000-4000-8000-00000000000a"),
            "the id the adapter's other methods answer: lower case, no braces"
        );
        assert_eq!(reading.occurred, "2026-07-07T10:15:00Z", "BST is UTC+1");
        assert!(!reading.by_practice);
        let contact = &mapped.changes[1].1;
        assert_eq!(contact.kind, ChangeKind::ContactDetailsChanged);
        assert_eq!(contact.resource_id, None);
        assert_eq!(contact.occurred, "2026-01-15T09:30:00Z", "GMT is UTC");
        assert!(contact.by_practice);
        assert_eq!(contact.nhs_number.to_string(), "9000000009");

        let page = mapped.page(Some(7), |n| cursor(&ods(), n));
        assert_eq!(page.cursor, "emis:A81001:9");
        assert!(!page.more);
    }

    #[test]
    fn a_malformed_change_is_invalid_native_data_naming_the_element() {
        let good = change(1, "DocumentFiled", GUID);
        for (from, to, element) in [
            ("DocumentFiled", "DocumentDeleted", "Change[1]/ChangeType"),
            (
                "<NhsNumber>900 000 0009</NhsNumber>",
                "",
                "Change[1]/NhsNumber",
            ),
            ("900 000 0009", "900 000 0008", "Change[1]/NhsNumber"),
            (
                "07/07/2026 11:15:00",
                "2026-07-07T10:15:00Z",
                "Change[1]/ChangeDateTime",
            ),
            (
                "07/07/2026 11:15:00",
                "31/06/2026 11:15:00",
                "Change[1]/ChangeDateTime",
            ),
            (GUID, "", "Change[1]/EntryGUID"),
            ("ThirdParty", "Supplier", "Change[1]/ChangedBy"),
            (
                "<ChangeNumber>1</ChangeNumber>",
                "<ChangeNumber>2</ChangeNumber>",
                "Change[1]/ChangeNumber",
            ),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            let err = map_change_list(list(2, &bad).as_bytes(), Some(0)).unwrap_err();
            assert!(err.to_string().contains(element), "{element}: {err}");
            let adapter: AdapterError = err.into();
            assert!(matches!(adapter, AdapterError::InvalidNativeData { .. }));
        }
        // Numbers must follow After one by one, and stay within the latest.
        let gap = list(
            5,
            &(change(1, "DocumentFiled", GUID) + &change(3, "DocumentFiled", GUID)),
        );
        assert!(map_change_list(gap.as_bytes(), Some(0)).is_err());
        let beyond = list(0, &change(1, "DocumentFiled", GUID));
        assert!(map_change_list(beyond.as_bytes(), Some(0)).is_err());
        let silent = list(3, "");
        assert!(
            map_change_list(silent.as_bytes(), Some(1)).is_err(),
            "an empty page with changes waiting"
        );
        let unasked = list(3, &change(1, "DocumentFiled", GUID));
        assert!(map_change_list(unasked.as_bytes(), None).is_err());
        assert!(map_change_list(b"<ChangeList>", Some(0)).is_err());
        let wrong_root = "<DocumentList xmlns=\"http://www.e-mis.com/emisopen/MedicalRecord\"/>";
        assert!(map_change_list(wrong_root.as_bytes(), Some(0)).is_err());
    }

    #[test]
    fn pages_carry_the_cursor_on_and_say_when_more_wait() {
        let end = map_change_list(list(42, "").as_bytes(), None).unwrap();
        let page = end.page(None, |n| cursor(&ods(), n));
        assert_eq!(
            (page.changes.len(), page.cursor.as_str(), page.more),
            (0, "emis:A81001:42", false)
        );
        let first = list(3, &change(1, "AppointmentBooked", GUID));
        let page = map_change_list(first.as_bytes(), Some(0))
            .unwrap()
            .page(Some(0), |n| cursor(&ods(), n));
        assert_eq!((page.cursor.as_str(), page.more), ("emis:A81001:1", true));
        let none = map_change_list(list(3, "").as_bytes(), Some(3))
            .unwrap()
            .page(Some(3), |n| cursor(&ods(), n));
        assert_eq!((none.cursor.as_str(), none.more), ("emis:A81001:3", false));
    }

    #[test]
    fn only_cursors_given_here_for_the_practice_are_taken() {
        assert_eq!(cursor_number("emis:A81001:17", &ods()).unwrap(), 17);
        assert_eq!(cursor_number(&cursor(&ods(), 0), &ods()).unwrap(), 0);
        for bad in [
            "17",
            "999999999999",
            "not-a-cursor-this-system-gave",
            "tpp:A81001:17",
            "emis:B82617:17",
            "emis:A81001:",
            "emis:A81001:017",
            "emis:A81001:-1",
            "emis:A81001:1x",
            "emis:A81001:99999999999999999999999",
        ] {
            assert!(
                matches!(
                    cursor_number(bad, &ods()),
                    Err(AdapterError::Unprocessable { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_emis_no_longer_honours_is_unprocessable() {
        let resp = |status: u16, code: &str| NativeResponse {
            status,
            body: bytes::Bytes::from(format!(
                "<Error xmlns=\"{}\"><Code>{code}</Code><Message>m</Message></Error>",
                crate::NS
            )),
            content_type: None,
            headers: Default::default(),
        };
        for (status, code) in [(410, "CHANGES_EXPIRED"), (404, "CHANGE_NOT_FOUND")] {
            assert!(
                matches!(
                    refused(&ods(), Some(5), &resp(status, code)),
                    AdapterError::Unprocessable { detail, .. } if detail.contains(code)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            refused(&ods(), None, &resp(404, "PRACTICE_NOT_FOUND")),
            AdapterError::NotFound { .. }
        ));
        assert!(matches!(
            refused(&ods(), None, &resp(503, "SERVICE_UNAVAILABLE")),
            AdapterError::Unavailable { .. }
        ));
        assert!(matches!(
            refused(&ods(), Some(1), &resp(400, "INVALID_REQUEST")),
            AdapterError::Rejected { .. }
        ));
    }
}
