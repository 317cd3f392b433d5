//! Notification Bundles in the backport IG's R4 form: a `history` Bundle whose first
//! entry is a `Parameters` subscription status (`backport-subscription-status-r4`),
//! then, for `full-resource` payloads, the changed resources.

use serde_json::{Value, json};

use super::subscription::Content;

pub const NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";
pub const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";

/// What a notification is (R5 `subscription-notification-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Heartbeat => "heartbeat",
            Self::EventNotification => "event-notification",
            Self::QueryStatus => "query-status",
            Self::QueryEvent => "query-event",
        }
    }
}

/// One event in a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub number: i64,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// `{base}/{Type}/{id}` of what changed (left out of `empty` payloads).
    pub focus: Option<String>,
    /// The changed resource (`full-resource` payloads).
    pub resource: Option<Value>,
    /// How the resource changed: `POST` (created), `PUT` (updated) or `DELETE` (gone).
    pub method: &'static str,
}

/// The subscription a status describes.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub base_url: &'a str,
    pub subscription: &'a str,
    pub topic: &'a str,
    pub status: &'a str,
    pub events_since_start: i64,
    pub content: Content,
    pub error: Option<&'a str>,
}

/// The status `Parameters` of `about`, for a notification of `kind` carrying `events`.
pub fn status(about: &About<'_>, kind: Kind, events: &[Event]) -> Value {
    let mut parameter = vec![json!({
        "name": "subscription",
        "valueReference": { "reference": format!("{}/Subscription/{}", about.base_url, about.subscription) }
    })];
    // The topic is left out of empty payloads (the IG: SHOULD NOT be present).
    if about.content != Content::Empty || kind != Kind::EventNotification {
        parameter.push(json!({ "name": "topic", "valueCanonical": about.topic }));
    }
    parameter.push(json!({ "name": "status", "valueCode": about.status }));
    parameter.push(json!({ "name": "type", "valueCode": kind.code() }));
    parameter.push(json!({
        "name": "events-since-subscription-start",
        "valueString": about.events_since_start.to_string()
    }));
    for e in events {
        let mut part = vec![
            json!({ "name": "event-number", "valueString": e.number.to_string() }),
            json!({ "name": "timestamp", "valueInstant": e.timestamp }),
        ];
        if about.content != Content::Empty
            && let Some(focus) = &e.focus
        {
            part.push(json!({ "name": "focus", "valueReference": { "reference": focus } }));
        }
        parameter.push(json!({ "name": "notification-event", "part": part }));
    }
    if let Some(error) = about.error {
        parameter.push(json!({ "name": "error", "valueCodeableConcept": { "text": error } }));
    }
    json!({
        "resourceType": "Parameters",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "profile": [STATUS_PROFILE] },
        "parameter": parameter
    })
}

/// A notification Bundle: `history`, the status first, then each event's resource.
pub fn bundle(about: &About<'_>, kind: Kind, events: &[Event], timestamp: &str) -> Value {
    let status_resource = status(about, kind, events);
    let status_id = status_resource["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut entry = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status_resource,
        "request": { "method": "GET", "url": format!("{}/Subscription/{}/$status", about.base_url, about.subscription) },
        "response": { "status": "200" }
    })];
    if about.content == Content::FullResource {
        for e in events {
            let (Some(resource), Some(focus)) = (&e.resource, &e.focus) else {
                continue;
            };
            let url = focus
                .strip_prefix(about.base_url)
                .map(|p| p.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| focus.clone());
            let status = match e.method {
                "POST" => "201",
                _ => "200",
            };
            entry.push(json!({
                "fullUrl": focus,
                "resource": resource,
                "request": { "method": e.method, "url": url },
                "response": { "status": status }
            }));
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "profile": [NOTIFICATION_PROFILE] },
        "type": "history",
        "timestamp": timestamp,
        "entry": entry
    })
}

