//! An organisation's change log in SystmOne (`docs/native-formats/tpp.md`, "Changes"):
//! the native call and the mapping of a `RecordChanges` answer to the vendor-neutral
//! [`gp_adapter::changes`] types.
//!
//! The cursor is `tpp:{ODS}:{ChangeID}`: the last change read at that organisation. A
//! cursor of any other shape, or of another organisation, was not given out here and is
//! refused before any call. Entries are named as this adapter's other methods name them:
//! readings by EventUID (lower case), documents by `DocumentID`, appointments by
//! `AppointmentID`. Times are UTC. Every answer is mapped whole or refused as
//! [`TppDataError`], never half-mapped.

use bytes::Bytes;
use gp_adapter::changes::{PageFault, check_number, check_page};
use gp_adapter::native::{Call, NativeResponse, status_error};
use gp_adapter::xml::Node;
use gp_adapter::{
    AdapterError, CallContext, ChangeKind, ChangesPage, ChangesRequest, RecordChange,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::TppClient;
use crate::appointments::{number_attr, utc_value};
use crate::client::refusal;
use crate::documents::id_attr;
use crate::error::TppDataError;
use crate::mapping::{At, Result, at_attr, attr, document, is, uid_attr};

// ---- cursors -------------------------------------------------------------------------

/// The cursor after change `id` at organisation `ods`.
pub fn cursor(ods: &OdsCode, id: u64) -> String {
    format!("tpp:{}:{id}", ods.as_str())
}

/// The `ChangeID` of a cursor this adapter gave for organisation `ods`; any other is
/// [`AdapterError::Unprocessable`] (never read as a fresh start).
pub fn cursor_id(raw: &str, ods: &OdsCode) -> std::result::Result<u64, AdapterError> {
    let id = raw
        .strip_prefix("tpp:")
        .and_then(|rest| rest.strip_prefix(ods.as_str()))
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|n| (1..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        // One spelling per ChangeID: `007` was never given out.
        .filter(|n| cursor(ods, *n) == raw);
    id.ok_or_else(|| AdapterError::Unprocessable {
        system: crate::SYSTEM,
        detail: format!(
            "cursor '{}' is not one this adapter gave for organisation {ods}",
            shown(raw)
        ),
    })
}

// ---- native call ---------------------------------------------------------------------

impl TppClient {
    /// `GET …/organisations/{ODS}/changes`: without `after`, where the log stands; with
    /// it, the next `pageSize` changes after that `ChangeID`.
    pub async fn changes(
        &self,
        ods: &OdsCode,
        after: Option<u64>,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let base = format!("/systmone/api/v1/organisations/{}/changes", ods.as_str());
        let path = match after {
            None => base,
            Some(n) => format!("{base}?after={n}&pageSize={}", self.page_size()),
        };
        self.http
            .get(&path, ctx)
            .await?
            .ok_body(|r| refused(ods, after, r))
    }
}

/// `changes_since`: one call per page, the page size the configured `page_size`.
pub async fn changes_since(
    client: &TppClient,
    req: &ChangesRequest,
) -> std::result::Result<ChangesPage, AdapterError> {
    let ods = &req.practice;
    let after = req
        .cursor
        .as_deref()
        .map(|c| cursor_id(c, ods))
        .transpose()?;
    let body = client.changes(ods, after, &req.context).await?;
    Ok(map_record_changes(&body, ods, after)?.page(after, |n| cursor(ods, n)))
}

/// Maps a refused change request: a cursor SystmOne no longer honours (its changes
/// expired, or a change not made yet) is `Unprocessable`, an unknown organisation
/// `NotFound`; the rest by the shared status table, as the record reads.
fn refused(ods: &OdsCode, after: Option<u64>, response: &NativeResponse) -> AdapterError {
    let system = crate::SYSTEM;
    let (code, detail) = refusal(response);
    match (response.status, code.as_deref()) {
        (410, Some("CHANGES_EXPIRED")) | (404, Some("CHANGE_NOT_FOUND")) => {
            AdapterError::Unprocessable {
                system,
                detail: format!(
                    "SystmOne no longer honours the cursor after change {}: {detail}",
                    after.unwrap_or(0)
                ),
            }
        }
        (404, Some("ORGANISATION_NOT_FOUND")) => AdapterError::NotFound {
            system,
            what: format!("practice {ods}"),
        },
        (status, _) => status_error(system, Call::Read, status, false, detail),
    }
}

// ---- native → neutral ----------------------------------------------------------------

/// A `RecordChanges`, checked against what was asked: numbered changes (see
/// [`gp_adapter::changes::NumberedChanges`]).
pub type RecordChanges = gp_adapter::changes::NumberedChanges;

/// A `ChangeID`-like attribute: digits, a whole number (`0` allowed).
fn id_number(at: &At, n: Node, name: &str) -> Result<u64> {
    let raw = attr(n, name).ok_or_else(|| at.missing(&at_attr(name)))?;
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            at.invalid(
                &at_attr(name),
                format!("'{}' is not a whole number", shown(raw)),
            )
        })
}

