//! What logs may say about a patient: nothing that identifies them. NHS numbers in
//! paths and messages are masked before they reach a log line; tokens and keys are
//! never logged at all (only a token's `jti`).

/// `s` with every NHS-number-shaped run (10 digits, optionally spaced 3-3-4) masked.
pub fn nhs_numbers(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let run = digit_run(&bytes[i..]);
            if run > 0 {
                out.push_str("**********");
                i += run;
                continue;
            }
        }
        // Copy one whole character.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Length of an NHS number at the start of `b` (10 digits, or 3 space 3 space 4), not
/// followed by another digit; 0 when there is none.
fn digit_run(b: &[u8]) -> usize {
    let digits = |from: usize, n: usize| {
        b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    let ends = |at: usize| b.get(at).is_none_or(|c| !c.is_ascii_digit());
    if digits(0, 10) && ends(10) {
        return 10;
    }
    if digits(0, 3)
        && b.get(3) == Some(&b' ')
        && digits(4, 3)
        && b.get(7) == Some(&b' ')
        && digits(8, 4)
        && ends(12)
    {
        return 12;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_nhs_numbers_and_nothing_else() {
        assert_eq!(
            nhs_numbers("/FHIR/R4/Patient/9000000009"),
            "/FHIR/R4/Patient/**********"
        );
        assert_eq!(
            nhs_numbers("no patient record found for NHS number 943 476 5919."),
            "no patient record found for NHS number **********."
        );
        assert_eq!(
            nhs_numbers("patient=9000000009&date=2026-11-01"),
            "patient=**********&date=2026-11-01"
        );
        // Not 10 digits: kept (ODS codes, timestamps, ports, longer SNOMED ids).
        assert_eq!(
            nhs_numbers("B82617 at 127.0.0.1:8080 code 999791000000106"),
            "B82617 at 127.0.0.1:8080 code 999791000000106"
        );
        assert_eq!(nhs_numbers("ünïcode 9000000009"), "ünïcode **********");
    }
}
