//! The handle of one client connection ([`Connection`]), and what it
//! tells about it.

pub use crate::room::MAX_ROOM_NAME_LEN;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{HeaderMap, Uri};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use webwire_proto::{FeatureFlags, Name, Payload, ServerMessage, Signal, ValueError};

use crate::config::Config;
use crate::error::{SessionError, SignalError};
use crate::headers::StoredHeaders;
use crate::lifecycle::{Lifecycle, Phase};
use crate::options::ConnectionOptions;
use crate::outbox::{Outbound, Outbox};
use crate::room::{Membership, Rooms};
use crate::session::ops::Sessions;
use crate::session::registry::SessionSlot;
use crate::session::{Session, SessionInfo, SessionJsonError};

/// A connection's number, unique within its server.
///
/// It can travel as a plain number (in a payload, a URL, a database row)
/// and be made back into an id with [`ConnectionId::new`] or `From<u64>`,
/// to find the connection with [`Server::connection`](crate::Server::connection).
///
/// ```
/// use webwire_server::{connection::ConnectionId, Server};
///
/// # fn f(server: Server, conn: webwire_server::Connection) {
/// let number: u64 = conn.id().get(); // sent to another client, say
/// let id = ConnectionId::new(number);
/// assert_eq!(id, ConnectionId::from(number));
/// if let Some(other) = server.connection(id) {
///     println!("connection {} is still open", other.id());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id numbered `number` (as [`get`](Self::get) returned it). An id
    /// no connection of the server has is valid: looking it up finds nothing.
    ///
    /// ```
    /// assert_eq!(webwire_server::connection::ConnectionId::new(7).get(), 7);
    /// ```
    pub const fn new(number: u64) -> Self {
        Self(number)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for ConnectionId {
    fn from(number: u64) -> Self {
        Self(number)
    }
}

impl From<ConnectionId> for u64 {
    fn from(id: ConnectionId) -> Self {
        id.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the upgrade request said: its URI, headers and the client's
/// address. The before-upgrade hook judges it, and
/// [`Connection::info`] keeps it for the connection's lifetime.
///
/// ```
/// use webwire_server::connection::ConnectionInfo;
///
/// let info = ConnectionInfo::new("/ws?room=1".parse()?, http::HeaderMap::new(), None);
/// assert_eq!(info.uri().query(), Some("room=1"));
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    uri: Uri,
    headers: StoredHeaders,
    remote_addr: Option<SocketAddr>,
    client_ip: Option<IpAddr>,
}

impl ConnectionInfo {
    /// Information about an upgrade request (for tests of hooks).
    pub fn new(uri: Uri, headers: HeaderMap, remote_addr: Option<SocketAddr>) -> Self {
        Self {
            uri,
            headers: StoredHeaders::from_map(headers),
            remote_addr,
            client_ip: remote_addr.map(|addr| addr.ip()),
        }
    }

    /// The same, with the client's address as a trusted proxy named it
    /// (see [`client_ip`](Self::client_ip)).
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Information kept from an upgrade request: the headers packed in one
    /// allocation until [`headers`](Self::headers) is first called.
    pub(crate) fn from_upgrade(
        uri: Uri,
        headers: &HeaderMap,
        remote_addr: Option<SocketAddr>,
        client_ip: Option<IpAddr>,
    ) -> Self {
        Self {
            uri,
            headers: StoredHeaders::packed(headers),
            remote_addr,
            client_ip,
        }
    }

    /// The request's URI (path and query).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers.get()
    }

    /// The client's address, when known (always in standalone mode; in an
    /// axum app when it is served with `into_make_service_with_connect_info`).
    ///
    /// This is the TCP peer: behind a reverse proxy, the proxy's address.
    /// See [`client_ip`](Self::client_ip) for the client's.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The client's address: the peer's ([`remote_addr`](Self::remote_addr)),
    /// or, when the peer is one of the server's
    /// [trusted proxies](crate::ServerBuilder::trusted_proxies), the one its
    /// `Forwarded` / `X-Forwarded-For` header names. The abuse limits count
    /// by this address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

/// A snapshot of a connection's counters.
///
/// `queued` never exceeds `queue_capacity`: the outbound queue is bounded,
/// and a client that does not read makes the server wait, not grow.
///
/// ```
/// # async fn f(conn: webwire_server::Connection) {
/// let stats = conn.stats();
/// assert!(stats.queued <= stats.queue_capacity);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Outbound messages queued now, or reserved for replies being computed.
    pub queued: usize,
    /// The outbound queue's capacity.
    pub queue_capacity: usize,
    /// The most messages the connection task found queued at once.
    pub max_queued: usize,
    /// Request and signal handlers running now.
    pub handlers_running: usize,
    /// WebSocket messages received (pings and pongs excluded).
    pub messages_received: u64,
    /// WebSocket messages written to the socket.
    pub messages_sent: u64,
    /// Messages over the connection's or its session's rate limit (see
    /// [`ServerBuilder::message_rate_per_connection`](crate::ServerBuilder::message_rate_per_connection)):
    /// requests answered with `RATE_LIMITED`, and signals dropped.
    pub rate_limited: u64,
}

/// A connection's counters, read together by [`Connection::stats`]. Each
/// is one relaxed atomic: they are written per message and only ever read
/// as a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    max_queued: AtomicUsize,
    handlers: AtomicUsize,
    rate_limited: AtomicU64,
}

