//! Token-bucket rate limits, in memory (one replica) or in Redis (shared by replicas).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use gp_fhir::{FhirError, IssueType, SpineCode};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::StoreError;

/// A token bucket: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (the refill rate), > 0.
    pub per_second: f64,
    /// Bucket size: requests allowed back to back, ≥ 1.
    pub burst: u32,
}

impl RateLimit {
    /// Why this limit is unusable, if it is.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if !self.per_second.is_finite() || self.per_second <= 0.0 {
            Some("per_second must be a positive number")
        } else if self.burst == 0 {
            Some("burst must be at least 1")
        } else {
            None
        }
    }

    /// Seconds for an empty bucket to fill up: the IETF `RateLimit-Policy` window.
    fn window_secs(&self) -> u64 {
        secs_ceil(f64::from(self.burst) / self.per_second)
    }
}

fn secs_ceil(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        // Bounded: burst ≤ u32::MAX and per_second > 0.
        secs.ceil().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this request may proceed (it has consumed one token).
    pub allowed: bool,
    /// The bucket size (`burst`).
    pub limit: u32,
    /// Whole requests left in the bucket now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_after_secs: u64,
    /// Seconds to wait before retrying; 0 when allowed.
    pub retry_after_secs: u64,
    /// Seconds an empty bucket takes to fill (the policy window).
    pub window_secs: u64,
}

impl RateDecision {
    /// The `Retry-After` header value (delay-seconds), only when refused.
    pub fn retry_after(&self) -> Option<String> {
        (!self.allowed).then(|| self.retry_after_secs.max(1).to_string())
    }

    /// The IETF `RateLimit` header value (draft-ietf-httpapi-ratelimit-headers), e.g.
    /// `"default";r=4;t=2`.
    pub fn ratelimit_header(&self) -> String {
        format!(
            "\"default\";r={};t={}",
            self.remaining, self.reset_after_secs
        )
    }

    /// The IETF `RateLimit-Policy` header value, e.g. `"default";q=10;w=2`.
    pub fn ratelimit_policy_header(&self) -> String {
        format!("\"default\";q={};w={}", self.limit, self.window_secs.max(1))
    }
}

/// A request was refused by a rate limit: 429 TOO_MANY_REQUESTS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "request rate limit exceeded for {subject}: more than {limit} requests within {window_secs} s (the limit is on the rate of requests, not on how many are in flight); retry after {retry_after_secs} s"
)]
pub struct RateLimitExceeded {
    /// What was limited, e.g. `supplier demo-booking`.
    pub subject: String,
    /// The bucket size.
    pub limit: u32,
    /// Seconds an empty bucket takes to fill.
    pub window_secs: u64,
    /// Seconds to wait.
    pub retry_after_secs: u64,
    /// The refusing decision's `RateLimit` and `RateLimit-Policy` header values.
    pub ratelimit: String,
    pub ratelimit_policy: String,
}

impl RateLimitExceeded {
    /// Builds the error from a refusing decision.
    pub fn new(subject: impl Into<String>, decision: &RateDecision) -> Self {
        Self {
            subject: subject.into(),
            limit: decision.limit,
            window_secs: decision.window_secs.max(1),
            retry_after_secs: decision.retry_after_secs.max(1),
            ratelimit: decision.ratelimit_header(),
            ratelimit_policy: decision.ratelimit_policy_header(),
        }
    }
}

impl FhirError for RateLimitExceeded {
    fn status(&self) -> u16 {
        429
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::TooManyRequests
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Throttled
    }
    /// `Retry-After`, and the IETF draft's `RateLimit` and `RateLimit-Policy`.
    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("retry-after", self.retry_after_secs.to_string()),
            ("ratelimit", self.ratelimit.clone()),
            ("ratelimit-policy", self.ratelimit_policy.clone()),
        ]
    }
}

/// A token-bucket rate limiter keyed by string (e.g. `api:<client_id>`, `token:<client_id>`).
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token from `key`'s bucket if it has one.
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, StoreError>;
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// In-process rate limiter: one bucket per key, at most `max_keys` buckets.
///
/// When the map is full, buckets that have refilled completely are dropped first (they
/// carry no state worth keeping); if none has, the least recently used one goes.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    max_keys: usize,
}

impl MemoryRateLimiter {
    /// A limiter holding at most `max_keys` buckets.
    pub fn new(max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(100_000)
    }
}

