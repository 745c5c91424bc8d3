//! A connection's socket, owned by its one task: the WebSocket stream,
//! read and written without a lock, and the receiving side of the
//! outbound queue (see `outbox`) through which everybody else (handler
//! tasks, other connections, the server) sends to it.
//!
//! The task writes its own messages (replies of handlers that finished at
//! once, session replies, the close frame) straight into the stream, after
//! whatever is queued, so a handler's signals still go before its reply.
//! Frames are encoded into the stream's write buffer until the task runs
//! out of arrived messages; then it flushes once for the whole batch. A
//! write that cannot proceed is timed by `stall`. The WebSocket framing is
//! ours (`frame`, `socket`).

use std::future::Future;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use webwire_proto::connection::server::ServerConnection;
use webwire_proto::ServerMessage;

use crate::connection::ConnectionInner;
use crate::outbox::Outbound;

mod frame;
mod pool;
mod socket;
mod stall;

pub(crate) use frame::{FrameError, Incoming};
pub(crate) use socket::{Socket, WsError};
use stall::Stall;

/// Bytes queued before a write is forced mid-batch.
pub(crate) const FLUSH_THRESHOLD: usize = 16 * 1024;

/// What a lingering close reads at a time.
const LINGER_CHUNK: usize = 8 * 1024;

/// Why the socket can no longer be written.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The stream is closing already (the client closed it, or it queued
    /// its own close frame for a WebSocket error).
    Closed,
    /// The connection task had to write and the socket took nothing for
    /// the queue timeout, or the queue stayed full that long.
    Stalled,
    /// Writing failed.
    Failed(WsError),
}

impl From<WsError> for WireError {
    fn from(err: WsError) -> Self {
        match err {
            WsError::AlreadyClosed => Self::Closed,
            err => Self::Failed(err),
        }
    }
}

/// The socket and the queue, used by the connection task alone.
pub(crate) struct Wire<Io> {
    ws: Socket<Io>,
    /// The queue's receiver, taken from the connection's `Outbox` once the
    /// channel exists.
    rx: Option<mpsc::Receiver<Outbound>>,
    conn: Arc<ConnectionInner>,
    /// Messages given to the stream since the last flush.
    unflushed: u64,
    stall: Stall,
    /// The connection's rules: every message written passes them (nothing
    /// after the close frame; a reply counts as its request's answer).
    protocol: ServerConnection,
}

