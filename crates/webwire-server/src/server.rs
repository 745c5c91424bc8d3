//! The server handle: building, the connection registry, the sessions'
//! registry (docs/protocol.md 8), broadcasting and graceful shutdown
//! (docs/protocol.md 9.3).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::task_tracker::TrackedFuture;
use tokio_util::task::TaskTracker;
use webwire_proto::{AcceptConf, FeatureFlags, Payload, ServerMessage, Signal};

use crate::admission::{AddressPermit, Admission, MessageLimiter, Refused as NotAdmitted};
use crate::cluster::ErasedCluster;
use crate::cluster::{Cluster, ClusterEvent, ClusterNode};
use crate::config::{default_session_dir, Config};
use crate::connection::{ConnectionId, ConnectionInfo, IntoName};
use crate::driver::{self, Accepted};
use crate::error::SignalError;
use crate::handler::HandlerHooks;
use crate::ledger::{ErasedLedger, LedgerLimits, MemoryLedger, RequestLedger};
use crate::limits::{IpNet, Rate};
use crate::listener::Listener;
use crate::options::{Concurrency, ConnectionOptions, OriginPolicy, Refusal};
use crate::outbox::Outbound;
use crate::room::Rooms;
use crate::service::WebwireService;
use crate::session::ops::{is_valid_key, Sessions};
use crate::session::ErasedSessionManager;
use crate::session::{
    ClosedSession, DefaultKeyGenerator, FileSessionManager, SessionKeyGenerator, SessionManager,
};
use crate::stream::hub::Streams;
use crate::{Connection, Handler, ServerError, TlsConfig};

/// The before-upgrade hook.
pub(crate) type BeforeUpgrade =
    Box<dyn Fn(&ConnectionInfo) -> Result<ConnectionOptions, Refusal> + Send + Sync>;

/// Starts connection tasks for the application's handler type (the server
/// itself is not generic: the handler is erased here, once per connection,
/// and called without boxing per message).
pub(crate) trait Runner: Send + Sync + 'static {
    fn start(&self, shared: Arc<Shared>, upgrade: OnUpgrade, accepted: Accepted);
}

struct HandlerRunner<H>(Arc<H>);

impl<H: Handler> Runner for HandlerRunner<H> {
    fn start(&self, shared: Arc<Shared>, upgrade: OnUpgrade, accepted: Accepted) {
        let tracker = shared.connections.clone();
        tracker.spawn(driver::run(shared, self.0.clone(), upgrade, accepted));
    }
}

/// What the server's handles, listeners and connections share. Its fields
/// are this module's; the listeners, the upgrade, the connection tasks
/// and the cluster reach them through methods.
pub(crate) struct Shared {
    config: Config,
    /// The accept configuration, encoded once.
    accept_conf: Bytes,
    origin: OriginPolicy,
    before_upgrade: Option<BeforeUpgrade>,
    runner: Box<dyn Runner>,
    registry: Mutex<HashMap<ConnectionId, Connection>>,
    /// Sessions: options, the session manager, and which connections hold
    /// which session.
    sessions: Arc<Sessions>,
    /// Rooms and their members on this server.
    rooms: Arc<Rooms>,
    /// The other nodes, if the server is one of several.
    cluster: Option<Arc<dyn ErasedCluster>>,
    next_id: AtomicU64,
    connection_limit: Option<Arc<Semaphore>>,
    /// The abuse limits.
    admission: Arc<Admission>,
    /// Graceful shutdown started: upgrades get 503, connections drain.
    shutdown: CancellationToken,
    /// The same, read without a lock on every message.
    shutting_down: AtomicBool,
    /// A drain ([`Server::drain`]) started: upgrades get 503, the server
    /// is not ready, connections are closed one by one with 1012.
    draining: AtomicBool,
    /// The shutdown deadline passed: running handlers are dropped.
    abort: CancellationToken,
    /// Every connection has ended: listeners stop.
    stopped: CancellationToken,
    /// The connection tasks.
    connections: TaskTracker,
    /// The accept loops of standalone listeners.
    listeners: TaskTracker,
    /// The keyed-request ledger (2.1).
    ledger: Arc<dyn ErasedLedger>,
    /// The runs of keyed requests, detached from their connections: a
    /// shutdown waits for them too.
    keyed_runs: TaskTracker,
}

impl Shared {
    /// The server's options.
    #[inline]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The server's metric handles.
    #[inline]
    pub(crate) fn metrics(&self) -> &crate::metrics::ServerMetrics {
        self.sessions.metrics()
    }

    /// The accept configuration, encoded once: every connection's first frame.
    pub(crate) fn accept_conf(&self) -> &Bytes {
        &self.accept_conf
    }

    /// Sessions: options, the session manager, and which connections hold
    /// which session.
    #[inline]
    pub(crate) fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Rooms and their members on this server.
    pub(crate) fn rooms(&self) -> &Arc<Rooms> {
        &self.rooms
    }

