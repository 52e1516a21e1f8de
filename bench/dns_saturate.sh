#!/usr/bin/env bash
# DNS CPU per query at saturation: Drover's DNS server (examples/dns_bench_server.rs, as in
# bench/dns.sh) beside Knot, each on CPU 0 with one UDP thread, driven by
# examples/dns_load.rs on CPU 1. dnsperf (bench/dns.sh) spends more CPU per query than
# either server, so there the servers idle between small batches; this client batches
# with sendmmsg/recvmmsg and keeps WINDOW queries in flight, so the server is the limit.
# Same zone and queries as the shared harness (its lib/gen.sh: N services, one A and two
# `_http._tcp` SRV each, queries A and SRV mixed 1:1).
#
#   bench/dns_saturate.sh                          # N = 1,000 and 10,000, 5 rounds x 8 s
#   ROUNDS=7 DURATION=10 DNS_N=10000 bench/dns_saturate.sh
#   SKIP_BUILD=1 bench/dns_saturate.sh
#
# Per round and server: answered queries/s (the client's count) and the server's CPU
# (user + system, from /proc/PID/stat) per answered query; then Drover/Knot per round,
# and the median with [min..max] over the rounds. The order of the two servers alternates
# by round. Needs: knot, dig (apt-get install -y knot bind9-dnsutils), taskset; the shared
# bench folder beside the clone (BENCH_LIB, default <repo>/../shared/bench/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
lib=${BENCH_LIB:-$PWD/../shared/bench/lib}
[[ -r $lib/gen.sh ]] || { echo "dns_saturate.sh: no $lib/gen.sh (the shared bench folder beside the clone); set BENCH_LIB" >&2; exit 1; }
for tool in knotd dig taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y knot bind9-dnsutils)" >&2; exit 1; }
done
# shellcheck source=/dev/null
source "$lib/common.sh"
# shellcheck source=/dev/null
source "$lib/gen.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WINDOW=${WINDOW:-512}
DNS_N=${DNS_N:-1000 10000}
DNS_ORIGIN=${DNS_ORIGIN:-bench.test}
KNOT_PORT=${KNOT_PORT:-18553}
DROVER_PORT=${DROVER_PORT:-18554}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release --example dns_bench_server --example dns_load >&2
server=$PWD/target/release/examples/dns_bench_server
load=$PWD/target/release/examples/dns_load

init_workdir
install_traps

# measure NAME PID PORT QUERIES N ROUND: one run; prints "name N round qps cpu_us_per_query"
measure() {
    local name=$1 pid=$2 port=$3 queries=$4 n=$5 r=$6 before after out qps answered
    before=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" "$load" "127.0.0.1:$port" "$queries" "$DURATION" "$WINDOW")
    after=$(cpu_ticks "$pid")
    read -r qps answered _ <<<"$out"
    awk -v n="$name" -v N="$n" -v r="$r" -v q="$qps" -v a="$answered" -v t=$((after - before)) -v hz="$CLK_TCK" \
        'BEGIN { printf "%s\t%s\t%s\t%.0f\t%.3f\n", n, N, r, q, (a > 0 ? t * 1e6 / hz / a : 0) }'
}

rows=$WORK/rows.tsv
: >"$rows"
for n in $DNS_N; do
    d=$WORK/dns-$n
    gen_dns_data "$d" "$n" 2 8080 8081 8082
    gen_knot_conf "$d/knot" "$KNOT_PORT" 1 "$d/$DNS_ORIGIN.zone"
    start_bg "knot-$n" "$SERVER_CPU" knotd -c "$d/knot/knot.conf"
    knot=$LAST_PID
    start_bg "drover-$n" "$SERVER_CPU" "$server" "$d/services.tsv" "$DNS_ORIGIN" "127.0.0.1:$DROVER_PORT" 1
    drover=$LAST_PID
    wait_dns "$KNOT_PORT" "$DNS_ORIGIN" 30 "$knot" || die "knotd not answering (log/knot-$n.log)"
    wait_dns "$DROVER_PORT" "$DNS_ORIGIN" 30 "$drover" || die "drover not answering (log/drover-$n.log)"
    taskset -c "$LOAD_CPU" "$load" "127.0.0.1:$KNOT_PORT" "$d/queries.txt" 2 "$WINDOW" >/dev/null
    taskset -c "$LOAD_CPU" "$load" "127.0.0.1:$DROVER_PORT" "$d/queries.txt" 2 "$WINDOW" >/dev/null
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order="knot drover"; else order="drover knot"; fi
        for t in $order; do
            if [[ $t == knot ]]; then
                measure knot "$knot" "$KNOT_PORT" "$d/queries.txt" "$n" "$r" | tee -a "$rows" >&2
            else
                measure drover "$drover" "$DROVER_PORT" "$d/queries.txt" "$n" "$r" | tee -a "$rows" >&2
            fi
        done
    done
    stop_pid "$drover"
    stop_pid "$knot"
done

echo "# DNS at saturation: $(date -u +%Y-%m-%dT%H:%M:%SZ), knot $(knotd -V 2>/dev/null | awk '{print $NF}'), $ROUNDS rounds x ${DURATION}s, window $WINDOW"
echo "| N | Knot q/s | Drover q/s | Knot µs CPU/query | Drover µs CPU/query | Drover/Knot CPU per query, median [min..max] | Drover/Knot q/s |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for n in $DNS_N; do
    awk -F'\t' -v N="$n" '
        function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
        $2 == N { q[$1, $3] = $4; c[$1, $3] = $5; if ($3 > R) R = $3 }
        END {
            for (r = 1; r <= R; r++) {
                kq[r] = q["knot", r]; dq[r] = q["drover", r]; kc[r] = c["knot", r]; dc[r] = c["drover", r]
                rc[r] = dc[r] / kc[r]; rq[r] = dq[r] / kq[r]
            }
            lo = rc[1]; hi = rc[1]; for (r = 1; r <= R; r++) { if (rc[r] < lo) lo = rc[r]; if (rc[r] > hi) hi = rc[r] }
            printf "| %s | %.0f | %.0f | %.2f | %.2f | %.3f [%.3f..%.3f] | %.3f |\n", N, med(kq, R), med(dq, R), med(kc, R), med(dc, R), med(rc, R), lo, hi, med(rq, R)
        }' "$rows"
done
