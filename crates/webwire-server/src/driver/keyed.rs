//! Webwire 2.1 on a connection: the opt-in (ExtensionHello answered with
//! ExtensionAccept) and keyed requests, which run at most once per key
//! (docs/protocol.md 14.4).
//!
//! A keyed request is decided by the request ledger. A new key's handler
//! is polled once in the connection task, like any handler: one that
//! finishes at once has its answer stored and sent there. One still
//! pending runs **detached** from the connection, in the server's tracker
//! of keyed runs: it completes even if its connection is gone (bounded by
//! the keyed-request timeout), renews its lease meanwhile, and stores its
//! answer for retries. The connection waits for the answer like for any
//! pending handler (inline at limit 1, in a task of its own with a reply
//! reservation otherwise), so drains and shutdowns see it as a request.

use std::borrow::Cow;

use tokio::sync::oneshot;
use webwire_proto::{ExtensionAccept, ExtensionHello, FeatureFlags, KeyedRequest};

use super::dispatch::{reply_for, Timed};
use super::*;
use crate::ledger::{
    Begin, ErasedLedger, Finish, Lease, LedgerRequest, LedgerScope, Lookup, RequestDigest,
    RunOutcome, StoredReply, BAD_KEY, KEY_REUSED, NO_SESSION,
};
use crate::metrics::RequestOutcome;
use crate::session::ops::is_valid_key;

/// What a connection that was granted `KEYED_REQUESTS` keeps for its keyed
/// requests (boxed in the task: 2.0 connections pay one pointer).
pub(super) struct KeyedState {
    /// The client-instance id of its ExtensionHello.
    instance: Box<str>,
    /// The session key its last RequestRestoreSession named: a keyed
    /// request without a session is answered from that session's ledger
    /// (the session was closed, by a logout whose answer was lost, say).
    restored: Option<Box<str>>,
    /// Cancelled when the socket is closed: the connection's tasks that
    /// wait for detached runs stop (the answers have nowhere to go; they
    /// are stored for the retry), so that the connection leaves its session
    /// at once instead of when the runs end.
    socket_closed: CancellationToken,
}

impl KeyedState {
    /// The socket was closed: stop waiting for detached runs.
    pub(super) fn socket_closed(&self) {
        self.socket_closed.cancel();
    }
}

/// The answer of a keyed request that has to wait (for its own run or
/// another's): the stored reply, or `None` when the outcome is unknown.
type KeyedWait = Pin<Box<dyn Future<Output = Option<StoredReply>> + Send>>;

