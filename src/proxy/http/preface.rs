//! Which HTTP a plain connection speaks: HTTP/2 with prior knowledge (h2c, as gRPC clients
//! without TLS do) opens with the 24-byte connection preface of RFC 9113 §3.4; anything
//! else is HTTP/1.
//!
//! The first read is one the server would make anyway: its bytes are handed back ahead of
//! the socket's by [`Prefixed`], so telling the two apart costs no system call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The connection preface of HTTP/2 with prior knowledge.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes taken by the first read: a request head usually fits.
const FIRST_READ: usize = 8 * 1024;

/// What the client opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    Http2,
    Http1,
}

/// Reads the client's first bytes (within `within`) and says which HTTP they are.
/// `None`: nothing, or only part of the preface, arrived in time (or the read failed).
/// A client that closed at once is `Http1`: that server ends it quietly.
pub(super) async fn read_opening<S>(
    mut stream: S,
    within: Duration,
) -> Option<(Opening, Prefixed<S>)>
where
    S: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut first = BytesMut::with_capacity(FIRST_READ);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read_buf(&mut first))
            .await
            .ok()?
            .ok()?;
        let seen = first.len().min(PREFACE.len());
        let opening = if first[..seen] != PREFACE[..seen] || n == 0 {
            Some(Opening::Http1)
        } else if seen == PREFACE.len() {
            Some(Opening::Http2)
        } else {
            // Part of the preface so far: read on.
            None
        };
        if let Some(opening) = opening {
            return Some((
                opening,
                Prefixed {
                    first,
                    inner: stream,
                },
            ));
        }
    }
}

/// A stream whose first bytes were read already: they come back first.
pub(super) struct Prefixed<S> {
    first: BytesMut,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.first.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.first.len().min(buf.remaining());
        buf.put_slice(&self.first[..n]);
        self.first.advance(n);
        if self.first.is_empty() {
            // Give the buffer back now rather than with the connection.
            self.first = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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
    use tokio::io::AsyncWriteExt;

    async fn opening_of(pieces: &[&[u8]]) -> Option<(Opening, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        for piece in pieces {
            client.write_all(piece).await.unwrap();
        }
        drop(client);
        let (opening, mut stream) = read_opening(server, Duration::from_secs(5)).await?;
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        Some((opening, all))
    }

    #[tokio::test]
    async fn the_preface_is_told_apart_and_every_byte_still_read() {
        let h2 = [&PREFACE[..], b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"].concat();
        assert_eq!(opening_of(&[&h2]).await, Some((Opening::Http2, h2.clone())));
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            opening_of(&[get]).await,
            Some((Opening::Http1, get.to_vec()))
        );
        // "PRI" alone is no preface, and a close is HTTP/1's to handle.
        let pri = b"PRI / HTTP/1.1\r\n\r\n";
        assert_eq!(
            opening_of(&[pri]).await,
            Some((Opening::Http1, pri.to_vec()))
        );
        assert_eq!(opening_of(&[]).await, Some((Opening::Http1, Vec::new())));
        assert_eq!(
            opening_of(&[b"PRI * HT"]).await,
            Some((Opening::Http1, b"PRI * HT".to_vec()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_preface_in_pieces_is_waited_for_until_the_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(read_opening(server, Duration::from_secs(1)));
        client.write_all(&PREFACE[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(&PREFACE[10..]).await.unwrap();
        let (opening, _) = reader.await.unwrap().expect("in time");
        assert_eq!(opening, Opening::Http2);

        let (mut client, server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(read_opening(server, Duration::from_secs(1)));
        client.write_all(&PREFACE[..10]).await.unwrap();
        assert!(reader.await.unwrap().is_none(), "the rest never came");
    }
}
