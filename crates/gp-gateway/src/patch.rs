//! `PATCH /Patient/{nhsNumber}` with a JSON Patch (RFC 6902): the operations, applied
//! all-or-nothing to the Patient as the supplier reads it, may change only the contact
//! details a supplier captures (telecom, address, communication). The result is then
//! checked as UK Core and turned into the [`ContactDetails`] the GP system records.

use gp_adapter::{ContactDetails, HomeAddress};
use gp_fhir::model::{HUMAN_LANGUAGE_SYSTEM, human_language};
use gp_fhir::{IssueType, SpineCode};
use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchErrorKind, PatchOperation, RemoveOperation,
    ReplaceOperation, TestOperation,
};
use serde_json::{Map, Value};

use crate::write_body::{Invalid, array, object, only, string};

/// The top-level Patient elements a supplier may change.
pub const WRITABLE: &[&str] = &["telecom", "address", "communication"];

/// Most operations in one patch.
pub const MAX_OPERATIONS: usize = 100;

/// One JSON Patch operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Add {
        path: Vec<String>,
        value: Value,
    },
    Remove {
        path: Vec<String>,
    },
    Replace {
        path: Vec<String>,
        value: Value,
    },
    Move {
        from: Vec<String>,
        path: Vec<String>,
    },
    Copy {
        from: Vec<String>,
        path: Vec<String>,
    },
    Test {
        path: Vec<String>,
        value: Value,
    },
}

fn bad(index: usize, message: impl Into<String>) -> Invalid {
    Invalid::request(format!("JSON Patch operation {index}: {}", message.into()))
}

/// Parses a JSON Pointer (RFC 6901) into its unescaped tokens.
pub fn pointer(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!(
            "'{}' is not a JSON Pointer (it must start with /)",
            crate::routes::shown(s)
        ));
    };
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(format!(
                                "'{}' has a ~ not followed by 0 or 1",
                                crate::routes::shown(s)
                            ));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

fn show(path: &[String]) -> String {
    let mut out = String::new();
    for t in path {
        out.push('/');
        out.push_str(&t.replace('~', "~0").replace('/', "~1"));
    }
    crate::routes::shown(&out)
}

