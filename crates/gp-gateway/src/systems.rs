//! The GP systems this binary is built with: the one place a system is registered.
//!
//! A vendor's system joins by one line here (and the crate in Cargo.toml), or without
//! touching this crate at all by handing its own registry to [`crate::cli::main`] in a
//! binary of its own, e.g. `builtin().with(Registration::of::<AcmeAdapter>())`.

use gp_adapter::{Registration, Registry};

/// EMIS Web, TPP SystmOne, Vision and Microtest Evolution.
pub fn builtin() -> Registry {
    Registry::new()
        .with(Registration::of::<gp_adapter_emis::EmisAdapter>())
        .with(Registration::of::<gp_adapter_tpp::TppAdapter>())
        .with(Registration::of::<gp_adapter_vision::VisionAdapter>())
        .with(Registration::of::<gp_adapter_microtest::MicrotestAdapter>())
}
