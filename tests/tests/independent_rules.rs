#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rules a GP system and the gateway each keep for themselves must agree where a value
//! crosses between them: the UK clock, days in a month, the NHS number check and the
//! language names. gp-sim and gp-fhir hold separate implementations on purpose (a shared
//! wrong rule would cancel out in every simulator-backed test); this crate, which may see
//! both, compares them over their whole domain.

use std::collections::BTreeMap;

use gp_fhir::NhsNumber;
use gp_fhir::date::{days_in_month, is_bst_local, is_bst_utc};
use gp_sim::{Population, PopulationSpec, SimDate, clock, languages, nhs};

/// 1968 is where both sides' UK clock history begins; the tz database check of the
/// gateway's side (gp-fhir's tests/bst_oracle.rs) covers the same range.
const FIRST_YEAR: i32 = 1968;
const LAST_YEAR: i32 = 2100;

/// Every day from 1 January `FIRST_YEAR` to 31 December `LAST_YEAR`, by the simulators'
/// day count.
fn days() -> impl Iterator<Item = SimDate> {
    let first = SimDate::ymd(FIRST_YEAR, 1, 1).days();
    let last = SimDate::ymd(LAST_YEAR, 12, 31).days();
    (first..=last).map(SimDate::from_days)
}

fn ymd(d: SimDate) -> (i32, u8, u8) {
    (d.year, d.month.unwrap(), d.day.unwrap())
}

#[test]
fn both_sides_keep_the_same_uk_clock_every_hour() {
    let (mut utc_wrong, mut local_wrong) = (Vec::new(), Vec::new());
    let mut hours = 0u32;
    for day in days() {
        let (y, m, d) = ymd(day);
        for h in 0..24 {
            let at = day.at(h, 0, 0);
            if clock::summer_time_at(at) != is_bst_utc(y, m, d, h) {
                utc_wrong.push(format!("{at}Z"));
            }
            if clock::summer_time_on_the_wall(at) != is_bst_local(y, m, d, h) {
                local_wrong.push(format!("{at} local"));
            }
            hours += 1;
        }
    }
    assert!(hours > 1_150_000, "{hours} hours compared");
    assert!(
        utc_wrong.is_empty() && local_wrong.is_empty(),
        "the simulators' UK clock and the gateway's disagree at {} UTC hours ({:?}…) and {} local hours ({:?}…)",
        utc_wrong.len(),
        utc_wrong.first(),
        local_wrong.len(),
        local_wrong.first()
    );
}

#[test]
fn both_sides_count_the_same_days_in_every_month() {
    // Every month of two full 400-year Gregorian cycles, leap-century rules included.
    for y in 1600..2400 {
        for m in 1..=12 {
            assert_eq!(
                gp_sim::date::days_in_month(y, m),
                days_in_month(y, m),
                "{y}-{m:02}"
            );
        }
    }
}

#[test]
fn both_sides_hold_the_same_languages_by_the_same_names() {
    let gateway: BTreeMap<&str, &str> = gp_fhir::model::HUMAN_LANGUAGES.iter().copied().collect();
    let simulators: BTreeMap<&str, &str> = languages::MAIN_LANGUAGES
        .iter()
        .map(|l| (l.code, l.name))
        .collect();
    assert_eq!(
        simulators.keys().collect::<Vec<_>>(),
        gateway.keys().collect::<Vec<_>>(),
        "the two sides offer different language codes"
    );
    for (code, name) in &simulators {
        assert_eq!(gp_fhir::model::human_language(code), Some(*name), "{code}");
        assert_eq!(languages::name(code), Some(*name), "{code}");
    }
}

/// A small deterministic generator (SplitMix64), so the sample is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn both_sides_check_nhs_numbers_alike() {
    // Every stem of the synthetic population's range (999 000 000 to 999 999 999): the
    // numbers both sides build from a stem are the same, or both refuse it.
    for stem in 999_000_000..=999_999_999u32 {
        assert_eq!(
            nhs::with_check_digit(stem),
            NhsNumber::from_stem(stem).map(|n| n.to_string()),
            "stem {stem}"
        );
    }
    // Random ten-digit strings (about one in eleven valid), numbers built by the gateway
    // from random stems, and strings of other lengths or with a non-digit in.
    let mut rng = SplitMix(0x5EED_0021);
    let (mut valid, mut total) = (0u32, 0u32);
    for i in 0..1_000_000u32 {
        let n = rng.next() % 10_000_000_000;
        let mut s = format!("{n:010}");
        match i % 10 {
            6 => {
                if let Some(built) = NhsNumber::from_stem(u32::try_from(n / 10).unwrap()) {
                    s = built.to_string();
                }
            }
            7 => s.truncate(9),
            8 => s.push('0'),
            9 => s.replace_range(4..5, "x"),
            _ => {}
        }
        let gateway = NhsNumber::parse(&s).is_ok();
        assert_eq!(nhs::is_valid(&s), gateway, "{s}");
        valid += u32::from(gateway);
        total += 1;
    }
    assert!(
        valid > total / 20,
        "the sample holds valid numbers: {valid} of {total}"
    );
    // Every number of a generated population, and the demo numbers, pass the gateway's check.
    let population = Population::generate(21, &PopulationSpec::sandbox());
    for p in &population.patients {
        assert!(NhsNumber::parse(&p.nhs_number).is_ok(), "{}", p.nhs_number);
    }
    for (_, n) in gp_sim::DEMO_NHS_NUMBERS {
        assert!(NhsNumber::parse(n).is_ok(), "{n}");
    }
}
