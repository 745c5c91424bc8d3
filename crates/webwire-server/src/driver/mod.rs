//! The connection task: reads messages, runs handlers within the
//! concurrency limit, writes (see `wire`), and closes the connection
//! (docs/protocol.md sections 9.2 and 10).
//!
//! Backpressure: a reply is written before the next message is read, and
//! writing waits while the socket is full; with limit 1 the handler runs in
//! this task, so the next message is read only after it returned; with a
//! limit N the task takes a semaphore permit before it reads; a handler
//! still pending after its first poll holds a reply reservation in the queue. A
//! client that sends faster than the handlers or its own reading allow
//! makes this task wait, not grow.
//!
//! - this module: the task's state and its read loop (what arrives, the
//!   read timeout, closes and shutdowns asked for, draining);
//! - `transport`: taking the transport back from hyper after the upgrade;
//! - `dispatch`: running handlers, one path for requests and signals, and
//!   the reply for an outcome;
//! - `session_request`: a client's restore and close requests;
//! - `closing`: the close frame, the close handshake, the lingering close.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::prefixed::Prefixed;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webwire_proto::connection::server::{Closing, Drain, Read, Received, ServerConnection, State};
use webwire_proto::{
    ErrorCode, ErrorReply, Name, Payload, Reply, Request, RequestId, ServerMessage, Signal,
};

use crate::admission::{AddressPermit, MessageLimiter};
use crate::connection::{ConnectionInfo, ConnectionInner};
use crate::error::DisconnectReason;
use crate::lifecycle::Phase;
use crate::limits::RATE_LIMITED;
use crate::options::{Concurrency, ConnectionOptions};
use crate::outbox::Outbound;
use crate::server::Shared;
use crate::wire::{Incoming, Socket, Wire, WireError, WsError};
use crate::{Connection, Handler, HandlerError, ReplyError};

mod closing;
mod dispatch;
mod keyed;
mod session_request;
mod stream_resume;
mod transport;

use closing::stream_error;
use dispatch::panic_message;
use transport::spawn_connection;

/// What the upgrade decided for a connection, handed to its task.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) info: ConnectionInfo,
    pub(crate) options: ConnectionOptions,
    /// The connection's place under the server's connection limit.
    pub(crate) limit_permit: Option<OwnedSemaphorePermit>,
    /// Its place under the per-address connection limit.
    pub(crate) address_permit: Option<AddressPermit>,
}

/// Waits for the upgrade, then starts the connection's own task.
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
    spawn_connection(shared, handler, upgraded, accepted);
}

