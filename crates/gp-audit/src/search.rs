//! `GET /AuditEvent?patient=…&agent=…&date=…&_count=…`: the audit trail as FHIR
//! AuditEvents, most recent first. An operator client (`operator = true` in the
//! supplier registry) sees every supplier's rows; a supplier sees only its own.

use gp_fhir::NhsNumber;
use gp_fhir::date::{PartialDate, day_after};
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use gp_fhir::search::SearchError;
use serde_json::{Value, json};

use super::{AuditQuery, AuditRecord, Cursor};

/// Identifier system of a gateway client id in `AuditEvent.agent.who`.
pub const CLIENT_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/client-id";
/// `AuditEvent.entity.detail.type` on the request id entity: who chose the
/// `X-Request-ID`, `client` (the caller sent it) or `gateway` (the gateway minted it).
pub const REQUEST_ID_SOURCE: &str = "request-id-source";
/// Identifier system of request ids and access-token ids in `AuditEvent.entity`.
pub const REQUEST_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/request-id";
pub const TOKEN_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/access-token-id";

const SUPPORTED: &str = "patient, agent, date, _count, _cursor, _format";

/// Rows a page holds unless `_count` asks for fewer; a larger `_count` gets this many
/// (a server may return fewer than asked, and FHIR clients ask for more than it gives).
pub const MAX_COUNT: u32 = 1000;

/// A parsed search: what to ask the trail (one row more than the page, to know whether
/// another follows) and the page's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSearch {
    pub query: AuditQuery,
    pub count: u32,
}

fn invalid(name: &str, why: impl Into<String>) -> SearchError {
    SearchError::Invalid {
        name: name.into(),
        why: why.into(),
    }
}

/// Parses the search; `own` is the caller's client id when it may see only its own rows.
pub fn parse(pairs: &[(String, String)], own: Option<&str>) -> Result<AuditSearch, SearchError> {
    let mut q = AuditQuery::default();
    let mut count = 50;
    for (k, v) in pairs {
        match k.as_str() {
            "patient" => {
                let id = v.strip_prefix("Patient/").unwrap_or(v);
                q.patient = Some(NhsNumber::parse(id)?.to_string());
            }
            "agent" => {
                let ok = (1..=64).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !ok {
                    return Err(invalid("agent", "expected a client id"));
                }
                q.supplier = Some(v.clone());
            }
            "date" => {
                let (prefix, value) = match v.get(..2) {
                    Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
                    _ => ("eq", v.as_str()),
                };
                let d = PartialDate::parse(value).map_err(|e| invalid("date", e.to_string()))?;
                let first = format_day(d.first_day());
                let after_last = format_day(day_after(d.last_day()));
                match prefix {
                    "ge" => q.from = Some(first),
                    "gt" => q.from = Some(after_last),
                    "lt" => q.before = Some(first),
                    "le" => q.before = Some(after_last),
                    _ => {
                        q.from = Some(first);
                        q.before = Some(after_last);
                    }
                }
            }
            "_count" => {
                count = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid("_count", "expected a whole number from 1"))?
                    .min(MAX_COUNT);
            }
            "_cursor" => q.after = Some(parse_cursor(v)?),
            "_format" => {}
            other => {
                return Err(SearchError::UnknownParameter(
                    gp_fhir::text::shown(other),
                    SUPPORTED.into(),
                ));
            }
        }
    }
    if let Some(me) = own {
        match &q.supplier {
            Some(agent) if agent != me => {
                return Err(invalid(
                    "agent",
                    "a supplier may search only its own audit trail (agent must be your client id)",
                ));
            }
            _ => q.supplier = Some(me.to_owned()),
        }
    }
    q.limit = count + 1;
    Ok(AuditSearch { query: q, count })
}

/// `_cursor`, as written in a `next` link: `<recorded>,<id>` of the last row of the
/// previous page.
fn parse_cursor(v: &str) -> Result<Cursor, SearchError> {
    let bad = || invalid("_cursor", "expected the value of a next link");
    let (recorded, id) = v.split_once(',').ok_or_else(bad)?;
    let recorded_ok = (10..=40).contains(&recorded.len())
        && recorded
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:.TZ+".contains(&b));
    let id_ok =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !(recorded_ok && id_ok) {
        return Err(bad());
    }
    Ok(Cursor {
        recorded: recorded.to_owned(),
        id: id.to_owned(),
    })
}

fn format_day((y, m, d): (i32, u8, u8)) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