    /// A number for a new connection, unique within the server.
    pub(crate) fn next_connection_id(&self) -> ConnectionId {
        ConnectionId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the origin policy lets an upgrade with these headers in.
    pub(crate) fn allows_origin(&self, headers: &HeaderMap) -> bool {
        self.origin.allows_request(headers)
    }

    /// A new connection's place under the connection limit (`None` without
    /// a limit); fails when the limit is reached.
    pub(crate) fn take_limit_permit(
        &self,
    ) -> Result<Option<OwnedSemaphorePermit>, TryAcquireError> {
        match &self.connection_limit {
            Some(limit) => limit.clone().try_acquire_owned().map(Some),
            None => Ok(None),
        }
    }

    /// The client's address: the peer's, or the one a trusted proxy names.
    pub(crate) fn client_ip(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<std::net::IpAddr> {
        self.admission.client_ip(peer, headers)
    }

    /// Admits an upgrade from `ip` under the abuse limits: its place under
    /// the per-address connection limit, or why not.
    pub(crate) fn admit(
        &self,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Option<AddressPermit>, NotAdmitted> {
        self.admission.admit(ip)
    }

    /// A new connection's message limiter (`None` without message limits).
    pub(crate) fn message_limiter(&self) -> Option<Box<MessageLimiter>> {
        self.admission.message_limiter()
    }

    /// The options of a new connection: the before-upgrade hook's answer,
    /// or the server's concurrency limit without a hook.
    pub(crate) fn connection_options(
        &self,
        info: &ConnectionInfo,
    ) -> Result<ConnectionOptions, Refusal> {
        match &self.before_upgrade {
            Some(hook) => hook(info),
            None => Ok(ConnectionOptions::new().concurrency(self.config.concurrency)),
        }
    }

    /// Starts the task of an accepted connection, to run once the upgrade
    /// completes.
    pub(crate) fn start_connection(self: &Arc<Self>, upgrade: OnUpgrade, accepted: Accepted) {
        self.runner.start(self.clone(), upgrade, accepted);
    }

    /// The keyed-request ledger.
    pub(crate) fn ledger(&self) -> &Arc<dyn ErasedLedger> {
        &self.ledger
    }

    /// The runs of keyed requests, detached from their connections.
    pub(crate) fn keyed_runs(&self) -> &TaskTracker {
        &self.keyed_runs
    }

    /// The connection tasks (a connection's task is spawned in it).
    pub(crate) fn connection_tasks(&self) -> &TaskTracker {
        &self.connections
    }

    /// Runs a listener's accept loop, tracked: the shutdown waits for it.
    pub(crate) fn track_listener<F: Future>(&self, accept_loop: F) -> TrackedFuture<F> {
        self.listeners.track_future(accept_loop)
    }

    /// Whether a graceful shutdown has started: a flag read without a lock,
    /// on every message.
    #[inline]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Whether a graceful shutdown has started, as the shutdown token
    /// tells (it takes a lock: for the rarer checks, such as an upgrade's).
    pub(crate) fn shutdown_started(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Whether the server takes new connections: no shutdown and no drain
    /// has started.
    pub(crate) fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire) && !self.shutdown_started()
    }

    /// Whether a drain has started.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves when a graceful shutdown starts.
    pub(crate) fn shutdown_signal(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Cancelled when the shutdown deadline passed and running handlers
    /// are to be dropped (each connection keeps a clone).
    pub(crate) fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Resolves when every connection has ended in a shutdown: listeners stop.
    pub(crate) fn stopped(&self) -> WaitForCancellationFuture<'_> {
        self.stopped.cancelled()
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists an open connection (it can be found, signalled, shut down).
    pub(crate) fn register(&self, conn: &Connection) {
        self.registry().insert(conn.id(), conn.clone());
    }

    /// Unlists a connection that has ended.
    pub(crate) fn unregister(&self, conn: &Connection) {
        self.registry().remove(&conn.id());
    }

    /// Queues `frame` for every connection of this server without waiting
    /// (a broadcast, local or from another node).
    pub(crate) fn send_all(&self, frame: &Bytes) -> usize {
        let connections: Vec<Connection> = self.registry().values().cloned().collect();
        let mut sent = 0;
        for conn in connections {
            match conn.try_send(Outbound::Frame(frame.clone())) {
                Ok(()) => sent += 1,
                Err(err) => {
                    tracing::debug!(connection = %conn.id(), error = %err, "broadcast signal not sent");
                }
            }
        }
        sent
    }
}

/// A webwire server: cheap to clone, `Send + Sync`.
///
/// Build one with [`Server::builder`], then either listen on its own
/// ([`Server::bind`], [`Listener::run`]) or mount [`Server::service`] in an
/// axum or hyper application. Any clone can list the connections, signal
/// them all and shut the server down.
///
/// ```no_run
/// use webwire_server::{Connection, Payload, Request, MessageRouter, ReplyError, Server};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let router = MessageRouter::new().request("echo", |_conn: Connection, req: Request| async move {
///     Ok::<_, ReplyError>(req.payload().clone())
/// });
/// let server = Server::builder(router).build()?;
/// let listener = server.bind("127.0.0.1:0").await?;
/// println!("listening on ws://{}/", listener.local_addr());
/// listener.run_until(tokio::signal::ctrl_c()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
}

impl Server {
    /// Starts building a server around the application's handler.
    pub fn builder<H: Handler>(handler: H) -> ServerBuilder<H> {
        ServerBuilder {
            handler,
            config: Config::default(),
            origin: OriginPolicy::default(),
            before_upgrade: None,
            cluster: None,
        }
    }

    /// Listens on `addr` (port 0 picks a free port; see
    /// [`Listener::local_addr`]). Nothing is accepted until the listener runs.
    pub async fn bind(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
    ) -> Result<Listener, ServerError> {
        let label = format!("{addr:?}");
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: label,
                source,
            })?;
        Listener::new(self.clone(), tcp, None)
    }

