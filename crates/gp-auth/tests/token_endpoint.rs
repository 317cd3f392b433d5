//! The token endpoint as a supplier sees it: every refusal has its own OAuth2 error
//! code and description; every happy path yields a token the FHIR side accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use gp_auth::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

async fn refuse(h: &Harness, body: Vec<u8>) -> OAuthError {
    h.tokens
        .issue(&body)
        .await
        .expect_err("token request should be refused")
}

// ---- happy paths -------------------------------------------------------------------

async fn happy(supplier: (&str, &str, Algorithm, &str), expected_scope: &str) {
    let h = harness();
    let ok = h
        .tokens
        .issue(&form(&assertion(supplier), None))
        .await
        .unwrap();
    assert_eq!(ok.token_type, "Bearer");
    assert_eq!(ok.expires_in, 900, "the default lifetime, 15 minutes");
    assert_eq!(ok.scope, expected_scope);
    let body: Value = serde_json::from_slice(&ok.to_json()).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["access_token"], ok.access_token.as_str());
    assert!(
        !format!("{ok:?}").contains(&ok.access_token),
        "Debug must not print the token"
    );

    let claims = h
        .verifier
        .verify(Some(&format!("Bearer {}", ok.access_token)))
        .unwrap();
    assert_eq!(claims.client_id, supplier.0);
    assert_eq!(claims.scopes.to_string(), expected_scope);
    assert!(claims.expires_at > now() && claims.expires_at <= now() + 900);
    let view = h.registry.authorise(&claims).unwrap();
    assert_eq!(view.client_id(), supplier.0);
}

#[tokio::test]
async fn rs512_supplier_gets_a_token_with_all_its_scopes() {
    happy(
        BOOKING,
        "system/Appointment.cruds system/Patient.rs system/Slot.rs system/Subscription.crds",
    )
    .await;
}

#[tokio::test]
async fn es384_supplier_gets_a_token() {
    happy(
        MONITORING,
        "system/Observation.crs system/Organization.r system/Patient.rs system/Practitioner.r system/Subscription.crds",
    )
    .await;
}

#[tokio::test]
async fn rs384_supplier_gets_a_token() {
    happy(
        CONSULT,
        "system/AllergyIntolerance.rs system/Binary.r system/Condition.rs system/DocumentReference.crs system/Encounter.rs system/Immunization.rs system/MedicationStatement.rs system/Observation.crs system/Organization.r system/Patient.rus system/Practitioner.r system/Subscription.crds",
    )
    .await;
}

#[tokio::test]
async fn requested_scopes_partly_beyond_allowed_get_the_intersection() {
    let h = harness();
    let body = form(
        &assertion(MONITORING),
        Some("system/Observation.cruds system/Appointment.c system/Patient.read"),
    );
    let ok = h.tokens.issue(&body).await.unwrap();
    assert_eq!(ok.scope, "system/Observation.crs system/Patient.rs");
    let claims = h
        .verifier
        .verify(Some(&format!("Bearer {}", ok.access_token)))
        .unwrap();
    let view = h.registry.authorise(&claims).unwrap();
    assert!(view.require("Observation", Permission::Create).is_ok());
    assert_eq!(
        view.require("Observation", Permission::Delete)
            .unwrap_err()
            .to_string(),
        "token lacks scope system/Observation.d"
    );
    assert_eq!(
        view.require("Appointment", Permission::Create)
            .unwrap_err()
            .to_string(),
        "token lacks scope system/Appointment.c"
    );
}

#[tokio::test]
async fn practice_pairing_expands_groups() {
    let h = harness();
    let ods = |s: &str| gp_fhir::OdsCode::parse(s).unwrap();
    let view_of = |token: &str| {
        let claims = h.verifier.verify(Some(&format!("Bearer {token}"))).unwrap();
        h.registry.authorise(&claims).unwrap()
    };
    let booking = view_of(
        &h.tokens
            .issue(&form(&assertion(BOOKING), None))
            .await
            .unwrap()
            .access_token,
    );
    let monitoring = view_of(
        &h.tokens
            .issue(&form(&assertion(MONITORING), None))
            .await
            .unwrap()
            .access_token,
    );
    let consult = view_of(
        &h.tokens
            .issue(&form(&assertion(CONSULT), None))
            .await
            .unwrap()
            .access_token,
    );
    assert!(booking.paired_with(&ods("A99904")), "group:sandbox-all");
    assert!(
        monitoring.paired_with(&ods("a99901")),
        "group:sandbox-north, case-insensitive"
    );
    assert!(!monitoring.paired_with(&ods("A99903")));
    assert!(consult.paired_with(&ods("A99903")) && consult.paired_with(&ods("A99901")));
    let err = monitoring.require_paired(&ods("A99903")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "supplier 'demo-monitoring' is not paired with practice A99903"
    );
    assert_eq!(gp_fhir::FhirError::status(&err), 403);
}

