//! Deterministic "never panics" sweeps over the parsers that take outside input: a few
//! thousand generated inputs each from a fixed seed (no proptest, no fuzzing engine), so
//! a failure reproduces exactly. The only assertion is that each parser returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

/// xorshift64*: tiny, seeded, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ITERATIONS: usize = 3000;

/// A string glued from fragments that parsers care about, plus random characters.
fn fragments(rng: &mut Rng, pieces: &[&str]) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(12) {
        match rng.below(6) {
            0 => s.push(char::from_u32(rng.below(0x3000) as u32).unwrap_or('\u{fffd}')),
            1 => s.push(*rng.pick(&['\0', '\r', '\n', ' ', '%', '&', '=', '|', ',', '/', '.'])),
            _ => {
                let piece: &&str = rng.pick(pieces);
                s.push_str(piece);
            }
        }
    }
    s
}

const QUERY: &[&str] = &[
    "patient",
    "patient:identifier",
    "date",
    "_id",
    "_count",
    "_offset",
    "_format",
    "=",
    "&",
    "%",
    "%2",
    "%ZZ",
    "%00",
    "%FF",
    "%C3%A9",
    "+",
    "9000000009",
    "Patient/",
    "ge",
    "le",
    "sa",
    "eb",
    "2026",
    "-11-20",
    "T08:30:00+00:00",
    "99999999999999999999",
    "-1",
    "0",
    "1e400",
    "https://fhir.nhs.uk/Id/nhs-number|",
    "json",
    "xml",
    "a-b.c",
    ",",
];

#[test]
fn search_parsers_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = gp_fhir::search::PagingLimits::default();
    for _ in 0..ITERATIONS {
        let query = fragments(&mut rng, QUERY);
        let _ = gp_fhir::search::parse_query(&query);
        // Pairs straight to the clinical search, bypassing the query decoder.
        let pairs: Vec<(String, String)> = (0..rng.below(5))
            .map(|_| {
                (
                    rng.pick(&[
                        "patient",
                        "patient:identifier",
                        "date",
                        "_id",
                        "_count",
                        "_offset",
                        "_format",
                        "_summary",
                        "_elements",
                        "_sort",
                        "status:not",
                        "category",
                        "identifier",
                        "x",
                    ])
                    .to_string(),
                    fragments(&mut rng, QUERY),
                )
            })
            .collect();
        let _ = gp_fhir::search::parse_clinical_search(
            "Observation",
            &pairs,
            limits,
            "https://gw.example/FHIR/R4",
        );
    }
}

#[test]
fn scope_parser_never_panics() {
    let pieces = [
        "system/",
        "patient/",
        "user/",
        "Patient",
        "Observation",
        "AuditEvent",
        "*",
        ".",
        "r",
        "s",
        "c",
        "u",
        "d",
        "rs",
        "cruds",
        "read",
        "write",
        "?",
        "code=",
        " ",
        "launch",
        "openid",
        "\t",
    ];
    let mut rng = Rng(42);
    for _ in 0..ITERATIONS {
        let _ = gp_auth::ScopeSet::parse(&fragments(&mut rng, &pieces));
    }
}

/// A random JSON value, at most `depth` deep.
fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(*rng.pick(&[0i64, -1, 1, i64::MAX, i64::MIN, 131, 84])),
        3 => json!(*rng.pick(&[0.5f64, -0.0, 1e300, -1e300, 3.3e-7])),
        4 => json!(fragments(rng, QUERY)),
        5 | 6 => {
            let keys = [
                "resourceType",
                "op",
                "path",
                "from",
                "value",
                "status",
                "code",
                "coding",
                "system",
                "subject",
                "reference",
                "identifier",
                "component",
                "valueQuantity",
                "unit",
                "effectiveDateTime",
                "telecom",
                "address",
                "communication",
                "line",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                m.insert(rng.pick(&keys).to_string(), value(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
    }
}

/// Replaces one random node of `v` with a random value.
fn mutate(rng: &mut Rng, v: &mut Value) {
    let replace = rng.below(4) == 0;
    match v {
        Value::Object(m) if !m.is_empty() && !replace => {
            let key = m.keys().nth(rng.below(m.len())).cloned().unwrap();
            mutate(rng, m.get_mut(&key).unwrap());
        }
        Value::Array(a) if !a.is_empty() && !replace => {
            let i = rng.below(a.len());
            mutate(rng, &mut a[i]);
        }
        _ => *v = value(rng, 3),
    }
}

/// Bytes of `v`, sometimes corrupted at one position.
fn bytes(rng: &mut Rng, v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap();
    if rng.below(4) == 0 && !b.is_empty() {
        let i = rng.below(b.len());
        b[i] = rng.next() as u8;
    }
    b
}

fn blood_pressure() -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": "https://example.com/readings", "value": "r-1"}],
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "75367002"}]},
        "subject": {"reference": "Patient/9000000009"},
        "effectiveDateTime": "2026-11-20T08:30:00+00:00",
        "component": [
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
             "valueQuantity": {"value": 131, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "271650006"}]},
             "valueQuantity": {"value": 84, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]
    })
}

