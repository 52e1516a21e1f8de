#!/usr/bin/env bash
# Builds Drover in release mode, then runs the side-by-side harness with Drover as the
# candidate (bench/drover-candidate.sh), next to the direct backend, HAProxy and nginx.
#
#   bench/run.sh http            # or tcp; every argument goes to bench.sh
#   ROUNDS=5 DURATION=10 bench/run.sh http
#   PEERS=haproxy ROUNDS=7 bench/run.sh http     # tightest drover/haproxy ratio
#
# Defaults (each overridable from the environment, which is passed through to bench.sh):
#   BENCH_SH=<repo>/../shared/bench/bench.sh  PIN=split  PROXY_THREADS=1
#   (the harness is not part of this repository: it is the project's shared bench folder,
#   expected beside the clone; point BENCH_SH at it when it is elsewhere)
#   OUT_DIR=<repo>/target/bench-out/<section>-<UTC time>   (results.tsv, summary.txt, logs)
# See bench/README.md for how to read the summary.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

BENCH_SH=${BENCH_SH:-$REPO/../shared/bench/bench.sh}
[[ -x $BENCH_SH ]] || {
    echo "run.sh: no side-by-side harness at $BENCH_SH: it is not part of this repository" \
        "(the project's shared bench/ folder, looked for beside the clone); set BENCH_SH" \
        "to its bench.sh" >&2
    exit 1
}
[[ $# -gt 0 ]] || { echo "usage: bench/run.sh http|tcp [bench.sh args...]" >&2; exit 1; }

cargo build --release --bin drover

export PIN=${PIN:-split}
export PROXY_THREADS=${PROXY_THREADS:-1}
export OUT_DIR=${OUT_DIR:-$REPO/target/bench-out/$1-$(date -u +%Y%m%dT%H%M%SZ)}
export PROXY_CMD="$REPO/bench/drover-candidate.sh"
export CAND_NAME=drover
export DROVER_BIN=${DROVER_BIN:-$REPO/target/release/drover}
echo "run.sh: results go to $OUT_DIR" >&2
exec "$BENCH_SH" "$@"
