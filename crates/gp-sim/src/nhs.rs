//! NHS numbers as a GP system checks them: ten digits, the tenth a modulus 11 check
//! digit over the first nine (weighted 10 down to 2); a stem whose check would be 10
//! is never issued. The simulators' own check, apart from the gateway's; the e2e crate
//! compares the two over a large sample.

/// The check digit for the nine digits `stem`, or `None` when no number has this stem.
fn check_digit(stem: &[u8]) -> Option<u8> {
    let weighted: u32 = (2u32..=10)
        .rev()
        .zip(stem)
        .map(|(weight, digit)| weight * u32::from(*digit))
        .sum();
    match weighted % 11 {
        0 => Some(0),
        1 => None,
        remainder => u8::try_from(11 - remainder).ok(),
    }
}

/// Whether `s` is a valid NHS number: exactly ten ASCII digits with a good check digit.
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digits: Vec<u8> = b.iter().map(|c| c - b'0').collect();
    check_digit(&digits[..9]) == Some(digits[9])
}

/// The NHS number whose first nine digits are `stem` (zero-padded), or `None` when the
/// stem is over nine digits or has no valid check digit.
pub fn with_check_digit(stem: u32) -> Option<String> {
    if stem > 999_999_999 {
        return None;
    }
    let nine = format!("{stem:09}");
    let digits: Vec<u8> = nine.bytes().map(|c| c - b'0').collect();
    let check = check_digit(&digits)?;
    Some(format!("{nine}{check}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_last_digit() {
        // 943 476 5919: the example number in the NHS Data Dictionary.
        assert!(is_valid("9434765919"));
        assert!(!is_valid("9434765918"));
        assert!(!is_valid("943476591"));
        assert!(!is_valid("94347659190"));
        assert!(!is_valid("943476591a"));
        assert_eq!(with_check_digit(943_476_591).as_deref(), Some("9434765919"));
        // Weighted sum 0 mod 11 → check digit 0.
        assert_eq!(with_check_digit(0).as_deref(), Some("0000000000"));
        // 000000001: weighted sum 2, check 9; 000000005: sum 10, remainder 10 → 1.
        assert_eq!(with_check_digit(1).as_deref(), Some("0000000019"));
        assert_eq!(with_check_digit(5).as_deref(), Some("0000000051"));
    }

    #[test]
    fn a_check_of_ten_is_never_issued() {
        // 000000006: weighted sum 12, remainder 1, check would be 10.
        assert_eq!(with_check_digit(6), None);
        assert!((0..10).all(|d| !is_valid(&format!("000000006{d}"))));
    }
}
