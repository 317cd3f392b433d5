//! "Changes since a cursor": what changed in a practice's records, so the gateway can
//! notify suppliers of changes made in the GP system itself (at the practice, or by
//! another route) without reading every record again.
//!
//! The gateway polls each practice it serves at `[notifications] poll_interval_ms`:
//! it asks [`Adapter::changes_since`](crate::Adapter::changes_since) with the cursor the
//! last page gave (kept in the audit database, so a restart resumes where it stopped),
//! and turns each change into an event for subscribed suppliers. The first call for a
//! practice has no cursor: answer an empty page whose cursor is the log's current end,
//! so a new gateway starts from now rather than replaying history.
//!
//! Changes the gateway itself made through the adapter (`by_practice: false`) are
//! reported too; the gateway already announced them from its own outbox, and skips
//! them. A cursor the system no longer honours (its log was trimmed) is
//! [`AdapterError::Unprocessable`](crate::AdapterError::Unprocessable): the gateway then
//! starts again from the current end, and says so in its logs and metrics.

use gp_fhir::{NhsNumber, OdsCode};

use crate::CallContext;

/// What happened to a patient's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A measured reading was recorded (one Observation).
    ReadingRecorded,
    /// A document was filed (one DocumentReference).
    DocumentFiled,
    AppointmentBooked,
    /// An appointment's description or comment changed.
    AppointmentAmended,
    AppointmentCancelled,
    /// Telephone, email, address or language changed (the Patient).
    ContactDetailsChanged,
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
        Self::ContactDetailsChanged,
        Self::Registered,
        Self::Deregistered,
    ];

    /// The FHIR resource type the change is to.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::ReadingRecorded => "Observation",
            Self::DocumentFiled => "DocumentReference",
            Self::AppointmentBooked | Self::AppointmentAmended | Self::AppointmentCancelled => {
                "Appointment"
            }
            Self::ContactDetailsChanged | Self::Registered | Self::Deregistered => "Patient",
        }
    }

    /// Stable name, as stored and reported: `reading-recorded`, `document-filed`, …
    pub fn code(self) -> &'static str {
        match self {
            Self::ReadingRecorded => "reading-recorded",
            Self::DocumentFiled => "document-filed",
            Self::AppointmentBooked => "appointment-booked",
            Self::AppointmentAmended => "appointment-amended",
            Self::AppointmentCancelled => "appointment-cancelled",
            Self::ContactDetailsChanged => "contact-details-changed",
            Self::Registered => "registered",
            Self::Deregistered => "deregistered",
        }
    }

    /// The kind a [`ChangeKind::code`] names.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One change to a patient's record at a practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    pub nhs_number: NhsNumber,
    pub kind: ChangeKind,
    /// The id of what changed, as this adapter's own methods answer it: for a reading,
    /// the Observation id [`Created::ids`](crate::Created) leads with (a blood pressure
    /// is one change, named by its panel); for a document, [`DocumentMeta::id`](crate::DocumentMeta);
    /// for an appointment, [`BookedAppointment::id`](crate::BookedAppointment). `None`
    /// for the Patient kinds (the patient is `nhs_number`).
    pub resource_id: Option<String>,
    /// When it was made, RFC 3339 UTC (`2026-12-07T10:15:00Z`).
    pub occurred: String,
    /// False when this gateway made it, through this adapter's own API identity (the
    /// gateway announced it from its outbox already); true for every other change: at
    /// the practice, or by another system's integration. A GP system that cannot tell
    /// its API clients apart reports every API change false, and changes other
    /// integrations make then go unannounced (the simulators have one API client: the
    /// gateway).
    pub by_practice: bool,
}

/// `changes_since` for one practice.
#[derive(Debug, Clone)]
pub struct ChangesRequest {
    pub practice: OdsCode,
    /// The cursor the last page answered; `None` on the first call (start from now).
    pub cursor: Option<String>,
    pub context: CallContext,
}

