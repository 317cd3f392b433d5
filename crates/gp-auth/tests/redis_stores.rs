//! Shared state against the real Redis at 127.0.0.1:6379 (override with GP_AUTH_TEST_REDIS).
//! These tests FAIL when Redis is unreachable: a skipped test would hide a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_auth::*;

fn redis_url() -> String {
    std::env::var("GP_AUTH_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A prefix unique to this test and run, so parallel runs never share keys.
fn unique_prefix(test: &str) -> String {
    format!("gp-auth-test:{test}:{}:", uuid::Uuid::new_v4())
}

async fn connect() -> redis::aio::ConnectionManager {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        redis::aio::ConnectionManager::new(client),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            panic!("Redis at {url} is unreachable ({e}); these tests need a running Redis")
        }
        Err(_) => {
            panic!("Redis at {url} did not answer within 5 s; these tests need a running Redis")
        }
    }
}

/// Deletes every key under `prefix`.
async fn cleanup(conn: &mut redis::aio::ConnectionManager, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_rate_limiter_instances_share_one_budget() {
    let mut conn = connect().await;
    let prefix = unique_prefix("rl");
    let a = RedisRateLimiter::new(connect().await, prefix.clone());
    let b = RedisRateLimiter::new(connect().await, prefix.clone());
    let limit = RateLimit {
        per_second: 0.5,
        burst: 4,
    };

    let mut allowed = 0;
    for i in 0..6 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let d = limiter.check("api:demo-booking", limit).await.unwrap();
        if d.allowed {
            allowed += 1;
        } else {
            assert_eq!(d.remaining, 0);
            assert_eq!(d.retry_after_secs, 2, "one token at 0.5/s takes 2 s");
            assert_eq!(d.retry_after().as_deref(), Some("2"));
        }
    }
    assert_eq!(allowed, 4, "both replicas together get exactly the burst");
    // Another key is a separate budget.
    assert!(a.check("api:demo-consult", limit).await.unwrap().allowed);

    // Keys carry a TTL so idle buckets disappear.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}rl:api:demo-booking"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 9_000, "ttl {ttl} ms");
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn redis_rate_limiter_recovers_after_refill() {
    let mut conn = connect().await;
    let prefix = unique_prefix("rl-refill");
    let limiter = RedisRateLimiter::new(conn.clone(), prefix.clone());
    let limit = RateLimit {
        per_second: 10.0,
        burst: 2,
    };
    assert!(limiter.check("k", limit).await.unwrap().allowed);
    assert!(limiter.check("k", limit).await.unwrap().allowed);
    assert!(!limiter.check("k", limit).await.unwrap().allowed);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(limiter.check("k", limit).await.unwrap().allowed);
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn replay_store_is_shared_across_instances() {
    let mut conn = connect().await;
    let prefix = unique_prefix("jti");
    let a = RedisReplayStore::new(connect().await, prefix.clone());
    let b = RedisReplayStore::new(connect().await, prefix.clone());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    assert!(a.first_use("demo-booking:abc", exp).await.unwrap());
    assert!(
        !b.first_use("demo-booking:abc", exp).await.unwrap(),
        "replica b sees a's jti"
    );
    assert!(!a.first_use("demo-booking:abc", exp).await.unwrap());
    assert!(
        b.first_use("demo-consult:abc", exp).await.unwrap(),
        "keyed per client"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}jti:demo-booking:abc"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (55..=60).contains(&ttl),
        "kept until the assertion's exp, ttl {ttl}"
    );
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn unreachable_redis_is_an_error_not_a_pass() {
    // Port 1 on loopback: nothing listens there.
    let result = RedisReplayStore::connect("redis://127.0.0.1:1/0", "x:").await;
    assert!(matches!(result, Err(StoreError::Redis(_))));
}

#[tokio::test]
async fn the_rate_limit_script_is_loaded_again_when_redis_has_forgotten_it() {
    let mut conn = connect().await;
    let prefix = unique_prefix("script");
    let limiter = RedisRateLimiter::new(connect().await, prefix.clone());
    let limit = RateLimit {
        per_second: 0.01,
        burst: 2,
    };
    assert!(limiter.check("a", limit).await.unwrap().allowed);
    // A restarted (or failed-over) Redis knows no scripts: sent by hash, the script is
    // refused as unknown and must be loaded again, not fail the check.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = limiter.check("a", limit).await.unwrap();
    assert!(second.allowed);
    assert!(
        !limiter.check("a", limit).await.unwrap().allowed,
        "the bucket is shared state"
    );
    cleanup(&mut conn, &prefix).await;
}
