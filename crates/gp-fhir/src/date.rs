//! FHIR `date` / `dateTime` values at their stated precision, and the ranges that
//! `date` search parameters select.

use std::fmt;

/// A calendar date or partial date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`), the way FHIR and
/// GP systems record dates of uncertain precision. A dateTime's time part is ignored:
/// the gateway compares clinical dates at day precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartialDate {
    pub year: i32,
    pub month: Option<u8>,
    pub day: Option<u8>,
}

/// Why a date is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error(
        "'{0}' is not a FHIR date: expected YYYY, YYYY-MM or YYYY-MM-DD (optionally followed by a time)"
    )]
    Syntax(String),
    #[error("'{0}' is not a real calendar date")]
    Calendar(String),
}

/// Days in a month of a year.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl PartialDate {
    /// A full date.
    pub fn ymd(year: i32, month: u8, day: u8) -> Self {
        Self {
            year,
            month: Some(month),
            day: Some(day),
        }
    }

    /// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or a dateTime `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`.
    pub fn parse(s: &str) -> Result<Self, DateError> {
        let syntax = || DateError::Syntax(s.chars().take(40).collect());
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut parts = date.split('-');
        let year_s = parts.next().ok_or_else(syntax)?;
        if year_s.len() != 4 {
            return Err(syntax());
        }
        let year = digits(year_s).ok_or_else(syntax)? as i32;
        let month = match parts.next() {
            None => None,
            Some(m) if m.len() == 2 => Some(digits(m).ok_or_else(syntax)? as u8),
            Some(_) => return Err(syntax()),
        };
        let day = match parts.next() {
            None => None,
            Some(d) if d.len() == 2 => Some(digits(d).ok_or_else(syntax)? as u8),
            Some(_) => return Err(syntax()),
        };
        if parts.next().is_some() {
            return Err(syntax());
        }
        if let Some(t) = time
            && (day.is_none() || !valid_time(t))
        {
            return Err(syntax());
        }
        let calendar = || DateError::Calendar(s.chars().take(40).collect());
        if let Some(m) = month {
            if !(1..=12).contains(&m) {
                return Err(calendar());
            }
            if let Some(d) = day
                && (d == 0 || d > days_in_month(year, m))
            {
                return Err(calendar());
            }
        }
        Ok(Self { year, month, day })
    }

    /// The first day this (partial) date covers.
    pub fn first_day(&self) -> (i32, u8, u8) {
        (self.year, self.month.unwrap_or(1), self.day.unwrap_or(1))
    }

    /// The last day this (partial) date covers.
    pub fn last_day(&self) -> (i32, u8, u8) {
        let m = self.month.unwrap_or(12);
        (
            self.year,
            m,
            self.day.unwrap_or_else(|| days_in_month(self.year, m)),
        )
    }
}

/// A FHIR instant-precision `dateTime` (`YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`) as UTC
/// `(year, month, day, hour, minute, second)`, fractions of a second dropped. Anything
/// less precise, or without its zone, is refused: a measurement's time must be exact.
pub fn parse_instant_utc(s: &str) -> Result<(i32, u8, u8, u8, u8, u8), DateError> {
    let syntax = || DateError::Syntax(s.chars().take(40).collect());
    let date = PartialDate::parse(s)?;
    let (Some(month), Some(day)) = (date.month, date.day) else {
        return Err(syntax());
    };
    let t = s.split_once('T').map(|(_, t)| t).ok_or_else(syntax)?;
    let zone_at = t.find(['Z', '+', '-']).ok_or_else(syntax)?;
    let (clock, zone) = t.split_at(zone_at);
    let num = |a: usize, b: usize| clock.get(a..b).and_then(digits).ok_or_else(syntax);
    let (h, mi, sec) = (num(0, 2)?, num(3, 5)?, num(6, 8)?);
    let offset_minutes: i64 = match zone {
        "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hh = z.get(1..3).and_then(digits).ok_or_else(syntax)?;
            let mm = z.get(4..6).and_then(digits).ok_or_else(syntax)?;
            sign * i64::from(hh * 60 + mm)
        }
    };
    let month_t = time::Month::try_from(month).map_err(|_| syntax())?;
    let local = time::Date::from_calendar_date(date.year, month_t, day)
        .map_err(|_| syntax())?
        .with_hms(h as u8, mi as u8, sec as u8)
        .map_err(|_| syntax())?;
    let utc = local - time::Duration::minutes(offset_minutes);
    Ok((
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
    ))
}

