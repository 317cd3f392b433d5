#!/usr/bin/env bash
# Load benchmark: gp-gateway side by side with its peers, all on loopback, in one run.
#
#   1. direct       the native EMIS MedicalRecord read straight against the simulator
#   2. nginx        nginx as a plain reverse proxy in front of the same simulator
#   3. haproxy-jwt  HAProxy verifying an RS256 JWT per request (jwt_verify), same simulator
#   4. gateway      authenticated FHIR GET /Patient/{nhs} and Observation?patient={nhs},
#                   record cache on (hits) and off ([cache] ttl_secs = 0)
#                   and a mixed load (4e-4g): every unflagged patient on all four GP systems,
#                   Patient reads, five clinical areas' searches and structured records,
#                   through caches of all, some (MIX_CACHED patients) and none of them,
#                   each row's hit rate stated (MIX=0 skips)
#   5. free slots   EMIS's native 14-day slot search against GET /Slot with every include,
#                   one connection: the p50 the gateway adds (target ≤ 2 ms)
#   6. documents    filing a 5 MB PDF inline: the gateway's peak RSS rise as a ratio of the
#                   document's size (examples/document_memory.rs; target < 2.0; DOCS=0 skips)
#   7. notifications a write's 2xx to its notification at a loopback receiver at 100 events/s
#                   (p99 target ≤ 200 ms), and resident memory with 10,000 events queued for
#                   a dead receiver beside a live one (examples/notify_latency.rs; NOTIFY=0 skips)
#
# Each peer runs for DURATION at CONNS connections (wrk, after a WARMUP run). Then, unless
# turned off: open-loop runs (oha at a fixed rate, half the cached gateway's peak) for the
# p99 added latency, OPEN_ROUNDS rounds of every peer in turn, each peer judged by its
# median round (OPEN_LOOP=1), with, for a SQLite trail that flushes each batch, the
# device's own flush time measured by fio in each round; the token endpoint over HTTP with
# TOKENS pre-signed assertions, per CPU-second of the gateway; with SOAK_SECONDS, a memory soak at
# SOAK_CONNS connections over a population larger than the cache bounds; and the criterion
# micro-benchmarks (MICRO=1). The script prints the tables and rewrites the generated part
# of BENCHMARKS.md (between the BEGIN/END GENERATED markers). Installs what it lacks
# (apt-get: wrk nginx haproxy jq curl openssl fio; cargo: oha into target/bench-tools). Stops
# everything it started on exit. Keys are throwaway (HAProxy's) or the TEST-ONLY sandbox
# fixtures (the gateway's).
#
#   bench/load.sh                            # defaults: 10 s per peer, 32 connections
#   DURATION=5s CONNS=64 MICRO=0 bench/load.sh
#   SOAK_SECONDS=600 bench/load.sh           # also: the 10-minute RSS soak, 256 connections
#   AUDIT_SYNC=normal bench/load.sh          # gateways with [audit] synchronous = "normal"
#   AUDIT_BACKEND=postgres bench/load.sh     # the trail in PostgreSQL (PG_URL; a schema per
#                                            # gateway, dropped on exit) instead of SQLite
#   BUILD=0 GW_BIN=/tmp/gw SIM_BIN=/tmp/sim bench/load.sh   # binaries built elsewhere
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
SOAK_PRACTICES=${SOAK_PRACTICES:-4}            # per GP system
SOAK_PATIENTS=${SOAK_PATIENTS:-800}            # per practice: 12,800 > SOAK_MAX_PATIENTS
SOAK_MAX_PATIENTS=${SOAK_MAX_PATIENTS:-1000}   # deploy/config/gateway.toml's bounds
SOAK_MAX_ENTRIES=${SOAK_MAX_ENTRIES:-8000}
OPEN_LOOP=${OPEN_LOOP:-1}
OPEN_DURATION=${OPEN_DURATION:-10s}
OPEN_ROUNDS=${OPEN_ROUNDS:-3}
TOKENS=${TOKENS:-20000}
TOKEN_CONNS=${TOKEN_CONNS:-16}
AUDIT_SYNC=${AUDIT_SYNC:-full}                 # [audit] synchronous of every gateway: full or normal
AUDIT_BACKEND=${AUDIT_BACKEND:-sqlite}         # [audit] backend of every gateway: sqlite or postgres
PG_URL=${PG_URL:-host=127.0.0.1 port=5432 user=postgres dbname=test}   # for AUDIT_BACKEND=postgres
OUT=${OUT:-$ROOT/BENCHMARKS.md}
case $AUDIT_BACKEND in
    sqlite | postgres) ;;
    *) echo "AUDIT_BACKEND must be sqlite or postgres, not '$AUDIT_BACKEND'" >&2; exit 2 ;;
esac

