//! `notifications`: change notifications as a subscribing supplier meets them, checked
//! from the outside with a receiver of the kit's own on `127.0.0.1` ([`crate::webhook`]).
//! The topics advertised and published; a subscription made, and its handshake before it
//! reads active; readings another supplier writes delivered numbered and in order, each
//! focus readable; `$status` and `$events` agreeing with what was delivered; nothing
//! delivered about a patient of a practice the subscriber is not paired with (a supplier
//! the manifest shows unpaired: a kit cannot change a live gateway's pairings); another
//! supplier kept out, and the owner's DELETE ending deliveries; and, last, every delivery
//! of the run verified the Standard Webhooks way with the key in the gateway's JWKS.
//!
//! The gateway must deliver to an `http://127.0.0.1` receiver (the sandbox does; a
//! gateway refusing the kit's endpoint makes every delivery test a skip saying so). The
//! suite writes readings for test patients and deletes the subscriptions it made: point
//! it only at a sandbox or a test environment.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::{Patient, Supplier};
use crate::model::{Check, Status, TestDef, Verdict, ensure};
use crate::run_test;
use crate::webhook::{Delivery, DeliveryKey, Receiver};

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "NOT-01",
        "topics",
        "the CapabilityStatement's Subscription entry lists its topics with the backport IG's capabilitystatement-subscriptiontopic-canonical extension, and each canonical is a topic at GET /Basic?code=SubscriptionTopic (its url extension matches)",
        "REQ-NOT-01",
    ),
    TestDef::required(
        "NOT-02",
        "subscribe",
        "POST /Subscription (rest-hook, id-only, to the kit's own receiver) answers 201 with status requested and Location [base]/Subscription/{id}; a handshake (type handshake, naming the subscription and its topic) arrives before the subscription reads active",
        "REQ-NOT-02",
    ),
    TestDef::required(
        "NOT-03",
        "signatures",
        "every delivery of the run carries webhook-id, webhook-timestamp and a webhook-signature v1a entry that verifies over {webhook-id}.{webhook-timestamp}.{body} with an OKP/Ed25519 key of the gateway's JWKS other than the access-token key; the timestamp is within 5 minutes of arrival; the body changed by one byte does not verify",
        "REQ-NOT-03",
    ),
    TestDef::required(
        "NOT-04",
        "delivery",
        "three readings written by a supplier holding Observation.c, for a patient it and the subscriber both see, arrive as event-notifications numbered 1, 2, 3 in the order written, each focus the reading's URL, and each focus reads back (200, that Observation) as the subscriber",
        "REQ-NOT-04",
    ),
    TestDef::required(
        "NOT-05",
        "catch-up",
        "GET /Subscription/{id}/$status reports the subscription active with events-since-subscription-start equal to the events delivered; $events with eventsSinceNumber and eventsUntilNumber answers exactly those numbers, with the same foci",
        "REQ-NOT-05",
    ),
    TestDef::required(
        "NOT-06",
        "release",
        "a subscription by a supplier not paired with a patient's practice receives nothing about a reading written for that patient, nor shows it in $events, while a control reading at a practice it is paired with, written afterwards, arrives",
        "REQ-NOT-06",
    ),
    TestDef::required(
        "NOT-07",
        "management",
        "another supplier cannot read, list or delete the subscription (404 as unknown); DELETE by its owner answers 204, the subscription then reads 404, and a change written after it brings it no delivery",
        "REQ-NOT-07",
    ),
];

/// The backport IG's CapabilityStatement extension naming a topic.
pub const TOPIC_CANONICAL: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";
/// The R5 SubscriptionTopic elements, as R4 cross-version extensions on `Basic`.
const TOPIC_EXT: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";
const FILTER: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// Where the kit's readings are identified.
const KIT_READINGS: &str = "https://gp-conformance.invalid/Id/reading";
const SNOMED: &str = "http://snomed.info/sct";
/// The longest the kit waits for a delivery (a handshake, an event, the control).
const WAIT: Duration = Duration::from_secs(20);
/// How long the kit listens for a delivery that must not come, when no control
/// subscription shows the change was announced.
const QUIET: Duration = Duration::from_secs(5);
/// After a control arrived: other subscriptions' deliveries run in tasks of their own.
const GRACE: Duration = Duration::from_secs(2);
/// Readings written for the ordering check.
const READINGS: usize = 3;
/// The most a `webhook-timestamp` may be from its arrival (Standard Webhooks' tolerance).
pub const MAX_SKEW_SECS: i64 = 300;

/// Who the suite subscribes and writes as.
#[derive(Debug, Clone)]
struct Cast {
    /// The active supplier holding `Subscription.c` and an Observation read scope paired
    /// with the most practices.
    subscriber: Supplier,
    /// Writes the readings: holds `Observation.c`, paired with the patient's practice
    /// (another supplier than the subscriber when one qualifies).
    writer: Supplier,
    /// An unflagged patient at a practice both are paired with.
    patient: Patient,
}

/// Who the pairing check acts as.
#[derive(Debug, Clone)]
struct Unpaired {
    /// A supplier that may subscribe but is not paired with `patient`'s practice.
    subscriber: Supplier,
    patient: Patient,
    writer: Supplier,
    /// An unflagged patient at a practice `subscriber` is paired with.
    control: Patient,
    control_writer: Supplier,
}

fn can_subscribe(s: &Supplier) -> bool {
    s.has_scope("Subscription", 'c') && s.has_scope("Observation", 'r')
}

fn can_write(s: &Supplier) -> bool {
    s.has_scope("Observation", 'c')
}

fn writer_for<'a>(
    ctx: &'a Ctx,
    practice: &str,
    prefer: Option<&'a Supplier>,
) -> Option<&'a Supplier> {
    prefer
        .filter(|w| w.practices.iter().any(|p| p == practice))
        .or_else(|| {
            ctx.manifest
                .active()
                .find(|s| can_write(s) && s.practices.iter().any(|p| p == practice))
        })
}

fn cast(ctx: &Ctx) -> Option<Cast> {
    let subscriber = ctx
        .manifest
        .active()
        .filter(|s| !s.practices.is_empty() && can_subscribe(s))
        .max_by_key(|s| (s.practices.len(), s.scopes.len()))?;
    let mut writers: Vec<&Supplier> = ctx.manifest.active().filter(|s| can_write(s)).collect();
    // Another supplier's writes first: what the subscriber is told of is not its own doing.
    writers.sort_by_key(|s| s.client_id == subscriber.client_id);
    writers.into_iter().find_map(|w| {
        let patient = ctx.manifest.patients.iter().find(|p| {
            p.flags.is_empty()
                && subscriber.practices.contains(&p.practice)
                && w.practices.contains(&p.practice)
        })?;
        Some(Cast {
            subscriber: subscriber.clone(),
            writer: w.clone(),
            patient: patient.clone(),
        })
    })
}

