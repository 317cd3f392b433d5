//! A supplier's change to a Patient, in every form FHIR clients send one: JSON Patch,
//! JSON Merge Patch (RFC 7386; fhirpy's `patch()` sends a partial resource), FHIRPath
//! Patch (a `Parameters` body) and the whole resource (`PUT`). Each form is turned into the
//! new Patient; then one check runs for all of them ([`contact_details`]): only the
//! writable elements may differ from the current Patient, and what they hold must be
//! contact details a GP record holds.

use gp_adapter::ContactDetails;
use gp_fhir::format::PatchFormat;
use gp_fhir::{FhirError, IssueType, SpineCode};
use serde_json::{Map, Value};

use crate::patch::{Op, WRITABLE};
use crate::write_body::{Invalid, object};

/// A change to a Patient, as parsed (nothing looked up yet: a malformed body is refused
/// before any GP system is asked).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `application/json-patch+json`.
    JsonPatch(Vec<Op>),
    /// `application/merge-patch+json`, or a partial resource as FHIR JSON.
    MergePatch(Value),
    /// A `Parameters` body as FHIR JSON.
    FhirPathPatch(Vec<crate::fhirpath_patch::Operation>),
    /// `PUT`: the whole new Patient.
    Replace(Value),
}

/// `meta` members the server manages: a body's are ignored (FHIR: "the server SHALL
/// ignore" a sent `versionId` and `lastUpdated`).
const SERVER_META: &[&str] = &["versionId", "lastUpdated"];

impl Change {
    /// A PATCH body in `format`.
    pub fn patch(format: PatchFormat, body: &[u8]) -> Result<Self, Invalid> {
        if format == PatchFormat::JsonPatch {
            return crate::patch::parse(body).map(Self::JsonPatch);
        }
        if body.is_empty() {
            return Err(Invalid::request(
                "the request has no body (a partial Patient, a JSON Merge Patch, or a FHIRPath Patch Parameters)",
            ));
        }
        let value =
            gp_fhir::validate::precheck_json(body).map_err(|e| Invalid::request(e.to_string()))?;
        match &value {
            Value::Object(o)
                if format == PatchFormat::Fhir
                    && o.get("resourceType").and_then(Value::as_str) == Some("Parameters") =>
            {
                crate::fhirpath_patch::parse(&value).map(Self::FhirPathPatch)
            }
            Value::Object(_) => Ok(Self::MergePatch(value)),
            Value::Array(_) => Err(Invalid::request(
                "a JSON array is a JSON Patch: send it as application/json-patch+json",
            )),
            _ => Err(Invalid::request(
                "a merge patch is a JSON object: the Patient elements to change",
            )),
        }
    }

    /// A PUT body for `Patient/{id}`: a Patient whose id is `id`.
    pub fn put(id: &str, body: &[u8]) -> Result<Self, Invalid> {
        let value = crate::write_body::parse_json(body)?;
        let resource_type = value
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if resource_type != "Patient" {
            return Err(Invalid::request(format!(
                "PUT /Patient/{} takes a Patient, not a {}",
                crate::routes::shown(id),
                crate::routes::shown(resource_type)
            )));
        }
        match value.get("id") {
            Some(Value::String(body_id)) if body_id == id => Ok(Self::Replace(value)),
            Some(other) => Err(Invalid::request(format!(
                "the Patient's id {} is not the id in the URL, {}: an update keeps the id",
                crate::routes::shown(&other.to_string()),
                crate::routes::shown(id)
            ))),
            None => Err(Invalid::request(format!(
                "the Patient has no id: an update sends the resource with its id ({})",
                crate::routes::shown(id)
            ))),
        }
    }

    /// The new Patient: this change made to `current`.
    pub fn apply(&self, current: &Value) -> Result<Value, Invalid> {
        let mut doc = current.clone();
        match self {
            Self::JsonPatch(ops) => crate::patch::apply(&mut doc, ops)?,
            Self::MergePatch(patch) => json_patch::merge(&mut doc, patch),
            Self::FhirPathPatch(ops) => crate::fhirpath_patch::apply(&mut doc, ops)?,
            Self::Replace(new) => doc = new.clone(),
        }
        Ok(doc)
    }
}

/// Elements a change may not make differ from the current Patient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} may not be changed by a supplier (writable: telecom, address, communication): send every other element as a read gives it (meta and text may be left out); if the record changed since you read it, read it again",
    .0.join(", ")
)]
pub struct Unchangeable(pub Vec<String>);

impl FhirError for Unchangeable {
    fn status(&self) -> u16 {
        422
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::InvalidResource
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Forbidden
    }
    fn expression(&self) -> Vec<String> {
        self.0.clone()
    }
}

/// The elements outside [`WRITABLE`] where `new` differs from `current`, as FHIRPaths.
/// The server's `meta.versionId` and `meta.lastUpdated` are ignored; `meta` and `text`
/// (which the gateway writes) may be left out.
pub fn unchangeable(current: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<&String> = current.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let (was, now) = (current.get(key), new.get(key));
        match key.as_str() {
            k if WRITABLE.contains(&k) => {}
            "meta" | "text" if now.is_none() => {}
            "meta" => {
                let none = Map::new();
                let was = was.and_then(Value::as_object).unwrap_or(&none);
                let Some(now) = now.and_then(Value::as_object) else {
                    out.push("Patient.meta".into());
                    continue;
                };
                let mut members: Vec<&String> = was.keys().chain(now.keys()).collect();
                members.sort();
                members.dedup();
                out.extend(
                    members
                        .into_iter()
                        .filter(|m| {
                            !SERVER_META.contains(&m.as_str()) && was.get(*m) != now.get(*m)
                        })
                        .map(|m| format!("Patient.meta.{}", crate::routes::shown(m))),
                );
            }
            _ if was != now => out.push(format!("Patient.{}", crate::routes::shown(key))),
            _ => {}
        }
    }
    out
}

