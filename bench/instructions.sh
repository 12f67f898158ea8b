#!/usr/bin/env bash
# Instructions per pixel hit under callgrind: a count that, unlike requests per second, does not
# move with what else the shared host is doing, so two builds can be compared to the percent.
#
#   bench/instructions.sh                            # this build (target/release/pixelgate)
#   BINARIES="/tmp/old/pixelgate target/release/pixelgate" bench/instructions.sh
#   FORWARD=1 bench/instructions.sh                  # the hits' pixel has a token: every hit is
#                                                    # also forwarded (to bench/fake_graph_fast.rs)
#
# Each binary serves the file sink under valgrind --tool=callgrind with collection off; after a
# warm-up, collection is switched on for DURATION seconds of wrk load, then off, and the
# instructions counted are divided by the hits answered in that window (pixelgate_hits_total,
# scraped outside it). Every thread is counted: the answer, the intake's shaping and the sink's
# writes.
#
# Knobs: DURATION (default 10 s), CONNECTIONS (default 8), BINARIES (default this build's),
# FORWARD (default 0).
# Output: one Markdown table on stdout, progress on stderr.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
BINARIES="${BINARIES:-$REPO_ROOT/target/release/pixelgate}"
FORWARD="${FORWARD:-0}"
FAKE_BIN="$REPO_ROOT/target/release/examples/fake_graph_fast"
PIXEL_PATH='/p.gif?pixel_id=1234567890&event=Purchase&event_id=e1&evat_value=19.99&evat_currency=USD&usat_em=jane.doe%40example.com&usat_ph=%2B1%20650%20555%201212&url=https%3A%2F%2Fshop.example.com%2Fcheckout%3Ffbclid%3DAbC123'
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36'

BENCH_TAG=instructions
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
for tool in valgrind callgrind_control wrk taskset; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install valgrind wrk util-linux)"
done

hits() {
    http_get "$1" /metrics | awk '/^pixelgate_hits_total/ { s += $NF } END { print s + 0 }'
}

echo "| binary | hits measured | instructions per hit |"
echo "|---|---:|---:|"
for bin in $BINARIES; do
    [[ -x "$bin" ]] || die "$bin is not an executable"
    dir="$WORK_DIR/$(echo "$bin" | tr '/' '_')$RANDOM"
    mkdir -p "$dir/data"
    port=$(free_port); mport=$(free_port); gport=$(free_port)
    if [[ "$FORWARD" == 1 ]]; then
        [[ -x "$FAKE_BIN" ]] || die "$FAKE_BIN not found (cargo build --release --example fake_graph_fast)"
        taskset -c 1 "$FAKE_BIN" --port "$gport" --token-prefix bench-token- >/dev/null 2>"$dir/fake.log" &
        CHILD_PIDS+=("$!")
        printf 'bench-token-1234567890\n' | "$bin" tokens set 1234567890 --data-dir "$dir/data" >/dev/null
    fi
    log "$bin: starting under callgrind on 127.0.0.1:$port"
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
        "$bin" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --data-dir "$dir/data" \
        --graph-url "http://127.0.0.1:$gport" 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 120 || { tail -n 20 "$dir/stderr.log" >&2; die "$bin did not become healthy"; }
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -H "User-Agent: $USER_AGENT" "http://127.0.0.1:${port}${PIXEL_PATH}" >/dev/null
    before=$(hits "$mport")
    callgrind_control -i on "$pid" >/dev/null
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "User-Agent: $USER_AGENT" "http://127.0.0.1:${port}${PIXEL_PATH}" >"$dir/wrk.txt"
    # The intake shapes and the sink writes what was answered (and the forwarder sends its last
    # batches, which leave by age): let them finish inside the window.
    sleep 2
    callgrind_control -i off "$pid" >/dev/null
    after=$(hits "$mport")
    callgrind_control -d "$pid" >/dev/null
    stop_pid "$pid" TERM 60
    total=$(cat "$dir"/callgrind.out* | awk '/^totals:/ { s += $2 } END { print s + 0 }')
    n=$((after - before))
    ((n > 0)) || die "$bin: no hits in the measured window"
    printf '| %s | %d | %s |\n' "$bin" "$n" "$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }')"
done
