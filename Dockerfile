# Drover's container image: built with the stable Rust toolchain, run on slim Debian as a
# non-root user that may still bind ports below 1024 (file capability on the binary).
#
#   docker build -t drover:0.1.0 .
#   docker run --network host -e DROVER_MARATHON__URLS=http://marathon.mesos:8080 \
#     -e DROVER_MARATHON__GROUPS=external -e DROVER_HTTP__LISTEN=0.0.0.0:80 \
#     -e DROVER_ADMIN__LISTEN=0.0.0.0:9090 drover:0.1.0
#
# Configuration comes from DROVER_<SECTION>__<KEY> variables (docs/configuration.md), or a
# file mounted and named with `--config` as the container's arguments.

# --- build ---
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock.
RUN cargo build --release --locked --bin drover

# --- run ---
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libcap2-bin tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin drover
COPY --from=build /src/target/release/drover /usr/local/bin/drover
# Ports 80 and 443 without root: the capability on the file, not a root process.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/drover
USER drover
# HTTP, HTTPS, admin (metrics, status page, health), app-id router: the Marathon app's ports.
EXPOSE 80 443 9090 9091
# Drover drains on SIGTERM (runtime.drain_timeout, default 10 s).
STOPSIGNAL SIGTERM
# tini reaps and forwards signals; Drover handles SIGTERM, SIGHUP, SIGUSR1 itself.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/drover"]
# Assumes the admin listener on port 9090 (DROVER_ADMIN__LISTEN=0.0.0.0:9090), as the Marathon app.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/readyz || exit 1
