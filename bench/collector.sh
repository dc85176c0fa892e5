#!/usr/bin/env bash
# Collector throughput and memory, as BENCHMARKS.md records them.
#
#   bench/collector.sh            # after: cargo build --release -p fertivision --bin fertivision
#                                 #        cargo build --release -p telemetry --example otlp_null_receiver
#
# For spans and for log records: `fertivision loadgen` sends OTLP/gRPC as fast as the
# receiver accepts (512 items a request, 8 requests in flight) for $DURATION seconds to
#   1. the collector, OTLP/gRPC -> write-ahead log -> blackhole sink, fsync on;
#   2. the same with fsync off;
#   3. the peer: otlp_null_receiver (the same tonic OTLP services, decode and drop);
# then paces 20,000 items/s into the collector (fsync on) and reads its peak RSS.
#
# "Per core" is items divided by the CPU seconds (user + system, /proc/PID/stat) the receiver
# used from the first request until its sink had taken everything: the load generator runs on
# the same machine and its CPU is not counted. Wall rate is acknowledged items per second.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/fertivision}
PEER=${PEER:-target/release/examples/otlp_null_receiver}
DURATION=${DURATION:-15}
GRPC_PORT=${GRPC_PORT:-14317}
QUERY_PORT=${QUERY_PORT:-17070}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fv-bench.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
TICKS=$(getconf CLK_TCK)

for exe in "$BIN" "$PEER"; do
    [ -x "$exe" ] || { echo "missing $exe: build it first (see the top of this script)" >&2; exit 1; }
done

cpu_seconds() { awk -v t="$TICKS" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
metric() {
    curl -sf "http://127.0.0.1:$QUERY_PORT/metrics" | awk -v s="$1" '$1 == s { print $2; exit }'
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; exit 1
}

start_collector() { # fsync
    local data="$WORK/data-$RANDOM"
    mkdir -p "$data"
    cat > "$data/pipeline.toml" <<TOML
[sources.otlp]
type = "otlp_grpc"
address = "127.0.0.1:$GRPC_PORT"

[sinks.blackhole]
type = "blackhole"
inputs = ["otlp"]
TOML
    FERTIVISION_COLLECTOR__PIPELINE="$data/pipeline.toml" \
    FERTIVISION_COLLECTOR__QUERY_LISTEN="127.0.0.1:$QUERY_PORT" \
    FERTIVISION_COLLECTOR__FSYNC="$1" \
    RUST_LOG=warn "$BIN" collector --data-dir "$data" 2>>"$WORK/collector.log" &
    PID=$!
    wait_port "$QUERY_PORT"
    wait_port "$GRPC_PORT"
}

stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

loadgen() { # signal [rate]
    "$BIN" loadgen --protocol grpc --signal "$1" --endpoint "http://127.0.0.1:$GRPC_PORT" \
        --duration "$DURATION" --batch-size 512 --concurrency 8 ${2:+--rate "$2"} 2>/dev/null
}

# Prints: acknowledged items, wall rate.
summary() { awk '/^sent / { for (i = 1; i < NF; i++) { if ($i == "acknowledged" && a == "") a = $(i + 1); if ($i == "=") r = $(i + 1) } } END { print a, r }'; }

echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(free -g | awk '/Mem:/ { print $2 }') GiB; data on $(df -h "$WORK" | awk 'NR == 2 { print $1 }')"
echo "duration ${DURATION}s per run; 512 items per request, 8 in flight"
echo
echo "| receiver | signal | fsync | acknowledged | wall items/s | CPU s | items per CPU-second | peak RSS MiB |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"

for signal in traces logs; do
    for fsync in true false; do
        start_collector "$fsync"
        before=$(cpu_seconds "$PID")
        read -r acked rate < <(loadgen "$signal" | summary)
        # Until the blackhole has taken everything the log accepted.
        for _ in $(seq 1 600); do
            taken=$(metric 'collector_sink_items_total{sink="blackhole"}')
            [ "${taken:-0}" -ge "$acked" ] && break
            sleep 0.1
        done
        after=$(cpu_seconds "$PID")
        rss=$(peak_rss_mib "$PID")
        stop "$PID"
        cpu=$(echo "$after - $before" | bc -l)
        echo "| collector (log -> blackhole) | $signal | $fsync | $acked | $rate | $(printf %.2f "$cpu") | $(printf %.0f "$(echo "$acked / $cpu" | bc -l)") | $rss |"
    done
    "$PEER" "127.0.0.1:$GRPC_PORT" 2>>"$WORK/peer.log" &
    PID=$!
    wait_port "$GRPC_PORT"
    before=$(cpu_seconds "$PID")
    read -r acked rate < <(loadgen "$signal" | summary)
    after=$(cpu_seconds "$PID")
    rss=$(peak_rss_mib "$PID")
    stop "$PID"
    cpu=$(echo "$after - $before" | bc -l)
    echo "| peer: otlp_null_receiver (decode, drop) | $signal | - | $acked | $rate | $(printf %.2f "$cpu") | $(printf %.0f "$(echo "$acked / $cpu" | bc -l)") | $rss |"
done

echo
echo "| paced load into the collector (fsync on) | acknowledged | wall items/s | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: |"
for signal in traces logs; do
    start_collector true
    read -r acked rate < <(loadgen "$signal" 20000 | summary)
    rss=$(peak_rss_mib "$PID")
    stop "$PID"
    echo "| $signal at 20,000/s | $acked | $rate | $rss |"
done
