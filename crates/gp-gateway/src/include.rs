//! `_include` / `_revinclude`: what a search page's matches refer to, and the patient's
//! entries that refer to them, each brought in under the same rules as a read of it.

use gp_adapter::ClinicalType;
use gp_fhir::NhsNumber;
use gp_fhir::include::Includes;
use gp_fhir::model::Resource;

use crate::access::Caller;
use crate::app::App;
use crate::context::RequestIds;
use crate::error::GatewayError;
use crate::release::{Released, is_confidential};

/// Checks the caller may read every type the includes bring in, before any data is
/// read: a missing scope is refused (403 naming it), never silently dropped.
pub(crate) fn authorise(includes: &Includes, caller: &Caller) -> Result<(), gp_auth::ScopeError> {
    for t in includes.types_read() {
        caller.require_read(t)?;
    }
    Ok(())
}

/// The resources `includes` bring in with `matches` (a page of one released patient's
/// search), each at most once and never a match again: the patient themself, entries
/// of their record that are not confidential, their practice and its staff. A
/// reference that no longer resolves is left out.
pub(crate) async fn resolve(
    app: &App,
    nhs: NhsNumber,
    released: &Released,
    matches: &[Resource],
    includes: &Includes,
    ids: &RequestIds,
) -> Result<Vec<Resource>, GatewayError> {
    if matches.is_empty() || includes.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = ids.call_context();
    let patient_id = nhs.to_string();
    let mut seen: Vec<String> = matches
        .iter()
        .map(|m| format!("{}/{}", m.resource_type(), m.id()))
        .collect();
    let matched = seen.clone();
    let mut out = Vec::new();
    let mut wanted: Vec<String> = Vec::new();
    for include in &includes.forward {
        for m in matches {
            for r in include.references(m) {
                if !seen.iter().any(|s| s == r) && !wanted.iter().any(|w| w == r) {
                    wanted.push(r.to_owned());
                }
            }
        }
    }
    for reference in wanted {
        let Some((t, id)) = reference.split_once('/') else {
            continue;
        };
        let found = match t {
            "Patient" if id == patient_id => Some(Resource::Patient(crate::people::named_patient(
                &released.record,
            ))),
            "Organization" if id == released.practice.as_str() => {
                practice_organization(app, &released.practice).map(Resource::Organization)
            }
            "Practitioner" => app
                .staff
                .read(released.adapter.as_ref(), &released.practice, id, &ctx)
                .await
                .map_err(GatewayError::Adapter)?
                .map(|p| Resource::Practitioner(p.as_ref().clone())),
            t => match ClinicalType::parse(t) {
                Some(clinical) => {
                    let area = released.area(app, nhs, clinical, ids).await?;
                    area.iter()
                        .find(|r| r.id() == id && !is_confidential(r))
                        .cloned()
                }
                None => None,
            },
        };
        if let Some(found) = found {
            seen.push(reference);
            out.push(found);
        }
    }
    for include in &includes.reverse {
        let Some(source) = ClinicalType::parse(include.def.source) else {
            continue;
        };
        let area = released.area(app, nhs, source, ids).await?;
        for entry in area.iter().filter(|r| !is_confidential(r)) {
            let key = format!("{}/{}", entry.resource_type(), entry.id());
            let refers = include
                .references(entry)
                .iter()
                .any(|r| matched.iter().any(|m| m == r));
            if refers && !seen.contains(&key) {
                seen.push(key);
                out.push(entry.clone());
            }
        }
    }
    Ok(out)
}

/// The practice `ods` as its Organization, when this gateway serves it.
pub(crate) fn practice_organization(
    app: &App,
    ods: &gp_fhir::OdsCode,
) -> Option<gp_fhir::model::Organization> {
    let practice = app.practices.get(ods)?;
    Some(gp_fhir::model::Organization {
        id: ods.as_str().to_owned(),
        meta: Some(gp_fhir::model::Meta::uk_core("Organization")),
        identifier: vec![gp_fhir::model::Identifier::ods(ods)],
        name: Some(practice.name.clone()),
        ..Default::default()
    })
}
