//! Vision's change log: a practice's changes as a change extract (pipe-delimited, UK
//! local date-times, the ids Vision gives entries elsewhere: journal `ID`s, `DOC_ID`s
//! and `APPT_ID`s), read on from a `SEQ`, with the log's last `SEQ` in a response
//! header, over the practice's log in [`crate::SimStore`]. `docs/native-formats/vision.md`,
//! "Changes".

use crate::appointments;
use crate::changes::{ChangeKind, ChangesError, SimChange};
use crate::model::SystemKind;
use crate::server::Reply;

use super::book::query_param;
use super::{Writer, error, ok, timestamp};

/// Change extract columns, in the order the simulator writes them.
pub const CHANGE_COLUMNS: [&str; 6] = [
    "SEQ",
    "CHANGED",
    "NHS_NUMBER",
    "CHANGE_TYPE",
    "ENTRY_ID",
    "SOURCE",
];
/// Response header of every change extract: the `SEQ` of the last change made at the
/// practice so far (`0`: none yet).
pub const LAST_SEQ_HEADER: &str = "x-vision-last-seq";
/// Most rows one change extract carries, and how many it carries when `rows` is not given.
pub const MAX_CHANGE_ROWS: usize = 500;

/// Vision's `CHANGE_TYPE` of each kind of change.
pub fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::ReadingRecorded => "OBSERVATION_RECORDED",
        ChangeKind::DocumentFiled => "DOCUMENT_FILED",
        ChangeKind::AppointmentBooked => "APPOINTMENT_BOOKED",
        ChangeKind::AppointmentAmended => "APPOINTMENT_AMENDED",
        ChangeKind::AppointmentCancelled => "APPOINTMENT_CANCELLED",
        ChangeKind::ContactChanged => "CONTACT_UPDATED",
        ChangeKind::Registered => "REGISTERED",
        ChangeKind::Deregistered => "DEREGISTERED",
    }
}

/// One change as a change extract row: the entry by the number Vision gives documents
/// and appointments, else by its journal `ID`; times UK local.
fn row(c: &SimChange) -> Vec<String> {
    let entry = match (c.entry_number, &c.entry) {
        (Some(n), _) => n.to_string(),
        (None, Some(id)) => id.clone(),
        (None, None) => String::new(),
    };
    vec![
        c.seq.to_string(),
        timestamp(appointments::local_date_time(c.at)),
        c.nhs.clone(),
        change_type(c.kind).to_owned(),
        entry,
        if c.by_practice { "PRACTICE" } else { "API" }.to_owned(),
    ]
}

/// The log's refusals as Vision's error lines.
fn changes_error(e: &ChangesError) -> Reply {
    match e {
        ChangesError::PracticeNotFound(ods) => error(
            404,
            "PRACTICE_NOT_FOUND",
            &format!("No Vision practice with ODS code {ods}"),
        ),
        ChangesError::Expired { after, oldest } => error(
            410,
            "CHANGES_EXPIRED",
            &format!(
                "Changes after SEQ {after} are no longer kept (the oldest kept is SEQ {oldest}); read the records again"
            ),
        ),
        ChangesError::Ahead(after) => error(
            400,
            "SEQ_AHEAD",
            &format!("No change SEQ {after} has been made at this practice yet"),
        ),
    }
}

/// A query value of 1 to 18 digits.
fn number(raw: &str) -> Option<u64> {
    ((1..=18).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()))
        .then(|| raw.parse().ok())
        .flatten()
}

