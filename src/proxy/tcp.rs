//! The TCP proxy of one service port: accept, pick a backend from the port's pool, connect
//! with a timeout (falling through to the next backend on failure), then copy bytes both
//! ways with half-close until both sides are done.
//!
//! Which ports exist, and on which worker threads they are accepted, is decided by
//! `proxy::listeners`; this module only serves a listener it is handed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::routing::pool::InFlight;
use crate::routing::Route;
use crate::shutdown::Shutdown;
use crate::Shared;

/// Connect timeout when the table carries no TCP settings (no `[tcp]` section, e.g. an
/// alias port only).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Buffer per direction for copying bytes.
const COPY_BUF: usize = 64 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts on `listener` until `stop` or the shutdown fires, then drops the listener (the
/// port refuses new connections). Connections already accepted run on: each is tracked by
/// `shutdown`, so the drain waits for them.
pub async fn serve_port(
    listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    stop: CancellationToken,
    shutdown: Shutdown,
) {
    // One label lookup per listener, not per connection.
    let accepted = shared
        .metrics
        .tcp_connections
        .with_label_values(&[&port.to_string()]);
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shutdown.triggered() => break,
            next = listener.accept() => next,
        };
        match next {
            Ok((client, peer)) => {
                accepted.inc();
                let conn = shutdown.track(proxy(client, peer, port, shared.clone()));
                tokio::spawn(conn.in_current_span());
            }
            Err(e) => {
                warn!(port, error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = shutdown.triggered() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    debug!(port, "stopped accepting");
}

/// Serves one accepted connection to its end.
async fn proxy(mut client: TcpStream, peer: SocketAddr, port: u16, shared: Arc<Shared>) {
    // One load per connection; keep only the route and the timeout, drop the guard before
    // any await.
    let (route, connect_timeout) = {
        let table = shared.table.load();
        let Some(route) = table.lookup_tcp(port) else {
            // The port was removed between accept and now: nothing to reach.
            debug!(port, %peer, "no route for this port; closing");
            return;
        };
        let timeout = table
            .tcp_settings
            .as_ref()
            .map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.connect_timeout);
        (route.clone(), timeout)
    };
    let Some(first) = route.pool.pick(peer.ip()) else {
        // A port with no usable task closes at once, so the client sees it is down.
        debug!(port, %peer, route = %route.name, "no backend in the pool; closing");
        return;
    };
    let Some((mut upstream, _in_flight)) = connect(&route, first, connect_timeout, &shared).await
    else {
        warn!(port, %peer, route = %route.name, "no backend reachable; closing");
        return;
    };
    for (side, stream) in [("client", &client), ("backend", &upstream)] {
        if let Err(e) = stream.set_nodelay(true) {
            debug!(port, %peer, side, error = %e, "cannot set TCP_NODELAY");
        }
    }
    // copy_bidirectional shuts down one side's write half when the other side's read hits
    // EOF and keeps copying the other way, so a half-close passes through.
    // 64 KiB buffers (tokio's default is 8 KiB): a quarter of the syscalls on bulk streams.
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUF, COPY_BUF)
        .await
    {
        Ok((sent, received)) => {
            debug!(port, %peer, route = %route.name, sent, received, "connection done")
        }
        // Resets and broken pipes are the peers' doing and routine; keep them out of warn.
        Err(e) => debug!(port, %peer, route = %route.name, error = %e, "connection ended"),
    }
}

/// Connects to the backend at `first`, then to the ones after it, until one answers or every
/// backend was tried once. Returns the stream and the backend's in-flight guard.
async fn connect(
    route: &Route,
    first: usize,
    timeout: Duration,
    shared: &Shared,
) -> Option<(TcpStream, InFlight)> {
    for attempt in 0..route.pool.backends().len() {
        let backend = route.pool.nth_after(first, attempt);
        // Count the attempt as in flight so leastconn sees connects still pending.
        let in_flight = backend.start();
        let result = match tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )),
        };
        match result {
            Ok(stream) => {
                backend.connect_succeeded();
                return Some((stream, in_flight));
            }
            Err(e) => {
                backend.connect_failed();
                shared
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&route.name, "connect"])
                    .inc();
                warn!(route = %route.name, backend = %backend.addr, attempt, error = %e,
                    "cannot connect to backend");
            }
        }
    }
    None
}
