//! Upstream HTTP/2 connections (`DROVER_{n}_BACKEND_PROTO` `h2c` or `h2`): on each worker
//! thread, a few multiplexed connections per backend (no lock: each worker runs its own
//! single-threaded runtime).
//!
//! A request takes a stream on the first connection with room: fewer streams in flight
//! than the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` (read off the wire by `h2_sniff`)
//! and than our own cap. When every connection is full a new one is opened; one opening at
//! a time per backend, so a burst of calls shares it instead of opening one each. A
//! connection that received GOAWAY or closed takes no new streams (those in flight
//! finish); pings (`keep_alive_*`) find dead ones; one left without streams for a while
//! is closed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::metrics::Metrics;
use crate::routing::pool::Backend;

use super::h2_sniff::{PeerState, SniffedIo};
use super::CountedBody;

/// Streams in flight on one connection at most, whatever the backend allows: the value
/// RFC 9113 §6.5.2 recommends a peer allow at least, so a backend that says nothing is
/// not flooded either.
pub(super) const MAX_STREAMS_PER_CONN: u32 = 100;
/// Connections to one backend per worker thread at most; past that, new streams queue on
/// the least busy one (hyper holds them until the backend has room).
pub(super) const MAX_CONNS_PER_BACKEND: usize = 32;
/// A ping every this long on a connection; no answer within the same again closes it.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection without streams for this long is closed when next looked at.
pub(super) const IDLE_CLOSE: Duration = Duration::from_secs(90);

/// Where a connection goes: the backend and, for `h2`, the TLS setup and the name its
/// certificate must hold.
#[derive(Clone)]
pub(super) struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    /// The pool key: one set of connections per backend and TLS name.
    fn key(&self) -> (SocketAddr, Option<ServerName<'static>>) {
        (self.addr, self.tls.as_ref().map(|(_, name)| name.clone()))
    }
}

type Key = (SocketAddr, Option<ServerName<'static>>);

/// One pooled connection.
struct Pooled {
    sender: SendRequest<CountedBody>,
    peer: Arc<PeerState>,
    streams: Arc<AtomicUsize>,
    last_used: Instant,
}

impl Pooled {
    fn usable(&self) -> bool {
        !self.sender.is_closed() && !self.peer.going_away()
    }

    fn room(&self) -> bool {
        let limit = self.peer.max_streams().min(MAX_STREAMS_PER_CONN) as usize;
        self.streams.load(Ordering::Relaxed) < limit
    }

    fn take(&mut self) -> Stream {
        self.last_used = Instant::now();
        self.streams.fetch_add(1, Ordering::Relaxed);
        Stream {
            sender: self.sender.clone(),
            slot: StreamSlot(self.streams.clone()),
        }
    }
}

/// A stream's place on its connection: counted in flight until dropped (with the response
/// body, or at once when the request failed).
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection to send one request on, and its stream slot.
pub(super) struct Stream {
    pub sender: SendRequest<CountedBody>,
    pub slot: StreamSlot,
}

thread_local! {
    /// This worker thread's HTTP/2 connections, by backend.
    static POOL: RefCell<HashMap<Key, Vec<Pooled>>> = RefCell::new(HashMap::new());
    /// Held while a connection to the backend is being opened; holds when the last
    /// attempt failed.
    static OPENING: RefCell<HashMap<Key, Arc<tokio::sync::Mutex<Option<Instant>>>>> =
        RefCell::new(HashMap::new());
}

/// A stream towards `target`: on a pooled connection with room, else on a new one.
/// `None` when no connection could be opened (counted against the backend by the caller).
pub(super) async fn checkout(
    target: &Target,
    backend: &Arc<Backend>,
    timeout: Duration,
    metrics: &Metrics,
) -> Option<Stream> {
    let key = target.key();
    if let Some(stream) = pooled(&key) {
        return Some(stream);
    }
    let gate = OPENING.with(|o| o.borrow_mut().entry(key.clone()).or_default().clone());
    let waiting_since = Instant::now();
    let mut last_failure = gate.lock().await;
    // Someone else may have opened one while this call waited.
    if let Some(stream) = pooled(&key) {
        return Some(stream);
    }
    // Or failed to: then this call does not queue up for another try (calls waiting on a
    // backend that does not answer would each wait one more connect timeout).
    if last_failure.is_some_and(|at| at >= waiting_since) {
        return None;
    }
    let Some(mut fresh) = connect(target, backend, timeout, metrics).await else {
        *last_failure = Some(Instant::now());
        return None;
    };
    *last_failure = None;
    let stream = fresh.take();
    POOL.with(|p| p.borrow_mut().entry(key).or_default().push(fresh));
    Some(stream)
}

/// A stream on a pooled connection with room: the first such, or, with every connection
/// full and the cap reached, the least busy.
fn pooled(key: &Key) -> Option<Stream> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let conns = pool.get_mut(key)?;
        let now = Instant::now();
        // Dropping a connection's last sender lets it close once its streams are done.
        conns.retain(|c| {
            c.usable() && (c.streams.load(Ordering::Relaxed) > 0 || now - c.last_used < IDLE_CLOSE)
        });
        if let Some(c) = conns.iter_mut().find(|c| c.room()) {
            return Some(c.take());
        }
        if conns.len() >= MAX_CONNS_PER_BACKEND {
            return conns
                .iter_mut()
                .min_by_key(|c| c.streams.load(Ordering::Relaxed))
                .map(Pooled::take);
        }
        None
    })
}

/// Forgets every pooled connection to `target` that has closed (a request found it so).
pub(super) fn purge_closed(target: &Target) {
    let key = target.key();
    POOL.with(|p| {
        if let Some(conns) = p.borrow_mut().get_mut(&key) {
            conns.retain(Pooled::usable);
        }
    });
}

/// Opens a connection: TCP, TLS with ALPN `h2` for `h2`, the HTTP/2 handshake, and the
/// backend's SETTINGS, all within `timeout`. Counts the connect time.
async fn connect(
    target: &Target,
    backend: &Arc<Backend>,
    timeout: Duration,
    metrics: &Metrics,
) -> Option<Pooled> {
    let started = Instant::now();
    let opened = tokio::time::timeout(timeout, open(target)).await;
    metrics
        .upstream_connect_duration
        .observe(started.elapsed().as_secs_f64());
    match opened {
        Ok(Ok(pooled)) => {
            metrics.upstream_h2_connections.inc();
            Some(pooled)
        }
        Ok(Err(why)) => {
            debug!(backend = %backend.addr, error = %why, "HTTP/2 connect failed");
            None
        }
        Err(_) => {
            debug!(backend = %backend.addr, "HTTP/2 connect timed out");
            None
        }
    }
}

async fn open(target: &Target) -> Result<Pooled, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => handshake(tcp).await,
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("the backend did not agree to HTTP/2 (ALPN h2)".to_string());
            }
            handshake(tls).await
        }
    }
}

async fn handshake<S>(io: S) -> Result<Pooled, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = PeerState::new();
    let io = SniffedIo::new(io, peer.clone());
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_INTERVAL)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(super::listen::H2_STREAM_WINDOW)
        .initial_connection_window_size(super::listen::H2_CONNECTION_WINDOW)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    // Streams go out only once the backend's limit is known (its SETTINGS come first);
    // something that is not an HTTP/2 server closes instead.
    if !peer.settled().await {
        return Err("the backend closed before its HTTP/2 SETTINGS (not an HTTP/2 server?)".into());
    }
    Ok(Pooled {
        sender,
        peer,
        streams: Arc::new(AtomicUsize::new(0)),
        last_used: Instant::now(),
    })
}
