#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gateway's UK clock (`gp_fhir::date::is_bst_utc`, `is_bst_local`) against the tz
//! database's `Europe/London`, read through the `jiff` crate (a test oracle only, never
//! linked into the gateway): every hour of every day from 1968 to 2100, both directions.
//!
//! Hours are stepped by plain arithmetic (a running count of seconds, jiff's calendar for
//! the next day), so the test costs about two oracle look-ups an hour and stays quick in
//! a debug build.

use gp_fhir::date::{is_bst_local, is_bst_utc};
use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::{self, AmbiguousOffset, Offset, TimeZone};

const FIRST_YEAR: i16 = 1968;
const LAST_YEAR: i16 = 2100;

fn london() -> TimeZone {
    tz::db()
        .get("Europe/London")
        .expect("Europe/London is in jiff's bundled tz database")
}

fn bst() -> Offset {
    Offset::from_hours(1).unwrap()
}

/// Every day of the range, with the UTC second its midnight is.
fn days() -> impl Iterator<Item = (Date, i64)> {
    let first = date(FIRST_YEAR, 1, 1);
    let first_second = utc_midnight(first);
    let mut next = Some((first, first_second));
    std::iter::from_fn(move || {
        let (day, second) = next?;
        next = (day.year() < LAST_YEAR || day.month() < 12 || day.day() < 31)
            .then(|| (day.tomorrow().unwrap(), second + 86_400));
        Some((day, second))
    })
}

fn utc_midnight(day: Date) -> i64 {
    TimeZone::UTC
        .to_timestamp(day.at(0, 0, 0, 0))
        .unwrap()
        .as_second()
}

fn ymd(day: Date) -> (i32, u8, u8) {
    (
        i32::from(day.year()),
        day.month().unsigned_abs(),
        day.day().unsigned_abs(),
    )
}

#[test]
fn every_utc_hour_has_the_tz_database_offset() {
    let london = london();
    let mut mismatches = Vec::new();
    let mut hours = 0u32;
    for (day, midnight) in days() {
        if day.day() == 1 && day.month() == 1 {
            // The running count of seconds is still the oracle's own.
            assert_eq!(utc_midnight(day), midnight);
        }
        let (y, m, d) = ymd(day);
        for h in 0..24u8 {
            let instant = Timestamp::from_second(midnight + i64::from(h) * 3600).unwrap();
            let expected = london.to_offset(instant) == bst();
            if is_bst_utc(y, m, d, h) != expected {
                mismatches.push(format!(
                    "{y:04}-{m:02}-{d:02}T{h:02}Z: tz says BST={expected}"
                ));
            }
            hours += 1;
        }
    }
    assert!(hours > 1_150_000, "{hours} hours checked");
    assert!(
        mismatches.is_empty(),
        "{} UTC hours disagree with the tz database, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(12)]
    );
}

/// A UK wall-clock hour that never happened (the spring change) is read as BST, the
/// offset after the gap; one that happened twice (the autumn change) as its first, BST,
/// occurrence. Both are documented on `is_bst_local`; jiff offers both offsets and the
/// test checks the gateway picks the documented one of them.
#[test]
fn every_local_hour_has_the_tz_database_offset() {
    let london = london();
    let mut mismatches = Vec::new();
    let (mut gaps, mut folds) = (0u32, 0u32);
    for (day, _) in days() {
        let (y, m, d) = ymd(day);
        for h in 0..24u8 {
            let wall = day.at(h.cast_signed(), 0, 0, 0);
            let expected = match london.to_ambiguous_timestamp(wall).offset() {
                AmbiguousOffset::Unambiguous { offset } => offset == bst(),
                AmbiguousOffset::Gap { before, after } => {
                    assert_eq!((before, after), (Offset::UTC, bst()), "{wall}");
                    gaps += 1;
                    true
                }
                AmbiguousOffset::Fold { before, after } => {
                    assert_eq!((before, after), (bst(), Offset::UTC), "{wall}");
                    folds += 1;
                    true
                }
            };
            if is_bst_local(y, m, d, h) != expected {
                mismatches.push(format!("{wall} local: tz says BST={expected}"));
            }
        }
    }
    // One spring-forward and one fall-back a year, but for 1968 (no fall-back), 1969 and
    // 1970 (BST all year: British Standard Time) and 1971 (no spring-forward).
    let years = u32::from((LAST_YEAR - FIRST_YEAR + 1).unsigned_abs());
    assert_eq!((gaps, folds), (years - 3, years - 3));
    assert!(
        mismatches.is_empty(),
        "{} local hours disagree with the tz database, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(12)]
    );
}
