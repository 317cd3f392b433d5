//! The fault matrix (`ADP-FLT-*`): while the GP system misbehaves, every adapter call
//! fails with the typed error the gateway renders, naming the system, and never answers
//! data.
//!
//! Faults are injected through [`FaultTarget`], so the matrix runs against anything that
//! can misbehave on demand: a gp-sim simulator (see [`super::sim`]) or a vendor's own
//! stub of its system.

use gp_fhir::{NhsNumber, OdsCode};

use super::{HarnessReport, both_fail, ctx};
use crate::{Adapter, AdapterError, CreateObservationRequest};

/// A way for the GP system (or a stub of it) to misbehave on its record requests.
/// Health probes must keep answering, so `ready()` is not what fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The native error document with this HTTP status.
    Status(u16),
    /// The connection closes without an answer.
    Reset,
    /// `200` with bytes that are not the native format at all.
    Garbage,
    /// `200` with the normal answer cut in half.
    Truncated,
    /// `200` with invalid UTF-8 inside a value.
    MisEncoded,
    /// `200` with the patient's NHS number left out.
    MissingNhsNumber,
    /// The request is accepted and never answered.
    Hang,
}

/// Something the fault matrix can switch faults on and off in: implement it for a stub
/// of your GP system to run [`check_fault_matrix`] without gp-sim.
pub trait FaultTarget: Send + Sync {
    /// Every following record request misbehaves with `fault`, until changed.
    fn set(&self, fault: Fault);
    /// Answer normally again.
    fn clear(&self);
}

/// The typed error a backend fault must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedFailure {
    Unavailable,
    Timeout,
    InvalidNativeData,
}

impl ExpectedFailure {
    fn matches(self, e: &AdapterError, system: crate::GpSystem) -> bool {
        match (self, e) {
            (Self::Unavailable, AdapterError::Unavailable { system: s, .. })
            | (Self::Timeout, AdapterError::Timeout { system: s, .. })
            | (Self::InvalidNativeData, AdapterError::InvalidNativeData { system: s, .. }) => {
                *s == system
            }
            _ => false,
        }
    }
}

/// The read faults and what each must become; [`Fault::Hang`] is checked apart, with a
/// short request timeout.
pub const READ_FAULTS: [(Fault, ExpectedFailure); 7] = [
    (Fault::Status(500), ExpectedFailure::Unavailable),
    (Fault::Status(503), ExpectedFailure::Unavailable),
    (Fault::Reset, ExpectedFailure::Unavailable),
    (Fault::Garbage, ExpectedFailure::InvalidNativeData),
    (Fault::Truncated, ExpectedFailure::InvalidNativeData),
    (Fault::MisEncoded, ExpectedFailure::InvalidNativeData),
    (Fault::MissingNhsNumber, ExpectedFailure::InvalidNativeData),
];

/// The write faults: a GP system that fails or vanishes while recording is
/// `Unavailable`, whatever it may have recorded (the supplier retries with its key).
pub const WRITE_FAULTS: [(Fault, ExpectedFailure); 3] = [
    (Fault::Status(500), ExpectedFailure::Unavailable),
    (Fault::Status(503), ExpectedFailure::Unavailable),
    (Fault::Reset, ExpectedFailure::Unavailable),
];

/// Checks that, while the backend misbehaves (the caller has switched its fault
/// injection on), both `read_patient` and a `search` for `patient` fail with `expected`,
/// naming the adapter's system, and never answer data.
///
/// ```ignore
/// sim.set(Fault::Status(500));
/// check_backend_failure(&adapter, &patient, ExpectedFailure::Unavailable).await.assert_passed();
/// ```
pub async fn check_backend_failure(
    adapter: &dyn Adapter,
    patient: &(NhsNumber, OdsCode),
    expected: ExpectedFailure,
) -> HarnessReport {
    let system = adapter.system();
    let mut report = HarnessReport::default();
    let wanted = format!("{expected:?} from {system}");
    let (read_fail, search_fail) =
        both_fail(adapter, patient, &wanted, |e| expected.matches(e, system)).await;
    report.add(
        "ADP-FLT-01",
        "a backend fault fails read_patient with the expected typed error",
        read_fail,
    );
    report.add(
        "ADP-FLT-02",
        "a backend fault fails search with the expected typed error",
        search_fail,
    );
    report
}

/// Checks that, while the backend misbehaves, `create_observation` fails with
/// `expected` naming the adapter's system. Skipped for an adapter that does not write.
pub async fn check_write_failure(
    adapter: &dyn Adapter,
    patient: &(NhsNumber, OdsCode),
    expected: ExpectedFailure,
    key: &str,
) -> HarnessReport {
    let system = adapter.system();
    let mut report = HarnessReport::default();
    let req = CreateObservationRequest {
        nhs_number: patient.0,
        practice: patient.1.clone(),
        observation: super::body_weight(key),
        context: ctx(),
    };
    const ID: &str = "ADP-FLT-03";
    const WHAT: &str = "a backend fault fails create_observation with the expected typed error";
    match adapter.create_observation(&req).await {
        Err(AdapterError::NotSupported { .. }) => {
            report.skip(ID, WHAT, "the adapter does not record observations");
        }
        Err(e) if expected.matches(&e, system) => report.add(ID, WHAT, vec![]),
        Err(e) => report.add(
            ID,
            WHAT,
            vec![format!(
                "create_observation gave {e:?}, expected {expected:?} from {system}"
            )],
        ),
        Ok(_) => report.add(
            ID,
            WHAT,
            vec![format!(
                "create_observation answered success, expected {expected:?}"
            )],
        ),
    }
    report
}