// ---- form-level refusals ------------------------------------------------------------

#[tokio::test]
async fn unsupported_grant_type() {
    let h = harness();
    let body = format!(
        "grant_type=authorization_code&client_assertion_type={}&client_assertion={}",
        JWT_BEARER.replace(':', "%3A"),
        assertion(BOOKING)
    );
    let err = refuse(&h, body.into_bytes()).await;
    assert_refused(
        &err,
        "unsupported_grant_type",
        "Unsupported grant_type 'authorization_code': only 'client_credentials' is supported",
        400,
    );
}

#[tokio::test]
async fn missing_grant_type() {
    let h = harness();
    let err = refuse(&h, b"client_assertion=x".to_vec()).await;
    assert_refused(
        &err,
        "invalid_request",
        "Missing 'grant_type' parameter",
        400,
    );
}

#[tokio::test]
async fn wrong_client_assertion_type() {
    let h = harness();
    let body = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Asaml2-bearer&client_assertion={}",
        assertion(BOOKING)
    );
    let err = refuse(&h, body.into_bytes()).await;
    assert_refused(
        &err,
        "invalid_request",
        "Invalid 'client_assertion_type': must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'",
        400,
    );
}

#[tokio::test]
async fn missing_client_assertion() {
    let h = harness();
    let body = format!("grant_type=client_credentials&client_assertion_type={JWT_BEARER}");
    let err = refuse(&h, body.into_bytes()).await;
    assert_refused(
        &err,
        "invalid_request",
        "Missing 'client_assertion' parameter",
        400,
    );
}

#[tokio::test]
async fn oversized_assertion() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["padding"] = json!("x".repeat(9000));
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    let size = sign(BOOKING, &c).len();
    assert_refused(
        &err,
        "invalid_request",
        &format!("client_assertion is {size} bytes; at most 8192 bytes are accepted"),
        400,
    );
}

// ---- malformed JWTs -----------------------------------------------------------------

#[tokio::test]
async fn malformed_base64() {
    let h = harness();
    let err = refuse(
        &h,
        form("eyJhbGciOiJSUzUxMiJ9!!.eyJpc3MiOiJ4In0.c2ln", None),
    )
    .await;
    assert_refused(
        &err,
        "invalid_request",
        "Malformed JWT in client_assertion: the header is not valid base64url",
        400,
    );
}

#[tokio::test]
async fn malformed_json() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let h = harness();
    let jwt = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS512","kid":"demo-booking-2025-01"}"#),
        b64("{\"iss\": ")
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Malformed JWT in client_assertion: the payload is not a JSON object",
        400,
    );
}

#[tokio::test]
async fn not_three_parts() {
    let h = harness();
    let err = refuse(&h, form("abc.def", None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Malformed JWT in client_assertion: it has 2 part(s); a JWT has 3 parts separated by '.'",
        400,
    );
}

// ---- algorithm and key selection ----------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let h = harness();
    let jwt = raw_jwt(
        &json!({"alg": "none", "kid": "demo-booking-2025-01"}),
        &claims("demo-booking"),
        "",
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Invalid 'alg' header in client_assertion JWT: 'none' is not allowed; use RS512, RS384 or ES384",
        400,
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    // Algorithm confusion: HMAC keyed with the supplier's (public) key bytes.
    let h = harness();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("demo-booking-2025-01".into());
    let key = EncodingKey::from_secret(&read("demo-booking.public.pem"));
    let jwt = jsonwebtoken::encode(&header, &claims("demo-booking"), &key).unwrap();
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Invalid 'alg' header in client_assertion JWT: 'HS256' is not allowed; use RS512, RS384 or ES384",
        400,
    );
    // The same with the JWKS text as the HMAC key.
    let key = EncodingKey::from_secret(&read("demo-booking.jwks.json"));
    let jwt = jsonwebtoken::encode(&header, &claims("demo-booking"), &key).unwrap();
    assert_eq!(refuse(&h, form(&jwt, None)).await.code(), "invalid_request");
}

