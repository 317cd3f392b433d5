//! A supplier that is not an operator but holds `system/AuditEvent.rs` (a patient-facing
//! app showing people who looked at their record) sees its own audit rows only, and the
//! access log only of patients it may see at all. The sandbox's demo suppliers hold no
//! such scope, so the test grants it by reloading the registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::Value;

fn agents(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["agent"][0]["who"]["identifier"]["value"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_supplier_holding_the_audit_scope_sees_only_its_own_rows() {
    let w = World::start().await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    for client in ["demo-consult", "demo-booking"] {
        let token = w.token(client).await;
        let a = w
            .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
            .await;
        assert_eq!(a.status, 200, "{client}");
    }

    // demo-consult is given system/AuditEvent.rs, and takes a new token to use it.
    w.reload_suppliers(|current| {
        let widened = current.replacen(
            "\"system/AllergyIntolerance.rs\"",
            "\"system/AuditEvent.rs\", \"system/AllergyIntolerance.rs\"",
            1,
        );
        assert_ne!(widened, current);
        widened
    });
    let consult = w.token("demo-consult").await;

    let a = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let seen = agents(&a.json());
    assert!(!seen.is_empty(), "its own read is there");
    assert!(seen.iter().all(|c| c == "demo-consult"), "{seen:?}");
    let a = w
        .call("GET", "/AuditEvent?agent=demo-booking", &consult, &[], b"")
        .await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));

    // The access log of a patient it may read; not of one it may not (sensitive).
    let a = w
        .call(
            "GET",
            &format!("/Patient/{nhs}/$access-log"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let sensitive = w.patient(&w.practice_of(&nhs), "sensitive");
    let a = w
        .call(
            "GET",
            &format!("/Patient/{sensitive}/$access-log"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
}
