#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The public simulator kit, used as a vendor would from outside gp-sim: a simulator of
//! a made-up native API gets the shared fault injection and request counting from
//! `gp_sim::serve`, and a population's systems are a list to iterate.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gp_sim::server::Method;
use gp_sim::{Fault, Reply, Routed, SimStore, Simulator, SystemKind};
use support::*;

/// A made-up JSON API: `GET /acme/patients/{nhs}` and `GET /acme/health`.
struct Acme {
    store: SimStore,
}

fn json(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: body.into_bytes(),
    }
}

impl Simulator for Acme {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["", "acme", "health"] if method == Method::GET => Routed {
                reply: json(200, r#"{"ok":true}"#.into()),
                record: false,
            },
            ["", "acme", "patients", nhs] if method == Method::GET => Routed {
                reply: match self.store.patient_by_nhs(nhs) {
                    Some(p) => json(200, format!(r#"{{"nhs_number":"{}"}}"#, p.nhs_number)),
                    None => self.error_reply(404),
                },
                record: true,
            },
            _ => Routed {
                reply: self.error_reply(404),
                record: false,
            },
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        json(status, format!(r#"{{"error":{status}}}"#))
    }

    fn garbage(&self) -> Vec<u8> {
        b"<html>not acme</html>".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.insert(out.len().saturating_sub(2), 0xFF);
        out
    }

    fn drop_nhs_number(&self, _body: &[u8]) -> Vec<u8> {
        b"{}".to_vec()
    }
}

#[tokio::test]
async fn a_simulator_outside_gp_sim_gets_the_shared_faults() {
    let store = store();
    let nhs = store.read(|p| p.patients[0].nhs_number.clone());
    let sim = gp_sim::serve(Arc::new(Acme { store }), loopback().await).unwrap();
    let path = format!("/acme/patients/{nhs}");

    let ok = get(sim.addr, &path).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), format!(r#"{{"nhs_number":"{nhs}"}}"#));
    assert_eq!(sim.requests(), 1);

    sim.set_fault(Fault::Status(503));
    let down = get(sim.addr, &path).await;
    assert_eq!((down.status, down.text()), (503, r#"{"error":503}"#));
    assert_eq!(
        get(sim.addr, "/acme/health").await.status,
        200,
        "health probes are never faulted"
    );

    sim.set_fault(Fault::Garbage);
    assert_eq!(get(sim.addr, &path).await.text(), "<html>not acme</html>");
    sim.set_fault(Fault::MissingNhsNumber);
    assert_eq!(get(sim.addr, &path).await.text(), "{}");
    sim.set_fault(Fault::Reset);
    assert!(
        get_with(sim.addr, &path, "", Duration::from_secs(5))
            .await
            .is_err()
    );
    sim.set_fault(Fault::Hang);
    assert_eq!(
        get_with(sim.addr, &path, "", Duration::from_millis(200))
            .await
            .err(),
        Some("timed out".to_owned())
    );
    sim.set_fault(Fault::None);
    assert_eq!(get(sim.addr, &path).await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn every_system_of_the_population_starts_from_the_list() {
    let store = store();
    let systems = store.read(|p| p.systems());
    assert_eq!(systems, SystemKind::ALL);
    for system in systems {
        let practices = store.read(|p| p.practices_of(system).count());
        assert_eq!(
            practices, 2,
            "{system:?}: the sandbox has two practices a system"
        );
        let sim = gp_sim::start(system, store.clone(), loopback().await)
            .await
            .unwrap();
        let health = match system {
            SystemKind::Emis => "/emis/health",
            SystemKind::Tpp => "/systmone/api/v1/health",
            SystemKind::Vision => "/vision/health",
            SystemKind::Microtest => "/evolution/v2/health",
        };
        assert_eq!(get(sim.addr, health).await.status, 200, "{system:?}");
        sim.shutdown().await;
    }
}
