//! The appointment routes in process, over a fake GP system: the sandbox with a layer
//! that serves each practice's appointment book from `gp_sim::appointments::Book` (the
//! book every simulated practice keeps) while everything else goes to the simulators.
//! So the routes' own rules (parameters, booking checks, ids, release rules, versions)
//! are tested whatever each vendor adapter implements yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use gp_adapter::appointments::{
    AppointmentBook, AppointmentChange, AppointmentRequest, AppointmentStatus, BookClinician,
    BookLocation, BookRequest, BookSession, BookSlot, Booked, BookedAppointment,
    ChangeAppointmentRequest, DeliveryChannel, JobRole, PatientAppointmentsRequest,
    SlotSearchRequest, SlotStatus,
};
use gp_adapter::time::UtcDateTime;
use gp_adapter::{
    Adapter, AdapterError, CallContext, ClinicalType, GpSystem, PatientRecord, PatientRequest,
    PractitionerRequest, SearchPage, SearchRequest,
};
use gp_fhir::{NhsNumber, OdsCode};
use gp_gateway::sandbox::Sandbox;
use gp_sim::appointments as sim;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// The fake GP system: the simulators' appointment book behind the adapter trait.

type Books = Arc<Mutex<BTreeMap<String, sim::Book>>>;

struct WithBook {
    inner: Arc<dyn Adapter>,
    books: Books,
    population: Arc<gp_sim::Population>,
    /// GP systems (ids) whose slot searches fail, as a system that is down would.
    failing: Arc<Mutex<Vec<&'static str>>>,
}

fn utc(t: sim::Instant) -> UtcDateTime {
    let d = sim::utc_date_time(t);
    let (hour, minute, second) = d.time.unwrap_or((0, 0, 0));
    UtcDateTime {
        year: d.year,
        month: d.month.unwrap_or(1),
        day: d.day.unwrap_or(1),
        hour,
        minute,
        second,
    }
}

fn instant(t: UtcDateTime) -> sim::Instant {
    sim::instant(gp_sim::SimDate::ymd(t.year, t.month, t.day).at(t.hour, t.minute, t.second))
}

fn channel(c: sim::Channel) -> DeliveryChannel {
    match c {
        sim::Channel::InPerson => DeliveryChannel::InPerson,
        sim::Channel::Telephone => DeliveryChannel::Telephone,
        sim::Channel::Video => DeliveryChannel::Video,
    }
}

impl WithBook {
    fn system_error(&self, e: sim::BookError) -> AdapterError {
        let system = self.inner.system();
        match e {
            sim::BookError::SlotTaken(_) | sim::BookError::SlotChanged(_) => {
                AdapterError::SlotUnavailable {
                    system,
                    detail: e.to_string(),
                }
            }
            sim::BookError::AppointmentNotFound(_) | sim::BookError::SlotNotFound(_) => {
                AdapterError::NotFound {
                    system,
                    what: e.to_string(),
                }
            }
            sim::BookError::Conflict(_) => AdapterError::VersionConflict {
                system,
                detail: e.to_string(),
            },
            _ => AdapterError::Unprocessable {
                system,
                detail: e.to_string(),
            },
        }
    }

    fn with_book<T>(
        &self,
        ods: &OdsCode,
        f: impl FnOnce(&mut sim::Book, &gp_sim::Practice) -> T,
    ) -> T {
        let practice = self
            .population
            .practices
            .iter()
            .find(|p| p.ods == ods.as_str())
            .unwrap();
        let patients: Vec<String> = self
            .population
            .patients
            .iter()
            .filter(|p| p.practice == practice.ods)
            .map(|p| p.nhs_number.clone())
            .collect();
        let mut books = self.books.lock().unwrap();
        let book = books.entry(practice.ods.clone()).or_insert_with(|| {
            sim::Book::generate(7, practice, &patients, sim::now().div_euclid(86_400))
        });
        f(book, practice)
    }

