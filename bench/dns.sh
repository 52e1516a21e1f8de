#!/usr/bin/env bash
# Drover's DNS server beside Knot, through the shared harness (`bench.sh dns`): dnsperf
# at max rate, then at a fixed rate, against the same zone of N services (one A and
# `_http._tcp` SRV x2 each; the queries are A and SRV mixed 1:1), at N = 1,000 and 10,000.
# Reports q/s and server CPU µs per query, as ratios to Knot with the same thread count.
#
# The candidate is `examples/dns_bench_server.rs`: it reads the harness's services.tsv,
# builds the zone through `Zone::from_record_sets` and serves it with `dns::server::serve`
# (our own UDP loop and TCP loop over `dns::handler`, one current-thread runtime per
# thread). No tracing subscriber is installed, so log lines cost nothing.
#
# Needs: knot, dnsperf, dig (apt-get install -y knot dnsperf bind9-dnsutils).
# Knobs: the harness's (ROUNDS, DURATION, PROXY_THREADS, PIN, DNS_N, OUT_DIR, ...);
# BENCH_HARNESS points at bench.sh (default <repo>/../shared/bench/bench.sh: the project's
# shared bench folder beside the clone, not part of this repository).
set -euo pipefail

cd "$(dirname "$0")/.."
harness=${BENCH_HARNESS:-$PWD/../shared/bench/bench.sh}
[[ -x $harness ]] || {
    echo "dns.sh: no side-by-side harness at $harness: it is not part of this repository" \
        "(the project's shared bench/ folder, looked for beside the clone); set BENCH_HARNESS" \
        "to its bench.sh" >&2
    exit 1
}
for tool in knotd dnsperf dig; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y knot dnsperf bind9-dnsutils)" >&2; exit 1; }
done

cargo build --release --example dns_bench_server
bin=$PWD/target/release/examples/dns_bench_server

export PROXY_CMD="exec $bin \"\$BENCH_SERVICES_FILE\" \"\$BENCH_DNS_ZONE\" \"\$BENCH_LISTEN_ADDR:\$BENCH_DNS_PORT\" \"\$BENCH_THREADS\""
export CAND_NAME=${CAND_NAME:-drover}
export DNS_SERVERS=${DNS_SERVERS:-knot}
export DNS_N=${DNS_N:-1000 10000}
export PIN=${PIN:-split}
export ROUNDS=${ROUNDS:-3}
export DURATION=${DURATION:-10}
exec "$harness" dns
