#!/usr/bin/env bash
# pixelgate benchmark: pixelgate (file sink), pixelgate with the Firehose sink
# (the real AWS SDK against moto, a local emulator) and nginx `empty_gif`, one
# after the other, on the same machine, over loopback.
#
#   bench/run.sh                      # 10 s measured run per server
#   DURATION=5 CONNECTIONS=128 bench/run.sh
#   SKIP_BUILD=1 bench/run.sh         # use the existing target/release/pixelgate
#
# Layout: each server is pinned to CPU 0 and the load generator (wrk, one
# thread) to CPU 1, so the numbers are "what one core of server buys you".
# Each server gets a 2 s warm-up run, then the measured run; only the
# measured run's throughput/latency is reported, but every request answered
# in either run must show up as exactly one record (pixelgate: NDJSON lines,
# nginx: access-log lines).
#
# Knobs (environment):
#   DURATION     measured run length in seconds          (default 10)
#   CONNECTIONS  wrk connections                         (default 64)
#   WARMUP       warm-up run length in seconds           (default 2)
#   SKIP_BUILD   1 = don't run `cargo build --release`   (default 0)
#   KEEP_TMP     1 = keep the scratch directory (logs, data, wrk output)
#   SERVERS      which servers to run, in order
#                (default "pixelgate pixelgate_registered pixelgate_firehose nginx")
#                pixelgate_registered - pixelgate with the hit's pixel registered to an
#                account with allowed domains (settings read per hit from the cache)
#                also: hyper_bare - hyper answering the GIF with no pixel work
#                (bench/bare_gif.rs), the HTTP stack's own ceiling;
#                pixelgate_before - another build of pixelgate (BEFORE_BIN), run exactly as
#                `pixelgate` is, to compare two commits in one run
#   BEFORE_BIN   the binary pixelgate_before runs (e.g. a release build of the previous commit)
#   STEADY       seconds of the steady 2k hits/s run of pixelgate_firehose (default 10)
#   ROUNDS       run the SERVERS list this many times, interleaved     (default 1)
#                Shared hosts change speed by tens of percent within minutes; with
#                ROUNDS > 1 each round's ratios are printed and their median is the
#                figure to quote.
#   ROTATE       1 = round r runs SERVERS starting from its r-th entry      (default 1)
#                (the host's slow patches recur: seen falling on the same slot of
#                consecutive rounds); 0 = the same order every round
#
# Output: progress on stderr, the Markdown result table on stdout.
# Exit status: 0 if every check passed, 1 if a server answered requests with
# non-2xx statuses, lost/duplicated records or exited uncleanly (the table is
# still printed), other non-zero on setup failure.
set -euo pipefail

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
WARMUP="${WARMUP:-2}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"
SERVERS="${SERVERS:-pixelgate pixelgate_registered pixelgate_firehose nginx}"
STEADY="${STEADY:-10}"
ROUNDS="${ROUNDS:-1}"
ROTATE="${ROTATE:-1}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS must be a positive integer, got '$ROUNDS'" >&2; exit 2; }

SERVER_CPU=0
CLIENT_CPU=1

# A realistic pixel hit: Meta-style Purchase event with custom data and
# (percent-encoded) user data.
PIXEL_PATH='/p.gif?pixel_id=1234567890&event=Purchase&event_id=e1&evat_value=19.99&evat_currency=USD&usat_em=jane.doe%40example.com&usat_ph=%2B1%20650%20555%201212&url=https%3A%2F%2Fshop.example.com%2Fcheckout%3Ffbclid%3DAbC123'
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36'

PIXELGATE_BIN="$REPO_ROOT/target/release/pixelgate"
BARE_BIN="$REPO_ROOT/target/release/examples/bare_gif"

for server in $SERVERS; do
    [[ "$server" =~ ^(pixelgate|pixelgate_before|pixelgate_firehose|pixelgate_registered|nginx|hyper_bare)$ ]] || { echo "error: unknown server in SERVERS: $server" >&2; exit 2; }
done
if [[ " $SERVERS " == *" pixelgate_before "* ]]; then
    [[ -x "${BEFORE_BIN:-}" ]] || { echo "error: pixelgate_before needs BEFORE_BIN, an executable pixelgate binary" >&2; exit 2; }
fi
for knob in DURATION CONNECTIONS WARMUP STEADY; do
    [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || { echo "error: $knob must be a positive integer" >&2; exit 2; }
done

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
BENCH_TAG=bench
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

# prom_sum METRIC < exposition -> sum of all series of METRIC ("n/a" if none).
prom_sum() {
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF; n++ }
        END { if (n) printf "%.0f\n", s; else print "n/a" }'
}

