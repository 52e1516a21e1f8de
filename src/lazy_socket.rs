//! Client sockets that join the reactor only when they first have to wait.
//!
//! tokio registers every socket with its epoll when the socket is made (`epoll_ctl` ADD) and
//! takes it out when it is dropped (DEL): two system calls per connection, whatever the
//! connection does. A client that sends its request with the connection and is answered at
//! once (HTTP with `Connection: close`, or a health checker) never has to wait on its
//! socket: the request is in the kernel's buffer when it is read, the answer fits in the
//! send buffer. A [`LazyStream`] reads and writes the socket directly, and registers it the
//! first time a read or write would block; one that never blocked is closed without
//! either call. HAProxy does the same (it reads first and subscribes on `EAGAIN`).
//!
//! A [`LazyListener`] accepts such sockets (non-blocking, `TCP_NODELAY` set), and a socket
//! not registered yet moves to another worker as it is ([`Handoff`]).

use std::future::Future;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::accept::{Handoff, Listen};

/// A listening socket whose accepted connections are [`LazyStream`]s.
pub struct LazyListener {
    listener: AsyncFd<std::net::TcpListener>,
}

impl LazyListener {
    /// Registers `listener` (non-blocking already) with this thread's reactor.
    pub fn new(listener: std::net::TcpListener) -> io::Result<LazyListener> {
        // SAFETY: the std listener owns its descriptor, open and unchanged until the
        // `AsyncFd` (which owns the listener) is dropped.
        let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(LazyListener { listener })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// The next connection, non-blocking from its `accept4` on (no separate `fcntl`).
    pub async fn accept(&self) -> io::Result<(LazyStream, SocketAddr)> {
        loop {
            let mut ready = self.listener.readable().await?;
            let accepted = ready.try_io(|listener| {
                SockRef::from(listener.get_ref()).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            });
            let Ok(result) = accepted else {
                continue; // drained: readiness cleared, wait for the next
            };
            let (socket, addr) = result?;
            let peer = addr.as_socket().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP socket")
            })?;
            let stream = std::net::TcpStream::from(socket);
            let _ = stream.set_nodelay(true);
            return Ok((LazyStream::unregistered(stream), peer));
        }
    }
}

impl Listen for LazyListener {
    type Stream = LazyStream;

    fn accept(&self) -> impl Future<Output = io::Result<(LazyStream, SocketAddr)>> + Send {
        LazyListener::accept(self)
    }
}

/// A client connection, used directly until an operation would block, then through the
/// reactor.
pub struct LazyStream {
    state: State,
}

enum State {
    /// Non-blocking, not in any epoll.
    Direct(std::net::TcpStream),
    Registered(TcpStream),
    /// Registration failed; the error was returned and the socket closed.
    Lost,
}

impl LazyStream {
    /// `stream` must be non-blocking.
    pub fn unregistered(stream: std::net::TcpStream) -> LazyStream {
        LazyStream {
            state: State::Direct(stream),
        }
    }

    /// Whether the socket joined the reactor (it had to wait at least once).
    pub fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered(_))
    }

    /// The registered stream, registering the socket now if it is not yet.
    fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if let State::Direct(_) = self.state {
            let State::Direct(std) = std::mem::replace(&mut self.state, State::Lost) else {
                unreachable!("matched just above")
            };
            self.state = State::Registered(TcpStream::from_std(std)?);
        }
        match &mut self.state {
            State::Registered(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }

    /// `op` on the direct socket, again if interrupted. `None` when it would block (the
    /// caller registers and waits through the reactor) or the socket is registered already.
    fn try_direct<T>(
        &self,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<T>,
    ) -> Option<io::Result<T>> {
        let State::Direct(std) = &self.state else {
            return None;
        };
        loop {
            match op(std) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                done => return Some(done),
            }
        }
    }

    /// Polls `op` on the registered stream (registering it first if need be). A new
    /// registration knows no readiness yet, so this parks the task until epoll reports.
    fn poll_registered<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match self.registered() {
            Ok(stream) => op(Pin::new(stream), cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "socket closed after it could not join the reactor",
    )
}

impl AsyncRead for LazyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: `recv` writes only initialized bytes, at most the spare part's length.
        let read = this.try_direct(|std| SockRef::from(std).recv(unsafe { buf.unfilled_mut() }));
        match read {
            Some(Ok(n)) => {
                // SAFETY: `recv` initialized the first `n` spare bytes.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
            None => this.poll_registered(cx, |stream, cx| stream.poll_read(cx, buf)),
        }
    }
}

impl AsyncWrite for LazyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.try_direct(|mut std| std.write(buf)) {
            Some(done) => Poll::Ready(done),
            None => this.poll_registered(cx, |stream, cx| stream.poll_write(cx, buf)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.try_direct(|mut std| std.write_vectored(bufs)) {
            Some(done) => Poll::Ready(done),
            None => this.poll_registered(cx, |stream, cx| stream.poll_write_vectored(cx, bufs)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // a socket has nothing of its own to flush
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Direct(std) => Poll::Ready(std.shutdown(Shutdown::Write)),
            State::Registered(stream) => Pin::new(stream).poll_shutdown(cx),
            State::Lost => Poll::Ready(Err(lost())),
        }
    }
}

impl Handoff for LazyStream {
    fn detach(self) -> io::Result<std::net::TcpStream> {
        match self.state {
            State::Direct(std) => Ok(std),
            State::Registered(stream) => stream.into_std(),
            State::Lost => Err(lost()),
        }
    }

    fn attach(std: std::net::TcpStream) -> io::Result<LazyStream> {
        Ok(LazyStream::unregistered(std))
    }
}

#[cfg(test)]
#[path = "lazy_socket_tests.rs"]
mod tests;
