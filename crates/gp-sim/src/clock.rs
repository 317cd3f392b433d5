//! The UK clock as the simulated GP systems keep it: they record local wall-clock time,
//! and SystmOne's wire format carries UTC, so the simulator turns one into the other.
//!
//! Written for the simulators alone, apart from the gateway's rules: a GP system knows
//! nothing of the gateway, and a wrong rule shared by both sides would cancel out in
//! every simulator-backed test. The e2e crate compares the two hour by hour.
//!
//! The law, by years (the UK's own dates, as the tz database's `Europe/London` has them):
//! 1968 summer time from 18 February; 1969-1970 all year (the British Standard Time
//! trial), ending 31 October 1971; 1972-1980 from the third Sunday of March to the Sunday
//! on or after 23 October, 02:00 GMT; 1981-1995 from the last Sunday of March to the
//! Sunday on or after 23 (from 1990, 22) October, 01:00 GMT; since 1996 the last Sundays
//! of March and October, 01:00 GMT. Earlier years are given the current law: the
//! synthetic records hold no times of day from before 1968.

use std::ops::RangeInclusive;

use crate::date::SimDate;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Which Sunday of its month the clocks change on.
#[derive(Clone, Copy)]
enum Sunday {
    Last,
    /// The first Sunday falling on this day of the month or later.
    OnOrAfter(u8),
}

/// One change of the clocks: its month, its Sunday and the GMT hour it happens at.
#[derive(Clone, Copy)]
struct Change {
    month: u8,
    sunday: Sunday,
    gmt_hour: i64,
}

impl Change {
    /// Seconds since 1970-01-01 00:00 UTC of this change in `year`.
    fn in_year(self, year: i32) -> i64 {
        let day = match self.sunday {
            Sunday::OnOrAfter(day) => {
                let from = SimDate::ymd(year, self.month, day).days();
                from + (7 - weekday(from)) % 7
            }
            Sunday::Last => {
                let last = SimDate::ymd(year, self.month, 1).days()
                    + i64::from(crate::date::days_in_month(year, self.month))
                    - 1;
                last - weekday(last)
            }
        };
        day * DAY + self.gmt_hour * HOUR
    }
}

/// The summer-time law for a run of years. No change into summer time: the year starts
/// in it; none out of it: the year ends in it.
struct Law {
    years: RangeInclusive<i32>,
    forward: Option<Change>,
    back: Option<Change>,
}

const fn change(month: u8, sunday: Sunday, gmt_hour: i64) -> Option<Change> {
    Some(Change {
        month,
        sunday,
        gmt_hour,
    })
}

const LAWS: [Law; 7] = [
    Law {
        years: 1968..=1968,
        forward: change(2, Sunday::OnOrAfter(18), 2),
        back: None,
    },
    Law {
        years: 1969..=1970,
        forward: None,
        back: None,
    },
    Law {
        years: 1971..=1971,
        forward: None,
        back: change(10, Sunday::Last, 2),
    },
    Law {
        years: 1972..=1980,
        forward: change(3, Sunday::OnOrAfter(16), 2),
        back: change(10, Sunday::OnOrAfter(23), 2),
    },
    Law {
        years: 1981..=1989,
        forward: change(3, Sunday::Last, 1),
        back: change(10, Sunday::OnOrAfter(23), 1),
    },
    Law {
        years: 1990..=1995,
        forward: change(3, Sunday::Last, 1),
        back: change(10, Sunday::OnOrAfter(22), 1),
    },
    Law {
        years: 1996..=i32::MAX,
        forward: change(3, Sunday::Last, 1),
        back: change(10, Sunday::Last, 1),
    },
];

/// 0 = Sunday, for a day counted from 1970-01-01 (a Thursday).
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The UTC seconds `[from, until)` of `year` during which UK clocks show summer time.
fn summer(year: i32) -> (i64, i64) {
    let current = &LAWS[LAWS.len() - 1];
    let law = LAWS
        .iter()
        .find(|law| law.years.contains(&year))
        .unwrap_or(current);
    let from = law.forward.map_or_else(
        || SimDate::ymd(year, 1, 1).days() * DAY,
        |c| c.in_year(year),
    );
    let until = law.back.map_or_else(
        || SimDate::ymd(year + 1, 1, 1).days() * DAY,
        |c| c.in_year(year),
    );
    (from, until)
}