    fn appointment(&self, a: &sim::Appointment, book: &sim::Book) -> BookedAppointment {
        let session = book.sessions.iter().find(|s| s.id == a.session);
        let first = a.slots.first().and_then(|id| book.slot(id));
        BookedAppointment {
            id: a.id.clone(),
            version: a.version.to_string(),
            nhs_number: NhsNumber::parse(&a.nhs).unwrap(),
            status: match a.state {
                sim::AppointmentState::Booked => AppointmentStatus::Booked,
                sim::AppointmentState::Cancelled => AppointmentStatus::Cancelled,
            },
            slots: a.slots.clone(),
            session: a.session.clone(),
            location: session.map(|s| s.site.clone()),
            clinician: session.map(|s| s.clinician.clone()),
            start: utc(a.start),
            end: utc(a.end),
            slot_type: first.map(|s| s.slot_type.clone()),
            channel: first.map(|s| channel(s.channel)),
            description: a.description.clone(),
            comment: a.comment.clone(),
            cancellation_reason: a.cancellation_reason.clone(),
            created: utc(a.created),
            booked_by: a
                .booked_by
                .as_ref()
                .map(|b| OdsCode::parse(&b.ods).unwrap()),
            identifier: a
                .external_id
                .as_ref()
                .map(|i| (i.system.clone(), i.value.clone())),
        }
    }
}

#[async_trait]
impl Adapter for WithBook {
    fn system(&self) -> GpSystem {
        self.inner.system()
    }
    fn manages_appointments(&self) -> bool {
        true
    }
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        self.inner.read_patient(req).await
    }
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        self.inner.search(req).await
    }
    fn supported_types(&self) -> &'static [ClinicalType] {
        self.inner.supported_types()
    }
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<gp_fhir::model::Practitioner>, AdapterError> {
        self.inner.read_practitioner(req).await
    }
    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.inner.ready(ctx).await
    }

    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        let system = self.inner.system();
        if self.failing.lock().unwrap().contains(&system.id()) {
            return Err(AdapterError::Unavailable {
                system,
                detail: "down for the test".into(),
            });
        }
        Ok(self.with_book(&req.practice, |book, practice| {
            let view = book.view(practice, instant(req.start), instant(req.end));
            AppointmentBook {
                slots: view
                    .slots
                    .iter()
                    .map(|s| BookSlot {
                        id: s.id.clone(),
                        session: s.session.clone(),
                        start: utc(s.start),
                        end: utc(s.end),
                        slot_type: s.slot_type.clone(),
                        channel: channel(s.channel),
                        status: match s.state {
                            sim::SlotState::Free => SlotStatus::Free,
                            sim::SlotState::Booked => SlotStatus::Busy,
                            _ => SlotStatus::Unavailable,
                        },
                    })
                    .collect(),
                sessions: view
                    .sessions
                    .iter()
                    .map(|s| BookSession {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        clinician: Some(s.clinician.clone()),
                        location: s.site.clone(),
                        service: Some(s.service.clone()),
                        start: utc(s.start),
                        end: utc(s.end),
                    })
                    .collect(),
                clinicians: view
                    .clinicians
                    .iter()
                    .map(|c| {
                        let (code, display) = sim::job_role(practice, c);
                        BookClinician {
                            id: c.id.clone(),
                            prefix: Some(c.title.clone()),
                            given: c.given.clone(),
                            family: c.family.clone(),
                            gender: None,
                            sds_user_id: Some(c.sds_user_id.clone()),
                            role: Some(JobRole {
                                code: code.into(),
                                display: display.into(),
                            }),
                        }
                    })
                    .collect(),
                locations: view
                    .sites
                    .iter()
                    .map(|s| BookLocation {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        lines: s.lines.clone(),
                        town: Some(s.town.clone()),
                        postcode: Some(s.postcode.clone()),
                    })
                    .collect(),
            }
        }))
    }

    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        let a = &req.appointment;
        self.with_book(&req.practice, |book, _| {
            let booking = sim::NewBooking {
                key: Some(a.key.clone()),
                nhs: a.nhs_number.to_string(),
                slots: a.slots.clone(),
                slot_versions: None,
                description: a.description.clone(),
                comment: a.comment.clone(),
                booked_by: Some(sim::BookingOrganisation {
                    ods: a.booked_by.to_string(),
                    name: a.booked_by_name.clone(),
                }),
                external_id: a
                    .identifier
                    .clone()
                    .map(|(system, value)| gp_sim::ExternalId { system, value }),
            };
            let (made, created) = book
                .book(booking, sim::now())
                .map_err(|e| self.system_error(e))?;
            Ok(Booked {
                appointment: self.appointment(&made, book),
                created,
            })
        })
    }

    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        Ok(self.with_book(&req.practice, |book, _| {
            book.appointment(&req.id).map(|a| self.appointment(a, book))
        }))
    }

    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        Ok(self.with_book(&req.practice, |book, _| {
            book.appointments_of(
                &req.nhs_number.to_string(),
                instant(req.start),
                instant(req.end),
            )
            .iter()
            .map(|a| self.appointment(a, book))
            .collect()
        }))
    }

    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        self.with_book(&req.practice, |book, _| {
            let change = match &req.change {
                AppointmentChange::Amend {
                    description,
                    comment,
                } => sim::Change::Amend {
                    description: description.clone(),
                    comment: comment.clone(),
                },
                AppointmentChange::Cancel { reason } => sim::Change::Cancel {
                    reason: reason.clone(),
                },
            };
            let version = req.expected_version.parse().ok();
            let changed = book
                .change(&req.id, version, change)
                .map_err(|e| self.system_error(e))?;
            Ok(self.appointment(&changed, book))
        })
    }
}

