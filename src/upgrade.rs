//! Upgrade without dropping a connection: on SIGUSR2 Drover starts the binary at its own
//! path (as resolved at start, so a package that replaced the file starts the new version)
//! with the same arguments and environment, and hands it every listening socket it holds
//! (HTTP, HTTPS, app-id, admin, DNS UDP and TCP, each open service port) as inherited file
//! descriptors. The new process takes them over instead of binding, accepts on them only
//! once its first route table is stored, and then says "ready" by writing one byte on a pipe
//! it was also handed. The old process then stops accepting and drains as on SIGTERM; the
//! connections waiting in the shared accept queues are the new process's to take. A new
//! process that exits, or is not ready within the deadline (`DROVER_UPGRADE_TIMEOUT`,
//! default 30 s), is killed and the old one keeps serving; either way it is logged.
//!
//! The hand-over, in the environment of the new process:
//! - `DROVER_LISTEN_FDS=http@127.0.0.1:80=5,tcp@0.0.0.0:10001=9,...`: `kind@address=fd`
//!   entries, the address as the configuration (or, for a service port, the route table)
//!   names it, so the new process matches each socket to what its own config wants. What it
//!   does not want is closed; what it wants and was not handed it binds.
//! - `DROVER_READY_FD=7`: the write end of the readiness pipe.
//!
//! Readiness is also told to systemd when `NOTIFY_SOCKET` is set (`Type=notify`):
//! `READY=1` and `MAINPID=<own pid>`, so with `NotifyAccess=all` systemd follows the main
//! process across an upgrade. `shellflip` is not used: it hands over no listening sockets
//! (only a state pipe), waits for the child's readiness with no deadline, and re-executes
//! `argv[0]`; what is left once sockets and deadline are ours is this file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tracing::{debug, error, info, warn};

use crate::shutdown::Shutdown;

/// The sockets handed down: `kind@address=fd`, comma-separated.
pub const LISTEN_FDS_ENV: &str = "DROVER_LISTEN_FDS";
/// The write end of the readiness pipe.
pub const READY_FD_ENV: &str = "DROVER_READY_FD";
/// How long the new process has to become ready (humantime, e.g. `10s`); 30 s by default.
pub const TIMEOUT_ENV: &str = "DROVER_UPGRADE_TIMEOUT";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a handed-over socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Http,
    Https,
    AppId,
    Admin,
    DnsUdp,
    DnsTcp,
    /// A TCP service port.
    Tcp,
    /// A UDP service port.
    Udp,
}

const KINDS: [Kind; 8] = [
    Kind::Http,
    Kind::Https,
    Kind::AppId,
    Kind::Admin,
    Kind::DnsUdp,
    Kind::DnsTcp,
    Kind::Tcp,
    Kind::Udp,
];

// === impl Kind ===

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::AppId => "appid",
            Kind::Admin => "admin",
            Kind::DnsUdp => "dns-udp",
            Kind::DnsTcp => "dns-tcp",
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

type Key = (Kind, SocketAddr);

/// The listening sockets this process holds, by what they are for: what an upgrade hands
/// over. Each entry is a duplicate of the socket, removed (so closed) when the listener
/// closes. Cheap to clone; not on any data path.
#[derive(Clone, Default)]
pub struct Sockets {
    held: Arc<Mutex<BTreeMap<Key, OwnedFd>>>,
}

// === impl Sockets ===

impl Sockets {
    pub fn new() -> Sockets {
        Sockets::default()
    }

    /// Records `socket` as the one for `kind` at `addr` (as configured).
    pub fn insert(&self, kind: Kind, addr: SocketAddr, socket: impl AsFd) -> io::Result<()> {
        let dup = socket.as_fd().try_clone_to_owned()?;
        self.lock().insert((kind, addr), dup);
        Ok(())
    }

    /// Forgets (and closes its duplicate of) the socket for `kind` at `addr`.
    pub fn remove(&self, kind: Kind, addr: SocketAddr) {
        self.lock().remove(&(kind, addr));
    }

    /// What is held now, as `kind@addr` names (for logs and tests).
    pub fn names(&self) -> Vec<String> {
        self.lock()
            .keys()
            .map(|(k, a)| format!("{k}@{a}"))
            .collect()
    }