fn unpaired_cast(ctx: &Ctx) -> Option<Unpaired> {
    ctx.manifest
        .active()
        .filter(|s| can_subscribe(s))
        .find_map(|u| {
            let (patient, writer) = ctx
                .manifest
                .patients
                .iter()
                .filter(|p| p.flags.is_empty() && !u.practices.contains(&p.practice))
                .find_map(|p| writer_for(ctx, &p.practice, None).map(|w| (p, w)))?;
            let (control, control_writer) = ctx
                .manifest
                .patients
                .iter()
                .filter(|p| p.flags.is_empty() && u.practices.contains(&p.practice))
                .find_map(|p| writer_for(ctx, &p.practice, Some(writer)).map(|w| (p, w)))?;
            Some(Unpaired {
                subscriber: u.clone(),
                patient: patient.clone(),
                writer: writer.clone(),
                control: control.clone(),
                control_writer: control_writer.clone(),
            })
        })
}

/// A subscription the kit made, delivered to a path of its own on the kit's receiver.
#[derive(Debug, Clone)]
struct Sub {
    id: String,
    path: String,
    owner: Supplier,
}

/// What the tests share, in the order they learn it.
struct Flow {
    receiver: Receiver,
    cast: Option<Cast>,
    unpaired: Option<Unpaired>,
    /// Access tokens by client id.
    tokens: Vec<(String, String)>,
    /// The canonical of a topic announcing Observation changes (from NOT-01).
    topic: Option<String>,
    /// The subscriber's subscription (NOT-02), once active.
    main: Option<Sub>,
    /// Observation ids written for NOT-04, in the order written.
    written: Vec<String>,
    /// (event number, focus) of the main subscription's event-notifications, as they arrived.
    delivered: Vec<(i64, String)>,
    /// The unpaired supplier's subscription (NOT-06): a control for NOT-07.
    watcher: Option<Sub>,
    /// Every subscription made and not yet deleted: cleaned up at the end.
    made: Vec<Sub>,
}

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let receiver = match Receiver::start().await {
        Ok(r) => r,
        Err(e) => {
            rec.omit_rest(&format!(
                "the kit's notification receiver could not listen on 127.0.0.1: {e}"
            ));
            return;
        }
    };
    let mut flow = Flow {
        receiver,
        cast: cast(ctx),
        unpaired: unpaired_cast(ctx),
        tokens: Vec::new(),
        topic: None,
        main: None,
        written: Vec::new(),
        delivered: Vec::new(),
        watcher: None,
        made: Vec::new(),
    };
    run_test!(rec, "NOT-01", None, topics(ctx, &mut flow));
    if flow.cast.is_none() {
        rec.close_rest(Verdict::Skip(
            "the manifest names no active supplier holding system/Subscription.c and an Observation read scope that shares a practice (with an unflagged patient) with a supplier holding system/Observation.c".into(),
        ));
        return;
    }
    run_test!(rec, "NOT-02", None, subscribe_main(ctx, &mut flow));
    let refused = rec
        .results
        .last()
        .filter(|r| r.status == Status::Skip)
        .map(|r| r.message.clone());
    if let Some(why) = refused {
        rec.close_rest(Verdict::Skip(why));
        clean_up(ctx, &mut flow, rec).await;
        return;
    }
    run_test!(rec, "NOT-04", None, ordering(ctx, &mut flow));
    run_test!(rec, "NOT-05", None, catch_up(ctx, &mut flow));
    run_test!(rec, "NOT-06", None, unpaired(ctx, &mut flow));
    run_test!(rec, "NOT-07", None, management(ctx, &mut flow));
    // Last: it judges every delivery of the run.
    run_test!(rec, "NOT-03", None, signatures(ctx, &mut flow));
    clean_up(ctx, &mut flow, rec).await;
}

/// Deletes the subscriptions the kit made and still holds (set-up traffic, no test's).
async fn clean_up(ctx: &Ctx, flow: &mut Flow, rec: &mut Recorder) {
    let mut p = rec.probe();
    for sub in std::mem::take(&mut flow.made) {
        if let Ok(token) = token(ctx, flow, &sub.owner, &mut p.0).await {
            let url = format!("{}/Subscription/{}", ctx.manifest.base_url, sub.id);
            let _ = p.0.call("DELETE", &url, Some(&token), &[], b"").await;
        }
    }
    rec.setup_request_ids
        .extend(p.0.evidence.iter().map(|e| e.request_id.clone()));
}

/// An access token for `sup`, fetched once per run.
async fn token(
    ctx: &Ctx,
    flow: &mut Flow,
    sup: &Supplier,
    p: &mut Probe,
) -> Result<String, Verdict> {
    if let Some((_, t)) = flow.tokens.iter().find(|(c, _)| *c == sup.client_id) {
        return Ok(t.clone());
    }
    let t = super::security::token(ctx, sup, p)
        .await
        .map_err(|e| Verdict::Error(format!("no access token for {}: {e}", sup.client_id)))?;
    flow.tokens.push((sup.client_id.clone(), t.clone()));
    Ok(t)
}

fn status(a: &Answer, want: u16, what: &str) -> Check {
    ensure(a.status == want, || {
        format!(
            "{what} answered HTTP {}{}, expected HTTP {want}",
            a.status,
            a.spine_code()
                .map(|(_, c)| format!(" ({c})"))
                .unwrap_or_default()
        )
    })
}

fn fail(msg: impl Into<String>) -> Verdict {
    Verdict::Fail(msg.into())
}

// ---- reading what arrives -------------------------------------------------------------

/// What a notification's (or `$status`'s) subscription status `Parameters` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Note {
    /// `type`: handshake, heartbeat, event-notification, query-status, query-event.
    pub kind: String,
    /// `subscription`'s reference.
    pub subscription: String,
    pub topic: String,
    pub status: String,
    pub events_since: Option<i64>,
    /// (event-number, focus) of each `notification-event`; 0 for a number not readable.
    pub events: Vec<(i64, String)>,
}

fn number(v: &Value) -> Option<i64> {
    v.get("valueString")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .or_else(|| v.get("valueUnsignedInt").and_then(Value::as_i64))
        .or_else(|| v.get("valueInteger").and_then(Value::as_i64))
}

