#!/usr/bin/env bash
# The API under 500 concurrent connections, telemetry off and on, as BENCHMARKS.md records it.
#
#   bench/api.sh                  # after: cargo build --release -p fertivision --bin fertivision
#                                 # needs wrk (Debian package `wrk`)
#
# Each route of each run gets a fresh collector on the default pipeline (redaction,
# Prometheus, profiles, log and span index) in a new data directory, so its CPU is the cost of
# that run's telemetry alone, not of the merges of what an earlier mode sent. The modes are
# run in ROUNDS rounds, alternating (off, on, sampled, profiling, off, on, ...), so that a
# drift of the shared machine spreads over all of them; the summary gives each figure's
# median over the rounds, then each mode's requests/s over the first mode's in the same round
# (median and range of those pairs). Modes:
#   off        telemetry.enabled = false (the process log only; spans still get trace ids);
#   on         the shipped defaults but profiling: every trace up to the process's budget
#              (telemetry.max_traces_per_second, 100), logs and metrics exported;
#   every      on without the budget (max_traces_per_second = 0): every trace exported;
#   sampled    on with telemetry.trace_sample_ratio = 0.1;
#   profiling  the shipped defaults: on, plus continuous CPU profiling (pprof at 99 Hz);
#   on-nice0   every, with the collector's index sinks at its own CPU priority (`nice = 0`),
#              as before indexing ran at the lowest (not in MODES by default: the peer of
#              that change);
#   floor      not the API: app/examples/http_floor ($FLOOR_BIN), which answers the read
#              route with the same headers and body from memory; what the machine, loopback
#              TCP, hyper and wrk leave for any service (read and paced routes only);
#   peer-off, peer-sampled, peer-on
#              off, sampled and every trace (ratio 1.0) with another build, $PEER_BIN, as its
#              serve process and its collector (not in MODES by default: a version before a
#              change, measured in the same rounds as the change; only settings that build
#              knows are set).
# Each run starts `fertivision serve` on a fresh copy of the same database (of the SQLite
# file; with DATABASE_URL=postgres://.../NAME, NAME is migrated and filled once, and each run
# gets NAME_run, created from it as a template, so the analyses written by one run never slow
# the next one's writes), then runs wrk,
# 2 threads and $CONNECTIONS connections, $DURATION seconds each:
#   read     GET  /api/v1/patients/{id}, as fast as it answers (closed loop);
#   paced    the same, each connection waiting THINK_MS ms between its requests (wrk's
#            `delay()`: 500 users at a steady pace, well below saturation), for the latency
#            a user sees when the service is not overloaded;
#   write    POST /api/v1/patients/{id}/analyses/follicle (a JSON body: a row and the
#            patient's score in one transaction, then the summary's refresh), closed loop,
#            each request to one of $PATIENTS patients at random.
# ROUTES picks some of them (default: all three, in that order).
# Per-token rate limits are off (they would answer 429 long before the server's limit).
# "CPU s" is user + system time over the run (/proc/PID/stat) of the serve process and of the
# collector; RSS is the serve process's peak (VmHWM); "index backlog" counts the log records
# the collector's index sinks (at the lowest CPU priority) had still to read when wrk
# stopped; "spans" is what the run's collector accepted, read once the app's last batch has
# had time to arrive. wrk, the collector and the API share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/fertivision}
PEER_BIN=${PEER_BIN:-}
FLOOR_BIN=${FLOOR_BIN:-target/release/examples/http_floor}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-500}
THINK_MS=${THINK_MS:-25}
PATIENTS=${PATIENTS:-1000}
MODES=${MODES:-off on every profiling floor}
ROUTES=${ROUTES:-read paced write}
API_PORT=${API_PORT:-18080}
QUERY_PORT=${QUERY_PORT:-17070}
DATABASE_URL=${DATABASE_URL:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fv-api-bench.XXXXXX")
cleanup() {
    kill $(jobs -p) 2> /dev/null || true
    wait 2> /dev/null
    rm -rf "$WORK"
    if [ -n "${BASE_DB:-}" ]; then
        psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS ${BASE_DB}_run" || true
    fi
}
trap cleanup EXIT
TICKS=$(getconf CLK_TCK)

for route in $ROUTES; do
    case $route in read | paced | write) ;; *) echo "unknown route $route (read, paced or write)" >&2; exit 1 ;; esac
