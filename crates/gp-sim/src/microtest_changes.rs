//! Evolution's change feed (`docs/native-formats/microtest.md`, "Changes"): a site's
//! changes in cursor pages, read on from an opaque cursor, over the site's log in
//! [`crate::SimStore`].
//!
//! A child of [`super`] so it speaks the same dialect: problem+json errors, date objects
//! in UK local time, numbers as strings, snake_case, the same cursor check.

use serde_json::{Value, json};

use super::{Microtest, cursor_check, date, ok, problem, query_param};
use crate::appointments;
use crate::changes::{ChangeKind, ChangesError, SimChange};
use crate::model::SystemKind;
use crate::server::Reply;

/// Changes in a page when `limit` is not given.
pub const CHANGE_PAGE_SIZE: usize = 100;
/// Most changes one page carries.
pub const MAX_CHANGE_PAGE: usize = 500;
/// What the cursor check binds a change cursor to, beside the site.
const SCOPE: &str = "changes";

/// Evolution's `change_type` of each kind of change.
pub fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::ReadingRecorded => "observation-recorded",
        ChangeKind::DocumentFiled => "document-filed",
        ChangeKind::AppointmentBooked => "appointment-booked",
        ChangeKind::AppointmentAmended => "appointment-amended",
        ChangeKind::AppointmentCancelled => "appointment-cancelled",
        ChangeKind::ContactChanged => "contact-updated",
        ChangeKind::Registered => "registered",
        ChangeKind::Deregistered => "deregistered",
    }
}

fn check(ods: &str, seq: u64) -> u32 {
    cursor_check(ods, SCOPE, usize::try_from(seq).unwrap_or(usize::MAX))
}

/// The opaque cursor for reading on after change `seq` of site `ods`:
/// `s{seq hex}.{check}`, bound to the site.
pub fn change_cursor(ods: &str, seq: u64) -> String {
    format!("s{seq:x}.{:08x}", check(ods, seq))
}

fn decode(ods: &str, cursor: &str) -> Option<u64> {
    let (seq, sum) = cursor.strip_prefix('s')?.split_once('.')?;
    let seq = u64::from_str_radix(seq, 16).ok()?;
    let sum = u32::from_str_radix(sum, 16).ok()?;
    (sum == check(ods, seq)).then_some(seq)
}

/// One change as the feed lists it: the entry by the id Evolution gives it everywhere
/// (entries, documents and appointments are GUIDs), `null` for the patient's own changes.
fn render_change(c: &SimChange) -> Value {
    json!({
        "sequence": c.seq.to_string(),
        "changed_at": date(appointments::local_date_time(c.at)),
        "nhs_number": c.nhs,
        "change_type": change_type(c.kind),
        "entry_id": c.entry,
        "made_by": if c.by_practice { "practice" } else { "api" },
    })
}

/// The log's refusals in Evolution's format.
fn changes_error(e: &ChangesError) -> Reply {
    match e {
        ChangesError::PracticeNotFound(ods) => problem(
            404,
            "SITE_NOT_FOUND",
            "Site not found",
            &format!("No Evolution site with ODS code {ods}"),
        ),
        ChangesError::Expired { oldest, .. } => problem(
            410,
            "CURSOR_EXPIRED",
            "Cursor expired",
            &format!(
                "The changes after this cursor are no longer kept (the oldest kept is {oldest}); read the records again"
            ),
        ),
        ChangesError::Ahead(after) => problem(
            400,
            "CURSOR_AHEAD",
            "Cursor ahead",
            &format!("The cursor is at change {after}, which this site has not reached"),
        ),
    }
}

