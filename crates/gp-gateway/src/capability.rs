//! The CapabilityStatement, generated from the route table and what the configured
//! adapters support — never written by hand.

use gp_adapter::ClinicalType;
use serde_json::{Value, json};

use crate::routes::{Interaction, served, served_system};

/// Search parameters each served type accepts, as the router parses them.
fn search_params(resource_type: &str) -> Value {
    if resource_type == "AuditEvent" {
        return json!([
            { "name": "patient", "type": "reference", "documentation": "the NHS number" },
            { "name": "agent", "type": "token", "documentation": "a client id (operators only; suppliers see their own rows)" },
            { "name": "date", "type": "date", "documentation": "prefixes eq, ge, gt, le, lt" },
            { "name": "_count", "type": "number", "documentation": "1 to 1000, most recent first" }
        ]);
    }
    if resource_type == "Slot" {
        return json!([
            { "name": "start", "type": "date", "documentation": "ge{date} (required): the first day searched" },
            { "name": "end", "type": "date", "documentation": "le{date} (required): the last day searched, at most 14 days after start" },
            { "name": "status", "type": "token", "documentation": "free (required): the only status offered to third parties" },
            { "name": "practice", "definition": PRACTICE_PARAMETER, "type": "token", "documentation": "the practice's ODS code, or https://fhir.nhs.uk/Id/ods-organization-code|{ODS}; without it, every practice you are paired with" },
            { "name": "delivery-channel", "type": "token", "documentation": "In-person, Telephone or Video" },
            { "name": "service-type", "type": "string", "documentation": "the slot type (Slot.serviceType.text)" }
        ]);
    }
    if resource_type == "DocumentReference" {
        return json!([
            { "name": "patient", "type": "reference", "documentation": "the NHS number, Patient/{nhsNumber} or https://fhir.nhs.uk/Id/nhs-number|{nhsNumber} (required)" },
            { "name": "date", "type": "date", "documentation": "when the practice received it (indexed): prefixes ge, gt, le, lt" },
            { "name": "created", "type": "date", "documentation": "when the document was created: prefixes ge, gt, le, lt" },
            { "name": "type", "type": "token", "documentation": "SNOMED CT record artifact: http://snomed.info/sct|{code} or {code}" },
            { "name": "author", "type": "reference", "documentation": "the author organisation's ODS code; author:identifier=https://fhir.nhs.uk/Id/ods-organization-code|{ODS}" },
            { "name": "_count", "type": "number", "documentation": "page size; follow Bundle.link next" }
        ]);
    }
    if resource_type == "Binary" {
        return json!([]);
    }
    if resource_type == "Subscription" {
        return json!([
            { "name": "status", "type": "token", "documentation": "requested, active, error or off (comma-separated: any of them)" }
        ]);
    }
    if resource_type == "Basic" {
        return json!([
            { "name": "code", "type": "token", "documentation": "SubscriptionTopic (the only Basic served)" },
            { "name": "url", "type": "uri", "documentation": "a topic's canonical URL" }
        ]);
    }
    if resource_type == "Appointment" {
        return json!([
            { "name": "patient", "type": "reference", "documentation": "the NHS number, Patient/{nhsNumber} or https://fhir.nhs.uk/Id/nhs-number|{nhsNumber} (required)" },
            { "name": "date", "type": "date", "documentation": "date=ge{date}&date=le{date} (required): from today on, at most 31 days; booked and cancelled appointments overlapping it" }
        ]);
    }
    // As the parser reads them (gp_fhir::search), so the two cannot disagree.
    // `_include` / `_revinclude` are declared as searchInclude / searchRevInclude.
    let params: Vec<Value> = gp_fhir::search::search_params(resource_type)
        .into_iter()
        .filter(|p| !matches!(p.name, "_include" | "_revinclude"))
        .map(|p| json!({ "name": p.name, "type": p.kind, "documentation": p.documentation }))
        .collect();
    Value::Array(params)
}

/// The canonical URL of the `practice` search parameter of `GET /Slot`.
pub const PRACTICE_PARAMETER: &str = "https://gp-gateway.invalid/SearchParameter/Slot-practice";

