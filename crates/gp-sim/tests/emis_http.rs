#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The EMIS simulator over real HTTP, checked with a real XML parser.

mod support;

use std::time::Duration;

use gp_sim::{Fault, SystemKind, start_emis};
use support::*;

const NS: &str = "http://www.e-mis.com/emisopen/MedicalRecord";

fn first_emis_ods(store: &gp_sim::SimStore) -> String {
    store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    })
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.has_tag_name((NS, name)))
        .and_then(|n| n.text())
}

#[tokio::test]
async fn serves_the_demo_record() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/medicalrecord");
    let a = get_with(sim.addr, &path, "X-Correlation-Id: corr-1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n", Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/xml"));
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));
    assert!(a.header("traceparent").is_some());

    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((NS, "MedicalRecord")));
    let reg = root
        .children()
        .find(|n| n.has_tag_name((NS, "Registration")))
        .unwrap();
    assert_eq!(child_text(reg, "NhsNumber"), Some("900 000 0009"));
    assert_eq!(child_text(reg, "Confidential"), Some("false"));
    assert_eq!(child_text(reg, "SharingDissent"), Some("false"));
    let dob = child_text(reg, "DateOfBirth").unwrap();
    assert!(
        dob.len() == 10 && &dob[2..3] == "/" && &dob[5..6] == "/",
        "{dob}"
    );
    assert!(matches!(child_text(reg, "Sex"), Some("M" | "F")));
    let org = root
        .children()
        .find(|n| n.has_tag_name((NS, "Organisation")))
        .unwrap();
    assert_eq!(child_text(org, "OdsCode"), Some(ods.as_str()));

    // The usual GP is one of the people listed.
    let gp = child_text(reg, "UsualGpID").unwrap();
    assert!(
        doc.descendants()
            .filter(|n| n.has_tag_name((NS, "Person")))
            .any(|p| child_text(p, "GUID") == Some(gp))
    );

    let events: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "Event")))
        .collect();
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| child_text(*e, "EventType"))
        .collect();
    for kind in ["Problem", "Observation", "Immunisation"] {
        assert!(kinds.contains(&kind), "no {kind} event");
    }
    let units: Vec<_> = events
        .iter()
        .filter_map(|e| child_text(*e, "Units"))
        .collect();
    assert!(units.contains(&"mm[Hg]"));
    let schemes: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "Scheme")))
        .filter_map(|n| n.text())
        .collect();
    assert!(schemes.contains(&"DMD") && schemes.contains(&"EMISCLINICAL"));
    assert!(
        schemes
            .iter()
            .all(|s| ["READ2", "EMISCLINICAL", "SNOMED", "DMD"].contains(s))
    );
    for part in doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "DatePart")))
    {
        assert!(["Y", "YM", "YMD", "YMDT"].contains(&part.text().unwrap()));
    }
    assert!(doc.descendants().any(|n| n.has_tag_name((NS, "Allergy"))));
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Medication")))
    );
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Consultation")))
    );
    assert_eq!(sim.requests(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn flags_are_rendered() {
    let store = store();
    let ods = first_emis_ods(&store);
    let (sensitive, dissent) = store.read(|p| {
        let ps: Vec<_> = p.patients.iter().filter(|x| x.practice == ods).collect();
        (
            ps[gp_sim::SENSITIVE_INDEX].nhs_number.clone(),
            ps[gp_sim::DISSENT_INDEX].nhs_number.clone(),
        )
    });
    let sim = start_emis(store, loopback().await).await.unwrap();
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/{sensitive}/medicalrecord"),
    )
    .await;
    assert!(a.text().contains("<Confidential>true</Confidential>"));
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/{dissent}/medicalrecord"),
    )
    .await;
    assert!(a.text().contains("<SharingDissent>true</SharingDissent>"));
}

