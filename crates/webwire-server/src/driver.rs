//! The connection task: reads messages, runs handlers within the
//! concurrency limit, and closes the connection (PROTOCOL.md 4 and 6).
//!
//! Backpressure: with limit 1 the handler runs inline, so the next message
//! is read only after the reply found room in the outbound queue; with a
//! limit N the task takes a semaphore permit before it reads; every
//! request's reply slot is reserved in the queue before its handler runs.
//! A client that sends faster than the handlers or its own reading allow
//! makes this task wait, not grow.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::SplitStream;
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::prefixed::Prefixed;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_websockets::{CloseCode, WebSocketStream};
use webwire_proto::{
    ClientMessage, ErrorReply, Payload, Reply, Request, RequestId, ServerMessage, Signal,
};

use crate::connection::{ConnectionInner, Counters, ACTIVE, CLOSED, CLOSING};
use crate::server::Shared;
use crate::session::registry::Slot;
use crate::writer::{Outbound, Writer, WriterEnd};
use crate::{
    Concurrency, Connection, ConnectionId, ConnectionInfo, ConnectionOptions, DisconnectReason,
    Handler, RequestError,
};

/// What the upgrade decided for a connection, handed to its task.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) info: ConnectionInfo,
    pub(crate) options: ConnectionOptions,
    /// The connection's place under the server's connection limit.
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

/// Runs one connection from its upgrade to its end.
pub(crate) async fn run<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    upgrade: OnUpgrade,
    accepted: Accepted,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(error = %err, "WebSocket upgrade failed");
            return;
        }
    };
    connection(shared, handler, upgraded, accepted).await;
}

/// The connection's future on its transport, boxed: the connection task
/// stays small, and a plain TCP connection does not carry the size of a
/// TLS one. The transports the server itself creates are taken back from
/// hyper, so that reads and writes go to the socket without hyper's boxed,
/// type-erased layer; anything else stays behind it.
fn connection<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    upgraded: Upgraded,
    accepted: Accepted,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return if parts.read_buf.is_empty() {
                Box::pin(serve(shared, handler, io, accepted))
            } else {
                Box::pin(serve(
                    shared,
                    handler,
                    Prefixed::new(parts.read_buf, io),
                    accepted,
                ))
            };
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            if parts.read_buf.is_empty() {
                Box::pin(serve(shared, handler, io, accepted))
            } else {
                Box::pin(serve(
                    shared,
                    handler,
                    Prefixed::new(parts.read_buf, io),
                    accepted,
                ))
            }
        }
        Err(upgraded) => Box::pin(serve(shared, handler, TokioIo::new(upgraded), accepted)),
    }
}

