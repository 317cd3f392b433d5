//! FHIRPath Patch (FHIR R4 "FHIRPath Patch": a `Parameters` body, one `operation`
//! parameter per change, as HAPI's client sends it) on a Patient. Each operation's path is
//! evaluated on the Patient as the operations before it left it, and becomes one JSON
//! Patch operation on a concrete location; the same writable-element rule as JSON Patch
//! applies, naming the FHIRPath. The FHIRPath understood is what patches need: `Patient`,
//! `.element`, `[index]`, `.where(element = 'text' and …)`, `.first()`, `.last()`; anything
//! else is refused, naming what is not supported.

use gp_fhir::{IssueType, SpineCode};
use serde_json::{Map, Value};

use crate::patch::{MAX_OPERATIONS, Op, WRITABLE};
use crate::write_body::Invalid;

/// Elements (of Patient and of the types its writable elements hold) that repeat: `add`
/// appends to them, a value built from parts holds them as arrays.
const LISTS: &[&str] = &[
    "telecom",
    "address",
    "communication",
    "line",
    "coding",
    "extension",
    "modifierExtension",
    "name",
    "given",
    "prefix",
    "suffix",
    "identifier",
    "contact",
    "generalPractitioner",
    "link",
    "photo",
];

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "add" => Self::Add,
            "insert" => Self::Insert,
            "delete" => Self::Delete,
            "replace" => Self::Replace,
            "move" => Self::Move,
            _ => return None,
        })
    }

    /// The parts the operation takes besides `type` and `path`.
    fn parts(self) -> &'static [&'static str] {
        match self {
            Self::Add => &["name", "value"],
            Self::Insert => &["index", "value"],
            Self::Delete => &[],
            Self::Replace => &["value"],
            Self::Move => &["source", "destination"],
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Insert => "insert",
            Self::Delete => "delete",
            Self::Replace => "replace",
            Self::Move => "move",
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Child(String),
    Index(usize),
    /// `.where(a = 'x' and b = true)`: each element equals its literal.
    Where(Vec<(String, Value)>),
    First,
    Last,
}

/// One `operation` of a FHIRPath Patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    kind: Kind,
    /// The path as given, for messages and `expression`.
    path: String,
    steps: Vec<Step>,
    name: Option<String>,
    value: Option<Value>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

fn bad(index: usize, message: impl Into<String>) -> Invalid {
    Invalid::request(format!(
        "FHIRPath Patch operation {index}: {}",
        message.into()
    ))
}

/// A JSON value of a part: its one `value[x]`, or an object built from its `part`s.
fn part_value(part: &Map<String, Value>) -> Result<Option<Value>, String> {
    let values: Vec<&Value> = part
        .iter()
        .filter(|(k, _)| k.starts_with("value"))
        .map(|(_, v)| v)
        .collect();
    match (values.as_slice(), part.get("part")) {
        ([], None) => Ok(None),
        ([v], None) => Ok(Some((*v).clone())),
        ([], Some(parts)) => object_from_parts(parts).map(Some),
        _ => Err("a part has either one value[x] or parts".into()),
    }
}

/// The object a value given as parts describes (a BackboneElement such as
/// `communication`, which no `value[x]` type can carry).
fn object_from_parts(parts: &Value) -> Result<Value, String> {
    let Some(parts) = parts.as_array().filter(|p| !p.is_empty()) else {
        return Err("'part' must be a non-empty array".into());
    };
    let mut out = Map::new();
    for p in parts {
        let o = p.as_object().ok_or("each part must be an object")?;
        let name = match o.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err("each part needs a name".into()),
        };
        let value = part_value(o)?
            .ok_or_else(|| format!("part '{}' has no value", crate::routes::shown(&name)))?;
        if LISTS.contains(&name.as_str()) {
            match out.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                _ => return Err("a list part is given twice".into()),
            }
        } else if out.insert(name.clone(), value).is_some() {
            return Err(format!(
                "part '{}' is given twice",
                crate::routes::shown(&name)
            ));
        }
    }
    Ok(Value::Object(out))
}

