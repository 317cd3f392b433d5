//! Scale-out: two `gp-gateway serve` processes on loopback sharing Redis (rate limits,
//! assertion replay set) and PostgreSQL (audit trail), in front of the same simulated
//! GP systems. One supplier's burst is limited across both replicas, an assertion used
//! at one is refused at the other, and every answer from either is in the one trail.
//!
//! Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (as CI has); each run
//! uses its own Redis key prefix and PostgreSQL schema and removes them afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gp_sim::{Population, PopulationSpec, SimStore};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";
const REDIS: &str = "redis://127.0.0.1:6379/";
/// The public URL both replicas sit behind (the assertion audience names it).
const PUBLIC: &str = "http://gateway.scale-out.test";

/// Kills the replica processes however the test ends.
struct Replicas(Vec<Child>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sandbox")
}

fn write_config(
    dir: &Path,
    port: u16,
    pds: &str,
    systems: &[(&str, String)],
    prefix: &str,
    schema: &str,
) -> PathBuf {
    let mut toml = format!(
        r#"practices_file = "practices.toml"
suppliers_file = "suppliers.toml"

[server]
listen = "127.0.0.1:{port}"
public_base_url = "{PUBLIC}"
fhir_base_path = "/FHIR/R4"

# Replicas and test runs side by side: each admin listener on a port of its own.
[admin]
listen = "127.0.0.1:0"

[locator]
pds_base_url = "{pds}/personal-demographics/FHIR/R4"
timeout_ms = 2000

[access]
mode = "oauth"

[auth]
token_url = "{PUBLIC}/oauth2/token"
issuer = "{PUBLIC}"
audience = "{PUBLIC}/FHIR/R4"
active_kid = "sandbox-gw-1"
signing_keys = [{{ kid = "sandbox-gw-1", private_key_pem = "{key}" }}]

[state]
backend = "redis"
redis_url = "{REDIS}"
key_prefix = "{prefix}"

[audit]
backend = "postgres"
postgres_url = "{PG}"
postgres_schema = "{schema}"
"#,
        key = fixtures().join("gateway-signing-ed25519.pem").display(),
    );
    for (id, url) in systems {
        toml.push_str(&format!("\n[systems.{id}]\nbase_url = \"{url}\"\n"));
    }
    let path = dir.join(format!("gateway-{port}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> (u16, Bytes) {
    let mut req = http::Request::get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    #[allow(clippy::disallowed_methods)] // test client, test-sized bodies
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

async fn post_form(
    client: &Client<HttpConnector, Full<Bytes>>,
    port: u16,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = http::Request::post(format!("http://127.0.0.1:{port}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    #[allow(clippy::disallowed_methods)]
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn two_replicas_share_rate_limits_replay_set_and_audit_trail() {
    // Services first: fail clearly when they are not there.
    let (db, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}"));
    tokio::spawn(conn);
    let redis = redis::Client::open(REDIS).unwrap();
    let mut redis = redis
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 is needed for this test: {e}"));

    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("gp-scale-{run}:");
    let schema = format!("scale_{run}");

    // The simulated GP systems and PDS, shared by both replicas.
    let population = Population::generate(
        gp_gateway::sandbox::DEFAULT_SEED,
        &PopulationSpec::sandbox(),
    );
    let store = SimStore::new(population.clone());
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let pds = gp_sim::start_pds(store.clone(), bind().await)
        .await
        .unwrap();
    let emis = gp_sim::start_emis(store.clone(), bind().await)
        .await
        .unwrap();
    let tpp = gp_sim::start_tpp(store.clone(), bind().await)
        .await
        .unwrap();
    let systems = [("emis", emis.base_url()), ("tpp", tpp.base_url())];

    let dir = tempfile::tempdir().unwrap();
    let mut practices = String::new();
    let mut ods = Vec::new();
    for p in population
        .practices
        .iter()
        .filter(|p| matches!(p.system, gp_sim::SystemKind::Emis | gp_sim::SystemKind::Tpp))
    {
        practices.push_str(&format!(
            "[[practice]]\nods = \"{}\"\nname = \"{}\"\nsystem = \"{}\"\n\n",
            p.ods,
            p.name,
            p.system.id()
        ));
        ods.push(format!("\"{}\"", p.ods));
    }
    std::fs::write(dir.path().join("practices.toml"), practices).unwrap();
    // One supplier whose whole budget is a burst of 10 (then 1 request a second).
    std::fs::write(
        dir.path().join("suppliers.toml"),
        format!(
            r#"[[suppliers]]
client_id = "demo-monitoring"
name = "Demo Remote Monitoring plc (scale-out test)"
status = "active"
jwks_file = "{jwks}"
scopes = ["system/Patient.rs", "system/Observation.crs"]
practices = [{ods}]
rate_limit = {{ per_second = 1.0, burst = 10 }}
token_rate_limit = {{ per_second = 1.0, burst = 10 }}

[[suppliers]]
client_id = "demo-consult"
name = "Demo Online Consult (scale-out test)"
status = "active"
jwks_file = "{consult_jwks}"
scopes = ["system/Patient.rus", "system/Observation.crs", "system/Practitioner.r"]
practices = [{ods}]
rate_limit = {{ per_second = 100.0, burst = 100 }}

[[suppliers]]
client_id = "demo-booking"
name = "Demo Booking (scale-out test)"
ods_code = "Y90123"
status = "active"
jwks_file = "{booking_jwks}"
scopes = ["system/Patient.rs", "system/Slot.rs", "system/Appointment.cruds"]
practices = [{ods}]
rate_limit = {{ per_second = 100.0, burst = 100 }}
"#,
            jwks = fixtures().join("demo-monitoring.jwks.json").display(),
            consult_jwks = fixtures().join("demo-consult.jwks.json").display(),
            booking_jwks = fixtures().join("demo-booking.jwks.json").display(),
            ods = ods.join(", ")
        ),
    )
    .unwrap();

    let ports = [free_port(), free_port()];
    let mut children = Vec::new();
    for (port, name) in ports.iter().zip(["replica-a", "replica-b"]) {
        let config = write_config(
            dir.path(),
            *port,
            &pds.base_url(),
            &systems,
            &prefix,
            &schema,
        );
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        children.push(
            Command::new(env!("CARGO_BIN_EXE_gp-gateway"))
                .args(["serve", "--config"])
                .arg(&config)
                .env("GP_GATEWAY_REPLICA", name)
                .env("GP_GATEWAY_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let replicas = Replicas(children);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    for port in ports {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = http::Request::get(format!("http://127.0.0.1:{port}/_ready"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(r) = client.request(req).await
                && r.status() == 200
            {
                break;
            }
            let log = std::fs::read_to_string(dir.path().join("replica-a.log")).unwrap_or_default()
                + &std::fs::read_to_string(dir.path().join("replica-b.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "replica on {port} not ready in 30 s:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let [a, b] = ports;

    // The replay set is shared: an assertion used at A is refused at B.
    let identity = gp_gateway::sandbox::demo_identity("demo-monitoring").unwrap();
    let form = identity
        .token_request_body(&format!("{PUBLIC}/oauth2/token"), None)
        .unwrap();
    let (status, token) = post_form(&client, a, &form).await;
    assert_eq!(status, 200, "{token}");
    let (status, refused) = post_form(&client, b, &form).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{refused}"
    );
    let token = token["access_token"].as_str().unwrap().to_owned();

    // The rate limit is shared: A spends the burst, B then refuses.
    let nhs = population
        .patients
        .iter()
        .find(|p| {
            p.practice == population.practices[0].ods && !p.flags.sensitive && !p.flags.dissent
        })
        .unwrap()
        .nhs_number
        .clone();
    let path = format!("/FHIR/R4/Patient/{nhs}");
    let mut answered = 2; // the two token requests
    let mut at_a = Vec::new();
    for _ in 0..10 {
        at_a.push(get(&client, a, &path, Some(&token)).await.0);
        answered += 1;
    }
    assert!(at_a.iter().filter(|s| **s == 200).count() >= 9, "{at_a:?}");
    let mut at_b = Vec::new();
    for _ in 0..3 {
        at_b.push(get(&client, b, &path, Some(&token)).await.0);
        answered += 1;
    }
    assert!(
        at_b.contains(&429),
        "B alone would allow 10 at once, the shared budget does not: {at_b:?}"
    );
    // The token A issued works at B: same signing keys.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&client, b, &path, Some(&token)).await.0, 200);
    answered += 1;

    // A write at A reaches B's cache: B had the patient's observations cached, and its
    // next reads see the new reading once A's invalidation arrives (milliseconds).
    let consult = gp_gateway::sandbox::demo_identity("demo-consult").unwrap();
    let form = consult
        .token_request_body(&format!("{PUBLIC}/oauth2/token"), None)
        .unwrap();
    let (status, consult_token) = post_form(&client, a, &form).await;
    assert_eq!(status, 200, "{consult_token}");
    let consult_token = consult_token["access_token"].as_str().unwrap().to_owned();
    answered += 1;
    let search = format!("/FHIR/R4/Observation?patient={nhs}&_count=250");
    let count = |body: &Bytes| {
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["total"]
            .as_u64()
            .unwrap()
    };
    let (status, before) = get(&client, b, &search, Some(&consult_token)).await;
    assert_eq!(status, 200);
    answered += 1;
    // A person B's answer named is read at A: the replicas share each person's practice.
    let found: serde_json::Value = serde_json::from_slice(&before).unwrap();
    let performer = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["resource"]["performer"][0]["reference"].as_str())
        .expect("an Observation with a performer")
        .to_owned();
    let (status, person) = get(
        &client,
        a,
        &format!("/FHIR/R4/{performer}"),
        Some(&consult_token),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&person));
    answered += 1;
    let reading = serde_json::json!({
        "resourceType": "Observation",
        "identifier": [{"system": "https://consult.example/readings", "value": run}],
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": "2026-11-20T08:30:00Z",
        "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    let req = http::Request::post(format!("http://127.0.0.1:{a}/FHIR/R4/Observation"))
        .header("authorization", format!("Bearer {consult_token}"))
        .header("content-type", "application/fhir+json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&reading).unwrap(),
        )))
        .unwrap();
    let created = client.request(req).await.unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    answered += 1;
    // Meanwhile A answers another patient's record: what the replicas share is kept
    // per entry, so B still finds whose record holds the reading (one shared key for
    // every entry, found alive by cargo mutants, would now name the other patient).
    let other = population
        .patients
        .iter()
        .find(|p| {
            p.practice == population.practices[0].ods
                && p.nhs_number != nhs
                && !p.flags.sensitive
                && !p.flags.dissent
        })
        .unwrap()
        .nhs_number
        .clone();
    let (status, others) = get(
        &client,
        a,
        &format!("/FHIR/R4/Observation?patient={other}"),
        Some(&consult_token),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&others));
    assert!(count(&others) > 0, "the other patient has observations");
    answered += 1;
    // Its Location reads it at B too: the replicas share which patient holds an entry.
    let path = location.strip_prefix(PUBLIC).unwrap().to_owned();
    let (status, read) = get(&client, b, &path, Some(&consult_token)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&read));
    let read: serde_json::Value = serde_json::from_slice(&read).unwrap();
    assert_eq!(read["valueQuantity"]["value"], 70.5);
    answered += 1;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, after) = get(&client, b, &search, Some(&consult_token)).await;
        assert_eq!(status, 200);
        answered += 1;
        if count(&after) == count(&before) + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still serves its stale copy after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One slot, fifty bookings at once, half through each replica, each with an
    // identifier of its own (so none is a retry of another): the GP system's own
    // concurrency control lets exactly one book it, whichever replica carries it.
    let booking = gp_gateway::sandbox::demo_identity("demo-booking").unwrap();
    let form = booking
        .token_request_body(&format!("{PUBLIC}/oauth2/token"), None)
        .unwrap();
    let (status, booking_token) = post_form(&client, a, &form).await;
    assert_eq!(status, 200, "{booking_token}");
    let booking_token = booking_token["access_token"].as_str().unwrap().to_owned();
    answered += 1;
    let today = time::OffsetDateTime::now_utc().date();
    let slots_path = format!(
        "/FHIR/R4/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule&_include:recurse=Schedule:actor:Location&practice={}",
        today,
        today + time::Duration::days(13),
        population.practices[0].ods
    );
    let (status, slots) = get(&client, a, &slots_path, Some(&booking_token)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&slots));
    answered += 1;
    let slots: serde_json::Value = serde_json::from_slice(&slots).unwrap();
    let entries = slots["entry"].as_array().unwrap();
    let resource = |kind: &str, id: &str| {
        entries
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == kind && r["id"] == id)
            .unwrap()
            .clone()
    };
    let slot = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Slot")
        .expect("a free slot in the next fortnight")
        .clone();
    let schedule = resource(
        "Schedule",
        slot["schedule"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Schedule/"),
    );
    let location = schedule["actor"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["reference"].as_str())
        .find(|r| r.starts_with("Location/"))
        .unwrap()
        .to_owned();
    let body = |n: usize| {
        serde_json::to_vec(&serde_json::json!({
            "resourceType": "Appointment",
            "identifier": [{"system": "https://booking.example/race", "value": format!("{run}-{n}")}],
            "status": "booked",
            "slot": [{"reference": format!("Slot/{}", slot["id"].as_str().unwrap())}],
            "start": slot["start"],
            "end": slot["end"],
            "created": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
            "description": "Race for one slot",
            "participant": [
                {"actor": {"reference": format!("Patient/{nhs}")}, "status": "accepted"},
                {"actor": {"reference": location}, "status": "accepted"}
            ]
        }))
        .unwrap()
    };
    let mut racing = Vec::new();
    for n in 0..50 {
        let port = if n % 2 == 0 { a } else { b };
        let req = http::Request::post(format!("http://127.0.0.1:{port}/FHIR/R4/Appointment"))
            .header("authorization", format!("Bearer {booking_token}"))
            .header("content-type", "application/fhir+json")
            .body(Full::new(Bytes::from(body(n))))
            .unwrap();
        let client = client.clone();
        racing.push(tokio::spawn(async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            #[allow(clippy::disallowed_methods)] // test client, test-sized bodies
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }));
    }
    let mut outcomes = Vec::new();
    for r in racing {
        outcomes.push(r.await.unwrap());
    }
    answered += 50;
    let booked = outcomes.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Bytes> = outcomes
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        (booked, refused.len()),
        (1, 49),
        "{:?}",
        outcomes.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    for body in refused {
        assert!(
            String::from_utf8_lossy(body).contains("DUPLICATE_REJECTED"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }

    // One trail: every answer from either replica, each naming its replica.
    let rows = db
        .query(
            &format!("SELECT replica, status FROM {schema}.audit_event ORDER BY seq"),
            &[],
        )
        .await
        .unwrap();
    let per_replica = |name: &str| {
        rows.iter()
            .filter(|r| r.get::<_, String>(0) == name)
            .count()
    };
    assert_eq!(rows.len(), answered, "every answer is in the trail");
    assert_eq!(
        per_replica("replica-a"),
        42,
        "3 tokens, 13 reads, 1 write, 25 bookings"
    );
    assert_eq!(per_replica("replica-b"), answered - 42);
    let throttled = rows.iter().filter(|r| r.get::<_, i32>(1) == 429).count();
    assert_eq!(
        throttled,
        at_a.iter().chain(&at_b).filter(|s| **s == 429).count()
    );

    drop(replicas);
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    pds.shutdown().await;
    emis.shutdown().await;
    tpp.shutdown().await;
}
