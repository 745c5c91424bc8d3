//! The connection task: the one owner of the connection and of the
//! client's state.
//!
//! [`ConnectionTask::run`] serves a connection, and when it is lost reconnects
//! (with backoff, restoring the session) or waits to be told to. While
//! connected it reads server messages and [`Command`]s from the `Client`
//! handles; a writer task per connection owns the WebSocket's sending half,
//! writes the frames that are ready in one batch with one flush, and sends
//! a heartbeat when nothing was sent for 3/4 of the server's read timeout.
//!
//! The queue to the writer is unbounded so that the reading side never
//! waits for the writing side (a client that stops reading while its
//! writes are stuck can deadlock with a server doing the same). What is in
//! it is bounded by the callers: every request and signal waits for its
//! own answer or write, so there are at most as many frames as calls in
//! progress.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tokio_websockets::{CloseCode, Message};
use webwire_proto::{AcceptConf, ClientMessage, Payload, RequestId, ServerMessage};

use crate::config::Config;
use crate::dial::{dial, Dialed, Ws};
use crate::error::{ConnectError, RequestError};
use crate::request::{result_of, Command, Kind, Pending, Queued};
use crate::{ClientEvent, Session, Status};

/// How long a graceful close waits for the server's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most frames the writer takes before it flushes.
const MAX_BATCH: usize = 256;
/// The shortest wait between reconnection attempts.
const MIN_RECONNECT_INTERVAL: Duration = Duration::from_millis(10);
/// Pong bytes the stream may hold before the reader waits for the writer
/// to have flushed them (see `ConnectionTask::serve`).
const PONG_BUDGET: usize = 16 * 1024;
/// A client pong's header and mask.
const PONG_OVERHEAD: usize = 6;
/// The heartbeat message (type 33).
const HEARTBEAT: &[u8] = &[33];

/// State shared by the `Client` handles and the connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) status: watch::Sender<Status>,
    pub(crate) session: Mutex<Option<Session>>,
    /// For new event subscribers; taken when the task ends so that
    /// receivers see the end.
    pub(crate) events: Mutex<Option<broadcast::Sender<ClientEvent>>>,
    /// The receiver made with the channel, which has every event since the
    /// start; handed out by the first `Client::events` call.
    pub(crate) first_events: Mutex<Option<broadcast::Receiver<ClientEvent>>>,
    pub(crate) server_conf: Mutex<Option<AcceptConf>>,
    pub(crate) pending: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(events: broadcast::Sender<ClientEvent>) -> Self {
        let first = events.subscribe();
        Self {
            status: watch::Sender::new(Status::Connecting),
            session: Mutex::new(None),
            events: Mutex::new(Some(events)),
            first_events: Mutex::new(Some(first)),
            server_conf: Mutex::new(None),
            pending: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// A request id never used before on this client (ids are never
    /// reused, so a late reply can never be taken for another request's).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    fn set_status(&self, status: Status) {
        self.status.send_if_modified(|current| {
            // Closed is final.
            if *current == status || *current == Status::Closed {
                return false;
            }
            *current = status;
            true
        });
    }

    pub(crate) fn session(&self) -> MutexGuard<'_, Option<Session>> {
        lock(&self.session)
    }
}

/// Locks a mutex; a panic while it was held leaves data that is still
/// consistent here (plain values, replaced whole), so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a connection ended.
enum Served {
    /// Lost: reconnect (or wait to be told to).
    Lost,
    /// Closed on purpose: the client is done.
    Closed,
}

/// What the writer task is given.
enum WriterItem {
    /// A message; `done` is answered once it is written.
    Frame(Bytes, Option<oneshot::Sender<Result<(), RequestError>>>),
    /// Send a close frame with this code, then stop.
    Close(CloseCode),
    /// Answered once everything the stream holds is written, the pongs it
    /// queued itself too.
    Flushed(oneshot::Sender<()>),
}

/// The connection task.
pub(crate) struct ConnectionTask {
    config: Arc<Config>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<ClientEvent>,
    /// Sent requests waiting for their answer, by id.
    pending: HashMap<u64, Pending>,
    /// Requests and signals waiting for a connection.
    queued: VecDeque<Queued>,
    /// Queue length at which abandoned entries are dropped.
    prune_at: usize,
    /// Whether requests wait for a connection (false: they fail at once).
    queue_offline: bool,
    connect_waiters: Vec<oneshot::Sender<Result<(), ConnectError>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    /// Every `Client` handle is gone.
    handles_gone: bool,
}

