//! `appointments`: appointment management as a booking supplier sees it, acting as the
//! manifest's booking supplier ([`crate::manifest::Manifest::booker`]). Once: the free-slot
//! search's refusals and pairing. Then per GP system, for an unflagged test patient of a
//! paired practice: the slot search with its includes and filters, a booking (and its
//! retry), read by id, amend with `If-Match` (and a stale one), cancel freeing the slot,
//! amending a cancelled appointment, a race of concurrent bookings for one slot, the
//! patient's appointments, and the booking refusals. The suite books and cancels: point
//! it only at a sandbox or a test environment.

use std::sync::Arc;

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, Weekday};

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::Supplier;
use crate::model::{Check, TestDef, Verdict, ensure};
use crate::run_test;

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "APT-SLOT-01",
        "slots",
        "a 14-day free-slot search with every include answers a searchset: free Slots (start before end, in the range, serviceType text, ids {ODS}-…) each with its Schedule, whose actors (Practitioner, PractitionerRole, Location) and the Location's managing Organization are included once each, as search.mode include",
        "REQ-APT-01",
    ),
    TestDef::required(
        "APT-SLOT-02",
        "slots",
        "slot search filters: practice as system|code answers as the bare code; _include=Slot:schedule alone includes only Schedules; service-type answers exactly the slots of that type; the three delivery channels partition the slots",
        "REQ-APT-01",
    ),
    TestDef::required(
        "APT-SLOT-03",
        "slots",
        "a slot search over more than 14 days is refused 422 INVALID_PARAMETER naming start or end",
        "REQ-APT-02",
    ),
    TestDef::required(
        "APT-SLOT-04",
        "slots",
        "a slot search without _include=Slot:schedule is refused 422 INVALID_PARAMETER naming _include",
        "REQ-APT-02",
    ),
    TestDef::required(
        "APT-SLOT-05",
        "slots",
        "a slot search for a status other than free is refused 422 INVALID_PARAMETER naming status",
        "REQ-APT-02",
    ),
    TestDef::required(
        "APT-SLOT-06",
        "slots",
        "slots of practices the supplier is not paired with are never shown: a search without a practice answers only paired practices' slots, and a search naming an unpaired practice answers none",
        "REQ-APT-03",
    ),
    TestDef::required(
        "APT-BOOK-01",
        "booking",
        "POST /Appointment for a free slot answers 201 with Location [base]/Appointment/{id}/_history/{vid}, ETag W/\"{vid}\" and the Appointment as held (status, slot, start, end, description, comment, identifier, patient); the slot is no longer offered",
        "REQ-APT-04",
    ),
    TestDef::required(
        "APT-READ-01",
        "booking",
        "GET /Appointment/{id} answers the booked Appointment with the create's ETag; an unknown id answers 404",
        "REQ-APT-04",
    ),
    TestDef::required(
        "APT-BOOK-02",
        "booking",
        "the same booking again (same identifier) answers 200 with the same Appointment id and books nothing more",
        "REQ-APT-05",
    ),
    TestDef::required(
        "APT-AMD-01",
        "amend",
        "PUT /Appointment/{id} with If-Match and a new description and comment answers 200 with a new ETag, and the next read holds them",
        "REQ-APT-07",
    ),
    TestDef::required(
        "APT-AMD-02",
        "amend",
        "PUT /Appointment/{id} with a stale If-Match answers 412 and changes nothing",
        "REQ-APT-07",
    ),
    TestDef::required(
        "APT-CAN-01",
        "cancel",
        "PUT /Appointment/{id} with status cancelled and a cancelationReason answers 200 cancelled, and the slot is offered again in the free-slot search",
        "REQ-APT-08",
    ),
    TestDef::required(
        "APT-CAN-02",
        "cancel",
        "changing a cancelled appointment answers 422 INVALID_RESOURCE",
        "REQ-APT-08",
    ),
    TestDef::required(
        "APT-RACE-01",
        "booking",
        "concurrent POSTs of one free slot with different identifiers: exactly one 201, every other 409 DUPLICATE_REJECTED",
        "REQ-APT-06",
    ),
    TestDef::required(
        "APT-SRCH-01",
        "search",
        "GET /Appointment?patient=…&date=ge…&date=le… answers a searchset holding the patient's booked and cancelled appointments",
        "REQ-APT-09",
    ),
    TestDef::required(
        "APT-REF-01",
        "refusals",
        "a booking with a reasonCode is refused 422 naming Appointment.reasonCode",
        "REQ-APT-10",
    ),
    TestDef::required(
        "APT-REF-02",
        "refusals",
        "a booking of a slot that has started, or for a time that has passed, is refused 422",
        "REQ-APT-10",
    ),
];

