#!/usr/bin/env bash
# Load benchmark: gp-gateway side by side with its peers, all on loopback, in one run.
#
#   1. direct       the native EMIS MedicalRecord read straight against the simulator
#   2. nginx        nginx as a plain reverse proxy in front of the same simulator
#   3. haproxy-jwt  HAProxy verifying an RS256 JWT per request (jwt_verify), same simulator
#   4. gateway      authenticated FHIR GET /Patient/{nhs} and Observation?patient={nhs},
#                   record cache on (hits) and off ([cache] ttl_secs = 0)
#
# Each peer runs for DURATION at CONNS connections (wrk, after a WARMUP run); the script
# prints one markdown table and rewrites the generated part of BENCHMARKS.md (between the
# BEGIN/END GENERATED markers), together with the criterion micro-benchmark figures
# (MICRO=1, the default). Installs what it lacks (apt-get: wrk nginx haproxy jq curl
# openssl). Stops everything it started on exit. Keys are throwaway (HAProxy's) or the
# TEST-ONLY sandbox fixtures (the gateway's).
#
#   bench/load.sh                            # defaults: 10 s per peer, 32 connections
#   DURATION=5s CONNS=64 MICRO=0 bench/load.sh
#   SOAK_SECONDS=600 bench/load.sh           # also: RSS of the gateway under 256 connections
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT_BASE=${PORT_BASE:-18400}
SEED=${SEED:-20261123}
NHS=${NHS:-9000000009} # the EMIS demo patient (full record)
MICRO=${MICRO:-1}
MICRO_ARGS=${MICRO_ARGS:---warm-up-time 1 --measurement-time 3}
SOAK_SECONDS=${SOAK_SECONDS:-0}
SOAK_CONNS=${SOAK_CONNS:-256}
OUT=${OUT:-$ROOT/BENCHMARKS.md}