/// How a keyed request is answered.
enum Decided {
    /// At once.
    Now(ServerMessage),
    /// When a run ends.
    Wait(KeyedWait),
}

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Answers the client's ExtensionHello with ExtensionAccept: the
    /// features the rules granted (less `KEYED_REQUESTS` when the ledger's
    /// epoch cannot be read) and the ledger epoch.
    pub(super) async fn extension_hello(
        &mut self,
        hello: ExtensionHello,
        mut granted: FeatureFlags,
    ) -> Result<(), ReadEnd> {
        let mut ledger_epoch = 0;
        if granted.contains(FeatureFlags::KEYED_REQUESTS) {
            let ledger = self.shared.ledger().clone();
            match self.wire.drive(ledger.epoch()).await {
                Ok(Ok(epoch)) => ledger_epoch = epoch,
                Ok(Err(err)) => {
                    tracing::error!(connection = %self.conn.id(), error = %crate::session::ops::chain(&err), "the request ledger's epoch cannot be read: keyed requests not granted");
                    self.wire
                        .protocol_mut()
                        .withhold(FeatureFlags::KEYED_REQUESTS);
                    granted = granted.difference(FeatureFlags::KEYED_REQUESTS);
                }
                Err(err) => return Err(ReadEnd::Wire(err)),
            }
        }
        if granted.contains(FeatureFlags::KEYED_REQUESTS) {
            self.keyed = Some(Box::new(KeyedState {
                instance: hello.instance_id().as_str().into(),
                restored: None,
                socket_closed: CancellationToken::new(),
            }));
        }
        let accept = ExtensionAccept {
            flags: granted,
            ledger_epoch,
        };
        self.send(ServerMessage::ExtensionAccept(accept)).await?;
        self.conn.inner.set_features(granted);
        tracing::debug!(connection = %self.conn.id(), features = granted.bits(), "opted into webwire 2.1");
        Ok(())
    }

    /// A RequestRestoreSession named `key`: remembered, so that keyed
    /// requests without a session can be answered from its ledger.
    pub(super) fn note_restore(&mut self, key: &[u8]) {
        if let Some(keyed) = &mut self.keyed {
            keyed.restored = is_valid_key(key).then(|| String::from_utf8_lossy(key).into());
        }
    }

    /// Decides a keyed request (docs/protocol.md 14.4.2) and answers it,
    /// at once or when its run ends.
    pub(super) async fn keyed_request(
        &mut self,
        request: KeyedRequest,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ReadEnd> {
        let decided = match self.decide(request).await {
            Ok(decided) => decided,
            Err(end) => return Err(end),
        };
        let (id, wait) = match decided {
            (_, Decided::Now(answer)) => return self.send(answer).await,
            (id, Decided::Wait(wait)) => (id, wait),
        };
        if let Mode::Inline = self.mode {
            let (outcome, written) = self.run_inline(wait).await;
            written?;
            // Dropped at the shutdown deadline, or a waiter that panicked:
            // the run had started, so its outcome is not known.
            let reply = outcome.and_then(Result::ok).flatten();
            return self.send(answer(id, reply)).await;
        }
        let Ok(tx) = self.conn.sender() else {
            // Closing: the run goes on (detached), its answer is stored for
            // the retry; this connection will not carry it.
            return self.send(ServerMessage::OutcomeUnknown(id)).await;
        };
        let socket_closed = match &self.keyed {
            Some(keyed) => keyed.socket_closed.clone(),
            None => CancellationToken::new(),
        };
        let wait = async move {
            tokio::select! {
                biased;
                reply = wait => reply,
                () = socket_closed.cancelled() => None,
            }
        };
        let reservation = match tx.clone().try_reserve_owned() {
            Ok(reservation) => reservation,
            Err(mpsc::error::TrySendError::Full(tx)) => {
                match self.wire.drive(tx.reserve_owned()).await {
                    Ok(Ok(reservation)) => reservation,
                    Ok(Err(_)) => return self.send(ServerMessage::OutcomeUnknown(id)).await,
                    Err(err) => return Err(ReadEnd::Wire(err)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return self.send(ServerMessage::OutcomeUnknown(id)).await
            }
        };
        self.spawn_pending(wait, permit.take(), move |outcome| {
            let reply = outcome.and_then(Result::ok).flatten();
            reservation.send(Outbound::Message(Box::new(answer(id, reply))));
        });
        Ok(())
    }

    /// The ledger's decision for a keyed request, with its request id; a
    /// new key's handler is started here.
    async fn decide(&mut self, request: KeyedRequest) -> Result<(RequestId, Decided), ReadEnd> {
        let (request, key, ack) = request.into_parts();
        let id = request.id();
        let payload = request.payload();
        let ledger_request = LedgerRequest {
            seq: key.seq,
            epoch: key.epoch,
            ack,
            digest: RequestDigest::new(
                request.name().as_bytes(),
                payload.encoding(),
                payload.as_bytes(),
            ),
        };
        let Some(keyed) = &self.keyed else {
            // The rules pass a keyed request only when KEYED_REQUESTS was
            // granted, which made the state.
            return Ok((id, Decided::Now(ServerMessage::InternalError(id))));
        };
        let ledger = self.shared.ledger().clone();
        let metrics = self.shared.metrics();
        let Some(session) = self.conn.session_key() else {
            // Row 2: no session; never run.
            let Some(restored) = keyed.restored.as_deref() else {
                metrics.keyed("no_session");
                return Ok((id, Decided::Now(no_session(id))));
            };
            let scope = LedgerScope::new(restored, &*keyed.instance);
            let looked_up = self
                .wire
                .drive(ledger.lookup(&scope, &ledger_request))
                .await
                .map_err(ReadEnd::Wire)?;
            let decided = match looked_up {
                Ok(Lookup::Stored(reply)) => {
                    metrics.keyed("stored");
                    Decided::Now(answer(id, Some(reply)))
                }
                Ok(Lookup::Running(wait)) => {
                    metrics.keyed("waited");
                    Decided::Wait(await_run(wait))
                }
                // A seq the retained ledger never accepted is its row 9,
                // which without a session is ReplyOutcomeUnknown
                // (docs/protocol.md 14.4.2, "Without a session").
                Ok(Lookup::Unknown | Lookup::NotRun) => {
                    metrics.keyed("outcome_unknown");
                    Decided::Now(ServerMessage::OutcomeUnknown(id))
                }
                Ok(Lookup::KeyReused) => Decided::Now(key_reused(id, metrics)),
                Ok(Lookup::BadKey) => Decided::Now(bad_key(id, metrics)),
                Ok(Lookup::Unretained) => {
                    metrics.keyed("no_session");
                    Decided::Now(no_session(id))
                }
                Err(err) => Decided::Now(ledger_failed(&self.conn, id, &err, metrics)),
            };
            return Ok((id, decided));
        };
        let scope = LedgerScope::new(session, &*keyed.instance);
        // To its end even if the socket fails meanwhile: a remote ledger
        // may have marked the key running already, and a key marked
        // running must be run, or its retry (on any node) waits for the
        // lease to lapse and gets "outcome unknown".
        let (begun, failed) = self
            .wire
            .drive_to_end(ledger.begin(&scope, &ledger_request))
            .await;
        let decided = match begun {
            Ok(Begin::Run(lease)) => {
                metrics.keyed("run");
                self.start_run(request, lease, ledger)
            }
            Ok(Begin::Stored(reply)) => {
                metrics.keyed("stored");
                Decided::Now(answer(id, Some(reply)))
            }
            Ok(Begin::Running(wait)) => {
                metrics.keyed("waited");
                Decided::Wait(await_run(wait))
            }
            Ok(Begin::Unknown) => {
                metrics.keyed("outcome_unknown");
                Decided::Now(ServerMessage::OutcomeUnknown(id))
            }
            Ok(Begin::KeyReused) => Decided::Now(key_reused(id, metrics)),
            Ok(Begin::BadKey) => Decided::Now(bad_key(id, metrics)),
            Err(err) => Decided::Now(ledger_failed(&self.conn, id, &err, metrics)),
        };
        if let Some(err) = failed {
            // A started run goes on detached and stores its reply.
            return Err(ReadEnd::Wire(err));
        }
        Ok((id, decided))
    }

    /// Starts a new key's handler and returns its answer, or what waits
    /// for it. Like any handler it is polled once here first: most finish
    /// at once, and with a ledger that answers at once (the in-memory one)
    /// so does storing the answer, with no task, timer or channel. Only a
    /// run still pending goes on detached from the connection.
    fn start_run(&self, request: Request, lease: Lease, ledger: Arc<dyn ErasedLedger>) -> Decided {
        let id = request.id();
        let ctx = &self.ctx;
        let metrics = self.shared.metrics();
        let (future, name, route): (RequestFuture, Cow<'_, Name>, &Arc<_>) =
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
        let span = tracing::debug_span!(
            parent: self.conn.inner.span(),
            "webwire.keyed_request",
            request.name = %name,
            seq = lease.seq(),
        );
        let run = Run {
            ledger,
            lease,
            future,
            name: name.into_owned(),
            route: route.clone(),
            conn: self.conn.clone(),
            max: self.shared.config().buffer_size,
            timeout: self.shared.config().keyed_request_timeout,
            renew_every: self.shared.config().keyed_lease_renewal,
            abort: self.ctx.abort.clone(),
        };
        let mut run = Box::pin(run.run().instrument(span));
        if let Some(reply) = run.as_mut().now_or_never() {
            return Decided::Now(answer(id, reply));
        }
        let (tx, rx) = oneshot::channel();
        self.shared.keyed_runs().spawn(async move {
            if let Some(reply) = run.await {
                let _ = tx.send(reply);
            }
        });
        // The sender dropped without a reply: the run was dropped at the
        // shutdown deadline, its outcome unknown.
        Decided::Wait(Box::pin(async move { rx.await.ok() }))
    }
}

/// A new key's run, detached from its connection.
struct Run {
    ledger: Arc<dyn ErasedLedger>,
    lease: Lease,
    future: RequestFuture,
    name: Name,
    route: Arc<crate::metrics::RouteMetrics>,
    /// For the log and the handler's own use; the run does not write to it.
    conn: Connection,
    max: usize,
    timeout: Duration,
    renew_every: Duration,
    abort: CancellationToken,
}

impl Run {
    /// Runs the handler to its end (or the timeout), renewing the lease
    /// meanwhile, and stores its answer. `None` when it was dropped at the
    /// shutdown deadline: the lease is dropped unfinished, and the ledger
    /// tells the run's waiters that the outcome is unknown.
    async fn run(self) -> Option<StoredReply> {
        let Self {
            ledger,
            lease,
            future,
            name,
            route,
            conn,
            max,
            timeout,
            renew_every,
            abort,
        } = self;
        let started = std::time::Instant::now();
        let handler = tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind());
        let renewing = async {
            loop {
                tokio::time::sleep(renew_every).await;
                match ledger.renew(&lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(connection = %conn.id(), request = %name, "a keyed handler's lease lapsed: its answer will not be stored");
                        return std::future::pending().await;
                    }
                    // The next renewal may get through before the lease ends.
                    Err(err) => {
                        tracing::warn!(connection = %conn.id(), request = %name, error = %crate::session::ops::chain(&err), "renewing a keyed handler's lease failed");
                    }
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            outcome = handler => outcome,
            () = abort.cancelled() => return None,
            () = renewing => unreachable!("the renewal never ends"),
        };
        let span = tracing::Span::current();
        let timed = Timed::new(&route, started, &span);
        let message = match outcome {
            Ok(outcome) => reply_for(&conn, RequestId::default(), &name, outcome, max, timed),
            Err(_elapsed) => {
                tracing::warn!(connection = %conn.id(), request = %name, ?timeout, "a keyed handler ran past the keyed-request timeout: answered with an internal error");
                timed.finished(RequestOutcome::InternalError);
                ServerMessage::InternalError(RequestId::default())
            }
        };
        let reply = StoredReply::from_frame(message.to_bytes())?;
        match ledger.finish(lease, reply.clone()).await {
            Ok(Finish::Stored | Finish::NotKept) => {}
            Ok(Finish::LeaseLost) => {
                tracing::warn!(connection = %conn.id(), request = %name, "a keyed handler's answer was not stored: its lease had lapsed");
            }
            Err(err) => {
                tracing::error!(connection = %conn.id(), request = %name, error = %crate::session::ops::chain(&err), "a keyed handler's answer could not be stored");
            }
        }
        Some(reply)
    }
}

/// What waits for a run another request started.
fn await_run(wait: crate::ledger::RunWait) -> KeyedWait {
    Box::pin(async move {
        match wait.await {
            RunOutcome::Reply(reply) => Some(reply),
            RunOutcome::Unknown => None,
        }
    })
}

/// The answer to the keyed request `id`: the stored reply under this id,
/// or ReplyOutcomeUnknown.
fn answer(id: RequestId, reply: Option<StoredReply>) -> ServerMessage {
    match reply {
        Some(reply) => ServerMessage::parse(reply.to_frame(id)).unwrap_or_else(|err| {
            // A store that handed back bytes no reply has.
            tracing::error!(error = %err, "a stored answer is not a valid reply");
            ServerMessage::InternalError(id)
        }),
        None => ServerMessage::OutcomeUnknown(id),
    }
}

fn error_reply(id: RequestId, code: &'static str, message: &str) -> ServerMessage {
    ServerMessage::Error(ErrorReply::new(id, ErrorCode::from_static(code), message))
}

fn no_session(id: RequestId) -> ServerMessage {
    error_reply(id, NO_SESSION, "the connection has no session")
}

fn key_reused(id: RequestId, metrics: &crate::metrics::ServerMetrics) -> ServerMessage {
    metrics.keyed("key_reused");
    error_reply(id, KEY_REUSED, "the key belongs to another request")
}

fn bad_key(id: RequestId, metrics: &crate::metrics::ServerMetrics) -> ServerMessage {
    metrics.keyed("bad_key");
    error_reply(
        id,
        BAD_KEY,
        "the acknowledgement is not below the sequence number",
    )
}

/// The ledger could not be reached: nothing was recorded or run.
fn ledger_failed(
    conn: &Connection,
    id: RequestId,
    err: &crate::ledger::LedgerError,
    metrics: &crate::metrics::ServerMetrics,
) -> ServerMessage {
    tracing::error!(connection = %conn.id(), error = %crate::session::ops::chain(err), "the request ledger failed: a keyed request answered with an internal error");
    metrics.keyed("internal_error");
    ServerMessage::InternalError(id)
}