done
for mode in $MODES; do
    case $mode in
        off | on | every | sampled | profiling | on-nice0) ;;
        floor) [ -x "$FLOOR_BIN" ] || { echo "mode floor needs $FLOOR_BIN: cargo build --release -p fertivision --example http_floor" >&2; exit 1; } ;;
        peer-off | peer-sampled | peer-on)
            [ -x "$PEER_BIN" ] || { echo "mode $mode needs PEER_BIN, a fertivision binary" >&2; exit 1; } ;;
        *) echo "unknown mode $mode" >&2; exit 1 ;;
    esac
done
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

# A collector of the build $RUN_BIN on its default pipeline (OTLP on 127.0.0.1:4317 and
# :4318, which must be free) with the query port moved, on a new data directory $1.
start_collector() {
    mkdir -p "$1"
    FERTIVISION_COLLECTOR__QUERY_LISTEN="127.0.0.1:$QUERY_PORT" \
    env ${PIPELINE:+FERTIVISION_COLLECTOR__PIPELINE=$PIPELINE} \
    RUST_LOG=warn "$RUN_BIN" collector --data-dir "$1" 2> "$1.log" &
    COLLECTOR=$!
    wait_port "$QUERY_PORT"
    wait_port 4317
}
# Keeps in RUN_LOST what the serve process has counted as lost so far (a cumulative counter
# it pushes to the collector every 10 s), then stops the collector and removes its data.
LOST=0
stop_collector() {
    local lost
    lost=$(curl -sf "http://127.0.0.1:$QUERY_PORT/metrics" | awk '/^fertivision_telemetry_lost_total/ { s += $2 } END { printf "%d", s }')
    RUN_LOST=$(( lost > RUN_LOST ? lost : RUN_LOST ))
    kill -TERM "$COLLECTOR"; wait "$COLLECTOR" || true
    rm -rf "$1"
}

# The built-in pipeline with `nice = 0` on its index sinks, for `on-nice0`.
NICE0_PIPELINE="$WORK/pipeline-nice0.toml"
sed -n '/^pub const DEFAULT_PIPELINE/,/^"#;/p' telemetry/src/config.rs | sed '1d;$d' \
    | sed 's/^type = "\(log\|span\)_index"$/&\nnice = 0/' > "$NICE0_PIPELINE"
[ "$(grep -c '^nice = 0$' "$NICE0_PIPELINE")" = 2 ] || { echo "cannot derive $NICE0_PIPELINE" >&2; exit 1; }

