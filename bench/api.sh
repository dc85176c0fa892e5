#!/usr/bin/env bash
# The API under 500 concurrent connections, telemetry off and on, as BENCHMARKS.md records it.
#
#   bench/api.sh                  # after: cargo build --release -p fertivision --bin fertivision
#                                 # needs wrk (Debian package `wrk`)
#
# One collector on the default pipeline (redaction, Prometheus, profiles, log and span index)
# runs throughout. For each mode, `fertivision serve` starts on a copy of the same SQLite
# database (one admin token, one patient):
#   off        telemetry.enabled = false (the process log only; spans still get trace ids);
#   on         traces (all of them), logs and metrics exported to the collector, no profiling;
#   sampled    the same with telemetry.trace_sample_ratio = 0.1;
#   profiling  sampled, plus continuous CPU profiling (pprof at 99 Hz).
# Then wrk, 2 threads and $CONNECTIONS connections, $DURATION seconds each:
#   read   GET  /api/v1/patients/{id}
#   write  POST /api/v1/patients/{id}/analyses/follicle (a JSON body; a row, a summary update)
# Per-token rate limits are off (they would answer 429 long before the server's limit).
# "CPU s" is the serve process's user + system time over the run (/proc/PID/stat); RSS is its
# peak (VmHWM). wrk runs on the same 2 cores and competes for them.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/fertivision}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-500}
API_PORT=${API_PORT:-18080}
QUERY_PORT=${QUERY_PORT:-17070}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fv-api-bench.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
TICKS=$(getconf CLK_TCK)

[ -x "$BIN" ] || { echo "missing $BIN: build it first (see the top of this script)" >&2; exit 1; }
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cpu_seconds() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; exit 1
}

# The collector, on its default pipeline (OTLP on 127.0.0.1:4317 and :4318, which must be
# free) with the query port moved.
mkdir -p "$WORK/collector"
FERTIVISION_COLLECTOR__QUERY_LISTEN="127.0.0.1:$QUERY_PORT" \
RUST_LOG=warn "$BIN" collector --data-dir "$WORK/collector" 2> "$WORK/collector.log" &
wait_port "$QUERY_PORT"
wait_port 4317

# The template database: a token and a patient.
export FERTIVISION_LIMITS__ENABLED=false
export FERTIVISION_TELEMETRY__PROFILE_ENDPOINT="http://127.0.0.1:$QUERY_PORT/ingest"
export FERTIVISION_API__LISTEN="127.0.0.1:$API_PORT"
TOKEN=$(FERTIVISION_TELEMETRY__ENABLED=false "$BIN" token create --role admin --data-dir "$WORK/template" 2> /dev/null)
FERTIVISION_TELEMETRY__ENABLED=false RUST_LOG=warn "$BIN" serve --data-dir "$WORK/template" 2> /dev/null &
SETUP=$!
wait_port "$API_PORT"
PATIENT=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"Bench Patient","date_of_birth":"1990-01-01","sex":"female"}' \
    "http://127.0.0.1:$API_PORT/api/v1/patients" | sed 's/.*"id":"\([^"]*\)".*/\1/')
kill -TERM "$SETUP"; wait "$SETUP" || true

cat > "$WORK/write.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"ovary":"left","antral_follicle_count":9}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

# wrk's summary as "req/s p50_ms p99_ms errors".
summary() {
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { for (i = 4; i <= NF; i += 2) errors += $i }
        END { printf "%.0f %.2f %.2f %d", rps, p50, p99, errors }
    ' "$1"
}

echo "| mode | route | requests/s | p50 ms | p99 ms | errors | serve CPU s | req per CPU-s | peak RSS MiB |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for mode in off on sampled profiling; do
    data="$WORK/$mode"
    cp -r "$WORK/template" "$data"
    case $mode in
        off) enabled=false; ratio=1.0; profiling=false ;;
        on) enabled=true; ratio=1.0; profiling=false ;;
        sampled) enabled=true; ratio=0.1; profiling=false ;;
        profiling) enabled=true; ratio=0.1; profiling=true ;;
    esac
    FERTIVISION_TELEMETRY__ENABLED=$enabled FERTIVISION_TELEMETRY__PROFILING=$profiling \
    FERTIVISION_TELEMETRY__TRACE_SAMPLE_RATIO=$ratio \
    RUST_LOG=warn "$BIN" serve --data-dir "$data" 2> "$WORK/serve-$mode.log" &
    SERVE=$!
    wait_port "$API_PORT"
    wrk -t2 -c100 -d3s -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$API_PORT/api/v1/patients/$PATIENT" > /dev/null
    for route in read write; do
        if [ "$route" = read ]; then
            args=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/api/v1/patients/$PATIENT")
        else
            args=(-s "$WORK/write.lua" "http://127.0.0.1:$API_PORT/api/v1/patients/$PATIENT/analyses/follicle")
        fi
        before=$(cpu_seconds "$SERVE")
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" > "$WORK/wrk-$mode-$route.txt"
        cpu=$(awk -v a="$before" -v b="$(cpu_seconds "$SERVE")" 'BEGIN { printf "%.2f", b - a }')
        read -r rps p50 p99 errors <<< "$(summary "$WORK/wrk-$mode-$route.txt")"
        per_cpu=$(awk -v r="$rps" -v d="$DURATION" -v c="$cpu" 'BEGIN { printf "%.0f", r * d / c }')
        echo "| $mode | $route | $rps | $p50 | $p99 | $errors | $cpu | $per_cpu | $(peak_rss_mib "$SERVE") |"
    done
    kill -TERM "$SERVE"; wait "$SERVE" || true
done
lost=$(curl -sf "http://127.0.0.1:$QUERY_PORT/metrics" | awk '/^fertivision_telemetry_lost_total/ { s += $2 } END { print s + 0 }')
echo
echo "telemetry lost on the way to the collector (all modes): $lost"