log() { printf '[load.sh] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
need=()
tools=(wrk:wrk nginx:nginx-light haproxy:haproxy jq:jq curl:curl openssl:openssl)
# The device's flush is measured beside a SQLite trail that flushes each batch.
PROBE_FLUSH=0
[ "$OPEN_LOOP" = 1 ] && [ "$AUDIT_SYNC" = full ] && [ "$AUDIT_BACKEND" = sqlite ] && PROBE_FLUSH=1
[ "$PROBE_FLUSH" = 1 ] && tools+=(fio:fio)
[ "$AUDIT_BACKEND" = postgres ] && tools+=(psql:postgresql-client)
for t in "${tools[@]}"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
OHA=$(command -v oha || echo "$ROOT/target/bench-tools/bin/oha")
if [ "$OPEN_LOOP" = 1 ] && [ ! -x "$OHA" ]; then
    log "installing oha (open-loop load generator) into target/bench-tools"
    cargo install -q oha --version 1.16.0 --locked --root "$ROOT/target/bench-tools"
fi
HAPROXY_VERSION=$(haproxy -v 2>&1 || true)
grep -Eq 'version (2\.[6-9]|[3-9]\.)' <<<"$HAPROXY_VERSION" || { log "HAProxy 2.6+ needed for jwt_verify"; exit 1; }

if [ "${BUILD:-1}" = 1 ]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p gp-gateway -p gp-sim --bins)
fi
GW=${GW_BIN:-$ROOT/target/release/gp-gateway}
SIM=${SIM_BIN:-$ROOT/target/release/gp-sim}

# --- processes, stopped on exit ----------------------------------------------------------
TMP=$(mktemp -d -t gp-load.XXXXXX)
PIDS=()
# AUDIT_BACKEND=postgres: each gateway's trail goes in a schema of its own, named after
# this run and the gateway's port, all dropped on exit.
PG_SCHEMA_PREFIX=gp_load_$$
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$AUDIT_BACKEND" = postgres ]; then
        psql "$PG_URL" -Atqc "SELECT nspname FROM pg_namespace WHERE nspname LIKE '${PG_SCHEMA_PREFIX}\_%'" |
            while read -r schema; do psql "$PG_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" >/dev/null; done || true
    fi
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
P_GW=$((PORT_BASE + 7)) P_GW_NOCACHE=$((PORT_BASE + 8)) P_GW_NORMAL=$((PORT_BASE + 15))

TMP_DEV=$(df "$TMP" | awk 'NR == 2 {print $1}') # the device holding the SQLite trail
if [ "$AUDIT_BACKEND" = postgres ]; then
    psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null || { log "AUDIT_BACKEND=postgres needs PostgreSQL at '$PG_URL'"; exit 1; }
    TRAIL="PostgreSQL audit trail (\`[audit] synchronous = \"$AUDIT_SYNC\"\`, $(psql "$PG_URL" -Atc 'SHOW server_version'), a schema per gateway)"
else
    TRAIL="SQLite audit trail (\`[audit] synchronous = \"$AUDIT_SYNC\"\`, in $(df -T "$TMP" | awk 'NR == 2 {print $2}') on $TMP_DEV)"
fi

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
scopes = ["system/Patient.rus", "system/Observation.crs", "system/Condition.rs", "system/MedicationStatement.rs", "system/AllergyIntolerance.rs", "system/Immunization.rs", "system/Encounter.rs"]
practices = $ALL_ODS
rate_limit = { per_second = 1000000.0, burst = 1000000 }
token_rate_limit = { per_second = 1000000.0, burst = 1000000 }

[[suppliers]]
client_id = "demo-booking"
name = "Load benchmark booking (TEST-ONLY sandbox key)"
ods_code = "Y90123"
status = "active"
jwks_file = "$ROOT/fixtures/sandbox/demo-booking.jwks.json"
scopes = ["system/Slot.rs", "system/Appointment.cruds"]
practices = $ALL_ODS
rate_limit = { per_second = 1000000.0, burst = 1000000 }
token_rate_limit = { per_second = 1000000.0, burst = 1000000 }
EOF
# gateway_config and token_for: bench/support/gateway.sh
source "$ROOT/bench/support/gateway.sh"
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

TOKEN=$(token_for "$P_GW")
TOKEN_NC=$(token_for "$P_GW_NOCACHE")

