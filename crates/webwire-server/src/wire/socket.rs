//! The WebSocket stream of a connection on its transport: [`frame`] for
//! the bytes, this module for the buffers, the reads and writes, and the
//! close handshake.
//!
//! Reading: a connection owns a read buffer only while a message is
//! arriving. Reads go into a scratch buffer of the worker thread, and only
//! the bytes read are copied into the connection's buffer, which is
//! released once every message in it was taken; an idle connection holds
//! none (tokio-websockets held 8 KiB for each). A frame larger than the
//! scratch is read straight into a connection buffer of its size.
//! Payloads are split off that buffer without a copy.
//!
//! Writing: frames are encoded one after the other into one buffer,
//! written with one `write` per batch (tokio-websockets wrote a header and
//! a payload slice per frame in a `writev`), and written only when asked
//! to ([`Socket::poll_flush`], or [`Socket::poll_ready`] past the flush
//! threshold): reading never writes.
//!
//! [`frame`]: super::frame

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, opcode, Decoder, FrameError, Incoming};
use super::pool::{self, Kind};

/// The per-thread scratch buffer that reads go to first: as large as the
/// read buffer tokio-websockets gave each connection, so that a batch of
/// small messages still arrives in one read.
const SCRATCH: usize = 8 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// Why the stream cannot be read or written on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The client broke the framing rules, or sent a message over the
    /// limit; the close frame for it is queued.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// The stream is closing: it takes no more messages (after the
    /// client's close frame, or the close frame for a read error).
    #[error("the WebSocket stream is closing")]
    AlreadyClosed,
}

/// Where the close handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// The client's close frame arrived (or a read error queued ours):
    /// its answer is queued; nothing else is sent.
    ClosedByPeer,
    /// Our close frame is queued; the client's is awaited.
    ClosedByUs,
    /// Both close frames passed, or the transport failed: nothing more is
    /// read.
    Done,
}

/// A server-side WebSocket stream on `Io`.
#[derive(Debug)]
pub(crate) struct Socket<Io> {
    io: Io,
    decoder: Decoder,
    /// Bytes read and not yet decoded; no allocation while empty.
    read: BytesMut,
    /// The size of `read`'s allocation (its capacity shrinks as payloads
    /// are split off).
    read_size: usize,
    /// Encoded frames not yet written, from `written` on.
    out: BytesMut,
    written: usize,
    state: State,
}

