//! The people a record names: every `Practitioner/{id}` an adapter gives (usual GP,
//! authors, performers, recorders, participants) must be readable with
//! [`Adapter::read_practitioner`] at the patient's practice, and nobody else.

use std::collections::BTreeSet;

use gp_fhir::OdsCode;
use gp_fhir::model::{Resource, UK_CORE_PROFILE_BASE};

use super::{HarnessReport, PatientData, ctx};
use crate::{Adapter, AdapterError, PractitionerRequest};

const READS: &str = "read_practitioner answers every Practitioner the records refer to, as referred to (UK Core, named), and the usual GP as read_patient maps them";
const NOBODY: &str = "read_practitioner answers None for an id the practice does not hold (unknown, not an id, another practice's person)";

/// Every practice and Practitioner id the fixture's records refer to.
fn referred(data: &[PatientData]) -> BTreeSet<(OdsCode, String)> {
    let mut out = BTreeSet::new();
    for p in data {
        let patient = Resource::Patient(p.record.patient.clone());
        let entries = p.clinical.iter().flat_map(|(_, r)| r);
        for r in std::iter::once(&patient).chain(entries) {
            for reference in r.references() {
                if let Some(id) = reference.strip_prefix("Practitioner/") {
                    out.insert((p.ods.clone(), id.to_owned()));
                }
            }
        }
    }
    out
}

async fn read(
    adapter: &dyn Adapter,
    ods: &OdsCode,
    id: &str,
) -> Result<Option<gp_fhir::model::Practitioner>, AdapterError> {
    adapter
        .read_practitioner(&PractitionerRequest {
            practice: ods.clone(),
            id: id.to_owned(),
            context: ctx(),
        })
        .await
}