/// Where the kit's bookings are identified.
const KIT_BOOKINGS: &str = "https://gp-conformance.invalid/Id/booking";
/// Concurrent bookings racing for one slot.
const RACERS: usize = 10;
/// Slots the kit books start at least this long from now.
const LEAD: Duration = Duration::hours(1);
/// Pages of an appointment search followed at most.
const MAX_PAGES: usize = 20;

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some(sup) = ctx.manifest.booker().cloned() else {
        rec.close_rest(Verdict::Skip(
            "the manifest names no booking supplier: mark one \"booking\": true, or give one system/Slot.s and system/Appointment.c scopes and a practice"
                .into(),
        ));
        return;
    };
    let mut p = rec.probe();
    let token = super::security::token(ctx, &sup, &mut p.0).await;
    rec.setup_request_ids
        .extend(p.0.evidence.iter().map(|e| e.request_id.clone()));
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            rec.omit_rest(&format!("no access token for {}: {e}", sup.client_id));
            return;
        }
    };
    let on = On {
        ctx,
        sup: &sup,
        token: &token,
    };
    run_test!(rec, "APT-SLOT-03", None, too_wide(&on));
    run_test!(rec, "APT-SLOT-04", None, without_schedule(&on));
    run_test!(rec, "APT-SLOT-05", None, not_free(&on));
    run_test!(rec, "APT-SLOT-06", None, unpaired(&on));
    for system in ctx.manifest.systems() {
        let sys = Some(system.as_str());
        let mut flow = Flow {
            patient: patient(ctx, &sup, &system),
            ..Flow::default()
        };
        run_test!(rec, "APT-SLOT-01", sys, slot_search(&on, &mut flow));
        run_test!(rec, "APT-SLOT-02", sys, filters(&on, &flow));
        run_test!(rec, "APT-BOOK-01", sys, book(&on, &mut flow));
        run_test!(rec, "APT-READ-01", sys, read(&on, &flow));
        run_test!(rec, "APT-BOOK-02", sys, repeat(&on, &flow));
        run_test!(rec, "APT-AMD-01", sys, amend(&on, &mut flow));
        run_test!(rec, "APT-AMD-02", sys, stale(&on, &flow));
        run_test!(rec, "APT-CAN-01", sys, cancel(&on, &mut flow));
        run_test!(rec, "APT-CAN-02", sys, change_cancelled(&on, &flow));
        run_test!(rec, "APT-RACE-01", sys, race(&on, &mut flow));
        run_test!(rec, "APT-SRCH-01", sys, patient_search(&on, &flow));
        run_test!(rec, "APT-REF-01", sys, with_reason(&on, &flow));
        run_test!(rec, "APT-REF-02", sys, past_slot(&on, &flow));
        // Leave the book as found: the race's winner is cancelled again.
        if let Some(won) = &flow.raced {
            let mut p = rec.probe();
            let _ = cancel_held(&on, won, "Conformance kit: clean-up", &mut p.0).await;
            rec.setup_request_ids
                .extend(p.0.evidence.iter().map(|e| e.request_id.clone()));
        }
    }
}

/// What every test acts with: the kit's booking supplier and its token.
struct On<'a> {
    ctx: &'a Ctx,
    sup: &'a Supplier,
    token: &'a str,
}

impl On<'_> {
    fn base(&self) -> &str {
        &self.ctx.manifest.base_url
    }
}

/// A free slot as the search answered it, with what a booking of it needs.
#[derive(Debug, Clone)]
struct FreeSlot {
    id: String,
    start: String,
    end: String,
    /// `Location/{id}`: its Schedule's Location actor.
    location: String,
}

/// An appointment the kit holds: its id, its ETag and the slot it holds.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    etag: String,
    slot: FreeSlot,
    /// The booking body sent (for the retry).
    body: Value,
}

/// What one GP system's tests hand on to the next.
#[derive(Debug, Default)]
struct Flow {
    /// An unflagged test patient (NHS number, practice).
    patient: Option<(String, String)>,
    /// Free slots at the patient's practice starting an hour from now or later.
    free: Vec<FreeSlot>,
    /// What APT-BOOK-01 booked; cancelled by APT-CAN-01.
    booked: Option<Held>,
    /// Whether APT-CAN-01 cancelled it.
    cancelled: bool,
    /// The race's winner.
    raced: Option<Held>,
}

/// An unflagged manifest patient on `system` at a practice the supplier is paired with.
fn patient(ctx: &Ctx, sup: &Supplier, system: &str) -> Option<(String, String)> {
    ctx.manifest
        .patients
        .iter()
        .find(|p| p.system == system && p.flags.is_empty() && sup.practices.contains(&p.practice))
        .map(|p| (p.nhs_number.clone(), p.practice.clone()))
}

fn need(flow: &Flow) -> Result<(&str, &str), Verdict> {
    flow.patient
        .as_ref()
        .map(|(n, o)| (n.as_str(), o.as_str()))
        .ok_or_else(|| {
            Verdict::Omit(
                "the manifest has no unflagged patient on this GP system at a practice the booking supplier is paired with"
                    .into(),
            )
        })
}

fn need_booked(flow: &Flow) -> Result<&Held, Verdict> {
    flow.booked
        .as_ref()
        .ok_or_else(|| Verdict::Omit("not run: APT-BOOK-01 booked nothing".into()))
}

// ---- dates and URLs ----

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Percent-encodes a query parameter value.
fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every include the contract knows.
const ALL_INCLUDES: &str = "&_include=Slot:schedule&_include:recurse=Schedule:actor:Practitioner&_include:recurse=Schedule:actor:PractitionerRole&_include:recurse=Schedule:actor:Location&_include:recurse=Location:managingOrganization";

/// A free-slot search from `from` to `to` (dates), at `practice` when given, with
/// `rest` appended (includes, filters).
fn slot_url(on: &On<'_>, from: Date, to: Date, practice: Option<&str>, rest: &str) -> String {
    let mut url = format!(
        "{}/Slot?start=ge{}&end=le{}&status=free",
        on.base(),
        day(from),
        day(to)
    );
    if let Some(ods) = practice {
        url.push_str(&format!("&practice={ods}"));
    }
    url.push_str(rest);
    url
}

fn instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

// ---- answers ----

/// `… HTTP {status} ({Spine code})` for a message.
fn shown(a: &Answer) -> String {
    format!(
        "HTTP {}{}",
        a.status,
        a.spine_code()
            .map(|(_, c)| format!(" ({c})"))
            .unwrap_or_default()
    )
}

