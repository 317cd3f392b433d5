//! Bundles: searchset results with `self`/`next`/`previous` links and `total`.

use serde::{Deserialize, Serialize};

use crate::model::Resource;
use crate::search::{Paging, encode_query};

/// `Bundle.link`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleLink {
    pub relation: String,
    pub url: String,
}

/// `Bundle.entry.search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrySearch {
    pub mode: String,
}

/// `Bundle.entry`: a typed resource by default, or one serialised already
/// ([`EntryResource`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry<R = Resource> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    pub resource: R,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<EntrySearch>,
}

/// `Bundle.meta` (only `lastUpdated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleMeta {
    pub last_updated: String,
}

/// A FHIR R4 Bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType", rename = "Bundle")]
pub struct Bundle<R = Resource> {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<BundleMeta>,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry<R>>,
}

/// An entry's resource as a Bundle is written: typed (owned, or borrowed from where it is
/// kept), or the JSON it serialised to before (kept with a cached entry, so that a second
/// answer copies it rather than serialising it again). All write the same bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EntryResource<'a> {
    Typed(Box<Resource>),
    Borrowed(&'a Resource),
    Json(&'a crate::json::RawJson),
}

impl<R: Serialize> Bundle<R> {
    /// Serialises to FHIR JSON.
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }
}

/// Builds a `searchset` Bundle for one page of results.
pub struct Searchset<'a> {
    /// Public base URL of the FHIR server, without a trailing slash.
    pub base_url: &'a str,
    /// The searched type (`Observation`) — the path the links point at.
    pub resource_type: &'a str,
    /// Result-set parameters other than paging, in request order.
    pub params: &'a [(String, String)],
    /// The page served.
    pub paging: Paging,
    /// Matches across all pages.
    pub total: u32,
    /// Bundle id (the request id).
    pub id: &'a str,
    /// `meta.lastUpdated`.
    pub last_updated: &'a str,
}

