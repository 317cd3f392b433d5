//! The release policy: what a third-party supplier may see of a patient, and nothing
//! more. The heart of patient safety, in one place, applied to every read, search,
//! write and operation:
//! - **pairing**: a supplier sees only patients of practices it is paired with, and an
//!   unpaired practice's patient looks exactly like an unregistered one (not found);
//! - **restricted** (sensitive) patients, marked in PDS or by the GP system (by the
//!   record's flag or the Patient's own security label, either one), are not found;
//! - **dissent** from sharing with third parties is refused (403 NO_PATIENT_CONSENT);
//! - **confidential** entries (`meta.security` R from the GP system) are left out of
//!   every answer.

use std::sync::Arc;

use gp_adapter::{ClinicalType, PatientRecord};
use gp_fhir::NhsNumber;
use gp_fhir::model::Resource;

use crate::access::Caller;
use crate::app::App;
use crate::cache::FreshEntries;
use crate::context::RequestIds;
use crate::error::GatewayError;

/// A patient a third-party supplier may see, with where their record lives.
pub(crate) struct Released {
    pub(crate) record: Arc<PatientRecord>,
    pub(crate) practice: gp_fhir::OdsCode,
    pub(crate) adapter: Arc<dyn gp_adapter::Adapter>,
    /// The area read with the demographics, when one GP system call answered both, with
    /// its entries' JSON for their first answer until taken.
    fetched: Option<(ClinicalType, Arc<crate::cache::Area>, Option<FreshEntries>)>,
}

impl Released {
    /// One area of this patient's (`nhs`'s) record, as the GP system holds it, through
    /// the gateway's cache: confidential entries included, for the caller to withhold.
    pub(crate) async fn area(
        &self,
        app: &App,
        nhs: NhsNumber,
        t: ClinicalType,
        ids: &RequestIds,
    ) -> Result<Arc<crate::cache::Area>, GatewayError> {
        if let Some((area, list, _)) = &self.fetched
            && *area == t
        {
            return Ok(Arc::clone(list));
        }
        let (list, _) = self.read_area(app, nhs, t, ids, false).await?;
        Ok(list)
    }

    /// [`Released::area`] for an answer made from it now: with each entry's JSON as its
    /// version was named from, when this request read the area from the GP system (taken:
    /// a second call for the same area gets none).
    pub(crate) async fn area_read(
        &mut self,
        app: &App,
        nhs: NhsNumber,
        t: ClinicalType,
        ids: &RequestIds,
    ) -> Result<(Arc<crate::cache::Area>, Option<FreshEntries>), GatewayError> {
        if let Some((area, list, fresh)) = &mut self.fetched
            && *area == t
        {
            return Ok((Arc::clone(list), fresh.take()));
        }
        self.read_area(app, nhs, t, ids, true).await
    }

    /// The area through the gateway's cache (read from the GP system on a miss), with its
    /// entries' fresh JSON when `fresh` and this request read it.
    async fn read_area(
        &self,
        app: &App,
        nhs: NhsNumber,
        t: ClinicalType,
        ids: &RequestIds,
        fresh: bool,
    ) -> Result<(Arc<crate::cache::Area>, Option<FreshEntries>), GatewayError> {
        let ctx = ids.call_context();
        app.records
            .area_read(self.adapter.as_ref(), &self.practice, nhs, t, &ctx, fresh)
            .await
            .map_err(GatewayError::Adapter)
    }
}