/// Parses a JSON Patch document.
pub fn parse(body: &[u8]) -> Result<Vec<Op>, Invalid> {
    if body.is_empty() {
        return Err(Invalid::request(
            "the request has no body (a JSON Patch array)",
        ));
    }
    let value =
        gp_fhir::validate::precheck_json(body).map_err(|e| Invalid::request(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(Invalid::request(
            "a JSON Patch is a JSON array of operations (RFC 6902)",
        ));
    };
    if items.is_empty() {
        return Err(Invalid::request("the JSON Patch has no operations"));
    }
    if items.len() > MAX_OPERATIONS {
        return Err(Invalid::request(format!(
            "the JSON Patch has {} operations; at most {MAX_OPERATIONS} are accepted",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(mut o) = item else {
                return Err(bad(i, "must be an object"));
            };
            let text = |o: &Map<String, Value>, key: &str| -> Result<String, Invalid> {
                match o.get(key) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(bad(i, format!("'{key}' must be a string"))),
                    None => Err(bad(i, format!("'{key}' is required"))),
                }
            };
            let op = text(&o, "op")?;
            let path = pointer(&text(&o, "path")?).map_err(|e| bad(i, e))?;
            let allowed: &[&str] = match op.as_str() {
                "add" | "replace" | "test" => &["op", "path", "value"],
                "remove" => &["op", "path"],
                "move" | "copy" => &["op", "path", "from"],
                other => {
                    return Err(bad(
                        i,
                        format!(
                            "'{}' is not a JSON Patch op (add, remove, replace, move, copy, test)",
                            crate::routes::shown(other)
                        ),
                    ));
                }
            };
            if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(bad(
                    i,
                    format!(
                        "'{}' is not a member of a {op} operation",
                        crate::routes::shown(extra)
                    ),
                ));
            }
            let mut value = || {
                o.remove("value")
                    .ok_or_else(|| bad(i, "'value' is required"))
            };
            Ok(match op.as_str() {
                "add" => Op::Add {
                    path,
                    value: value()?,
                },
                "replace" => Op::Replace {
                    path,
                    value: value()?,
                },
                "test" => Op::Test {
                    path,
                    value: value()?,
                },
                "remove" => Op::Remove { path },
                other => {
                    let from = pointer(&text(&o, "from")?).map_err(|e| bad(i, e))?;
                    if other == "move" {
                        Op::Move { from, path }
                    } else {
                        Op::Copy { from, path }
                    }
                }
            })
        })
        .collect()
}

/// Refuses a change outside [`WRITABLE`], naming the path.
fn writable(index: usize, path: &[String]) -> Result<(), Invalid> {
    match path.first() {
        Some(top) if WRITABLE.contains(&top.as_str()) => Ok(()),
        _ => {
            let shown = show(path);
            Err(Invalid {
                status: 422,
                code: SpineCode::InvalidResource,
                issue: IssueType::Forbidden,
                path: format!("Patient{}", shown.replace('/', ".")),
                message: format!(
                    "JSON Patch operation {index}: {shown} may not be changed by a supplier; writable: /telecom, /address, /communication"
                ),
            })
        }
    }
}

fn unprocessable(index: usize, message: String) -> Invalid {
    Invalid::resource(
        "Patient",
        format!("JSON Patch operation {index}: {message}"),
    )
}

impl Op {
    /// The operation for the RFC 6902 engine.
    fn engine(&self) -> PatchOperation {
        let ptr = |p: &[String]| PointerBuf::from_tokens(p.iter().map(String::as_str));
        match self {
            Op::Add { path, value } => PatchOperation::Add(AddOperation {
                path: ptr(path),
                value: value.clone(),
            }),
            Op::Remove { path } => PatchOperation::Remove(RemoveOperation { path: ptr(path) }),
            Op::Replace { path, value } => PatchOperation::Replace(ReplaceOperation {
                path: ptr(path),
                value: value.clone(),
            }),
            Op::Move { from, path } => PatchOperation::Move(MoveOperation {
                from: ptr(from),
                path: ptr(path),
            }),
            Op::Copy { from, path } => PatchOperation::Copy(CopyOperation {
                from: ptr(from),
                path: ptr(path),
            }),
            Op::Test { path, value } => PatchOperation::Test(TestOperation {
                path: ptr(path),
                value: value.clone(),
            }),
        }
    }

    /// The locations the operation changes: each must be writable. A `copy` only reads
    /// its `from`, a `test` changes nothing.
    pub(crate) fn changes(&self) -> Vec<&[String]> {
        match self {
            Op::Add { path, .. } | Op::Remove { path } | Op::Replace { path, .. } => {
                vec![path]
            }
            Op::Move { from, path } => vec![from, path],
            Op::Copy { path, .. } => vec![path],
            Op::Test { .. } => Vec::new(),
        }
    }

    fn source(&self) -> Option<&[String]> {
        match self {
            Op::Move { from, .. } | Op::Copy { from, .. } => Some(from),
            _ => None,
        }
    }

    fn path(&self) -> &[String] {
        match self {
            Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. }
            | Op::Move { path, .. }
            | Op::Copy { path, .. }
            | Op::Test { path, .. } => path,
        }
    }
}

