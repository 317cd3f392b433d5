//! Evolution's change feed (`docs/native-formats/microtest.md`, "Changes"): the native
//! call (one page of a site's changes after an opaque cursor), its refusals, and the
//! strict mapping of a page to [`RecordChange`]s, whole or not at all.
//!
//! The gateway's cursor is Evolution's own, passed through once checked to be one that
//! can go back in a URL; Evolution binds it to the site and refuses any it did not issue.
//! Entries are named by the GUIDs this adapter's other methods answer (an entry's `id`,
//! a `document_id`, an `appointment_id`); `changed_at` is UK local time, answered in UTC.

use std::collections::HashSet;

use bytes::Bytes;
use gp_adapter::json::Node;
use gp_adapter::native::NativeResponse;
use gp_adapter::{AdapterError, CallContext, ChangeKind, ChangesPage, RecordChange};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::MicrotestAdapter;
use crate::appointments::{follow_cursor, site_not_found, utc, valid_book_id};
use crate::client::{MicrotestClient, PREFIX, error_from};
use crate::documents::valid_document_id;
use crate::error::MicrotestDataError;
use crate::mapping::{id, parse, parse_problem};

type Result<T> = std::result::Result<T, MicrotestDataError>;

/// Changes asked for in one call (one page of `changes_since`).
pub const PAGE_SIZE: usize = 100;
/// The longest cursor handed to the gateway (which stores at most 256 characters).
pub const MAX_CURSOR: usize = 256;

/// Evolution's `change_type`s.
const CHANGE_TYPES: [(&str, ChangeKind); 8] = [
    ("observation-recorded", ChangeKind::ReadingRecorded),
    ("document-filed", ChangeKind::DocumentFiled),
    ("appointment-booked", ChangeKind::AppointmentBooked),
    ("appointment-amended", ChangeKind::AppointmentAmended),
    ("appointment-cancelled", ChangeKind::AppointmentCancelled),
    ("contact-updated", ChangeKind::ContactDetailsChanged),
    ("registered", ChangeKind::Registered),
    ("deregistered", ChangeKind::Deregistered),
];

/// Whether `cursor` can be an Evolution cursor: 1 to [`MAX_CURSOR`] of
/// `A-Z a-z 0-9 - . _ ~`, safe in a query string as it stands.
pub fn valid_cursor(cursor: &str) -> bool {
    (1..=MAX_CURSOR).contains(&cursor.len())
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// One mapped page of `GET …/changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFeedPage {
    /// The changes, oldest first.
    pub changes: Vec<RecordChange>,
    /// Where to read on from.
    pub next_cursor: String,
    /// The `sequence` of the last change made at the site so far.
    pub latest: u64,
    /// Whether changes after this page were made already.
    pub more: bool,
}

/// A sequence number, sent as a string of digits (`"58"`).
fn sequence(n: Node) -> Result<u64> {
    let raw = n.str()?;
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            n.invalid(format!("'{}' is not a sequence number", shown(raw)))
                .into()
        })
}

/// `entry_id` for a change of `kind`: the id the adapter gives the entry, document or
/// appointment; `null` for the patient's own changes.
fn entry(n: Node, kind: ChangeKind) -> Result<Option<String>> {
    let guid = |valid: fn(&str) -> bool| -> Result<Option<String>> {
        let raw = n.str()?;
        if valid(raw) {
            Ok(Some(raw.to_owned()))
        } else {
            Err(n
                .invalid(format!(
                    "'{}' is not an id of 1 to 56 letters, digits, '-' or '.'",
                    shown(raw)
                ))
                .into())
        }
    };
    match kind {
        ChangeKind::ReadingRecorded => id(n).map(Some),
        ChangeKind::DocumentFiled => guid(valid_document_id),
        ChangeKind::AppointmentBooked
        | ChangeKind::AppointmentAmended
        | ChangeKind::AppointmentCancelled => guid(valid_book_id),
        ChangeKind::ContactDetailsChanged | ChangeKind::Registered | ChangeKind::Deregistered => {
            match n.opt_str()? {
                None => Ok(None),
                Some(raw) => Err(n
                    .invalid(format!(
                        "'{}' given for a change to the patient",
                        shown(raw)
                    ))
                    .into()),
            }
        }
    }
}

