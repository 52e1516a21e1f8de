//! Starting and stopping a whole Drover: binds the configured listeners, starts the worker
//! threads (one single-threaded runtime each) and the control thread, and wires the tasks.
//! `main` and the integration tests both go through `Server::start`.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::accept::{Gate, Place, Spread};
use crate::access_log::{self, AccessLog};
use crate::admin::status::Sampler;
use crate::admin::AdminView;
use crate::config::{reload, Config, DnsConfig, DEFAULT_MAX_CONNECTIONS};
use crate::dns::server::DnsServerSettings;
use crate::handles::{
    self, ConfigWriter, EjectionReceiver, HealthStatusWriter, ListenerStatusWriter, Reread,
    RouteTableWriter, SourceErrors, UpstreamErrorLog, ZoneReader, ZoneWriter,
};
use crate::metrics::Metrics;
use crate::proxy::http::RouteBy;
use crate::proxy::tls::CertStore;
use crate::proxy::DataPlane;
use crate::routing::RouteTable;
use crate::shutdown::Shutdown;
use crate::upgrade::{self, Inherited, Kind, Sockets};
use crate::{admin, control, dns, health, proxy, source};

/// Why Drover could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread or runtime: {0}")]
    Runtime(std::io::Error),
    #[error("https.certs: {0}")]
    Tls(#[source] crate::proxy::tls::TlsError),
}

/// A running Drover.
pub struct Server {
    view: Arc<AdminView>,
    shutdown: Shutdown,
    http_addr: Option<SocketAddr>,
    appid_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    dns_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    control: JoinHandle<bool>,
}

/// How `Server::start` runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The file `config` came from; watched and re-read on change and on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Install SIGTERM/SIGINT (drain, exit), SIGHUP (re-read), SIGUSR1 (access log) and
    /// SIGUSR2 (upgrade) handlers, and be the process's own server: take over the sockets an
    /// upgrading parent hands down (`upgrade`), and tell it and systemd when ready.
    pub handle_signals: bool,
}

// === impl Server ===