// ---------------------------------------------------------------------------------------
// A sandbox with the fake book, and a client.

struct World {
    sandbox: Sandbox,
    client: Client<HttpConnector, Full<Bytes>>,
    failing: Arc<Mutex<Vec<&'static str>>>,
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn code(&self) -> String {
        self.json()["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    fn expression(&self) -> Value {
        self.json()["issue"][0]["expression"].clone()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl World {
    async fn start() -> Self {
        let population = Arc::new(gp_gateway::sandbox::population(
            gp_gateway::sandbox::DEFAULT_SEED,
        ));
        let books: Books = Arc::default();
        let failing: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let down = failing.clone();
        let layer: gp_gateway::sandbox::AdapterLayer = Box::new(move |inner| {
            Arc::new(WithBook {
                inner,
                books: books.clone(),
                population: population.clone(),
                failing: down.clone(),
            })
        });
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox =
            gp_gateway::sandbox::start_layered(listen, gp_gateway::sandbox::DEFAULT_SEED, layer)
                .await
                .unwrap();
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
            failing,
        }
    }

    async fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        #[allow(clippy::disallowed_methods)] // test client reading test-sized bodies
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn token(&self, client_id: &str) -> String {
        let token_url = &self.sandbox.manifest.token_url;
        let body = gp_gateway::sandbox::demo_identity(client_id)
            .unwrap()
            .token_request_body(token_url, None)
            .unwrap();
        let a = self
            .send(
                "POST",
                token_url,
                &[("content-type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let url = format!("{}{path}", self.sandbox.manifest.base_url);
        let auth = format!("Bearer {token}");
        let mut all = vec![
            ("accept", "application/fhir+json"),
            ("authorization", auth.as_str()),
        ];
        if !body.is_empty() && !headers.iter().any(|(k, _)| *k == "content-type") {
            all.push(("content-type", "application/fhir+json"));
        }
        all.extend_from_slice(headers);
        self.send(method, &url, &all, body).await
    }

    /// An ordinary patient of `practice`.
    fn patient(&self, practice: &str) -> String {
        self.sandbox
            .manifest
            .patients
            .iter()
            .find(|p| p.practice == practice && p.flags.is_empty())
            .map(|p| p.nhs_number.clone())
            .unwrap()
    }

    /// A patient of `practice` with `flag`.
    fn flagged(&self, practice: &str, flag: &str) -> Option<String> {
        self.sandbox
            .manifest
            .patients
            .iter()
            .find(|p| p.practice == practice && p.flags.iter().any(|f| f == flag))
            .map(|p| p.nhs_number.clone())
    }
}

fn day(offset: i64) -> String {
    let d = sim::utc_date_time(sim::now() + offset * 86_400);
    format!(
        "{:04}-{:02}-{:02}",
        d.year,
        d.month.unwrap_or(1),
        d.day.unwrap_or(1)
    )
}

/// `GET /Slot` for the next two weeks at `practice`.
fn slots_path(practice: &str, extra: &str) -> String {
    format!(
        "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule&practice={practice}{extra}",
        day(1),
        day(13)
    )
}

fn entries<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| &e["resource"])
                .filter(|r| r["resourceType"] == resource_type)
                .collect()
        })
        .unwrap_or_default()
}

/// A booking of `slot` (from a search answer) for `nhs`.
fn booking(slot: &Value, schedule: &Value, nhs: &str, identifier: &str) -> Value {
    let location = schedule["actor"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| {
            a["reference"]
                .as_str()
                .filter(|r| r.starts_with("Location/"))
        })
        .unwrap();
    json!({
        "resourceType": "Appointment",
        "identifier": [{ "system": "https://booking.example.com/ids", "value": identifier }],
        "status": "booked",
        "slot": [{ "reference": format!("Slot/{}", slot["id"].as_str().unwrap()) }],
        "start": slot["start"],
        "end": slot["end"],
        "created": "2026-12-01T10:00:00+00:00",
        "description": "Cough for two weeks",
        "participant": [
            { "actor": { "reference": format!("Patient/{nhs}") }, "status": "accepted" },
            { "actor": { "reference": location }, "status": "accepted" }
        ]
    })
}

/// The first free slot of `practice` and its schedule.
async fn free_slot(w: &World, token: &str, practice: &str) -> (Value, Value) {
    let a = w
        .call("GET", &slots_path(practice, ""), token, &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let bundle = a.json();
    let slot = entries(&bundle, "Slot")[0].clone();
    let schedule = entries(&bundle, "Schedule")
        .into_iter()
        .find(|s| {
            Some(format!("Schedule/{}", s["id"].as_str().unwrap()).as_str())
                == slot["schedule"]["reference"].as_str()
        })
        .unwrap()
        .clone();
    (slot, schedule)
}

/// A change made to a good booking.
type Edit = Box<dyn Fn(&mut Value)>;

fn first_practice(w: &World) -> String {
    w.sandbox.manifest.practices[0].ods.clone()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn free_slots_come_with_what_they_refer_to_and_bad_searches_name_the_parameter() {
    let w = World::start().await;
    let token = w.token("demo-booking").await;
    let ods = first_practice(&w);
    let path = slots_path(
        &ods,
        "&_include:recurse=Schedule:actor:Practitioner&_include:recurse=Schedule:actor:Location&_include:recurse=Location:managingOrganization&_include=Schedule:actor:PractitionerRole",
    );
    let a = w.call("GET", &path, &token, &[], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let bundle = a.json();
    assert_eq!(bundle["type"], "searchset");
    let slots = entries(&bundle, "Slot");
    assert!(
        !slots.is_empty(),
        "a fortnight of a practice's book has free slots"
    );
    for s in &slots {
        assert_eq!(s["status"], "free");
        assert!(s["id"].as_str().unwrap().starts_with(&format!("{ods}-")));
        assert!(s["serviceType"][0]["text"].is_string());
        assert_eq!(
            s["extension"][0]["url"],
            "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-DeliveryChannel-2"
        );
        let start = s["start"].as_str().unwrap();
        assert!(
            start.ends_with("+00:00") || start.ends_with("+01:00"),
            "{start}"
        );
    }
    // Every reference resolves inside the Bundle, and nothing is included twice.
    let mut included = Vec::new();
    for e in bundle["entry"].as_array().unwrap() {
        let r = &e["resource"];
        let key = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        if e["search"]["mode"] == "include" {
            assert!(!included.contains(&key), "{key} twice");
            included.push(key);
        } else {
            assert_eq!(e["search"]["mode"], "match");
        }
    }
    for t in [
        "Schedule",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Organization",
    ] {
        assert!(
            included.iter().any(|k| k.starts_with(&format!("{t}/"))),
            "no {t}: {included:?}"
        );
    }
    for s in entries(&bundle, "Schedule") {
        for actor in s["actor"].as_array().unwrap() {
            let r = actor["reference"].as_str().unwrap();
            assert!(included.iter().any(|k| k == r), "{r} not included");
        }
    }
    let role = entries(&bundle, "PractitionerRole")[0];
    assert_eq!(
        role["code"][0]["coding"][0]["system"],
        "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
    );
    assert_eq!(
        entries(&bundle, "Location")[0]["managingOrganization"]["reference"],
        format!("Organization/{ods}")
    );

    // A channel filter keeps only that channel.
    let a = w
        .call(
            "GET",
            &slots_path(&ods, "&delivery-channel=Telephone"),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    for s in entries(&a.json(), "Slot") {
        assert_eq!(s["extension"][0]["valueCode"], "Telephone");
    }

    for (query, param) in [
        (
            format!(
                "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule",
                day(1),
                day(20)
            ),
            "end",
        ),
        (
            format!(
                "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule",
                day(5),
                day(2)
            ),
            "start",
        ),
        (
            format!("/Slot?start=ge{}&end=le{}&status=free", day(1), day(3)),
            "_include",
        ),
        (
            format!(
                "/Slot?start=ge{}&end=le{}&_include=Slot:schedule",
                day(1),
                day(3)
            ),
            "status",
        ),
        (
            format!(
                "/Slot?start=ge{}&end=le{}&status=busy&_include=Slot:schedule",
                day(1),
                day(3)
            ),
            "status",
        ),
    ] {
        let a = w.call("GET", &query, &token, &[], b"").await;
        assert_eq!(a.status, 422, "{query}: {}", a.text());
        assert_eq!(a.code(), "INVALID_PARAMETER", "{query}");
        assert_eq!(a.expression(), json!([param]), "{query}");
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_booking_is_made_once_read_back_amended_and_cancelled_freeing_its_slot() {
    let w = World::start().await;
    let token = w.token("demo-booking").await;
    let ods = first_practice(&w);
    let nhs = w.patient(&ods);
    let (slot, schedule) = free_slot(&w, &token, &ods).await;
    let body = booking(&slot, &schedule, &nhs, "b-1");
    let body_bytes = serde_json::to_vec(&body).unwrap();

    let a = w
        .call("POST", "/Appointment", &token, &[], &body_bytes)
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let made = a.json();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with(&format!("{ods}-")), "{id}");
    let etag = a.header("etag").unwrap().to_owned();
    assert_eq!(
        etag,
        format!("W/\"{}\"", made["meta"]["versionId"].as_str().unwrap())
    );
    let location = a.header("location").unwrap();
    assert!(
        location.ends_with(&format!(
            "/Appointment/{id}/_history/{}",
            made["meta"]["versionId"].as_str().unwrap()
        )),
        "{location}"
    );
    // The Location answers the version booked; no other version is kept.
    let history = location
        .strip_prefix(&w.sandbox.manifest.base_url)
        .unwrap()
        .to_owned();
    let v = w.call("GET", &history, &token, &[], b"").await;
    assert_eq!(v.status, 200, "{}", v.text());
    assert_eq!(v.json()["id"], made["id"]);
    let other_version = format!("/Appointment/{id}/_history/999");
    let v = w.call("GET", &other_version, &token, &[], b"").await;
    assert_eq!(v.status, 404, "{}", v.text());
    assert_eq!(made["status"], "booked");
    assert_eq!(made["start"], slot["start"]);
    assert_eq!(
        made["slot"][0]["reference"],
        format!("Slot/{}", slot["id"].as_str().unwrap())
    );
    // The booking organisation is the supplier's registry ODS code.
    assert_eq!(
        made["contained"][0]["identifier"][0]["value"], "Y90001",
        "{made}"
    );

    // A retry with the same identifier books nothing more.
    let again = w
        .call("POST", "/Appointment", &token, &[], &body_bytes)
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["id"], made["id"]);
    // Another booking of the same slot is refused.
    let other = serde_json::to_vec(&booking(&slot, &schedule, &nhs, "b-2")).unwrap();
    let taken = w.call("POST", "/Appointment", &token, &[], &other).await;
    assert_eq!(taken.status, 409, "{}", taken.text());
    assert_eq!(taken.code(), "DUPLICATE_REJECTED");
    // The slot is no longer offered.
    let a = w.call("GET", &slots_path(&ods, ""), &token, &[], b"").await;
    assert!(
        !entries(&a.json(), "Slot")
            .iter()
            .any(|s| s["id"] == slot["id"])
    );

    // Read by id, and found in the patient's appointments.
    let read = w
        .call("GET", &format!("/Appointment/{id}"), &token, &[], b"")
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.header("etag"), Some(etag.as_str()));
    let search = w
        .call(
            "GET",
            &format!(
                "/Appointment?patient={nhs}&date=ge{}&date=le{}",
                day(0),
                day(20)
            ),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(search.status, 200, "{}", search.text());
    assert!(
        entries(&search.json(), "Appointment")
            .iter()
            .any(|a| a["id"] == made["id"])
    );
    let past = w
        .call(
            "GET",
            &format!(
                "/Appointment?patient={nhs}&date=ge{}&date=le{}",
                day(-3),
                day(5)
            ),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(past.status, 422);
    assert_eq!(past.expression(), json!(["date"]));

    // Amend the comment with PUT and If-Match.
    let mut amended = read.json();
    amended["comment"] = json!("Please call on arrival");
    let put = w
        .call(
            "PUT",
            &format!("/Appointment/{id}"),
            &token,
            &[("if-match", &etag)],
            &serde_json::to_vec(&amended).unwrap(),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["comment"], "Please call on arrival");
    let new_etag = put.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);
    // The old version is stale now.
    let stale = w
        .call(
            "PUT",
            &format!("/Appointment/{id}"),
            &token,
            &[("if-match", &etag)],
            &serde_json::to_vec(&amended).unwrap(),
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    assert_eq!(stale.code(), "PRECONDITION_FAILED");
    // Anything but description and comment is refused, naming the element.
    let mut moved = put.json();
    moved["start"] = json!("2030-01-01T09:00:00+00:00");
    let refused = w
        .call(
            "PUT",
            &format!("/Appointment/{id}"),
            &token,
            &[],
            &serde_json::to_vec(&moved).unwrap(),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.code(), "INVALID_RESOURCE");
    assert_eq!(refused.expression(), json!(["Appointment.start"]));

    // Cancel with a JSON Patch: the slot is free again.
    let patch = json!([
        { "op": "replace", "path": "/status", "value": "cancelled" },
        { "op": "add", "path": "/cancelationReason", "value": { "text": "Feeling better" } }
    ]);
    let cancelled = w
        .call(
            "PATCH",
            &format!("/Appointment/{id}"),
            &token,
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", &new_etag),
            ],
            &serde_json::to_vec(&patch).unwrap(),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(
        cancelled.json()["cancelationReason"]["text"],
        "Feeling better"
    );
    let a = w.call("GET", &slots_path(&ods, ""), &token, &[], b"").await;
    assert!(
        entries(&a.json(), "Slot")
            .iter()
            .any(|s| s["id"] == slot["id"]),
        "the cancel freed the slot"
    );
    // A cancelled appointment cannot change.
    let mut again = cancelled.json();
    again["comment"] = json!("changed my mind");
    let a = w
        .call(
            "PUT",
            &format!("/Appointment/{id}"),
            &token,
            &[],
            &serde_json::to_vec(&again).unwrap(),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn bookings_the_rules_forbid_are_refused_naming_the_element_and_book_nothing() {
    let w = World::start().await;
    let token = w.token("demo-booking").await;
    let ods = first_practice(&w);
    let nhs = w.patient(&ods);
    let (slot, schedule) = free_slot(&w, &token, &ods).await;
    let good = booking(&slot, &schedule, &nhs, "r-1");
    let cases: Vec<(&str, Edit)> = vec![
        (
            "Appointment.reasonCode",
            Box::new(|b| b["reasonCode"] = json!([{ "text": "cough" }])),
        ),
        (
            "Appointment.specialty",
            Box::new(|b| b["specialty"] = json!([{ "text": "GP" }])),
        ),
        (
            "Appointment.status",
            Box::new(|b| b["status"] = json!("proposed")),
        ),
        (
            "Appointment.description",
            Box::new(|b| b["description"] = json!("x".repeat(101))),
        ),
        (
            "Appointment.comment",
            Box::new(|b| b["comment"] = json!("x".repeat(501))),
        ),
        (
            "Appointment.created",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("created");
            }),
        ),
        (
            "Appointment.end",
            Box::new(|b| b["end"] = b["start"].clone()),
        ),
        (
            "Appointment.start",
            Box::new(|b| b["start"] = json!("2020-01-01T09:00:00+00:00")),
        ),
        (
            "Appointment.participant",
            Box::new(|b| {
                b["participant"][1]["actor"]["reference"] =
                    json!(format!("Location/{}-elsewhere", "A99999"))
            }),
        ),
        (
            "Appointment.slot[0]",
            Box::new(|b| b["slot"][0]["reference"] = json!("Slot/nonsense")),
        ),
        // A booking organisation other than the supplier's own (the registry's Y90001).
        (
            "Appointment.contained",
            Box::new(|b| with_booking_organisation(b, "Y99999")),
        ),
    ];
    for (element, edit) in cases {
        let mut body = good.clone();
        edit(&mut body);
        let a = w
            .call(
                "POST",
                "/Appointment",
                &token,
                &[],
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(a.status, 422, "{element}: {}", a.text());
        assert_eq!(a.expression(), json!([element]), "{element}: {}", a.text());
    }
    // None of them booked the slot.
    let a = w.call("GET", &slots_path(&ods, ""), &token, &[], b"").await;
    assert!(
        entries(&a.json(), "Slot")
            .iter()
            .any(|s| s["id"] == slot["id"])
    );
    // A condition naming another identifier than the body's is refused, booking nothing.
    let a = w
        .call(
            "POST",
            "/Appointment",
            &token,
            &[(
                "if-none-exist",
                "identifier=https://booking.example.com/ids|r-other",
            )],
            &serde_json::to_vec(&good).unwrap(),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("r-other"), "{}", a.text());
    let a = w.call("GET", &slots_path(&ods, ""), &token, &[], b"").await;
    assert!(
        entries(&a.json(), "Slot")
            .iter()
            .any(|s| s["id"] == slot["id"]),
        "the refused bookings left the slot free"
    );
    // A patient the supplier may not see is not found, and books nothing.
    if let Some(restricted) = w.flagged(&ods, "sensitive") {
        let body = booking(&slot, &schedule, &restricted, "r-2");
        let a = w
            .call(
                "POST",
                "/Appointment",
                &token,
                &[],
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(a.status, 404, "{}", a.text());
    }
    // Ids of practices nobody serves read as unknown.
    let a = w
        .call("GET", "/Appointment/A12345-1", &token, &[], b"")
        .await;
    assert_eq!(a.status, 404);
    // The supplier's own booking organisation, contained, is accepted and recorded (with
    // a condition naming the body's own identifier).
    let mut own = good.clone();
    with_booking_organisation(&mut own, "Y90001");
    let a = w
        .call(
            "POST",
            "/Appointment",
            &token,
            &[(
                "if-none-exist",
                "identifier=https://booking.example.com/ids|r-1",
            )],
            &serde_json::to_vec(&own).unwrap(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(a.text().contains("Y90001"), "{}", a.text());
    w.sandbox.shutdown().await;
}

/// Names `ods` as the booking organisation: a contained Organization and the GP Connect
/// extension referring to it.
fn with_booking_organisation(body: &mut Value, ods: &str) {
    body["contained"] = json!([{
        "resourceType": "Organization",
        "id": "booker",
        "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods }],
        "name": "The booking app"
    }]);
    body["extension"] = json!([{
        "url": gp_adapter::appointments::fhir::BOOKING_ORGANISATION_EXTENSION,
        "valueReference": { "reference": "#booker" }
    }]);
}

#[tokio::test]
async fn an_unpaired_practice_shows_no_slots_and_its_appointments_are_unknown() {
    let w = World::start().await;
    let booking_token = w.token("demo-booking").await;
    let ods = first_practice(&w);
    let nhs = w.patient(&ods);
    let (slot, schedule) = free_slot(&w, &booking_token, &ods).await;
    let body = serde_json::to_vec(&booking(&slot, &schedule, &nhs, "p-1")).unwrap();
    let a = w
        .call("POST", "/Appointment", &booking_token, &[], &body)
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_owned();

    // The booking supplier is paired with the north practices only now.
    let current = gp_gateway::sandbox::current_suppliers(&w.sandbox).unwrap();
    let north: Vec<String> = w
        .sandbox
        .manifest
        .suppliers
        .iter()
        .find(|s| s.client_id == "demo-monitoring")
        .unwrap()
        .practices
        .clone();
    let unpaired = w
        .sandbox
        .manifest
        .practices
        .iter()
        .map(|p| p.ods.clone())
        .find(|p| !north.contains(p))
        .unwrap();
    let mut doc: toml::Value = toml::from_str(&current).unwrap();
    for s in doc["suppliers"].as_array_mut().unwrap() {
        if s["client_id"].as_str() == Some("demo-booking") {
            s["practices"] = toml::Value::Array(
                north
                    .iter()
                    .map(|p| toml::Value::String(p.clone()))
                    .collect(),
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suppliers.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    w.sandbox
        .app
        .auth
        .as_ref()
        .unwrap()
        .reload_from(&path)
        .unwrap();

    let a = w
        .call("GET", &slots_path(&unpaired, ""), &booking_token, &[], b"")
        .await;
    assert_eq!(a.status, 200);
    assert!(entries(&a.json(), "Slot").is_empty(), "{}", a.text());
    let all = format!(
        "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule",
        day(1),
        day(13)
    );
    let a = w.call("GET", &all, &booking_token, &[], b"").await;
    assert_eq!(a.status, 200);
    for s in entries(&a.json(), "Slot") {
        let sid = s["id"].as_str().unwrap();
        assert!(
            north.iter().any(|p| sid.starts_with(&format!("{p}-"))),
            "{sid}"
        );
    }
    if !north.contains(&ods) {
        let a = w
            .call(
                "GET",
                &format!("/Appointment/{id}"),
                &booking_token,
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, 404, "{}", a.text());
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_gp_system_that_is_down_hides_only_its_own_practices_slots() {
    let w = World::start().await;
    let token = w.token("demo-booking").await;
    let ods = first_practice(&w);
    let system = w.sandbox.manifest.practices[0].system;
    let all = format!(
        "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule",
        day(1),
        day(13)
    );
    let before = w.call("GET", &all, &token, &[], b"").await;
    assert_eq!(before.status, 200, "{}", before.text());
    let everyone = entries(&before.json(), "Slot").len();
    let theirs = entries(
        &w.call("GET", &slots_path(&ods, ""), &token, &[], b"")
            .await
            .json(),
        "Slot",
    )
    .len();
    assert!(theirs > 0 && everyone > theirs);
    let id: &'static str = system.id();
    w.failing.lock().unwrap().push(id);
    // Asked alone, the practice's failure is the answer.
    let a = w.call("GET", &slots_path(&ods, ""), &token, &[], b"").await;
    assert_eq!(a.status, 502, "{}", a.text());
    // Asked with the others, its slots are missing and an outcome entry says why.
    let a = w.call("GET", &all, &token, &[], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let bundle = a.json();
    let slots = entries(&bundle, "Slot");
    assert!(!slots.is_empty() && slots.len() < everyone);
    assert!(
        slots
            .iter()
            .all(|s| !s["id"].as_str().unwrap().starts_with(&format!("{ods}-"))),
        "no slot of the practice that is down"
    );
    assert!(!entries(&bundle, "OperationOutcome").is_empty(), "{bundle}");
    w.sandbox.shutdown().await;
}
