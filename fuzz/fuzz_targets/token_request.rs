//! The token endpoint: a `POST /oauth2/token` form body, its client assertion (a JWT
//! from outside) and the claims and scopes in it (gp_auth::TokenService::issue).
//!
//! Mode byte even: the rest is the raw form body (form decoding, JWT shape, header
//! checks, up to the signature). Odd: the rest is `claims JSON` [`\n` extra form
//! parameters], signed with a demo supplier's key, so the checks after the signature
//! (audience, times, `jti`, scopes) are fuzzed too; small `exp`/`nbf`/`iat` are offsets
//! from now.
#![no_main]

use gp_auth::JWT_BEARER;
use gp_gateway_fuzz::{AUTH, SIGNER, mode, times_from_now};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else {
        return;
    };
    let auth = &*AUTH;
    let body = if m % 2 == 0 {
        rest.to_vec()
    } else {
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let Ok(mut claims) = serde_json::from_slice::<Map<String, Value>>(&rest[..split]) else {
            return;
        };
        times_from_now(&mut claims);
        let mut body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={}",
            JWT_BEARER.replace(':', "%3A"),
            auth.sign_assertion(&claims)
        )
        .into_bytes();
        if let Some(extra) = rest.get(split + 1..) {
            body.push(b'&');
            body.extend_from_slice(extra);
        }
        body
    };
    match auth.runtime.block_on(auth.tokens.issue(&body)) {
        Ok(issued) => {
            // Whatever is issued is a token the gateway itself accepts, for the
            // client that signed, with no more than it asked for.
            assert_eq!(m % 2, 1, "an unsigned form body got a token");
            let claims = auth
                .verifier
                .verify_token(&issued.access_token)
                .expect("an issued token verifies");
            assert_eq!(claims.client_id, SIGNER.0);
            assert_eq!(claims.scopes.to_string(), issued.scope);
            let _ = issued.to_json();
        }
        Err(e) => {
            let _ = (e.status(), e.code(), e.to_json());
        }
    }
});
