//! The background half of notifications: the delivery worker and the change poller,
//! started beside the main listener (`server::start`), off the request path. They sit
//! above the handlers: a `full-resource` payload is read through them
//! (`crate::handlers::read_changed`), and what a supplier may learn is decided by
//! `crate::subscriptions::decide`.

pub mod poller;
pub mod worker;