    /// Listens on `addr` for `wss://` connections.
    pub async fn bind_tls(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        tls: TlsConfig,
    ) -> Result<Listener, ServerError> {
        let mut listener = self.bind(addr).await?;
        listener.tls = Some(tls);
        Ok(listener)
    }

    /// Serves on a TCP listener bound elsewhere (optionally with TLS).
    pub fn listen(
        &self,
        tcp: TcpListener,
        tls: Option<TlsConfig>,
    ) -> Result<Listener, ServerError> {
        Listener::new(self.clone(), tcp, tls)
    }

    /// The server as a tower / axum service that answers WebSocket upgrade
    /// requests, for mounting in an existing application (headless mode).
    pub fn service(&self) -> WebwireService {
        WebwireService::new(self.clone())
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.registry().values().cloned().collect()
    }

    /// The number of open connections.
    pub fn connection_count(&self) -> usize {
        self.shared.registry().len()
    }

    /// The open connection with this id.
    pub fn connection(&self, id: ConnectionId) -> Option<Connection> {
        self.shared.registry().get(&id).cloned()
    }

    /// Sends a signal to every open connection, without waiting: the
    /// signal is encoded once, and a connection whose outbound queue is
    /// full misses it (logged at debug level). Returns how many
    /// connections it was queued for. With a [cluster](ServerBuilder::cluster),
    /// the other nodes send it to their connections too (the count is this
    /// server's).
    ///
    /// Fails only when the signal itself is invalid or too large.
    pub fn signal_all(
        &self,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<usize, SignalError> {
        let frame = self.signal_frame(name, payload.into())?;
        let sent = self.send_all(&frame);
        self.publish(|| ClusterEvent::Broadcast { frame });
        Ok(sent)
    }

    /// Queues `frame` for every connection of this server without waiting.
    pub(crate) fn send_all(&self, frame: &Bytes) -> usize {
        self.shared.send_all(frame)
    }

    /// Hands an event to the cluster, if there is one.
    fn publish(&self, event: impl FnOnce() -> ClusterEvent) {
        if let Some(cluster) = &self.shared.cluster {
            cluster.publish(event());
        }
    }

    /// Sends a signal to every connection holding the session `key`,
    /// without waiting (like [`signal_all`](Self::signal_all)); with a
    /// cluster, on every node. Returns how many of this server's
    /// connections it was queued for.
    ///
    /// Fire-and-forget, as in webwire 2.0: a client that is disconnected
    /// at the time never gets it. For what must reach the session across
    /// reconnects, in order, use
    /// [`signal_session_stream`](Self::signal_session_stream).
    ///
    /// ```
    /// # fn f(server: webwire_server::Server, key: &str) -> Result<(), webwire_server::error::SignalError> {
    /// server.signal_session(key, "logout-soon", "in 5 minutes")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn signal_session(
        &self,
        key: &str,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<usize, SignalError> {
        let frame = self.signal_frame(name, payload.into())?;
        let mut sent = 0;
        for conn in self.session_connections(key) {
            if conn.try_send(Outbound::Frame(frame.clone())).is_ok() {
                sent += 1;
            }
        }
        self.publish(|| ClusterEvent::Session {
            key: key.to_owned(),
            frame,
        });
        Ok(sent)
    }

    /// How many connections hold the session `key` on every node of the
    /// cluster (with no cluster: on this server, like
    /// [`session_connection_count`](Self::session_connection_count)).
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, key: &str) -> Result<(), webwire_server::cluster::ClusterError> {
    /// println!("{} tabs on all nodes", server.session_connection_count_everywhere(key).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn session_connection_count_everywhere(
        &self,
        key: &str,
    ) -> Result<usize, crate::cluster::ClusterError> {
        if let Some(cluster) = &self.shared.cluster
            && let Some(count) = cluster.session_connections(key).await?
        {
            return Ok(count);
        }
        Ok(self.session_connection_count(key))
    }

