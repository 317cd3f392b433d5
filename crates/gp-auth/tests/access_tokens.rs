//! FHIR-side checks: what happens to a request carrying a given Authorization header.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use gp_auth::*;
use gp_fhir::{FhirError, IssueType, SpineCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn access_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "demo-booking", "client_id": "demo-booking", "aud": AUDIENCE,
        "exp": now() + 300, "iat": now(), "jti": "t-1", "scope": "system/Patient.rs",
    })
}

fn gateway_signed(kid: &str, key_file: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(&read(key_file)).unwrap(),
    )
    .unwrap()
}

fn refused(h: &Harness, token: &str) -> AccessError {
    h.verifier
        .verify(Some(&format!("Bearer {token}")))
        .expect_err("token should be refused")
}

fn assert_401(err: &AccessError, diagnostics: &str) {
    assert_eq!(err.status(), 401, "{err}");
    assert_eq!(err.spine_code(), SpineCode::AccessDenied);
    assert_eq!(err.issue_type(), IssueType::Login);
    assert_eq!(err.diagnostics(), diagnostics);
    let outcome = gp_fhir::OperationOutcome::from_error(err);
    assert_eq!(outcome.spine_code(), Some("ACCESS_DENIED"));
}

#[test]
fn a_well_formed_gateway_token_is_accepted() {
    let h = harness();
    let claims = h
        .verifier
        .verify(Some(&format!(
            "Bearer {}",
            gateway_signed("gw-1", "gateway-signing-ed25519.pem", &access_claims())
        )))
        .unwrap();
    assert_eq!(claims.client_id, "demo-booking");
    assert_eq!(claims.token_id, "t-1");
    assert!(claims.scopes.allows("Patient", Permission::Search));
}

#[test]
fn expired_access_token() {
    let h = harness();
    let mut c = access_claims();
    let exp = now() - 120;
    c["exp"] = json!(exp);
    let err = refused(
        &h,
        &gateway_signed("gw-1", "gateway-signing-ed25519.pem", &c),
    );
    assert_401(
        &err,
        &format!(
            "access token expired at {exp} (Unix time); request a new one from the token endpoint"
        ),
    );
}

#[test]
fn access_token_signed_by_an_unknown_key() {
    let h = harness();
    let err = refused(
        &h,
        &gateway_signed("gw-old", "untrusted-ed25519.pem", &access_claims()),
    );
    assert_401(
        &err,
        "access token was signed by an unknown key (kid 'gw-old')",
    );
    // Known kid, wrong key: the signature fails.
    let err = refused(
        &h,
        &gateway_signed("gw-1", "untrusted-ed25519.pem", &access_claims()),
    );
    assert_401(&err, "access token signature is invalid");
}

#[test]
fn access_token_with_another_algorithm() {
    let h = harness();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("gw-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &access_claims(),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_401(
        &refused(&h, &token),
        "access token algorithm 'HS256' is not accepted; this gateway signs with EdDSA",
    );
}

#[test]
fn access_token_for_another_audience_or_issuer() {
    let h = harness();
    let mut c = access_claims();
    c["aud"] = json!("https://other.example/FHIR/R4");
    assert_401(
        &refused(
            &h,
            &gateway_signed("gw-1", "gateway-signing-ed25519.pem", &c),
        ),
        "access token audience is not this FHIR server (expected 'https://gw.test/FHIR/R4')",
    );
    let mut c = access_claims();
    c["iss"] = json!("https://other.example");
    assert_401(
        &refused(
            &h,
            &gateway_signed("gw-1", "gateway-signing-ed25519.pem", &c),
        ),
        "access token was not issued by this gateway (expected issuer 'https://gw.test')",
    );
}

#[test]
fn missing_and_malformed_authorization_headers() {
    let h = harness();
    assert_401(
        &h.verifier.verify(None).unwrap_err(),
        "missing Authorization header: send 'Authorization: Bearer <access token>'",
    );
    for bad in [
        "Basic ZGVtbzpzZWNyZXQ=",
        "Bearer",
        "Bearer   ",
        "eyJhbGciOi.x.y",
    ] {
        assert_401(
            &h.verifier.verify(Some(bad)).unwrap_err(),
            "Authorization header must be 'Bearer <access token>'",
        );
    }
    assert_401(
        &h.verifier.verify(Some("Bearer not-a-jwt")).unwrap_err(),
        "access token is malformed: it has 1 part(s); a JWT has 3 parts separated by '.'",
    );
    assert_401(
        &h.verifier.verify(Some("Bearer YQ.YQ.c2ln")).unwrap_err(),
        "access token is malformed: the header is not a JSON object",
    );
    // The scheme is case-insensitive (RFC 7235).
    let token = gateway_signed("gw-1", "gateway-signing-ed25519.pem", &access_claims());
    assert!(h.verifier.verify(Some(&format!("bearer {token}"))).is_ok());
}

