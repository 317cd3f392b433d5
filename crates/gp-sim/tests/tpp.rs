#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The SystmOne simulator over real HTTP, checked with a real XML parser: the record
//! format, paging, not-found answers and fault injection.

mod support;

use std::time::Duration;

use gp_sim::{Fault, SystemKind, start_tpp};
use support::*;

fn tpp_practices(store: &gp_sim::SimStore) -> Vec<String> {
    store.read(|p| {
        p.practices
            .iter()
            .filter(|pr| pr.system == SystemKind::Tpp)
            .map(|pr| pr.ods.clone())
            .collect()
    })
}

fn record_path(ods: &str, nhs: &str, query: &str) -> String {
    format!("/systmone/api/v1/organisations/{ods}/patients/{nhs}/record{query}")
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
}

fn paging(doc: &roxmltree::Document) -> (u32, u32, u32) {
    let p = doc
        .descendants()
        .find(|n| n.has_tag_name("Paging"))
        .unwrap();
    let a = |k| p.attribute(k).unwrap().parse().unwrap();
    (a("Page"), a("PageSize"), a("TotalEvents"))
}

/// `EventUID`s of the top-level events on a page.
fn top_events(doc: &roxmltree::Document) -> Vec<String> {
    let clinical = doc
        .descendants()
        .find(|n| n.has_tag_name("Clinical"))
        .unwrap();
    clinical
        .children()
        .filter(|n| n.has_tag_name("Event"))
        .map(|n| n.attribute("EventUID").unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn serves_the_demo_record() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let a = get_with(
        sim.addr,
        &record_path(&ods, "9690937278", ""),
        "X-Correlation-Id: corr-1\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/xml"));
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));

    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name("PatientRecord"));
    assert_eq!(child_text(root, "OrganisationID"), Some(ods.as_str()));
    assert!(child_text(root, "PatientUID").is_some());
    let (page, size, total) = paging(&doc);
    assert_eq!((page, size), (1, 100));
    assert_eq!(top_events(&doc).len() as u32, total.min(100));

    let identity = doc
        .descendants()
        .find(|n| n.has_tag_name("Identity"))
        .unwrap();
    assert_eq!(child_text(identity, "NHSNumber"), Some("9690937278"));
    let demo = doc
        .descendants()
        .find(|n| n.has_tag_name("Demographics"))
        .unwrap();
    assert!(child_text(demo, "Surname").is_some());
    assert!(matches!(
        child_text(demo, "Sex"),
        Some("Male" | "Female" | "Unknown" | "Indeterminate")
    ));
    let dob = demo
        .children()
        .find(|n| n.has_tag_name("DateOfBirth"))
        .unwrap();
    assert_eq!(dob.attribute("DatePrecision"), Some("Date"));
    assert!(dob.text().unwrap().ends_with("T00:00:00Z"));
    let updated = child_text(demo, "LastUpdated").unwrap();
    assert!(updated.len() == 20 && updated.ends_with('Z'), "{updated}");
    let flags = doc
        .descendants()
        .find(|n| n.has_tag_name("SharingFlags"))
        .unwrap();
    assert_eq!(flags.attribute("Sensitive"), Some("false"));
    assert_eq!(flags.attribute("ThirdPartyDissent"), Some("false"));

    // Every kind of entry, consultations grouping events, codes mostly CTV3.
    for tag in [
        "Consultation",
        "ClinicalCode",
        "Medication",
        "Vaccination",
        "Problem",
    ] {
        assert!(doc.descendants().any(|n| n.has_tag_name(tag)), "no {tag}");
    }
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("ClinicalCode") && n.attribute("IsAllergy") == Some("true"))
    );
    assert!(doc.descendants().any(|n| n.has_tag_name("Event")
        && n.parent().is_some_and(|p| p.has_tag_name("Event"))));
    let schemes: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Code"))
        .map(|n| n.attribute("Scheme").unwrap())
        .collect();
    assert!(schemes.contains(&"CTV3") && schemes.contains(&"DMD"));
    assert!(
        schemes
            .iter()
            .all(|s| ["CTV3", "Snomed", "DMD"].contains(s))
    );
    for e in doc.descendants().filter(|n| n.has_tag_name("Event")) {
        let when = e.attribute("DateTime").unwrap();
        assert!(when.len() == 20 && when.ends_with('Z'), "{when}");
        assert!(matches!(
            e.attribute("DatePrecision"),
            None | Some("Year" | "Month" | "Date")
        ));
        assert!(matches!(
            e.attribute("Confidential"),
            Some("true" | "false")
        ));
        assert!(e.attribute("EventUID").is_some() && e.attribute("DoneBy").is_some());
    }
    let units: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Units"))
        .filter_map(|n| n.text())
        .collect();
    assert!(units.contains(&"mm[Hg]"));
    // The usual GP is a member of staff.
    let gp = demo
        .children()
        .find(|n| n.has_tag_name("UsualGP"))
        .unwrap()
        .attribute("StaffUID")
        .unwrap();
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("StaffMember") && n.attribute("StaffUID") == Some(gp))
    );
    assert_eq!(sim.requests(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_cover_the_journal_exactly_once() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let fetch = |page: u32, size: u32| {
        let path = record_path(&ods, "9690937278", &format!("?page={page}&pageSize={size}"));
        async move { get(sim.addr, &path).await }
    };
    let all = fetch(1, 100).await;
    let doc = roxmltree::Document::parse(all.text()).unwrap();
    let (_, _, total) = paging(&doc);
    let everything = top_events(&doc);
    assert!(total >= 4, "the demo journal has several events ({total})");
    assert_eq!(everything.len() as u32, total);

    let mut walked = Vec::new();
    let pages = total.div_ceil(3);
    for page in 1..=pages {
        let a = fetch(page, 3).await;
        assert_eq!(a.status, 200);
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert_eq!(paging(&doc), (page, 3, total));
        let events = top_events(&doc);
        assert!(!events.is_empty() && events.len() <= 3);
        // Demographics are on every page.
        assert!(a.text().contains("<NHSNumber>9690937278</NHSNumber>"));
        walked.extend(events);
    }
    assert_eq!(walked, everything, "pages in order, no gaps, no repeats");
    // Past the end: an empty page, still with its paging.
    let past = fetch(pages + 1, 3).await;
    let doc = roxmltree::Document::parse(past.text()).unwrap();
    assert_eq!(paging(&doc), (pages + 1, 3, total));
    assert!(top_events(&doc).is_empty());

    for bad in ["?pageSize=101", "?pageSize=0", "?page=0", "?page=x"] {
        let a = get(sim.addr, &record_path(&ods, "9690937278", bad)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(
            a.text()
                .contains("<ErrorCode>INVALID_PARAMETER</ErrorCode>")
        );
    }
}

#[tokio::test]
async fn flags_are_rendered() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let (sensitive, dissent) = store.read(|p| {
        let ps: Vec<_> = p.patients.iter().filter(|x| x.practice == ods).collect();
        (
            ps[gp_sim::SENSITIVE_INDEX].nhs_number.clone(),
            ps[gp_sim::DISSENT_INDEX].nhs_number.clone(),
        )
    });
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let a = get(sim.addr, &record_path(&ods, &sensitive, "")).await;
    assert!(a.text().contains("Sensitive=\"true\""));
    let a = get(sim.addr, &record_path(&ods, &dissent, "")).await;
    assert!(a.text().contains("ThirdPartyDissent=\"true\""));
}

#[tokio::test]
async fn not_found_and_invalid() {
    let store = store();
    let tpp = tpp_practices(&store);
    let emis_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|x| x.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    });
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let code = |a: &Answer| {
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert!(doc.root_element().has_tag_name("ErrorResponse"));
        assert!(child_text(doc.root_element(), "Description").is_some());
        child_text(doc.root_element(), "ErrorCode")
            .unwrap()
            .to_owned()
    };
    // 9434765919: a valid NHS number nobody in the population has.
    let a = get(sim.addr, &record_path(&tpp[0], "9434765919", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    // The demo patient at another TPP practice.
    let a = get(sim.addr, &record_path(&tpp[1], "9690937278", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    // An EMIS practice is unknown to SystmOne.
    let a = get(sim.addr, &record_path(&emis_ods, "9000000009", "")).await;
    assert_eq!(
        (a.status, code(&a).as_str()),
        (404, "ORGANISATION_NOT_FOUND")
    );
    let a = get(sim.addr, &record_path(&tpp[0], "9000000001", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (400, "INVALID_NHS_NUMBER"));
    let a = get(sim.addr, "/systmone/api/v1/nowhere").await;
    assert_eq!((a.status, code(&a).as_str()), (404, "NOT_FOUND"));

    let a = get(sim.addr, "/systmone/api/v1/health").await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<Status>OK</Status>"));
    assert_eq!(sim.requests(), 5, "health probes are not counted");
}

#[tokio::test]
async fn faults_behave_as_described() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let path = record_path(&ods, "9690937278", "?page=1&pageSize=100");

    sim.set_fault(Fault::Status(503));
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 503);
    assert!(
        a.text()
            .contains("<ErrorCode>SERVICE_UNAVAILABLE</ErrorCode>")
    );
    assert_eq!(get(sim.addr, "/systmone/api/v1/health").await.status, 200);

    sim.set_fault(Fault::Garbage);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(&String::from_utf8_lossy(&a.body)).is_err());

    sim.set_fault(Fault::Truncated);
    let a = get(sim.addr, &path).await;
    assert!(roxmltree::Document::parse(a.text()).is_err());

    sim.set_fault(Fault::MisEncoded);
    let a = get(sim.addr, &path).await;
    assert!(std::str::from_utf8(&a.body).is_err());

    sim.set_fault(Fault::MissingNhsNumber);
    let a = get(sim.addr, &path).await;
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(doc.descendants().any(|n| n.has_tag_name("Identity")));
    assert!(!doc.descendants().any(|n| n.has_tag_name("NHSNumber")));

    sim.set_fault(Fault::Reset);
    let r = get_with(sim.addr, &path, "", Duration::from_secs(2)).await;
    assert!(r.is_err() && r.err().as_deref() != Some("timed out"));

    sim.set_fault(Fault::Hang);
    let r = get_with(sim.addr, &path, "", Duration::from_millis(300)).await;
    assert_eq!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::None);
    assert_eq!(get(sim.addr, &path).await.status, 200);
    sim.shutdown().await;
}

