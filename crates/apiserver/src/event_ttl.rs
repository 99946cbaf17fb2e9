//! Events expire `--event-ttl` after their last write (upstream's default
//! 1 h), so a busy cluster's store does not grow without end. Upstream
//! gives each Event an etcd lease; SQLite has none, so a sweep does it for
//! both stores: every half TTL (a minute at most) each Event whose last
//! write is older than the TTL is deleted, at the revision read, so one
//! written again meanwhile stays. The last write is what the server itself
//! stamped: the latest `managedFields` time, else `creationTimestamp`.
//! Expiry, like a lease's, ignores finalizers.

use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::handler::Api;

/// Events read per page while sweeping.
const PAGE: usize = 500;

/// What the sweep reads of an Event.
#[derive(Deserialize)]
struct Stamps {
    #[serde(default)]
    metadata: Meta,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    creation_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    managed_fields: Vec<Managed>,
}

#[derive(Deserialize)]
struct Managed {
    time: Option<DateTime<Utc>>,
}

/// When the server last wrote the Event, as far as it stamped it.
fn last_write(event: &[u8]) -> Option<DateTime<Utc>> {
    let stamps: Stamps = serde_json::from_slice(event).ok()?;
    stamps.metadata.managed_fields.iter().filter_map(|m| m.time).max().or(stamps.metadata.creation_timestamp)
}

/// Sweeps until the server is gone.
pub async fn expire(api: Weak<Api>, ttl: Duration) {
    let def = skiff_api::resources::storage_version("", "events").expect("Events are served");
    let prefix = def.key_prefix();
    let every = (ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    loop {
        tokio::time::sleep(every).await;
        let Some(api) = api.upgrade() else { return };
        let mut options = skiff_store::ListOptions { limit: Some(PAGE), ..Default::default() };
        let mut expired = 0;
        loop {
            let page = match api.registry.store.list(&prefix, &options).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!("expiring events: {e}");
                    break;
                }
            };
            let now = Utc::now();
            for kv in &page.items {
                if last_write(&kv.value).is_some_and(|t| now - t > ttl) && api.registry.store.delete(&kv.key, Some(kv.mod_revision)).await.is_ok() {
                    expired += 1;
                }
            }
            match page.continue_token {
                Some(token) => options = skiff_store::ListOptions { limit: Some(PAGE), continue_token: Some(token), ..Default::default() },
                None => break,
            }
        }
        if expired > 0 {
            tracing::debug!(expired, "events expired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_is_the_latest_server_stamp() {
        let event = br#"{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","managedFields":[{"time":"2026-01-01T00:05:00Z"},{"time":"2026-01-01T00:02:00Z"},{}]},"lastTimestamp":"2030-01-01T00:00:00Z"}"#;
        assert_eq!(last_write(event), Some("2026-01-01T00:05:00Z".parse().unwrap()), "the client's own timestamps are not the server's");
        assert_eq!(last_write(br#"{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z"}}"#), Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(last_write(b"not json"), None);
    }
}
