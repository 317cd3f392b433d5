//! UK civil time: which instants fall in British Summer Time and how a GP system's
//! timestamps become FHIR dateTimes with their offset. One rule for every adapter, so
//! the same moment recorded in any GP system gives the same FHIR.
//!
//! BST runs from 01:00 GMT on the last Sunday of March to 01:00 GMT on the last Sunday
//! of October since 1996; earlier years (from 1968) follow the UK's dates of the time.
//! The rules live in [`gp_fhir::date`], checked hour by hour against the tz database.

pub use gp_fhir::date::{is_bst_local, is_bst_utc};

/// A UK local wall-clock date-time as a FHIR dateTime with its offset (`+00:00` GMT,
/// `+01:00` BST), per [`is_bst_local`].
pub fn local_date_time(y: i32, m: u8, d: u8, (h, mi, s): (u8, u8, u8)) -> String {
    let offset = if is_bst_local(y, m, d, h) {
        "+01:00"
    } else {
        "+00:00"
    };
    date_time_string(y, m, d, (h, mi, s), offset)
}

// Mapping formats a date for nearly every clinical entry; these write the fixed-width
// digits directly instead of going through `format!` (a measurable share of a
// 1,000-entry record's mapping). Output is identical to `{:04}`/`{:02}` formatting.

/// Appends `v` zero-padded to `width` characters, exactly as `format!("{v:0width$}")`.
fn push_padded(out: &mut String, v: i32, mut width: u32) {
    if v < 0 {
        // As `{:04}`: the sign counts towards the width.
        out.push('-');
        width = width.saturating_sub(1);
    }
    let v = v.unsigned_abs();
    let mut digits = 1u32;
    while digits < 10 && v >= 10u32.pow(digits) {
        digits += 1;
    }
    for _ in digits..width {
        out.push('0');
    }
    for i in (0..digits).rev() {
        let digit = (v / 10u32.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// A FHIR year, `YYYY`.
pub fn fhir_year(y: i32) -> String {
    let mut out = String::with_capacity(4);
    push_padded(&mut out, y, 4);
    out
}

/// A FHIR year and month, `YYYY-MM`.
pub fn fhir_year_month(y: i32, m: u8) -> String {
    let mut out = String::with_capacity(7);
    push_padded(&mut out, y, 4);
    out.push('-');
    push_padded(&mut out, i32::from(m), 2);
    out
}

/// A FHIR date, `YYYY-MM-DD`.
pub fn fhir_date(y: i32, m: u8, d: u8) -> String {
    let mut out = String::with_capacity(10);
    push_date(&mut out, y, m, d);
    out
}

fn push_date(out: &mut String, y: i32, m: u8, d: u8) {
    push_padded(out, y, 4);
    out.push('-');
    push_padded(out, i32::from(m), 2);
    out.push('-');
    push_padded(out, i32::from(d), 2);
}

/// `YYYY-MM-DDThh:mm:ss{offset}`.
fn date_time_string(y: i32, m: u8, d: u8, (h, mi, s): (u8, u8, u8), offset: &str) -> String {
    let mut out = String::with_capacity(25);
    push_date(&mut out, y, m, d);
    out.push('T');
    push_padded(&mut out, i32::from(h), 2);
    out.push(':');
    push_padded(&mut out, i32::from(mi), 2);
    out.push(':');
    push_padded(&mut out, i32::from(s), 2);
    out.push_str(offset);
    out
}

/// A UTC instant as UK local time with its offset, the form every adapter answers
/// (`2024-06-12T08:40:00Z` → `2024-06-12T09:40:00+01:00`).
pub fn uk_local_from_utc(y: i32, m: u8, d: u8, h: u8, mi: u8, s: u8) -> String {
    let utc = UtcDateTime {
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
    date_time_string(l.year, l.month, l.day, (l.hour, l.minute, l.second), offset)
}

/// A UTC instant, second precision (the form every native write is derived from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UtcDateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl UtcDateTime {
    /// The instant as UK local wall-clock time (GMT or BST), for systems that record local time.
    pub fn uk_local(self) -> UtcDateTime {
        let (year, month, day, hour) = if is_bst_utc(self.year, self.month, self.day, self.hour) {
            if self.hour == 23 {
                let (y, m, d) = gp_fhir::date::day_after((self.year, self.month, self.day));
                (y, m, d, 0)
            } else {
                (self.year, self.month, self.day, self.hour + 1)
            }
        } else {
            (self.year, self.month, self.day, self.hour)
        };
        UtcDateTime {
            year,
            month,
            day,
            hour,
            ..self
        }
    }

    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub fn to_rfc3339(self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
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
    fn fixed_width_formatting_matches_format() {
        for y in [
            0, 1, 9, 10, 99, 100, 999, 1000, 2024, 9999, 10000, 123_456, -1, -42,
        ] {
            assert_eq!(fhir_year(y), format!("{y:04}"));
            for m in [0u8, 1, 9, 10, 12, 99, 255] {
                assert_eq!(fhir_year_month(y, m), format!("{y:04}-{m:02}"));
                for d in [0u8, 1, 31, 100] {
                    assert_eq!(fhir_date(y, m, d), format!("{y:04}-{m:02}-{d:02}"));
                }
            }
        }
        assert_eq!(
            date_time_string(7, 3, 4, (0, 5, 59), "+00:00"),
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
                7, 3, 4, 0, 5, 59
            )
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