/// Reads a patient the way a third-party supplier may see them: restricted
/// (sensitive) patients are not found; dissenting patients are refused.
pub(crate) async fn released_patient(
    app: &App,
    nhs: NhsNumber,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Released, GatewayError> {
    released(app, nhs, ids, caller, Read::Patient).await
}

/// Like [`released_patient`], for a read of one clinical area (a search, an entry by
/// id): when the cache holds neither the demographics nor the area, one GP system call
/// reads both, and [`Released::area`] answers the area without another.
pub(crate) async fn released_for(
    app: &App,
    nhs: NhsNumber,
    area: ClinicalType,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Released, GatewayError> {
    released(app, nhs, ids, caller, Read::Area(area)).await
}

/// Like [`released_patient`], reading the GP system's current demographics rather than
/// the cache: what a write is checked and made against.
pub(crate) async fn released_patient_fresh(
    app: &App,
    nhs: NhsNumber,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Released, GatewayError> {
    released(app, nhs, ids, caller, Read::Fresh).await
}

/// What a release reads of the patient's record.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// The demographics, through the cache.
    Patient,
    /// The demographics as the GP system holds them now (for a write).
    Fresh,
    /// The demographics, and this area with them when neither is cached.
    Area(ClinicalType),
}

async fn released(
    app: &App,
    nhs: NhsNumber,
    ids: &RequestIds,
    caller: &Caller,
    read: Read,
) -> Result<Released, GatewayError> {
    ids.facts.patient(&nhs.to_string());
    let (location, practice, adapter) = app.locate(nhs, &ids.request_id).await?;
    ids.facts.practice(location.practice.as_str());
    let not_found =
        || GatewayError::NotFound(format!("no patient record found for NHS number {nhs}"));
    // Unpaired looks exactly like unregistered to the supplier; only our logs differ.
    if !caller.paired_with(&location.practice) {
        tracing::info!(reason = "not-paired", supplier = caller.client_id().unwrap_or("-"), practice = %location.practice, "patient withheld");
        return Err(not_found());
    }
    if location.restricted {
        tracing::debug!(reason = "restricted-in-pds", "patient withheld");
        return Err(not_found());
    }
    if read == Read::Fresh {
        app.records.invalidate(&location.practice, nhs).await;
    }
    let (records, ctx) = (&app.records, &ids.call_context());
    let answer = match read {
        Read::Area(area) => {
            records
                .patient_for(adapter.as_ref(), &location.practice, nhs, area, ctx)
                .await
        }
        Read::Patient | Read::Fresh => records
            .patient(adapter.as_ref(), &location.practice, nhs, ctx)
            .await
            .map(|record| (record, None)),
    };
    let (record, fetched) = match answer {
        Ok(r) => r,
        Err(gp_adapter::AdapterError::PatientNotFound) => {
            tracing::warn!(practice = %practice.ods, "PDS names a practice whose GP system does not hold the patient");
            return Err(not_found());
        }
        Err(e) => return Err(GatewayError::Adapter(e)),
    };
    if record.flags.restricted || record.patient.is_restricted() {
        tracing::debug!(reason = "restricted-in-gp-system", "patient withheld");
        return Err(not_found());
    }
    if record.flags.dissent {
        return Err(GatewayError::NoConsent);
    }
    let fetched = match read {
        Read::Area(area) => fetched.map(|(list, fresh)| (area, list, Some(fresh))),
        Read::Patient | Read::Fresh => None,
    };
    Ok(Released {
        record,
        practice: location.practice,
        adapter,
        fetched,
    })
}

/// True when the GP system marked the entry confidential (`meta.security` R).
pub(crate) fn is_confidential(r: &Resource) -> bool {
    r.meta().is_some_and(|m| {
        m.security.iter().any(|c| {
            c.system.as_deref() == Some(gp_fhir::model::CONFIDENTIALITY_SYSTEM)
                && c.code.as_deref() == Some("R")
        })
    })
}

/// Whether a supplier paired with `practice` may learn of a change to patient `nhs`'s
/// record there *now* (a notification, decided when it is delivered): the patient is
/// neither restricted (in PDS or by their GP system) nor dissenting, as their GP system
/// holds them today, wherever they are registered now. A patient PDS no longer knows is
/// not to be spoken of. Pairing and scopes are the caller's to check; errors (PDS or a
/// GP system unreachable) mean "not known yet": try again later, release nothing.
pub(crate) async fn may_learn_of(
    app: &App,
    nhs: NhsNumber,
    ids: &RequestIds,
) -> Result<bool, GatewayError> {
    // Fresh: a patient who became restricted since the cache was filled must not leak.
    app.locations.invalidate(nhs);
    let (location, _, adapter) = match app.locate(nhs, &ids.request_id).await {
        Ok(found) => found,
        Err(GatewayError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if location.restricted {
        return Ok(false);
    }
    app.records.invalidate(&location.practice, nhs).await;
    let record = match app
        .records
        .patient(
            adapter.as_ref(),
            &location.practice,
            nhs,
            &ids.call_context(),
        )
        .await
    {
        Ok(r) => r,
        Err(gp_adapter::AdapterError::PatientNotFound) => return Ok(false),
        Err(e) => return Err(GatewayError::Adapter(e)),
    };
    Ok(!(record.flags.restricted || record.patient.is_restricted() || record.flags.dissent))
}
