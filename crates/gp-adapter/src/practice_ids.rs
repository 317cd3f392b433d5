//! FHIR ids of what a practice's GP system holds under native ids (appointments, slots,
//! documents): `{ODS}-{native id}`, so the gateway routes an id to its practice without
//! keeping state. Native ids are `[A-Za-z0-9.-]`, at most 56 characters, so a FHIR id
//! stays within FHIR's 64.

use gp_fhir::OdsCode;

/// The FHIR id of a practice's native id: `{ODS}-{native}`.
pub fn fhir_id(practice: &OdsCode, native: &str) -> String {
    let mut id = String::with_capacity(practice.as_str().len() + 1 + native.len());
    id.push_str(practice.as_str());
    id.push('-');
    id.push_str(native);
    id
}

/// The practice and native id a FHIR id made by [`fhir_id`] names; `None` for any other
/// id (no hyphen, not an ODS code, an empty native id).
pub fn split_id(id: &str) -> Option<(OdsCode, &str)> {
    let (ods, native) = id.split_once('-')?;
    let ods = OdsCode::parse(ods).ok()?;
    (!native.is_empty() && ods.as_str() == id.get(..ods.as_str().len())?).then_some((ods, native))
}
