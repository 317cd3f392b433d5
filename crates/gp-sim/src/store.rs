//! The shared, mutable population the simulators serve.

use std::sync::{Arc, PoisonError, RwLock};

use crate::model::{Practice, SimPatient};
use crate::population::Population;

/// The population behind a lock, cheap to clone. Simulators read it per request (the
/// lock is never held across an `.await`); tests and later write paths update it.
#[derive(Debug, Clone)]
pub struct SimStore {
    inner: Arc<RwLock<Population>>,
}

impl SimStore {
    /// Wraps a population.
    pub fn new(population: Population) -> Self {
        Self {
            inner: Arc::new(RwLock::new(population)),
        }
    }

    /// Runs `f` with shared access. A panic while writing cannot leave a half-built
    /// population worth refusing to serve, so a poisoned lock is simply re-entered.
    pub fn read<R>(&self, f: impl FnOnce(&Population) -> R) -> R {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    /// Runs `f` with exclusive access.
    pub fn write<R>(&self, f: impl FnOnce(&mut Population) -> R) -> R {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A copy of the practice with ODS code `ods`.
    pub fn practice(&self, ods: &str) -> Option<Practice> {
        self.read(|p| p.practice(ods).cloned())
    }

    /// A copy of the practice and the patient `nhs` registered there.
    pub fn patient(&self, ods: &str, nhs: &str) -> Option<(Practice, SimPatient)> {
        self.read(|p| Some((p.practice(ods)?.clone(), p.patient(ods, nhs)?.clone())))
    }

    /// A copy of the patient `nhs`, wherever registered.
    pub fn patient_by_nhs(&self, nhs: &str) -> Option<SimPatient> {
        self.read(|p| p.patient_by_nhs(nhs).cloned())
    }
}
