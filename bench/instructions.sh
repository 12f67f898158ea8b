#!/usr/bin/env bash
# Instructions per pixel hit under callgrind: a count that, unlike requests per second, does not
# move with what else the shared host is doing, so two builds can be compared to the percent.
#
#   bench/instructions.sh                            # this build (target/release/pixelgate)
#   BINARIES="/tmp/old/pixelgate target/release/pixelgate" bench/instructions.sh
#   REGISTER=1 bench/instructions.sh                 # what the registry adds: each binary twice,
#                                                    # the hit's pixel unregistered, then registered
#                                                    # to an account with allowed domains
#   FORWARD=1 bench/instructions.sh                  # what forwarding adds: each binary twice
#                                                    # under the same paced load, without and with
#                                                    # tokens (to bench/fake_graph_fast.rs)
#
# Each binary serves the file sink under valgrind --tool=callgrind with collection off; after a
# warm-up, collection is switched on for DURATION seconds of wrk load, then off, and the
# instructions counted are divided by the hits answered in that window (pixelgate_hits_total,
# scraped outside it). Every thread is counted: the answer, the intake's shaping and the sink's
# writes, and the forwarder's batching, encoding and sending.
#
# Without FORWARD the load is one fixed hit, unpaced. With FORWARD=1 it is bench/capi.lua's at
# RATE hits/s (default 2,000: valgrind runs the threads one at a time, so an unpaced load would
# outrun the forwarder and measure shedding) for PIXELS pixels (default 1, so that requests carry
# full batches of 1,000 events, as in bench/capi.sh's 20,000 hits/s over 10 pixels), a unique
# event_id each; the run fails if a hit was shed or not delivered.
#
# Knobs: DURATION (default 10 s), CONNECTIONS (default 8), BINARIES (default this build's),
# FORWARD (default 0), REGISTER (default 0), RATE (default 2000), PIXELS (default 1), KEEP_TMP (1 = keep the scratch directory and its
# callgrind.out files).
# Output: one Markdown table on stdout, progress on stderr.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
BINARIES="${BINARIES:-$REPO_ROOT/target/release/pixelgate}"
FORWARD="${FORWARD:-0}"
REGISTER="${REGISTER:-0}"
RATE="${RATE:-2000}"
PIXELS="${PIXELS:-1}"
KEEP_TMP="${KEEP_TMP:-0}"
FAKE_BIN="$REPO_ROOT/target/release/examples/fake_graph_fast"
PIXEL_PATH='/p.gif?pixel_id=1234567890&event=Purchase&event_id=e1&evat_value=19.99&evat_currency=USD&usat_em=jane.doe%40example.com&usat_ph=%2B1%20650%20555%201212&url=https%3A%2F%2Fshop.example.com%2Fcheckout%3Ffbclid%3DAbC123'
TOKEN_PREFIX=bench-token-
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36'

BENCH_TAG=instructions
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
for tool in valgrind callgrind_control wrk taskset; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install valgrind wrk util-linux)"
done


metric_sum() {
    http_get "$1" /metrics | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'
}

# load PORT DURATION OUT: the load of this mode.
load() {
    if [[ "$FORWARD" == 1 ]]; then
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$2" -H "User-Agent: $USER_AGENT" -s "$BENCH_DIR/capi.lua" \
            "http://127.0.0.1:$1" -- "$RATE" "$CONNECTIONS" "$PIXELS" "i$RANDOM" >"$3"
    else
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$2" -H "User-Agent: $USER_AGENT" "http://127.0.0.1:${1}${PIXEL_PATH}" >"$3"
    fi
}

# measure BINARY TOKENS(none|all) [registered]: prints one table row.
measure() {
    local bin=$1 tokens=$2 registered=${3:-no} dir port mport gport pid before after total n sent shed
    dir="$WORK_DIR/$(basename "$bin")-$tokens-$RANDOM"
    mkdir -p "$dir/data"
    port=$(free_port); mport=$(free_port); gport=$(free_port)
    if [[ "$FORWARD" == 1 ]]; then
        [[ -x "$FAKE_BIN" ]] || die "$FAKE_BIN not found (cargo build --release --example fake_graph_fast)"
        taskset -c 1 "$FAKE_BIN" --port "$gport" --token-prefix "$TOKEN_PREFIX" >/dev/null 2>"$dir/fake.log" &
        CHILD_PIDS+=("$!")
        if [[ "$tokens" == all ]]; then
            for p in $(seq 1000000001 $((1000000000 + PIXELS))); do
                printf '%s%s\n' "$TOKEN_PREFIX" "$p" | "$bin" tokens set "$p" --data-dir "$dir/data" >/dev/null
            done
        fi
    fi
    if [[ "$registered" == registered ]]; then
        echo '{"name":"Bench shop","account_id":"acc_bench"}' | "$bin" accounts create --data-dir "$dir/data" >/dev/null
        echo '{"account_id":"acc_bench","allowed_domains":["example.com","example.org"]}' | "$bin" pixels put 1234567890 --data-dir "$dir/data" >/dev/null
    fi
    log "$bin ($tokens tokens, pixel $registered): starting under callgrind on 127.0.0.1:$port"
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
        "$bin" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --data-dir "$dir/data" \
        --graph-url "http://127.0.0.1:$gport" 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 120 || { tail -n 20 "$dir/stderr.log" >&2; die "$bin did not become healthy"; }
    load "$port" 2s /dev/null
    sleep 2
    before=$(metric_sum "$mport" pixelgate_hits_total)
    callgrind_control -i on "$pid" >/dev/null
    load "$port" "${DURATION}s" "$dir/wrk.txt"
    # The intake shapes and the sink writes what was answered (and the forwarder sends its last
    # batches, which leave by age): let them finish inside the window.
    sleep 3
    callgrind_control -i off "$pid" >/dev/null
    after=$(metric_sum "$mport" pixelgate_hits_total)
    sent=$(metric_sum "$mport" 'pixelgate_capi_events_total{outcome="sent"')
    shed=$(metric_sum "$mport" 'pixelgate_capi_events_total{outcome="shed"')
    callgrind_control -d "$pid" >/dev/null
    stop_pid "$pid" TERM 60
    total=$(cat "$dir"/callgrind.out* | awk '/^totals:/ { s += $2 } END { print s + 0 }')
    n=$((after - before))
    ((n > 0)) || die "$bin: no hits in the measured window"
    if [[ "$FORWARD" == 1 && "$tokens" == all ]]; then
        ((shed == 0)) || die "$bin: $shed hits shed (lower RATE)"
        ((sent == after)) || die "$bin: $sent of $after hits delivered"
    fi
    printf '| %s | %s | %s | %d | %s |\n' "$bin" "$tokens" "$registered" "$n" "$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }')"
}

echo "| binary | tokens | pixel registered | hits measured | instructions per hit |"
echo "|---|---|---|---:|---:|"
for bin in $BINARIES; do
    [[ -x "$bin" ]] || die "$bin is not an executable"
    if [[ "$FORWARD" == 1 ]]; then
        measure "$bin" none
        measure "$bin" all
    elif [[ "$REGISTER" == 1 ]]; then
        measure "$bin" none no
        measure "$bin" none registered
    else
        measure "$bin" none
    fi
done