fn status(a: &Answer, want: u16, what: &str) -> Check {
    ensure(a.status == want, || {
        format!("{what} answered {}, expected HTTP {want}", shown(a))
    })
}

/// A refusal: `want` status, an OperationOutcome with Spine `code` (when given), and an
/// `issue[0].expression` naming one of `names` (when given).
fn refusal(a: &Answer, want: u16, code: Option<&str>, names: &[&str], what: &str) -> Check {
    status(a, want, what)?;
    if let Some(code) = code {
        super::security::outcome(a, code)?;
    }
    if names.is_empty() {
        return Ok(());
    }
    let v = a.json()?;
    let expressions: Vec<&str> = v["issue"][0]["expression"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure(
        expressions
            .iter()
            .any(|e| names.iter().any(|n| e == n || e.contains(n))),
        || format!("{what}: issue[0].expression is {expressions:?}, naming none of {names:?}"),
    )
}

fn kind_id(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap_or("?"),
        r["id"].as_str().unwrap_or("?")
    )
}

/// A searchset's entries: (search mode, resource).
fn entries(v: &Value) -> Vec<(&str, &Value)> {
    v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["search"]["mode"].as_str().unwrap_or(""), &e["resource"]))
        .collect()
}

fn searchset(a: &Answer, what: &str) -> Result<Value, Verdict> {
    status(a, 200, what)?;
    let v = a.json()?;
    ensure(
        v["resourceType"] == "Bundle" && v["type"] == "searchset",
        || {
            format!(
                "{what}: expected a searchset Bundle, got {} of type {}",
                v["resourceType"], v["type"]
            )
        },
    )?;
    Ok(v)
}

/// The matched Slots of a slot search.
fn slots(v: &Value) -> Vec<&Value> {
    entries(v)
        .into_iter()
        .filter(|(mode, r)| *mode == "match" || r["resourceType"] == "Slot")
        .map(|(_, r)| r)
        .collect()
}

fn slot_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = slots(v)
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// The free Slots of a search whose Schedule (included) names a Location.
fn free_slots(v: &Value) -> Vec<FreeSlot> {
    let all = entries(v);
    slots(v)
        .into_iter()
        .filter_map(|s| {
            let schedule = s["schedule"]["reference"].as_str()?;
            let sched = all
                .iter()
                .map(|(_, r)| *r)
                .find(|r| kind_id(r) == schedule)?;
            let location = sched["actor"]
                .as_array()?
                .iter()
                .filter_map(|a| a["reference"].as_str())
                .find(|r| r.starts_with("Location/"))?;
            Some(FreeSlot {
                id: s["id"].as_str()?.to_owned(),
                start: s["start"].as_str()?.to_owned(),
                end: s["end"].as_str()?.to_owned(),
                location: location.to_owned(),
            })
        })
        .collect()
}

/// The ODS code a `{ODS}-{native}` id names.
fn ods_of(id: &str) -> &str {
    id.split_once('-').map_or("", |(o, _)| o)
}

// ---- the search ----