/// Maps a `RecordChanges` answer of organisation `ods` asked for after `after` (`None`:
/// asked without, so it holds no changes). The changes must be numbered `after + 1,
/// after + 2, …` up to at most `LatestChangeID`, and an empty page must leave none
/// waiting.
pub fn map_record_changes(body: &[u8], ods: &OdsCode, after: Option<u64>) -> Result<RecordChanges> {
    let doc = document(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "RecordChanges" {
        return Err(TppDataError::Invalid {
            path: root.tag_name().name().to_owned(),
            reason: "expected <RecordChanges>".into(),
        });
    }
    let top = At::DOC;
    let at = top.under("RecordChanges");
    let listed_ods = attr(root, "OrganisationID").ok_or_else(|| at.missing("@OrganisationID"))?;
    if listed_ods != ods.as_str() {
        return Err(at.invalid(
            "@OrganisationID",
            format!(
                "the changes are {}'s, but {ods}'s were asked for",
                shown(listed_ods)
            ),
        ));
    }
    let latest = id_number(&at, root, "LatestChangeID")?;
    let echoed = match attr(root, "After") {
        None => None,
        Some(_) => Some(id_number(&at, root, "After")?),
    };
    if echoed != after {
        return Err(at.invalid(
            "@After",
            format!("answers after {echoed:?}, but after {after:?} was asked"),
        ));
    }
    let nodes: Vec<Node> = root.children().filter(|c| is(c, "Change")).collect();
    if let Err((fault, why)) = check_page(after, latest, nodes.len(), "after") {
        let element = match fault {
            PageFault::LatestBelowAfter => "@LatestChangeID",
            PageFault::ChangesWithoutAfter | PageFault::NoneWhileMore => "Change",
        };
        return Err(at.invalid(element, why));
    }
    let Some(after) = after else {
        return Ok(RecordChanges {
            latest,
            changes: Vec::new(),
        });
    };
    let mut changes = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.into_iter().enumerate() {
        let c_at = at.nth("Change", i + 1);
        let id = id_number(&c_at, n, "ChangeID")?;
        check_number(after, i, id, latest).map_err(|why| c_at.invalid("@ChangeID", why))?;
        changes.push((id, map_change(&c_at, n)?));
    }
    Ok(RecordChanges { latest, changes })
}

/// Where a change names its entry: the element and its id attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// `<Event EventUID="…"/>`.
    Event,
    /// `<Document DocumentID="…"/>`.
    Document,
    /// `<Appointment AppointmentID="…"/>`.
    Appointment,
    /// About the patient: no entry.
    None,
}

/// SystmOne's `ChangeType`s and where each names its entry.
fn change_kind(raw: &str) -> Option<(ChangeKind, Entry)> {
    Some(match raw {
        "EventRecorded" => (ChangeKind::ReadingRecorded, Entry::Event),
        "DocumentFiled" => (ChangeKind::DocumentFiled, Entry::Document),
        "AppointmentBooked" => (ChangeKind::AppointmentBooked, Entry::Appointment),
        "AppointmentAmended" => (ChangeKind::AppointmentAmended, Entry::Appointment),
        "AppointmentCancelled" => (ChangeKind::AppointmentCancelled, Entry::Appointment),
        "ContactDetailsUpdated" => (ChangeKind::ContactDetailsChanged, Entry::None),
        "Registered" => (ChangeKind::Registered, Entry::None),
        "Deregistered" => (ChangeKind::Deregistered, Entry::None),
        _ => return None,
    })
}