/// Runs one connection on its upgraded transport.
///
/// Not an `async fn`: the set-up runs before the future exists, so the
/// future holds only what the connection needs while it is open, not the
/// arguments it was made from (an `async fn` keeps its arguments' space
/// for its whole life, in every idle connection).
fn serve<H, Io>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    io: Io,
    accepted: Accepted,
) -> impl Future<Output = ()> + Send
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        info,
        options,
        limit_permit,
        address_permit,
    } = accepted;
    let config = shared.config();
    // A message is never split into frames by us: clients get what the
    // original server sent, one frame per message.
    let ws = Socket::new(io, config.buffer_size);

    let id = shared.next_connection_id();
    let span = connection_span(id, info.remote_addr());
    let conn = Connection::new(
        ConnectionInner::new(
            id,
            info,
            options,
            config,
            shared.sessions().clone(),
            shared.rooms().clone(),
        )
        .with_span(span.clone()),
    );
    let mut protocol = ServerConnection::new(config.read_timeout, Instant::now().into_std());
    if !config.extensions.is_empty() {
        protocol = protocol.with_extensions(config.extensions);
    }
    let mut wire = Wire::new(ws, conn.inner.clone(), config.queue_timeout, protocol);
    // The accept configuration goes first, before anything else; it is
    // flushed with the first batch.
    let _ = wire.send_frame_now(shared.accept_conf().clone());
    shared.register(&conn);
    shared.metrics().connections.increment(1.0);
    tracing::debug!(connection = %conn.id(), remote = ?conn.remote_addr(), "connected");

    let mode = match conn.options().concurrency_limit() {
        Concurrency::Limited(n) if n.get() == 1 => Mode::Inline,
        Concurrency::Limited(n) => Mode::Limited(Arc::new(Semaphore::new(
            n.get().min(Semaphore::MAX_PERMITS),
        ))),
        Concurrency::Unlimited => Mode::Unlimited,
    };
    let mut task = Task {
        ctx: Arc::new(Ctx {
            handler,
            conn: conn.clone(),
            abort: shared.abort_token(),
        }),
        shared: shared.clone(),
        conn: conn.clone(),
        wire,
        mode,
        tasks: None,
        pending_signals: None,
        limiter: shared.message_limiter(),
        keyed: None,
    };
    async move {
        let end = task.run().await;
        let handler = task.ctx.handler.clone();
        // Consumes the task's state: the socket is closed when this returns.
        // The rare phases are boxed, so that their futures do not make every
        // idle connection's task larger.
        let reason = Box::pin(task.finish(end)).await;

        // The socket is closed: the place under the connection limit is free
        // before the connection leaves the registry. It leaves its session
        // (which stays stored, to be restored later) before the disconnect
        // hook, which can still read it.
        drop(limit_permit);
        drop(address_permit);
        Box::pin(shared.sessions().disconnected(&conn)).await;
        conn.leave_all_rooms();
        shared.unregister(&conn);
        shared.metrics().connections.decrement(1.0);
        shared.metrics().closed(&reason);
        tracing::debug!(connection = %conn.id(), %reason, "disconnected");
        let hook = AssertUnwindSafe(handler.on_disconnected(&conn, &reason)).catch_unwind();
        if let Err(panic) = Box::pin(hook).await {
            tracing::error!(connection = %conn.id(), panic = panic_message(&*panic), "disconnect hook panicked");
        }
        conn.inner.set_done();
    }
    .instrument(span)
}

/// The span of a connection, at INFO (one per connection: cheap next to
/// its handshake). Its fields follow OpenTelemetry's names, so that
/// tracing-opentelemetry exports it as a server span; `session` is
/// recorded when the connection joins a session (a short digest of the
/// key, never the key).
fn connection_span(
    id: crate::connection::ConnectionId,
    remote: Option<std::net::SocketAddr>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "webwire.connection",
        otel.kind = "server",
        connection.id = id.get(),
        client.address = tracing::field::Empty,
        session = tracing::field::Empty,
    );
    if let Some(remote) = remote {
        span.record("client.address", tracing::field::display(remote));
    }
    span
}

enum Mode {
    /// Limit 1: handlers run in the connection task.
    Inline,
    /// Limit N: a permit taken before reading; a handler still pending
    /// after its first poll runs on in a task of its own.
    Limited(Arc<Semaphore>),
    /// As limit N without permits; pending requests are bounded by their
    /// reply reservations, pending signals by the queue capacity.
    Unlimited,
}

/// What is left to do for a message once it was handled as far as it
/// could be without waiting.
enum Then {
    Nothing,
    /// Write this reply.
    Reply(ServerMessage),
    /// A request handler still pending after its first poll.
    Request(Pending<RequestFuture, dispatch::TimedOwned>),
    /// A signal handler still pending after its first poll.
    Signal(Pending<SignalFuture>),
    /// A session request, handled in this task.
    Session(RequestId, SessionRequest),
    /// 2.1: the client opted in; answer with the features granted.
    Hello(
        Box<webwire_proto::ExtensionHello>,
        webwire_proto::FeatureFlags,
    ),
    /// 2.1: a keyed request, decided by the request ledger.
    Keyed(Box<webwire_proto::KeyedRequest>),
    /// 2.1: a StreamResume, handled in this task (after any restore read
    /// before it).
    Resume(Box<webwire_proto::StreamResume>),
}

