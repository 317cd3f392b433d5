//! `gateway-security`: the token endpoint's refusals, access-token checks, scopes,
//! pairing, required headers, error format and rate-limit headers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::Supplier;
use crate::model::{Check, TestDef, Verdict, ensure};
use crate::run_test;

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "SEC-TOK-00",
        "token-endpoint",
        "a correctly signed assertion is exchanged for a Bearer token",
        "REQ-AUTH-01",
    ),
    TestDef::required(
        "SEC-TOK-01",
        "token-endpoint",
        "an assertion with alg 'none' is refused",
        "REQ-AUTH-02",
    ),
    TestDef::required(
        "SEC-TOK-02",
        "token-endpoint",
        "HS256 signed with the supplier's public key bytes (algorithm confusion) is refused",
        "REQ-AUTH-02",
    ),
    TestDef::required(
        "SEC-TOK-03",
        "token-endpoint",
        "an expired assertion is refused (invalid_grant)",
        "REQ-AUTH-03",
    ),
    TestDef::required(
        "SEC-TOK-04",
        "token-endpoint",
        "an assertion for another audience is refused (invalid_grant)",
        "REQ-AUTH-03",
    ),
    TestDef::required(
        "SEC-TOK-05",
        "token-endpoint",
        "a replayed jti is refused (invalid_grant)",
        "REQ-AUTH-04",
    ),
    TestDef::required(
        "SEC-TOK-06",
        "token-endpoint",
        "an unknown kid is refused (invalid_client, 401)",
        "REQ-AUTH-05",
    ),
    TestDef::required(
        "SEC-TOK-07",
        "token-endpoint",
        "an unknown client is refused (invalid_client, 401)",
        "REQ-AUTH-05",
    ),
    TestDef::required(
        "SEC-TOK-08",
        "token-endpoint",
        "a scope the supplier is not allowed is refused (invalid_scope)",
        "REQ-AUTH-06",
    ),
    TestDef::required(
        "SEC-TOK-09",
        "token-endpoint",
        "a JSON body instead of a form is refused",
        "REQ-AUTH-07",
    ),
    TestDef::required(
        "SEC-TOK-10",
        "token-endpoint",
        "a grant type other than client_credentials is refused (unsupported_grant_type)",
        "REQ-AUTH-07",
    ),
    TestDef::required(
        "SEC-TOK-11",
        "token-endpoint",
        "an assertion whose exp is more than 5 minutes ahead is refused (invalid_grant)",
        "REQ-AUTH-10",
    ),
    TestDef::required(
        "SEC-TOK-12",
        "token-endpoint",
        "an assertion whose nbf is in the future is refused (invalid_grant)",
        "REQ-AUTH-10",
    ),
    TestDef::required(
        "SEC-TOK-13",
        "token-endpoint",
        "an oversized assertion is refused unread (invalid_request)",
        "REQ-AUTH-10",
    ),
    TestDef::required(
        "SEC-SUS-01",
        "token-endpoint",
        "a suspended supplier is refused a token (invalid_client, 401)",
        "REQ-AUTH-11",
    ),
    TestDef::required(
        "SEC-ACC-01",
        "access-token",
        "a FHIR request without a token answers 401 with WWW-Authenticate",
        "REQ-AUTH-08",
    ),
    TestDef::required(
        "SEC-ACC-02",
        "access-token",
        "a malformed token answers 401 with WWW-Authenticate",
        "REQ-AUTH-08",
    ),
    TestDef::required(
        "SEC-ACC-03",
        "access-token",
        "a tampered token (claims changed, signature kept) answers 401",
        "REQ-AUTH-08",
    ),
    TestDef::required(
        "SEC-ACC-04",
        "access-token",
        "an unsigned (alg none) access token answers 401",
        "REQ-AUTH-08",
    ),
    TestDef::required(
        "SEC-ACC-05",
        "access-token",
        "an expired access token answers 401",
        "REQ-AUTH-08",
    ),
    TestDef::required(
        "SEC-SCO-01",
        "scopes",
        "a search without the resource's scope answers 403 naming the scope",
        "REQ-AUTH-09",
    ),
    TestDef::required(
        "SEC-PAIR-01",
        "pairing",
        "a patient at an unpaired practice answers 404 identical to an unknown patient",
        "REQ-PAIR-01",
    ),
    TestDef::required(
        "SEC-PAIR-02",
        "pairing",
        "an unknown NHS number answers 404 RESOURCE_NOT_FOUND",
        "REQ-PAIR-01",
    ),
    TestDef::required(
        "SEC-HDR-01",
        "headers",
        "X-Request-ID is mirrored back",
        "REQ-HDR-01",
    ),
    TestDef::required(
        "SEC-HDR-02",
        "headers",
        "patient data answers Cache-Control: no-store",
        "REQ-HDR-02",
    ),
    TestDef::required(
        "SEC-HDR-03",
        "headers",
        "FHIR answers are application/fhir+json",
        "REQ-HDR-03",
    ),
    TestDef::required(
        "SEC-ERR-01",
        "errors",
        "an invalid NHS number answers 400 OperationOutcome INVALID_RESOURCE_ID (Spine code system)",
        "REQ-ERR-01",
    ),
    TestDef::required(
        "SEC-ERR-02",
        "errors",
        "an unknown search parameter is refused with 400 OperationOutcome, never ignored",
        "REQ-ERR-01",
    ),
    TestDef::required(
        "SEC-RL-01",
        "rate-limits",
        "authorised answers carry RateLimit and RateLimit-Policy headers",
        "REQ-RL-01",
    ),
    TestDef::required(
        "SEC-RL-02",
        "rate-limits",
        "over its limit a supplier gets 429 TOO_MANY_REQUESTS with Retry-After and RateLimit headers",
        "REQ-RL-02",
    ),
];

