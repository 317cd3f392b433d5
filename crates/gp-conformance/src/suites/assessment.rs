//! `supplier-assessment`: judges a supplier's own application from the traffic the
//! gateway recorded for it (the audit trail, read as the manifest's operator client
//! through `GET /AuditEvent?agent=…`), not from anything the kit sends. The kit's own
//! requests earlier in the same run are left out by their `X-Request-ID`. The trail holds
//! the supplier's FHIR calls and its token requests (rows of interaction `token`, issued
//! or refused, the issued token's id on each issued one).

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Ctx, Recorder};
use crate::http::Probe;
use crate::model::{AuditRow, Check, TestDef, Verdict};

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "SUP-REQ-01",
        "request-ids",
        "sends its own X-Request-ID on every call",
        "REQ-SUP-01",
    ),
    TestDef::required(
        "SUP-RL-01",
        "rate-limits",
        "honours Retry-After: no request within the Retry-After window after a 429",
        "REQ-SUP-02",
    ),
    TestDef::required(
        "SUP-SCO-01",
        "scopes",
        "stays within its scopes: no 403 ACCESS_DENIED scope refusals",
        "REQ-SUP-03",
    ),
    TestDef::required(
        "SUP-NHS-01",
        "nhs-numbers",
        "validates NHS numbers before calling: no 400 for an invalid NHS number",
        "REQ-SUP-04",
    ),
    TestDef::required(
        "SUP-TOK-01",
        "tokens",
        "does not request a new token for every call",
        "REQ-SUP-05",
    ),
    TestDef::required(
        "SUP-TOK-02",
        "tokens",
        "reuses each access token within its lifetime",
        "REQ-SUP-05",
    ),
];

/// Identifier systems of the gateway's AuditEvent rendering.
const CLIENT_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/client-id";
const REQUEST_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/request-id";
const TOKEN_ID_SYSTEM: &str = "https://gp-gateway.invalid/Id/access-token-id";
const REQUEST_ID_SOURCE: &str = "request-id-source";

/// Most rows one assessment reads (the gateway's `_count` ceiling).
const MAX_ROWS: usize = 1000;
/// The least `Retry-After` the gateway sends is one second: any request sooner after a
/// 429 did not wait as told.
const RETRY_AFTER_WINDOW_MS: i128 = 1000;
/// Requests recorded this soon after a 429 were already in flight when it was answered.
const IN_FLIGHT_MS: i128 = 50;
/// A token replaced while it still had this long to live was replaced early.
const RENEWAL_MARGIN_SECS: i64 = 60;
/// Consecutive calls, each after a token request of its own, that show a token per call.
const TOKEN_PER_CALL_RUN: usize = 3;
/// The interaction of a token request's row.
const TOKEN_REQUEST: &str = "token";
/// Rows shown as evidence for one judgement (the message gives the full count).
const EVIDENCE_ROWS: usize = 12;

/// Spine codes of a refused NHS number (R4 dialect, and GP Connect's STU3 name).
const INVALID_NHS_CODES: [&str; 2] = ["INVALID_RESOURCE_ID", "INVALID_NHS_NUMBER"];

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some(client_id) = ctx.client_id.clone() else {
        rec.omit_rest("no supplier under assessment: pass --client-id");
        return;
    };
    let Some(operator) = ctx.manifest.operator().cloned() else {
        rec.close_rest(Verdict::Skip(
            "the manifest names no operator client (a supplier holding system/AuditEvent.rs, paired with no practice), so the audit trail cannot be read".into(),
        ));
        return;
    };
    let mut p = rec.probe();
    let trail = match read_trail(ctx, &operator, &client_id, &mut p.0).await {
        Ok(t) => t,
        Err(v) => {
            let why = format!(
                "reading {client_id}'s audit trail as {}: {}",
                operator.client_id,
                v.message()
            );
            rec.close_rest(match v {
                Verdict::Fail(_) | Verdict::Error(_) => Verdict::Error(why),
                Verdict::Skip(_) => Verdict::Skip(why),
                Verdict::Omit(_) => Verdict::Omit(why),
            });
            return;
        }
    };
    let judges: [(&str, Judge); 6] = [
        ("SUP-REQ-01", request_ids),
        ("SUP-RL-01", retry_after),
        ("SUP-SCO-01", scopes),
        ("SUP-NHS-01", nhs_numbers),
        ("SUP-TOK-01", token_per_call),
        ("SUP-TOK-02", token_lifetime),
    ];
    for (id, judge) in judges {
        let mut p = rec.probe();
        // Every judgement shows how the rows were obtained, then the rows it rests on.
        p.0.evidence = trail.source.clone();
        let check = if trail.rows.is_empty() {
            Err(Verdict::Skip(format!(
                "no recorded traffic from {client_id}{}: nothing to judge (run the application against the sandbox first)",
                trail.window()
            )))
        } else {
            judge(&trail, &mut p.0.audit_rows)
        };
        rec.record(id, None, check, p);
    }
}

