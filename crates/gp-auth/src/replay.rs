//! `jti` replay guard: remembers each client assertion until it expires.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::{StoreError, unix_now};

/// Remembers keys until a Unix time; the token service uses one key per client and `jti`.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `key` until `expires_at_unix`; `true` if it was not already recorded.
    ///
    /// An error means "unknown": the caller must refuse (fail closed).
    async fn first_use(&self, key: &str, expires_at_unix: u64) -> Result<bool, StoreError>;
}

/// In-process replay store for a single replica. Expired entries are purged as it fills;
/// when `max_entries` unexpired entries are held it refuses (fails closed).
#[derive(Debug)]
pub struct MemoryReplayStore {
    seen: Mutex<HashMap<String, u64>>,
    max_entries: usize,
}

impl MemoryReplayStore {
    /// A store holding at most `max_entries` unexpired keys.
    pub fn new(max_entries: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// Keys currently held (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn first_use(&self, key: &str, expires_at_unix: u64) -> Result<bool, StoreError> {
        let now = unix_now();
        let mut seen = self.seen.lock().map_err(|_| StoreError::Poisoned)?;
        if let Some(exp) = seen.get(key)
            && *exp >= now
        {
            return Ok(false);
        }
        if seen.len() >= self.max_entries {
            seen.retain(|_, exp| *exp >= now);
            if seen.len() >= self.max_entries {
                return Err(StoreError::Full(self.max_entries));
            }
        }
        seen.insert(key.to_owned(), expires_at_unix);
        Ok(true)
    }
}

/// Redis replay store shared by every replica: `SET <prefix>jti:<key> 1 NX EX <ttl>`.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisReplayStore {
    /// A store on an existing connection manager; `prefix` namespaces its keys.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    /// Connects to `redis_url` (e.g. `redis://127.0.0.1:6379/0`).
    pub async fn connect(redis_url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        Ok(Self::new(connect(redis_url).await?, prefix))
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn first_use(&self, key: &str, expires_at_unix: u64) -> Result<bool, StoreError> {
        // Relative TTL rather than EXAT so replicas' clock skew cannot drop a key early;
        // at least 1 s so an assertion in its leeway window is still remembered.
        let ttl = expires_at_unix.saturating_sub(unix_now()).max(1);
        let mut conn = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(format!("{}jti:{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis)?;
        Ok(reply.is_some())
    }
}

/// Opens a Redis connection manager (reconnects by itself after failures). Timeouts are
/// short: a slow Redis must turn into a prompt refusal, not a stalled request.
pub(crate) async fn connect(redis_url: &str) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(redis_url).map_err(StoreError::redis)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_response_timeout(Some(std::time::Duration::from_secs(1)))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(StoreError::redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_use_is_refused_until_expiry() {
        let store = MemoryReplayStore::new(10);
        let exp = unix_now() + 60;
        assert!(store.first_use("c:j1", exp).await.unwrap());
        assert!(!store.first_use("c:j1", exp).await.unwrap());
        assert!(store.first_use("c:j2", exp).await.unwrap());
        // An entry whose assertion has expired no longer blocks (the assertion would be
        // refused as expired anyway).
        assert!(store.first_use("c:old", unix_now() - 10).await.unwrap());
        assert!(store.first_use("c:old", exp).await.unwrap());
    }

    #[tokio::test]
    async fn purges_expired_entries_and_fails_closed_when_full() {
        let store = MemoryReplayStore::new(2);
        assert!(store.first_use("a", unix_now() - 5).await.unwrap());
        assert!(store.first_use("b", unix_now() + 60).await.unwrap());
        // Full: "a" has expired and is purged to make room.
        assert!(store.first_use("c", unix_now() + 60).await.unwrap());
        assert_eq!(store.len(), 2);
        assert!(matches!(
            store.first_use("d", unix_now() + 60).await,
            Err(StoreError::Full(2))
        ));
    }
}