impl super::Vision {
    /// `GET …/changes[?after={SEQ}[&rows={n}]]`: the change extract of the changes after
    /// `after`, oldest first (without `after`: no rows, the log's end in the header).
    pub(super) fn changes(
        &self,
        ods: &str,
        query: Option<&str>,
    ) -> (Reply, Vec<(&'static str, String)>) {
        let refused = |reply| (reply, Vec::new());
        if let Err(e) = self.vision_practice(ods) {
            return refused(e);
        }
        let rows = match query_param(query, "rows") {
            None => MAX_CHANGE_ROWS,
            Some(raw) => match number(raw)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_CHANGE_ROWS).contains(n))
            {
                Some(n) => n,
                None => {
                    return refused(error(
                        400,
                        "INVALID_ROWS",
                        &format!("rows must be 1 to {MAX_CHANGE_ROWS}"),
                    ));
                }
            },
        };
        let page = match query_param(query, "after") {
            None => self
                .store
                .latest_change(SystemKind::Vision, ods)
                .map(|latest| (Vec::new(), latest)),
            Some(raw) => {
                let Some(after) = number(raw) else {
                    return refused(error(
                        400,
                        "INVALID_SEQ",
                        "after must be a SEQ: 1 to 18 digits",
                    ));
                };
                self.store
                    .changes_since(SystemKind::Vision, ods, after, rows)
                    .map(|p| (p.changes, p.latest))
            }
        };
        let (changes, latest) = match page {
            Ok(p) => p,
            Err(e) => return refused(changes_error(&e)),
        };
        let mut w = Writer::new(&CHANGE_COLUMNS);
        for c in &changes {
            w.row(&row(c));
        }
        (ok(w.finish()), vec![(LAST_SEQ_HEADER, latest.to_string())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimStore;

    struct Site {
        vision: super::super::Vision,
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
                .find(|p| p.system == SystemKind::Vision)
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
            vision: super::super::Vision {
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
            .record_reading_at_practice(SystemKind::Vision, &s.ods, &s.nhs, concept, 72.0)
            .unwrap()
    }

    fn text(reply: &Reply) -> &str {
        std::str::from_utf8(&reply.body).unwrap()
    }

    #[test]
    fn changes_are_rows_after_a_seq_with_the_last_seq_in_a_header() {
        let s = site();
        let (end, headers) = s.vision.changes(&s.ods, None);
        assert_eq!(end.status, 200);
        assert_eq!(
            text(&end),
            "SEQ|CHANGED|NHS_NUMBER|CHANGE_TYPE|ENTRY_ID|SOURCE\r\nEOF|0\r\n"
        );
        assert_eq!(headers, [(LAST_SEQ_HEADER, "0".to_owned())]);
        let first = pulse(&s);
        pulse(&s);
        pulse(&s);
        let (page, headers) = s.vision.changes(&s.ods, Some("after=0&rows=2"));
        assert_eq!(page.status, 200, "{}", text(&page));
        assert_eq!(headers, [(LAST_SEQ_HEADER, "3".to_owned())]);
        let body = text(&page);
        let lines: Vec<&str> = body.split("\r\n").collect();
        assert_eq!(lines.len(), 5, "{body}");
        let one: Vec<&str> = lines[1].split('|').collect();
        assert_eq!(one[0], "1");
        assert_eq!(one[1].len(), 14, "local YYYYMMDDHHMMSS: {}", one[1]);
        assert_eq!(
            one[2..],
            [&*s.nhs, "OBSERVATION_RECORDED", &*first, "PRACTICE"]
        );
        assert!(lines[2].starts_with("2|"));
        assert_eq!(lines[3], "EOF|2");
        let (rest, _) = s.vision.changes(&s.ods, Some("after=2"));
        assert!(text(&rest).contains("\r\n3|"), "{}", text(&rest));
        // Appointments and documents are named by their Vision numbers.
        let booking = s
            .store
            .practice_booking(SystemKind::Vision, &s.ods, appointments::now());
        if let Some(booking) = booking {
            s.store
                .change_appointment_at_practice(
                    SystemKind::Vision,
                    &s.ods,
                    &booking.id,
                    appointments::Change::Cancel {
                        reason: "Clinic closed".into(),
                    },
                )
                .unwrap();
            let (last, _) = s.vision.changes(&s.ods, Some("after=3"));
            assert!(
                text(&last).contains(&format!(
                    "|APPOINTMENT_CANCELLED|{}|PRACTICE\r\n",
                    booking.number
                )),
                "{}",
                text(&last)
            );
        }
    }

    #[test]
    fn refusals_are_vision_error_lines() {
        let s = site();
        pulse(&s);
        let refused = |ods: &str, query: &str| {
            let (reply, headers) = s.vision.changes(ods, Some(query));
            assert!(headers.is_empty());
            (reply.status, text(&reply).to_owned())
        };
        let (status, body) = refused("Y99999", "after=0");
        assert_eq!(status, 404);
        assert!(body.starts_with("ERROR|PRACTICE_NOT_FOUND|"), "{body}");
        let (status, body) = refused(&s.ods, "after=2");
        assert_eq!(status, 400);
        assert_eq!(
            body,
            "ERROR|SEQ_AHEAD|No change SEQ 2 has been made at this practice yet\r\n"
        );
        for bad in ["after=-1", "after=x", "after=", "after=1234567890123456789"] {
            let (status, body) = refused(&s.ods, bad);
            assert_eq!(status, 400, "{bad}");
            assert!(body.starts_with("ERROR|INVALID_SEQ|"), "{bad}: {body}");
        }
        for bad in ["rows=0", "rows=501", "rows=ten"] {
            let (status, body) = refused(&s.ods, &format!("after=0&{bad}"));
            assert_eq!(status, 400, "{bad}");
            assert!(body.starts_with("ERROR|INVALID_ROWS|"), "{bad}: {body}");
        }
    }

    #[test]
    fn changes_no_longer_kept_are_gone() {
        let s = site();
        for _ in 0..crate::changes::KEPT + 2 {
            pulse(&s);
        }
        let (reply, _) = s.vision.changes(&s.ods, Some("after=1"));
        assert_eq!(reply.status, 410);
        assert_eq!(
            text(&reply),
            "ERROR|CHANGES_EXPIRED|Changes after SEQ 1 are no longer kept (the oldest kept is SEQ 3); read the records again\r\n"
        );
        let (reply, headers) = s.vision.changes(&s.ods, Some("after=2&rows=1"));
        assert_eq!(reply.status, 200);
        assert!(text(&reply).starts_with("SEQ|"));
        assert_eq!(
            headers,
            [(LAST_SEQ_HEADER, (crate::changes::KEPT + 2).to_string())]
        );
    }
}