/// An NHS number that passes the modulus 11 check and is registered nowhere in the sandbox.
pub const UNKNOWN_NHS_NUMBER: &str = "9434765919";
const SPINE_SYSTEM: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some(sup) = ctx.manifest.reader().cloned() else {
        rec.omit_rest(
            "the manifest names no supplier paired with a practice and holding a Patient scope",
        );
        return;
    };
    run_test!(rec, "SEC-TOK-00", None, tok_valid(ctx, &sup));
    run_test!(rec, "SEC-TOK-01", None, tok_alg_none(ctx, &sup));
    run_test!(rec, "SEC-TOK-02", None, tok_hs256(ctx, &sup));
    for (id, tweak) in [
        ("SEC-TOK-03", Tweak::Expired),
        ("SEC-TOK-04", Tweak::Audience),
    ] {
        run_test!(rec, id, None, tok_claims(ctx, &sup, tweak));
    }
    run_test!(rec, "SEC-TOK-05", None, tok_replay(ctx, &sup));
    for (id, tweak) in [("SEC-TOK-06", Tweak::Kid), ("SEC-TOK-07", Tweak::Client)] {
        run_test!(rec, id, None, tok_claims(ctx, &sup, tweak));
    }
    run_test!(rec, "SEC-TOK-08", None, tok_scope(ctx, &sup));
    run_test!(rec, "SEC-TOK-09", None, tok_json_body(ctx, &sup));
    run_test!(rec, "SEC-TOK-10", None, tok_grant_type(ctx, &sup));
    for (id, tweak) in [
        ("SEC-TOK-11", Tweak::TooLong),
        ("SEC-TOK-12", Tweak::NotYet),
        ("SEC-TOK-13", Tweak::Oversized),
    ] {
        run_test!(rec, id, None, tok_claims(ctx, &sup, tweak));
    }
    run_test!(rec, "SEC-SUS-01", None, tok_suspended(ctx));

    // One token for the FHIR checks; without it they cannot run.
    let Some((_, token)) = rec.reader_token(ctx).await else {
        return;
    };
    let patient = ctx
        .manifest
        .patients
        .iter()
        .find(|p| p.flags.is_empty() && sup.practices.contains(&p.practice))
        .map(|p| p.nhs_number.clone())
        .unwrap_or_default();
    let read_url = format!("{}/Patient/{patient}", ctx.manifest.base_url);
    run_test!(rec, "SEC-ACC-01", None, acc_refused(&read_url, None));
    run_test!(
        rec,
        "SEC-ACC-02",
        None,
        acc_refused(&read_url, Some("not-a-jwt".to_owned()))
    );
    run_test!(
        rec,
        "SEC-ACC-03",
        None,
        acc_refused(&read_url, tampered(&token))
    );
    run_test!(
        rec,
        "SEC-ACC-04",
        None,
        acc_refused(&read_url, unsigned(&token))
    );
    run_test!(rec, "SEC-ACC-05", None, acc_expired());
    run_test!(rec, "SEC-SCO-01", None, sco_missing(ctx, &sup, &patient));
    run_test!(rec, "SEC-PAIR-01", None, pair_unpaired(ctx));
    run_test!(rec, "SEC-PAIR-02", None, pair_unknown(ctx, &token));
    run_test!(rec, "SEC-HDR-01", None, hdr_request_id(&read_url, &token));
    run_test!(rec, "SEC-HDR-02", None, hdr_no_store(&read_url, &token));
    run_test!(rec, "SEC-HDR-03", None, hdr_content_type(&read_url, &token));
    run_test!(rec, "SEC-ERR-01", None, err_bad_nhs(ctx, &token));
    run_test!(
        rec,
        "SEC-ERR-02",
        None,
        err_unknown_param(ctx, &token, &patient)
    );
    run_test!(rec, "SEC-RL-01", None, rl_headers(&read_url, &token));
    // Last: it spends the supplier's rate limit (and waits it out before returning).
    run_test!(rec, "SEC-RL-02", None, rl_exceeded(&read_url, &token));
}