/// Checks the new Patient against the current one and turns it into what the GP system
/// records: only the writable elements may differ, and they must be UK Core contact
/// details a GP record holds.
pub fn contact_details(
    current: &Value,
    new: &Value,
) -> Result<ContactDetails, crate::error::Rescue> {
    let was = object(current, "Patient")?;
    let now = object(new, "Patient")?;
    let differing = unchangeable(was, now);
    if !differing.is_empty() {
        return Err(Unchangeable(differing).into());
    }
    Ok(crate::patch::contact_details(new)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gp_fhir::FhirError;
    use serde_json::json;

    fn current() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "9000000009",
            "meta": {"versionId": "v1", "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Smith</div>"},
            "name": [{"family": "Smith"}],
            "birthDate": "1970-01-01",
            "telecom": [{"system": "phone", "value": "01632 960001", "use": "home"}]
        })
    }

    fn differing(new: &Value) -> Vec<String> {
        unchangeable(current().as_object().unwrap(), new.as_object().unwrap())
    }

    #[test]
    fn only_writable_and_server_managed_elements_may_differ() {
        let mut new = current();
        new["telecom"] = json!([{"system": "email", "value": "a@example.com"}]);
        new["address"] = json!([{"line": ["1 A St"], "city": "Leeds", "postalCode": "LS1 1AA"}]);
        new["meta"]["versionId"] = json!("stale");
        new["meta"]["lastUpdated"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(differing(&new), Vec::<String>::new());
        let o = new.as_object_mut().unwrap();
        o.remove("meta");
        o.remove("text");
        assert_eq!(
            differing(&new),
            Vec::<String>::new(),
            "meta and text may be left out"
        );

        let mut new = current();
        new["name"][0]["family"] = json!("Hacker");
        new["gender"] = json!("other");
        new["meta"]["profile"] = json!([]);
        new["meta"]["source"] = json!("x");
        new["text"]["div"] = json!("<div>other</div>");
        new.as_object_mut().unwrap().remove("birthDate");
        assert_eq!(
            differing(&new),
            [
                "Patient.birthDate",
                "Patient.gender",
                "Patient.meta.profile",
                "Patient.meta.source",
                "Patient.name",
                "Patient.text"
            ]
        );
        new["meta"] = json!("x");
        assert!(differing(&new).contains(&"Patient.meta".to_owned()));
        let mut new = current();
        new.as_object_mut().unwrap().remove("meta");
        new["meta"] = json!({"versionId": "x", "tag": []});
        let mut cur = current();
        cur.as_object_mut().unwrap().remove("meta");
        assert_eq!(
            unchangeable(cur.as_object().unwrap(), new.as_object().unwrap()),
            ["Patient.meta.tag"]
        );
    }

    #[test]
    fn a_refusal_names_every_element_in_expression() {
        let mut new = current();
        new["name"] = json!([]);
        new["birthDate"] = json!("1980-01-01");
        let err = contact_details(&current(), &new).unwrap_err();
        let outcome = err.error.to_string();
        assert!(
            outcome.contains("Patient.birthDate, Patient.name"),
            "{outcome}"
        );
        let e = Unchangeable(differing(&new));
        assert_eq!(e.status(), 422);
        assert_eq!(e.expression(), ["Patient.birthDate", "Patient.name"]);
    }

    #[test]
    fn bodies_are_read_by_format() {
        let merge = br#"{"telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}], "address": null}"#;
        for format in [PatchFormat::MergePatch, PatchFormat::Fhir] {
            let change = Change::patch(format, merge).unwrap();
            let new = change.apply(&current()).unwrap();
            assert_eq!(new["telecom"][0]["use"], "mobile");
            assert_eq!(new["name"], current()["name"]);
            assert!(new.get("address").is_none());
        }
        let parameters = br#"{"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.telecom[0]"}]}]}"#;
        assert!(matches!(
            Change::patch(PatchFormat::Fhir, parameters).unwrap(),
            Change::FhirPathPatch(_)
        ));
        // As a merge patch, a Parameters body would turn the Patient into one: refused.
        let change = Change::patch(PatchFormat::MergePatch, parameters).unwrap();
        let new = change.apply(&current()).unwrap();
        assert!(differing(&new).contains(&"Patient.resourceType".to_owned()));
        // A JSON Patch sent as FHIR JSON is told where it belongs.
        let err = Change::patch(PatchFormat::Fhir, b"[]").unwrap_err();
        assert!(
            err.message.contains("application/json-patch+json"),
            "{}",
            err.message
        );
        for (format, body) in [
            (PatchFormat::Fhir, &b"[]"[..]),
            (PatchFormat::MergePatch, b"\"x\""),
            (PatchFormat::Fhir, b""),
            (PatchFormat::Fhir, b"{"),
            (PatchFormat::JsonPatch, b"{}"),
        ] {
            let err = Change::patch(format, body).unwrap_err();
            assert_eq!(
                err.status,
                400,
                "{format:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_put_body_is_the_patient_with_the_urls_id() {
        let ok = serde_json::to_vec(&current()).unwrap();
        assert!(matches!(
            Change::put("9000000009", &ok),
            Ok(Change::Replace(_))
        ));
        let mut other = current();
        other["id"] = json!("9000000017");
        let mut none = current();
        none.as_object_mut().unwrap().remove("id");
        let mut observation = current();
        observation["resourceType"] = json!("Observation");
        for body in [other, none, observation] {
            let err = Change::put("9000000009", &serde_json::to_vec(&body).unwrap()).unwrap_err();
            assert_eq!(err.status, 400, "{}", err.message);
        }
    }
}
