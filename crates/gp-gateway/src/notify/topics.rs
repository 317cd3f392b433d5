//! The subscription topics the gateway publishes: what a supplier can subscribe to, and
//! the changes each announces. Each is read at `GET /Basic/{code}` in the backport IG's
//! R4 form (a `Basic` carrying the R5 SubscriptionTopic's elements as cross-version
//! extensions), listed at `GET /Basic?code=SubscriptionTopic`, and advertised in the
//! CapabilityStatement's Subscription entry.

use gp_adapter::ChangeKind;
use serde_json::{Value, json};

/// Where the topics' canonical URLs hang (as the gateway's other definitions do).
pub const CANONICAL_BASE: &str = "https://gp-gateway.invalid/SubscriptionTopic/";

/// The R5 SubscriptionTopic elements' cross-version extensions.
const EXT: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";

/// One topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    /// Its id (`Basic/{code}`) and the last segment of its canonical URL.
    pub code: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// The changes it announces.
    pub kinds: &'static [ChangeKind],
}

impl Topic {
    /// Its canonical URL: what `Subscription.criteria` names.
    pub fn canonical(&self) -> String {
        format!("{CANONICAL_BASE}{}", self.code)
    }

    /// The resource types its changes are to, in order, once each.
    pub fn resource_types(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for k in self.kinds {
            if !out.contains(&k.resource_type()) {
                out.push(k.resource_type());
            }
        }
        out
    }

    /// True when the topic announces changes of `kind`.
    pub fn announces(&self, kind: ChangeKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Every topic.
pub const TOPICS: &[Topic] = &[
    Topic {
        code: "patient-record-changed",
        title: "Patient record changed",
        description: "A patient's record changed: a reading recorded, a document filed, an appointment booked, amended or cancelled, or contact details changed, whether through this gateway (by any supplier) or at the practice. Filter by resource type (Observation, DocumentReference, Appointment, Patient), patient or practice.",
        kinds: &[
            ChangeKind::ReadingRecorded,
            ChangeKind::DocumentFiled,
            ChangeKind::AppointmentBooked,
            ChangeKind::AppointmentAmended,
            ChangeKind::AppointmentCancelled,
            ChangeKind::ContactDetailsChanged,
        ],
    },
    Topic {
        code: "appointment-changed",
        title: "Appointment booked, amended or cancelled",
        description: "An appointment was booked, amended or cancelled, by a supplier through this gateway or at the practice.",
        kinds: &[
            ChangeKind::AppointmentBooked,
            ChangeKind::AppointmentAmended,
            ChangeKind::AppointmentCancelled,
        ],
    },
    Topic {
        code: "document-filed",
        title: "Document filed",
        description: "A document was filed in a patient's record, by a supplier through this gateway or at the practice.",
        kinds: &[ChangeKind::DocumentFiled],
    },
    Topic {
        code: "registration-changed",
        title: "Patient registration changed",
        description: "A patient registered at, or left, a practice the supplier is paired with.",
        kinds: &[ChangeKind::Registered, ChangeKind::Deregistered],
    },
];

/// The topic a canonical URL names.
pub fn by_canonical(url: &str) -> Option<&'static Topic> {
    let code = url.strip_prefix(CANONICAL_BASE)?;
    TOPICS.iter().find(|t| t.code == code)
}

/// The topic `Basic/{code}` is.
pub fn by_code(code: &str) -> Option<&'static Topic> {
    TOPICS.iter().find(|t| t.code == code)
}

/// The filters every topic takes: `{param}`, each optionally prefixed `{Type}?`.
pub const FILTERS: &[(&str, &str)] = &[
    (
        "patient",
        "the NHS number, Patient/{nhsNumber} or https://fhir.nhs.uk/Id/nhs-number|{nhsNumber}",
    ),
    (
        "practice",
        "the practice's ODS code, or https://fhir.nhs.uk/Id/ods-organization-code|{ODS}: a practice you are paired with",
    ),
    (
        "_type",
        "resource types, comma-separated (Observation, DocumentReference, Appointment, Patient); a filter's `{Type}?` prefix does the same",
    ),
];

