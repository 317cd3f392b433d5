//! Change notifications: topic-based subscriptions (FHIR R4 Subscriptions Backport IG),
//! delivered to suppliers' HTTPS endpoints as signed `rest-hook` notifications.
//!
//! - **Events** come from two places, both into the outbox in the audit database
//!   (`gp_audit::notify`): a successful write through the gateway (a reading, a document,
//!   a booking, an amend or cancel, new contact details) records its change in the
//!   request's facts, and the pipeline commits it with the request's audit row
//!   ([`events_of`]); changes made in the GP system itself are found by the poller
//!   (`crate::delivery::poller`),
//!   which reads each practice's change log through its adapter
//!   (`Adapter::changes_since`).
//! - **Subscriptions** (`crate::subscriptions`) name a [`topics`] canonical, filters, an endpoint and a
//!   payload; they belong to the supplier that made them.
//! - **Delivery** (`crate::delivery::worker`) runs off the request path: each replica leases
//!   subscriptions from the store, and for each delivers its notifications one at a time,
//!   in order, at least once, retrying with exponential backoff; every delivery is signed
//!   ([`sign`], Standard Webhooks `v1a`) and decided at delivery time
//!   (`crate::subscriptions::decide`):
//!   what the supplier may learn *now*, not when it subscribed.

pub mod config;
pub mod deliver;
pub mod endpoint;
pub mod payload;
pub mod receiver;
pub mod sign;
pub mod subscription;
pub mod topics;

use std::sync::Arc;

use gp_audit::{AuditRecord, NewEvent, NotificationStore};

pub use config::NotificationsConfig;

use crate::context::Facts;

/// The running notification service of one replica.
pub struct Notifier {
    pub config: NotificationsConfig,
    pub store: Arc<dyn NotificationStore>,
    pub signer: sign::Signer,
    pub endpoints: endpoint::EndpointPolicy,
    /// This replica's name as a lease owner (unique per process).
    pub owner: String,
    /// Woken when this replica commits events, so deliveries start at once.
    pub wake: tokio::sync::Notify,
    /// Where the public FHIR base is (`Subscription` references, focus URLs).
    pub base_url: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Why notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifySetupError {
    #[error("notifications: the audit store ({0}) keeps no notification outbox")]
    NoStore(&'static str),
    #[error("notifications.signing_key: {0}")]
    Key(String),
    #[error("notifications.ca_file: {0}")]
    Roots(String),
}

impl Notifier {
    /// Sets notifications up over the audit store's outbox, signing with the PKCS#8 PEM
    /// Ed25519 key `key_pem`.
    pub fn new(
        config: NotificationsConfig,
        audit: &dyn gp_audit::AuditStore,
        key_pem: &[u8],
        base_url: &str,
        dir: &std::path::Path,
    ) -> Result<Self, NotifySetupError> {
        let store = audit
            .notifications()
            .ok_or(NotifySetupError::NoStore(audit.backend()))?;
        let signer =
            sign::Signer::from_pem(&config.signing_kid, key_pem).map_err(NotifySetupError::Key)?;
        let endpoints =
            endpoint::EndpointPolicy::new(&config, dir).map_err(NotifySetupError::Roots)?;
        Ok(Self {
            owner: format!("{}-{}", crate::audit::replica_name(), uuid::Uuid::new_v4()),
            config,
            store,
            signer,
            endpoints,
            wake: tokio::sync::Notify::new(),
            base_url: base_url.to_owned(),
        })
    }
}

/// The outbox events a request's answer carries: the changes its handling made to a
/// patient's record, when the answer is a success (a refusal, or a success withheld for
/// want of its audit row, announces nothing: the store drops events of rows it does not
/// commit as given).
pub fn events_of(facts: &Facts, record: &AuditRecord, status: u16) -> Vec<NewEvent> {
    if !(200..300).contains(&status) || facts.changes.is_empty() {
        return Vec::new();
    }
    let (Some(patient), Some(practice)) = (&facts.patient, &facts.practice) else {
        tracing::warn!(
            changes = facts.changes.len(),
            "a write changed a record without naming its patient and practice: no notification"
        );
        return Vec::new();
    };
    facts
        .changes
        .iter()
        .map(|(kind, resource_id)| NewEvent {
            id: crate::audit::new_row_id(),
            kind: kind.code().to_owned(),
            patient: patient.clone(),
            practice: practice.clone(),
            resource_type: kind.resource_type().to_owned(),
            resource_id: resource_id.clone(),
            occurred: record.recorded.clone(),
            source: "gateway".to_owned(),
            supplier: record.supplier.clone(),
        })
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gp_adapter::ChangeKind;

    fn record() -> AuditRecord {
        AuditRecord {
            id: "row".into(),
            recorded: "2026-12-07T10:00:00.000Z".into(),
            request_id: "req".into(),
            request_id_supplied: Some(true),
            supplier: Some("demo-monitoring".into()),
            token_id: None,
            patient: Some("9000000009".into()),
            practice: Some("A12345".into()),
            interaction: "create".into(),
            resource_type: Some("Observation".into()),
            status: 201,
            outcome_code: None,
            replica: "r".into(),
        }
    }

    #[test]
    fn only_a_success_that_changed_a_record_carries_events() {
        let facts = Facts {
            patient: Some("9000000009".into()),
            practice: Some("A12345".into()),
            changes: vec![(ChangeKind::ReadingRecorded, Some("obs-1".into()))],
            ..Facts::default()
        };
        let events = events_of(&facts, &record(), 201);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (
                e.kind.as_str(),
                e.resource_type.as_str(),
                e.resource_id.as_deref(),
                e.source.as_str(),
                e.supplier.as_deref()
            ),
            (
                "reading-recorded",
                "Observation",
                Some("obs-1"),
                "gateway",
                Some("demo-monitoring")
            )
        );
        assert_eq!(
            (e.patient.as_str(), e.practice.as_str()),
            ("9000000009", "A12345")
        );
        for refused in [199, 300, 422, 503] {
            assert!(
                events_of(&facts, &record(), refused).is_empty(),
                "{refused}"
            );
        }
        let unchanged = Facts {
            changes: Vec::new(),
            ..facts.clone()
        };
        assert!(events_of(&unchanged, &record(), 200).is_empty());
        let nameless = Facts {
            practice: None,
            ..facts
        };
        assert!(events_of(&nameless, &record(), 201).is_empty());
    }
}