    /// A duplicate of every socket held, to hand over.
    fn snapshot(&self) -> io::Result<Vec<(Key, OwnedFd)>> {
        self.lock()
            .iter()
            .map(|(key, fd)| Ok((*key, fd.try_clone()?)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, OwnedFd>> {
        // A panic while holding the map leaves it whole (inserts and removes are atomic).
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sockets (and the readiness pipe) handed to this process by the one it replaces.
/// Empty for a process started any other way.
#[derive(Default)]
pub struct Inherited {
    fds: Mutex<BTreeMap<Key, OwnedFd>>,
    ready: Mutex<Option<OwnedFd>>,
    upgrade: bool,
}

// === impl Inherited ===

impl Inherited {
    /// Nothing inherited (a process started by hand, or a server inside a test).
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// Takes over what `DROVER_LISTEN_FDS` and `DROVER_READY_FD` name. An entry that does
    /// not parse, or whose fd is not a socket (the readiness fd: not a pipe), is logged and
    /// skipped: the listener is then bound anew.
    pub fn from_env() -> Inherited {
        let mut inherited = Inherited::default();
        if let Some(spec) = std::env::var_os(LISTEN_FDS_ENV) {
            inherited.upgrade = true;
            let spec = spec.to_string_lossy();
            let mut fds = BTreeMap::new();
            for entry in spec.split(',').filter(|e| !e.is_empty()) {
                match parse_entry(entry)
                    .and_then(|(key, fd)| Some((key, take_fd(fd, libc::S_IFSOCK)?)))
                {
                    Some((key, fd)) => {
                        fds.insert(key, fd);
                    }
                    None => warn!(
                        entry,
                        "upgrade: cannot use a handed-over socket; binding instead"
                    ),
                }
            }
            info!(
                sockets = fds.len(),
                "upgrade: taking over the sockets of the process this one replaces"
            );
            inherited.fds = Mutex::new(fds);
        }
        if let Some(fd) = std::env::var_os(READY_FD_ENV) {
            inherited.upgrade = true;
            let fd = fd.to_str().and_then(|s| s.parse::<RawFd>().ok());
            match fd.and_then(|fd| take_fd(fd, libc::S_IFIFO)) {
                Some(fd) => inherited.ready = Mutex::new(Some(fd)),
                None => warn!("upgrade: {READY_FD_ENV} names no pipe; the old process will not hear of readiness"),
            }
        }
        inherited
    }

    /// Whether this process was started by an upgrade (it then accepts only once ready).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The handed-over TCP listener for `kind` at `addr`, set non-blocking.
    pub fn take_tcp(&self, kind: Kind, addr: SocketAddr) -> Option<std::net::TcpListener> {
        let listener = std::net::TcpListener::from(self.take(kind, addr)?);
        match listener.set_nonblocking(true) {
            Ok(()) => Some(listener),
            Err(e) => {
                warn!(%kind, %addr, error = %e, "upgrade: handed-over socket unusable; binding instead");
                None
            }
        }
    }

    /// The handed-over UDP socket for `kind` at `addr`, set non-blocking.
    pub fn take_udp(&self, kind: Kind, addr: SocketAddr) -> Option<std::net::UdpSocket> {
        let socket = std::net::UdpSocket::from(self.take(kind, addr)?);
        match socket.set_nonblocking(true) {
            Ok(()) => Some(socket),
            Err(e) => {
                warn!(%kind, %addr, error = %e, "upgrade: handed-over socket unusable; binding instead");
                None
            }
        }
    }

    /// Every handed-over service-port listener not taken yet, by address.
    pub fn take_service_ports(&self) -> BTreeMap<SocketAddr, std::net::TcpListener> {
        let mut fds = self.lock_fds();
        let keys: Vec<Key> = fds
            .keys()
            .filter(|(k, _)| *k == Kind::Tcp)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let listener = std::net::TcpListener::from(fds.remove(&key)?);
                listener.set_nonblocking(true).ok()?;
                Some((key.1, listener))
            })
            .collect()
    }

    /// Every handed-over UDP service-port socket not taken yet, by address.
    pub fn take_udp_service_ports(&self) -> BTreeMap<SocketAddr, std::net::UdpSocket> {
        let mut fds = self.lock_fds();
        let keys: Vec<Key> = fds
            .keys()
            .filter(|(k, _)| *k == Kind::Udp)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let socket = std::net::UdpSocket::from(fds.remove(&key)?);
                socket.set_nonblocking(true).ok()?;
                Some((key.1, socket))
            })
            .collect()
    }

    /// Closes whatever was handed over and not taken (the config no longer wants it).
    pub fn close_rest(&self) {
        let rest = std::mem::take(&mut *self.lock_fds());
        for (kind, addr) in rest.keys() {
            info!(%kind, %addr, "upgrade: handed-over socket not wanted here; closed");
        }
    }

    /// Tells the old process (and systemd) that this one is ready. Once only.
    pub fn notify_ready(&self) {
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(fd) = ready {
            let mut pipe = std::fs::File::from(fd);
            match io::Write::write_all(&mut pipe, b"R") {
                Ok(()) => info!("upgrade: ready; told the old process"),
                Err(e) => warn!(error = %e, "upgrade: ready, but cannot tell the old process"),
            }
        }
        notify_systemd(&format!("READY=1\nMAINPID={}\n", std::process::id()));
    }

    fn take(&self, kind: Kind, addr: SocketAddr) -> Option<OwnedFd> {
        self.lock_fds().remove(&(kind, addr))
    }

    fn lock_fds(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, OwnedFd>> {
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `kind@addr=fd`.
fn parse_entry(entry: &str) -> Option<(Key, RawFd)> {
    let (kind, rest) = entry.split_once('@')?;
    let (addr, fd) = rest.rsplit_once('=')?;
    Some(((Kind::parse(kind)?, addr.parse().ok()?), fd.parse().ok()?))
}

/// Owns `fd` if it is open and of file type `kind` (`S_IFSOCK`, `S_IFIFO`), and marks it
/// close-on-exec again.
fn take_fd(fd: RawFd, kind: libc::mode_t) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: fstat(2) only reads the fd's metadata into `st`, which it fully writes on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != kind {
        return None;
    }
    // SAFETY: the fd is open (fstat succeeded) and was passed down to this process for it to
    // own (the old process named it in our environment); nothing else here refers to it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_raw_fd(), true).ok()?;
    Some(owned)
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl(2) F_GETFD/F_SETFD on an fd the caller keeps open; no memory is passed.
    // Async-signal-safe, so also fine between fork and exec.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `state` to systemd's notification socket, if the service manager gave one.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        } else {
            socket.send_to(state.as_bytes(), &path)
        }
    })();
    match result {
        Ok(_) => debug!(state = state.trim_end(), "told systemd"),
        Err(e) => warn!(error = %e, "cannot notify systemd"),
    }
}