impl ConnectionTask {
    pub(crate) fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        events: broadcast::Sender<ClientEvent>,
    ) -> Self {
        Self {
            config,
            shared,
            commands,
            events,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            prune_at: 64,
            queue_offline: false,
            connect_waiters: Vec::new(),
            close_waiters: Vec::new(),
            handles_gone: false,
        }
    }

    /// Serves `first` (already announced with [`connected`](Self::connected)),
    /// then every following connection, until the client is closed.
    pub(crate) async fn run(mut self, first: Dialed) {
        let mut conn = first;
        loop {
            if let Served::Closed = self.serve(conn).await {
                break;
            }
            self.lost();
            let next = if self.config.options.auto_reconnect {
                self.reconnect().await
            } else {
                self.stay_disconnected().await
            };
            match next {
                Some(next) => {
                    self.connected(&next.conf);
                    conn = next;
                }
                None => break,
            }
        }
        self.finish();
    }

    /// Records a new connection.
    pub(crate) fn connected(&mut self, conf: &AcceptConf) {
        *lock(&self.shared.server_conf) = Some(conf.clone());
        self.shared.set_status(Status::Connected);
        self.emit(ClientEvent::Connected);
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }

    /// Records the loss of the connection.
    fn lost(&mut self) {
        *lock(&self.shared.server_conf) = None;
        self.shared
            .set_status(if self.config.options.auto_reconnect {
                Status::Connecting
            } else {
                Status::Disconnected
            });
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.send(Err(RequestError::Disconnected));
        }
        self.count_pending();
        self.emit(ClientEvent::Disconnected);
    }

    /// Ends the client: everything still waiting fails with `Closed`.
    fn finish(mut self) {
        self.shared.set_status(Status::Closed);
        *lock(&self.shared.server_conf) = None;
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            reject(command, RequestError::Closed);
        }
        for queued in self.queued.drain(..) {
            queued.fail(RequestError::Closed);
        }
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.send(Err(RequestError::Closed));
        }
        self.count_pending();
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(ConnectError::Closed));
        }
        // Event receivers end once the last sender is gone.
        lock(&self.shared.events).take();
        for waiter in self.close_waiters.drain(..) {
            let _ = waiter.send(());
        }
        tracing::debug!("client closed");
    }

    fn emit(&self, event: ClientEvent) {
        // No receiver is not an error: nobody listens.
        let _ = self.events.send(event);
    }

    fn count_pending(&self) {
        self.shared
            .pending
            .store(self.pending.len(), Ordering::Relaxed);
    }

    /// Runs one connection until it is lost or closed on purpose.
    async fn serve(&mut self, conn: Dialed) -> Served {
        let Dialed { ws, conf } = conn;
        let max = usize::try_from(conf.buffer_size).unwrap_or(usize::MAX);
        let (sink, mut stream) = ws.split();
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let heartbeat = heartbeat_interval(conf.read_timeout());
        let mut writer = tokio::spawn(write_loop(sink, writer_rx, heartbeat));
        for queued in std::mem::take(&mut self.queued) {
            self.send(queued, &writer_tx, max);
        }
        self.count_pending();

        let mut closing: Option<Pin<Box<Sleep>>> = None;
        // The stream answers every ping with a pong it queues itself; while
        // the writer cannot write (a server that pings and does not read),
        // reading on would queue pongs without end. Past `PONG_BUDGET`, the
        // reader waits for the writer to have flushed them.
        let mut pong_bytes = 0;
        let mut pongs_flushed: Option<oneshot::Receiver<()>> = None;
        // How long the reader waits for them: a server that takes none of
        // our writes for its own read timeout has stopped reading (our
        // heartbeats cannot reach it either), and the connection is lost.
        let pong_stall = pong_stall_limit(conf.read_timeout());
        let mut pongs_deadline: Option<Pin<Box<Sleep>>> = None;
        let served = loop {
            if closing.is_some() && self.pending.is_empty() {
                break Served::Closed;
            }
            tokio::select! {
                message = stream.next(), if pongs_flushed.is_none() => match message {
                    Some(Ok(message)) => {
                        if message.is_ping() {
                            pong_bytes += message.as_payload().len() + PONG_OVERHEAD;
                            if pong_bytes >= PONG_BUDGET {
                                pong_bytes = 0;
                                let (done, flushed) = oneshot::channel();
                                let _ = writer_tx.send(WriterItem::Flushed(done));
                                pongs_flushed = Some(flushed);
                                pongs_deadline = Some(Box::pin(tokio::time::sleep(pong_stall)));
                            }
                        }
                        if let Err(code) = self.on_frame(message) {
                            let _ = writer_tx.send(WriterItem::Close(code));
                            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, &mut writer).await;
                            break Served::Lost;
                        }
                    }
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "connection lost");
                        break Served::Lost;
                    }
                    None => {
                        tracing::debug!("the server closed the connection");
                        break Served::Lost;
                    }
                },
                command = self.commands.recv(), if !self.handles_gone => match command {
                    None => {
                        self.handles_gone = true;
                        self.start_closing(&mut closing, Duration::ZERO);
                    }
                    Some(Command::Close(done)) => {
                        self.close_waiters.push(done);
                        self.start_closing(&mut closing, self.config.options.close_timeout);
                    }
                    Some(command) if closing.is_some() => reject(command, RequestError::Closed),
                    Some(command) => self.online(command, &writer_tx, max),
                },
                // Also when the writer is gone (then the branch below ends
                // the connection).
                _ = async { pongs_flushed.as_mut().expect("waiting").await },
                    if pongs_flushed.is_some() => {
                        pongs_flushed = None;
                        pongs_deadline = None;
                    }
                () = until(&mut pongs_deadline) => {
                    tracing::debug!(?pong_stall, "the server took none of our writes for its read timeout");
                    break Served::Lost;
                }
                () = until(&mut closing) => {
                    tracing::debug!(unanswered = self.pending.len(), "close timeout reached");
                    break Served::Closed;
                }
                result = &mut writer => {
                    if let Ok(Err(err)) = result {
                        tracing::debug!(error = %err, "writing failed");
                    }
                    break Served::Lost;
                }
            }
        };
        if closing.is_none() {
            writer.abort();
            return served;
        }
        // Closing on purpose (even if the connection broke meanwhile).
        let _ = writer_tx.send(WriterItem::Close(CloseCode::NORMAL_CLOSURE));
        let drain = async {
            while let Some(Ok(message)) = stream.next().await {
                if message.is_ping() {
                    // No waiting for the writer here: the drain ends instead.
                    pong_bytes += message.as_payload().len() + PONG_OVERHEAD;
                    if pong_bytes >= PONG_BUDGET {
                        break;
                    }
                }
                let _ = self.on_frame(message);
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain).await;
        writer.abort();
        Served::Closed
    }

    fn start_closing(&mut self, closing: &mut Option<Pin<Box<Sleep>>>, grace: Duration) {
        self.shared.set_status(Status::Closed);
        if closing.is_none() {
            *closing = Some(Box::pin(tokio::time::sleep(grace)));
        }
    }

    /// Handles a command while connected.
    fn online(&mut self, command: Command, writer: &mpsc::UnboundedSender<WriterItem>, max: usize) {
        match command {
            Command::Request(outgoing) => self.send(Queued::Request(outgoing), writer, max),
            Command::Signal { frame, done } => {
                self.send(Queued::Signal { frame, done }, writer, max)
            }
            Command::Cancel(id) => {
                if self.pending.remove(&id).is_some() {
                    tracing::trace!(id, "request cancelled");
                }
            }
            Command::Connect(done) => {
                let _ = done.send(Ok(()));
            }
            // Handled by `serve`.
            Command::Close(done) => self.close_waiters.push(done),
        }
        self.count_pending();
    }

    /// Hands a request or signal to the writer, unless it is abandoned or
    /// larger than the server accepts.
    fn send(&mut self, queued: Queued, writer: &mpsc::UnboundedSender<WriterItem>, max: usize) {
        if queued.is_abandoned() {
            return;
        }
        let size = match &queued {
            Queued::Request(outgoing) => outgoing.frame.len(),
            Queued::Signal { frame, .. } => frame.len(),
        };
        if size > max {
            queued.fail(RequestError::MessageTooLarge { size, max });
            return;
        }
        // If the writer is gone the connection is being lost: the request
        // fails with the others, the signal's `done` is dropped.
        match queued {
            Queued::Request(outgoing) => {
                self.pending.insert(
                    outgoing.id,
                    Pending {
                        kind: outgoing.kind,
                        reply: outgoing.reply,
                    },
                );
                let _ = writer.send(WriterItem::Frame(outgoing.frame, None));
            }
            Queued::Signal { frame, done } => {
                let _ = writer.send(WriterItem::Frame(frame, Some(done)));
            }
        }
    }

    /// Handles one WebSocket message; a protocol violation gives the close code.
    fn on_frame(&mut self, message: Message) -> Result<(), CloseCode> {
        if message.is_binary() {
            let message =
                ServerMessage::parse(Bytes::from(message.into_payload())).map_err(|err| {
                    tracing::warn!(error = %err, "malformed message from the server; closing");
                    CloseCode::PROTOCOL_ERROR
                })?;
            if let Some((id, result)) = apply(&self.shared, &self.events, message) {
                self.answer(id, result);
            }
            Ok(())
        } else if message.is_text() {
            tracing::warn!("text message from the server; closing");
            Err(CloseCode::UNSUPPORTED_DATA)
        } else {
            // Ping, pong, close: tokio-websockets answers them.
            Ok(())
        }
    }

    /// Gives a request its answer.
    fn answer(&mut self, id: u64, result: Result<Payload, RequestError>) {
        let Some(pending) = self.pending.remove(&id) else {
            tracing::debug!(
                id,
                "discarding the answer to an unknown or cancelled request"
            );
            return;
        };
        self.count_pending();
        let result = match pending.kind {
            Kind::Request => result,
            Kind::RestoreSession => result.and_then(|payload| {
                let session = parse_session(&payload)?;
                *self.shared.session() = Some(session);
                Ok(payload)
            }),
            Kind::CloseSession => {
                if result.is_ok() {
                    *self.shared.session() = None;
                }
                result
            }
        };
        let _ = pending.reply.send(result);
    }

    /// Reconnects with backoff until it works or the client is closed.
    async fn reconnect(&mut self) -> Option<Dialed> {
        self.shared.set_status(Status::Connecting);
        self.queue_offline = true;
        let options = &self.config.options;
        let mut delay = options.reconnect_interval.max(MIN_RECONNECT_INTERVAL);
        let max_delay = options.max_reconnect_interval.max(delay);
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                self.offline(tokio::time::sleep(delay)).await?;
                delay = (delay * 2).min(max_delay);
            }
            attempt += 1;
            let connecting = connect_and_restore(
                Arc::clone(&self.config),
                Arc::clone(&self.shared),
                self.events.clone(),
            );
            match self.offline(connecting).await? {
                Ok(conn) => {
                    tracing::info!(attempt, "reconnected");
                    return Some(conn);
                }
                Err(err) => {
                    tracing::warn!(attempt, error = %err, retry_in = ?delay, "reconnecting failed");
                    for waiter in self.connect_waiters.drain(..) {
                        let _ = waiter.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    /// Without automatic reconnection: calls fail until `Client::reconnect`.
    async fn stay_disconnected(&mut self) -> Option<Dialed> {
        loop {
            self.shared.set_status(Status::Disconnected);
            self.queue_offline = false;
            for queued in self.queued.drain(..) {
                queued.fail(RequestError::Disconnected);
            }
            match self.commands.recv().await? {
                Command::Connect(done) => {
                    self.connect_waiters.push(done);
                    self.shared.set_status(Status::Connecting);
                    self.queue_offline = true;
                    let connecting = connect_and_restore(
                        Arc::clone(&self.config),
                        Arc::clone(&self.shared),
                        self.events.clone(),
                    );
                    match self.offline(connecting).await? {
                        Ok(conn) => return Some(conn),
                        Err(err) => {
                            for waiter in self.connect_waiters.drain(..) {
                                let _ = waiter.send(Err(err.clone()));
                            }
                        }
                    }
                }
                command => {
                    if !self.offline_command(command) {
                        return None;
                    }
                }
            }
        }
    }

    /// Runs `future` while handling commands; `None` if the client is
    /// closed meanwhile.
    async fn offline<F: Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                output = &mut future => return Some(output),
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        self.handles_gone = true;
                        return None;
                    };
                    if !self.offline_command(command) {
                        return None;
                    }
                }
            }
        }
    }

    /// Handles a command while not connected; false when asked to close.
    fn offline_command(&mut self, command: Command) -> bool {
        match command {
            Command::Request(outgoing) => self.enqueue(Queued::Request(outgoing)),
            Command::Signal { frame, done } => self.enqueue(Queued::Signal { frame, done }),
            // Abandoned queue entries are dropped by `enqueue` and `send`.
            Command::Cancel(_) => {}
            Command::Connect(done) => self.connect_waiters.push(done),
            Command::Close(done) => {
                self.close_waiters.push(done);
                return false;
            }
        }
        true
    }

    fn enqueue(&mut self, queued: Queued) {
        if !self.queue_offline {
            queued.fail(RequestError::Disconnected);
            return;
        }
        self.queued.push_back(queued);
        if self.queued.len() >= self.prune_at {
            self.queued.retain(|queued| !queued.is_abandoned());
            self.prune_at = (self.queued.len() * 2).max(64);
        }
    }
}