fn change(c: Node) -> Result<(u64, RecordChange)> {
    let c = c.object()?;
    let seq = sequence(c.get("sequence"))?;
    let nhs = c.get("nhs_number");
    let nhs_number = NhsNumber::parse(nhs.str()?).map_err(|e| nhs.invalid(e.to_string()))?;
    let kind = c.get("change_type").one_of(&CHANGE_TYPES)?;
    let by_practice = c
        .get("made_by")
        .one_of(&[("practice", true), ("api", false)])?;
    Ok((
        seq,
        RecordChange {
            nhs_number,
            kind,
            resource_id: entry(c.get("entry_id"), kind)?,
            occurred: utc(c.get("changed_at"))?.to_rfc3339(),
            by_practice,
        },
    ))
}

/// Maps one page asked for with at most `limit` changes: every change or none. Sequence
/// numbers must run on without gaps and stop at `latest_sequence`; a change or cursor the
/// format does not allow fails the whole page, naming the field (`changes[2].made_by`).
pub fn map_changes(body: &[u8], limit: usize) -> Result<ChangeFeedPage> {
    let doc = parse("changes page", body)?;
    let latest = sequence(doc.get("latest_sequence"))?;
    let cursor = doc.get("next_cursor");
    let next_cursor = cursor.str()?;
    if !valid_cursor(next_cursor) {
        return Err(cursor
            .invalid(format!(
                "'{}' is not 1 to {MAX_CURSOR} URL-safe characters",
                shown(&next_cursor.chars().take(64).collect::<String>())
            ))
            .into());
    }
    let list = doc.get("changes");
    let items = list.array()?;
    if items.len() > limit {
        return Err(list
            .invalid(format!(
                "{} changes where at most {limit} were asked for",
                items.len()
            ))
            .into());
    }
    let mut changes = Vec::with_capacity(items.len());
    let mut last: Option<u64> = None;
    for item in items {
        let (seq, mapped) = change(item)?;
        let out_of_line = last.is_some_and(|l| l.checked_add(1) != Some(seq)) || seq > latest;
        if out_of_line {
            return Err(item
                .get("sequence")
                .invalid(format!(
                    "{seq} does not run on from {} up to latest_sequence {latest}",
                    last.map_or("the cursor".to_owned(), |l| l.to_string())
                ))
                .into());
        }
        last = Some(seq);
        changes.push(mapped);
    }
    Ok(ChangeFeedPage {
        changes,
        next_cursor: next_cursor.to_owned(),
        latest,
        more: last.is_some_and(|l| l < latest),
    })
}

/// The answer to a call without a cursor: no changes, and the cursor of the feed's end.
pub fn map_end(body: &[u8]) -> Result<String> {
    let page = map_changes(body, 0)?;
    Ok(page.next_cursor)
}

/// A refused change call: an unknown site is `NotFound`; a cursor Evolution did not
/// issue, no longer keeps changes after, or has not reached is `Unprocessable` (the
/// gateway starts again from the end), with `{code}: {detail}`; the rest as every read.
pub fn refused(response: &NativeResponse, ods: &OdsCode) -> AdapterError {
    match (response.status, parse_problem(&response.body)) {
        (404, Some(p)) if p.code == "SITE_NOT_FOUND" => site_not_found(ods),
        (400 | 410, Some(p))
            if matches!(
                p.code.as_str(),
                "INVALID_CURSOR" | "CURSOR_EXPIRED" | "CURSOR_AHEAD"
            ) =>
        {
            AdapterError::Unprocessable {
                system: crate::SYSTEM,
                detail: format!("{}: {}", p.code, p.detail),
            }
        }
        _ => error_from(response),
    }
}

impl MicrotestClient {
    /// `GET /sites/{ODS}/changes[?cursor={cursor}&limit={limit}]`: one page; without a
    /// cursor, the feed's end. `cursor` has been checked to be URL-safe.
    pub async fn changes(
        &self,
        ods: &OdsCode,
        cursor: Option<&str>,
        limit: usize,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let mut path = format!("{PREFIX}/sites/{}/changes", ods.as_str());
        if let Some(c) = cursor {
            path.push_str(&format!("?cursor={c}&limit={limit}"));
        }
        self.get(&path, ctx).await?.map_err(|r| refused(&r, ods))
    }
}

