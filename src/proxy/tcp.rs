//! The TCP proxy of one service port: accept, pick a backend from the port's pool, connect
//! with a timeout (falling through to the next backend on failure), then copy bytes both
//! ways with half-close until both sides are done.
//!
//! Which ports exist, and on which worker threads they are accepted, is decided by
//! `proxy::listeners`; this module only serves a listener it is handed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{note_failure, DataPlane, Fault};
use crate::accept::{Gate, Place};
use crate::access_log::{FaultNote, TcpLine};
use crate::config::DEFAULT_MAX_CONNECTIONS;
use crate::routing::pool::InFlight;
use crate::routing::Route;
use crate::shutdown::Shutdown;

/// Connect timeout when the table carries no TCP settings (no `[tcp]` section, e.g. an
/// alias port only).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Copy buffer per direction: its first size, and the most it grows to.
const COPY_BUF_FIRST: usize = 4 * 1024;
const COPY_BUF_MAX: usize = 64 * 1024;

/// Accepts on `listener` until `stop` or the shutdown fires, then drops the listener (the
/// port refuses new connections). Connections already accepted run on: each is tracked by
/// `shutdown`, so the drain waits for them.
pub async fn serve_port(
    listener: TcpListener,
    port: u16,
    place: Place,
    plane: Arc<DataPlane>,
    stop: CancellationToken,
    shutdown: Shutdown,
) {
    // One label lookup per listener, not per connection.
    let accepted = plane
        .metrics
        .tcp_connections
        .with_label_values(&[&port.to_string()]);
    let bytes = PortBytes::new(&plane, port);
    let limit = plane
        .table
        .load()
        .tcp_settings
        .as_ref()
        .map_or(DEFAULT_MAX_CONNECTIONS, |t| t.max_connections);
    let gate = Gate::new(&format!("tcp:{port}"), limit, &plane.metrics);
    loop {
        let (client, peer, slot) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shutdown.triggered() => break,
            next = gate.accept(&listener) => next,
        };
        accepted.inc();
        // On this worker or the least loaded one (`accept::Spread`), boxed. No span per
        // connection: entering and leaving one on every poll cost more than the rest of the
        // accept; the lines logged below name the port themselves.
        let (plane, bytes) = (plane.clone(), bytes.clone());
        place.dispatch(client, slot, &shutdown, move |client| {
            proxy(client, peer, port, plane, bytes)
        });
    }
    debug!(port, "stopped accepting");
}

/// `drover_tcp_bytes_total` of one port, looked up once per listener.
#[derive(Clone)]
struct PortBytes {
    sent: IntCounter,
    received: IntCounter,
}

impl PortBytes {
    fn new(plane: &DataPlane, port: u16) -> PortBytes {
        let port = port.to_string();
        let bytes = &plane.metrics.tcp_bytes;
        PortBytes {
            sent: bytes.with_label_values(&[&port, "in"]),
            received: bytes.with_label_values(&[&port, "out"]),
        }
    }
}

/// What one connection came to: for the byte counters and the access log.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<Route>>,
    upstream: Option<SocketAddr>,
    /// Client to backend.
    sent: u64,
    /// Backend to client.
    received: u64,
    fault: Option<FaultNote>,
}

impl Outcome {
    fn fault(&mut self, kind: Fault, reason: &str) {
        self.fault = Some(FaultNote {
            kind,
            reason: reason.to_string(),
        });
    }
}

/// Serves one accepted connection to its end, then counts its bytes and logs it.
async fn proxy(
    client: TcpStream,
    peer: SocketAddr,
    port: u16,
    plane: Arc<DataPlane>,
    bytes: PortBytes,
) {
    let logging = plane.access_log.enabled();
    let start = logging.then(SystemTime::now);
    let started = tokio::time::Instant::now();
    let mut outcome = Outcome::default();
    let client_addr = serve(client, peer, port, &plane, &mut outcome).await;
    bytes.sent.inc_by(outcome.sent);
    bytes.received.inc_by(outcome.received);
    if let Some(start) = start {
        plane.access_log.tcp(&TcpLine {
            start,
            client: client_addr,
            port,
            route: outcome.route.as_ref().map_or("", |r| r.log_name.as_str()),
            upstream: outcome.upstream,
            bytes_in: outcome.sent,
            bytes_out: outcome.received,
            duration: started.elapsed(),
            fault: outcome.fault.as_ref(),
        });
    }
}