/// Applies `ops` to `doc`, all or nothing: on any failure `doc` is unchanged. The
/// engine is the json-patch crate's; the rules on top are ours: only [`WRITABLE`]
/// elements change, and a failed `test` is a 409 (the record changed since it was read).
pub fn apply(doc: &mut Value, ops: &[Op]) -> Result<(), Invalid> {
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        for path in op.changes() {
            writable(i, path)?;
        }
        // One operation at a time on a copy: the error names the operation, and the
        // document is replaced only once every operation applied.
        if let Err(e) = json_patch::patch_unsafe(&mut work, &[op.engine()]) {
            return Err(match e.kind {
                PatchErrorKind::TestFailed => Invalid {
                    status: 409,
                    code: SpineCode::VersionConflict,
                    issue: IssueType::Conflict,
                    path: String::new(),
                    message: format!(
                        "JSON Patch operation {i}: test failed: the value at {} is not the one given (the record has changed; read it again)",
                        show(op.path())
                    ),
                },
                PatchErrorKind::InvalidFromPointer => unprocessable(
                    i,
                    format!(
                        "nothing at {} to take the value from",
                        show(op.source().unwrap_or_default())
                    ),
                ),
                PatchErrorKind::CannotMoveInsideItself => unprocessable(
                    i,
                    format!(
                        "cannot move {} into itself",
                        show(op.source().unwrap_or_default())
                    ),
                ),
                _ => unprocessable(
                    i,
                    format!(
                        "{} is not in the Patient (an object member, an array index up to its length, or - to append)",
                        show(op.path())
                    ),
                ),
            });
        }
    }
    *doc = work;
    Ok(())
}

/// Applies one operation with the RFC 6902 engine alone: the caller has checked that it
/// changes only writable elements, and keeps `doc` only when every operation applied.
pub(crate) fn apply_unchecked(doc: &mut Value, op: &Op) -> Result<(), String> {
    json_patch::patch_unsafe(doc, &[op.engine()]).map_err(|e| e.kind.to_string())
}

/// A UK telephone number: digits, spaces and one leading +, 10 to 13 digits.
fn phone(v: &Value, path: &str) -> Result<String, Invalid> {
    let s = string(v, path, 30)?;
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let shape_ok = s
        .char_indices()
        .all(|(i, c)| c.is_ascii_digit() || c == ' ' || (c == '+' && i == 0));
    if !shape_ok || !(10..=13).contains(&digits) {
        return Err(Invalid::resource(
            path,
            "is not a telephone number (10 to 13 digits, spaces allowed, + only first)",
        ));
    }
    Ok(s.trim().to_owned())
}

fn email(v: &Value, path: &str) -> Result<String, Invalid> {
    let s = string(v, path, 254)?;
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
                && !domain.contains('@')
        }
        None => false,
    };
    if !ok {
        return Err(Invalid::resource(path, "is not an email address"));
    }
    Ok(s.to_owned())
}

/// A UK postcode (outward code, space, inward code), normalised to upper case.
fn postcode(v: &Value, path: &str) -> Result<String, Invalid> {
    let s = string(v, path, 10)?.trim().to_ascii_uppercase();
    let ok = match s.split_once(' ') {
        Some((out, inward)) => {
            (2..=4).contains(&out.len())
                && out.starts_with(|c: char| c.is_ascii_alphabetic())
                && out.bytes().all(|b| b.is_ascii_alphanumeric())
                && inward.len() == 3
                && inward.starts_with(|c: char| c.is_ascii_digit())
                && inward[1..].bytes().all(|b| b.is_ascii_alphabetic())
        }
        None => false,
    };
    if !ok {
        return Err(Invalid::resource(
            path,
            format!(
                "'{}' is not a UK postcode (e.g. LS1 4AP)",
                crate::routes::shown(&s)
            ),
        ));
    }
    Ok(s)
}

