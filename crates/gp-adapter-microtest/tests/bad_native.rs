#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A misbehaving Evolution server (a raw TCP stub on 127.0.0.1:0): two patients for one
//! NHS number and broken cursors must be InvalidNativeData naming Microtest Evolution.

use std::sync::Arc;

use gp_adapter::{Adapter, AdapterError, CallContext, ClinicalType, PatientRequest, SearchRequest};
use gp_adapter_microtest::{MicrotestAdapter, MicrotestConfig};
use gp_fhir::date::DateRange;
use gp_fhir::{NhsNumber, OdsCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NHS: &str = "9912003888";

/// Serves `answer(path_and_query) -> (status, body)`, one request per connection.
async fn stub(answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                let (status, body) = answer(&target);
                let ct = if status == 200 {
                    "application/json"
                } else {
                    "application/problem+json"
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn adapter(base: String) -> MicrotestAdapter {
    MicrotestAdapter::new(MicrotestConfig::new(base)).unwrap()
}

fn search() -> SearchRequest {
    SearchRequest {
        nhs_number: NhsNumber::parse(NHS).unwrap(),
        practice: OdsCode::parse("M85001").unwrap(),
        resource_type: ClinicalType::Condition,
        date: DateRange::default(),
        count: 10,
        offset: 0,
        context: CallContext::new("t"),
    }
}

fn detail(e: AdapterError) -> String {
    match e {
        AdapterError::InvalidNativeData {
            system: gp_adapter_microtest::SYSTEM,
            detail,
        } => detail,
        other => panic!("expected InvalidNativeData from Microtest Evolution, got {other:?}"),
    }
}

const ONE: &str = r#"{"patients":[{"patient_id":"p1","nhs_number":"9912003888"}]}"#;

fn problem_entry(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"problem","status":"active","code":{{"read":"H33..","term":"Asthma"}}}}"#
    )
}

#[tokio::test]
async fn two_patients_for_one_nhs_number() {
    let base = stub(|_| (200, format!(r#"{{"patients":[{{"patient_id":"p1","nhs_number":"{NHS}"}},{{"patient_id":"p2","nhs_number":"{NHS}"}}]}}"#))).await;
    let err = adapter(base)
        .read_patient(&PatientRequest {
            nhs_number: NhsNumber::parse(NHS).unwrap(),
            practice: OdsCode::parse("M85001").unwrap(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Microtest Evolution returned data that cannot be read: the patient index lists 2 patients with NHS number 9912003888 at M85001; expected at most one"
    );
}

#[tokio::test]
async fn a_repeating_cursor_is_broken() {
    let base = stub(|target| {
        if target.contains("nhs_number=") {
            (200, ONE.into())
        } else if target.contains("cursor=") {
            (
                200,
                format!(
                    r#"{{"entries":[{}],"next_cursor":"again"}}"#,
                    problem_entry("b")
                ),
            )
        } else {
            (
                200,
                format!(
                    r#"{{"entries":[{}],"next_cursor":"again"}}"#,
                    problem_entry("a")
                ),
            )
        }
    })
    .await;
    let d = detail(adapter(base).search(&search()).await.unwrap_err());
    assert_eq!(
        d,
        "broken cursor paging problem entries: next_cursor 'again' repeats a page already read"
    );
}

#[tokio::test]
async fn a_cursor_the_server_refuses_is_broken() {
    let base = stub(|target| {
        if target.contains("nhs_number=") {
            (200, ONE.into())
        } else if target.contains("cursor=") {
            (400, r#"{"type":"about:blank","title":"Invalid cursor","status":400,"detail":"no","code":"INVALID_CURSOR"}"#.into())
        } else {
            (200, format!(r#"{{"entries":[{}],"next_cursor":"next1"}}"#, problem_entry("a")))
        }
    })
    .await;
    let d = detail(adapter(base).search(&search()).await.unwrap_err());
    assert_eq!(
        d,
        "broken cursor paging problem entries: Evolution refused its own next_cursor 'next1'"
    );
}

#[tokio::test]
async fn pages_that_disagree_with_total_are_broken() {
    let base = stub(|target| {
        if target.contains("nhs_number=") {
            (200, ONE.into())
        } else {
            (
                200,
                format!(
                    r#"{{"entries":[{}],"total":3,"next_cursor":null}}"#,
                    problem_entry("a")
                ),
            )
        }
    })
    .await;
    let d = detail(adapter(base).search(&search()).await.unwrap_err());
    assert_eq!(
        d,
        "broken cursor paging problem entries: the pages held 1 entries but total says 3"
    );
}

#[tokio::test]
async fn a_patient_document_for_someone_else_is_refused() {
    let base = stub(|target| {
        if target.contains("nhs_number=") {
            (200, ONE.into())
        } else {
            (200, r#"{"patient_id":"p1","family_name":"X","nhs_number":"9000000009","nhs_number_status":"01",
                "date_of_birth":{"value":"1970","precision":"year"},
                "last_modified":{"value":"2024-01-01T00:00:00","precision":"datetime"},
                "site":{"site_id":"s","ods_code":"M85001"}}"#.into())
        }
    })
    .await;
    let err = adapter(base)
        .read_patient(&PatientRequest {
            nhs_number: NhsNumber::parse(NHS).unwrap(),
            practice: OdsCode::parse("M85001").unwrap(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        detail(err),
        "nhs_number is invalid: the patient document is for 9000000009, but 9912003888 was requested"
    );
}