impl<Io> Wire<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(
        ws: Socket<Io>,
        conn: Arc<ConnectionInner>,
        stall_timeout: Duration,
        protocol: ServerConnection,
    ) -> Self {
        Self {
            ws,
            rx: None,
            conn,
            unflushed: 0,
            stall: Stall::new(stall_timeout),
            protocol,
        }
    }

    /// The connection's rules, as far as they have been told.
    #[inline]
    pub(crate) fn protocol(&self) -> &ServerConnection {
        &self.protocol
    }

    /// The connection's rules, to tell them what was read or asked for.
    #[inline]
    pub(crate) fn protocol_mut(&mut self) -> &mut ServerConnection {
        &mut self.protocol
    }

    /// The next message from the client.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, WsError>>> {
        self.ws.poll_next(cx)
    }

    /// The next message if it has arrived already, without waiting (nor
    /// registering to be woken).
    pub(crate) fn arrived(&mut self) -> Option<Option<Result<Incoming, WsError>>> {
        match self.ws.poll_next(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(message) => Some(message),
            Poll::Pending => None,
        }
    }

    /// Whether something is queued.
    pub(crate) fn has_queued(&mut self) -> bool {
        self.receiver().is_some_and(|rx| !rx.is_empty())
    }

    /// The queue's receiver, if the channel was made.
    fn receiver(&mut self) -> Option<&mut mpsc::Receiver<Outbound>> {
        if self.rx.is_none() {
            self.rx = self.conn.outbox().take_receiver();
        }
        self.rx.as_mut()
    }

    /// Stops taking queued messages: senders fail from now on.
    pub(crate) fn close_queue(&mut self) {
        self.conn.outbox().close();
        if let Some(rx) = &mut self.rx {
            rx.close();
        }
    }

    /// Writes what is queued and flushes. `Ready(Ok)` once the queue is
    /// empty and every frame written; `Pending` while the socket is full
    /// (the task is woken when it takes more, or when something is queued).
    pub(crate) fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WireError>> {
        if self.receiver().is_none() {
            // Woken when the channel is made.
            self.conn.register_task(cx.waker());
        }
        let mut first = true;
        while self.receiver().is_some() {
            ready!(self.poll_ready(cx, false))?;
            let Some(rx) = self.rx.as_mut() else { break };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if first {
                        first = false;
                        let depth = 1 + rx.len();
                        self.conn.counters().note_queue_depth(depth);
                    }
                    self.feed(item)?;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        // Always, even with nothing of ours: the stream may hold frames
        // of its own (a pong), which reading does not write.
        self.poll_flush(cx, false)
    }

    /// Sends one of the connection task's own messages, after what is
    /// queued already. Waits while the socket is full, at most the queue
    /// timeout without progress ([`WireError::Stalled`]).
    pub(crate) async fn send(&mut self, message: ServerMessage) -> Result<(), WireError> {
        if self.has_queued() {
            self.send_queued().await?;
        }
        std::future::poll_fn(|cx| self.poll_ready(cx, true)).await?;
        self.encode_and_feed(&message)
    }

    /// Sends one of the task's own messages if that needs no waiting:
    /// nothing is queued before it and the stream has room (the usual
    /// case, with no future to poll). Otherwise the message comes back,
    /// for [`send`](Self::send).
    pub(crate) fn send_now(
        &mut self,
        message: ServerMessage,
    ) -> Result<Option<ServerMessage>, WireError> {
        if self.ws.pending() >= FLUSH_THRESHOLD || self.has_queued() {
            return Ok(Some(message));
        }
        // The stream has room, as when `poll_ready` finds it so.
        self.stall.disarm();
        self.encode_and_feed(&message)?;
        Ok(None)
    }

    /// Gives the stream everything queued, without flushing (the flush
    /// comes at the end of the batch).
    pub(crate) async fn send_queued(&mut self) -> Result<(), WireError> {
        if let Some(rx) = self.receiver() {
            let depth = rx.len();
            self.conn.counters().note_queue_depth(depth);
        }
        loop {
            std::future::poll_fn(|cx| self.poll_ready(cx, true)).await?;
            match self.receiver().map(|rx| rx.try_recv()) {
                Some(Ok(item)) => self.feed(item)?,
                _ => return Ok(()),
            }
        }
    }

    /// Whether the stream has room for more frames without waiting: below
    /// the flush threshold, or it could write everything now. Asked after
    /// a ping: the stream queues its pong itself, outside [`send`](Self::send),
    /// so a client that sends pings and does not read would otherwise grow
    /// it without end.
    pub(crate) fn has_room(&mut self) -> bool {
        match self
            .ws
            .poll_ready(&mut Context::from_waker(Waker::noop()), FLUSH_THRESHOLD)
        {
            Poll::Ready(Ok(())) => {
                self.stall.disarm();
                true
            }
            // The error shows at the next read or write.
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }

    /// Waits for room in the stream, as a write of the task's own does: at
    /// most the queue timeout without progress ([`WireError::Stalled`]).
    pub(crate) async fn wait_room(&mut self) -> Result<(), WireError> {
        std::future::poll_fn(|cx| self.poll_ready(cx, true)).await
    }

    /// Gives the stream a frame encoded already (the accept configuration);
    /// only when it has room, which a new stream has.
    pub(crate) fn send_frame_now(&mut self, frame: Bytes) -> Result<(), WireError> {
        self.ws.send_binary(&frame)?;
        self.unflushed += 1;
        Ok(())
    }

    /// Writes what is queued, then the close frame, and flushes. A stream
    /// that is closing already (it answered the client's close frame, or
    /// queued its own for a WebSocket error) only flushes what it holds.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<(), WireError> {
        let closing = match self.send_queued().await {
            Ok(()) => false,
            Err(WireError::Closed) => true,
            Err(err) => return Err(err),
        };
        if !closing {
            std::future::poll_fn(|cx| self.poll_ready(cx, true)).await?;
            let sent = self.ws.send_close(code, reason);
            self.protocol.close_sent();
            match sent {
                Ok(()) => self.unflushed += 1,
                Err(WsError::AlreadyClosed) => {}
                Err(err) => return Err(err.into()),
            }
        }
        self.flush().await
    }

    /// Writes what the stream holds (its own frames too, such as the
    /// answer to a client's close frame).
    pub(crate) async fn flush(&mut self) -> Result<(), WireError> {
        std::future::poll_fn(|cx| self.poll_flush(cx, true)).await
    }

    /// Runs `future` while writing what is queued, so that a handler
    /// running in the connection task (one that waits for room in its own
    /// queue, say) never waits for the task. Stops at a write failure.
    pub(crate) async fn drive<F: Future>(&mut self, future: F) -> Result<F::Output, WireError> {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if let Poll::Ready(Err(err)) = self.poll_pump(cx) {
                return Poll::Ready(Err(err));
            }
            Poll::Pending
        })
        .await
    }

    /// As [`drive`](Self::drive), but the future runs to its end whatever
    /// happens to the socket (a handler is not dropped halfway because its
    /// client left); the write failure, if any, comes with its output.
    pub(crate) async fn drive_to_end<F: Future>(
        &mut self,
        future: F,
    ) -> (F::Output, Option<WireError>) {
        let mut future = std::pin::pin!(future);
        let mut failed = None;
        let out = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if failed.is_none()
                && let Poll::Ready(Err(err)) = self.poll_pump(cx)
            {
                failed = Some(err);
            }
            Poll::Pending
        })
        .await;
        (out, failed)
    }

    /// Reads until the client's close frame or the end of the stream;
    /// messages are not handled any more. Whether the client's close frame
    /// came (it sends nothing after it).
    pub(crate) async fn read_to_end(&mut self) -> bool {
        while let Some(message) = std::future::poll_fn(|cx| self.ws.poll_next(cx)).await {
            if matches!(message, Ok(Incoming::Close { .. })) {
                return true;
            }
        }
        false
    }

    /// Lingering close, after the close frame for a violation has been
    /// written: shuts the socket's sending side (the client sees the end
    /// after the close frame) and reads and discards what the client still
    /// sends, up to `max` bytes, its end, or `idle` without anything.
    /// Closing with unread data makes the kernel send a reset, which drops
    /// whatever it has not sent yet, the close frame too. The caller bounds
    /// the time.
    pub(crate) async fn linger(&mut self, max: usize, idle: Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = self.ws.get_mut();
        if io.shutdown().await.is_err() {
            return;
        }
        let mut buf = vec![0; LINGER_CHUNK];
        let mut left = max;
        while left > 0 {
            match tokio::time::timeout(idle, io.read(&mut buf[..left.min(LINGER_CHUNK)])).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return,
                Ok(Ok(n)) => left = left.saturating_sub(n),
            }
        }
    }

    /// Room in the stream for one more message. While the socket is full,
    /// the stall timer runs: `urgent` when the task itself waits to write.
    fn poll_ready(&mut self, cx: &mut Context<'_>, urgent: bool) -> Poll<Result<(), WireError>> {
        match self.ws.poll_ready(cx, FLUSH_THRESHOLD) {
            Poll::Ready(Ok(())) => {
                self.stall.disarm();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err.into())),
            Poll::Pending => {
                self.poll_stall(cx, urgent)?;
                Poll::Pending
            }
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>, urgent: bool) -> Poll<Result<(), WireError>> {
        match self.ws.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.conn.counters().add_sent(self.unflushed);
                self.unflushed = 0;
                self.stall.disarm();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err.into())),
            Poll::Pending => {
                self.poll_stall(cx, urgent)?;
                Poll::Pending
            }
        }
    }

    /// The socket is full: runs the stall timer (see [`Stall::poll`]).
    fn poll_stall(&mut self, cx: &mut Context<'_>, urgent: bool) -> Result<(), WireError> {
        let rx = &self.rx;
        self.stall.poll(cx, urgent, || {
            rx.as_ref().is_some_and(|rx| rx.capacity() == 0)
        })
    }

    /// Adds one of the task's own messages to the batch at once, whatever
    /// the stream's room: for a handler's signals to its own connection,
    /// bounded by the queue's capacity per poll as if they were queued.
    pub(crate) fn push_own(&mut self, message: ServerMessage) -> Result<(), WireError> {
        self.encode_and_feed(&message)
    }

    /// Gives the stream one queued entry (it has room).
    fn feed(&mut self, item: Outbound) -> Result<(), WireError> {
        match item {
            Outbound::Message(message) => self.encode_and_feed(&message),
            Outbound::Frame(frame) if self.protocol.may_send_frame(&frame) => {
                self.ws.send_binary(&frame)?;
                self.unflushed += 1;
                Ok(())
            }
            Outbound::Frame(_) => Ok(()),
        }
    }

    fn encode_and_feed(&mut self, message: &ServerMessage) -> Result<(), WireError> {
        if !self.protocol.send(message) {
            // After the close frame: dropped (and counted, if a reply).
            return Ok(());
        }
        let len = message.encoded_len();
        let buf = self.ws.binary_frame(len)?;
        let start = buf.len();
        message.encode(buf);
        debug_assert_eq!(buf.len() - start, len, "encoded_len is exact");
        self.unflushed += 1;
        Ok(())
    }
}