/// `$status`'s answer: a searchset of one status per subscription.
pub fn status_bundle(statuses: Vec<Value>) -> Value {
    let entry: Vec<Value> = statuses
        .into_iter()
        .map(|s| {
            json!({
                "fullUrl": format!("urn:uuid:{}", s["id"].as_str().unwrap_or_default()),
                "resource": s,
                "search": { "mode": "match" }
            })
        })
        .collect();
    let total = entry.len();
    let mut b = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": total
    });
    if total > 0 {
        b["entry"] = Value::Array(entry);
    }
    b
}

/// How the change announced by `kind` changed its resource.
pub fn method_of(kind: gp_adapter::ChangeKind) -> &'static str {
    use gp_adapter::ChangeKind as K;
    match kind {
        K::ReadingRecorded | K::DocumentFiled | K::AppointmentBooked | K::Registered => "POST",
        K::AppointmentAmended | K::AppointmentCancelled | K::ContactDetailsChanged => "PUT",
        K::Deregistered => "DELETE",
    }
}

/// The URL of what `event` changed, under `base`.
pub fn focus_url(base: &str, event: &gp_audit::StoredEvent) -> String {
    let e = &event.event;
    match (&e.resource_id, e.resource_type.as_str()) {
        (_, "Patient") => format!("{base}/Patient/{}", e.patient),
        (Some(id), t) => format!("{base}/{t}/{id}"),
        (None, t) => format!("{base}/{t}?patient={}", e.patient),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(content: Content) -> About<'static> {
        About {
            base_url: "https://gw.example/FHIR/R4",
            subscription: "s1",
            topic: "https://gp-gateway.invalid/SubscriptionTopic/document-filed",
            status: "active",
            events_since_start: 7,
            content,
            error: None,
        }
    }

    fn event() -> Event {
        Event {
            number: 7,
            timestamp: "2026-12-07T10:00:00Z".into(),
            focus: Some("https://gw.example/FHIR/R4/DocumentReference/A12345-9".into()),
            resource: Some(json!({ "resourceType": "DocumentReference", "id": "A12345-9" })),
            method: "POST",
        }
    }

    fn params(b: &Value) -> Vec<String> {
        b["entry"][0]["resource"]["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn each_payload_content_carries_what_it_promises() {
        let full = bundle(
            &about(Content::FullResource),
            Kind::EventNotification,
            &[event()],
            "t",
        );
        assert_eq!(full["type"], "history");
        assert_eq!(full["entry"].as_array().unwrap().len(), 2);
        assert_eq!(
            full["entry"][1]["request"]["url"],
            "DocumentReference/A12345-9"
        );
        assert_eq!(full["entry"][1]["response"]["status"], "201");
        let status = &full["entry"][0]["resource"];
        assert_eq!(status["parameter"][3]["valueCode"], "event-notification");
        assert_eq!(status["parameter"][4]["valueString"], "7");
        let part = &status["parameter"][5]["part"];
        assert_eq!(part[0]["valueString"], "7");
        assert_eq!(part[2]["name"], "focus");

        let id_only = bundle(
            &about(Content::IdOnly),
            Kind::EventNotification,
            &[event()],
            "t",
        );
        assert_eq!(id_only["entry"].as_array().unwrap().len(), 1, "no resource");
        assert!(params(&id_only).contains(&"topic".to_owned()));

        let empty = bundle(
            &about(Content::Empty),
            Kind::EventNotification,
            &[event()],
            "t",
        );
        assert!(!params(&empty).contains(&"topic".to_owned()));
        let part = &empty["entry"][0]["resource"]["parameter"][4]["part"];
        assert!(
            part.as_array()
                .unwrap()
                .iter()
                .all(|p| p["name"] != "focus"),
            "an empty payload names no resource"
        );

        let handshake = bundle(&about(Content::Empty), Kind::Handshake, &[], "t");
        assert_eq!(
            params(&handshake),
            [
                "subscription",
                "topic",
                "status",
                "type",
                "events-since-subscription-start"
            ]
        );
    }
}