/// The connection itself; returns the client's address (the PROXY-protocol client when
/// that is trusted).
async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    plane: &DataPlane,
    outcome: &mut Outcome,
) -> SocketAddr {
    // One load per connection; keep only what is needed, drop the guard before any await.
    let (route, connect_timeout, trusted, send_proxy) = {
        let table = plane.table.load();
        let Some(route) = table.lookup_tcp(port) else {
            // The port was removed between accept and now: nothing to reach.
            debug!(port, %peer, fault = Fault::Drover.as_str(), "no route for this port (the table changed since the accept); closing");
            outcome.fault(Fault::Drover, "no route for this port");
            return peer;
        };
        let settings = table.tcp_settings.as_ref();
        (
            route.clone(),
            settings.map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.connect_timeout),
            settings.map_or_else(Vec::new, |t| t.proxy_protocol.clone()),
            settings.and_then(|t| t.send_proxy_protocol),
        )
    };
    outcome.route = Some(route.clone());
    // Only a PROXY header to the backend names the address the client connected to: ask
    // the kernel (getsockname) only then.
    let local = if send_proxy.is_some() {
        client.local_addr().unwrap_or(peer)
    } else {
        peer
    };
    let peer = match super::proxied_client(&mut client, peer, &trusted).await {
        Some(p) => p,
        None => {
            outcome.fault(Fault::Client, "no valid PROXY protocol header");
            return peer;
        }
    };
    if !route.rules.admits(peer.ip()) {
        // HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL: a TCP client from elsewhere is closed on.
        debug!(port, %peer, route = %route.name, fault = Fault::Client.as_str(), "source not allowed; closing");
        outcome.fault(Fault::Client, "source not allowed");
        return peer;
    }
    if let Some(cert) = &route.rules.ssl_cert {
        let upstream = Upstream {
            connect_timeout,
            send_proxy,
            local,
        };
        proxy_tls(client, peer, (port, cert), &route, upstream, plane, outcome).await;
        return peer;
    }
    let Some(first) = route.pool.pick(peer.ip()) else {
        // A port with no usable task closes at once, so the client sees it is down.
        debug!(port, %peer, route = %route.name, fault = Fault::Upstream.as_str(), "no backend in the pool; closing");
        outcome.fault(Fault::Upstream, "no backend in the pool");
        return peer;
    };
    let Some((mut upstream, _in_flight, backend)) =
        connect(&route, first, connect_timeout, plane).await
    else {
        warn!(port, %peer, route = %route.name, fault = Fault::Upstream.as_str(), "no backend reachable; closing");
        outcome.fault(Fault::Upstream, "no backend reachable");
        return peer;
    };
    outcome.upstream = Some(backend);
    let announce = Upstream {
        connect_timeout,
        send_proxy,
        local,
    };
    if let Err(e) = announce.send(&mut upstream, peer).await {
        debug!(port, %peer, fault = Fault::Upstream.as_str(), error = %e, "cannot send the PROXY header; closing");
        outcome.fault(Fault::Upstream, "cannot send the PROXY header");
        return peer;
    }
    // The client's TCP_NODELAY was set when it was accepted (`Gate::accept`).
    if let Err(e) = upstream.set_nodelay(true) {
        debug!(port, %peer, side = "backend", error = %e, "cannot set TCP_NODELAY");
    }
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    // Each direction runs until its reader's EOF, which it passes on as a write shutdown, so
    // a half-close goes through; an error in either direction ends both.
    let (mut sent, mut received) = (0, 0);
    let (client_done, upstream_done) = (AtomicBool::new(false), AtomicBool::new(false));
    let copied = tokio::try_join!(
        pump(
            (client_read, upstream_write),
            &mut sent,
            (Fault::Client, Fault::Upstream),
            (&client_done, &upstream_done)
        ),
        pump(
            (upstream_read, client_write),
            &mut received,
            (Fault::Upstream, Fault::Client),
            (&upstream_done, &client_done)
        )
    );
    (outcome.sent, outcome.received) = (sent, received);
    match copied {
        Ok(_) => {
            debug!(port, %peer, route = %route.name, sent, received, "connection done")
        }
        // Resets and broken pipes are the peers' doing and routine; keep them out of warn.
        Err((side, e)) => {
            debug!(port, %peer, route = %route.name, fault = side.as_str(), error = %e, "connection ended");
            outcome.fault(side, &format!("connection ended: {e}"));
        }
    }
    peer
}

