//! The connection task: the one owner of the connection and of the
//! client's state.
//!
//! The rules of a connection (requests in flight and their outcomes,
//! session notifications, the session restore after a reconnection,
//! heartbeats, the close handshake) are webwire-proto's
//! [`ClientConnection`], a state machine without I/O; this task is its I/O
//! loop. [`ConnectionTask::run`] serves a connection, and when it is lost
//! reconnects (with backoff) or waits to be told to. While connected it
//! feeds the machine the server's messages, the [`Command`]s of the
//! `Client` handles and the timers it asks for, and does what it answers:
//! frames go to a writer task per connection, which owns the WebSocket's
//! sending half and writes the frames that are ready in one batch with one
//! flush; outcomes go to the callers, events to [`ClientEvent`]s.
//!
//! The queue to the writer is unbounded so that the reading side never
//! waits for the writing side (a client that stops reading while its
//! writes are stuck can deadlock with a server doing the same). What is in
//! it is bounded by the callers: every request and signal waits for its
//! own answer or write, so there are at most as many frames as calls in
//! progress.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tokio_websockets::{CloseCode, Message};
use webwire_proto::connection::client::{
    means_outcome_unknown, session_of_reply, ClientConnection, ConnectionConfig, End, Event,
    Ignored, KeyedRequests, Link, LossVerdict, Outcome, Refusal, RequestIds, Resend,
    RestoreOutcome, StreamPositions, Transmit, Verdict,
};
use webwire_proto::{
    AcceptConf, ClientMessage, ExtensionHello, FeatureFlags, InstanceId, KeyedRequest, Name,
    Payload, Request, RequestId, RequestKey, StreamId, StreamPosition, StreamResume,
};

use crate::config::{Config, Options};
use crate::dial::{dial, Dialed, Ws};
use crate::error::{ConnectError, RequestError};
use crate::request::{result_of, Command, Kind, Outgoing, Queued, ReplyTx, Token};
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

/// The connection's rules, holding a [`Token`] per call.
type Machine = ClientConnection<Token>;

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
    ids: RequestIds,
    /// 2.1: this client instance's id, sent in every ExtensionHello.
    pub(crate) instance_id: InstanceId,
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
            ids: RequestIds::new(),
            instance_id: new_instance_id(),
        }
    }

    /// A request id never used before on this client (ids are never
    /// reused, so a late reply can never be taken for another request's).
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.next()
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

/// A client-instance id: 16 random bytes as 22 characters of unpadded
/// base64url (docs/protocol.md 14.2.1).
fn new_instance_id() -> InstanceId {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // std's hasher keys are random per process and per RandomState:
        // still enough to tell client instances apart.
        use std::hash::BuildHasher;
        let now = std::time::SystemTime::now();
        let low = std::collections::hash_map::RandomState::new().hash_one(now);
        let high = std::collections::hash_map::RandomState::new().hash_one(low);
        bytes[..8].copy_from_slice(&low.to_le_bytes());
        bytes[8..].copy_from_slice(&high.to_le_bytes());
    }
    let bits = u128::from_le_bytes(bytes);
    let text: Vec<u8> = (0..22)
        .map(|i| ALPHABET[((bits >> (6 * i)) & 63) as usize])
        .collect();
    InstanceId::new(text).expect("22 printable characters")
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
    /// Lost: reconnect (or wait to be told to); `restart` when the server
    /// closed with 1012 (service restart), `going_away` when it closed with
    /// 1001 or 1012 (it shuts down or restarts).
    Lost { restart: bool, going_away: bool },
    /// Closed on purpose: the client is done.
    Closed,
    /// The session restore of a reconnection failed in a way that fails the
    /// reconnection (the server shuts down, no answer in time, the
    /// connection broke): try again like after a failed dial.
    RestoreFailed(ConnectError),
}

/// What the task does after the machine's events.
enum Step {
    Continue,
    RestoreFailed(ConnectError),
    Ended(End),
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

/// The close code of a server that drains for a restart or a deploy.
const SERVICE_RESTART: u16 = 1012;
/// The close code of a server that shuts down.
const GOING_AWAY: u16 = 1001;

/// The waits between reconnection attempts, with full jitter: none before
/// the first (a random one in the restart range after close code 1012),
/// then a random wait up to a ceiling that doubles up to the maximum.
struct Backoff {
    attempt: u32,
    /// The ceiling of the next wait.
    ceiling: Duration,
    max: Duration,
    /// The server's `Retry-After` of the last attempt: the next wait is
    /// at least this.
    at_least: Option<Duration>,
    /// The wait before the first attempt, as (min, max).
    first: Option<(Duration, Duration)>,
}

impl Backoff {
    fn new(options: &Options) -> Self {
        let ceiling = options.reconnect_interval.max(MIN_RECONNECT_INTERVAL);
        Self {
            attempt: 0,
            ceiling,
            max: options.max_reconnect_interval.max(ceiling),
            first: None,
            at_least: None,
        }
    }

    /// After the server closed with 1012: the first attempt waits a random
    /// time in the configured range.
    fn after_restart(options: &Options) -> Self {
        Self {
            first: Some(options.restart_delay),
            ..Self::new(options)
        }
    }