/// Parses a `Parameters` body (already parsed as JSON) into its operations.
pub fn parse(body: &Value) -> Result<Vec<Operation>, Invalid> {
    let Some(root) = body.as_object() else {
        return Err(Invalid::request(
            "a FHIRPath Patch is a Parameters resource",
        ));
    };
    if let Some(key) = root
        .keys()
        .find(|k| !matches!(k.as_str(), "resourceType" | "id" | "meta" | "parameter"))
    {
        return Err(Invalid::request(format!(
            "a FHIRPath Patch Parameters has no '{}' here (resourceType, parameter)",
            crate::routes::shown(key)
        )));
    }
    let params = match root.get("parameter") {
        Some(Value::Array(p)) if !p.is_empty() => p,
        _ => {
            return Err(Invalid::request(
                "the FHIRPath Patch has no operations (parameter: [{name: operation, part: […]}])",
            ));
        }
    };
    if params.len() > MAX_OPERATIONS {
        return Err(Invalid::request(format!(
            "the FHIRPath Patch has {} operations; at most {MAX_OPERATIONS} are accepted",
            params.len()
        )));
    }
    params
        .iter()
        .enumerate()
        .map(|(i, p)| operation(i, p))
        .collect()
}

fn operation(i: usize, p: &Value) -> Result<Operation, Invalid> {
    let o = p.as_object().ok_or_else(|| bad(i, "must be an object"))?;
    if o.get("name").and_then(Value::as_str) != Some("operation") {
        return Err(bad(i, "each parameter must be named 'operation'"));
    }
    if let Some(key) = o.keys().find(|k| !matches!(k.as_str(), "name" | "part")) {
        return Err(bad(
            i,
            format!(
                "'{}' is not a member of an operation (name, part)",
                crate::routes::shown(key)
            ),
        ));
    }
    let mut given: Map<String, Value> = Map::new();
    let parts = o
        .get("part")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(i, "'part' must be an array (type, path, …)"))?;
    for part in parts {
        let po = part
            .as_object()
            .ok_or_else(|| bad(i, "each part must be an object"))?;
        let name = po
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(i, "each part needs a name"))?;
        if !matches!(
            name,
            "type" | "path" | "name" | "value" | "index" | "source" | "destination"
        ) {
            return Err(bad(
                i,
                format!(
                    "'{}' is not a part of a FHIRPath Patch operation (type, path, name, value, index, source, destination)",
                    crate::routes::shown(name)
                ),
            ));
        }
        let value = part_value(po)
            .map_err(|e| bad(i, format!("{name}: {e}")))?
            .ok_or_else(|| bad(i, format!("part '{name}' has no value")))?;
        if given.insert(name.to_owned(), value).is_some() {
            return Err(bad(i, format!("part '{name}' is given twice")));
        }
    }
    let text = |name: &str| -> Result<Option<String>, Invalid> {
        match given.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 500 => Ok(Some(s.clone())),
            Some(_) => Err(bad(
                i,
                format!("'{name}' must be a non-empty string of at most 500 characters"),
            )),
        }
    };
    let number = |name: &str| -> Result<Option<usize>, Invalid> {
        match given.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(i, format!("'{name}' must be a valueInteger of 0 or more"))),
        }
    };
    let kind_text = text("type")?.ok_or_else(|| bad(i, "'type' is required"))?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        bad(
            i,
            format!(
                "'{}' is not a FHIRPath Patch type (add, insert, delete, replace, move)",
                crate::routes::shown(&kind_text)
            ),
        )
    })?;
    let path = text("path")?.ok_or_else(|| bad(i, "'path' is required"))?;
    for name in given.keys() {
        if !matches!(name.as_str(), "type" | "path") && !kind.parts().contains(&name.as_str()) {
            return Err(bad(
                i,
                format!("'{name}' is not a part of a {} operation", kind.code()),
            ));
        }
    }
    for name in kind.parts() {
        if !given.contains_key(*name) {
            return Err(bad(
                i,
                format!("a {} operation needs '{name}'", kind.code()),
            ));
        }
    }
    let steps = parse_path(&path).map_err(|e| {
        Invalid::resource(
            crate::routes::shown(&path),
            format!("FHIRPath Patch operation {i}: {e}"),
        )
    })?;
    Ok(Operation {
        kind,
        steps,
        name: text("name")?,
        value: given.get("value").cloned(),
        index: number("index")?,
        source: number("source")?,
        destination: number("destination")?,
        path,
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn ident(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Parses the FHIRPath subset patches need.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut rest = path
        .trim()
        .strip_prefix("Patient")
        .filter(|r| r.is_empty() || r.starts_with(['.', '[']))
        .ok_or("a path must start with Patient")?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (digits, after) = r.split_once(']').ok_or("a [ without its ]")?;
            let n = digits
                .parse::<usize>()
                .map_err(|_| format!("[{}] is not an index", crate::routes::shown(digits)))?;
            steps.push(Step::Index(n));
            rest = after;
            continue;
        }
        let Some(r) = rest
            .strip_prefix('.')
            .filter(|r| r.starts_with(is_ident_start))
        else {
            return Err(format!(
                "'{}' is not supported FHIRPath here (Patient.element, [index], .where(element = 'value'), .first(), .last())",
                crate::routes::shown(rest)
            ));
        };
        let (name, after) = ident(r);
        match after.strip_prefix('(') {
            None => {
                steps.push(Step::Child(name.to_owned()));
                rest = after;
            }
            Some(args) => {
                let (inside, after) = split_call(args)?;
                steps.push(match name {
                    "where" => Step::Where(criteria(inside)?),
                    "first" if inside.trim().is_empty() => Step::First,
                    "last" if inside.trim().is_empty() => Step::Last,
                    other => {
                        return Err(format!(
                            "the FHIRPath function {}() is not supported here (where, first and last are)",
                            crate::routes::shown(other)
                        ));
                    }
                });
                rest = after;
            }
        }
    }
    Ok(steps)
}