/// What `meta.versionId` a type's resources carry: Patient's is its record version, its
/// update version-aware; a type served by vread carries its content version; the rest none.
fn versioning(t: &str, interactions: &[Interaction]) -> &'static str {
    if t == "Patient" {
        "versioned-update"
    } else if interactions.contains(&Interaction::Vread) {
        "versioned"
    } else {
        "no-version"
    }
}

/// The profile a served type's resources claim: UK Core's, except the Bundle, which UK
/// Core does not profile.
fn profile(t: &str) -> String {
    match t {
        "Bundle" | "Binary" => format!("http://hl7.org/fhir/StructureDefinition/{t}"),
        t => format!("{}{t}", gp_fhir::model::UK_CORE_PROFILE_BASE),
    }
}

/// The Subscription entry's backport parts: the topics (the IG's
/// `capabilitystatement-subscriptiontopic-canonical`), the profile, `$status` and `$events`.
fn subscription_entry(resource: &mut Value) {
    let extension: Vec<Value> = crate::notify::topics::TOPICS
        .iter()
        .map(|t| {
            json!({
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
                "valueCanonical": t.canonical()
            })
        })
        .collect();
    resource["extension"] = Value::Array(extension);
    resource["profile"] = json!("http://hl7.org/fhir/StructureDefinition/Subscription");
    resource["supportedProfile"] = json!([crate::notify::subscription::PROFILE]);
    resource["versioning"] = json!("no-version");
    resource["conditionalCreate"] = json!(false);
    resource["operation"] = json!([
        { "name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status" },
        { "name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events" }
    ]);
    resource["documentation"] = json!(
        "rest-hook subscriptions to the topics listed (GET /Basic?code=SubscriptionTopic): notifications POSTed to your HTTPS endpoint, signed the Standard Webhooks way (v1a, Ed25519; key in /oauth2/jwks), decided at delivery time under the release rules."
    );
}