impl std::fmt::Debug for ConnectionTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("pending", &self.pending.len())
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

/// Fails a command that cannot be served any more.
fn reject(command: Command, err: RequestError) {
    match command {
        Command::Request(outgoing) => {
            let _ = outgoing.reply.send(Err(err));
        }
        Command::Signal { done, .. } => {
            let _ = done.send(Err(err));
        }
        Command::Cancel(_) => {}
        Command::Connect(done) => {
            let _ = done.send(Err(ConnectError::Closed));
        }
        Command::Close(done) => {
            let _ = done.send(());
        }
    }
}

/// Applies a server message to the shared state and the events; returns
/// the result for a request if the message answers one.
fn apply(
    shared: &Shared,
    events: &broadcast::Sender<ClientEvent>,
    message: ServerMessage,
) -> Option<(u64, Result<Payload, RequestError>)> {
    match message {
        ServerMessage::Signal(signal) => {
            let _ = events.send(ClientEvent::Signal(signal));
        }
        ServerMessage::SessionCreated(json) => match Session::from_json(&json) {
            Ok(session) => {
                *shared.session() = Some(session.clone());
                let _ = events.send(ClientEvent::SessionCreated(session));
            }
            Err(err) => tracing::warn!(error = %err, "ignoring an invalid session from the server"),
        },
        ServerMessage::SessionClosed => {
            *shared.session() = None;
            let _ = events.send(ClientEvent::SessionClosed);
        }
        ServerMessage::AcceptConf(_) => {
            tracing::warn!("ignoring a second accept configuration from the server");
        }
        answer => return result_of(answer),
    }
    None
}

