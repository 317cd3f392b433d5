//! The kit against the sandbox, in-process on 127.0.0.1:0: every required test passes
//! and the reports are well-formed; against a misconfigured target the named tests
//! fail with evidence pointing at the cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use gp_conformance::{RunOptions, Status, report};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{manifest_file, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sandbox_passes_every_suite_and_reports_are_well_formed() {
    let sandbox = support::sandbox().await;
    // A well-behaved supplier application's traffic first: the assessment judges it,
    // and not the kit's own requests to the same supplier that follow.
    let app = support::App::new(&sandbox, "demo-consult");
    support::well_behaved(&app, &support::ordinary_patient(&sandbox, "demo-consult")).await;
    // Read from the target's /_sandbox/manifest.
    let mut opts = support::options(
        &support::origin(&sandbox),
        &["gateway-security", "provider", "supplier-assessment"],
    );
    opts.client_id = Some("demo-consult".into());
    let report = support::run(&opts, 300).await;

    let bad: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.required && !matches!(r.status, Status::Pass | Status::Skip))
        .map(|r| format!("{} {:?}: {}", r.id, r.status, r.message))
        .collect();
    assert!(
        bad.is_empty(),
        "required tests not passing:\n{}",
        bad.join("\n")
    );
    assert!(report.passed());
    // The only skip: what the kit cannot judge yet (documented in conformance/README.md).
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.status == Status::Skip)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(skipped, ["SEC-ACC-05"]);
    // The manifest names the sandbox's suspended supplier: it was refused its token.
    let sus = report.result("SEC-SUS-01").unwrap();
    assert_eq!(sus.status, Status::Pass, "{}", sus.message);
    assert_eq!(sus.evidence[0].status, 401);
    assert!(
        sus.evidence[0]
            .request_body
            .contains("client_assertion=[REDACTED]")
            && sus.evidence[0].response_body.contains("demo-suspended")
            && sus.evidence[0].response_body.contains("suspended"),
        "{}",
        sus.evidence[0].response_body
    );
    // The over-the-limit check met a real 429.
    let rl = report.result("SEC-RL-02").unwrap();
    assert!(rl.evidence.iter().any(|e| e.status == 429));
    // The well-behaved application passes its assessment, judged on its own rows.
    for id in [
        "SUP-REQ-01",
        "SUP-RL-01",
        "SUP-SCO-01",
        "SUP-NHS-01",
        "SUP-TOK-01",
        "SUP-TOK-02",
    ] {
        let r = report.result(id).unwrap();
        assert_eq!(r.status, Status::Pass, "{id}: {}", r.message);
    }
    // Write-back ran on every GP system.
    for system in ["emis", "tpp", "vision", "microtest"] {
        for id in [
            "PRV-WRT-01",
            "PRV-WRT-02",
            "PRV-WRT-03",
            "PRV-WRT-04",
            "PRV-WRT-05",
            "PRV-WRT-06",
            "PRV-PAGE-01",
            "PRV-DATE-01",
            "PRV-SORT-01",
            "PRV-POST-01",
            "PRV-INC-01",
            "PRV-BATCH-01",
            "PRV-CODE-01",
            "PRV-REF-01",
        ] {
            let r = report.result(&format!("{id}/{system}")).unwrap();
            assert_eq!(r.status, Status::Pass, "{id}/{system}: {}", r.message);
        }
    }
    // Provider tests ran once per GP system.
    for system in ["emis", "tpp", "vision", "microtest"] {
        let r = report
            .result(&format!("PRV-PAT-01/{system}"))
            .expect("per-system provider test");
        assert_eq!(r.status, Status::Pass, "{system}: {}", r.message);
    }
    assert_eq!(report.summary.total, 30 + 23 * 4 + 1 + 6);

    let dir = scratch("reports");
    let paths = report::write_all(&report, &dir).unwrap();
    assert_eq!(paths.len(), 3);

    let junit = std::fs::read_to_string(dir.join(report::JUNIT)).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("JUnit is XML");
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, report.results.len());
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        0
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(report::JSON)).unwrap())
            .expect("JSON parses");
    assert_eq!(
        json["results"].as_array().unwrap().len(),
        report.results.len()
    );
    assert_eq!(json["summary"]["required_failed"], 0);

    let html = std::fs::read_to_string(dir.join(report::HTML)).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>")
            && html.contains("REQ-AUTH-02")
            && html.contains("id=\"SEC-TOK-01\"")
    );
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );

    // Nothing secret or identifying reached any report.
    for text in [
        &junit,
        &html,
        &String::from_utf8(std::fs::read(dir.join(report::JSON)).unwrap()).unwrap(),
    ] {
        assert!(!text.contains("eyJ"), "a JWT leaked into a report");
        for p in &sandbox.manifest.patients {
            assert!(
                !text.contains(&p.nhs_number),
                "NHS number {} leaked",
                p.nhs_number
            );
        }
    }
    assert!(junit.contains("Bearer [REDACTED]") && junit.contains("client_assertion=[REDACTED]"));

    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}