    /// Counts an attempt; the wait before it.
    fn next(&mut self) -> Option<Duration> {
        self.next_with(random_fraction)
    }

    /// [`next`](Self::next) with `random` giving a number in [0, 1].
    fn next_with(&mut self, random: impl FnOnce() -> f64) -> Option<Duration> {
        self.attempt += 1;
        let at_least = self.at_least.take();
        if self.attempt == 1 {
            let first = self
                .first
                .map(|(min, max)| min + (max - min).mul_f64(random()));
            return match (first, at_least) {
                (Some(first), Some(at_least)) => Some(first.max(at_least)),
                (first, at_least) => first.or(at_least),
            };
        }
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let wait = ceiling.mul_f64(random());
        Some(at_least.map_or(wait, |at_least| wait.max(at_least)))
    }

    /// The server asked to wait this long (429 or 503 with `Retry-After`)
    /// before the next attempt.
    fn retry_after(&mut self, wait: Duration) {
        self.at_least = Some(wait);
    }
}

/// A random number in [0, 1] (0.5 if the system has no randomness to give).
fn random_fraction() -> f64 {
    // 53 bits: the precision of an f64 in [0, 1).
    getrandom::u64().map_or(0.5, |bits| (bits >> 11) as f64 / (1u64 << 53) as f64)
}

/// The connection task.
pub(crate) struct ConnectionTask {
    config: Arc<Config>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<ClientEvent>,
    /// Requests and signals waiting for a connection (or for its session
    /// restore).
    queued: VecDeque<Queued>,
    /// Queue length at which abandoned entries are dropped.
    prune_at: usize,
    /// Whether requests wait for a connection (false: they fail at once).
    queue_offline: bool,
    /// The last connection ended with the server's going-away close (1001 or
    /// 1012): calls it never sent fail with `ServerShutdown`.
    server_went_away: bool,
    connect_waiters: Vec<oneshot::Sender<Result<(), ConnectError>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    /// Every `Client` handle is gone.
    handles_gone: bool,
    /// Closing on purpose: the client is done once the connection is.
    closing: bool,
    /// Whether the connection being served is a reconnection (which
    /// restores the session).
    reconnected: bool,
    /// 2.1: the features the server granted on this connection (none on a
    /// 2.0 connection).
    granted: FeatureFlags,
    /// 2.1: what this connection does for keyed requests.
    link: Link,
    /// The largest message the server of this connection takes.
    max_message: usize,
    /// The session key this connection's restore named.
    restore_key: Option<String>,
    /// After a restore that found no session: the keyed requests sent
    /// again to be answered from the closed session's ledger. Nothing else
    /// is sent until they are answered (another request could open a new
    /// session, under which they would count as new).
    draining: HashSet<u64>,
    /// 2.1: the position on every stream (belongs to the session).
    streams: StreamPositions,
    /// 2.1: the keyed requests waiting for their answers, across
    /// connections; sessions named by their key.
    keyed: KeyedRequests<String>,
    /// Their names, payloads and callers, by seq.
    keyed_calls: BTreeMap<u64, KeyedCall>,
    /// The request id of each keyed request in flight on this connection,
    /// to its seq: a cancel does not forget it (its answer becomes an
    /// `OrphanReply`).
    keyed_ids: HashMap<u64, u64>,
}

/// A keyed request waiting for its answer.
#[derive(Debug)]
struct KeyedCall {
    name: Name,
    payload: Payload,
    reply: ReplyTx,
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
            queued: VecDeque::new(),
            prune_at: 64,
            queue_offline: false,
            server_went_away: false,
            connect_waiters: Vec::new(),
            close_waiters: Vec::new(),
            handles_gone: false,
            closing: false,
            reconnected: false,
            granted: FeatureFlags::NONE,
            link: Link::Plain,
            max_message: 0,
            restore_key: None,
            draining: HashSet::new(),
            streams: StreamPositions::new(),
            keyed: KeyedRequests::new(),
            keyed_calls: BTreeMap::new(),
            keyed_ids: HashMap::new(),
        }
    }

    /// Serves `first` (already announced with [`connected`](Self::connected)),
    /// then every following connection, until the client is closed.
    pub(crate) async fn run(mut self, first: Dialed) {
        let mut conn = first;
        let mut reconnected = false;
        let mut backoff = Backoff::new(&self.config.options);
        loop {
            match self.serve(conn, reconnected).await {
                Served::Closed => break,
                Served::Lost {
                    restart,
                    going_away,
                } => {
                    self.lost();
                    self.server_went_away = going_away;
                    backoff = if restart {
                        Backoff::after_restart(&self.config.options)
                    } else {
                        Backoff::new(&self.config.options)
                    };
                }
                Served::RestoreFailed(err) => self.attempt_failed(&err, &mut backoff),
            }
            let next = if self.config.options.auto_reconnect {
                self.reconnect(&mut backoff).await
            } else {
                self.stay_disconnected().await
            };
            match next {
                Some(next) => {
                    conn = next;
                    reconnected = true;
                }
                None => break,
            }
        }
        self.finish();
    }

    /// Records a new connection (after a reconnection, once its session is
    /// restored).
    pub(crate) fn connected(&mut self, conf: &AcceptConf) {
        *lock(&self.shared.server_conf) = Some(conf.clone());
        self.shared.set_status(Status::Connected);
        self.emit(ClientEvent::Connected);
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }

    /// Records the loss of the connection (its requests in flight have
    /// failed already).
    fn lost(&mut self) {
        *lock(&self.shared.server_conf) = None;
        self.shared
            .set_status(if self.config.options.auto_reconnect {
                Status::Connecting
            } else {
                Status::Disconnected
            });
        self.count_pending(0);
        self.emit(ClientEvent::Disconnected);
    }

    /// A reconnection attempt failed.
    fn attempt_failed(&mut self, err: &ConnectError, backoff: &mut Backoff) {
        if let Some(wait) = err.retry_after() {
            backoff.retry_after(wait);
        }
        tracing::warn!(attempt = backoff.attempt, error = %err, retry_up_to = ?backoff.ceiling.max(err.retry_after().unwrap_or_default()), "reconnecting failed");
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(err.clone()));
        }
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
        for (_, call) in std::mem::take(&mut self.keyed_calls) {
            let _ = call.reply.send(Err(RequestError::Closed));
        }
        self.count_pending(0);
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

    fn count_pending(&self, in_flight: usize) {
        self.shared.pending.store(in_flight, Ordering::Relaxed);
    }

    /// Runs one connection until it is lost or closed on purpose. A
    /// reconnection first restores the session, through the same message
    /// path as everything else; it is announced once that is answered, and
    /// what waits for the connection is sent only then.
    async fn serve(&mut self, conn: Dialed, reconnected: bool) -> Served {
        let Dialed { ws, conf } = conn;
        let (sink, mut stream) = ws.split();
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let mut writer = tokio::spawn(write_loop(sink, writer_rx));
        let mut writer_done = false;
        let config = ConnectionConfig::from_accept_conf(&conf)
            .with_close_handshake_timeout(CLOSE_HANDSHAKE_TIMEOUT);
        let mut machine = Machine::new(config, self.shared.ids.clone(), now());
        self.reconnected = reconnected;
        self.granted = FeatureFlags::NONE;
        self.link = Link::Plain;
        self.max_message = usize::try_from(conf.buffer_size).unwrap_or(usize::MAX);
        self.restore_key = None;
        self.draining.clear();
        self.keyed_ids.clear();
        // The version is checked on every connection: 2.1 only with a
        // server that announces it, 2.0 otherwise.
        if self.config.options.extensions && conf.offers_extensions() {
            match ExtensionHello::new(FeatureFlags::KNOWN, self.shared.instance_id.clone()) {
                Ok(hello) => {
                    if let Err(refusal) = machine.send_extension_hello(&hello) {
                        tracing::warn!(%refusal, "could not opt in to webwire 2.1");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not opt in to webwire 2.1"),
            }
        }
        if !machine.is_opting_in() {
            self.begin(&mut machine);
        }
        let mut announced = !reconnected;
        let mut restore_lost = false;
        // The server's close code, once its close frame is read.
        let mut close_code: Option<u16> = None;

        // The machine's next deadline and the timer armed for it.
        let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<std::time::Instant> = None;
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
        let end = loop {
            // Do what the machine asks for.
            write_transmits(&mut machine, &writer_tx);
            let mut step = Step::Continue;
            while let Some(event) = machine.poll_event() {
                step = self.on_event(event, &mut machine, &mut restore_lost);
                if !matches!(step, Step::Continue) {
                    break;
                }
            }
            // What handling the events queued (a restore after the
            // opt-in, a StreamResume, a keyed request sent again).
            write_transmits(&mut machine, &writer_tx);
            match step {
                Step::Continue => {}
                Step::RestoreFailed(err) => {
                    writer.abort();
                    return Served::RestoreFailed(err);
                }
                Step::Ended(end) => break end,
            }
            if !self.closing && self.ready(&machine) {
                if !announced {
                    announced = true;
                    self.connected(&conf);
                }
                if !self.queued.is_empty() {
                    for queued in std::mem::take(&mut self.queued) {
                        self.send(queued, &mut machine);
                    }
                    // To write what was waiting.
                    continue;
                }
            }
            self.count_pending(machine.in_flight());
            // Re-armed only for an earlier deadline: the heartbeat's moves
            // with every frame sent, and a timer that fires early only
            // makes the machine find nothing due and ask again.
            if let Some(deadline) = machine.poll_timeout()
                && armed.is_none_or(|armed| deadline < armed)
            {
                armed = Some(deadline);
                timer.as_mut().reset(Instant::from_std(deadline));
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
                        if message.is_binary() {
                            machine.handle_frame(Bytes::from(message.into_payload()));
                        } else if message.is_text() {
                            machine.handle_text();
                        } else if let Some((code, _)) = message.as_close() {
                            close_code = Some(code.into());
                        }
                        // Ping, pong, close: tokio-websockets answers them.
                    }
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "connection lost");
                        machine.peer_closed();
                    }
                    None => {
                        tracing::debug!("the server closed the connection");
                        machine.peer_closed();
                    }
                },
                command = self.commands.recv(), if !self.handles_gone => match command {
                    None => {
                        self.handles_gone = true;
                        self.start_closing(&mut machine, Duration::ZERO);
                    }
                    Some(Command::Close(done)) => {
                        self.close_waiters.push(done);
                        self.start_closing(&mut machine, self.config.options.close_timeout);
                    }
                    Some(command) if self.closing => reject(command, RequestError::Closed),
                    Some(command) => self.online(command, &mut machine, announced),
                },
                // Also when the writer is gone.
                _ = async { pongs_flushed.as_mut().expect("waiting").await },
                    if pongs_flushed.is_some() => {
                        pongs_flushed = None;
                        pongs_deadline = None;
                    }
                () = until(&mut pongs_deadline) => {
                    tracing::debug!(?pong_stall, "the server took none of our writes for its read timeout");
                    pongs_deadline = None;
                    machine.peer_closed();
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    machine.handle_timeout(now());
                }
                result = &mut writer, if !writer_done => {
                    writer_done = true;
                    // Done after writing our close frame: the machine waits
                    // for the server's. Anything else broke the connection.
                    if !matches!(result, Ok(Ok(()))) {
                        if let Ok(Err(err)) = result {
                            tracing::debug!(error = %err, "writing failed");
                        }
                        machine.peer_closed();
                    }
                }
            }
        };
        let served = match end {
            End::Violation { code, error } => {
                match &error {
                    Some(err) => {
                        tracing::warn!(error = %err, "malformed message from the server; closing");
                    }
                    None => tracing::warn!("text message from the server; closing"),
                }
                tracing::debug!(code, "closing after a protocol violation");
                if !writer_done {
                    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, &mut writer).await;
                }
                if restore_lost && !self.closing {
                    Served::RestoreFailed(match error {
                        Some(err) => ConnectError::Protocol(err),
                        None => ConnectError::handshake("text message from the server"),
                    })
                } else {
                    Served::Lost {
                        restart: false,
                        going_away: false,
                    }
                }
            }
            End::Lost if restore_lost && !self.closing => {
                Served::RestoreFailed(ConnectError::handshake(
                    "the server closed the connection during session restoration",
                ))
            }
            _ => Served::Lost {
                restart: close_code == Some(SERVICE_RESTART),
                going_away: matches!(close_code, Some(GOING_AWAY | SERVICE_RESTART)),
            },
        };
        writer.abort();
        // Closing on purpose ends the client whatever ended the connection.
        if self.closing {
            Served::Closed
        } else {
            served
        }
    }

    /// Whether requests and signals may go out now: not while the 2.1
    /// opt-in, the session restore or the resends after a failed restore
    /// wait for their answers.
    fn ready(&self, machine: &Machine) -> bool {
        !machine.is_restoring() && !machine.is_opting_in() && self.draining.is_empty()
    }

    /// The key of the client's session, if it has one.
    fn session_key(&self) -> Option<String> {
        self.shared
            .session()
            .as_ref()
            .map(|session| session.key.clone())
    }

    /// Forgets the session: the stream positions belong to it.
    fn drop_session(&mut self) {
        *self.shared.session() = None;
        self.streams.clear();
    }

    /// Starts a connection once its opt-in (if any) is answered: a
    /// reconnection restores the session, and with `STREAMS` asks right
    /// behind the restore for what its streams missed (which also ends the
    /// server's hold of them, docs/protocol.md 14.3.2).
    fn begin(&mut self, machine: &mut Machine) {
        if !self.reconnected {
            return;
        }
        let key = self.session_key().or_else(|| {
            // A keyed request whose session was closed meanwhile (a logout
            // whose answer was lost) is answered from that session's
            // ledger, which a restore naming the session opens.
            let Link::Keyed { .. } = self.link else {
                return None;
            };
            let first = self.keyed.pending().next()?;
            self.keyed.session(first.seq).cloned()
        });
        let Some(key) = key else {
            // No session to resend under: what was sent is in doubt.
            let pending: Vec<RequestKey> = self.keyed.pending().collect();
            for key in pending {
                self.settle_keyed(key.seq, Err(RequestError::OutcomeUnknown));
            }
            return;
        };
        let deadline = now() + self.config.options.request_timeout;
        machine.restore_session(Bytes::from(key.clone()), deadline);
        self.restore_key = Some(key);
        if self.granted.contains(FeatureFlags::STREAMS) {
            let positions = self.streams.resume_all(self.max_message);
            self.send_resume(machine, positions);
        }
    }

    /// Sends a StreamResume of `positions` (those streams are *resuming*
    /// until it is answered).
    fn send_resume(&mut self, machine: &mut Machine, positions: Vec<StreamPosition>) {
        let streams: Vec<StreamId> = positions
            .iter()
            .map(|position| position.stream.clone())
            .collect();
        let id = self.shared.next_id();
        let resume = match StreamResume::new(RequestId::from(id), positions) {
            Ok(resume) => resume,
            Err(err) => {
                tracing::warn!(error = %err, "could not resume streams");
                self.streams.resume_answered(&streams);
                return;
            }
        };
        let frame = ClientMessage::StreamResume(resume).to_bytes();
        if let Err(refused) = machine.send_request(id, frame, None, Token::Resume(streams)) {
            tracing::debug!(reason = %refused.reason, "could not resume streams");
            if let Token::Resume(streams) = refused.token {
                self.streams.resume_answered(&streams);
            }
        }
    }

    /// Keyed requests sent and not answered, after the restore of a
    /// reconnection answered: sent again under their own session and
    /// ledger epoch, in seq order, or failed with outcome unknown
    /// (docs/protocol.md 14.5). After a restore that found no session
    /// (`restored` false), what is sent again is answered from the closed
    /// session's ledger, and the keyed requests of that session never sent
    /// fail.
    fn resolve_pending(&mut self, machine: &mut Machine, restored: bool) {
        let session = self.restore_key.clone();
        let pending: Vec<RequestKey> = self.keyed.pending().collect();
        for key in pending {
            match self
                .keyed
                .on_new_connection(key.seq, self.link, session.as_ref())
            {
                Resend::Send => {
                    if self.resend(machine, key) && !restored {
                        self.draining.insert(key.seq);
                    }
                }
                Resend::OutcomeUnknown => {
                    tracing::debug!(
                        seq = key.seq,
                        "a keyed request cannot be sent again: outcome unknown"
                    );
                    self.settle_keyed(key.seq, Err(RequestError::OutcomeUnknown));
                }
            }
        }
        if !restored && matches!(self.link, Link::Keyed { .. }) {
            // Never sent under that session, and never under another.
            let (lost, kept) = std::mem::take(&mut self.queued)
                .into_iter()
                .partition(|queued| match queued {
                    Queued::Request(outgoing) => {
                        outgoing.kind == Kind::Request
                            && outgoing.session.is_some()
                            && outgoing.session == session
                    }
                    Queued::Signal { .. } => false,
                });
            self.queued = kept;
            for queued in lost {
                queued.fail(RequestError::OutcomeUnknown);
            }
        }
    }

    /// Sends keyed request `key` again with a new request id. False when
    /// it could not be sent (then it has failed).
    fn resend(&mut self, machine: &mut Machine, key: RequestKey) -> bool {
        let Some(call) = self.keyed_calls.get(&key.seq) else {
            self.keyed.settle(key.seq);
            return false;
        };
        let id = self.shared.next_id();
        let keyed = Request::new(RequestId::from(id), call.name.clone(), call.payload.clone())
            .and_then(|request| KeyedRequest::new(request, key, self.keyed.ack()));
        let frame = match keyed {
            Ok(keyed) => ClientMessage::KeyedRequest(keyed).to_bytes(),
            Err(err) => {
                self.settle_keyed(key.seq, Err(RequestError::InvalidMessage(err)));
                return false;
            }
        };
        let seq = key.seq;
        match machine.send_request(id, frame, None, Token::Keyed { seq }) {
            Ok(()) => {
                tracing::debug!(seq, "keyed request sent again");
                self.keyed_ids.insert(id, seq);
                true
            }
            Err(refused) => {
                tracing::debug!(seq, reason = %refused.reason, "a keyed request could not be sent again");
                self.settle_keyed(seq, Err(RequestError::OutcomeUnknown));
                false
            }
        }
    }

    /// Keyed request `seq` has its final result: to its caller, or, when
    /// the caller is gone, as a [`ClientEvent::OrphanReply`].
    fn settle_keyed(&mut self, seq: u64, result: Result<Payload, RequestError>) {
        self.keyed.settle(seq);
        self.draining.remove(&seq);
        if let Some(call) = self.keyed_calls.remove(&seq)
            && let Err(result) = call.reply.send(result)
        {
            self.emit(ClientEvent::OrphanReply { seq, result });
        }
    }

    /// Acts on one event of the machine.
    fn on_event(
        &mut self,
        event: Event<Token>,
        machine: &mut Machine,
        restore_lost: &mut bool,
    ) -> Step {
        match event {
            Event::Answer { id, token, outcome } => match token {
                Token::Keyed { seq } => {
                    self.keyed_ids.remove(&id);
                    match outcome {
                        Outcome::Answered(answer) => {
                            let result =
                                if means_outcome_unknown(&answer, self.draining.contains(&seq)) {
                                    Err(RequestError::OutcomeUnknown)
                                } else {
                                    result_of(answer)
                                        .map_or(Err(RequestError::InternalError), |(_, r)| r)
                                };
                            self.settle_keyed(seq, result);
                        }
                        // Sent again on the next connection.
                        Outcome::Lost => {}
                        Outcome::TimedOut => self.settle_keyed(seq, Err(RequestError::TimedOut)),
                        Outcome::Closed => self.settle_keyed(seq, Err(RequestError::Closed)),
                    }
                }
                // Whatever the answer: a hole left shows with the next signal.
                Token::Resume(streams) => self.streams.resume_answered(&streams),
                token => {
                    let result = match outcome {
                        // An answer always carries the request's id.
                        Outcome::Answered(answer) => {
                            result_of(answer).map_or(Err(RequestError::InternalError), |(_, r)| r)
                        }
                        Outcome::TimedOut => Err(RequestError::TimedOut),
                        Outcome::Lost => Err(RequestError::Disconnected),
                        Outcome::Closed => Err(RequestError::Closed),
                    };
                    if let Token::Request { kind, reply } = token {
                        self.answer(kind, reply, result, machine);
                    }
                    // Signals are never answered.
                }
            },
            Event::Signal(signal) => self.emit(ClientEvent::Signal(signal)),
            Event::ExtensionAccepted(accept) => {
                tracing::debug!(granted = %accept.flags, "webwire 2.1 opt-in accepted");
                self.granted = accept.flags;
                self.link = if accept.flags.contains(FeatureFlags::KEYED_REQUESTS) {
                    Link::Keyed {
                        ledger_epoch: accept.ledger_epoch,
                    }
                } else {
                    Link::Plain
                };
                self.begin(machine);
            }
            Event::StreamSignal(signal) => match self.streams.on_stream_signal(&signal) {
                Verdict::Deliver => {
                    if self.config.options.stream_signal_events {
                        self.emit(ClientEvent::StreamSignal(signal));
                    } else {
                        self.emit(ClientEvent::Signal(signal.into_parts().3));
                    }
                }
                Verdict::Duplicate => {
                    tracing::trace!(stream = %signal.stream(), offset = signal.offset(), "dropping a duplicate stream signal");
                }
                Verdict::Gap(resume) => {
                    tracing::debug!(stream = %signal.stream(), offset = signal.offset(), "gap in a stream");
                    if let Some(position) = resume {
                        self.send_resume(machine, vec![position]);
                    }
                }
            },
            Event::StreamLoss(loss) => {
                if self.streams.on_loss(&loss) == LossVerdict::Report {
                    tracing::info!(stream = %loss.stream, reason = ?loss.reason, lost_from = loss.lost_from, lost_to = loss.lost_to, "stream signals lost");
                    self.emit(ClientEvent::StreamLoss(loss));
                }
            }
            Event::SessionCreated(session) => {
                // Positions belong to a session: none yet under a new one.
                self.streams.clear();
                *self.shared.session() = Some(session.clone());
                self.emit(ClientEvent::SessionCreated(session));
            }
            Event::SessionClosed => {
                self.drop_session();
                self.emit(ClientEvent::SessionClosed);
            }
            Event::Restore(outcome) => return self.restored(outcome, machine, restore_lost),
            Event::Ignored(Ignored::UnknownReply(id)) => {
                tracing::debug!(
                    id,
                    "discarding the answer to an unknown or cancelled request"
                );
            }
            Event::Ignored(Ignored::InvalidSession(err)) => {
                tracing::warn!(error = %err, "ignoring an invalid session from the server");
            }
            Event::Ignored(Ignored::AcceptConf) => {
                tracing::warn!("ignoring a second accept configuration from the server");
            }
            Event::Ended(end) => return Step::Ended(end),
            other => tracing::debug!(?other, "ignoring an unknown connection event"),
        }
        Step::Continue
    }

    /// The outcome of the session restore after a reconnection. If the
    /// server refuses, the client has no session any more (and says so with
    /// [`ClientEvent::SessionClosed`]); if the server shuts down, does not
    /// answer in time or the connection fails meanwhile, reconnecting failed.
    fn restored(
        &mut self,
        outcome: RestoreOutcome,
        machine: &mut Machine,
        restore_lost: &mut bool,
    ) -> Step {
        let refused = match outcome {
            RestoreOutcome::Restored(session) => {
                *self.shared.session() = Some(session);
                tracing::debug!("session restored");
                self.resolve_pending(machine, true);
                return Step::Continue;
            }
            RestoreOutcome::Shutdown if !self.closing => {
                return Step::RestoreFailed(ConnectError::handshake("the server is shutting down"));
            }
            RestoreOutcome::TimedOut if !self.closing => {
                return Step::RestoreFailed(ConnectError::TimedOut(
                    self.config.options.request_timeout,
                ));
            }
            RestoreOutcome::Lost => {
                *restore_lost = true;
                return Step::Continue;
            }
            RestoreOutcome::InvalidSession(err) => {
                tracing::warn!(error = %err, "the server answered the session restoration with an invalid session");
                None
            }
            RestoreOutcome::NotFound => {
                let had = self.shared.session().is_some();
                self.drop_session();
                tracing::warn!(error = %RequestError::SessionNotFound, "the session could not be restored");
                if had {
                    self.emit(ClientEvent::SessionClosed);
                }
                self.resolve_pending(machine, false);
                return Step::Continue;
            }
            RestoreOutcome::TooLarge { size, max } => {
                Some(RequestError::MessageTooLarge { size, max })
            }
            RestoreOutcome::Refused(answer) => result_of(answer).and_then(|(_, r)| r.err()),
            // Closing anyway.
            _ => return Step::Continue,
        };
        if let Some(err) = refused {
            tracing::warn!(error = %err, "the session could not be restored");
        }
        let had = self.shared.session().is_some();
        self.drop_session();
        if had {
            self.emit(ClientEvent::SessionClosed);
        }
        Step::Continue
    }

    fn start_closing(&mut self, machine: &mut Machine, grace: Duration) {
        self.shared.set_status(Status::Closed);
        self.closing = true;
        machine.close(now(), grace);
    }

    /// Handles a command while connected.
    fn online(&mut self, command: Command, machine: &mut Machine, announced: bool) {
        match command {
            Command::Request(outgoing) => self.send(Queued::Request(outgoing), machine),
            Command::Signal { frame, done } => self.send(Queued::Signal { frame, done }, machine),
            Command::Cancel(id) => {
                // A keyed request stays: the server may run it, and its
                // answer becomes an `OrphanReply`.
                if self.keyed_ids.contains_key(&id) {
                    return;
                }
                if machine.cancel(id).is_some() {
                    tracing::trace!(id, "request cancelled");
                }
            }
            Command::Connect(done) if announced => {
                let _ = done.send(Ok(()));
            }
            // Answered once the session is restored.
            Command::Connect(done) => self.connect_waiters.push(done),
            // Handled by `serve`.
            Command::Close(done) => self.close_waiters.push(done),
        }
    }

    /// Hands a request or signal to the machine, unless it is abandoned;
    /// while the opt-in, the session restore or the resends after a failed
    /// restore wait for their answers, it waits too. An application
    /// request is keyed when the connection grants keyed requests and
    /// holds a session.
    fn send(&mut self, queued: Queued, machine: &mut Machine) {
        if queued.is_abandoned() {
            return;
        }
        if !self.ready(machine) {
            self.hold(queued);
            return;
        }
        let refused = match queued {
            Queued::Request(outgoing) => {
                let keyed = match self.link {
                    Link::Keyed { ledger_epoch } if outgoing.kind == Kind::Request => {
                        self.session_key().map(|session| (ledger_epoch, session))
                    }
                    _ => None,
                };
                if let Some((ledger_epoch, session)) = keyed {
                    return self.send_keyed(outgoing, ledger_epoch, session, machine);
                }
                let Outgoing {
                    id,
                    kind,
                    frame,
                    reply,
                    ..
                } = outgoing;
                machine.send_request(id, frame, None, Token::Request { kind, reply })
            }
            Queued::Signal { frame, done } => machine.send_signal(frame, Token::Signal(done)),
        };
        if let Err(refused) = refused {
            let err = refusal_error(refused.reason);
            refused.token.fail(err);
        }
    }

    /// Sends an application request as a keyed request of `session`.
    fn send_keyed(
        &mut self,
        outgoing: Outgoing,
        ledger_epoch: u64,
        session: String,
        machine: &mut Machine,
    ) {
        let Outgoing {
            id,
            frame,
            reply,
            parts,
            session: bound,
            ..
        } = outgoing;
        if bound.as_ref().is_some_and(|bound| *bound != session) {
            // Made under another session: never sent under this one.
            let _ = reply.send(Err(RequestError::OutcomeUnknown));
            return;
        }
        let Some((name, payload)) = parts else {
            let token = Token::Request {
                kind: Kind::Request,
                reply,
            };
            if let Err(refused) = machine.send_request(id, frame, None, token) {
                refused.token.fail(refusal_error(refused.reason));
            }
            return;
        };
        let key = self.keyed.start(ledger_epoch, session);
        let seq = key.seq;
        let keyed = Request::new(RequestId::from(id), name.clone(), payload.clone())
            .and_then(|request| KeyedRequest::new(request, key, self.keyed.ack()));
        self.keyed_calls.insert(
            seq,
            KeyedCall {
                name,
                payload,
                reply,
            },
        );
        let frame = match keyed {
            Ok(keyed) => ClientMessage::KeyedRequest(keyed).to_bytes(),
            Err(err) => return self.settle_keyed(seq, Err(RequestError::InvalidMessage(err))),
        };
        match machine.send_request(id, frame, None, Token::Keyed { seq }) {
            Ok(()) => {
                self.keyed_ids.insert(id, seq);
            }
            // Not sent: it did not run.
            Err(refused) => self.settle_keyed(seq, Err(refusal_error(refused.reason))),
        }
    }

    /// Gives a request its result.
    fn answer(
        &mut self,
        kind: Kind,
        reply: ReplyTx,
        result: Result<Payload, RequestError>,
        machine: &mut Machine,
    ) {
        let result = match kind {
            Kind::Request => result,
            Kind::RestoreSession => result.and_then(|payload| {
                let session = session_of_reply(&payload)
                    .map_err(|err| RequestError::InvalidSession(err.to_string()))?;
                let previous = self.session_key();
                if previous.as_deref() != Some(session.key.as_str()) {
                    self.streams.clear();
                }
                *self.shared.session() = Some(session);
                if self.granted.contains(FeatureFlags::STREAMS) {
                    // The server holds the session's streams until resumed.
                    let positions = self.streams.resume_all(self.max_message);
                    self.send_resume(machine, positions);
                }
                Ok(payload)
            }),
            Kind::CloseSession => {
                if result.is_ok() {
                    self.drop_session();
                }
                result
            }
        };
        let _ = reply.send(result);
    }

    /// Reconnects with backoff until it works or the client is closed.
    async fn reconnect(&mut self, backoff: &mut Backoff) -> Option<Dialed> {
        self.shared.set_status(Status::Connecting);
        self.queue_offline = true;
        loop {
            if let Some(delay) = backoff.next() {
                self.offline(tokio::time::sleep(delay)).await?;
            }
            let config = Arc::clone(&self.config);
            match self.offline(async move { dial(&config).await }).await? {
                Ok(conn) => {
                    tracing::info!(attempt = backoff.attempt, "reconnected");
                    return Some(conn);
                }
                Err(err) => self.attempt_failed(&err, backoff),
            }
        }
    }

    /// Without automatic reconnection: calls fail until `Client::reconnect`.
    async fn stay_disconnected(&mut self) -> Option<Dialed> {
        loop {
            self.shared.set_status(Status::Disconnected);
            self.queue_offline = false;
            // Calls still queued were never sent: after the server closed
            // because it shuts down, that is why they did not run.
            let error = if std::mem::take(&mut self.server_went_away) {
                RequestError::ServerShutdown
            } else {
                RequestError::Disconnected
            };
            for queued in self.queued.drain(..) {
                queued.fail(error.clone());
            }
            match self.commands.recv().await? {
                Command::Connect(done) => {
                    self.connect_waiters.push(done);
                    self.shared.set_status(Status::Connecting);
                    self.queue_offline = true;
                    let config = Arc::clone(&self.config);
                    match self.offline(async move { dial(&config).await }).await? {
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
        self.hold(queued);
    }

    /// Queues a call until it can be sent, within the queue's bound; a
    /// request remembers the session it was made under.
    fn hold(&mut self, mut queued: Queued) {
        let max = self.config.options.max_queued;
        if self.queued.len() >= self.prune_at || self.queued.len() >= max {
            self.queued.retain(|queued| !queued.is_abandoned());
            self.prune_at = (self.queued.len() * 2).max(64);
        }
        if self.queued.len() >= max {
            queued.fail(RequestError::QueueFull { max });
            return;
        }
        if let Queued::Request(outgoing) = &mut queued
            && outgoing.session.is_none()
        {
            outgoing.session = self.session_key();
        }
        self.queued.push_back(queued);
    }
}

impl std::fmt::Debug for ConnectionTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("queued", &self.queued.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The error of a call the machine refused.
fn refusal_error(refusal: Refusal) -> RequestError {
    match refusal {
        Refusal::TooLarge { size, max } => RequestError::MessageTooLarge { size, max },
        Refusal::Closed => RequestError::Closed,
        // Ids are never reused, and the opt-in and the restore are waited for.
        _ => RequestError::Disconnected,
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

/// Hands the frames the machine has to write to the writer task.
fn write_transmits(machine: &mut Machine, writer_tx: &mpsc::UnboundedSender<WriterItem>) {
    let at = now();
    while let Some(transmit) = machine.poll_transmit(at) {
        let item = match transmit {
            Transmit::Message { frame, signal } => {
                let done = match signal {
                    Some(Token::Signal(done)) => Some(done),
                    _ => None,
                };
                WriterItem::Frame(frame, done)
            }
            Transmit::Close(code) => {
                WriterItem::Close(CloseCode::try_from(code).unwrap_or(CloseCode::NORMAL_CLOSURE))
            }
        };
        // If the writer is gone the connection is being lost: a signal's
        // `done` is dropped, a request fails with the others.
        let _ = writer_tx.send(item);
    }
}

/// The clock the machine is told about (tokio's, so paused in tests).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

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

/// Completes when `deadline` (if any) is reached.
async fn until(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The writer task: writes what is ready and flushes once per batch.
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut items: mpsc::UnboundedReceiver<WriterItem>,
) -> Result<(), tokio_websockets::Error> {
    let mut written = Vec::new();
    let mut flushed = None;
    while let Some(first) = items.recv().await {
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    fn options() -> Options {
        Client::builder("ws://127.0.0.1:1/")
            .reconnect_interval(Duration::from_millis(100))
            .max_reconnect_interval(Duration::from_millis(1000))
            .restart_reconnect_delay(Duration::from_secs(1), Duration::from_secs(5))
            .options()
            .clone()
    }

    #[test]
    fn backoff_waits_a_random_part_of_a_doubling_ceiling() {
        let mut backoff = Backoff::new(&options());
        assert_eq!(backoff.next_with(|| 1.0), None, "the first attempt at once");
        let ceilings: Vec<Duration> = (0..6).map(|_| backoff.next_with(|| 1.0).unwrap()).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            ceilings,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(
            backoff.next_with(|| 0.0),
            Some(Duration::ZERO),
            "full jitter: from zero"
        );
        assert_eq!(backoff.next_with(|| 0.25), Some(ms(250)));
    }

    #[test]
    fn after_a_restart_the_first_attempt_waits_within_the_range() {
        let options = options();
        let mut backoff = Backoff::after_restart(&options);
        assert_eq!(backoff.next_with(|| 0.0), Some(Duration::from_secs(1)));
        let mut backoff = Backoff::after_restart(&options);
        assert_eq!(backoff.next_with(|| 1.0), Some(Duration::from_secs(5)));
        assert_eq!(backoff.next_with(|| 1.0), Some(Duration::from_millis(100)));
        for _ in 0..100 {
            let wait = Backoff::after_restart(&options).next().unwrap();
            assert!((Duration::from_secs(1)..=Duration::from_secs(5)).contains(&wait));
        }
    }

    #[test]
    fn random_fractions_are_within_zero_and_one_and_vary() {
        let values: Vec<f64> = (0..64).map(|_| random_fraction()).collect();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(values.iter().any(|v| (v - values[0]).abs() > f64::EPSILON));
    }
}