impl Microtest {
    /// `GET …/changes[?cursor=…][&limit=…]`: one page of the site's changes after the
    /// cursor, oldest first; without a cursor, none and the cursor of the feed's end.
    pub(super) fn changes(&self, ods: &str, query: Option<&str>) -> Reply {
        if let Err(reply) = self.site(ods) {
            return reply;
        }
        let limit = match query_param(query, "limit") {
            None => CHANGE_PAGE_SIZE,
            Some(raw) => match raw
                .parse::<usize>()
                .ok()
                .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
                .filter(|n| (1..=MAX_CHANGE_PAGE).contains(n))
            {
                Some(n) => n,
                None => {
                    return problem(
                        400,
                        "INVALID_LIMIT",
                        "Invalid limit",
                        &format!("limit must be 1 to {MAX_CHANGE_PAGE}"),
                    );
                }
            },
        };
        let page = match query_param(query, "cursor") {
            None => self
                .store
                .latest_change(SystemKind::Microtest, ods)
                .map(|latest| (Vec::new(), latest, latest)),
            Some(cursor) => {
                let Some(after) = decode(ods, cursor) else {
                    return problem(
                        400,
                        "INVALID_CURSOR",
                        "Invalid cursor",
                        "The cursor is not one this server issued for this site's changes",
                    );
                };
                self.store
                    .changes_since(SystemKind::Microtest, ods, after, limit)
                    .map(|p| {
                        let last = p.changes.last().map_or(after, |c| c.seq);
                        (p.changes, last, p.latest)
                    })
            }
        };
        match page {
            Ok((changes, last, latest)) => ok(&json!({
                "changes": changes.iter().map(render_change).collect::<Vec<_>>(),
                "latest_sequence": latest.to_string(),
                "next_cursor": change_cursor(ods, last),
            })),
            Err(e) => changes_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SimStore;

    struct Site {
        evolution: Microtest,
        store: SimStore,
        ods: String,
        nhs: String,
    }

    fn site() -> Site {
        let store = SimStore::new(crate::Population::generate(
            1,
            &crate::PopulationSpec::sandbox(),
        ));
        let (ods, nhs) = store.read(|pop| {
            let p = pop
                .practices
                .iter()
                .find(|p| p.system == SystemKind::Microtest)
                .unwrap();
            let nhs = pop
                .patients
                .iter()
                .find(|x| x.practice == p.ods)
                .unwrap()
                .nhs_number
                .clone();
            (p.ods.clone(), nhs)
        });
        Site {
            evolution: Microtest {
                store: store.clone(),
            },
            store,
            ods,
            nhs,
        }
    }

    fn pulse(s: &Site) -> String {
        let concept = crate::concepts::measurement_by_snomed("78564009").unwrap();
        s.store
            .record_reading_at_practice(SystemKind::Microtest, &s.ods, &s.nhs, concept, 72.0)
            .unwrap()
    }

    fn json(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn pages_read_on_from_the_cursor_each_gives() {
        let s = site();
        let end = s.evolution.changes(&s.ods, None);
        assert_eq!(end.status, 200);
        let end = json(&end);
        assert_eq!(end["changes"], json!([]));
        assert_eq!(end["latest_sequence"], "0");
        let start = end["next_cursor"].as_str().unwrap().to_owned();
        let first = pulse(&s);
        pulse(&s);
        pulse(&s);
        let page = json(
            &s.evolution
                .changes(&s.ods, Some(&format!("cursor={start}&limit=2"))),
        );
        assert_eq!(page["latest_sequence"], "3");
        let changes = page["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["sequence"], "1");
        assert_eq!(changes[0]["nhs_number"], s.nhs.as_str());
        assert_eq!(changes[0]["change_type"], "observation-recorded");
        assert_eq!(changes[0]["entry_id"], first.as_str());
        assert_eq!(changes[0]["made_by"], "practice");
        assert_eq!(changes[0]["changed_at"]["precision"], "datetime");
        assert_eq!(page["next_cursor"], change_cursor(&s.ods, 2));
        let rest = json(&s.evolution.changes(
            &s.ods,
            Some(&format!("cursor={}", page["next_cursor"].as_str().unwrap())),
        ));
        assert_eq!(rest["changes"][0]["sequence"], "3");
        assert_eq!(rest["next_cursor"], change_cursor(&s.ods, 3));
        // At the end, the page is empty and the cursor stays where it was.
        let at_end = json(&s.evolution.changes(
            &s.ods,
            Some(&format!("cursor={}", rest["next_cursor"].as_str().unwrap())),
        ));
        assert_eq!(at_end["changes"], json!([]));
        assert_eq!(at_end["next_cursor"], rest["next_cursor"]);
    }

    #[test]
    fn refusals_are_problem_documents() {
        let s = site();
        pulse(&s);
        let code = |ods: &str, query: &str| {
            let reply = s.evolution.changes(ods, Some(query));
            (
                reply.status,
                json(&reply)["code"].as_str().unwrap().to_owned(),
            )
        };
        let here = change_cursor(&s.ods, 0);
        assert_eq!(
            code("Y99999", &format!("cursor={here}")),
            (404, "SITE_NOT_FOUND".to_owned())
        );
        let elsewhere = s.store.read(|pop| {
            pop.practices
                .iter()
                .find(|p| p.system == SystemKind::Microtest && p.ods != s.ods)
                .unwrap()
                .ods
                .clone()
        });
        for bad in [
            change_cursor(&elsewhere, 0),
            "s0.00000000".to_owned(),
            "c0.1".to_owned(),
            "garbage".to_owned(),
        ] {
            assert_eq!(
                code(&s.ods, &format!("cursor={bad}")),
                (400, "INVALID_CURSOR".to_owned()),
                "{bad}"
            );
        }
        assert_eq!(
            code(&s.ods, &format!("cursor={}", change_cursor(&s.ods, 2))),
            (400, "CURSOR_AHEAD".to_owned())
        );
        for bad in ["limit=0", "limit=501", "limit=+5", "limit=x"] {
            assert_eq!(
                code(&s.ods, &format!("cursor={here}&{bad}")),
                (400, "INVALID_LIMIT".to_owned()),
                "{bad}"
            );
        }
    }

    #[test]
    fn cursors_before_the_changes_kept_have_expired() {
        let s = site();
        for _ in 0..crate::changes::KEPT + 2 {
            pulse(&s);
        }
        let reply = s.evolution.changes(
            &s.ods,
            Some(&format!("cursor={}", change_cursor(&s.ods, 1))),
        );
        assert_eq!(reply.status, 410);
        assert_eq!(json(&reply)["code"], "CURSOR_EXPIRED");
        let reply = s.evolution.changes(
            &s.ods,
            Some(&format!("cursor={}", change_cursor(&s.ods, 2))),
        );
        assert_eq!(reply.status, 200);
    }
}
