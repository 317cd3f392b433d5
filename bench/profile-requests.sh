#!/usr/bin/env bash
# Request profiles (issue 27): where a gateway request's instructions go, for the rows of
# bench/load.sh that read the GP system (and the cached search beside them).
#
#   4c  GET /FHIR/R4/Patient/{nhs}               no-cache gateway ([cache] ttl_secs = 0)
#   4d  GET /FHIR/R4/Observation?patient={nhs}   no-cache gateway
#   4b  GET /FHIR/R4/Observation?patient={nhs}   cached gateway, its cache filled first
#
# One gateway at a time runs under valgrind's callgrind (config as bench/load.sh's, SQLite
# trail in a temporary directory, `[audit] synchronous = "full"` unless AUDIT_SYNC says
# otherwise), beside the simulators (natively). For each row: WARM requests (after the
# token), counters zeroed (callgrind_control -z), N requests one after another on one
# keep-alive connection (curl), a dump (callgrind_control -d). Instruction counts (Ir) are
# deterministic, so the profile holds whatever else runs on the machine.
#
# Each row's bench/profiles/request-<row>.txt gives Ir per request of the gateway process
# (every thread), each category's share (HTTP, auth, glue, locator, release rules, record
# cache, native read, parse and map, entry versions, search and paging, entry index and
# names, serialisation, audit, other), the largest functions of each, a few named
# functions' inclusive cost and the top 25 functions by self cost. The categories do not
# overlap and sum to the dump's total: an instruction goes to the innermost category rule on
# its call path, inlined code included (llvm-symbolizer's inline chains for the addresses
# counted; a function called from several categories is shared out by the cost of each
# call). The rules are listed at the end of each file. The file also gives the simulators'
# own Ir per native read (a short callgrind run of gp-sim) and wall-clock medians (curl -w,
# gateways not under valgrind, `synchronous = "full"` and `"normal"`) for what callgrind
# cannot see: the wait for the simulator and for the audit flush.
#
#   bench/profile-requests.sh                  # 200 requests a row, every row
#   N=50 ROWS="4c" bench/profile-requests.sh
#   BUILD=0 bench/profile-requests.sh          # binaries already built from this tree
#   KEEP=/tmp/cg bench/profile-requests.sh     # also keep the callgrind.out files there
#   TIMING=0 SIM_PROFILE=0 bench/profile-requests.sh   # callgrind of the gateway only
#
# GW_BIN/SIM_BIN take binaries built elsewhere, but the source rules match the file paths
# in the gateway's line tables, so they must be this tree's (release profile: line tables).
# Loopback only; bounded (N requests a row, each under curl's --max-time); stops
# everything it started on exit. Needs valgrind (callgrind_control), curl, jq (installed
# with apt-get when missing), python3, c++filt, and llvm-symbolizer or addr2line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200}
WARM=${WARM:-10}
ROWS=${ROWS:-4c 4d 4b}
PORT_BASE=${PORT_BASE:-18600}   # clear of bench/load.sh's 18400-18515
SEED=${SEED:-20261123}
NHS=${NHS:-9000000009}          # the EMIS demo patient (full record)
AUDIT_SYNC=${AUDIT_SYNC:-full}
# bench/load.sh's cached gateway keeps entries 30 s; a row under callgrind can take
# longer than that, and one refill in it would count an uncached read among the hits.
CACHED_TTL=${CACHED_TTL:-3600}
TIMING=${TIMING:-1}
SIM_PROFILE=${SIM_PROFILE:-1}
OUT_DIR=${OUT_DIR:-$ROOT/bench/profiles}
KEEP=${KEEP:-}
CARGO_FLAGS=${CARGO_FLAGS:-}

log() { printf '[profile-requests] %s\n' "$*" >&2; }
for row in $ROWS; do
    case $row in 4c | 4d | 4b) ;; *) log "unknown row '$row' (4c, 4d or 4b)"; exit 2 ;; esac
done

# --- tools -------------------------------------------------------------------------------
need=()
for t in valgrind:valgrind callgrind_control:valgrind curl:curl jq:jq; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v python3 >/dev/null 2>&1 || { log "python3 is needed for the analysis"; exit 1; }
command -v c++filt >/dev/null 2>&1 || { log "c++filt (binutils) is needed to read std's symbols"; exit 1; }
# Inline chains of the addresses counted: llvm-symbolizer (apt: llvm), else binutils' addr2line (slower).
compgen -c llvm-symbolizer | grep -q . || command -v addr2line >/dev/null 2>&1 ||
    { log "llvm-symbolizer or addr2line is needed"; exit 1; }

if [ "${BUILD:-1}" = 1 ]; then
    log "building release binaries"
    # shellcheck disable=SC2086
    (cd "$ROOT" && cargo build --release -q $CARGO_FLAGS -p gp-gateway -p gp-sim --bins)
fi
GW=$(realpath "${GW_BIN:-$ROOT/target/release/gp-gateway}")
SIM=$(realpath "${SIM_BIN:-$ROOT/target/release/gp-sim}")
[ -z "$KEEP" ] || KEEP=$(mkdir -p "$KEEP" && cd "$KEEP" && pwd)

