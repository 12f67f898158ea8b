# Shell helpers shared by the benchmark scripts (bench/run.sh, bench/capi.sh, bench/lambda.sh).
# Source after setting BENCH_TAG (log prefix) and KEEP_TMP; sets WORK_DIR,
# CHILD_PIDS (killed on exit) and FAILED, and installs the exit traps.

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$BENCH_TAG" "$*" >&2; exit 2; }

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pixelgate-$BENCH_TAG.XXXXXX")"
CHILD_PIDS=()     # processes we started; killed by cleanup()
FAILED=0          # set to 1 by any failed check


# Kill whatever is still running and remove the scratch directory.  Runs on
# every exit path, including errors and Ctrl-C.
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${CHILD_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ "$KEEP_TMP" == 1 ]]; then
        log "scratch directory kept: $WORK_DIR"
    else
        rm -rf "$WORK_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Is something listening on 127.0.0.1:$1?
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Print a free loopback port, never the same twice: random, below the kernel's range for outgoing
# connections (32768 by default), so that none of the thousands of connections a run opens can
# take it between this check and the server's bind (nginx once failed to start that way).
USED_PORTS=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_LOW > 12000)) || EPHEMERAL_LOW=32768
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        [[ "$USED_PORTS" == *" $port "* ]] && continue
        port_in_use "$port" && continue
        USED_PORTS+="$port "
        echo "$port"
        return 0
    done
    die "no free port found"
}

# http_status PORT PATH -> prints the HTTP status code (empty on failure).
# Pure bash, so it works without curl.
http_status() {
    local port=$1 path=$2 line=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 &&
            read -r -t 2 line <&3
        exec 3<&- 3>&-
    } 2>/dev/null || true
    line=${line%$'\r'}
    [[ "$line" =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]] && echo "${BASH_REMATCH[1]}" || true
}

# http_get PORT PATH -> prints the response body.  HTTP/1.0, so the body is
# never chunked and ends when the server closes the connection.
http_get() {
    local port=$1 path=$2
    {
        exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 &&
            timeout 5 cat <&3
        exec 3<&- 3>&-
    } 2>/dev/null | tr -d '\r' | sed '1,/^$/d' || true
}


# wait_http PID PORT PATH TIMEOUT_S -> waits until PATH answers 200.
wait_http() {
    local pid=$1 port=$2 path=$3 timeout=$4 status
    for _ in $(seq $((timeout * 10))); do
        kill -0 "$pid" 2>/dev/null || { log "process $pid died during startup"; return 1; }
        status=$(http_status "$port" "$path")
        [[ "$status" == 200 ]] && return 0
        sleep 0.1
    done
    log "GET $path on port $port did not answer 200 within ${timeout}s (last status: ${status:-none})"
    return 1
}

# stop_pid PID SIGNAL TIMEOUT_S -> signals PID, waits for it and sets
# STOP_RC to its exit status (or "timeout" after SIGKILLing it).  Must run in
# the main shell (not inside $(...)): only the parent can `wait` for the PID.
stop_pid() {
    local pid=$1 sig=$2 timeout=$3
    STOP_RC=0
    kill "-$sig" "$pid"
    for _ in $(seq $((timeout * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        STOP_RC=timeout
        return 0
    fi
    wait "$pid" || STOP_RC=$?
}

# Peak resident set size (VmHWM) of PID in MiB, one decimal.
peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "n/a" }' "/proc/$1/status"
}

# proc_ticks PID -> "utime stime" of PID (all its threads) so far, in clock ticks.
proc_ticks() {
    local stat rest f
    read -r stat <"/proc/$1/stat"
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo "${f[11]} ${f[12]}"
}

# CPU seconds (user + system, all threads) used so far by PID.
proc_cpu() {
    local user system
    read -r user system <<<"$(proc_ticks "$1")"
    awk -v t=$((user + system)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