type RequestFuture = Pin<Box<dyn Future<Output = Result<Payload, HandlerError>> + Send>>;
type SignalFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handler's future that did not finish at its first poll.
struct Pending<F, T = ()> {
    /// The request's id (unused for signals).
    id: RequestId,
    /// The request's or signal's name, for the log.
    name: Name,
    future: F,
    /// A request's metric handles, start and span (nothing for signals).
    timed: T,
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
    Message(Option<Result<Incoming, WsError>>),
    /// Something changed (a close, a re-armed timer): look again.
    Again,
}

/// How the read loop ended.
enum ReadEnd {
    /// As the connection's rules decided; the close frame (if any) is
    /// still to be sent.
    Closing(Closing),
    /// For this reason of the WebSocket layer; the close frame (if any) is
    /// still to be sent.
    Reason(DisconnectReason),
    /// The socket could not be written.
    Wire(WireError),
}

/// What a handler needs, shared by the connection task and the handler
/// tasks (one reference count per message, not three).
struct Ctx<H> {
    handler: Arc<H>,
    conn: Connection,
    /// Cancelled when running handlers are to be dropped (the shutdown deadline).
    abort: CancellationToken,
}

/// The connection task's state.
struct Task<H, Io> {
    shared: Arc<Shared>,
    ctx: Arc<Ctx<H>>,
    conn: Connection,
    wire: Wire<Io>,
    mode: Mode,
    /// Handlers still pending after their first poll; made for the first.
    tasks: Option<TaskTracker>,
    /// Unlimited concurrency: bounds the signal handlers still running in
    /// tasks (requests are bounded by their reply reservations) to the queue
    /// capacity; created when the first one is needed.
    pending_signals: Option<Arc<Semaphore>>,
    /// The message rate limits, `None` without any (one branch per message).
    limiter: Option<Box<MessageLimiter>>,
    /// 2.1, once `KEYED_REQUESTS` was granted: the client instance and the
    /// session its last restore named.
    keyed: Option<Box<keyed::KeyedState>>,
}

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(&mut self) -> ReadEnd {
        let (ctx, conn) = (&self.ctx, &self.conn);
        let hook = async {
            tokio::select! {
                biased;
                out = AssertUnwindSafe(ctx.handler.on_connected(conn)).catch_unwind() => out,
                () = ctx.abort.cancelled() => Ok(()),
            }
        };
        let (hook, failed) = Box::pin(self.wire.drive_to_end(hook)).await;
        if let Err(panic) = hook {
            tracing::error!(connection = %self.conn.id(), panic = panic_message(&*panic), "connect hook panicked");
        }
        if let Some(err) = failed {
            return ReadEnd::Wire(err);
        }
        // The read timeout counts from here.
        self.wire.protocol_mut().handle_control();
        self.read_loop().await
    }

    async fn read_loop(&mut self) -> ReadEnd {
        let first_deadline = self.read_deadline();
        let timer = tokio::time::sleep_until(first_deadline);
        tokio::pin!(timer);
        let mut permit: Option<OwnedSemaphorePermit> = None;
        loop {
            // Cheap checks first: with messages waiting, the stream is read
            // before anything else is looked at.
            self.check_closing();
            let handlers_running = !self.no_tasks();
            let message = match self.wire.protocol_mut().next_read(handlers_running) {
                Read::Close(closing) => return ReadEnd::Closing(closing),
                // Every handler has returned. Answer what has arrived already
                // (a bounded number of messages), then close.
                Read::Arrived => match self.wire.arrived() {
                    // Handled below (the end of the stream too).
                    Some(message) => message,
                    None => return ReadEnd::Closing(self.wire.protocol_mut().nothing_arrived()),
                },
                Read::Wait => {
                    if let (Mode::Limited(semaphore), None, true) =
                        (&self.mode, &permit, self.wire.protocol().is_open())
                    {
                        match semaphore.clone().try_acquire_owned() {
                            Ok(p) => permit = Some(p),
                            Err(_) => {
                                let semaphore = semaphore.clone();
                                let (wire, inner) = (&mut self.wire, &self.conn.inner);
                                // Boxed: waiting for a permit is the rarer case.
                                let acquired = Box::pin(async {
                                    tokio::select! {
                                        biased;
                                        p = wire.drive(semaphore.acquire_owned()) => Some(p),
                                        () = attention(inner, &self.shared, false) => None,
                                    }
                                })
                                .await;
                                match acquired {
                                    Some(Ok(p)) => permit = p.ok(),
                                    Some(Err(err)) => return ReadEnd::Wire(err),
                                    None => {}
                                }
                                continue;
                            }
                        }
                    }
                    // A message has arrived already (under load, the usual
                    // case): nothing else is polled and no clock is read.
                    // The socket's cooperative budget makes this miss now
                    // and then, so the branches below are still seen.
                    if let Some(message) = self.wire.arrived() {
                        message
                    } else {
                        match self.wait_message(&mut timer).await {
                            Ok(Next::Message(message)) => message,
                            Ok(Next::Again) => continue,
                            Err(end) => return end,
                        }
                    }
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    self.wire.protocol_mut().handle_transport_error();
                    return ReadEnd::Reason(stream_error(err));
                }
                None => return ReadEnd::Closing(self.wire.protocol_mut().handle_end()),
            };
            match message {
                Incoming::Binary(data) => {
                    let received = self.wire.protocol_mut().handle_message(data);
                    // Only this task writes the counter: a store, not a read-modify-write.
                    self.conn
                        .inner
                        .counters()
                        .set_received(self.wire.protocol().received());
                    let done = match self.on_message(received) {
                        // The usual case: a handler that finished at once, its
                        // reply written without waiting; the rare wait is boxed,
                        // so that its future does not make every idle
                        // connection's larger.
                        Ok(Then::Reply(reply)) => match self.wire.send_now(reply) {
                            Ok(None) => Ok(()),
                            Ok(Some(reply)) => Box::pin(self.send(reply)).await,
                            Err(err) => Err(ReadEnd::Wire(err)),
                        },
                        Ok(Then::Nothing) if self.wire.has_queued() => {
                            // What a signal's handler sent (an answer, often)
                            // goes with this batch rather than after the last
                            // message that arrived.
                            self.wire.send_queued().await.map_err(ReadEnd::Wire)
                        }
                        Ok(Then::Nothing) => Ok(()),
                        Ok(then) => Box::pin(self.follow_up(then, &mut permit)).await,
                        Err(end) => Err(end),
                    };
                    if let Err(end) = done {
                        return end;
                    }
                }
                Incoming::Text => {
                    let closing = self.wire.protocol_mut().handle_text();
                    self.conn
                        .inner
                        .counters()
                        .set_received(self.wire.protocol().received());
                    return ReadEnd::Closing(closing);
                }
                Incoming::Close { code, reason } => {
                    let closing = self.wire.protocol_mut().handle_close_frame(code, &reason);
                    return ReadEnd::Closing(closing);
                }
                Incoming::Ping(_) | Incoming::Pong => {
                    let ping = matches!(message, Incoming::Ping(_));
                    // Pings (answered by the WebSocket stream) and pongs only
                    // count as activity.
                    self.wire.protocol_mut().handle_control();
                    if ping && !self.wire.has_room() {
                        // The stream answered with a pong it queued itself: like
                        // a reply, it counts toward the write budget, and the
                        // next message is read once the stream has room again
                        // (a client that pings and never reads is closed as
                        // stalled instead of growing the stream). Boxed: the
                        // rare wait.
                        if let Err(err) = Box::pin(self.wire.wait_room()).await {
                            return ReadEnd::Wire(err);
                        }
                    }
                }
            }
        }
    }

    /// When the read timeout ends if nothing arrives; the clock is read
    /// once per wait, not per message, and only after messages arrived.
    fn read_deadline(&mut self) -> Instant {
        let deadline = self
            .wire
            .protocol_mut()
            .read_deadline(|| Instant::now().into_std());
        Instant::from_std(deadline)
    }

    /// Writes what is queued, flushes the batch, and waits for the next
    /// message, the read timeout, a close, or the last handler of a
    /// closing connection. `Err` ends the read loop.
    async fn wait_message(
        &mut self,
        timer: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<Next, ReadEnd> {
        // About to wait: the deadline moves on if messages arrived.
        let deadline = self.read_deadline();
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        let draining = self.wire.protocol().is_draining();
        let wire = &mut self.wire;
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(Err(err)) = wire.poll_pump(cx) {
                return Poll::Ready(Err(err));
            }
            wire.poll_next(cx).map(Ok)
        });
        let tasks = self.tasks.as_ref().filter(|_| draining);
        Ok(tokio::select! {
            biased;
            message = next => Next::Message(message.map_err(ReadEnd::Wire)?),
            () = attention(&self.conn.inner, &self.shared, draining) => Next::Again,
            () = async { tasks.unwrap().wait().await }, if tasks.is_some() => Next::Again,
            () = timer.as_mut() => {
                let protocol = self.wire.protocol_mut();
                if let Some(closing) = protocol.handle_timeout(Instant::now().into_std()) {
                    return Err(ReadEnd::Closing(closing));
                }
                let deadline = self.read_deadline();
                timer.as_mut().reset(deadline);
                Next::Again
            }
        })
    }

    fn no_tasks(&self) -> bool {
        self.tasks.as_ref().is_none_or(TaskTracker::is_empty)
    }

    /// Tells the rules of a close or shutdown asked for since they last
    /// looked (a shutdown also while the connection drains for a close).
    #[inline]
    fn check_closing(&mut self) {
        let shutting_down = self.shared.is_shutting_down();
        let state = self.wire.protocol().state();
        let drain = match state {
            State::Open if shutting_down => Drain::Shutdown,
            State::Open if !self.conn.inner.lifecycle().is_active() => self.close_asked(),
            State::Draining(Drain::Close | Drain::Restart) if shutting_down => Drain::Shutdown,
            State::Draining(Drain::Close) if self.conn.inner.restart_asked() => Drain::Restart,
            _ => return,
        };
        self.wire.protocol_mut().close(drain);
        if state == State::Open {
            self.conn.inner.lifecycle().advance(Phase::Closing);
            if let Some(tasks) = &self.tasks {
                tasks.close();
            }
        }
    }

    /// The drain of a close the application or a server drain asked for.
    fn close_asked(&self) -> Drain {
        if self.conn.inner.restart_asked() {
            Drain::Restart
        } else {
            Drain::Close
        }
    }

    /// Does for a binary message what the rules answered, as far as it can
    /// without waiting, and says what is left to do.
    fn on_message(&mut self, received: Received) -> Result<Then, ReadEnd> {
        Ok(match received {
            Received::Request(request) => {
                if let Some(limiter) = &mut self.limiter
                    && !limiter.allow(|| self.conn.session_arc())
                {
                    return self.over_limit(Some(request.id()));
                }
                self.dispatch_request(request)
            }
            Received::Signal(signal) => {
                if let Some(limiter) = &mut self.limiter
                    && !limiter.allow(|| self.conn.session_arc())
                {
                    return self.over_limit(None);
                }
                self.dispatch_signal(signal)
            }
            Received::Answer(answer) => Then::Reply(answer),
            Received::Nothing => Then::Nothing,
            Received::RestoreSession { id, key } => Then::Session(id, SessionRequest::Restore(key)),
            Received::CloseSession(id) => Then::Session(id, SessionRequest::Close),
            Received::Close(closing) => return Err(ReadEnd::Closing(closing)),
            Received::ExtensionHello { hello, granted } => Then::Hello(Box::new(hello), granted),
            Received::KeyedRequest(request) => {
                // Over the rate limit: answered before anything is recorded.
                if let Some(limiter) = &mut self.limiter
                    && !limiter.allow(|| self.conn.session_arc())
                {
                    return self.over_limit(Some(request.id()));
                }
                Then::Keyed(Box::new(request))
            }
            Received::StreamResume(resume) => Then::Resume(Box::new(resume)),
        })
    }

    /// A message over the rate limit: a request (`id`) is answered with
    /// `RATE_LIMITED`, a signal dropped; a client that keeps at it is
    /// closed with 1008, after the answer.
    #[cold]
    fn over_limit(&mut self, id: Option<RequestId>) -> Result<Then, ReadEnd> {
        self.conn.inner.counters().add_rate_limited();
        let kind = if id.is_some() { "request" } else { "signal" };
        self.shared.metrics().rate_limited(kind);
        let close_after = self
            .limiter
            .as_ref()
            .map_or(Duration::MAX, |l| l.close_after());
        let closing = self
            .wire
            .protocol_mut()
            .over_limit(Instant::now().into_std(), close_after);
        tracing::trace!(connection = %self.conn.id(), request = ?id, "message over the rate limit");
        let reply = id.map(|id| {
            ServerMessage::Error(ErrorReply::new(
                id,
                ErrorCode::from_static(RATE_LIMITED),
                "message rate limit exceeded",
            ))
        });
        match (closing, reply) {
            (None, Some(reply)) => Ok(Then::Reply(reply)),
            (None, None) => Ok(Then::Nothing),
            (Some(closing), reply) => {
                tracing::debug!(connection = %self.conn.id(), "closing: the client kept exceeding its message rate limit");
                if let Some(reply) = reply
                    && let Err(err) = self.wire.push_own(reply)
                {
                    return Err(ReadEnd::Wire(err));
                }
                Err(ReadEnd::Closing(closing))
            }
        }
    }

    /// What a message left to do that may wait; boxed by the caller, so
    /// that these rarer paths do not make every idle connection's future
    /// larger.
    async fn follow_up(
        &mut self,
        then: Then,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        match then {
            Then::Nothing => Ok(()),
            Then::Reply(reply) => self.send(reply).await,
            Then::Request(pending) => self.pending_request(pending, permit).await,
            Then::Signal(pending) => self.pending_signal(pending, permit).await,
            Then::Session(id, request) => self.session_request(id, request).await,
            Then::Hello(hello, granted) => self.extension_hello(*hello, granted).await,
            Then::Keyed(request) => self.keyed_request(*request, permit).await,
            Then::Resume(resume) => self.stream_resume(*resume).await,
        }
    }

    /// Writes one of the task's own messages, after what is queued.
    async fn send(&mut self, message: ServerMessage) -> Result<(), ReadEnd> {
        self.wire.send(message).await.map_err(ReadEnd::Wire)
    }
}

