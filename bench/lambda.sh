#!/usr/bin/env bash
# pixelgate on AWS Lambda, measured on this machine: the release binary's size, and, under the
# loopback Runtime/Extensions API emulator of tests/lambda (the real binary started with
# AWS_LAMBDA_RUNTIME_API, Firehose in moto behind a proxy that answers 50 ms late):
#   - time from process start to the first /invocation/next (cold start without the download),
#     with the Firehose sink, with the Firehose sink and the DynamoDB store (median of 5; both
#     behind the 50 ms proxy), and with the file sink (median of 5),
#   - the time the drain extension adds after each answer with a Firehose that answers in 50 ms,
#   - the function's peak RSS.
#
#   bench/lambda.sh               # builds target/release/pixelgate first
#   SKIP_BUILD=1 bench/lambda.sh  # reuse it
#
# Needs moto: run scripts/test once (it installs the pinned moto[server] into .venv), or point
# PIXELGATE_PYTHON at a Python that has it. Output: a Markdown table on stdout.
# Not measured here: the arm64 build SAM makes (cargo lambda + Zig), and AWS's own cold-start
# overhead (sandbox creation, code download).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SKIP_BUILD="${SKIP_BUILD:-0}"
BIN="$REPO_ROOT/target/release/pixelgate"
BENCH_TAG=lambda
KEEP_TMP="${KEEP_TMP:-0}"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

cd "$REPO_ROOT"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building the release binary"
    cargo build --release --locked >&2
fi
[[ -x "$BIN" ]] || die "$BIN not found (build it or unset SKIP_BUILD)"
export PIXELGATE_PYTHON="${PIXELGATE_PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$PIXELGATE_PYTHON" ]] || die "no Python with moto at $PIXELGATE_PYTHON: run scripts/test once"

stripped="$WORK_DIR/pixelgate.stripped"
cp "$BIN" "$stripped"
strip "$stripped"
size_mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }

log "running the emulator measurement against $BIN"
out="$(PIXELGATE_BIN="$BIN" cargo test --locked --test lambda figures -- --nocapture --test-threads 1 2>&1)" ||
    { printf '%s\n' "$out" >&2; die "the measurement failed"; }
figures="$(grep -o 'LAMBDA FIGURES: .*' <<<"$out")" || { printf '%s\n' "$out" >&2; die "no figures in the output"; }

field() { sed -E "s/.*$1.*/\\1/" <<<"$figures"; }
cat <<EOF
| what ($(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d)) | value |
|---|---|
| release binary | $(size_mib "$BIN") MiB ($(size_mib "$stripped") MiB stripped) |
| start → first \`/invocation/next\`, Firehose sink (its start-up \`DescribeDeliveryStream\` answered in 50 ms) | $(field 'next ([0-9.]+ ms) with the Firehose') |
| start → first \`/invocation/next\`, Firehose sink and DynamoDB store, each answering in 50 ms (median of 5) | $(field 'median of 5 ([0-9.]+ ms) with the Firehose sink and') |
| start → first \`/invocation/next\`, file sink (median of 5) | $(field 'median of 5 ([0-9.]+ ms) with the file sink') |
| drain after the answer, Firehose answering in 50 ms (p50 / p90 / max of 40) | $(field 'in 50 ms: p50 ([0-9.]+ ms)') / $(field 'in 50 ms: p50 [0-9.]+ ms p90 ([0-9.]+ ms)') / $(field 'in 50 ms: p50 [0-9.]+ ms p90 [0-9.]+ ms max ([0-9.]+ ms)') |
| whole invocation, dispatch → extension's next (p50 / p90 / max) | $(field 'whole invocation p50 ([0-9.]+ ms)') / $(field 'whole invocation p50 [0-9.]+ ms p90 ([0-9.]+ ms)') / $(field 'whole invocation p50 [0-9.]+ ms p90 [0-9.]+ ms max ([0-9.]+ ms)') |
| peak RSS after 40 invocations | $(field 'peak RSS ([0-9.]+ MiB)') |
EOF
log "$figures"