/// ADP-PRA-01 and ADP-PRA-02; skipped for an adapter that does not read staff.
pub(super) async fn check_practitioners(
    report: &mut HarnessReport,
    adapter: &dyn Adapter,
    data: &[PatientData],
) {
    let people = referred(data);
    let Some((first_ods, first_id)) = people.iter().next().cloned() else {
        report.add(
            "ADP-PRA-01",
            READS,
            vec!["no record refers to a Practitioner, so nothing was read".into()],
        );
        return;
    };
    if let Err(AdapterError::NotSupported { .. }) = read(adapter, &first_ods, &first_id).await {
        let why = "the adapter does not read practice staff (read_practitioner is NotSupported)";
        report.skip("ADP-PRA-01", READS, why);
        report.skip("ADP-PRA-02", NOBODY, why);
        return;
    }
    let profile = format!("{UK_CORE_PROFILE_BASE}Practitioner");
    let mut failures = Vec::new();
    for (ods, id) in &people {
        match read(adapter, ods, id).await {
            Ok(Some(p)) => {
                if p.id != *id {
                    failures.push(format!("Practitioner/{id} at {ods} answered id {}", p.id));
                }
                if !p
                    .meta
                    .as_ref()
                    .is_some_and(|m| m.profile.contains(&profile))
                {
                    failures.push(format!("Practitioner/{id} at {ods}: no UK Core profile"));
                }
                if !p.name.iter().any(|n| n.family.is_some()) {
                    failures.push(format!("Practitioner/{id} at {ods}: no family name"));
                }
            }
            Ok(None) => failures.push(format!(
                "Practitioner/{id} is referred to at {ods}, but read_practitioner found nobody"
            )),
            Err(e) => failures.push(format!("read_practitioner({id} at {ods}) failed: {e}")),
        }
    }
    for p in data {
        let Some(gp) = &p.record.practitioner else {
            continue;
        };
        match read(adapter, &p.ods, &gp.id).await {
            Ok(Some(read)) if read == *gp => {}
            other => failures.push(format!(
                "the usual GP of {} reads as {other:?}, not as read_patient maps them ({gp:?})",
                p.nhs
            )),
        }
    }
    report.add("ADP-PRA-01", READS, failures);

    let mut failures = Vec::new();
    for bad in ["no-such-person-0000", "a/b", "", "..", "x y"] {
        match read(adapter, &first_ods, bad).await {
            Ok(None) => {}
            other => failures.push(format!("read_practitioner({bad:?}) gave {other:?}")),
        }
    }
    // A person of one practice, asked for at another the fixture reads.
    if let Some(other_ods) = data.iter().map(|p| &p.ods).find(|o| **o != first_ods) {
        let theirs: BTreeSet<&str> = people
            .iter()
            .filter(|(o, _)| o == other_ods)
            .map(|(_, id)| id.as_str())
            .collect();
        if !theirs.contains(first_id.as_str()) {
            match read(adapter, other_ods, &first_id).await {
                Ok(None) => {}
                other => failures.push(format!(
                    "Practitioner/{first_id} of {first_ods} read at {other_ods} gave {other:?}"
                )),
            }
        }
    }
    report.add("ADP-PRA-02", NOBODY, failures);
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use gp_fhir::NhsNumber;
    use gp_fhir::model::{HumanName, Meta, Patient, Practitioner, Reference};

    use super::*;
    use crate::harness::Outcome;
    use crate::{GpSystem, PatientRecord, SearchPage, SearchRequest};

    fn gp() -> Practitioner {
        Practitioner {
            id: "gp-1".into(),
            meta: Some(Meta::uk_core("Practitioner")),
            name: vec![HumanName {
                family: Some("Khan".into()),
                ..HumanName::default()
            }],
            ..Practitioner::default()
        }
    }

    /// An adapter whose staff reads answer `answer`.
    struct Staff {
        answer: fn(&PractitionerRequest) -> Result<Option<Practitioner>, AdapterError>,
    }

    #[async_trait]
    impl Adapter for Staff {
        fn system(&self) -> GpSystem {
            crate::test_systems::EMIS
        }
        async fn read_patient(
            &self,
            _: &crate::PatientRequest,
        ) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn read_practitioner(
            &self,
            req: &PractitionerRequest,
        ) -> Result<Option<Practitioner>, AdapterError> {
            (self.answer)(req)
        }
    }

    fn data() -> Vec<PatientData> {
        let patient = Patient {
            id: "9690937278".into(),
            general_practitioner: vec![Reference::to("Practitioner", "gp-1")],
            ..Patient::default()
        };
        vec![PatientData {
            nhs: NhsNumber::parse("9690937278").unwrap(),
            ods: OdsCode::parse("B82617").unwrap(),
            record: PatientRecord {
                patient,
                organization: None,
                practitioner: Some(gp()),
                version: "1".into(),
                flags: crate::PatientFlags::default(),
            },
            clinical: Vec::new(),
        }]
    }

    async fn outcomes(staff: Staff) -> Vec<(&'static str, Outcome)> {
        let mut report = HarnessReport::default();
        check_practitioners(&mut report, &staff, &data()).await;
        report
            .checks
            .into_iter()
            .map(|c| (c.id, c.outcome))
            .collect()
    }

    #[tokio::test]
    async fn the_usual_gp_read_back_as_mapped_and_nobody_else_passes() {
        let staff = Staff {
            answer: |req| Ok((req.id == "gp-1").then(gp)),
        };
        let got = outcomes(staff).await;
        assert!(got.iter().all(|(_, o)| *o == Outcome::Pass), "{got:?}");
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn a_referred_person_not_found_or_a_stranger_found_fails() {
        let nobody = outcomes(Staff {
            answer: |_| Ok(None),
        })
        .await;
        assert!(
            matches!(&nobody[0], ("ADP-PRA-01", Outcome::Fail(d)) if d.contains("found nobody"))
        );
        let anyone = outcomes(Staff {
            answer: |_| Ok(Some(gp())),
        })
        .await;
        assert_eq!(anyone[0].1, Outcome::Pass);
        assert!(
            matches!(&anyone[1], ("ADP-PRA-02", Outcome::Fail(d)) if d.contains("no-such-person"))
        );
    }

    #[tokio::test]
    async fn an_adapter_without_staff_reads_is_skipped() {
        let got = outcomes(Staff {
            answer: |_| {
                Err(AdapterError::NotSupported {
                    system: crate::test_systems::EMIS,
                    what: "reading practice staff".into(),
                })
            },
        })
        .await;
        assert!(
            got.iter().all(|(_, o)| matches!(o, Outcome::Skipped(_))),
            "{got:?}"
        );
        assert_eq!(got.len(), 2);
    }
}
