//! gp-gateway: the server. It owns routing, the request pipeline, the record
//! locator, caches, config loading and the sandbox; vendor formats live in the
//! adapter crates, and auth rules in gp-auth.
//!
//! Modules depend on each other one way (`tests/module_layers.rs` fails on a circle):
//! - transport: [`server`] (listeners, TLS, connection limits) calls the pipeline;
//! - [`pipeline`]: the ordered steps every request crosses, in one file;
//! - interaction handlers: [`handlers`] (reads, searches, operations), [`writes`],
//!   [`structured`], [`batch`] (its Bundles; the pipeline serves each entry), with
//!   write-body validation in [`write_body`], and a Patient's change in any form
//!   clients send in [`patient_change`] ([`patch`], [`fhirpath_patch`]), and what a
//!   search's `_include` / `_revinclude` bring in, in [`include`];
//! - [`release`]: the release policy (pairing, restricted, dissent, confidential);
//! - leaves: [`routes`] (the one route table: what is served, where, to whom),
//!   [`context`] (request ids, client certificate), [`head`] (request-head checks),
//!   [`secrets`], [`respond`], [`error`], [`redact`];
//! - services the layers above use: [`app`], [`locator`], [`cache`], [`resilience`],
//!   [`audit`], [`auth`], [`access`], [`metrics`], [`telemetry`].

pub mod access;
pub mod app;
pub mod appointments;
/// The audit trail (the gp-audit crate), under the name the gateway has always used.
pub use gp_audit as audit;
pub mod auth;
pub mod batch;
pub mod body;
pub mod cache;
pub mod capability;
pub mod cli;
pub mod config;
pub mod connections;
pub mod context;
pub mod delivery;
pub mod document_content;
pub mod documents;
pub mod entries;
pub mod error;
pub mod fhirpath_patch;
pub mod forwarded;
pub mod handlers;
pub mod head;
pub mod include;
pub mod inline_data;
pub mod invalidate;
pub mod locator;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod patch;
pub mod patient_change;
pub mod people;
pub mod pipeline;
pub mod redact;
pub mod release;
pub(crate) mod remembered;
pub mod resilience;
pub mod respond;
pub mod routes;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod signals;
pub mod structured;
pub mod subscriptions;
pub mod systems;
pub mod telemetry;
pub mod terminology;
pub mod vitals;
pub mod write_body;
pub mod writes;
