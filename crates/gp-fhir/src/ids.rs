//! NHS number and ODS organisation code.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::outcome::{FhirError, IssueType, SpineCode};

/// `Identifier.system` of the NHS number.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// `Identifier.system` of an ODS organisation code.
pub const ODS_CODE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// A 10-digit NHS number whose modulus-11 check digit is valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

/// Why a string is not an NHS number; each says exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("NHS number is empty")]
    Empty,
    #[error("NHS number has {0} characters; it must be exactly 10 digits")]
    Length(usize),
    #[error("NHS number must contain only digits 0-9")]
    NotDigits,
    #[error(
        "NHS number fails the modulus 11 check: its check digit should be {expected}, not {found}"
    )]
    CheckDigit { expected: u8, found: u8 },
    #[error(
        "NHS number fails the modulus 11 check: no valid check digit exists for its first nine digits"
    )]
    NoCheckDigit,
}

impl FhirError for NhsNumberError {
    fn status(&self) -> u16 {
        400
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::InvalidResourceId
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Value
    }
}

impl NhsNumber {
    /// Parses and checks an NHS number. Spaces (as in `943 476 5919`) are not accepted:
    /// APIs carry the bare 10 digits.
    pub fn parse(s: &str) -> Result<Self, NhsNumberError> {
        if s.is_empty() {
            return Err(NhsNumberError::Empty);
        }
        let len = s.chars().count();
        if len != 10 {
            return Err(NhsNumberError::Length(len));
        }
        let mut digits = [0u8; 10];
        for (slot, b) in digits.iter_mut().zip(s.bytes()) {
            if !b.is_ascii_digit() {
                return Err(NhsNumberError::NotDigits);
            }
            *slot = b - b'0';
        }
        match Self::check_digit(&digits) {
            None => Err(NhsNumberError::NoCheckDigit),
            Some(expected) if expected != digits[9] => Err(NhsNumberError::CheckDigit {
                expected,
                found: digits[9],
            }),
            Some(_) => Ok(Self(digits)),
        }
    }

    /// Builds the NHS number whose first nine digits are `stem` (0..=999_999_999),
    /// or `None` when no check digit exists for it.
    pub fn from_stem(stem: u32) -> Option<Self> {
        if stem > 999_999_999 {
            return None;
        }
        let mut digits = [0u8; 10];
        let mut rest = stem;
        for slot in digits[..9].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        let check = Self::check_digit(&digits)?;
        digits[9] = check;
        Some(Self(digits))
    }

    /// The first nine digits as a number: `NhsNumber::from_stem(n.stem()) == Some(n)`
    /// (the tenth is their check digit), so a number packs into 30 bits.
    pub fn stem(&self) -> u32 {
        self.0[..9].iter().fold(0, |n, d| n * 10 + u32::from(*d))
    }

    /// Modulus 11: weights 10..2 on digits 1-9; check = 11 - (sum mod 11), 11 → 0, 10 → invalid.
    fn check_digit(digits: &[u8; 10]) -> Option<u8> {
        let sum: u32 = digits[..9]
            .iter()
            .zip((2..=10).rev())
            .map(|(d, w)| u32::from(*d) * w)
            .sum();
        match 11 - (sum % 11) {
            11 => Some(0),
            10 => None,
            c => Some(c as u8),
        }
    }

    /// The 10 digits.
    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of ten ASCII digits, not ten formatted integers: it is written
        // several times a request (ids, references, audit, logs).
        let digits = self.0.map(|d| b'0' + d);
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber({self})")
    }
}

impl std::str::FromStr for NhsNumber {
    type Err = NhsNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An ODS organisation code, upper-cased (e.g. a GP practice `B82617`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

/// Why a string is not an ODS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdsCodeError {
    #[error("ODS code is empty")]
    Empty,
    #[error("ODS code '{0}' must be 3 to 10 letters and digits")]
    Malformed(String),
}

impl FhirError for OdsCodeError {
    fn status(&self) -> u16 {
        400
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::InvalidValue
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Value
    }
}

impl OdsCode {
    /// Parses an ODS code: 3 to 10 ASCII letters or digits, case-insensitive.
    pub fn parse(s: &str) -> Result<Self, OdsCodeError> {
        if s.is_empty() {
            return Err(OdsCodeError::Empty);
        }
        if !(3..=10).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // Echo only a bounded, printable prefix of bad input.
            let shown: String = s.chars().take(16).filter(|c| !c.is_control()).collect();
            return Err(OdsCodeError::Malformed(shown));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OdsCode({})", self.0)
    }
}

impl std::str::FromStr for OdsCode {
    type Err = OdsCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for OdsCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OdsCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_published_test_numbers() {
        for n in [
            "9000000009",
            "9690937278",
            "9658218865",
            "9912003888",
            "9434765919",
        ] {
            assert_eq!(NhsNumber::parse(n).unwrap().to_string(), n);
        }
    }

