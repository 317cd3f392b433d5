//! Small UK Core builders every adapter maps its native records with, so the same
//! clinical fact gives the same FHIR whichever GP system recorded it. Native parsing
//! stays in each adapter; what it produces is built here.

use gp_fhir::model::{
    CONFIDENTIALITY_SYSTEM, CodeableConcept, Coding, Identifier, Meta, Reference,
};

/// GMC reference number of a doctor.
pub const GMC_SYSTEM: &str = "https://fhir.hl7.org.uk/Id/gmc-number";

const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// UK Core `meta` for `profile` (e.g. `Condition`); an entry a clinician marked
/// confidential carries `security` `R` (restricted).
pub fn meta(profile: &str, confidential: bool) -> Option<Meta> {
    let mut m = Meta::uk_core(profile);
    if confidential {
        m.security
            .push(Coding::new(CONFIDENTIALITY_SYSTEM, "R", "restricted"));
    }
    Some(m)
}

/// A CodeableConcept of one coding.
pub fn concept(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept::coded(system, code, display)
}

/// A reference to the Practitioner with this id, when there is one.
pub fn practitioner_ref(id: Option<&str>) -> Option<Reference> {
    id.map(|i| Reference::to("Practitioner", i))
}

/// A doctor's GMC number as an identifier, without the `G` some systems prefix.
pub fn gmc_identifier(raw: &str) -> Identifier {
    Identifier::new(GMC_SYSTEM, raw.trim_start_matches(['G', 'g']))
}

/// `Encounter.class` of a GP consultation: ambulatory.
pub fn ambulatory() -> Coding {
    Coding::new(ACT_CODE, "AMB", "ambulatory")
}

/// `Condition.clinicalStatus`: `active` (Active) or `inactive` (Inactive).
pub fn condition_clinical_status(code: &str) -> CodeableConcept {
    let display = if code == "active" {
        "Active"
    } else {
        "Inactive"
    };
    concept(CONDITION_CLINICAL, code, display)
}

/// `Condition.verificationStatus`: GP systems record only confirmed problems.
pub fn condition_confirmed() -> CodeableConcept {
    concept(CONDITION_VERIFICATION, "confirmed", "Confirmed")
}

/// `Condition.category` of a GP problem.
pub fn problem_list_item() -> CodeableConcept {
    concept(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")
}

/// `AllergyIntolerance.clinicalStatus`: `active` (Active) or `resolved` (Resolved).
pub fn allergy_clinical_status(code: &str) -> CodeableConcept {
    let display = if code == "active" {
        "Active"
    } else {
        "Resolved"
    };
    concept(ALLERGY_CLINICAL, code, display)
}

/// `AllergyIntolerance.verificationStatus`: GP systems record only confirmed allergies.
pub fn allergy_confirmed() -> CodeableConcept {
    concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed")
}

/// A native GUID or UID as a FHIR id: braces dropped, lower case, only `A-Za-z0-9-.`,
/// 1 to 64 characters; `None` for anything else.
pub fn guid_id(raw: &str) -> Option<String> {
    let v = raw.trim_start_matches('{').trim_end_matches('}').as_bytes();
    if !(1..=64).contains(&v.len()) {
        return None;
    }
    // One pass: each byte checked and lowered through ID_BYTE, into a buffer on the stack.
    let mut id = [0u8; 64];
    for (out, &b) in id.iter_mut().zip(v) {
        *out = ID_BYTE[b as usize];
        if *out == 0 {
            return None;
        }
    }
    std::str::from_utf8(&id[..v.len()]).ok().map(str::to_owned)
}

/// A FHIR id byte for each input byte: `A-Z` lowered, `a-z0-9-.` kept, 0 for the rest.
const ID_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'A'..=b'Z' => c + 32,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => c,
            _ => 0,
        };
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidential_entries_are_restricted() {
        let open = meta("Condition", false).unwrap();
        assert!(open.security.is_empty());
        assert!(open.profile[0].ends_with("Condition"));
        let closed = meta("Condition", true).unwrap();
        assert_eq!(closed.security.len(), 1);
        assert_eq!(closed.security[0].code.as_deref(), Some("R"));
    }

    #[test]
    fn gmc_numbers_lose_their_prefix() {
        assert_eq!(gmc_identifier("G1234567"), gmc_identifier("1234567"));
    }

    #[test]
    fn guids_become_fhir_ids() {
        assert_eq!(
            guid_id("{8A2F1C3E-0B1D-4E5F-9A6B-7C8D9E0F1A2B}").as_deref(),
            Some("8a2f1c3e-0b1d-4e5f-9a6b-7c8d9e0f1a2b")
        );
        assert_eq!(guid_id("a.B-9").as_deref(), Some("a.b-9"));
        for bad in ["a b", "", "{}", "é", &"a".repeat(65)] {
            assert_eq!(guid_id(bad), None, "{bad:?}");
        }
    }
}