impl Counters {
    /// The messages received so far, `total`: only the connection task
    /// counts them, so it keeps the count and stores it (a store, not a
    /// read-modify-write).
    #[inline]
    pub(crate) fn set_received(&self, total: u64) {
        self.received.store(total, Ordering::Relaxed);
    }

    /// `n` more messages were written to the socket.
    #[inline]
    pub(crate) fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// The connection task found `depth` messages queued at once.
    #[inline]
    pub(crate) fn note_queue_depth(&self, depth: usize) {
        self.max_queued.fetch_max(depth, Ordering::Relaxed);
    }

    /// A message was over the rate limit (only the connection task counts).
    #[inline]
    pub(crate) fn add_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A handler started in a task of its own.
    #[inline]
    pub(crate) fn handler_started(&self) {
        self.handlers.fetch_add(1, Ordering::Relaxed);
    }

    /// A handler running in a task of its own ended.
    #[inline]
    pub(crate) fn handler_ended(&self) {
        self.handlers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether the one handler of a connection at limit 1 runs (in the
    /// connection task, the only writer then: a store).
    #[inline]
    pub(crate) fn set_inline_handler(&self, running: bool) {
        self.handlers.store(usize::from(running), Ordering::Relaxed);
    }
}

/// The state of one connection, shared by its handles, its task and its
/// handler tasks. Its parts are reached through methods: the outbound
/// queue ([`Outbox`]), the phase ([`Lifecycle`]), the [`Counters`], the
/// room memberships ([`Membership`]), the session slot
/// ([`Connection::session_slot`]), and the task's wake-up.
pub(crate) struct ConnectionInner {
    id: ConnectionId,
    info: ConnectionInfo,
    options: ConnectionOptions,
    created: SystemTime,
    outbox: Outbox,
    buffer_size: usize,
    queue_timeout: Duration,
    /// Wakes the connection task when the state changes (a close is asked
    /// for, the server shuts down, the queue's channel is made): cheaper
    /// than a cancellation token, which takes a lock on every poll.
    attention: AtomicWaker,
    /// Set, and waiters woken, when the connection has ended and its
    /// disconnect hook returned (inline: a cancellation token would be
    /// one more allocation per connection).
    done: Done,
    /// Active, closing or closed (see [`Lifecycle`]).
    lifecycle: Lifecycle,
    /// The close asked for is a drain's ([`Server::drain`](crate::Server::drain)):
    /// close code 1012. Set before the lifecycle moves to closing.
    restart: AtomicBool,
    counters: Counters,
    /// The connection's span (`webwire.connection`): its handlers' spans
    /// are its children; the session's digest is recorded on it.
    span: tracing::Span,
    /// The server's sessions.
    sessions: Arc<Sessions>,
    /// The connection's session (see `session::registry`).
    session: Mutex<SessionSlot>,
    /// The rooms it is in (see `room`).
    rooms: Membership,
    /// The application's data (see [`Connection::extensions`]).
    extensions: Mutex<http::Extensions>,
    /// The 2.1 features granted (bits of [`FeatureFlags`]), set once the
    /// ExtensionAccept is written; 0 on a 2.0 connection.
    features: AtomicU32,
    /// The 2.1 features granted, and the hold of streams after a restore.
    streams: crate::stream::hold::ConnStreams,
}

impl ConnectionInner {
    /// A new connection's state: active, no session, in no room, its
    /// outbound queue not made yet.
    pub(crate) fn new(
        id: ConnectionId,
        info: ConnectionInfo,
        options: ConnectionOptions,
        config: &Config,
        sessions: Arc<Sessions>,
        rooms: Arc<Rooms>,
    ) -> Self {
        Self {
            id,
            info,
            options,
            created: SystemTime::now(),
            outbox: Outbox::new(config.queue_capacity),
            buffer_size: config.buffer_size,
            queue_timeout: config.queue_timeout,
            attention: AtomicWaker::new(),
            done: Done::default(),
            lifecycle: Lifecycle::default(),
            restart: AtomicBool::new(false),
            counters: Counters::default(),
            span: tracing::Span::none(),
            sessions,
            session: Mutex::new(SessionSlot::Empty),
            rooms: Membership::new(rooms),
            extensions: Mutex::default(),
            features: AtomicU32::new(0),
            streams: crate::stream::hold::ConnStreams::default(),
        }
    }

    /// The server's sessions.
    #[inline]
    pub(crate) fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The 2.1 features granted to the connection and its streams' hold.
    #[inline]
    pub(crate) fn stream_state(&self) -> &crate::stream::hold::ConnStreams {
        &self.streams
    }

    /// The largest message either side may send, in bytes.
    #[inline]
    pub(crate) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// How long a sender waits for room in the outbound queue.
    #[inline]
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// The outbound queue (its receiver is the connection task's).
    #[inline]
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Where the connection is in its life.
    #[inline]
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Whether the close asked for is a drain's (close code 1012).
    pub(crate) fn restart_asked(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }

    /// The counters behind [`Connection::stats`].
    #[inline]
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Sets the connection's span, before the connection is shared.
    pub(crate) fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Records the digest of the session the connection joined on its
    /// span (never the key).
    pub(crate) fn record_session(&self, key: &str) {
        self.span.record(
            "session",
            tracing::field::display(webwire_proto::KeyDigest::new(key)),
        );
    }

    #[inline]
    /// The ExtensionAccept granting `granted` was written (2.1).
    pub(crate) fn set_features(&self, granted: FeatureFlags) {
        self.features.store(granted.bits(), Ordering::Release);
    }

    /// The 2.1 features granted to the connection (none on a 2.0
    /// connection, or before its ExtensionAccept was written).
    #[inline]
    pub(crate) fn features(&self) -> FeatureFlags {
        FeatureFlags::from_bits(self.features.load(Ordering::Acquire))
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The rooms the connection is in.
    #[inline]
    pub(crate) fn membership(&self) -> &Membership {
        &self.rooms
    }

    /// Wakes the connection task to look at the state again.
    #[inline]
    pub(crate) fn wake_task(&self) {
        self.attention.wake();
    }

    /// The connection task is woken through `waker` by
    /// [`wake_task`](Self::wake_task) (the last waker registered).
    #[inline]
    pub(crate) fn register_task(&self, waker: &Waker) {
        self.attention.register(waker);
    }

    /// The connection has ended and its disconnect hook returned: wakes
    /// [`Connection::closed`].
    pub(crate) fn set_done(&self) {
        self.done.set();
    }

    fn stats(&self) -> ConnectionStats {
        let (outbox, counters) = (&self.outbox, &self.counters);
        ConnectionStats {
            queued: outbox
                .existing()
                .map_or(0, |tx| tx.max_capacity() - tx.capacity()),
            queue_capacity: outbox.capacity(),
            max_queued: counters.max_queued.load(Ordering::Relaxed),
            handlers_running: counters.handlers.load(Ordering::Relaxed),
            messages_received: counters.received.load(Ordering::Relaxed),
            messages_sent: counters.sent.load(Ordering::Relaxed),
            rate_limited: counters.rate_limited.load(Ordering::Relaxed),
        }
    }
}

/// A flag set once, with waiters.
#[derive(Debug, Default)]
struct Done {
    set: AtomicBool,
    waiters: tokio::sync::Notify,
}

impl Done {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.waiters.notify_waiters();
    }

    async fn wait(&self) {
        let notified = self.waiters.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a `set` in between wakes it.
        notified.as_mut().enable();
        if !self.set.load(Ordering::Acquire) {
            notified.await;
        }
    }
}

/// A connected client: cheap to clone (`Arc`), `Send + Sync`.
///
/// Handlers get one with every message; the server lists them
/// ([`Server::connections`](crate::Server::connections)). A handle may be
/// kept after the connection ended: it then reports `is_active() == false`
/// and signals fail with [`SignalError::Closed`].
///
/// ```
/// use webwire_server::{Connection, Payload};
///
/// async fn greet(conn: &Connection) -> Result<(), webwire_server::error::SignalError> {
///     println!("{} from {:?}", conn.id(), conn.remote_addr());
///     conn.signal("greeting", Payload::utf8("hello")).await
/// }
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnectionInner>,
}

impl Connection {
    pub(crate) fn new(inner: ConnectionInner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The connection's number.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// Whether the connection takes new messages: false once it is closing
    /// or closed.
    pub fn is_active(&self) -> bool {
        self.inner.lifecycle.is_active()
    }

    /// The webwire 2.1 features the client opted into and the server
    /// granted (docs/protocol.md 14.1): [`FeatureFlags::NONE`] for a 2.0
    /// connection (an original client), and until the ExtensionAccept was
    /// written.
    ///
    /// ```
    /// use webwire_server::proto::FeatureFlags;
    ///
    /// # fn f(conn: webwire_server::Connection) {
    /// if conn.features().contains(FeatureFlags::KEYED_REQUESTS) {
    ///     println!("this client resends requests after a reconnect, safely");
    /// }
    /// # }
    /// ```
    pub fn features(&self) -> FeatureFlags {
        self.inner.features()
    }

    /// The client's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.info.remote_addr
    }