fn map_change(at: &At, n: Node) -> Result<RecordChange> {
    let raw_nhs = at.req(n, "NHSNumber")?;
    let nhs_number =
        NhsNumber::parse(raw_nhs).map_err(|e| at.invalid("NHSNumber", e.to_string()))?;
    let raw_kind = at.req(n, "ChangeType")?;
    let (kind, entry) = change_kind(raw_kind).ok_or_else(|| {
        at.invalid(
            "ChangeType",
            format!("'{}' is not a change SystmOne reports", shown(raw_kind)),
        )
    })?;
    // Each id as this adapter's other methods answer it.
    let resource_id = match entry {
        Entry::Event => Some(uid_attr(
            &at.under("Event"),
            at.node(n, "Event")?,
            "EventUID",
        )?),
        Entry::Document => Some(id_attr(
            &at.under("Document"),
            at.node(n, "Document")?,
            "DocumentID",
        )?),
        Entry::Appointment => Some(number_attr(
            &at.under("Appointment"),
            at.node(n, "Appointment")?,
            "AppointmentID",
        )?),
        Entry::None => None,
    };
    let by_practice = match attr(n, "MadeBy") {
        Some("Organisation") => true,
        Some("ThirdParty") => false,
        Some(other) => {
            return Err(at.invalid(
                "@MadeBy",
                format!("'{}' is not Organisation or ThirdParty", shown(other)),
            ));
        }
        None => return Err(at.missing("@MadeBy")),
    };
    let raw_time = attr(n, "DateTime").ok_or_else(|| at.missing("@DateTime"))?;
    Ok(RecordChange {
        nhs_number,
        kind,
        resource_id,
        occurred: utc_value(at, "@DateTime", raw_time)?.to_rfc3339(),
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

    fn answer(after: Option<u64>, latest: u64, changes: &str) -> String {
        let after = after.map_or(String::new(), |a| format!(" After=\"{a}\""));
        format!(
            "<RecordChanges OrganisationID=\"A81001\"{after} LatestChangeID=\"{latest}\">{changes}</RecordChanges>"
        )
    }

    fn change(id: u64, kind: &str, entry: &str) -> String {
        format!(
            "<Change ChangeID=\"{id}\" DateTime=\"2026-07-07T10:15:00Z\" MadeBy=\"ThirdParty\">\
             <NHSNumber>9000000009</NHSNumber><ChangeType>{kind}</ChangeType>{entry}</Change>"
        )
    }

    const EVENT: &str = "<Event EventUID=\"{5E1B2C3D-0000-4000-8000-00000000000A}\"/>";

    #[test]
    fn changes_map_whole_with_the_ids_the_adapter_answers() {
        let body = answer(
            Some(4),
            8,
            &[
                change(5, "EventRecorded", EVENT),
                change(6, "DocumentFiled", "<Document DocumentID=\"123\"/>"),
                change(
                    7,
                    "AppointmentCancelled",
                    "<Appointment AppointmentID=\"5031\"/>",
                )
                .replace("ThirdParty", "Organisation"),
                change(8, "Deregistered", ""),
            ]
            .concat(),
        );
        let mapped = map_record_changes(body.as_bytes(), &ods(), Some(4)).unwrap();
        let got: Vec<(u64, ChangeKind, Option<&str>, bool)> = mapped
            .changes
            .iter()
            .map(|(id, c)| (*id, c.kind, c.resource_id.as_deref(), c.by_practice))
            .collect();
        assert_eq!(
            got,
            [
                (
                    5,
                    ChangeKind::ReadingRecorded,
                    Some("5e1b2c3d-0000-4000-8000-00000000000a"),
                    false
                ),
                (6, ChangeKind::DocumentFiled, Some("123"), false),
                (7, ChangeKind::AppointmentCancelled, Some("5031"), true),
                (8, ChangeKind::Deregistered, None, false),
            ]
        );
        assert_eq!(mapped.changes[0].1.occurred, "2026-07-07T10:15:00Z");
        assert_eq!(mapped.changes[0].1.nhs_number.to_string(), "9000000009");
        let page = mapped.page(Some(4), |n| cursor(&ods(), n));
        assert_eq!((page.cursor.as_str(), page.more), ("tpp:A81001:8", false));
    }

    #[test]
    fn a_malformed_change_is_invalid_data_naming_the_element() {
        let good = change(1, "EventRecorded", EVENT);
        for (from, to, element) in [
            ("EventRecorded", "EventDeleted", "Change[1]/ChangeType"),
            (
                "<NHSNumber>9000000009</NHSNumber>",
                "",
                "Change[1]/NHSNumber",
            ),
            ("9000000009", "9000000008", "Change[1]/NHSNumber"),
            (
                "2026-07-07T10:15:00Z",
                "07/07/2026 11:15:00",
                "Change[1]/@DateTime",
            ),
            (
                "2026-07-07T10:15:00Z",
                "2026-07-07T10:15:00+01:00",
                "Change[1]/@DateTime",
            ),
            (
                " DateTime=\"2026-07-07T10:15:00Z\"",
                "",
                "Change[1]/@DateTime",
            ),
            (EVENT, "", "Change[1]/Event"),
            (
                EVENT,
                "<Event EventUID=\"not a uid\"/>",
                "Change[1]/Event/@EventUID",
            ),
            ("ThirdParty", "Supplier", "Change[1]/@MadeBy"),
            ("ChangeID=\"1\"", "ChangeID=\"2\"", "Change[1]/@ChangeID"),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            let err = map_record_changes(answer(Some(0), 2, &bad).as_bytes(), &ods(), Some(0))
                .unwrap_err();
            assert!(err.to_string().contains(element), "{element}: {err}");
            let adapter: AdapterError = err.into();
            assert!(matches!(adapter, AdapterError::InvalidNativeData { .. }));
        }
        let document = change(1, "DocumentFiled", "<Document DocumentID=\"d-1\"/>");
        assert!(
            map_record_changes(answer(Some(0), 1, &document).as_bytes(), &ods(), Some(0))
                .unwrap_err()
                .to_string()
                .contains("Change[1]/Document/@DocumentID")
        );
        let appointment = change(1, "AppointmentBooked", "<Document DocumentID=\"1\"/>");
        assert!(
            map_record_changes(answer(Some(0), 1, &appointment).as_bytes(), &ods(), Some(0))
                .unwrap_err()
                .to_string()
                .contains("Change[1]/Appointment")
        );
    }

    #[test]
    fn the_answer_must_follow_what_was_asked() {
        let one = change(1, "Registered", "");
        let other = answer(Some(0), 1, &one).replace("A81001", "B82617");
        assert!(map_record_changes(other.as_bytes(), &ods(), Some(0)).is_err());
        let echo = answer(Some(3), 4, &one);
        assert!(map_record_changes(echo.as_bytes(), &ods(), Some(0)).is_err());
        let gap = answer(
            Some(0),
            5,
            &[one.clone(), change(3, "Registered", "")].concat(),
        );
        assert!(map_record_changes(gap.as_bytes(), &ods(), Some(0)).is_err());
        let beyond = answer(Some(0), 0, &one);
        assert!(map_record_changes(beyond.as_bytes(), &ods(), Some(0)).is_err());
        let silent = answer(Some(1), 3, "");
        assert!(map_record_changes(silent.as_bytes(), &ods(), Some(1)).is_err());
        let unasked = answer(None, 3, &one);
        assert!(map_record_changes(unasked.as_bytes(), &ods(), None).is_err());
        assert!(map_record_changes(b"<PatientDocuments/>", &ods(), None).is_err());

        let end = map_record_changes(answer(None, 42, "").as_bytes(), &ods(), None).unwrap();
        let page = end.page(None, |n| cursor(&ods(), n));
        assert_eq!(
            (page.changes.len(), page.cursor.as_str(), page.more),
            (0, "tpp:A81001:42", false)
        );
        let first = map_record_changes(answer(Some(0), 3, &one).as_bytes(), &ods(), Some(0))
            .unwrap()
            .page(Some(0), |n| cursor(&ods(), n));
        assert_eq!((first.cursor.as_str(), first.more), ("tpp:A81001:1", true));
    }

    #[test]
    fn only_cursors_given_here_for_the_organisation_are_taken() {
        assert_eq!(cursor_id("tpp:A81001:17", &ods()).unwrap(), 17);
        assert_eq!(cursor_id(&cursor(&ods(), 0), &ods()).unwrap(), 0);
        for bad in [
            "17",
            "999999999999",
            "not-a-cursor-this-system-gave",
            "emis:A81001:17",
            "tpp:B82617:17",
            "tpp:A81001:",
            "tpp:A81001:017",
            "tpp:A81001:1x",
            "tpp:A81001:99999999999999999999999",
        ] {
            assert!(
                matches!(
                    cursor_id(bad, &ods()),
                    Err(AdapterError::Unprocessable { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_systmone_no_longer_honours_is_unprocessable() {
        let resp = |status: u16, code: &str| NativeResponse {
            status,
            body: Bytes::from(format!(
                "<ErrorResponse><ErrorCode>{code}</ErrorCode><Description>d</Description></ErrorResponse>"
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
            refused(&ods(), None, &resp(404, "ORGANISATION_NOT_FOUND")),
            AdapterError::NotFound { .. }
        ));
        assert!(matches!(
            refused(&ods(), Some(1), &resp(400, "INVALID_PARAMETER")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            refused(&ods(), Some(1), &resp(503, "SERVICE_UNAVAILABLE")),
            AdapterError::Unavailable { .. }
        ));
    }
}
