#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Population generator properties.

use std::collections::BTreeSet;

use gp_sim::population::concepts_used;
use gp_sim::*;

fn sandbox(seed: u64) -> Population {
    Population::generate(seed, &PopulationSpec::sandbox())
}

#[test]
fn same_seed_same_bytes_different_seed_different() {
    let a = serde_json::to_string(&sandbox(42)).unwrap();
    let b = serde_json::to_string(&sandbox(42)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, serde_json::to_string(&sandbox(43)).unwrap());
}

#[test]
fn nhs_numbers_valid_unique_and_in_test_range() {
    let pop = Population::generate(
        7,
        &PopulationSpec {
            practices_per_system: 3,
            patients_per_practice: 40,
            ..PopulationSpec::sandbox()
        },
    );
    let demo: BTreeSet<&str> = DEMO_NHS_NUMBERS.iter().map(|(_, n)| *n).collect();
    let mut seen = BTreeSet::new();
    for p in &pop.patients {
        assert!(gp_sim::nhs::is_valid(&p.nhs_number), "{}", p.nhs_number);
        assert!(
            seen.insert(p.nhs_number.clone()),
            "duplicate {}",
            p.nhs_number
        );
        assert!(
            demo.contains(p.nhs_number.as_str()) || p.nhs_number.starts_with("999"),
            "{}",
            p.nhs_number
        );
    }
    assert_eq!(pop.patients.len(), 4 * 3 * 40);
}

#[test]
fn demo_patients_where_promised_with_full_records() {
    let pop = sandbox(1);
    for (system, nhs) in DEMO_NHS_NUMBERS {
        let practice = pop.practices.iter().find(|p| p.system == system).unwrap();
        let first = pop
            .patients
            .iter()
            .find(|p| p.practice == practice.ods)
            .unwrap();
        assert_eq!(first.nhs_number, nhs);
        assert!(
            !first.allergies.is_empty()
                && !first.medications.is_empty()
                && !first.problems.is_empty()
        );
        assert!(
            first
                .observations
                .iter()
                .any(|o| o.concept.key == "systolic-bp")
        );
        assert!(!first.immunisations.is_empty() && !first.consultations.is_empty());
        assert!(!first.flags.sensitive && !first.flags.dissent && first.deceased_on.is_none());
    }
}

#[test]
fn every_practice_has_its_flagged_patients() {
    let pop = sandbox(3);
    assert_eq!(pop.practices.len(), 8);
    for practice in &pop.practices {
        let ps: Vec<_> = pop
            .patients
            .iter()
            .filter(|p| p.practice == practice.ods)
            .collect();
        assert_eq!(ps.len(), 12);
        assert!(ps[SENSITIVE_INDEX].flags.sensitive);
        assert!(ps[DISSENT_INDEX].flags.dissent);
        assert_eq!(ps.iter().filter(|p| p.flags.sensitive).count(), 1);
        assert_eq!(ps.iter().filter(|p| p.flags.dissent).count(), 1);
        let ods = practice.ods.as_bytes();
        assert!(
            ods.len() == 6
                && ods[0].is_ascii_uppercase()
                && ods[1..].iter().all(u8::is_ascii_digit)
        );
    }
    let manifest = pop.manifest_patients();
    assert_eq!(manifest.len(), pop.patients.len());
    assert_eq!(manifest[SENSITIVE_INDEX].flags, vec!["sensitive"]);
    assert_eq!(manifest[DISSENT_INDEX].flags, vec!["dissent"]);
    assert_eq!(manifest[0].system, "emis");
}

#[test]
fn dates_after_birth_and_not_after_today() {
    for seed in 0..5 {
        let pop = Population::generate(
            seed,
            &PopulationSpec {
                patients_per_practice: 30,
                ..PopulationSpec::sandbox()
            },
        );
        let today = pop.spec.today;
        for p in &pop.patients {
            let birth = p.birth_date.days();
            let end = p.deceased_on.map_or(today.days(), |d| d.days());
            assert!(end <= today.days());
            let mut dates = vec![p.registered_on, p.last_modified];
            dates.extend(
                p.allergies
                    .iter()
                    .flat_map(|x| [Some(x.meta.date), x.end_date])
                    .flatten(),
            );
            dates.extend(
                p.medications
                    .iter()
                    .flat_map(|x| [Some(x.meta.date), x.end_date])
                    .flatten(),
            );
            dates.extend(
                p.problems
                    .iter()
                    .flat_map(|x| [Some(x.meta.date), x.end_date])
                    .flatten(),
            );
            dates.extend(p.observations.iter().map(|x| x.meta.date));
            dates.extend(p.immunisations.iter().map(|x| x.meta.date));
            dates.extend(p.consultations.iter().map(|x| x.meta.date));
            for d in dates {
                // A year-only date counts from 1 January, so compare at its own precision.
                assert!(
                    d.year >= p.birth_date.year
                        && (d.precision() == Precision::Y || d.days() >= birth),
                    "{d} before birth {} ({})",
                    p.birth_date,
                    p.nhs_number
                );
                assert!(d.days() <= end, "{d} after {end} ({})", p.nhs_number);
            }
        }
    }
}

#[test]
fn emitted_concepts_are_in_the_catalogue() {
    let catalogue: BTreeSet<&str> = concepts::all().iter().map(|c| c.key).collect();
    let pop = sandbox(9);
    let used: BTreeSet<&str> = pop
        .patients
        .iter()
        .flat_map(concepts_used)
        .map(|c| c.key)
        .collect();
    assert!(used.is_subset(&catalogue));
    assert!(used.len() >= 20, "only {} concepts used", used.len());
    assert!(concepts::all().len() >= 30);
}

#[test]
fn chronic_problems_have_fitting_medicines() {
    let pop = sandbox(5);
    for p in &pop.patients {
        let has = |k: &str| p.problems.iter().any(|x| x.concept.key == k);
        let takes = |k: &str| p.medications.iter().any(|m| m.drug.key == k);
        if has("type-2-diabetes") {
            assert!(takes("metformin") && p.observations.iter().any(|o| o.concept.key == "hba1c"));
        }
        if has("asthma") {
            assert!(takes("salbutamol-inhaler"));
        }
        if has("essential-hypertension") {
            assert!(takes("amlodipine") || takes("ramipril"));
        }
    }
}
