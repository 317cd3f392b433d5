//! GP systems misbehaving, end to end and on loopback only: the affected requests get
//! the right OperationOutcome naming the system, the other systems keep answering,
//! the circuit breaker stops hammering a failing system and recovers without a
//! restart, and every answer sent is in the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use gp_e2e::World;
use gp_sim::Fault;

fn sim<'a>(w: &'a World, id: &str) -> &'a gp_sim::SimHandle {
    &w.sandbox
        .simulators
        .iter()
        .find(|(name, _)| name == id)
        .unwrap()
        .1
}

async fn audited_for(w: &World, operator: &str, nhs: &str) -> Vec<u64> {
    let b = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}&_count=1000"),
            operator,
            &[],
            b"",
        )
        .await
        .json();
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"] != "demo-operator")
        .map(|e| {
            e["resource"]["outcomeDesc"].as_str().unwrap()[5..8]
                .parse::<u64>()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_hung_system_times_out_while_the_others_keep_answering() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let emis = w.ordinary_patient("emis", "demo-consult");
    let tpp = w.ordinary_patient("tpp", "demo-consult");
    sim(&w, "emis").set_fault(Fault::Hang);

    let emis_path = format!("/Patient/{emis}");
    let hung = w.call("GET", &emis_path, &token, &[], b"");
    let other = async {
        // While EMIS hangs, TPP answers at once.
        let started = Instant::now();
        let a = w
            .call("GET", &format!("/Patient/{tpp}"), &token, &[], b"")
            .await;
        (a, started.elapsed())
    };
    let (hung, (other, other_took)) = tokio::join!(hung, other);
    assert_eq!(other.status, 200);
    assert!(
        other_took < Duration::from_secs(2),
        "TPP waited for EMIS: {other_took:?}"
    );
    assert_eq!(hung.status, 504, "{}", String::from_utf8_lossy(&hung.body));
    assert_eq!(hung.spine_code(), "UNABLE_TO_CALL_SERVICE");
    assert!(
        hung.diagnostics().contains("EMIS Web"),
        "{}",
        hung.diagnostics()
    );
    sim(&w, "emis").set_fault(Fault::None);
}

#[tokio::test]
async fn failing_systems_give_502_and_the_breaker_opens_then_recovers() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let operator = w.token("demo-operator").await;
    let tpp = w.ordinary_patient("tpp", "demo-consult");
    let vision = w.ordinary_patient("vision", "demo-consult");

    for fault in [Fault::Garbage, Fault::Reset, Fault::Truncated] {
        sim(&w, "vision").set_fault(fault);
        let a = w
            .call("GET", &format!("/Patient/{vision}"), &token, &[], b"")
            .await;
        assert_eq!(
            a.status,
            502,
            "{fault:?}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            a.diagnostics().contains("Vision"),
            "{fault:?}: {}",
            a.diagnostics()
        );
        assert!(
            !String::from_utf8_lossy(&a.body).contains("127.0.0.1"),
            "no internal address leaks"
        );
    }
    sim(&w, "vision").set_fault(Fault::None);

    // TPP answers 500s: each read is tried twice; after five failures the circuit opens.
    let tpp_sim = sim(&w, "tpp");
    tpp_sim.set_fault(Fault::Status(500));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let a = w
            .call("GET", &format!("/Patient/{tpp}"), &token, &[], b"")
            .await;
        statuses.push((a.status, a.diagnostics()));
    }
    assert!(statuses.iter().all(|(s, _)| *s == 502), "{statuses:?}");
    assert!(
        statuses.last().unwrap().1.contains("circuit open"),
        "{statuses:?}"
    );
    let calls = tpp_sim.requests();
    let a = w
        .call(
            "GET",
            &format!("/Observation?patient={tpp}"),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 502);
    assert_eq!(
        tpp_sim.requests(),
        calls,
        "an open circuit does not call the GP system"
    );
    // Other systems are untouched.
    assert_eq!(
        w.call("GET", &format!("/Patient/{vision}"), &token, &[], b"")
            .await
            .status,
        200
    );

    // TPP recovers; after the cool-down one probe closes the circuit (no restart).
    tpp_sim.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = w
        .call("GET", &format!("/Patient/{tpp}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));

    // Everything answered is in the trail, failures included.
    let audited = audited_for(&w, &operator, &tpp).await;
    assert_eq!(audited.iter().filter(|s| **s == 502).count(), 5);
    assert_eq!(audited.iter().filter(|s| **s == 200).count(), 1);

    let metrics = w
        .send(
            "GET",
            &format!("http://{}/metrics", w.sandbox.admin.addr),
            &[],
            b"",
        )
        .await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("gp_gateway_circuit_opened_total{system=\"tpp\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gp_gateway_backend_errors_total{system=\"vision\",kind=\"invalid_data\"}")
    );
    assert!(
        text.contains("gp_gateway_requests_total{route=\"read Patient\",status=\"502\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_system_cannot_take_every_slot() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    // demo-booking's burst allowance (20) lets it send more reads at once than the
    // sandbox's 16 slots per GP system.
    let booking = format!("Bearer {}", w.token("demo-booking").await);
    let operator = w.token("demo-operator").await;
    // Twenty different EMIS patients: reads of one patient share a single GP system call.
    let emis: Vec<String> = w
        .manifest()
        .patients
        .iter()
        .filter(|p| p.system == "emis" && p.flags.is_empty())
        .map(|p| p.nhs_number.clone())
        .take(20)
        .collect();
    assert_eq!(emis.len(), 20);
    let micro = w.ordinary_patient("microtest", "demo-consult");
    sim(&w, "emis").set_fault(Fault::Hang);
    let urls: Vec<String> = emis
        .iter()
        .map(|n| format!("{}/Patient/{n}", w.manifest().base_url))
        .collect();
    let headers = [("authorization", booking.as_str())];
    let burst: Vec<_> = urls
        .iter()
        .map(|url| w.send("GET", url, &headers, b""))
        .collect();
    let during = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.call("GET", &format!("/Patient/{micro}"), &token, &[], b"")
            .await
    };
    let (answers, micro_answer) = tokio::join!(gp_e2e::join_all(burst), during);
    assert_eq!(micro_answer.status, 200, "Microtest is not starved by EMIS");
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let bulkhead = answers
        .iter()
        .filter(|a| a.status == 502 && a.diagnostics().contains("bulkhead full"))
        .count();
    assert_eq!(bulkhead, 4, "20 reads, 16 slots: {statuses:?}");
    // The 16 that got a slot time out; those timeouts also open EMIS's circuit, so a
    // retry that comes after it opened is refused at once instead of waiting again.
    for a in &answers {
        let ok = a.status == 504
            || (a.status == 502
                && (a.diagnostics().contains("bulkhead full")
                    || a.diagnostics().contains("circuit open")));
        assert!(ok, "{} {}", a.status, a.diagnostics());
    }
    sim(&w, "emis").set_fault(Fault::None);
    let mut audited = 0;
    for n in &emis {
        audited += audited_for(&w, &operator, n).await.len();
    }
    assert_eq!(audited, answers.len(), "every answer sent is audited");
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_drains_in_flight_requests() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let emis = w.ordinary_patient("emis", "demo-consult");
    sim(&w, "emis").set_fault(Fault::Delay(1500));
    let path = format!("/Patient/{emis}");
    let in_flight = w.call("GET", &path, &token, &[], b"");
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = w.sandbox.server.shutdown_trigger().send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Readiness is off before the in-flight request finishes.
        assert!(!w.sandbox.app.is_accepting());
    };
    let (answer, ()) = tokio::join!(in_flight, stop);
    assert_eq!(
        answer.status, 200,
        "the in-flight request completed during the drain"
    );
    // New connections are no longer accepted.
    let url = format!("{}/metadata", w.manifest().base_url);
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    assert!(client.request(req).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn a_system_killed_mid_request_gives_502_and_the_rest_carry_on() {
    let mut w = World::start().await;
    let token = w.token("demo-consult").await;
    let operator = w.token("demo-operator").await;
    let micro = w.ordinary_patient("microtest", "demo-consult");
    let emis = w.ordinary_patient("emis", "demo-consult");
    let at = w
        .sandbox
        .simulators
        .iter()
        .position(|(name, _)| name == "microtest")
        .unwrap();
    let (_, handle) = w.sandbox.simulators.remove(at);
    handle.set_fault(Fault::Hang);
    let path = format!("/Patient/{micro}");
    let in_flight = w.call("GET", &path, &token, &[], b"");
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Shutdown releases the hung request by closing its connection: killed mid-answer.
        handle.shutdown().await;
    };
    let (answer, ()) = tokio::join!(in_flight, kill);
    assert_eq!(
        answer.status,
        502,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer.diagnostics().contains("Microtest Evolution"),
        "{}",
        answer.diagnostics()
    );
    // Gone for good: refused at once, and EMIS is unaffected.
    let again = w.call("GET", &path, &token, &[], b"").await;
    assert_eq!(again.status, 502);
    let ok = w
        .call("GET", &format!("/Patient/{emis}"), &token, &[], b"")
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(audited_for(&w, &operator, &micro).await, [502, 502]);
}