/// Reads a subscription status `Parameters` resource.
pub fn note_of(parameters: &Value) -> Note {
    let mut n = Note::default();
    for p in parameters["parameter"].as_array().into_iter().flatten() {
        let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        match p["name"].as_str().unwrap_or_default() {
            "type" => n.kind = text("valueCode"),
            "status" => n.status = text("valueCode"),
            "topic" => n.topic = text("valueCanonical"),
            "subscription" => {
                n.subscription = p["valueReference"]["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            "events-since-subscription-start" => n.events_since = number(p),
            "notification-event" => {
                let parts = p["part"].as_array().cloned().unwrap_or_default();
                let part = |name: &str| parts.iter().find(|x| x["name"] == name).cloned();
                n.events.push((
                    part("event-number").as_ref().and_then(number).unwrap_or(0),
                    part("focus")
                        .and_then(|f| f["valueReference"]["reference"].as_str().map(str::to_owned))
                        .unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
    n
}

/// A notification Bundle's status (its first entry).
pub fn note(d: &Delivery) -> Note {
    note_of(&d.json()["entry"][0]["resource"])
}

fn names(n: &Note, id: &str) -> bool {
    n.subscription.ends_with(&format!("Subscription/{id}"))
}

/// The event-notifications delivered to `path`, in arrival order, each once (a delivery
/// repeated under the same `webhook-id` is the same notification, at least once).
pub fn events_at(deliveries: &[Delivery], path: &str) -> Vec<Delivery> {
    let mut seen: Vec<String> = Vec::new();
    deliveries
        .iter()
        .filter(|d| d.path == path && note(d).kind == "event-notification")
        .filter(|d| {
            let id = d.header("webhook-id").unwrap_or_default().to_owned();
            if id.is_empty() || !seen.contains(&id) {
                seen.push(id);
                true
            } else {
                false
            }
        })
        .cloned()
        .collect()
}

fn foci(deliveries: &[Delivery]) -> Vec<(i64, String)> {
    deliveries.iter().flat_map(|d| note(d).events).collect()
}

// ---- NOT-01 ---------------------------------------------------------------------------

/// The `url` of each SubscriptionTopic in a `Basic?code=SubscriptionTopic` searchset.
fn topic_urls(bundle: &Value) -> Vec<String> {
    topic_resources(bundle)
        .filter_map(|b| {
            ext(b, "url").and_then(|e| e["valueUri"].as_str().or(e["valueCanonical"].as_str()))
        })
        .map(str::to_owned)
        .collect()
}

fn topic_resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| {
            r["resourceType"] == "Basic"
                && r["code"]["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["code"] == "SubscriptionTopic")
        })
}

fn ext<'a>(resource: &'a Value, element: &str) -> Option<&'a Value> {
    let url = format!("{TOPIC_EXT}{element}");
    resource["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == url.as_str())
}

/// The topic a supplier subscribes to for readings: one with a resource trigger on
/// Observation.
fn observation_topic(bundle: &Value) -> Option<String> {
    let trigger = format!("{TOPIC_EXT}resourceTrigger");
    topic_resources(bundle)
        .find(|b| {
            b["extension"].as_array().into_iter().flatten().any(|e| {
                e["url"] == trigger.as_str()
                    && e["extension"].as_array().into_iter().flatten().any(|x| {
                        x["url"] == "resource"
                            && x["valueUri"]
                                .as_str()
                                .is_some_and(|u| u == "Observation" || u.ends_with("/Observation"))
                    })
            })
        })
        .and_then(|b| ext(b, "url"))
        .and_then(|e| e["valueUri"].as_str().or(e["valueCanonical"].as_str()))
        .map(str::to_owned)
}

/// NOT-01's judgement: the CapabilityStatement's topics, each published.
pub fn judge_topics(capability: &Value, topics: &Value) -> Check {
    let entry = capability["rest"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["resource"].as_array().into_iter().flatten())
        .find(|r| r["type"] == "Subscription")
        .ok_or_else(|| {
            fail("the CapabilityStatement (GET /metadata) lists no Subscription resource")
        })?;
    let canonicals: Vec<&str> = entry["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == TOPIC_CANONICAL)
        .filter_map(|e| e["valueCanonical"].as_str())
        .collect();
    ensure(!canonicals.is_empty(), || {
        format!(
            "the CapabilityStatement's Subscription entry carries no {TOPIC_CANONICAL} extension naming a topic"
        )
    })?;
    ensure(topics["resourceType"] == "Bundle", || {
        format!(
            "GET /Basic?code=SubscriptionTopic answered a {}, not a Bundle",
            topics["resourceType"]
        )
    })?;
    let published = topic_urls(topics);
    let missing: Vec<&str> = canonicals
        .iter()
        .copied()
        .filter(|c| !published.iter().any(|p| p == c))
        .collect();
    ensure(missing.is_empty(), || {
        format!(
            "topic(s) {} listed in the CapabilityStatement are not at GET /Basic?code=SubscriptionTopic (the topics there have url {})",
            missing.join(", "),
            if published.is_empty() {
                "(none)".to_owned()
            } else {
                published.join(", ")
            }
        )
    })
}

async fn topics(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let base = &ctx.manifest.base_url;
    let a = p.get(&format!("{base}/metadata"), None).await?;
    status(&a, 200, "GET /metadata")?;
    let capability = a.json()?;
    // Listed as a supplier would: with its token, when it has one.
    let subscriber = flow.cast.as_ref().map(|c| c.subscriber.clone());
    let token = match subscriber {
        Some(s) => Some(token(ctx, flow, &s, p).await?),
        None => None,
    };
    let a = p
        .get(
            &format!("{base}/Basic?code=SubscriptionTopic"),
            token.as_deref(),
        )
        .await?;
    status(&a, 200, "GET /Basic?code=SubscriptionTopic")?;
    let topics = a.json()?;
    flow.topic = observation_topic(&topics);
    judge_topics(&capability, &topics)
}

// ---- NOT-02 ---------------------------------------------------------------------------

fn subscription(topic: &str, filter: &str, endpoint: &str) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Conformance kit: notifications suite",
        "criteria": topic,
        "_criteria": { "extension": [{ "url": FILTER, "valueString": filter }] },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": { "extension": [{ "url": CONTENT, "valueCode": "id-only" }] }
        }
    })
}

/// NOT-02's judgement of one read of a subscription whose handshake is awaited, given
/// the handshake if it had arrived by the time the read answered: `Ok(true)` once it
/// reads active after its handshake, `Ok(false)` while it reads requested.
pub fn judge_handshake(
    read: &Value,
    handshake: Option<&Delivery>,
    id: &str,
    topic: &str,
) -> Result<bool, Verdict> {
    match read["status"].as_str().unwrap_or_default() {
        "active" => {
            let h = handshake.ok_or_else(|| {
                fail(format!(
                    "Subscription/{id} reads active, yet no handshake had arrived at the kit's receiver: it may be active only once its handshake is delivered"
                ))
            })?;
            let n = note(h);
            ensure(names(&n, id), || {
                format!(
                    "the handshake names subscription {:?}, not Subscription/{id}",
                    n.subscription
                )
            })?;
            ensure(n.topic == topic, || {
                format!("the handshake names topic {:?}, not {topic}", n.topic)
            })?;
            Ok(true)
        }
        "requested" => Ok(false),
        other => Err(fail(format!(
            "Subscription/{id} reads {other:?} while its handshake is awaited{}",
            read["error"]
                .as_str()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        ))),
    }
}

/// Subscribes as `owner` to `topic` with `filter`, delivered to a path of its own, and
/// waits for the handshake and then for the subscription to read active.
async fn subscribe(
    ctx: &Ctx,
    flow: &mut Flow,
    owner: &Supplier,
    topic: &str,
    filter: &str,
    p: &mut Probe,
) -> Result<Sub, Verdict> {
    let token = token(ctx, flow, owner, p).await?;
    let base = &ctx.manifest.base_url;
    let path = format!("/notifications/{}", uuid::Uuid::new_v4());
    let endpoint = flow.receiver.url(&path);
    let body = subscription(topic, filter, &endpoint);
    let a = p
        .call(
            "POST",
            &format!("{base}/Subscription"),
            Some(&token),
            &[("content-type", "application/fhir+json")],
            body.to_string().as_bytes(),
        )
        .await?;
    let refused_endpoint = a.status == 422
        && a.json()
            .ok()
            .is_some_and(|v| v["issue"][0]["expression"][0] == "Subscription.channel.endpoint");
    if refused_endpoint {
        let why = a
            .json()
            .ok()
            .and_then(|v| v["issue"][0]["diagnostics"].as_str().map(str::to_owned));
        return Err(Verdict::Skip(format!(
            "the gateway refuses the kit's receiver {endpoint} as Subscription.channel.endpoint ({}): only a gateway allowing http:// loopback receivers (the sandbox) can be checked from here",
            why.unwrap_or_else(|| "422".into())
        )));
    }
    status(&a, 201, "POST /Subscription")?;
    let v = a.json()?;
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail("the 201 to POST /Subscription carries no Subscription id"))?
        .to_owned();
    let sub = Sub {
        id: id.clone(),
        path,
        owner: owner.clone(),
    };
    flow.made.push(sub.clone());
    ensure(v["status"] == "requested", || {
        format!(
            "the 201 answered Subscription/{id} with status {}, expected requested (active only once the handshake is delivered)",
            v["status"]
        )
    })?;
    let location = a.header("location").unwrap_or_default().to_owned();
    ensure(location == format!("{base}/Subscription/{id}"), || {
        format!("the 201's Location is {location:?}, expected {base}/Subscription/{id}")
    })?;
    let url = format!("{base}/Subscription/{id}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = p.get(&url, Some(&token)).await?;
        status(&a, 200, "GET /Subscription/{id}")?;
        let read = a.json()?;
        // What had arrived by the time the read answered.
        let arrived = flow.receiver.received();
        let handshake = arrived
            .iter()
            .find(|d| d.path == sub.path && note(d).kind == "handshake");
        if let Some(h) = handshake
            && !p
                .evidence
                .iter()
                .any(|e| e.method == crate::webhook::RECEIVED)
        {
            p.evidence.push(h.evidence(&flow.receiver.origin()));
        }
        if judge_handshake(&read, handshake, &id, topic)? {
            return Ok(sub);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(fail(match handshake {
                None => format!(
                    "no handshake for Subscription/{id} arrived at the kit's receiver within {} s",
                    WAIT.as_secs()
                ),
                Some(_) => format!(
                    "the handshake arrived, yet Subscription/{id} still reads requested after {} s",
                    WAIT.as_secs()
                ),
            }));
        }
        if handshake.is_none() {
            let path = sub.path.clone();
            flow.receiver
                .wait_for(deadline - now, |ds| {
                    ds.iter()
                        .any(|d| d.path == path && note(d).kind == "handshake")
                })
                .await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn subscribe_main(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let cast = flow
        .cast
        .clone()
        .ok_or_else(|| Verdict::Omit("no subscriber".into()))?;
    let topic = flow.topic.clone().ok_or_else(|| {
        Verdict::Omit(
            "no topic at GET /Basic?code=SubscriptionTopic announces Observation changes (a resourceTrigger for Observation): nothing to subscribe to".into(),
        )
    })?;
    let filter = format!("Observation?patient={}", cast.patient.nhs_number);
    flow.main = Some(subscribe(ctx, flow, &cast.subscriber, &topic, &filter, p).await?);
    Ok(())
}

// ---- NOT-04 ---------------------------------------------------------------------------

fn need_main(flow: &Flow) -> Result<(Sub, Cast), Verdict> {
    match (&flow.main, &flow.cast) {
        (Some(s), Some(c)) => Ok((s.clone(), c.clone())),
        _ => Err(Verdict::Omit(
            "not run: no active subscription (NOT-02)".into(),
        )),
    }
}

/// Writes a body weight for `nhs`; answers the Observation's id.
async fn write_reading(
    ctx: &Ctx,
    writer: &Supplier,
    token: &str,
    nhs: &str,
    p: &mut Probe,
) -> Result<String, Verdict> {
    let when = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let reading = json!({
        "resourceType": "Observation",
        "identifier": [{ "system": KIT_READINGS, "value": uuid::Uuid::new_v4().to_string() }],
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
        "code": { "coding": [{ "system": SNOMED, "code": "27113001", "display": "Body weight" }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "effectiveDateTime": when,
        "valueQuantity": { "value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg" }
    });
    let a = p
        .call(
            "POST",
            &format!("{}/Observation", ctx.manifest.base_url),
            Some(token),
            &[("content-type", "application/fhir+json")],
            reading.to_string().as_bytes(),
        )
        .await?;
    if a.status != 201 {
        return Err(Verdict::Error(format!(
            "POST /Observation as {} answered HTTP {}, expected 201: the change to be notified could not be made",
            writer.client_id, a.status
        )));
    }
    a.json()?["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Verdict::Error("the 201 to POST /Observation carries no id".into()))
}

/// NOT-04's judgement: the event-notifications that arrived, against the foci of the
/// readings in the order written.
pub fn judge_sequence(arrived: &[(i64, String)], written: &[String]) -> Check {
    let numbers: Vec<i64> = arrived.iter().map(|(n, _)| *n).collect();
    let seen: Vec<&str> = arrived.iter().map(|(_, f)| f.as_str()).collect();
    ensure(arrived.len() >= written.len(), || {
        format!(
            "{} of the {} readings written arrived as event-notifications within {} s (foci {seen:?})",
            arrived.len(),
            written.len(),
            WAIT.as_secs()
        )
    })?;
    ensure(arrived.len() == written.len(), || {
        format!(
            "{} event-notifications arrived for {} readings written: {seen:?}",
            arrived.len(),
            written.len()
        )
    })?;
    let want: Vec<i64> = (1..=i64::try_from(written.len()).unwrap_or(0)).collect();
    ensure(numbers == want, || {
        format!("event-notifications numbered {numbers:?} in arrival order, expected {want:?}")
    })?;
    ensure(seen == written, || {
        format!(
            "event-notifications' foci in arrival order are {seen:?}, expected the readings in the order written {written:?}"
        )
    })
}

async fn ordering(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let (sub, cast) = need_main(flow)?;
    let base = ctx.manifest.base_url.clone();
    let wtoken = token(ctx, flow, &cast.writer, p).await?;
    for _ in 0..READINGS {
        let id = write_reading(ctx, &cast.writer, &wtoken, &cast.patient.nhs_number, p).await?;
        flow.written.push(id);
    }
    let got = flow
        .receiver
        .wait_for(WAIT, |d| foci(&events_at(d, &sub.path)).len() >= READINGS)
        .await;
    let events = events_at(&got, &sub.path);
    let origin = flow.receiver.origin();
    p.evidence
        .extend(events.iter().map(|d| d.evidence(&origin)));
    flow.delivered = foci(&events);
    let wrong: Vec<String> = events
        .iter()
        .filter(|d| d.json()["type"] != "history" || !names(&note(d), &sub.id))
        .map(|d| d.header("webhook-id").unwrap_or_default().to_owned())
        .collect();
    ensure(wrong.is_empty(), || {
        format!(
            "event-notification(s) {wrong:?} are not history Bundles whose status names Subscription/{}",
            sub.id
        )
    })?;
    let written: Vec<String> = flow
        .written
        .iter()
        .map(|id| format!("{base}/Observation/{id}"))
        .collect();
    judge_sequence(&flow.delivered, &written)?;
    let stoken = token(ctx, flow, &cast.subscriber, p).await?;
    for (focus, id) in written.iter().zip(&flow.written) {
        let a = p.get(focus, Some(&stoken)).await?;
        status(&a, 200, &format!("GET {focus} (a notification's focus)"))?;
        let v = a.json()?;
        ensure(
            v["resourceType"] == "Observation" && v["id"] == id.as_str(),
            || {
                format!(
                    "GET {focus} answered {}/{}, not Observation/{id}",
                    v["resourceType"], v["id"]
                )
            },
        )?;
    }
    Ok(())
}

// ---- NOT-05 ---------------------------------------------------------------------------

/// NOT-05's judgement of `$status`: the subscription's status, active, counting `sent`.
pub fn judge_status(bundle: &Value, id: &str, sent: usize) -> Check {
    let statuses: Vec<Note> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| note_of(&e["resource"]))
        .collect();
    let n = statuses.iter().find(|n| names(n, id)).ok_or_else(|| {
        fail(format!(
            "$status answered no status naming Subscription/{id}"
        ))
    })?;
    ensure(n.kind == "query-status", || {
        format!("$status's type is {:?}, expected query-status", n.kind)
    })?;
    ensure(n.status == "active", || {
        format!(
            "$status reports Subscription/{id} {:?}, expected active",
            n.status
        )
    })?;
    ensure(n.events_since == i64::try_from(sent).ok(), || {
        format!(
            "$status reports events-since-subscription-start {}, but {sent} event-notifications were delivered",
            n.events_since
                .map_or_else(|| "(none)".to_owned(), |e| e.to_string())
        )
    })
}

/// NOT-05's judgement of `$events`: exactly the events `want`, number and focus.
pub fn judge_events(bundle: &Value, query: &str, want: &[(i64, String)]) -> Check {
    let n = note_of(&bundle["entry"][0]["resource"]);
    ensure(n.kind == "query-event", || {
        format!(
            "$events?{query} answered a status of type {:?}, expected query-event",
            n.kind
        )
    })?;
    let got: Vec<i64> = n.events.iter().map(|(e, _)| *e).collect();
    let expected: Vec<i64> = want.iter().map(|(e, _)| *e).collect();
    ensure(got == expected, || {
        format!("$events?{query} answered event numbers {got:?}, expected exactly {expected:?}")
    })?;
    ensure(n.events == want, || {
        format!(
            "$events?{query} answered foci {:?}, not those delivered {:?}",
            n.events.iter().map(|(_, f)| f).collect::<Vec<_>>(),
            want.iter().map(|(_, f)| f).collect::<Vec<_>>()
        )
    })
}

async fn catch_up(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let (sub, cast) = need_main(flow)?;
    if flow.delivered.is_empty() {
        return Err(Verdict::Omit(
            "not run: no event-notification was delivered to catch up on (NOT-04)".into(),
        ));
    }
    let token = token(ctx, flow, &cast.subscriber, p).await?;
    let url = format!("{}/Subscription/{}", ctx.manifest.base_url, sub.id);
    let a = p.get(&format!("{url}/$status"), Some(&token)).await?;
    status(&a, 200, "GET /Subscription/{id}/$status")?;
    judge_status(&a.json()?, &sub.id, flow.delivered.len())?;
    let last = flow.delivered.len();
    let mut ranges = vec![(1, last)];
    if last >= 2 {
        ranges.push((2, 2));
    }
    for (since, until) in ranges {
        let query = format!("eventsSinceNumber={since}&eventsUntilNumber={until}");
        let a = p
            .get(&format!("{url}/$events?{query}"), Some(&token))
            .await?;
        status(
            &a,
            200,
            &format!("GET /Subscription/{{id}}/$events?{query}"),
        )?;
        judge_events(&a.json()?, &query, &flow.delivered[since - 1..until])?;
    }
    Ok(())
}

// ---- NOT-06 ---------------------------------------------------------------------------

/// NOT-06's judgement: of the deliveries to the unpaired supplier's subscription, none
/// mentions `hidden` (`Observation/{id}`), and the control (a focus) arrived.
pub fn judge_withheld(deliveries: &[Delivery], hidden: &str, control: &str, who: &str) -> Check {
    let leak = deliveries
        .iter()
        .find(|d| String::from_utf8_lossy(&d.body).contains(hidden));
    ensure(leak.is_none(), || {
        format!(
            "{who}'s subscription was sent a notification naming {hidden} (webhook-id {}), a reading of a patient at a practice {who} is not paired with",
            leak.and_then(|d| d.header("webhook-id"))
                .unwrap_or_default()
        )
    })?;
    ensure(
        deliveries
            .iter()
            .any(|d| note(d).events.iter().any(|(_, f)| f == control)),
        || {
            format!(
                "the control reading {control}, at a practice {who} is paired with and written afterwards, did not arrive within {} s: deliveries to this subscription are not working, so the other's absence proves nothing",
                WAIT.as_secs()
            )
        },
    )
}

async fn unpaired(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let u = flow.unpaired.clone().ok_or_else(|| {
        Verdict::Skip(
            "every supplier that may subscribe (system/Subscription.c, an Observation read scope) is paired with the practice of every unflagged manifest patient a supplier may write for: a kit cannot change a live gateway's pairings, so there is no unpaired supplier to check with".into(),
        )
    })?;
    let topic = flow.topic.clone().ok_or_else(|| {
        Verdict::Omit("not run: no topic announcing Observation changes (NOT-01)".into())
    })?;
    let who = u.subscriber.client_id.clone();
    let sub = match subscribe(ctx, flow, &u.subscriber, &topic, "_type=Observation", p).await {
        Ok(s) => s,
        Err(Verdict::Fail(m)) => return Err(fail(format!("{who}'s subscription: {m}"))),
        Err(v) => return Err(v),
    };
    flow.watcher = Some(sub.clone());
    let base = ctx.manifest.base_url.clone();
    let wtoken = token(ctx, flow, &u.writer, p).await?;
    let hidden = write_reading(ctx, &u.writer, &wtoken, &u.patient.nhs_number, p).await?;
    let ctoken = token(ctx, flow, &u.control_writer, p).await?;
    let control = write_reading(ctx, &u.control_writer, &ctoken, &u.control.nhs_number, p).await?;
    let control = format!("{base}/Observation/{control}");
    let hidden = format!("Observation/{hidden}");
    let got = flow
        .receiver
        .wait_for(WAIT, |d| {
            foci(&events_at(d, &sub.path))
                .iter()
                .any(|(_, f)| *f == control)
        })
        .await;
    let at: Vec<Delivery> = got.into_iter().filter(|d| d.path == sub.path).collect();
    let origin = flow.receiver.origin();
    p.evidence.extend(
        at.iter()
            .filter(|d| {
                let body = String::from_utf8_lossy(&d.body);
                body.contains(&hidden) || body.contains(&control)
            })
            .map(|d| d.evidence(&origin)),
    );
    judge_withheld(&at, &hidden, &control, &who)?;
    // Caught up on now, it is decided again: still nothing of it.
    let token = token(ctx, flow, &u.subscriber, p).await?;
    let a = p
        .get(
            &format!("{base}/Subscription/{}/$events", sub.id),
            Some(&token),
        )
        .await?;
    status(&a, 200, "GET /Subscription/{id}/$events")?;
    ensure(!String::from_utf8_lossy(&a.body).contains(&hidden), || {
        format!(
            "$events of {who}'s subscription shows {hidden}, a reading at a practice {who} is not paired with"
        )
    })
}

// ---- NOT-07 ---------------------------------------------------------------------------

/// NOT-07's judgement: nothing arrived for the deleted subscription after its DELETE.
pub fn judge_silence(after: &[Delivery], id: &str) -> Check {
    ensure(after.is_empty(), || {
        format!(
            "{} deliveries arrived for Subscription/{id} after its DELETE answered 204 (types {:?})",
            after.len(),
            after.iter().map(|d| note(d).kind).collect::<Vec<_>>()
        )
    })
}

async fn management(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let (sub, cast) = need_main(flow)?;
    let base = ctx.manifest.base_url.clone();
    let url = format!("{base}/Subscription/{}", sub.id);
    let other = ctx
        .manifest
        .active()
        .filter(|s| s.client_id != sub.owner.client_id)
        .max_by_key(|s| (s.has_scope("Subscription", 'r'), !s.practices.is_empty()))
        .cloned()
        .ok_or_else(|| {
            Verdict::Skip(
                "the manifest names no other active supplier to try the subscription as".into(),
            )
        })?;
    let them = other.client_id.clone();
    let otoken = token(ctx, flow, &other, p).await?;
    for method in ["GET", "DELETE"] {
        let a = p.call(method, &url, Some(&otoken), &[], b"").await?;
        status(
            &a,
            404,
            &format!("{method} /Subscription/{{id}} as another supplier ({them})"),
        )?;
    }
    let a = p
        .get(&format!("{base}/Subscription"), Some(&otoken))
        .await?;
    ensure(!String::from_utf8_lossy(&a.body).contains(&sub.id), || {
        format!(
            "GET /Subscription as another supplier ({them}) lists Subscription/{}",
            sub.id
        )
    })?;
    let owner_token = token(ctx, flow, &sub.owner, p).await?;
    let a = p.get(&url, Some(&owner_token)).await?;
    status(
        &a,
        200,
        "GET /Subscription/{id} as its owner, after another supplier's DELETE,",
    )?;
    // Whatever was announced before the DELETE may still be on its way (a later check's
    // control reading may be this patient's): let it all arrive first.
    let a = p.get(&format!("{url}/$status"), Some(&owner_token)).await?;
    status(&a, 200, "GET /Subscription/{id}/$status")?;
    let announced = a.json()?["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| note_of(&e["resource"]))
        .find(|n| names(n, &sub.id))
        .and_then(|n| n.events_since)
        .unwrap_or(0);
    if announced > 0 {
        flow.receiver
            .wait_for(WAIT, |d| {
                foci(&events_at(d, &sub.path))
                    .iter()
                    .any(|(n, _)| *n >= announced)
            })
            .await;
    }
    let before = flow
        .receiver
        .received()
        .iter()
        .map(|d| d.seq)
        .max()
        .unwrap_or(0);
    let a = p.call("DELETE", &url, Some(&owner_token), &[], b"").await?;
    status(&a, 204, "DELETE /Subscription/{id} as its owner")?;
    flow.made.retain(|s| s.id != sub.id);
    flow.main = None;
    let a = p.get(&url, Some(&owner_token)).await?;
    status(&a, 404, "GET /Subscription/{id} after its DELETE")?;
    // A change it would have announced.
    let wtoken = token(ctx, flow, &cast.writer, p).await?;
    let id = write_reading(ctx, &cast.writer, &wtoken, &cast.patient.nhs_number, p).await?;
    let focus = format!("{base}/Observation/{id}");
    // The unpaired supplier's subscription, when paired with the patient's practice, shows
    // the change was announced; otherwise the kit listens a while.
    let watcher = flow.watcher.clone().filter(|w| {
        w.owner.practices.contains(&cast.patient.practice) && flow.made.iter().any(|m| m.id == w.id)
    });
    match watcher {
        Some(w) => {
            let got = flow
                .receiver
                .wait_for(WAIT, |d| {
                    foci(&events_at(d, &w.path))
                        .iter()
                        .any(|(_, f)| *f == focus)
                })
                .await;
            if foci(&events_at(&got, &w.path))
                .iter()
                .any(|(_, f)| *f == focus)
            {
                tokio::time::sleep(GRACE).await;
            }
        }
        None => tokio::time::sleep(QUIET).await,
    }
    let after: Vec<Delivery> = flow
        .receiver
        .received()
        .into_iter()
        .filter(|d| d.path == sub.path && d.seq > before)
        .collect();
    let origin = flow.receiver.origin();
    p.evidence.extend(after.iter().map(|d| d.evidence(&origin)));
    judge_silence(&after, &sub.id)
}

// ---- NOT-03 ---------------------------------------------------------------------------

/// Where the gateway publishes its keys: SMART discovery's `jwks_uri`, else beside the
/// token endpoint.
async fn jwks_url(ctx: &Ctx, p: &mut Probe) -> String {
    let smart = format!("{}/.well-known/smart-configuration", ctx.manifest.base_url);
    if let Ok(a) = p.get(&smart, None).await
        && a.status == 200
        && let Ok(v) = a.json()
        && let Some(u) = v["jwks_uri"].as_str()
    {
        return u.to_owned();
    }
    let token_url = &ctx.manifest.token_url;
    format!(
        "{}/jwks",
        token_url.strip_suffix("/token").unwrap_or(token_url)
    )
}

/// NOT-03's judgement of every delivery: a Standard Webhooks `v1a` signature by one of
/// `keys`, a timestamp within [`MAX_SKEW_SECS`] of arrival, and a body the signature
/// covers (changed by a byte, it no longer verifies).
pub fn judge_signatures(keys: &[DeliveryKey], deliveries: &[Delivery]) -> Check {
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    for d in deliveries {
        let what = format!("delivery {} ({})", d.seq, {
            let n = note(d);
            if n.kind.is_empty() {
                "not a notification Bundle".to_owned()
            } else {
                n.kind
            }
        });
        let id = d.header("webhook-id").unwrap_or_default();
        ensure(!id.is_empty(), || format!("{what} carries no webhook-id"))?;
        let ts = d.header("webhook-timestamp").unwrap_or_default();
        let when: i64 = ts.parse().map_err(|_| {
            fail(format!(
                "{what}: webhook-timestamp {ts:?} is not Unix seconds"
            ))
        })?;
        let signature = d.header("webhook-signature").unwrap_or_default();
        ensure(signature.split(' ').any(|e| e.starts_with("v1a,")), || {
            format!("{what} (webhook-id {id}) carries no v1a webhook-signature (got {signature:?})")
        })?;
        let verifies = |body: &[u8]| {
            keys.iter()
                .any(|k| crate::webhook::verify(&k.public_key, id, ts, body, signature))
        };
        ensure(verifies(&d.body), || {
            format!(
                "{what} (webhook-id {id}): webhook-signature does not verify over {{webhook-id}}.{{webhook-timestamp}}.{{body}} with the JWKS key(s) {kids:?}"
            )
        })?;
        let skew = (when - d.arrived).abs();
        ensure(skew <= MAX_SKEW_SECS, || {
            format!(
                "{what} (webhook-id {id}): webhook-timestamp {when} is {skew} s from its arrival, more than 5 minutes (a receiver refuses it as a possible replay)"
            )
        })?;
        let mut tampered = d.body.to_vec();
        match tampered.first_mut() {
            Some(b) => *b ^= 0x01,
            None => tampered.push(b' '),
        }
        ensure(!verifies(&tampered), || {
            format!(
                "{what} (webhook-id {id}): the signature verifies with the body changed too: it does not cover the body"
            )
        })?;
    }
    Ok(())
}

async fn signatures(ctx: &Ctx, flow: &mut Flow, p: &mut Probe) -> Check {
    let deliveries = flow.receiver.received();
    if deliveries.is_empty() {
        return Err(Verdict::Omit(
            "not run: no delivery arrived at the kit's receiver".into(),
        ));
    }
    let token_kid = flow
        .tokens
        .first()
        .and_then(|(_, t)| crate::webhook::jwt_kid(t));
    let url = jwks_url(ctx, p).await;
    let a = p.get(&url, None).await?;
    status(&a, 200, &format!("GET {url}"))?;
    let keys = crate::webhook::delivery_keys(&a.json()?, token_kid.as_deref());
    ensure(!keys.is_empty(), || {
        format!(
            "the JWKS at {url} holds no OKP/Ed25519 key besides the access-token key{}: a receiver has nothing to verify deliveries with",
            token_kid.map(|k| format!(" (kid {k})")).unwrap_or_default()
        )
    })?;
    let origin = flow.receiver.origin();
    p.evidence
        .extend(deliveries.iter().map(|d| d.evidence(&origin)));
    judge_signatures(&keys, &deliveries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use bytes::Bytes;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const BASE: &str = "http://gw.test/FHIR/R4";

    fn key(seed: u8) -> (Ed25519KeyPair, DeliveryKey) {
        let k = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let public = DeliveryKey {
            kid: format!("hook-{seed}"),
            public_key: k.public_key().as_ref().to_vec(),
        };
        (k, public)
    }

    fn status_params(kind: &str, sub: &str, events: &[(i64, &str)]) -> Value {
        let mut parameter = vec![
            json!({"name": "subscription", "valueReference": {"reference": format!("{BASE}/Subscription/{sub}")}}),
            json!({"name": "topic", "valueCanonical": "https://gw.test/SubscriptionTopic/t"}),
            json!({"name": "status", "valueCode": "active"}),
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "events-since-subscription-start", "valueString": events.len().to_string()}),
        ];
        for (n, f) in events {
            parameter.push(json!({"name": "notification-event", "part": [
                {"name": "event-number", "valueString": n.to_string()},
                {"name": "timestamp", "valueInstant": "2026-12-07T10:00:00Z"},
                {"name": "focus", "valueReference": {"reference": f}}
            ]}));
        }
        json!({"resourceType": "Parameters", "parameter": parameter})
    }

    fn bundle(kind: &str, sub: &str, events: &[(i64, &str)]) -> Value {
        json!({"resourceType": "Bundle", "type": "history",
               "entry": [{"resource": status_params(kind, sub, events)}]})
    }

    /// A delivery as the gateway sends it: signed by `k` (when given) at `ts`.
    fn delivery(seq: u64, body: &Value, k: Option<&Ed25519KeyPair>, ts: i64) -> Delivery {
        let body = Bytes::from(body.to_string());
        let id = format!("msg_{seq}");
        let mut headers = vec![
            ("webhook-id".to_owned(), id.clone()),
            ("webhook-timestamp".to_owned(), ts.to_string()),
        ];
        if let Some(k) = k {
            let content = [id.as_bytes(), b".", ts.to_string().as_bytes(), b".", &body].concat();
            let sig = base64::engine::general_purpose::STANDARD.encode(k.sign(&content));
            headers.push(("webhook-signature".to_owned(), format!("v1a,{sig}")));
        }
        Delivery {
            seq,
            path: "/notifications/a".into(),
            headers,
            body,
            arrived: crate::webhook::now_unix(),
        }
    }

    #[test]
    fn signed_deliveries_pass_and_unsigned_tampered_stale_or_foreign_ones_fail() {
        let (k, public) = key(1);
        let now = crate::webhook::now_unix();
        let good = delivery(1, &bundle("handshake", "s1", &[]), Some(&k), now);
        assert!(
            judge_signatures(std::slice::from_ref(&public), std::slice::from_ref(&good)).is_ok()
        );

        let unsigned = delivery(2, &bundle("event-notification", "s1", &[]), None, now);
        let m =
            judge_signatures(std::slice::from_ref(&public), &[good.clone(), unsigned]).unwrap_err();
        assert!(
            m.message().contains("no v1a webhook-signature"),
            "{}",
            m.message()
        );

        let mut tampered = delivery(
            3,
            &bundle("event-notification", "s1", &[(1, "x")]),
            Some(&k),
            now,
        );
        tampered.body = Bytes::from(tampered.body.iter().rev().copied().collect::<Vec<_>>());
        let m = judge_signatures(std::slice::from_ref(&public), &[tampered]).unwrap_err();
        assert!(m.message().contains("does not verify"), "{}", m.message());
        assert!(matches!(m, Verdict::Fail(_)));

        let stale = delivery(4, &bundle("heartbeat", "s1", &[]), Some(&k), now - 301);
        let m = judge_signatures(std::slice::from_ref(&public), &[stale]).unwrap_err();
        assert!(
            m.message().contains("more than 5 minutes"),
            "{}",
            m.message()
        );

        let (other, _) = key(2);
        let foreign = delivery(5, &bundle("handshake", "s1", &[]), Some(&other), now);
        let m = judge_signatures(std::slice::from_ref(&public), &[foreign]).unwrap_err();
        assert!(m.message().contains("hook-1"), "{}", m.message());

        let mut no_id = good;
        no_id.headers.retain(|(k, _)| k != "webhook-id");
        let m = judge_signatures(&[public], &[no_id]).unwrap_err();
        assert!(m.message().contains("no webhook-id"), "{}", m.message());
    }

    #[test]
    fn a_subscription_is_active_only_after_its_own_handshake() {
        let (k, _) = key(1);
        let now = crate::webhook::now_unix();
        let topic = "https://gw.test/SubscriptionTopic/t";
        let handshake = delivery(1, &bundle("handshake", "s1", &[]), Some(&k), now);
        let active = json!({"resourceType": "Subscription", "status": "active"});
        let requested = json!({"resourceType": "Subscription", "status": "requested"});
        assert_eq!(
            judge_handshake(&requested, None, "s1", topic).ok(),
            Some(false)
        );
        assert_eq!(
            judge_handshake(&active, Some(&handshake), "s1", topic).ok(),
            Some(true)
        );
        let m = judge_handshake(&active, None, "s1", topic).unwrap_err();
        assert!(
            m.message().contains("no handshake had arrived"),
            "{}",
            m.message()
        );
        let m = judge_handshake(&active, Some(&handshake), "s2", topic).unwrap_err();
        assert!(
            m.message().contains("not Subscription/s2"),
            "{}",
            m.message()
        );
        let m = judge_handshake(&active, Some(&handshake), "s1", "https://other").unwrap_err();
        assert!(m.message().contains("names topic"), "{}", m.message());
        let error = json!({"resourceType": "Subscription", "status": "error", "error": "the receiver answered 503"});
        let m = judge_handshake(&error, Some(&handshake), "s1", topic).unwrap_err();
        assert!(m.message().contains("503"), "{}", m.message());
    }

    fn capability(canonicals: &[&str]) -> Value {
        let ext: Vec<Value> = canonicals
            .iter()
            .map(|c| json!({"url": TOPIC_CANONICAL, "valueCanonical": c}))
            .collect();
        json!({"resourceType": "CapabilityStatement", "rest": [{"resource": [
            {"type": "Patient"}, {"type": "Subscription", "extension": ext}]}]})
    }

    fn topics_bundle(urls: &[(&str, &str)]) -> Value {
        let entry: Vec<Value> = urls
            .iter()
            .map(|(u, rt)| json!({"resource": {"resourceType": "Basic",
                "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
                "extension": [
                    {"url": format!("{TOPIC_EXT}url"), "valueUri": u},
                    {"url": format!("{TOPIC_EXT}resourceTrigger"), "extension": [
                        {"url": "resource", "valueUri": format!("http://hl7.org/fhir/StructureDefinition/{rt}")}]}
                ]}}))
            .collect();
        json!({"resourceType": "Bundle", "type": "searchset", "entry": entry})
    }

    #[test]
    fn topics_must_be_advertised_and_published() {
        let published = topics_bundle(&[
            ("https://t/a", "Appointment"),
            ("https://t/b", "Observation"),
        ]);
        assert!(judge_topics(&capability(&["https://t/a", "https://t/b"]), &published).is_ok());
        assert_eq!(
            observation_topic(&published).as_deref(),
            Some("https://t/b")
        );
        let m = judge_topics(&capability(&["https://t/a", "https://t/c"]), &published).unwrap_err();
        assert!(m.message().contains("https://t/c"), "{}", m.message());
        let m = judge_topics(&capability(&[]), &published).unwrap_err();
        assert!(
            m.message().contains("subscriptiontopic-canonical"),
            "{}",
            m.message()
        );
        let none = json!({"resourceType": "CapabilityStatement", "rest": [{"resource": [{"type": "Patient"}]}]});
        let m = judge_topics(&none, &published).unwrap_err();
        assert!(m.message().contains("no Subscription"), "{}", m.message());
    }

    #[test]
    fn events_must_arrive_once_each_numbered_in_the_order_written() {
        let written: Vec<String> = ["o1", "o2", "o3"]
            .iter()
            .map(|i| format!("{BASE}/Observation/{i}"))
            .collect();
        let ok: Vec<(i64, String)> = written
            .iter()
            .enumerate()
            .map(|(i, f)| (i as i64 + 1, f.clone()))
            .collect();
        assert!(judge_sequence(&ok, &written).is_ok());
        let m = judge_sequence(&ok[..2], &written).unwrap_err();
        assert!(m.message().contains("2 of the 3"), "{}", m.message());
        let mut gap = ok.clone();
        gap[2].0 = 4;
        assert!(
            judge_sequence(&gap, &written)
                .unwrap_err()
                .message()
                .contains("numbered")
        );
        let mut swapped = ok.clone();
        swapped.swap(0, 1);
        swapped[0].0 = 1;
        swapped[1].0 = 2;
        assert!(
            judge_sequence(&swapped, &written)
                .unwrap_err()
                .message()
                .contains("order written")
        );
        let mut extra = ok.clone();
        extra.push((4, written[0].clone()));
        assert!(
            judge_sequence(&extra, &written)
                .unwrap_err()
                .message()
                .contains("4 event-notifications")
        );
    }

    #[test]
    fn status_and_events_must_agree_with_what_was_delivered() {
        let delivered = vec![(1, "f1".to_owned()), (2, "f2".to_owned())];
        let searchset = |since: &str| {
            let mut p = status_params("query-status", "s1", &[]);
            p["parameter"][4]["valueString"] = json!(since);
            json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": p}]})
        };
        assert!(judge_status(&searchset("2"), "s1", 2).is_ok());
        assert!(
            judge_status(&searchset("3"), "s1", 2)
                .unwrap_err()
                .message()
                .contains("events-since-subscription-start 3")
        );
        assert!(
            judge_status(&searchset("2"), "s2", 2)
                .unwrap_err()
                .message()
                .contains("no status")
        );
        let events = bundle("query-event", "s1", &[(1, "f1"), (2, "f2")]);
        assert!(judge_events(&events, "q", &delivered).is_ok());
        let more = bundle("query-event", "s1", &[(1, "f1"), (2, "f2"), (3, "f3")]);
        assert!(
            judge_events(&more, "q", &delivered)
                .unwrap_err()
                .message()
                .contains("exactly [1, 2]")
        );
        let other = bundle("query-event", "s1", &[(1, "f1"), (2, "fX")]);
        assert!(
            judge_events(&other, "q", &delivered)
                .unwrap_err()
                .message()
                .contains("foci")
        );
    }

    #[test]
    fn a_leak_or_a_missing_control_fails_the_pairing_check() {
        let (k, _) = key(1);
        let now = crate::webhook::now_unix();
        let control = format!("{BASE}/Observation/c1");
        let hidden = "Observation/h1";
        let handshake = delivery(1, &bundle("handshake", "u", &[]), Some(&k), now);
        let told = delivery(
            2,
            &bundle("event-notification", "u", &[(1, &control)]),
            Some(&k),
            now,
        );
        let leak = delivery(
            3,
            &bundle(
                "event-notification",
                "u",
                &[(1, &format!("{BASE}/{hidden}"))],
            ),
            Some(&k),
            now,
        );
        assert!(judge_withheld(&[handshake.clone(), told.clone()], hidden, &control, "u").is_ok());
        let m =
            judge_withheld(&[handshake.clone(), leak, told], hidden, &control, "u").unwrap_err();
        assert!(m.message().contains("not paired"), "{}", m.message());
        let m =
            judge_withheld(std::slice::from_ref(&handshake), hidden, &control, "u").unwrap_err();
        assert!(m.message().contains("did not arrive"), "{}", m.message());
        assert!(judge_silence(&[], "s1").is_ok());
        assert!(
            judge_silence(&[handshake], "s1")
                .unwrap_err()
                .message()
                .contains("after its DELETE")
        );
    }
}
