//! The served OpenAPI document against the running gateway: every documented path and
//! method reaches a route (never `404 UNSUPPORTED_SERVICE` or `405`), with no token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;

#[tokio::test]
async fn every_documented_operation_is_served() {
    let w = World::start().await;
    let origin = w
        .manifest()
        .base_url
        .strip_suffix(&w.sandbox.app.fhir_base_path)
        .unwrap()
        .to_owned();
    let doc = w
        .send("GET", &format!("{origin}/openapi.json"), &[], b"")
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.contains_key("/oauth2/token"),
        "oauth mode documents the token endpoint"
    );
    let mut checked = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{origin}{}", path.replace("{nhsNumber}", "9000000009"));
            let a = w.send(&method.to_uppercase(), &url, &[], b"").await;
            assert_ne!(a.status, 405, "{method} {path}");
            if a.status == 404 {
                assert_ne!(a.spine_code(), "UNSUPPORTED_SERVICE", "{method} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}