#[test]
fn observation_parser_never_panics() {
    let mut rng = Rng(7);
    let now = time::OffsetDateTime::now_utc();
    let base = blood_pressure();
    assert!(gp_gateway::write_body::observation(&serde_json::to_vec(&base).unwrap(), now).is_ok());
    for _ in 0..ITERATIONS {
        let mut v = base.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut v);
        }
        let _ = gp_gateway::write_body::observation(&bytes(&mut rng, &v), now);
    }
}

#[test]
fn json_patch_parse_and_apply_never_panic() {
    let mut rng = Rng(2026);
    let patient = json!({
        "resourceType": "Patient", "id": "9000000009",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "telecom": [{"system": "phone", "value": "01632 960000", "use": "home"}],
        "address": [{"use": "home", "line": ["1 Road"], "city": "Leeds", "postalCode": "LS1 1AA"}]
    });
    let base = json!([
        {"op": "replace", "path": "/telecom/0/value", "value": "07700 900000"},
        {"op": "test", "path": "/address/0/city", "value": "Leeds"},
        {"op": "move", "from": "/telecom/0", "path": "/telecom/-"},
        {"op": "copy", "from": "/address/0/line", "path": "/address/0/line/1"},
        {"op": "remove", "path": "/telecom/0"},
        {"op": "add", "path": "/communication", "value": []}
    ]);
    for _ in 0..ITERATIONS {
        let mut v = base.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut v);
        }
        if let Ok(ops) = gp_gateway::patch::parse(&bytes(&mut rng, &v)) {
            let mut doc = patient.clone();
            let _ = gp_gateway::patch::apply(&mut doc, &ops);
        }
        let _ = gp_gateway::patch::pointer(&fragments(
            &mut rng,
            &["/", "~0", "~1", "~", "-", "0", "telecom", "%"],
        ));
    }
}

#[test]
fn patient_changes_in_every_format_never_panic() {
    use gp_fhir::format::PatchFormat;
    use gp_gateway::patient_change::{Change, contact_details};
    let mut rng = Rng(22);
    let patient = json!({
        "resourceType": "Patient", "id": "9000000009",
        "meta": {"versionId": "v1"},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "telecom": [{"system": "phone", "value": "01632 960000", "use": "home"}],
        "address": [{"use": "home", "line": ["1 Road"], "city": "Leeds", "postalCode": "LS1 1AA"}]
    });
    let operation = |kind: &str, path: String, extra: Value| {
        let mut part = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        part.extend(extra.as_array().cloned().unwrap_or_default());
        json!({"name": "operation", "part": part})
    };
    let path_pieces = [
        "Patient", ".telecom", ".address", "[0]", "[1]", ".line", ".value", ".where(", ")",
        "system", " = ", "'phone'", "'", "\\", " and ", "use", "true", ".first()", ".last()", "(",
        "[", "]", ".",
    ];
    for _ in 0..ITERATIONS {
        let path = fragments(&mut rng, &path_pieces);
        let base = json!({"resourceType": "Parameters", "parameter": [
            operation("replace", path.clone(), json!([{"name": "value", "valueString": "07700 900000"}])),
            operation("add", path.clone(), json!([{"name": "name", "valueString": "telecom"},
                {"name": "value", "part": [{"name": "system", "valueCode": "email"}]}])),
            operation("insert", path.clone(), json!([{"name": "index", "valueInteger": 0}, {"name": "value", "valueString": "x"}])),
            operation("move", path.clone(), json!([{"name": "source", "valueInteger": 0}, {"name": "destination", "valueInteger": 1}])),
            operation("delete", path, json!([])),
        ]});
        let mut v = base.clone();
        for _ in 0..rng.below(3) {
            mutate(&mut rng, &mut v);
        }
        let format = *rng.pick(&[PatchFormat::Fhir, PatchFormat::MergePatch]);
        let body = bytes(&mut rng, &v);
        for change in [
            Change::patch(format, &body),
            Change::put("9000000009", &body),
        ] {
            if let Ok(change) = change
                && let Ok(new) = change.apply(&patient)
            {
                let _ = contact_details(&patient, &new);
            }
        }
    }
}
