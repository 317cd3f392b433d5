//! The record locator: NHS number → registered practice (from the Personal
//! Demographics Service) → GP system (from the practice registry) → adapter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gp_fhir::{NhsNumber, OdsCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::remembered::{self, Remembered};

/// Where a patient is registered, according to PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub practice: OdsCode,
    /// PDS marks the patient restricted (sensitive): never released to third parties.
    pub restricted: bool,
}

/// Where patients were located, kept for `ttl_secs` and at most `max_entries`
/// (`[locator] cache_*`): each in three words of a [`Remembered`] table, the NHS number
/// (exactly: its stem, mixed) to its practice's place in a list of the practices seen and
/// the restricted flag. A general cache node took some 300 bytes a patient (nearly 30 MiB
/// at the default bound of 100,000).
pub struct Locations {
    table: Option<Remembered>,
    practices: Mutex<Practices>,
}

/// The practices patients were located at, each once: a [`Location`] keeps its place.
#[derive(Default)]
struct Practices {
    codes: Vec<OdsCode>,
    places: HashMap<OdsCode, u32>,
}

/// Most distinct practices kept (England has some 6,500 GP practices; this many codes
/// take under 4 MiB): a patient at any other is looked up in PDS each time.
const MOST_PRACTICES: usize = 1 << 16;

impl Locations {
    /// No more than `max_entries` patients, each for `ttl_secs`; either 0: none kept.
    pub fn new(max_entries: u64, ttl_secs: u64) -> Self {
        Self {
            table: (max_entries > 0 && ttl_secs > 0)
                .then(|| Remembered::new(max_entries, Duration::from_secs(ttl_secs))),
            practices: Mutex::default(),
        }
    }

    fn key(nhs: NhsNumber) -> u64 {
        remembered::mixed(u64::from(nhs.stem()))
    }

    fn practices(&self) -> std::sync::MutexGuard<'_, Practices> {
        self.practices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where `nhs` was located, if it was within the time.
    pub fn get(&self, nhs: NhsNumber) -> Option<Location> {
        let kept = self.table.as_ref()?.get(Self::key(nhs))?;
        let practice = self
            .practices()
            .codes
            .get(usize::try_from(kept >> 1).ok()?)?
            .clone();
        Some(Location {
            practice,
            restricted: kept & 1 == 1,
        })
    }

    /// Keeps where `nhs` is located.
    pub fn insert(&self, nhs: NhsNumber, location: &Location) {
        let Some(table) = &self.table else { return };
        let place = {
            let mut practices = self.practices();
            match practices.places.get(&location.practice) {
                Some(&place) => place,
                None if practices.codes.len() < MOST_PRACTICES => {
                    let Ok(place) = u32::try_from(practices.codes.len()) else {
                        return;
                    };
                    practices.codes.push(location.practice.clone());
                    practices.places.insert(location.practice.clone(), place);
                    place
                }
                None => return,
            }
        };
        table.insert(Self::key(nhs), place << 1 | u32::from(location.restricted));
    }

    /// Forgets where `nhs` is located: the next lookup asks PDS.
    pub fn invalidate(&self, nhs: NhsNumber) {
        if let Some(table) = &self.table {
            table.remove(Self::key(nhs));
        }
    }
}

/// Why a lookup failed (not "not found", which is `Ok(None)`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocateError {
    #[error("PDS did not answer within {0} ms")]
    Timeout(u64),
    #[error("PDS is unreachable: {0}")]
    Unreachable(String),
    #[error("PDS answered HTTP {0}")]
    Status(u16),
    #[error("PDS answered with a Patient that cannot be read: {0}")]
    Invalid(String),
}

/// Finds a patient's registered practice.
#[async_trait]
pub trait Locator: Send + Sync {
    /// `Ok(None)` when the patient is not known or not registered with a GP practice.
    async fn locate(
        &self,
        nhs: NhsNumber,
        request_id: &str,
    ) -> Result<Option<Location>, LocateError>;
}

/// Looks patients up in the PDS FHIR API (`GET {base}/Patient/{nhs}`).
pub struct PdsLocator {
    client: Client<HttpConnector, Empty<Bytes>>,
    base_url: String,
    timeout: Duration,
}