impl MicrotestAdapter {
    /// One `GET …/changes`: without a cursor the feed's end (an empty page whose cursor
    /// it is), with one the next [`PAGE_SIZE`] changes after it.
    pub(crate) async fn change_page(
        &self,
        ods: &OdsCode,
        cursor: Option<&str>,
        ctx: &CallContext,
    ) -> std::result::Result<ChangesPage, AdapterError> {
        let Some(cursor) = cursor else {
            let body = self.client.changes(ods, None, PAGE_SIZE, ctx).await?;
            return Ok(ChangesPage {
                changes: Vec::new(),
                cursor: map_end(&body)?,
                more: false,
            });
        };
        if !valid_cursor(cursor) {
            return Err(AdapterError::Unprocessable {
                system: crate::SYSTEM,
                detail: format!(
                    "'{}' is not an Evolution change cursor",
                    shown(&cursor.chars().take(64).collect::<String>())
                ),
            });
        }
        let body = self
            .client
            .changes(ods, Some(cursor), PAGE_SIZE, ctx)
            .await?;
        let page = map_changes(&body, PAGE_SIZE)?;
        let next = if page.more {
            // Reading on must lead somewhere new, or the gateway would poll in a circle.
            let mut seen = HashSet::from([cursor.to_owned()]);
            follow_cursor(
                &mut seen,
                page.next_cursor,
                page.changes.is_empty(),
                "change",
            )?
        } else {
            page.next_cursor
        };
        Ok(ChangesPage {
            changes: page.changes,
            cursor: next,
            more: page.more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(changes: &str, latest: &str, next: &str) -> Vec<u8> {
        format!(r#"{{"changes":[{changes}],"latest_sequence":"{latest}","next_cursor":"{next}"}}"#)
            .into_bytes()
    }

    fn one(seq: &str, nhs: &str, kind: &str, entry: &str, at: &str, by: &str) -> String {
        format!(
            r#"{{"sequence":"{seq}","changed_at":{{"value":"{at}","precision":"datetime"}},"nhs_number":"{nhs}","change_type":"{kind}","entry_id":{entry},"made_by":"{by}"}}"#
        )
    }

    const NHS: &str = "9912003888";
    const AT: &str = "2026-07-14T09:30:05";

    fn message(e: MicrotestDataError) -> String {
        AdapterError::from(e).to_string()
    }

    #[test]
    fn a_page_maps_to_changes_in_utc_with_the_ids_the_adapter_gives() {
        let body = page(
            &[
                one(
                    "8",
                    NHS,
                    "observation-recorded",
                    r#""5d0c-4a1b""#,
                    AT,
                    "practice",
                ),
                one(
                    "9",
                    NHS,
                    "document-filed",
                    r#""0b6f-77c1""#,
                    "2026-12-07T10:15:00",
                    "api",
                ),
                one(
                    "10",
                    NHS,
                    "appointment-amended",
                    r#""c3b0-9e41""#,
                    AT,
                    "api",
                ),
                one("11", NHS, "deregistered", "null", AT, "practice"),
            ]
            .join(","),
            "12",
            "sb.0a1b2c3d",
        );
        let p = map_changes(&body, 100).unwrap();
        assert_eq!((p.latest, p.more), (12, true));
        assert_eq!(p.next_cursor, "sb.0a1b2c3d");
        assert_eq!(
            p.changes[0],
            RecordChange {
                nhs_number: NhsNumber::parse(NHS).unwrap(),
                kind: ChangeKind::ReadingRecorded,
                resource_id: Some("5d0c-4a1b".into()),
                // 09:30:05 BST is 08:30:05 UTC.
                occurred: "2026-07-14T08:30:05Z".into(),
                by_practice: true,
            }
        );
        let summary: Vec<_> = p
            .changes
            .iter()
            .map(|c| (c.kind, c.resource_id.as_deref(), c.by_practice))
            .collect();
        assert_eq!(
            summary[1..],
            [
                (ChangeKind::DocumentFiled, Some("0b6f-77c1"), false),
                (ChangeKind::AppointmentAmended, Some("c3b0-9e41"), false),
                (ChangeKind::Deregistered, None, true),
            ]
        );
        assert_eq!(p.changes[1].occurred, "2026-12-07T10:15:00Z");
        let end = map_changes(&page("", "11", "sb.0a1b2c3d"), 100).unwrap();
        assert!(!end.more && end.changes.is_empty());
        assert_eq!(
            map_end(&page("", "11", "sb.0a1b2c3d")).unwrap(),
            "sb.0a1b2c3d"
        );
    }

    #[test]
    fn a_bad_change_fails_the_page_naming_the_field() {
        let ok = one("8", NHS, "registered", "null", AT, "practice");
        for (change, wanted) in [
            (
                one("8", NHS, "patient-merged", "null", AT, "practice"),
                "changes[0].change_type is invalid: 'patient-merged' is not one of observation-recorded",
            ),
            (
                r#"{"sequence":"8","changed_at":{"value":"2026-07-14T09:30:05","precision":"datetime"},"change_type":"registered","made_by":"practice"}"#.to_owned(),
                "changes[0].nhs_number is missing",
            ),
            (
                one("8", "9912003889", "registered", "null", AT, "practice"),
                "changes[0].nhs_number is invalid",
            ),
            (
                one("8", NHS, "registered", "null", "2026-07-14", "practice"),
                "changes[0].changed_at.value is invalid: '2026-07-14' is not a date of precision datetime",
            ),
            (
                one("8", NHS, "registered", "null", "2026-13-14T09:30:05", "practice"),
                "changes[0].changed_at.value is invalid",
            ),
            (
                one("8", NHS, "registered", "null", AT, "supplier"),
                "changes[0].made_by is invalid: 'supplier' is not one of practice, api",
            ),
            (
                one("8", NHS, "registered", r#""e-1""#, AT, "practice"),
                "changes[0].entry_id is invalid: 'e-1' given for a change to the patient",
            ),
            (
                one("8", NHS, "document-filed", "null", AT, "api"),
                "changes[0].entry_id is missing",
            ),
            (
                one("8", NHS, "appointment-booked", r#""a b""#, AT, "api"),
                "changes[0].entry_id is invalid",
            ),
            (
                one("x8", NHS, "registered", "null", AT, "practice"),
                "changes[0].sequence is invalid: 'x8' is not a sequence number",
            ),
            (
                one("13", NHS, "registered", "null", AT, "practice"),
                "changes[0].sequence is invalid: 13 does not run on from the cursor up to latest_sequence 12",
            ),
        ] {
            let e = map_changes(&page(&change, "12", "s1.1"), 100).unwrap_err();
            let text = message(e);
            assert!(text.contains(wanted), "{change}: {text}");
            assert!(
                text.starts_with("Microtest Evolution returned data"),
                "{text}"
            );
        }
        // A gap between two changes of a page.
        let gap = page(
            &[ok.clone(), one("10", NHS, "registered", "null", AT, "api")].join(","),
            "12",
            "s1.1",
        );
        assert!(message(map_changes(&gap, 100).unwrap_err()).contains("changes[1].sequence"));
        for (body, wanted) in [
            (page(&ok, "12", "a b"), "next_cursor is invalid"),
            (page(&ok, "12", ""), "next_cursor is missing"),
            (page(&ok, "", "s1.1"), "latest_sequence is missing"),
            (
                page(&ok, "12", "s1.1"),
                "changes is invalid: 1 changes where at most 0 were asked for",
            ),
            (
                br#"{"changes":[],"latest_sequence":"1""#.to_vec(),
                "is not valid Evolution JSON",
            ),
            (b"\x00<html>".to_vec(), "is not valid Evolution JSON"),
        ] {
            let limit = if wanted.starts_with("changes is") {
                0
            } else {
                100
            };
            let text = message(map_changes(&body, limit).unwrap_err());
            assert!(
                text.contains(wanted),
                "{}: {text}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(map_end(&page(&ok, "12", "s1.1")).is_err());
    }

    #[test]
    fn refusals_map_to_adapter_errors() {
        let ods = OdsCode::parse("M85001").unwrap();
        let resp = |status, code: &str| NativeResponse {
            status,
            body: Bytes::from(format!(
                r#"{{"status":{status},"code":"{code}","detail":"why"}}"#
            )),
            content_type: Some("application/problem+json".into()),
            headers: Default::default(),
        };
        assert!(matches!(
            refused(&resp(404, "SITE_NOT_FOUND"), &ods),
            AdapterError::NotFound { .. }
        ));
        for (status, code) in [
            (400, "INVALID_CURSOR"),
            (410, "CURSOR_EXPIRED"),
            (400, "CURSOR_AHEAD"),
        ] {
            assert_eq!(
                refused(&resp(status, code), &ods),
                AdapterError::Unprocessable {
                    system: crate::SYSTEM,
                    detail: format!("{code}: why")
                }
            );
        }
        assert!(matches!(
            refused(&resp(400, "INVALID_LIMIT"), &ods),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            refused(&resp(503, "SERVICE_UNAVAILABLE"), &ods),
            AdapterError::Unavailable { .. }
        ));
    }

    #[test]
    fn cursors_must_be_url_safe() {
        assert!(valid_cursor("s3c.5e1f09a2"));
        for bad in ["", "a b", "a&limit=1", "é", &"a".repeat(257)] {
            assert!(!valid_cursor(bad), "{bad}");
        }
    }
}