fn parse_session(payload: &Payload) -> Result<Session, RequestError> {
    let text = payload
        .to_text()
        .map_err(|err| RequestError::InvalidSession(err.to_string()))?;
    Session::from_json(text.as_bytes()).map_err(|err| RequestError::InvalidSession(err.to_string()))
}

/// Dials, then restores the session the client had, if any.
async fn connect_and_restore(
    config: Arc<Config>,
    shared: Arc<Shared>,
    events: broadcast::Sender<ClientEvent>,
) -> Result<Dialed, ConnectError> {
    let mut conn = dial(&config).await?;
    let key = shared.session().as_ref().map(|session| session.key.clone());
    if let Some(key) = key {
        restore(&config, &shared, &events, &mut conn, key).await?;
    }
    Ok(conn)
}

/// Restores the session `key` on a new connection before anything else is
/// sent on it. If the server refuses, the client has no session any more
/// (and says so with [`ClientEvent::SessionClosed`]); if the connection
/// fails meanwhile, reconnecting failed.
async fn restore(
    config: &Config,
    shared: &Shared,
    events: &broadcast::Sender<ClientEvent>,
    conn: &mut Dialed,
    key: String,
) -> Result<(), ConnectError> {
    let id = shared.next_id();
    let frame = ClientMessage::RestoreSession {
        id: RequestId::from(id),
        key: Bytes::from(key),
    }
    .to_bytes();
    let max = usize::try_from(conn.conf.buffer_size).unwrap_or(usize::MAX);
    let result = if frame.len() > max {
        Err(RequestError::MessageTooLarge {
            size: frame.len(),
            max,
        })
    } else {
        conn.ws
            .send(Message::binary(frame))
            .await
            .map_err(ConnectError::handshake)?;
        let timeout = config.options.request_timeout;
        tokio::time::timeout(timeout, restore_answer(shared, events, &mut conn.ws, id))
            .await
            .map_err(|_| ConnectError::TimedOut(timeout))??
    };
    match result {
        Ok(payload) => {
            let session = parse_session(&payload);
            let restored = session.is_ok();
            *shared.session() = session.ok();
            if restored {
                tracing::debug!("session restored");
                return Ok(());
            }
            tracing::warn!("the server answered the session restoration with an invalid session");
        }
        Err(RequestError::ServerShutdown) => {
            return Err(ConnectError::handshake("the server is shutting down"));
        }
        Err(err) => {
            tracing::warn!(error = %err, "the session could not be restored");
            *shared.session() = None;
        }
    }
    let _ = events.send(ClientEvent::SessionClosed);
    Ok(())
}