fn take(tokens: &mut f64, limit: RateLimit) -> RateDecision {
    let burst = f64::from(limit.burst);
    let allowed = *tokens >= 1.0;
    if allowed {
        *tokens -= 1.0;
    }
    let retry_after_secs = if allowed {
        0
    } else {
        secs_ceil((1.0 - *tokens) / limit.per_second)
    };
    RateDecision {
        allowed,
        limit: limit.burst,
        remaining: tokens.floor().clamp(0.0, burst) as u32,
        reset_after_secs: secs_ceil((burst - *tokens) / limit.per_second),
        retry_after_secs,
        window_secs: limit.window_secs(),
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, StoreError> {
        if let Some(problem) = limit.problem() {
            return Err(StoreError::InvalidLimit(problem));
        }
        let now = Instant::now();
        let burst = f64::from(limit.burst);
        let mut buckets = self.buckets.lock().map_err(|_| StoreError::Poisoned)?;
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * limit.per_second < burst
            });
            if buckets.len() >= self.max_keys {
                let oldest = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.updated)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    buckets.remove(&oldest);
                }
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.updated = now;
        Ok(take(&mut bucket.tokens, limit))
    }
}

/// Refill-then-take in one atomic step, on Redis's clock so replicas agree.
/// Returns {allowed, remaining, reset_after_ms, retry_after_ms}.
const TOKEN_BUCKET_LUA: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) * 1000 / rate)
end
local full_ms = math.ceil((burst - tokens) * 1000 / rate)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], full_ms + 1000)
return {allowed, math.floor(tokens), full_ms, retry_ms}
";

/// The token bucket script, as redis-rs runs it: by hash, loaded on demand.
static TOKEN_BUCKET: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TOKEN_BUCKET_LUA));

/// Redis rate limiter: every gateway replica using the same Redis and prefix shares one
/// budget per key. Keys are `<prefix>rl:<key>` and expire once their bucket is full again.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisRateLimiter {
    /// A limiter on an existing connection manager; `prefix` namespaces its keys
    /// (e.g. `gp-gateway:`).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    /// Connects to `redis_url` (e.g. `redis://127.0.0.1:6379/0`).
    pub async fn connect(redis_url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        Ok(Self::new(crate::replay::connect(redis_url).await?, prefix))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, StoreError> {
        if let Some(problem) = limit.problem() {
            return Err(StoreError::InvalidLimit(problem));
        }
        let mut conn = self.conn.clone();
        // Sent by its SHA1 (EVALSHA); loaded into Redis on demand when Redis does not
        // know it yet (a new or restarted server), instead of the whole script each time.
        let (allowed, remaining, reset_ms, retry_ms): (i64, i64, i64, i64) = TOKEN_BUCKET
            .key(format!("{}rl:{key}", self.prefix))
            .arg(limit.per_second)
            .arg(limit.burst)
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::redis)?;
        let ms_to_secs = |ms: i64| u64::try_from(ms).unwrap_or(0).div_ceil(1000);
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: limit.burst,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after_secs: ms_to_secs(reset_ms),
            retry_after_secs: if allowed == 1 {
                0
            } else {
                ms_to_secs(retry_ms).max(1)
            },
            window_secs: limit.window_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_ietf_draft() {
        let mut tokens = 0.5;
        let limit = RateLimit {
            per_second: 2.0,
            burst: 4,
        };
        let d = take(&mut tokens, limit);
        assert!(!d.allowed);
        assert_eq!(d.retry_after().as_deref(), Some("1"));
        assert_eq!(d.ratelimit_header(), "\"default\";r=0;t=2");
        assert_eq!(d.ratelimit_policy_header(), "\"default\";q=4;w=2");
        let err = RateLimitExceeded::new("supplier demo-booking", &d);
        assert_eq!(err.status(), 429);
        assert_eq!(err.spine_code(), SpineCode::TooManyRequests);
        assert_eq!(err.issue_type(), IssueType::Throttled);
        assert_eq!(
            err.to_string(),
            "request rate limit exceeded for supplier demo-booking: more than 4 requests within 2 s (the limit is on the rate of requests, not on how many are in flight); retry after 1 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_refusal_then_recovery() {
        let limiter = MemoryRateLimiter::new(10);
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        for left in [2, 1, 0] {
            let d = limiter.check("api:a", limit).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let refused = limiter.check("api:a", limit).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        // Another key has its own bucket.
        assert!(limiter.check("api:b", limit).await.unwrap().allowed);
        // 0.5 s at 2/s refills exactly one token.
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert!(limiter.check("api:a", limit).await.unwrap().allowed);
        assert!(!limiter.check("api:a", limit).await.unwrap().allowed);
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        let d = limiter.check("api:a", limit).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 2, "bucket refills only up to burst");
    }

    #[tokio::test(start_paused = true)]
    async fn map_stays_bounded() {
        let limiter = MemoryRateLimiter::new(3);
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        for i in 0..10 {
            limiter.check(&format!("k{i}"), limit).await.unwrap();
        }
        assert!(limiter.len() <= 3);
    }

    #[tokio::test]
    async fn unusable_limit_is_an_error() {
        let limiter = MemoryRateLimiter::default();
        let bad = RateLimit {
            per_second: 0.0,
            burst: 1,
        };
        assert!(matches!(
            limiter.check("k", bad).await,
            Err(StoreError::InvalidLimit(_))
        ));
    }
}