    #[test]
    fn names_the_problem() {
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::Empty));
        assert_eq!(NhsNumber::parse("12345"), Err(NhsNumberError::Length(5)));
        assert_eq!(
            NhsNumber::parse("969093727X"),
            Err(NhsNumberError::NotDigits)
        );
        assert_eq!(
            NhsNumber::parse("9690937279"),
            Err(NhsNumberError::CheckDigit {
                expected: 8,
                found: 9
            })
        );
        // 1234567890: weighted sum 1*10+2*9+...+9*2 = 210, 210 mod 11 = 1, 11-1 = 10 → no valid check digit.
        assert_eq!(
            NhsNumber::parse("1234567890"),
            Err(NhsNumberError::NoCheckDigit)
        );
        // A full-width digit is ten characters long but not ASCII.
        assert_eq!(
            NhsNumber::parse("96909372７8"),
            Err(NhsNumberError::NotDigits)
        );
    }

    #[test]
    fn from_stem_round_trips_and_skips_invalid_stems() {
        let n = NhsNumber::from_stem(969_093_727).unwrap();
        assert_eq!(n.to_string(), "9690937278");
        assert_eq!(n.stem(), 969_093_727);
        let zeros = NhsNumber::parse("0000000000").unwrap();
        assert_eq!((zeros.stem(), NhsNumber::from_stem(0)), (0, Some(zeros)));
        assert!(NhsNumber::from_stem(123_456_789).is_none());
        assert!(NhsNumber::from_stem(1_000_000_000).is_none());
        let mut valid = 0;
        for stem in 999_000_000..999_000_100 {
            if let Some(n) = NhsNumber::from_stem(stem) {
                valid += 1;
                assert_eq!(NhsNumber::parse(&n.to_string()), Ok(n));
                assert_eq!(n.stem(), stem);
            }
        }
        assert!(
            valid > 85,
            "about 1 in 11 stems has no check digit, got {valid} valid of 100"
        );
    }

    #[test]
    fn ods_codes() {
        assert_eq!(OdsCode::parse("b82617").unwrap().as_str(), "B82617");
        assert!(matches!(
            OdsCode::parse("B8/2617"),
            Err(OdsCodeError::Malformed(_))
        ));
        assert!(matches!(
            OdsCode::parse("AB"),
            Err(OdsCodeError::Malformed(_))
        ));
        assert_eq!(OdsCode::parse(""), Err(OdsCodeError::Empty));
    }
}

/// A GP system's record version as a FHIR `meta.versionId` (an `id`: 1 to 64 of
/// `A-Za-z0-9-.`), the value a weak ETag quotes. GP systems version records with
/// timestamps such as `2026-11-01T09:40:00+00:00`, which are not ids: letters, digits and
/// `-` are kept and every other byte is written `.XX` (its hex), so distinct versions stay
/// distinct; a version too long for that is named by a 64-bit FNV-1a hash. Compare a
/// quoted version with `version_id(current)`, never decode one.
pub fn version_id(version: &str) -> String {
    let mut out = String::with_capacity(version.len());
    for b in version.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    if (1..=64).contains(&out.len()) {
        return out;
    }
    let hash = version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("h.{hash:016x}")
}

#[cfg(test)]
mod version_id_tests {
    use super::version_id;

    fn is_fhir_id(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }

    #[test]
    fn versions_become_distinct_fhir_ids() {
        assert_eq!(
            version_id("2026-11-01T09:40:00+00:00"),
            "2026-11-01T09.3A40.3A00.2B00.3A00"
        );
        assert_eq!(version_id("17"), "17");
        // The escape character itself is escaped, so `a.3A` and `a:` differ.
        assert_ne!(version_id("a:"), version_id("a.3A"));
        assert_eq!(
            version_id(""),
            format!("h.{:016x}", 0xcbf2_9ce4_8422_2325_u64)
        );
        let long = "x:".repeat(40);
        let named = version_id(&long);
        assert!(named.starts_with("h."), "{named}");
        assert_ne!(named, version_id(&"x:".repeat(41)));
        for v in ["2026-11-01T09:40:00Z", "r=3;t=2", "é", &long, ""] {
            assert!(is_fhir_id(&version_id(v)), "{v}: {}", version_id(v));
        }
    }
}