# --- load ----------------------------------------------------------------------------------
# The line every wrk run here ends with: RESULT requests req/s p50 p99 p99.9 (ms) non-2xx
# socket-errors. Appended to each script.
WRK_DONE=$(cat <<'EOF'
done = function(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format("RESULT %d %.1f %.3f %.3f %.3f %d %d\n", summary.requests,
        summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
)
{ cat <<'EOF'
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
EOF
printf '%s\n' "$WRK_DONE"; } >"$TMP/wrk.lua"
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

# --- a realistic mix: many patients, all four GP systems -----------------------------------
# Every unflagged patient of the population (about 20 on each GP system), each request a
# random one of them: 40% GET /Patient/{nhs}, 30% Observation?patient= (_count=20), 10%
# Condition, 5% MedicationStatement, 5% AllergyIntolerance searches, 10% the whole
# structured record (POST $gpc.getstructuredrecord). Once through the cached gateway (its
# hit rate, from its own /metrics over the run, is stated in the row) and once through the
# no-cache one (every read a miss). MIX=0 skips.
MIX_NOTE="not run (MIX=0)"
if [ "${MIX:-1}" = 1 ]; then
    jq -r '.patients[] | select(.flags == []) | .nhs_number' "$TMP/manifest.json" >"$TMP/mix-nhs.txt"
    MIX_N=$(wc -l <"$TMP/mix-nhs.txt")
    MIX_SYSTEMS=$(jq -r '[.patients[] | select(.flags == []) | .system] | group_by(.) | map("\(.[0]) \(length)") | join(", ")' "$TMP/manifest.json")
    { cat <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
init = function(args)
    nhs = {}
    for line in io.lines(os.getenv("MIX_NHS")) do table.insert(nhs, line) end
    math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16))
end
-- wrk.format's own headers replace wrk.headers: the token goes in again.
local json = { ["Content-Type"] = "application/fhir+json", ["Authorization"] = wrk.headers["Authorization"] }
request = function()
    local n = nhs[math.random(#nhs)]
    local r = math.random(100)
    local f = "/FHIR/R4/"
    if r <= 40 then return wrk.format("GET", f .. "Patient/" .. n) end
    if r <= 70 then return wrk.format("GET", f .. "Observation?patient=" .. n .. "&_count=20") end
    if r <= 80 then return wrk.format("GET", f .. "Condition?patient=" .. n) end
    if r <= 85 then return wrk.format("GET", f .. "MedicationStatement?patient=" .. n) end
    if r <= 90 then return wrk.format("GET", f .. "AllergyIntolerance?patient=" .. n) end
    return wrk.format("POST", f .. "Patient/$gpc.getstructuredrecord", json,
        '{"resourceType":"Parameters","parameter":[{"name":"patientNHSNumber","valueIdentifier":' ..
        '{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"' .. n .. '"}},' ..
        '{"name":"includeAllergies","part":[{"name":"includeResolvedAllergies","valueBoolean":true}]},' ..
        '{"name":"includeMedication"},{"name":"includeProblems"},{"name":"includeImmunisations"},' ..
        '{"name":"includeConsultations","part":[{"name":"includeNumberOfMostRecent","valuePositiveInt":3}]},' ..
        '{"name":"includeInvestigations"}]}')
end
LUA
    printf '%s\n' "$WRK_DONE"; } >"$TMP/mix.lua"
    cache_counts() { # admin port: "hits misses" of the record caches so far (not the locator's)
        curl -sf "http://127.0.0.1:$1/metrics" | awk '/^gp_gateway_cache_requests_total\{cache="(patient|area)"/ {
            if ($0 ~ /result="hit"/) h += $NF; else if ($0 ~ /result="miss"/) m += $NF } END { printf "%d %d", h, m }'
    }
    mix() { # label, port, token, admin port
        BENCH_TOKEN=$3 MIX_NHS=$TMP/mix-nhs.txt wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$TMP/mix.lua" "http://127.0.0.1:$2" >/dev/null
        local before after line hit
        before=$(cache_counts "$4")
        line=$(BENCH_TOKEN=$3 MIX_NHS=$TMP/mix-nhs.txt wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$TMP/mix.lua" "http://127.0.0.1:$2" | grep '^RESULT')
        after=$(cache_counts "$4")
        hit=$(awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " "); h = y[1] - x[1]; m = y[2] - x[2]
            printf "%.0f", (h + m > 0 ? 100 * h / (h + m) : 0) }')
        log "$1 ($hit% cache hits): $line"
        printf '%s\t%s\n' "$1 ($hit% cache hits)" "$(printf '%s' "${line#RESULT }" | tr ' ' '\t')" >>"$RESULTS"
    }
    # A third gateway whose cache holds a quarter of the patients (MIX_CACHED of them):
    # most reads miss, as in a practice's day, where an app reads a patient once or twice.
    P_GW_MIX=$((PORT_BASE + 16))
    gateway_config "$P_GW_MIX" 30 | sed -e "s/^max_patients = .*/max_patients = ${MIX_CACHED:-20}/" \
        -e "s/^max_entries = .*/max_entries = $((${MIX_CACHED:-20} * 60))/" >"$TMP/gateway-mix.toml"
    start gateway-mix "$GW" serve --config "$TMP/gateway-mix.toml"
    wait_http "http://127.0.0.1:$P_GW_MIX/_ready"
    TOKEN_MIX=$(token_for "$P_GW_MIX")
    mix "4e. gateway mixed load, $MIX_N patients, cache of all" "$P_GW" "$TOKEN" $((P_GW + 100))
    mix "4f. gateway mixed load, $MIX_N patients, cache of ${MIX_CACHED:-20}" "$P_GW_MIX" "$TOKEN_MIX" $((P_GW_MIX + 100))
    mix "4g. gateway mixed load, $MIX_N patients, no cache" "$P_GW_NOCACHE" "$TOKEN_NC" $((P_GW_NOCACHE + 100))
    MIX_NOTE="rows 4e–4g: $MIX_N unflagged patients ($MIX_SYSTEMS), each request a random one: 40% \`GET /Patient/{nhs}\`, 30% \`Observation?patient=&_count=20\`, 10% \`Condition?patient=\`, 5% \`MedicationStatement?patient=\`, 5% \`AllergyIntolerance?patient=\`, 10% \`POST \$gpc.getstructuredrecord\` (every area); through a gateway whose cache holds them all (4e), one whose cache holds ${MIX_CACHED:-20} patients and $((${MIX_CACHED:-20} * 60)) entries (4f: most reads miss) and the no-cache one (4g); the record-cache hit rate in each row is the gateway's own (its /metrics, over the measured run)"
fi

# --- free-slot search: what the gateway adds to the native call --------------------------
# One connection (latency, not throughput), the same practice and 14 days both ways: EMIS's
# native slot search, and GET /Slot with every include through the no-cache gateway (free
# slots are never cached anyway). Target: the gateway adds ≤ 2 ms at p50.
# FHIR's end=le{day} takes the whole day: 14 days are today to le today + 13, which the
# native search asks for as [today 00:00, today + 14 00:00) in local time.
SLOT_FROM=$(date -u +%Y-%m-%d)
SLOT_TO=$(date -u -d "$SLOT_FROM + 13 days" +%Y-%m-%d)
local_day() { date -u -d "$1" +%d%%2F%m%%2F%Y%%2000:00:00; }
NATIVE_SLOTS="/emis/practices/$ODS/slots?From=$(local_day "$SLOT_FROM")&To=$(local_day "$SLOT_FROM + 14 days")"
FHIR_SLOTS="$FHIR/Slot?start=ge$SLOT_FROM&end=le$SLOT_TO&status=free&practice=$ODS&_include=Slot:schedule&_include:recurse=Schedule:actor:Practitioner&_include:recurse=Schedule:actor:PractitionerRole&_include:recurse=Schedule:actor:Location&_include:recurse=Location:managingOrganization"
TOKEN_BOOKING=$(token_for "$P_GW_NOCACHE" demo-booking)
SLOT_COUNT=$(curl -sf "http://127.0.0.1:$P_EMIS$NATIVE_SLOTS" | grep -o '<Slot>' | wc -l)
FREE_COUNT=$(curl -sf -H "Authorization: Bearer $TOKEN_BOOKING" "http://127.0.0.1:$P_GW_NOCACHE$FHIR_SLOTS" |
    jq '[.entry[] | select(.resource.resourceType == "Slot")] | length')
: >"$TMP/slots.tsv"
slot_latency() { # label, url, token
    local line
    BENCH_TOKEN=${3:-} wrk -t1 -c1 -d"$WARMUP" -s "$TMP/wrk.lua" "$2" >/dev/null
    line=$(BENCH_TOKEN=${3:-} wrk -t1 -c1 -d"$DURATION" -s "$TMP/wrk.lua" "$2" | grep '^RESULT')
    log "$1: $line"
    printf '%s\t%s\n' "$1" "$(printf '%s' "${line#RESULT }" | tr ' ' '\t')" >>"$TMP/slots.tsv"
}
slot_latency "native EMIS slot search, 14 days" "http://127.0.0.1:$P_EMIS$NATIVE_SLOTS"
slot_latency "gateway GET /Slot, 14 days, every include" "http://127.0.0.1:$P_GW_NOCACHE$FHIR_SLOTS" "$TOKEN_BOOKING"
SLOT_TABLE=$(awk -F'\t' '
    BEGIN { print "| call | req/s | p50 ms | p99 ms | non-2xx |"; print "|---|---:|---:|---:|---:|" }
    { printf "| %s | %.0f | %.2f | %.2f | %d |\n", $1, $3, $4, $5, $7 }' "$TMP/slots.tsv")
SLOT_ADDED=$(awk -F'\t' 'NR == 1 { d = $4 } NR == 2 { printf "%.2f", $4 - d }' "$TMP/slots.tsv")

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
RSS_GW=$(rss_mib "$GW_PID")
RSS_GW_NC=$(rss_mib "$GW_NC_PID")
SERVED=$(awk -F'\t' '$1 ~ /gateway.*(cached|cache of all)/ {n += $2} END {print n}' "$RESULTS")

# --- open loop: p99 at half of the gateway's peak, same fixed rate for every peer ---------
# wrk is closed-loop (a slow answer delays the next request, hiding queueing), so the
# latency target is measured with oha at a fixed request rate, with latency counted from
# when each request was due (--latency-correction: no coordinated omission).
OPEN=""
if [ "$OPEN_LOOP" = 1 ]; then
    RATE=$(awk -F'\t' 'index($1, "4a.") == 1 {printf "%d", $3 / 2}' "$RESULTS")
    # Beside the gateways above (each answer waits for its audit row's flush to disk), one
    # whose answers wait only for the row's write to the OS ([audit] synchronous =
    # "normal"): what the flush itself costs at this rate.
    NORMAL_LABEL=""
    if [ "$AUDIT_SYNC" = full ]; then
        NORMAL_LABEL='4a. gateway Patient/{nhs}, cached, `synchronous = "normal"`'
        gateway_config "$P_GW_NORMAL" 30 | sed 's/^synchronous = .*/synchronous = "normal"/' >"$TMP/gateway-normal.toml"
        start gateway-normal "$GW" serve --config "$TMP/gateway-normal.toml"
        wait_http "http://127.0.0.1:$P_GW_NORMAL/_ready"
        TOKEN_NORMAL=$(token_for "$P_GW_NORMAL")
    fi
    log "open loop: $RATE req/s (half the cached gateway's peak), $OPEN_ROUNDS round(s) of $OPEN_DURATION per peer"
    : >"$TMP/open.tsv"
    open_p99() { # label, url, token
        local out=$TMP/oha.json
        "$OHA" --no-tui --output-format json -z "$OPEN_DURATION" -c "$CONNS" -q "$RATE" \
            --latency-correction ${3:+-H "Authorization: Bearer $3"} "$2" >"$out"
        jq -r --arg l "$1" '[$l, (.summary.requestsPerSec | floor),
            (.latencyPercentiles.p50 * 1000), (.latencyPercentiles.p99 * 1000),
            (.latencyPercentiles["p99.9"] * 1000), ((.statusCodeDistribution | to_entries
            | map(select(.key != "200") | .value) | add) // 0)] | @tsv' "$out" >>"$TMP/open.tsv"
    }
    # Rounds of every peer in turn, so a stall of this shared host lands in one peer's
    # round rather than deciding a peer's whole figure; each peer is judged by its median.
    # With synchronous = "full" an answer waits for its batch's flush (fdatasync), so the
    # device's own flush time bounds the p99 from below whatever the gateway does: fio
    # measures it in each round, in the trail's directory, the way the trail's log writes
    # (small overwrites of a laid-out file, each flushed before the next).
    FLUSH=""
    : >"$TMP/flush.tsv"
    flush_round() {
        fio --name=flush --directory="$TMP" --filename=flush.probe --size=16M --rw=write --bs=4k \
            --overwrite=1 --fdatasync=1 --runtime="${OPEN_DURATION%s}" --time_based --output-format=json 2>/dev/null |
            jq -r '.jobs[0].sync.lat_ns | [.percentile["50.000000"], .percentile["99.000000"], .percentile["99.900000"], .max]
                | map(. / 1e6) | @tsv' >>"$TMP/flush.tsv"
    }
    if [ "$PROBE_FLUSH" = 1 ]; then
        # Laid out and flushed once beforehand, as the trail's spare segment is.
        fio --name=layout --directory="$TMP" --filename=flush.probe --size=16M --rw=write --bs=1M \
            --end_fsync=1 >/dev/null 2>&1
    fi
    for _ in $(seq 1 "$OPEN_ROUNDS"); do
        open_p99 "1. direct" "http://127.0.0.1:$P_EMIS$NATIVE_PATH"
        open_p99 "2. nginx" "http://127.0.0.1:$P_NGINX$NATIVE_PATH"
        open_p99 "4a. gateway Patient/{nhs}, cached" "http://127.0.0.1:$P_GW$FHIR/Patient/$NHS" "$TOKEN"
        if [ -n "$NORMAL_LABEL" ]; then
            open_p99 "$NORMAL_LABEL" "http://127.0.0.1:$P_GW_NORMAL$FHIR/Patient/$NHS" "$TOKEN_NORMAL"
        fi
        if [ "$PROBE_FLUSH" = 1 ]; then flush_round; fi
    done
    rm -f "$TMP/flush.probe"
    # The median of a space-separated list of numbers, for the awk programs below.
    MEDIAN_AWK='
        function median(list,   v, n, i, j, t) {
            n = split(list, v, " ")
            for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }'
    if [ -s "$TMP/flush.tsv" ]; then
        FLUSH_P99=$(awk -F'\t' "$MEDIAN_AWK"' { l = l " " $2 } END { printf "%.2f", median(l) }' "$TMP/flush.tsv")
        FLUSH_MAX=$(cut -f4 "$TMP/flush.tsv" | sort -g | tail -1 | xargs printf '%.2f')
        rounds() { cut -f"$1" "$TMP/flush.tsv" | xargs printf '%.2f, ' | sed 's/, $//'; }
        FLUSH=$(printf 'Flushes of the device alone, measured in each round after the gateways (fio: 4 KiB overwrites of a laid-out 16 MiB file in the trail directory, each followed by `fdatasync`, one at a time; %s, write cache: %s): p50 of each round %s ms; p99 %s ms (median **%s ms**); p99.9 %s ms; longest %s ms. An answer with `synchronous = "full"` waits for at least one such flush, and a slow one holds up every answer due meanwhile.' \
            "$TMP_DEV" "$(cat "/sys/block/$(basename "$TMP_DEV")/queue/write_cache" 2>/dev/null || echo unknown)" \
            "$(rounds 1)" "$(rounds 2)" "$FLUSH_P99" "$(rounds 3)" "$(rounds 4)")
    fi
    # One row a peer, in order: median p50, p99 and p99.9 over its rounds, the lowest
    # achieved rate, every round's p99, non-200s summed; added = median p99 - direct's.
    awk -F'\t' "$MEDIAN_AWK"'
        !($1 in seen) { seen[$1] = 1; order[++n] = $1; low[$1] = $2 }
        { if ($2 < low[$1]) low[$1] = $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4
          p999[$1] = p999[$1] " " $5; each[$1] = each[$1] (each[$1] == "" ? "" : ", ") sprintf("%.2f", $4); bad[$1] += $6 }
        END { for (i = 1; i <= n; i++) { k = order[i]
              printf "%s\t%d\t%.2f\t%.2f\t%.2f\t%s\t%d\n", k, low[k], median(p50[k]), median(p99[k]), median(p999[k]), each[k], bad[k] } }' \
        "$TMP/open.tsv" >"$TMP/open-median.tsv"
    OPEN=$(awk -F'\t' -v rate="$RATE" -v rounds="$OPEN_ROUNDS" '
        BEGIN { print "| peer (" rate " req/s, open loop; median of " rounds " round(s)) | achieved req/s, lowest | p50 ms | p99 ms | p99.9 ms | p99 of each round, ms | non-200 | p99 added vs direct, ms |"
                print "|---|---:|---:|---:|---:|---|---:|---:|" }
        NR == 1 { d = $4 }
        { printf "| %s | %d | %.2f | %.2f | %.2f | %s | %d | %+.2f |\n", $1, $2, $3, $4, $5, $6, $7, $4 - d }' "$TMP/open-median.tsv")
    added() { awk -F'\t' -v l="$1" 'NR == 1 { d = $4 } $1 == l { printf "%.2f", $4 - d }' "$TMP/open-median.tsv"; }
    OPEN_ADDED=$(added "4a. gateway Patient/{nhs}, cached")
    OPEN_ADDED_NORMAL=$([ -n "$NORMAL_LABEL" ] && added "$NORMAL_LABEL" || true)
fi

# --- token endpoint over HTTP: pre-signed assertions, each used once ------------------------
TOKENS_LINE=""
if [ "$TOKENS" -gt 0 ]; then
    log "token endpoint: $TOKENS pre-signed assertions"
    "$GW" client-assertion --client-id demo-consult --token-url "http://127.0.0.1:$P_GW/oauth2/token" \
        --count "$TOKENS" >"$TMP/assertions.txt"
    cat >"$TMP/token.lua" <<'LUA'
local n = 0
setup = function(thread) thread:set("tid", n); n = n + 1 end
init = function(args)
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
    mine, i = {}, 0
    local k = 0
    for line in io.lines(os.getenv("ASSERTIONS")) do
        if k % tonumber(os.getenv("WRK_THREADS")) == tid then table.insert(mine, line) end
        k = k + 1
    end
end
request = function()
    i = i + 1
    if i > #mine then wrk.thread:stop(); i = #mine end
    return wrk.format(nil, nil, nil, "grant_type=client_credentials&client_assertion_type=" ..
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" .. mine[i])
end
done = function(summary, latency, requests)
    io.write(string.format("RESULT %d %.1f %.3f %.3f %d\n", summary.requests,
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
        latency:percentile(99) / 1000, summary.errors.status))
end
LUA
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
    # Judged per CPU-second the gateway spent (utime + stime), not wall clock: wrk keeps
    # its -d time after the assertions run out, and shares the cores with the gateway.
    c0=$(cpu_ticks "$GW_PID")
    line=$(ASSERTIONS=$TMP/assertions.txt WRK_THREADS=$THREADS wrk -t"$THREADS" -c"$TOKEN_CONNS" -d60s \
        -s "$TMP/token.lua" "http://127.0.0.1:$P_GW/oauth2/token" | grep '^RESULT')
    c1=$(cpu_ticks "$GW_PID")
    read -r _ n _ p50 p99 bad <<<"$line"
    per_core=$(awk -v n="$n" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d", (t > 0 ? n / (t / hz) : 0) }')
    TOKENS_LINE="- token endpoint over HTTP ($TOKEN_CONNS connections, $n requests, each a fresh RS384 assertion), p50 $p50 ms, p99 $p99 ms, $bad non-2xx; gateway CPU time ⇒ **$per_core tokens per CPU-second** (target ≥ 2,000 per core) — $([ "$per_core" -ge 2000 ] && [ "$bad" -eq 0 ] && echo met || echo "missed$([ "$bad" -eq 0 ] || echo ": $bad requests refused, not tokens issued")")"
fi

# --- memory soak: caches driven to their configured bounds ---------------------------------
# A second simulator holds more patients than the cache may keep, and the load walks all of
# them (demographics and observations), so both caches sit at their bounds and evict.
SOAK=""
if [ "$SOAK_SECONDS" -gt 0 ]; then
    P_SOAK_SIM=$((PORT_BASE + 9)) P_SOAK_GW=$((PORT_BASE + 14))
    start sim-soak "$SIM" --seed "$SEED" --manifest --practices-per-system "$SOAK_PRACTICES" \
        --patients-per-practice "$SOAK_PATIENTS" --emis-port "$P_SOAK_SIM" \
        --tpp-port $((P_SOAK_SIM + 1)) --vision-port $((P_SOAK_SIM + 2)) \
        --microtest-port $((P_SOAK_SIM + 3)) --pds-port $((P_SOAK_SIM + 4))
    wait_http "http://127.0.0.1:$P_SOAK_SIM/emis/health"
    sed '/^PDS: /,$d' "$TMP/sim-soak.log" >"$TMP/soak-manifest.json"
    jq -r '[.[] | {practice, system}] | unique | .[] | "[[practice]]\nods = \"\(.practice)\"\nname = \"Soak \(.practice)\"\nsystem = \"\(.system)\"\n"' \
        "$TMP/soak-manifest.json" >"$TMP/practices-soak.toml"
    sed "s/^practices = .*/practices = $(jq -c '[.[].practice] | unique' "$TMP/soak-manifest.json")/" \
        "$TMP/suppliers.toml" >"$TMP/suppliers-soak.toml"
    jq -r '.[] | select(.flags == []) | .nhs_number' "$TMP/soak-manifest.json" >"$TMP/soak-nhs.txt"
    SOAK_N=$(wc -l <"$TMP/soak-nhs.txt")
    P_EMIS=$P_SOAK_SIM P_TPP=$((P_SOAK_SIM + 1)) P_VISION=$((P_SOAK_SIM + 2)) P_MT=$((P_SOAK_SIM + 3)) \
        P_PDS=$((P_SOAK_SIM + 4))
    gateway_config "$P_SOAK_GW" 30 | sed -e "s/^max_patients = .*/max_patients = $SOAK_MAX_PATIENTS/" \
        -e "s/^max_entries = .*/max_entries = $SOAK_MAX_ENTRIES/" -e 's/"practices.toml"/"practices-soak.toml"/' \
        -e 's/"suppliers.toml"/"suppliers-soak.toml"/' >"$TMP/gateway-soak.toml"
    start gateway-soak "$GW" serve --config "$TMP/gateway-soak.toml"
    SOAK_GW_PID=$LAST_PID
    wait_http "http://127.0.0.1:$P_SOAK_GW/_ready"
    SOAK_TOKEN=$(token_for "$P_SOAK_GW")
    { cat <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
init = function(args)
    nhs, i = {}, 0
    for line in io.lines(os.getenv("SOAK_NHS")) do table.insert(nhs, line) end
end
request = function()
    i = i + 1
    local n = nhs[math.random(#nhs)]
    if i % 2 == 0 then return wrk.format(nil, "/FHIR/R4/Patient/" .. n) end
    return wrk.format(nil, "/FHIR/R4/Observation?patient=" .. n .. "&_count=20")
end
LUA
    printf '%s\n' "$WRK_DONE"; } >"$TMP/soak.lua"
    log "soak: $SOAK_SECONDS s at $SOAK_CONNS connections over $SOAK_N patients (cache bounds: $SOAK_MAX_PATIENTS patients, $SOAK_MAX_ENTRIES entries), RSS every 10 s"
    BENCH_TOKEN=$SOAK_TOKEN SOAK_NHS=$TMP/soak-nhs.txt wrk -t"$THREADS" -c"$SOAK_CONNS" -d"${SOAK_SECONDS}s" \
        --timeout 10s -s "$TMP/soak.lua" "http://127.0.0.1:$P_SOAK_GW" >"$TMP/soak.out" &
    SOAK_PID=$!
    samples=()
    while kill -0 "$SOAK_PID" 2>/dev/null; do samples+=("$(rss_mib "$SOAK_GW_PID")"); sleep 10; done
    wait "$SOAK_PID"
    read -r _ n rate p50 p99 _ bad sock <<<"$(grep '^RESULT' "$TMP/soak.out")"
    # What the gateway answered, by route and status (its own /metrics, on its admin port).
    SOAK_STATUSES=$(curl -sf "http://127.0.0.1:$((P_SOAK_GW + 100))/metrics" | awk '
        /^gp_gateway_requests_total\{/ { match($0, /route="[^"]*"/); r = substr($0, RSTART + 7, RLENGTH - 8)
            match($0, /status="[^"]*"/); st = substr($0, RSTART + 8, RLENGTH - 9)
            if (r != "none") printf "%s%s %s: %d", (n++ ? "; " : ""), r, st, $NF }')
    log "soak answers: $SOAK_STATUSES"
    samples+=("$(rss_mib "$SOAK_GW_PID")")
    SOAK_VERDICT=$(printf '%s\n' "${samples[@]}" | awk -v n="$n" '
        { v[NR] = $1; if ($1 > max) max = $1 }
        END { h = int(NR / 2)
              for (i = 1; i <= h; i++) if (v[i] > fmax) fmax = v[i]
              for (i = h + 1; i <= NR; i++) if (v[i] > smax) smax = v[i]
              growth = fmax > 0 ? (smax - fmax) / fmax * 100 : 0
              verdict = n < 1000000 ? "not judged: fewer than 1,000,000 requests" : \
                  max > 100 ? sprintf("missed by %.1f MiB", max - 100) : \
                  growth > 5 ? "missed: still growing" : "met"
              printf "peak %.1f MiB; second-half peak %+.1f%% over first-half peak — %s", max, growth, verdict }')
    SOAK="soak: $n requests in ${SOAK_SECONDS} s ($(printf '%.0f' "$rate") req/s; p50 $p50 ms, p99 $p99 ms; $bad non-2xx, $sock socket errors; answers by route and status: $SOAK_STATUSES) at $SOAK_CONNS connections over $SOAK_N patients, cache bounds $SOAK_MAX_PATIENTS patients / $SOAK_MAX_ENTRIES entries; gateway RSS (MiB) every 10 s: ${samples[*]}; **$SOAK_VERDICT** (target ≤ 100 MiB after 1,000,000 requests, flat)"
fi

# --- filing a 5 MB document ---------------------------------------------------------------
DOC_MEMORY="not run (DOCS=0)"
if [ "${DOCS:-1}" = 1 ]; then
    log "filing a 5 MB document: the gateway's peak RSS rise"
    DOC_MEMORY=$(cd "$ROOT" && cargo run --release -q -p gp-gateway --example document_memory 2>/dev/null | tail -1)
fi

NOTIFY_RESULT="not run (NOTIFY=0)"
if [ "${NOTIFY:-1}" = 1 ]; then
    log "notifications: write to receiver at 100 events/s, and a dead receiver's queue"
    NOTIFY_RESULT=$(cd "$ROOT" && cargo run --release -q -p gp-gateway --example notify_latency 2>/dev/null | grep -E '^(latency|dead receiver):' | sed 's/^/- /')
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
    [ -n "$OPEN" ] && echo "- p99 added over direct at half of the cached gateway's peak (open loop, median of $OPEN_ROUNDS rounds, table below): ${OPEN_ADDED} ms (target ≤ 1 ms) — $(awk -v a="$OPEN_ADDED" 'BEGIN { print (a <= 1 ? "met" : sprintf("missed by %.2f ms", a - 1)) }')${FLUSH_P99:+; flushes of the device alone in the same rounds: p99 ${FLUSH_P99} ms, longest ${FLUSH_MAX} ms (below the table)}${OPEN_ADDED_NORMAL:+; with \`synchronous = \"normal\"\` (answers not waiting for the flush): ${OPEN_ADDED_NORMAL} ms}"
    echo "- free-slot search, p50 the gateway adds over EMIS's native slot search (1 connection; $SLOT_COUNT slots in the practice's 14 days, $FREE_COUNT free and offered): ${SLOT_ADDED} ms (target ≤ 2 ms) — $(awk -v a="$SLOT_ADDED" 'BEGIN { print (a <= 2 ? "met" : sprintf("missed by %.2f ms", a - 2)) }')"
    [ -n "$TOKENS_LINE" ] && echo "$TOKENS_LINE"
    [ -n "$SOAK" ] && echo "- $SOAK"
    true
)
OPEN_SECTION=""
if [ -n "$OPEN" ]; then
    OPEN_SECTION=$(printf '### Open loop (oha, fixed rate; latency from when each request was due; peers in turn, %s round(s) of %s each)\n\n%s\n\n%s' "$OPEN_ROUNDS" "$OPEN_DURATION" "$OPEN" "$FLUSH")
    OPEN_SECTION+=$'\n\n'
fi
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE="$(nproc) CPU(s), ${CPU:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), $(head -1 <<<"$HAPROXY_VERSION" | cut -d' ' -f1-3), $(rustc --version | cut -d' ' -f1-2)"
GENERATED=$(cat <<EOF
<!-- BEGIN GENERATED by bench/load.sh on $(date -u +%Y-%m-%dT%H:%MZ); edit outside these markers -->
### Run

- Machine: $MACHINE.
- Load: wrk, $THREADS thread(s), $CONNS connections, $DURATION per peer after a $WARMUP warm-up, keep-alive, on
  loopback; load generator, peers and simulator share the machine's CPUs. Patient $NHS (EMIS demo record).
- Native read measured: \`GET $NATIVE_PATH\` (whole EMIS MedicalRecord XML).
- Gateway: \`gp-gateway serve\` (release), OAuth2 bearer token of \`demo-consult\`, $TRAIL, \`GP_GATEWAY_LOG=warn\`; "cached" = \`[cache] ttl_secs = 30\`, "no cache" = \`ttl_secs = 0\`
  (locator cache on in both).
- Mixed load: $MIX_NOTE.

### Load

$TABLE

${OPEN_SECTION}### Free-slot search (wrk, 1 connection, $DURATION each after a $WARMUP warm-up)

$SLOT_TABLE

### Filing a 5 MB document (issue 24)

$DOC_MEMORY

### Notifications (issue 25)

$NOTIFY_RESULT

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