/// What an upgrade starts: this binary's path and arguments, as at start.
#[derive(Debug, Clone)]
pub struct Exec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub timeout: Duration,
}

// === impl Exec ===

impl Exec {
    /// The running binary (its path resolved now, before anything can replace the file)
    /// with this process's arguments; the deadline from `DROVER_UPGRADE_TIMEOUT`.
    pub fn current() -> io::Result<Exec> {
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Ok(v) => humantime::parse_duration(&v).unwrap_or_else(|e| {
                warn!(value = %v, error = %e, "{TIMEOUT_ENV} is not a duration; using 30s");
                DEFAULT_TIMEOUT
            }),
            Err(_) => DEFAULT_TIMEOUT,
        };
        Ok(Exec {
            program: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            timeout,
        })
    }
}

/// How an upgrade attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The new process (this pid) is ready: this one must drain and exit.
    Ready(u32),
    /// The old process keeps serving.
    Failed(String),
}

/// Starts the new process with every socket in `sockets`, and waits for it to be ready or
/// fail. On failure the new process is killed and reaped. A shutdown while waiting abandons
/// the upgrade (the new process is killed).
pub async fn upgrade(exec: &Exec, sockets: &Sockets, shutdown: &Shutdown) -> Outcome {
    let started = tokio::time::Instant::now();
    let handed = match sockets.snapshot() {
        Ok(h) => h,
        Err(e) => return Outcome::Failed(format!("cannot duplicate the listening sockets: {e}")),
    };
    let (ready_r, ready_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("cannot make the readiness pipe: {e}")),
    };
    let spec: Vec<String> = handed
        .iter()
        .map(|((kind, addr), fd)| format!("{kind}@{addr}={}", fd.as_raw_fd()))
        .collect();
    let mut inherit: Vec<RawFd> = handed.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    inherit.push(ready_w.as_raw_fd());
    let mut cmd = Command::new(&exec.program);
    cmd.args(&exec.args)
        .env(LISTEN_FDS_ENV, spec.join(","))
        .env(READY_FD_ENV, ready_w.as_raw_fd().to_string());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl(2),
    // which is async-signal-safe, on fds that stay open in the parent until spawn returns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for &fd in &inherit {
                set_cloexec(fd, false)?;
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", exec.program.display())),
    };
    let pid = child.id();
    info!(pid, program = %exec.program.display(), sockets = handed.len(),
        "upgrade: new process started; waiting for it to be ready");
    // The child has its copies: only its end of the pipe keeps the pipe open now.
    drop(handed);
    drop(ready_w);

    let failure = match tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r) {
        Err(e) => format!("cannot watch the readiness pipe: {e}"),
        Ok(mut ready) => {
            let mut byte = [0u8; 1];
            tokio::select! {
                r = tokio::time::timeout(exec.timeout, ready.read(&mut byte)) => match r {
                    Ok(Ok(1)) => {
                        info!(pid, took = %crate::logfmt::duration(started.elapsed()),
                            "upgrade: new process ready; this one stops accepting and drains");
                        return Outcome::Ready(pid);
                    }
                    Ok(Ok(_)) => "it closed the readiness pipe without being ready (exited?)".to_string(),
                    Ok(Err(e)) => format!("cannot read the readiness pipe: {e}"),
                    Err(_) => format!("not ready within {}", crate::logfmt::duration(exec.timeout)),
                },
                _ = shutdown.triggered() => "shutting down".to_string(),
            }
        }
    };
    let _ = child.kill();
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    let status = match status {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Outcome::Failed(format!(
        "new process {pid}: {failure}; it ended with {status}"
    ))
}

