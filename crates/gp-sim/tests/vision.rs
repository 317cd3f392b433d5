#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Vision simulator over real HTTP: extract rows, continuation, errors, faults, and
//! the two writes (journal rows, contact details).

mod support;

use std::time::Duration;

use gp_sim::vision::{
    CONTACT_ANSWER_COLUMNS, CONTACT_COLUMNS, JOURNAL_COLUMNS, PAGE_ROWS, PATIENT_COLUMNS,
    WRITE_COLUMNS,
};
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

// ---- writes ----------------------------------------------------------------------

/// Sends a request with a body and reads the answer (raw HTTP, like `support::get_with`).
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: buf[split + 4..].to_vec(),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("the simulator answers")
}

/// A delimited body: header, rows, trailer.
fn extract(columns: &[&str], rows: &[&[&str]]) -> String {
    let mut out = format!("{}\r\n", columns.join("|"));
    for r in rows {
        out.push_str(&format!("{}\r\n", r.join("|")));
    }
    out.push_str(&format!("EOF|{}\r\n", rows.len()));
    out
}

/// The fields of one line, `"…"` quoting (with doubled quotes) undone.
fn split_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            ('|', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The field of `column` in data row `row` (0-based) of an extract without line breaks in fields.
fn field(body: &str, row: usize, column: &str) -> String {
    let lines: Vec<Vec<String>> = body
        .trim_end_matches("\r\n")
        .split("\r\n")
        .map(split_line)
        .collect();
    let at = lines[0].iter().position(|c| c == column).unwrap();
    assert_eq!(
        lines[row + 1].len(),
        lines[0].len(),
        "row {row} as wide as the header"
    );
    lines[row + 1][at].clone()
}

const DEMO: &str = "9658218865";
const BP: &[&str] = &[
    "OBSERVATION",
    "20260714",
    "083205",
    "246..",
    "Blood pressure",
    "131",
    "84",
    "mm[Hg]",
];

fn journal_path(ods: &str, nhs: &str) -> String {
    format!("/vision/practices/{ods}/patients/{nhs}/journal")
}

#[tokio::test]
async fn journal_writes_are_idempotent_and_answer_their_rows() {
    let store = store();
    let ods = first_vision_ods(&store);
    let sim = start_vision(store, loopback().await).await.unwrap();
    let path = journal_path(&ods, DEMO);
    let before = get(sim.addr, &path).await.text().to_owned();
    let body = extract(&WRITE_COLUMNS, &[BP]);
    let key = [("X-Vision-Idempotency-Key", "supplier-abc-1")];

    let first = send(sim.addr, "POST", &path, &key, &body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let answer = first.text().to_owned();
    assert!(answer.starts_with(&JOURNAL_COLUMNS.join("|")));
    assert!(answer.ends_with("\r\nEOF|1\r\n"), "one BP row: {answer}");
    assert_eq!(field(&answer, 0, "CODE"), "246..");
    assert_eq!(field(&answer, 0, "VALUE1"), "131");
    assert_eq!(field(&answer, 0, "VALUE2"), "84");
    assert_eq!(field(&answer, 0, "UNITS"), "mm[Hg]");
    assert_eq!(field(&answer, 0, "DATE"), "20260714");
    assert_eq!(field(&answer, 0, "TIME"), "083205", "seconds kept");
    assert_eq!(
        field(&answer, 0, "AUTHOR"),
        "",
        "a supplier is not a clinician"
    );
    assert_eq!(field(&answer, 0, "CONSULTATION_ID"), "");
    let id = field(&answer, 0, "ID").to_owned();

    // The row is in the journal, once.
    let after = get(sim.addr, &path).await.text().to_owned();
    assert_eq!(after.matches(&format!("|{id}|")).count(), 1);
    assert_eq!(
        rows(&after).len(),
        rows(&before).len() + 1,
        "one journal row more"
    );

    // A retry answers the same rows with 200 and records nothing.
    let again = send(sim.addr, "POST", &path, &key, &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), answer);
    assert_eq!(get(sim.addr, &path).await.text(), after);

    // Another key at the same instant is another row; the two never pair across writes.
    let weight: &[&str] = &[
        "OBSERVATION",
        "20260714",
        "083205",
        "22A..",
        "",
        "72.4",
        "",
        "kg",
    ];
    let other = send(
        sim.addr,
        "POST",
        &path,
        &[("X-Vision-Idempotency-Key", "supplier-abc-2")],
        &extract(&WRITE_COLUMNS, &[BP, weight]),
    )
    .await;
    assert_eq!(other.status, 201, "{}", other.text());
    assert!(other.text().ends_with("\r\nEOF|2\r\n"));
    assert_ne!(field(other.text(), 0, "ID"), id);
    assert_eq!(field(other.text(), 0, "VALUE2"), "84");
    assert_eq!(field(other.text(), 1, "VALUE1"), "72.4");
    // HHMM is still accepted, and a whole-minute time is written back as HHMM.
    let minute: &[&str] = &[
        "OBSERVATION",
        "20260114",
        "0940",
        "242..",
        "",
        "72",
        "",
        "/min",
    ];
    let pulse = send(
        sim.addr,
        "POST",
        &path,
        &[("X-Vision-Idempotency-Key", "supplier-abc-3")],
        &extract(&WRITE_COLUMNS, &[minute]),
    )
    .await;
    assert_eq!(pulse.status, 201, "{}", pulse.text());
    assert_eq!(field(pulse.text(), 0, "TIME"), "0940");
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_journal_writes_change_nothing() {
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
    let path = journal_path(&ods, DEMO);
    let before = get(sim.addr, &path).await.text().to_owned();
    let key = "refused-1";
    let row = |code: &'static str, v1: &'static str, v2: &'static str, units: &'static str| {
        extract(
            &WRITE_COLUMNS,
            &[&["OBSERVATION", "20260714", "083205", code, "", v1, v2, units]],
        )
    };
    let good = row("22A..", "72.4", "", "kg");
    let cases: Vec<(String, String, Option<&str>, u16, &str)> = vec![
        (
            path.clone(),
            row("XXXX.", "1", "", "kg"),
            Some(key),
            422,
            "UNKNOWN_CODE",
        ),
        (
            path.clone(),
            row("1371.", "1", "", "kg"),
            Some(key),
            422,
            "UNKNOWN_CODE",
        ),
        (
            path.clone(),
            row("22A..", "72.4", "", "lb"),
            Some(key),
            422,
            "INVALID_UNITS",
        ),
        (
            path.clone(),
            row("246..", "131", "84", "kPa"),
            Some(key),
            422,
            "INVALID_UNITS",
        ),
        (
            path.clone(),
            row("22A..", "72.4", "3", "kg"),
            Some(key),
            422,
            "INVALID_VALUE",
        ),
        (
            path.clone(),
            row("246..", "131", "", "mm[Hg]"),
            Some(key),
            422,
            "INVALID_VALUE",
        ),
        (
            path.clone(),
            row("22A..", "-5", "", "kg"),
            Some(key),
            422,
            "INVALID_VALUE",
        ),
        (
            path.clone(),
            row("22A..", "heavy", "", "kg"),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            extract(
                &WRITE_COLUMNS,
                &[&[
                    "OBSERVATION",
                    "20260230",
                    "083205",
                    "22A..",
                    "",
                    "72",
                    "",
                    "kg",
                ]],
            ),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            extract(
                &WRITE_COLUMNS,
                &[
                    &[
                        "OBSERVATION",
                        "20260714",
                        "083205",
                        "22A..",
                        "",
                        "72",
                        "",
                        "kg",
                    ],
                    &[
                        "OBSERVATION",
                        "20260714",
                        "083206",
                        "229..",
                        "",
                        "170",
                        "",
                        "cm",
                    ],
                ],
            ),
            Some(key),
            422,
            "INVALID_VALUE",
        ),
        (
            path.clone(),
            extract(
                &[
                    "TYPE",
                    "DATE",
                    "TIME",
                    "CODE",
                    "VALUE1",
                    "UNITS",
                    "CONSULTATION_ID",
                ],
                &[&[
                    "OBSERVATION",
                    "20260714",
                    "083205",
                    "22A..",
                    "72",
                    "kg",
                    "s01",
                ]],
            ),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            good.replace("EOF|1\r\n", ""),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            good.replace("\r\n", "\n"),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            extract(&WRITE_COLUMNS, &[]),
            Some(key),
            400,
            "INVALID_EXTRACT",
        ),
        (
            path.clone(),
            good.clone(),
            None,
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            path.clone(),
            good.clone(),
            Some("not a key!"),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            journal_path(&ods, "1234567890"),
            good.clone(),
            Some(key),
            400,
            "INVALID_NHS_NUMBER",
        ),
        (
            journal_path(&ods, "9000000009"),
            good.clone(),
            Some(key),
            404,
            "PATIENT_NOT_FOUND",
        ),
        (
            journal_path(&emis_ods, DEMO),
            good.clone(),
            Some(key),
            404,
            "PRACTICE_NOT_FOUND",
        ),
    ];
    for (p, body, k, status, code) in cases {
        let headers: Vec<(&str, &str)> = k
            .map(|k| vec![("X-Vision-Idempotency-Key", k)])
            .unwrap_or_default();
        let a = send(sim.addr, "POST", &p, &headers, &body).await;
        assert_eq!(a.status, status, "{code}: {body:?} → {}", a.text());
        assert!(
            a.text().starts_with(&format!("ERROR|{code}|")),
            "{body:?}: {}",
            a.text()
        );
        assert_eq!(a.text().matches("\r\n").count(), 1, "one error line");
    }
    assert_eq!(
        get(sim.addr, &path).await.text(),
        before,
        "no refused write changed the journal"
    );
    // Nor did any of them use up the key.
    let a = send(
        sim.addr,
        "POST",
        &path,
        &[("X-Vision-Idempotency-Key", key)],
        &good,
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    // Writes go to their own endpoints only.
    let a = send(sim.addr, "PUT", &path, &[], &good).await;
    assert_eq!(a.status, 405);
    assert!(a.text().starts_with("ERROR|METHOD_NOT_ALLOWED|"));
    sim.shutdown().await;
}

/// A write whose answer is lost (a fault) has still happened: the retry says so.
#[tokio::test]
async fn a_write_whose_answer_is_lost_is_answered_on_retry() {
    let store = store();
    let ods = first_vision_ods(&store);
    let sim = start_vision(store, loopback().await).await.unwrap();
    let path = journal_path(&ods, DEMO);
    let body = extract(&WRITE_COLUMNS, &[BP]);
    let key = [("X-Vision-Idempotency-Key", "lost-answer")];
    sim.set_fault(Fault::Status(503));
    let lost = send(sim.addr, "POST", &path, &key, &body).await;
    assert_eq!(lost.status, 503);
    assert!(lost.text().starts_with("ERROR|SERVICE_UNAVAILABLE|"));
    sim.set_fault(Fault::None);
    let retry = send(sim.addr, "POST", &path, &key, &body).await;
    assert_eq!(retry.status, 200, "already recorded: {}", retry.text());
    assert_eq!(field(retry.text(), 0, "VALUE1"), "131");
    sim.shutdown().await;
}

fn contact_row<'a>(last_modified: &'a str, language: &'a str) -> Vec<&'a str> {
    vec![
        "01632 960123",
        "07700 900456",
        "a|b@example.com",
        "12 Harness Row",
        "",
        "Testville",
        "Leeds",
        "West Yorkshire",
        "LS1 4AP",
        language,
        last_modified,
    ]
}

/// Like [`extract`], quoting fields that hold `|`.
fn quoted_extract(columns: &[&str], row: &[&str]) -> String {
    let fields: Vec<String> = row
        .iter()
        .map(|f| {
            if f.contains('|') {
                format!("\"{f}\"")
            } else {
                (*f).to_owned()
            }
        })
        .collect();
    format!("{}\r\n{}\r\nEOF|1\r\n", columns.join("|"), fields.join("|"))
}

#[tokio::test]
async fn contact_updates_check_last_modified() {
    let store = store();
    let ods = first_vision_ods(&store);
    let language = store
        .patient(&ods, DEMO)
        .map(|(_, p)| p.language.unwrap().to_ascii_uppercase())
        .unwrap();
    let sim = start_vision(store, loopback().await).await.unwrap();
    let patient_path = format!("/vision/practices/{ods}/patients/{DEMO}");
    let contact_path = format!("{patient_path}/contact");
    let before = get(sim.addr, &patient_path).await.text().to_owned();
    assert_eq!(
        field(&before, 0, "MAIN_LANGUAGE"),
        language,
        "upper-case ISO 639-1"
    );
    let old = field(&before, 0, "LAST_MODIFIED").to_owned();
    assert_eq!(old.len(), 14);

    let body = quoted_extract(&CONTACT_COLUMNS, &contact_row(&old, "CY"));
    let a = send(sim.addr, "PUT", &contact_path, &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().starts_with(&CONTACT_ANSWER_COLUMNS.join("|")));
    assert_eq!(field(a.text(), 0, "NHS_NUMBER"), DEMO);
    assert_eq!(field(a.text(), 0, "PID"), field(&before, 0, "PID"));
    let new = field(a.text(), 0, "LAST_MODIFIED").to_owned();
    assert!(new > old, "{new} after {old}");

    let after = get(sim.addr, &patient_path).await.text().to_owned();
    assert_eq!(field(&after, 0, "LAST_MODIFIED"), new);
    assert_eq!(field(&after, 0, "MAIN_LANGUAGE"), "CY");
    assert_eq!(field(&after, 0, "HOME_PHONE"), "01632 960123");
    assert_eq!(field(&after, 0, "MOBILE_PHONE"), "07700 900456");
    assert!(
        after.contains("|\"a|b@example.com\"|"),
        "quoted on the way out too"
    );
    assert_eq!(field(&after, 0, "ADDRESS1"), "12 Harness Row");
    assert_eq!(field(&after, 0, "TOWN"), "Leeds");
    assert_eq!(field(&after, 0, "POSTCODE"), "LS1 4AP");

    // The same update against the old LAST_MODIFIED is refused and changes nothing.
    let stale = quoted_extract(&CONTACT_COLUMNS, &contact_row(&old, "PL"));
    let a = send(sim.addr, "PUT", &contact_path, &[], &stale).await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.text(),
        format!(
            "ERROR|RECORD_MODIFIED|The record was modified since the LAST_MODIFIED given; it is now {new}\r\n"
        )
    );
    assert_eq!(get(sim.addr, &patient_path).await.text(), after);

    // Refusals of every other kind change nothing either.
    let mut no_language = CONTACT_COLUMNS.to_vec();
    no_language.retain(|c| *c != "MAIN_LANGUAGE");
    let mut short_row = contact_row(&new, "PL");
    short_row.remove(9);
    let plain_row = contact_row(&new, "PL").join("|").replace("a|b", "ab");
    let two_rows = format!(
        "{}\r\n{plain_row}\r\n{plain_row}\r\nEOF|2\r\n",
        CONTACT_COLUMNS.join("|"),
    );
    let cases = [
        (
            contact_path.clone(),
            quoted_extract(&CONTACT_COLUMNS, &contact_row(&new, "Polish!")),
            422,
            "INVALID_FIELD",
        ),
        (
            contact_path.clone(),
            quoted_extract(&CONTACT_COLUMNS, &contact_row("2024", "PL")),
            400,
            "INVALID_EXTRACT",
        ),
        (
            contact_path.clone(),
            quoted_extract(&no_language, &short_row),
            400,
            "INVALID_EXTRACT",
        ),
        (contact_path.clone(), two_rows, 400, "INVALID_EXTRACT"),
        (
            format!("/vision/practices/{ods}/patients/9000000009/contact"),
            quoted_extract(&CONTACT_COLUMNS, &contact_row(&new, "PL")),
            404,
            "PATIENT_NOT_FOUND",
        ),
    ];
    for (p, body, status, code) in cases {
        let a = send(sim.addr, "PUT", &p, &[], &body).await;
        assert_eq!(a.status, status, "{code}: {}", a.text());
        assert!(
            a.text().starts_with(&format!("ERROR|{code}|")),
            "{}",
            a.text()
        );
    }
    assert_eq!(get(sim.addr, &patient_path).await.text(), after);

    // Empty fields clear: no phones, no email, no address, no language.
    let cleared = extract(
        &CONTACT_COLUMNS,
        &[&["", "", "", "", "", "", "", "", "", "", &new]],
    );
    let a = send(sim.addr, "PUT", &contact_path, &[], &cleared).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let now = get(sim.addr, &patient_path).await.text().to_owned();
    for c in [
        "HOME_PHONE",
        "MOBILE_PHONE",
        "EMAIL",
        "ADDRESS1",
        "TOWN",
        "POSTCODE",
        "MAIN_LANGUAGE",
    ] {
        assert_eq!(field(&now, 0, c), "", "{c}");
    }
    sim.shutdown().await;
}