impl Server {
    /// Binds the listeners of `config` and starts every task. Returns once the sockets are
    /// bound; the first route table follows as soon as the catalog is read (`/readyz`).
    pub fn start(config: Config, options: Options) -> Result<Server, StartError> {
        let inherited = Arc::new(if options.handle_signals {
            Inherited::from_env()
        } else {
            Inherited::none()
        });
        let sockets = Sockets::new();
        let acquire = |kind, what, addr| acquire(kind, what, addr, &inherited, &sockets);
        let http = config
            .http
            .as_ref()
            .map(|h| acquire(Kind::Http, "http.listen", h.listen))
            .transpose()?;
        let admin = config
            .admin
            .as_ref()
            .map(|a| acquire(Kind::Admin, "admin.listen", a.listen))
            .transpose()?;
        let appid = config
            .http
            .as_ref()
            .and_then(|h| h.appid_listen)
            .map(|addr| acquire(Kind::AppId, "http.appid_listen", addr))
            .transpose()?;
        let http_addr = http.as_ref().map(|l| l.local_addr().expect("bound socket"));
        let appid_addr = appid
            .as_ref()
            .map(|l| l.local_addr().expect("bound socket"));
        let admin_addr = admin
            .as_ref()
            .map(|l| l.local_addr().expect("bound socket"));

        let https = config
            .https
            .as_ref()
            .map(|h| acquire(Kind::Https, "https.listen", h.listen))
            .transpose()?;
        let https_addr = https
            .as_ref()
            .map(|l| l.local_addr().expect("bound socket"));
        let dns = config
            .dns
            .as_ref()
            .map(|d| acquire_dns(d, &inherited, &sockets))
            .transpose()?;
        let service_ports = inherited.take_service_ports();
        let udp_ports = inherited.take_udp_service_ports();
        // Whatever else the old process handed over, this config does not want.
        inherited.close_rest();
        // A process started by an upgrade accepts on the sockets it shares with the old one
        // only once its first route table is stored; until then the old one serves them.
        let ready = CancellationToken::new();
        let accept_after = inherited.is_upgrade().then(|| ready.clone());
        let dns_addr = dns
            .as_ref()
            .map(|(udp, _)| udp.local_addr().expect("bound socket"));

        let wiring = Wiring::new();
        // Certificates load before anything starts: a bad directory is refused at start.
        let certs = config
            .https
            .as_ref()
            .map(|h| CertStore::load(&h.certs, &wiring.metrics).map(Arc::new))
            .transpose()
            .map_err(StartError::Tls)?;
        let shutdown = Shutdown::new();
        let workers_stop = CancellationToken::new();
        let (workers, mut worker_threads) = start_workers(config.runtime.workers, &workers_stop)?;
        if let (Some((udp, tcp)), Some(dns_config)) = (dns, config.dns.as_ref()) {
            let settings = DnsServerSettings::from_config(dns_config);
            let (zone, metrics) = (wiring.out.zone.reader(), wiring.metrics.clone());
            let after = accept_after.clone();
            worker_threads.push(start_dns(
                udp, tcp, settings, zone, metrics, &shutdown, after,
            )?);
        }

        let max_connections = config
            .http
            .as_ref()
            .map_or(DEFAULT_MAX_CONNECTIONS, |h| h.max_connections);
        for (listener, by, name) in [
            (http, RouteBy::Host, "http"),
            (appid, RouteBy::AppId, "appid"),
        ] {
            let Some(listener) = listener else { continue };
            let addr = listener.local_addr().map_err(StartError::Runtime)?;
            let by_what = match by {
                RouteBy::Host => "host",
                RouteBy::AppId => "X-Marathon-App-Id",
            };
            info!(%addr, by = by_what, workers = workers.len(), max_connections, "HTTP router listening");
            let gate = Gate::new(name, max_connections, &wiring.metrics);
            let spread = Spread::new(workers.clone());
            for (me, handle) in workers.iter().enumerate() {
                let listener = listener.try_clone().map_err(StartError::Runtime)?;
                let (plane, shutdown, gate) =
                    (wiring.plane.clone(), shutdown.clone(), gate.clone());
                let place = Place {
                    spread: spread.clone(),
                    me,
                };
                let after = accept_after.clone();
                handle.spawn(async move {
                    if !accept_when_ready(after, &shutdown).await {
                        return;
                    }
                    match crate::lazy_socket::LazyListener::new(listener) {
                        Ok(l) => proxy::http::serve(l, gate, place, by, plane, shutdown).await,
                        Err(e) => error!(error = %e, "cannot register an HTTP listener"),
                    }
                });
            }
        }

        if let (Some(listener), Some(store)) = (https, certs.as_ref()) {
            let acceptor = tokio_rustls::TlsAcceptor::from(store.server_config());
            let addr = listener.local_addr().map_err(StartError::Runtime)?;
            info!(%addr, workers = workers.len(), max_connections, "HTTPS router listening");
            let gate = Gate::new("https", max_connections, &wiring.metrics);
            let spread = Spread::new(workers.clone());
            for (me, handle) in workers.iter().enumerate() {
                let listener = listener.try_clone().map_err(StartError::Runtime)?;
                let (plane, shutdown, acceptor, gate) = (
                    wiring.plane.clone(),
                    shutdown.clone(),
                    acceptor.clone(),
                    gate.clone(),
                );
                let place = Place {
                    spread: spread.clone(),
                    me,
                };
                let after = accept_after.clone();
                handle.spawn(async move {
                    if !accept_when_ready(after, &shutdown).await {
                        return;
                    }
                    match crate::lazy_socket::LazyListener::new(listener) {
                        Ok(l) => {
                            proxy::http::serve_tls(l, gate, place, acceptor, plane, shutdown).await
                        }
                        Err(e) => error!(error = %e, "cannot register an HTTPS listener"),
                    }
                });
            }
        }

        let view = wiring.view.clone();
        let control = {
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("drover-control".into())
                .spawn(move || {
                    let rt = current_thread_runtime().expect("control runtime");
                    let handover = Handover {
                        inherited,
                        sockets,
                        service_ports,
                        udp_ports,
                        ready,
                        accept_after,
                    };
                    let clean = rt.block_on(control_plane(
                        config, options, wiring, shutdown, workers, admin, certs, handover,
                    ));
                    workers_stop.cancel();
                    for t in worker_threads {
                        let _ = t.join();
                    }
                    clean
                })
                .map_err(StartError::Runtime)?
        };
        Ok(Server {
            view,
            shutdown,
            http_addr,
            appid_addr,
            admin_addr,
            dns_addr,
            https_addr,
            control,
        })
    }

