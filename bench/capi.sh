#!/usr/bin/env bash
# pixelgate Conversions API benchmark: events per Graph API request at a steady
# ~2k hits/s spread over 10 pixels, and the pixel's answer latency while the
# (fake) Graph API answers at once, takes 1 s to answer, or is not used at all.
#
#   bench/capi.sh                          # 20 s per mode
#   DURATION=10 SKIP_BUILD=1 bench/capi.sh # reuse target/release/pixelgate
#   PIXELGATE_CAPI_FLUSH_INTERVAL=2s bench/capi.sh   # any server flag, by its env var
#
# Modes, each with a fresh server, data dir and fake Graph API (run in MODES order):
#   A  tokens set for the 10 pixels, the fake Graph API answers at once
#   B  tokens set for the 10 pixels, the fake Graph API answers after 1 s
#      (GRAPH_DELAY) - Meta's slow day; the pixel answers must not notice
#   C  no tokens: nothing is forwarded (the latency baseline of the same run)
#
# Layout (as bench/run.sh): pixelgate pinned to CPU 0; wrk (one thread) and the
# fake Graph API (bench/fake_graph.py, at nice 19: it stands in for a remote
# service) pinned to CPU 1.  wrk is paced by bench/capi.lua's delay(): one
# send slot every 1000/RATE ms, shared by CONNECTIONS connections (20 x ~10 ms
# apart at 2,000/s).
#
# Knobs (environment):
#   DURATION     wrk run length per mode, seconds       (default 20)
#   RATE         target total hits/s                    (default 2000)
#   CONNECTIONS  wrk connections                        (default 20)
#   PIXELS       pixels the hits are spread over        (default 10)
#   GRAPH_DELAY  fake Graph API answer delay in mode B  (default 1)
#   MODES        which modes to run, in order           (default "A B C")
#   SKIP_BUILD   1 = don't run `cargo build --release`  (default 0)
#   KEEP_TMP     1 = keep the scratch directory (logs, metrics, wrk output)
#   PIXELGATE_*  passed to the server as usual (e.g. PIXELGATE_CAPI_MAX_IN_FLIGHT=8)
#
# Output: progress on stderr, the Markdown result table on stdout.
# Exit status: 0 if every check passed; 1 if a check failed (non-2xx answers,
# socket errors, an event not delivered exactly once, a request the fake Graph
# API calls a protocol violation, an unclean exit; the table is still
# printed); 2 on setup failure.
set -euo pipefail

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

DURATION="${DURATION:-20}"
RATE="${RATE:-2000}"
CONNECTIONS="${CONNECTIONS:-20}"
PIXELS="${PIXELS:-10}"
GRAPH_DELAY="${GRAPH_DELAY:-1}"
MODES="${MODES:-A B C}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"

SERVER_CPU=0
CLIENT_CPU=1
PYTHON="${PYTHON:-python3}"
PIXELGATE_BIN="$REPO_ROOT/target/release/pixelgate"
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36'
TOKEN_PREFIX=bench-token-     # pixel P's token is bench-token-P; fake_graph.py checks it
DRAIN_TIMEOUT=60              # seconds to wait for every hit's event to be accounted for

