//! Access tokens on every FHIR request: the `Authorization` header value, its JWT and
//! the claims in it (gp_auth::AccessVerifier).
//!
//! Mode byte even: the rest is the header value. Odd: the rest is a claims JSON object,
//! signed with the gateway's key, so claim parsing (types, times, scope) is reached;
//! small `exp`/`nbf`/`iat` are offsets from now.
#![no_main]

use gp_fhir::FhirError;
use gp_gateway_fuzz::{AUTH, mode, times_from_now};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else {
        return;
    };
    let auth = &*AUTH;
    let result = if m % 2 == 0 {
        // hyper's `HeaderValue::to_str` hands the pipeline visible ASCII only, but the
        // verifier must not rely on that.
        let Ok(header) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = gp_auth::bearer_token(Some(header));
        auth.verifier.verify(Some(header))
    } else {
        let Ok(mut claims) = serde_json::from_slice::<Map<String, Value>>(rest) else {
            return;
        };
        times_from_now(&mut claims);
        let token = auth.sign_access_token(&claims);
        auth.verifier.verify(Some(&format!("Bearer {token}")))
    };
    match result {
        Ok(claims) => {
            assert_eq!(m % 2, 1, "an unsigned header verified");
            assert!(!claims.scopes.is_empty() || claims.scopes.to_string().is_empty());
        }
        Err(e) => {
            let _ = (e.status(), e.issue_type(), e.spine_code(), e.to_string());
        }
    }
});