#[tokio::test]
async fn not_found_and_invalid() {
    let store = store();
    let ods = first_emis_ods(&store);
    let (other_emis, tpp_ods) = store.read(|p| {
        let emis: Vec<_> = p
            .practices
            .iter()
            .filter(|x| x.system == SystemKind::Emis)
            .collect();
        let tpp = p
            .practices
            .iter()
            .find(|x| x.system == SystemKind::Tpp)
            .unwrap();
        (emis[1].ods.clone(), tpp.ods.clone())
    });
    let sim = start_emis(store, loopback().await).await.unwrap();
    let code = |a: &Answer| {
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert!(doc.root_element().has_tag_name((NS, "Error")));
        child_text(doc.root_element(), "Code").unwrap().to_owned()
    };

    // 9434765919: a valid NHS number nobody in the population has.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/9434765919/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    assert!(a.text().contains(&format!("registered at {ods}")));

    // The demo patient at the wrong (but real EMIS) practice.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{other_emis}/patients/9000000009/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));

    // A TPP practice is unknown to EMIS.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{tpp_ods}/patients/9690937278/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PRACTICE_NOT_FOUND"));

    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/9000000001/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (400, "INVALID_NHS_NUMBER"));

    let a = get(sim.addr, "/emis/health").await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<Status>OK</Status>"));
}

#[tokio::test]
async fn faults_behave_as_described() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/medicalrecord");

    sim.set_fault(Fault::Status(503));
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 503);
    assert!(a.text().contains("<Code>SERVICE_UNAVAILABLE</Code>"));
    // Health probes are never faulted.
    assert_eq!(get(sim.addr, "/emis/health").await.status, 200);

    sim.set_fault(Fault::Garbage);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(&String::from_utf8_lossy(&a.body)).is_err());

    sim.set_fault(Fault::Truncated);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(a.text()).is_err());

    sim.set_fault(Fault::MisEncoded);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(std::str::from_utf8(&a.body).is_err());

    sim.set_fault(Fault::MissingNhsNumber);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Registration")))
    );
    assert!(!doc.descendants().any(|n| n.has_tag_name((NS, "NhsNumber"))));

    sim.set_fault(Fault::Reset);
    let r = get_with(sim.addr, &path, "", Duration::from_secs(2)).await;
    assert!(r.is_err(), "expected no answer");
    assert_ne!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::Hang);
    let r = get_with(sim.addr, &path, "", Duration::from_millis(300)).await;
    assert_eq!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::None);
    assert_eq!(get(sim.addr, &path).await.status, 200);
    assert_eq!(sim.requests(), 8, "health probes are not counted");

    // Shutdown releases a hung request promptly.
    sim.set_fault(Fault::Hang);
    let addr = sim.addr;
    let p2 = path.clone();
    let hung = tokio::spawn(async move { get_with(addr, &p2, "", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(3), sim.shutdown())
        .await
        .expect("shutdown hung");
    let r = hung.await.unwrap();
    assert!(r.is_err() && r.err().as_deref() != Some("timed out"));
}

// ---- write-back ----------------------------------------------------------------------

/// Sends `method path` with an optional `(content type, body)` and reads the answer.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (head, payload) = match body {
        Some((ct, b)) => (
            format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()),
            b,
        ),
        None => ("Content-Length: 0\r\n".to_owned(), ""),
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Correlation-Id: w-1\r\n{head}\r\n{payload}"
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

fn reading(code: &str, value: &str, units: &str) -> String {
    format!(
        "<Observation><Code><Value>{code}</Value><Scheme>READ2</Scheme><Term>t</Term></Code><NumericValue>{value}</NumericValue><Units>{units}</Units></Observation>"
    )
}

fn batch(key: &str, readings: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- a supplier's reading -->\n<ObservationBatch xmlns=\"{NS}\"><ExternalKey>{key}</ExternalKey><AssignedDate>14/07/2026</AssignedDate><DatePart>YMDT</DatePart><AssignedTime>08:32:05</AssignedTime>{}</ObservationBatch>",
        readings.concat()
    )
}

fn blood_pressure(key: &str) -> String {
    batch(
        key,
        &[
            reading("2469.", "131", "mm[Hg]"),
            reading("246A.", "84", "mm[Hg]"),
        ],
    )
}

/// The native error's `(status, Code)`.
fn native_error(a: &Answer) -> (u16, String) {
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(
        doc.root_element().has_tag_name((NS, "Error")),
        "{}",
        a.text()
    );
    (
        a.status,
        child_text(doc.root_element(), "Code").unwrap().to_owned(),
    )
}

fn record_path(ods: &str, nhs: &str) -> String {
    format!("/emis/practices/{ods}/patients/{nhs}/medicalrecord")
}

