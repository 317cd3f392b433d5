//! gp-gateway: the server. It owns routing, the request pipeline, the record
//! locator, caches, config loading and the sandbox; vendor formats live in the
//! adapter crates, and auth rules in gp-auth.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cache;
pub mod capability;
pub mod config;
pub mod connections;
pub mod context;
pub mod error;
pub mod fhir;
pub mod forwarded;
pub mod head;
pub mod incoming;
pub mod invalidate;
pub mod locator;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod pipeline;
pub mod redact;
pub mod release;
pub mod resilience;
pub mod respond;
pub mod routes;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod structured;
pub mod telemetry;
pub mod writes;