#[tokio::test]
async fn missing_kid() {
    let h = harness();
    let header = Header::new(Algorithm::RS512);
    let jwt = jsonwebtoken::encode(
        &header,
        &claims("demo-booking"),
        &encoding_key(Algorithm::RS512, BOOKING.3),
    )
    .unwrap();
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Missing 'kid' header in client_assertion JWT",
        400,
    );
}

#[tokio::test]
async fn unknown_kid_for_that_client() {
    let h = harness();
    // A kid that exists, but belongs to another supplier.
    let jwt = sign(
        (
            "demo-booking",
            "demo-consult-2025-01",
            Algorithm::RS512,
            BOOKING.3,
        ),
        &claims("demo-booking"),
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Invalid 'kid' header in client_assertion JWT: no public key 'demo-consult-2025-01' is registered for client 'demo-booking'",
        401,
    );
}

#[tokio::test]
async fn alg_that_the_registered_key_cannot_use() {
    let h = harness();
    // demo-booking's JWK pins RS512; RS384 with the same RSA key is refused.
    let jwt = sign(
        ("demo-booking", BOOKING.1, Algorithm::RS384, BOOKING.3),
        &claims("demo-booking"),
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Invalid 'alg' header in client_assertion JWT: key 'demo-booking-2025-01' is registered for RS512, not RS384",
        401,
    );
}

#[tokio::test]
async fn signature_from_another_key_is_refused() {
    let h = harness();
    // demo-booking's kid and claims, signed with demo-consult's private key.
    let jwt = sign(
        ("demo-booking", BOOKING.1, Algorithm::RS512, CONSULT.3),
        &claims("demo-booking"),
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Invalid signature on client_assertion JWT",
        401,
    );
}

// ---- who is calling -----------------------------------------------------------------

#[tokio::test]
async fn unknown_client() {
    let h = harness();
    let jwt = sign(
        ("nobody", BOOKING.1, Algorithm::RS512, BOOKING.3),
        &claims("acme-unregistered"),
    );
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Unknown client 'acme-unregistered' in 'iss' claim of client_assertion JWT",
        401,
    );
}

#[tokio::test]
async fn suspended_client() {
    let mut cfg = suppliers_config();
    cfg.suppliers[0].status = SupplierStatus::Suspended; // demo-booking
    let h = harness_with(cfg, Arc::new(MemoryReplayStore::default()));
    let err = refuse(&h, form(&assertion(BOOKING), None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Client 'demo-booking' is suspended",
        401,
    );
}

#[tokio::test]
async fn iss_differs_from_sub() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["sub"] = json!("demo-consult");
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_client",
        "Invalid 'iss'/'sub' claims in client_assertion JWT: both must be the client id",
        401,
    );
}

// ---- validity here and now ----------------------------------------------------------

#[tokio::test]
async fn wrong_audience() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["aud"] = json!("https://gw.test/oauth2/token/");
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "Invalid 'aud' claim in client_assertion JWT: must be 'https://gw.test/oauth2/token'",
        400,
    );
}

#[tokio::test]
async fn expired_assertion() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["exp"] = json!(now() - 31 - 5);
    c["iat"] = json!(now() - 200);
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "client_assertion JWT has expired ('exp' is in the past)",
        400,
    );
}

#[tokio::test]
async fn missing_exp() {
    let h = harness();
    let mut c = claims("demo-booking");
    c.as_object_mut().unwrap().remove("exp");
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Missing 'exp' claim in client_assertion JWT",
        400,
    );
}

#[tokio::test]
async fn too_long_lived_assertion() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["exp"] = json!(now() + 300 + 30 + 60);
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "Invalid 'exp' claim in client_assertion JWT: more than 300 seconds in the future",
        400,
    );
}

#[tokio::test]
async fn not_yet_valid_nbf() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["nbf"] = json!(now() + 90);
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "Invalid 'nbf' claim in client_assertion JWT: it is in the future",
        400,
    );
}

#[tokio::test]
async fn not_yet_valid_iat() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["iat"] = json!(now() + 90);
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "Invalid 'iat' claim in client_assertion JWT: it is in the future",
        400,
    );
}

