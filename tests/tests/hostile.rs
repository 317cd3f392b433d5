//! Hostile input, end to end: each row sends something an attacker or a broken client
//! might, and asserts the status, the Spine code, and — for writes — that the patient's
//! GP record did not change. Rows that need bytes hyper's client refuses to send (CR in
//! a header, conflicting framing, trickled headers) go raw over a `TcpStream`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gp_e2e::{Answer, World};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");
const JSON_PATCH: (&str, &str) = ("content-type", "application/json-patch+json");
const SNOMED: &str = "http://snomed.info/sct";

fn blood_pressure(nhs: &str, reading_id: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": "https://demo-consult.example/readings", "value": reading_id}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "75367002"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": "2026-11-20T08:30:00+00:00",
        "component": [
            {"code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
             "valueQuantity": {"value": 131, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": SNOMED, "code": "271650006"}]},
             "valueQuantity": {"value": 84, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]
    })
}

/// Asserts a refusal's status and Spine code, with the body in the message.
fn refused(row: &str, a: &Answer, status: u16, code: &str) {
    assert_eq!(
        (a.status, a.spine_code().as_str()),
        (status, code),
        "{row}: {}",
        String::from_utf8_lossy(&a.body)
    );
}

/// The gateway's `host:port`.
fn authority(w: &World) -> String {
    let base = &w.manifest().base_url;
    let rest = base.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().to_owned()
}

/// Writes `bytes` on a fresh connection and reads until the server closes it (or
/// `limit` passes). Returns what was read and whether the server closed the connection.
async fn raw(w: &World, bytes: &[u8], limit: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(authority(w)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn hostile_write_bodies_are_refused_and_change_nothing() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    let other = w
        .manifest()
        .patients
        .iter()
        .find(|p| p.nhs_number != nhs && p.flags.is_empty())
        .unwrap()
        .nhs_number
        .clone();
    let good = serde_json::to_string(&blood_pressure(&nhs, "hostile-1")).unwrap();
    let deep = format!(
        r#"{{"resourceType":"Observation","note":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge_array = format!(
        r#"{{"resourceType":"Observation","status":"final","component":[{}]}}"#,
        vec!["{}"; 200_000].join(",")
    );
    let over_limit = format!(
        r#"{{"resourceType":"Observation","x":"{}"}}"#,
        "a".repeat(2 << 20)
    );
    // serde_json would keep the last `subject`: the other patient's.
    let duplicate_subject = good.replacen(
        r#""subject":{"reference":"#,
        &format!(r#""subject":{{"reference":"Patient/{other}"}},"subject":{{"reference":"#),
        1,
    );
    let mut invalid_utf8 = good.clone().into_bytes();
    let at = invalid_utf8
        .windows(6)
        .position(|w| w == b"hostil")
        .unwrap();
    invalid_utf8[at] = 0xff;
    let mut raw_nul = good.clone().into_bytes();
    raw_nul[at] = 0;
    let escaped_nul = good.replace("hostile-1", "hostile\\u0000-1");
    let out_of_range = good.replacen("131", "1e400", 1);
    let negative_huge = good.replacen("131", "-1e308", 1);
    let mismatched_subject = good.replacen(
        r#""subject":{"reference":"#,
        &format!(
            r#""subject":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{other}"}},"reference":"#
        ),
        1,
    );

    // (row, body, status, Spine code)
    let rows: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("deeply nested", deep.into_bytes(), 400, "INVALID_VALUE"),
        (
            "huge array",
            huge_array.into_bytes(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "over the body limit",
            over_limit.into_bytes(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "duplicate keys",
            duplicate_subject.into_bytes(),
            400,
            "INVALID_VALUE",
        ),
        ("invalid UTF-8", invalid_utf8, 400, "INVALID_VALUE"),
        ("raw NUL byte", raw_nul, 400, "INVALID_VALUE"),
        (
            "escaped NUL in an identifier",
            escaped_nul.into_bytes(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "number out of range",
            out_of_range.into_bytes(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "absurd negative reading",
            negative_huge.into_bytes(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "subject reference and identifier disagree",
            mismatched_subject.into_bytes(),
            422,
            "INVALID_RESOURCE",
        ),
        ("not JSON", b"\x00\x01\x02".to_vec(), 400, "INVALID_VALUE"),
        ("empty", Vec::new(), 400, "INVALID_VALUE"),
    ];
    let before = (
        w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
        w.sandbox.store.patient_by_nhs(&other).unwrap(),
    );
    for (row, body, status, code) in &rows {
        let a = w
            .call("POST", "/Observation", &token, &[FHIR_JSON], body)
            .await;
        refused(row, &a, *status, code);
        if *row == "duplicate keys" {
            assert!(
                a.diagnostics().contains("duplicate key 'subject'"),
                "{}",
                a.diagnostics()
            );
        }
    }
    // A reading for a patient the supplier may not see (sensitive): not found, as if
    // they did not exist, and nothing recorded.
    let sensitive = w
        .manifest()
        .patients
        .iter()
        .find(|p| p.flags.iter().any(|f| f == "sensitive"))
        .map(|p| p.nhs_number.clone())
        .unwrap();
    let sensitive_before = w.sandbox.store.patient_by_nhs(&sensitive).unwrap();
    let body = serde_json::to_vec(&blood_pressure(&sensitive, "hostile-3")).unwrap();
    let a = w
        .call("POST", "/Observation", &token, &[FHIR_JSON], &body)
        .await;
    refused("sensitive subject", &a, 404, "RESOURCE_NOT_FOUND");
    assert_eq!(
        w.sandbox.store.patient_by_nhs(&sensitive).unwrap(),
        sensitive_before
    );

    // PATCH rows: the path names one patient; bodies try to reach elsewhere.
    let etag = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let patch_rows: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "patch another patient's identifier in",
            format!("/Patient/{nhs}"),
            serde_json::to_vec(
                &json!([{"op": "replace", "path": "/identifier/0/value", "value": other}]),
            )
            .unwrap(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "patch the id",
            format!("/Patient/{nhs}"),
            serde_json::to_vec(&json!([{"op": "replace", "path": "/id", "value": other}])).unwrap(),
            422,
            "INVALID_RESOURCE",
        ),
        (
            "duplicate keys in a patch op",
            format!("/Patient/{nhs}"),
            br#"[{"op":"replace","path":"/telecom","value":[],"path":"/identifier"}]"#.to_vec(),
            400,
            "INVALID_VALUE",
        ),
        (
            "path traversal in the id",
            "/Patient/..%2F..%2Fetc".to_owned(),
            br#"[{"op":"remove","path":"/telecom"}]"#.to_vec(),
            400,
            "INVALID_RESOURCE_ID",
        ),
        (
            "deep patch",
            format!("/Patient/{nhs}"),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            400,
            "INVALID_VALUE",
        ),
    ];
    for (row, path, body, status, code) in &patch_rows {
        let a = w
            .call(
                "PATCH",
                path,
                &token,
                &[JSON_PATCH, ("if-match", &etag)],
                body,
            )
            .await;
        refused(row, &a, *status, code);
    }
    assert_eq!(
        (
            w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
            w.sandbox.store.patient_by_nhs(&other).unwrap(),
        ),
        before,
        "no hostile write changed either patient's record"
    );
}

#[tokio::test]
async fn hostile_paths_queries_and_headers_are_refused() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    let long_ids = "9".repeat(5000);
    let rows: Vec<(&str, String, u16, &str)> = vec![
        (
            "encoded traversal",
            "/Patient/..%2F..%2Fetc%2Fpasswd".into(),
            400,
            "INVALID_RESOURCE_ID",
        ),
        (
            "dot segments",
            "/Patient/../../etc/passwd".into(),
            404,
            "UNSUPPORTED_SERVICE",
        ),
        (
            "NUL in the id",
            "/Patient/9000000009%00".into(),
            400,
            "INVALID_RESOURCE_ID",
        ),
        (
            "NUL in a search value",
            format!("/Observation?patient={nhs}%00"),
            400,
            "INVALID_RESOURCE_ID",
        ),
        (
            "enormous _count (served at the maximum)",
            format!("/Observation?patient={nhs}&_count=99999999999999999999999"),
            200,
            "",
        ),
        (
            "_count with a sign",
            format!("/Observation?patient={nhs}&_count=+5"),
            400,
            "INVALID_SEARCH_DATA",
        ),
        (
            "negative _offset",
            format!("/Observation?patient={nhs}&_offset=-1"),
            400,
            "INVALID_SEARCH_DATA",
        ),
        (
            "long _id list",
            format!("/Observation?patient={nhs}&_id={long_ids}"),
            400,
            "INVALID_SEARCH_DATA",
        ),
        (
            "invalid percent-encoding",
            format!("/Observation?patient={nhs}&date=%ZZ"),
            400,
            "INVALID_SEARCH_DATA",
        ),
        (
            "unknown parameter",
            format!("/Observation?patient={nhs}&__proto__=1"),
            400,
            "INVALID_PARAMETER",
        ),
    ];
    for (row, path, status, code) in &rows {
        let a = w.call("GET", path, &token, &[], b"").await;
        if *status == 200 {
            assert_eq!(a.status, 200, "{row}: {}", String::from_utf8_lossy(&a.body));
        } else {
            refused(row, &a, *status, code);
        }
    }
    // Header values hyper's client can send but the gateway refuses rather than echoes.
    let url = format!("{}/Patient/{nhs}", w.manifest().base_url);
    let bearer = format!("Bearer {token}");
    let long = "x".repeat(300);
    for (row, name, value) in [
        (
            "over-long X-Correlation-ID",
            "x-correlation-id",
            long.as_str(),
        ),
        ("request id not a UUID", "x-request-id", "../../etc/passwd"),
    ] {
        let a = w
            .send(
                "GET",
                &url,
                &[("authorization", &bearer), (name, value)],
                b"",
            )
            .await;
        refused(row, &a, 400, "INVALID_VALUE");
        assert!(a.header("x-correlation-id").is_none(), "{row}: not echoed");
    }
}

#[tokio::test]
async fn raw_protocol_abuse_is_refused_on_the_wire() {
    let w = World::start().await;
    let base_path = w.sandbox.app.fhir_base_path.clone();
    let host = authority(&w);
    let limit = Duration::from_secs(10);

    // Header injection: a bare CR (and CR LF inside a value is just a new header line,
    // so the attack is the CR alone). httparse refuses it: 400, never echoed.
    let (resp, closed) = raw(
        &w,
        format!("GET /_health HTTP/1.1\r\nHost: {host}\r\nX-Correlation-ID: a\rX-Injected: 1\r\nConnection: close\r\n\r\n").as_bytes(),
        limit,
    )
    .await;
    assert!(status_line(&resp).contains(" 400"), "bare CR: {resp}");
    assert!(
        closed && !resp.to_ascii_lowercase().contains("x-injected"),
        "{resp}"
    );

    // Non-ASCII bytes in X-Correlation-ID reach the gateway, which refuses to echo them.
    let mut req = format!("GET {base_path}/metadata HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nX-Correlation-ID: ").into_bytes();
    req.extend_from_slice(b"\xff\xfe\x80\r\n\r\n");
    let (resp, _) = raw(&w, &req, limit).await;
    assert!(status_line(&resp).contains(" 400"), "non-ASCII: {resp}");
    assert!(resp.contains("INVALID_VALUE"), "{resp}");
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head.to_ascii_lowercase().contains("x-correlation-id"),
        "not echoed: {resp}"
    );

    // Smuggling: Content-Length and Transfer-Encoding together, with a second request
    // hidden after the chunked body. hyper follows RFC 9112 §6.1/§6.3: Transfer-Encoding
    // wins, Content-Length is dropped before the gateway sees the request (so it cannot
    // answer 400 itself), and the connection is closed after the one answer, so the
    // hidden request is never parsed, let alone processed. (Refusing outright would need
    // a hyper option; there is none in 1.x.) The writes below check it with a token.
    for (row, framing) in [
        (
            "CL then TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
        ),
    ] {
        let smuggle = format!(
            "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n\r\n0\r\n\r\nGET /_health HTTP/1.1\r\nHost: {host}\r\n\r\n"
        );
        let (resp, closed) = raw(&w, smuggle.as_bytes(), limit).await;
        // No token: the POST itself is refused; what matters is that it is the only answer.
        assert!(status_line(&resp).contains(" 401"), "{row}: {resp}");
        assert!(resp.contains("ACCESS_DENIED"), "{row}: {resp}");
        assert!(closed, "{row}: connection closed");
        assert!(resp.contains("connection: close"), "{row}: {resp}");
        assert_eq!(
            resp.matches("HTTP/1.1 ").count(),
            1,
            "{row}: one answer: {resp}"
        );
        assert!(!resp.contains(r#""status":"ok""#), "{row}: {resp}");
    }

    // The same with a valid token, and a write hidden where a front end trusting
    // Content-Length (CL.TE) or Transfer-Encoding (TE.CL) would end the first request:
    // the hidden write is never processed and the patient's record does not change.
    let token = w.token("demo-monitoring").await;
    let nhs = w.ordinary_patient("emis", "demo-monitoring");
    let before = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
    let reading = serde_json::to_string(&blood_pressure(&nhs, "smuggled-1")).unwrap();
    let hidden = format!(
        "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n{reading}",
        reading.len()
    );
    let first = format!(
        "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n"
    );
    let cl_te = format!(
        "{first}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
        5 + hidden.len()
    );
    let te_cl = format!(
        "{first}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
        hidden.len()
    );
    for (row, bytes) in [("CL.TE write", cl_te), ("TE.CL write", te_cl)] {
        let (resp, closed) = raw(&w, bytes.as_bytes(), limit).await;
        assert!(closed, "{row}: connection closed: {resp}");
        assert_eq!(
            resp.matches("HTTP/1.1 ").count(),
            1,
            "{row}: one answer: {resp}"
        );
        // The framing hyper follows gives the outer POST an empty body (CL.TE) or the
        // hidden request's bytes as its body (TE.CL): neither is an Observation.
        assert!(status_line(&resp).contains(" 400"), "{row}: {resp}");
        assert!(resp.contains("OperationOutcome"), "{row}: {resp}");
    }
    assert_eq!(
        w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
        before,
        "no smuggled write reached the GP record"
    );

    // Malformed framing hyper refuses itself (a bare 400, then it closes): a
    // Transfer-Encoding whose last coding is not chunked, two different Content-Lengths
    // (as two lines or as a list), signed or non-numeric lengths, chunked in HTTP/1.0.
    for (row, head) in [
        (
            "TE not chunked",
            format!(
                "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 4"
            ),
        ),
        (
            "CL + CL",
            format!(
                "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nContent-Length: 40"
            ),
        ),
        (
            "CL list",
            format!(
                "POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2, 40"
            ),
        ),
        (
            "signed CL",
            format!("POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nContent-Length: +2"),
        ),
        (
            "hex CL",
            format!("POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0x2"),
        ),
        (
            "chunked in HTTP/1.0",
            format!(
                "POST {base_path}/Observation HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked"
            ),
        ),
    ] {
        let bytes =
            format!("{head}\r\n\r\n{{}}\r\n0\r\n\r\nGET /_health HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (resp, closed) = raw(&w, bytes.as_bytes(), limit).await;
        assert!(status_line(&resp).contains(" 400"), "{row}: {resp}");
        assert!(
            closed && resp.matches("HTTP/1.").count() == 1,
            "{row}: {resp}"
        );
        assert!(!resp.contains(r#""status":"ok""#), "{row}: {resp}");
    }

    // A chunked body with a nonsense chunk size.
    let (resp, closed) = raw(
        &w,
        format!("POST {base_path}/Observation HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/fhir+json\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").as_bytes(),
        limit,
    )
    .await;
    assert!(closed, "bad chunk size closes the connection: {resp}");
    assert!(
        resp.is_empty() || status_line(&resp).contains(" 4"),
        "bad chunk size: {resp}"
    );

    // Oversized headers (over server.max_header_bytes = 16 KiB) and URLs. hyper buffers
    // up to twice the limit, so the gateway answers these with an OperationOutcome ...
    let big_header = format!(
        "GET /_health HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (resp, _) = raw(&w, big_header.as_bytes(), limit).await;
    assert!(
        status_line(&resp).contains(" 431"),
        "oversized header: {resp}"
    );
    assert!(resp.contains("PAYLOAD_TOO_LARGE"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("x-request-id"), "{resp}");
    let long_url = format!(
        "GET {base_path}/Observation?patient={} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        "9".repeat(10 * 1024)
    );
    let (resp, closed) = raw(&w, long_url.as_bytes(), limit).await;
    assert!(status_line(&resp).contains(" 414"), "long URL: {resp}");
    assert!(resp.contains("PAYLOAD_TOO_LARGE"), "{resp}");
    assert!(closed, "{resp}");
    // ... and past hyper's buffer, hyper answers a bare 431 itself and closes.
    for (row, bytes) in [
        (
            "huge header",
            format!(
                "GET /_health HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            ),
        ),
        (
            "huge URL",
            format!(
                "GET {base_path}/Observation?patient={} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                "9".repeat(48 * 1024)
            ),
        ),
    ] {
        let (resp, closed) = raw(&w, bytes.as_bytes(), limit).await;
        assert!(
            status_line(&resp).contains(" 431") || status_line(&resp).contains(" 414"),
            "{row}: {resp}"
        );
        assert!(closed, "{row}: {resp}");
        assert!(!resp.contains(r#""status":"ok""#), "{row}: {resp}");
    }

    // The gateway still answers normally afterwards.
    let (resp, _) = raw(
        &w,
        format!("GET /_health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        limit,
    )
    .await;
    assert!(status_line(&resp).contains(" 200"), "{resp}");
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    let w = World::start().await;
    let timeout = w.sandbox.config.gateway.server.header_read_timeout_ms;
    assert!(
        timeout <= 5_000,
        "the sandbox's header read timeout is {timeout} ms"
    );
    let mut s = TcpStream::connect(authority(&w)).await.unwrap();
    s.write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 250 ms, for at most three times the timeout: the server
    // must close (or answer 408) before the request is ever complete.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout * 3);
    let mut buf = [0u8; 1024];
    let mut seen = Vec::new();
    let cut_off = loop {
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        if s.write_all(b"X").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    };
    let seen = String::from_utf8_lossy(&seen);
    assert!(cut_off, "a trickling client was never cut off");
    assert!(
        !seen.contains(" 200"),
        "the request was never served: {seen}"
    );
}
