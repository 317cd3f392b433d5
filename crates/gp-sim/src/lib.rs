//! Reference simulators of the GP systems' native APIs (EMIS Web XML, PDS FHIR JSON)
//! over a deterministic synthetic population. Knows native wire formats, never FHIR
//! resources: embeddable in tests and the sandbox, and runnable as the `gp-sim` binary.
//!
//! The rules a GP system keeps for itself are the simulators' own, written apart from the
//! gateway's (no dependency on `gp-fhir`): the UK clock ([`clock`]), days in a month
//! ([`date::days_in_month`]), the NHS number check ([`nhs`]) and the main-language pick
//! list ([`languages`]). Where the gateway must agree, the e2e crate compares the two
//! sides (`tests/tests/independent_rules.rs`), so a wrong rule cannot cancel out.
//!
//! The simulator kit is public: a simulator of another native API implements
//! [`Simulator`] and runs with [`serve`], getting the shared fault injection ([`Fault`],
//! [`SimHandle::set_fault`]) and request counting. [`start`] runs any of the systems
//! here; [`Population::systems`] lists a population's systems, so callers iterate them
//! instead of naming four.

pub mod appointments;
pub mod changes;
pub mod clock;
pub mod concepts;
pub mod date;
pub mod documents;
pub mod emis;
pub mod languages;
pub mod microtest;
pub mod model;
pub mod nhs;
pub mod pds;
pub mod population;
mod rng;
pub mod server;
pub mod store;
pub mod tpp;
pub mod vision;
mod xml;

pub use date::{Precision, SimDate};
pub use emis::start_emis;
pub use microtest::start_microtest;
pub use model::*;
pub use pds::start_pds;
pub use population::{
    DEMO_NHS_NUMBERS, DISSENT_INDEX, Population, PopulationSpec, SENSITIVE_INDEX,
};
pub use server::{Fault, MAX_WRITE_BODY, Reply, Routed, SimHandle, Simulator, serve};
pub use store::SimStore;
pub use tpp::start_tpp;
pub use vision::start_vision;

/// Starts the simulator of `system` over `store` on `listener`, so callers can iterate
/// [`SystemKind::ALL`] (or a population's practices) instead of naming each system.
pub async fn start(
    system: SystemKind,
    store: SimStore,
    listener: tokio::net::TcpListener,
) -> std::io::Result<SimHandle> {
    match system {
        SystemKind::Emis => start_emis(store, listener).await,
        SystemKind::Tpp => start_tpp(store, listener).await,
        SystemKind::Vision => start_vision(store, listener).await,
        SystemKind::Microtest => start_microtest(store, listener).await,
    }
}
