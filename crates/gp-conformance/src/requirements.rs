//! `conformance/requirements.csv`: identifier, description, test ids (`;`-separated),
//! evidence. Compiled in so reports can name what each requirement means.

/// The requirements file, as committed.
pub const CSV: &str = include_str!("../../../conformance/requirements.csv");

#[derive(Debug, Clone)]
pub struct Requirement {
    pub id: String,
    pub description: String,
    pub tests: Vec<String>,
    pub evidence: String,
}

/// Parses the CSV (RFC 4180 quoting); the header row is skipped.
pub fn parse(csv: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for (n, line) in csv.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split(line);
        let [id, description, tests, evidence] = fields.as_slice() else {
            return Err(format!(
                "requirements.csv line {}: expected 4 fields, got {}",
                n + 1,
                fields.len()
            ));
        };
        out.push(Requirement {
            id: id.clone(),
            description: description.clone(),
            tests: tests
                .split(';')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            evidence: evidence.clone(),
        });
    }
    Ok(out)
}

fn split(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The committed requirements (empty if the file is malformed; a unit test guards it).
pub fn all() -> Vec<Requirement> {
    parse(CSV).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suites::{SUITES, catalogue};

    #[test]
    fn every_test_is_traced_both_ways() {
        let reqs = parse(CSV).unwrap();
        for suite in SUITES {
            for def in catalogue(suite).unwrap() {
                let req = reqs.iter().find(|r| r.id == def.requirement);
                let req = req.unwrap_or_else(|| {
                    panic!(
                        "{}: requirement {} not in requirements.csv",
                        def.id, def.requirement
                    )
                });
                assert!(
                    req.tests.iter().any(|t| t == def.id),
                    "{} not listed under {}",
                    def.id,
                    req.id
                );
            }
        }
        for r in &reqs {
            for t in &r.tests {
                let known = SUITES.iter().any(|s| {
                    catalogue(s)
                        .unwrap()
                        .iter()
                        .any(|d| d.id == t && d.requirement == r.id)
                });
                assert!(
                    known,
                    "{}: test {t} is not in a catalogue under this requirement",
                    r.id
                );
            }
        }
    }
}
