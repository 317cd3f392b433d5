//! Paging helpers for adapters whose native API returns a whole record.

use gp_fhir::model::Resource;

use crate::{SearchPage, SearchRequest};

/// The requested page of a clinical area, from `resources` of any type (a whole record,
/// or the lists a [`crate::Want`] mapped): those of the requested type, then as [`page`].
pub fn area(mut resources: Vec<Resource>, req: &SearchRequest) -> SearchPage {
    resources.retain(|r| req.resource_type.matches(r));
    page(resources, req)
}

/// Filters `resources` (already of the requested type) by the request's date range,
/// orders them most recent first (undated last, then by id for stability), and cuts
/// the requested page.
pub fn page(mut resources: Vec<Resource>, req: &SearchRequest) -> SearchPage {
    resources.retain(|r| req.date.contains(r.clinical_date()));
    resources.sort_by(|a, b| {
        let key = |r: &Resource| {
            r.clinical_date()
                .and_then(|d| gp_fhir::date::PartialDate::parse(d).ok())
        };
        key(b).cmp(&key(a)).then_with(|| a.id().cmp(b.id()))
    });
    let total = u32::try_from(resources.len()).unwrap_or(u32::MAX);
    let resources = resources
        .into_iter()
        .skip(req.offset as usize)
        .take(req.count as usize)
        .collect();
    SearchPage { resources, total }
}