    /// When the connection was established.
    pub fn created_at(&self) -> SystemTime {
        self.inner.created
    }

    /// The upgrade request's URI, headers and remote address.
    pub fn info(&self) -> &ConnectionInfo {
        &self.inner.info
    }

    /// The options the connection was accepted with.
    pub fn options(&self) -> &ConnectionOptions {
        &self.inner.options
    }

    /// The application's data on this connection: a map holding one value
    /// per type (an [`http::Extensions`]), empty when the connection opens
    /// and dropped with its last handle. Keep there what the application
    /// knows of the client: its user, its subscriptions, ...
    ///
    /// The map is behind a lock, held as long as the returned guard: take
    /// what is needed and let it go (the guard is not `Send`, so it cannot
    /// be held across an `.await` in a handler).
    ///
    /// ```
    /// use std::collections::BTreeSet;
    /// use webwire_server::{Connection, Payload, ReplyError, MessageRouter};
    ///
    /// #[derive(Clone, Default)]
    /// struct Topics(BTreeSet<String>);
    ///
    /// let router = MessageRouter::new()
    ///     .request("subscribe", |conn: Connection, topic: String| async move {
    ///         let mut ext = conn.extensions();
    ///         let topics = ext.get_or_insert_default::<Topics>();
    ///         topics.0.insert(topic);
    ///         Ok::<_, ReplyError>(topics.0.len().to_string())
    ///     })
    ///     .request("topics", |conn: Connection, _: Payload| async move {
    ///         let topics = conn.extensions().get::<Topics>().cloned().unwrap_or_default();
    ///         Ok::<_, ReplyError>(topics.0.into_iter().collect::<Vec<_>>().join(","))
    ///     });
    /// ```
    pub fn extensions(&self) -> MutexGuard<'_, http::Extensions> {
        // Every change of the map is complete when a guard is dropped.
        self.inner
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the connection's counters.
    pub fn stats(&self) -> ConnectionStats {
        self.inner.stats()
    }