// ---- write-back ----------------------------------------------------------------------

/// Sends `method path` with an XML (or `content_type`) body over a raw connection.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
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
}

const XML: &str = "application/xml";
const DEMO: &str = "9690937278";

fn events_path(ods: &str, nhs: &str) -> String {
    format!("/systmone/api/v1/organisations/{ods}/patients/{nhs}/events")
}

fn contact_path(ods: &str, nhs: &str) -> String {
    format!("/systmone/api/v1/organisations/{ods}/patients/{nhs}/demographics/contact")
}

/// A `RecordEventsRequest` of `(CTV3 code, value, units)` measurements.
fn record_events(key: &str, date_time: &str, codes: &[(&str, &str, &str)]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\"?>\n<RecordEventsRequest ExternalReference=\"{key}\" DateTime=\"{date_time}\">"
    );
    for (code, value, units) in codes {
        xml.push_str(&format!(
            "<ClinicalCode IsAllergy=\"false\"><Code Scheme=\"CTV3\">{code}</Code><Value>{value}</Value><Units>{units}</Units></ClinicalCode>"
        ));
    }
    xml.push_str("</RecordEventsRequest>");
    xml
}

const BP: [(&str, &str, &str); 2] = [("2469.", "131", "mm[Hg]"), ("246A.", "84", "mm[Hg]")];