/// The arguments of a call up to its closing parenthesis (quotes respected), and the rest.
fn split_call(s: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '\'' => quoted = !quoted,
            '(' if !quoted => return Err("nested parentheses are not supported".into()),
            ')' if !quoted => return Ok((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    Err("a ( without its )".into())
}

/// `element = literal (and element = literal)*`, the literals strings ('…'), booleans or
/// integers.
fn criteria(s: &str) -> Result<Vec<(String, Value)>, String> {
    let unsupported = || {
        format!(
            "where({}) is not supported: where(element = 'value' and …) is",
            crate::routes::shown(s)
        )
    };
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let (name, after) = ident(rest);
        if name.is_empty() || !name.starts_with(is_ident_start) {
            return Err(unsupported());
        }
        let after = after
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(unsupported)?
            .trim_start();
        let (literal, after) = if let Some(q) = after.strip_prefix('\'') {
            let mut text = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => text.push(e),
                        None => break,
                    },
                    '\'' => {
                        end = Some(i);
                        break;
                    }
                    c => text.push(c),
                }
            }
            let end = end.ok_or("a string without its closing quote")?;
            (Value::String(text), &q[end + 1..])
        } else {
            let (word, after) = ident(after);
            let literal = match word {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                w => w
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| unsupported())?,
            };
            (literal, after)
        };
        out.push((name.to_owned(), literal));
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(out);
        }
        rest = after
            .strip_prefix("and")
            .filter(|r| r.starts_with(char::is_whitespace))
            .ok_or_else(unsupported)?
            .trim_start();
    }
}

/// A location in the Patient (JSON Pointer tokens) and what is there.
type Node<'a> = (Vec<String>, &'a Value);

fn evaluate<'a>(doc: &'a Value, steps: &[Step]) -> Vec<Node<'a>> {
    let mut nodes: Vec<Node<'a>> = vec![(Vec::new(), doc)];
    for step in steps {
        nodes = match step {
            Step::Child(name) => nodes
                .into_iter()
                .flat_map(|(at, v)| {
                    let mut out = Vec::new();
                    match v.get(name) {
                        Some(Value::Array(items)) => {
                            for (i, item) in items.iter().enumerate() {
                                out.push((child(&at, &[name, &i.to_string()]), item));
                            }
                        }
                        Some(item) => out.push((child(&at, &[name]), item)),
                        None => {}
                    }
                    out
                })
                .collect(),
            Step::Index(i) => nodes.into_iter().nth(*i).into_iter().collect(),
            Step::Where(criteria) => nodes
                .into_iter()
                .filter(|(_, v)| criteria.iter().all(|(k, lit)| v.get(k) == Some(lit)))
                .collect(),
            Step::First => nodes.into_iter().next().into_iter().collect(),
            Step::Last => nodes.into_iter().last().into_iter().collect(),
        };
    }
    nodes
}

