//! Partial dates as GP systems record them: a year, maybe a month, maybe a day,
//! maybe a time of day. No time zones: GP systems record local UK time.

use std::fmt;

use serde::{Serialize, Serializer};

/// How much of a [`SimDate`] is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Precision {
    /// Year only.
    Y,
    /// Year and month.
    YM,
    /// Full date.
    YMD,
    /// Full date and time of day.
    YMDT,
}

/// A date of the given precision; fields beyond the precision are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SimDate {
    /// Calendar year.
    pub year: i32,
    /// 1..=12.
    pub month: Option<u8>,
    /// 1..=31; only with a month.
    pub day: Option<u8>,
    /// `(hour, minute, second)`; only with a day.
    pub time: Option<(u8, u8, u8)>,
}

impl SimDate {
    /// A full date. Out-of-range parts are the caller's bug; they are not normalised.
    pub const fn ymd(year: i32, month: u8, day: u8) -> Self {
        Self {
            year,
            month: Some(month),
            day: Some(day),
            time: None,
        }
    }

    /// The precision implied by which parts are present.
    pub fn precision(&self) -> Precision {
        match (self.month, self.day, self.time) {
            (None, _, _) => Precision::Y,
            (Some(_), None, _) => Precision::YM,
            (Some(_), Some(_), None) => Precision::YMD,
            (Some(_), Some(_), Some(_)) => Precision::YMDT,
        }
    }

    /// Days since 1970-01-01 of the earliest day this date can denote.
    pub fn days(&self) -> i64 {
        days_from_civil(self.year, self.month.unwrap_or(1), self.day.unwrap_or(1))
    }

    /// The full date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Self {
        let (y, m, d) = civil_from_days(days);
        Self::ymd(y, m, d)
    }

    /// The same day with a time of day.
    pub fn at(self, hour: u8, minute: u8, second: u8) -> Self {
        Self {
            time: Some((hour, minute, second)),
            ..self
        }
    }

    /// This date cut down to `precision` (never adds parts).
    pub fn truncate(self, precision: Precision) -> Self {
        match precision {
            Precision::Y => Self {
                month: None,
                day: None,
                time: None,
                ..self
            },
            Precision::YM => Self {
                day: None,
                time: None,
                ..self
            },
            Precision::YMD => Self { time: None, ..self },
            Precision::YMDT => self,
        }
    }

    /// A date-time `seconds` later (a date without a time is taken at midnight).
    pub fn plus_seconds(self, seconds: i64) -> Self {
        let (h, mi, s) = self.time.unwrap_or((0, 0, 0));
        let total = self.days() * 86_400
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(s)
            + seconds;
        let (days, secs) = (total.div_euclid(86_400), total.rem_euclid(86_400));
        // secs is 0..86_400, so each part fits a u8.
        let part = |v: i64| u8::try_from(v).unwrap_or(0);
        Self::from_days(days).at(part(secs / 3600), part(secs % 3600 / 60), part(secs % 60))
    }

    /// Whole years from `self` (a birth date) to `on`.
    pub fn age_on(&self, on: &SimDate) -> i32 {
        let mut age = on.year - self.year;
        let before = (on.month.unwrap_or(1), on.day.unwrap_or(1))
            < (self.month.unwrap_or(1), self.day.unwrap_or(1));
        if before {
            age -= 1;
        }
        age
    }
}

/// ISO 8601 at the date's precision: `1998`, `1998-03`, `1998-03-02`, `1998-03-02T09:40:00`.
impl fmt::Display for SimDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
            if let Some(d) = self.day {
                write!(f, "-{d:02}")?;
                if let Some((h, mi, s)) = self.time {
                    write!(f, "T{h:02}:{mi:02}:{s:02}")?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for SimDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Days in `month` (1..=12) of `year`, proleptic Gregorian: the gap between the first of
/// the month and the first of the next. 0 for a month outside 1..=12.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    if !(1..=12).contains(&month) {
        return 0;
    }
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let days = days_from_civil(next_year, next_month, 1) - days_from_civil(year, month, 1);
    // 28..=31.
    u8::try_from(days).unwrap_or(0)
}

// Howard Hinnant's civil-calendar algorithms: exact integer arithmetic, proleptic Gregorian.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_days() {
        for days in [-1000, 0, 59, 60, 11_016, 20_758, 30_000] {
            assert_eq!(SimDate::from_days(days).days(), days);
        }
        assert_eq!(
            SimDate::ymd(2024, 2, 29).days() + 1,
            SimDate::ymd(2024, 3, 1).days()
        );
        assert_eq!(SimDate::ymd(1970, 1, 1).days(), 0);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 12), 31);
        assert_eq!(days_in_month(2023, 13), 0);
    }

    #[test]
    fn precision_and_display() {
        let d = SimDate::ymd(1998, 3, 2);
        assert_eq!(d.truncate(Precision::Y).to_string(), "1998");
        assert_eq!(d.truncate(Precision::YM).precision(), Precision::YM);
        assert_eq!(d.at(9, 40, 0).to_string(), "1998-03-02T09:40:00");
        assert_eq!(
            SimDate::ymd(1970, 3, 2).age_on(&SimDate::ymd(2026, 3, 1)),
            55
        );
    }
}