/// Most idle connections to PDS kept for reuse: lookups come in bursts (a cold start, a
/// new practice's patients) and are cached after; each connection kept holds some 30 KiB
/// of buffers, and a burst of 256 left 184 of them idle (BENCHMARKS.md, "The soak's
/// heap").
const IDLE_PDS_CONNECTIONS: usize = 16;

/// Largest PDS answer read.
const MAX_PDS_BYTES: usize = 256 * 1024;

impl PdsLocator {
    /// A locator for the PDS FHIR API at `base_url`.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(IDLE_PDS_CONNECTIONS)
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    async fn fetch(&self, nhs: NhsNumber, request_id: &str) -> Result<(u16, Bytes), LocateError> {
        let uri = format!("{}/Patient/{nhs}", self.base_url);
        let req = http::Request::get(&uri)
            .header("X-Request-ID", request_id)
            .header("Accept", "application/fhir+json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| LocateError::Unreachable(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| LocateError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        #[allow(clippy::disallowed_methods)] // capped by Limited
        let body = Limited::new(resp.into_body(), MAX_PDS_BYTES)
            .collect()
            .await
            .map_err(|e| LocateError::Invalid(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
}

#[async_trait]
impl Locator for PdsLocator {
    async fn locate(
        &self,
        nhs: NhsNumber,
        request_id: &str,
    ) -> Result<Option<Location>, LocateError> {
        let millis = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let (status, body) = tokio::time::timeout(self.timeout, self.fetch(nhs, request_id))
            .await
            .map_err(|_| LocateError::Timeout(millis))??;
        match status {
            200 => parse_pds_patient(&body),
            404 => Ok(None),
            s => Err(LocateError::Status(s)),
        }
    }
}

/// Reads the registered practice and the restricted flag from a PDS Patient.
pub fn parse_pds_patient(body: &[u8]) -> Result<Option<Location>, LocateError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| LocateError::Invalid(e.to_string()))?;
    if v.get("resourceType").and_then(|t| t.as_str()) != Some("Patient") {
        return Err(LocateError::Invalid("resourceType is not Patient".into()));
    }
    let restricted = v
        .pointer("/meta/security")
        .and_then(|s| s.as_array())
        .is_some_and(|codes| {
            codes
                .iter()
                .any(|c| c.get("code").and_then(|c| c.as_str()) == Some("R"))
        });
    let ods = v
        .get("generalPractitioner")
        .and_then(|g| g.as_array())
        .and_then(|gps| {
            gps.iter().find(|gp| {
                gp.pointer("/identifier/system").and_then(|s| s.as_str())
                    == Some(gp_fhir::ids::ODS_CODE_SYSTEM)
            })
        })
        .and_then(|gp| gp.pointer("/identifier/value"))
        .and_then(|v| v.as_str());
    match ods {
        None => Ok(None),
        Some(code) => {
            let practice = OdsCode::parse(code).map_err(|e| LocateError::Invalid(e.to_string()))?;
            Ok(Some(Location {
                practice,
                restricted,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn nhs(n: &str) -> NhsNumber {
        NhsNumber::parse(n).unwrap()
    }

    fn at(practice: &str, restricted: bool) -> Location {
        Location {
            practice: OdsCode::parse(practice).unwrap(),
            restricted,
        }
    }

    #[test]
    fn each_patient_is_kept_at_their_own_practice_with_their_own_flag() {
        let locations = Locations::new(100, 300);
        let (a, b, c) = (nhs("9000000009"), nhs("9000000017"), nhs("9000000025"));
        locations.insert(a, &at("A12345", false));
        locations.insert(b, &at("B82001", true));
        locations.insert(c, &at("A12345", true));
        assert_eq!(locations.get(a), Some(at("A12345", false)));
        assert_eq!(locations.get(b), Some(at("B82001", true)));
        assert_eq!(locations.get(c), Some(at("A12345", true)));
        assert_eq!(locations.get(nhs("9000000033")), None, "never located");

        // Moved practice and became restricted: the newer location is kept.
        locations.insert(a, &at("B82001", true));
        assert_eq!(locations.get(a), Some(at("B82001", true)));

        locations.invalidate(b);
        assert_eq!(locations.get(b), None, "invalidated: PDS is asked again");
        assert_eq!(locations.get(c), Some(at("A12345", true)), "others stay");
    }

    #[test]
    fn patients_at_more_practices_than_are_kept_are_asked_of_pds_again() {
        let locations = Locations::new(200_000, 300);
        let numbers: Vec<NhsNumber> = (100_000_000..)
            .filter_map(NhsNumber::from_stem)
            .take(MOST_PRACTICES + 1)
            .collect();
        let practice = |i: usize| at(&format!("P{i:06}"), false);
        for (i, n) in numbers.iter().enumerate() {
            locations.insert(*n, &practice(i));
        }
        assert_eq!(locations.get(numbers[0]), Some(practice(0)));
        let last = MOST_PRACTICES - 1;
        assert_eq!(locations.get(numbers[last]), Some(practice(last)));
        assert_eq!(
            locations.get(numbers[MOST_PRACTICES]),
            None,
            "a practice too many"
        );
        // A patient at a practice already seen is still kept.
        locations.insert(numbers[MOST_PRACTICES], &practice(7));
        assert_eq!(locations.get(numbers[MOST_PRACTICES]), Some(practice(7)));
    }

    #[test]
    fn the_bound_holds_and_a_zero_bound_or_time_keeps_nothing() {
        let locations = Locations::new(1_600, 300);
        let numbers: Vec<NhsNumber> = (100_000_000..)
            .filter_map(NhsNumber::from_stem)
            .take(10_000)
            .collect();
        for n in &numbers {
            locations.insert(*n, &at("A12345", false));
        }
        let kept = numbers
            .iter()
            .filter(|n| locations.get(**n).is_some())
            .count();
        assert!((1_200..=1_600).contains(&kept), "{kept} kept");
        assert!(
            locations.get(numbers[9_999]).is_some(),
            "the latest is kept"
        );

        for none in [Locations::new(0, 300), Locations::new(100, 0)] {
            none.insert(numbers[0], &at("A12345", false));
            assert_eq!(none.get(numbers[0]), None);
        }
    }

    /// A PDS that answers every lookup 404 after `delay`, counting the connections open.
    async fn slow_pds(delay: Duration) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, m) = (open.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            tokio::time::sleep(delay).await;
                            let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                            if socket.write_all(answer).await.is_err() {
                                break;
                            }
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (url, open, most)
    }

    #[tokio::test]
    async fn a_burst_of_lookups_leaves_few_connections_open() {
        let (url, open, most) = slow_pds(Duration::from_millis(100)).await;
        let locator = Arc::new(PdsLocator::new(&url, Duration::from_secs(10)));
        let nhs = NhsNumber::parse("9000000009").unwrap();
        let lookups: Vec<_> = (0..64)
            .map(|i| {
                let locator = locator.clone();
                tokio::spawn(async move { locator.locate(nhs, &format!("r{i}")).await })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap(), None);
        }
        assert!(
            most.load(Ordering::SeqCst) > IDLE_PDS_CONNECTIONS * 2,
            "a burst"
        );
        // The connections beyond those kept idle are closed as they come back.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > IDLE_PDS_CONNECTIONS
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = open.load(Ordering::SeqCst);
        assert!(left <= IDLE_PDS_CONNECTIONS, "{left} connections left open");
        assert!(left > 0, "some are kept for reuse");
    }

    #[test]
    fn reads_practice_and_restriction() {
        let body = br#"{"resourceType":"Patient","id":"9000000009","meta":{"security":[{"code":"R"}]},
            "generalPractitioner":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A12345"}}]}"#;
        let loc = parse_pds_patient(body).unwrap().unwrap();
        assert_eq!(loc.practice.as_str(), "A12345");
        assert!(loc.restricted);
        assert_eq!(
            parse_pds_patient(br#"{"resourceType":"Patient"}"#).unwrap(),
            None
        );
        assert!(parse_pds_patient(b"{").is_err());
        assert!(parse_pds_patient(br#"{"resourceType":"Patient","generalPractitioner":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A/1"}}]}"#).is_err());
    }
}
