//! The route table and the served OpenAPI document against the running gateway: every
//! row of the table answers on each listener it names (never `404` or `405`), every
//! documented path and method reaches a route where the document says, and operational
//! endpoints refuse other methods with `Allow` like FHIR routes do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_adapter::ClinicalType;
use gp_e2e::World;
use gp_gateway::routes::{ID_TEMPLATE, Listener, Mount, ROUTES, Serving};

const NHS: &str = "9000000009";

/// The origin of the suppliers' listener (`http://127.0.0.1:port`).
fn origin(w: &World) -> String {
    w.manifest()
        .base_url
        .strip_suffix(&w.sandbox.app.fhir_base_path)
        .unwrap()
        .to_owned()
}

fn admin(w: &World) -> String {
    format!("http://{}", w.sandbox.admin.addr)
}

#[tokio::test]
async fn every_route_in_the_table_answers_on_each_listener_it_names() {
    let w = World::start().await;
    let base = w.sandbox.app.fhir_base_path.clone();
    // The sandbox serves every conditional row: supplier access on, its manifest.
    let serving = Serving {
        oauth: true,
        sandbox: true,
    };
    let mut checked = 0;
    for row in ROUTES.iter().filter(|r| r.when.holds(serving)) {
        for (template, _) in row.paths(ClinicalType::ALL) {
            let path = match row.mount {
                Mount::Origin => template.replace(ID_TEMPLATE, NHS),
                Mount::FhirBase => format!("{base}{}", template.replace(ID_TEMPLATE, NHS)),
            };
            for listener in [Listener::Main, Listener::Admin] {
                let at = match listener {
                    Listener::Main => origin(&w),
                    Listener::Admin => admin(&w),
                };
                // No token: a bearer route answers 401, the token endpoint 400; never 404/405.
                let a = w
                    .send(row.method.as_str(), &format!("{at}{path}"), &[], b"")
                    .await;
                // A public read of an id nobody has is a routed 404 (not "no route").
                let routed_not_found = a.status == 404
                    && row.access == gp_gateway::routes::Access::Public
                    && !String::from_utf8_lossy(&a.body).contains("no route for");
                if row.on(listener) {
                    assert!(
                        routed_not_found || (a.status != 404 && a.status != 405),
                        "{} {path} on {listener:?}: {} {}",
                        row.method,
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                    checked += 1;
                } else {
                    assert_eq!(a.status, 404, "{} {path} on {listener:?}", row.method);
                }
            }
        }
    }
    assert!(checked >= 24, "{checked}");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn every_documented_operation_is_served_where_the_document_says() {
    let w = World::start().await;
    let doc = w
        .send("GET", &format!("{}/openapi.json", origin(&w)), &[], b"")
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
        // A path item with servers of its own is on the admin listener.
        let at = if item["servers"].is_null() {
            origin(&w)
        } else {
            admin(&w)
        };
        for method in item.as_object().unwrap().keys() {
            if method == "servers" {
                continue;
            }
            let url = format!("{at}{}", path.replace(ID_TEMPLATE, NHS));
            let a = w.send(&method.to_uppercase(), &url, &[], b"").await;
            assert_ne!(a.status, 405, "{method} {path}");
            if a.status == 404 {
                assert_ne!(a.spine_code(), "UNSUPPORTED_SERVICE", "{method} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 22, "{checked}");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn operational_endpoints_refuse_other_methods_with_allow_like_every_route() {
    let w = World::start().await;
    let (main, admin) = (origin(&w), admin(&w));
    for (method, url) in [
        ("POST", format!("{main}/_health")),
        ("DELETE", format!("{main}/openapi.json")),
        ("PUT", format!("{main}/_ready")),
        ("POST", format!("{main}/oauth2/jwks")),
        ("POST", format!("{main}/.well-known/smart-configuration")),
        ("POST", format!("{main}/_sandbox/manifest")),
        ("POST", format!("{admin}/metrics")),
        ("DELETE", format!("{admin}/_health")),
    ] {
        let a = w.send(method, &url, &[], b"").await;
        assert_eq!(a.status, 405, "{method} {url}");
        assert_eq!(a.header("allow"), Some("GET"), "{method} {url}");
        assert_eq!(a.spine_code(), "METHOD_NOT_ALLOWED", "{method} {url}");
    }
    // HEAD is served wherever GET is.
    let head = w
        .send("HEAD", &format!("{main}/oauth2/jwks"), &[], b"")
        .await;
    assert_eq!(head.status, 200);
    // The token endpoint speaks OAuth2 errors, its Allow named by the error itself.
    let a = w.send("GET", &w.manifest().token_url, &[], b"").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("POST"));
    assert_eq!(a.json()["error"], "invalid_request");
    assert_eq!(a.json()["error_description"], "use POST for token requests");
    w.sandbox.shutdown().await;
}