/// An access token for `sup` (all its scopes), for other suites.
pub(crate) async fn token(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Result<String, String> {
    token_for(ctx, sup, None, p)
        .await
        .map_err(|v| v.message().to_owned())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims(client_id: &str, aud: &str, exp_offset: i64) -> Value {
    let now = now();
    json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now.saturating_sub(60),
        "exp": now.saturating_add_signed(exp_offset),
    })
}

fn form(assertion: &str, scope: Option<&str>) -> String {
    let mut body = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        JWT_BEARER.replace(':', "%3A")
    );
    if let Some(scope) = scope {
        body.push_str("&scope=");
        body.push_str(&scope.replace(' ', "+").replace('/', "%2F"));
    }
    body
}

/// Signs `claims` with the supplier's key, `kid` in the header.
fn sign(ctx: &Ctx, sup: &Supplier, kid: &str, claims: &Value) -> Result<String, Verdict> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = sup
        .private_key(ctx.manifest.dir.as_deref())
        .map_err(|e| Verdict::Error(format!("the manifest's key for {}: {e}", sup.client_id)))?;
    let alg: Algorithm = sup
        .alg
        .parse()
        .map_err(|_| Verdict::Error(format!("unknown algorithm '{}' in the manifest", sup.alg)))?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| Verdict::Error(format!("key for {}: {e}", sup.client_id)))?;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| Verdict::Error(format!("signing: {e}")))
}

/// A correctly signed assertion for `sup`, valid for 4 minutes.
fn valid_assertion(ctx: &Ctx, sup: &Supplier) -> Result<String, Verdict> {
    sign(
        ctx,
        sup,
        &sup.kid,
        &claims(&sup.client_id, &ctx.manifest.token_url, 240),
    )
}

/// Requests a token; `Ok(token)` on 200 with `access_token`.
async fn token_for(
    ctx: &Ctx,
    sup: &Supplier,
    scope: Option<&str>,
    p: &mut Probe,
) -> Result<String, Verdict> {
    let identity = sup
        .identity(ctx.manifest.dir.as_deref())
        .map_err(|e| Verdict::Error(format!("the manifest's key for {}: {e}", sup.client_id)))?;
    let body = identity
        .token_request_body(&ctx.manifest.token_url, scope)
        .map_err(|e| Verdict::Error(format!("signing an assertion for {}: {e}", sup.client_id)))?;
    let a = p.post_form(&ctx.manifest.token_url, &body).await?;
    if a.status != 200 {
        return Err(Verdict::Fail(format!(
            "token endpoint {} answered HTTP {} to a correctly signed assertion for {}",
            ctx.manifest.token_url, a.status, sup.client_id
        )));
    }
    let v = a.json()?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Verdict::Fail("token response has no 'access_token'".into()))
}