#[tokio::test]
async fn small_clock_skew_is_tolerated() {
    let h = harness();
    let mut c = claims("demo-booking");
    c["iat"] = json!(now() + 10);
    c["nbf"] = json!(now() + 10);
    assert!(
        h.tokens
            .issue(&form(&sign(BOOKING, &c), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn missing_jti() {
    let h = harness();
    let mut c = claims("demo-booking");
    c.as_object_mut().unwrap().remove("jti");
    let err = refuse(&h, form(&sign(BOOKING, &c), None)).await;
    assert_refused(
        &err,
        "invalid_request",
        "Missing 'jti' claim in client_assertion JWT",
        400,
    );
}

#[tokio::test]
async fn replayed_jti() {
    let h = harness();
    let jwt = assertion(BOOKING);
    h.tokens.issue(&form(&jwt, None)).await.unwrap();
    let err = refuse(&h, form(&jwt, None)).await;
    assert_refused(
        &err,
        "invalid_grant",
        "Non-unique 'jti' claim in client_assertion JWT: this assertion was already used",
        400,
    );
    // The same jti from another client is that client's own business.
    let mut c = claims("demo-consult");
    c["jti"] = serde_json::from_str::<Value>(&format!("\"{}\"", jti_of(&jwt))).unwrap();
    assert!(
        h.tokens
            .issue(&form(&sign(CONSULT, &c), None))
            .await
            .is_ok()
    );
}

fn jti_of(jwt: &str) -> String {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(jwt).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

// ---- scopes -------------------------------------------------------------------------

#[tokio::test]
async fn requested_scopes_wholly_beyond_allowed() {
    let h = harness();
    let err = refuse(
        &h,
        form(&assertion(MONITORING), Some("system/Appointment.cruds")),
    )
    .await;
    assert_refused(
        &err,
        "invalid_scope",
        "None of the requested scopes is allowed for client 'demo-monitoring'; allowed: system/Observation.crs system/Organization.r system/Patient.rs system/Practitioner.r system/Subscription.crds",
        400,
    );
}

#[tokio::test]
async fn patient_context_scope_is_refused() {
    let h = harness();
    let err = refuse(
        &h,
        form(&assertion(MONITORING), Some("patient/Observation.rs")),
    )
    .await;
    assert_refused(
        &err,
        "invalid_scope",
        "Invalid 'scope' parameter: scope 'patient/Observation.rs' uses the 'patient/' context; backend services may only request 'system/' scopes",
        400,
    );
}

// ---- fail closed, rate limits -------------------------------------------------------

struct BrokenStore;

#[async_trait]
impl ReplayStore for BrokenStore {
    async fn first_use(&self, _key: &str, _exp: u64) -> Result<bool, StoreError> {
        Err(StoreError::Redis("connection refused".into()))
    }
}

#[tokio::test]
async fn unreachable_replay_store_fails_closed() {
    let h = harness_with(suppliers_config(), Arc::new(BrokenStore));
    let err = refuse(&h, form(&assertion(BOOKING), None)).await;
    assert_refused(
        &err,
        "temporarily_unavailable",
        "Token service temporarily unavailable (replay store unreachable); retry shortly",
        503,
    );
    assert_eq!(err.retry_after_secs(), Some(1));
}

#[tokio::test]
async fn token_requests_over_the_client_rate_are_refused() {
    let h = harness();
    let tokens = {
        let cfg = auth_config();
        let keys = GatewayKeys::load(&cfg, &sandbox()).unwrap();
        TokenService::new(
            cfg,
            keys,
            h.registry.clone(),
            Arc::new(MemoryReplayStore::default()),
        )
        .with_rate_limiter(Arc::new(MemoryRateLimiter::default()))
    };
    // demo-booking: token_rate_limit burst 5.
    for _ in 0..5 {
        tokens
            .issue(&form(&assertion(BOOKING), None))
            .await
            .unwrap();
    }
    let err = tokens
        .issue(&form(&assertion(BOOKING), None))
        .await
        .unwrap_err();
    assert_refused(
        &err,
        "temporarily_unavailable",
        "Token request rate limit exceeded for client 'demo-booking': retry after 1 s",
        429,
    );
    assert_eq!(err.retry_after_secs(), Some(1));
    // Other clients have their own budget.
    assert!(tokens.issue(&form(&assertion(CONSULT), None)).await.is_ok());
}

// ---- published metadata -------------------------------------------------------------

#[tokio::test]
async fn jwks_and_smart_configuration() {
    let h = harness();
    let jwks = h.tokens.jwks();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["kid"], "gw-1");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part");
    let smart = h
        .tokens
        .smart_configuration("https://gw.test/.well-known/jwks.json");
    assert_eq!(smart["token_endpoint"], TOKEN_URL);
    assert_eq!(
        smart["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        smart["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS512", "RS384", "ES384"])
    );
    assert_eq!(
        smart["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        smart["capabilities"],
        json!(["client-confidential-asymmetric"])
    );
    assert!(
        smart["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("system/Slot.rs"))
    );
}
