//! A transport with bytes read ahead (by the HTTP server) in front of it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads `prefix` first, then from `io`; writes go to `io`.
#[derive(Debug)]
pub(crate) struct Prefixed<Io> {
    prefix: Bytes,
    io: Io,
}

impl<Io> Prefixed<Io> {
    pub(crate) fn new(prefix: Bytes, io: Io) -> Self {
        Self { prefix, io }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Prefixed<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // The bytes are a slice of the HTTP server's read buffer, which
            // holds the whole request head: an empty slice would still keep
            // it alive for the connection's life.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Prefixed<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_the_prefix_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut io = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut text = String::new();
        io.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello world");
    }

    /// Regression: the read-ahead bytes are a slice of hyper's read buffer,
    /// request head included; once read, they kept it all alive for the
    /// connection's life.
    #[tokio::test]
    async fn the_read_buffer_is_released_once_read() {
        let (_a, b) = tokio::io::duplex(64);
        let head_and_frame = Bytes::from(vec![b'x'; 64 * 1024]);
        let read_ahead = head_and_frame.slice(64 * 1024 - 3..);
        let mut io = Prefixed::new(read_ahead, b);
        let mut first = [0u8; 2];
        io.read_exact(&mut first).await.unwrap();
        assert!(!head_and_frame.is_unique(), "still being read");
        io.read_exact(&mut first[..1]).await.unwrap();
        assert!(head_and_frame.is_unique(), "the read buffer is still held");
    }
}
