//! Vision's change log (`docs/native-formats/vision.md`, "Changes"): the native call
//! (the change extract after a `SEQ`, the log's last `SEQ` in `X-Vision-Last-Seq`), its
//! refusals, the gateway's cursor (`vision.{ODS}.{SEQ}`) and the strict mapping of a
//! change extract to [`RecordChange`]s, whole or not at all.
//!
//! Entries are named as this adapter's other methods name them: a reading by its journal
//! `ID` (lower-cased, as a search gives it), a document by its `DOC_ID`, an appointment by
//! its `APPT_ID`. `CHANGED` is UK local time, answered in UTC.

use gp_adapter::native::{Call, NativeResponse, refusal_detail, status_error};
use gp_adapter::{AdapterError, CallContext, ChangeKind, RecordChange};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::appointments::{is_number, stamp};
use crate::client::VisionClient;
use crate::error::VisionDataError;
use crate::extract::{Extract, Row};
use crate::mapping::{Col, col, id, invalid, opt, parse_error_body, req};

type Result<T> = std::result::Result<T, VisionDataError>;

const SYSTEM: gp_adapter::GpSystem = crate::SYSTEM;
/// Response header of a change extract: the `SEQ` of the last change made so far.
pub const LAST_SEQ_HEADER: &str = "x-vision-last-seq";
/// Rows asked for in one call (one page of `changes_since`).
pub const PAGE_ROWS: usize = 100;
/// What every cursor this adapter hands out starts with.
const CURSOR_PREFIX: &str = "vision.";

/// The cursor handed to the gateway: `vision.{ODS}.{SEQ}`, the practice it reads and the
/// last `SEQ` read there.
pub fn render_cursor(ods: &OdsCode, seq: u64) -> String {
    format!("{CURSOR_PREFIX}{}.{seq}", ods.as_str())
}

/// The `SEQ` a cursor from [`render_cursor`] for practice `ods` stands for; any other
/// cursor (another system's, another practice's, made up) is `Unprocessable`, never a
/// silent restart.
pub fn parse_cursor(cursor: &str, ods: &OdsCode) -> std::result::Result<u64, AdapterError> {
    let refused = |why: String| AdapterError::Unprocessable {
        system: SYSTEM,
        detail: format!(
            "'{}' is not a Vision change cursor: {why}",
            shown(&cursor.chars().take(64).collect::<String>())
        ),
    };
    let Some((practice, seq)) = cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|rest| rest.split_once('.'))
    else {
        return Err(refused("not vision.{ODS}.{SEQ}".into()));
    };
    if practice != ods.as_str() {
        return Err(refused(format!("it reads practice {}", shown(practice))));
    }
    seq.parse::<u64>()
        .ok()
        .filter(|_| is_number(seq))
        .ok_or_else(|| refused("its SEQ is not a number".into()))
}

/// A mapped change extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedChanges {
    /// The changes, oldest first.
    pub changes: Vec<RecordChange>,
    /// The `SEQ` to read on after: the last row's, or the one asked after when none.
    pub last: u64,
    /// Whether changes after `last` were made already (`X-Vision-Last-Seq` is later).
    pub more: bool,
}

/// The log's last `SEQ`, from an answer's `X-Vision-Last-Seq`.
fn last_seq(response: &NativeResponse) -> Result<u64> {
    let raw = response.header(LAST_SEQ_HEADER).unwrap_or_default();
    raw.parse::<u64>()
        .ok()
        .filter(|_| is_number(&raw))
        .ok_or_else(|| VisionDataError::Invalid {
            extract: "change extract",
            row: 1,
            column: "X-Vision-Last-Seq",
            reason: format!("'{}' is not a SEQ", shown(&raw)),
        })
}

