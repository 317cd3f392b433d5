//! A Subscription as suppliers write it (R4, the backport IG's `backport-subscription`
//! profile), checked element by element, and as the gateway answers it.
//!
//! ```json
//! { "resourceType": "Subscription", "status": "requested", "reason": "New readings",
//!   "criteria": "https://gp-gateway.invalid/SubscriptionTopic/patient-record-changed",
//!   "_criteria": { "extension": [{ "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
//!                                  "valueString": "Observation?patient=9000000009" }] },
//!   "channel": { "type": "rest-hook", "endpoint": "https://app.example/hooks/gp",
//!     "payload": "application/fhir+json",
//!     "_payload": { "extension": [{ "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
//!                                   "valueCode": "id-only" }] },
//!     "header": ["Authorization: Bearer …"] } }
//! ```

use gp_fhir::ids::{NHS_NUMBER_SYSTEM, ODS_CODE_SYSTEM};
use gp_fhir::{NhsNumber, OdsCode};
use serde_json::{Map, Value, json};

use super::topics::{self, Topic};
use crate::write_body::Invalid;

pub const PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
pub const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
pub const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
pub const HEARTBEAT_PERIOD: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
pub const TIMEOUT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout";
pub const MAX_COUNT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count";

/// The shortest heartbeat period accepted (seconds).
pub const MIN_HEARTBEAT_SECS: u64 = 10;
/// Headers a subscription may ask deliveries to carry.
pub const MAX_HEADERS: usize = 10;

/// How much of the changed resource a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Nothing but the subscription's status and the event's number.
    Empty,
    /// The changed resource's URL (`focus`).
    IdOnly,
    /// The changed resource itself, as a read would answer it now.
    FullResource,
}

impl Content {
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::IdOnly => "id-only",
            Self::FullResource => "full-resource",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [Self::Empty, Self::IdOnly, Self::FullResource]
            .into_iter()
            .find(|c| c.code() == code)
    }
}

/// What a subscription's filters let through (all must hold: filters are ANDed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub patient: Option<NhsNumber>,
    pub practice: Option<OdsCode>,
    /// Resource types allowed (`None`: every type of the topic).
    pub types: Option<Vec<&'static str>>,
}

impl Filters {
    /// True when an event of `kind`, about `patient` at `practice`, passes.
    pub fn pass(&self, resource_type: &str, patient: &str, practice: &str) -> bool {
        self.patient.is_none_or(|p| p.to_string() == patient)
            && self
                .practice
                .as_ref()
                .is_none_or(|o| o.as_str() == practice)
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(&resource_type))
    }
}

/// A subscription's meaning, read from its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub topic: &'static Topic,
    pub filters: Filters,
    pub endpoint: String,
    pub content: Content,
    /// Seconds between heartbeats (`None`: no heartbeats).
    pub heartbeat_secs: Option<u64>,
    /// The delivery time limit the supplier asked for (seconds).
    pub timeout_secs: Option<u64>,
    /// `channel.header` entries, as given.
    pub headers: Vec<String>,
}

impl Spec {
    /// True when `event` is one this subscription announces.
    pub fn wants(&self, kind: gp_adapter::ChangeKind, patient: &str, practice: &str) -> bool {
        self.topic.announces(kind) && self.filters.pass(kind.resource_type(), patient, practice)
    }
}

fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).filter(|v| !v.is_null())
}

fn string<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a str>, Invalid> {
    match field(o, name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
        Some(_) => Err(Invalid::resource(path, "must be a non-empty string")),
    }
}

/// The elements a Subscription may carry; any other is refused by name.
const ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "text",
    "extension",
    "status",
    "contact",
    "end",
    "reason",
    "criteria",
    "_criteria",
    "error",
    "channel",
];
const CHANNEL_ELEMENTS: &[&str] = &[
    "type",
    "endpoint",
    "payload",
    "_payload",
    "header",
    "extension",
];