/// The answer is an OAuth2 refusal: status in `statuses`, `error` in `codes`, no token.
fn oauth_refusal(a: &Answer, statuses: &[u16], codes: &[&str]) -> Check {
    ensure(statuses.contains(&a.status), || {
        format!(
            "expected HTTP {statuses:?}, got {} (the endpoint did not refuse)",
            a.status
        )
    })?;
    let v = a.json()?;
    ensure(v.get("access_token").is_none(), || {
        "a refusal carried an access_token".into()
    })?;
    let code = v["error"].as_str().unwrap_or_default();
    ensure(codes.contains(&code), || {
        format!("expected OAuth2 error {codes:?}, got '{code}'")
    })?;
    ensure(
        v["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        || "OAuth2 error without an error_description saying what was wrong".into(),
    )
}

async fn tok_valid(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let identity = sup
        .identity(ctx.manifest.dir.as_deref())
        .map_err(|e| Verdict::Error(e.to_string()))?;
    let body = identity
        .token_request_body(&ctx.manifest.token_url, None)
        .map_err(|e| Verdict::Error(e.to_string()))?;
    let a = p.post_form(&ctx.manifest.token_url, &body).await?;
    ensure(a.status == 200, || {
        format!(
            "POST {} answered HTTP {}, expected 200 with a token: is this the token endpoint?",
            ctx.manifest.token_url, a.status
        )
    })?;
    let v = a.json()?;
    ensure(
        v["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        || "no JWT access_token in the answer".into(),
    )?;
    ensure(
        v["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        || format!("token_type is {}, not Bearer", v["token_type"]),
    )?;
    ensure(v["expires_in"].as_u64().is_some(), || {
        "no numeric expires_in".into()
    })
}

async fn tok_alg_none(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let header = json!({"alg": "none", "typ": "JWT", "kid": sup.kid});
    let c = claims(&sup.client_id, &ctx.manifest.token_url, 240);
    let jwt = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let a = p
        .post_form(&ctx.manifest.token_url, &form(&jwt, None))
        .await?;
    oauth_refusal(&a, &[400, 401], &["invalid_request", "invalid_client"])
}

async fn tok_hs256(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    use hmac_sha256_shim::hmac_sha256;
    let dir = ctx.manifest.dir.as_deref();
    let secret = match sup.public_key(dir) {
        Some(k) => k,
        None => sup.private_key(dir).map_err(Verdict::Error)?,
    };
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": sup.kid});
    let c = claims(&sup.client_id, &ctx.manifest.token_url, 240);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let sig = hmac_sha256(&secret, signing_input.as_bytes());
    let jwt = format!("{signing_input}.{}", b64(&sig));
    let a = p
        .post_form(&ctx.manifest.token_url, &form(&jwt, None))
        .await?;
    oauth_refusal(&a, &[400, 401], &["invalid_request", "invalid_client"])
}

/// HMAC-SHA256 (RFC 2104) over `sha2`, for forging HS256 assertions.
mod hmac_sha256_shim {
    use sha2::{Digest, Sha256};

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut k = if key.len() > 64 {
            Sha256::digest(key).to_vec()
        } else {
            key.to_vec()
        };
        k.resize(64, 0);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
}

#[derive(Clone, Copy)]
enum Tweak {
    Expired,
    Audience,
    Kid,
    Client,
    /// `exp` beyond the 5 minutes an assertion may live (and any clock leeway).
    TooLong,
    /// `nbf` two minutes ahead (beyond any reasonable clock leeway).
    NotYet,
    /// A claim padded past the size any gateway should read (16 KiB).
    Oversized,
}

async fn tok_claims(ctx: &Ctx, sup: &Supplier, tweak: Tweak, p: &mut Probe) -> Check {
    let url = &ctx.manifest.token_url;
    let (kid, c, statuses, codes): (String, Value, &[u16], &[&str]) = match tweak {
        Tweak::Expired => {
            let mut c = claims(&sup.client_id, url, 0);
            c["iat"] = json!(now().saturating_sub(900));
            c["exp"] = json!(now().saturating_sub(600));
            (sup.kid.clone(), c, &[400], &["invalid_grant"])
        }
        Tweak::Audience => (
            sup.kid.clone(),
            claims(&sup.client_id, &format!("{url}/not-this-one"), 240),
            &[400],
            &["invalid_grant"],
        ),
        Tweak::Kid => (
            format!("{}-unknown-kid", sup.kid),
            claims(&sup.client_id, url, 240),
            &[401],
            &["invalid_client"],
        ),
        Tweak::Client => (
            sup.kid.clone(),
            claims("conformance-unknown-client", url, 240),
            &[401],
            &["invalid_client"],
        ),
        Tweak::TooLong => (
            sup.kid.clone(),
            claims(&sup.client_id, url, 300 + 120 + 60),
            &[400],
            &["invalid_grant"],
        ),
        Tweak::NotYet => {
            let mut c = claims(&sup.client_id, url, 240);
            c["nbf"] = json!(now() + 120);
            (sup.kid.clone(), c, &[400], &["invalid_grant"])
        }
        Tweak::Oversized => {
            let mut c = claims(&sup.client_id, url, 240);
            c["padding"] = json!("x".repeat(16 * 1024));
            (sup.kid.clone(), c, &[400, 413], &["invalid_request"])
        }
    };
    let jwt = sign(ctx, sup, &kid, &c)?;
    let a = p.post_form(url, &form(&jwt, None)).await?;
    oauth_refusal(&a, statuses, codes)
}

async fn tok_suspended(ctx: &Ctx, p: &mut Probe) -> Check {
    let Some(sup) = ctx.manifest.suspended() else {
        return Err(Verdict::Skip(
            "the manifest names no suspended supplier (a supplier with \"status\": \"suspended\"), so suspension cannot be checked here".into(),
        ));
    };
    let jwt = valid_assertion(ctx, sup)?;
    let a = p
        .post_form(&ctx.manifest.token_url, &form(&jwt, None))
        .await?;
    oauth_refusal(&a, &[401], &["invalid_client"]).map_err(|v| match v {
        Verdict::Fail(m) => Verdict::Fail(format!(
            "{} is suspended (says the manifest), yet: {m}",
            sup.client_id
        )),
        other => other,
    })
}

async fn tok_replay(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let url = &ctx.manifest.token_url;
    let jwt = sign(ctx, sup, &sup.kid, &claims(&sup.client_id, url, 240))?;
    let first = p.post_form(url, &form(&jwt, None)).await?;
    if first.status != 200 {
        return Err(Verdict::Skip(format!(
            "the first use of the assertion was refused (HTTP {}), so replay cannot be judged; see SEC-TOK-00",
            first.status
        )));
    }
    let second = p.post_form(url, &form(&jwt, None)).await?;
    oauth_refusal(&second, &[400], &["invalid_grant"])
}

async fn tok_scope(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let candidates = [
        "system/AuditEvent.rs",
        "system/Slot.rs",
        "system/Appointment.rs",
        "system/Observation.rs",
    ];
    let Some(scope) = candidates.iter().find(|c| {
        !sup.scopes
            .iter()
            .any(|s| s == *c || s.starts_with(c.trim_end_matches(".rs")))
    }) else {
        return Err(Verdict::Skip(format!(
            "{} holds every candidate scope",
            sup.client_id
        )));
    };
    let jwt = valid_assertion(ctx, sup)?;
    let a = p
        .post_form(&ctx.manifest.token_url, &form(&jwt, Some(scope)))
        .await?;
    oauth_refusal(&a, &[400], &["invalid_scope"])
}

async fn tok_json_body(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let jwt = valid_assertion(ctx, sup)?;
    let body = json!({"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "client_assertion": jwt});
    let a = p
        .send(
            "POST",
            &ctx.manifest.token_url,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await?;
    ensure(matches!(a.status, 400 | 415), || {
        format!("expected HTTP 400 or 415, got {}", a.status)
    })?;
    ensure(
        !String::from_utf8_lossy(&a.body).contains("access_token"),
        || "a token was issued".into(),
    )
}

async fn tok_grant_type(ctx: &Ctx, sup: &Supplier, p: &mut Probe) -> Check {
    let jwt = valid_assertion(ctx, sup)?;
    let body = form(&jwt, None).replace(
        "grant_type=client_credentials",
        "grant_type=authorization_code",
    );
    let a = p.post_form(&ctx.manifest.token_url, &body).await?;
    oauth_refusal(&a, &[400], &["unsupported_grant_type"])
}

/// The token with a claim changed and the signature kept.
fn tampered(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    claims["scope"] = json!("system/*.*");
    claims["exp"] = json!(now() + 86_400);
    Some(format!("{h}.{}.{s}", b64(claims.to_string().as_bytes())))
}

/// The token re-headed with alg none and no signature.
fn unsigned(token: &str) -> Option<String> {
    let c = token.split('.').nth(1)?;
    Some(format!("{}.{c}.", b64(br#"{"alg":"none","typ":"JWT"}"#)))
}

async fn acc_refused(url: &str, token: Option<String>, p: &mut Probe) -> Check {
    let a = p.get(url, token.as_deref()).await?;
    ensure(a.status == 401, || {
        format!("expected HTTP 401, got {}", a.status)
    })?;
    ensure(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        || "401 without a 'WWW-Authenticate: Bearer' header".into(),
    )?;
    outcome(&a, "ACCESS_DENIED")
}

/// Requests the patient read quickly until the supplier's limit answers `429`: at most
/// the `RateLimit-Policy` quota plus 20 requests (100 at the most), then waits it out.
async fn rl_exceeded(url: &str, token: &str, p: &mut Probe) -> Check {
    let auth = format!("Bearer {token}");
    let headers = [
        ("accept", "application/fhir+json"),
        ("authorization", auth.as_str()),
    ];
    let first = p.send("GET", url, &headers, b"").await?;
    let quota = first
        .header("ratelimit-policy")
        .and_then(|v| v.split(";q=").nth(1))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(80);
    let bound = (quota + 20).min(100);
    let mut limited = (first.status == 429).then_some(first);
    let mut sent = 1;
    while limited.is_none() && sent < bound {
        let a = p.send("GET", url, &headers, b"").await?;
        sent += 1;
        if a.status == 429 {
            limited = Some(a);
        }
    }
    let Some(a) = limited else {
        return Err(Verdict::Fail(format!(
            "{sent} requests in quick succession were all answered: no 429 (RateLimit-Policy quota {quota})"
        )));
    };
    // Every request stays in the evidence (its X-Request-ID tells the kit's traffic
    // from a supplier's); the bodies between the first and the refused one add nothing.
    let last = p.evidence.len().saturating_sub(1);
    for e in p.evidence.iter_mut().take(last).skip(1) {
        e.response_body = "(omitted: as the first)".into();
    }
    tokio::time::sleep(crate::http::retry_after(&a)).await;
    ensure(
        a.header("retry-after")
            .is_some_and(|v| v.trim().parse::<u64>().is_ok_and(|s| s >= 1)),
        || {
            format!(
                "429 after {sent} requests without a Retry-After of whole seconds: {:?}",
                a.header("retry-after")
            )
        },
    )?;
    ensure(
        a.header("ratelimit").is_some() && a.header("ratelimit-policy").is_some(),
        || "the 429 carries no RateLimit / RateLimit-Policy headers".into(),
    )?;
    outcome(&a, "TOO_MANY_REQUESTS")
}

async fn acc_expired(_p: &mut Probe) -> Check {
    Err(Verdict::Skip(
        "a genuinely expired access token needs the token lifetime to pass (or the gateway's key); not yet built — SEC-ACC-03 covers a token whose exp was rewritten".into(),
    ))
}

/// `a` is an OperationOutcome whose first issue carries `code` in the Spine code system.
pub(crate) fn outcome(a: &Answer, code: &str) -> Check {
    let v = a.json()?;
    ensure(v["resourceType"] == "OperationOutcome", || {
        format!(
            "HTTP {}: body is a {}, not an OperationOutcome",
            a.status, v["resourceType"]
        )
    })?;
    match a.spine_code() {
        Some((system, c)) if system == SPINE_SYSTEM && c == code => Ok(()),
        Some((system, c)) => Err(Verdict::Fail(format!(
            "expected Spine code {code} ({SPINE_SYSTEM}), got {c} ({system})"
        ))),
        None => Err(Verdict::Fail(
            "OperationOutcome without issue[0].details.coding".into(),
        )),
    }
}

async fn sco_missing(ctx: &Ctx, sup: &Supplier, patient: &str, p: &mut Probe) -> Check {
    let token = token_for(ctx, sup, Some("system/Patient.rs"), p).await?;
    let url = format!(
        "{}/AllergyIntolerance?patient={patient}",
        ctx.manifest.base_url
    );
    let a = p.get(&url, Some(&token)).await?;
    ensure(a.status == 403, || {
        format!("expected HTTP 403, got {}", a.status)
    })?;
    outcome(&a, "ACCESS_DENIED")?;
    let diag = a.json()?["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure(diag.contains("AllergyIntolerance"), || {
        format!("the refusal does not name the scope: '{diag}'")
    })
}

async fn pair_unpaired(ctx: &Ctx, p: &mut Probe) -> Check {
    let m = &ctx.manifest;
    let found = m
        .active()
        .filter(|s| !s.practices.is_empty() && s.has_scope("Patient", 'r'))
        .find_map(|s| {
            m.patients
                .iter()
                .find(|pt| pt.flags.is_empty() && !s.practices.contains(&pt.practice))
                .map(|pt| (s, pt.nhs_number.clone()))
        });
    let Some((sup, patient)) = found else {
        return Err(Verdict::Skip(
            "no manifest supplier with a Patient scope lacks a pairing".into(),
        ));
    };
    let token = token_for(ctx, sup, None, p).await?;
    let a = p
        .get(&format!("{}/Patient/{patient}", m.base_url), Some(&token))
        .await?;
    let b = p
        .get(
            &format!("{}/Patient/{UNKNOWN_NHS_NUMBER}", m.base_url),
            Some(&token),
        )
        .await?;
    ensure(a.status == 404, || {
        format!("unpaired patient: expected HTTP 404, got {}", a.status)
    })?;
    outcome(&a, "RESOURCE_NOT_FOUND")?;
    let diag = |x: &Answer, n: &str| {
        x.json()
            .ok()
            .and_then(|v| {
                v["issue"][0]["diagnostics"]
                    .as_str()
                    .map(|d| d.replace(n, "N"))
            })
            .unwrap_or_default()
    };
    ensure(
        diag(&a, &patient) == diag(&b, UNKNOWN_NHS_NUMBER) && b.status == 404,
        || {
            "the unpaired patient's 404 differs from an unknown patient's: it tells the supplier the patient exists".into()
        },
    )
}

async fn pair_unknown(ctx: &Ctx, token: &str, p: &mut Probe) -> Check {
    let a = p
        .get(
            &format!("{}/Patient/{UNKNOWN_NHS_NUMBER}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == 404, || {
        format!("expected HTTP 404, got {}", a.status)
    })?;
    outcome(&a, "RESOURCE_NOT_FOUND")
}

async fn hdr_request_id(url: &str, token: &str, p: &mut Probe) -> Check {
    let id = uuid::Uuid::new_v4().to_string();
    let a = p
        .get_with(url, Some(token), &[("x-request-id", &id)])
        .await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    ensure(a.header("x-request-id") == Some(id.as_str()), || {
        format!(
            "sent X-Request-ID {id}, got back {:?}",
            a.header("x-request-id")
        )
    })
}

async fn hdr_no_store(url: &str, token: &str, p: &mut Probe) -> Check {
    let a = p.get(url, Some(token)).await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    ensure(
        a.header("cache-control")
            .is_some_and(|v| v.contains("no-store")),
        || {
            format!(
                "Cache-Control is {:?}, not no-store",
                a.header("cache-control")
            )
        },
    )
}

async fn hdr_content_type(url: &str, token: &str, p: &mut Probe) -> Check {
    let a = p.get(url, Some(token)).await?;
    ensure(
        a.header("content-type")
            .is_some_and(|v| v.starts_with("application/fhir+json")),
        || format!("Content-Type is {:?}", a.header("content-type")),
    )
}

async fn err_bad_nhs(ctx: &Ctx, token: &str, p: &mut Probe) -> Check {
    let a = p
        .get(
            &format!("{}/Patient/9000000008", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == 400, || {
        format!("expected HTTP 400, got {}", a.status)
    })?;
    outcome(&a, "INVALID_RESOURCE_ID")
}

async fn err_unknown_param(ctx: &Ctx, token: &str, patient: &str, p: &mut Probe) -> Check {
    let url = format!(
        "{}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{patient}&conformance-unknown=1",
        ctx.manifest.base_url
    );
    let a = p.get(&url, Some(token)).await?;
    ensure(a.status == 400, || {
        format!(
            "expected HTTP 400, got {} (the unknown parameter was ignored?)",
            a.status
        )
    })?;
    let v = a.json()?;
    ensure(v["resourceType"] == "OperationOutcome", || {
        "not an OperationOutcome".into()
    })?;
    ensure(
        a.spine_code().is_some_and(|(s, _)| s == SPINE_SYSTEM),
        || "no Spine code".into(),
    )
}

async fn rl_headers(url: &str, token: &str, p: &mut Probe) -> Check {
    let a = p.get(url, Some(token)).await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    ensure(
        a.header("ratelimit").is_some() && a.header("ratelimit-policy").is_some(),
        || "no RateLimit / RateLimit-Policy headers".into(),
    )
}