/// `(ErrorCode, Description)` of an ErrorResponse.
fn native_error(a: &Answer) -> (u16, String) {
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name("ErrorResponse"), "{}", a.text());
    assert!(child_text(root, "Description").is_some());
    (a.status, child_text(root, "ErrorCode").unwrap().to_owned())
}

fn event_uids(a: &Answer) -> Vec<String> {
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(doc.root_element().has_tag_name("RecordEventsResponse"));
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("Event"))
        .map(|n| n.attribute("EventUID").unwrap().to_owned())
        .collect()
}

/// The whole record of the demo patient, as one page.
async fn demo_record(sim: &gp_sim::SimHandle, ods: &str) -> String {
    let a = get(sim.addr, &record_path(ods, DEMO, "")).await;
    assert_eq!(a.status, 200);
    a.text().to_owned()
}

#[tokio::test]
async fn recorded_events_are_idempotent_on_the_external_reference() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let before = demo_record(&sim, &ods).await;
    let total = |xml: &str| paging(&roxmltree::Document::parse(xml).unwrap()).2;

    let body = record_events("supplier-key-1", "2026-07-14T07:32:05Z", &BP);
    let first = send(sim.addr, "POST", &events_path(&ods, DEMO), XML, &body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("content-type"), Some(XML));
    assert!(first.text().contains("Created=\"true\""));
    let ids = event_uids(&first);
    assert_eq!(ids.len(), 2);

    let again = send(sim.addr, "POST", &events_path(&ods, DEMO), XML, &body).await;
    assert_eq!(again.status, 200);
    assert!(again.text().contains("Created=\"false\""));
    assert_eq!(event_uids(&again), ids, "the same events are answered");

    let after = demo_record(&sim, &ods).await;
    assert_eq!(total(&after), total(&before) + 2, "recorded once");
    let doc = roxmltree::Document::parse(&after).unwrap();
    for (id, (code, value, units)) in ids.iter().zip(BP) {
        let event = doc
            .descendants()
            .find(|n| n.has_tag_name("Event") && n.attribute("EventUID") == Some(id))
            .unwrap();
        // Outside any consultation, at the instant sent, and with no practice author.
        assert!(event.parent().unwrap().has_tag_name("Clinical"));
        assert_eq!(event.attribute("DateTime"), Some("2026-07-14T07:32:05Z"));
        assert_eq!(event.attribute("DatePrecision"), None);
        assert_eq!(event.attribute("DoneBy"), None);
        assert_eq!(event.attribute("Confidential"), Some("false"));
        let cc = event
            .children()
            .find(|n| n.has_tag_name("ClinicalCode"))
            .unwrap();
        let code_el = cc.children().find(|n| n.has_tag_name("Code")).unwrap();
        assert_eq!(code_el.attribute("Scheme"), Some("CTV3"));
        assert_eq!(code_el.text(), Some(code));
        assert_eq!(child_text(cc, "Value"), Some(value));
        assert_eq!(child_text(cc, "Units"), Some(units));
    }
}

