//! What an HTTP/2 backend says about its connection, read off the bytes it sends: its
//! `SETTINGS_MAX_CONCURRENT_STREAMS` and whether it sent `GOAWAY`. hyper keeps both to
//! itself, and the upstream pool needs them to decide where the next stream goes (a
//! connection that is full or going away gets none).
//!
//! [`SniffedIo`] sits under hyper's client connection and walks the frame headers of the
//! read side (9 bytes each; payloads skipped, except SETTINGS entries). It never changes a
//! byte. Frame sizes are the peer's to get right: a frame hyper's parser would refuse ends
//! the connection anyway.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the backend announced, shared between the connection's reader and the pool.
#[derive(Debug)]
pub(super) struct PeerState {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; `u32::MAX` while the peer has set no limit.
    max_streams: AtomicU32,
    goaway: AtomicBool,
    /// `Some(true)` at the end of the peer's first SETTINGS frame (its preface),
    /// `Some(false)` if the connection's reader went away before.
    settled: watch::Sender<Option<bool>>,
}

impl PeerState {
    pub(super) fn new() -> Arc<PeerState> {
        Arc::new(PeerState {
            max_streams: AtomicU32::new(u32::MAX),
            goaway: AtomicBool::new(false),
            settled: watch::Sender::new(None),
        })
    }

    pub(super) fn max_streams(&self) -> u32 {
        self.max_streams.load(Ordering::Relaxed)
    }

    /// The peer sent GOAWAY: no new streams here; those in flight may finish.
    pub(super) fn going_away(&self) -> bool {
        self.goaway.load(Ordering::Relaxed)
    }

    /// Waits for the peer's first SETTINGS frame; `false` if the connection ended first.
    pub(super) async fn settled(&self) -> bool {
        let mut rx = self.settled.subscribe();
        let settled = rx.wait_for(Option::is_some).await.map(|state| *state);
        matches!(settled, Ok(Some(true)))
    }

    /// The connection's reader is gone: wake whoever still waits for SETTINGS.
    fn closed(&self) {
        self.settled.send_if_modified(|state| {
            let first = state.is_none();
            state.get_or_insert(false);
            first
        });
    }
}

/// The frame parser's place in the byte stream.
#[derive(Debug, Default)]
struct Walk {
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The current frame is a SETTINGS frame (not an ACK): its entries are read.
    in_settings: bool,
    entry: [u8; 6],
    entry_len: usize,
}

impl Walk {
    fn feed(&mut self, mut bytes: &[u8], peer: &PeerState) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                if self.in_settings {
                    self.settings_bytes(&bytes[..n], peer);
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.frame_done(peer);
                }
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len < 9 {
                return;
            }
            self.head_len = 0;
            let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
            let (kind, flags) = (self.head[3], self.head[4]);
            self.in_settings = kind == FRAME_SETTINGS && flags & FLAG_ACK == 0;
            self.entry_len = 0;
            if kind == FRAME_GOAWAY {
                peer.goaway.store(true, Ordering::Relaxed);
            }
            self.payload_left = len;
            if len == 0 {
                self.frame_done(peer);
            }
        }
    }

    fn settings_bytes(&mut self, mut bytes: &[u8], peer: &PeerState) {
        while !bytes.is_empty() {
            let n = (6 - self.entry_len).min(bytes.len());
            self.entry[self.entry_len..self.entry_len + n].copy_from_slice(&bytes[..n]);
            self.entry_len += n;
            bytes = &bytes[n..];
            if self.entry_len == 6 {
                self.entry_len = 0;
                let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                let value = u32::from_be_bytes([
                    self.entry[2],
                    self.entry[3],
                    self.entry[4],
                    self.entry[5],
                ]);
                if id == SETTINGS_MAX_CONCURRENT_STREAMS {
                    peer.max_streams.store(value, Ordering::Relaxed);
                }
            }
        }
    }

    fn frame_done(&mut self, peer: &PeerState) {
        if self.in_settings {
            self.in_settings = false;
            peer.settled.send_if_modified(|state| {
                let first = state.is_none();
                state.get_or_insert(true);
                first
            });
        }
    }
}

/// An upstream connection's I/O with its read side watched (see the module doc).
pub(super) struct SniffedIo<S> {
    inner: S,
    peer: Arc<PeerState>,
    walk: Walk,
}

impl<S> SniffedIo<S> {
    pub(super) fn new(inner: S, peer: Arc<PeerState>) -> SniffedIo<S> {
        SniffedIo {
            inner,
            peer,
            walk: Walk::default(),
        }
    }
}

impl<S> Drop for SniffedIo<S> {
    fn drop(&mut self) {
        self.peer.closed();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SniffedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.walk.feed(&buf.filled()[before..], &this.peer);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SniffedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags, 0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend(value.to_be_bytes());
        out
    }

    #[test]
    fn settings_and_goaway_are_seen_whatever_the_read_sizes() {
        let mut payload = setting(0x4, 65_535); // INITIAL_WINDOW_SIZE: not ours
        payload.extend(setting(SETTINGS_MAX_CONCURRENT_STREAMS, 7));
        let mut bytes = frame(FRAME_SETTINGS, 0, &payload);
        bytes.extend(frame(0x0, 0, b"some data, skipped")); // DATA
        bytes.extend(frame(FRAME_SETTINGS, FLAG_ACK, &[])); // an ACK changes nothing
        let before_goaway = bytes.len();
        bytes.extend(frame(FRAME_GOAWAY, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
        for chunk in [1, 2, 5, 9, 13, bytes.len()] {
            let peer = PeerState::new();
            let mut walk = Walk::default();
            for (i, piece) in bytes.chunks(chunk).enumerate() {
                walk.feed(piece, &peer);
                if (i + 1) * chunk < before_goaway {
                    assert!(!peer.going_away(), "chunk {chunk}");
                }
            }
            assert_eq!(peer.max_streams(), 7, "chunk {chunk}");
            assert_eq!(*peer.settled.borrow(), Some(true), "chunk {chunk}");
            assert!(peer.going_away(), "chunk {chunk}");
        }
    }

    #[test]
    fn an_empty_settings_frame_settles_without_a_limit() {
        let peer = PeerState::new();
        Walk::default().feed(&frame(FRAME_SETTINGS, 0, &[]), &peer);
        assert_eq!(*peer.settled.borrow(), Some(true));
        assert_eq!(peer.max_streams(), u32::MAX);
    }
}
