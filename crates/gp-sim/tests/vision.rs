#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Vision simulator over real HTTP: extract rows, continuation, errors and faults.

mod support;

use std::time::Duration;

use gp_sim::vision::{JOURNAL_COLUMNS, PAGE_ROWS, PATIENT_COLUMNS};
use gp_sim::{Fault, SystemKind, start_vision};
use support::*;

fn first_vision_ods(store: &gp_sim::SimStore) -> String {
    store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Vision)
            .unwrap()
            .ods
            .clone()
    })
}

/// Rows of an unquoted extract body (the fields checked here never need quotes).
fn rows(body: &str) -> Vec<Vec<&str>> {
    assert!(body.ends_with("\r\n"), "CRLF after the last row");
    body.trim_end_matches("\r\n")
        .split("\r\n")
        .map(|l| l.split('|').collect())
        .collect()
}

#[tokio::test]
async fn serves_the_demo_patient_row() {
    let store = store();
    let ods = first_vision_ods(&store);
    let sim = start_vision(store, loopback().await).await.unwrap();
    let a = get_with(
        sim.addr,
        &format!("/vision/practices/{ods}/patients/9658218865"),
        "X-Correlation-Id: corr-1\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));
    let r = rows(a.text());
    assert_eq!(r[0], PATIENT_COLUMNS.to_vec());
    assert_eq!(r[1].len(), PATIENT_COLUMNS.len());
    assert_eq!(r[1][1], "9658218865");
    assert!(
        ["0", "1", "2", "9"].contains(&r[1][5]),
        "sex code {}",
        r[1][5]
    );
    assert_eq!(r[1][4].len(), 8, "YYYYMMDD date of birth");
    assert_eq!(r[2], vec!["EOF", "1"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn journal_has_bp_rows_and_dmd_drugs() {
    let store = store();
    let ods = first_vision_ods(&store);
    let sim = start_vision(store, loopback().await).await.unwrap();
    let a = get(
        sim.addr,
        &format!("/vision/practices/{ods}/patients/9658218865/journal"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-vision-continuation"), None, "fits in one page");
    let text = a.text().to_owned();
    assert!(!text.contains("\r\n\r\n") && !text.replace("\r\n", "").contains('\n'));
    assert!(
        text.starts_with(&JOURNAL_COLUMNS.join("|")),
        "header row first"
    );
    // Fields with quotes would confuse the naive split; the demo record has none in the columns used.
    let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
    let trailer = lines.last().unwrap();
    assert_eq!(*trailer, format!("EOF|{}", lines.len() - 2));
    let bp = lines
        .iter()
        .find(|l| l.split('|').nth(3) == Some("246.."))
        .expect("a one-row blood pressure");
    let f: Vec<&str> = bp.split('|').collect();
    assert!(f[7].parse::<f64>().unwrap() > f[8].parse::<f64>().unwrap());
    let drug = lines
        .iter()
        .find(|l| l.split('|').nth(12) == Some("THERAPY"))
        .unwrap();
    let f: Vec<&str> = drug.split('|').collect();
    assert_eq!(f[3], "", "no Read v2 drug code");
    assert!(!f[5].is_empty(), "dm+d code");
    sim.shutdown().await;
}

#[tokio::test]
async fn long_journals_are_paged_with_continuation_tokens() {
    let store = store();
    let ods = first_vision_ods(&store);
    store.write(|p| {
        let demo = p
            .patients
            .iter_mut()
            .find(|x| x.nhs_number == "9658218865")
            .unwrap();
        let template = demo.observations[0].clone();
        for i in 0..1100 {
            let mut o = template.clone();
            o.meta.id = format!("extra-{i}");
            demo.observations.push(o);
        }
    });
    let sim = start_vision(store, loopback().await).await.unwrap();
    let base = format!("/vision/practices/{ods}/patients/9658218865/journal");
    let mut path = base.clone();
    let mut total = 0;
    let mut pages = 0;
    loop {
        let a = get(sim.addr, &path).await;
        assert_eq!(a.status, 200);
        let n = a.text().matches("\r\n").count() - 2;
        assert!(n <= PAGE_ROWS);
        assert!(a.text().ends_with(&format!("EOF|{n}\r\n")));
        total += n;
        pages += 1;
        match a.header("x-vision-continuation") {
            Some(t) => path = format!("{base}?continuation={t}"),
            None => break,
        }
    }
    assert!(pages >= 3);
    assert!(total > 1100);
    // A forged token is refused.
    let a = get(sim.addr, &format!("{base}?continuation=1f4-00000000")).await;
    assert_eq!(a.status, 400);
    assert!(a.text().starts_with("ERROR|INVALID_CONTINUATION|"));
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_are_one_error_line() {
    let store = store();
    let ods = first_vision_ods(&store);
    let emis_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    });
    let sim = start_vision(store, loopback().await).await.unwrap();
    let cases = [
        (
            format!("/vision/practices/{ods}/patients/1234567890"),
            400,
            "INVALID_NHS_NUMBER",
        ),
        (
            format!("/vision/practices/{ods}/patients/9000000009"),
            404,
            "PATIENT_NOT_FOUND",
        ),
        (
            format!("/vision/practices/{emis_ods}/patients/9000000009"),
            404,
            "PRACTICE_NOT_FOUND",
        ),
        (
            format!("/vision/practices/{emis_ods}/staff"),
            404,
            "PRACTICE_NOT_FOUND",
        ),
        ("/vision/nowhere".to_owned(), 404, "NOT_FOUND"),
    ];
    for (path, status, code) in cases {
        let a = get(sim.addr, &path).await;
        assert_eq!(a.status, status, "{path}");
        assert!(
            a.text().starts_with(&format!("ERROR|{code}|")),
            "{path}: {}",
            a.text()
        );
        assert_eq!(a.text().matches("\r\n").count(), 1, "one line");
    }
    let staff = get(sim.addr, &format!("/vision/practices/{ods}/staff")).await;
    assert!(staff.text().starts_with("STAFF_ID|"));
    let practice = get(sim.addr, &format!("/vision/practices/{ods}")).await;
    assert!(practice.text().starts_with("ODS_CODE|"));
    assert!(practice.text().contains(&format!("\r\n{ods}|")));
    let health = get(sim.addr, "/vision/health").await;
    assert_eq!(health.text(), "STATUS\r\nOK\r\nEOF|1\r\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_corrupt_record_answers_only() {
    let store = store();
    let ods = first_vision_ods(&store);
    let sim = start_vision(store, loopback().await).await.unwrap();
    let path = format!("/vision/practices/{ods}/patients/9658218865");
    let normal = get(sim.addr, &path).await.body;

    sim.set_fault(Fault::Status(500));
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 500);
    assert!(a.text().starts_with("ERROR|INTERNAL_ERROR|"));
    let health = get(sim.addr, "/vision/health").await;
    assert_eq!(health.status, 200, "health is never faulted");

    sim.set_fault(Fault::Truncated);
    assert_eq!(get(sim.addr, &path).await.body, normal[..normal.len() / 2]);

    sim.set_fault(Fault::MisEncoded);
    let a = get(sim.addr, &path).await;
    assert!(std::str::from_utf8(&a.body).is_err());
    assert!(a.body.contains(&0xE9));

    sim.set_fault(Fault::MissingNhsNumber);
    let a = get(sim.addr, &path).await;
    assert!(!a.text().contains("9658218865"));
    assert!(a.text().contains("\r\n") && a.text().lines().nth(1).unwrap().contains("||"));

    sim.set_fault(Fault::Garbage);
    assert!(!get(sim.addr, &path).await.text().starts_with("PID|"));

    sim.set_fault(Fault::Hang);
    assert!(
        get_with(sim.addr, &path, "", Duration::from_millis(200))
            .await
            .is_err()
    );
    sim.set_fault(Fault::None);
    sim.shutdown().await;
}