fn child(at: &[String], tokens: &[&str]) -> Vec<String> {
    at.iter()
        .cloned()
        .chain(tokens.iter().map(|t| (*t).to_owned()))
        .collect()
}

fn value_at<'a>(doc: &'a Value, at: &[String]) -> Option<&'a Value> {
    at.iter().try_fold(doc, |v, t| match v {
        Value::Array(items) => t.parse::<usize>().ok().and_then(|i| items.get(i)),
        other => other.get(t),
    })
}

impl Operation {
    fn value(&self) -> Value {
        self.value.clone().unwrap_or(Value::Null)
    }

    /// The one element the path names.
    fn single<'a>(&self, doc: &'a Value) -> Result<Node<'a>, String> {
        let mut nodes = evaluate(doc, &self.steps);
        match nodes.len() {
            1 => Ok(nodes.remove(0)),
            0 => Err("matches no element".into()),
            n => Err(format!(
                "matches {n} elements; a {} operation takes one",
                self.kind.code()
            )),
        }
    }

    /// The list the path names (its last step an element): where it is, and its length
    /// (0 when absent).
    fn list(&self, doc: &Value) -> Result<(Vec<String>, usize), String> {
        let Some((Step::Child(name), parent)) = self.steps.split_last() else {
            return Err(format!(
                "a {} operation's path names a list (e.g. Patient.telecom)",
                self.kind.code()
            ));
        };
        let mut nodes = evaluate(doc, parent);
        let (at, node) = match nodes.len() {
            1 => nodes.remove(0),
            0 => return Err("matches no element".into()),
            n => return Err(format!("matches {n} elements, not one list")),
        };
        match node.get(name) {
            Some(Value::Array(items)) => Ok((child(&at, &[name]), items.len())),
            None => Ok((child(&at, &[name]), 0)),
            Some(_) => Err(format!("{} is not a list", crate::routes::shown(name))),
        }
    }

    /// The JSON Patch operation this is on `doc` (`None`: a delete that matches nothing,
    /// which FHIR makes no error).
    fn edit(&self, doc: &Value) -> Result<Option<Op>, String> {
        Ok(Some(match self.kind {
            Kind::Add => {
                let name = self.name.clone().unwrap_or_default();
                let (at, node) = self.single(doc)?;
                let Some(o) = node.as_object() else {
                    return Err("names an element without children".into());
                };
                let path = child(&at, &[&name]);
                match o.get(&name) {
                    Some(Value::Array(_)) => Op::Add {
                        path: child(&path, &["-"]),
                        value: self.value(),
                    },
                    None if LISTS.contains(&name.as_str()) => Op::Add {
                        path,
                        value: Value::Array(vec![self.value()]),
                    },
                    None => Op::Add {
                        path,
                        value: self.value(),
                    },
                    Some(_) => {
                        return Err(format!(
                            "already has {}: use replace",
                            crate::routes::shown(&name)
                        ));
                    }
                }
            }
            Kind::Insert => {
                let (at, len) = self.list(doc)?;
                let index = self.index.unwrap_or_default();
                if index > len {
                    return Err(format!("index {index} is past the list's end ({len})"));
                }
                if len == 0 {
                    Op::Add {
                        path: at,
                        value: Value::Array(vec![self.value()]),
                    }
                } else {
                    Op::Add {
                        path: child(&at, &[&index.to_string()]),
                        value: self.value(),
                    }
                }
            }
            Kind::Delete => {
                let mut nodes = evaluate(doc, &self.steps);
                if nodes.len() > 1 {
                    return Err(format!(
                        "matches {} elements; a delete operation takes one",
                        nodes.len()
                    ));
                }
                let Some((mut path, _)) = nodes.pop() else {
                    return Ok(None);
                };
                // The last item of a list goes with its list: FHIR has no empty arrays.
                if let Some((_, parent)) = path.split_last()
                    && value_at(doc, parent)
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.len() == 1)
                {
                    path.pop();
                }
                Op::Remove { path }
            }
            Kind::Replace => {
                let (path, _) = self.single(doc)?;
                Op::Replace {
                    path,
                    value: self.value(),
                }
            }
            Kind::Move => {
                let (at, len) = self.list(doc)?;
                let (from, to) = (
                    self.source.unwrap_or_default(),
                    self.destination.unwrap_or_default(),
                );
                if from >= len || to >= len {
                    return Err(format!(
                        "source {from} and destination {to} must each be below the list's length ({len})"
                    ));
                }
                Op::Move {
                    from: child(&at, &[&from.to_string()]),
                    path: child(&at, &[&to.to_string()]),
                }
            }
        }))
    }

    /// Where `expression` should point: the path, and for `add` the element added.
    fn target(&self) -> String {
        match (&self.kind, &self.name) {
            (Kind::Add, Some(name)) => format!("{}.{name}", self.path.trim()),
            _ => self.path.trim().to_owned(),
        }
    }
}