// UK civil time: GMT, or British Summer Time (GMT+1). The dates of the changes are the
// UK's own history as the tz database records it for Europe/London, because GP records
// hold times of day from decades back (births, old consultations):
// - 1968-02-18 to 1971-10-31: GMT+1 all year round (the "British Standard Time" trial);
// - 1972-1980: third Sunday of March (Sunday on or after the 16th) to the Sunday on or
//   after 23 October, both at 02:00 GMT;
// - 1981-1995: last Sunday of March to the Sunday on or after 23 October (22 October
//   from 1990), both at 01:00 GMT;
// - since 1996 (EU rule): last Sunday of March to last Sunday of October, 01:00 GMT.
// Years before 1968 are outside the modelled range and get the current rule (the
// wartime and post-war changes were set year by year). tests/bst_oracle.rs checks every
// hour from 1968 to 2100 against the tz database.

/// Day of week, 0 = Sunday (Sakamoto).
fn weekday(y: i32, m: u8, d: u8) -> u8 {
    const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    let w = (y + y / 4 - y / 100 + y / 400 + T[usize::from(m - 1)] + i32::from(d)).rem_euclid(7);
    // rem_euclid(7) is 0..=6.
    u8::try_from(w).unwrap_or(0)
}

/// The day of the month of the last Sunday of month `m` of year `y`.
fn last_sunday(y: i32, m: u8) -> u8 {
    let last = days_in_month(y, m);
    last - weekday(y, m, last)
}

/// The day of the month of the first Sunday on or after day `d` of month `m`.
fn sunday_on_or_after(y: i32, m: u8, d: u8) -> u8 {
    d + (7 - weekday(y, m, d)) % 7
}

/// A moment of year `y` as `(month, day, hour)`, comparable as a tuple.
type MonthDayHour = (u8, u8, u8);

/// When BST begins and ends in year `y`, both as GMT `(month, day, hour)`. A year that
/// is BST from its start has a beginning before 1 January; one that is BST to its end,
/// an end after 31 December.
fn bst_span(y: i32) -> (MonthDayHour, MonthDayHour) {
    const FROM_NEW_YEAR: MonthDayHour = (0, 0, 0);
    const TO_NEXT_YEAR: MonthDayHour = (13, 0, 0);
    match y {
        1968 => ((2, 18, 2), TO_NEXT_YEAR),
        1969 | 1970 => (FROM_NEW_YEAR, TO_NEXT_YEAR),
        1971 => (FROM_NEW_YEAR, (10, 31, 2)),
        1972..=1980 => (
            (3, sunday_on_or_after(y, 3, 16), 2),
            (10, sunday_on_or_after(y, 10, 23), 2),
        ),
        1981..=1995 => {
            let october = if y < 1990 { 23 } else { 22 };
            (
                (3, last_sunday(y, 3), 1),
                (10, sunday_on_or_after(y, 10, october), 1),
            )
        }
        _ => ((3, last_sunday(y, 3), 1), (10, last_sunday(y, 10), 1)),
    }
}

/// True when UK local wall-clock time `y-m-d h:..` is British Summer Time. In the
/// skipped spring hour (the hour from the change's GMT hour, local) the time is read as
/// BST; in the repeated autumn hour as its first, BST, occurrence.
pub fn is_bst_local(y: i32, m: u8, d: u8, hour: u8) -> bool {
    let (begins, (end_m, end_d, end_h)) = bst_span(y);
    // Clocks go forward at the GMT hour `begins` (local = GMT before it), and back when
    // the BST clock reads one hour past the GMT hour of the end.
    (m, d, hour) >= begins && (m, d, hour) < (end_m, end_d, end_h + 1)
}