/// The answer to a call without `after`: a change extract without rows, and the log's
/// last `SEQ`.
pub fn map_end(response: &NativeResponse) -> Result<u64> {
    let ex = Extract::parse("change extract", &response.body)?;
    for c in [
        "SEQ",
        "CHANGED",
        "NHS_NUMBER",
        "CHANGE_TYPE",
        "ENTRY_ID",
        "SOURCE",
    ] {
        col(&ex, c)?;
    }
    if ex.rows() != 0 {
        return Err(VisionDataError::RowCount {
            extract: ex.name(),
            found: ex.rows(),
            expected: "none without `after`",
        });
    }
    last_seq(response)
}

/// Vision's `CHANGE_TYPE`s.
fn kind(row: &Row, c: Col) -> Result<ChangeKind> {
    Ok(match req(row, c)? {
        "OBSERVATION_RECORDED" => ChangeKind::ReadingRecorded,
        "DOCUMENT_FILED" => ChangeKind::DocumentFiled,
        "APPOINTMENT_BOOKED" => ChangeKind::AppointmentBooked,
        "APPOINTMENT_AMENDED" => ChangeKind::AppointmentAmended,
        "APPOINTMENT_CANCELLED" => ChangeKind::AppointmentCancelled,
        "CONTACT_UPDATED" => ChangeKind::ContactDetailsChanged,
        "REGISTERED" => ChangeKind::Registered,
        "DEREGISTERED" => ChangeKind::Deregistered,
        other => {
            return Err(invalid(
                row,
                c,
                format!("'{}' is not a change type Vision logs", shown(other)),
            ));
        }
    })
}

/// `ENTRY_ID` for a change of `kind`: a journal `ID` for a reading, a Vision number for a
/// document or appointment, empty for the patient's own changes.
fn entry(row: &Row, c: Col, kind: ChangeKind) -> Result<Option<String>> {
    match kind {
        ChangeKind::ReadingRecorded => id(row, c).map(Some),
        ChangeKind::DocumentFiled
        | ChangeKind::AppointmentBooked
        | ChangeKind::AppointmentAmended
        | ChangeKind::AppointmentCancelled => {
            let raw = req(row, c)?;
            if is_number(raw) {
                Ok(Some(raw.to_owned()))
            } else {
                Err(invalid(
                    row,
                    c,
                    format!("'{}' is not a Vision number", shown(raw)),
                ))
            }
        }
        ChangeKind::ContactDetailsChanged | ChangeKind::Registered | ChangeKind::Deregistered => {
            match opt(row, c) {
                None => Ok(None),
                Some(raw) => Err(invalid(
                    row,
                    c,
                    format!("'{}' given for a change to the patient", shown(raw)),
                )),
            }
        }
    }
}

/// Maps the answer to a call for at most `rows` changes after `SEQ` `after`: every row or
/// none. Rows must run on from `after` without gaps and stop at the header's last `SEQ`;
/// an NHS number, time, change type, entry or source the format does not allow fails the
/// whole extract, as does an empty extract while later changes exist.
pub fn map_changes(response: &NativeResponse, after: u64, rows: usize) -> Result<MappedChanges> {
    let ex = Extract::parse("change extract", &response.body)?;
    let c = |name| col(&ex, name);
    let [seq_col, changed, nhs_col, type_col, entry_col, source] = [
        "SEQ",
        "CHANGED",
        "NHS_NUMBER",
        "CHANGE_TYPE",
        "ENTRY_ID",
        "SOURCE",
    ]
    .map(c);
    let (seq_col, changed, nhs_col, type_col, entry_col, source) =
        (seq_col?, changed?, nhs_col?, type_col?, entry_col?, source?);
    let latest = last_seq(response)?;
    if ex.rows() > rows {
        return Err(VisionDataError::RowCount {
            extract: ex.name(),
            found: ex.rows(),
            expected: "at most the rows asked for",
        });
    }
    let mut last = after;
    let mut changes = Vec::with_capacity(ex.rows());
    for row in ex.iter() {
        let raw = req(&row, seq_col)?;
        let expected = last + 1;
        if raw != expected.to_string() {
            return Err(invalid(
                &row,
                seq_col,
                format!(
                    "'{}' where SEQ {expected} was due (changes run on from SEQ {after} without gaps)",
                    shown(raw)
                ),
            ));
        }
        if expected > latest {
            return Err(invalid(
                &row,
                seq_col,
                format!("SEQ {expected} is after X-Vision-Last-Seq {latest}"),
            ));
        }
        last = expected;
        let nhs_raw = req(&row, nhs_col)?;
        let nhs_number = NhsNumber::parse(nhs_raw).map_err(|e| {
            invalid(
                &row,
                nhs_col,
                format!("'{}' is not an NHS number: {e}", shown(nhs_raw)),
            )
        })?;
        let kind = kind(&row, type_col)?;
        let by_practice = match req(&row, source)? {
            "PRACTICE" => true,
            "API" => false,
            other => {
                return Err(invalid(
                    &row,
                    source,
                    format!("'{}' is not PRACTICE or API", shown(other)),
                ));
            }
        };
        changes.push(RecordChange {
            nhs_number,
            kind,
            resource_id: entry(&row, entry_col, kind)?,
            occurred: stamp(&row, changed)?.to_rfc3339(),
            by_practice,
        });
    }
    if changes.is_empty() && latest > after {
        return Err(VisionDataError::RowCount {
            extract: ex.name(),
            found: 0,
            expected: "at least 1 while X-Vision-Last-Seq is later than `after`",
        });
    }
    Ok(MappedChanges {
        changes,
        last,
        more: latest > last,
    })
}