/// The `<Event>`s whose GUID is one of `ids`, as `(Code/Value, NumericValue, has AuthorID)`.
fn filed_events(record: &str, ids: &[String]) -> Vec<(String, String, bool)> {
    let doc = roxmltree::Document::parse(record).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name((NS, "Event")))
        .filter(|e| child_text(*e, "GUID").is_some_and(|g| ids.iter().any(|i| i == g)))
        .map(|e| {
            let code = e.children().find(|n| n.has_tag_name((NS, "Code"))).unwrap();
            assert_eq!(child_text(e, "EventType"), Some("Observation"));
            assert_eq!(child_text(e, "AssignedDate"), Some("14/07/2026"));
            assert_eq!(child_text(e, "DatePart"), Some("YMDT"));
            assert_eq!(child_text(e, "AssignedTime"), Some("08:32:05"));
            assert_eq!(child_text(code, "Scheme"), Some("READ2"));
            (
                child_text(code, "Value").unwrap().to_owned(),
                child_text(e, "NumericValue").unwrap().to_owned(),
                e.children().any(|n| n.has_tag_name((NS, "AuthorID"))),
            )
        })
        .collect()
}

fn event_guids(a: &Answer) -> (String, Vec<String>) {
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((NS, "ObservationBatchResult")));
    let ids = root
        .children()
        .filter(|n| n.has_tag_name((NS, "EventGUID")))
        .map(|n| n.text().unwrap().to_owned())
        .collect();
    (child_text(root, "Outcome").unwrap().to_owned(), ids)
}

#[tokio::test]
async fn filing_readings_is_idempotent_on_the_external_key() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/observations");

    let first = send(
        sim.addr,
        "POST",
        &path,
        Some((XML, &blood_pressure("bp-1"))),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("content-type"), Some(XML));
    assert_eq!(first.header("x-correlation-id"), Some("w-1"));
    let (outcome, ids) = event_guids(&first);
    assert_eq!(outcome, "Created");
    assert_eq!(ids.len(), 2);

    let record = get(sim.addr, &record_path(&ods, "9000000009")).await;
    let events = filed_events(record.text(), &ids);
    assert_eq!(
        events,
        [
            ("2469.".to_owned(), "131".to_owned(), false),
            ("246A.".to_owned(), "84".to_owned(), false)
        ],
        "filed as two READ2 readings with no AuthorID"
    );

    // The same key again: nothing new, the first filing's GUIDs.
    let again = send(
        sim.addr,
        "POST",
        &path,
        Some((XML, &blood_pressure("bp-1"))),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        event_guids(&again),
        ("AlreadyFiled".to_owned(), ids.clone())
    );
    assert_eq!(
        get(sim.addr, &record_path(&ods, "9000000009")).await.body,
        record.body,
        "a replay changes nothing"
    );

    // A lost answer (fault after the write) is safe to retry under the same key.
    sim.set_fault(Fault::Status(503));
    let weight = batch("wt-1", &[reading("22A..", "72.4", "kg")]);
    let lost = send(sim.addr, "POST", &path, Some((XML, &weight))).await;
    assert_eq!(native_error(&lost), (503, "SERVICE_UNAVAILABLE".to_owned()));
    sim.set_fault(Fault::None);
    let retry = send(sim.addr, "POST", &path, Some((XML, &weight))).await;
    assert_eq!(retry.status, 200, "filed before the answer was lost");
    let (_, wt) = event_guids(&retry);
    let record = get(sim.addr, &record_path(&ods, "9000000009")).await;
    assert_eq!(
        filed_events(record.text(), &wt),
        [("22A..".to_owned(), "72.4".to_owned(), false)]
    );
}

