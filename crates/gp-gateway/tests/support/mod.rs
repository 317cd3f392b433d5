//! What the tests that run the `gp-gateway` binary share.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};

/// A `serve` config tree in `dir` (gateway.toml, one EMIS practice, no suppliers, the
/// sandbox's TEST-ONLY signing key, an SQLite trail in `dir`, GP system and PDS on a
/// closed port) listening on a free loopback port, with `extra` (more TOML tables)
/// appended. Returns gateway.toml's path and the public base URL.
pub fn serve_config(dir: &Path, extra: &str) -> (PathBuf, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sandbox");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.join("practices.toml"),
        "[[practice]]\nods = \"B82617\"\nname = \"Riverside\"\nsystem = \"emis\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("suppliers.toml"), "suppliers = []\n").unwrap();
    let public = format!("http://127.0.0.1:{port}");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"practices_file = "practices.toml"
suppliers_file = "suppliers.toml"

[server]
listen = "127.0.0.1:{port}"
public_base_url = "{public}"

# Replicas and test runs side by side: each admin listener on a port of its own.
[admin]
listen = "127.0.0.1:0"

[locator]
pds_base_url = "http://127.0.0.1:9/personal-demographics/FHIR/R4"

[auth]
token_url = "{public}/oauth2/token"
issuer = "{public}"
audience = "{public}/FHIR/R4"
active_kid = "k1"
signing_keys = [{{ kid = "k1", private_key_pem = "{key}" }}]

[audit]
backend = "sqlite"
sqlite_path = "{audit}"

[systems.emis]
base_url = "http://127.0.0.1:9"

{extra}
"#,
            key = fixtures.join("gateway-signing-ed25519.pem").display(),
            audit = dir.join("audit.sqlite").display(),
        ),
    )
    .unwrap();
    (config, public)
}