    /// Whether the connection gets stream signals with their positions
    /// (StreamSignal: `STREAMS` granted); others get them as plain signals.
    pub(crate) fn streams_granted(&self) -> bool {
        self.inner.features().contains(FeatureFlags::STREAMS)
    }

    /// Sends the client a signal, waiting while the outbound queue is full,
    /// at most for the server's queue timeout.
    ///
    /// Fails when the connection is closed, when the encoded signal is
    /// larger than the message buffer size, when the name or payload is
    /// not allowed ([`SignalError::Invalid`]), or when the queue stayed
    /// full ([`SignalError::QueueFull`]).
    pub async fn signal(
        &self,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<(), SignalError> {
        let Some(message) = self.signal_message(name, payload.into())? else {
            return Ok(());
        };
        let tx = self.sender()?;
        let metrics = self.inner.sessions.metrics();
        // Room in the queue (the usual case): no timer, no clock read.
        let message = match tx.try_send(message) {
            Ok(()) => {
                metrics.signals_sent.increment(1);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SignalError::Closed),
            Err(mpsc::error::TrySendError::Full(message)) => message,
        };
        match tokio::time::timeout(self.inner.queue_timeout, tx.send(message)).await {
            Ok(Ok(())) => {
                metrics.signals_sent.increment(1);
                Ok(())
            }
            Ok(Err(_)) => Err(SignalError::Closed),
            Err(_) => {
                metrics.queue_full.increment(1);
                Err(SignalError::QueueFull)
            }
        }
    }

    /// Sends the client a signal without waiting: fails with
    /// [`SignalError::QueueFull`] at once when the outbound queue is full.
    pub fn try_signal(
        &self,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<(), SignalError> {
        match self.signal_message(name, payload.into())? {
            Some(message) => self.try_send(message),
            None => Ok(()),
        }
    }

    /// Closes the connection gracefully (docs/protocol.md 9.2): it takes no new
    /// work, its running handlers finish and their replies are sent, then
    /// it closes with WebSocket close code 1000. Requests that arrive
    /// meanwhile are answered with a shutdown reply. Returns at once; see
    /// [`closed`](Self::closed) to wait.
    pub fn close(&self) {
        self.inner.lifecycle.advance(Phase::Closing);
        self.inner.wake_task();
    }

    /// Like [`close`](Self::close), with close code 1012 (service
    /// restart): the close of a [`Server::drain`](crate::Server::drain),
    /// after which clients reconnect after a random delay.
    pub(crate) fn close_for_restart(&self) {
        // Before the phase moves, so that the task sees it with the phase.
        self.inner.restart.store(true, Ordering::Release);
        self.close();
    }

    /// Waits until the connection has ended and its disconnect hook returned.
    pub async fn closed(&self) {
        self.inner.done.wait().await;
    }

    /// The signal checked and ready to queue; `None` when the connection
    /// task took it at once (a handler of this connection it is polling
    /// sent it: it goes straight into the task's batch).
    fn signal_message(
        &self,
        name: impl IntoName,
        payload: Payload,
    ) -> Result<Option<Outbound>, SignalError> {
        if self.inner.lifecycle.is_closed() {
            return Err(SignalError::Closed);
        }
        let signal = Signal::new(name.into_name()?, payload)?;
        let len = signal.encoded_len();
        if len > self.inner.buffer_size {
            return Err(SignalError::TooLarge {
                len,
                max: self.inner.buffer_size,
            });
        }
        match crate::own_signals::offer(self.id(), signal) {
            Ok(()) => {
                self.inner.sessions.metrics().signals_sent.increment(1);
                Ok(None)
            }
            Err(signal) => Ok(Some(Outbound::Message(Box::new(ServerMessage::Signal(
                signal,
            ))))),
        }
    }

    /// Queues an encoded or prepared message without waiting.
    pub(crate) fn try_send(&self, message: Outbound) -> Result<(), SignalError> {
        if self.inner.lifecycle.is_closed() {
            return Err(SignalError::Closed);
        }
        let metrics = self.inner.sessions.metrics();
        match self.sender()?.try_send(message) {
            Ok(()) => {
                metrics.signals_sent.increment(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.queue_full.increment(1);
                Err(SignalError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SignalError::Closed),
        }
    }

    /// The outbound queue's sender (the queue made on first use).
    pub(crate) fn sender(&self) -> Result<&mpsc::Sender<Outbound>, SignalError> {
        self.inner
            .outbox
            .sender(&self.inner.attention)
            .ok_or(SignalError::Closed)
    }

    /// Creates a session for this connection (docs/protocol.md 8): a new key
    /// from the server's key generator, the client told with a
    /// NotifySessionCreated message, the session registered for this
    /// connection, then stored by the session manager. Returns the session.
    ///
    /// `info` is the application's JSON object attached to the session
    /// (`None` for none); read it back with
    /// [`session_info`](Self::session_info), on this connection or on any
    /// that restores the session later.
    ///
    /// Fails with [`SessionError::Disabled`] when sessions are disabled,
    /// [`SessionError::ConnectionClosed`] when the connection is closing or
    /// closed, [`SessionError::AlreadyActive`] when it has a session, and
    /// [`SessionError::TooLarge`] when the session does not fit the message
    /// buffer size. If the session manager fails to store the session, the
    /// error is logged and the session stays active (it just cannot be
    /// restored once every connection holding it has ended).
    ///
    /// ```
    /// use serde_json::json;
    /// use webwire_server::{Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("login", |conn: Connection, user: String| async move {
    ///     // Check the user's credentials here.
    ///     let info = json!({ "user": user }).as_object().cloned();
    ///     let session = conn.create_session(info).await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
    /// });
    /// ```
    pub async fn create_session(
        &self,
        info: impl Into<Option<SessionInfo>>,
    ) -> Result<Session, SessionError> {
        self.inner.sessions.create(self, info.into()).await
    }

    /// Closes this connection's session (docs/protocol.md 8) and tells the
    /// client (NotifySessionClosed). If this was the last connection
    /// holding it, the session is destroyed: the session manager deletes
    /// it. Returns whether the connection had a session.
    ///
    /// The session has left the connection even when this fails:
    /// [`SessionError::QueueFull`] says the client was not told,
    /// [`SessionError::Store`] that the session manager failed to delete it.
    ///
    /// ```
    /// use webwire_server::{Connection, Payload, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("logout", |conn: Connection, _: Payload| async move {
    ///     conn.close_session().await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
    /// });
    /// ```
    pub async fn close_session(&self) -> Result<bool, SessionError> {
        self.inner.sessions.close_by_server(self).await
    }

    /// Whether the connection has a session (after it ended: whether it had
    /// one then).
    ///
    /// ```
    /// # fn f(conn: webwire_server::Connection) {
    /// if !conn.has_session() {
    ///     println!("anonymous");
    /// }
    /// # }
    /// ```
    pub fn has_session(&self) -> bool {
        self.session_slot().session().is_some()
    }

    /// A copy of the connection's session, if it has one (after it ended:
    /// the session it had then).
    ///
    /// ```
    /// # fn f(conn: webwire_server::Connection) {
    /// if let Some(session) = conn.session() {
    ///     println!("created at {:?}, restored at {:?}", session.creation, session.last_lookup);
    /// }
    /// # }
    /// ```
    pub fn session(&self) -> Option<Session> {
        self.session_arc().map(|session| Session::clone(&session))
    }

    /// The key of the connection's session, if it has one.
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, conn: webwire_server::Connection) {
    /// if let Some(key) = conn.session_key() {
    ///     let tabs = server.session_connection_count(&key);
    ///     println!("the session is open in {tabs} tabs");
    /// }
    /// # }
    /// ```
    pub fn session_key(&self) -> Option<String> {
        self.session_slot()
            .session()
            .map(|session| session.key.clone())
    }

    /// When the connection's session was created, if it has one.
    ///
    /// ```
    /// # fn f(conn: webwire_server::Connection) {
    /// let age = conn.session_creation().and_then(|created| created.elapsed().ok());
    /// # }
    /// ```
    pub fn session_creation(&self) -> Option<SystemTime> {
        self.session_slot()
            .session()
            .map(|session| session.creation)
    }

    /// The info field `field` of the connection's session, deserialized as
    /// a `T`: `Ok(None)` without a session, without info or without that
    /// field; an error when the field is not a `T`.
    ///
    /// ```
    /// use webwire_server::{Connection, Payload, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("whoami", |conn: Connection, _: Payload| async move {
    ///     let user: Option<String> = conn.session_info("user")?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(user.unwrap_or_else(|| "anonymous".into()))
    /// });
    /// ```
    pub fn session_info<T: DeserializeOwned>(
        &self,
        field: &str,
    ) -> Result<Option<T>, SessionJsonError> {
        match self.session_arc() {
            Some(session) => session.info_field(field),
            None => Ok(None),
        }
    }

    pub(crate) fn session_arc(&self) -> Option<Arc<Session>> {
        self.session_slot().session().cloned()
    }

    /// The session slot; the registry's lock, if needed, is taken first.
    pub(crate) fn session_slot(&self) -> MutexGuard<'_, SessionSlot> {
        // Every change of a slot is a single assignment.
        self.inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection without a client, for unit tests.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Self::detached_in(Arc::default(), 0).0
    }

    /// A connection without a client in `rooms`, with its outbound queue
    /// (2 messages), for unit tests.
    #[cfg(test)]
    pub(crate) fn detached_in(
        rooms: Arc<crate::room::Rooms>,
        id: u64,
    ) -> (Self, mpsc::Receiver<Outbound>) {
        let config = Config {
            queue_capacity: 2,
            queue_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let sessions = Arc::new(Sessions::new(
            true,
            0,
            Arc::new(crate::session::MemorySessionManager::new()),
            Arc::new(crate::session::DefaultKeyGenerator),
            None,
            None,
            Arc::default(),
        ));
        let conn = Self::new(ConnectionInner::new(
            ConnectionId(id),
            ConnectionInfo::new(Uri::default(), HeaderMap::new(), None),
            ConnectionOptions::new(),
            &config,
            sessions,
            rooms,
        ));
        conn.sender().expect("a new connection takes messages");
        let rx = conn
            .inner
            .outbox
            .take_receiver()
            .expect("the channel was made");
        (conn, rx)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("remote_addr", &self.inner.info.remote_addr)
            .field("active", &self.is_active())
            .finish()
    }
}

impl PartialEq for Connection {
    /// Two handles are equal when they are of the same connection.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Connection {}

/// A value usable as a signal name: a [`Name`], or a string checked on use
/// (0 to 255 bytes of printable ASCII).
///
/// ```
/// use webwire_server::{connection::IntoName, proto::Name};
///
/// assert_eq!("chat".into_name()?, Name::from_static("chat"));
/// assert!("tab\t".into_name().is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
pub trait IntoName {
    /// The name, or why it is not one.
    fn into_name(self) -> Result<Name, ValueError>;
}

impl IntoName for Name {
    fn into_name(self) -> Result<Name, ValueError> {
        Ok(self)
    }
}

impl IntoName for &Name {
    fn into_name(self) -> Result<Name, ValueError> {
        Ok(self.clone())
    }
}

impl IntoName for &'static str {
    fn into_name(self) -> Result<Name, ValueError> {
        Name::new(Bytes::from_static(self.as_bytes()))
    }
}

impl IntoName for String {
    fn into_name(self) -> Result<Name, ValueError> {
        Name::try_from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_waits_for_the_end_and_returns_at_once_after_it() {
        let conn = Connection::detached();
        let waiter = tokio::spawn({
            let conn = conn.clone();
            async move { conn.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        conn.inner.set_done();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        // Already ended: no waiting.
        tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("at once");
    }
}
