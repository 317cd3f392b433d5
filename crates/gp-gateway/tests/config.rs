//! `check-config`: a config tree is validated on load, every problem naming its file and key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use gp_gateway::config::LoadedConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copies config/ into a temp dir and applies `edit` to gateway.toml.
fn tree(edit: impl Fn(String) -> String, practices: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let gateway = std::fs::read_to_string(repo().join("config/gateway.toml")).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), edit(gateway)).unwrap();
    std::fs::write(dir.path().join("practices.toml"), practices).unwrap();
    for f in std::fs::read_dir(repo().join("config")).unwrap() {
        let f = f.unwrap();
        let name = f.file_name();
        if name != "gateway.toml" && name != "practices.toml" && f.path().is_file() {
            std::fs::copy(f.path(), dir.path().join(name)).unwrap();
        }
    }
    dir
}

const PRACTICES: &str = "[[practice]]\nods = \"B82617\"\nname = \"Riverside\"\nsystem = \"emis\"\n";

#[test]
fn the_shipped_example_config_is_valid() {
    let cfg = LoadedConfig::load(
        &repo().join("config/gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap();
    assert!(!cfg.practices.is_empty());
    assert!(
        !cfg.suppliers.suppliers.is_empty(),
        "example names a supplier registry"
    );
}

#[test]
fn an_unknown_key_is_refused_with_its_file_and_name() {
    let dir = tree(
        |g| g.replace("[search]", "[search]\ncolour = \"blue\""),
        PRACTICES,
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gateway.toml"), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let dir = tree(
        |g| {
            g.replace("listen = \"0.0.0.0:8443\"", "listen = \"everywhere\"")
                .replace("max_count = 250", "max_count = 5000")
                .replace("pds_base_url = \"https://", "pds_base_url = \"ftp://")
        },
        "[[practice]]\nods = \"B8/617\"\nname = \"x\"\nsystem = \"emis\"\n[[practice]]\nods = \"C12345\"\nname = \"y\"\nsystem = \"tpp\"\n",
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "server.listen",
        "search",
        "locator.pds_base_url",
        "practice[0].ods",
        "practice[1].system",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(err.0.len() >= 5, "{text}");
}

#[test]
fn oauth_mode_needs_auth_and_suppliers() {
    let dir = tree(
        |g| g.replace("suppliers_file = \"suppliers.toml\"", ""),
        PRACTICES,
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("suppliers_file"), "{err}");
}

#[test]
fn a_missing_practice_registry_names_the_path() {
    let dir = tree(
        |g| {
            g.replace(
                "practices_file = \"practices.toml\"",
                "practices_file = \"nope.toml\"",
            )
        },
        PRACTICES,
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("nope.toml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn telemetry_is_off_by_default_and_its_example_is_valid_once_uncommented() {
    let cfg = LoadedConfig::load(
        &repo().join("config/gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap();
    assert_eq!(cfg.gateway.telemetry.otlp_endpoint, None);

    let dir = tree(
        |g| {
            g.replace("# [telemetry]", "[telemetry]")
                .replace("# otlp_endpoint =", "otlp_endpoint =")
                .replace("# service_name =", "service_name =")
                .replace("# sample_ratio =", "sample_ratio =")
        },
        PRACTICES,
    );
    let cfg = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap();
    let t = &cfg.gateway.telemetry;
    assert_eq!(
        t.otlp_endpoint.as_deref(),
        Some("http://otel-collector:4318/v1/traces")
    );
    assert_eq!(t.service_name, "gp-gateway");
    assert_eq!(t.sample_ratio, 1.0);
}

#[test]
fn telemetry_problems_name_their_keys() {
    let dir = tree(
        |g| {
            g.replace(
                "# [telemetry]",
                "[telemetry]\notlp_endpoint = \"https://collector:4318/v1/traces\"\nsample_ratio = 2.0\n",
            )
        },
        PRACTICES,
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
    assert!(err.contains("no TLS"), "{err}");
    assert!(err.contains("telemetry.sample_ratio"), "{err}");
}

#[test]
fn each_systems_table_is_read_by_its_registered_factory() {
    // A system this binary does not register, a table its factory cannot read, and a
    // setting it refuses: each named by its key, all reported at once.
    let dir = tree(
        |g| {
            g.replace("[systems.emis]", "[systems.acme]\nbase_url = \"http://127.0.0.1:9\"\n\n[systems.tpp]\nbase_urll = \"http://127.0.0.1:9\"\n\n[systems.vision]\nbase_url = \"http://127.0.0.1:9\"\nrequest_timeout_ms = 0\n\n[systems.emis]")
        },
        "[[practice]]\nods = \"B82617\"\nname = \"x\"\nsystem = \"acme\"\n[[practice]]\nods = \"C12345\"\nname = \"y\"\nsystem = \"tpp\"\n",
    );
    let err = LoadedConfig::load(
        &dir.path().join("gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "systems.acme: no GP system 'acme' is registered in this gateway (registered: emis, microtest, tpp, vision)",
        "systems.tpp: unknown field `base_urll`",
        "systems.vision: vision.request_timeout_ms is 0 ms",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // The practice on the unregistered system is refused once, for its table; the one
    // on the unreadable table is not blamed again.
    assert_eq!(err.0.len(), 3, "{text}");

    // The shipped tree's one table is read by EMIS's factory.
    let cfg = LoadedConfig::load(
        &repo().join("config/gateway.toml"),
        &gp_gateway::systems::builtin(),
    )
    .unwrap();
    let ids: Vec<&str> = cfg.systems.keys().map(|s| s.id()).collect();
    assert_eq!(ids, ["emis"]);
    assert_eq!(
        cfg.systems.values().next().unwrap().system().display_name(),
        "EMIS Web"
    );
}