#[tokio::test]
async fn suspension_applies_to_tokens_already_issued() {
    let h = harness();
    let ok = h
        .tokens
        .issue(&form(&assertion(BOOKING), None))
        .await
        .unwrap();
    let header = format!("Bearer {}", ok.access_token);
    // The gateway caches verified claims; they stay valid as a JWT...
    let cached = h.verifier.verify(Some(&header)).unwrap();
    assert!(h.registry.authorise(&cached).is_ok());

    let mut cfg = suppliers_config();
    cfg.suppliers[0].status = SupplierStatus::Suspended;
    h.registry
        .replace(SupplierSet::build(&cfg, &sandbox()).unwrap());

    // ...but authorise consults the current registry.
    let err = h.registry.authorise(&cached).unwrap_err();
    assert_eq!(err.to_string(), "supplier 'demo-booking' is suspended");
    assert_eq!(err.status(), 403);
    assert_eq!(err.spine_code(), SpineCode::AccessDenied);

    // Removing the supplier altogether: 401.
    cfg.suppliers.remove(0);
    h.registry
        .replace(SupplierSet::build(&cfg, &sandbox()).unwrap());
    let err = h.registry.authorise(&cached).unwrap_err();
    assert_401(&err, "supplier 'demo-booking' is not registered");
}

#[tokio::test]
async fn narrowing_allowed_scopes_applies_to_tokens_already_issued() {
    let h = harness();
    let ok = h
        .tokens
        .issue(&form(&assertion(BOOKING), None))
        .await
        .unwrap();
    let claims = h
        .verifier
        .verify(Some(&format!("Bearer {}", ok.access_token)))
        .unwrap();
    let mut cfg = suppliers_config();
    cfg.suppliers[0].scopes = vec!["system/Patient.rs".into()];
    h.registry
        .replace(SupplierSet::build(&cfg, &sandbox()).unwrap());
    let view = h.registry.authorise(&claims).unwrap();
    assert!(view.require("Patient", Permission::Read).is_ok());
    let err = view.require("Appointment", Permission::Create).unwrap_err();
    assert_eq!(err.to_string(), "token lacks scope system/Appointment.c");
    assert_eq!(err.status(), 403);
}

#[tokio::test]
async fn signing_key_rotation_keeps_old_tokens_valid() {
    let old = harness();
    let old_token = old
        .tokens
        .issue(&form(&assertion(BOOKING), None))
        .await
        .unwrap()
        .access_token;

    let mut cfg = auth_config();
    cfg.signing_keys.push(SigningKeyConfig {
        kid: "gw-2".into(),
        private_key_pem: "untrusted-ed25519.pem".into(),
    });
    cfg.active_kid = "gw-2".into();
    let keys = GatewayKeys::load(&cfg, &sandbox()).unwrap();
    let tokens = TokenService::new(
        cfg,
        keys,
        old.registry.clone(),
        Arc::new(MemoryReplayStore::default()),
    );
    let new_token = tokens
        .issue(&form(&assertion(BOOKING), None))
        .await
        .unwrap()
        .access_token;
    let verifier = tokens.verifier();
    assert!(
        verifier
            .verify(Some(&format!("Bearer {old_token}")))
            .is_ok()
    );
    assert!(
        verifier
            .verify(Some(&format!("Bearer {new_token}")))
            .is_ok()
    );
    let kid = jsonwebtoken::decode_header(&new_token).unwrap().kid;
    assert_eq!(kid.as_deref(), Some("gw-2"));
    assert_eq!(tokens.jwks()["keys"].as_array().unwrap().len(), 2);
    // The old gateway, not knowing gw-2, refuses the new token.
    assert_401(
        &refused(&old, &new_token),
        "access token was signed by an unknown key (kid 'gw-2')",
    );
}

#[test]
fn a_refusal_once_the_supplier_is_known_is_forbidden_not_a_login_problem() {
    for err in [
        AccessError::SupplierSuspended("demo-booking".into()),
        AccessError::NotPaired {
            client_id: "demo-booking".into(),
            ods: "B82617".into(),
        },
    ] {
        assert_eq!(err.status(), 403, "{err}");
        assert_eq!(err.issue_type(), IssueType::Forbidden, "{err}");
        assert_eq!(err.spine_code(), SpineCode::AccessDenied);
    }
}

#[test]
fn an_access_token_of_exactly_the_size_limit_is_accepted() {
    const LIMIT: usize = 4096;
    let h = harness();
    // Pad a claim (and, for the lengths base64 cannot reach with one header, add a header
    // field) until the signed token is exactly LIMIT bytes.
    let sized = |len: usize| {
        (0..LIMIT)
            .flat_map(|pad| [false, true].map(|cty| (pad, cty)))
            .find_map(|(pad, cty)| {
                let mut claims = access_claims();
                claims["pad"] = json!("x".repeat(pad));
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some("gw-1".into());
                header.cty = cty.then(|| "x".into());
                let token = jsonwebtoken::encode(
                    &header,
                    &claims,
                    &EncodingKey::from_ed_pem(&read("gateway-signing-ed25519.pem")).unwrap(),
                )
                .unwrap();
                (token.len() == len).then_some(token)
            })
            .unwrap_or_else(|| panic!("no token of {len} bytes"))
    };
    let at_limit = sized(LIMIT);
    let claims = h
        .verifier
        .verify(Some(&format!("Bearer {at_limit}")))
        .unwrap();
    assert_eq!(claims.client_id, "demo-booking");
    let over = sized(LIMIT + 1);
    let err = refused(&h, &over);
    assert_401(
        &err,
        &format!("access token is malformed: it is longer than {LIMIT} bytes"),
    );
}

#[test]
fn the_verifiers_debug_names_its_issuer_and_no_key() {
    let h = harness();
    let shown = format!("{:?}", h.verifier);
    assert!(
        shown.contains(ISSUER) && shown.contains(AUDIENCE),
        "{shown}"
    );
    assert!(!shown.contains("key"), "{shown}");
}