#[tokio::test]
async fn utc_times_are_kept_across_the_clock_change() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    // GMT, BST, and the last minutes before midnight UTC in summer (next local day).
    for (i, when) in [
        "2026-01-05T10:00:00Z",
        "2026-07-14T07:32:05Z",
        "2026-06-30T23:30:00Z",
    ]
    .iter()
    .enumerate()
    {
        let body = record_events(&format!("clock-{i}"), when, &[("22A..", "72.4", "kg")]);
        let a = send(sim.addr, "POST", &events_path(&ods, DEMO), XML, &body).await;
        assert_eq!(a.status, 201, "{}", a.text());
        let id = event_uids(&a).remove(0);
        let record = demo_record(&sim, &ods).await;
        let doc = roxmltree::Document::parse(&record).unwrap();
        let event = doc
            .descendants()
            .find(|n| n.attribute("EventUID") == Some(id.as_str()))
            .unwrap();
        assert_eq!(event.attribute("DateTime"), Some(*when));
    }
}

#[tokio::test]
async fn refused_records_change_nothing() {
    let store = store();
    let tpp = tpp_practices(&store);
    let ods = tpp[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let before = demo_record(&sim, &ods).await;
    let at = |nhs: &str| events_path(&ods, nhs);
    let ok_body = record_events("refused-1", "2026-07-14T07:32:05Z", &BP);
    let cases: Vec<(String, &str, String, (u16, &str))> = vec![
        // An unknown CTV3 code, a CTV3 code that is not a measurement, a wrong unit.
        (
            at(DEMO),
            XML,
            record_events("refused-1", "2026-07-14T07:32:05Z", &[("XXXX.", "1", "kg")]),
            (422, "INVALID_CODE"),
        ),
        (
            at(DEMO),
            XML,
            record_events("refused-1", "2026-07-14T07:32:05Z", &[("X40J5", "1", "kg")]),
            (422, "INVALID_CODE"),
        ),
        (
            at(DEMO),
            XML,
            record_events(
                "refused-1",
                "2026-07-14T07:32:05Z",
                &[("22A..", "72.4", "g")],
            ),
            (422, "INVALID_UNITS"),
        ),
        // The second reading is refused, so the first is not recorded either.
        (
            at(DEMO),
            XML,
            record_events(
                "refused-1",
                "2026-07-14T07:32:05Z",
                &[("2469.", "131", "mm[Hg]"), ("246A.", "84", "kPa")],
            ),
            (422, "INVALID_UNITS"),
        ),
        // Not a plausible value (the store's check).
        (
            at(DEMO),
            XML,
            record_events(
                "refused-1",
                "2026-07-14T07:32:05Z",
                &[("22A..", "-3", "kg")],
            ),
            (422, "INVALID_EVENT"),
        ),
        (
            at(DEMO),
            XML,
            ok_body.replace("Scheme=\"CTV3\"", "Scheme=\"Snomed\""),
            (422, "INVALID_CODE"),
        ),
        // Not the documented request.
        (
            at(DEMO),
            XML,
            ok_body.replace(" DateTime=\"2026-07-14T07:32:05Z\"", ""),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            ok_body.replace("2026-07-14T07:32:05Z", "2026-07-14T08:32:05+01:00"),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            ok_body.replace("refused-1", "not a key!"),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            ok_body.replace("<Value>131</Value>", "<Value>high</Value>"),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            ok_body[..ok_body.len() / 2].to_owned(),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            "<!DOCTYPE x [<!ENTITY a \"b\">]><RecordEventsRequest/>".into(),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            XML,
            "<RecordEventsRequest ExternalReference=\"k\" DateTime=\"2026-07-14T07:32:05Z\"/>"
                .into(),
            (400, "INVALID_REQUEST"),
        ),
        (
            at(DEMO),
            "application/json",
            ok_body.clone(),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
        // Who it is for.
        (
            at("9000000001"),
            XML,
            ok_body.clone(),
            (400, "INVALID_NHS_NUMBER"),
        ),
        (
            at("9434765919"),
            XML,
            ok_body.clone(),
            (404, "PATIENT_NOT_FOUND"),
        ),
        (
            events_path(&tpp[1], DEMO),
            XML,
            ok_body.clone(),
            (404, "PATIENT_NOT_FOUND"),
        ),
        (
            events_path("Z99999", DEMO),
            XML,
            ok_body.clone(),
            (404, "ORGANISATION_NOT_FOUND"),
        ),
    ];
    for (path, content_type, body, (status, code)) in &cases {
        let a = send(sim.addr, "POST", path, content_type, body).await;
        assert_eq!(
            native_error(&a),
            (*status, (*code).to_owned()),
            "{body}\n{}",
            a.text()
        );
    }
    assert_eq!(
        demo_record(&sim, &ods).await,
        before,
        "nothing was recorded"
    );
    // The key of the refused requests is still free.
    let a = send(sim.addr, "POST", &at(DEMO), XML, &ok_body).await;
    assert_eq!(a.status, 201);
    // Reading the events path is not allowed.
    let a = get(sim.addr, &at(DEMO)).await;
    assert_eq!(native_error(&a), (405, "METHOD_NOT_ALLOWED".to_owned()));
}

fn demographics(record: &str) -> (String, Option<String>) {
    let doc = roxmltree::Document::parse(record).unwrap();
    let demo = doc
        .descendants()
        .find(|n| n.has_tag_name("Demographics"))
        .unwrap();
    let language = demo
        .children()
        .find(|n| n.has_tag_name("MainSpokenLanguage"))
        .map(|n| n.attribute("Code").unwrap().to_owned());
    (
        child_text(demo, "LastUpdated").unwrap().to_owned(),
        language,
    )
}

#[tokio::test]
async fn the_main_spoken_language_is_rendered() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let patients: Vec<(String, Option<String>)> = store.read(|p| {
        p.patients
            .iter()
            .filter(|x| x.practice == ods)
            .take(12)
            .map(|x| (x.nhs_number.clone(), x.language.clone()))
            .collect()
    });
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for (nhs, language) in patients {
        let a = get(sim.addr, &record_path(&ods, &nhs, "")).await;
        assert_eq!(demographics(a.text()).1, language, "{nhs}");
        seen.insert(language);
    }
    assert!(seen.len() > 1, "several languages: {seen:?}");
    let a = get(sim.addr, &record_path(&ods, DEMO, "")).await;
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let el = doc
        .descendants()
        .find(|n| n.has_tag_name("MainSpokenLanguage"))
        .unwrap();
    // Spelt out here rather than read from the simulators' table, so the table is tested.
    let name = match el.attribute("Code").unwrap() {
        "en" => "English",
        "cy" => "Welsh",
        "pl" => "Polish",
        other => panic!("the population records en, cy and pl, not {other}"),
    };
    assert_eq!(el.text(), Some(name), "the text is the language's name");
}

fn contact_update(last_updated: &str, mobile: &str, language: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ContactDetailsUpdate>\
         <LastUpdated>{last_updated}</LastUpdated>\
         <Address><AddressLine1>12 Harness Row</AddressLine1><AddressLine2>Testville</AddressLine2><AddressLine3/><AddressLine4>Leeds</AddressLine4><PostCode>LS1 4AP</PostCode></Address>\
         <HomeTelephone>01632 960123</HomeTelephone><MobileTelephone>{mobile}</MobileTelephone>\
         <Email>o&apos;brien@example.com</Email><MainSpokenLanguage Code=\"{language}\"/>\
         </ContactDetailsUpdate>"
    )
}

