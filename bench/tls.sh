#!/usr/bin/env bash
# TLS handshakes/s and HTTP/2 requests/s through Drover's [https] listener and through
# HAProxy terminating TLS the same way, in one run, with the same backend (nginx answering a
# small page), the same certificate (ECDSA P-256, self-signed here) and one proxy thread
# each. The proxies are pinned to CPU 0, the load tools and nginx to CPU 1.
#
#   bench/tls.sh                  # 3 rounds x 8 s per test
#   ROUNDS=5 DURATION=10 bench/tls.sh
#   SKIP_BUILD=1 DROVER_BIN=/path/to/drover bench/tls.sh
#
# Tests:
#   handshake: wrk, one new TLS connection per request (Connection: close), HTTP/1.1:
#              requests/s = full handshakes/s (TLS 1.3, no resumption).
#   h2:        h2load, 16 connections x 32 concurrent streams, HTTP/2 over TLS.
# For each: requests/s and the proxy's CPU time per request (from /proc/PID/stat), and the
# ratio Drover / HAProxy per round; the summary gives medians.
# Needs: haproxy, nginx, wrk, h2load (nghttp2-client), openssl, taskset.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BACKEND_PORT=${BACKEND_PORT:-18480}
HAPROXY_PORT=${HAPROXY_PORT:-18443}
DROVER_PORT=${DROVER_PORT:-18444}
WORK=$(mktemp -d -t drover-tls-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for tool in haproxy nginx wrk h2load openssl taskset; do
  command -v "$tool" >/dev/null || { echo "tls.sh: $tool is missing (apt-get install haproxy nginx wrk nghttp2-client)" >&2; exit 1; }
done

DROVER_BIN=${DROVER_BIN:-$REPO/target/release/drover}
[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release --bin drover >&2

# One certificate for both proxies.
mkdir -p "$WORK/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=bench.local" -addext "subjectAltName=DNS:bench.local" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/certs/default.pem"

# The backend: nginx, a fixed small answer, keep-alive towards the proxies.
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok\n"; } }
}
EOF
taskset -c 1 nginx -c "$WORK/nginx.conf" &
PIDS+=($!)

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:$HAPROXY_PORT ssl crt $WORK/certs/default.pem alpn h2,http/1.1
  default_backend app
backend app
  http-reuse always
  server b1 127.0.0.1:$BACKEND_PORT
EOF
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

cat >"$WORK/catalog.toml" <<EOF
[[app]]
id = "/bench"
labels = { HAPROXY_0_VHOST = "bench.local" }
ports = [10001]
tasks = [ { host = "127.0.0.1", ports = [$BACKEND_PORT] } ]
EOF
cat >"$WORK/drover.toml" <<EOF
[http]
listen = "127.0.0.1:0"
[https]
listen = "127.0.0.1:$DROVER_PORT"
certs = "certs"
[catalog]
file = "catalog.toml"
[runtime]
workers = 1
EOF
RUST_LOG=warn taskset -c 0 "$DROVER_BIN" --config "$WORK/drover.toml" >"$WORK/drover.log" 2>&1 &
PIDS+=($!)
DROVER_PID=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME PID PORT TEST -> "reqs_per_s cpu_us_per_req"
run() {
  local pid=$1 port=$2 test=$3 before after out rps n
  before=$(cpu_ticks "$pid")
  case $test in
    handshake)
      out=$(taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" -H "Host: bench.local" -H "Connection: close" \
        "https://127.0.0.1:$port/" 2>&1)
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    h2)
      out=$(taskset -c 1 h2load -t1 -c16 -m32 -D "$DURATION" --warm-up-time=1 \
        -H "host: bench.local" "https://127.0.0.1:$port/" 2>&1)
      rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out") ;;
  esac
  after=$(cpu_ticks "$pid")
  n=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN {printf "%d", r * d}')
  awk -v r="$rps" -v t=$((after - before)) -v hz="$HZ" -v n="$n" \
    'BEGIN {printf "%.0f %.1f\n", r, (n > 0 ? t / hz * 1e6 / n : 0)}'
}

# Sanity: both answer over TLS.
curl -sk --resolve bench.local:$HAPROXY_PORT:127.0.0.1 "https://bench.local:$HAPROXY_PORT/" | grep -q ok \
  || { echo "tls.sh: HAProxy does not answer" >&2; exit 1; }
curl -sk --resolve bench.local:$DROVER_PORT:127.0.0.1 "https://bench.local:$DROVER_PORT/" | grep -q ok \
  || { echo "tls.sh: Drover does not answer (log: $WORK/drover.log)" >&2; exit 1; }

printf "%-10s %5s %12s %10s %12s %10s %8s %8s\n" test round haproxy_rps ha_us/req drover_rps dr_us/req rps_ratio cpu_ratio
for test in handshake h2; do
  for round in $(seq 1 "$ROUNDS"); do
    read -r ha_rps ha_cpu < <(run "$HAPROXY_PID" "$HAPROXY_PORT" "$test")
    read -r dr_rps dr_cpu < <(run "$DROVER_PID" "$DROVER_PORT" "$test")
    awk -v t="$test" -v r="$round" -v a="$ha_rps" -v ac="$ha_cpu" -v d="$dr_rps" -v dc="$dr_cpu" \
      'BEGIN {printf "%-10s %5d %12d %10.1f %12d %10.1f %8.3f %8.3f\n", t, r, a, ac, d, dc, (a > 0 ? d / a : 0), (ac > 0 ? dc / ac : 0)}'
  done
done | tee "$WORK/results.txt"

echo
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for test in handshake h2; do
  rps=$(awk -v t="$test" '$1 == t {print $7}' "$WORK/results.txt" | median)
  cpu=$(awk -v t="$test" '$1 == t {print $8}' "$WORK/results.txt" | median)
  echo "$test: median drover/haproxy requests/s $rps, CPU per request $cpu ($ROUNDS rounds)"
done
echo "tls.sh: logs and configs in $WORK" >&2