/// Resolves when the read loop has something to look at: (unless closing
/// already) a close or shutdown was asked for.
fn attention<'a>(
    inner: &'a ConnectionInner,
    shared: &'a Shared,
    draining: bool,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        inner.register_task(cx.waker());
        let wanted = !draining && (!inner.lifecycle().is_active() || shared.is_shutting_down());
        if wanted {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> Accepted {
        Accepted {
            info: ConnectionInfo::new("/".parse().unwrap(), http::HeaderMap::new(), None),
            options: ConnectionOptions::new(),
            limit_permit: None,
            address_permit: None,
        }
    }

    /// Regression: the connection task once held every transport's future
    /// inline (TLS included), about 6 KiB per idle connection; its future
    /// was 2.6 KiB while `serve` was an `async fn` (its arguments kept) and
    /// the waiting paths of pending handlers were not boxed. Every idle
    /// connection holds one.
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let server = crate::Server::builder(crate::MessageRouter::new())
            .build()
            .unwrap();
        let mut request = http::Request::new(());
        let upgrade = hyper::upgrade::on(&mut request);
        let task = run(
            server.shared.clone(),
            Arc::new(crate::MessageRouter::new()),
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
            Arc::new(crate::MessageRouter::new()),
            io,
            accepted(),
        );
        assert!(
            std::mem::size_of_val(&connection) <= 1536,
            "{}",
            std::mem::size_of_val(&connection)
        );
    }
}