/// APT-SLOT-01: everything a booking app reads from the free-slot search.
async fn slot_search(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let (_, ods) = need(flow)?;
    let ods = ods.to_owned();
    let (from, to) = (today(), today() + Duration::days(13));
    let a = p
        .get(
            &slot_url(on, from, to, Some(&ods), ALL_INCLUDES),
            Some(on.token),
        )
        .await?;
    let v = searchset(&a, "the free-slot search")?;
    // What the booking tests need, whatever the structural checks below find.
    let lead = OffsetDateTime::now_utc() + LEAD;
    flow.free = free_slots(&v)
        .into_iter()
        .filter(|s| instant(&s.start).is_some_and(|t| t > lead))
        .collect();
    let all = entries(&v);
    let mut seen: Vec<String> = Vec::new();
    for (mode, r) in &all {
        let name = kind_id(r);
        ensure(!seen.contains(&name), || {
            format!("{name} is answered twice")
        })?;
        seen.push(name.clone());
        let t = r["resourceType"].as_str().unwrap_or("");
        let want = if t == "Slot" { "match" } else { "include" };
        ensure(*mode == want, || {
            format!("{name} has search.mode {mode:?}, expected {want}")
        })?;
        ensure(
            matches!(
                t,
                "Slot"
                    | "Schedule"
                    | "Practitioner"
                    | "PractitionerRole"
                    | "Location"
                    | "Organization"
            ),
            || format!("{name}: a free-slot search answers no {t}"),
        )?;
        if t != "Organization" && t != "Practitioner" {
            ensure(ods_of(r["id"].as_str().unwrap_or("")) == ods, || {
                format!("{name}: the id is not {ods}-{{native id}}")
            })?;
        }
    }
    let (lo, hi) = (
        from.midnight().assume_utc() - Duration::hours(1),
        (to + Duration::days(1)).midnight().assume_utc() + Duration::hours(1),
    );
    let found = slots(&v);
    ensure(!found.is_empty(), || {
        format!("no free slot at {ods} in 14 days: the search cannot be judged")
    })?;
    for s in &found {
        let name = kind_id(s);
        ensure(s["status"] == "free", || {
            format!("{name}.status is {}", s["status"])
        })?;
        let (start, end) = (
            s["start"].as_str().and_then(instant),
            s["end"].as_str().and_then(instant),
        );
        let (Some(start), Some(end)) = (start, end) else {
            return Err(Verdict::Fail(format!(
                "{name}: start {} / end {} are not instants",
                s["start"], s["end"]
            )));
        };
        ensure(start < end && start >= lo && start < hi, || {
            format!(
                "{name}: {start} to {end} is not a slot inside the range searched ({} to {})",
                day(from),
                day(to)
            )
        })?;
        ensure(
            s["serviceType"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            || format!("{name}: no serviceType[0].text"),
        )?;
        let schedule = s["schedule"]["reference"].as_str().unwrap_or("");
        let sched = all.iter().map(|(_, r)| *r).find(|r| kind_id(r) == schedule);
        let Some(sched) = sched else {
            return Err(Verdict::Fail(format!(
                "{name}.schedule {schedule:?} is not an included Schedule"
            )));
        };
        for actor in sched["actor"].as_array().into_iter().flatten() {
            let r = actor["reference"].as_str().unwrap_or("");
            ensure(seen.iter().any(|s| s == r), || {
                format!("{schedule}.actor {r:?} is not included")
            })?;
        }
    }
    for (_, l) in all.iter().filter(|(_, r)| r["resourceType"] == "Location") {
        let org = l["managingOrganization"]["reference"]
            .as_str()
            .unwrap_or("");
        let want = format!("Organization/{ods}");
        ensure(org == want, || {
            format!("{}.managingOrganization is {org:?}, not {want}", kind_id(l))
        })?;
        ensure(seen.contains(&want), || format!("{want} is not included"))?;
    }
    ensure(flow.free.len() >= 3, || {
        format!(
            "{} free slot(s) at {ods} start an hour from now or later: the kit needs 3 to book",
            flow.free.len()
        )
    })
}

/// APT-SLOT-02: the search's filters and includes.
async fn filters(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let (_, ods) = need(flow)?;
    let (from, to) = (today(), today() + Duration::days(6));
    let url = |practice: &str, rest: &str| slot_url(on, from, to, Some(practice), rest);
    let bare = searchset(
        &p.get(&url(ods, "&_include=Slot:schedule"), Some(on.token))
            .await?,
        "the search with _include=Slot:schedule alone",
    )?;
    if let Some((_, r)) = entries(&bare)
        .into_iter()
        .find(|(_, r)| !matches!(r["resourceType"].as_str(), Some("Slot" | "Schedule")))
    {
        return Err(Verdict::Fail(format!(
            "_include=Slot:schedule alone included {}",
            kind_id(r)
        )));
    }
    let ids = slot_ids(&bare);
    ensure(!ids.is_empty(), || {
        format!("no free slot at {ods} in 7 days: the filters cannot be judged")
    })?;
    let system = enc(&format!(
        "https://fhir.nhs.uk/Id/ods-organization-code|{ods}"
    ));
    let coded = searchset(
        &p.get(&url(&system, "&_include=Slot:schedule"), Some(on.token))
            .await?,
        "the search with practice as system|code",
    )?;
    ensure(slot_ids(&coded) == ids, || {
        "practice=https://fhir.nhs.uk/Id/ods-organization-code|{ODS} answered other slots than practice={ODS}".into()
    })?;
    let types: Vec<(String, String)> = slots(&bare)
        .iter()
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_owned(),
                s["serviceType"][0]["text"].as_str()?.to_owned(),
            ))
        })
        .collect();
    if let Some((_, service)) = types.first() {
        let typed = searchset(
            &p.get(
                &url(
                    ods,
                    &format!("&_include=Slot:schedule&service-type={}", enc(service)),
                ),
                Some(on.token),
            )
            .await?,
            "the search by service-type",
        )?;
        let mut want: Vec<String> = types
            .iter()
            .filter(|(_, t)| t == service)
            .map(|(id, _)| id.clone())
            .collect();
        want.sort();
        ensure(slot_ids(&typed) == want, || {
            format!(
                "service-type={service} answered {} slots, {} of the unfiltered search's are of that type",
                slot_ids(&typed).len(),
                want.len()
            )
        })?;
    }
    let mut union: Vec<String> = Vec::new();
    for channel in ["In-person", "Telephone", "Video"] {
        let by = searchset(
            &p.get(
                &url(
                    ods,
                    &format!("&_include=Slot:schedule&delivery-channel={channel}"),
                ),
                Some(on.token),
            )
            .await?,
            "the search by delivery-channel",
        )?;
        for id in slot_ids(&by) {
            ensure(!union.contains(&id), || {
                format!("Slot/{id} is answered for two delivery channels")
            })?;
            union.push(id);
        }
    }
    union.sort();
    ensure(union == ids, || {
        format!(
            "the three delivery channels answered {} slots together, the unfiltered search {}",
            union.len(),
            ids.len()
        )
    })
}

/// The first practice the supplier is paired with, for the once-only tests.
fn a_practice(on: &On<'_>) -> Result<String, Verdict> {
    on.sup
        .practices
        .first()
        .cloned()
        .ok_or_else(|| Verdict::Omit("the booking supplier is paired with no practice".into()))
}

async fn too_wide(on: &On<'_>, p: &mut Probe) -> Check {
    let ods = a_practice(on)?;
    let url = slot_url(
        on,
        today(),
        today() + Duration::days(20),
        Some(&ods),
        "&_include=Slot:schedule",
    );
    let a = p.get(&url, Some(on.token)).await?;
    refusal(
        &a,
        422,
        Some("INVALID_PARAMETER"),
        &["start", "end"],
        "a 20-day slot search",
    )
}

async fn without_schedule(on: &On<'_>, p: &mut Probe) -> Check {
    let ods = a_practice(on)?;
    let url = slot_url(on, today(), today() + Duration::days(6), Some(&ods), "");
    let a = p.get(&url, Some(on.token)).await?;
    refusal(
        &a,
        422,
        Some("INVALID_PARAMETER"),
        &["_include"],
        "a slot search without _include=Slot:schedule",
    )
}