# --- processes, stopped on exit ----------------------------------------------------------
TMP=$(mktemp -d -t gp-profile.XXXXXX)
CG=$TMP/callgrind
mkdir -p "$CG" "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
# Gateways resolve their relative paths (practices, suppliers, the audit trail) from here.
cd "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$CG"/* "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
start() { # name, command... ; sets LAST_PID
    local name=$1; shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
stop() { # pid: ends it and waits (callgrind writes its last part on the way out)
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
wait_http() { # url, [tries of 0.1 s]
    for _ in $(seq 1 "${2:-100}"); do
        curl -sf -o /dev/null --max-time 5 "$1" && return 0
        sleep 0.1
    done
    log "no answer from $1"; return 1
}
under_callgrind() { # out file, command... (exec: the pid started is valgrind's)
    local out=$1; shift
    exec valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=yes --compress-strings=no \
        --compress-pos=no --demangle=no --separate-threads=no "$@"
}

P_EMIS=$PORT_BASE P_TPP=$((PORT_BASE + 1)) P_VISION=$((PORT_BASE + 2)) P_MT=$((PORT_BASE + 3))
P_PDS=$((PORT_BASE + 4)) P_GW_NOCACHE=$((PORT_BASE + 8)) P_GW=$((PORT_BASE + 7))
P_GW_NORMAL=$((PORT_BASE + 15)) P_SIM_CG=$((PORT_BASE + 20))

# --- simulators ----------------------------------------------------------------------------
"$GW" sandbox --print-manifest --seed "$SEED" >"$TMP/manifest.json"
ODS=$(jq -r --arg n "$NHS" '.patients[] | select(.nhs_number == $n) | .practice' "$TMP/manifest.json")
start sim "$SIM" --seed "$SEED" --emis-port "$P_EMIS" --tpp-port "$P_TPP" \
    --vision-port "$P_VISION" --microtest-port "$P_MT" --pds-port "$P_PDS"
NATIVE_PATH="/emis/practices/$ODS/patients/$NHS/medicalrecord"
PDS_PATH="/personal-demographics/FHIR/R4/Patient/$NHS"
wait_http "http://127.0.0.1:$P_EMIS/emis/health"

# --- gateway config, as bench/load.sh's ----------------------------------------------------
jq -r '.practices[] | "[[practice]]\nods = \"\(.ods)\"\nname = \"\(.name)\"\nsystem = \"\(.system)\"\n"' \
    "$TMP/manifest.json" >"$TMP/practices.toml"
ALL_ODS=$(jq -c '[.practices[].ods]' "$TMP/manifest.json")
cat >"$TMP/suppliers.toml" <<EOF
[[suppliers]]
client_id = "demo-consult"
name = "Request profiles (TEST-ONLY sandbox key)"
status = "active"
jwks_file = "$ROOT/fixtures/sandbox/demo-consult.jwks.json"
scopes = ["system/Patient.rus", "system/Observation.crs"]
practices = $ALL_ODS
rate_limit = { per_second = 1000000.0, burst = 1000000 }
token_rate_limit = { per_second = 1000000.0, burst = 1000000 }
EOF
# gateway_config and token_for, as bench/load.sh's: bench/support/gateway.sh
source "$ROOT/bench/support/gateway.sh"
export GP_GATEWAY_LOG=warn


FHIR=/FHIR/R4
row_path() {
    case $1 in
        4c) echo "$FHIR/Patient/$NHS" ;;
        4d | 4b) echo "$FHIR/Observation?patient=$NHS" ;;
    esac
}
row_title() {
    case $1 in
        4c) echo "4c. gateway Patient/{nhs}, no cache" ;;
        4d) echo "4d. gateway Observation?patient, no cache" ;;
        4b) echo "4b. gateway Observation?patient, cached" ;;
    esac
}
row_cached() { [ "$1" = 4b ]; }

# send count, url, [token], [timings file]: count requests one after another on one
# keep-alive connection; every answer must be 200.
send() {
    local count=$1 url=$2 token=${3:-} times=${4:-/dev/null} cfg=$TMP/curl.cfg
    : >"$cfg"
    for _ in $(seq 1 "$count"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
    curl -s --max-time 120 -K "$cfg" ${token:+-H "Authorization: Bearer $token"} \
        -w '%{http_code} %{time_total}\n' >"$TMP/answers.txt"
    local bad
    bad=$(awk '$1 != 200' "$TMP/answers.txt" | wc -l)
    [ "$bad" = 0 ] || { log "$url: $bad of $count answers were not 200"; sort "$TMP/answers.txt" | uniq -c | head >&2; exit 1; }
    awk '{print $2}' "$TMP/answers.txt" >"$times"
}
# median and 90th percentile (ms) of a file of seconds
quantiles() { sort -g "$1" | awk '{v[NR] = $1 * 1000} END { printf "%.3f %.3f", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)] }'; }
# The gateway's cache counters from its /metrics (admin port): "cache result count" lines.
cache_counts() {
    curl -sf --max-time 60 "http://127.0.0.1:$(($1 + 100))/metrics" |
        awk '/^gp_gateway_cache_requests_total\{/ { match($0, /cache="[^"]*"/); c = substr($0, RSTART + 7, RLENGTH - 8)
             match($0, /result="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); print c, r, $NF }' | sort
}

# --- wall clock, gateways not under valgrind: what callgrind cannot see ------------------
TIMES=$CG/timing.txt
: >"$TIMES"
if [ "$TIMING" = 1 ]; then
    log "wall clock: $N requests a row, curl -w, gateways natively"
    gateway_config "$P_GW_NOCACHE" 0 "$AUDIT_SYNC" >"$TMP/t-nocache.toml"
    gateway_config "$P_GW" "$CACHED_TTL" "$AUDIT_SYNC" >"$TMP/t-cached.toml"
    other_sync=normal; [ "$AUDIT_SYNC" = normal ] && other_sync=full
    gateway_config "$P_GW_NORMAL" 0 "$other_sync" >"$TMP/t-other.toml"
    "$GW" check-config --config "$TMP/t-nocache.toml" >/dev/null
    start t-nocache "$GW" serve --config "$TMP/t-nocache.toml"; T1=$LAST_PID
    start t-cached "$GW" serve --config "$TMP/t-cached.toml"; T2=$LAST_PID
    start t-other "$GW" serve --config "$TMP/t-other.toml"; T3=$LAST_PID
    for p in "$P_GW_NOCACHE" "$P_GW" "$P_GW_NORMAL"; do wait_http "http://127.0.0.1:$p/_ready"; done
    timed() { # label, url, [token]
        send "$WARM" "$2" "${3:-}"
        send "$N" "$2" "${3:-}" "$TMP/t.txt"
        printf '%s\t%s\n' "$1" "$(quantiles "$TMP/t.txt" | tr ' ' '\t')" >>"$TIMES"
    }
    timed "EMIS simulator, native record (direct)" "http://127.0.0.1:$P_EMIS$NATIVE_PATH"
    timed "PDS simulator, Patient (direct)" "http://127.0.0.1:$P_PDS$PDS_PATH"
    TK=$(token_for "$P_GW_NOCACHE"); TK3=$(token_for "$P_GW_NORMAL"); TK2=$(token_for "$P_GW")
    for row in $ROWS; do
        if row_cached "$row"; then
            timed "$(row_title "$row")" "http://127.0.0.1:$P_GW$(row_path "$row")" "$TK2"
        else
            timed "$(row_title "$row")" "http://127.0.0.1:$P_GW_NOCACHE$(row_path "$row")" "$TK"
            timed "$(row_title "$row"), synchronous = \"$other_sync\"" "http://127.0.0.1:$P_GW_NORMAL$(row_path "$row")" "$TK3"
        fi
    done
    stop "$T1"; stop "$T2"; stop "$T3"
fi

# --- the simulator's own cost of a native read (callgrind) -------------------------------
SIM_IR=""
if [ "$SIM_PROFILE" = 1 ]; then
    log "callgrind: the EMIS simulator serving $N native reads"
    start sim-cg under_callgrind "$CG/sim.out" "$SIM" --seed "$SEED" --emis-port "$P_SIM_CG" \
        --tpp-port 0 --vision-port 0 --microtest-port 0 --pds-port $((P_SIM_CG + 4))
    SIM_CG_PID=$LAST_PID
    wait_http "http://127.0.0.1:$P_SIM_CG/emis/health" 600
    send "$WARM" "http://127.0.0.1:$P_SIM_CG$NATIVE_PATH"
    callgrind_control -z "$SIM_CG_PID" >/dev/null
    send "$N" "http://127.0.0.1:$P_SIM_CG$NATIVE_PATH"
    callgrind_control -d "$SIM_CG_PID" >/dev/null
    SIM_IR=$(awk '/^(summary|totals):/ {print $2; exit}' "$(ls -v "$CG"/sim.out.* | tail -1)")
    SIM_IR=$((SIM_IR / N))
    # and PDS: one Patient read
    send "$WARM" "http://127.0.0.1:$((P_SIM_CG + 4))$PDS_PATH"
    callgrind_control -z "$SIM_CG_PID" >/dev/null
    send "$N" "http://127.0.0.1:$((P_SIM_CG + 4))$PDS_PATH"
    callgrind_control -d "$SIM_CG_PID" >/dev/null
    PDS_IR=$(awk '/^(summary|totals):/ {print $2; exit}' "$(ls -v "$CG"/sim.out.* | tail -1)")
    SIM_IR="$SIM_IR $((PDS_IR / N))"
    stop "$SIM_CG_PID"
fi

# --- the gateway under callgrind, row by row -------------------------------------------------
# A gateway under callgrind, with the pid callgrind_control needs.
start_gateway_cg() { # name, port, ttl
    local name=$1 port=$2 ttl=$3
    gateway_config "$port" "$ttl" "$AUDIT_SYNC" >"$TMP/$name.toml"
    "$GW" check-config --config "$TMP/$name.toml" >/dev/null
    log "callgrind: gateway '$name' ([cache] ttl_secs = $ttl) starting under valgrind"
    start "$name" under_callgrind "$CG/$name.out" "$GW" serve --config "$TMP/$name.toml"
    GW_CG_PID=$LAST_PID
    wait_http "http://127.0.0.1:$port/_ready" 1200
}
profile_row() { # row, port, token, gateway name
    local row=$1 port=$2 token=$3 name=$4 url before after dump
    url="http://127.0.0.1:$port$(row_path "$row")"
    log "row $row: $WARM warm-up requests, then $N under callgrind"
    send "$WARM" "$url" "$token"
    before=$(cache_counts "$port")
    callgrind_control -z "$GW_CG_PID" >/dev/null
    send "$N" "$url" "$token" "$TMP/cg-times-$row.txt"
    callgrind_control -d "$GW_CG_PID" >/dev/null
    after=$(cache_counts "$port")
    dump=$(ls -v "$CG/$name.out."* | tail -1)
    cp "$dump" "$CG/request-$row.out"
    # cache lookups during the row: after - before
    join -a2 -e0 -o '0,1.2,2.2' <(sed 's/ /:/' <<<"$before" | sort) <(sed 's/ /:/' <<<"$after" | sort) |
        awk '{ printf "%s %d; ", $1, $3 - $2 }' | sed 's/; $//' >"$CG/request-$row.caches"
}

NOCACHE_ROWS="" CACHED_ROWS=""
for row in $ROWS; do
    if row_cached "$row"; then CACHED_ROWS+=" $row"; else NOCACHE_ROWS+=" $row"; fi
done
if [ -n "$NOCACHE_ROWS" ]; then
    start_gateway_cg gw-nocache "$P_GW_NOCACHE" 0
    TOKEN=$(token_for "$P_GW_NOCACHE")
    for row in $NOCACHE_ROWS; do profile_row "$row" "$P_GW_NOCACHE" "$TOKEN" gw-nocache; done
    stop "$GW_CG_PID"
fi
if [ -n "$CACHED_ROWS" ]; then
    start_gateway_cg gw-cached "$P_GW" "$CACHED_TTL"
    TOKEN=$(token_for "$P_GW")
    for row in $CACHED_ROWS; do profile_row "$row" "$P_GW" "$TOKEN" gw-cached; done
    stop "$GW_CG_PID"
fi

# --- analysis ------------------------------------------------------------------------------
cat >"$TMP/shares.py" <<'PY'
"""Where a gateway request's instructions go, by category, from callgrind dumps.

argv: root gateway-binary requests audit-sync timing-file simulator-Ir spec...
spec: row TAB dump TAB cache-lookups TAB title TAB path TAB output file
"""
import collections
import os
import re
import shutil
import subprocess
import sys

ROOT, GW_BIN, N, SYNC, TIMES, SIM_IR = sys.argv[1:7]
SPECS = [s.split("\t") for s in sys.argv[7:]]
N = int(N)
ROOT = ROOT.rstrip("/")

# --- categories ----------------------------------------------------------------------------
CATS = [
    ("http", "HTTP server: hyper connection task (read, parse, write the answer)"),
    ("auth", "auth: negotiation, bearer token check, scopes, rate limit"),
    ("glue", "pipeline and handler glue: ids, span, route, query, dispatch, resilience, metrics, headers"),
    ("locator", "locator: PDS location cache (PDS itself on a miss)"),
    ("release", "release rules: pairing, restricted, dissent, confidential entries"),
    ("cache", "record cache: moka lookups (ttl 0: the call only)"),
    ("native", "native read: HTTP client to the GP system, request and response body"),
    ("map", "parse and map: EMIS XML -> UK Core, unused parts dropped"),
    ("versions", "entry versions: each entry of an area serialised and hashed, its JSON kept for the answer (cache.rs)"),
    ("paging", "search and paging: parse, filter, sort, page, clone the page, Bundle"),
    ("people", "entry index and names: entries and people remembered, references named"),
    ("serialise", "serialisation: the answer's JSON (respond::*, handlers::{shaped, matches_json, searchset_bytes, fresh_json})"),
    ("audit", "audit: row built and queued, log append (writer), SQLite insert (indexer)"),
    ("checkpoint", "audit checkpoint: indexer, once a second of wall time"),
    ("other", "other: tokio scheduler, timers, thread wake-ups, background tasks"),
]

# Source rules: an instruction whose inline chain (innermost first) has a frame in one of
# these files (and, when functions are named, within their lines) goes to the first such
# frame's category. Most specific first.
SRC_RULES = [
    ("checkpoint", "crates/gp-audit/src/sqlite.rs", ["checkpoint"]),
    ("audit", "crates/gp-audit/src/", None),
    ("audit", "crates/gp-gateway/src/pipeline.rs", ["audit"]),
    ("audit", "crates/gp-gateway/src/notify/mod.rs", ["events_of"]),
    ("auth", "crates/gp-gateway/src/pipeline.rs", ["authorise", "negotiate", "named_patient"]),
    ("auth", "crates/gp-gateway/src/access.rs", None),
    ("auth", "crates/gp-gateway/src/auth.rs", None),
    ("auth", "crates/gp-auth/src/", None),
    ("serialise", "crates/gp-gateway/src/handlers.rs", ["shaped", "shaped_bytes", "matches_json", "searchset_bytes", "fresh_json"]),
    ("serialise", "crates/gp-gateway/src/respond.rs", None),
    ("paging", "crates/gp-gateway/src/handlers.rs", ["clinical_search", "searchset", "now_rfc3339"]),
    ("paging", "crates/gp-fhir/src/search.rs", None),
    ("paging", "crates/gp-fhir/src/bundle.rs", ["link", "build", "build_with", "build_from", "entry", "full_url"]),
    ("paging", "crates/gp-gateway/src/include.rs", None),
    ("people", "crates/gp-gateway/src/handlers.rs", ["remember_people", "name_people", "included"]),
    ("people", "crates/gp-gateway/src/entries.rs", None),
    ("people", "crates/gp-gateway/src/people.rs", None),
    ("versions", "crates/gp-fhir/src/model.rs", ["stamp_content_version", "stamp_fresh"]),
    ("locator", "crates/gp-gateway/src/app.rs", ["locate"]),
    ("locator", "crates/gp-gateway/src/locator.rs", None),
    ("release", "crates/gp-gateway/src/release.rs", None),
    ("cache", "crates/gp-gateway/src/cache.rs", None),
    ("native", "crates/gp-adapter/src/native.rs", None),
    ("native", "crates/gp-adapter/src/native/", None),
    ("native", "crates/gp-adapter-emis/src/client.rs", None),
    ("map", "crates/gp-adapter-emis/src/", None),
    ("map", "crates/gp-adapter/src/xml.rs", None),
    ("map", "crates/gp-adapter/src/terminology/", None),
    ("map", "crates/gp-adapter/src/vital_signs.rs", None),
    ("map", "crates/gp-adapter/src/uk_core.rs", None),
    ("map", "crates/gp-adapter/src/time.rs", None),
    ("map", "crates/gp-adapter/src/paging.rs", None),
    ("glue", "crates/gp-gateway/src/pipeline.rs", None),
    ("glue", "crates/gp-gateway/src/handlers.rs", None),
    ("glue", "crates/gp-gateway/src/routes.rs", None),
    ("glue", "crates/gp-gateway/src/context.rs", None),
    ("glue", "crates/gp-gateway/src/telemetry.rs", None),
    ("glue", "crates/gp-gateway/src/metrics.rs", None),
    ("glue", "crates/gp-gateway/src/resilience.rs", None),
    ("glue", "crates/gp-gateway/src/forwarded.rs", None),
    ("glue", "crates/gp-gateway/src/head.rs", None),
    ("glue", "crates/gp-gateway/src/redact.rs", None),
    ("glue", "crates/gp-gateway/src/app.rs", None),
    ("http", "crates/gp-gateway/src/server.rs", None),
    ("http", "crates/gp-gateway/src/connections.rs", None),
]
# Function rules (demangled symbol, no hash): for code outside this tree that roots a
# category, and for symbols with no line information.
FN_RULES = [
    ("native", r"^<hyper::client::conn::|^hyper::client::conn::"),
    ("http", r"^<?hyper_util::server::"),
]

# Named functions whose inclusive cost each file gives: (label, symbol rule, source rule).
KEY = [
    ("EmisAdapter::read_patient: native read + whole record mapped", r"^<gp_adapter_emis::EmisAdapter as gp_adapter::Adapter>::read_patient\b", ("crates/gp-adapter-emis/src/lib.rs", ["read_patient"])),
    ("EmisAdapter::search: native read + whole record mapped + filtered", r"^<gp_adapter_emis::EmisAdapter as gp_adapter::Adapter>::search\b", ("crates/gp-adapter-emis/src/lib.rs", ["search"])),
    ("  mapping::map_record: parse + map, whole record", r"^gp_adapter_emis::mapping::map_record\b", ("crates/gp-adapter-emis/src/mapping.rs", ["map_record"])),
    ("    xml::Document::parse_data: the DOM", r"^gp_adapter::xml::Document::parse_data(_skipping)?\b", ("crates/gp-adapter/src/xml.rs", ["parse_data", "parse_data_skipping"])),
    ("    mapping::map_root: the mapping", r"^gp_adapter_emis::mapping::map_root\b", ("crates/gp-adapter-emis/src/mapping.rs", ["map_root"])),
    ("      clinical entries (map_list x4, panel_links, panel_interpretations, vital_signs::finish)", r"^gp_adapter_emis::mapping::(map_list|panel_links|panel_interpretations)\b|^gp_adapter::vital_signs::finish\b", ("crates/gp-adapter-emis/src/mapping.rs", ["map_list", "panel_links", "panel_interpretations"])),
    ("entries dropped (drop_in_place of MappedRecord, Resource, Vec<Resource>)", r"^core::ptr::drop_in_place<(gp_adapter_emis::mapping::MappedRecord|gp_fhir::model::Resource|alloc::vec::Vec<gp_fhir::model::Resource>)>$", None),
    ("native call, request side (NativeClient::send)", r"^gp_adapter::native::NativeClient::send\b", ("crates/gp-adapter/src/native.rs", ["send"])),
    ("native call, hyper client connection task (socket I/O)", r"^<hyper::client::conn::", None),
    ("Resource::stamp_fresh (cache.rs, every entry of the area)", r"^gp_fhir::model::Resource::stamp_(content_version|fresh)\b", ("crates/gp-fhir/src/model.rs", ["stamp_content_version", "stamp_fresh"])),
    ("Fresh::answer: an entry's answer copied from its kept JSON", r"^gp_fhir::json::Fresh::answer\b", None),
    ("Resource::to_json: a typed resource straight to bytes (wherever called)", r"^gp_fhir::model::Resource::to_json\b", None),
    ("handlers::shaped: Bundle -> Value -> bytes", r"^gp_gateway::handlers::shaped\b", ("crates/gp-gateway/src/handlers.rs", ["shaped", "shaped_bytes"])),
    ("  Bundle serialised into a serde_json::Value (to_value)", r"^gp_fhir::bundle::_::<impl serde_core::ser::Serialize for gp_fhir::bundle::Bundle>::serialize$|^serde_json::value::(ser::)?to_value\b", None),
    ("  the Value serialised (to_vec)", r"^serde_json::ser::to_vec$", None),
    ("  the Value dropped", r"^core::ptr::drop_in_place<serde_json::value::Value>$", None),
    ("respond::patient: the Patient answer", r"^gp_gateway::respond::patient\b", ("crates/gp-gateway/src/respond.rs", ["patient"])),
    ("<Resource as Clone>::clone", r"^<gp_fhir::model::Resource as core::clone::Clone>::clone$", None),
    ("AuthState::verify: the bearer token (cache hit)", r"^gp_gateway::auth::AuthState::verify\b", ("crates/gp-gateway/src/auth.rs", ["verify"])),
    ("sha2 compress256 (software: valgrind hides the SHA extensions)", r"^sha2::sha256::compress256\b", None),
    ("<NhsNumber as Display>::fmt", r"^<gp_fhir::ids::NhsNumber as core::fmt::Display>::fmt$", None),
    ("audit writer thread (gp_audit::sqlite::writer)", r"^gp_audit::sqlite::writer\b", None),
    ("audit indexer thread (gp_audit::sqlite::indexer)", r"^gp_audit::sqlite::indexer\b", None),
    ("moka (every cache: lookups, inserts, housekeeping)", r"^<?moka::", None),
    ("mimalloc (malloc, free, realloc)", r"^_?mi_", None),
    ("tokio worker loop (every task poll)", r"^tokio::runtime::scheduler::multi_thread::worker::Context::run$", None),
]


# --- names -------------------------------------------------------------------------------
ESC = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "$":
            j = s.find("$", i + 1)
            code = s[i + 1:j] if j > 0 else ""
            if code in ESC:
                out.append(ESC[code]); i = j + 1; continue
            if code.startswith("u"):
                try:
                    out.append(chr(int(code[1:], 16))); i = j + 1; continue
                except ValueError:
                    pass
            out.append(s[i]); i += 1
        elif s.startswith("..", i):
            out.append("::"); i += 2
        else:
            out.append(s[i]); i += 1
    return "".join(out)


def legacy(sym):
    """A Rust legacy symbol's path, without its hash."""
    s, parts, i = sym[3:], [], 0
    while i < len(s) and s[i] != "E":
        m = re.match(r"\d+", s[i:])
        if not m:
            return None
        n = int(m.group(0)); i += len(m.group(0))
        parts.append(s[i:i + n]); i += n
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(unescape(p[1:] if p.startswith("_$") else p) for p in parts)


NAME = {}


def name_all(funcs):
    v0 = sorted({re.sub(r"'\d+$", "", f) for f in funcs if f.startswith("_R")} - set(NAME))
    v0_names = {}
    if v0:
        out = subprocess.run(["c++filt"], input="\n".join(v0), capture_output=True, text=True).stdout.split("\n")
        v0_names = dict(zip(v0, out))
    for f in funcs:
        if f in NAME:
            continue
        base, suffix = f, ""
        m = re.match(r"^(.*?)('\d+)$", f)
        if m:
            base, suffix = m.group(1), m.group(2)
        if base.startswith("_ZN"):
            NAME[f] = (legacy(base) or base) + suffix
        elif base.startswith("_R"):
            NAME[f] = re.sub(r"\[[0-9a-f]{16}\]", "", v0_names.get(base, base)) + suffix
        else:
            NAME[f] = f


# --- a dump --------------------------------------------------------------------------------
def parse(path):
    """Self cost by (function, object, address); call edges by (caller, object, address,
    callee); the dump's total. Needs --dump-instr=yes --compress-strings=no --compress-pos=no."""
    self_cost = collections.defaultdict(collections.Counter)
    calls = collections.defaultdict(collections.Counter)
    fn = ob = callee = None
    pending = False
    summary = 0
    for line in open(path, errors="replace"):
        c = line[:1]
        if c == "0" or c.isdigit() or c in "+-*":
            parts = line.split()
            if len(parts) < 3:
                continue
            addr = int(parts[0], 16) if parts[0].startswith("0x") else 0
            ir = int(parts[2])
            if pending:
                calls[fn][(ob, addr, callee)] += ir
                pending = False
            else:
                self_cost[fn][(ob, addr)] += ir
            continue
        key, _, val = line.rstrip("\n").partition("=")
        if key == "fn":
            fn = val
        elif key == "ob":
            ob = val
        elif key == "cfn":
            callee = val
        elif key == "calls":
            pending = True
        elif line.startswith("summary:") or line.startswith("totals:"):
            summary = max(summary, int(line.split()[1]))
    return self_cost, calls, summary


# --- inline chains ---------------------------------------------------------------------------
CHAIN = {}  # address in the gateway binary -> [(file, line)], innermost first


def symbolize(addrs):
    addrs = sorted(set(addrs) - set(CHAIN))
    if not addrs:
        return
    tool = next((t for t in ["llvm-symbolizer"] + [f"llvm-symbolizer-{v}" for v in range(20, 10, -1)] if shutil.which(t)), None)
    text = "\n".join(f"0x{a:x}" for a in addrs) + "\n"
    if tool:
        out = subprocess.run([tool, f"--obj={GW_BIN}", "--inlining", "--functions=none"],
                             input=text, capture_output=True, text=True).stdout
        blocks = out.split("\n\n")
        for a, block in zip(addrs, blocks):
            CHAIN[a] = [loc_of(l) for l in block.strip().split("\n") if l.strip()]
    else:
        out = subprocess.run(["addr2line", "-a", "-i", "-e", GW_BIN], input=text,
                             capture_output=True, text=True).stdout
        cur = None
        for l in out.split("\n"):
            if l.startswith("0x"):
                cur = int(l, 16); CHAIN[cur] = []
            elif cur is not None and l.strip():
                CHAIN[cur].append(loc_of(l))
    for a in addrs:
        CHAIN.setdefault(a, [])


def loc_of(text):
    f, _, rest = text.strip().partition(":")
    m = re.match(r"\d+", rest)
    return (f, int(m.group(0)) if m else 0)


# --- source ranges -----------------------------------------------------------------------
def fn_ranges(path, names):
    """Line ranges (first, last) of the functions `names` in a Rust source file."""
    try:
        text = open(path).read()
    except OSError:
        return []
    out, i, n = [], 0, len(text)
    while i < n:  # comments, strings and char literals blanked, line breaks kept
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i); j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2); j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j])); i = j
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 8]) and not text[i - 1:i].isalnum()):
            m = re.match(r'r(#*)"', text[i:i + 8])
            if m:
                end = '"' + m.group(1); j = text.find(end, i + len(m.group(0)))
                j = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j])); i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])
            out.append(" " * len(m.group(0))); i += len(m.group(0))
        else:
            out.append(c); i += 1
    code = "".join(out)
    ranges = []
    for name in names:
        for m in re.finditer(r"\bfn\s+" + re.escape(name) + r"\b", code):
            j, depth = m.end(), 0
            while j < len(code):
                if code[j] in "([":
                    depth += 1
                elif code[j] in ")]":
                    depth -= 1
                elif code[j] == ";" and depth == 0:
                    j = -1; break
                elif code[j] == "{" and depth == 0:
                    break
                j += 1
            if j < 0 or j >= len(code):
                continue
            level, k = 0, j
            while k < len(code):
                if code[k] == "{":
                    level += 1
                elif code[k] == "}":
                    level -= 1
                    if level == 0:
                        break
                k += 1
            ranges.append((code.count("\n", 0, m.start()) + 1, code.count("\n", 0, k) + 1))
    return ranges


def compile_src(rules):
    out = []
    for cat, rel, names in rules:
        p = os.path.join(ROOT, rel)
        out.append((cat, p, fn_ranges(p, names) if names else None, rel, names))
    return out


def frame_cat(frame, rules):
    file, line = frame
    if not file.startswith(ROOT):
        return None
    for cat, p, ranges, _, _ in rules:
        if p.endswith("/"):
            if not file.startswith(p):
                continue
        elif file != p:
            continue
        if ranges is None or any(a <= line <= b for a, b in ranges):
            return cat
    return None


def chain_cat(ob, addr, rules, memo):
    if ob != GW_OB:
        return None
    k = addr
    if k not in memo:
        memo[k] = next((c for c in (frame_cat(fr, rules) for fr in CHAIN.get(addr, ())) if c), None)
    return memo[k]


# --- propagation ---------------------------------------------------------------------------
def propagate(self_cost, calls, root_of, rules):
    """Each instruction's category: its inline chain's innermost rule, else its function's
    rule, else its function's callers' categories weighted by the cost of their calls (an
    instruction goes to the innermost rule on its call path). Returns totals and, per
    category, the self cost of each function."""
    funcs = set(self_cost) | set(calls) | {k[2] for e in calls.values() for k in e}
    memo = {}
    callers = collections.defaultdict(list)
    for f, es in calls.items():
        for (ob, addr, g), ir in es.items():
            if g != f and ir > 0:
                callers[g].append((f, chain_cat(ob, addr, rules, memo), ir))
    root = {f: root_of(f) for f in funcs}
    ctx = {f: ({root[f]: 1.0} if root[f] else {None: 1.0}) for f in funcs}
    order, seen = [], set()
    for start in funcs:  # callers before callees where the graph allows
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter([k[2] for k in calls.get(start, {})]))]
        while stack:
            f, it = stack[-1]
            g = next(it, None)
            if g is None:
                order.append(f); stack.pop()
            elif g not in seen:
                seen.add(g)
                stack.append((g, iter([k[2] for k in calls.get(g, {})])))
    order.reverse()
    for _ in range(100):
        change = 0.0
        for f in order:
            if root[f]:
                continue
            acc = collections.Counter()
            for c, lc, ir in callers.get(f, ()):
                if lc:
                    acc[lc] += ir
                else:
                    for k, v in ctx[c].items():
                        acc[k] += ir * v
            tot = sum(acc.values())
            new = {k: v / tot for k, v in acc.items()} if tot > 0 else {None: 1.0}
            old = ctx[f]
            change = max(change, sum(abs(new.get(k, 0) - old.get(k, 0)) for k in set(new) | set(old)))
            ctx[f] = new
        if change < 1e-9:
            break
    totals = collections.Counter()
    per_fn = collections.defaultdict(collections.Counter)
    for f, locs in self_cost.items():
        for (ob, addr), ir in locs.items():
            lc = chain_cat(ob, addr, rules, memo)
            for k, v in ({lc: 1.0} if lc else ctx[f]).items():
                totals[k] += ir * v
                per_fn[k][f] += ir * v
    return totals, per_fn


def fmt(x):
    return f"{x:,.0f}"


def report(row, dump, caches, title, path, out_file):
    self_cost, calls, summary = parse(dump)
    funcs = set(self_cost) | set(calls) | {k[2] for e in calls.values() for k in e}
    name_all(funcs)
    addrs = {a for locs in self_cost.values() for (ob, a) in locs if ob == GW_OB}
    addrs |= {a for es in calls.values() for (ob, a, _) in es if ob == GW_OB}
    symbolize(addrs)
    fn_rx = [(cat, re.compile(rx)) for cat, rx in FN_RULES]
    root_of = lambda f: next((cat for cat, rx in fn_rx if rx.search(NAME[f])), None)
    totals, per_fn = propagate(self_cost, calls, root_of, SRC)
    totals["other"] += totals.pop(None, 0)
    per_fn["other"].update(per_fn.pop(None, {}))
    total = sum(totals.values())
    self_total = collections.Counter({f: sum(l.values()) for f, l in self_cost.items()})
    main_cat = {}
    for cat, fs in per_fn.items():
        for f, ir in fs.items():
            if ir > main_cat.get(f, (None, 0))[1]:
                main_cat[f] = (cat, ir)

    def shown(f, width=140):
        n = NAME[f]
        return n if len(n) <= width else n[:width - 3] + "..."

    o = []
    p = o.append
    p(f"# Request profile: {title}")
    p(f"#   GET {path}: {N} requests one after another on one keep-alive connection (curl), after")
    p(f"#   warm-ups; the gateway under callgrind (valgrind 3.19), [audit] synchronous = \"{SYNC}\";")
    p(f"#   Ir = instructions the gateway process executed (every thread) between callgrind_control -z")
    p(f"#   and -d. Cache lookups during the row (gp_gateway_cache_requests_total): {caches or 'none'}.")
    p(f"#   Made by bench/profile-requests.sh.")
    p("")
    p(f"Ir per request: {fmt(total / N)}  (dump total {fmt(summary)} for {N} requests)")
    p("")
    p(f"{'category':<12} {'Ir/request':>12} {'share':>7}  what")
    for cat, label in CATS:
        p(f"{cat:<12} {fmt(totals.get(cat, 0) / N):>12} {100 * totals.get(cat, 0) / total:>6.1f}%  {label}")
    p(f"{'total':<12} {fmt(total / N):>12} {100.0:>6.1f}%")
    p("")
    if os.path.exists(TIMES) and os.path.getsize(TIMES) > 0:
        p(f"Wall clock, not under valgrind (curl -w time_total; {N} requests one after another on one")
        p("connection, after warm-ups; median / 90th percentile, ms; indicative on a shared host):")
        for line in open(TIMES):
            label, p50, p90 = line.rstrip("\n").split("\t")
            p(f"  {label:<70} {float(p50):>7.3f} / {float(p90):.3f}")
        p("")
    if SIM_IR.strip():
        parts = SIM_IR.split()
        p(f"The simulators' own cost (gp-sim under callgrind, {N} direct reads each): EMIS native record "
          f"{fmt(int(parts[0]))} Ir a read" + (f"; PDS Patient {fmt(int(parts[1]))} Ir a read." if len(parts) > 1 else "."))
        p("")
    p("Named functions, inclusive Ir per request (their own code and everything they call,")
    p("inlined or not; shared callees apportioned by call cost as above):")
    for label, rx, src in KEY:
        r = re.compile(rx)
        rules = compile_src([("in", src[0], src[1])]) if src else []
        t, _ = propagate(self_cost, calls, lambda f: "in" if r.search(NAME[f]) else None, rules)
        v = t.get("in", 0)
        if v > 0:
            p(f"  {fmt(v / N):>10} {100 * v / total:>6.1f}%  {label}")
    p("")
    p("Largest functions of each category (self Ir per request it counts there):")
    for cat, _ in CATS:
        top = per_fn.get(cat, collections.Counter()).most_common(6)
        if not top or totals.get(cat, 0) <= 0:
            continue
        p(f"  {cat}: " + "; ".join(f"{shown(f, 90)} {fmt(ir / N)}" for f, ir in top if ir / N >= 1))
    p("")
    copies = sum(ir for f, ir in self_total.items() if re.match(r"^__mem(cpy|move)", NAME[f]))
    p(f"memcpy/memmove: {fmt(copies / N)} Ir per request ({100 * copies / total:.1f}%). Copies over a few KiB take")
    p("glibc's `rep movsb` path, which callgrind counts one Ir per byte: they weigh more here than")
    p("in time. Likewise SHA-256 runs in software under valgrind, which hides the CPU's SHA")
    p("extensions (sha2 uses them natively): the token's cache key and the audit log's checksum.")
    p("")
    p("Top 25 functions by self cost (Ir per request, share of the request, the category that")
    p("counts most of it):")
    for i, (f, ir) in enumerate(self_total.most_common(25), 1):
        p(f"  {i:>2}. {fmt(ir / N):>10} {100 * ir / total:>5.1f}%  {main_cat.get(f, ('other', 0))[0]:<10} {shown(f)}")
    p("")
    p("How instructions are counted: an instruction whose inline chain (llvm-symbolizer) has a")
    p("frame in a source rule's range goes to the innermost such frame's category; otherwise its")
    p("function's symbol rule decides; otherwise its function's callers' categories, weighted by")
    p("the cost of their calls (each call site categorised the same way). So an instruction goes")
    p("to the innermost rule on its call path, and the categories sum to the dump's total.")
    p("Source rules, most specific first (file, and the functions whose lines count; else all of it):")
    for cat, pth, ranges, rel, names in SRC:
        where = ", ".join(names) if names else ("every file under it" if rel.endswith("/") else "whole file")
        lines = (" (lines " + ", ".join(f"{a}-{b}" for a, b in ranges) + ")") if ranges else ""
        p(f"  {cat:<10} {rel}: {where}{lines}")
    p("Symbol rules:")
    for cat, rx in FN_RULES:
        p(f"  {cat:<10} /{rx}/")
    with open(out_file, "w") as fh:
        fh.write("\n".join(o) + "\n")


GW_OB = os.path.realpath(GW_BIN)
SRC = compile_src(SRC_RULES)
for spec in SPECS:
    report(*spec)
PY
specs=()
for row in $ROWS; do
    specs+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$row" "$CG/request-$row.out" "$(cat "$CG/request-$row.caches")" \
        "$(row_title "$row")" "$(row_path "$row")" "$OUT_DIR/request-$row.txt")")
done
log "analysing (symbolising the inline chains of every address counted)"
python3 "$TMP/shares.py" "$ROOT" "$GW" "$N" "$AUDIT_SYNC" "$TIMES" "$SIM_IR" "${specs[@]}"
for row in $ROWS; do
    log "wrote $OUT_DIR/request-$row.txt"
    sed -n '/^Ir per request/,/^total/p' "$OUT_DIR/request-$row.txt" >&2
done
