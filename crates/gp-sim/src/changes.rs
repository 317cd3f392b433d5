//! The GP systems' change logs: every change made to a practice's records, in the order
//! it was made, numbered per practice. Each simulator serves its practices' log in its
//! own native style (see `docs/native-formats/`), so a gateway can learn of changes made
//! at the practice without reading every record again.
//!
//! A change names the patient, what happened and the entry it happened to (by the
//! system's own id), and whether the practice made it or a third party through the
//! system's API. Logs keep the last [`KEPT`] changes of each practice; a reader asking
//! for changes after one no longer kept is told so ([`ChangesError::Expired`]) rather
//! than silently missing some.

use std::collections::HashMap;

use crate::appointments::Instant;

/// Changes kept per practice.
pub const KEPT: usize = 20_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A measured reading (one entry) was recorded.
    ReadingRecorded,
    /// A document was filed in the record.
    DocumentFiled,
    AppointmentBooked,
    /// Its description or comment changed.
    AppointmentAmended,
    AppointmentCancelled,
    /// Telephone, email, address or language changed.
    ContactChanged,
    /// The patient registered at the practice.
    Registered,
    /// The patient left the practice.
    Deregistered,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 8] = [
        Self::ReadingRecorded,
        Self::DocumentFiled,
        Self::AppointmentBooked,
        Self::AppointmentAmended,
        Self::AppointmentCancelled,
        Self::ContactChanged,
        Self::Registered,
        Self::Deregistered,
    ];
}

/// One change to a practice's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimChange {
    /// Its number in the practice's log: 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// When it was made (seconds since the Unix epoch, UTC).
    pub at: Instant,
    /// The patient's NHS number.
    pub nhs: String,
    pub kind: ChangeKind,
    /// The GUID of the entry changed (an observation, document or appointment);
    /// `None` for demographics and registration.
    pub entry: Option<String>,
    /// The entry's number within the practice, for systems that number documents and
    /// appointments (SystmOne, Vision); `None` for observations.
    pub entry_number: Option<u64>,
    /// True when made at the practice; false when a third party made it through the API.
    pub by_practice: bool,
}

/// Why a log cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangesError {
    #[error("no practice with ODS code {0} on this system")]
    PracticeNotFound(String),
    /// The changes after `after` are no longer all kept: read the records again.
    #[error(
        "changes after {after} are no longer kept (the oldest kept is {oldest}); read the records again"
    )]
    Expired { after: u64, oldest: u64 },
    /// `after` is beyond the log's end.
    #[error("no change {0} has been made yet")]
    Ahead(u64),
}

/// A page of a practice's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    pub changes: Vec<SimChange>,
    /// The number of the last change made at the practice so far.
    pub latest: u64,
}

/// Every practice's log.
#[derive(Debug, Default)]
pub struct ChangeLogs {
    logs: HashMap<String, PracticeLog>,
}

#[derive(Debug, Default)]
struct PracticeLog {
    changes: std::collections::VecDeque<SimChange>,
    latest: u64,
}

impl ChangeLogs {
    /// Records a change at practice `ods`, now.
    pub fn record(
        &mut self,
        ods: &str,
        nhs: &str,
        kind: ChangeKind,
        entry: Option<(String, Option<u64>)>,
        by_practice: bool,
    ) -> u64 {
        let (entry, entry_number) = entry.map_or((None, None), |(id, n)| (Some(id), n));
        let log = self.logs.entry(ods.to_owned()).or_default();
        log.latest += 1;
        log.changes.push_back(SimChange {
            seq: log.latest,
            at: crate::appointments::now(),
            nhs: nhs.to_owned(),
            kind,
            entry,
            entry_number,
            by_practice,
        });
        while log.changes.len() > KEPT {
            log.changes.pop_front();
        }
        log.latest
    }

    /// Up to `limit` changes at practice `ods` after number `after` (0: from the
    /// start), oldest first.
    pub fn since(&self, ods: &str, after: u64, limit: usize) -> Result<ChangesPage, ChangesError> {
        let Some(log) = self.logs.get(ods) else {
            return match after {
                0 => Ok(ChangesPage {
                    changes: Vec::new(),
                    latest: 0,
                }),
                n => Err(ChangesError::Ahead(n)),
            };
        };
        if after > log.latest {
            return Err(ChangesError::Ahead(after));
        }
        let oldest = log.changes.front().map_or(log.latest + 1, |c| c.seq);
        if after + 1 < oldest {
            return Err(ChangesError::Expired { after, oldest });
        }
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        Ok(ChangesPage {
            changes: log.changes.iter().skip(skip).take(limit).cloned().collect(),
            latest: log.latest,
        })
    }

    /// The number of the last change at practice `ods` (0: none yet).
    pub fn latest(&self, ods: &str) -> u64 {
        self.logs.get(ods).map_or(0, |l| l.latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_back_in_order_after_a_number_and_expire_when_no_longer_kept() {
        let mut logs = ChangeLogs::default();
        assert_eq!(logs.since("A1", 0, 10).unwrap().latest, 0);
        assert_eq!(logs.since("A1", 3, 10), Err(ChangesError::Ahead(3)));
        for n in 0..KEPT + 5 {
            let kind = ChangeKind::ALL[n % ChangeKind::ALL.len()];
            logs.record(
                "A1",
                "9000000009",
                kind,
                Some((format!("e{n}"), None)),
                n % 2 == 0,
            );
        }
        logs.record("B2", "9000000017", ChangeKind::Registered, None, true);
        // Changes 1 to 5 are no longer kept: reading on after 4 would miss change 5.
        let page = logs.since("A1", 4, 3).unwrap_err();
        assert_eq!(
            page,
            ChangesError::Expired {
                after: 4,
                oldest: 6
            }
        );
        let page = logs.since("A1", 5, 3).unwrap();
        let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [6, 7, 8]);
        assert_eq!(page.latest, KEPT as u64 + 5);
        assert_eq!(page.changes[0].entry.as_deref(), Some("e5"));
        let end = logs.since("A1", KEPT as u64 + 5, 3).unwrap();
        assert!(end.changes.is_empty());
        assert_eq!(logs.latest("B2"), 1, "each practice numbers its own");
    }
}