async fn not_free(on: &On<'_>, p: &mut Probe) -> Check {
    let ods = a_practice(on)?;
    let url = slot_url(
        on,
        today(),
        today() + Duration::days(6),
        Some(&ods),
        "&_include=Slot:schedule",
    )
    .replace("status=free", "status=busy");
    let a = p.get(&url, Some(on.token)).await?;
    refusal(
        &a,
        422,
        Some("INVALID_PARAMETER"),
        &["status"],
        "a slot search for status=busy",
    )
}

/// The next weekday from tomorrow: a day the practices hold sessions.
fn next_weekday() -> Date {
    let mut d = today() + Duration::days(1);
    while matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
        d += Duration::days(1);
    }
    d
}

async fn unpaired(on: &On<'_>, p: &mut Probe) -> Check {
    let d = next_weekday();
    let url = slot_url(
        on,
        d,
        d + Duration::days(1),
        None,
        "&_include=Slot:schedule&_include:recurse=Schedule:actor:Location&_include:recurse=Location:managingOrganization",
    );
    let v = searchset(
        &p.get(&url, Some(on.token)).await?,
        "a slot search without a practice",
    )?;
    for (_, r) in entries(&v) {
        let t = r["resourceType"].as_str().unwrap_or("");
        let ods = match t {
            "Organization" => r["id"].as_str().unwrap_or(""),
            "Slot" | "Schedule" | "Location" => ods_of(r["id"].as_str().unwrap_or("")),
            _ => continue,
        };
        ensure(on.sup.practices.iter().any(|p| p == ods), || {
            format!(
                "{} belongs to {ods}, a practice {} is not paired with",
                kind_id(r),
                on.sup.client_id
            )
        })?;
    }
    let unpaired = on
        .ctx
        .manifest
        .patients
        .iter()
        .map(|pt| &pt.practice)
        .find(|ods| !on.sup.practices.contains(ods));
    if let Some(ods) = unpaired {
        let url = slot_url(
            on,
            d,
            d + Duration::days(1),
            Some(ods),
            "&_include=Slot:schedule",
        );
        let a = p.get(&url, Some(on.token)).await?;
        if a.status == 200 {
            let v = a.json()?;
            ensure(slots(&v).is_empty(), || {
                format!(
                    "practice={ods} (not paired with {}) answered {} slots",
                    on.sup.client_id,
                    slots(&v).len()
                )
            })?;
        } else {
            ensure((400..500).contains(&a.status), || {
                format!("practice={ods} (not paired) answered {}", shown(&a))
            })?;
        }
    }
    Ok(())
}

// ---- booking ----

fn booking_body(nhs: &str, slot: &FreeSlot, key: &str) -> Value {
    json!({
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": format!("Slot/{}", slot.id)}],
        "start": slot.start,
        "end": slot.end,
        "created": now_rfc3339(),
        "description": "Conformance kit booking",
        "comment": "Booked by the gp-conformance kit: please ignore",
        "identifier": [{"system": KIT_BOOKINGS, "value": key}],
        "participant": [
            {"actor": {"reference": format!("Patient/{nhs}")}, "status": "accepted"},
            {"actor": {"reference": slot.location}, "status": "accepted"}
        ]
    })
}