/// A judgement over the trail; rows it points at go into `evidence`.
type Judge = fn(&Trail, &mut Vec<AuditRow>) -> Check;

/// The supplier's recorded traffic, oldest first.
struct Trail {
    client_id: String,
    rows: Vec<Row>,
    /// The AuditEvent search exchange(s).
    source: Vec<crate::http::Exchange>,
    since: Option<OffsetDateTime>,
    /// Access-token lifetime (s), from the gateway's own token response.
    token_lifetime: i64,
    /// The trail held more rows than one read returns: the oldest were not judged.
    truncated: bool,
}

impl Trail {
    fn window(&self) -> String {
        self.since
            .and_then(|s| s.format(&Rfc3339).ok())
            .map(|s| format!(" since {s}"))
            .unwrap_or_default()
    }

    fn scope_note(&self) -> String {
        let mut s = format!("{} recorded request(s){}", self.rows.len(), self.window());
        if self.truncated {
            s.push_str(&format!(", the latest {MAX_ROWS} only"));
        }
        s
    }
}

/// One row with its instant parsed.
#[derive(Clone)]
struct Row {
    at: OffsetDateTime,
    row: AuditRow,
}

impl Row {
    /// A request to the token endpoint (issued or refused), not a FHIR call.
    fn is_token_request(&self) -> bool {
        self.row.interaction == TOKEN_REQUEST
    }
}

async fn read_trail(
    ctx: &Ctx,
    operator: &crate::manifest::Supplier,
    client_id: &str,
    p: &mut Probe,
) -> Result<Trail, Verdict> {
    let mut tp = Probe::new(ctx.client.clone());
    let (token, lifetime) = operator_token(ctx, operator, &mut tp).await?;
    let mut url = format!(
        "{}/AuditEvent?agent={}&_count={MAX_ROWS}",
        ctx.manifest.base_url,
        query_encode(client_id)
    );
    if let Some(since) = ctx.since {
        let day = since.date();
        url.push_str(&format!(
            "&date=ge{:04}-{:02}-{:02}",
            day.year(),
            u8::from(day.month()),
            day.day()
        ));
    }
    let a = p.get(&url, Some(&token)).await?;
    if a.status != 200 {
        return Err(Verdict::Error(format!(
            "GET AuditEvent answered HTTP {} (is {} an operator client?)",
            a.status, operator.client_id
        )));
    }
    let bundle = a.json()?;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let truncated = entries.len() >= MAX_ROWS;
    let mut rows = Vec::new();
    // Oldest first before sorting, so rows recorded in the same millisecond keep the
    // order they were committed in (the search answers most recent first).
    for e in entries.iter().rev() {
        let Some(row) = parse_event(&e["resource"], client_id) else {
            continue;
        };
        if ctx.kit_request_ids.contains(&row.row.request_id) {
            continue;
        }
        if ctx.since.is_some_and(|s| row.at < s) {
            continue;
        }
        // The operator's own reads are not the supplier's traffic.
        if row.row.resource_type == "AuditEvent" && row.row.interaction == "search-type" {
            continue;
        }
        rows.push(row);
    }
    rows.sort_by_key(|r| r.at);
    // The search answer is long; its first part shows what was asked and answered.
    let source = std::mem::take(&mut p.evidence);
    Ok(Trail {
        client_id: client_id.to_owned(),
        rows,
        source,
        since: ctx.since,
        token_lifetime: lifetime,
        truncated,
    })
}