/// A page of changes, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    pub changes: Vec<RecordChange>,
    /// Where the next call starts: opaque to the gateway, stored as given (at most 256
    /// characters).
    pub cursor: String,
    /// True when more changes are waiting past this page (call again at once).
    pub more: bool,
}

/// A page of a change log whose changes are numbered 1, 2, 3… (as EMIS's, SystmOne's and
/// Vision's are), as a native answer gave it: what [`ChangesPage`] it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedChanges {
    /// The number of the practice's last change so far.
    pub latest: u64,
    /// The changes, oldest first, each with its number.
    pub changes: Vec<(u64, RecordChange)>,
}

impl NumberedChanges {
    /// The page for a call after change `after` (`None`: the log's end, no changes),
    /// its cursor made from a change number by `cursor`.
    pub fn page(self, after: Option<u64>, cursor: impl Fn(u64) -> String) -> ChangesPage {
        let Some(after) = after else {
            return ChangesPage {
                changes: Vec::new(),
                cursor: cursor(self.latest),
                more: false,
            };
        };
        let last = self.changes.last().map_or(after, |(n, _)| *n);
        ChangesPage {
            changes: self.changes.into_iter().map(|(_, c)| c).collect(),
            cursor: cursor(last),
            more: last < self.latest,
        }
    }
}

/// What is wrong with the shape of a numbered change log's page: the adapter names the
/// element at fault in its own native terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFault {
    /// Changes answered to a call asking only where the log stands.
    ChangesWithoutAfter,
    /// The latest number is below the one the changes were asked after.
    LatestBelowAfter,
    /// No change answered, yet the latest number says more were made.
    NoneWhileMore,
}

/// Checks a numbered page before its changes are read: `answered` changes for a call after
/// `after` (`None`: only where the log stands, asked with parameter `after_name`), the
/// latest change being `latest`.
pub fn check_page(
    after: Option<u64>,
    latest: u64,
    answered: usize,
    after_name: &str,
) -> Result<(), (PageFault, String)> {
    let Some(after) = after else {
        return match answered {
            0 => Ok(()),
            _ => Err((
                PageFault::ChangesWithoutAfter,
                format!("changes answered to a call without {after_name}"),
            )),
        };
    };
    if latest < after {
        return Err((
            PageFault::LatestBelowAfter,
            format!("{latest} is below change {after}, which the changes were asked after"),
        ));
    }
    if answered == 0 && latest > after {
        return Err((
            PageFault::NoneWhileMore,
            format!("none answered after change {after}, yet the latest is {latest}"),
        ));
    }
    Ok(())
}

/// Checks that the `i`th change (from 0) of a page after `after` carries number `seq`:
/// the numbers run on from `after` with no gap, and none is past `latest`.
pub fn check_number(after: u64, i: usize, seq: u64, latest: u64) -> Result<(), String> {
    let expected = after.saturating_add(1).saturating_add(i as u64);
    if seq != expected || seq > latest {
        return Err(format!(
            "{seq} is not {expected}, the next change after {after} (the latest is {latest})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numbered_page_is_checked_before_and_as_its_changes_are_read() {
        assert!(check_page(None, 9, 0, "After").is_ok());
        assert_eq!(
            check_page(None, 9, 1, "After").unwrap_err().0,
            PageFault::ChangesWithoutAfter
        );
        assert_eq!(
            check_page(Some(5), 4, 0, "After").unwrap_err().0,
            PageFault::LatestBelowAfter
        );
        assert_eq!(
            check_page(Some(5), 6, 0, "After").unwrap_err().0,
            PageFault::NoneWhileMore
        );
        assert!(check_page(Some(5), 5, 0, "After").is_ok());
        assert!(check_number(5, 0, 6, 9).is_ok());
        assert!(check_number(5, 1, 8, 9).is_err(), "a gap");
        assert!(check_number(5, 3, 9, 8).is_err(), "past the latest");
    }
}