# The template database: a token and a patient.
export FERTIVISION_LIMITS__ENABLED=false
export FERTIVISION_TELEMETRY__PROFILE_ENDPOINT="http://127.0.0.1:$QUERY_PORT/ingest"
export FERTIVISION_API__LISTEN="127.0.0.1:$API_PORT"
if [ -n "$DATABASE_URL" ]; then
    command -v psql > /dev/null || { echo "psql is needed to copy the database" >&2; exit 1; }
    case $DATABASE_URL in *\?*) echo "DATABASE_URL must end with the database name" >&2; exit 1 ;; esac
    BASE_DB=${DATABASE_URL##*/}
    ADMIN_URL="${DATABASE_URL%/*}/postgres"
    export FERTIVISION_DATABASE__URL="$DATABASE_URL"
    FERTIVISION_TELEMETRY__ENABLED=false "$BIN" migrate --data-dir "$WORK/template" 2> /dev/null
fi
TOKEN=$(FERTIVISION_TELEMETRY__ENABLED=false "$BIN" token create --role admin --data-dir "$WORK/template" 2> /dev/null)
FERTIVISION_TELEMETRY__ENABLED=false RUST_LOG=warn "$BIN" serve --data-dir "$WORK/template" 2> /dev/null &
SETUP=$!
wait_port "$API_PORT"
new_patient() {
    curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"name\":\"Bench Patient $1\",\"date_of_birth\":\"1990-01-01\",\"sex\":\"female\"}" \
        "http://127.0.0.1:$API_PORT/api/v1/patients" | sed 's/.*"id":"\([^"]*\)".*/\1/'
}
PATIENT=$(new_patient 0)
# Writes go to $PATIENTS patients at random, as a clinic's do: each write recomputes its
# patient's score from all of that patient's analyses, so one patient taking every write
# would measure a patient with tens of thousands of analyses.
for i in $(seq 1 "$PATIENTS"); do echo "\"$(new_patient "$i")\","; done > "$WORK/patients.lua"
kill -TERM "$SETUP"; wait "$SETUP" || true

{
    echo "local patients = {"
    cat "$WORK/patients.lua"
    echo "}"
    cat <<LUA
wrk.method = "POST"
wrk.body = '{"ovary":"left","antral_follicle_count":9}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
request = function()
    local id = patients[math.random(#patients)]
    return wrk.format(nil, "/api/v1/patients/" .. id .. "/analyses/follicle")
end
LUA
} > "$WORK/write.lua"
cat > "$WORK/paced.lua" <<LUA
function delay() return $THINK_MS end
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

RESULTS="$WORK/results.txt"
echo "Each run (round mode route requests/s p50_ms p99_ms errors serve_cpu_s collector_cpu_s peak_rss_mib index_backlog_records spans):"
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        data="$WORK/$mode-$round"
        cp -r "$WORK/template" "$data"
        if [ -n "$DATABASE_URL" ]; then
            psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS ${BASE_DB}_run" \
                -c "CREATE DATABASE ${BASE_DB}_run TEMPLATE $BASE_DB"
            export FERTIVISION_DATABASE__URL="${DATABASE_URL%/*}/${BASE_DB}_run"
        fi
        PIPELINE=
        RUN_BIN=$BIN
        case $mode in peer-*) RUN_BIN=$PEER_BIN ;; esac
        # Settings of this build only: a peer build would refuse a key it does not know.
        extra=()
        case ${mode#peer-} in
            off) enabled=false; ratio=1.0; profiling=false ;;
            on-nice0) enabled=true; ratio=1.0; profiling=false; PIPELINE=$NICE0_PIPELINE
                extra=(FERTIVISION_TELEMETRY__MAX_TRACES_PER_SECOND=0) ;;
            on) enabled=true; ratio=1.0; profiling=false ;;
            floor) ;;
            every) enabled=true; ratio=1.0; profiling=false
                extra=(FERTIVISION_TELEMETRY__MAX_TRACES_PER_SECOND=0) ;;
            sampled) enabled=true; ratio=0.1; profiling=false ;;
            profiling) enabled=true; ratio=1.0; profiling=true ;;
        esac
        if [ "$mode" = floor ]; then
            "$FLOOR_BIN" "127.0.0.1:$API_PORT" 2> "$WORK/serve-$mode.log" &
        else
            env FERTIVISION_TELEMETRY__ENABLED=$enabled FERTIVISION_TELEMETRY__PROFILING=$profiling \
                FERTIVISION_TELEMETRY__TRACE_SAMPLE_RATIO=$ratio ${extra[@]+"${extra[@]}"} \
                RUST_LOG=warn "$RUN_BIN" serve --data-dir "$data" 2> "$WORK/serve-$mode.log" &
        fi
        SERVE=$!
        wait_port "$API_PORT"
        wrk -t2 -c100 -d3s -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:$API_PORT/api/v1/patients/$PATIENT" > /dev/null
        RUN_LOST=0
        for route in $ROUTES; do
            if [ "$mode" = floor ] && [ "$route" = write ]; then continue; fi
            read_url="http://127.0.0.1:$API_PORT/api/v1/patients/$PATIENT"
            case $route in
                read) args=(-H "Authorization: Bearer $TOKEN" "$read_url") ;;
                paced) args=(-s "$WORK/paced.lua" -H "Authorization: Bearer $TOKEN" "$read_url") ;;
                write) args=(-s "$WORK/write.lua" "http://127.0.0.1:$API_PORT") ;;
            esac
            start_collector "$WORK/collector"
            # The app's exporters reconnect on their next batch.
            sleep 1.5
            before=$(cpu_seconds "$SERVE")
            collector_before=$(cpu_seconds "$COLLECTOR")
            wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" > "$WORK/wrk.txt"
            cpu=$(awk -v a="$before" -v b="$(cpu_seconds "$SERVE")" 'BEGIN { printf "%.2f", b - a }')
            collector_cpu=$(awk -v a="$collector_before" -v b="$(cpu_seconds "$COLLECTOR")" 'BEGIN { printf "%.2f", b - a }')
            # What the index sinks had still to read when wrk stopped (they work at the lowest
            # CPU priority and catch up from the log afterwards).
            backlog=$(curl -sf "http://127.0.0.1:$QUERY_PORT/metrics" | awk '/^collector_sink_lag_records\{sink="(logs|spans)"\}/ { s += $2 } END { printf "%d", s }')
            # The app sends what it has queued every telemetry.batch_delay_ms (1 s).
            sleep 1.5
            spans=$(curl -sf "http://127.0.0.1:$QUERY_PORT/metrics" | awk '/^collector_accepted_items_total\{signal="traces"\}/ { s += $2 } END { printf "%d", s }')
            line="$round $mode $route $(summary "$WORK/wrk.txt") $cpu $collector_cpu $(peak_rss_mib "$SERVE") $backlog $spans"
            echo "$line" | tee -a "$RESULTS"
            stop_collector "$WORK/collector"
        done
        kill -TERM "$SERVE"; wait "$SERVE" || true
        LOST=$((LOST + RUN_LOST))
        echo "$round $mode: telemetry lost (counted by the app): $RUN_LOST"
    done