/// A refused change call: an unknown practice is `NotFound`; a `SEQ` Vision no longer
/// keeps changes after (`410 CHANGES_EXPIRED`) or has not reached (`400 SEQ_AHEAD`) is
/// `Unprocessable` (the gateway starts again from the end); the rest as every read.
pub fn refused(response: &NativeResponse, ods: &OdsCode) -> AdapterError {
    let native = parse_error_body(&response.body);
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "a Vision ERROR line",
    );
    match (response.status, native.as_ref().map(|(c, _)| c.as_str())) {
        (404, Some("PRACTICE_NOT_FOUND")) => AdapterError::NotFound {
            system: SYSTEM,
            what: format!("practice {ods}"),
        },
        (410, Some("CHANGES_EXPIRED")) | (400, Some("SEQ_AHEAD")) => AdapterError::Unprocessable {
            system: SYSTEM,
            detail,
        },
        (status, _) => status_error(SYSTEM, Call::Read, status, false, detail),
    }
}

impl VisionClient {
    /// `GET /vision/practices/{ODS}/changes[?after={SEQ}&rows={rows}]`: the `200` answer
    /// (its body and `X-Vision-Last-Seq`). Without `after`: the log's end, no rows.
    pub async fn changes(
        &self,
        ods: &OdsCode,
        after: Option<u64>,
        rows: usize,
        ctx: &CallContext,
    ) -> std::result::Result<NativeResponse, AdapterError> {
        let mut path = format!("/vision/practices/{}/changes", ods.as_str());
        if let Some(after) = after {
            path.push_str(&format!("?after={after}&rows={rows}"));
        }
        let response = self.http.get(&path, ctx).await?;
        if response.status == 200 {
            Ok(response)
        } else {
            Err(refused(&response, ods))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const HEADER: &str = "SEQ|CHANGED|NHS_NUMBER|CHANGE_TYPE|ENTRY_ID|SOURCE";

    fn answer(last: Option<&str>, rows: &[&str]) -> NativeResponse {
        let mut body = format!("{HEADER}\r\n");
        for r in rows {
            body.push_str(r);
            body.push_str("\r\n");
        }
        body.push_str(&format!("EOF|{}\r\n", rows.len()));
        let mut r = NativeResponse {
            status: 200,
            body: Bytes::from(body),
            content_type: Some("text/plain; charset=utf-8".into()),
            headers: Default::default(),
        };
        if let Some(last) = last {
            r.headers.insert(LAST_SEQ_HEADER, last.parse().unwrap());
        }
        r
    }

    fn message(e: VisionDataError) -> String {
        AdapterError::from(e).to_string()
    }

    #[test]
    fn rows_map_to_changes_in_utc_with_the_ids_the_adapter_gives() {
        let page = map_changes(
            &answer(
                Some("12"),
                &[
                    "8|20260714093005|9658218865|OBSERVATION_RECORDED|5D0C1E2F-4A1B|PRACTICE",
                    "9|20261207101500|9658218865|DOCUMENT_FILED|7000013|API",
                    "10|20261207101501|9658218865|APPOINTMENT_CANCELLED|9012|PRACTICE",
                    "11|20261207101502|9658218865|CONTACT_UPDATED||API",
                ],
            ),
            7,
            100,
        )
        .unwrap();
        assert_eq!((page.last, page.more), (11, true));
        let nhs = NhsNumber::parse("9658218865").unwrap();
        assert_eq!(
            page.changes[0],
            RecordChange {
                nhs_number: nhs,
                kind: ChangeKind::ReadingRecorded,
                resource_id: Some("5d0c1e2f-4a1b".into()),
                // 09:30:05 BST is 08:30:05 UTC.
                occurred: "2026-07-14T08:30:05Z".into(),
                by_practice: true,
            }
        );
        let summary: Vec<_> = page
            .changes
            .iter()
            .map(|c| (c.kind, c.resource_id.as_deref(), c.occurred.as_str()))
            .collect();
        assert_eq!(
            summary[1..],
            [
                (
                    ChangeKind::DocumentFiled,
                    Some("7000013"),
                    "2026-12-07T10:15:00Z"
                ),
                (
                    ChangeKind::AppointmentCancelled,
                    Some("9012"),
                    "2026-12-07T10:15:01Z"
                ),
                (
                    ChangeKind::ContactDetailsChanged,
                    None,
                    "2026-12-07T10:15:02Z"
                ),
            ]
        );
        let end = map_changes(&answer(Some("11"), &[]), 11, 100).unwrap();
        assert_eq!((end.changes.len(), end.last, end.more), (0, 11, false));
        assert_eq!(map_end(&answer(Some("11"), &[])), Ok(11));
    }

    #[test]
    fn a_bad_row_fails_the_whole_extract_naming_the_column() {
        let ok = "8|20261207101500|9658218865|REGISTERED||PRACTICE";
        for (row, wanted) in [
            (
                "8|20261207101500|9658218865|PATIENT_MERGED||PRACTICE",
                "change extract row 2 CHANGE_TYPE is invalid: 'PATIENT_MERGED' is not a change type Vision logs",
            ),
            (
                "8|20261207101500||REGISTERED||PRACTICE",
                "change extract row 2 NHS_NUMBER is missing",
            ),
            (
                "8|20261207101500|9658218866|REGISTERED||PRACTICE",
                "change extract row 2 NHS_NUMBER is invalid",
            ),
            (
                "8|20261307101500|9658218865|REGISTERED||PRACTICE",
                "change extract row 2 CHANGED is invalid: '20261307101500' is not YYYYMMDDHHMMSS",
            ),
            (
                "8|202612071015|9658218865|REGISTERED||PRACTICE",
                "change extract row 2 CHANGED is invalid",
            ),
            (
                "9|20261207101500|9658218865|REGISTERED||PRACTICE",
                "change extract row 2 SEQ is invalid: '9' where SEQ 8 was due",
            ),
            (
                "8|20261207101500|9658218865|REGISTERED|42|PRACTICE",
                "change extract row 2 ENTRY_ID is invalid",
            ),
            (
                "8|20261207101500|9658218865|DOCUMENT_FILED|d-1|API",
                "change extract row 2 ENTRY_ID is invalid: 'd-1' is not a Vision number",
            ),
            (
                "8|20261207101500|9658218865|APPOINTMENT_BOOKED||API",
                "change extract row 2 ENTRY_ID is missing",
            ),
            (
                "8|20261207101500|9658218865|REGISTERED||SUPPLIER",
                "change extract row 2 SOURCE is invalid: 'SUPPLIER' is not PRACTICE or API",
            ),
            (
                "8|20261207101500|9658218865|REGISTERED|PRACTICE",
                "the change extract row 2 has 5 fields, the header has 6",
            ),
        ] {
            let e = map_changes(&answer(Some("8"), &[row]), 7, 100).unwrap_err();
            let text = message(e);
            assert!(text.contains(wanted), "{row}: {text}");
            assert!(text.starts_with("Vision returned data"), "{text}");
        }
        // The header's last SEQ must be there, a number, and not before the rows.
        for (last, wanted) in [
            (None, "X-Vision-Last-Seq is invalid: '' is not a SEQ"),
            (Some("x"), "X-Vision-Last-Seq is invalid"),
            (Some("7"), "SEQ 8 is after X-Vision-Last-Seq 7"),
        ] {
            let e = map_changes(&answer(last, &[ok]), 7, 100).unwrap_err();
            assert!(message(e).contains(wanted), "{last:?}");
        }
        // An empty page while later changes exist would stall the gateway.
        assert!(matches!(
            map_changes(&answer(Some("9"), &[]), 7, 100),
            Err(VisionDataError::RowCount { found: 0, .. })
        ));
        assert!(matches!(
            map_changes(&answer(Some("8"), &[ok]), 7, 0),
            Err(VisionDataError::RowCount { found: 1, .. })
        ));
        assert!(matches!(
            map_end(&answer(Some("8"), &[ok])),
            Err(VisionDataError::RowCount { found: 1, .. })
        ));
        let garbage = NativeResponse {
            body: Bytes::from_static(b"<html>Please log in</html>"),
            ..answer(Some("8"), &[])
        };
        assert!(map_end(&garbage).is_err());
        let truncated = NativeResponse {
            body: Bytes::from_static(
                b"SEQ|CHANGED|NHS_NUMBER|CHANGE_TYPE|ENTRY_ID|SOURCE\r\n8|2026",
            ),
            ..answer(Some("8"), &[])
        };
        assert!(matches!(
            map_changes(&truncated, 7, 100),
            Err(VisionDataError::Truncated { .. })
        ));
    }

    #[test]
    fn cursors_are_this_adapters_for_this_practice() {
        let ods = OdsCode::parse("B82617").unwrap();
        let other = OdsCode::parse("B82618").unwrap();
        let c = render_cursor(&ods, 42);
        assert_eq!(c, "vision.B82617.42");
        assert_eq!(parse_cursor(&c, &ods), Ok(42));
        for bad in [
            render_cursor(&other, 42),
            "42".into(),
            "vision.B82617".into(),
            "vision.B82617.-1".into(),
            "vision.B82617.4 2".into(),
            "vision.B82617.1234567890123456789".into(),
            "emis.B82617.42".into(),
        ] {
            assert!(
                matches!(
                    parse_cursor(&bad, &ods),
                    Err(AdapterError::Unprocessable { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals_map_to_adapter_errors() {
        let ods = OdsCode::parse("B82617").unwrap();
        let resp = |status, body: &'static str| NativeResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            content_type: None,
            headers: Default::default(),
        };
        assert!(matches!(
            refused(&resp(404, "ERROR|PRACTICE_NOT_FOUND|No practice\r\n"), &ods),
            AdapterError::NotFound { .. }
        ));
        assert_eq!(
            refused(&resp(410, "ERROR|CHANGES_EXPIRED|gone\r\n"), &ods),
            AdapterError::Unprocessable {
                system: SYSTEM,
                detail: "HTTP 410 CHANGES_EXPIRED: gone".into()
            }
        );
        assert!(matches!(
            refused(&resp(400, "ERROR|SEQ_AHEAD|not yet\r\n"), &ods),
            AdapterError::Unprocessable { .. }
        ));
        assert!(matches!(
            refused(&resp(400, "ERROR|INVALID_SEQ|bad\r\n"), &ods),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            refused(&resp(503, "ERROR|SERVICE_UNAVAILABLE|down\r\n"), &ods),
            AdapterError::Unavailable { .. }
        ));
    }
}
