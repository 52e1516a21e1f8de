#!/usr/bin/env bash
# Drover as the candidate of the side-by-side harness (../shared/bench/bench.sh, see its
# README, "Candidate interface"). The harness runs
#   PROXY_CMD="$PWD/bench/drover-candidate.sh" CAND_NAME=drover ./bench.sh http|tcp
# with BENCH_* variables set; this script writes a Drover config and catalog file into
# $BENCH_DIR from them and execs the release binary, so the process the harness measures
# (and stops by PID) is Drover itself.
#
#   http: [http] on BENCH_LISTEN_ADDR:BENCH_HTTP_PORT; one app with HAPROXY_0_VHOST =
#         BENCH_VHOST over BENCH_BACKENDS, round robin (other hosts get 404).
#   tcp:  [tcp] on BENCH_LISTEN_ADDR, ports covering BENCH_TCP_PORT and BENCH_TCP_BULK_PORT;
#         an app on BENCH_TCP_PORT over BENCH_BACKENDS and one on BENCH_TCP_BULK_PORT over
#         BENCH_BULK_BACKEND (no vhost, so tcp mode).
#   dns:  not handled here: bench/dns.sh runs Drover's DNS server (over a generated zone)
#         as the harness's DNS candidate.
#
# Environment: DROVER_BIN (default <repo>/target/release/drover), RUST_LOG (default warn,
# so logging costs nothing), DROVER_ADMIN_LISTEN (optional, e.g. 127.0.0.1:18090: adds
# [admin] for /debug/routes and /metrics while debugging), DROVER_ACCESS_LOG (optional, a
# file path: adds [access_log] with that path, to measure what the log costs),
# DROVER_ACCESS_LOG_FORMAT (json or combined; default json).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
DROVER_BIN=${DROVER_BIN:-$REPO/target/release/drover}
die() { echo "drover-candidate: $*" >&2; exit 1; }

: "${BENCH_SECTION:?run me from bench.sh (BENCH_SECTION is not set)}" "${BENCH_DIR:?}"
: "${BENCH_THREADS:=1}" "${BENCH_LISTEN_ADDR:=127.0.0.1}"

if [[ $BENCH_SECTION == dns ]]; then
  echo "drover-candidate: for the dns section use bench/dns.sh (it serves a generated zone" \
    "the harness's queries ask for)" >&2
  exit 1
fi
[[ -x $DROVER_BIN ]] || die "no Drover binary at $DROVER_BIN (run cargo build --release, or set DROVER_BIN)"
mkdir -p "$BENCH_DIR"

# tasks_toml "ip:port,ip:port,..." -> TOML inline array of tasks.
tasks_toml() {
  local list=$1 out="" addr ip port
  local -a addrs
  IFS=, read -ra addrs <<<"$list"
  ((${#addrs[@]} > 0)) || die "empty backend list"
  for addr in "${addrs[@]}"; do
    ip=${addr%:*} port=${addr##*:}
    [[ $ip =~ ^[0-9.]+$ && $port =~ ^[0-9]+$ ]] || die "backend $addr is not IPv4:port"
    out+="${out:+, }{ host = \"$ip\", ports = [$port] }"
  done
  printf '[ %s ]' "$out"
}

config=$BENCH_DIR/drover.toml
catalog=$BENCH_DIR/catalog.toml
{
  echo "# written by drover-candidate.sh for bench.sh section $BENCH_SECTION"
  case $BENCH_SECTION in
    http)
      : "${BENCH_HTTP_PORT:?}" "${BENCH_VHOST:?}" "${BENCH_BACKENDS:?}"
      printf '[http]\nlisten = "%s:%s"\n\n' "$BENCH_LISTEN_ADDR" "$BENCH_HTTP_PORT"
      ;;
    tcp)
      : "${BENCH_TCP_PORT:?}" "${BENCH_TCP_BULK_PORT:?}" "${BENCH_BACKENDS:?}" "${BENCH_BULK_BACKEND:?}"
      lo=$((BENCH_TCP_PORT < BENCH_TCP_BULK_PORT ? BENCH_TCP_PORT : BENCH_TCP_BULK_PORT))
      hi=$((BENCH_TCP_PORT > BENCH_TCP_BULK_PORT ? BENCH_TCP_PORT : BENCH_TCP_BULK_PORT))
      printf '[tcp]\nbind = "%s"\nports = "%s-%s"\n\n' "$BENCH_LISTEN_ADDR" "$lo" "$hi"
      ;;
    *) die "unknown section $BENCH_SECTION" ;;
  esac
  if [[ -n ${DROVER_ADMIN_LISTEN:-} ]]; then
    printf '[admin]\nlisten = "%s"\n\n' "$DROVER_ADMIN_LISTEN"
  fi
  if [[ -n ${DROVER_ACCESS_LOG:-} ]]; then
    printf '[access_log]\npath = "%s"\nformat = "%s"\n\n' "$DROVER_ACCESS_LOG" \
      "${DROVER_ACCESS_LOG_FORMAT:-json}"
  fi
  printf '[catalog]\nfile = "%s"\n\n' "$catalog"
  # A short drain: the harness stops the candidate with SIGTERM and kills it after 5 s.
  printf '[runtime]\nworkers = %d\ndrain_timeout = "1s"\n' "$BENCH_THREADS"
} >"$config"

{
  echo "# written by drover-candidate.sh for bench.sh section $BENCH_SECTION"
  case $BENCH_SECTION in
    http)
      # The service port only names the pool: without [tcp] nothing listens on it.
      printf '[[app]]\nid = "/bench/http"\nlabels = { HAPROXY_0_VHOST = "%s" }\n' "$BENCH_VHOST"
      printf 'ports = [10001]\ntasks = %s\n' "$(tasks_toml "$BENCH_BACKENDS")"
      ;;
    tcp)
      printf '[[app]]\nid = "/bench/tcp"\nports = [%s]\ntasks = %s\n\n' \
        "$BENCH_TCP_PORT" "$(tasks_toml "$BENCH_BACKENDS")"
      printf '[[app]]\nid = "/bench/bulk"\nports = [%s]\ntasks = %s\n' \
        "$BENCH_TCP_BULK_PORT" "$(tasks_toml "$BENCH_BULK_BACKEND")"
      ;;
  esac
} >"$catalog"

export RUST_LOG=${RUST_LOG:-warn}
# Refuse a bad config with every problem listed, rather than a harness timeout.
"$DROVER_BIN" check --config "$config" >/dev/null
exec "$DROVER_BIN" --config "$config"
