//! The readings suppliers may write to GP records: each one's SNOMED CT concept (what GP
//! systems record), the LOINC codes that name it (what device platforms and FHIR
//! libraries send; `terminology/loinc-vital-signs.tsv`, with the source of every pair),
//! the UCUM unit GP systems record it in, the units converted to it, and the plausible
//! range a reading must fall in.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A reading suppliers may write.
#[derive(Debug)]
pub(crate) struct Vital {
    pub snomed: &'static str,
    pub display: &'static str,
    /// The UCUM unit GP systems record it in.
    pub unit: &'static str,
    /// Other UCUM units accepted, each with how to convert a value to [`Vital::unit`].
    pub converts: &'static [(&'static str, Convert)],
    pub min: f64,
    pub max: f64,
    /// Decimal places a converted value is rounded to.
    pub decimals: i32,
}

/// How a value in another unit becomes one in the recorded unit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Convert {
    /// `value × factor`.
    Scale(f64),
    /// Degrees Fahrenheit to Celsius.
    FahrenheitToCelsius,
    /// Kelvin to Celsius.
    KelvinToCelsius,
}

impl Convert {
    fn apply(self, v: f64) -> f64 {
        match self {
            Self::Scale(f) => v * f,
            Self::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
            Self::KelvinToCelsius => v - 273.15,
        }
    }
}

const PER_MIN: &[(&str, Convert)] = &[
    ("{beats}/min", Convert::Scale(1.0)),
    ("{breaths}/min", Convert::Scale(1.0)),
    ("{beat}/min", Convert::Scale(1.0)),
    ("{breath}/min", Convert::Scale(1.0)),
];
const LENGTH_CM: &[(&str, Convert)] = &[
    ("m", Convert::Scale(100.0)),
    ("mm", Convert::Scale(0.1)),
    ("[in_i]", Convert::Scale(2.54)),
    ("[ft_i]", Convert::Scale(30.48)),
];
const MM_HG: &[(&str, Convert)] = &[("kPa", Convert::Scale(7.500_615_75))];

/// Blood pressure panel (SNOMED CT), whose parts are systolic and diastolic.
pub(crate) const BLOOD_PRESSURE_PANEL: &str = gp_adapter::write::BLOOD_PRESSURE_PANEL;

pub(crate) const VITALS: &[Vital] = &[
    Vital {
        snomed: "271649006",
        display: "Systolic blood pressure",
        unit: "mm[Hg]",
        converts: MM_HG,
        min: 40.0,
        max: 300.0,
        decimals: 0,
    },
    Vital {
        snomed: "271650006",
        display: "Diastolic blood pressure",
        unit: "mm[Hg]",
        converts: MM_HG,
        min: 20.0,
        max: 200.0,
        decimals: 0,
    },
    Vital {
        snomed: "27113001",
        display: "Body weight",
        unit: "kg",
        converts: &[
            ("g", Convert::Scale(0.001)),
            ("[lb_av]", Convert::Scale(0.453_592_37)),
            ("[oz_av]", Convert::Scale(0.028_349_523_125)),
            ("[stone_av]", Convert::Scale(6.350_293_18)),
        ],
        min: 0.2,
        max: 500.0,
        decimals: 2,
    },
    Vital {
        snomed: "50373000",
        display: "Body height",
        unit: "cm",
        converts: LENGTH_CM,
        min: 20.0,
        max: 280.0,
        decimals: 1,
    },
    Vital {
        snomed: "78564009",
        display: "Pulse rate",
        unit: "/min",
        converts: PER_MIN,
        min: 20.0,
        max: 300.0,
        decimals: 0,
    },
    Vital {
        snomed: "364075005",
        display: "Heart rate",
        unit: "/min",
        converts: PER_MIN,
        min: 20.0,
        max: 300.0,
        decimals: 0,
    },
    Vital {
        snomed: "86290005",
        display: "Respiratory rate",
        unit: "/min",
        converts: PER_MIN,
        min: 2.0,
        max: 80.0,
        decimals: 0,
    },
    Vital {
        snomed: "386725007",
        display: "Body temperature",
        unit: "Cel",
        converts: &[
            ("[degF]", Convert::FahrenheitToCelsius),
            ("K", Convert::KelvinToCelsius),
        ],
        min: 25.0,
        max: 45.0,
        decimals: 1,
    },
    Vital {
        snomed: "431314004",
        display: "Peripheral oxygen saturation",
        unit: "%",
        converts: &[],
        min: 50.0,
        max: 100.0,
        decimals: 0,
    },
    Vital {
        snomed: "60621009",
        display: "Body mass index",
        unit: "kg/m2",
        converts: &[],
        min: 5.0,
        max: 150.0,
        decimals: 1,
    },
    Vital {
        snomed: "363812007",
        display: "Head circumference",
        unit: "cm",
        converts: LENGTH_CM,
        min: 20.0,
        max: 80.0,
        decimals: 1,
    },
    Vital {
        snomed: "997671000000106",
        display: "Blood glucose level",
        unit: "mmol/L",
        // Glucose, 180.156 g/mol: 1 mg/dL = 0.055507 mmol/L.
        converts: &[
            ("mg/dL", Convert::Scale(0.055_507)),
            ("mmol/l", Convert::Scale(1.0)),
        ],
        min: 0.5,
        max: 60.0,
        decimals: 1,
    },
    Vital {
        snomed: "313193002",
        display: "Peak flow rate",
        unit: "L/min",
        converts: &[
            ("l/min", Convert::Scale(1.0)),
            ("L/s", Convert::Scale(60.0)),
        ],
        min: 30.0,
        max: 1000.0,
        decimals: 0,
    },
    Vital {
        snomed: "276361009",
        display: "Waist circumference",
        unit: "cm",
        converts: LENGTH_CM,
        min: 30.0,
        max: 300.0,
        decimals: 1,
    },
];

