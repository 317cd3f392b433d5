//! Cache invalidation across replicas. A write drops the writing replica's cached copy
//! of the patient at once; with `[state] backend = "redis"` it also publishes the
//! patient on a Redis channel every replica subscribes to, so their copies go within
//! milliseconds instead of lasting until the cache TTL. When Redis is unreachable the
//! TTL still bounds how long another replica can serve a stale copy.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gp_fhir::{NhsNumber, OdsCode};

use crate::cache::RecordCache;

/// Publishes invalidations; `None` inside when the state is not shared.
pub struct Invalidator {
    channel: String,
    publisher: Option<redis::aio::ConnectionManager>,
}

impl Invalidator {
    /// One replica: nothing to tell anyone.
    pub fn local() -> Self {
        Self {
            channel: String::new(),
            publisher: None,
        }
    }

    /// Shares invalidations through Redis at `url` on channel `{prefix}invalidate`, and
    /// starts the subscriber that applies other replicas' invalidations to `cache`.
    pub async fn redis(url: &str, prefix: &str, cache: Arc<RecordCache>) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        let publisher = redis::aio::ConnectionManager::new(client.clone())
            .await
            .map_err(|e| format!("cannot connect to Redis for cache invalidation: {e}"))?;
        let channel = format!("{prefix}invalidate");
        tokio::spawn(subscribe(client, channel.clone(), cache));
        Ok(Self {
            channel,
            publisher: Some(publisher),
        })
    }

    /// Tells the other replicas to forget `nhs` at `practice`.
    pub async fn publish(&self, practice: &OdsCode, nhs: NhsNumber) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let mut conn = publisher.clone();
        let message = format!("{}|{nhs}", practice.as_str());
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(message)
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cache invalidation not published: other replicas keep their copy until the cache TTL");
        }
    }
}

/// Applies invalidations published by any replica, reconnecting after a failure.
async fn subscribe(client: redis::Client, channel: String, cache: Arc<RecordCache>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "cannot subscribe to cache invalidations");
                } else {
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if let Some((ods, nhs)) = payload.split_once('|')
                            && let (Ok(ods), Ok(nhs)) = (OdsCode::parse(ods), NhsNumber::parse(nhs))
                        {
                            cache.invalidate(&ods, nhs).await;
                        }
                    }
                    tracing::warn!("cache invalidation subscription ended; reconnecting");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis for cache invalidations; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