/// How backends are reached: the connect timeout, and whether and how a backend is told
/// who the client is (`[tcp] send_proxy_protocol`).
#[derive(Clone, Copy)]
struct Upstream {
    connect_timeout: Duration,
    send_proxy: Option<u8>,
    /// The address the client connected to: the header's destination.
    local: SocketAddr,
}

impl Upstream {
    async fn send(&self, upstream: &mut TcpStream, client: SocketAddr) -> io::Result<()> {
        let header = match self.send_proxy {
            None => return Ok(()),
            Some(1) => super::proxy_protocol::encode_v1(client, self.local),
            Some(_) => super::proxy_protocol::encode_v2(client, self.local),
        };
        upstream.write_all(&header).await
    }
}

/// How long a client on a TLS service port may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A service port with its own certificate (`HAPROXY_{n}_SSL_CERT`): TLS is terminated
/// here, then the bytes go to a backend as on any service port.
async fn proxy_tls(
    client: TcpStream,
    peer: SocketAddr,
    (port, cert): (u16, &std::path::Path),
    route: &Route,
    announce: Upstream,
    plane: &DataPlane,
    outcome: &mut Outcome,
) {
    let acceptor = match port_acceptor(cert) {
        Ok(a) => a,
        Err(e) => {
            warn!(port, route = %route.name, fault = Fault::Drover.as_str(), error = %e, "service port certificate does not load; closing");
            outcome.fault(Fault::Drover, "service port certificate does not load");
            return;
        }
    };
    let mut tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(client)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(port, %peer, fault = Fault::Client.as_str(), error = %e, "TLS handshake failed");
            outcome.fault(Fault::Client, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(port, %peer, fault = Fault::Client.as_str(), "no TLS handshake in time; closing");
            outcome.fault(Fault::Client, "no TLS handshake in time");
            return;
        }
    };
    let Some(first) = route.pool.pick(peer.ip()) else {
        debug!(port, %peer, route = %route.name, fault = Fault::Upstream.as_str(), "no backend in the pool; closing");
        outcome.fault(Fault::Upstream, "no backend in the pool");
        return;
    };
    let Some((mut upstream, _in_flight, backend)) =
        connect(route, first, announce.connect_timeout, plane).await
    else {
        warn!(port, %peer, route = %route.name, fault = Fault::Upstream.as_str(), "no backend reachable; closing");
        outcome.fault(Fault::Upstream, "no backend reachable");
        return;
    };
    outcome.upstream = Some(backend);
    let _ = upstream.set_nodelay(true);
    if let Err(e) = announce.send(&mut upstream, peer).await {
        debug!(port, %peer, fault = Fault::Upstream.as_str(), error = %e, "cannot send the PROXY header; closing");
        outcome.fault(Fault::Upstream, "cannot send the PROXY header");
        return;
    }
    match tokio::io::copy_bidirectional(&mut tls, &mut upstream).await {
        Ok((sent, received)) => {
            (outcome.sent, outcome.received) = (sent, received);
            debug!(port, %peer, route = %route.name, sent, received, "TLS connection done")
        }
        Err(e) => {
            // copy_bidirectional does not say which side failed.
            debug!(port, %peer, route = %route.name, error = %e, "TLS connection ended");
            outcome.fault(Fault::Client, &format!("connection ended: {e}"));
        }
    }
}