/// A write that must be refused: path, `(content type, body)`, status and native Code.
type RefusedCase = (String, Option<(&'static str, String)>, u16, &'static str);

#[tokio::test]
async fn refused_readings_change_nothing() {
    let store = store();
    let ods = first_emis_ods(&store);
    let tpp_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|x| x.system == SystemKind::Tpp)
            .unwrap()
            .ods
            .clone()
    });
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/observations");
    let before = get(sim.addr, &record_path(&ods, "9000000009")).await.body;

    // READ2 and SNOMED are the schemes readings are filed with; CTV3 is SystmOne's.
    let wrong_scheme = blood_pressure("k-2").replace(
        "<Value>2469.</Value><Scheme>READ2</Scheme>",
        "<Value>2469.</Value><Scheme>CTV3</Scheme>",
    );
    let cases: Vec<RefusedCase> = vec![
        // Asthma is a Read v2 code, but not a measurement.
        (
            path.clone(),
            Some((XML, batch("k-1", &[reading("H33..", "1", "kg")]))),
            422,
            "UNKNOWN_CODE",
        ),
        (path.clone(), Some((XML, wrong_scheme)), 422, "UNKNOWN_CODE"),
        // A good systolic with a bad diastolic: the whole batch is refused.
        (
            path.clone(),
            Some((
                XML,
                batch(
                    "k-3",
                    &[
                        reading("2469.", "131", "mm[Hg]"),
                        reading("246A.", "84", "kg"),
                    ],
                ),
            )),
            422,
            "UNITS_MISMATCH",
        ),
        (
            path.clone(),
            Some((XML, batch("k-4", &[reading("22A..", "-5", "kg")]))),
            422,
            "INVALID_VALUE",
        ),
        (
            path.clone(),
            Some((XML, batch("k-5", &[reading("22A..", "heavy", "kg")]))),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((XML, blood_pressure("not a key!"))),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((
                XML,
                blood_pressure("k-6").replace("<DatePart>YMDT</DatePart>", ""),
            )),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((
                XML,
                blood_pressure("k-7").replace("14/07/2026", "31/02/2026"),
            )),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((XML, batch("k-8", &[]))),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((
                XML,
                blood_pressure("k-9").replace("</ObservationBatch>", ""),
            )),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some((
                XML,
                blood_pressure("k-10").replace(&format!(" xmlns=\"{NS}\""), ""),
            )),
            400,
            "INVALID_REQUEST",
        ),
        (
            path.clone(),
            Some(("application/json", blood_pressure("k-11"))),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            format!("/emis/practices/{ods}/patients/9000000001/observations"),
            Some((XML, blood_pressure("k-12"))),
            400,
            "INVALID_NHS_NUMBER",
        ),
        (
            format!("/emis/practices/{ods}/patients/9434765919/observations"),
            Some((XML, blood_pressure("k-13"))),
            404,
            "PATIENT_NOT_FOUND",
        ),
        (
            format!("/emis/practices/{tpp_ods}/patients/9000000009/observations"),
            Some((XML, blood_pressure("k-14"))),
            404,
            "PRACTICE_NOT_FOUND",
        ),
    ];
    for (p, body, status, code) in cases {
        let a = send(
            sim.addr,
            "POST",
            &p,
            body.as_ref().map(|(ct, b)| (*ct, b.as_str())),
        )
        .await;
        assert_eq!(
            native_error(&a),
            (status, code.to_owned()),
            "{:?}",
            body.map(|b| b.1)
        );
    }
    let a = send(sim.addr, "GET", &path, None).await;
    assert_eq!(native_error(&a), (405, "METHOD_NOT_ALLOWED".to_owned()));
    let a = send(sim.addr, "PUT", &path, Some((XML, &blood_pressure("k-15")))).await;
    assert_eq!(native_error(&a), (405, "METHOD_NOT_ALLOWED".to_owned()));
    assert_eq!(
        get(sim.addr, &record_path(&ods, "9000000009")).await.body,
        before,
        "no refused write changed the record"
    );
}

fn registration_text(record: &str, path: &[&str]) -> Option<String> {
    let doc = roxmltree::Document::parse(record).unwrap();
    let mut node = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name((NS, "Registration")))?;
    for name in path {
        node = node.children().find(|n| n.has_tag_name((NS, *name)))?;
    }
    node.text().map(str::to_owned)
}

fn contact_update(last_modified: &str, mobile: &str, email: &str) -> String {
    format!(
        "<UpdateContactDetails xmlns=\"{NS}\"><LastModified>{last_modified}</LastModified>\
         <Address><HouseNameFlat/><Street>12 Harness Row</Street><Village>Testville</Village><Town>Leeds</Town><County>West Yorkshire</County><PostCode>LS1 4AP</PostCode></Address>\
         <HomeTelephone/><MobileTelephone>{mobile}</MobileTelephone><Email>{email}</Email>\
         <MainSpokenLanguage><Value>cy</Value></MainSpokenLanguage></UpdateContactDetails>"
    )
}