/// A FHIR R4 AuditEvent for one row.
pub fn audit_event(r: &AuditRecord) -> Value {
    let action = match r.interaction.as_str() {
        "create" => "C",
        "patch" | "update" => "U",
        "read" | "search-type" => "R",
        _ => "E",
    };
    let outcome = match r.status {
        200..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    let mut request = json!({
        "what": { "identifier": { "system": REQUEST_ID_SYSTEM, "value": r.request_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" }
    });
    if let (Some(supplied), Some(o)) = (r.request_id_supplied, request.as_object_mut()) {
        let source = if supplied { "client" } else { "gateway" };
        o.insert(
            "detail".into(),
            json!([{ "type": REQUEST_ID_SOURCE, "valueString": source }]),
        );
    }
    let mut entity = vec![request];
    if let Some(p) = &r.patient {
        entity.push(json!({
            "what": { "reference": format!("Patient/{p}"), "identifier": { "system": NHS_NUMBER_SYSTEM, "value": p } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" }
        }));
    }
    if let Some(ods) = &r.practice {
        entity.push(json!({
            "what": { "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" }
        }));
    }
    if let Some(t) = &r.token_id {
        entity.push(json!({
            "what": { "identifier": { "system": TOKEN_ID_SYSTEM, "value": t } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" }
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": r.id,
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
        "action": action,
        "recorded": r.recorded,
        "outcome": outcome,
        "agent": [{
            "who": match &r.supplier {
                Some(s) => json!({ "identifier": { "system": CLIENT_ID_SYSTEM, "value": s } }),
                None => json!({ "display": "unauthenticated caller" }),
            },
            "requestor": true
        }],
        "source": { "site": r.replica, "observer": { "display": "gp-gateway" } },
        "entity": entity,
    });
    if let Some(o) = event.as_object_mut() {
        let mut subtype = r.interaction.clone();
        if let Some(t) = &r.resource_type {
            subtype = format!("{subtype} {t}");
        }
        o.insert(
            "subtype".into(),
            json!([{ "system": "http://hl7.org/fhir/restful-interaction", "code": r.interaction, "display": subtype }]),
        );
        let mut desc = format!("HTTP {}", r.status);
        if let Some(code) = &r.outcome_code {
            desc.push(' ');
            desc.push_str(code);
        }
        o.insert("outcomeDesc".into(), Value::String(desc));
    }
    event
}

/// What a patient (or the service desk answering them) may see of who accessed their
/// record: successful accesses by suppliers, when, who (by name) and what kind, and
/// nothing internal (no request or token ids, replica or practice).
pub fn access_log(
    base_url: &str,
    request_id: &str,
    nhs: &str,
    rows: &[AuditRecord],
    name_of: impl Fn(&str) -> Option<String>,
) -> Value {
    let what = |r: &AuditRecord| {
        let t = r.resource_type.as_deref().unwrap_or("record");
        match r.interaction.as_str() {
            "read" => format!("read your {t}"),
            "search-type" => format!("looked through your {t} entries"),
            "create" => format!("added a new {t} to your record"),
            "patch" | "update" => format!("changed your {t} details"),
            "operation" => "read your GP record summary".to_owned(),
            other => format!("{other} {t}"),
        }
    };
    let entries: Vec<Value> = rows
        .iter()
        .filter(|r| (200..300).contains(&r.status) && r.interaction != "token")
        .filter(|r| r.resource_type.as_deref() != Some("AuditEvent"))
        .filter_map(|r| {
            let client = r.supplier.as_deref()?;
            let name = name_of(client).unwrap_or_else(|| client.to_owned());
            Some(json!({
                "resource": {
                    "resourceType": "AuditEvent",
                    "id": r.id,
                    "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
                    "action": match r.interaction.as_str() { "create" => "C", "patch" | "update" => "U", _ => "R" },
                    "recorded": r.recorded,
                    "outcome": "0",
                    "outcomeDesc": what(r),
                    "agent": [{ "who": { "identifier": { "system": CLIENT_ID_SYSTEM, "value": client }, "display": name }, "requestor": true }],
                    "source": { "observer": { "display": "gp-gateway" } },
                    "entity": [{ "what": { "reference": format!("Patient/{nhs}") } }]
                }
            }))
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "id": request_id,
        "type": "collection",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": format!("{base_url}/Patient/{nhs}/$access-log") }],
        "entry": entries,
    })
}

/// The searchset page of `rows` (as asked for by [`AuditSearch::query`]: one more than
/// the page when another page follows), with a `next` link that resumes after the
/// page's last row. `total` is given when the whole result is on a first page.
pub fn bundle(
    base_url: &str,
    request_id: &str,
    query: &[(String, String)],
    search: &AuditSearch,
    rows: &[AuditRecord],
) -> Value {
    // The link to this search with `params`, or just its path when there are none.
    let link = |params: Vec<(&str, &str)>| {
        let query = gp_fhir::search::encode_query(params);
        if query.is_empty() {
            format!("{base_url}/AuditEvent")
        } else {
            format!("{base_url}/AuditEvent?{query}")
        }
    };
    let asked: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let count = search.count as usize;
    let page = &rows[..rows.len().min(count)];
    let mut links = vec![json!({ "relation": "self", "url": link(asked.clone()) })];
    let more = rows.len() > count;
    if more && let Some(last) = page.last() {
        // The same search, resuming after the page's last row.
        let cursor = format!("{},{}", last.recorded, last.id);
        let mut next: Vec<(&str, &str)> = asked
            .iter()
            .copied()
            .filter(|(k, _)| *k != "_cursor")
            .collect();
        next.push(("_cursor", &cursor));
        links.push(json!({ "relation": "next", "url": link(next) }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": request_id,
        "type": "searchset",
        "link": links,
        "entry": page.iter().map(|r| json!({
            "fullUrl": format!("{base_url}/AuditEvent/{}", r.id),
            "resource": audit_event(r),
            "search": { "mode": "match" }
        })).collect::<Vec<_>>(),
    });
    if !more
        && search.query.after.is_none()
        && let Some(o) = bundle.as_object_mut()
    {
        o.insert("total".into(), json!(page.len()));
    }
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn dates_become_half_open_ranges_and_suppliers_see_their_own_rows() {
        let parsed = parse(
            &q(&[
                ("patient", "9000000009"),
                ("date", "ge2026-11-01"),
                ("date", "le2026-11-23"),
            ]),
            None,
        )
        .unwrap()
        .query;
        assert_eq!(parsed.patient.as_deref(), Some("9000000009"));
        assert_eq!(parsed.from.as_deref(), Some("2026-11-01"));
        assert_eq!(parsed.before.as_deref(), Some("2026-11-24"));
        assert_eq!(parsed.supplier, None);
        let own = parse(&q(&[("date", "2026-11")]), Some("demo-consult"))
            .unwrap()
            .query;
        assert_eq!(own.supplier.as_deref(), Some("demo-consult"));
        assert_eq!(
            (own.from.as_deref(), own.before.as_deref()),
            (Some("2026-11-01"), Some("2026-12-01"))
        );
        assert!(parse(&q(&[("agent", "demo-monitoring")]), Some("demo-consult")).is_err());
        assert!(parse(&q(&[("patient", "9000000008")]), None).is_err());
        assert!(parse(&q(&[("colour", "x")]), None).is_err());
        assert!(parse(&q(&[("_count", "0")]), None).is_err());
    }

    #[test]
    fn a_patient_sees_an_update_as_a_change_of_their_details() {
        let mut r =
            super::super::sample(1, "9000000009", "demo-consult", "2026-11-23T10:00:00.000Z");
        r.resource_type = Some("Patient".into());
        for interaction in ["patch", "update"] {
            r.interaction = interaction.into();
            r.status = 200;
            let log = access_log("https://x", "req", "9000000009", &[r.clone()], |_| None);
            let event = &log["entry"][0]["resource"];
            assert_eq!(event["action"], "U", "{interaction}");
            assert_eq!(
                event["outcomeDesc"], "changed your Patient details",
                "{interaction}"
            );
        }
    }

    #[test]
    fn rows_render_as_audit_events() {
        let mut r =
            super::super::sample(1, "9000000009", "demo-consult", "2026-11-23T10:00:00.000Z");
        r.interaction = "create".into();
        r.status = 201;
        let e = audit_event(&r);
        assert_eq!(e["action"], "C");
        assert_eq!(e["outcome"], "0");
        assert_eq!(e["agent"][0]["who"]["identifier"]["value"], "demo-consult");
        assert_eq!(e["entity"][1]["what"]["reference"], "Patient/9000000009");
        // sample(1) is a request whose X-Request-ID the gateway minted.
        assert_eq!(
            e["entity"][0]["detail"],
            json!([{ "type": REQUEST_ID_SOURCE, "valueString": "gateway" }])
        );
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            gp_fhir::validate::check_r4_json(&json).unwrap(),
            "AuditEvent"
        );
        r.request_id_supplied = None;
        let old = audit_event(&r);
        assert!(
            old["entity"][0].get("detail").is_none(),
            "unknown on old rows: no claim either way"
        );
    }
}