/// A fake gateway on 127.0.0.1:0 that answers `200 {}` to everything.
async fn yes_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{}")))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_accepts_everything_fails_the_named_tests_with_evidence() {
    let addr = yes_server().await;
    let origin = format!("http://{addr}");
    // The sandbox's manifest (keys and patients), re-pointed at the fake.
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sandbox = gp_gateway::sandbox::start(listen, gp_gateway::sandbox::DEFAULT_SEED)
        .await
        .unwrap();
    let mut manifest = sandbox.manifest.clone();
    manifest.base_url = format!("{origin}/FHIR/R4");
    manifest.token_url = format!("{origin}/oauth2/token");
    let dir = scratch("misconfigured");
    let path = manifest_file(&manifest, &dir);

    let opts = RunOptions {
        manifest: Some(path.clone()),
        ..support::options(&origin, &["gateway-security"])
    };
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        gp_conformance::run(&opts),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!report.passed());
    let alg_none = report.result("SEC-TOK-01").unwrap();
    assert_eq!(alg_none.status, Status::Fail);
    assert!(alg_none.message.contains("got 200"), "{}", alg_none.message);
    let ev = &alg_none.evidence[0];
    assert_eq!(ev.status, 200);
    assert!(ev.url.ends_with("/oauth2/token"));
    assert!(ev.request_body.contains("client_assertion=[REDACTED]"));
    // A 200 without a token: the baseline says exactly that.
    let baseline = report.result("SEC-TOK-00").unwrap();
    assert_eq!(baseline.status, Status::Fail);
    assert!(
        baseline.message.contains("access_token"),
        "{}",
        baseline.message
    );
    // Without a token the FHIR checks cannot run: omitted, saying why.
    let acc = report.result("SEC-ACC-01").unwrap();
    assert_eq!(acc.status, Status::Omit);
    assert!(acc.message.contains("no access token"), "{}", acc.message);

    // The binary: same target, non-zero exit, reports written.
    let reports = dir.join("reports");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gp-conformance"))
        .args([
            "run",
            "--target",
            &origin,
            "--suite",
            "gateway-security",
            "--manifest",
        ])
        .arg(&path)
        .arg("--report")
        .arg(&reports)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let junit = std::fs::read_to_string(reports.join(report::JUNIT)).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    assert!(doc.descendants().any(|n| {
        n.has_tag_name("testcase")
            && n.attribute("name")
                .is_some_and(|a| a.starts_with("SEC-TOK-01 "))
            && n.children().any(|c| c.has_tag_name("failure"))
    }));

    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_token_url_that_answers_404_fails_the_token_tests() {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sandbox = gp_gateway::sandbox::start(listen, gp_gateway::sandbox::DEFAULT_SEED)
        .await
        .unwrap();
    let mut manifest = sandbox.manifest.clone();
    manifest.token_url = manifest
        .token_url
        .replace("/oauth2/token", "/oauth2/no-such-endpoint");
    let dir = scratch("wrong-token-url");
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest, &dir)),
        ..support::options(&support::origin(&sandbox), &["gateway-security"])
    };
    let report = gp_conformance::run(&opts).await.unwrap();
    let r = report.result("SEC-TOK-00").unwrap();
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.message.contains("HTTP 404") && r.message.contains("no-such-endpoint"),
        "{}",
        r.message
    );
    assert_eq!(r.evidence[0].status, 404);
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}