/// The acceptor for a certificate file, loaded once per worker thread and again when the
/// file changes (its modification time).
fn port_acceptor(
    path: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, crate::proxy::tls::TlsError> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::SystemTime;
    thread_local! {
        static CACHE: RefCell<HashMap<std::path::PathBuf, (SystemTime, tokio_rustls::TlsAcceptor)>> =
            RefCell::new(HashMap::new());
    }
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|source| crate::proxy::tls::TlsError::Stat {
            file: path.to_path_buf(),
            source,
        })?;
    if let Some(hit) = CACHE.with(|c| {
        c.borrow()
            .get(path)
            .filter(|(at, _)| *at == modified)
            .map(|(_, a)| a.clone())
    }) {
        return Ok(hit);
    }
    let acceptor = crate::proxy::tls::acceptor_for_file(path)?;
    CACHE.with(|c| {
        c.borrow_mut()
            .insert(path.to_path_buf(), (modified, acceptor.clone()))
    });
    Ok(acceptor)
}

/// Copies `from` to `to` until EOF, then shuts `to` down. The buffer starts small and
/// doubles (up to `COPY_BUF_MAX`) each time a read fills it: short exchanges keep a small
/// footprint per connection, bulk streams soon move 64 KiB per syscall.
/// `total` counts what was written, kept when the copy ends in an error. An error says
/// whose it was: `from`'s (a failed read) or `to`'s (a failed write).
/// `done` is set at `from`'s EOF; `other_done` is the other direction's. When the other
/// direction ended first, both sockets close as soon as this returns, and the close sends
/// `to` its FIN: the write shutdown is left out (one system call fewer per connection).
/// Neither socket has unread bytes then (each reader saw its EOF), so the close is a FIN,
/// not a reset.
async fn pump(
    (mut from, mut to): (ReadHalf<'_>, WriteHalf<'_>),
    total: &mut u64,
    (from_side, to_side): (Fault, Fault),
    (done, other_done): (&AtomicBool, &AtomicBool),
) -> Result<(), (Fault, io::Error)> {
    // Read into spare capacity: zeroing the buffers first was a tenth of what a short
    // connection cost.
    let mut buf = Vec::with_capacity(COPY_BUF_FIRST);
    loop {
        buf.clear();
        let n = from.read_buf(&mut buf).await.map_err(|e| (from_side, e))?;
        if n == 0 {
            done.store(true, Ordering::Relaxed);
            if !other_done.load(Ordering::Relaxed) {
                to.shutdown().await.map_err(|e| (to_side, e))?;
            }
            return Ok(());
        }
        to.write_all(&buf).await.map_err(|e| (to_side, e))?;
        *total += n as u64;
        if n == buf.capacity() && n < COPY_BUF_MAX {
            buf.reserve_exact(n);
        }
    }
}

/// Connects to the backend at `first`, then to the ones after it, until one answers or every
/// backend was tried once. Returns the stream and the backend's in-flight guard.
async fn connect(
    route: &Route,
    first: usize,
    timeout: Duration,
    plane: &DataPlane,
) -> Option<(TcpStream, InFlight, SocketAddr)> {
    for attempt in 0..route.pool.max_attempts() {
        let Some(backend) = route.pool.attempt(first, attempt) else {
            continue;
        };
        // Count the attempt as in flight so leastconn sees connects still pending.
        let in_flight = backend.start();
        let started = tokio::time::Instant::now();
        let connected = tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await;
        plane
            .metrics
            .upstream_connect_duration
            .observe(started.elapsed().as_secs_f64());
        let result = match connected {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )),
        };
        match result {
            Ok(stream) => {
                backend.succeeded();
                if route.pool.tracks_latency() {
                    backend.observe_latency(started.elapsed());
                }
                return Some((stream, in_flight, backend.addr));
            }
            Err(e) => {
                note_failure(plane, route, backend);
                plane
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&route.name, "connect"])
                    .inc();
                plane.upstream_errors.report(
                    &route.name,
                    Some(backend.addr),
                    Fault::Upstream,
                    format_args!("cannot connect: {e}"),
                );
                warn!(route = %route.name, backend = %backend.addr, attempt, error = %e,
                    "cannot connect to backend");
            }
        }
    }
    None
}