    /// The bound address of the HTTPS router, if configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The bound address of the DNS server (UDP and TCP), if configured.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The bound address of the HTTP router, if configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound address of the `X-Marathon-App-Id` router, if configured.
    pub fn appid_addr(&self) -> Option<SocketAddr> {
        self.appid_addr
    }

    /// The bound address of the admin listener, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// What admin shows: the table, zone and statuses in use, and the metrics.
    pub fn view(&self) -> &AdminView {
        &self.view
    }

    /// Starts a graceful shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Blocks until the server has stopped; true if every in-flight request and connection
    /// finished before the drain deadline.
    pub fn wait(self) -> bool {
        self.join().unwrap_or(false)
    }

    /// As `wait`, but tells a crash (a panic on the control thread) apart: `Err` then.
    pub fn join(self) -> std::thread::Result<bool> {
        self.control.join()
    }
}

/// The listener for `kind` at `addr`: the one an upgrading parent handed down, else a new
/// one; recorded in `sockets` for the next upgrade.
fn acquire(
    kind: Kind,
    what: &'static str,
    addr: SocketAddr,
    inherited: &Inherited,
    sockets: &Sockets,
) -> Result<StdListener, StartError> {
    let listener = match inherited.take_tcp(kind, addr) {
        Some(l) => l,
        None => bind(what, addr)?,
    };
    sockets
        .insert(kind, addr, &listener)
        .map_err(|source| StartError::Bind { what, addr, source })?;
    Ok(listener)
}

/// The DNS sockets: the pair handed down, else `bind_dns`; recorded in `sockets`.
fn acquire_dns(
    dns: &DnsConfig,
    inherited: &Inherited,
    sockets: &Sockets,
) -> Result<(std::net::UdpSocket, StdListener), StartError> {
    let addr = dns.listen;
    let handed = (
        inherited.take_udp(Kind::DnsUdp, addr),
        inherited.take_tcp(Kind::DnsTcp, addr),
    );
    let (udp, tcp) = match handed {
        (Some(udp), Some(tcp)) => (udp, tcp),
        _ => bind_dns(dns)?,
    };
    let fail = |source| StartError::Bind {
        what: "dns.listen",
        addr,
        source,
    };
    sockets.insert(Kind::DnsUdp, addr, &udp).map_err(fail)?;
    sockets.insert(Kind::DnsTcp, addr, &tcp).map_err(fail)?;
    Ok((udp, tcp))
}

/// Waits for `after` (a process started by an upgrade: its first route table) before a
/// listener starts accepting; at once when `None`. False if the shutdown came first.
async fn accept_when_ready(after: Option<CancellationToken>, shutdown: &Shutdown) -> bool {
    let Some(after) = after else { return true };
    tokio::select! {
        _ = after.cancelled() => true,
        _ = shutdown.triggered() => false,
    }
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<StdListener, StartError> {
    let listener =
        StdListener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })?;
    listener
        .set_nonblocking(true)
        .and_then(|()| crate::accept::deepen_backlog(&listener))
        .map_err(|source| StartError::Bind { what, addr, source })?;
    Ok(listener)
}