for knob in DURATION RATE CONNECTIONS PIXELS; do
    [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || { echo "error: $knob must be a positive integer" >&2; exit 2; }
done
[[ "$GRAPH_DELAY" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "error: GRAPH_DELAY must be a number of seconds" >&2; exit 2; }
((PIXELS <= 1000)) || { echo "error: PIXELS must be at most 1000" >&2; exit 2; }
for mode in $MODES; do
    [[ "$mode" =~ ^[ABC]$ ]] || { echo "error: unknown mode in MODES: $mode (A, B or C)" >&2; exit 2; }
done
# Each connection's gap between requests, in ms (the pacer's, roughly).
GAP_MS=$(awk -v c="$CONNECTIONS" -v r="$RATE" 'BEGIN { printf "%.1f", c * 1000 / r }')

# --------------------------------------------------------------------------
# Helpers (the shared ones in bench/lib.sh)
# --------------------------------------------------------------------------
BENCH_TAG=capi-bench
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

# prom_sum SELECTOR < exposition -> sum of the series SELECTOR picks (0 if none).
# SELECTOR is a metric name (all its series) or the start of a series,
# e.g. 'pixelgate_capi_events_total{outcome="sent"' (the exporter writes
# labels in the order the code gives them).
prom_sum() {
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 || (index(m, "{") && index($1, m) == 1) { s += $NF }
        END { printf "%.0f\n", s }'
}

# kv FILE KEY -> KEY=value from capi.lua's "capi-bench:" line ("n/a" if absent).
kv() {
    awk -v k="$2" '/^capi-bench:/ { for (i = 2; i <= NF; i++) { split($i, p, "="); if (p[1] == k) { print p[2]; found = 1 } } }
        END { if (!found) print "n/a" }' "$1"
}

# us_to_ms MICROSECONDS -> milliseconds, 2 decimals.
us_to_ms() { awk -v u="$1" 'BEGIN { if (u == "n/a") print "n/a"; else printf "%.2f", u / 1000 }'; }

# json_get FILE EXPR -> a value of the fake Graph API's stats JSON (a Python
# expression over `s`).
json_get() {
    "$PYTHON" -c 'import json, sys; s = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# Pixel ids as bench/capi.lua sends them.
pixel_ids() { seq 1000000001 $((1000000000 + PIXELS)); }

# --------------------------------------------------------------------------
# One mode
# --------------------------------------------------------------------------
ROWS=()
NOTES=()
declare -A P50=() P99=()

note() { NOTES+=("$*"); }
fail() { NOTES+=("**FAILED** $*"); FAILED=1; }

# bench_mode MODE: starts a fake Graph API and a server, loads it, drains,
# stops both, checks the accounts and adds one row.
bench_mode() {
    local mode=$1 dir="$WORK_DIR/$1" delay=0 tokens=1 label
    case $mode in
        A) label="A: Graph answers at once" ;;
        B) label="B: Graph answers in ${GRAPH_DELAY} s"; delay=$GRAPH_DELAY ;;
        C) label="C: no tokens (baseline)"; tokens=0 ;;
    esac
    mkdir -p "$dir/data"
    local gport port mport gpid pid
    gport=$(free_port); port=$(free_port); mport=$(free_port)

    # 1. The fake Graph API (on the client CPU: it stands in for a remote service).
    log "$mode: fake Graph API on 127.0.0.1:$gport, answer delay ${delay}s (CPU $CLIENT_CPU, nice 19)"
    nice -n 19 taskset -c "$CLIENT_CPU" "$PYTHON" "$BENCH_DIR/fake_graph.py" --port "$gport" --delay "$delay" \
        --token-prefix "$TOKEN_PREFIX" >"$dir/fake_graph.out.json" 2>"$dir/fake_graph.log" &
    gpid=$!
    CHILD_PIDS+=("$gpid")
    wait_http "$gpid" "$gport" /stats 20 || { cat "$dir/fake_graph.log" >&2; die "the fake Graph API did not start"; }

    # 2. Tokens, through the owner's CLI (stdin), before the server opens the store.
    if ((tokens)); then
        local p out
        for p in $(pixel_ids); do
            out=$(printf '%s%s\n' "$TOKEN_PREFIX" "$p" | "$PIXELGATE_BIN" tokens set "$p" --data-dir "$dir/data" 2>"$dir/tokens.log") ||
                { cat "$dir/tokens.log" >&2; die "pixelgate tokens set $p failed"; }
            [[ "$out" == *'"set":true'* ]] || die "pixelgate tokens set $p answered: $out"
        done
        log "$mode: tokens set for $PIXELS pixels"
    fi

    # 3. The server.
    log "$mode: pixelgate on 127.0.0.1:$port (metrics :$mport, CPU $SERVER_CPU), --graph-url http://127.0.0.1:$gport"
    taskset -c "$SERVER_CPU" "$PIXELGATE_BIN" serve \
        --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
        --data-dir "$dir/data" --graph-url "http://127.0.0.1:$gport" 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 20 || { tail -n 20 "$dir/stderr.log" >&2; die "pixelgate did not become healthy"; }

    # 4. The load.
    log "$mode: wrk ${DURATION}s, $RATE hits/s over $PIXELS pixels ($CONNECTIONS connections, each ~${GAP_MS} ms apart)"
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH_DIR/capi.lua" \
        -H "User-Agent: $USER_AGENT" "http://127.0.0.1:$port/p.gif" -- "$RATE" "$CONNECTIONS" "$PIXELS" "$mode" \
        >"$dir/wrk.txt" 2>&1 || { cat "$dir/wrk.txt" >&2; die "wrk failed"; }
    sed 's/^/    /' "$dir/wrk.txt" >&2

    # 5. Drain: every hit's event sent, failed or skipped (the last batches leave
    #    by age, then take the Graph API's delay).
    local hits=0 accounted=0 t0=$SECONDS
    while :; do
        http_get "$mport" /metrics >"$dir/metrics.txt"
        hits=$(prom_sum pixelgate_hits_total <"$dir/metrics.txt")
        accounted=$(prom_sum pixelgate_capi_events_total <"$dir/metrics.txt")
        ((hits > 0 && accounted >= hits)) && break
        ((SECONDS - t0 < DRAIN_TIMEOUT)) || { fail "$mode: only $accounted of $hits events accounted for ${DRAIN_TIMEOUT}s after the load"; break; }
        sleep 0.2
    done
    log "$mode: $accounted of $hits events accounted for $((SECONDS - t0))s after the load"
    http_get "$gport" /stats >"$dir/fake_graph.stats.json"

    local rss cpu
    rss=$(peak_rss_mib "$pid")
    cpu=$(proc_cpu "$pid")

    # 6. Shut down: the server first (it must exit 0), then the fake.
    log "$mode: SIGTERM pixelgate"
    stop_pid "$pid" TERM 30
    [[ "$STOP_RC" == 0 ]] || { tail -n 20 "$dir/stderr.log" | sed 's/^/    /' >&2; fail "$mode: pixelgate exit status after SIGTERM: $STOP_RC (expected 0)"; }
    stop_pid "$gpid" TERM 10
    [[ "$STOP_RC" == 0 ]] || fail "$mode: fake Graph API exit status after SIGTERM: $STOP_RC (expected 0)"
    if [[ ! -s "$dir/fake_graph.stats.json" ]]; then
        # /stats did not answer: fall back on the JSON it prints at exit.
        cp "$dir/fake_graph.out.json" "$dir/fake_graph.stats.json"
    fi
    [[ -s "$dir/fake_graph.stats.json" ]] || die "$mode: no statistics from the fake Graph API"

    # 7. Accounts.
    local w="$dir/wrk.txt" m="$dir/metrics.txt" s="$dir/fake_graph.stats.json"
    local rps requests errors non2xx sent failed skipped g_req g_ev g_uniq g_dup g_viol epr epr_min epr_max ok_req h_sum h_count
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$w")
    requests=$(kv "$w" requests); errors=$(kv "$w" errors); non2xx=$(kv "$w" non2xx)
    sent=$(prom_sum 'pixelgate_capi_events_total{outcome="sent"' <"$m")
    failed=$(prom_sum 'pixelgate_capi_events_total{outcome="failed"' <"$m")
    skipped=$(prom_sum 'pixelgate_capi_events_total{outcome="skipped"' <"$m")
    ok_req=$(prom_sum 'pixelgate_capi_requests_total{result="ok"' <"$m")
    h_sum=$(prom_sum pixelgate_capi_batch_events_sum <"$m")
    h_count=$(prom_sum pixelgate_capi_batch_events_count <"$m")
    g_req=$(json_get "$s" 's["requests"]'); g_ev=$(json_get "$s" 's["events"]')
    g_uniq=$(json_get "$s" 's["unique_events"]'); g_dup=$(json_get "$s" 's["duplicates"]')
    g_viol=$(json_get "$s" 's["violations"]')
    epr=$(json_get "$s" 's["events_per_request"]["mean"]')
    epr_min=$(json_get "$s" 's["events_per_request"]["min"]'); epr_max=$(json_get "$s" 's["events_per_request"]["max"]')

    [[ "$errors" == 0 && "$non2xx" == 0 ]] || fail "$mode: wrk saw $non2xx non-2xx answers and $errors socket errors"
    # wrk stops counting at its deadline: the requests then in flight (at most
    # one per connection) were answered and counted by the server only.
    if [[ "$requests" == n/a ]] || ((hits < requests || hits > requests + CONNECTIONS)); then
        fail "$mode: pixelgate_hits_total $hits vs wrk's $requests answered (allowed: up to +$CONNECTIONS in flight)"
    fi
    note "$mode: $hits hits; CAPI events sent $sent, failed $failed, skipped $skipped; Graph requests by result ok: $ok_req, all: $(prom_sum pixelgate_capi_requests_total <"$m")$(awk '/^pixelgate_capi_requests_total\{/ && !/result="ok"/ { match($0, /result="[^"]*"/); printf " (%s %s)", substr($0, RSTART + 8, RLENGTH - 9), $NF }' "$m")"
    note "$mode: pixelgate's own histogram: $h_sum events in $h_count requests = $(awk -v s="$h_sum" -v c="$h_count" 'BEGIN { printf "%.1f", (c > 0 ? s / c : 0) }') events per request; fake Graph API: $g_req requests, $g_ev events, $g_uniq distinct event_ids over $(json_get "$s" 's["pixels"]') pixels, at most $(json_get "$s" 's["max_in_flight"]') requests in flight"
    note "$mode: server CPU $cpu s for $hits hits ($(awk -v c="$cpu" -v h="$hits" 'BEGIN { printf "%.1f", (h > 0 ? c * 1e6 / h : 0) }') µs per hit, forwarding included)"
    ((g_viol == 0)) || fail "$mode: the fake Graph API counted $g_viol protocol violations: $(json_get "$s" 's["violation_kinds"]')"
    if ((tokens)); then
        ((sent == hits && failed == 0 && skipped == 0)) || fail "$mode: of $hits hits, $sent events sent, $failed failed, $skipped skipped (expected all sent)"
        ((g_uniq == hits && g_dup == 0)) || fail "$mode: the fake Graph API got $g_uniq distinct events ($g_dup duplicates) for $hits hits"
        ((g_req == ok_req && g_req == h_count)) || fail "$mode: Graph requests: fake counted $g_req, pixelgate $ok_req ok / $h_count in its histogram"
    else
        ((g_req == 0 && sent == 0 && skipped == hits)) || fail "$mode: without tokens, $g_req Graph requests and $sent events sent ($skipped of $hits skipped; expected none sent)"
        epr="—"; epr_min=""; epr_max=""
    fi

    local p50 p99 max epr_cell="$epr"
    p50=$(us_to_ms "$(kv "$w" p50_us)"); p99=$(us_to_ms "$(kv "$w" p99_us)"); max=$(us_to_ms "$(kv "$w" max_us)")
    [[ -n "$epr_min" ]] && epr_cell="$epr ($epr_min–$epr_max)"
    P50[$mode]=$p50; P99[$mode]=$p99
    ROWS+=("| $label | $rps | $p50 | $p99 | $max | $g_req | $g_ev | $epr_cell | $sent | $rss |")
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v taskset >/dev/null || die "taskset (util-linux) not found"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
# The interpreter itself, not a wrapper (a pyenv shim does not always exec):
# the PID we start must be the one that gets SIGTERM.
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)') || die "$PYTHON does not run"
(($(nproc) >= 2)) || die "need at least 2 CPUs (server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU)"