/// Runs one upgrade attempt and acts on it: drains this process when the new one is ready,
/// logs and keeps serving otherwise.
pub async fn run(exec: Exec, sockets: Sockets, shutdown: Shutdown) {
    match upgrade(&exec, &sockets, &shutdown).await {
        Outcome::Ready(_) => shutdown.trigger(),
        Outcome::Failed(why) => error!("upgrade failed; this process keeps serving: {why}"),
    }
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2(2) writes two fds into the array we pass; we own them on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by pipe2 and belong to nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_by_kind_address_and_fd() {
        assert_eq!(
            parse_entry("dns-udp@127.0.0.1:53=7"),
            Some(((Kind::DnsUdp, "127.0.0.1:53".parse().unwrap()), 7))
        );
        assert_eq!(
            parse_entry("tcp@[::1]:10001=12"),
            Some(((Kind::Tcp, "[::1]:10001".parse().unwrap()), 12))
        );
        assert_eq!(parse_entry("nope@127.0.0.1:1=3"), None);
        assert_eq!(parse_entry("http@127.0.0.1:1"), None);
        for kind in KINDS {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
        }
    }

    #[test]
    fn only_open_fds_of_the_right_type_are_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dup = listener.as_fd().try_clone_to_owned().unwrap();
        let raw = dup.as_raw_fd();
        // A socket is not a pipe: refused, and the fd is left alone.
        assert!(take_fd(raw, libc::S_IFIFO).is_none());
        std::mem::forget(dup);
        let taken = take_fd(raw, libc::S_IFSOCK).expect("a socket");
        assert_eq!(taken.as_raw_fd(), raw);
        assert!(take_fd(2, libc::S_IFSOCK).is_none());
    }

    #[test]
    fn sockets_hold_one_duplicate_per_key() {
        let sockets = Sockets::new();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        sockets.insert(Kind::Http, addr, &l).unwrap();
        sockets.insert(Kind::Tcp, addr, &l).unwrap();
        assert_eq!(
            sockets.names(),
            [format!("http@{addr}"), format!("tcp@{addr}")]
        );
        sockets.remove(Kind::Tcp, addr);
        assert_eq!(sockets.snapshot().unwrap().len(), 1);
    }
}
