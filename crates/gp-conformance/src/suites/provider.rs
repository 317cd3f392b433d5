//! `provider`: run once per GP system. For each system's standard test patient: the
//! Patient read is UK Core, each clinical search is a proper searchset; the flagged
//! patients are refused the way suppliers are promised.

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::Supplier;
use crate::model::{Check, TestDef, Verdict, ensure};
use crate::run_test;
use crate::suites::security::UNKNOWN_NHS_NUMBER;

const fn def(
    id: &'static str,
    group: &'static str,
    title: &'static str,
    requirement: &'static str,
) -> TestDef {
    TestDef {
        id,
        group,
        title,
        requirement,
        required: true,
    }
}

pub const CATALOGUE: &[TestDef] = &[
    def(
        "PRV-PAT-01",
        "patient",
        "Patient read is UK Core: profile, NHS number identifier",
        "REQ-PRV-01",
    ),
    def(
        "PRV-SRCH-01",
        "search",
        "AllergyIntolerance search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-SRCH-02",
        "search",
        "MedicationStatement search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-SRCH-03",
        "search",
        "Condition search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-SRCH-04",
        "search",
        "Observation search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-SRCH-05",
        "search",
        "Immunization search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-SRCH-06",
        "search",
        "Encounter search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    def(
        "PRV-ACC-01",
        "access",
        "a sensitive patient answers 404 RESOURCE_NOT_FOUND",
        "REQ-PRV-03",
    ),
    def(
        "PRV-ACC-02",
        "access",
        "a dissenting patient answers 403 NO_PATIENT_CONSENT",
        "REQ-PRV-04",
    ),
    def(
        "PRV-LOC-01",
        "locator",
        "an unknown NHS number answers 404 RESOURCE_NOT_FOUND",
        "REQ-PAIR-01",
    ),
];

const UK_CORE_PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const SEARCHES: [(&str, &str); 6] = [
    ("PRV-SRCH-01", "AllergyIntolerance"),
    ("PRV-SRCH-02", "MedicationStatement"),
    ("PRV-SRCH-03", "Condition"),
    ("PRV-SRCH-04", "Observation"),
    ("PRV-SRCH-05", "Immunization"),
    ("PRV-SRCH-06", "Encounter"),
];

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some(sup) = ctx.manifest.reader().cloned() else {
        rec.omit_rest(
            "the manifest names no supplier paired with a practice and holding a Patient scope",
        );
        return;
    };
    let mut p = rec.probe();
    let token = match super::security::token(ctx, &sup, &mut p.0).await {
        Ok(t) => t,
        Err(e) => {
            rec.omit_rest(&format!("no access token for {}: {e}", sup.client_id));
            return;
        }
    };
    for system in ctx.manifest.systems() {
        let sys = Some(system.as_str());
        let patient = find(ctx, &sup, &system, "");
        run_test!(
            rec,
            "PRV-PAT-01",
            sys,
            patient_read(ctx, &token, patient.as_deref())
        );
        for (id, resource) in SEARCHES {
            let mut p = rec.probe();
            let check = search(ctx, &sup, &token, patient.as_deref(), resource, &mut p.0).await;
            rec.record(id, sys, check, p);
        }
        let sensitive = find(ctx, &sup, &system, "sensitive");
        run_test!(
            rec,
            "PRV-ACC-01",
            sys,
            refused(ctx, &token, sensitive.as_deref(), 404, "RESOURCE_NOT_FOUND")
        );
        let dissent = find(ctx, &sup, &system, "dissent");
        run_test!(
            rec,
            "PRV-ACC-02",
            sys,
            refused(ctx, &token, dissent.as_deref(), 403, "NO_PATIENT_CONSENT")
        );
    }
    run_test!(
        rec,
        "PRV-LOC-01",
        None,
        refused(
            ctx,
            &token,
            Some(UNKNOWN_NHS_NUMBER),
            404,
            "RESOURCE_NOT_FOUND"
        )
    );
}

/// A manifest patient on `system` the supplier is paired with, with `flag` ("" = none).
fn find(ctx: &Ctx, sup: &Supplier, system: &str, flag: &str) -> Option<String> {
    ctx.manifest
        .patients
        .iter()
        .find(|p| {
            p.system == system
                && sup.practices.contains(&p.practice)
                && if flag.is_empty() {
                    p.flags.is_empty()
                } else {
                    p.flags.iter().any(|f| f == flag)
                }
        })
        .map(|p| p.nhs_number.clone())
}

fn need(patient: Option<&str>, what: &str) -> Result<String, Verdict> {
    patient.map(str::to_owned).ok_or_else(|| {
        Verdict::Omit(format!(
            "the manifest has no {what} patient on this GP system paired with the kit's supplier"
        ))
    })
}

async fn patient_read(ctx: &Ctx, token: &str, patient: Option<&str>, p: &mut Probe) -> Check {
    let nhs = need(patient, "ordinary")?;
    let a = p
        .get(
            &format!("{}/Patient/{nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    let v = a.json()?;
    ensure(v["resourceType"] == "Patient", || {
        format!("resourceType is {}", v["resourceType"])
    })?;
    let profiles = v["meta"]["profile"].as_array().cloned().unwrap_or_default();
    ensure(profiles.iter().any(|x| x == UK_CORE_PATIENT), || {
        format!("meta.profile does not name {UK_CORE_PATIENT}")
    })?;
    let ids = v["identifier"].as_array().cloned().unwrap_or_default();
    ensure(
        ids.iter()
            .any(|i| i["system"] == NHS_NUMBER_SYSTEM && i["value"] == nhs.as_str()),
        || format!("no identifier with system {NHS_NUMBER_SYSTEM} and the patient's NHS number"),
    )
}

async fn search(
    ctx: &Ctx,
    sup: &Supplier,
    token: &str,
    patient: Option<&str>,
    resource: &str,
    p: &mut Probe,
) -> Check {
    let nhs = need(patient, "ordinary")?;
    if !sup.has_scope(resource, 's') {
        return Err(Verdict::Skip(format!(
            "{} holds no system/{resource}.s scope",
            sup.client_id
        )));
    }
    let a = p
        .get(
            &format!("{}/{resource}?patient={nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    searchset(&a, resource)
}

fn searchset(a: &Answer, resource: &str) -> Check {
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    let v = a.json()?;
    ensure(
        v["resourceType"] == "Bundle" && v["type"] == "searchset",
        || {
            format!(
                "expected a searchset Bundle, got {} of type {}",
                v["resourceType"], v["type"]
            )
        },
    )?;
    let links = v["link"].as_array().cloned().unwrap_or_default();
    ensure(
        links
            .iter()
            .any(|l| l["relation"] == "self" && l["url"].is_string()),
        || "no link with relation 'self'".into(),
    )?;
    for (i, e) in v["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let t = &e["resource"]["resourceType"];
        let is_match = e["search"]["mode"] != "include";
        if is_match {
            ensure(t == resource, || {
                format!("entry[{i}] is a {t}, not a {resource}")
            })?;
        }
    }
    Ok(())
}

async fn refused(
    ctx: &Ctx,
    token: &str,
    patient: Option<&str>,
    status: u16,
    code: &str,
    p: &mut Probe,
) -> Check {
    let nhs = need(
        patient,
        if status == 403 {
            "dissent"
        } else {
            "sensitive"
        },
    )?;
    let a = p
        .get(
            &format!("{}/Patient/{nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == status, || {
        format!("expected HTTP {status}, got {}", a.status)
    })?;
    super::security::outcome(&a, code)
}
