//! UK civil time: which instants fall in British Summer Time and how a GP system's
//! timestamps become FHIR dateTimes with their offset. One rule for every adapter, so
//! the same moment recorded in any GP system gives the same FHIR.
//!
//! BST runs from 01:00 GMT on the last Sunday of March to 01:00 GMT on the last Sunday
//! of October.

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
    let last = gp_fhir::date::days_in_month(y, m);
    last - weekday(y, m, last)
}

/// True when UK local wall-clock time `y-m-d h:..` is British Summer Time. In the
/// skipped March hour (01:xx local) the time is read as BST; in the repeated October
/// hour (01:xx local) as its first, BST, occurrence.
pub fn is_bst_local(y: i32, m: u8, d: u8, hour: u8) -> bool {
    match m {
        4..=9 => true,
        3 => {
            let change = last_sunday(y, 3);
            d > change || (d == change && hour >= 1)
        }
        10 => {
            let change = last_sunday(y, 10);
            d < change || (d == change && hour < 2)
        }
        _ => false,
    }
}

/// True when the UTC instant `y-m-d h:..` falls in British Summer Time.
pub fn is_bst_utc(y: i32, m: u8, d: u8, hour: u8) -> bool {
    match m {
        4..=9 => true,
        3 => {
            let change = last_sunday(y, 3);
            d > change || (d == change && hour >= 1)
        }
        10 => {
            let change = last_sunday(y, 10);
            d < change || (d == change && hour < 1)
        }
        _ => false,
    }
}

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
    if !is_bst_utc(y, m, d, h) {
        return format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00");
    }
    let (y, m, d, h) = if h == 23 {
        let (y, m, d) = gp_fhir::date::day_after((y, m, d));
        (y, m, d, 0)
    } else {
        (y, m, d, h + 1)
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}+01:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_sundays() {
        // 2024: BST from Sunday 31 March 01:00 GMT to Sunday 27 October 01:00 GMT.
        assert_eq!(last_sunday(2024, 3), 31);
        assert_eq!(last_sunday(2024, 10), 27);
        assert_eq!(last_sunday(2023, 3), 26);
        assert_eq!(last_sunday(2023, 10), 29);
    }

    #[test]
    fn local_bst_follows_the_last_sunday_rules() {
        assert!(!is_bst_local(2024, 3, 31, 0));
        assert!(is_bst_local(2024, 3, 31, 2));
        assert!(!is_bst_local(2024, 3, 30, 23));
        assert!(is_bst_local(2024, 7, 1, 12));
        assert!(is_bst_local(2024, 10, 27, 0));
        assert!(is_bst_local(2024, 10, 27, 1));
        assert!(!is_bst_local(2024, 10, 27, 2));
        assert!(!is_bst_local(2024, 1, 15, 10));
        assert!(!is_bst_local(2024, 11, 1, 10));
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
        // The changes happen at 01:00 UTC.
        assert!(!is_bst_utc(2024, 3, 31, 0));
        assert!(is_bst_utc(2024, 3, 31, 1));
        assert!(is_bst_utc(2024, 10, 27, 0));
        assert!(!is_bst_utc(2024, 10, 27, 1));
    }
}
