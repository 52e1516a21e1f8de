#!/usr/bin/env bash
# UDP datagrams through Drover's UDP service port, through nginx's `stream` UDP proxy, and
# straight to the backend, in one run with the same backend and load. Each proxy runs one
# thread (Drover `workers = 1`, nginx one process) pinned to CPU 0; the backend and the
# load generator share CPU 1.
#
#   bench/udp.sh                         # 3 rounds x 8 s per target
#   ROUNDS=5 DURATION=10 bench/udp.sh
#   FLOWS=1000 WINDOW=1 bench/udp.sh     # many quiet clients instead of a few busy ones
#   SKIP_BUILD=1 DROVER_BIN=/path/to/drover LOAD_BIN=/path/to/udp_load bench/udp.sh
#
# The backend and the load are `examples/udp_load.rs`: an echo, and FLOWS client sockets
# each keeping WINDOW datagrams of BYTES bytes in flight (closed loop). Reported per target
# and round: round trips/s, and for the proxies CPU µs per datagram (the proxy's CPU time
# from /proc/PID/stat over the run, divided by 2 x round trips: each round trip crosses the
# proxy twice). Ratios are taken inside each round (drover/nginx round trips/s and CPU per
# datagram, drover/direct round trips/s); the summary gives each ratio's median with its
# [min..max] over the rounds. Absolute figures move with the machine; quote ratios.
# Needs: nginx with the stream module (Debian: nginx libnginx-mod-stream), taskset.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
FLOWS=${FLOWS:-64}
WINDOW=${WINDOW:-4}
BYTES=${BYTES:-64}
BACKEND_PORT=${BACKEND_PORT:-19500}
NGINX_PORT=${NGINX_PORT:-19501}
DROVER_PORT=${DROVER_PORT:-19502}
STREAM_MODULE=${STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
for tool in nginx taskset; do
  command -v "$tool" >/dev/null || { echo "udp.sh: $tool is missing (apt-get install nginx libnginx-mod-stream)" >&2; exit 1; }
done
[[ -f $STREAM_MODULE ]] || { echo "udp.sh: no nginx stream module at $STREAM_MODULE (apt-get install libnginx-mod-stream, or set STREAM_MODULE)" >&2; exit 1; }

DROVER_BIN=${DROVER_BIN:-$REPO/target/release/drover}
LOAD_BIN=${LOAD_BIN:-$REPO/target/release/examples/udp_load}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$REPO" && cargo build --release --bin drover --example udp_load >&2)
fi

WORK=$(mktemp -d -t drover-udp-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 1 "$LOAD_BIN" echo "127.0.0.1:$BACKEND_PORT" &
PIDS+=($!)

# nginx: one process (no master), a UDP server proxying to the backend. A session per
# client address lasts proxy_timeout, as a Drover flow lasts [udp] idle_timeout.
printf '%s\n' \
  "load_module $STREAM_MODULE;" \
  "worker_processes 1;" \
  "master_process off;" \
  "daemon off;" \
  "pid $WORK/nginx.pid;" \
  "error_log $WORK/nginx.err warn;" \
  "events { worker_connections 16384; }" \
  "stream {" \
  "  server {" \
  "    listen 127.0.0.1:$NGINX_PORT udp;" \
  "    proxy_pass 127.0.0.1:$BACKEND_PORT;" \
  "    proxy_timeout 30s;" \
  "  }" \
  "}" >"$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" &
PIDS+=($!)
NGINX_PID=$!

printf '%s\n' \
  '[[app]]' \
  'id = "/bench"' \
  "ports = [{ port = $DROVER_PORT, protocol = \"udp\" }]" \
  "tasks = [ { host = \"127.0.0.1\", ports = [$BACKEND_PORT] } ]" >"$WORK/catalog.toml"
printf '%s\n' \
  '[tcp]' \
  'bind = "127.0.0.1"' \
  "ports = \"$DROVER_PORT\"" \
  '[udp]' \
  'idle_timeout = "30s"' \
  '[catalog]' \
  'file = "catalog.toml"' \
  '[runtime]' \
  'workers = 1' \
  'drain_timeout = "1s"' >"$WORK/drover.toml"
RUST_LOG=warn taskset -c 0 "$DROVER_BIN" --config "$WORK/drover.toml" >"$WORK/drover.log" 2>&1 &
PIDS+=($!)
DROVER_PID=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run PID|- PORT -> "round_trips_per_s cpu_us_per_datagram lost" (no CPU figure without a PID)
run() {
  local pid=$1 port=$2 before=0 after=0 out rts lost
  [[ $pid == - ]] || before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 "$LOAD_BIN" load "127.0.0.1:$port" "$FLOWS" "$DURATION" "$WINDOW" "$BYTES")
  [[ $pid == - ]] || after=$(cpu_ticks "$pid")
  read -r rts lost <<<"$out"
  awk -v r="$rts" -v l="$lost" -v t=$((after - before)) -v hz="$HZ" -v d="$DURATION" \
    'BEGIN {n = r * d * 2; printf "%.0f %.2f %d\n", r, (n > 0 ? t / hz * 1e6 / n : 0), l}'
}

# Sanity: each target answers (one flow for one second).
for target in "direct:$BACKEND_PORT" "nginx:$NGINX_PORT" "drover:$DROVER_PORT"; do
  out=$(taskset -c 1 "$LOAD_BIN" load "127.0.0.1:${target#*:}" 1 1 1 "$BYTES")
  [[ ${out%% *} -gt 0 ]] || { echo "udp.sh: ${target%%:*} does not answer (logs in $WORK)" >&2; exit 1; }
done

printf "%5s %10s %10s %8s %10s %8s %9s %9s %9s %6s\n" \
  round direct_rt nginx_rt ng_us/dg drover_rt dr_us/dg dr/nginx cpu_ratio dr/direct lost
for round in $(seq 1 "$ROUNDS"); do
  read -r di_rt _ di_lost < <(run - "$BACKEND_PORT")
  read -r ng_rt ng_cpu ng_lost < <(run "$NGINX_PID" "$NGINX_PORT")
  read -r dr_rt dr_cpu dr_lost < <(run "$DROVER_PID" "$DROVER_PORT")
  awk -v r="$round" -v di="$di_rt" -v ng="$ng_rt" -v nc="$ng_cpu" -v dr="$dr_rt" -v dc="$dr_cpu" \
    -v lost=$((di_lost + ng_lost + dr_lost)) \
    'BEGIN {printf "%5d %10d %10d %8.2f %10d %8.2f %9.3f %9.3f %9.3f %6d\n", r, di, ng, nc, dr, dc,
      (ng > 0 ? dr / ng : 0), (nc > 0 ? dc / nc : 0), (di > 0 ? dr / di : 0), lost}'
done | tee "$WORK/results.txt"

echo
# median [min..max] of one column of the results
spread() {
  awk -v c="$1" '{print $c}' "$WORK/results.txt" | sort -n |
    awk '{v[NR] = $1} END {printf "%s [%s..%s]", v[int((NR + 1) / 2)], v[1], v[NR]}'
}
echo "drover/nginx round trips/s $(spread 7), CPU per datagram $(spread 8); drover/direct round trips/s $(spread 9) ($ROUNDS rounds, $FLOWS flows x $WINDOW in flight, $BYTES-byte datagrams)"
echo "udp.sh: logs and configs in $WORK" >&2