/// Reloads the certificates when their directory changes or on SIGHUP (`reread`); open
/// connections keep the certificate they were made with.
async fn watch_certs(
    store: Arc<CertStore>,
    metrics: Metrics,
    mut reread: watch::Receiver<()>,
    shutdown: Shutdown,
) {
    let mut files = crate::watch::FileWatch::start_dir(store.dir(), "certificate directory");
    loop {
        tokio::select! {
            _ = files.changed() => {}
            r = reread.changed() => if r.is_err() { return },
            _ = shutdown.triggered() => return,
        }
        if let Err(e) = store.reload(&metrics) {
            warn!(error = %e, "certificates not reloaded; the loaded ones stay");
            metrics.tls_reloads.with_label_values(&["error"]).inc();
        }
    }
}

/// Binds the DNS sockets: UDP first, then TCP on the same address (so port 0 gives both
/// one port).
fn bind_dns(dns: &DnsConfig) -> Result<(std::net::UdpSocket, StdListener), StartError> {
    let what = "dns.listen";
    let fail = |addr, source| StartError::Bind { what, addr, source };
    // With port 0 the UDP port the system picks may be taken for TCP: pick again.
    let tries = if dns.listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = std::net::UdpSocket::bind(dns.listen).map_err(|e| fail(dns.listen, e))?;
        let addr = udp.local_addr().map_err(|e| fail(dns.listen, e))?;
        udp.set_nonblocking(true).map_err(|e| fail(addr, e))?;
        match bind(what, addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one try"))
}

/// Runs the DNS server on a thread of its own (a current-thread runtime, as DESIGN §6b
/// measured cheapest), so neither it nor the control plane waits on the other.
fn start_dns(
    udp: std::net::UdpSocket,
    tcp: StdListener,
    settings: DnsServerSettings,
    zone: ZoneReader,
    metrics: Metrics,
    shutdown: &Shutdown,
    accept_after: Option<CancellationToken>,
) -> Result<JoinHandle<()>, StartError> {
    let shutdown = shutdown.clone();
    let addr = udp.local_addr().map_err(StartError::Runtime)?;
    std::thread::Builder::new()
        .name("drover-dns".into())
        .spawn(move || {
            let rt = match current_thread_runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "cannot start the DNS runtime");
                    return;
                }
            };
            rt.block_on(async move {
                if !accept_when_ready(accept_after, &shutdown).await {
                    return;
                }
                let sockets = (
                    tokio::net::UdpSocket::from_std(udp),
                    tokio::net::TcpListener::from_std(tcp),
                );
                match sockets {
                    (Ok(udp), Ok(tcp)) => {
                        info!(%addr, "DNS listening (UDP and TCP)");
                        dns::server::serve(udp, tcp, settings, zone, metrics, shutdown).await;
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        error!(error = %e, "cannot register the DNS sockets")
                    }
                }
            });
        })
        .map_err(StartError::Runtime)
}

/// How far ahead a worker's timer wheel always holds a deadline (`keep_clock_armed`).
const WORKER_TICK: Duration = Duration::from_secs(1);

/// Runs until `stop`, waking every `WORKER_TICK`. tokio writes to the runtime's eventfd
/// whenever a timer is set earlier than the earliest one the driver last parked with, and
/// an idle wheel counts as none: then every connection's first timeout (header, connect)
/// cost one `write` system call. With this tick always pending, timeouts longer than the
/// tick (all defaults are) fall after it and need no wake-up.
async fn keep_clock_armed(stop: CancellationToken) {
    let mut tick = tokio::time::interval(WORKER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}

/// Starts `n` data-plane threads, each driving its own current-thread runtime until `stop`.
fn start_workers(
    n: usize,
    stop: &CancellationToken,
) -> Result<(Vec<Handle>, Vec<JoinHandle<()>>), StartError> {
    let mut handles = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("drover-worker-{i}"))
            .spawn(move || {
                let rt = match current_thread_runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(keep_clock_armed(stop));
            })
            .map_err(StartError::Runtime)?;
        let handle = rx
            .recv()
            .map_err(|_| StartError::Runtime(std::io::Error::other("worker thread died")))?
            .map_err(StartError::Runtime)?;
        handles.push(handle);
        threads.push(thread);
    }
    Ok((handles, threads))
}

