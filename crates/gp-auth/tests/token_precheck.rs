//! The limits a token request meets before its assertion's signature is checked: a
//! flood of forged assertions naming a real supplier is refused by them, at the cost of a
//! limiter call, not a signature check each; one flooding address cannot lock the
//! supplier out; replicas share them through Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::*;
use gp_auth::*;

/// A token service with the default `[auth] token_precheck` limits and `limiter`.
fn service(limiter: Arc<dyn RateLimiter>) -> TokenService {
    let cfg = auth_config();
    let keys = GatewayKeys::load(&cfg, &sandbox()).unwrap();
    let registry =
        SupplierRegistry::new(SupplierSet::build(&suppliers_config(), &sandbox()).unwrap());
    TokenService::new(cfg, keys, registry, Arc::new(MemoryReplayStore::default()))
        .with_rate_limiter(limiter)
}

/// An assertion naming demo-booking, with its real `kid` and `alg`, signed with another
/// supplier's key: what a forger without the private key sends.
fn forged_booking() -> Vec<u8> {
    let (_, kid, alg, _) = BOOKING;
    let (_, _, _, consult_key) = CONSULT;
    form(
        &sign(
            ("demo-booking", kid, alg, consult_key),
            &claims("demo-booking"),
        ),
        None,
    )
}

/// A genuine token request of `supplier` from `peer`.
async fn genuine(
    tokens: &TokenService,
    supplier: (&str, &str, jsonwebtoken::Algorithm, &str),
    peer: Option<IpAddr>,
) -> Result<TokenResponse, OAuthError> {
    tokens
        .issue_from(&form(&assertion(supplier), None), None, peer)
        .await
}

fn ip(n: u32) -> Option<IpAddr> {
    Some(IpAddr::V4(std::net::Ipv4Addr::from(0xC633_6400 + n))) // 198.51.100.0/24 onwards
}

#[derive(Debug, Default)]
struct Tally {
    bad_signature: usize,
    peer_limited: usize,
    client_limited: usize,
}

async fn flood(
    tokens: &TokenService,
    body: &[u8],
    peers: impl Iterator<Item = Option<IpAddr>>,
) -> Tally {
    let mut t = Tally::default();
    for peer in peers {
        match tokens.issue_from(body, None, peer).await.unwrap_err() {
            OAuthError::BadSignature => t.bad_signature += 1,
            e @ OAuthError::PeerRateLimited { .. } => {
                assert_eq!(e.status(), 429);
                assert_eq!(e.code(), "temporarily_unavailable");
                assert!(e.retry_after_secs().is_some_and(|s| s >= 1));
                assert!(e.refused_before_authentication());
                t.peer_limited += 1;
            }
            e @ OAuthError::ClaimedClientRateLimited { .. } => {
                assert_eq!(e.status(), 429);
                assert_eq!(
                    e.to_string(),
                    format!(
                        "Too many token requests naming client 'demo-booking': retry after {} s",
                        e.retry_after_secs().unwrap()
                    )
                );
                assert!(e.refused_before_authentication());
                t.client_limited += 1;
            }
            other => panic!("unexpected refusal: {other}"),
        }
    }
    t
}

#[tokio::test(start_paused = true)]
async fn a_forged_flood_from_one_address_is_refused_before_any_signature_check() {
    let tokens = service(Arc::new(MemoryRateLimiter::default()));
    let t = flood(&tokens, &forged_booking(), (0..300).map(|_| ip(1))).await;
    // The default per-peer burst is 20 (the clock is paused: no refill during the loop).
    assert_eq!(t.bad_signature, 20, "{t:?}");
    assert_eq!(t.bad_signature + t.peer_limited, 300, "{t:?}");
    assert_eq!(tokens.signature_checks(), t.bad_signature as u64);
    // The flood spent only its own address's budget of demo-booking's pre-check: the real
    // supplier, from its own address, still gets its token.
    let ok = genuine(&tokens, BOOKING, ip(2)).await.unwrap();
    assert_eq!(ok.client_id, "demo-booking");
}

#[tokio::test(start_paused = true)]
async fn a_forged_flood_over_many_addresses_is_bounded_per_claimed_client() {
    let tokens = service(Arc::new(MemoryRateLimiter::default()));
    let t = flood(&tokens, &forged_booking(), (0..400).map(ip)).await;
    // demo-booking's token_rate_limit is burst 5 at 1/s: its pre-check is 20 times that.
    assert_eq!(t.bad_signature, 100, "{t:?}");
    assert_eq!(t.peer_limited, 0);
    assert_eq!(t.bad_signature + t.client_limited, 400, "{t:?}");
    assert_eq!(tokens.signature_checks(), t.bad_signature as u64);
    // The trade-off: while such a flood lasts the real supplier is refused too (429 with
    // Retry-After, as for its own limit); every other client is not.
    let err = genuine(&tokens, BOOKING, ip(1000)).await.unwrap_err();
    assert!(
        matches!(err, OAuthError::ClaimedClientRateLimited { .. }),
        "{err}"
    );
    assert!(genuine(&tokens, CONSULT, ip(1000)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_honest_supplier_meets_its_own_limit_first() {
    let tokens = service(Arc::new(MemoryRateLimiter::default()));
    for _ in 0..5 {
        genuine(&tokens, BOOKING, ip(7)).await.unwrap();
    }
    let err = genuine(&tokens, BOOKING, ip(7)).await.unwrap_err();
    assert!(matches!(err, OAuthError::RateLimited { .. }), "{err}");
    assert!(!err.refused_before_authentication());
}

#[tokio::test(start_paused = true)]
async fn junk_naming_no_registered_client_is_limited_per_address_only() {
    let tokens = service(Arc::new(MemoryRateLimiter::default()));
    let junk = form("not-a-jwt", None);
    let mut limited = 0;
    for _ in 0..40 {
        match tokens.issue_from(&junk, None, ip(3)).await.unwrap_err() {
            OAuthError::MalformedJwt(_) => {}
            OAuthError::PeerRateLimited { .. } => limited += 1,
            other => panic!("unexpected refusal: {other}"),
        }
    }
    assert!(limited >= 15, "{limited}");
    assert!(tokens.claimed_client(&junk).is_none());
    assert_eq!(
        tokens
            .claimed_client(&forged_booking())
            .map(|(c, _)| c)
            .as_deref(),
        Some("demo-booking")
    );
}

#[tokio::test]
async fn precheck_limits_are_shared_by_replicas_through_redis() {
    let url =
        std::env::var("GP_AUTH_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("gp-auth-test:precheck:{}:", uuid::Uuid::new_v4());
    let replica = |_| async {
        let limiter = RedisRateLimiter::connect(&url, prefix.clone())
            .await
            .unwrap_or_else(|e| {
                panic!("Redis at {url} is unreachable ({e}); this test needs a running Redis")
            });
        service(Arc::new(limiter))
    };
    let (a, b) = (replica(0).await, replica(1).await);
    let body = forged_booking();
    let mut checked = 0;
    let started = std::time::Instant::now();
    for i in 0..60 {
        let tokens = if i % 2 == 0 { &a } else { &b };
        if let OAuthError::BadSignature = tokens.issue_from(&body, None, ip(9)).await.unwrap_err() {
            checked += 1;
        }
    }
    // One budget for the address across both replicas, not one each: the burst of 20,
    // plus what Redis's clock refilled (2/s) while the loop ran.
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as u64;
    assert!(
        (20..=20 + refilled).contains(&checked),
        "{checked} in {:?}",
        started.elapsed()
    );
    assert_eq!(a.signature_checks() + b.signature_checks(), checked);
}