if [[ "$SKIP_BUILD" != 1 ]]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release)
fi
[[ -x "$PIXELGATE_BIN" ]] || die "$PIXELGATE_BIN not found (build it or unset SKIP_BUILD)"

for mode in $MODES; do
    bench_mode "$mode"
done

echo
echo "## pixelgate Conversions API benchmark"
echo
echo "$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); pixelgate on CPU $SERVER_CPU," \
    "wrk and the fake Graph API on CPU $CLIENT_CPU; wrk -t1 -c$CONNECTIONS paced to $RATE hits/s" \
    "(each connection ~${GAP_MS} ms apart) over $PIXELS pixels, ${DURATION}s per mode; $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }')."
echo "Pixel latency is wrk's (request sent to answer read); events per request are the fake Graph API's count (mean, min–max)."
echo
echo "| mode | req/s | p50 ms | p99 ms | max ms | Graph requests | events | events/request | CAPI events sent | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
if [[ -n "${P50[C]:-}" ]]; then
    echo
    for mode in A B; do
        [[ -n "${P50[$mode]:-}" ]] || continue
        awk -v m="$mode" -v a="${P50[$mode]}" -v b="${P50[C]}" -v c="${P99[$mode]}" -v d="${P99[C]}" \
            'BEGIN { printf "mode %s vs C (no forwarding): p50 %+.2f ms (x%.2f), p99 %+.2f ms (x%.2f)\n", m, a - b, (b > 0 ? a / b : 0), c - d, (d > 0 ? c / d : 0) }'
    done
fi
echo
printf -- '- %s\n' "${NOTES[@]}"
((FAILED == 0)) || { echo; echo "**Some checks FAILED** (see notes above)."; exit 1; }