# sigterm_pixelgate NAME PID DIR -> SIGTERM, wait for the flush and exit (30 s
# at most); a non-zero exit is a failed check, with DIR/stderr.log's tail.
sigterm_pixelgate() {
    local name=$1 pid=$2 dir=$3
    log "$name: SIGTERM, waiting for it to flush and exit"
    stop_pid "$pid" TERM 30
    if [[ "$STOP_RC" != 0 ]]; then
        NOTES+=("$name: exit status after SIGTERM: $STOP_RC (expected 0); last stderr lines printed above")
        tail -n 20 "$dir/stderr.log" | sed 's/^/    /' >&2
        FAILED=1
    fi
}

# CPU seconds used so far by each thread of PID, e.g. "main 0.01s, worker 3.12s".
thread_cpu() {
    local hz t stat rest f
    hz=$(getconf CLK_TCK)
    for t in /proc/"$1"/task/*; do
        { read -r stat <"$t/stat"; } 2>/dev/null || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"   # f[11], f[12] = utime, stime (fields 14, 15)
        printf '%s %.2fs\n' "$(<"$t/comm")" "$(((f[11] + f[12]) * 100 / hz))e-2"
    done | paste -sd, - | sed 's/,/, /g'
}

# Direct children of PID (uses /proc only; no procps needed).
child_pids() {
    local parent=$1 f stat rest
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        rest=${stat##*) }           # fields after "(comm) "
        read -r _ ppid _ <<<"$rest"
        if [[ "$ppid" == "$parent" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
    done
}

# run_wrk PORT OUTFILE SECONDS -> runs wrk pinned to CLIENT_CPU and keeps its
# full output in OUTFILE.
run_wrk() {
    local port=$1 out=$2 secs=$3
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency \
        -H "User-Agent: $USER_AGENT" \
        "http://127.0.0.1:${port}${PIXEL_PATH}" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed"; }
}

# wrk_field FILE FIELD -> one number from wrk --latency output.
#   rps       Requests/sec
#   requests  "N requests in"
#   p50, p99  latency percentiles, converted to ms
#   non2xx    "Non-2xx or 3xx responses" (wrk counts status >= 400; 0 if absent)
#   sockerr   sum of the "Socket errors" counters (0 if absent)
wrk_field() {
    awk -v want="$2" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/)  return v * 60000
            if (v ~ /s$/)  return v * 1000
            return v + 0
        }
        /^Requests\/sec:/                 { r["rps"] = $2 }
        / requests in /                   { r["requests"] = $1 }
        /^ *50(\.0+)?% /                  { r["p50"] = sprintf("%.3f", ms($2)) }
        /^ *99(\.0+)?% /                  { r["p99"] = sprintf("%.3f", ms($2)) }
        /Non-2xx or 3xx responses:/       { r["non2xx"] = $NF }
        /Socket errors:/ {
            s = 0; line = $0; sub(/.*Socket errors:/, "", line)
            n = split(line, parts, ",")
            for (i = 1; i <= n; i++) { split(parts[i], kv, " "); s += kv[2] }
            r["sockerr"] = s
        }
        END {
            if (want in r) print r[want]
            else if (want == "non2xx" || want == "sockerr") print 0
            else print "n/a"
        }' "$1"
}

# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------
ROWS=()                 # Markdown table rows, in run order
NOTES=()                # free-form lines printed under the table
declare -A RPS=()       # server name -> measured req/s of the current round (for the ratios)
declare -A USER_US=()   # server name -> user CPU µs per request of the current round
RATIOS=()               # "round N: ..." lines, one per round (ROUNDS > 1)
PG_NGINX=()             # pixelgate / nginx of each round
REG_NGINX=()            # pixelgate_registered / nginx of each round
ROUND=1
RUN_DIR="$WORK_DIR"     # scratch directory of the current round

# add_row NAME RPS P50 P99 RSS -> one table row; the records column comes
# from the last compare_records call.
add_row() {
    local label=$1
    ((ROUNDS == 1)) || label="$1 (round $ROUND)"
    ROWS+=("| $label | $(printf '%.0f' "$2") | $3 ms | $4 ms | $CPU_CELL | $5 | $RECORDS_CELL |")
    RPS[$1]=$2
    USER_US[$1]=${CPU_CELL%% *}
}

# load_and_check NAME PORT PID -> warm-up + measured wrk runs against PORT,
# served by process PID. Sets ANSWERED (requests completed in both runs),
# W_MEASURED (path of the measured run's wrk output) and CPU_CELL (the
# server's user + kernel CPU per request in the measured run); records failed
# checks.
load_and_check() {
    local name=$1 port=$2 pid=$3 warm="$RUN_DIR/$1.wrk-warmup.txt" meas="$RUN_DIR/$1.wrk.txt" f before after
    log "$name: warm-up ${WARMUP}s"
    run_wrk "$port" "$warm" "$WARMUP"
    log "$name: measured run ${DURATION}s, $CONNECTIONS connections"
    before=$(proc_ticks "$pid")
    run_wrk "$port" "$meas" "$DURATION"
    after=$(proc_ticks "$pid")
    # Per request: the host's noise lands mostly in kernel time (loopback), so the user column is
    # the steadier one to compare across servers.
    CPU_CELL=$(awk -v b="$before" -v a="$after" -v n="$(wrk_field "$meas" requests)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(b, x, " "); split(a, y, " "); u = (y[1] - x[1]) / hz * 1e6 / n; k = (y[2] - x[2]) / hz * 1e6 / n
        printf "%.2f + %.2f", u, k }')
    sed 's/^/    /' "$meas" >&2
    ANSWERED=$(( $(wrk_field "$warm" requests) + $(wrk_field "$meas" requests) ))
    W_MEASURED=$meas
    local non2xx=0 sockerr=0
    for f in "$warm" "$meas"; do
        non2xx=$((non2xx + $(wrk_field "$f" non2xx)))
        sockerr=$((sockerr + $(wrk_field "$f" sockerr)))
        [[ "$(wrk_field "$f" sockerr)" == 0 ]] || log "$name: $(basename "$f"): $(grep 'Socket errors' "$f" | xargs)"
    done
    NOTES+=("$name: wrk saw $non2xx responses with status >= 400 and $sockerr socket errors (warm-up + measured)")
    ((non2xx == 0)) || FAILED=1
}

# compare_records NAME RECORDS ANSWERED -> checks that every answered
# request left exactly one record; sets RECORDS_CELL and adds a note.
#
# "Answered" is what wrk counted as completed.  When wrk's timer fires it
# stops reading, so the requests still in flight at that moment (at most one
# per connection per run, i.e. 2 x CONNECTIONS in total) were answered and
# logged by the server without being counted by wrk.  nginx shows exactly
# that: records = answered + (2 x CONNECTIONS or a few less).  So the check is
#   0 <= records - answered <= 2 x CONNECTIONS
# and anything else (fewer records than answered requests, or more than the
# in-flight slack) is a failure.
compare_records() {
    local name=$1 records=$2 answered=$3 diff slack=$((2 * CONNECTIONS))
    diff=$((records - answered))
    if ((diff == 0)); then
        RECORDS_CELL="$records/$answered"
        NOTES+=("$name: records $records = answered $answered: match")
    elif ((diff > 0 && diff <= slack)); then
        RECORDS_CELL="$records/$answered (+$diff in flight)"
        NOTES+=("$name: records $records vs answered $answered: match; the $diff extra records are requests in flight when wrk stopped (allowed: up to $slack)")
    else
        RECORDS_CELL="$records/$answered **MISMATCH**"
        NOTES+=("$name: records $records vs answered $answered: MISMATCH (difference $diff; allowed 0..$slack for requests in flight when wrk stopped)")
        FAILED=1
    fi
}

# --------------------------------------------------------------------------
# Servers.  Each bench_* function starts its server pinned to SERVER_CPU,
# loads it, stops it, checks its records and calls add_row exactly once.
# --------------------------------------------------------------------------

# pixelgate with the local NDJSON sink: this build, or BEFORE_BIN's.
bench_pixelgate() { bench_pixelgate_file pixelgate "$PIXELGATE_BIN"; }
bench_pixelgate_before() { bench_pixelgate_file pixelgate_before "$BEFORE_BIN"; }
# The same, with the hit's pixel registered to an account with allowed domains (the page in
# PIXEL_PATH is on one of them): every hit reads the pixel's settings from the in-process cache,
# checks its page and carries the account_id.
bench_pixelgate_registered() { bench_pixelgate_file pixelgate_registered "$PIXELGATE_BIN" register; }

# bench_pixelgate_file NAME BINARY [register]
bench_pixelgate_file() {
    local name=$1 bin=$2 register=${3:-} dir="$RUN_DIR/$1" port mport pid rss records hits dropped cpu
    mkdir -p "$dir/data"
    if [[ -n "$register" ]]; then
        echo '{"name":"Bench shop","account_id":"acc_bench"}' | "$bin" accounts create --data-dir "$dir/data" >/dev/null
        echo '{"account_id":"acc_bench","allowed_domains":["example.com","example.org"]}' | "$bin" pixels put 1234567890 --data-dir "$dir/data" >/dev/null
    fi
    port=$(free_port); mport=$(free_port)
    log "$name: starting $bin on 127.0.0.1:$port (metrics :$mport)"
    taskset -c "$SERVER_CPU" "$bin" serve \
        --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
        --data-dir "$dir/data" --sink file 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 20 || { tail -n 20 "$dir/stderr.log" >&2; die "$name did not become healthy"; }

    load_and_check "$name" "$port" "$pid"
    rss=$(peak_rss_mib "$pid")
    NOTES+=("$name: CPU time by thread (warm-up + measured): $(thread_cpu "$pid")")
    cpu=$(proc_cpu "$pid")
    # pixelgate's own count of answered pixel hits: exact, unlike wrk's
    # (see compare_records).  Scraped after the load, before shutdown.
    http_get "$mport" /metrics >"$dir/metrics.txt"
    hits=$(prom_sum pixelgate_hits_total <"$dir/metrics.txt")
    dropped=$(prom_sum pixelgate_records_dropped_total <"$dir/metrics.txt")

    sigterm_pixelgate "$name" "$pid" "$dir"

    # One record per NDJSON line (awk also counts a final unterminated line).
    records=$(find "$dir/data/raw" -type f -name '*.ndjson' -exec awk 'END { print NR }' {} + 2>/dev/null |
        awk '{ s += $1 } END { print s + 0 }')
    log "$name: data files: $(find "$dir/data" -type f | wc -l), NDJSON records: $records"
    if [[ -n "$register" ]]; then
        local sample
        sample=$(find "$dir/data/raw" -type f -name '*.ndjson' -print -quit | xargs head -n 1)
        if [[ "$sample" == *'"account_id":"acc_bench"'* && "$sample" != *domain_not_allowed* ]]; then
            NOTES+=("$name: records carry account_id acc_bench, page allowed (first record checked)")
        else
            NOTES+=("$name: a record without account_id acc_bench or flagged domain_not_allowed: $sample")
            FAILED=1
        fi
    fi
    compare_records "$name" "$records" "$ANSWERED"
    [[ "$hits" == n/a ]] || NOTES+=("$name: server CPU per hit: $(awk -v c="$cpu" -v h="$hits" 'BEGIN { printf "%.1f", c * 1e6 / h }') µs ($cpu s for $hits hits)")
    if [[ "$hits" == n/a ]]; then
        NOTES+=("$name: pixelgate_hits_total not found on /metrics; server-side check skipped")
    elif [[ "$hits" == "$records" ]]; then
        NOTES+=("$name: records $records = pixelgate_hits_total $hits (server-side count): exact match")
    else
        NOTES+=("$name: records $records != pixelgate_hits_total $hits (server-side count): MISMATCH")
        FAILED=1
    fi
    [[ "$dropped" == n/a || "$dropped" == 0 ]] || { NOTES+=("$name: pixelgate_records_dropped_total = $dropped"); FAILED=1; }

    add_row "$name" "$(wrk_field "$W_MEASURED" rps)" "$(wrk_field "$W_MEASURED" p50)" \
        "$(wrk_field "$W_MEASURED" p99)" "$rss"
}

# nginx serving the same path with empty_gif and a buffered access log: the
# "how fast can a 1x1 GIF plus one log line per hit go" baseline.
# hyper answering the GIF and nothing else: no records, so no record check.
bench_hyper_bare() {
    local name=hyper_bare dir="$RUN_DIR/hyper_bare" port pid rss
    mkdir -p "$dir"
    port=$(free_port)
    log "$name: starting on 127.0.0.1:$port"
    taskset -c "$SERVER_CPU" "$BARE_BIN" "127.0.0.1:$port" 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 20 || { cat "$dir/stderr.log" >&2; die "$name did not start"; }
    load_and_check "$name" "$port" "$pid"
    rss=$(peak_rss_mib "$pid")
    stop_pid "$pid" TERM 5
    RECORDS_CELL="n/a (writes none)"
    add_row "$name" "$(wrk_field "$W_MEASURED" rps)" "$(wrk_field "$W_MEASURED" p50)" \
        "$(wrk_field "$W_MEASURED" p99)" "$rss"
}

bench_nginx() {
    local name=nginx dir="$RUN_DIR/nginx" port pid worker rss master_rss records user_line=""
    mkdir -p "$dir/tmp"
    port=$(free_port)
    # `user` only makes sense (and root is only allowed explicitly) as root.
    [[ $EUID -eq 0 ]] && user_line="user root;"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/run.sh
$user_line
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log $dir/access.log combined buffer=64k flush=1s;
    # Keep every wrk connection open for the whole run (nginx's default
    # closes after 1000 requests), as pixelgate does.
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path       $dir/tmp/proxy;
    fastcgi_temp_path     $dir/tmp/fastcgi;
    uwsgi_temp_path       $dir/tmp/uwsgi;
    scgi_temp_path        $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /p.gif { empty_gif; }
        location = /healthz { access_log off; return 200 "ok\n"; }
        location / { return 404; }
    }
}
EOF
    log "$name: starting on 127.0.0.1:$port"
    # -e: log startup errors to the scratch dir, not /var/log/nginx.
    taskset -c "$SERVER_CPU" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 20 || { cat "$dir/error.log" >&2; die "$name did not start"; }
    worker=$(child_pids "$pid")
    [[ "$worker" =~ ^[0-9]+$ ]] || die "$name: expected one worker process, found: ${worker:-none}"

    load_and_check "$name" "$port" "$worker"
    rss=$(peak_rss_mib "$worker")
    master_rss=$(peak_rss_mib "$pid")
    NOTES+=("$name: peak RSS is the worker's; master peak RSS $master_rss MiB")

    # SIGQUIT = graceful shutdown; flushes the buffered access log.
    log "$name: SIGQUIT, waiting for it to flush and exit"
    stop_pid "$pid" QUIT 30
    [[ "$STOP_RC" == 0 ]] || { NOTES+=("$name: exit status after SIGQUIT: $STOP_RC"); FAILED=1; }

    records=$(awk 'END { print NR }' "$dir/access.log")
    log "$name: access-log lines: $records"
    compare_records "$name" "$records" "$ANSWERED"

    add_row "$name" "$(wrk_field "$W_MEASURED" rps)" "$(wrk_field "$W_MEASURED" p50)" \
        "$(wrk_field "$W_MEASURED" p99)" "$rss"
}

# pixelgate with the Firehose sink: the real aws-sdk-firehose client against
# moto in server mode (pinned in tests/requirements.txt, installed
# into .venv like scripts/test does).  moto stands in for a remote service, so
# it runs on the client CPU, never on the server's.  Two measurements:
#   1. a steady ~2k hits/s (wrk paced by bench/steady.lua): records per
#      PutRecordBatch from pixelgate's own histogram, and every record of the
#      run read back from moto's S3 destination, exactly once;
#   2. the same warm-up + measured throughput run as the file-sink row.
#      moto (Python, at nice 19 on wrk's core) absorbs far fewer records per
#      second than the pixel answers, so here the check is an account: every
#      hit is acknowledged by moto (and in S3 exactly once) or given up and
#      counted with its reason; nothing is silent, nothing is doubled.
bench_pixelgate_firehose() {
    local name=pixelgate-firehose dir="$RUN_DIR/pixelgate-firehose" venv="$REPO_ROOT/.venv"
    local port mport moto_port pid rss records hits dropped written steady_hits sum count reasons cpu
    local requirements="$REPO_ROOT/tests/requirements.txt" stamp stream=pixelgate-bench
    mkdir -p "$dir/data"
    stamp="$venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
    if [[ ! -f "$stamp" ]]; then
        log "$name: installing $(grep -v '^#' "$requirements" | xargs) into .venv"
        [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        touch "$stamp"
    fi
    moto_port=$(free_port); port=$(free_port); mport=$(free_port)
    local aws=(AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true)

    # nice 19: moto takes only what wrk leaves of the client CPU, so the load
    # generator is never starved and req/s stays a measure of pixelgate.
    log "$name: moto on 127.0.0.1:$moto_port (CPU $CLIENT_CPU, nice 19)"
    nice -n 19 taskset -c "$CLIENT_CPU" "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
    CHILD_PIDS+=("$!")
    for _ in $(seq 300); do port_in_use "$moto_port" && break; sleep 0.1; done
    port_in_use "$moto_port" || { cat "$dir/moto.log" >&2; die "moto did not start"; }
    env "${aws[@]}" "$venv/bin/python" - "$stream" <<'PY' || die "cannot create the delivery stream in moto"
import sys, boto3
stream = sys.argv[1]
boto3.client("s3").create_bucket(Bucket=stream)
boto3.client("firehose").create_delivery_stream(
    DeliveryStreamName=stream,
    ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::123456789012:role/firehose",
        "BucketARN": f"arn:aws:s3:::{stream}",
        "Prefix": "raw/",
        "CompressionFormat": "UNCOMPRESSED",
    },
)
PY
    # s3_records -> lines in every object moto's delivery stream wrote to S3.
    s3_records() {
        env "${aws[@]}" "$venv/bin/python" - "$stream" <<'PY' || die "cannot read the records back from moto"
import sys, boto3
s3, n = boto3.client("s3"), 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    for o in page.get("Contents", []):
        n += s3.get_object(Bucket=sys.argv[1], Key=o["Key"])["Body"].read().count(b"\n")
print(n)
PY
    }

    log "$name: starting on 127.0.0.1:$port (metrics :$mport)"
    # moto answers more slowly than Firehose: a generous attempt timeout keeps
    # its queueing from being read as an outage (and requests it did process
    # from being sent again).
    env "${aws[@]}" taskset -c "$SERVER_CPU" "$PIXELGATE_BIN" serve \
        --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
        --data-dir "$dir/data" --sink firehose --firehose-stream "$stream" \
        --firehose-timeout 30s 2>"$dir/stderr.log" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait_http "$pid" "$port" /healthz 20 || { tail -n 20 "$dir/stderr.log" >&2; die "$name did not become healthy"; }

    # 1. Steady ~2k hits/s.
    log "$name: steady ~2k hits/s for ${STEADY}s (20 connections, 10 ms apart each)"
    taskset -c "$CLIENT_CPU" wrk -t1 -c20 -d"${STEADY}s" -s "$BENCH_DIR/steady.lua" \
        -H "User-Agent: $USER_AGENT" "http://127.0.0.1:${port}${PIXEL_PATH}" >"$dir/steady.wrk.txt" 2>&1 ||
        { cat "$dir/steady.wrk.txt" >&2; die "wrk failed"; }
    # The last batch leaves by age (1 s).
    sleep 3
    http_get "$mport" /metrics >"$dir/metrics-steady.txt"
    steady_hits=$(prom_sum pixelgate_hits_total <"$dir/metrics-steady.txt")
    sum=$(prom_sum 'pixelgate_sink_batch_records_sum{outlet="firehose"}' <"$dir/metrics-steady.txt")
    count=$(prom_sum 'pixelgate_sink_batch_records_count{outlet="firehose"}' <"$dir/metrics-steady.txt")
    records=$(s3_records)
    NOTES+=("$name: steady run: $(wrk_field "$dir/steady.wrk.txt" rps | xargs printf '%.0f') hits/s for ${STEADY}s; $sum records in $count PutRecordBatch requests = $(awk -v s="$sum" -v c="$count" 'BEGIN { printf "%.1f", (c > 0 ? s / c : 0) }') records per request")
    if [[ "$records" == "$steady_hits" && "$sum" == "$steady_hits" ]]; then
        NOTES+=("$name: steady run: records in S3 $records = pixelgate_hits_total $steady_hits: exact match")
    else
        NOTES+=("$name: steady run: records in S3 $records, records sent $sum, pixelgate_hits_total $steady_hits: MISMATCH")
        FAILED=1
    fi

    # 2. Throughput.
    load_and_check "$name" "$port" "$pid"
    rss=$(peak_rss_mib "$pid")
    NOTES+=("$name: CPU time by thread (steady + warm-up + measured): $(thread_cpu "$pid")")
    log "$name: waiting until every hit is acknowledged by moto or given up"
    for _ in $(seq 1500); do
        http_get "$mport" /metrics >"$dir/metrics.txt"
        hits=$(prom_sum pixelgate_hits_total <"$dir/metrics.txt")
        written=$(prom_sum 'pixelgate_records_written_total{sink="firehose"}' <"$dir/metrics.txt" | sed 's,n/a,0,')
        dropped=$(prom_sum pixelgate_records_dropped_total <"$dir/metrics.txt" | sed 's,n/a,0,')
        ((written + dropped >= hits)) && break
        sleep 0.2
    done
    cpu=$(proc_cpu "$pid")
    NOTES+=("$name: server CPU per hit (sink and its requests included, the drain after the load too): $(awk -v c="$cpu" -v h="$hits" 'BEGIN { printf "%.1f", c * 1e6 / h }') µs ($cpu s for $hits hits)")
    reasons=$(awk '/^pixelgate_records_dropped_total/ { match($0, /reason="[^"]*"/); printf "%s%s %s", sep, substr($0, RSTART + 8, RLENGTH - 9), $NF; sep = ", " }' "$dir/metrics.txt")
    NOTES+=("$name: Firehose requests by outcome: $(awk '/^pixelgate_firehose_requests_total/ { match($0, /outcome="[^"]*"/); printf "%s%s %s", sep, substr($0, RSTART + 9, RLENGTH - 10), $NF; sep = ", " }' "$dir/metrics.txt"); records spooled $(prom_sum pixelgate_records_spooled_total <"$dir/metrics.txt"), retried $(prom_sum pixelgate_firehose_retries_total <"$dir/metrics.txt")")

    sigterm_pixelgate "$name" "$pid" "$dir"
    records=$(s3_records)
    log "$name: records in S3: $records"
    RECORDS_CELL="$records + $dropped given up = $hits hits"
    if [[ "$records" == "$written" ]] && ((written + dropped == hits)); then
        NOTES+=("$name: every hit accounted for: $records acknowledged by moto and in S3 exactly once, $dropped given up and counted (${reasons:-none}); moto absorbed $(awk -v r="$records" -v s="$STEADY" -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%.0f", r / (s + w + d) }') records/s over the run")
    else
        RECORDS_CELL="$RECORDS_CELL **MISMATCH**"
        NOTES+=("$name: records in S3 $records, acknowledged $written, given up $dropped (${reasons:-none}), hits $hits: MISMATCH")
        FAILED=1
    fi

    add_row "$name" "$(wrk_field "$W_MEASURED" rps)" "$(wrk_field "$W_MEASURED" p50)" \
        "$(wrk_field "$W_MEASURED" p99)" "$rss"
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

# 1. Tools.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [[ $EUID -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v taskset >/dev/null || die "taskset (util-linux) not found"
(($(nproc) >= 2)) || die "need at least 2 CPUs (server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU)"

# 2. Build.
if [[ " $SERVERS " == *" pixelgate"* ]]; then
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release)
    fi
    [[ -x "$PIXELGATE_BIN" ]] || die "$PIXELGATE_BIN not found (build it or unset SKIP_BUILD)"
fi
if [[ " $SERVERS " == *" hyper_bare "* ]]; then
    [[ "$SKIP_BUILD" == 1 ]] || (cd "$REPO_ROOT" && cargo build --release --example bare_gif)
    [[ -x "$BARE_BIN" ]] || die "$BARE_BIN not found (build it or unset SKIP_BUILD)"
fi

# 3. Run the servers one after the other, ROUNDS times.
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    if ((ROUNDS > 1)); then
        RUN_DIR="$WORK_DIR/round$ROUND"
        mkdir -p "$RUN_DIR"
        log "round $ROUND of $ROUNDS"
        RPS=()
    fi
    first_note=${#NOTES[@]}
    # Round r starts at the r-th server of the list (ROTATE=1), so that a slow patch of the host
    # that recurs with the rounds does not fall on the same server every time.
    read -r -a order <<<"$SERVERS"
    shift_by=0
    [[ "$ROTATE" != 1 ]] || shift_by=$(((ROUND - 1) % ${#order[@]}))
    for ((k = 0; k < ${#order[@]}; k++)); do
        "bench_${order[(k + shift_by) % ${#order[@]}]}"
    done
    if ((ROUNDS > 1)); then
        for ((i = first_note; i < ${#NOTES[@]}; i++)); do NOTES[i]="round $ROUND, ${NOTES[i]}"; done
        # The round's records are counted: drop them (GBs per round) unless asked to keep them.
        [[ "$KEEP_TMP" == 1 ]] || find "$RUN_DIR" -mindepth 2 -maxdepth 2 \( -name data -o -name access.log \) -exec rm -rf {} +
    fi
    if [[ -n "${RPS[pixelgate]:-}" && -n "${RPS[nginx]:-}" ]]; then
        PG_NGINX+=("$(awk -v a="${RPS[pixelgate]}" -v b="${RPS[nginx]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
        reg_ratio=""
        if [[ -n "${RPS[pixelgate_registered]:-}" ]]; then
            REG_NGINX+=("$(awk -v a="${RPS[pixelgate_registered]}" -v b="${RPS[nginx]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
            reg_ratio="; pixelgate_registered / nginx = ${REG_NGINX[-1]}"
        fi
        bare_ratio=""
        if [[ -n "${RPS[hyper_bare]:-}" ]]; then
            bare_ratio=$(awk -v a="${RPS[hyper_bare]}" -v b="${RPS[nginx]}" 'BEGIN { printf "; hyper_bare / nginx = %.3f", (b > 0 ? a / b : 0) }')
        fi
        before_ratio="" before_cpu=""
        if [[ -n "${RPS[pixelgate_before]:-}" ]]; then
            before_ratio=$(awk -v a="${RPS[pixelgate_before]}" -v b="${RPS[nginx]}" -v p="${RPS[pixelgate]}" 'BEGIN { printf "; pixelgate_before / nginx = %.3f; pixelgate / pixelgate_before = %.3f", (b > 0 ? a / b : 0), (a > 0 ? p / a : 0) }')
            before_cpu=", pixelgate_before ${USER_US[pixelgate_before]} µs"
        fi
        RATIOS+=("round $ROUND: pixelgate / nginx = ${PG_NGINX[-1]}$reg_ratio$before_ratio$bare_ratio; user CPU per request: pixelgate ${USER_US[pixelgate]} µs$before_cpu, nginx ${USER_US[nginx]} µs")
    fi
done

# 4. Report.
echo
echo "## pixelgate benchmark"
echo
echo "$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU;" \
    "wrk -t1 -c$CONNECTIONS, ${WARMUP}s warm-up + ${DURATION}s measured; $(nginx -v 2>&1 | sed 's/^nginx version: //')."
echo
echo "| server | req/s | p50 | p99 | CPU µs/req (user + kernel) | peak RSS MiB | records/answered |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
if ((ROUNDS > 1 && ${#PG_NGINX[@]} > 0)); then
    echo
    printf -- '- %s\n' "${RATIOS[@]}"
    echo
    printf '%s\n' "${PG_NGINX[@]}" | sort -n |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "pixelgate req/s / nginx req/s, median of %d rounds = %.3f (min %.3f, max %.3f)\n", NR, m, v[1], v[NR] }'
    if ((${#REG_NGINX[@]} > 0)); then
        printf '%s\n' "${REG_NGINX[@]}" | sort -n |
            awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "pixelgate_registered req/s / nginx req/s, median of %d rounds = %.3f (min %.3f, max %.3f)\n", NR, m, v[1], v[NR] }'
    fi
elif [[ -n "${RPS[pixelgate]:-}" && -n "${RPS[nginx]:-}" ]]; then
    echo
    awk -v a="${RPS[pixelgate]}" -v b="${RPS[nginx]}" \
        'BEGIN { printf "pixelgate req/s / nginx req/s = %.3f\n", (b > 0 ? a / b : 0) }'
    [[ -z "${RPS[pixelgate_registered]:-}" ]] || awk -v a="${RPS[pixelgate_registered]}" -v b="${RPS[nginx]}" \
        'BEGIN { printf "pixelgate_registered req/s / nginx req/s = %.3f\n", (b > 0 ? a / b : 0) }'
fi
if ((ROUNDS == 1)) && [[ -n "${RPS[hyper_bare]:-}" && -n "${RPS[nginx]:-}" ]]; then
    echo
    awk -v a="${RPS[hyper_bare]}" -v b="${RPS[nginx]}" -v p="${RPS[pixelgate]:-0}" \
        'BEGIN { printf "hyper_bare req/s / nginx req/s = %.3f", (b > 0 ? a / b : 0); if (p > 0) printf "; pixelgate / hyper_bare = %.3f", p / a; printf "\n" }'
fi
if [[ -n "${RPS[pixelgate]:-}" && -n "${RPS[pixelgate-firehose]:-}" ]]; then
    echo
    awk -v a="${RPS[pixelgate-firehose]}" -v b="${RPS[pixelgate]}" \
        'BEGIN { printf "pixelgate-firehose req/s / pixelgate (file sink) req/s = %.3f\n", (b > 0 ? a / b : 0) }'
fi
echo
printf -- '- %s\n' "${NOTES[@]}"
((FAILED == 0)) || { echo; echo "**Some checks FAILED** (see notes above)."; exit 1; }