/// Applies `ops` to `doc`, all or nothing: on any failure `doc` is unchanged. Only
/// [`WRITABLE`] elements change.
pub fn apply(doc: &mut Value, ops: &[Operation]) -> Result<(), Invalid> {
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let at = crate::routes::shown(&op.target());
        let unprocessable =
            |m: String| Invalid::resource(&at, format!("FHIRPath Patch operation {i}: {m}"));
        let Some(edit) = op.edit(&work).map_err(unprocessable)? else {
            continue;
        };
        let writable = edit.changes().iter().all(|path| {
            path.first()
                .is_some_and(|top| WRITABLE.contains(&top.as_str()))
        });
        if !writable {
            return Err(Invalid {
                status: 422,
                code: SpineCode::InvalidResource,
                issue: IssueType::Forbidden,
                path: at.clone(),
                message: format!(
                    "FHIRPath Patch operation {i}: {at} may not be changed by a supplier; writable: Patient.telecom, Patient.address, Patient.communication"
                ),
            });
        }
        crate::patch::apply_unchecked(&mut work, &edit)
            .map_err(|e| unprocessable(format!("cannot be applied ({e})")))?;
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::patient;
    use serde_json::json;

    fn op(parts: Value) -> Value {
        json!({"name": "operation", "part": parts})
    }

    fn patch(ops: Vec<Value>) -> Vec<Operation> {
        parse(&json!({"resourceType": "Parameters", "parameter": ops})).unwrap()
    }

    #[test]
    fn each_operation_type_edits_the_writable_elements() {
        let mut doc = patient();
        apply(
            &mut doc,
            &patch(vec![
                op(json!([
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.telecom.where(system = 'phone' and use = 'home').value"},
                    {"name": "value", "valueString": "01632 960002"}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "telecom"},
                    {"name": "value", "valueContactPoint": {"system": "phone", "value": "07700 900123", "use": "mobile"}}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "move"},
                    {"name": "path", "valueString": "Patient.telecom"},
                    {"name": "source", "valueInteger": 2},
                    {"name": "destination", "valueInteger": 0}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.telecom.where(system='email')"}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "insert"},
                    {"name": "path", "valueString": "Patient.address[0].line"},
                    {"name": "index", "valueInteger": 0},
                    {"name": "value", "valueString": "Flat 2"}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "communication"},
                    {"name": "value", "part": [
                        {"name": "language", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "cy"}]}},
                        {"name": "preferred", "valueBoolean": true}
                    ]}
                ])),
                op(json!([
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.telecom.where(system='fax')"}
                ])),
            ]),
        )
        .unwrap();
        assert_eq!(
            doc["telecom"],
            json!([
                {"system": "phone", "value": "07700 900123", "use": "mobile"},
                {"system": "phone", "value": "01632 960002", "use": "home"}
            ])
        );
        assert_eq!(
            doc["address"][0]["line"],
            json!(["Flat 2", "1 High Street"])
        );
        assert_eq!(doc["communication"][0]["preferred"], true);
        assert_eq!(
            doc["communication"][0]["language"]["coding"][0]["code"],
            "cy"
        );
        // Deleting a list's last item removes the list.
        let mut doc = patient();
        apply(
            &mut doc,
            &patch(vec![op(json!([
                {"name": "type", "valueCode": "delete"},
                {"name": "path", "valueString": "Patient.address.first()"}
            ]))]),
        )
        .unwrap();
        assert!(doc.get("address").is_none(), "{doc}");
    }

    #[test]
    fn other_elements_and_unresolved_paths_are_422_naming_the_path() {
        let cases = [
            (
                json!([
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.name[0].family"},
                    {"name": "value", "valueString": "Hacker"}
                ]),
                "Patient.name[0].family",
            ),
            (
                json!([
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "birthDate"},
                    {"name": "value", "valueDate": "1970-01-01"}
                ]),
                "Patient.birthDate",
            ),
            (
                json!([
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.telecom[7]"},
                    {"name": "value", "valueString": "x"}
                ]),
                "Patient.telecom[7]",
            ),
            (
                json!([
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.telecom"}
                ]),
                "Patient.telecom",
            ),
            (
                json!([
                    {"name": "type", "valueCode": "insert"},
                    {"name": "path", "valueString": "Patient.telecom"},
                    {"name": "index", "valueInteger": 5},
                    {"name": "value", "valueString": "x"}
                ]),
                "Patient.telecom",
            ),
            (
                json!([
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.telecom.exists()"},
                    {"name": "value", "valueString": "x"}
                ]),
                "Patient.telecom.exists()",
            ),
        ];
        for (parts, path) in cases {
            let mut doc = patient();
            let err = parse(&json!({"resourceType": "Parameters", "parameter": [
                op(json!([
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.telecom[0].value"},
                    {"name": "value", "valueString": "01632 960009"}
                ])),
                op(parts)
            ]}))
            .and_then(|ops| apply(&mut doc, &ops))
            .unwrap_err();
            assert_eq!(
                (err.status, err.path.as_str()),
                (422, path),
                "{}",
                err.message
            );
            assert_eq!(doc, patient(), "nothing changed");
        }
    }

    #[test]
    fn malformed_operations_are_400() {
        for parameter in [
            json!([]),
            json!([{"name": "op", "part": []}]),
            json!([op(
                json!([{"name": "type", "valueCode": "frobnicate"}, {"name": "path", "valueString": "Patient"}])
            )]),
            json!([op(
                json!([{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.telecom"}])
            )]),
            json!([op(
                json!([{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient"}, {"name": "value", "valueString": "x"}])
            )]),
            json!([op(
                json!([{"name": "type", "valueCode": "delete"}, {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient"}])
            )]),
            json!([op(
                json!([{"name": "type", "valueCode": "move"}, {"name": "path", "valueString": "Patient.telecom"}, {"name": "source", "valueInteger": -1}, {"name": "destination", "valueInteger": 0}])
            )]),
            json!([op(
                json!([{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"}, {"name": "name", "valueString": "telecom"}, {"name": "value", "valueString": "x", "valueCode": "y"}])
            )]),
        ] {
            let err =
                parse(&json!({"resourceType": "Parameters", "parameter": parameter})).unwrap_err();
            assert_eq!(err.status, 400, "{parameter}: {}", err.message);
        }
    }

    #[test]
    fn paths_parse_the_supported_subset() {
        assert_eq!(
            parse_path("Patient.telecom.where(system = 'phone' and rank = 1).value").unwrap(),
            [
                Step::Child("telecom".into()),
                Step::Where(vec![
                    ("system".into(), json!("phone")),
                    ("rank".into(), json!(1))
                ]),
                Step::Child("value".into()),
            ]
        );
        assert_eq!(
            parse_path("Patient.address[0].line.last()").unwrap(),
            [
                Step::Child("address".into()),
                Step::Index(0),
                Step::Child("line".into()),
                Step::Last
            ]
        );
        assert_eq!(
            parse_path("Patient.telecom.where(value = 'it\\'s')").unwrap()[1],
            Step::Where(vec![("value".into(), json!("it's"))])
        );
        for bad in [
            "Observation.code",
            "Patients.telecom",
            "Patient.telecom[x]",
            "Patient.telecom.where(system != 'phone')",
            "Patient.telecom.where(system = 'phone' or use = 'home')",
            "Patient.telecom.where((system = 'phone'))",
            "Patient.telecom.where(system = 'phone'",
            "Patient..telecom",
            "Patient.telecom | Patient.address",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
