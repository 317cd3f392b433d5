//! Reports: JUnit XML (for CI), JSON (for tools) and one self-contained HTML page (for
//! people: summary by requirement, drill-down to each test's evidence). Everything
//! shown is escaped; evidence was redacted when recorded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::http::Exchange;
use crate::model::{Report, Status, TestResult};
use crate::requirements;

/// File names written into the report folder.
pub const JUNIT: &str = "junit.xml";
pub const JSON: &str = "report.json";
pub const HTML: &str = "report.html";

/// Writes the three reports into `dir` (created if missing); returns their paths.
pub fn write_all(report: &Report, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let files = [
        (JUNIT, junit(report).into_bytes()),
        (JSON, json),
        (HTML, html(report).into_bytes()),
    ];
    let mut out = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        out.push(path);
    }
    Ok(out)
}

/// Escapes text for XML and HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn evidence_text(e: &Exchange) -> String {
    let mut s = format!("{} {}  [X-Request-ID {}]\n", e.method, e.url, e.request_id);
    for (k, v) in &e.request_headers {
        let _ = writeln!(s, "{k}: {v}");
    }
    if !e.request_body.is_empty() {
        let _ = writeln!(s, "\n{}", e.request_body);
    }
    match &e.transport_error {
        Some(err) => {
            let _ = writeln!(s, "\n=> no response after {} ms: {err}", e.elapsed_ms);
        }
        None => {
            let _ = writeln!(s, "\n=> HTTP {} in {} ms", e.status, e.elapsed_ms);
            for (k, v) in &e.response_headers {
                let _ = writeln!(s, "{k}: {v}");
            }
            if !e.response_body.is_empty() {
                let _ = writeln!(s, "\n{}", e.response_body);
            }
        }
    }
    s
}

/// The audit-trail rows a judgement rests on, one a line.
fn audit_rows_text(r: &TestResult) -> String {
    r.audit_rows
        .iter()
        .map(|a| a.line())
        .collect::<Vec<_>>()
        .join("\n")
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// JUnit XML: one `testsuite` per suite, one `testcase` per test.
pub fn junit(report: &Report) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"gp-conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
        report.summary.total,
        report.summary.fail,
        report.summary.error,
        report.summary.skip + report.summary.omit,
        secs(report.duration_ms)
    );
    for suite in &report.suites {
        let rs: Vec<&TestResult> = report
            .results
            .iter()
            .filter(|r| &r.suite == suite)
            .collect();
        let count = |s: Status| rs.iter().filter(|r| r.status == s).count();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(suite),
            rs.len(),
            count(Status::Fail),
            count(Status::Error),
            count(Status::Skip) + count(Status::Omit),
            secs(rs.iter().map(|r| r.duration_ms).sum())
        );
        for r in rs {
            let _ = writeln!(
                x,
                "    <testcase classname=\"{}.{}\" name=\"{} {}\" time=\"{}\">",
                escape(&r.suite),
                escape(&r.group),
                escape(&r.id),
                escape(&r.title),
                secs(r.duration_ms)
            );
            let msg = escape(&r.message);
            match r.status {
                Status::Pass => {}
                Status::Fail => {
                    let _ = writeln!(
                        x,
                        "      <failure message=\"{msg}\" type=\"{}\">{msg}</failure>",
                        escape(&r.requirement)
                    );
                }
                Status::Error => {
                    let _ = writeln!(x, "      <error message=\"{msg}\">{msg}</error>");
                }
                Status::Skip | Status::Omit => {
                    let _ = writeln!(
                        x,
                        "      <skipped message=\"{}: {msg}\"/>",
                        r.status.as_str()
                    );
                }
            }
            let mut parts: Vec<String> = Vec::new();
            if !r.audit_rows.is_empty() {
                parts.push(format!("audit trail rows:\n{}", audit_rows_text(r)));
            }
            parts.extend(r.evidence.iter().map(evidence_text));
            let evidence = parts.join("\n----\n");
            if !evidence.is_empty() {
                let _ = writeln!(x, "      <system-out>{}</system-out>", escape(&evidence));
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.pass{color:#075e07}.fail,.error{color:#a00;font-weight:bold}.skip,.omit{color:#8a6d00}pre{background:#f5f5f5;padding:8px;white-space:pre-wrap;word-break:break-all}details{margin:.3em 0}";

/// One self-contained page: no scripts, no external resources.
pub fn html(report: &Report) -> String {
    let s = &report.summary;
    let verdict = if report.passed() {
        "<span class=\"pass\">PASSED</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>gp-conformance report</title><style>{CSS}</style></head><body>\n\
         <h1>gp-conformance report: {verdict}</h1>\n<p>Target <code>{}</code>, suites {}, started {}, {} ms. \
         {} tests: {} pass, {} fail, {} error, {} skip, {} omit; {} required test(s) failed.</p>\n",
        escape(&report.target),
        escape(&report.suites.join(", ")),
        escape(&report.started),
        report.duration_ms,
        s.total,
        s.pass,
        s.fail,
        s.error,
        s.skip,
        s.omit,
        s.required_failed
    );
    h.push_str("<h2>By requirement</h2>\n<table><tr><th>requirement</th><th>description</th><th>tests</th><th>result</th></tr>\n");
    for req in requirements::all() {
        let rs: Vec<&TestResult> = report
            .results
            .iter()
            .filter(|r| r.requirement == req.id)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let worst = [
            Status::Fail,
            Status::Error,
            Status::Skip,
            Status::Omit,
            Status::Pass,
        ]
        .into_iter()
        .find(|st| rs.iter().any(|r| r.status == *st))
        .unwrap_or(Status::Pass);
        let links: Vec<String> = rs
            .iter()
            .map(|r| {
                format!(
                    "<a href=\"#{0}\" class=\"{1}\">{0}</a>",
                    escape(&r.id),
                    r.status.as_str()
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{w}\">{w}</td></tr>",
            escape(&req.id),
            escape(&req.description),
            links.join(" "),
            w = worst.as_str()
        );
    }
    h.push_str("</table>\n<h2>Tests</h2>\n");
    for r in &report.results {
        let _ = writeln!(
            h,
            "<details id=\"{id}\"{open}><summary><span class=\"{st}\">{st}</span> <b>{id}</b> {title} <small>({req}{reqd}, {ms} ms)</small></summary>",
            id = escape(&r.id),
            open = if matches!(r.status, Status::Fail | Status::Error) {
                " open"
            } else {
                ""
            },
            st = r.status.as_str(),
            title = escape(&r.title),
            req = escape(&r.requirement),
            reqd = if r.required { ", required" } else { "" },
            ms = r.duration_ms
        );
        if !r.message.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"{}\">{}</p>",
                r.status.as_str(),
                escape(&r.message)
            );
        }
        if !r.audit_rows.is_empty() {
            let _ = writeln!(
                h,
                "<details open><summary>audit trail: {} row(s) this judgement rests on</summary><pre>{}</pre></details>",
                r.audit_rows.len(),
                escape(&audit_rows_text(r))
            );
        }
        for (i, e) in r.evidence.iter().enumerate() {
            let _ = writeln!(
                h,
                "<details><summary>evidence {}: {} {} → {}</summary><pre>{}</pre></details>",
                i + 1,
                escape(&e.method),
                escape(&e.url),
                if e.transport_error.is_some() {
                    "no response".to_owned()
                } else {
                    e.status.to_string()
                },
                escape(&evidence_text(e))
            );
        }
        h.push_str("</details>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\u{fffd}"
        );
    }
}
