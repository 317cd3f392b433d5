//! A flood of forged client assertions naming a real supplier: refused `429` with
//! `Retry-After` before any signature is checked once over the pre-check limit, and the
//! refused requests are not recorded as that supplier's own attempts (they would skew its
//! supplier assessment).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::Value;

/// demo-booking's token request with its assertion's signature altered: what a forger
/// without the private key can send.
fn forged(w: &World) -> String {
    let identity = gp_gateway::sandbox::demo_identity("demo-booking").unwrap();
    let body = identity
        .token_request_body(&w.manifest().token_url, None)
        .unwrap();
    let (head, signature) = body.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{flipped}{}", &signature[1..])
}

fn token_rows(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|e| e["subtype"][0]["code"] == "token")
        .collect()
}

#[tokio::test]
async fn forged_assertions_over_the_precheck_are_refused_and_not_attributed() {
    let w = World::start().await;
    let operator = w.token("demo-operator").await;
    let body = forged(&w);
    let (mut unauthenticated, mut limited) = (0, 0);
    let started = std::time::Instant::now();
    // In bursts of 25 at once, until the pre-check has refused some (at least 150 sent):
    // on a loaded machine the flood is slower and more of the budget refills meanwhile,
    // so the count it takes is not fixed, only bounded.
    let mut sent = 0;
    while sent < 600 && (sent < 150 || limited == 0) {
        let burst = gp_e2e::join_all(
            (0..25)
                .map(|_| {
                    w.send(
                        "POST",
                        &w.manifest().token_url,
                        &[("content-type", "application/x-www-form-urlencoded")],
                        body.as_bytes(),
                    )
                })
                .collect(),
        )
        .await;
        for a in burst {
            sent += 1;
            match a.status {
                401 => unauthenticated += 1,
                429 => {
                    let v = a.json();
                    assert_eq!(v["error"], "temporarily_unavailable");
                    assert!(
                        v["error_description"]
                            .as_str()
                            .unwrap()
                            .starts_with("Too many token requests naming client 'demo-booking'"),
                        "{v}"
                    );
                    assert!(
                        a.header("retry-after")
                            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
                    );
                    limited += 1;
                }
                other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&a.body)),
            }
        }
    }
    // demo-booking's token_rate_limit is burst 5 at 1/s; the per-client pre-check is 20
    // times that: 100 forgeries reach a signature check, plus what refilled (20/s) while
    // the flood lasted; the rest do not.
    let refilled = (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        (100..=100 + refilled).contains(&unauthenticated) && limited > 0,
        "{unauthenticated} checked, {limited} refused in {:?}",
        started.elapsed()
    );
    assert_eq!(unauthenticated + limited, sent);

    let trail = |query: &'static str| {
        let (w, operator) = (&w, &operator);
        async move {
            let a = w.call("GET", query, operator, &[], b"").await;
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            a.json()
        }
    };
    // demo-booking's own trail holds the forgeries that were checked (and refused as
    // invalid_client), never one refused by the pre-check.
    let own = trail("/AuditEvent?agent=demo-booking&_count=1000").await;
    let own = token_rows(&own);
    assert_eq!(own.len(), unauthenticated);
    assert!(
        own.iter()
            .all(|e| e["outcomeDesc"] == "HTTP 401 invalid_client"),
        "{own:?}"
    );
    // The refused ones are in the trail too, as nobody's.
    let all = trail("/AuditEvent?_count=1000").await;
    let refused: Vec<&Value> = token_rows(&all)
        .into_iter()
        .filter(|e| e["outcomeDesc"] == "HTTP 429 temporarily_unavailable")
        .collect();
    assert_eq!(refused.len(), limited);
    assert!(
        refused
            .iter()
            .all(|e| e["agent"][0]["who"]
                == serde_json::json!({ "display": "unauthenticated caller" })),
        "{refused:?}"
    );
}