/// Checks the contact elements of a patched Patient and turns them into what the GP system records.
pub fn contact_details(patient: &Value) -> Result<ContactDetails, Invalid> {
    let root = object(patient, "Patient")?;
    let mut out = ContactDetails::default();
    if let Some(telecom) = root.get("telecom") {
        for (i, t) in array(telecom, "Patient.telecom")?.iter().enumerate() {
            let at = format!("Patient.telecom[{i}]");
            let o = object(t, &at)?;
            only(
                o,
                &at,
                &["system", "value", "use"],
                &["rank", "period", "id", "extension"],
            )?;
            let system = o
                .get("system")
                .map(|s| string(s, &format!("{at}.system"), 20))
                .transpose()?;
            let use_ = o
                .get("use")
                .map(|s| string(s, &format!("{at}.use"), 20))
                .transpose()?;
            let value = o
                .get("value")
                .ok_or_else(|| Invalid::resource(format!("{at}.value"), "is required"))?;
            let (slot, parsed) = match (system, use_) {
                (Some("phone"), Some("home")) => {
                    (&mut out.home_phone, phone(value, &format!("{at}.value"))?)
                }
                (Some("phone"), Some("mobile")) => {
                    (&mut out.mobile, phone(value, &format!("{at}.value"))?)
                }
                (Some("email"), None | Some("home")) => {
                    (&mut out.email, email(value, &format!("{at}.value"))?)
                }
                (Some("phone"), _) => {
                    return Err(Invalid::resource(
                        format!("{at}.use"),
                        "a GP record holds a home and a mobile phone: use must be home or mobile",
                    ));
                }
                (Some("email"), Some(_)) => {
                    return Err(Invalid::resource(
                        format!("{at}.use"),
                        "a GP record holds one personal email: use must be home or absent",
                    ));
                }
                (Some(other), _) => {
                    return Err(Invalid::resource(
                        format!("{at}.system"),
                        format!(
                            "'{}' is not held in GP records; phone and email are",
                            crate::routes::shown(other)
                        ),
                    ));
                }
                (None, _) => {
                    return Err(Invalid::resource(
                        format!("{at}.system"),
                        "is required (phone or email)",
                    ));
                }
            };
            if slot.is_some() {
                return Err(Invalid::resource(
                    at,
                    "a GP record holds one of each: home phone, mobile and email; this is a second",
                ));
            }
            *slot = Some(parsed);
        }
    }
    if let Some(address) = root.get("address") {
        let list = array(address, "Patient.address")?;
        if list.len() > 1 {
            return Err(Invalid::resource(
                "Patient.address[1]",
                "a GP record holds one home address",
            ));
        }
        let at = "Patient.address[0]";
        let o = object(&list[0], at)?;
        only(
            o,
            at,
            &["use", "line", "city", "district", "postalCode"],
            &[
                "type",
                "text",
                "state",
                "country",
                "period",
                "id",
                "extension",
            ],
        )?;
        if let Some(u) = o.get("use") {
            let u = string(u, &format!("{at}.use"), 20)?;
            if u != "home" {
                return Err(Invalid::resource(
                    format!("{at}.use"),
                    "must be home (the GP record holds the home address)",
                ));
            }
        }
        let lines = array(
            o.get("line")
                .ok_or_else(|| Invalid::resource(format!("{at}.line"), "is required"))?,
            &format!("{at}.line"),
        )?;
        if lines.len() > 3 {
            return Err(Invalid::resource(
                format!("{at}.line[3]"),
                "GP records hold at most three address lines (then city, district and postcode)",
            ));
        }
        let lines = lines
            .iter()
            .enumerate()
            .map(|(i, l)| string(l, &format!("{at}.line[{i}]"), 35).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        let town = string(
            o.get("city").ok_or_else(|| {
                Invalid::resource(format!("{at}.city"), "is required (the post town)")
            })?,
            &format!("{at}.city"),
            35,
        )?
        .to_owned();
        let county = match o.get("district") {
            Some(d) => string(d, &format!("{at}.district"), 35)?.to_owned(),
            None => String::new(),
        };
        let postcode = postcode(
            o.get("postalCode")
                .ok_or_else(|| Invalid::resource(format!("{at}.postalCode"), "is required"))?,
            &format!("{at}.postalCode"),
        )?;
        out.address = Some(HomeAddress {
            lines,
            town,
            county,
            postcode,
        });
    }
    if let Some(communication) = root.get("communication") {
        let list = array(communication, "Patient.communication")?;
        if list.len() > 1 {
            return Err(Invalid::resource(
                "Patient.communication[1]",
                "a GP record holds one preferred language",
            ));
        }
        let at = "Patient.communication[0]";
        let o = object(&list[0], at)?;
        only(
            o,
            at,
            &["language", "preferred"],
            &["id", "extension", "modifierExtension"],
        )?;
        if let Some(p) = o.get("preferred")
            && p.as_bool() != Some(true)
        {
            return Err(Invalid::resource(
                format!("{at}.preferred"),
                "must be true: the GP record holds the preferred language",
            ));
        }
        let lat = format!("{at}.language");
        let lang = object(
            o.get("language")
                .ok_or_else(|| Invalid::resource(&lat, "is required"))?,
            &lat,
        )?;
        only(lang, &lat, &["coding", "text"], &["id", "extension"])?;
        let codings = array(
            lang.get("coding")
                .ok_or_else(|| Invalid::resource(format!("{lat}.coding"), "is required"))?,
            &format!("{lat}.coding"),
        )?;
        let mut code = None;
        for (i, c) in codings.iter().enumerate() {
            let cat = format!("{lat}.coding[{i}]");
            let co = object(c, &cat)?;
            only(
                co,
                &cat,
                &["system", "code", "display"],
                &["version", "userSelected", "id", "extension"],
            )?;
            if co.get("system").and_then(Value::as_str) == Some(HUMAN_LANGUAGE_SYSTEM) {
                let c = string(
                    co.get("code").unwrap_or(&Value::Null),
                    &format!("{cat}.code"),
                    10,
                )?;
                if human_language(c).is_none() {
                    return Err(Invalid::resource(
                        format!("{cat}.code"),
                        format!(
                            "'{}' is not a language GP records hold",
                            crate::routes::shown(c)
                        ),
                    ));
                }
                code = Some(c.to_owned());
            }
        }
        out.language = Some(code.ok_or_else(|| {
            Invalid::resource(
                format!("{lat}.coding"),
                format!("needs a coding from {HUMAN_LANGUAGE_SYSTEM}"),
            )
        })?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A Patient the patch tests change.
    pub(crate) fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "9000000009",
            "name": [{"family": "Smith"}],
            "telecom": [
                {"system": "phone", "value": "01632 960001", "use": "home"},
                {"system": "email", "value": "a.smith@example.com"}
            ],
            "address": [{"line": ["1 High Street"], "city": "Leeds", "postalCode": "LS1 1AA"}]
        })
    }

    fn ops(v: Value) -> Vec<Op> {
        parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn rfc6902_operations_apply_in_order() {
        let mut doc = patient();
        apply(&mut doc, &ops(json!([
            {"op": "test", "path": "/telecom/0/value", "value": "01632 960001"},
            {"op": "add", "path": "/telecom/-", "value": {"system": "phone", "value": "07700 900123", "use": "mobile"}},
            {"op": "replace", "path": "/address/0/postalCode", "value": "LS2 9JT"},
            {"op": "remove", "path": "/telecom/1"},
            {"op": "add", "path": "/communication", "value": [{"language": {"coding": [{"system": HUMAN_LANGUAGE_SYSTEM, "code": "cy"}]}, "preferred": true}]},
            {"op": "copy", "from": "/name/0/family", "path": "/address/0/line/-"},
        ]))).unwrap();
        let details = contact_details(&doc).unwrap();
        assert_eq!(details.home_phone.as_deref(), Some("01632 960001"));
        assert_eq!(details.mobile.as_deref(), Some("07700 900123"));
        assert_eq!(details.email, None);
        let a = details.address.unwrap();
        assert_eq!(a.postcode, "LS2 9JT");
        assert_eq!(a.lines, ["1 High Street", "Smith"]);
        assert_eq!(details.language.as_deref(), Some("cy"));
    }

    #[test]
    fn forbidden_paths_are_refused_and_nothing_changes() {
        for path in [
            "/name/0/family",
            "/birthDate",
            "/identifier/0/value",
            "/id",
            "",
        ] {
            let mut doc = patient();
            let before = doc.clone();
            let err = apply(
                &mut doc,
                &ops(json!([
                    {"op": "replace", "path": "/telecom/0/value", "value": "01632 960002"},
                    {"op": "replace", "path": path, "value": "x"}
                ])),
            )
            .unwrap_err();
            assert_eq!(err.status, 422, "{path}");
            assert!(err.message.contains("operation 1"), "{}", err.message);
            assert_eq!(doc, before, "a refused patch changed the document");
        }
        let mut doc = patient();
        let err = apply(
            &mut doc,
            &ops(json!([{"op": "move", "from": "/name", "path": "/address"}])),
        )
        .unwrap_err();
        assert_eq!(err.status, 422);
    }

    #[test]
    fn malformed_patches_are_400_and_missing_targets_422() {
        for body in [
            json!({"op": "add"}),
            json!([]),
            json!([{"op": "frobnicate", "path": "/telecom"}]),
            json!([{"op": "add", "path": "telecom", "value": 1}]),
            json!([{"op": "add", "path": "/telecom/-"}]),
            json!([{"op": "remove", "path": "/telecom/0", "value": 1}]),
            json!([{"op": "add", "path": "/a~2b", "value": 1}]),
        ] {
            let err = parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
        }
        let mut doc = patient();
        for p in [
            json!([{"op": "remove", "path": "/telecom/7"}]),
            json!([{"op": "replace", "path": "/telecom/01", "value": {}}]),
        ] {
            assert_eq!(apply(&mut doc, &ops(p)).unwrap_err().status, 422);
        }
        let err = apply(
            &mut doc,
            &ops(json!([{"op": "test", "path": "/telecom/0/value", "value": "nope"}])),
        )
        .unwrap_err();
        assert_eq!(err.status, 409);
        assert_eq!(doc, patient());
    }

    #[test]
    fn contact_details_name_the_bad_element() {
        let cases = [
            (
                json!({"telecom": [{"system": "fax", "value": "01632 960001"}]}),
                "Patient.telecom[0].system",
            ),
            (
                json!({"telecom": [{"system": "phone", "value": "12", "use": "home"}]}),
                "Patient.telecom[0].value",
            ),
            (
                json!({"telecom": [{"system": "phone", "value": "01632 960001", "use": "home"}, {"system": "phone", "value": "01632 960002", "use": "home"}]}),
                "Patient.telecom[1]",
            ),
            (
                json!({"telecom": [{"system": "email", "value": "not-an-email"}]}),
                "Patient.telecom[0].value",
            ),
            (
                json!({"address": [{"line": ["1 A St"], "city": "Leeds", "postalCode": "NOPE"}]}),
                "Patient.address[0].postalCode",
            ),
            (
                json!({"address": [{"line": ["a", "b", "c", "d"], "city": "Leeds", "postalCode": "LS1 1AA"}]}),
                "Patient.address[0].line[3]",
            ),
            (
                json!({"address": [{"line": ["1 A St"], "postalCode": "LS1 1AA"}]}),
                "Patient.address[0].city",
            ),
            (
                json!({"address": [{"line": ["1 A St"], "city": "Leeds", "postalCode": "LS1 1AA", "country": "France"}]}),
                "Patient.address[0].country",
            ),
            (
                json!({"communication": [{"language": {"coding": [{"system": HUMAN_LANGUAGE_SYSTEM, "code": "xx"}]}}]}),
                "Patient.communication[0].language.coding[0].code",
            ),
        ];
        for (doc, path) in cases {
            let err = contact_details(&doc).unwrap_err();
            assert_eq!(err.path, path, "{}", err.message);
            assert_eq!(err.status, 422);
        }
    }
}
