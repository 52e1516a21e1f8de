#!/usr/bin/env bash
# The cost of one new connection through Drover (HTTP with `Connection: close`, and a TCP
# service port with one connection per request), counted in ways a busy machine does not
# blur: instructions (callgrind) and system calls (strace), next to HAProxy for the calls.
#
#   bench/conn_cost.sh callgrind [BIN]   # instructions per connection, Drover then HAProxy: (total at 3000 - total at 1000) / 2000
#   bench/conn_cost.sh strace [BIN]      # system calls per connection, Drover then HAProxy (2000 connections)
#
# BIN defaults to target/release/drover. Needs valgrind, strace, nginx, haproxy, python3, curl.
# Ports 18280 (Drover HTTP), 18291 (admin), 10001 (Drover TCP service port), 18290 (nginx),
# 18380/18381 (HAProxy HTTP/TCP) on 127.0.0.1 must be free. The client is a plain loop of
# connections (python), one at a time: what is counted is Drover's work, not the client's.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:?usage: conn_cost.sh callgrind|strace [BIN]}
BIN=$(realpath "${2:-$REPO/target/release/drover}")
WORK=$(mktemp -d /tmp/drover-conn-cost.XXXXXX)
cd "$WORK"

cat >nginx.conf <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18290;
    keepalive_requests 1000000;
    location / { return 200 "hello from nginx\n"; }
  }
}
EOF
cat >catalog.toml <<'EOF'
[[app]]
id = "/web"
labels = { HAPROXY_0_VHOST = "web.local" }
ports = [10001]
tasks = [ { host = "127.0.0.1", ports = [18290] } ]
EOF
cat >drover.toml <<'EOF'
[http]
listen = "127.0.0.1:18280"
[admin]
listen = "127.0.0.1:18291"
[tcp]
bind = "127.0.0.1"
ports = "10000-10010"
[catalog]
file = "catalog.toml"
[runtime]
workers = 1
EOF
# The shared harness's HAProxy settings (http-reuse always, keep-alive to the backend).
cat >haproxy.cfg <<'EOF'
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    http-reuse always
frontend fe_http
    bind 127.0.0.1:18380
    acl vh_app hdr(host) -i web.local
    use_backend be_app if vh_app
backend be_app
    server b1 127.0.0.1:18290
frontend fe_tcp
    mode tcp
    bind 127.0.0.1:18381
    default_backend be_tcp
backend be_tcp
    mode tcp
    server b1 127.0.0.1:18290
EOF
cat >close.py <<'EOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n"
ok = 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    ok += data.startswith(b"HTTP/1.1 200")
if ok != n:
    sys.exit(f"only {ok} of {n} requests answered 200")
EOF

nginx -c "$WORK/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

# Waits until PORT answers one request (at most 30 s).
wait_port() {
    for _ in $(seq 1 300); do
        python3 close.py "$1" 1 2>/dev/null && return 0
        sleep 0.1
    done
    echo "conn_cost.sh: nothing answers on $1" >&2
    return 1
}

# Total instructions COMMAND... runs for N connections on PORT (start-up and shutdown
# included), once its PORTS (space-separated) answer.
instructions() {
    local port=$1 n=$2 ports=$3
    shift 3
    rm -f callgrind.out.*
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" "$@" 2>vg.err >/dev/null &
    local vg=$!
    for p in $ports; do wait_port "$p"; done
    python3 close.py "$port" "$n"
    kill -TERM $vg
    wait $vg || true
    grep -h '^summary' callgrind.out.* | awk '{s += $2} END {print s}'
}

# strace -c -f of COMMAND... while N connections go to PORT: the table, divided by N.
syscalls() {
    local port=$1 n=$2
    shift 2
    strace -c -f -o trace.txt "$@" >/dev/null 2>&1 &
    local st=$!
    wait_port "$port"
    python3 close.py "$port" "$n"
    kill -TERM "$(pgrep -P $st)"
    wait $st || true
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 >= n / 10 {
        printf "  %-14s %6.2f\n", $NF, $4 / n }' trace.txt
}

case $MODE in
callgrind)
    for port in 18280 10001; do
        a=$(instructions $port 1000 "18280 10001" "$BIN" --config drover.toml)
        b=$(instructions $port 3000 "18280 10001" "$BIN" --config drover.toml)
        echo "drover port $port: $(((b - a) / 2000)) instructions per connection"
    done
    for port in 18380 18381; do
        a=$(instructions $port 1000 "18380 18381" haproxy -f haproxy.cfg -db)
        b=$(instructions $port 3000 "18380 18381" haproxy -f haproxy.cfg -db)
        echo "haproxy port $port: $(((b - a) / 2000)) instructions per connection"
    done
    ;;
strace)
    for port in 18280 10001; do
        echo "drover, port $port (calls per connection):"
        syscalls $port 2000 "$BIN" --config drover.toml
    done
    for port in 18380 18381; do
        echo "haproxy, port $port (calls per connection):"
        syscalls $port 2000 haproxy -f haproxy.cfg -db
    done
    ;;
*)
    echo "usage: conn_cost.sh callgrind|strace [BIN]" >&2
    exit 1
    ;;
esac
