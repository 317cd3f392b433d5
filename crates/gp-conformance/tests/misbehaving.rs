//! Misbehaving suppliers and broken targets against the in-process sandbox: a
//! badly-behaved supplier application fails each named assessment test with the
//! audit-trail rows that show why; a suspended supplier is checked when the manifest
//! names one; an adapter that drops SNOMED CT codings and `next` links fails the named
//! provider tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod support;

use gp_conformance::{RunOptions, Status};
use support::{manifest_file, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_badly_behaved_supplier_fails_each_named_test_with_the_rows_that_show_it() {
    let sandbox = support::sandbox().await;
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // demo-monitoring holds Patient and Observation scopes, not AllergyIntolerance.
    let app = support::App::new(&sandbox, "demo-monitoring");
    let nhs = support::ordinary_patient(&sandbox, "demo-monitoring");
    support::badly_behaved(&app, &nhs, "AllergyIntolerance").await;

    let mut opts = support::options(&support::origin(&sandbox), &["supplier-assessment"]);
    opts.client_id = Some("demo-monitoring".into());
    opts.since = Some(since);
    let report = support::run(&opts, 60).await;
    assert!(!report.passed());
    let failed = |id: &str| {
        let r = report.result(id).unwrap();
        assert_eq!(r.status, Status::Fail, "{id}: {:?} {}", r.status, r.message);
        assert!(!r.audit_rows.is_empty(), "{id} points at rows");
        r
    };

    let r = failed("SUP-REQ-01");
    assert!(
        r.message.contains("without an X-Request-ID"),
        "{}",
        r.message
    );
    assert!(
        r.audit_rows
            .iter()
            .all(|a| a.request_id_source == "gateway")
    );

    let r = failed("SUP-NHS-01");
    assert_eq!(r.audit_rows.len(), 1, "the one call with 9000000008");
    assert_eq!(
        (r.audit_rows[0].status, r.audit_rows[0].outcome.as_str()),
        (400, "INVALID_RESOURCE_ID")
    );

    let r = failed("SUP-SCO-01");
    assert_eq!(r.audit_rows.len(), 1);
    assert_eq!(
        (
            r.audit_rows[0].status,
            r.audit_rows[0].resource_type.as_str()
        ),
        (403, "AllergyIntolerance")
    );

    let r = failed("SUP-RL-01");
    assert_eq!(
        r.audit_rows[0].status, 429,
        "the 429, then the request that ignored it"
    );
    assert!(r.audit_rows.len() >= 2);
    assert!(r.message.contains("Retry-After window"), "{}", r.message);

    // Judged from the token requests the trail records: each call after one of its own.
    let r = failed("SUP-TOK-01");
    assert!(r.message.contains("a token per call"), "{}", r.message);
    assert!(
        r.message.contains("4 token request(s) (0 refused)"),
        "{}",
        r.message
    );
    assert_eq!(
        r.audit_rows.len(),
        8,
        "4 token requests, each with its call"
    );
    for pair in r.audit_rows.chunks(2) {
        assert_eq!(
            (pair[0].interaction.as_str(), pair[1].interaction.as_str()),
            ("token", "read")
        );
        assert_eq!(
            pair[0].token_id, pair[1].token_id,
            "the call used the token issued"
        );
    }
    let tokens: std::collections::HashSet<&str> =
        r.audit_rows.iter().map(|a| a.token_id.as_str()).collect();
    assert_eq!(tokens.len(), 4, "each call on a token of its own");

    let r = failed("SUP-TOK-02");
    assert!(
        r.message.contains("3 of 4 token(s) were issued"),
        "{}",
        r.message
    );
    assert!(r.audit_rows.iter().all(|a| a.interaction == "token"));

    // The evidence names no patient and holds no token.
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(&nhs), "NHS number leaked");
    assert!(!json.contains("eyJ"), "a JWT leaked");
    // The reports show the rows.
    let dir = scratch("assessment");
    gp_conformance::report::write_all(&report, &dir).unwrap();
    let html = std::fs::read_to_string(dir.join(gp_conformance::report::HTML)).unwrap();
    assert!(html.contains("audit trail: 1 row(s)") && html.contains("INVALID_RESOURCE_ID"));
    let _ = std::fs::remove_dir_all(&dir);

    // Another supplier with no traffic: nothing to judge, every test a skip saying so.
    opts.client_id = Some("demo-booking".into());
    let report = support::run(&opts, 60).await;
    for r in &report.results {
        assert_eq!(r.status, Status::Skip, "{}: {}", r.id, r.message);
        assert!(
            r.message.contains("no recorded traffic from demo-booking"),
            "{}",
            r.message
        );
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_assessment_needs_a_client_id_and_a_valid_since() {
    let opts = RunOptions {
        target: "http://127.0.0.1:9".into(),
        suites: vec!["supplier-assessment".into()],
        ..RunOptions::default()
    };
    let e = gp_conformance::run(&opts).await.err().unwrap();
    assert!(e.to_string().contains("--client-id"), "{e}");
    let opts = RunOptions {
        client_id: Some("demo-consult".into()),
        since: Some("yesterday".into()),
        ..opts
    };
    let e = gp_conformance::run(&opts).await.err().unwrap();
    assert!(e.to_string().contains("RFC 3339"), "{e}");
}

/// The sandbox's registry with `client_id` suspended, swapped in.
fn suspend(sandbox: &gp_gateway::sandbox::Sandbox, client_id: &str, dir: &std::path::Path) {
    let registry = gp_gateway::sandbox::current_suppliers(sandbox).unwrap();
    let mut doc: toml::Table = toml::from_str(&registry).unwrap();
    for s in doc["suppliers"].as_array_mut().unwrap() {
        if s["client_id"].as_str() == Some(client_id) {
            s.as_table_mut()
                .unwrap()
                .insert("status".into(), toml::Value::String("suspended".into()));
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("suppliers.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    sandbox
        .app
        .auth
        .as_ref()
        .unwrap()
        .reload_from(&path)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_supplier_is_checked_when_the_manifest_names_one() {
    let sandbox = support::sandbox().await;
    let dir = scratch("suspended");
    // The team's manifest says demo-booking is suspended (and names no other suspended
    // supplier: the sandbox's own demo-suspended is left out).
    let mut manifest = serde_json::to_value(&sandbox.manifest).unwrap();
    manifest["suppliers"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["status"] != "suspended");
    for s in manifest["suppliers"].as_array_mut().unwrap() {
        if s["client_id"] == "demo-booking" {
            s["status"] = "suspended".into();
        }
    }
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest, &dir)),
        ..support::options(&support::origin(&sandbox), &["gateway-security"])
    };

    // The gateway has not been told: it still issues tokens, and the test says so.
    let report = support::run(&opts, 120).await;
    let r = report.result("SEC-SUS-01").unwrap();
    assert_eq!(r.status, Status::Fail, "{}", r.message);
    assert!(
        r.message.contains("demo-booking is suspended") && r.message.contains("got 200"),
        "{}",
        r.message
    );
    assert_eq!(r.evidence[0].status, 200);

    // Suspended in the registry: refused.
    suspend(&sandbox, "demo-booking", &dir);
    let report = support::run(&opts, 120).await;
    let r = report.result("SEC-SUS-01").unwrap();
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    assert!(String::from_utf8_lossy(r.evidence[0].response_body.as_bytes()).contains("suspended"));
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adapter_that_drops_snomed_and_next_links_fails_the_named_provider_tests() {
    let sandbox = support::sandbox().await;
    let proxy = support::breaking_proxy(support::origin(&sandbox)).await;
    let mut manifest = sandbox.manifest.clone();
    manifest.base_url = format!("{proxy}/FHIR/R4");
    manifest.token_url = sandbox.manifest.token_url.clone();
    let dir = scratch("broken-adapter");
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest, &dir)),
        ..support::options(&proxy, &["provider"])
    };
    let report = support::run(&opts, 240).await;
    assert!(!report.passed());
    for system in ["emis", "tpp", "vision", "microtest"] {
        let r = report.result(&format!("PRV-CODE-01/{system}")).unwrap();
        assert_eq!(r.status, Status::Fail, "{system}: {}", r.message);
        assert!(r.message.contains("no SNOMED CT"), "{}", r.message);
        assert!(
            r.evidence
                .iter()
                .any(|e| e.response_body.contains("readv2"))
        );
        let r = report.result(&format!("PRV-PAGE-01/{system}")).unwrap();
        assert_eq!(r.status, Status::Fail, "{system}: {}", r.message);
        assert!(
            r.message.contains("page(s) of _count=2") || r.message.contains("lost"),
            "{}",
            r.message
        );
        // What the proxy leaves alone still passes.
        let r = report.result(&format!("PRV-PAT-01/{system}")).unwrap();
        assert_eq!(r.status, Status::Pass, "{system}: {}", r.message);
    }
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.shutdown().await;
}
