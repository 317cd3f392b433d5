#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The EMIS adapter's change log against the real EMIS simulator on 127.0.0.1:0, where
//! the shared suite (ADP-CHG) does not reach: a walk over several full pages, a cursor
//! whose changes EMIS no longer keeps, an answer without its NHS number, and when a
//! change was made. Expectations come from the simulator's store, not the adapter.

use gp_adapter::harness::sim;
use gp_adapter::{Adapter, AdapterError, CallContext, ChangeKind, ChangesPage, ChangesRequest};
use gp_adapter_emis::{EmisAdapter, EmisConfig, changes::PAGE_SIZE};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Setup {
    store: SimStore,
    sim: SimHandle,
    adapter: EmisAdapter,
    ods: OdsCode,
    nhs: NhsNumber,
}

async fn setup() -> Setup {
    let population = sim::population();
    let (nhs, ods) = sim::fixture(&population, SystemKind::Emis).patients[0].clone();
    let store = SimStore::new(population);
    let sim = sim::start_over(SystemKind::Emis, store.clone()).await;
    let adapter = EmisAdapter::new(EmisConfig::new(sim.base_url())).unwrap();
    Setup {
        store,
        sim,
        adapter,
        ods,
        nhs,
    }
}

impl Setup {
    async fn page(&self, cursor: Option<&str>) -> Result<ChangesPage, AdapterError> {
        self.adapter
            .changes_since(&ChangesRequest {
                practice: self.ods.clone(),
                cursor: cursor.map(str::to_owned),
                context: CallContext::new("changes-test"),
            })
            .await
    }

    /// A pulse taken at the practice; its entry GUID.
    fn reading(&self) -> String {
        let pulse = gp_sim::concepts::measurement_by_snomed("78564009").unwrap();
        self.store
            .record_reading_at_practice(
                SystemKind::Emis,
                self.ods.as_str(),
                &self.nhs.to_string(),
                pulse,
                72.0,
            )
            .unwrap()
    }
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
fn rfc3339(t: i64) -> String {
    let d = gp_sim::appointments::utc_date_time(t);
    let (h, m, s) = d.time.unwrap();
    format!(
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}Z",
        d.year,
        d.month.unwrap(),
        d.day.unwrap()
    )
}

#[tokio::test]
async fn full_pages_walk_on_to_every_change_in_order() {
    let s = setup().await;
    let start = s.page(None).await.unwrap().cursor;
    let count = 2 * PAGE_SIZE as usize + 5;
    let before = gp_sim::appointments::now();
    let made: Vec<String> = (0..count).map(|_| s.reading()).collect();
    let after = gp_sim::appointments::now();

    let mut cursor = start;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.page(Some(&cursor)).await.unwrap();
        pages += 1;
        assert!(page.changes.len() <= PAGE_SIZE as usize);
        got.extend(page.changes);
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3, "two full pages and the rest");
    let ids: Vec<String> = got.iter().map(|c| c.resource_id.clone().unwrap()).collect();
    assert_eq!(ids, made);
    assert!(
        got.iter().all(|c| c.kind == ChangeKind::ReadingRecorded
            && c.by_practice
            && c.nhs_number == s.nhs)
    );
    // UK local time on the wire, UTC here: within the seconds the changes were made.
    let (from, to) = (rfc3339(before), rfc3339(after));
    for c in &got {
        assert!(
            c.occurred >= from && c.occurred <= to,
            "{} not in [{from}, {to}]",
            c.occurred
        );
    }
    let end = s.page(Some(&cursor)).await.unwrap();
    assert!(end.changes.is_empty() && !end.more);
    assert_eq!(end.cursor, cursor, "nothing new: the cursor stays");
}

#[tokio::test]
async fn a_cursor_whose_changes_expired_is_unprocessable_not_a_restart() {
    let s = setup().await;
    let start = s.page(None).await.unwrap().cursor;
    for _ in 0..gp_sim::changes::KEPT + 1 {
        s.reading();
    }
    let err = s.page(Some(&start)).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("CHANGES_EXPIRED")),
        "{err:?}"
    );
    // Starting again from the end works.
    let end = s.page(None).await.unwrap();
    assert!(s.page(Some(&end.cursor)).await.unwrap().changes.is_empty());
}

#[tokio::test]
async fn a_change_without_its_nhs_number_is_invalid_native_data() {
    let s = setup().await;
    let start = s.page(None).await.unwrap().cursor;
    s.reading();
    s.sim.set_fault(Fault::MissingNhsNumber);
    let err = s.page(Some(&start)).await.unwrap_err();
    s.sim.set_fault(Fault::None);
    assert_eq!(
        err.to_string(),
        "EMIS Web returned data that cannot be read: ChangeList/Change[1]/NhsNumber is missing"
    );
    s.sim.set_fault(Fault::Status(503));
    assert!(matches!(
        s.page(Some(&start)).await,
        Err(AdapterError::Unavailable { .. })
    ));
    s.sim.set_fault(Fault::None);
}

#[tokio::test]
async fn another_practices_cursor_is_refused_without_a_call() {
    let s = setup().await;
    let start = s.page(None).await.unwrap().cursor;
    let calls = s.sim.requests();
    let other = start.replace(s.ods.as_str(), "Y99999");
    assert!(matches!(
        s.page(Some(&other)).await,
        Err(AdapterError::Unprocessable { .. })
    ));
    assert_eq!(s.sim.requests(), calls, "refused before any call");
}