/// While the backend answers invalid UTF-8, the read's error says so (`not valid
/// UTF-8`), so an operator can tell an encoding fault from a format change.
async fn check_mis_encoding_named(
    adapter: &dyn Adapter,
    patient: &(NhsNumber, OdsCode),
) -> HarnessReport {
    let mut report = HarnessReport::default();
    let read = adapter
        .read_patient(&crate::PatientRequest {
            nhs_number: patient.0,
            practice: patient.1.clone(),
            context: ctx(),
        })
        .await;
    let failures = match read {
        Err(AdapterError::InvalidNativeData { detail, .. })
            if detail.contains("not valid UTF-8") =>
        {
            vec![]
        }
        other => vec![format!(
            "read_patient of a mis-encoded answer gave {other:?}, not InvalidNativeData saying \"not valid UTF-8\""
        )],
    };
    report.add(
        "ADP-FLT-04",
        "an answer with invalid UTF-8 fails read_patient as InvalidNativeData saying \"not valid UTF-8\"",
        failures,
    );
    report
}

/// Runs the whole matrix against `adapter`, switching faults in `target`: every read
/// fault on a read and a search, every write fault on a create, then a hang against
/// `quick`, an adapter for the same backend with a short request timeout. Clears the
/// fault before returning. Each check id is reported once per fault, the fault named.
pub async fn check_fault_matrix(
    adapter: &dyn Adapter,
    quick: &dyn Adapter,
    target: &dyn FaultTarget,
    patient: &(NhsNumber, OdsCode),
) -> HarnessReport {
    let mut report = HarnessReport::default();
    for (fault, expected) in READ_FAULTS {
        target.set(fault);
        let one = check_backend_failure(adapter, patient, expected).await;
        report.extend_naming(&format!("{fault:?}"), one);
    }
    target.set(Fault::MisEncoded);
    report.extend(check_mis_encoding_named(adapter, patient).await);
    for (i, (fault, expected)) in WRITE_FAULTS.into_iter().enumerate() {
        target.set(fault);
        let key = format!("harness-fault-{}-{i}", adapter.system().id());
        let one = check_write_failure(adapter, patient, expected, &key).await;
        report.extend_naming(&format!("{fault:?}"), one);
    }
    target.set(Fault::Hang);
    let one = check_backend_failure(quick, patient, ExpectedFailure::Timeout).await;
    report.extend_naming("Hang", one);
    let key = format!("harness-fault-{}-hang", adapter.system().id());
    let one = check_write_failure(quick, patient, ExpectedFailure::Timeout, &key).await;
    report.extend_naming("Hang", one);
    target.clear();
    report
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::{Created, GpSystem, PatientRecord, PatientRequest, SearchPage, SearchRequest};

    /// A vendor's own stub: no gp-sim, just a fault slot its fake adapter obeys.
    #[derive(Default, Clone)]
    struct Stub(Arc<Mutex<Option<Fault>>>);

    impl FaultTarget for Stub {
        fn set(&self, fault: Fault) {
            *self.0.lock().unwrap() = Some(fault);
        }
        fn clear(&self) {
            *self.0.lock().unwrap() = None;
        }
    }

    struct Fake {
        stub: Stub,
        /// Answers garbage as Unavailable: the matrix must catch it.
        wrong_on_garbage: bool,
    }

    impl Fake {
        fn fail(&self) -> AdapterError {
            let system = crate::test_systems::TPP;
            let fault = *self.stub.0.lock().unwrap();
            let detail = match fault {
                Some(Fault::MisEncoded) => String::from("byte 3 is not valid UTF-8"),
                _ => String::from("stub"),
            };
            match fault {
                Some(Fault::Hang) => AdapterError::Timeout {
                    system,
                    after_ms: 200,
                },
                Some(Fault::Garbage) if self.wrong_on_garbage => {
                    AdapterError::Unavailable { system, detail }
                }
                Some(
                    Fault::Garbage | Fault::Truncated | Fault::MisEncoded | Fault::MissingNhsNumber,
                ) => AdapterError::InvalidNativeData { system, detail },
                _ => AdapterError::Unavailable { system, detail },
            }
        }
    }

    #[async_trait]
    impl Adapter for Fake {
        fn system(&self) -> GpSystem {
            crate::test_systems::TPP
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(self.fail())
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(self.fail())
        }
        async fn create_observation(
            &self,
            _: &CreateObservationRequest,
        ) -> Result<Created, AdapterError> {
            Err(self.fail())
        }
    }

    fn patient() -> (NhsNumber, OdsCode) {
        (
            NhsNumber::parse("9690937278").unwrap(),
            OdsCode::parse("B82617").unwrap(),
        )
    }

    #[tokio::test]
    async fn the_matrix_runs_against_a_vendor_stub_and_names_the_fault_that_failed() {
        let stub = Stub::default();
        let good = Fake {
            stub: stub.clone(),
            wrong_on_garbage: false,
        };
        let report = check_fault_matrix(&good, &good, &stub, &patient()).await;
        assert!(report.passed(), "{report}");
        // 7 read faults and the hang on a read and a search; the mis-encoding named; 3 write
        // faults and the hang on a create.
        assert_eq!(report.checks.len(), 8 * 2 + 1 + 4);
        assert_eq!(*stub.0.lock().unwrap(), None, "the fault is cleared");

        let wrong = Fake {
            stub: stub.clone(),
            wrong_on_garbage: true,
        };
        let report = check_fault_matrix(&wrong, &wrong, &stub, &patient()).await;
        let failed: Vec<&str> = report.failures().map(|c| c.description.as_str()).collect();
        assert_eq!(
            failed,
            [
                "a backend fault fails read_patient with the expected typed error [Garbage]",
                "a backend fault fails search with the expected typed error [Garbage]",
            ]
        );
    }
}