/// The reading recorded as SNOMED CT `code`, if suppliers may write it.
pub(crate) fn vital(code: &str) -> Option<&'static Vital> {
    VITALS.iter().find(|v| v.snomed == code)
}

impl Vital {
    /// `value` in `unit` as a value in [`Vital::unit`]; `None` when the unit is not one
    /// this reading is measured in.
    pub(crate) fn to_recorded(&self, value: f64, unit: &str) -> Option<f64> {
        if unit == self.unit {
            return Some(value);
        }
        let (_, convert) = self.converts.iter().find(|(u, _)| *u == unit)?;
        let factor = 10f64.powi(self.decimals);
        Some((convert.apply(value) * factor).round() / factor)
    }

    /// The units accepted, recorded one first.
    pub(crate) fn units(&self) -> String {
        std::iter::once(self.unit)
            .chain(self.converts.iter().map(|(u, _)| *u))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One row of the LOINC map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoincRow {
    pub loinc: &'static str,
    pub display: &'static str,
    pub snomed: &'static str,
    pub source: &'static str,
}

const LOINC_TSV: &str = include_str!("../terminology/loinc-vital-signs.tsv");

/// Parses the shipped map: `loinc<TAB>display<TAB>snomed<TAB>term<TAB>source`, `#` comments.
fn parse(text: &'static str) -> Result<Vec<LoincRow>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            [loinc, display, snomed, _term, source]
                if !loinc.is_empty() && !snomed.is_empty() && !source.is_empty() =>
            {
                out.push(LoincRow {
                    loinc,
                    display,
                    snomed,
                    source,
                });
            }
            _ => {
                return Err(format!(
                    "line {}: expected five tab-separated fields",
                    n + 1
                ));
            }
        }
    }
    Ok(out)
}

static LOINC: LazyLock<HashMap<&'static str, LoincRow>> = LazyLock::new(|| {
    parse(LOINC_TSV)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.loinc, r))
        .collect()
});

/// The SNOMED CT concept a LOINC code is recorded as.
pub(crate) fn snomed_for_loinc(loinc: &str) -> Option<&'static str> {
    LOINC.get(loinc).map(|r| r.snomed)
}

/// The LOINC codes accepted for SNOMED CT `snomed`, for messages.
pub(crate) fn loinc_for(snomed: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = LOINC
        .values()
        .filter(|r| r.snomed == snomed)
        .map(|r| r.loinc)
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_shipped_map_parses_and_every_row_names_a_writable_reading_and_a_source() {
        let rows = parse(LOINC_TSV).unwrap();
        assert!(rows.len() >= 20);
        for r in &rows {
            assert!(
                r.snomed == BLOOD_PRESSURE_PANEL || vital(r.snomed).is_some(),
                "{} maps to {}, which suppliers cannot write",
                r.loinc,
                r.snomed
            );
            assert!(
                r.loinc.split_once('-').is_some_and(|(a, b)| {
                    a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 1
                }),
                "{} is not a LOINC code",
                r.loinc
            );
            assert!(!r.display.is_empty() && !r.source.is_empty());
        }
        // Every vital sign but pulse rate (recorded from SNOMED CT only) has a LOINC code.
        for v in VITALS.iter().filter(|v| v.snomed != "78564009") {
            assert!(
                !loinc_for(v.snomed).is_empty(),
                "{} has no LOINC",
                v.display
            );
        }
        assert_eq!(LOINC.len(), rows.len(), "a LOINC code appears twice");
    }

    #[test]
    fn a_malformed_row_is_refused_with_its_line() {
        assert_eq!(
            parse("# c\n8867-4\tHeart rate\t364075005\n"),
            Err("line 2: expected five tab-separated fields".into())
        );
    }

    #[test]
    fn units_convert_to_what_gp_systems_record() {
        let w = vital("27113001").unwrap();
        assert_eq!(w.to_recorded(185.0, "[lb_av]"), Some(83.91));
        assert_eq!(w.to_recorded(72.4, "kg"), Some(72.4));
        assert_eq!(w.to_recorded(72.4, "cm"), None);
        let h = vital("50373000").unwrap();
        assert_eq!(h.to_recorded(66.9, "[in_i]"), Some(169.9));
        assert_eq!(h.to_recorded(1.7, "m"), Some(170.0));
        let t = vital("386725007").unwrap();
        assert_eq!(t.to_recorded(98.6, "[degF]"), Some(37.0));
        assert_eq!(t.to_recorded(310.15, "K"), Some(37.0));
        let g = vital("997671000000106").unwrap();
        assert_eq!(g.to_recorded(90.0, "mg/dL"), Some(5.0));
        let p = vital("313193002").unwrap();
        assert_eq!(p.to_recorded(7.0, "L/s"), Some(420.0));
        let bp = vital("271649006").unwrap();
        assert_eq!(bp.to_recorded(16.0, "kPa"), Some(120.0));
        assert_eq!(
            vital("364075005").unwrap().to_recorded(44.0, "{beats}/min"),
            Some(44.0)
        );
    }
}