#[tokio::test]
async fn the_main_spoken_language_is_in_the_registration() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let record = get(sim.addr, &record_path(&ods, "9000000009")).await;
    let code = registration_text(record.text(), &["MainSpokenLanguage", "Value"]).unwrap();
    let term = registration_text(record.text(), &["MainSpokenLanguage", "Term"]).unwrap();
    assert!(
        matches!(
            (code.as_str(), term.as_str()),
            ("en", "English") | ("pl", "Polish") | ("cy", "Welsh")
        ),
        "{code} {term}"
    );
}

#[tokio::test]
async fn contact_updates_need_the_current_last_modified() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/contactdetails");
    let record = get(sim.addr, &record_path(&ods, "9000000009")).await;
    let v1 = registration_text(record.text(), &["LastModified"]).unwrap();

    // Refused writes first: none may change the record.
    let refused = [
        (
            contact_update(&v1, "07700 900456", "not-an-email"),
            422,
            "INVALID_VALUE",
        ),
        (
            contact_update(&v1, "call me", "a@example.com"),
            422,
            "INVALID_VALUE",
        ),
        (
            contact_update("yesterday", "07700 900456", "a@example.com"),
            400,
            "INVALID_REQUEST",
        ),
        (
            contact_update("01/01/2001 00:00:00", "07700 900456", "a@example.com"),
            409,
            "VERSION_CONFLICT",
        ),
        (
            contact_update(&v1, "07700 900456", "a@example.com")
                .replace("<Value>cy</Value>", "<Value>Welsh!</Value>"),
            422,
            "INVALID_VALUE",
        ),
    ];
    for (body, status, code) in &refused {
        let a = send(sim.addr, "PUT", &path, Some((XML, body))).await;
        assert_eq!(native_error(&a), (*status, (*code).to_owned()), "{body}");
    }
    let a = send(
        sim.addr,
        "PUT",
        &format!("/emis/practices/{ods}/patients/9434765919/contactdetails"),
        Some((XML, &contact_update(&v1, "07700 900456", "a@example.com"))),
    )
    .await;
    assert_eq!(native_error(&a), (404, "PATIENT_NOT_FOUND".to_owned()));
    assert_eq!(
        get(sim.addr, &record_path(&ods, "9000000009")).await.body,
        record.body,
        "refused updates changed nothing"
    );

    let a = send(
        sim.addr,
        "PUT",
        &path,
        Some((XML, &contact_update(&v1, "07700 900456", "h.w@example.com"))),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(
        doc.root_element()
            .has_tag_name((NS, "ContactDetailsResult"))
    );
    let v2 = child_text(doc.root_element(), "LastModified")
        .unwrap()
        .to_owned();
    assert_ne!(v2, v1);

    let after = get(sim.addr, &record_path(&ods, "9000000009")).await;
    let t = after.text();
    assert_eq!(registration_text(t, &["LastModified"]), Some(v2.clone()));
    assert_eq!(
        registration_text(t, &["Address", "Street"]).as_deref(),
        Some("12 Harness Row")
    );
    assert_eq!(
        registration_text(t, &["Address", "Village"]).as_deref(),
        Some("Testville")
    );
    assert_eq!(registration_text(t, &["Address", "HouseNameFlat"]), None);
    assert_eq!(registration_text(t, &["HomeTelephone"]), None, "removed");
    assert_eq!(
        registration_text(t, &["MobileTelephone"]).as_deref(),
        Some("07700 900456")
    );
    assert_eq!(
        registration_text(t, &["Email"]).as_deref(),
        Some("h.w@example.com")
    );
    assert_eq!(
        registration_text(t, &["MainSpokenLanguage", "Value"]).as_deref(),
        Some("cy")
    );
    assert_eq!(
        registration_text(t, &["MainSpokenLanguage", "Term"]).as_deref(),
        Some("Welsh")
    );

    // The old LastModified is now stale: refused, nothing changed.
    let a = send(
        sim.addr,
        "PUT",
        &path,
        Some((XML, &contact_update(&v1, "07700 900999", "h.w@example.com"))),
    )
    .await;
    assert_eq!(native_error(&a), (409, "VERSION_CONFLICT".to_owned()));
    assert!(a.text().contains(&v2), "names the current LastModified");
    assert_eq!(
        get(sim.addr, &record_path(&ods, "9000000009")).await.body,
        after.body
    );
    let a = send(sim.addr, "POST", &path, Some((XML, "<x/>"))).await;
    assert_eq!(native_error(&a), (405, "METHOD_NOT_ALLOWED".to_owned()));
}
