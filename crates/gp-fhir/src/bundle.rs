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

/// `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    pub resource: Resource,
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
pub struct Bundle {
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
    pub entry: Vec<BundleEntry>,
}

impl Bundle {
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
        let Paging { count, offset } = self.paging;
        let mut link = vec![BundleLink {
            relation: "self".into(),
            url: self.link(offset),
        }];
        let served_to = offset.saturating_add(page.len() as u32);
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
        let matches = page.into_iter().map(|r| (r, "match"));
        let entry = matches
            .chain(included.into_iter().map(|r| (r, "include")))
            .map(|(r, mode)| BundleEntry {
                full_url: Some(format!(
                    "{}/{}/{}",
                    self.base_url,
                    r.resource_type(),
                    r.id()
                )),
                resource: r,
                search: Some(EntrySearch { mode: mode.into() }),
            })
            .collect();
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

    #[test]
    fn pages_link_forward_and_back_with_total() {
        let params = vec![
            ("patient".to_string(), "9690937278".to_string()),
            ("date".into(), "ge2020-01-01".into()),
        ];
        let s = Searchset {
            base_url: "https://gw.example/FHIR/R4",
            resource_type: "Observation",
            params: &params,
            paging: Paging {
                count: 2,
                offset: 2,
            },
            total: 5,
            id: "req-1",
            last_updated: "2026-01-01T00:00:00Z",
        };
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
        let b = Searchset {
            base_url: "https://gw.example/FHIR/R4",
            resource_type: "Observation",
            params: &params,
            paging: Paging {
                count: 0,
                offset: 3,
            },
            total: 5,
            id: "req-1",
            last_updated: "2026-01-01T00:00:00Z",
        }
        .build(Vec::new());
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