/// Every handle of every task, made once in `start` and given out task by task, each task
/// only its own.
struct Wiring {
    metrics: Metrics,
    /// `control`'s writers: the table, the zone, the config in use.
    out: control::Outputs,
    health: HealthStatusWriter,
    listeners: ListenerStatusWriter,
    sources: SourceErrors,
    ejections: EjectionReceiver,
    /// Re-read requests: SIGHUP and admin ask, the reload, the sources and TLS listen.
    reread: Reread,
    /// Keeps the last upstream errors the proxies report, for the status page.
    upstream_errors: UpstreamErrorLog,
    /// The status page's rates and latencies, sampled from the metrics.
    sampler: Sampler,
    /// What the proxies share: the table reader, metrics, the ejections' and upstream
    /// errors' sending ends.
    plane: Arc<DataPlane>,
    view: Arc<AdminView>,
    /// The ZooKeeper followers: the Mesos source and aliases follow, admin lists them.
    zk: crate::zk::Zk,
}

// === impl Wiring ===

impl Wiring {
    fn new() -> Wiring {
        let metrics = Metrics::new(prometheus::Registry::new());
        let out = control::Outputs {
            table: RouteTableWriter::new(),
            zone: ZoneWriter::new(),
            config: ConfigWriter::new(),
            metrics: metrics.clone(),
        };
        let health = HealthStatusWriter::new();
        let listeners = ListenerStatusWriter::new();
        let sources = SourceErrors::new();
        let (ejected, ejections) = handles::ejections();
        let reread = Reread::new();
        let (failed, upstream_errors, failures) = handles::upstream_errors();
        let access_log = AccessLog::new(metrics.access_log_dropped.clone());
        let plane = Arc::new(
            DataPlane::new(out.table.reader(), metrics.clone(), ejected, failed)
                .with_access_log(access_log),
        );
        let sampler = Sampler::new(metrics.clone());
        let zk = crate::zk::Zk::new(metrics.clone());
        let view = Arc::new(AdminView {
            routes: out.table.reader(),
            zone: out.zone.reader(),
            config: out.config.reader(),
            health: health.reader(),
            listeners: listeners.reader(),
            sources: sources.reader(),
            metrics: metrics.clone(),
            reread: reread.clone(),
            upstream_errors: failures,
            traffic: sampler.reader(),
            started: tokio::time::Instant::now(),
            zk: zk.clone(),
        });
        Wiring {
            metrics,
            out,
            health,
            listeners,
            sources,
            ejections,
            reread,
            upstream_errors,
            sampler,
            plane,
            view,
            zk,
        }
    }
}

/// What the upgrade needs on the control thread.
struct Handover {
    /// What an upgrading parent handed down (empty otherwise); told when ready.
    inherited: Arc<Inherited>,
    /// Every listening socket held, for the next upgrade to hand over.
    sockets: Sockets,
    /// Service-port listeners handed down, for `proxy::listeners` to take over.
    service_ports: std::collections::BTreeMap<SocketAddr, StdListener>,
    /// UDP service-port sockets handed down, for `proxy::udp_listeners` to take over.
    udp_ports: std::collections::BTreeMap<SocketAddr, std::net::UdpSocket>,
    /// Cancelled once the first route table is stored.
    ready: CancellationToken,
    /// `ready`, when the listeners must wait for it (a process started by an upgrade).
    accept_after: Option<CancellationToken>,
}