/// Reads until the answer to request `id`.
async fn restore_answer(
    shared: &Shared,
    events: &broadcast::Sender<ClientEvent>,
    ws: &mut Ws,
    id: u64,
) -> Result<Result<Payload, RequestError>, ConnectError> {
    loop {
        let message = match ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(ConnectError::handshake(err)),
            None => {
                return Err(ConnectError::handshake(
                    "the server closed the connection during session restoration",
                ))
            }
        };
        if !message.is_binary() {
            continue;
        }
        let message = ServerMessage::parse(Bytes::from(message.into_payload()))
            .map_err(ConnectError::Protocol)?;
        if let Some((answered, result)) = apply(shared, events, message) {
            if answered == id {
                return Ok(result);
            }
        }
    }
}

/// Heartbeats every 3/4 of the server's read timeout of sending silence, as
/// the original clients do; none if the server announces no timeout.
fn heartbeat_interval(read_timeout: Duration) -> Option<Duration> {
    (!read_timeout.is_zero()).then(|| read_timeout * 3 / 4)
}

/// Completes when the close timeout (if closing) is reached.
/// How long the reader waits for its pongs to be written before it takes
/// the connection as lost: the server's read timeout (the server would
/// close a connection silent that long), or 30 s when it announces none.
fn pong_stall_limit(read_timeout: Duration) -> Duration {
    if read_timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        read_timeout
    }
}