impl Searchset<'_> {
    fn link(&self, offset: u32) -> String {
        let (count, offset) = (self.paging.count.to_string(), offset.to_string());
        let params = self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let paging = [("_count", count.as_str()), ("_offset", offset.as_str())];
        format!(
            "{}/{}?{}",
            self.base_url,
            self.resource_type,
            encode_query(params.chain(paging))
        )
    }

    /// The Bundle for `page`, whose entries' `fullUrl`s point at the public base URL.
    pub fn build(&self, page: Vec<Resource>) -> Bundle {
        self.build_with(page, Vec::new())
    }

    /// The Bundle for `page` and what `_include` / `_revinclude` brought in with it
    /// (`search.mode` `include`; `total` counts the matches only).
    pub fn build_with(&self, page: Vec<Resource>, included: Vec<Resource>) -> Bundle {
        let n = page.len();
        let matches = page.into_iter().map(|r| (r, "match"));
        let entry = matches
            .chain(included.into_iter().map(|r| (r, "include")))
            .map(|(r, mode)| {
                let full_url = self.full_url(&r);
                self.entry(full_url, r, mode)
            })
            .collect();
        self.build_from(n, entry)
    }

    /// `Bundle.entry.fullUrl` for `r`: where it is read on the public base URL.
    pub fn full_url(&self, r: &Resource) -> String {
        format!("{}/{}/{}", self.base_url, r.resource_type(), r.id())
    }

    /// One entry, a match or an include (`mode`).
    pub fn entry<R>(&self, full_url: String, resource: R, mode: &str) -> BundleEntry<R> {
        BundleEntry {
            full_url: Some(full_url),
            resource,
            search: Some(EntrySearch { mode: mode.into() }),
        }
    }

    /// The Bundle of `entry`, whose first `matches` are the page's matches and the
    /// rest what `_include` brought in.
    pub fn build_from<R>(&self, matches: usize, entry: Vec<BundleEntry<R>>) -> Bundle<R> {
        let Paging { count, offset } = self.paging;
        let mut link = vec![BundleLink {
            relation: "self".into(),
            url: self.link(offset),
        }];
        let served_to = offset.saturating_add(u32::try_from(matches).unwrap_or(u32::MAX));
        // A count-only answer (`_count=0`) has no pages to link.
        if count > 0 && served_to < self.total {
            link.push(BundleLink {
                relation: "next".into(),
                url: self.link(served_to),
            });
        }
        if count > 0 && offset > 0 {
            link.push(BundleLink {
                relation: "previous".into(),
                url: self.link(offset.saturating_sub(count)),
            });
        }
        Bundle {
            id: self.id.to_owned(),
            meta: Some(BundleMeta {
                last_updated: self.last_updated.to_owned(),
            }),
            type_: "searchset".into(),
            total: Some(self.total),
            link,
            entry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Observation, Reference};

    fn obs(id: &str) -> Resource {
        Resource::Observation(Observation {
            id: id.into(),
            status: "final".into(),
            subject: Reference::to("Patient", "9690937278"),
            ..Observation::default()
        })
    }

    /// An Observation searchset of `_count` `count` from `offset`, of `total` matches.
    fn observations(
        params: &[(String, String)],
        count: u32,
        offset: u32,
        total: u32,
    ) -> Searchset<'_> {
        Searchset {
            base_url: "https://gw.example/FHIR/R4",
            resource_type: "Observation",
            params,
            paging: Paging { count, offset },
            total,
            id: "req-1",
            last_updated: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn entries_serialised_before_write_the_bytes_of_typed_ones() {
        let params = vec![("patient".to_string(), "9690937278".to_string())];
        let s = observations(&params, 2, 0, 3);
        let (page, included) = (vec![obs("a"), obs("b")], vec![obs("c")]);
        let typed = s.build_with(page.clone(), included.clone()).to_json();
        let json: Vec<_> = page.iter().map(crate::json::RawJson::of).collect();
        let mut entry: Vec<_> = page
            .iter()
            .zip(&json)
            .map(|(r, j)| s.entry(s.full_url(r), EntryResource::Json(j), "match"))
            .collect();
        entry.extend(
            included
                .into_iter()
                .map(|r| s.entry(s.full_url(&r), EntryResource::Typed(Box::new(r)), "include")),
        );
        assert_eq!(
            String::from_utf8(s.build_from(page.len(), entry).to_json()).unwrap(),
            String::from_utf8(typed).unwrap()
        );
    }

    #[test]
    fn pages_link_forward_and_back_with_total() {
        let params = vec![
            ("patient".to_string(), "9690937278".to_string()),
            ("date".into(), "ge2020-01-01".into()),
        ];
        let s = observations(&params, 2, 2, 5);
        let b = s.build(vec![obs("a"), obs("b")]);
        let v: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
        assert_eq!(v["type"], "searchset");
        assert_eq!(v["total"], 5);
        assert_eq!(
            v["link"][0]["url"],
            "https://gw.example/FHIR/R4/Observation?patient=9690937278&date=ge2020-01-01&_count=2&_offset=2"
        );
        assert_eq!(v["link"][1]["relation"], "next");
        assert!(
            v["link"][1]["url"]
                .as_str()
                .unwrap()
                .ends_with("_count=2&_offset=4")
        );
        assert_eq!(v["link"][2]["relation"], "previous");
        assert_eq!(
            v["entry"][0]["fullUrl"],
            "https://gw.example/FHIR/R4/Observation/a"
        );
        assert_eq!(v["entry"][0]["search"]["mode"], "match");
        let last = Searchset {
            paging: Paging {
                count: 2,
                offset: 4,
            },
            ..s
        }
        .build(vec![obs("c")]);
        assert!(
            last.link.iter().all(|l| l.relation != "next"),
            "no next link on the last page"
        );
    }

    #[test]
    fn a_count_only_answer_has_the_total_and_no_page_links() {
        let params = vec![("patient".to_string(), "9690937278".to_string())];
        let b = observations(&params, 0, 3, 5).build(Vec::new());
        assert_eq!(b.total, Some(5));
        assert!(b.entry.is_empty());
        let relations: Vec<&str> = b.link.iter().map(|l| l.relation.as_str()).collect();
        assert_eq!(
            relations,
            ["self"],
            "a client following next would never end"
        );
    }
}
