//! Secrets read from files (mounted Kubernetes secrets): a leaf that the config tree and
//! the stores it builds both use. The reader itself is gp-audit's, the lowest crate that
//! reads one (its PostgreSQL password).

pub use gp_audit::read_secret;