done

echo
echo "Medians over $ROUNDS rounds, ${DURATION} s per run, $CONNECTIONS connections (paced: $THINK_MS ms between a connection's requests):"
echo
echo "| mode | route | requests/s | p50 ms | p99 ms | errors | serve CPU s | requests per serve CPU-s | collector CPU s | peak RSS MiB | index backlog | spans |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for mode in $MODES; do
    for route in $ROUTES; do
        awk -v m="$mode" -v r="$route" -v d="$DURATION" '
            function median(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $2 == m && $3 == r { n++; rps[n] = $4; p50[n] = $5; p99[n] = $6; err[n] = $7; cpu[n] = $8; per[n] = $4 * d / $8; col[n] = $9; rss[n] = $10; lag[n] = $11; spans[n] = $12 }
            END {
                if (n == 0) exit
                printf "| %s | %s | %.0f | %.2f | %.2f | %d | %.2f | %.0f | %.2f | %.1f | %d | %d |\n", m, r, median(rps, n), median(p50, n), median(p99, n), median(err, n), median(cpu, n), median(per, n), median(col, n), median(rss, n), median(lag, n), median(spans, n)
            }' "$RESULTS"
    done
done

# Each mode against the first of MODES in the same round: the machine drifts by more from one
# run to the next than most costs measured here, and a pair shares the drift of its round.
BASE_MODE=${MODES%% *}
echo
echo "Requests/s of each mode over $BASE_MODE's in the same round: median and range of the $ROUNDS pairs:"
echo
echo "| mode | route | median | lowest | highest |"
echo "| --- | --- | ---: | ---: | ---: |"
for mode in $MODES; do
    [ "$mode" = "$BASE_MODE" ] && continue
    for route in $ROUTES; do
        awk -v m="$mode" -v b="$BASE_MODE" -v r="$route" '
            function median(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $3 == r && $2 == b { base[$1] = $4 }
            $3 == r && $2 == m { rps[$1] = $4 }
            END {
                for (round in rps) if (base[round] > 0) ratio[++n] = rps[round] / base[round]
                if (n == 0) exit
                lo = hi = ratio[1]
                for (i = 2; i <= n; i++) { if (ratio[i] < lo) lo = ratio[i]; if (ratio[i] > hi) hi = ratio[i] }
                printf "| %s | %s | %+.1f %% | %+.1f %% | %+.1f %% |\n", m, r, (median(ratio, n) - 1) * 100, (lo - 1) * 100, (hi - 1) * 100
            }' "$RESULTS"
    done
done
echo
echo "telemetry lost on the way to the collector (all modes, counted by the app, as last pushed): $LOST"