/// A date-time as seconds since 1970-01-01 00:00 (a date alone is taken at midnight).
fn seconds(d: SimDate) -> i64 {
    let (h, m, s) = d.time.unwrap_or((0, 0, 0));
    d.days() * DAY + i64::from(h) * HOUR + i64::from(m) * 60 + i64::from(s)
}

/// Whether UK clocks show summer time (GMT+1) at the UTC instant `utc`.
pub fn summer_time_at(utc: SimDate) -> bool {
    let (from, until) = summer(utc.year);
    (from..until).contains(&seconds(utc))
}

/// Whether the UK wall-clock time `local` is summer time. The hour skipped when the
/// clocks go forward is read as summer time, and the hour that happens twice when they
/// go back as its first (summer-time) occurrence, as GP systems' readers do.
pub fn summer_time_on_the_wall(local: SimDate) -> bool {
    let (from, until) = summer(local.year);
    // Wall time equals GMT until the change forward, and runs an hour ahead of it until
    // the change back: so the wall clock shows summer time from `from` to `until` + 1 h.
    (from..until + HOUR).contains(&seconds(local))
}

/// The UK wall-clock time at the UTC instant `utc`.
pub fn local_from_utc(utc: SimDate) -> SimDate {
    if summer_time_at(utc) {
        utc.plus_seconds(HOUR)
    } else {
        utc
    }
}

/// The UTC instant of the UK wall-clock time `local`, read as
/// [`summer_time_on_the_wall`] says.
pub fn utc_from_local(local: SimDate) -> SimDate {
    if summer_time_on_the_wall(local) {
        local.plus_seconds(-HOUR)
    } else {
        local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u8, d: u8, h: u8) -> SimDate {
        SimDate::ymd(y, m, d).at(h, 0, 0)
    }

    #[test]
    fn the_clocks_change_on_the_right_sundays() {
        // 2024: forward on Sunday 31 March, back on Sunday 27 October, at 01:00 GMT.
        assert!(!summer_time_at(at(2024, 3, 31, 0)));
        assert!(summer_time_at(at(2024, 3, 31, 1)));
        assert!(summer_time_at(at(2024, 10, 27, 0)));
        assert!(!summer_time_at(at(2024, 10, 27, 1)));
        // 1975: forward on Sunday 16 March, back on Sunday 26 October, at 02:00 GMT.
        assert!(!summer_time_at(at(1975, 3, 16, 1)));
        assert!(summer_time_at(at(1975, 3, 16, 2)));
        assert!(summer_time_at(at(1975, 10, 26, 1)));
        assert!(!summer_time_at(at(1975, 10, 26, 2)));
        // 1970: summer time all year; 1989 back on the 29th, 1990 on the 28th.
        assert!(summer_time_at(at(1970, 1, 1, 0)));
        assert!(!summer_time_at(at(1989, 10, 29, 1)));
        assert!(!summer_time_at(at(1990, 10, 28, 1)));
    }

    #[test]
    fn wall_clock_hours_at_the_changes() {
        // The skipped hour and the repeated hour both read as summer time.
        assert!(!summer_time_on_the_wall(at(2024, 3, 31, 0)));
        assert!(summer_time_on_the_wall(at(2024, 3, 31, 1)));
        assert!(summer_time_on_the_wall(at(2024, 10, 27, 1)));
        assert!(!summer_time_on_the_wall(at(2024, 10, 27, 2)));
        assert_eq!(utc_from_local(at(2024, 6, 1, 0)), at(2024, 5, 31, 23));
        assert_eq!(local_from_utc(at(2024, 5, 31, 23)), at(2024, 6, 1, 0));
        assert_eq!(local_from_utc(at(2024, 1, 12, 9)), at(2024, 1, 12, 9));
    }
}