#[tokio::test]
async fn contact_updates_need_the_current_last_updated() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store.clone(), loopback().await).await.unwrap();
    let path = contact_path(&ods, DEMO);
    let before = demo_record(&sim, &ods).await;
    let (version, _) = demographics(&before);

    let a = send(
        sim.addr,
        "PUT",
        &path,
        XML,
        &contact_update(&version, "07700 900456", "cy"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(
        doc.root_element()
            .has_tag_name("ContactDetailsUpdateResponse")
    );
    let new_version = child_text(doc.root_element(), "LastUpdated")
        .unwrap()
        .to_owned();
    assert_ne!(new_version, version);

    let after = demo_record(&sim, &ods).await;
    assert_eq!(
        demographics(&after),
        (new_version.clone(), Some("cy".into()))
    );
    for shown in [
        "<AddressLine1>12 Harness Row</AddressLine1>",
        "<AddressLine2>Testville</AddressLine2>",
        "<AddressLine3/>",
        "<AddressLine4>Leeds</AddressLine4>",
        "<PostCode>LS1 4AP</PostCode>",
        "<HomeTelephone>01632 960123</HomeTelephone>",
        "<MobileTelephone>07700 900456</MobileTelephone>",
        "<Email>o&apos;brien@example.com</Email>",
        "<MainSpokenLanguage Code=\"cy\">Welsh</MainSpokenLanguage>",
    ] {
        assert!(after.contains(shown), "{shown} in\n{after}");
    }
    let held = store.patient_by_nhs(DEMO).unwrap();
    assert_eq!(held.address.county, "", "SystmOne keeps no county");
    assert_eq!(held.email.as_deref(), Some("o'brien@example.com"));

    // The version it was read at is now stale: refused, nothing changes.
    let stale = send(
        sim.addr,
        "PUT",
        &path,
        XML,
        &contact_update(&version, "07700 900999", "pl"),
    )
    .await;
    assert_eq!(native_error(&stale), (409, "RECORD_MODIFIED".to_owned()));
    assert!(
        stale.text().contains(&new_version),
        "names the current version"
    );
    assert_eq!(demo_record(&sim, &ods).await, after);

    // Refused bodies change nothing either.
    let refused = [
        (
            contact_update(&new_version, "07700 900999", "Welsh!"),
            XML,
            (422, "INVALID_VALUE"),
        ),
        (
            contact_update(&new_version, "07700 900999", "cy").replace("o&apos;brien@", "nobody"),
            XML,
            (422, "INVALID_VALUE"),
        ),
        (
            contact_update(&new_version, "07700 900999", "cy")
                .replace(&format!("<LastUpdated>{new_version}</LastUpdated>"), ""),
            XML,
            (400, "INVALID_REQUEST"),
        ),
        (
            contact_update("yesterday", "07700 900999", "cy"),
            XML,
            (400, "INVALID_REQUEST"),
        ),
        (
            contact_update(&new_version, "07700 900999", "cy"),
            "text/plain",
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
    ];
    for (body, content_type, (status, code)) in &refused {
        let a = send(sim.addr, "PUT", &path, content_type, body).await;
        assert_eq!(native_error(&a), (*status, (*code).to_owned()), "{body}");
    }
    let a = send(
        sim.addr,
        "PUT",
        &contact_path(&ods, "9434765919"),
        XML,
        &contact_update(&new_version, "07700 900999", "cy"),
    )
    .await;
    assert_eq!(native_error(&a), (404, "PATIENT_NOT_FOUND".to_owned()));
    assert_eq!(demo_record(&sim, &ods).await, after);

    // No address, phones, email or language: the patient has none.
    let empty = format!(
        "<ContactDetailsUpdate><LastUpdated>{new_version}</LastUpdated></ContactDetailsUpdate>"
    );
    let a = send(sim.addr, "PUT", &path, XML, &empty).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cleared = demo_record(&sim, &ods).await;
    assert_eq!(demographics(&cleared).1, None);
    for gone in [
        "HomeTelephone",
        "MobileTelephone",
        "<Email>",
        "MainSpokenLanguage",
    ] {
        assert!(!cleared.contains(gone), "{gone}");
    }
    assert!(cleared.contains("<AddressLine1/>"));
    // Other methods on the path are refused.
    let a = get(sim.addr, &path).await;
    assert_eq!(native_error(&a), (405, "METHOD_NOT_ALLOWED".to_owned()));
}