/// Runs one connection on its upgraded transport.
async fn serve<H, Io>(shared: Arc<Shared>, handler: Arc<H>, io: Io, accepted: Accepted)
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let ws = tokio_websockets::ServerBuilder::new()
        .config(
            tokio_websockets::Config::default()
                // A message is never split into frames by us: clients get
                // what the original server sent, one frame per message.
                .frame_size(config.buffer_size)
                .flush_threshold(FLUSH_THRESHOLD),
        )
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(config.buffer_size)))
        .serve(io);
    let (sink, stream) = ws.split();

    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let conn = Connection::new(ConnectionInner {
        id: ConnectionId(shared.next_id.fetch_add(1, Ordering::Relaxed)),
        info: accepted.info,
        options: accepted.options,
        created: SystemTime::now(),
        tx,
        buffer_size: config.buffer_size,
        queue_timeout: config.queue_timeout,
        attention: AtomicWaker::new(),
        writer_gone: AtomicBool::new(false),
        done: CancellationToken::new(),
        state: ACTIVE.into(),
        counters: Counters::default(),
        sessions: shared.sessions.clone(),
        session: Mutex::new(Slot::Empty),
        rooms: crate::room::Membership::new(shared.rooms.clone()),
        extensions: Mutex::default(),
    });
    // The accept configuration goes first, before anything else.
    let _ = conn.try_send(Outbound::Frame(shared.accept_conf.clone()));

    let kill = CancellationToken::new();
    let writer = {
        let inner = conn.inner.clone();
        let writer = Writer {
            sink,
            rx,
            conn: conn.inner.clone(),
            kill: kill.clone(),
            stall_timeout: config.queue_timeout,
        };
        tokio::spawn(async move {
            let end = writer.run().await;
            inner.writer_gone.store(true, Ordering::Release);
            inner.attention.wake();
            end
        })
    };
    shared.register(&conn);
    tracing::debug!(connection = %conn.id(), remote = ?conn.remote_addr(), "connected");

    let mode = match conn.options().concurrency_limit() {
        Concurrency::Limited(n) if n.get() == 1 => Mode::Inline,
        Concurrency::Limited(n) => Mode::Limited(Arc::new(Semaphore::new(
            n.get().min(Semaphore::MAX_PERMITS),
        ))),
        Concurrency::Unlimited => Mode::Unlimited,
    };
    let mut reader = Reader {
        ctx: Arc::new(Ctx {
            handler,
            conn: conn.clone(),
            abort: shared.abort.child_token(),
        }),
        shared: shared.clone(),
        conn: conn.clone(),
        stream,
        mode,
        tasks: TaskTracker::new(),
        kill,
        last_activity: Instant::now(),
        draining: false,
        pending_signals: None,
    };
    let end = reader.run().await;
    let handler = reader.ctx.handler.clone();
    // Consumes the reader: the socket is closed when this returns.
    let reason = reader.finish(end, writer).await;

    // The socket is closed: the place under the connection limit is free
    // before the connection leaves the registry. It leaves its session
    // (which stays stored, to be restored later) before the disconnect
    // hook, which can still read it.
    drop(accepted.slot);
    shared.sessions.disconnected(&conn).await;
    conn.leave_all_rooms();
    shared.unregister(&conn);
    tracing::debug!(connection = %conn.id(), %reason, "disconnected");
    let hook = AssertUnwindSafe(handler.on_disconnected(&conn, &reason)).catch_unwind();
    if let Err(panic) = hook.await {
        tracing::error!(connection = %conn.id(), panic = panic_message(&*panic), "disconnect hook panicked");
    }
    conn.inner.done.cancel();
}

/// Messages a closing connection still reads, once its handlers have
/// returned, from what has already arrived.
const MAX_LATE_READS: usize = 1024;

/// Bytes queued in the WebSocket sink before a write is forced mid-batch.
const FLUSH_THRESHOLD: usize = 16 * 1024;

enum Mode {
    /// Limit 1: handlers run in the reading task.
    Inline,
    /// Limit N: a task per message, a permit taken before reading.
    Limited(Arc<Semaphore>),
    /// A task per message; requests are bounded by their reply slots.
    Unlimited,
}

/// A client's session request.
enum SessionRequest {
    /// RequestRestoreSession with this key.
    Restore(Bytes),
    /// RequestCloseSession.
    Close,
}

/// What waiting in the read loop brought.
enum Next {
    /// The stream's next item (`None`: it ended).
    Message(Option<Result<tokio_websockets::Message, tokio_websockets::Error>>),
    /// Something changed (a close, a re-armed timer): look again.
    Again,
}

/// How the read loop ended.
enum ReadEnd {
    /// For this reason; the close frame (if any) is still to be sent.
    Reason(DisconnectReason),
    /// The writer is gone; its result tells why.
    WriterGone,
}

/// What a handler needs, shared by the reader and the handler tasks (one
/// reference count per message, not three).
struct Ctx<H> {
    handler: Arc<H>,
    conn: Connection,
    /// Cancelled when running handlers are to be dropped (the shutdown deadline).
    abort: CancellationToken,
}

struct Reader<H, Io> {
    shared: Arc<Shared>,
    ctx: Arc<Ctx<H>>,
    conn: Connection,
    stream: SplitStream<WebSocketStream<Io>>,
    mode: Mode,
    tasks: TaskTracker,
    /// Cancelled when the writer is gone, or to stop it at once.
    kill: CancellationToken,
    last_activity: Instant,
    draining: bool,
    /// Unlimited concurrency: bounds the signal handlers still running in
    /// tasks (requests are bounded by their reply slots) to the queue
    /// capacity; created when the first one is needed.
    pending_signals: Option<Arc<Semaphore>>,
}