/// Percent-encodes a client id for a query string (unreserved characters pass).
fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A token for the operator client, and the lifetime the gateway gives access tokens.
async fn operator_token(
    ctx: &Ctx,
    operator: &crate::manifest::Supplier,
    p: &mut Probe,
) -> Result<(String, i64), Verdict> {
    let identity = operator
        .identity(ctx.manifest.dir.as_deref())
        .map_err(Verdict::Error)?;
    let body = identity
        .token_request_body(&ctx.manifest.token_url, None)
        .map_err(|e| Verdict::Error(format!("signing an assertion: {e}")))?;
    let a = p.post_form(&ctx.manifest.token_url, &body).await?;
    if a.status != 200 {
        return Err(Verdict::Error(format!(
            "the token endpoint answered HTTP {} for operator {}",
            a.status, operator.client_id
        )));
    }
    let v = a.json()?;
    let token = v["access_token"].as_str().ok_or_else(|| {
        Verdict::Error("the operator's token response has no access_token".into())
    })?;
    let lifetime = v["expires_in"].as_i64().filter(|s| *s > 0).unwrap_or(300);
    Ok((token.to_owned(), lifetime))
}

/// An AuditEvent as a row, without its patient; `None` when it is not `client_id`'s.
fn parse_event(e: &Value, client_id: &str) -> Option<Row> {
    let agent = e["agent"].as_array()?.iter().find_map(|a| {
        let id = &a["who"]["identifier"];
        (id["system"] == CLIENT_ID_SYSTEM).then(|| id["value"].as_str())?
    })?;
    if agent != client_id {
        return None;
    }
    let recorded = e["recorded"].as_str()?;
    let at = OffsetDateTime::parse(recorded, &Rfc3339).ok()?;
    let entity = |system: &str| {
        e["entity"].as_array().and_then(|es| {
            es.iter()
                .find(|x| x["what"]["identifier"]["system"] == system)
                .cloned()
        })
    };
    let request = entity(REQUEST_ID_SYSTEM);
    let source = request
        .as_ref()
        .and_then(|r| r["detail"].as_array().cloned())
        .and_then(|d| {
            d.iter()
                .find(|x| x["type"] == REQUEST_ID_SOURCE)
                .and_then(|x| x["valueString"].as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let subtype = &e["subtype"][0];
    let display = subtype["display"].as_str().unwrap_or_default();
    // `outcomeDesc` is "HTTP <status>[ <code>]".
    let desc = e["outcomeDesc"].as_str().unwrap_or_default();
    let mut words = desc.split_whitespace().skip(1);
    let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let outcome = words.next().unwrap_or_default().to_owned();
    Some(Row {
        at,
        row: AuditRow {
            id: text(&e["id"]),
            recorded: recorded.to_owned(),
            interaction: text(&subtype["code"]),
            resource_type: display.split_whitespace().nth(1).unwrap_or("-").to_owned(),
            status,
            outcome,
            request_id: request
                .as_ref()
                .map(|r| text(&r["what"]["identifier"]["value"]))
                .unwrap_or_default(),
            request_id_source: source,
            token_id: entity(TOKEN_ID_SYSTEM)
                .map(|t| text(&t["what"]["identifier"]["value"]))
                .unwrap_or_default(),
        },
    })
}

/// Fails with `what` and the offending rows as evidence, unless there are none.
fn none_of(
    trail: &Trail,
    offending: &[&Row],
    evidence: &mut Vec<AuditRow>,
    what: impl FnOnce(usize) -> String,
) -> Check {
    if offending.is_empty() {
        return Ok(());
    }
    evidence.extend(offending.iter().take(EVIDENCE_ROWS).map(|r| r.row.clone()));
    Err(Verdict::Fail(format!(
        "{} (of {}); {}",
        what(offending.len()),
        trail.scope_note(),
        shown_note(offending.len())
    )))
}

fn shown_note(n: usize) -> String {
    if n > EVIDENCE_ROWS {
        format!("the first {EVIDENCE_ROWS} are shown")
    } else {
        "each is shown".to_owned()
    }
}

fn request_ids(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    let known: Vec<&Row> = trail
        .rows
        .iter()
        .filter(|r| r.row.request_id_source != "unknown")
        .collect();
    if known.is_empty() {
        return Err(Verdict::Skip(format!(
            "the gateway did not record who chose the X-Request-ID of {}'s {} (rows from before it did): nothing to judge",
            trail.client_id,
            trail.scope_note()
        )));
    }
    let minted: Vec<&Row> = known
        .into_iter()
        .filter(|r| r.row.request_id_source == "gateway")
        .collect();
    none_of(trail, &minted, evidence, |n| {
        format!("{n} call(s) came without an X-Request-ID: the gateway had to mint one")
    })
}

fn retry_after(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    let limited: Vec<&Row> = trail.rows.iter().filter(|r| r.row.status == 429).collect();
    if limited.is_empty() {
        return Err(Verdict::Skip(format!(
            "{} was never rate limited ({} without a 429), so whether it honours Retry-After could not be seen",
            trail.client_id,
            trail.scope_note()
        )));
    }
    let mut ignored: Vec<(&Row, &Row)> = Vec::new();
    for l in &limited {
        // The token endpoint and the FHIR API are limited separately: a 429 from one
        // says nothing about requests to the other.
        let too_soon = trail.rows.iter().find(|r| {
            let after_ms = (r.at - l.at).whole_milliseconds();
            r.row.id != l.row.id
                && r.is_token_request() == l.is_token_request()
                && (IN_FLIGHT_MS..RETRY_AFTER_WINDOW_MS).contains(&after_ms)
        });
        if let Some(r) = too_soon {
            ignored.push((l, r));
        }
    }
    if ignored.is_empty() {
        return Ok(());
    }
    for (l, r) in ignored.iter().take(EVIDENCE_ROWS / 2) {
        evidence.push(l.row.clone());
        evidence.push(r.row.clone());
    }
    let (l, r) = ignored[0];
    Err(Verdict::Fail(format!(
        "after {} of {} 429 answer(s) the next request came within the Retry-After window (at least 1 s), e.g. {} ms after the 429 at {} (of {}); each 429 is shown with the request that followed it",
        ignored.len(),
        limited.len(),
        (r.at - l.at).whole_milliseconds(),
        l.row.recorded,
        trail.scope_note()
    )))
}

fn scopes(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    let refused: Vec<&Row> = trail
        .rows
        .iter()
        .filter(|r| r.row.status == 403 && r.row.outcome == "ACCESS_DENIED")
        .collect();
    none_of(trail, &refused, evidence, |n| {
        format!("{n} call(s) were refused 403 ACCESS_DENIED: outside the supplier's scopes")
    })
}

fn nhs_numbers(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    let refused: Vec<&Row> = trail
        .rows
        .iter()
        .filter(|r| r.row.status == 400 && INVALID_NHS_CODES.contains(&r.row.outcome.as_str()))
        .collect();
    none_of(trail, &refused, evidence, |n| {
        format!(
            "{n} call(s) named an invalid NHS number (400 {}): the modulus 11 check was not made before calling",
            INVALID_NHS_CODES[0]
        )
    })
}

/// Authenticated FHIR calls, oldest first.
fn authenticated(trail: &Trail) -> Vec<&Row> {
    trail
        .rows
        .iter()
        .filter(|r| !r.is_token_request() && !r.row.token_id.is_empty())
        .collect()
}

/// Token requests (issued or refused), oldest first.
fn token_requests(trail: &Trail) -> Vec<&Row> {
    trail.rows.iter().filter(|r| r.is_token_request()).collect()
}

fn token_per_call(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    let calls = authenticated(trail);
    if calls.len() < TOKEN_PER_CALL_RUN {
        return Err(Verdict::Skip(format!(
            "{} authenticated call(s) from {}: too few to see how tokens are used (at least {TOKEN_PER_CALL_RUN})",
            calls.len(),
            trail.client_id
        )));
    }
    let requests = token_requests(trail);
    if requests.is_empty() {
        // A trail without the supplier's token requests (a gateway that does not record
        // them, or tokens obtained before --since): tokens are seen only through use.
        return token_per_call_by_use(trail, &calls, evidence);
    }
    // The longest run of consecutive calls, within one token lifetime, each after a token
    // request made since the call before it: (request, call) pairs. Requests count
    // whether or not a token was issued, and whichever token the call then used.
    let mut best: Vec<(&Row, &Row)> = Vec::new();
    let mut run: Vec<(&Row, &Row)> = Vec::new();
    let mut pending: Option<&Row> = None;
    for r in &trail.rows {
        if r.is_token_request() {
            pending = Some(r);
            continue;
        }
        if r.row.token_id.is_empty() {
            continue;
        }
        let Some(request) = pending.take() else {
            run.clear();
            continue;
        };
        if run
            .first()
            .is_some_and(|(_, first)| (r.at - first.at).whole_seconds() >= trail.token_lifetime)
        {
            run.clear();
        }
        run.push((request, r));
        if run.len() > best.len() {
            best = run.clone();
        }
    }
    if best.len() < TOKEN_PER_CALL_RUN {
        return Ok(());
    }
    evidence.extend(
        best.iter()
            .flat_map(|(request, call)| [request.row.clone(), call.row.clone()])
            .take(EVIDENCE_ROWS),
    );
    let refused = requests.iter().filter(|r| r.row.status != 200).count();
    Err(Verdict::Fail(format!(
        "{} consecutive calls each came after a token request of its own, within one token lifetime ({} s): a token per call; {} token request(s) ({refused} refused) for {} authenticated call(s) (of {}); each call is shown after its token request{}",
        best.len(),
        trail.token_lifetime,
        requests.len(),
        calls.len(),
        trail.scope_note(),
        if best.len() * 2 > EVIDENCE_ROWS {
            format!(" (the first {EVIDENCE_ROWS} rows)")
        } else {
            String::new()
        }
    )))
}

/// [`token_per_call`] from the calls alone: runs of consecutive calls each on a token no
/// other call used.
fn token_per_call_by_use(trail: &Trail, calls: &[&Row], evidence: &mut Vec<AuditRow>) -> Check {
    let tokens: HashSet<&str> = calls.iter().map(|r| r.row.token_id.as_str()).collect();
    // The longest run of consecutive calls, within one token lifetime, each on a token
    // no other call used.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for r in calls {
        *uses.entry(r.row.token_id.as_str()).or_default() += 1;
    }
    let mut best: &[&Row] = &[];
    let mut start = 0;
    for i in 0..calls.len() {
        let single = uses.get(calls[i].row.token_id.as_str()) == Some(&1);
        let within = (calls[i].at - calls[start].at).whole_seconds() < trail.token_lifetime;
        if !single {
            start = i + 1;
            continue;
        }
        if !within {
            start = i;
        }
        if i + 1 - start > best.len() {
            best = &calls[start..=i];
        }
    }
    if best.len() < TOKEN_PER_CALL_RUN {
        return Ok(());
    }
    evidence.extend(best.iter().take(EVIDENCE_ROWS).map(|r| r.row.clone()));
    Err(Verdict::Fail(format!(
        "{} consecutive calls each used a token of its own, within one token lifetime ({} s): a token per call; {} token(s) for {} authenticated call(s) (of {}; the trail holds none of {}'s token requests); {}",
        best.len(),
        trail.token_lifetime,
        tokens.len(),
        calls.len(),
        trail.scope_note(),
        trail.client_id,
        shown_note(best.len())
    )))
}

fn token_lifetime(trail: &Trail, evidence: &mut Vec<AuditRow>) -> Check {
    // When each token was issued: its token row, when the trail holds them; else its
    // first use stands in.
    let issued: Vec<&Row> = token_requests(trail)
        .into_iter()
        .filter(|r| r.row.status == 200 && !r.row.token_id.is_empty())
        .collect();
    let (tokens, how) = if issued.is_empty() {
        let calls = authenticated(trail);
        if calls.is_empty() {
            return Err(Verdict::Skip(format!(
                "no token issued to and no authenticated call from {} ({}): no token use to judge",
                trail.client_id,
                trail.scope_note()
            )));
        }
        let mut first_use: Vec<&Row> = Vec::new();
        let mut seen = HashSet::new();
        for r in calls {
            if seen.insert(r.row.token_id.as_str()) {
                first_use.push(r);
            }
        }
        (first_use, "first used")
    } else {
        (issued, "issued")
    };
    let early: Vec<&Row> = tokens
        .windows(2)
        .filter(|w| {
            (w[1].at - w[0].at).whole_seconds() < trail.token_lifetime - RENEWAL_MARGIN_SECS
        })
        .map(|w| w[1])
        .collect();
    // An application restart may replace a token early now and then: more than one
    // token in five is a habit.
    if early.is_empty() || early.len() * 5 <= tokens.len() {
        return Ok(());
    }
    evidence.extend(early.iter().take(EVIDENCE_ROWS).map(|r| r.row.clone()));
    let shown = if how == "issued" {
        "the token request of each early token is shown"
    } else {
        "the first call on each early token is shown"
    };
    Err(Verdict::Fail(format!(
        "{} of {} token(s) were {how} while the previous one still had more than {RENEWAL_MARGIN_SECS} s of its {} s to live (of {}); {shown}{}",
        early.len(),
        tokens.len(),
        trail.token_lifetime,
        trail.scope_note(),
        if early.len() > EVIDENCE_ROWS {
            format!(" (the first {EVIDENCE_ROWS})")
        } else {
            String::new()
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ms: i64, status: u16, outcome: &str, source: &str, token: &str) -> Row {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(1_800_000_000_000 + ms);
        Row {
            at,
            row: AuditRow {
                id: format!("ev-{ms}"),
                recorded: at.format(&Rfc3339).unwrap(),
                interaction: "read".into(),
                resource_type: "Patient".into(),
                status,
                outcome: outcome.into(),
                request_id: format!("req-{ms}"),
                request_id_source: source.into(),
                token_id: token.into(),
            },
        }
    }

    /// A token request's row: issued (`token` is the new token's id) or refused.
    fn token_row(ms: i64, status: u16, token: &str) -> Row {
        let mut r = row(ms, status, "", "client", token);
        r.row.interaction = TOKEN_REQUEST.into();
        r.row.resource_type = "-".into();
        if status != 200 {
            r.row.outcome = "invalid_client".into();
        }
        r
    }

    fn trail(rows: Vec<Row>) -> Trail {
        Trail {
            client_id: "demo-x".into(),
            rows,
            source: Vec::new(),
            since: None,
            token_lifetime: 300,
            truncated: false,
        }
    }

    fn judge(f: Judge, t: &Trail) -> (Check, Vec<AuditRow>) {
        let mut ev = Vec::new();
        (f(t, &mut ev), ev)
    }

    #[test]
    fn a_well_behaved_trail_passes_every_judgement() {
        let t = trail(vec![
            row(0, 200, "", "client", "t1"),
            row(100, 200, "", "client", "t1"),
            row(200, 429, "TOO_MANY_REQUESTS", "client", "t1"),
            row(1300, 200, "", "client", "t1"),
            row(400_000, 200, "", "client", "t2"),
        ]);
        for f in [
            request_ids,
            retry_after,
            scopes,
            nhs_numbers,
            token_per_call,
            token_lifetime,
        ] {
            let (check, ev) = judge(f, &t);
            assert!(
                check.is_ok(),
                "{:?}",
                check.err().map(|v| v.message().to_owned())
            );
            assert!(ev.is_empty());
        }
    }

    #[test]
    fn each_misbehaviour_fails_its_judgement_pointing_at_the_rows() {
        let t = trail(vec![
            row(0, 200, "", "gateway", "t1"),
            row(10, 200, "", "client", "t2"),
            row(20, 200, "", "client", "t3"),
            row(30, 403, "ACCESS_DENIED", "client", "t4"),
            row(40, 400, "INVALID_RESOURCE_ID", "client", "t5"),
            row(50, 429, "TOO_MANY_REQUESTS", "client", "t6"),
            row(250, 200, "", "client", "t6"),
        ]);
        let (c, ev) = judge(request_ids, &t);
        assert!(c.is_err());
        assert_eq!(ev[0].id, "ev-0");
        let (c, ev) = judge(retry_after, &t);
        assert!(c.unwrap_err().message().contains("200 ms after"));
        assert_eq!((ev[0].status, ev[1].id.as_str()), (429, "ev-250"));
        let (_, ev) = judge(scopes, &t);
        assert_eq!(ev[0].outcome, "ACCESS_DENIED");
        let (_, ev) = judge(nhs_numbers, &t);
        assert_eq!(ev[0].outcome, "INVALID_RESOURCE_ID");
        let (c, ev) = judge(token_per_call, &t);
        assert!(c.is_err());
        assert_eq!(ev.len(), 5, "t1..t5 were used once each, in a row");
        let (c, ev) = judge(token_lifetime, &t);
        assert!(c.unwrap_err().message().contains("5 of 6"));
        assert_eq!(ev.len(), 5);
    }

    #[test]
    fn token_rows_show_a_token_requested_for_every_call_even_when_unused() {
        // A new token before every call, yet each call on the first token: the calls'
        // token ids alone look like reuse; the token requests show the habit.
        let t = trail(vec![
            token_row(0, 200, "t1"),
            row(10, 200, "", "client", "t1"),
            token_row(20, 200, "t2"),
            row(30, 200, "", "client", "t1"),
            token_row(40, 401, ""),
            row(50, 200, "", "client", "t1"),
        ]);
        let (c, ev) = judge(token_per_call, &t);
        let m = c.unwrap_err().message().to_owned();
        assert!(m.contains("a token per call"), "{m}");
        assert!(m.contains("3 token request(s) (1 refused)"), "{m}");
        let kinds: Vec<&str> = ev.iter().map(|r| r.interaction.as_str()).collect();
        assert_eq!(kinds, ["token", "read", "token", "read", "token", "read"]);
        let (c, ev) = judge(token_lifetime, &t);
        assert!(
            c.unwrap_err()
                .message()
                .contains("1 of 2 token(s) were issued")
        );
        assert_eq!(ev[0].id, "ev-20", "the early token's request");
        // The calls alone would have passed.
        let calls_only = trail(
            t.rows
                .iter()
                .filter(|r| !r.is_token_request())
                .cloned()
                .collect(),
        );
        assert!(judge(token_per_call, &calls_only).0.is_ok());
        assert!(judge(token_lifetime, &calls_only).0.is_ok());
    }

    #[test]
    fn one_token_reused_passes_and_429s_are_judged_per_endpoint() {
        let t = trail(vec![
            token_row(0, 200, "t1"),
            row(10, 200, "", "client", "t1"),
            row(20, 200, "", "client", "t1"),
            row(30, 429, "TOO_MANY_REQUESTS", "client", "t1"),
            // A token request is no retry of the limited FHIR call.
            token_row(100, 200, "t2"),
            row(1100, 200, "", "client", "t1"),
            row(400_000, 200, "", "client", "t2"),
        ]);
        for f in [retry_after, token_per_call] {
            let (check, ev) = judge(f, &t);
            assert!(
                check.is_ok(),
                "{:?}",
                check.err().map(|v| v.message().to_owned())
            );
            assert!(ev.is_empty());
        }
        // But t2 replaced t1 100 ms after it was issued: 1 early token in 2 is a habit.
        assert!(judge(token_lifetime, &t).0.is_err());
    }

    #[test]
    fn no_429_or_too_few_calls_is_a_skip_saying_why() {
        let t = trail(vec![row(0, 200, "", "client", "t1")]);
        assert!(
            matches!(judge(retry_after, &t).0, Err(Verdict::Skip(m)) if m.contains("never rate limited"))
        );
        assert!(matches!(judge(token_per_call, &t).0, Err(Verdict::Skip(_))));
        let old = trail(vec![row(0, 200, "", "unknown", "t1")]);
        assert!(matches!(judge(request_ids, &old).0, Err(Verdict::Skip(_))));
    }

    #[test]
    fn audit_events_parse_without_their_patient() {
        let e = serde_json::json!({
            "resourceType": "AuditEvent", "id": "ev-1", "recorded": "2026-11-23T10:00:00.123Z",
            "subtype": [{"code": "read", "display": "read Patient"}],
            "outcomeDesc": "HTTP 400 INVALID_RESOURCE_ID",
            "agent": [{"who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": "demo-x"}}}],
            "entity": [
                {"what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": "r-1"}},
                 "detail": [{"type": REQUEST_ID_SOURCE, "valueString": "gateway"}]},
                {"what": {"reference": "Patient/9000000009"}},
                {"what": {"identifier": {"system": TOKEN_ID_SYSTEM, "value": "jti-1"}}}
            ]
        });
        let r = parse_event(&e, "demo-x").unwrap().row;
        assert_eq!(
            (r.status, r.outcome.as_str(), r.resource_type.as_str()),
            (400, "INVALID_RESOURCE_ID", "Patient")
        );
        assert_eq!(
            (r.request_id_source.as_str(), r.token_id.as_str()),
            ("gateway", "jti-1")
        );
        assert!(!format!("{r:?}").contains("9000000009"));
        assert!(parse_event(&e, "demo-y").is_none());
    }
}