impl<Io> Socket<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// A stream for messages of at most `max_message` bytes.
    pub(crate) fn new(io: Io, max_message: usize) -> Self {
        Self {
            io,
            decoder: Decoder::new(max_message),
            read: BytesMut::new(),
            read_size: 0,
            out: BytesMut::new(),
            written: 0,
            state: State::Active,
        }
    }

    /// The transport (for the lingering close).
    pub(crate) fn get_mut(&mut self) -> &mut Io {
        &mut self.io
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    /// The next message or control frame. A ping is answered (the pong
    /// queued) and a close frame too, before they are returned; after the
    /// client's close frame, or a read error, the stream writes what it
    /// holds and ends. A read error queues its close frame.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, WsError>>> {
        match self.state {
            State::Done => return Poll::Ready(None),
            State::ClosedByPeer => {
                // The answer (or our close frame for an error) goes out
                // before the end.
                ready!(self.poll_flush(cx))?;
                self.state = State::Done;
                return Poll::Ready(None);
            }
            State::Active | State::ClosedByUs => {}
        }
        loop {
            match self.decoder.decode(&mut self.read) {
                Ok(Some(incoming)) => {
                    if self.read.is_empty() {
                        // Given back as soon as it holds nothing unread
                        // (the payloads split off it keep their part).
                        let size = std::mem::take(&mut self.read_size);
                        pool::give_back(Kind::Read, std::mem::take(&mut self.read), size);
                    }
                    self.on_incoming(&incoming);
                    return Poll::Ready(Some(Ok(incoming)));
                }
                Ok(None) => {}
                Err(err) => {
                    let Some((code, reason)) = err.close_frame() else {
                        // The stream can be read on: the caller closes.
                        return Poll::Ready(Some(Err(err.into())));
                    };
                    self.read = BytesMut::new();
                    self.read_size = 0;
                    if self.state == State::ClosedByUs {
                        self.state = State::Done;
                    } else {
                        self.queue_close(code, &reason);
                        self.state = State::ClosedByPeer;
                    }
                    return Poll::Ready(Some(Err(err.into())));
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if self.read.is_empty() => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.state = State::Done;
                    return Poll::Ready(Some(Err(WsError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    )))));
                }
                Ok(_) => {}
                Err(err) => {
                    self.state = State::Done;
                    return Poll::Ready(Some(Err(err.into())));
                }
            }
        }
    }

    /// What the stream does itself for a frame: answers pings and close
    /// frames.
    fn on_incoming(&mut self, incoming: &Incoming) {
        match (incoming, self.state) {
            (Incoming::Ping(payload), State::Active) => {
                frame::put_header(&mut self.out, opcode::PONG, payload.len());
                self.out.extend_from_slice(payload);
            }
            (Incoming::Close { code, .. }, State::Active) => {
                // Answered with its code (RFC 6455 section 5.5.1), or
                // empty if it had none.
                if *code == 1005 {
                    frame::put_header(&mut self.out, opcode::CLOSE, 0);
                } else {
                    frame::put_close(&mut self.out, *code, "");
                }
                self.state = State::ClosedByPeer;
            }
            (Incoming::Close { .. }, State::ClosedByUs) => self.state = State::Done,
            _ => {}
        }
    }

    /// Reads more bytes into the read buffer: into the thread's scratch
    /// buffer and copied, or, for a frame larger than it, straight into a
    /// buffer of the frame's size. `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let missing = self.decoder.wanted().saturating_sub(self.read.len());
        if missing > SCRATCH {
            self.read.reserve(missing);
            self.read_size = self.read_size.max(self.read.capacity());
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read);
        }
        SCRATCH_BUF.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let filled = buf.filled();
            if self.read.capacity() == 0 && !filled.is_empty() {
                self.read = pool::take(Kind::Read);
            }
            self.read.extend_from_slice(filled);
            self.read_size = self.read_size.max(self.read.capacity());
            Poll::Ready(Ok(filled.len()))
        })
    }

    /// Room for more frames: fewer than `threshold` bytes queued, written
    /// down to that now if need be.
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        threshold: usize,
    ) -> Poll<Result<(), WsError>> {
        self.poll_write_down_to(cx, threshold.saturating_sub(1))
    }

    /// The write buffer, with the header of a binary frame of `len` bytes
    /// appended: the caller appends exactly `len` bytes of payload.
    pub(crate) fn binary_frame(&mut self, len: usize) -> Result<&mut BytesMut, WsError> {
        if self.state != State::Active {
            return Err(WsError::AlreadyClosed);
        }
        if self.out.capacity() == 0 {
            self.out = pool::take(Kind::Write);
        }
        self.out.reserve(frame::header_len(len) + len);
        frame::put_header(&mut self.out, opcode::BINARY, len);
        Ok(&mut self.out)
    }

    /// Queues a binary frame with this payload.
    pub(crate) fn send_binary(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.binary_frame(payload.len())?.extend_from_slice(payload);
        Ok(())
    }

    /// Queues our close frame; the client's is awaited by reading on.
    pub(crate) fn send_close(&mut self, code: u16, reason: &str) -> Result<(), WsError> {
        if self.state != State::Active {
            return Err(WsError::AlreadyClosed);
        }
        self.queue_close(code, reason);
        self.state = State::ClosedByUs;
        Ok(())
    }

    fn queue_close(&mut self, code: u16, reason: &str) {
        if self.out.capacity() == 0 {
            self.out = pool::take(Kind::Write);
        }
        frame::put_close(&mut self.out, code, reason);
    }

    /// Writes everything queued and flushes the transport. A failure ends
    /// the stream.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(self.poll_write_down_to(cx, 0))?;
        // A connection waiting for its next message holds no write buffer.
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let size = out.capacity();
        pool::give_back(Kind::Write, out, size);
        self.written = 0;
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(self.failed(err))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes until at most `left` bytes are queued.
    fn poll_write_down_to(
        &mut self,
        cx: &mut Context<'_>,
        left: usize,
    ) -> Poll<Result<(), WsError>> {
        while self.pending() > left {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(self.failed(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(self.failed(err))),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn failed(&mut self, err: io::Error) -> WsError {
        self.state = State::Done;
        WsError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::wire::frame::tests::client_frame;

    const MAX: usize = 1024;

    fn pair() -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 20);
        (Socket::new(server, MAX), client)
    }

    fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(true, op, payload, [0x11, 0x22, 0x33, 0x44])
    }

    async fn next(socket: &mut Socket<DuplexStream>) -> Option<Result<Incoming, WsError>> {
        poll_fn(|cx| socket.poll_next(cx)).await
    }

    async fn flush(socket: &mut Socket<DuplexStream>) {
        poll_fn(|cx| socket.poll_flush(cx)).await.unwrap();
    }

    /// Everything the server wrote so far.
    async fn written(client: &mut DuplexStream) -> Vec<u8> {
        let mut buf = vec![0; 4096];
        let n = client.read(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    fn close_frame(code: u16, reason: &str) -> Vec<u8> {
        let mut frame = vec![0x88, (2 + reason.len()) as u8];
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(reason.as_bytes());
        frame
    }

    /// What the server answers to `bytes`: the error, then its close
    /// frame, then the end of the stream.
    async fn refused(bytes: &[u8]) -> (WsError, Vec<u8>) {
        let (mut socket, mut client) = pair();
        client.write_all(bytes).await.unwrap();
        let err = next(&mut socket).await.unwrap().unwrap_err();
        assert!(next(&mut socket).await.is_none(), "the stream ends");
        assert!(matches!(
            socket.send_binary(b"late"),
            Err(WsError::AlreadyClosed)
        ));
        (err, written(&mut client).await)
    }

    #[tokio::test]
    async fn a_ping_is_answered_when_flushed_not_when_read() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&masked(opcode::PING, b"are you there"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut socket).await.unwrap().unwrap(),
            Incoming::Ping(Bytes::from_static(b"are you there"))
        );
        assert_eq!(socket.pending(), 15, "queued, not written");
        flush(&mut socket).await;
        let mut pong = vec![0x8A, 13];
        pong.extend_from_slice(b"are you there");
        assert_eq!(written(&mut client).await, pong);
    }

    #[tokio::test]
    async fn the_clients_close_frame_is_answered_with_its_code_and_the_stream_ends() {
        let (mut socket, mut client) = pair();
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"going away");
        client
            .write_all(&masked(opcode::CLOSE, &close))
            .await
            .unwrap();
        assert_eq!(
            next(&mut socket).await.unwrap().unwrap(),
            Incoming::Close {
                code: 1001,
                reason: "going away".into()
            }
        );
        assert!(matches!(
            socket.send_binary(b"late"),
            Err(WsError::AlreadyClosed)
        ));
        // Reading on writes the answer and ends.
        assert!(next(&mut socket).await.is_none());
        assert_eq!(written(&mut client).await, close_frame(1001, ""));

        // A close frame without a code is answered without one.
        let (mut socket, mut client) = pair();
        client.write_all(&masked(opcode::CLOSE, b"")).await.unwrap();
        assert!(matches!(
            next(&mut socket).await,
            Some(Ok(Incoming::Close { code: 1005, .. }))
        ));
        assert!(next(&mut socket).await.is_none());
        assert_eq!(written(&mut client).await, vec![0x88, 0]);
    }

    #[tokio::test]
    async fn our_close_then_the_clients_ends_the_handshake() {
        let (mut socket, mut client) = pair();
        socket.send_binary(b"last").unwrap();
        socket.send_close(1001, "bye").unwrap();
        assert!(matches!(
            socket.send_binary(b"late"),
            Err(WsError::AlreadyClosed)
        ));
        flush(&mut socket).await;
        let mut expected = vec![0x82, 4];
        expected.extend_from_slice(b"last");
        expected.extend(close_frame(1001, "bye"));
        assert_eq!(written(&mut client).await, expected);
        // Messages still arriving are read until the client's close frame;
        // pings are no longer answered.
        client
            .write_all(&masked(opcode::BINARY, b"x"))
            .await
            .unwrap();
        client.write_all(&masked(opcode::PING, b"p")).await.unwrap();
        client
            .write_all(&masked(opcode::CLOSE, &1001u16.to_be_bytes()))
            .await
            .unwrap();
        assert!(matches!(
            next(&mut socket).await,
            Some(Ok(Incoming::Binary(_)))
        ));
        assert!(matches!(
            next(&mut socket).await,
            Some(Ok(Incoming::Ping(_)))
        ));
        assert!(matches!(
            next(&mut socket).await,
            Some(Ok(Incoming::Close { code: 1001, .. }))
        ));
        assert!(next(&mut socket).await.is_none());
        assert_eq!(socket.pending(), 0, "no pong, no second close frame");
    }

    #[tokio::test]
    async fn framing_errors_close_with_their_code() {
        // Unmasked: 1002.
        let (err, out) = refused(&[0x82, 0x01, b'x']).await;
        assert_eq!(err.to_string(), "unexpected unmasked frame");
        assert_eq!(out, close_frame(1002, "unexpected unmasked frame"));
        // A reserved bit: 1002.
        let mut bytes = masked(opcode::BINARY, b"x");
        bytes[0] |= 0x40;
        let (_, out) = refused(&bytes).await;
        assert_eq!(out, close_frame(1002, "invalid extension"));
        // A close code not allowed on the wire: 1002.
        let (_, out) = refused(&masked(opcode::CLOSE, &1005u16.to_be_bytes())).await;
        assert_eq!(out, close_frame(1002, "invalid close code"));
        // A close reason that is not UTF-8: 1007.
        let (_, out) = refused(&masked(opcode::CLOSE, &[0x03, 0xE8, 0xFF])).await;
        assert_eq!(out, close_frame(1007, "invalid utf8"));
        // A frame over the limit: 1009, refused at its header.
        let (err, out) = refused(&masked(opcode::BINARY, &[0; MAX + 1])[..8]).await;
        assert!(matches!(
            err,
            WsError::Frame(FrameError::TooBig { len, max: MAX }) if len == MAX + 1
        ));
        assert_eq!(out, close_frame(1009, "max length: 1024"));
    }

    #[tokio::test]
    async fn fragments_over_the_limit_leave_the_close_to_the_caller() {
        let (mut socket, mut client) = pair();
        let half = [7u8; MAX / 2 + 1];
        client
            .write_all(&client_frame(false, opcode::BINARY, &half, [1; 4]))
            .await
            .unwrap();
        client
            .write_all(&client_frame(true, opcode::CONTINUATION, &half, [1; 4]))
            .await
            .unwrap();
        let err = next(&mut socket).await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            WsError::Frame(FrameError::FragmentsTooBig { .. })
        ));
        assert_eq!(socket.pending(), 0, "no close frame of the stream's own");
        socket.send_close(1009, "message too big").unwrap();
        flush(&mut socket).await;
        assert_eq!(
            written(&mut client).await,
            close_frame(1009, "message too big")
        );
        client
            .write_all(&masked(opcode::CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        assert!(matches!(
            next(&mut socket).await,
            Some(Ok(Incoming::Close { code: 1000, .. }))
        ));
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut socket, mut client) = pair();
        for _ in 0..3 {
            client
                .write_all(&masked(opcode::BINARY, b"one"))
                .await
                .unwrap();
            client
                .write_all(&masked(opcode::BINARY, b"two"))
                .await
                .unwrap();
            assert_eq!(
                next(&mut socket).await.unwrap().unwrap(),
                Incoming::Binary(Bytes::from_static(b"one"))
            );
            assert!(socket.read.capacity() > 0, "the second message is in it");
            assert_eq!(
                next(&mut socket).await.unwrap().unwrap(),
                Incoming::Binary(Bytes::from_static(b"two"))
            );
            assert_eq!(socket.read.capacity(), 0, "given back once read");
            socket.send_binary(b"reply").unwrap();
            assert!(socket.out.capacity() > 0);
            flush(&mut socket).await;
            assert_eq!(socket.out.capacity(), 0, "given back once written");
            assert_eq!(written(&mut client).await, b"\x82\x05reply");
        }
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_scratch_is_read_into_a_buffer_of_its_size() {
        let (server, mut client) = tokio::io::duplex(1 << 20);
        let mut socket = Socket::new(server, 1 << 20);
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let bytes = masked(opcode::BINARY, &payload);
        let writer = tokio::spawn(async move {
            // In pieces, as a network delivers it.
            for piece in bytes.chunks(3000) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        assert_eq!(
            next(&mut socket).await.unwrap().unwrap(),
            Incoming::Binary(Bytes::from(payload))
        );
        let _client = writer.await.unwrap();
        assert_eq!(socket.read.capacity(), 0);
    }

    #[tokio::test]
    async fn poll_ready_writes_only_down_to_the_threshold() {
        // The pipe takes 4 KiB and nobody reads it.
        let (server, _client) = tokio::io::duplex(4096);
        let mut socket = Socket::new(server, MAX);
        socket.send_binary(&[1; 1000]).unwrap();
        for _ in 0..5 {
            socket.send_binary(&[1; 1000]).unwrap();
        }
        // 6 024 bytes queued (1 000 and a 4-byte header each).
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            socket.poll_ready(&mut cx, 8 * 1024),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(
            socket.pending(),
            6024,
            "under the threshold: nothing written"
        );
        assert!(matches!(
            socket.poll_ready(&mut cx, 4 * 1024),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(socket.pending(), 6024 - 4096);
        assert!(socket.poll_ready(&mut cx, 1024).is_pending());
    }

    #[tokio::test]
    async fn the_end_of_the_stream() {
        let (mut socket, client) = pair();
        drop(client);
        assert!(next(&mut socket).await.is_none());

        let (mut socket, mut client) = pair();
        client
            .write_all(&masked(opcode::BINARY, b"cut short")[..6])
            .await
            .unwrap();
        drop(client);
        let err = next(&mut socket).await.unwrap().unwrap_err();
        assert!(matches!(err, WsError::Io(ref e) if e.kind() == io::ErrorKind::UnexpectedEof));
        assert!(next(&mut socket).await.is_none());
    }
}