impl<H, Io> Reader<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(&mut self) -> ReadEnd {
        let hook = tokio::select! {
            biased;
            out = AssertUnwindSafe(self.ctx.handler.on_connected(&self.conn)).catch_unwind() => out,
            () = self.ctx.abort.cancelled() => Ok(()),
        };
        if let Err(panic) = hook {
            tracing::error!(connection = %self.conn.id(), panic = panic_message(&*panic), "connect hook panicked");
        }
        self.last_activity = Instant::now();
        self.read_loop().await
    }

    async fn read_loop(&mut self) -> ReadEnd {
        let read_timeout = self.shared.config.read_timeout;
        let timer = tokio::time::sleep_until(self.last_activity + read_timeout);
        tokio::pin!(timer);
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut late_reads = 0;
        // Whether messages arrived since `last_activity` was taken.
        let mut active = false;
        // Only this task writes the counter: a store, not a read-modify-write.
        let mut received = 0;
        loop {
            // Cheap checks first: with messages waiting, the stream is read
            // before anything else is looked at.
            if self.conn.inner.writer_gone.load(Ordering::Acquire) {
                return ReadEnd::WriterGone;
            }
            if !self.draining
                && (self.conn.inner.state.load(Ordering::Acquire) != ACTIVE
                    || self.shared.shutting_down.load(Ordering::Acquire))
            {
                self.start_draining();
            }
            let message = if self.draining && self.tasks.is_empty() {
                // Every handler has returned. Answer what has arrived already
                // (a bounded number of messages), then close.
                late_reads += 1;
                if late_reads > MAX_LATE_READS {
                    return ReadEnd::Reason(self.drained_reason());
                }
                match self.arrived().await {
                    Some(message) => Some(message),
                    None => return ReadEnd::Reason(self.drained_reason()),
                }
            } else {
                if let (Mode::Limited(semaphore), None, false) =
                    (&self.mode, &permit, self.draining)
                {
                    match semaphore.clone().try_acquire_owned() {
                        Ok(p) => permit = Some(p),
                        Err(_) => {
                            let semaphore = semaphore.clone();
                            tokio::select! {
                                biased;
                                p = semaphore.acquire_owned() => permit = p.ok(),
                                () = attention(&self.conn.inner, &self.shared, false) => {}
                            }
                            continue;
                        }
                    }
                }
                // Fast path: a message has arrived already (under load, the
                // usual case); nothing else is polled and no clock is read.
                // The socket's cooperative budget makes this miss now and
                // then, so the branches below are still seen.
                if let Some(message) = self.stream.next().now_or_never() {
                    message
                } else {
                    // About to wait: the clock is read once per wait, not per message.
                    if active {
                        self.last_activity = Instant::now();
                        active = false;
                    }
                    match self.wait_message(&mut timer).await {
                        Ok(Next::Message(message)) => message,
                        Ok(Next::Again) => continue,
                        Err(end) => return end,
                    }
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(err)) => return ReadEnd::Reason(stream_error(err)),
                None => {
                    return ReadEnd::Reason(DisconnectReason::ClientClosed {
                        code: None,
                        reason: String::new(),
                    })
                }
            };
            active = true;
            if message.is_binary() {
                received += 1;
                self.conn
                    .inner
                    .counters
                    .received
                    .store(received, Ordering::Relaxed);
                let data = Bytes::from(message.into_payload());
                if let Err(end) = self.on_message(data, &mut permit).await {
                    return end;
                }
            } else if message.is_text() {
                self.conn
                    .inner
                    .counters
                    .received
                    .store(received + 1, Ordering::Relaxed);
                return ReadEnd::Reason(DisconnectReason::TextMessage);
            } else if let Some((code, reason)) = message.as_close() {
                return ReadEnd::Reason(DisconnectReason::ClientClosed {
                    code: Some(code.into()),
                    reason: reason.to_owned(),
                });
            }
            // Pings (answered by the WebSocket stream) and pongs only count
            // as activity.
        }
    }

    /// Waits for the next message, the read timeout, a close, or the last
    /// handler of a closing connection. `Err` ends the read loop.
    async fn wait_message(
        &mut self,
        timer: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<Next, ReadEnd> {
        let read_timeout = self.shared.config.read_timeout;
        Ok(tokio::select! {
            biased;
            message = self.stream.next() => Next::Message(message),
            () = attention(&self.conn.inner, &self.shared, self.draining) => Next::Again,
            () = self.tasks.wait(), if self.draining => Next::Again,
            () = timer.as_mut() => {
                let deadline = self.last_activity + read_timeout;
                if Instant::now() >= deadline {
                    return Err(ReadEnd::Reason(DisconnectReason::ReadTimeout));
                }
                timer.as_mut().reset(deadline);
                Next::Again
            }
        })
    }

    /// A message that has arrived already, without waiting for the client.
    /// The writer may hold the stream's lock for a moment: a few yields let
    /// it finish.
    async fn arrived(
        &mut self,
    ) -> Option<Result<tokio_websockets::Message, tokio_websockets::Error>> {
        for _ in 0..4 {
            match self.stream.next().now_or_never() {
                Some(message) => return message,
                None => tokio::task::yield_now().await,
            }
        }
        None
    }

    fn start_draining(&mut self) {
        self.draining = true;
        self.conn.set_state(CLOSING);
        self.tasks.close();
    }

    fn drained_reason(&self) -> DisconnectReason {
        if self.shared.shutdown.is_cancelled() {
            DisconnectReason::Shutdown
        } else {
            DisconnectReason::ClosedByServer
        }
    }

    /// Handles one binary message.
    async fn on_message(
        &mut self,
        data: Bytes,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        let message = match ClientMessage::parse(data) {
            Ok(message) => message,
            Err(err) => {
                return Err(ReadEnd::Reason(DisconnectReason::ProtocolViolation(err)));
            }
        };
        match message {
            ClientMessage::Heartbeat => Ok(()),
            ClientMessage::Request(request) if self.draining => {
                self.send(ServerMessage::Shutdown(request.id())).await
            }
            ClientMessage::Request(request) => self.dispatch_request(request, permit).await,
            ClientMessage::Signal(_) if self.draining => Ok(()),
            ClientMessage::Signal(signal) => {
                self.dispatch_signal(signal, permit).await;
                Ok(())
            }
            ClientMessage::RestoreSession { id, .. } | ClientMessage::CloseSession(id)
                if self.draining =>
            {
                self.send(ServerMessage::Shutdown(id)).await
            }
            ClientMessage::RestoreSession { id, key } => {
                self.session_request(id, SessionRequest::Restore(key)).await
            }
            ClientMessage::CloseSession(id) => {
                self.session_request(id, SessionRequest::Close).await
            }
            // A message type this server does not know yet.
            _ => Ok(()),
        }
    }

    /// Answers a session request (PROTOCOL.md 5). It runs here, in the
    /// reading task, whatever the concurrency limit: messages that follow
    /// it are handled with its outcome (a request after a restore sees the
    /// session), as the original server did.
    async fn session_request(
        &mut self,
        id: RequestId,
        request: SessionRequest,
    ) -> Result<(), ReadEnd> {
        let slot = self
            .conn
            .inner
            .tx
            .reserve()
            .await
            .map_err(|_| ReadEnd::WriterGone)?;
        let sessions = self.shared.sessions.clone();
        let conn = &self.conn;
        let work = async {
            match request {
                SessionRequest::Restore(key) => sessions.restore(conn, id, key).await,
                SessionRequest::Close if !sessions.enabled() => {
                    (ServerMessage::SessionsDisabled(id), None)
                }
                SessionRequest::Close => {
                    // The session has left the connection even if the
                    // manager failed to delete it (that is logged): the
                    // client is told it has none.
                    let (event, _) = sessions.close(conn, false).await;
                    (
                        ServerMessage::Reply(Reply::new(id, Payload::default())),
                        event,
                    )
                }
            }
        };
        let (reply, event) = tokio::select! {
            biased;
            out = AssertUnwindSafe(work).catch_unwind() => out.unwrap_or_else(|panic| {
                tracing::error!(connection = %conn.id(), panic = panic_message(&*panic), "session request panicked");
                (ServerMessage::InternalError(id), None)
            }),
            () = self.ctx.abort.cancelled() => (ServerMessage::Shutdown(id), None),
        };
        slot.send(Outbound::Message(reply));
        // The application hears of it once the reply is queued.
        if let Some(event) = event {
            tokio::select! {
                biased;
                () = sessions.notify(conn, &event) => {}
                () = self.ctx.abort.cancelled() => {}
            }
        }
        Ok(())
    }

    /// Queues a message, waiting for room.
    async fn send(&self, message: ServerMessage) -> Result<(), ReadEnd> {
        self.conn
            .inner
            .tx
            .send(Outbound::Message(message))
            .await
            .map_err(|_| ReadEnd::WriterGone)
    }

    async fn dispatch_request(
        &mut self,
        request: Request,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        let max = self.shared.config.buffer_size;
        let counters = &self.conn.inner.counters;
        if let Mode::Inline = self.mode {
            let tx = &self.conn.inner.tx;
            let slot = match tx.try_reserve() {
                Ok(slot) => slot,
                Err(mpsc::error::TrySendError::Full(())) => {
                    tx.reserve().await.map_err(|_| ReadEnd::WriterGone)?
                }
                Err(mpsc::error::TrySendError::Closed(())) => return Err(ReadEnd::WriterGone),
            };
            counters.handlers.store(1, Ordering::Relaxed);
            let reply = run_request(
                &*self.ctx.handler,
                &self.conn,
                request,
                &self.ctx.abort,
                max,
            )
            .await;
            counters.handlers.store(0, Ordering::Relaxed);
            slot.send(Outbound::Message(reply));
            return Ok(());
        }
        // Limit N or unlimited: the handler's future is polled once here,
        // and only one that is still pending becomes a task. Most handlers
        // finish at their first poll: no task, no wake-up, no flush waiting
        // for another task's reply. The reply slot is taken before the
        // handler runs, as inline.
        let tx = &self.conn.inner.tx;
        let slot = match tx.try_reserve() {
            Ok(slot) => slot,
            Err(mpsc::error::TrySendError::Full(())) => {
                tx.reserve().await.map_err(|_| ReadEnd::WriterGone)?
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(ReadEnd::WriterGone),
        };
        let ctx = self.ctx.clone();
        let mut future = Box::pin(async move {
            run_request(&*ctx.handler, &ctx.conn, request, &ctx.abort, max).await
        });
        if let Some(reply) = (&mut future).now_or_never() {
            // The permit (limit N) stays with the reader for the next message.
            slot.send(Outbound::Message(reply));
            return Ok(());
        }
        // Still pending: it runs on in a task of its own, holding a reply
        // slot (given back and taken again as an owned one) and its permit.
        drop(slot);
        let slot = tx
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| ReadEnd::WriterGone)?;
        let conn = self.conn.clone();
        let permit = permit.take();
        counters.handlers.fetch_add(1, Ordering::Relaxed);
        self.tasks.spawn(async move {
            let reply = future.await;
            slot.send(Outbound::Message(reply));
            conn.inner.counters.handlers.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        Ok(())
    }

    async fn dispatch_signal(&mut self, signal: Signal, permit: &mut Option<OwnedSemaphorePermit>) {
        let counters = &self.conn.inner.counters;
        if let Mode::Inline = self.mode {
            counters.handlers.store(1, Ordering::Relaxed);
            run_signal(&*self.ctx.handler, &self.conn, signal, &self.ctx.abort).await;
            counters.handlers.store(0, Ordering::Relaxed);
            return;
        }
        // As for requests: polled once here, a task only if still pending.
        let ctx = self.ctx.clone();
        let mut future =
            Box::pin(async move { run_signal(&*ctx.handler, &ctx.conn, signal, &ctx.abort).await });
        if (&mut future).now_or_never().is_some() {
            return;
        }
        let mut permit = permit.take();
        if let Mode::Unlimited = self.mode {
            // Without a bound, a client flooding signals whose handlers wait
            // (for room in its own full queue) grows the server without
            // limit: the reader waits here instead, and stops reading.
            let capacity = self.shared.config.queue_capacity;
            let bound = self
                .pending_signals
                .get_or_insert_with(|| Arc::new(Semaphore::new(capacity)))
                .clone();
            permit = bound.acquire_owned().await.ok();
        }
        let conn = self.conn.clone();
        let counters = &self.conn.inner.counters;
        counters.handlers.fetch_add(1, Ordering::Relaxed);
        self.tasks.spawn(async move {
            future.await;
            conn.inner.counters.handlers.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }

    /// Sends the close frame for `end`, lets the writer finish, waits for
    /// the client's close frame and for the handlers still running.
    async fn finish(
        mut self,
        end: ReadEnd,
        writer: tokio::task::JoinHandle<WriterEnd>,
    ) -> DisconnectReason {
        self.conn.set_state(CLOSED);
        let close_timeout = self.shared.config.close_timeout;
        let tx = &self.conn.inner.tx;
        let mut drain = true;
        match &end {
            ReadEnd::Reason(reason) => {
                // Reasons without a close code of ours: the WebSocket stream
                // has queued its own close frame already (or the client is
                // gone); the writer only has to stop.
                let (code, text) = close_frame(reason).unwrap_or((CloseCode::NORMAL_CLOSURE, ""));
                let queued = tokio::time::timeout(
                    self.shared.config.queue_timeout,
                    tx.send(Outbound::Close(code, text)),
                )
                .await;
                if !matches!(queued, Ok(Ok(()))) {
                    self.kill.cancel();
                    drain = false;
                }
            }
            ReadEnd::WriterGone => drain = false,
        }
        let writer_end = tokio::select! {
            out = writer => out.ok(),
            () = tokio::time::sleep(close_timeout) => {
                self.kill.cancel();
                drain = false;
                None
            }
        };
        if !matches!(writer_end, Some(WriterEnd::Closed)) {
            drain = false;
        }
        tracing::trace!(connection = %self.conn.id(), ?writer_end, drain, "closing");
        if drain {
            // Until the client's close frame (or the end of the stream), so
            // that the socket closes cleanly; messages are not handled now.
            let _ = tokio::time::timeout(close_timeout, async {
                while self.stream.next().await.is_some() {}
            })
            .await;
        }
        // Close the socket, then wait for the handlers still running (their
        // replies have nowhere to go now).
        let Self { stream, tasks, .. } = self;
        drop(stream);
        tasks.close();
        tasks.wait().await;
        match (end, writer_end) {
            (ReadEnd::Reason(reason), _) => reason,
            (ReadEnd::WriterGone, Some(WriterEnd::Stalled)) => DisconnectReason::QueueStalled,
            (ReadEnd::WriterGone, Some(WriterEnd::Failed(err))) => {
                DisconnectReason::ConnectionLost(err.to_string())
            }
            (ReadEnd::WriterGone, _) => DisconnectReason::ConnectionLost("writer stopped".into()),
        }
    }
}

/// Resolves when the read loop has something to look at: the writer is
/// gone, or (unless closing already) a close or shutdown was asked for.
fn attention<'a>(
    inner: &'a ConnectionInner,
    shared: &'a Shared,
    draining: bool,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        inner.attention.register(cx.waker());
        let wanted = inner.writer_gone.load(Ordering::Acquire)
            || (!draining
                && (inner.state.load(Ordering::Acquire) != ACTIVE
                    || shared.shutting_down.load(Ordering::Acquire)));
        if wanted {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

/// The close frame the server sends for a reason, if it sends its own.
fn close_frame(reason: &DisconnectReason) -> Option<(CloseCode, &'static str)> {
    Some(match reason {
        DisconnectReason::ClosedByServer => (CloseCode::NORMAL_CLOSURE, ""),
        DisconnectReason::Shutdown => (CloseCode::GOING_AWAY, "server shutdown"),
        DisconnectReason::ReadTimeout => (CloseCode::GOING_AWAY, "read timeout"),
        DisconnectReason::ProtocolViolation(_) => (CloseCode::PROTOCOL_ERROR, "protocol violation"),
        DisconnectReason::TextMessage => (
            CloseCode::UNSUPPORTED_DATA,
            "text messages are not supported",
        ),
        // The WebSocket stream sends this itself for a single frame, not for
        // fragments adding up to too much; ours is refused when it did.
        DisconnectReason::MessageTooBig { .. } => (CloseCode::MESSAGE_TOO_BIG, "message too big"),
        _ => return None,
    })
}

/// The disconnect reason for an error of the WebSocket stream.
fn stream_error(err: tokio_websockets::Error) -> DisconnectReason {
    match err {
        tokio_websockets::Error::PayloadTooLong { len, max_len } => {
            DisconnectReason::MessageTooBig { len, max: max_len }
        }
        tokio_websockets::Error::Protocol(err) => DisconnectReason::WebSocketError(err.to_string()),
        err => DisconnectReason::ConnectionLost(err.to_string()),
    }
}

/// Runs a request handler and makes its reply: a reply, an error reply, or
/// an internal-error reply (the cause logged); a shutdown reply when the
/// handler is dropped at the shutdown deadline.
async fn run_request<H: Handler>(
    handler: &H,
    conn: &Connection,
    request: Request,
    abort: &CancellationToken,
    max: usize,
) -> ServerMessage {
    let id = request.id();
    let name = request.name().clone();
    let Some(outcome) = abortable(
        AssertUnwindSafe(handler.on_request(conn, request)).catch_unwind(),
        abort,
    )
    .await
    else {
        return ServerMessage::Shutdown(id);
    };
    let message = match outcome {
        Ok(Ok(payload)) => ServerMessage::Reply(Reply::new(id, payload)),
        Ok(Err(err)) => match err.downcast::<RequestError>() {
            Ok(err) => {
                let (code, message) = err.into_parts();
                ServerMessage::Error(ErrorReply::new(id, code, message))
            }
            Err(err) => {
                tracing::error!(connection = %conn.id(), request = %name, error = %err, "request handler failed");
                return ServerMessage::InternalError(id);
            }
        },
        Err(panic) => {
            tracing::error!(connection = %conn.id(), request = %name, panic = panic_message(&*panic), "request handler panicked");
            return ServerMessage::InternalError(id);
        }
    };
    let len = message.encoded_len();
    if len > max {
        tracing::error!(connection = %conn.id(), request = %name, len, max, "reply exceeds the message buffer size");
        return ServerMessage::InternalError(id);
    }
    message
}

/// Runs a signal handler; a panic is logged.
async fn run_signal<H: Handler>(
    handler: &H,
    conn: &Connection,
    signal: Signal,
    abort: &CancellationToken,
) {
    let name = signal.name().clone();
    let outcome = abortable(
        AssertUnwindSafe(handler.on_signal(conn, signal)).catch_unwind(),
        abort,
    )
    .await
    .unwrap_or(Ok(()));
    if let Err(panic) = outcome {
        tracing::error!(connection = %conn.id(), signal = %name, panic = panic_message(&*panic), "signal handler panicked");
    }
}

/// Runs `future` until it completes (`Some`) or `abort` is cancelled
/// (`None`, the future dropped). A future that completes at its first poll
/// (most handlers) never touches the token.
async fn abortable<F: Future>(future: F, abort: &CancellationToken) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    if let Some(out) = (&mut future).now_or_never() {
        return Some(out);
    }
    tokio::select! {
        biased;
        out = future => Some(out),
        () = abort.cancelled() => None,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> Accepted {
        Accepted {
            info: ConnectionInfo::new("/".parse().unwrap(), http::HeaderMap::new(), None),
            options: ConnectionOptions::new(),
            slot: None,
        }
    }

    /// Regression: the connection task once held every transport's future
    /// inline (TLS included), about 6 KiB per idle connection.
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let server = crate::Server::builder(crate::Router::new())
            .build()
            .unwrap();
        let mut request = http::Request::new(());
        let upgrade = hyper::upgrade::on(&mut request);
        let task = run(
            server.shared.clone(),
            Arc::new(crate::Router::new()),
            upgrade,
            accepted(),
        );
        assert!(
            std::mem::size_of_val(&task) <= 1024,
            "{}",
            std::mem::size_of_val(&task)
        );
        let (io, _peer) = tokio::io::duplex(64);
        let connection = serve(
            server.shared.clone(),
            Arc::new(crate::Router::new()),
            io,
            accepted(),
        );
        assert!(
            std::mem::size_of_val(&connection) <= 4096,
            "{}",
            std::mem::size_of_val(&connection)
        );
    }
}