/// The tests the `appointments` suite runs once per GP system.
const APPOINTMENT_TESTS: [&str; 13] = [
    "APT-SLOT-01",
    "APT-SLOT-02",
    "APT-BOOK-01",
    "APT-READ-01",
    "APT-BOOK-02",
    "APT-AMD-01",
    "APT-AMD-02",
    "APT-CAN-01",
    "APT-CAN-02",
    "APT-RACE-01",
    "APT-SRCH-01",
    "APT-REF-01",
    "APT-REF-02",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sandbox_books_amends_and_cancels_on_every_gp_system() {
    let sandbox = support::sandbox().await;
    let opts = support::options(&support::origin(&sandbox), &["appointments"]);
    let report = support::run(&opts, 300).await;

    let bad: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| format!("{} {:?}: {}", r.id, r.status, r.message))
        .collect();
    assert!(
        bad.is_empty(),
        "appointment tests not passing:\n{}",
        bad.join("\n")
    );
    for system in ["emis", "tpp", "vision", "microtest"] {
        for id in APPOINTMENT_TESTS {
            let r = report.result(&format!("{id}/{system}")).unwrap();
            assert_eq!(r.status, Status::Pass, "{id}/{system}: {}", r.message);
        }
        // The race was run: every racing booking is in the evidence, one created.
        let race = report.result(&format!("APT-RACE-01/{system}")).unwrap();
        let posts: Vec<u16> = race
            .evidence
            .iter()
            .filter(|e| e.method == "POST")
            .map(|e| e.status)
            .collect();
        assert_eq!(posts.iter().filter(|s| **s == 201).count(), 1, "{posts:?}");
        assert!(
            posts.iter().filter(|s| **s == 409).count() >= 9,
            "{posts:?}"
        );
    }
    assert_eq!(report.summary.total, 4 + APPOINTMENT_TESTS.len() * 4);
    let json = serde_json::to_string(&report).unwrap();
    for p in &sandbox.manifest.patients {
        assert!(
            !json.contains(&p.nhs_number),
            "NHS number {} leaked",
            p.nhs_number
        );
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn without_a_booking_supplier_the_appointments_suite_is_skipped_saying_why() {
    let sandbox = support::sandbox().await;
    let mut manifest = serde_json::to_value(&sandbox.manifest).unwrap();
    manifest["suppliers"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["client_id"] != "demo-booking");
    let dir = scratch("no-booking-supplier");
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest, &dir)),
        ..support::options(&support::origin(&sandbox), &["appointments"])
    };
    let report = support::run(&opts, 60).await;
    assert_eq!(
        report.results.len(),
        gp_conformance::suites::appointments::CATALOGUE.len()
    );
    for r in &report.results {
        assert_eq!(r.status, Status::Skip, "{}", r.id);
        assert!(r.message.contains("no booking supplier"), "{}", r.message);
        assert!(r.evidence.is_empty(), "{}: nothing is sent", r.id);
    }
    assert!(report.passed());
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_notifies_subscribers_signed_in_order_and_only_where_paired() {
    let sandbox = support::sandbox().await;
    let opts = support::options(&support::origin(&sandbox), &["notifications"]);
    let report = support::run(&opts, 240).await;

    let bad: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| format!("{} {:?}: {}", r.id, r.status, r.message))
        .collect();
    assert!(
        bad.is_empty(),
        "notification tests not passing:\n{}",
        bad.join("\n")
    );
    let catalogue = gp_conformance::suites::notifications::CATALOGUE;
    assert_eq!(report.summary.total, catalogue.len());
    for def in catalogue {
        assert!(report.result(def.id).is_some(), "{} ran", def.id);
    }
    // The kit judged what its own receiver got, shown as evidence: the handshakes and
    // events, each with its signature headers.
    let signatures = report.result("NOT-03").unwrap();
    let received: Vec<_> = signatures
        .evidence
        .iter()
        .filter(|e| e.method == gp_conformance::webhook::RECEIVED)
        .collect();
    // Two handshakes, three readings, the pairing check's control, NOT-07's control.
    assert!(received.len() >= 7, "{}", received.len());
    assert!(received.iter().all(|e| {
        e.request_headers
            .iter()
            .any(|(k, v)| k == "webhook-signature" && v.starts_with("v1a,"))
    }));
    // The unpaired supplier's check wrote for a patient it is not paired with.
    let pairing = report.result("NOT-06").unwrap();
    assert!(
        pairing
            .evidence
            .iter()
            .any(|e| e.method == "POST" && e.url.ends_with("/Observation") && e.status == 201)
    );
    // Never the sandbox's demo receiver: the kit listens for itself.
    assert!(sandbox.receiver.received().is_empty());
    // Its subscriptions are gone: none left for any demo supplier.
    for client_id in ["demo-consult", "demo-monitoring"] {
        let app = support::App::new(&sandbox, client_id);
        let token = app.token(&[]).await;
        let held: serde_json::Value =
            serde_json::from_slice(&app.get("Subscription", &token, true).await.body).unwrap();
        assert_eq!(held["total"], 0, "{client_id}: {held}");
    }
    let json = serde_json::to_string(&report).unwrap();
    for p in &sandbox.manifest.patients {
        assert!(
            !json.contains(&p.nhs_number),
            "NHS number {} leaked",
            p.nhs_number
        );
    }
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_unpaired_supplier_the_pairing_check_is_a_skip_saying_why() {
    let sandbox = support::sandbox().await;
    // Without demo-monitoring every supplier that may subscribe is paired with every
    // practice, and demo-consult writes the readings it is told of itself.
    let mut manifest = serde_json::to_value(&sandbox.manifest).unwrap();
    manifest["suppliers"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["client_id"] != "demo-monitoring");
    let dir = scratch("no-unpaired-supplier");
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest, &dir)),
        ..support::options(&support::origin(&sandbox), &["notifications"])
    };
    let report = support::run(&opts, 240).await;
    let pairing = report.result("NOT-06").unwrap();
    assert_eq!(pairing.status, Status::Skip, "{}", pairing.message);
    assert!(
        pairing.message.contains("no unpaired supplier"),
        "{}",
        pairing.message
    );
    assert!(pairing.evidence.is_empty(), "nothing is sent");
    for r in report.results.iter().filter(|r| r.id != "NOT-06") {
        assert_eq!(r.status, Status::Pass, "{}: {}", r.id, r.message);
    }
    assert!(report.passed());
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}