/// True when the UTC instant `y-m-d h:..` falls in British Summer Time.
pub fn is_bst_utc(y: i32, m: u8, d: u8, hour: u8) -> bool {
    let (begins, ends) = bst_span(y);
    (m, d, hour) >= begins && (m, d, hour) < ends
}

fn valid_time(t: &str) -> bool {
    // hh:mm:ss with optional fraction and a zone; precise enough to refuse junk. ASCII
    // only, checked first: the slices below are by byte, and a multi-byte character
    // across one of them would panic (found by the search_params fuzz target).
    let b = t.as_bytes();
    if !t.is_ascii() || b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (h, m, s) = (digits(&t[0..2]), digits(&t[3..5]), digits(&t[6..8]));
    if !matches!((h, m, s), (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60) {
        return false;
    }
    let mut rest = &t[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        "Z" | "" => true,
        z if z.len() == 6
            && (z.starts_with('+') || z.starts_with('-'))
            && z.as_bytes()[3] == b':' =>
        {
            digits(&z[1..3]).is_some_and(|h| h <= 14) && digits(&z[4..6]).is_some_and(|m| m < 60)
        }
        _ => false,
    }
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
            if let Some(d) = self.day {
                write!(f, "-{d:02}")?;
            }
        }
        Ok(())
    }
}

/// An inclusive range of days selected by one or more `date` search parameters.
/// `None` on a side means unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<(i32, u8, u8)>,
    pub to: Option<(i32, u8, u8)>,
}

impl DateRange {
    /// True when the range selects nothing at all (e.g. `ge2024` and `le2020`).
    pub fn is_empty(&self) -> bool {
        matches!((self.from, self.to), (Some(f), Some(t)) if f > t)
    }

    /// True when no bound is set.
    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Narrows the lower bound.
    pub fn at_least(&mut self, day: (i32, u8, u8)) {
        self.from = Some(self.from.map_or(day, |f| f.max(day)));
    }

    /// Narrows the upper bound.
    pub fn at_most(&mut self, day: (i32, u8, u8)) {
        self.to = Some(self.to.map_or(day, |t| t.min(day)));
    }

    /// Whether a recorded (possibly partial) date overlaps the range. An entry with
    /// no date matches only an unbounded range.
    pub fn contains(&self, recorded: Option<&str>) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some(date) = recorded.and_then(|s| PartialDate::parse(s).ok()) else {
            return false;
        };
        let (first, last) = (date.first_day(), date.last_day());
        self.from.is_none_or(|f| last >= f) && self.to.is_none_or(|t| first <= t)
    }
}

/// The previous calendar day.
pub fn day_before((y, m, d): (i32, u8, u8)) -> (i32, u8, u8) {
    if d > 1 {
        (y, m, d - 1)
    } else if m > 1 {
        (y, m - 1, days_in_month(y, m - 1))
    } else {
        (y - 1, 12, 31)
    }
}

