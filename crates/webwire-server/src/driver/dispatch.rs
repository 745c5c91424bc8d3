//! Running the application's handlers: each handler's future is polled
//! once where the message was read; one still pending runs on inline at
//! limit 1, or in a task of its own with a reply reservation and its
//! permit. The reply for an outcome, panics included.

use std::borrow::Cow;

use super::*;
use crate::metrics::{RequestOutcome, RouteMetrics};
use crate::own_signals::PollingScope;
use tracing::Instrument;

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Runs a request's handler: its future is boxed and polled once
    /// here. Most handlers finish at their first poll: no task, no queue,
    /// no wake-up; the reply goes straight to the socket. One still pending
    /// is left to [`pending_request`](Self::pending_request).
    ///
    /// A router's future (see [`Handler::route_request`]) is taken as it
    /// is: one allocation per request, and the route's name for the log
    /// instead of a copy of the request's.
    pub(super) fn dispatch_request(&mut self, request: Request) -> Then {
        let id = request.id();
        let ctx = &self.ctx;
        let metrics = self.shared.metrics();
        let (mut future, name, route): (RequestFuture, Cow<'_, Name>, &Arc<RouteMetrics>) =
            match ctx.handler.route_request(&ctx.conn, request) {
                Ok(routed) => {
                    let route = match routed.metrics {
                        Some(lazy) => lazy.get(routed.route.as_str()),
                        None => metrics.unknown(),
                    };
                    (routed.future, Cow::Borrowed(routed.route), route)
                }
                Err(request) => {
                    let name = Cow::Owned(request.name().clone());
                    let ctx = ctx.clone();
                    let future =
                        Box::pin(async move { ctx.handler.on_request(&ctx.conn, request).await });
                    (future, name, metrics.unknown())
                }
            };
        let span = request_span(&name, id);
        let started = std::time::Instant::now();
        let room = self.shared.config().queue_capacity;
        let outcome = {
            let _entered = span.enter();
            Self::poll_first(&mut self.wire, &self.conn, room, &mut future)
        };
        match outcome {
            Some(outcome) => Then::Reply(reply_for(
                &self.conn,
                id,
                &name,
                outcome,
                self.shared.config().buffer_size,
                Timed::new(route, started, &span),
            )),
            None => Then::Request(Pending {
                id,
                name: name.into_owned(),
                future,
                timed: Timed::new(route, started, &span).owned(),
            }),
        }
    }

    /// Polls a handler's future for the first time, in this task: the
    /// signals it sends its own connection meanwhile go straight into the
    /// batch, ahead of its reply (see `own_signals`).
    fn poll_first<T>(
        wire: &mut Wire<Io>,
        conn: &Connection,
        room: usize,
        future: &mut Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Option<Result<T, Box<dyn Any + Send>>> {
        let scope = PollingScope::enter(conn.id(), room);
        let outcome = poll_once(future);
        if let Err(err) = scope.finish(|signal| wire.push_own(ServerMessage::Signal(signal))) {
            // The stream refused a frame: the next write or read shows why.
            tracing::trace!(connection = %conn.id(), ?err, "a handler's signal was not written");
        }
        outcome
    }

    /// A request handler still pending after its first poll runs on in
    /// this task at limit 1 (reading waits), and otherwise in a task of its
    /// own, with a reply reservation in the queue and its permit (limit N).
    pub(super) async fn pending_request(
        &mut self,
        pending: Pending<RequestFuture, TimedOwned>,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        let Pending {
            id,
            name,
            future,
            timed,
        } = pending;
        let max = self.shared.config().buffer_size;
        // The handler's later polls in its span too (no allocation: the
        // future is wrapped, not boxed again).
        let future = future.instrument(timed.span.clone());
        if let Mode::Inline = self.mode {
            let (outcome, written) = self.run_inline(future).await;
            written?;
            let reply = match outcome {
                Some(outcome) => reply_for(&self.conn, id, &name, outcome, max, timed.borrow()),
                None => timed.borrow().shutdown(id),
            };
            return self.send(reply).await;
        }
        // A queue that takes nothing more belongs to a connection that is
        // closing: the request is answered as in a shutdown (the handler's
        // future is dropped unpolled again).
        let Ok(tx) = self.conn.sender() else {
            return self.send(timed.borrow().shutdown(id)).await;
        };
        let reply_reservation = match tx.clone().try_reserve_owned() {
            Ok(reservation) => reservation,
            Err(mpsc::error::TrySendError::Full(tx)) => {
                match self.wire.drive(tx.reserve_owned()).await {
                    Ok(Ok(reservation)) => reservation,
                    Ok(Err(_)) => return self.send(timed.borrow().shutdown(id)).await,
                    Err(err) => return Err(ReadEnd::Wire(err)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return self.send(timed.borrow().shutdown(id)).await
            }
        };
        let conn = self.conn.clone();
        self.spawn_pending(future, permit.take(), move |outcome| {
            let reply = match outcome {
                Some(outcome) => reply_for(&conn, id, &name, outcome, max, timed.borrow()),
                None => timed.borrow().shutdown(id),
            };
            reply_reservation.send(Outbound::Message(Box::new(reply)));
        });
        Ok(())
    }

    /// Runs a signal's handler, as [`dispatch_request`](Self::dispatch_request).
    pub(super) fn dispatch_signal(&mut self, signal: Signal) -> Then {
        self.shared.metrics().signals_received.increment(1);
        let ctx = &self.ctx;
        let (mut future, name): (SignalFuture, Cow<'_, Name>) =
            match ctx.handler.route_signal(&ctx.conn, signal) {
                Ok(routed) => (routed.future, Cow::Borrowed(routed.route)),
                Err(signal) => {
                    let name = Cow::Owned(signal.name().clone());
                    let ctx = ctx.clone();
                    let future =
                        Box::pin(async move { ctx.handler.on_signal(&ctx.conn, signal).await });
                    (future, name)
                }
            };
        let room = self.shared.config().queue_capacity;
        let outcome = Self::poll_first(&mut self.wire, &self.conn, room, &mut future);
        match outcome {
            Some(outcome) => {
                log_signal_panic(&self.conn, &name, outcome);
                Then::Nothing
            }
            None => Then::Signal(Pending {
                id: RequestId::default(),
                name: name.into_owned(),
                future,
                timed: (),
            }),
        }
    }

    /// As [`pending_request`](Self::pending_request), for a signal.
    pub(super) async fn pending_signal(
        &mut self,
        pending: Pending<SignalFuture>,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        let Pending { name, future, .. } = pending;
        if let Mode::Inline = self.mode {
            let (outcome, written) = self.run_inline(future).await;
            log_signal_panic(&self.conn, &name, outcome.unwrap_or(Ok(())));
            return written;
        }
        let mut permit = permit.take();
        if let Mode::Unlimited = self.mode {
            // Without a bound, a client flooding signals whose handlers wait
            // (for room in its own full queue) grows the server without
            // limit: the reader waits here instead, and stops reading.
            let capacity = self.shared.config().queue_capacity;
            let bound = self
                .pending_signals
                .get_or_insert_with(|| Arc::new(Semaphore::new(capacity)))
                .clone();
            permit = self
                .wire
                .drive(bound.acquire_owned())
                .await
                .map_err(ReadEnd::Wire)?
                .ok();
        }
        let conn = self.conn.clone();
        // In a task of its own: in the connection's span still.
        let future = future.instrument(conn.inner.span().clone());
        self.spawn_pending(future, permit, move |outcome| {
            log_signal_panic(&conn, &name, outcome.unwrap_or(Ok(())));
        });
        Ok(())
    }

    /// Runs a handler still pending after its first poll in this task
    /// (limit 1): reading waits for it while the queue keeps draining. Its
    /// outcome (`None`: dropped at the shutdown deadline), and whether the
    /// stream could be written meanwhile.
    pub(super) async fn run_inline<F: Future>(
        &mut self,
        future: F,
    ) -> (Finished<F::Output>, Result<(), ReadEnd>) {
        let counters = self.conn.inner.counters();
        counters.set_inline_handler(true);
        let handler = abortable(AssertUnwindSafe(future).catch_unwind(), &self.ctx.abort);
        let (outcome, failed) = self.wire.drive_to_end(handler).await;
        counters.set_inline_handler(false);
        (
            outcome,
            failed.map_or(Ok(()), |err| Err(ReadEnd::Wire(err))),
        )
    }

    /// Runs a handler still pending after its first poll in a task of its
    /// own (limit N, unlimited), holding `permit` until it has ended;
    /// `finish` takes its outcome (`None`: dropped at the shutdown
    /// deadline). One path for requests and signals.
    pub(super) fn spawn_pending<F>(
        &mut self,
        future: F,
        permit: Option<OwnedSemaphorePermit>,
        finish: impl FnOnce(Finished<F::Output>) + Send + 'static,
    ) where
        F: Future + Send + 'static,
        F::Output: Send,
    {
        let (conn, abort) = (self.conn.clone(), self.ctx.abort.clone());
        conn.inner.counters().handler_started();
        self.spawn(async move {
            let outcome = abortable(AssertUnwindSafe(future).catch_unwind(), &abort).await;
            finish(outcome);
            conn.inner.counters().handler_ended();
            drop(permit);
        });
    }

    /// Runs a pending handler on in a task of its own.
    fn spawn(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        let tasks = self.tasks.get_or_insert_with(|| {
            let tasks = TaskTracker::new();
            if self.wire.protocol().is_draining() {
                tasks.close();
            }
            tasks
        });
        tasks.spawn(future);
    }
}

/// What a pending handler gave: its output or its panic; `None` when it was
/// dropped at the shutdown deadline.
type Finished<T> = Option<Result<T, Box<dyn Any + Send>>>;

/// Polls a handler's future once, catching a panic: `None` while it is
/// pending (it may be polled again).
pub(super) fn poll_once<T>(
    future: &mut Pin<Box<impl Future<Output = T> + ?Sized>>,
) -> Option<Result<T, Box<dyn Any + Send>>> {
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }));
    match polled {
        Ok(Poll::Ready(out)) => Some(Ok(out)),
        Ok(Poll::Pending) => None,
        Err(panic) => Some(Err(panic)),
    }
}

/// What a request handler returned, or its panic.
pub(super) type Outcome = Result<Result<Payload, HandlerError>, Box<dyn Any + Send>>;

/// The reply for a handler's outcome: a reply, an error reply, or an
/// internal-error reply (the cause logged).
pub(super) fn reply_for(
    conn: &Connection,
    id: RequestId,
    name: &Name,
    outcome: Outcome,
    max: usize,
    timed: Timed<'_>,
) -> ServerMessage {
    let reply = reply_message(conn, id, name, outcome, max);
    let outcome = match reply {
        ServerMessage::Reply(_) => RequestOutcome::Ok,
        ServerMessage::Error(_) => RequestOutcome::Error,
        _ => RequestOutcome::InternalError,
    };
    timed.finished(outcome);
    reply
}

/// The span of a request, at DEBUG: at the default INFO level it is
/// disabled, and a disabled span costs a level check (see BENCHMARKS.md).
/// `outcome` and `duration_s` are recorded when the request is answered;
/// `otel.status_code` is `ERROR` for an internal error.
fn request_span(name: &Name, id: RequestId) -> tracing::Span {
    tracing::debug_span!(
        "webwire.request",
        otel.name = %name,
        request.name = %name,
        request.id = id.to_u64(),
        outcome = tracing::field::Empty,
        duration_s = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// The reply for a handler's outcome, as [`reply_for`], uncounted.
fn reply_message(
    conn: &Connection,
    id: RequestId,
    name: &Name,
    outcome: Outcome,
    max: usize,
) -> ServerMessage {
    let message = match outcome {
        Ok(Ok(payload)) => ServerMessage::Reply(Reply::new(id, payload)),
        Ok(Err(err)) => match err.downcast::<ReplyError>() {
            Ok(err) => {
                let (code, message) = err.into_parts();
                ServerMessage::Error(ErrorReply::new(id, code, message))
            }
            Err(err) => {
                let client_caused = err
                    .downcast_ref::<crate::error::SessionError>()
                    .is_some_and(crate::error::SessionError::is_client_caused);
                let error = crate::session::ops::chain(&*err);
                if client_caused {
                    tracing::warn!(connection = %conn.id(), request = %name, %error, "request handler failed on the client's doing");
                } else {
                    tracing::error!(connection = %conn.id(), request = %name, %error, "request handler failed");
                }
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

/// A request's route handles, when its handler was first polled, and its
/// span.
#[derive(Clone, Copy)]
pub(super) struct Timed<'a> {
    route: &'a Arc<RouteMetrics>,
    started: std::time::Instant,
    span: &'a tracing::Span,
}

impl<'a> Timed<'a> {
    pub(super) fn new(
        route: &'a Arc<RouteMetrics>,
        started: std::time::Instant,
        span: &'a tracing::Span,
    ) -> Self {
        Self {
            route,
            started,
            span,
        }
    }

    /// For a pending request, which outlives the router's borrow (a
    /// reference count, no allocation).
    fn owned(self) -> TimedOwned {
        TimedOwned {
            route: self.route.clone(),
            started: self.started,
            span: self.span.clone(),
        }
    }

    /// Counts the request and records its outcome on its span.
    pub(super) fn finished(self, outcome: RequestOutcome) {
        let elapsed = self.started.elapsed();
        self.route.finished(outcome, elapsed);
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome.as_str());
            self.span.record("duration_s", elapsed.as_secs_f64());
            if outcome == RequestOutcome::InternalError {
                self.span.record("otel.status_code", "ERROR");
            }
        }
    }

    /// The shutdown reply of a request whose handler was dropped or whose
    /// connection is closing, counted.
    fn shutdown(self, id: RequestId) -> ServerMessage {
        self.finished(RequestOutcome::Shutdown);
        ServerMessage::Shutdown(id)
    }
}

/// [`Timed`] owning its handles, for a request still pending.
pub(super) struct TimedOwned {
    route: Arc<RouteMetrics>,
    started: std::time::Instant,
    span: tracing::Span,
}

impl TimedOwned {
    fn borrow(&self) -> Timed<'_> {
        Timed {
            route: &self.route,
            started: self.started,
            span: &self.span,
        }
    }
}

/// Logs a signal handler's panic.
pub(super) fn log_signal_panic(
    conn: &Connection,
    name: &Name,
    outcome: Result<(), Box<dyn Any + Send>>,
) {
    if let Err(panic) = outcome {
        tracing::error!(connection = %conn.id(), signal = %name, panic = panic_message(&*panic), "signal handler panicked");
    }
}

/// Runs `future` until it completes (`Some`) or `abort` is cancelled
/// (`None`, the future dropped). A future that completes at its first poll
/// (most handlers) never touches the token.
pub(super) async fn abortable<F: Future>(
    future: F,
    abort: &CancellationToken,
) -> Option<F::Output> {
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

pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