/// Everything that is not the data plane. Returns after the drain, with its verdict.
#[allow(clippy::too_many_arguments)] // the wiring, handed over once from `start`
async fn control_plane(
    config: Config,
    options: Options,
    wiring: Wiring,
    shutdown: Shutdown,
    workers: Vec<Handle>,
    admin: Option<StdListener>,
    certs: Option<Arc<CertStore>>,
    handover: Handover,
) -> bool {
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    // Held to the end, so the readers never see the channel closed while Drover runs.
    let reread = wiring.reread.clone();
    let (file_tx, file_rx) = watch::channel(None);
    let (marathon_tx, marathon_rx) = watch::channel(None);
    let (mesos_tx, mesos_rx) = watch::channel(None);
    let (tables_tx, tables_rx) = watch::channel(Arc::new(RouteTable::default()));
    let metrics = wiring.metrics.clone();
    let access_log = wiring.plane.access_log.clone();

    if let Some(path) = options.config_path.clone() {
        tokio::spawn(
            reload::run(
                path,
                config_tx.clone(),
                metrics.clone(),
                reread.subscribe(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("config_reload")),
        );
    }
    tokio::spawn(
        source::file::run(
            config_rx.clone(),
            file_tx,
            metrics.clone(),
            reread.subscribe(),
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("source_file")),
    );
    tokio::spawn(
        source::marathon::sync::run(
            config_rx.clone(),
            marathon_tx,
            metrics.clone(),
            wiring.sources.status(source::marathon::sync::SOURCE),
            reread.subscribe(),
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("source_marathon")),
    );
    tokio::spawn(
        source::mesos::poll::run(
            config_rx.clone(),
            mesos_tx,
            metrics.clone(),
            wiring.sources.status(source::mesos::poll::SOURCE),
            reread.subscribe(),
            shutdown.clone(),
            wiring.zk.clone(),
        )
        .instrument(tracing::info_span!("source_mesos")),
    );
    let checked_down = handles::CheckedDownWriter::new();
    let (zk_members_tx, zk_members_rx) = watch::channel(Arc::default());
    tokio::spawn(
        crate::zk::alias_members(
            config_rx.clone(),
            wiring.zk.clone(),
            zk_members_tx,
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("zk_alias_members")),
    );
    let inputs = control::Inputs {
        config: config_rx.clone(),
        file: file_rx,
        marathon: marathon_rx,
        mesos: mesos_rx,
        checked_down: checked_down.subscribe(),
        zk_members: zk_members_rx,
    };
    tokio::spawn(
        wiring
            .upstream_errors
            .run(shutdown.clone())
            .instrument(tracing::info_span!("upstream_errors")),
    );
    let monitor = health::monitor::Handles {
        status: wiring.health,
        routes: wiring.out.table.reader(),
        ejections: wiring.ejections,
        checked_down,
        metrics: metrics.clone(),
        zk: wiring.zk.clone(),
    };
    tokio::spawn(
        control::run(wiring.out, inputs, tables_tx, shutdown.clone())
            .instrument(tracing::info_span!("control")),
    );
    tokio::spawn(
        health::monitor::run(monitor, tables_rx.clone(), shutdown.clone())
            .instrument(tracing::info_span!("health")),
    );
    {
        let (mut tables, ready, shutdown) =
            (tables_rx.clone(), handover.ready.clone(), shutdown.clone());
        let (inherited, notify) = (handover.inherited.clone(), options.handle_signals);
        tokio::spawn(async move {
            tokio::select! {
                r = tables.changed() => if r.is_err() { return },
                _ = shutdown.triggered() => return,
            }
            ready.cancel();
            if notify {
                inherited.notify_ready();
            }
        });
    }
    let udp_listeners = proxy::udp_listeners::UdpListeners::new(
        workers.clone(),
        wiring.plane.clone(),
        shutdown.clone(),
    )
    .with_sockets(handover.sockets.clone(), handover.udp_ports);
    tokio::spawn(
        udp_listeners
            .run(tables_rx.clone())
            .instrument(tracing::info_span!("udp_listeners")),
    );
    let listeners =
        proxy::listeners::Listeners::new(workers, wiring.plane, wiring.listeners, shutdown.clone())
            .with_sockets(handover.sockets.clone(), handover.service_ports);
    tokio::spawn(
        listeners
            .run(tables_rx)
            .instrument(tracing::info_span!("listeners")),
    );
    if let Some(listener) = admin {
        match crate::lazy_socket::LazyListener::new(listener) {
            Ok(l) => {
                info!(addr = %l.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "admin listening");
                let (after, stop) = (handover.accept_after.clone(), shutdown.clone());
                tokio::spawn(
                    async move {
                        if accept_when_ready(after, &stop).await {
                            admin::serve(l, wiring.view, stop).await;
                        }
                    }
                    .instrument(tracing::info_span!("admin")),
                );
                // Only the status page reads its numbers: no admin, no sampling.
                tokio::spawn(
                    wiring
                        .sampler
                        .run(shutdown.clone())
                        .instrument(tracing::info_span!("status_sampler")),
                );
            }
            Err(e) => error!(error = %e, "cannot register the admin listener"),
        }
    }
    if let Some(store) = certs {
        tokio::spawn(
            watch_certs(store, metrics.clone(), reread.subscribe(), shutdown.clone())
                .instrument(tracing::info_span!("tls")),
        );
    }
    tokio::spawn(
        access_log::follow_config(access_log.clone(), config_rx.clone(), shutdown.clone())
            .instrument(tracing::info_span!("access_log")),
    );
    if options.handle_signals {
        // Resolved now: a package upgrade replaces the file at this path later.
        let exec = upgrade::Exec::current()
            .map_err(
                |e| error!(error = %e, "cannot find this binary's path; SIGUSR2 will not upgrade"),
            )
            .ok();
        tokio::spawn(signals(
            shutdown.clone(),
            reread.clone(),
            access_log.clone(),
            exec.map(|e| (e, handover.sockets.clone())),
        ));
    }

    shutdown.triggered().await;
    let deadline = config_rx.borrow().runtime.drain_timeout;
    info!(
        in_flight = shutdown.in_flight(),
        deadline = %crate::logfmt::duration(deadline),
        "shutting down: draining"
    );
    let clean = shutdown.drain(deadline).await;
    if clean {
        info!("drained; exiting");
    } else {
        warn!(
            left = shutdown.in_flight(),
            "drain deadline passed; closing what is left"
        );
    }
    // The access log's last lines (it writes every 100 ms) before the process ends.
    let _ = tokio::task::spawn_blocking(move || access_log.close()).await;
    drop(config_tx);
    drop(reread);
    clean
}

/// SIGTERM and SIGINT start the drain; SIGHUP re-reads the config and every source;
/// SIGUSR1 reopens the access log (after logrotate moved it); SIGUSR2 upgrades: starts this
/// binary anew with every listening socket and drains once it is ready (`upgrade`).
async fn signals(
    shutdown: Shutdown,
    reread: Reread,
    access_log: AccessLog,
    upgrade: Option<(upgrade::Exec, Sockets)>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    let mut upgrading: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM"); shutdown.trigger(); return }
            _ = int.recv() => { info!("SIGINT"); shutdown.trigger(); return }
            _ = hup.recv() => { info!("SIGHUP: re-reading the config and every source"); reread.request(); }
            _ = usr1.recv() => { info!("SIGUSR1: reopening the access log"); access_log.reopen(); }
            _ = usr2.recv() => {
                let Some((exec, sockets)) = &upgrade else {
                    warn!("SIGUSR2: cannot upgrade (this binary's path is unknown)");
                    continue;
                };
                if shutdown.is_triggered() {
                    warn!("SIGUSR2: shutting down already; ignored");
                    continue;
                }
                if upgrading.as_ref().is_some_and(|u| !u.is_finished()) {
                    warn!("SIGUSR2: an upgrade is already under way; ignored");
                    continue;
                }
                info!(sockets = %sockets.names().join(", "), "SIGUSR2: upgrading");
                upgrading = Some(tokio::spawn(
                    upgrade::run(exec.clone(), sockets.clone(), shutdown.clone())
                        .instrument(tracing::info_span!("upgrade")),
                ));
            }
        }
    }
}

/// The runtime every Drover thread (control, DNS, each worker) drives on its own.
fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