/// Reads and checks a Subscription a supplier sent; `endpoint_check` checks the
/// endpoint's URL (the policy in [`super::endpoint`]).
pub fn parse(
    v: &Value,
    endpoint_check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Spec, Invalid> {
    let o = crate::write_body::object(v, "Subscription")?;
    if o.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(Invalid::request("the body must be a Subscription resource"));
    }
    for k in o.keys() {
        if !ELEMENTS.contains(&k.as_str()) {
            return Err(Invalid::resource(
                format!("Subscription.{k}"),
                "is not an element a Subscription of this gateway takes",
            ));
        }
    }
    if let Some(status) = string(o, "status", "Subscription.status")?
        && !matches!(status, "requested" | "active")
    {
        return Err(Invalid::resource(
            "Subscription.status",
            "must be requested (the gateway makes it active once the handshake is delivered)",
        ));
    }
    if field(o, "end").is_some() {
        return Err(Invalid::resource(
            "Subscription.end",
            "is not supported: delete the subscription when it is no longer wanted",
        ));
    }
    let criteria = string(o, "criteria", "Subscription.criteria")?.ok_or_else(|| {
        Invalid::resource(
            "Subscription.criteria",
            "is required: a topic's canonical URL",
        )
    })?;
    let topic = topics::by_canonical(criteria).ok_or_else(|| {
        Invalid::resource(
            "Subscription.criteria",
            format!(
                "must be the canonical URL of a topic this gateway publishes ({})",
                topics::TOPICS
                    .iter()
                    .map(Topic::canonical)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let mut filters = Filters::default();
    if let Some(c) = field(o, "_criteria") {
        let c = crate::write_body::object(c, "Subscription.criteria")?;
        for k in c.keys() {
            if k != "extension" {
                return Err(Invalid::resource(
                    format!("Subscription.criteria.{k}"),
                    "is not taken",
                ));
            }
        }
        if let Some(exts) = field(c, "extension") {
            let exts = crate::write_body::array(exts, "Subscription.criteria.extension")?;
            for (i, e) in exts.iter().enumerate() {
                let path = format!("Subscription.criteria.extension[{i}]");
                let e = crate::write_body::object(e, &path)?;
                if e.get("url").and_then(Value::as_str) != Some(FILTER_CRITERIA) {
                    return Err(Invalid::resource(
                        format!("{path}.url"),
                        format!("must be {FILTER_CRITERIA}"),
                    ));
                }
                let text =
                    string(e, "valueString", &format!("{path}.valueString"))?.ok_or_else(|| {
                        Invalid::resource(format!("{path}.valueString"), "is required")
                    })?;
                add_filter(&mut filters, topic, text)
                    .map_err(|m| Invalid::resource(format!("{path}.valueString"), m))?;
            }
        }
    }
    let channel = field(o, "channel")
        .ok_or_else(|| Invalid::resource("Subscription.channel", "is required"))?;
    let ch = crate::write_body::object(channel, "Subscription.channel")?;
    for k in ch.keys() {
        if !CHANNEL_ELEMENTS.contains(&k.as_str()) {
            return Err(Invalid::resource(
                format!("Subscription.channel.{k}"),
                "is not an element a channel of this gateway takes",
            ));
        }
    }
    match string(ch, "type", "Subscription.channel.type")? {
        Some("rest-hook") => {}
        _ => {
            return Err(Invalid::resource(
                "Subscription.channel.type",
                "must be rest-hook (the only channel this gateway delivers on)",
            ));
        }
    }
    let endpoint = string(ch, "endpoint", "Subscription.channel.endpoint")?
        .ok_or_else(|| Invalid::resource("Subscription.channel.endpoint", "is required"))?;
    endpoint_check(endpoint).map_err(|m| Invalid::resource("Subscription.channel.endpoint", m))?;
    match string(ch, "payload", "Subscription.channel.payload")? {
        None | Some("application/fhir+json") | Some("application/json") => {}
        Some(_) => {
            return Err(Invalid::resource(
                "Subscription.channel.payload",
                "must be application/fhir+json",
            ));
        }
    }
    let mut content = Content::IdOnly;
    if let Some(p) = field(ch, "_payload") {
        let p = crate::write_body::object(p, "Subscription.channel.payload")?;
        if let Some(exts) = field(p, "extension") {
            let exts = crate::write_body::array(exts, "Subscription.channel.payload.extension")?;
            for (i, e) in exts.iter().enumerate() {
                let path = format!("Subscription.channel.payload.extension[{i}]");
                let e = crate::write_body::object(e, &path)?;
                if e.get("url").and_then(Value::as_str) != Some(PAYLOAD_CONTENT) {
                    return Err(Invalid::resource(
                        format!("{path}.url"),
                        format!("must be {PAYLOAD_CONTENT}"),
                    ));
                }
                let code = string(e, "valueCode", &format!("{path}.valueCode"))?.unwrap_or("");
                content = Content::parse(code).ok_or_else(|| {
                    Invalid::resource(
                        format!("{path}.valueCode"),
                        "must be empty, id-only or full-resource",
                    )
                })?;
            }
        }
    }
    let mut heartbeat_secs = None;
    let mut timeout_secs = None;
    if let Some(exts) = field(ch, "extension") {
        let exts = crate::write_body::array(exts, "Subscription.channel.extension")?;
        for (i, e) in exts.iter().enumerate() {
            let path = format!("Subscription.channel.extension[{i}]");
            let e = crate::write_body::object(e, &path)?;
            let url = e.get("url").and_then(Value::as_str).unwrap_or("");
            let number = |name: &str| {
                e.get(name).and_then(Value::as_u64).ok_or_else(|| {
                    Invalid::resource(format!("{path}.{name}"), "must be a whole number")
                })
            };
            match url {
                HEARTBEAT_PERIOD => {
                    let secs = number("valueUnsignedInt")?;
                    if secs < MIN_HEARTBEAT_SECS {
                        return Err(Invalid::resource(
                            format!("{path}.valueUnsignedInt"),
                            format!("must be at least {MIN_HEARTBEAT_SECS} seconds"),
                        ));
                    }
                    heartbeat_secs = Some(secs);
                }
                TIMEOUT => timeout_secs = Some(number("valueUnsignedInt")?.max(1)),
                // One event per notification: any maxCount is honoured.
                MAX_COUNT => {
                    number("valuePositiveInt")?;
                }
                other => {
                    return Err(Invalid::resource(
                        format!("{path}.url"),
                        format!("{other} is not a channel extension this gateway takes"),
                    ));
                }
            }
        }
    }
    let mut headers = Vec::new();
    if let Some(h) = field(ch, "header") {
        let h = crate::write_body::array(h, "Subscription.channel.header")?;
        if h.len() > MAX_HEADERS {
            return Err(Invalid::resource(
                "Subscription.channel.header",
                format!("holds more than {MAX_HEADERS} headers"),
            ));
        }
        for (i, line) in h.iter().enumerate() {
            let path = format!("Subscription.channel.header[{i}]");
            let line = line
                .as_str()
                .ok_or_else(|| Invalid::resource(&path, "must be a string `Name: value`"))?;
            super::deliver::parse_header(line).map_err(|m| Invalid::resource(&path, m))?;
            headers.push(line.to_owned());
        }
    }
    Ok(Spec {
        topic,
        filters,
        endpoint: endpoint.to_owned(),
        content,
        heartbeat_secs,
        timeout_secs,
        headers,
    })
}

/// Adds one filter (`[{Type}?]{param}={value}[&…]`) to `filters`.
fn add_filter(filters: &mut Filters, topic: &Topic, text: &str) -> Result<(), String> {
    let types = topic.resource_types();
    let known_type = |t: &str| -> Result<&'static str, String> {
        types.iter().copied().find(|k| *k == t).ok_or_else(|| {
            format!(
                "{t} is not a resource type of this topic ({})",
                types.join(", ")
            )
        })
    };
    let (prefix, query) = match text.split_once('?') {
        Some((t, q)) => (Some(known_type(t)?), q),
        None => (None, text),
    };
    if let Some(t) = prefix {
        narrow(filters, vec![t])?;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not name=value"))?;
        match name {
            "patient" | "subject" => {
                let nhs = value
                    .strip_prefix("Patient/")
                    .or_else(|| value.strip_prefix(&format!("{NHS_NUMBER_SYSTEM}|")))
                    .unwrap_or(value);
                let nhs = NhsNumber::parse(nhs).map_err(|e| format!("patient: {e}"))?;
                if filters.patient.is_some_and(|p| p != nhs) {
                    return Err("names a second, different patient: filters are ANDed, so nothing would match".into());
                }
                filters.patient = Some(nhs);
            }
            "practice" => {
                let ods = value
                    .strip_prefix(&format!("{ODS_CODE_SYSTEM}|"))
                    .unwrap_or(value);
                let ods = OdsCode::parse(ods).map_err(|e| format!("practice: {e}"))?;
                if filters.practice.as_ref().is_some_and(|p| *p != ods) {
                    return Err("names a second, different practice: filters are ANDed, so nothing would match".into());
                }
                filters.practice = Some(ods);
            }
            "_type" => {
                let list = value
                    .split(',')
                    .map(known_type)
                    .collect::<Result<Vec<_>, _>>()?;
                narrow(filters, list)?;
            }
            other => {
                return Err(format!(
                    "`{other}` is not a filter this topic takes (patient, practice, _type)"
                ));
            }
        }
    }
    Ok(())
}

fn narrow(filters: &mut Filters, types: Vec<&'static str>) -> Result<(), String> {
    let next: Vec<&'static str> = match &filters.types {
        None => types,
        Some(old) => old.iter().copied().filter(|t| types.contains(t)).collect(),
    };
    if next.is_empty() {
        return Err("leaves no resource type: filters are ANDed, so nothing would match".into());
    }
    filters.types = Some(next);
    Ok(())
}

/// The Subscription as the gateway answers it: what the supplier sent, with its id,
/// the backport profile, the current status and, when in error, why.
pub fn render(row: &gp_audit::SubscriptionRow) -> Value {
    let mut v: Value = serde_json::from_str(&row.resource).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("resourceType".into(), json!("Subscription"));
        o.insert("id".into(), json!(row.id));
        o.insert("meta".into(), json!({ "profile": [PROFILE] }));
        o.insert("status".into(), json!(row.status.as_str()));
        if !o.contains_key("reason") {
            o.insert(
                "reason".into(),
                json!("Notifications of changes to GP records"),
            );
        }
        match (&row.last_error, row.status) {
            (Some(e), gp_audit::SubscriptionStatus::Error) => {
                o.insert("error".into(), json!(e));
            }
            _ => {
                o.remove("error");
            }
        }
    }
    v
}

/// What is kept of a Subscription a supplier sent: everything but what the gateway
/// sets itself (id, meta, status, error).
pub fn stored(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "meta", "status", "error", "text"] {
            o.remove(k);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &str) -> Result<(), String> {
        Ok(())
    }

    fn sub(extra_criteria: Value, channel_extra: Value) -> Value {
        let mut v = json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "test",
            "criteria": "https://gp-gateway.invalid/SubscriptionTopic/patient-record-changed",
            "channel": {
                "type": "rest-hook",
                "endpoint": "https://app.example/hook",
                "payload": "application/fhir+json",
                "_payload": { "extension": [{ "url": PAYLOAD_CONTENT, "valueCode": "full-resource" }] }
            }
        });
        if !extra_criteria.is_null() {
            v["_criteria"] = json!({ "extension": extra_criteria });
        }
        if let (Some(ch), Some(extra)) = (v["channel"].as_object_mut(), channel_extra.as_object()) {
            for (k, val) in extra {
                ch.insert(k.clone(), val.clone());
            }
        }
        v
    }

    fn filter(s: &str) -> Value {
        json!({ "url": FILTER_CRITERIA, "valueString": s })
    }

    #[test]
    fn a_backport_subscription_is_read_with_its_filters() {
        let v = sub(
            json!([
                filter("Observation?patient=Patient/9000000009"),
                filter("practice=https://fhir.nhs.uk/Id/ods-organization-code|A12345")
            ]),
            json!({ "extension": [{ "url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60 }], "header": ["Authorization: Bearer x"] }),
        );
        let s = parse(&v, &ok).unwrap();
        assert_eq!(s.topic.code, "patient-record-changed");
        assert_eq!(s.content, Content::FullResource);
        assert_eq!(s.heartbeat_secs, Some(60));
        assert_eq!(s.headers, ["Authorization: Bearer x"]);
        assert_eq!(s.filters.types, Some(vec!["Observation"]));
        use gp_adapter::ChangeKind as K;
        assert!(s.wants(K::ReadingRecorded, "9000000009", "A12345"));
        assert!(
            !s.wants(K::ReadingRecorded, "9000000017", "A12345"),
            "another patient"
        );
        assert!(
            !s.wants(K::ReadingRecorded, "9000000009", "B12345"),
            "another practice"
        );
        assert!(
            !s.wants(K::DocumentFiled, "9000000009", "A12345"),
            "another type"
        );
        assert!(
            !s.wants(K::Registered, "9000000009", "A12345"),
            "not this topic"
        );
    }

    #[test]
    fn each_bad_element_is_refused_by_name() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({ "resourceType": "Subscription", "criteria": "x", "channel": {} }),
                "Subscription.criteria",
            ),
            (
                sub(json!([filter("Slot?patient=9000000009")]), Value::Null),
                "Subscription.criteria.extension[0].valueString",
            ),
            (
                sub(json!([filter("patient=123")]), Value::Null),
                "Subscription.criteria.extension[0].valueString",
            ),
            (
                sub(json!([filter("colour=red")]), Value::Null),
                "Subscription.criteria.extension[0].valueString",
            ),
            (
                sub(
                    json!([filter("patient=9000000009"), filter("patient=9000000017")]),
                    Value::Null,
                ),
                "Subscription.criteria.extension[1].valueString",
            ),
            (
                sub(json!([filter("Observation?_type=Patient")]), Value::Null),
                "Subscription.criteria.extension[0].valueString",
            ),
            (
                sub(Value::Null, json!({ "type": "websocket" })),
                "Subscription.channel.type",
            ),
            (
                sub(Value::Null, json!({ "payload": "application/xml" })),
                "Subscription.channel.payload",
            ),
            (
                sub(
                    Value::Null,
                    json!({ "header": ["webhook-signature: forged"] }),
                ),
                "Subscription.channel.header[0]",
            ),
            (
                sub(
                    Value::Null,
                    json!({ "extension": [{ "url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1 }] }),
                ),
                "Subscription.channel.extension[0].valueUnsignedInt",
            ),
            (
                sub(
                    Value::Null,
                    json!({ "_payload": { "extension": [{ "url": PAYLOAD_CONTENT, "valueCode": "everything" }] } }),
                ),
                "Subscription.channel.payload.extension[0].valueCode",
            ),
            (
                sub(Value::Null, json!({ "colour": "red" })),
                "Subscription.channel.colour",
            ),
        ];
        for (v, path) in cases {
            let e = parse(&v, &ok).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert_eq!(e.status, 422);
        }
        let mut with_end = sub(Value::Null, Value::Null);
        with_end["end"] = json!("2030-01-01T00:00:00Z");
        assert_eq!(parse(&with_end, &ok).unwrap_err().path, "Subscription.end");
        let refused = |_: &str| -> Result<(), String> { Err("must be https://".into()) };
        let e = parse(&sub(Value::Null, Value::Null), &refused).unwrap_err();
        assert_eq!(e.path, "Subscription.channel.endpoint");
        assert!(e.message.contains("https"), "{e}");
    }

    #[test]
    fn the_answer_carries_the_status_and_the_error_only_while_in_error() {
        let v = sub(Value::Null, Value::Null);
        let mut row = gp_audit::SubscriptionRow {
            id: "s1".into(),
            supplier: "demo".into(),
            resource: stored(&v),
            topic: "t".into(),
            status: gp_audit::SubscriptionStatus::Error,
            created: "2026-12-07T00:00:00Z".into(),
            events_since_start: 0,
            cursor: 0,
            failures: 5,
            next_attempt_ms: 0,
            last_sent_ms: 0,
            last_error: Some("the receiver answered 500".into()),
        };
        let r = render(&row);
        assert_eq!(
            (r["id"].as_str(), r["status"].as_str()),
            (Some("s1"), Some("error"))
        );
        assert_eq!(r["error"], "the receiver answered 500");
        assert_eq!(r["meta"]["profile"][0], PROFILE);
        row.status = gp_audit::SubscriptionStatus::Active;
        assert!(render(&row).get("error").is_none());
    }
}