/// Builds the CapabilityStatement for the types the adapters support.
pub fn capability_statement(
    base_url: &str,
    clinical: &[ClinicalType],
    appointments: bool,
    documents: bool,
    notifications: bool,
    date: &str,
    token_url: Option<&str>,
) -> Value {
    let resources: Vec<Value> = served(clinical)
        .into_iter()
        // Slots and appointments only where some GP system manages appointments.
        .filter(|(t, _)| appointments || !matches!(*t, "Slot" | "Appointment"))
        // Documents only where some GP system manages documents.
        .filter(|(t, _)| documents || !matches!(*t, "DocumentReference" | "Binary"))
        // Subscriptions and their topics only where notifications are configured.
        .filter(|(t, _)| notifications || !matches!(*t, "Subscription" | "Basic"))
        .map(|(t, interactions)| {
            let mut resource = json!({
                "type": t,
                "profile": profile(t),
                "interaction": interactions.iter().map(|i| json!({ "code": i.code() })).collect::<Vec<_>>(),
                "conditionalCreate": matches!(t, "Observation" | "Appointment" | "DocumentReference"),
                // Patient reads carry meta.versionId and its ETag, and its update is
                // version-aware (If-Match). Record entries carry a versionId naming their
                // content (vread serves the current one; GP systems keep no history).
                "versioning": versioning(t, &interactions),
                "readHistory": false,
            });
            // A type that is only read has none (FHIR JSON has no empty arrays).
            let params = search_params(t);
            if params.as_array().is_some_and(|p| !p.is_empty()) {
                resource["searchParam"] = params;
            }
            // From the one table the parser and the resolver read (gp_fhir::include); a
            // free-slot search follows the Schedule's and Location's references too.
            let includes: Vec<String> = if t == "Slot" {
                crate::routes::SLOT_INCLUDES.iter().map(|i| (*i).to_owned()).collect()
            } else {
                gp_fhir::include::includes_of(t)
                    .map(gp_fhir::include::IncludeDef::name)
                    .collect()
            };
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            // Types returned only as a free-slot search's includes, each with its profile.
            if t == "Binary" {
                resource["documentation"] = json!(
                    "A document's content: GET answers the bytes with their Content-Type (or a FHIR Binary with base64 data when application/fhir+json is asked for) and needs system/Binary.r; POST stages content for a DocumentReference to file (application/pdf, text/plain or text/html with X-Security-Context: Patient/{nhsNumber}, or a FHIR Binary) and needs system/DocumentReference.c."
                );
            }
            if t == "Slot" {
                resource["documentation"] = json!(format!(
                    "Free slots. Their includes are Schedule ({}), Practitioner ({}), PractitionerRole ({}), Location ({}) and Organization ({}); Schedule, Location and PractitionerRole are not read on their own.",
                    profile("Schedule"),
                    profile("Practitioner"),
                    profile("PractitionerRole"),
                    profile("Location"),
                    profile("Organization")
                ));
            }
            if t == "Subscription" {
                subscription_entry(&mut resource);
            }
            if t == "Basic" {
                resource["documentation"] = json!(
                    "Subscription topics only (code SubscriptionTopic), in the Subscriptions Backport IG's R4 form: no token needed."
                );
                resource["profile"] = json!("http://hl7.org/fhir/StructureDefinition/Basic");
            }
            let revincludes: Vec<String> = gp_fhir::include::revincludes_of(t)
                .map(gp_fhir::include::IncludeDef::name)
                .collect();
            if !revincludes.is_empty() {
                resource["searchRevInclude"] = json!(revincludes);
            }
            resource
        })
        .collect();
    let security = if let Some(token_url) = token_url {
        json!({
            // Where SMART clients' discovery (fhir-kit-client, the SMART JS client) looks
            // for the token endpoint.
            "extension": [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{ "url": "token", "valueUri": token_url }]
            }],
            "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
            "description": "OAuth2 client credentials with signed JWT client assertions (SMART Backend Services)"
        })
    } else {
        json!({ "description": "OPEN SANDBOX: no authentication. Never deploy this mode." })
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "gp-gateway",
        "kind": "instance",
        "software": { "name": "gp-gateway", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "gp-gateway FHIR API for GP records", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        // JSON Patch, JSON Merge Patch, and FHIRPath Patch (a Parameters resource).
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "resource": resources,
            "interaction": served_system().iter().map(|i| json!({
                "code": i.code(),
                "documentation": "a batch Bundle of reads and searches (GET entries, at most 100): each entry is authorised, charged to the rate limit and audited as its own request"
            })).collect::<Vec<_>>(),
            "operation": [{
                "name": "gpc.getstructuredrecord",
                "definition": "https://fhir.nhs.uk/OperationDefinition/GPConnect-GetStructuredRecord-Operation-1",
                "documentation": "POST /Patient/$gpc.getstructuredrecord with a Parameters body: a collection Bundle of the patient's record, one List per clinical area"
            }, {
                "name": "access-log",
                "definition": "https://gp-gateway.invalid/OperationDefinition/access-log",
                "documentation": "GET /Patient/{nhsNumber}/$access-log: who accessed the patient's record (suppliers by name, when, what), for the patient or the service desk; system/AuditEvent.r"
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(documents: bool) -> Vec<String> {
        let c = capability_statement(
            "https://gw.example/FHIR/R4",
            &[ClinicalType::Observation],
            true,
            documents,
            true,
            "2026-12-07",
            None,
        );
        c["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn documents_are_offered_only_where_a_gp_system_manages_them() {
        let without = types(false);
        assert!(
            !without
                .iter()
                .any(|t| t == "DocumentReference" || t == "Binary")
        );
        let with = types(true);
        assert!(with.iter().any(|t| t == "DocumentReference"));
        assert!(with.iter().any(|t| t == "Binary"));
        let c = capability_statement("b", &[], false, true, false, "d", None);
        let doc = c["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "DocumentReference")
            .unwrap()
            .clone();
        assert_eq!(doc["conditionalCreate"], true);
        let params: Vec<&str> = doc["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            params,
            ["patient", "date", "created", "type", "author", "_count"]
        );
    }
}
