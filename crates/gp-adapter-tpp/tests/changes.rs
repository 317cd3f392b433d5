#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The SystmOne adapter's change log against the real SystmOne simulator on
//! 127.0.0.1:0, where the shared suite (ADP-CHG) does not reach: pages of the configured
//! `page_size`, a cursor whose changes SystmOne no longer keeps, an answer without its
//! NHS number. Expectations come from the simulator's store, not the adapter.

use gp_adapter::harness::sim;
use gp_adapter::{Adapter, AdapterError, CallContext, ChangeKind, ChangesPage, ChangesRequest};
use gp_adapter_tpp::{TppAdapter, TppConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Setup {
    store: SimStore,
    sim: SimHandle,
    adapter: TppAdapter,
    ods: OdsCode,
    nhs: NhsNumber,
}

async fn setup(page_size: u32) -> Setup {
    let population = sim::population();
    let (nhs, ods) = sim::fixture(&population, SystemKind::Tpp).patients[0].clone();
    let store = SimStore::new(population);
    let sim = sim::start_over(SystemKind::Tpp, store.clone()).await;
    let mut config = TppConfig::new(sim.base_url());
    config.page_size = page_size;
    let adapter = TppAdapter::new(config).unwrap();
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

    /// A pulse taken at the practice; its EventUID.
    fn reading(&self) -> String {
        let pulse = gp_sim::concepts::measurement_by_snomed("78564009").unwrap();
        self.store
            .record_reading_at_practice(
                SystemKind::Tpp,
                self.ods.as_str(),
                &self.nhs.to_string(),
                pulse,
                72.0,
            )
            .unwrap()
    }
}

#[tokio::test]
async fn pages_of_the_configured_size_walk_on_to_every_change_in_order() {
    let s = setup(3).await;
    let start = s.page(None).await.unwrap().cursor;
    let made: Vec<String> = (0..7).map(|_| s.reading()).collect();
    let mut cursor = start;
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    loop {
        let page = s.page(Some(&cursor)).await.unwrap();
        sizes.push(page.changes.len());
        got.extend(page.changes);
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    let ids: Vec<String> = got.iter().map(|c| c.resource_id.clone().unwrap()).collect();
    assert_eq!(
        ids, made,
        "EventUIDs, as the record and create_observation answer them"
    );
    assert!(
        got.iter().all(|c| c.kind == ChangeKind::ReadingRecorded
            && c.by_practice
            && c.nhs_number == s.nhs)
    );
    let end = s.page(Some(&cursor)).await.unwrap();
    assert!(end.changes.is_empty() && !end.more);
    assert_eq!(end.cursor, cursor, "nothing new: the cursor stays");
}

#[tokio::test]
async fn a_cursor_whose_changes_expired_is_unprocessable_not_a_restart() {
    let s = setup(100).await;
    let start = s.page(None).await.unwrap().cursor;
    for _ in 0..gp_sim::changes::KEPT + 1 {
        s.reading();
    }
    let err = s.page(Some(&start)).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("CHANGES_EXPIRED")),
        "{err:?}"
    );
    let end = s.page(None).await.unwrap();
    assert!(s.page(Some(&end.cursor)).await.unwrap().changes.is_empty());
    // A cursor past the end (from another simulator run, say) is refused too.
    let ahead = end.cursor.replace(
        &format!(":{}", gp_sim::changes::KEPT + 1),
        &format!(":{}", gp_sim::changes::KEPT + 50),
    );
    assert_ne!(ahead, end.cursor);
    assert!(matches!(
        s.page(Some(&ahead)).await,
        Err(AdapterError::Unprocessable { detail, .. }) if detail.contains("CHANGE_NOT_FOUND")
    ));
}

#[tokio::test]
async fn a_change_without_its_nhs_number_is_invalid_native_data() {
    let s = setup(100).await;
    let start = s.page(None).await.unwrap().cursor;
    s.reading();
    s.sim.set_fault(Fault::MissingNhsNumber);
    let err = s.page(Some(&start)).await.unwrap_err();
    s.sim.set_fault(Fault::None);
    assert_eq!(
        err.to_string(),
        "TPP SystmOne returned data that cannot be read: RecordChanges/Change[1]/NHSNumber is missing"
    );
    s.sim.set_fault(Fault::Garbage);
    assert!(matches!(
        s.page(Some(&start)).await,
        Err(AdapterError::InvalidNativeData { .. })
    ));
    s.sim.set_fault(Fault::None);
}

#[tokio::test]
async fn another_organisations_cursor_is_refused_without_a_call() {
    let s = setup(100).await;
    let start = s.page(None).await.unwrap().cursor;
    let calls = s.sim.requests();
    let other = start.replace(s.ods.as_str(), "Y99999");
    assert!(matches!(
        s.page(Some(&other)).await,
        Err(AdapterError::Unprocessable { .. })
    ));
    assert_eq!(s.sim.requests(), calls, "refused before any call");
}