async fn post(on: &On<'_>, body: &Value, p: &mut Probe) -> Result<Answer, Verdict> {
    p.call(
        "POST",
        &format!("{}/Appointment", on.base()),
        Some(on.token),
        &[("content-type", "application/fhir+json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// Whether the slot is offered in a free-slot search of its day.
async fn offered(on: &On<'_>, ods: &str, slot: &FreeSlot, p: &mut Probe) -> Result<bool, Verdict> {
    let d = slot
        .start
        .get(..10)
        .and_then(|d| {
            Date::parse(
                d,
                &time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()
        })
        .unwrap_or_else(today);
    let url = slot_url(
        on,
        d,
        d + Duration::days(1),
        Some(ods),
        "&_include=Slot:schedule",
    );
    let v = searchset(&p.get(&url, Some(on.token)).await?, "the free-slot search")?;
    Ok(slot_ids(&v).contains(&slot.id))
}

/// The Appointment a 200/201 answers, with its ETag's version.
fn appointment(a: &Answer, what: &str) -> Result<(Value, String), Verdict> {
    let v = a.json()?;
    ensure(v["resourceType"] == "Appointment", || {
        format!(
            "{what} answered a {}, not an Appointment",
            v["resourceType"]
        )
    })?;
    let etag = a
        .header("etag")
        .map(str::to_owned)
        .ok_or_else(|| Verdict::Fail(format!("{what} answered no ETag")))?;
    Ok((v, etag))
}

async fn book(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let (nhs, ods) = need(flow)?;
    let (nhs, ods) = (nhs.to_owned(), ods.to_owned());
    let slot =
        flow.free.first().cloned().ok_or_else(|| {
            Verdict::Omit("not run: APT-SLOT-01 found no free slot to book".into())
        })?;
    let key = uuid::Uuid::new_v4().to_string();
    let body = booking_body(&nhs, &slot, &key);
    let a = post(on, &body, p).await?;
    status(&a, 201, "POST /Appointment")?;
    let (v, etag) = appointment(&a, "POST /Appointment")?;
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    ensure(ods_of(&id) == ods, || {
        format!("Appointment id {id:?} is not {ods}-{{native id}}")
    })?;
    let vid = v["meta"]["versionId"].as_str().unwrap_or_default();
    let location = format!("{}/Appointment/{id}/_history/{vid}", on.base());
    ensure(
        !vid.is_empty() && a.header("location") == Some(location.as_str()),
        || {
            format!(
                "the 201's Location is {:?} (meta.versionId {vid:?}), expected {}/Appointment/{{id}}/_history/{{meta.versionId}}",
                a.header("location"),
                on.base()
            )
        },
    )?;
    ensure(etag == format!("W/\"{vid}\""), || {
        format!("the 201's ETag is {etag}, expected W/\"{vid}\" (its meta.versionId)")
    })?;
    as_held(&v, &body)?;
    let held = Held {
        id,
        etag,
        slot: slot.clone(),
        body,
    };
    flow.booked = Some(held);
    ensure(!offered(on, &ods, &slot, p).await?, || {
        format!(
            "Slot/{} is still offered as free after its booking",
            slot.id
        )
    })
}

/// Checks an Appointment answered holds what was booked.
fn as_held(v: &Value, sent: &Value) -> Check {
    let id = v["id"].as_str().unwrap_or("?");
    ensure(v["status"] == "booked", || {
        format!("Appointment/{id}.status is {}, not booked", v["status"])
    })?;
    ensure(
        v["slot"][0]["reference"] == sent["slot"][0]["reference"],
        || {
            format!(
                "Appointment/{id}.slot is {}, not {}",
                v["slot"], sent["slot"][0]["reference"]
            )
        },
    )?;
    for element in ["start", "end"] {
        let (got, want) = (
            v[element].as_str().and_then(instant),
            sent[element].as_str().and_then(instant),
        );
        ensure(got.is_some() && got == want, || {
            format!(
                "Appointment/{id}.{element} is {}, not the slot's {}",
                v[element], sent[element]
            )
        })?;
    }
    for element in ["description", "comment"] {
        ensure(v[element] == sent[element], || {
            format!(
                "Appointment/{id}.{element} is {}, not {}",
                v[element], sent[element]
            )
        })?;
    }
    let key = &sent["identifier"][0]["value"];
    ensure(
        v["identifier"].as_array().is_some_and(|ids| {
            ids.iter()
                .any(|i| i["system"] == KIT_BOOKINGS && i["value"] == *key)
        }),
        || format!("Appointment/{id} lost the identifier {KIT_BOOKINGS}|{key}"),
    )?;
    let patient = &sent["participant"][0]["actor"]["reference"];
    ensure(
        v["participant"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|x| x["actor"]["reference"] == *patient)),
        || format!("Appointment/{id} names no participant {patient}"),
    )
}

/// The id with its last character changed to another of the same kind: the shape a
/// GP system's ids have, naming nothing.
fn unknown_id(id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            '0'..='8' | 'a'..='y' | 'A'..='Y' => char::from(*last as u8 + 1),
            '9' => '0',
            'z' => 'a',
            'Z' => 'A',
            c => c,
        };
    }
    chars.into_iter().collect()
}

async fn read(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let held = need_booked(flow)?;
    let url = format!("{}/Appointment/{}", on.base(), held.id);
    let a = p.get(&url, Some(on.token)).await?;
    status(&a, 200, "GET /Appointment/{id}")?;
    let (v, etag) = appointment(&a, "GET /Appointment/{id}")?;
    ensure(v["id"] == held.id.as_str(), || {
        format!(
            "GET Appointment/{} answered Appointment/{}",
            held.id, v["id"]
        )
    })?;
    ensure(etag == held.etag, || {
        format!("the read's ETag is {etag}, the create's {}", held.etag)
    })?;
    as_held(&v, &held.body)?;
    let nobody = unknown_id(&held.id);
    let b = p
        .get(
            &format!("{}/Appointment/{nobody}", on.base()),
            Some(on.token),
        )
        .await?;
    refusal(
        &b,
        404,
        None,
        &[],
        &format!("GET /Appointment/{nobody} (unknown)"),
    )
}

async fn repeat(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let held = need_booked(flow)?;
    let a = post(on, &held.body, p).await?;
    status(&a, 200, "the same booking again (same identifier)")?;
    let v = a.json()?;
    ensure(v["id"] == held.id.as_str(), || {
        format!(
            "the same booking again answered Appointment/{}, not the first's Appointment/{}",
            v["id"], held.id
        )
    })
}

/// Reads an appointment: its body and ETag.
async fn current(on: &On<'_>, id: &str, p: &mut Probe) -> Result<(Value, String), Verdict> {
    let a = p
        .get(&format!("{}/Appointment/{id}", on.base()), Some(on.token))
        .await?;
    status(&a, 200, "GET /Appointment/{id}")?;
    appointment(&a, "GET /Appointment/{id}")
}

async fn put(
    on: &On<'_>,
    id: &str,
    etag: &str,
    body: &Value,
    p: &mut Probe,
) -> Result<Answer, Verdict> {
    p.call(
        "PUT",
        &format!("{}/Appointment/{id}", on.base()),
        Some(on.token),
        &[
            ("content-type", "application/fhir+json"),
            ("if-match", etag),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

const AMENDED: (&str, &str) = (
    "Conformance kit booking, amended",
    "Amended by the gp-conformance kit: please ignore",
);

async fn amend(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let held = need_booked(flow)?.clone();
    let (mut v, etag) = current(on, &held.id, p).await?;
    v["description"] = json!(AMENDED.0);
    v["comment"] = json!(AMENDED.1);
    let a = put(on, &held.id, &etag, &v, p).await?;
    status(&a, 200, "PUT /Appointment/{id} with If-Match")?;
    let new = a.header("etag").unwrap_or_default().to_owned();
    ensure(!new.is_empty() && new != etag, || {
        format!("the amend answered ETag {new:?}, not a new one (was {etag})")
    })?;
    let (back, read_etag) = current(on, &held.id, p).await?;
    ensure(
        back["description"] == AMENDED.0 && back["comment"] == AMENDED.1,
        || {
            format!(
                "the next read holds description {} and comment {}: the amend was not kept",
                back["description"], back["comment"]
            )
        },
    )?;
    ensure(read_etag == new, || {
        format!("the amend answered ETag {new}, the next read {read_etag}")
    })
}

async fn stale(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let held = need_booked(flow)?;
    let (mut v, etag) = current(on, &held.id, p).await?;
    ensure(etag != held.etag, || {
        "not run: the appointment still has the create's ETag (APT-AMD-01 did not change it)".into()
    })?;
    v["description"] = json!("Stale amend: must not be kept");
    let a = put(on, &held.id, &held.etag, &v, p).await?;
    status(
        &a,
        412,
        &format!("PUT with the stale If-Match {}", held.etag),
    )?;
    let (back, after) = current(on, &held.id, p).await?;
    ensure(after == etag && back["description"] == AMENDED.0, || {
        format!(
            "after the refused stale PUT the appointment reads description {} with ETag {after} (was {etag})",
            back["description"]
        )
    })
}

/// Cancels `held` as it now reads; the answer.
async fn cancel_held(
    on: &On<'_>,
    held: &Held,
    reason: &str,
    p: &mut Probe,
) -> Result<Answer, Verdict> {
    let (mut v, etag) = current(on, &held.id, p).await?;
    v["status"] = json!("cancelled");
    v["cancelationReason"] = json!({"text": reason});
    put(on, &held.id, &etag, &v, p).await
}

async fn cancel(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let (_, ods) = need(flow)?;
    let ods = ods.to_owned();
    let held = need_booked(flow)?.clone();
    let reason = "Cancelled by the gp-conformance kit";
    let a = cancel_held(on, &held, reason, p).await?;
    status(&a, 200, "PUT /Appointment/{id} with status cancelled")?;
    flow.cancelled = true;
    let v = a.json()?;
    ensure(v["status"] == "cancelled", || {
        format!("the cancel answered status {}", v["status"])
    })?;
    ensure(v["cancelationReason"]["text"] == reason, || {
        format!(
            "the cancel answered cancelationReason {}",
            v["cancelationReason"]
        )
    })?;
    ensure(offered(on, &ods, &held.slot, p).await?, || {
        format!(
            "Slot/{} is not offered again after its appointment was cancelled",
            held.slot.id
        )
    })
}

async fn change_cancelled(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let held = need_booked(flow)?;
    ensure(flow.cancelled, || {
        "not run: APT-CAN-01 did not cancel".into()
    })
    .map_err(|v| Verdict::Omit(v.message().to_owned()))?;
    let (mut v, etag) = current(on, &held.id, p).await?;
    v["description"] = json!("Amended after its cancellation: must be refused");
    let a = put(on, &held.id, &etag, &v, p).await?;
    refusal(
        &a,
        422,
        Some("INVALID_RESOURCE"),
        &[],
        "amending a cancelled appointment",
    )
}

/// APT-RACE-01: [`RACERS`] bookings of one slot, sent at once, each on a connection and
/// probe of its own.
async fn race(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let (nhs, _) = need(flow)?;
    let nhs = nhs.to_owned();
    let slot =
        flow.free.get(1).cloned().ok_or_else(|| {
            Verdict::Omit("not run: APT-SLOT-01 found no second free slot".into())
        })?;
    let url = format!("{}/Appointment", on.base());
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::with_capacity(RACERS);
    for _ in 0..RACERS {
        let body = booking_body(&nhs, &slot, &uuid::Uuid::new_v4().to_string());
        let (client, url, token, start) = (
            on.ctx.client.clone(),
            url.clone(),
            on.token.to_owned(),
            start.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut probe = Probe::new(client);
            start.wait().await;
            let answer = probe
                .call(
                    "POST",
                    &url,
                    Some(&token),
                    &[("content-type", "application/fhir+json")],
                    body.to_string().as_bytes(),
                )
                .await;
            (probe, answer, body)
        }));
    }
    let mut answers = Vec::with_capacity(RACERS);
    for task in tasks {
        let (probe, answer, body) = task
            .await
            .map_err(|e| Verdict::Error(format!("a racing booking did not finish: {e}")))?;
        p.evidence.extend(probe.evidence);
        answers.push((answer?, body));
    }
    let won: Vec<&(Answer, Value)> = answers.iter().filter(|(a, _)| a.status == 201).collect();
    if let [(a, body)] = won.as_slice() {
        let (v, etag) = appointment(a, "the winning POST")?;
        flow.raced = Some(Held {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            etag,
            slot: slot.clone(),
            body: body.clone(),
        });
    }
    let statuses: Vec<String> = answers.iter().map(|(a, _)| shown(a)).collect();
    ensure(won.len() == 1, || {
        format!(
            "{RACERS} concurrent bookings of Slot/{} answered {}: {} created, not exactly one",
            slot.id,
            statuses.join(", "),
            won.len()
        )
    })?;
    for (a, _) in answers.iter().filter(|(a, _)| a.status != 201) {
        refusal(
            a,
            409,
            Some("DUPLICATE_REJECTED"),
            &[],
            "a losing booking of the raced slot",
        )?;
    }
    Ok(())
}

async fn patient_search(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let (nhs, _) = need(flow)?;
    let held = need_booked(flow)?;
    let mut url = Some(format!(
        "{}/Appointment?patient={nhs}&date=ge{}&date=le{}",
        on.base(),
        day(today()),
        day(today() + Duration::days(13))
    ));
    let mut found: Vec<Value> = Vec::new();
    let mut pages = 0;
    while let Some(next) = url.take() {
        ensure(pages < MAX_PAGES, || {
            format!("still a next link after {MAX_PAGES} pages")
        })?;
        let v = searchset(
            &p.get(&next, Some(on.token)).await?,
            "the patient's appointments",
        )?;
        found.extend(
            entries(&v)
                .into_iter()
                .filter(|(mode, _)| *mode != "include")
                .map(|(_, r)| r.clone()),
        );
        pages += 1;
        url = v["link"].as_array().and_then(|ls| {
            ls.iter()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str().map(str::to_owned))
        });
    }
    let status_of = |id: &str| {
        found
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["status"].as_str().unwrap_or("?").to_owned())
    };
    let want_first = if flow.cancelled {
        "cancelled"
    } else {
        "booked"
    };
    ensure(status_of(&held.id).as_deref() == Some(want_first), || {
        format!(
            "Appointment/{} is {:?} among the patient's {} appointments, expected {want_first}",
            held.id,
            status_of(&held.id),
            found.len()
        )
    })?;
    if let Some(won) = &flow.raced {
        ensure(status_of(&won.id).as_deref() == Some("booked"), || {
            format!(
                "Appointment/{} (booked in the race) is {:?} among the patient's appointments",
                won.id,
                status_of(&won.id)
            )
        })?;
    }
    Ok(())
}

async fn with_reason(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let (nhs, _) = need(flow)?;
    let slot = flow
        .free
        .get(2)
        .ok_or_else(|| Verdict::Omit("not run: APT-SLOT-01 found no third free slot".into()))?;
    let mut body = booking_body(nhs, slot, &uuid::Uuid::new_v4().to_string());
    body["reasonCode"] = json!([{"text": "Chest pain"}]);
    let a = post(on, &body, p).await?;
    refusal(
        &a,
        422,
        None,
        &["Appointment.reasonCode"],
        "a booking with a reasonCode",
    )
}

async fn past_slot(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let (nhs, ods) = need(flow)?;
    let url = slot_url(
        on,
        today() - Duration::days(7),
        today(),
        Some(ods),
        "&_include=Slot:schedule",
    );
    let a = p.get(&url, Some(on.token)).await?;
    let now = OffsetDateTime::now_utc();
    let started = if a.status == 200 {
        free_slots(&a.json()?)
            .into_iter()
            .find(|s| instant(&s.start).is_some_and(|t| t < now))
    } else {
        None
    };
    // A gateway that offers no started slot (the right thing: it cannot be booked) is
    // asked for a free slot's booking a week early: a time that has passed either way.
    let (slot, what) = match started {
        Some(slot) => {
            let what = format!("booking Slot/{} (started {})", slot.id, slot.start);
            (slot, what)
        }
        None => {
            let Some(future) = flow.free.first() else {
                return Err(Verdict::Skip("no free slot to book a week early".into()));
            };
            let week_early = |t: &str| {
                instant(t)
                    .map(|t| t - Duration::days(7))
                    .and_then(|t| t.format(&Rfc3339).ok())
            };
            let (Some(start), Some(end)) = (week_early(&future.start), week_early(&future.end))
            else {
                return Err(Verdict::Fail(format!(
                    "Slot/{} has an unreadable start or end",
                    future.id
                )));
            };
            let what = format!("booking Slot/{} for {start}, a week before it", future.id);
            (
                FreeSlot {
                    start,
                    end,
                    ..future.clone()
                },
                what,
            )
        }
    };
    let body = booking_body(nhs, &slot, &uuid::Uuid::new_v4().to_string());
    let b = post(on, &body, p).await?;
    refusal(&b, 422, None, &[], &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_id_keeps_the_shape_and_differs() {
        assert_eq!(unknown_id("A12345-9f3c"), "A12345-9f3d");
        assert_eq!(unknown_id("A12345-1009"), "A12345-1000");
        assert_eq!(unknown_id("A12345-abz"), "A12345-aba");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            enc("https://fhir.nhs.uk/Id/ods-organization-code|A1"),
            "https%3A%2F%2Ffhir.nhs.uk%2FId%2Fods-organization-code%7CA1"
        );
        assert_eq!(enc("GP consultation"), "GP%20consultation");
    }

    #[test]
    fn free_slots_carry_their_schedules_location() {
        let v = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"search": {"mode": "match"}, "resource": {"resourceType": "Slot", "id": "A1-s1", "status": "free",
                "start": "2030-01-07T09:00:00+00:00", "end": "2030-01-07T09:10:00+00:00",
                "schedule": {"reference": "Schedule/A1-x"}}},
            {"search": {"mode": "match"}, "resource": {"resourceType": "Slot", "id": "A1-s2", "status": "free",
                "start": "2030-01-07T09:10:00+00:00", "end": "2030-01-07T09:20:00+00:00",
                "schedule": {"reference": "Schedule/A1-missing"}}},
            {"search": {"mode": "include"}, "resource": {"resourceType": "Schedule", "id": "A1-x",
                "actor": [{"reference": "Practitioner/A1-p"}, {"reference": "Location/A1-l"}]}}
        ]});
        let found = free_slots(&v);
        assert_eq!(
            found.len(),
            1,
            "a slot whose Schedule is not included is not bookable"
        );
        assert_eq!(found[0].id, "A1-s1");
        assert_eq!(found[0].location, "Location/A1-l");
        assert_eq!(ods_of(&found[0].id), "A1");
    }
}