/// The next calendar day.
pub fn day_after((y, m, d): (i32, u8, u8)) -> (i32, u8, u8) {
    if d < days_in_month(y, m) {
        (y, m, d + 1)
    } else if m < 12 {
        (y, m + 1, 1)
    } else {
        (y + 1, 1, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/regressions/search_params/multibyte-in-seconds: a two-byte character where
    /// the seconds end used to panic on a byte slice instead of being refused.
    #[test]
    fn a_multibyte_character_in_a_time_is_refused_not_a_panic() {
        for t in [
            "2026-11-01T10:00:0\u{565}",
            "2026-11-01T10:0\u{e9}:00Z",
            "2026-11-01T10:00:00+0\u{e9}:00",
        ] {
            assert!(PartialDate::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn last_sundays() {
        // 2024: BST from Sunday 31 March 01:00 GMT to Sunday 27 October 01:00 GMT.
        assert_eq!(last_sunday(2024, 3), 31);
        assert_eq!(last_sunday(2024, 10), 27);
        assert_eq!(last_sunday(2023, 3), 26);
        assert_eq!(last_sunday(2023, 10), 29);
        // 1975: from Sunday 16 March to Sunday 26 October (tz database, Europe/London).
        assert_eq!(sunday_on_or_after(1975, 3, 16), 16);
        assert_eq!(sunday_on_or_after(1975, 10, 23), 26);
    }

    #[test]
    fn bst_follows_the_last_sunday_rules() {
        assert!(!is_bst_local(2024, 3, 31, 0));
        assert!(is_bst_local(2024, 3, 31, 2));
        assert!(!is_bst_local(2024, 3, 30, 23));
        assert!(is_bst_local(2024, 7, 1, 12));
        assert!(is_bst_local(2024, 10, 27, 0));
        assert!(is_bst_local(2024, 10, 27, 1));
        assert!(!is_bst_local(2024, 10, 27, 2));
        assert!(!is_bst_local(2024, 1, 15, 10));
        assert!(!is_bst_local(2024, 11, 1, 10));
        // The changes happen at 01:00 UTC.
        assert!(!is_bst_utc(2024, 3, 31, 0));
        assert!(is_bst_utc(2024, 3, 31, 1));
        assert!(is_bst_utc(2024, 10, 27, 0));
        assert!(!is_bst_utc(2024, 10, 27, 1));
    }

    #[test]
    fn instants_normalise_to_utc() {
        assert_eq!(
            parse_instant_utc("2026-07-14T08:32:05+01:00"),
            Ok((2026, 7, 14, 7, 32, 5))
        );
        assert_eq!(
            parse_instant_utc("2026-01-01T00:10:00.250+01:00"),
            Ok((2025, 12, 31, 23, 10, 0))
        );
        assert_eq!(
            parse_instant_utc("2026-03-01T23:30:00-01:00"),
            Ok((2026, 3, 2, 0, 30, 0))
        );
        assert_eq!(
            parse_instant_utc("2026-07-14T07:32:05Z"),
            Ok((2026, 7, 14, 7, 32, 5))
        );
        for bad in [
            "2026-07-14",
            "2026-07-14T07:32:05",
            "2026-07",
            "2026-02-30T10:00:00Z",
            "2026-07-14T25:00:00Z",
        ] {
            assert!(parse_instant_utc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_each_precision_and_refuses_impossible_dates() {
        assert_eq!(PartialDate::parse("2024").unwrap().to_string(), "2024");
        assert_eq!(
            PartialDate::parse("2024-02").unwrap().last_day(),
            (2024, 2, 29)
        );
        assert_eq!(
            PartialDate::parse("2023-02").unwrap().last_day(),
            (2023, 2, 28)
        );
        assert_eq!(
            PartialDate::parse("2024-02-29T10:15:00+01:00").unwrap(),
            PartialDate::ymd(2024, 2, 29)
        );
        assert!(matches!(
            PartialDate::parse("2023-02-29"),
            Err(DateError::Calendar(_))
        ));
        assert!(matches!(
            PartialDate::parse("2023-13"),
            Err(DateError::Calendar(_))
        ));
        for bad in [
            "",
            "24",
            "2024-1-01",
            "2024/01/01",
            "2024-01-01T25:00:00Z",
            "2024-01T10:00:00Z",
            "abcd",
        ] {
            assert!(
                matches!(PartialDate::parse(bad), Err(DateError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ranges_overlap_partial_dates() {
        let mut r = DateRange::default();
        r.at_least((2020, 1, 1));
        r.at_most((2020, 12, 31));
        assert!(r.contains(Some("2020-06-01")));
        assert!(r.contains(Some("2020")));
        assert!(!r.contains(Some("2019-12-31T23:59:59Z")));
        assert!(!r.contains(None));
        assert!(DateRange::default().contains(None));
        assert_eq!(day_before((2024, 3, 1)), (2024, 2, 29));
        assert_eq!(day_after((2023, 12, 31)), (2024, 1, 1));
    }
}