async fn until(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The writer task: writes what is ready, flushes once per batch, and sends
/// a heartbeat after `heartbeat` without sending anything.
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut items: mpsc::UnboundedReceiver<WriterItem>,
    heartbeat: Option<Duration>,
) -> Result<(), tokio_websockets::Error> {
    // Without a heartbeat the timer is never armed.
    let period = heartbeat.unwrap_or(Duration::MAX);
    let timer = tokio::time::sleep_until(deadline_after(period));
    tokio::pin!(timer);
    let mut written = Vec::new();
    let mut flushed = None;
    loop {
        let first = tokio::select! {
            biased;
            item = items.recv() => match item {
                Some(item) => item,
                None => return Ok(()),
            },
            () = &mut timer, if heartbeat.is_some() => {
                tracing::trace!("heartbeat");
                WriterItem::Frame(Bytes::from_static(HEARTBEAT), None)
            }
        };
        let mut next = Some(first);
        let mut batch = 0;
        while let Some(item) = next.take() {
            match item {
                WriterItem::Frame(frame, done) => {
                    sink.feed(Message::binary(frame)).await?;
                    written.extend(done);
                }
                WriterItem::Flushed(done) => flushed = Some(done),
                WriterItem::Close(code) => {
                    sink.send(Message::close(Some(code), "")).await?;
                    for done in written.drain(..) {
                        let _ = done.send(Ok(()));
                    }
                    return Ok(());
                }
            }
            batch += 1;
            if batch < MAX_BATCH {
                next = items.try_recv().ok();
            }
        }
        sink.flush().await?;
        for done in written.drain(..) {
            let _ = done.send(Ok(()));
        }
        if let Some(done) = flushed.take() {
            let _ = done.send(());
        }
        timer.as_mut().reset(deadline_after(period));
    }
}

/// `now + period`, saturating far in the future.
fn deadline_after(period: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(period)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_is_three_quarters_of_the_read_timeout() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(60)),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(1000)),
            Some(Duration::from_millis(750))
        );
        assert_eq!(heartbeat_interval(Duration::ZERO), None);
    }
}
