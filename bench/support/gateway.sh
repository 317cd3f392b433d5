#!/usr/bin/env bash
# What bench/load.sh and bench/profile-requests.sh share: a benchmark gateway's config and a
# demo supplier's token. Sourced; needs ROOT, GW and the simulators' ports (P_PDS, P_EMIS,
# P_TPP, P_VISION, P_MT); the trail from AUDIT_BACKEND (sqlite, or postgres with PG_URL and
# PG_SCHEMA_PREFIX) and AUDIT_SYNC (full). The config names practices.toml and
# suppliers.toml beside it.

gateway_config() { # port, cache ttl, [audit synchronous: $AUDIT_SYNC]
    cat <<EOF
practices_file = "practices.toml"
suppliers_file = "suppliers.toml"
[server]
listen = "127.0.0.1:$1"
public_base_url = "http://127.0.0.1:$1"
fhir_base_path = "/FHIR/R4"
# Every load connection comes from 127.0.0.1: the per-peer cap is lifted to the overall one.
max_connections_per_peer = 4096
[admin]
# /metrics: each gateway's admin port is 100 above its main port.
listen = "127.0.0.1:$(($1 + 100))"
[locator]
pds_base_url = "http://127.0.0.1:$P_PDS/personal-demographics/FHIR/R4"
timeout_ms = 2000
[access]
mode = "oauth"
[auth]
token_url = "http://127.0.0.1:$1/oauth2/token"
issuer = "http://127.0.0.1:$1"
audience = "http://127.0.0.1:$1/FHIR/R4"
active_kid = "sandbox-gw-1"
# One token serves each wrk run (the soak's up to an hour), so it must outlive it.
access_token_ttl_secs = 3600
signing_keys = [{ kid = "sandbox-gw-1", private_key_pem = "$ROOT/fixtures/sandbox/gateway-signing-ed25519.pem" }]
# Every token request comes from 127.0.0.1: the per-address pre-check (2 a second) is
# lifted, as the suppliers' own token limits are, or the token row measures refusals.
token_precheck = { per_peer = { per_second = 1000000.0, burst = 1000000 } }
[state]
backend = "memory"
[cache]
ttl_secs = $2
max_patients = 1000
max_entries = 8000
[resilience]
max_concurrent_calls = 512
queue_wait_ms = 1000
breaker_failures = 50
breaker_cooldown_ms = 1000
read_retries = 0
retry_backoff_ms = 50
[audit]
backend = "${AUDIT_BACKEND:-sqlite}"
sqlite_path = "audit-$1.sqlite"
$([ "${AUDIT_BACKEND:-sqlite}" = postgres ] && printf 'postgres_url = "%s"\npostgres_schema = "%s_%s"' "$PG_URL" "$PG_SCHEMA_PREFIX" "$1")
synchronous = "${3:-${AUDIT_SYNC:-full}}"
[systems.emis]
base_url = "http://127.0.0.1:$P_EMIS"
[systems.tpp]
base_url = "http://127.0.0.1:$P_TPP"
[systems.vision]
base_url = "http://127.0.0.1:$P_VISION"
[systems.microtest]
base_url = "http://127.0.0.1:$P_MT"
EOF
}

token_for() { # gateway port, [client id]
    local assertion
    assertion=$("$GW" client-assertion --client-id "${2:-demo-consult}" --token-url "http://127.0.0.1:$1/oauth2/token")
    curl -sf --max-time 60 "http://127.0.0.1:$1/oauth2/token" -d grant_type=client_credentials \
        -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
        -d client_assertion="$assertion" | jq -r .access_token
}