log() { printf '[load.sh] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
need=()
for t in wrk:wrk nginx:nginx-light haproxy:haproxy jq:jq curl:curl openssl:openssl; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
HAPROXY_VERSION=$(haproxy -v 2>&1 || true)
grep -Eq 'version (2\.[6-9]|[3-9]\.)' <<<"$HAPROXY_VERSION" || { log "HAProxy 2.6+ needed for jwt_verify"; exit 1; }

log "building release binaries"
(cd "$ROOT" && cargo build --release -q -p gp-gateway -p gp-sim --bins)
GW=$ROOT/target/release/gp-gateway
SIM=$ROOT/target/release/gp-sim

# --- processes, stopped on exit ----------------------------------------------------------
TMP=$(mktemp -d -t gp-load.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
start() { # name, command... ; sets LAST_PID
    local name=$1; shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
wait_http() { # url, [header]
    for _ in $(seq 1 400); do
        curl -sf -o /dev/null ${2:+-H "$2"} "$1" && return 0
        sleep 0.025
    done
    log "no answer from $1"; return 1
}
now_ns() { date +%s%N; }

P_EMIS=$PORT_BASE P_TPP=$((PORT_BASE + 1)) P_VISION=$((PORT_BASE + 2)) P_MT=$((PORT_BASE + 3))
P_PDS=$((PORT_BASE + 4)) P_NGINX=$((PORT_BASE + 5)) P_HAPROXY=$((PORT_BASE + 6))
P_GW=$((PORT_BASE + 7)) P_GW_NOCACHE=$((PORT_BASE + 8))

# --- simulators ----------------------------------------------------------------------------
"$GW" sandbox --print-manifest --seed "$SEED" >"$TMP/manifest.json"
ODS=$(jq -r --arg n "$NHS" '.patients[] | select(.nhs_number == $n) | .practice' "$TMP/manifest.json")
start sim "$SIM" --seed "$SEED" --emis-port "$P_EMIS" --tpp-port "$P_TPP" \
    --vision-port "$P_VISION" --microtest-port "$P_MT" --pds-port "$P_PDS"
NATIVE_PATH="/emis/practices/$ODS/patients/$NHS/medicalrecord"
wait_http "http://127.0.0.1:$P_EMIS/emis/health"

# --- nginx: plain reverse proxy ------------------------------------------------------------
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx;
    fastcgi_temp_path $TMP/nginx; uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
    upstream sim { server 127.0.0.1:$P_EMIS; keepalive 128; }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
EOF
start nginx nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;'

# --- HAProxy: RS256 JWT verified on every request ------------------------------------------
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/jwt.key" 2>/dev/null
openssl pkey -in "$TMP/jwt.key" -pubout -out "$TMP/jwt.pub"
JWT_H=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
JWT_P=$(printf '{"iss":"bench","sub":"bench","exp":%d}' $(($(date +%s) + 3600)) | b64url)
JWT_S=$(printf '%s.%s' "$JWT_H" "$JWT_P" | openssl dgst -sha256 -sign "$TMP/jwt.key" | b64url)
HAPROXY_JWT="$JWT_H.$JWT_P.$JWT_S"
cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$P_HAPROXY
    http-request deny deny_status 401 unless { req.hdr(authorization) -m beg "Bearer " }
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$TMP/jwt.pub") -m int 1 }
    http-request set-var(txn.now) date
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    default_backend sim
backend sim
    http-reuse always
    server s1 127.0.0.1:$P_EMIS
EOF
haproxy -c -q -f "$TMP/haproxy.cfg"
start haproxy haproxy -db -f "$TMP/haproxy.cfg"

# --- gp-gateway: `serve` with a supplier whose rate limit is out of the way ----------------
jq -r '.practices[] | "[[practice]]\nods = \"\(.ods)\"\nname = \"\(.name)\"\nsystem = \"\(.system)\"\n"' \
    "$TMP/manifest.json" >"$TMP/practices.toml"
ALL_ODS=$(jq -c '[.practices[].ods]' "$TMP/manifest.json")
cat >"$TMP/suppliers.toml" <<EOF
[[suppliers]]
client_id = "demo-consult"
name = "Load benchmark (TEST-ONLY sandbox key)"
status = "active"
jwks_file = "$ROOT/fixtures/sandbox/demo-consult.jwks.json"
scopes = ["system/Patient.rus", "system/Observation.crs"]
practices = $ALL_ODS
rate_limit = { per_second = 1000000.0, burst = 1000000 }
token_rate_limit = { per_second = 1000000.0, burst = 1000000 }
EOF
gateway_config() { # port, cache ttl
    cat <<EOF
practices_file = "practices.toml"
suppliers_file = "suppliers.toml"
[server]
listen = "127.0.0.1:$1"
public_base_url = "http://127.0.0.1:$1"
fhir_base_path = "/FHIR/R4"
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
signing_keys = [{ kid = "sandbox-gw-1", private_key_pem = "$ROOT/fixtures/sandbox/gateway-signing-ed25519.pem" }]
[state]
backend = "memory"
[cache]
ttl_secs = $2
max_patients = 10000
max_entry_lists = 50000
[resilience]
max_concurrent_calls = 512
queue_wait_ms = 1000
breaker_failures = 50
breaker_cooldown_ms = 1000
read_retries = 0
retry_backoff_ms = 50
[audit]
backend = "sqlite"
sqlite_path = "audit-$1.sqlite"
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
gateway_config "$P_GW" 30 >"$TMP/gateway.toml"
gateway_config "$P_GW_NOCACHE" 0 >"$TMP/gateway-nocache.toml"
"$GW" check-config --config "$TMP/gateway.toml" >/dev/null
export GP_GATEWAY_LOG=warn
t0=$(now_ns)
start gateway "$GW" serve --config "$TMP/gateway.toml"
GW_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_GW/_ready"
STARTUP_MS=$(( ($(now_ns) - t0) / 1000000 ))
start gateway-nocache "$GW" serve --config "$TMP/gateway-nocache.toml"
GW_NC_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_GW_NOCACHE/_ready"
wait_http "http://127.0.0.1:$P_NGINX$NATIVE_PATH"
wait_http "http://127.0.0.1:$P_HAPROXY$NATIVE_PATH" "Authorization: Bearer $HAPROXY_JWT"

token_for() { # gateway port
    local assertion
    assertion=$("$GW" client-assertion --client-id demo-consult --token-url "http://127.0.0.1:$1/oauth2/token")
    curl -sf "http://127.0.0.1:$1/oauth2/token" -d grant_type=client_credentials \
        -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
        -d client_assertion="$assertion" | jq -r .access_token
}
TOKEN=$(token_for "$P_GW")
TOKEN_NC=$(token_for "$P_GW_NOCACHE")

# --- load ----------------------------------------------------------------------------------
cat >"$TMP/wrk.lua" <<'EOF'
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
done = function(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format("RESULT %d %.1f %.3f %.3f %.3f %d %d\n", summary.requests,
        summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
RESULTS=$TMP/results.tsv
: >"$RESULTS"
measure() { # label, url, token
    local label=$1 url=$2 token=${3:-} status
    status=$(curl -s -o /dev/null -w '%{http_code}' ${token:+-H "Authorization: Bearer $token"} "$url")
    [ "$status" = 200 ] || { log "$label: $url answered $status, not 200"; exit 1; }
    BENCH_TOKEN=$token wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$TMP/wrk.lua" "$url" >/dev/null
    local line
    line=$(BENCH_TOKEN=$token wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$TMP/wrk.lua" "$url" | grep '^RESULT')
    log "$label: $line"
    printf '%s\t%s\n' "$label" "$(printf '%s' "${line#RESULT }" | tr ' ' '\t')" >>"$RESULTS"
}
FHIR=/FHIR/R4
measure "1. direct: EMIS simulator, native record" "http://127.0.0.1:$P_EMIS$NATIVE_PATH"
measure "2. nginx → simulator" "http://127.0.0.1:$P_NGINX$NATIVE_PATH"
measure "3. HAProxy RS256 jwt_verify → simulator" "http://127.0.0.1:$P_HAPROXY$NATIVE_PATH" "$HAPROXY_JWT"
measure "4a. gateway Patient/{nhs}, cached" "http://127.0.0.1:$P_GW$FHIR/Patient/$NHS" "$TOKEN"
measure "4b. gateway Observation?patient, cached" "http://127.0.0.1:$P_GW$FHIR/Observation?patient=$NHS" "$TOKEN"
measure "4c. gateway Patient/{nhs}, no cache" "http://127.0.0.1:$P_GW_NOCACHE$FHIR/Patient/$NHS" "$TOKEN_NC"
measure "4d. gateway Observation?patient, no cache" "http://127.0.0.1:$P_GW_NOCACHE$FHIR/Observation?patient=$NHS" "$TOKEN_NC"

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
RSS_GW=$(rss_mib "$GW_PID")
RSS_GW_NC=$(rss_mib "$GW_NC_PID")
SERVED=$(awk -F'\t' '$1 ~ /gateway.*cached/ {n += $2} END {print n}' "$RESULTS")

SOAK=""
if [ "$SOAK_SECONDS" -gt 0 ]; then
    log "soak: $SOAK_SECONDS s at $SOAK_CONNS connections, RSS every 10 s"
    BENCH_TOKEN=$TOKEN wrk -t"$THREADS" -c"$SOAK_CONNS" -d"${SOAK_SECONDS}s" -s "$TMP/wrk.lua" \
        "http://127.0.0.1:$P_GW$FHIR/Patient/$NHS" >"$TMP/soak.out" &
    SOAK_PID=$!
    samples=()
    while kill -0 "$SOAK_PID" 2>/dev/null; do samples+=("$(rss_mib "$GW_PID")"); sleep 10; done
    wait "$SOAK_PID"
    SOAK="Soak: $(grep '^RESULT' "$TMP/soak.out" | awk '{print $2}') requests in ${SOAK_SECONDS} s at $SOAK_CONNS connections; gateway RSS (MiB) every 10 s: ${samples[*]}"
fi

# --- micro-benchmarks ----------------------------------------------------------------------
MICRO_TABLE=""
if [ "$MICRO" = 1 ]; then
    log "criterion micro-benchmarks ($MICRO_ARGS)"
    for pb in gp-adapter-emis:mapping gp-adapter-tpp:mapping gp-adapter-vision:mapping \
        gp-adapter-microtest:mapping gp-gateway:gateway; do
        p=${pb%%:*}
        # shellcheck disable=SC2086
        (cd "$ROOT" && cargo bench -q -p "$p" --bench "${pb#*:}" -- $MICRO_ARGS >"$TMP/micro-$p.log" 2>&1) || {
            log "cargo bench -p $p failed:"; tail -20 "$TMP/micro-$p.log" >&2; exit 1; }
    done
    MICRO_TABLE=$(
        echo "| benchmark | mean | 95% CI |"
        echo "|---|---:|---:|"
        find "$ROOT/target/criterion" -path '*/new/estimates.json' | sort | while read -r f; do
            id=$(jq -r '.full_id // .group_id + "/" + .function_id' "${f%estimates.json}benchmark.json")
            jq -r --arg id "$id" '.mean | [$id, .point_estimate, .confidence_interval.lower_bound, .confidence_interval.upper_bound] | @tsv' "$f"
        done | awk -F'\t' 'function t(ns) { return ns >= 1e6 ? sprintf("%.3f ms", ns / 1e6) : ns >= 1e3 ? sprintf("%.2f µs", ns / 1e3) : sprintf("%.1f ns", ns) }
            { printf "| `%s` | %s | %s – %s |\n", $1, t($2), t($3), t($4) }'
    )
fi

# --- report --------------------------------------------------------------------------------
TABLE=$(awk -F'\t' '
    BEGIN { print "| peer | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | socket errors | × direct | × nginx | p99 added vs direct, ms |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" }
    NR == 1 { d = $3; dp99 = $5 }
    NR == 2 { n = $3 }
    { printf "| %s | %.0f | %.2f | %.2f | %.2f | %d | %d | %.2f | %s | %+.2f |\n", $1, $3, $4, $5, $6, $7, $8,
        $3 / d, (n ? sprintf("%.2f", $3 / n) : "–"), $5 - dp99 }' "$RESULTS")
rps() { awk -F'\t' -v k="$1" 'index($1, k) == 1 {print $3}' "$RESULTS"; }
verdict() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { x = a / b; printf "%.2f× (target ≥ %s×) — %s", x, r, (x >= r ? "met" : sprintf("missed by %.0f%%", (1 - x / r) * 100)) }'; }
TARGETS=$(
    echo "- gateway cached GET /Patient vs nginx: $(verdict "$(rps 4a.)" "$(rps 2.)" 0.5)"
    echo "- gateway cached GET /Patient vs HAProxy-JWT: $(verdict "$(rps 4a.)" "$(rps 3.)" 1)"
    echo "- start-up to ready (spawn → first 200 from /_ready, polled every 25 ms): ${STARTUP_MS} ms (target ≤ 200 ms) — $([ "$STARTUP_MS" -le 200 ] && echo met || echo "missed by $((STARTUP_MS - 200)) ms")"
    echo "- RSS after this run: cached gateway ${RSS_GW} MiB after ${SERVED} cached requests (plus warm-ups); no-cache gateway ${RSS_GW_NC} MiB (target ≤ 100 MiB after 1,000,000 requests at 256 connections: needs SOAK_SECONDS)"
    [ -n "$SOAK" ] && echo "- $SOAK"
    true
)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE="$(nproc) CPU(s), ${CPU:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), $(head -1 <<<"$HAPROXY_VERSION" | cut -d' ' -f1-3), $(rustc --version | cut -d' ' -f1-2)"
GENERATED=$(cat <<EOF
<!-- BEGIN GENERATED by bench/load.sh on $(date -u +%Y-%m-%dT%H:%MZ); edit outside these markers -->
### Run

- Machine: $MACHINE.
- Load: wrk, $THREADS thread(s), $CONNS connections, $DURATION per peer after a $WARMUP warm-up, keep-alive, on
  loopback; load generator, peers and simulator share the machine's CPUs. Patient $NHS (EMIS demo record).
- Native read measured: \`GET $NATIVE_PATH\` (whole EMIS MedicalRecord XML).
- Gateway: \`gp-gateway serve\` (release), OAuth2 bearer token of \`demo-consult\`, SQLite audit trail,
  \`GP_GATEWAY_LOG=warn\`; "cached" = \`[cache] ttl_secs = 30\`, "no cache" = \`ttl_secs = 0\`
  (locator cache on in both).

### Load

$TABLE

### Targets (this run)

$TARGETS

### Micro-benchmarks (criterion, \`cargo bench\`, $MICRO_ARGS)

${MICRO_TABLE:-not run (MICRO=0)}
<!-- END GENERATED -->
EOF
)
printf '%s\n' "$TABLE"
printf '%s\n' "$TARGETS"
if [ -f "$OUT" ] && grep -q 'BEGIN GENERATED' "$OUT"; then
    printf '%s\n' "$GENERATED" >"$TMP/generated.md"
    awk -v gen="$TMP/generated.md" '
        /<!-- BEGIN GENERATED/ { while ((getline l < gen) > 0) print l; skip = 1; next }
        /<!-- END GENERATED/ { skip = 0; next }
        !skip' "$OUT" >"$TMP/out.md"
    cp "$TMP/out.md" "$OUT"
else
    printf '# Benchmarks\n\n%s\n' "$GENERATED" >"$OUT"
fi
log "wrote $OUT"