    /// Sends a signal to every connection in the room `room` except
    /// `except`, without waiting: the signal is encoded once, and a member
    /// whose outbound queue is full misses it (logged at debug level).
    /// Returns how many of this server's connections it was queued for;
    /// with a [cluster](ServerBuilder::cluster), the other nodes send it
    /// to their members too.
    ///
    /// Fails only when the signal itself is invalid or too large.
    ///
    /// Fire-and-forget, as in webwire 2.0, and not kept in a room's
    /// history: for a room with history
    /// ([`ServerBuilder::room_history`]), whose members get what they
    /// missed after a reconnect, use
    /// [`signal_room_stream`](Self::signal_room_stream).
    ///
    /// ```
    /// use webwire_server::{Connection, Payload, MessageRouter, Server};
    ///
    /// # fn f(server: Server, sender: Connection) -> Result<(), webwire_server::error::SignalError> {
    /// // Everybody in the lobby but the sender.
    /// server.room_signal("lobby", "message", Payload::utf8("hi"), Some(sender.id()))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn room_signal(
        &self,
        room: &str,
        name: impl IntoName,
        payload: impl Into<Payload>,
        except: Option<ConnectionId>,
    ) -> Result<usize, SignalError> {
        let frame = self.signal_frame(name, payload.into())?;
        let sent = self.shared.rooms.send(room, &frame, except);
        self.publish(|| ClusterEvent::Room {
            room: room.to_owned(),
            frame,
        });
        Ok(sent)
    }

    /// This server's connections in the room `room`.
    ///
    /// ```
    /// # fn f(server: webwire_server::Server) {
    /// for conn in server.room_members("lobby") {
    ///     println!("{} is in the lobby", conn.id());
    /// }
    /// # }
    /// ```
    pub fn room_members(&self, room: &str) -> Vec<Connection> {
        self.shared.rooms.members(room)
    }

    /// How many of this server's connections are in the room `room`.
    ///
    /// ```
    /// # fn f(server: webwire_server::Server) {
    /// println!("{} in the lobby", server.room_count("lobby"));
    /// # }
    /// ```
    pub fn room_count(&self, room: &str) -> usize {
        self.shared.rooms.count(room)
    }

    /// A signal encoded once, checked against the message buffer size.
    fn signal_frame(&self, name: impl IntoName, payload: Payload) -> Result<Bytes, SignalError> {
        let signal = Signal::new(name.into_name()?, payload)?;
        let max = self.shared.config.buffer_size;
        let frame = ServerMessage::Signal(signal).to_bytes();
        if frame.len() > max {
            return Err(SignalError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        Ok(frame)
    }

    /// The number of active sessions: sessions held by at least one
    /// connection of this server.
    ///
    /// ```
    /// # fn f(server: webwire_server::Server) {
    /// println!("{} sessions, {} connections", server.active_session_count(), server.connection_count());
    /// # }
    /// ```
    pub fn active_session_count(&self) -> usize {
        self.shared.sessions.registry().active_sessions()
    }

    /// The number of this server's connections holding the session `key`.
    ///
    /// ```
    /// # fn f(server: webwire_server::Server, conn: webwire_server::Connection) {
    /// if let Some(key) = conn.session_key() {
    ///     assert!(server.session_connection_count(&key) >= 1);
    /// }
    /// # }
    /// ```
    pub fn session_connection_count(&self, key: &str) -> usize {
        self.shared.sessions.registry().connection_count(key)
    }

    /// This server's connections holding the session `key`.
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, key: &str) {
    /// for conn in server.session_connections(key) {
    ///     let _ = conn.signal("news", "for every tab of this session").await;
    /// }
    /// # }
    /// ```
    pub fn session_connections(&self, key: &str) -> Vec<Connection> {
        self.shared.sessions.registry().connections(key)
    }

    /// Closes the session `key` everywhere (docs/protocol.md 8): on every
    /// connection holding it (each client is told with NotifySessionClosed),
    /// then the session manager deletes it, once. A session no connection
    /// holds is deleted all the same, so that it cannot be restored.
    ///
    /// Reports the connections affected, the clients that could not be
    /// told, and a failure of the session manager. Nothing happens when
    /// sessions are disabled, when `key` cannot be a session key, or while
    /// another close is destroying the same session.
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, key: &str) {
    /// let closed = server.close_session(key).await;
    /// println!("logged out of {} tabs", closed.connections().len());
    /// # }
    /// ```
    pub async fn close_session(&self, key: &str) -> ClosedSession {
        let sessions = &self.shared.sessions;
        match &self.shared.cluster {
            Some(cluster) if sessions.enabled() && is_valid_key(key.as_bytes()) => {
                let (mut closed, remote) =
                    tokio::join!(sessions.close_everywhere(key), cluster.close_session(key));
                closed.remote = Some(remote);
                closed
            }
            _ => sessions.close_everywhere(key).await,
        }
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Whether the server is ready for new connections: `false` once a
    /// [`drain`](Self::drain) or a shutdown has started. A standalone
    /// [`Listener`] answers `GET /readyz` with it; in headless mode, route
    /// it yourself, for a load balancer's readiness probe:
    ///
    /// ```
    /// use axum::{http::StatusCode, routing::get};
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// # fn f() -> Result<(), webwire_server::ServerError> {
    /// let webwire = Server::builder(MessageRouter::new()).build()?;
    /// let ready = webwire.clone();
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/healthz", get(|| async { "ok" }))
    ///     .route(
    ///         "/readyz",
    ///         get(move || async move {
    ///             if ready.is_ready() {
    ///                 (StatusCode::OK, "ready")
    ///             } else {
    ///                 (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    ///             }
    ///         }),
    ///     )
    ///     .route_service("/ws", webwire.service());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// Whether a [`drain`](Self::drain) has started.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Drains the server for a deploy or a restart, and returns when every
    /// connection has closed: new upgrades get 503 and the server is no
    /// longer [ready](Self::is_ready); then the open connections are closed
    /// gracefully, as [`Connection::close`] does (running handlers finish
    /// and their replies are sent, requests that arrive meanwhile get a
    /// shutdown reply) but with WebSocket close code 1012 (service
    /// restart), spread evenly over `window`: of `n` connections, the
    /// `i`-th (from 0, oldest first) is closed `i * window / n` after the
    /// start. Clients reconnect after a random delay (the webwire clients
    /// do), so they move to other nodes gradually instead of all at once.
    ///
    /// The server still runs afterwards (listeners answer health checks,
    /// upgrades get 503); call [`shutdown`](Self::shutdown) to end it. A
    /// shutdown during the drain closes the remaining connections at once
    /// with 1001.
    ///
    /// ```no_run
    /// # async fn f(server: webwire_server::Server) {
    /// use std::time::Duration;
    ///
    /// server.drain(Duration::from_secs(30)).await;
    /// server.shutdown().await;
    /// # }
    /// ```
    pub async fn drain(&self, window: Duration) {
        let shared = &self.shared;
        shared.draining.store(true, Ordering::Release);
        let start = tokio::time::Instant::now();
        let mut connections = self.connections();
        connections.sort_by_key(Connection::id);
        let n = u32::try_from(connections.len()).unwrap_or(u32::MAX);
        tracing::info!(connections = n, window = ?window, "draining");
        for (i, conn) in (0..n).zip(&connections) {
            let at = window.checked_mul(i).map_or(window, |spread| spread / n);
            tokio::select! {
                () = tokio::time::sleep_until(start + at) => conn.close_for_restart(),
                // The shutdown closes the rest itself.
                () = shared.shutdown_signal() => break,
            }
        }
        // An upgrade that passed its check just before the drain started
        // may have registered after the list was taken.
        loop {
            let late: Vec<Connection> = self
                .connections()
                .into_iter()
                .filter(|conn| conn.is_active())
                .collect();
            if late.is_empty() {
                break;
            }
            for conn in &late {
                conn.close_for_restart();
            }
            for conn in &late {
                conn.closed().await;
            }
        }
        for conn in &connections {
            conn.closed().await;
        }
        tracing::info!("drained");
    }

    /// Shuts down gracefully (docs/protocol.md 9.3) and returns when it is done:
    /// new upgrades get 503; requests that arrive are answered with a
    /// shutdown reply and signals dropped; running handlers finish and
    /// their replies are sent; then every connection closes with code 1001
    /// and the listeners stop. Waits as long as handlers run; see
    /// [`shutdown_with_deadline`](Self::shutdown_with_deadline).
    pub async fn shutdown(&self) {
        self.shutdown_inner(None).await;
    }

    /// Like [`shutdown`](Self::shutdown), but handlers still running after
    /// `deadline` are dropped and their requests answered with a shutdown
    /// reply, so that a stuck handler cannot hold the shutdown.
    pub async fn shutdown_with_deadline(&self, deadline: Duration) {
        self.shutdown_inner(Some(deadline)).await;
    }

    async fn shutdown_inner(&self, deadline: Option<Duration>) {
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::Release);
        shared.shutdown.cancel();
        // Connections registered from now on see the flag before they read.
        for conn in self.connections() {
            conn.inner.wake_task();
        }
        shared.connections.close();
        // Keyed handlers run on detached from their connections: their
        // answers are stored for the clients' retries, so the shutdown
        // waits for them as for the connections (new ones start only
        // from connections still open, which answer with a shutdown reply).
        let all_ended = async {
            shared.connections.wait().await;
            shared.keyed_runs.close();
            shared.keyed_runs.wait().await;
        };
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout(deadline, all_ended).await.is_err() {
                    tracing::warn!("shutdown deadline passed: dropping running handlers");
                    shared.abort.cancel();
                    shared.connections.wait().await;
                    shared.keyed_runs.close();
                    shared.keyed_runs.wait().await;
                }
            }
            None => all_ended.await,
        }
        shared.stopped.cancel();
        shared.listeners.close();
        shared.listeners.wait().await;
        if let Some(cluster) = &shared.cluster {
            cluster.shutdown().await;
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.connection_count())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

/// Builds a [`Server`]: options with the original server's defaults,
/// limits, hooks. Validated by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use webwire_server::{options::{Concurrency, OriginPolicy}, MessageRouter, Server};
///
/// let server = Server::builder(MessageRouter::new())
///     .read_timeout(Duration::from_secs(30))
///     .message_buffer_size(64 * 1024)
///     .sub_protocol("chat")
///     .max_connections(10_000)
///     .concurrency(Concurrency::limited(4))
///     .origin_policy(OriginPolicy::AllowAny)
///     .build()?;
/// # Ok::<(), webwire_server::ServerError>(())
/// ```
pub struct ServerBuilder<H> {
    handler: H,
    config: Config,
    origin: OriginPolicy,
    before_upgrade: Option<BeforeUpgrade>,
    cluster: Option<Arc<dyn ErasedCluster>>,
}

impl<H: Handler> ServerBuilder<H> {
    /// Makes the server one node of a cluster (`webwire_redis::RedisCluster`,
    /// say): broadcasts, room and session signals and
    /// [`Server::close_session`] reach every node, and the per-session
    /// connection limit counts the connections of all nodes.
    ///
    /// ```no_run
    /// # fn f(cluster: std::sync::Arc<impl webwire_server::cluster::Cluster>) -> Result<(), webwire_server::ServerError> {
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new()).cluster(cluster).build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster(mut self, cluster: Arc<impl Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Where stream history is kept (docs/protocol.md 14.3). Default: a
    /// [`MemoryStreamStore`](crate::stream::MemoryStreamStore), which a
    /// restart of the process empties (returning clients are told, with a
    /// StreamLoss of reason EPOCH_CHANGED); several nodes share one in
    /// Redis.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use webwire_server::{stream::MemoryStreamStore, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .stream_store(Arc::new(MemoryStreamStore::new()))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn stream_store(mut self, store: Arc<impl crate::stream::StreamStore>) -> Self {
        self.config.streams.store = Some(store);
        self
    }

    /// How much history every session stream keeps (the signals of
    /// [`Server::signal_session_stream`]). Default
    /// [`DEFAULT_SESSION_HISTORY`](crate::stream::DEFAULT_SESSION_HISTORY):
    /// 1000 signals, 10 minutes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::{stream::HistoryLimits, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .session_history(HistoryLimits::new(100, Duration::from_secs(300)))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn session_history(mut self, limits: crate::stream::HistoryLimits) -> Self {
        self.config.streams.session_history = limits;
        self
    }

    /// Which rooms keep history, and how much: `history(room)` answers
    /// `Some(limits)` for a room with a stream, `None` for a plain room
    /// (the default for every room). Asked whenever a room is used, so it
    /// must give the same answer for a room every time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::{stream::HistoryLimits, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .room_history(|room| {
    ///         room.starts_with("chat:").then(|| HistoryLimits::new(500, Duration::from_secs(3600)))
    ///     })
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn room_history<F>(mut self, history: F) -> Self
    where
        F: Fn(&str) -> Option<crate::stream::HistoryLimits> + Send + Sync + 'static,
    {
        self.config.streams.room_history = Some(Arc::new(history));
        self
    }

    /// Closes a connection that sends nothing (no message, heartbeat, ping
    /// or pong) for this long. Default 60 s, at least 1 s.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.read_timeout = timeout;
        self
    }

    /// The largest message either side may send, in bytes. Default 8192
    /// (what Go clients expect by default), at least 32.
    pub fn message_buffer_size(mut self, bytes: usize) -> Self {
        self.config.buffer_size = bytes;
        self
    }

    /// The application's sub-protocol name, announced to clients. Default empty.
    pub fn sub_protocol(mut self, name: impl Into<String>) -> Self {
        self.config.sub_protocol = name.into();
        self
    }

    /// At most this many connections at once; past it, upgrades get 503.
    /// Default: no limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// The outbound queue of each connection holds at most this many
    /// messages (default 128, at least 2). With the message buffer size,
    /// it bounds the memory a client that does not read can make the
    /// server hold.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.config.queue_capacity = messages;
        self
    }

    /// A connection is closed when its client stops reading for this long:
    /// a write the server waits for (a reply) does not complete, or its
    /// outbound queue stays full while the socket takes no more. [`Connection::signal`] waits at
    /// most this long for room. Default 10 s.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.config.queue_timeout = timeout;
        self
    }

    /// How long a closing connection waits for the client's close frame
    /// (and for its last writes). Default 3 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// The concurrency limit of connections the before-upgrade hook does
    /// not set otherwise. Default one handler at a time.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// Standalone mode only: accept upgrades on this path only (others get
    /// 404). Default: every path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = Some(path.into());
        self
    }

    /// The largest request head an upgrade may have, in bytes: its request
    /// line and header fields, counted as sent (`Name: value` and the line
    /// ends, like Go's `MaxHeaderBytes`). A larger request is answered
    /// with 431 Request Header Fields Too Large. Default 16 KiB, at least
    /// 1 KiB.
    ///
    /// Every connection keeps its upgrade's URI and headers for as long as
    /// it is open (for [`ConnectionInfo`] and the application), so this
    /// bounds what one idle connection can make the server hold. 16 KiB is
    /// what a browser realistically sends with margin: an upgrade is about
    /// 0.5–1 KiB before cookies, browsers cap each cookie at 4 KiB, and
    /// common servers and proxies in front of an application refuse heads
    /// past 8–32 KiB (Node.js: 16 KiB), so a site working behind them fits.
    /// Raise it for sites with unusually large cookies or tokens.
    ///
    /// In standalone mode the limit is also the size of hyper's read
    /// buffer for the request head (hyper's minimum is 8 KiB), so a larger
    /// head is refused before it is read whole. In headless mode the
    /// application's HTTP server reads the head under its own limits;
    /// [`Server::service`] refuses heads past this one all the same.
    ///
    /// ```
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new()).max_header_bytes(32 * 1024).build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.config.max_header_bytes = bytes;
        self
    }

    /// At most this many connections from one client address at once (an
    /// IPv6 address counts by its /64 prefix); past it, upgrades get 429
    /// Too Many Requests with `Retry-After: 1`. Default: no limit. See
    /// [`limits`](crate::limits) for all abuse limits, and
    /// [`trusted_proxies`](Self::trusted_proxies) for clients behind a
    /// reverse proxy.
    ///
    /// ```
    /// use webwire_server::{limits::Rate, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .max_connections_per_ip(50)
    ///     .handshake_rate_per_ip(Rate::per_second(5).burst(20))
    ///     .handshake_rate(Rate::per_second(500))
    ///     .message_rate_per_connection(Rate::per_second(100).burst(200))
    ///     .message_rate_per_session(Rate::per_second(300))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.config.limits.connections_per_ip = Some(max);
        self
    }

    /// New connections (upgrade requests) one client address may open, as
    /// a token bucket; past it, upgrades get 429 Too Many Requests with
    /// `Retry-After` (the seconds until the bucket has a token again).
    /// Default: no limit. The buckets of at most
    /// [`max_tracked_addresses`](Self::max_tracked_addresses) addresses are kept.
    pub fn handshake_rate_per_ip(mut self, rate: Rate) -> Self {
        self.config.limits.handshakes_per_ip = Some(rate);
        self
    }

    /// New connections the whole server takes, as a token bucket: it paces
    /// a reconnect storm (after a deploy, say) instead of taking every
    /// client at once; past it, upgrades get 503 Service Unavailable with
    /// `Retry-After`, and the clients (both of this project's) come back
    /// after that. Default: no limit.
    pub fn handshake_rate(mut self, rate: Rate) -> Self {
        self.config.limits.handshakes = Some(rate);
        self
    }

    /// Messages (requests and signals) one connection may send, as a token
    /// bucket. Over it, a request is answered with an error reply of code
    /// `RATE_LIMITED` without running its handler, and a signal is dropped
    /// (counted in [`ConnectionStats::rate_limited`](crate::connection::ConnectionStats::rate_limited));
    /// a client that keeps exceeding is closed with 1008 (see
    /// [`rate_limit_close_after`](Self::rate_limit_close_after)). Session
    /// requests and heartbeats are not counted. Default: no limit.
    pub fn message_rate_per_connection(mut self, rate: Rate) -> Self {
        self.config.limits.messages_per_connection = Some(rate);
        self
    }

    /// Messages all the connections of one session on this server may
    /// send together (several tabs of one user, say), as a token bucket,
    /// with the outcomes of
    /// [`message_rate_per_connection`](Self::message_rate_per_connection).
    /// Messages of a connection without a session are not counted here.
    /// Default: no limit.
    pub fn message_rate_per_session(mut self, rate: Rate) -> Self {
        self.config.limits.messages_per_session = Some(rate);
        self
    }

    /// A client that keeps sending over its message rate limit for this
    /// long (messages over the limit no more than a second apart) is closed
    /// with 1008 (policy violation). Default 10 s.
    pub fn rate_limit_close_after(mut self, duration: Duration) -> Self {
        self.config.limits.close_after = duration;
        self
    }

    /// The client addresses whose handshake buckets are kept at most
    /// (default 65 536, at least 1): see [`limits`](crate::limits).
    pub fn max_tracked_addresses(mut self, max: usize) -> Self {
        self.config.limits.max_tracked_addresses = max;
        self
    }

    /// The reverse proxies in front of the server. When a connection comes
    /// from one of these, its client address (for the limits and
    /// [`ConnectionInfo::client_ip`]) is the right-most address of the
    /// `Forwarded` header (or, without it, `X-Forwarded-For`) that is not
    /// itself a trusted proxy; from any other peer these headers are
    /// ignored, since anyone can send them. Default: none.
    ///
    /// ```
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .trusted_proxies(["10.0.0.0/8".parse()?, "::1".parse()?])
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.config.limits.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Which browser origins may connect. Default: same origin only.
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// A hook called for every upgrade request that passed the origin
    /// check and the connection limit: refuse it with an HTTP status, or
    /// accept it with per-connection options.
    ///
    /// ```
    /// use webwire_server::{
    ///     options::{Concurrency, ConnectionOptions, Refusal}, MessageRouter, Server,
    /// };
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .before_upgrade(|info| {
    ///         if info.headers().contains_key("x-api-key") {
    ///             Ok(ConnectionOptions::new().concurrency(Concurrency::Unlimited))
    ///         } else {
    ///             Err(Refusal::new(http::StatusCode::UNAUTHORIZED))
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn before_upgrade<F>(mut self, hook: F) -> Self
    where
        F: Fn(&ConnectionInfo) -> Result<ConnectionOptions, Refusal> + Send + Sync + 'static,
    {
        self.before_upgrade = Some(Box::new(hook));
        self
    }

    /// Whether clients may have sessions (docs/protocol.md 8). Default: enabled.
    /// When disabled, [`Connection::create_session`] fails and clients'
    /// session requests are answered with ReplySessionsDisabled.
    ///
    /// ```
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new()).sessions_enabled(false).build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn sessions_enabled(mut self, enabled: bool) -> Self {
        self.config.sessions_enabled = enabled;
        self
    }

    /// At most this many connections may hold one session at once (several
    /// browser tabs, say); a restore beyond is answered with
    /// ReplyMaxSessConnsReached. Default 0: no limit.
    ///
    /// ```
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new()).max_session_connections(3).build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn max_session_connections(mut self, max: usize) -> Self {
        self.config.max_session_connections = max;
        self
    }

    /// Where sessions are stored. Default: a
    /// [`FileSessionManager`] in the folder `webwire-sessions` under the
    /// current directory (as it is when the server is built; the folder is
    /// created when the first session is stored).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use webwire_server::{session::FileSessionManager, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .session_manager(Arc::new(FileSessionManager::new("/var/lib/app/sessions")))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn session_manager(mut self, manager: Arc<impl SessionManager>) -> Self {
        self.config.session_manager = Some(manager);
        self
    }

    /// Makes the keys of new sessions. Default: the [`DefaultKeyGenerator`]
    /// (64 characters from 48 secure random bytes); keep it unless you know
    /// exactly why not.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use webwire_server::{session::DefaultKeyGenerator, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .session_key_generator(Arc::new(DefaultKeyGenerator))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn session_key_generator(mut self, generator: Arc<dyn SessionKeyGenerator>) -> Self {
        self.config.session_keys = Some(generator);
        self
    }

    /// The webwire 2.1 features the server offers (docs/protocol.md 14):
    /// a server that offers any announces version 2.1 in AcceptConf and
    /// grants them to clients that opt in; [`FeatureFlags::NONE`]
    /// announces 2.0 and speaks only 2.0. Original 2.0 clients never opt
    /// in, and see 2.0 either way. Default: both,
    /// [`STREAMS`](FeatureFlags::STREAMS) and
    /// [`KEYED_REQUESTS`](FeatureFlags::KEYED_REQUESTS).
    ///
    /// ```
    /// use webwire_server::{proto::FeatureFlags, MessageRouter, Server};
    ///
    /// // Announce 2.0 only, as a server before 2.1 did.
    /// let server = Server::builder(MessageRouter::new()).extensions(FeatureFlags::NONE).build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn extensions(mut self, features: FeatureFlags) -> Self {
        self.config.extensions = features;
        self
    }

    /// Where the server keeps what keyed requests ran and answered
    /// (docs/protocol.md 14.4), so that a retry is answered and never run
    /// twice. Default: a [`MemoryLedger`] with
    /// [`ledger_limits`](Self::ledger_limits); a cluster needs a shared
    /// one, so that a retry that reaches another node finds its key.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use webwire_server::{ledger::MemoryLedger, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .request_ledger(Arc::new(MemoryLedger::new()))
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn request_ledger(mut self, ledger: Arc<impl RequestLedger>) -> Self {
        self.config.request_ledger = Some(ledger);
        self
    }

    /// The bounds of the default in-memory request ledger (stored answers
    /// per session and client instance by count, bytes and age; leases).
    /// Ignored with a [`request_ledger`](Self::request_ledger) of the
    /// application's. Default: [`LedgerLimits::default`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::{ledger::LedgerLimits, MessageRouter, Server};
    ///
    /// let server = Server::builder(MessageRouter::new())
    ///     .ledger_limits(LedgerLimits { max_age: Duration::from_secs(60), ..LedgerLimits::default() })
    ///     .build()?;
    /// # Ok::<(), webwire_server::ServerError>(())
    /// ```
    pub fn ledger_limits(mut self, limits: LedgerLimits) -> Self {
        self.config.ledger_limits = limits;
        self
    }

    /// How long a keyed request's handler may run. It runs detached from
    /// its connection (to completion even if the connection is gone);
    /// past this its stored answer is an internal error. Default 60 s.
    pub fn keyed_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.keyed_request_timeout = timeout;
        self
    }

    /// How often a running keyed handler renews its lease in the request
    /// ledger. Keep it well below the ledger's lease time
    /// ([`LedgerLimits::lease_ttl`], 30 s by default): a run whose lease
    /// lapsed has its answer sent but not stored. Default 10 s.
    pub fn keyed_lease_renewal(mut self, every: Duration) -> Self {
        self.config.keyed_lease_renewal = every;
        self
    }

    /// Checks the options and builds the server.
    pub fn build(self) -> Result<Server, ServerError> {
        let config = self.config;
        config.validate()?;
        let handler = Arc::new(self.handler);
        let ledger = config
            .request_ledger
            .clone()
            .unwrap_or_else(|| Arc::new(MemoryLedger::with_limits(config.ledger_limits)));
        let streams = Arc::new(Streams::new(crate::stream::hub::StreamConfig {
            cluster: self.cluster.clone(),
            ..config.streams.clone()
        }));
        let sessions = Sessions::new(
            config.sessions_enabled,
            config.max_session_connections,
            config
                .session_manager
                .clone()
                .unwrap_or_else(|| default_session_manager(config.sessions_enabled)),
            config
                .session_keys
                .clone()
                .unwrap_or_else(|| Arc::new(DefaultKeyGenerator)),
            self.cluster.clone(),
            Some(ledger.clone()),
            streams,
        );
        let sessions = Arc::new(sessions.with_hooks(Arc::new(HandlerHooks(handler.clone()))));
        let accept_conf = ServerMessage::AcceptConf(
            AcceptConf::new(
                config.read_timeout,
                // Checked by `validate`.
                u32::try_from(config.buffer_size).unwrap_or(u32::MAX),
                Bytes::from(config.sub_protocol.clone()),
            )
            // A server that offers 2.1 features announces minor 1; original
            // clients check the major version only (docs/protocol.md 14.1).
            .with_minor(u8::from(!config.extensions.is_empty())),
        )
        .to_bytes();
        let connection_limit = config.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let admission = Arc::new(Admission::new(config.limits.clone()));
        let server = Server {
            shared: Arc::new(Shared {
                config,
                accept_conf,
                origin: self.origin,
                before_upgrade: self.before_upgrade,
                runner: Box::new(HandlerRunner(handler)),
                registry: Mutex::new(HashMap::new()),
                sessions,
                rooms: Arc::default(),
                cluster: self.cluster.clone(),
                next_id: AtomicU64::new(1),
                connection_limit,
                admission,
                shutdown: CancellationToken::new(),
                shutting_down: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                abort: CancellationToken::new(),
                stopped: CancellationToken::new(),
                connections: TaskTracker::new(),
                listeners: TaskTracker::new(),
                ledger,
                keyed_runs: TaskTracker::new(),
            }),
        };
        if let Some(cluster) = &self.cluster {
            cluster.attach(ClusterNode::new(Arc::downgrade(&server.shared)));
        }
        Ok(server)
    }
}

impl<H> fmt::Debug for ServerBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("origin", &self.origin)
            .field("before_upgrade", &self.before_upgrade.is_some())
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// The session manager used when the application chose none: files in
/// `webwire-sessions` under the current directory, as in the original. The
/// folder is logged, since a server that writes into its working directory
/// should say where.
fn default_session_manager(sessions_enabled: bool) -> Arc<dyn ErasedSessionManager> {
    let dir = default_session_dir();
    if sessions_enabled {
        tracing::info!(
            folder = %dir.display(),
            "sessions are kept in files in this folder (the default; choose another store with ServerBuilder::session_manager)"
        );
    }
    Arc::new(FileSessionManager::new(dir))
}