/// The topic in the backport IG's R4 form: a `Basic` with the SubscriptionTopic's
/// elements as cross-version extensions.
pub fn as_basic(t: &Topic, date: &str) -> Value {
    let mut extension = vec![
        json!({ "url": format!("{EXT}url"), "valueUri": t.canonical() }),
        json!({ "url": format!("{EXT}version"), "valueString": env!("CARGO_PKG_VERSION") }),
        json!({ "url": format!("{EXT}name"), "valueString": t.code }),
        json!({ "url": format!("{EXT}title"), "valueString": t.title }),
        json!({ "url": format!("{EXT}date"), "valueDateTime": date }),
        json!({ "url": format!("{EXT}description"), "valueMarkdown": t.description }),
    ];
    for rt in t.resource_types() {
        let mut trigger = vec![
            json!({ "url": "description", "valueMarkdown": format!("A {rt} changed: {}", kinds_of(t, rt)) }),
            json!({ "url": "resource", "valueUri": format!("http://hl7.org/fhir/StructureDefinition/{rt}") }),
        ];
        for interaction in interactions_of(t, rt) {
            trigger.push(json!({ "url": "supportedInteraction", "valueCode": interaction }));
        }
        extension.push(json!({ "url": format!("{EXT}resourceTrigger"), "extension": trigger }));
    }
    for rt in t.resource_types() {
        for (param, doc) in FILTERS {
            extension.push(json!({
                "url": format!("{EXT}canFilterBy"),
                "extension": [
                    { "url": "description", "valueMarkdown": *doc },
                    { "url": "resource", "valueUri": rt },
                    { "url": "filterParameter", "valueString": *param }
                ]
            }));
        }
        extension.push(json!({
            "url": format!("{EXT}notificationShape"),
            "extension": [{ "url": "resource", "valueUri": rt }]
        }));
    }
    json!({
        "resourceType": "Basic",
        "id": t.code,
        "modifierExtension": [{ "url": format!("{EXT}status"), "valueCode": "active" }],
        "extension": extension,
        "code": { "coding": [{ "system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic" }] }
    })
}

fn kinds_of(t: &Topic, rt: &str) -> String {
    t.kinds
        .iter()
        .filter(|k| k.resource_type() == rt)
        .map(|k| k.code())
        .collect::<Vec<_>>()
        .join(", ")
}

fn interactions_of(t: &Topic, rt: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for k in t.kinds.iter().filter(|k| k.resource_type() == rt) {
        let i = match k {
            ChangeKind::ReadingRecorded
            | ChangeKind::DocumentFiled
            | ChangeKind::AppointmentBooked
            | ChangeKind::Registered => "create",
            ChangeKind::AppointmentAmended
            | ChangeKind::AppointmentCancelled
            | ChangeKind::ContactDetailsChanged => "update",
            ChangeKind::Deregistered => "delete",
        };
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_announced_by_some_topic_and_canonicals_round_trip() {
        for k in ChangeKind::ALL {
            assert!(TOPICS.iter().any(|t| t.announces(k)), "{k:?}");
        }
        for t in TOPICS {
            assert_eq!(by_canonical(&t.canonical()), Some(t));
            assert_eq!(by_code(t.code), Some(t));
        }
        assert_eq!(
            by_canonical("https://gp-gateway.invalid/SubscriptionTopic/nope"),
            None
        );
        assert_eq!(by_canonical("patient-record-changed"), None);
        let record = by_code("patient-record-changed").unwrap();
        assert_eq!(
            record.resource_types(),
            ["Observation", "DocumentReference", "Appointment", "Patient"]
        );
        assert!(!record.announces(ChangeKind::Registered));
    }

    #[test]
    fn the_r4_form_carries_the_canonical_and_the_triggers() {
        let t = by_code("registration-changed").unwrap();
        let b = as_basic(t, "2026-12-07");
        assert_eq!(b["resourceType"], "Basic");
        assert_eq!(b["code"]["coding"][0]["code"], "SubscriptionTopic");
        let ext = b["extension"].as_array().unwrap();
        assert_eq!(ext[0]["valueUri"], t.canonical());
        let trigger = ext
            .iter()
            .find(|e| e["url"].as_str().unwrap().ends_with("resourceTrigger"))
            .unwrap();
        let codes: Vec<&str> = trigger["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["url"] == "supportedInteraction")
            .map(|e| e["valueCode"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["create", "delete"]);
    }
}
