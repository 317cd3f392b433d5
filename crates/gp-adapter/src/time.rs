//! UK civil time: which instants fall in British Summer Time and how a GP system's
//! timestamps become FHIR dateTimes with their offset. One rule for every adapter, so
//! the same moment recorded in any GP system gives the same FHIR.
//!
//! BST runs from 01:00 GMT on the last Sunday of March to 01:00 GMT on the last Sunday
//! of October.

pub use gp_fhir::date::{is_bst_local, is_bst_utc};

/// A UK local wall-clock date-time as a FHIR dateTime with its offset (`+00:00` GMT,
/// `+01:00` BST), per [`is_bst_local`].
pub fn local_date_time(y: i32, m: u8, d: u8, (h, mi, s): (u8, u8, u8)) -> String {
    let offset = if is_bst_local(y, m, d, h) {
        "+01:00"
    } else {
        "+00:00"
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{offset}")
}

/// A UTC instant as UK local time with its offset, the form every adapter answers
/// (`2024-06-12T08:40:00Z` → `2024-06-12T09:40:00+01:00`).
pub fn uk_local_from_utc(y: i32, m: u8, d: u8, h: u8, mi: u8, s: u8) -> String {
    let utc = crate::write::UtcDateTime {
        year: y,
        month: m,
        day: d,
        hour: h,
        minute: mi,
        second: s,
    };
    let offset = if is_bst_utc(y, m, d, h) {
        "+01:00"
    } else {
        "+00:00"
    };
    let l = utc.uk_local();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
        l.year, l.month, l.day, l.hour, l.minute, l.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_carry_their_offset() {
        assert_eq!(
            local_date_time(2024, 6, 12, (9, 40, 0)),
            "2024-06-12T09:40:00+01:00"
        );
        assert_eq!(
            local_date_time(2024, 1, 12, (9, 40, 0)),
            "2024-01-12T09:40:00+00:00"
        );
    }

    #[test]
    fn utc_becomes_uk_local() {
        assert_eq!(
            uk_local_from_utc(2024, 1, 12, 9, 40, 0),
            "2024-01-12T09:40:00+00:00"
        );
        assert_eq!(
            uk_local_from_utc(2024, 6, 12, 8, 40, 0),
            "2024-06-12T09:40:00+01:00"
        );
        // Late evening UTC in summer is the next day in the UK.
        assert_eq!(
            uk_local_from_utc(2024, 6, 30, 23, 30, 0),
            "2024-07-01T00:30:00+01:00"
        );
    }
}
