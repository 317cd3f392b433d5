//! The committed sandbox files load, and config mistakes are reported precisely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use gp_auth::*;

#[test]
fn sandbox_suppliers_file_validates_and_builds() {
    let cfg = suppliers_config();
    // Three demo suppliers, the demo operator console and a suspended demo supplier.
    assert_eq!(cfg.suppliers.len(), 5);
    cfg.validate().unwrap();
    let set = SupplierSet::build(&cfg, &sandbox()).unwrap();
    assert_eq!(set.len(), 5);
    let suspended: Vec<&str> = cfg
        .suppliers
        .iter()
        .filter(|s| s.status == SupplierStatus::Suspended)
        .map(|s| s.client_id.as_str())
        .collect();
    assert_eq!(suspended, ["demo-suspended"]);
    let operators: Vec<&str> = cfg
        .suppliers
        .iter()
        .filter(|s| s.operator)
        .map(|s| s.client_id.as_str())
        .collect();
    assert_eq!(operators, ["demo-operator"]);
}

#[test]
fn missing_jwks_file_names_supplier_and_path() {
    let mut cfg = suppliers_config();
    cfg.suppliers[1].jwks_file = Some("nope.json".into());
    let errors = SupplierSet::build(&cfg, &sandbox()).unwrap_err();
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.starts_with("supplier 'demo-monitoring', key 'jwks_file': cannot read "),
        "{msg}"
    );
    assert!(msg.contains("nope.json"), "{msg}");
}

#[test]
fn inline_jwks_problems_are_precise() {
    let mut cfg = suppliers_config();
    let mut jwks: serde_json::Value =
        serde_json::from_slice(&read("demo-booking.jwks.json")).unwrap();
    jwks["keys"][0]["d"] = "secret".into();
    cfg.suppliers[0].jwks_file = None;
    cfg.suppliers[0].jwks = Some(jwks);
    let errors = cfg.validate().unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "supplier 'demo-booking', key 'jwks': key 'demo-booking-2025-01' contains private key material ('d'): register only the public key"
    );
    let mut jwks: serde_json::Value =
        serde_json::from_slice(&read("demo-booking.jwks.json")).unwrap();
    jwks["keys"][0]["alg"] = "HS256".into();
    cfg.suppliers[0].jwks = Some(jwks);
    assert_eq!(
        cfg.validate().unwrap_err()[0].to_string(),
        "supplier 'demo-booking', key 'jwks': key 'demo-booking-2025-01' has alg 'HS256'; allowed: RS512, RS384, ES384"
    );
}

#[test]
fn unknown_toml_keys_are_refused() {
    let err = toml::from_str::<SuppliersConfig>(
        "[[suppliers]]\nclient_id='a'\nname='A'\nstatus='active'\njwks_file='x'\nscopes=[]\npractices=[]\nrate_limit={per_second=1.0,burst=1}\nratelimit={per_second=1.0,burst=1}\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `ratelimit`"),
        "{err}"
    );
}

#[test]
fn gateway_key_that_is_not_ed25519_is_refused() {
    let mut cfg = auth_config();
    cfg.signing_keys[0].private_key_pem = "demo-booking.private.pem".into();
    let errors = GatewayKeys::load(&cfg, &sandbox()).unwrap_err();
    assert!(
        errors[0].to_string().starts_with(
            "auth, key 'signing_keys': kid 'gw-1' is not an Ed25519 PKCS#8 PEM private key"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn sandbox_auth_file_loads() {
    let text = String::from_utf8(read("auth.toml")).unwrap();
    let cfg: AuthConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    let keys = GatewayKeys::load(&cfg, &sandbox()).unwrap();
    assert_eq!(keys.jwks()["keys"][0]["kid"], "sandbox-gw-1");
}
