//! What the server does with sessions (docs/protocol.md 8): create, restore,
//! close on one connection or everywhere, and leave on disconnect. It ties
//! the [registry](super::registry), the application's
//! [`SessionManager`] and the clients' notifications together.
//!
//! Every operation is safe to drop halfway (its caller may stop waiting):
//! slot claims and restore tickets are given back by guards, and deleting a
//! destroyed session runs in its own task, so that the manager is asked
//! exactly once and the registry learns that it finished.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::FutureExt;
use webwire_proto::{ErrorCode, ErrorReply, Payload, Reply, RequestId, ServerMessage, Session};

use super::registry::{Leave, LocalRegistry, Refused, SessionRegistry, SessionSlot, Ticket};
use super::{redacted, ErasedSessionManager, SessionInfo, SessionKeyGenerator, SessionStoreError};
use crate::error::SessionError;
use crate::handler::SessionHooks;
use crate::ledger::ErasedLedger;
use crate::metrics::{time_store, ServerMetrics};
use crate::outbox::Outbound;
use crate::stream::hub::Streams;
use crate::stream::StreamKey;
use crate::Connection;

/// The `outcome` label of a restore request's reply.
fn restore_outcome(reply: &ServerMessage) -> &'static str {
    match reply {
        ServerMessage::Reply(_) => "ok",
        ServerMessage::SessionNotFound(_) => "not_found",
        ServerMessage::SessionsDisabled(_) => "disabled",
        ServerMessage::MaxSessConnsReached(_) => "max_connections",
        ServerMessage::Error(_) => "already_active",
        ServerMessage::Shutdown(_) => "shutdown",
        _ => "internal_error",
    }
}

/// The error code of a restore on a connection that has a session.
pub(crate) const SESSION_ACTIVE: &str = "SESSION_ACTIVE";

/// The longest session key a client may restore, in bytes.
const MAX_KEY_LEN: usize = 255;

/// Whether `key` may be a session key: 1 to 255 bytes of printable ASCII.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.iter().all(|b| (32..=126).contains(b))
}

/// The sessions of one server: options, storage, registry.
pub(crate) struct Sessions {
    enabled: bool,
    manager: Arc<dyn ErasedSessionManager>,
    keys: Arc<dyn SessionKeyGenerator>,
    registry: Arc<dyn SessionRegistry>,
    /// The application's session hooks.
    hooks: Option<Arc<dyn SessionHooks>>,
    /// The stores of new sessions still running: a deletion waits for them.
    saves: Arc<Saves>,
    /// The request ledger, told when a session is destroyed (2.1).
    ledger: Option<Arc<dyn ErasedLedger>>,
    /// The server's metric handles (see [`Sessions::metrics`]).
    metrics: Arc<ServerMetrics>,
    /// The streams: the session streams and the sessions' history rooms.
    streams: Arc<Streams>,
}

/// What a client's session request did, for the application's hook
/// (called once the reply is queued).
pub(crate) enum SessionEvent {
    /// The session was restored on the connection.
    Restored(Arc<Session>),
    /// The connection left the session with this key.
    Closed(String),
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("enabled", &self.enabled)
            .field("manager", &self.manager)
            .field("keys", &self.keys)
            .field("registry", &self.registry)
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
}

impl Sessions {
    pub(crate) fn new(
        enabled: bool,
        max_connections: usize,
        manager: Arc<dyn ErasedSessionManager>,
        keys: Arc<dyn SessionKeyGenerator>,
        cluster: Option<Arc<dyn crate::cluster::ErasedCluster>>,
        ledger: Option<Arc<dyn ErasedLedger>>,
        streams: Arc<Streams>,
    ) -> Self {
        let saves = Arc::<Saves>::default();
        let registry: Arc<dyn SessionRegistry> = match cluster {
            Some(cluster) => Arc::new(super::clustered::ClusteredRegistry::new(
                max_connections,
                cluster,
                Deleter {
                    manager: manager.clone(),
                    saves: saves.clone(),
                    ledger: ledger.clone(),
                    streams: streams.clone(),
                },
            )),
            None => Arc::new(LocalRegistry::new(max_connections)),
        };
        Self {
            enabled,
            manager,
            keys,
            registry,
            hooks: None,
            saves,
            ledger,
            metrics: Arc::new(ServerMetrics::new()),
            streams,
        }
    }

    /// The streams: the session streams and the sessions' history rooms.
    #[inline]
    pub(crate) fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    /// The application's session hooks.
    pub(crate) fn with_hooks(mut self, hooks: Arc<dyn SessionHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Calls the application's hook for `event` on `conn`; a panic is logged.
    pub(crate) async fn notify(&self, conn: &Connection, event: &SessionEvent) {
        let Some(hooks) = &self.hooks else {
            return;
        };
        let hook = match event {
            SessionEvent::Restored(session) => hooks.restored(conn, session),
            SessionEvent::Closed(key) => hooks.closed(conn, key),
        };
        if AssertUnwindSafe(hook).catch_unwind().await.is_err() {
            tracing::error!(connection = %conn.id(), "session hook panicked");
        }
    }

    /// The server's metric handles. Kept here because every connection
    /// holds the sessions already (no field more per connection).
    #[inline]
    pub(crate) fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// Whether sessions are enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn registry(&self) -> &dyn SessionRegistry {
        &*self.registry
    }

    /// Creates a session on `conn` (docs/protocol.md 8.3).
    pub(crate) async fn create(
        &self,
        conn: &Connection,
        info: Option<SessionInfo>,
    ) -> Result<Session, SessionError> {
        if !self.enabled {
            return Err(SessionError::Disabled);
        }
        precheck(conn)?;
        // Room for the notification first: from the claim to the queued
        // notification nothing waits.
        let Ok(tx) = conn.sender() else {
            return Err(SessionError::ConnectionClosed);
        };
        let permit = match tokio::time::timeout(conn.inner.queue_timeout(), tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(SessionError::ConnectionClosed),
            Err(_) => return Err(SessionError::QueueFull),
        };
        let claim = Claim::new(conn)?;
        let key = self.keys.generate();
        if !is_valid_key(key.as_bytes()) {
            return Err(SessionError::InvalidKey);
        }
        let session = Arc::new(Session::new(key, SystemTime::now(), info));
        let json = session.to_json()?;
        let notification = ServerMessage::SessionCreated(Bytes::from(json));
        let (len, max) = (notification.encoded_len(), conn.inner.buffer_size());
        if len > max {
            return Err(SessionError::TooLarge { len, max });
        }
        // Marked as being stored before anyone can see it, so that every
        // deletion of this session finds the mark and waits (see `destroy`).
        let Some(saving) = Saves::begin(&self.saves, &session.key) else {
            return Err(SessionError::KeyInUse);
        };
        // The session stream is new: its first signal on this connection
        // is offset 1 (set before the connection can be reached as the
        // session's).
        let session_stream = StreamKey::session(session.key.clone());
        self.streams.expect_first(conn, &session_stream, None, 1);
        if let Err(refused) = self.registry.create(conn, session.clone()).await {
            conn.inner.stream_state().left_session(&session_stream);
            return Err(match refused {
                Refused::KeyInUse => SessionError::KeyInUse,
                _ => SessionError::ConnectionClosed,
            });
        }
        claim.settle();
        self.count_sessions();
        conn.inner.record_session(&session.key);
        // History rooms the connection joined before it had a session
        // become the session's.
        for room in conn.rooms() {
            if self.streams.room_history(&room).is_some() {
                conn.joined_history_room(&room);
            }
        }
        permit.send(Outbound::Message(Box::new(notification)));
        tracing::debug!(connection = %conn.id(), session = %redacted(&session.key), "session created");
        // In a task of its own, like a deletion: the store runs to its end
        // (and only then lets a deletion of the session go ahead) even if
        // the caller stops waiting.
        let manager = self.manager.clone();
        let stored = tokio::spawn({
            let session = session.clone();
            async move {
                let result = time_store("create", manager.on_session_created(&session)).await;
                drop(saving);
                result
            }
        })
        .await;
        let failure = match stored {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(chain(&err)),
            Err(err) if err.is_panic() => Some("the session manager panicked".to_owned()),
            Err(err) => Some(chain(&err)),
        };
        if let Some(error) = failure {
            tracing::error!(
                connection = %conn.id(),
                session = %redacted(&session.key),
                error,
                "the session manager failed to store a new session; it stays active but cannot be restored",
            );
        }
        if let Some(hooks) = &self.hooks
            && AssertUnwindSafe(hooks.created(conn, &session))
                .catch_unwind()
                .await
                .is_err()
        {
            tracing::error!(connection = %conn.id(), "session hook panicked");
        }
        Ok(Session::clone(&session))
    }

    /// Answers a client's restore request (docs/protocol.md 8.4), with
    /// the event for the application when it succeeded.
    pub(crate) async fn restore(
        &self,
        conn: &Connection,
        id: RequestId,
        key: Bytes,
    ) -> (ServerMessage, Option<SessionEvent>) {
        let (reply, event) = match self.restore_reply(conn, id, key).await {
            Ok((reply, session)) => (reply, Some(SessionEvent::Restored(session))),
            Err(reply) => (reply, None),
        };
        self.metrics.restore(restore_outcome(&reply));
        if event.is_some() {
            self.count_sessions();
        }
        (reply, event)
    }

    /// The reply to a restore request: the session's, or a refusal.
    async fn restore_reply(
        &self,
        conn: &Connection,
        id: RequestId,
        key: Bytes,
    ) -> Result<(ServerMessage, Arc<Session>), ServerMessage> {
        if !self.enabled {
            return Err(ServerMessage::SessionsDisabled(id));
        }
        if !is_valid_key(&key) {
            return Err(ServerMessage::SessionNotFound(id));
        }
        let key = String::from_utf8_lossy(&key).into_owned();
        let claim = match Claim::new(conn) {
            Ok(claim) => claim,
            Err(SessionError::AlreadyActive) => {
                return Err(ServerMessage::Error(ErrorReply::new(
                    id,
                    ErrorCode::from_static(SESSION_ACTIVE),
                    "the connection already has a session",
                )))
            }
            Err(_) => return Err(ServerMessage::Shutdown(id)),
        };
        let mut ticket = match self.registry.begin_restore(&key).await {
            Ok(ticket) => TicketGuard {
                registry: &*self.registry,
                ticket,
                used: false,
            },
            Err(refused) => return Err(refusal(id, refused)),
        };
        let lookup = time_store(
            "lookup",
            AssertUnwindSafe(self.manager.on_session_lookup(&key)).catch_unwind(),
        )
        .await;
        let found = match lookup {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return Err(ServerMessage::SessionNotFound(id)),
            Ok(Err(err)) => {
                tracing::error!(connection = %conn.id(), session = %redacted(&key), error = %chain(&err), "session lookup failed");
                return Err(ServerMessage::InternalError(id));
            }
            Err(_) => {
                tracing::error!(connection = %conn.id(), session = %redacted(&key), "the session manager panicked in a lookup");
                return Err(ServerMessage::InternalError(id));
            }
        };
        let session = Arc::new(found.into_session(key));
        let json = match session.to_json() {
            Ok(json) => json,
            Err(err) => {
                tracing::error!(connection = %conn.id(), session = %redacted(&session.key), error = %chain(&err), "the restored session cannot be encoded");
                return Err(ServerMessage::InternalError(id));
            }
        };
        let reply = ServerMessage::Reply(Reply::new(id, Payload::utf8(json)));
        let (len, max) = (reply.encoded_len(), conn.inner.buffer_size());
        if len > max {
            tracing::error!(connection = %conn.id(), session = %redacted(&session.key), len, max, "the restored session exceeds the message buffer size");
            return Err(ServerMessage::InternalError(id));
        }
        ticket.used = true;
        // With streams granted, the session's streams wait for the
        // client's StreamResume (docs/protocol.md 14.3.2, the hold): from
        // before the connection can be reached as the session's.
        let hold = conn.streams_granted();
        if hold {
            conn.inner.stream_state().begin_hold();
        }
        let outcome = self
            .registry
            .join(&ticket.ticket, conn, session.clone())
            .await;
        match outcome {
            Ok(()) => {
                claim.settle();
                conn.inner.record_session(&session.key);
                // Back into the session's history rooms (held as above),
                // as every node knows them when the store keeps them.
                self.streams.load_memberships(&session.key).await;
                self.streams.rejoin(conn, &session.key);
                tracing::debug!(connection = %conn.id(), session = %redacted(&session.key), "session restored");
                Ok((reply, session))
            }
            Err(refused) => {
                if hold {
                    conn.inner.stream_state().end_hold();
                }
                Err(refusal(id, refused))
            }
        }
    }

    /// Closes the session of `conn` (docs/protocol.md 8.5, "Close on one
    /// connection") for [`Connection::close_session`]: the client is told,
    /// then the application's hook is called. Returns whether it had one.
    pub(crate) async fn close_by_server(&self, conn: &Connection) -> Result<bool, SessionError> {
        let (event, result) = self.close(conn, true).await;
        if let Some(event) = &event {
            self.notify(conn, event).await;
        }
        result.map(|()| event.is_some())
    }

    /// Closes the session of `conn` (docs/protocol.md 8.5, "Close on one
    /// connection"); `notify` for a server-side close. Returns the event
    /// for the application if it had one (the session has left it even
    /// when the result is an error).
    pub(crate) async fn close(
        &self,
        conn: &Connection,
        notify: bool,
    ) -> (Option<SessionEvent>, Result<(), SessionError>) {
        let Some(left) = self.registry.leave(conn, Leave::Close).await else {
            return (None, Ok(()));
        };
        self.count_sessions();
        self.streams.left_session(conn, &left.key);
        tracing::debug!(connection = %conn.id(), session = %redacted(&left.key), destroy = left.destroy, "session closed on a connection");
        let notified = if notify {
            send_closed(conn).await
        } else {
            Ok(())
        };
        let result = match left.destroy {
            true => match self.destroy(left.key.clone()).await {
                Ok(()) => notified,
                Err(err) => Err(SessionError::Store(err)),
            },
            false => notified,
        };
        (Some(SessionEvent::Closed(left.key)), result)
    }

    /// Closes the session `key` on every connection and destroys it.
    pub(crate) async fn close_everywhere(&self, key: &str) -> ClosedSession {
        if !self.enabled || !is_valid_key(key.as_bytes()) {
            return ClosedSession::default();
        }
        let Some(connections) = self.registry.close_everywhere(key).await else {
            return ClosedSession::default();
        };
        self.count_sessions();
        tracing::debug!(
            session = %redacted(key),
            connections = connections.len(),
            "closing a session everywhere"
        );
        for conn in &connections {
            self.streams.left_session(conn, key);
        }
        let sent = futures_util::future::join_all(connections.iter().map(send_closed)).await;
        let errors = connections
            .iter()
            .zip(sent)
            .filter_map(|(conn, sent)| sent.err().map(|err| (conn.clone(), err)))
            .collect();
        let store_error = self.destroy(key.to_owned()).await.err();
        let event = SessionEvent::Closed(key.to_owned());
        for conn in &connections {
            self.notify(conn, &event).await;
        }
        ClosedSession {
            connections,
            errors,
            store_error,
            destroyed: true,
            remote: None,
        }
    }

    /// The connection ended: it leaves its session, which stays stored.
    pub(crate) async fn disconnected(&self, conn: &Connection) {
        if let Some(left) = self.registry.leave(conn, Leave::Disconnect).await {
            self.count_sessions();
            tracing::debug!(connection = %conn.id(), session = %redacted(&left.key), "a connection left its session");
        }
    }

    /// Sets the sessions gauge after a session joined or left a connection
    /// here (the registry counts them; a session event is rare next to
    /// messages).
    fn count_sessions(&self) {
        self.metrics
            .sessions_active
            .set(self.registry.active_sessions() as f64);
    }

    /// Deletes a destroyed session from the store, in a task of its own so
    /// that it finishes (and the registry hears of it) even if the caller
    /// stops waiting.
    async fn destroy(&self, key: String) -> Result<(), SessionStoreError> {
        let deleter = Deleter {
            manager: self.manager.clone(),
            saves: self.saves.clone(),
            ledger: self.ledger.clone(),
            streams: self.streams.clone(),
        };
        let registry = self.registry.clone();
        let task = tokio::spawn(async move {
            let result = deleter.delete(&key).await;
            registry.destroyed(&key);
            result
        });
        task.await.unwrap_or_else(|err| {
            Err(SessionStoreError::new(
                "the session deletion task failed",
                err,
            ))
        })
    }
}

/// What deletes a destroyed session from the store: the session manager,
/// after any store of the same session still running. The clustered
/// registry keeps one to destroy a session whose close it decides later.
#[derive(Clone)]
pub(crate) struct Deleter {
    manager: Arc<dyn ErasedSessionManager>,
    saves: Arc<Saves>,
    /// Told that the session was closed, so that its keyed requests stay
    /// answerable for the ledger's age bound only (2.1).
    ledger: Option<Arc<dyn ErasedLedger>>,
    /// The session's memberships and session stream go with it.
    streams: Arc<Streams>,
}

impl Deleter {
    /// A deleter of its own (no store of a new session waits), for unit tests.
    #[cfg(test)]
    pub(crate) fn new(manager: Arc<dyn ErasedSessionManager>) -> Self {
        Self {
            manager,
            saves: Arc::default(),
            ledger: None,
            streams: Arc::default(),
        }
    }

    /// Deletes `key` from the store; a failure is logged (without the key).
    pub(crate) async fn delete(&self, key: &str) -> Result<(), SessionStoreError> {
        // A store of this session still running would write it back
        // after the delete: the delete comes after it.
        self.saves.finished(key).await;
        let deleted = time_store(
            "delete",
            AssertUnwindSafe(self.manager.on_session_closed(key)).catch_unwind(),
        )
        .await;
        let result = deleted.unwrap_or_else(|_| {
            Err(SessionStoreError::msg(
                "the session manager panicked while deleting a session",
            ))
        });
        if let Err(err) = &result {
            tracing::error!(session = %redacted(key), error = %chain(err), "the session manager failed to delete a closed session");
        }
        if let Some(ledger) = &self.ledger
            && let Err(err) = ledger.session_closed(key).await
        {
            // Its scopes are then removed by the ledger's idle timeout
            // instead of its age bound: later, never sooner.
            tracing::warn!(session = %redacted(key), error = %chain(&err), "the request ledger was not told of a closed session");
        }
        self.streams.session_destroyed(key).await;
        result
    }
}

/// The stores of new sessions still running, by key.
///
/// A create marks its key before the session is registered (so before
/// anyone can close it) and holds the mark's lock until the manager's
/// `on_session_created` has returned; a deletion takes that lock first. So
/// a session's delete always reaches the manager after its store, whatever
/// the interleaving, for every [`SessionManager`].
#[derive(Debug, Default)]
struct Saves(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// The mark of one store in progress: dropping it lets deletions go ahead.
struct Saving {
    saves: Arc<Saves>,
    key: String,
    gate: Arc<tokio::sync::Mutex<()>>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Saves {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `key` as being stored; `None` if it already is (a key in use).
    fn begin(saves: &Arc<Self>, key: &str) -> Option<Saving> {
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let held = gate.clone().try_lock_owned().ok()?;
        match saves.map().entry(key.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => return None,
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(gate.clone()),
        };
        Some(Saving {
            saves: saves.clone(),
            key: key.to_owned(),
            gate,
            _held: held,
        })
    }

    /// Waits until no store of `key` is running.
    async fn finished(&self, key: &str) {
        let gate = self.map().get(key).cloned();
        if let Some(gate) = gate {
            drop(gate.lock().await);
        }
    }
}

impl Drop for Saving {
    fn drop(&mut self) {
        let mut map = self.saves.map();
        if map
            .get(&self.key)
            .is_some_and(|gate| Arc::ptr_eq(gate, &self.gate))
        {
            map.remove(&self.key);
        }
    }
}

/// Fails early, without waiting for queue room, when `conn` cannot get a session.
fn precheck(conn: &Connection) -> Result<(), SessionError> {
    match &*conn.session_slot() {
        SessionSlot::Active(_) | SessionSlot::Busy => Err(SessionError::AlreadyActive),
        SessionSlot::Ended(_) => Err(SessionError::ConnectionClosed),
        SessionSlot::Empty if !conn.is_active() => Err(SessionError::ConnectionClosed),
        SessionSlot::Empty => Ok(()),
    }
}

/// The reply to a restore the registry refused.
fn refusal(id: RequestId, refused: Refused) -> ServerMessage {
    match refused {
        Refused::Full => ServerMessage::MaxSessConnsReached(id),
        Refused::Gone | Refused::KeyInUse => ServerMessage::SessionNotFound(id),
        Refused::Closed => ServerMessage::Shutdown(id),
        Refused::Unavailable => ServerMessage::InternalError(id),
    }
}

/// Tells a client its session was closed; a connection that is gone needs
/// no telling.
async fn send_closed(conn: &Connection) -> Result<(), SessionError> {
    if conn.inner.lifecycle().is_closed() {
        return Ok(());
    }
    let message = Outbound::Message(Box::new(ServerMessage::SessionClosed));
    let Ok(tx) = conn.sender() else {
        return Ok(());
    };
    match tokio::time::timeout(conn.inner.queue_timeout(), tx.send(message)).await {
        Ok(_) => Ok(()),
        Err(_) => Err(SessionError::QueueFull),
    }
}

/// An error with its sources, for the log.
pub(crate) fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// A connection's slot made [`SessionSlot::Busy`] for one create or restore; made
/// empty again when dropped, unless [settled](Self::settle) (the registry
/// made it active) or the connection ended meanwhile.
struct Claim<'a> {
    conn: &'a Connection,
    settled: bool,
}

impl<'a> Claim<'a> {
    fn new(conn: &'a Connection) -> Result<Self, SessionError> {
        let mut slot = conn.session_slot();
        match &*slot {
            SessionSlot::Active(_) | SessionSlot::Busy => Err(SessionError::AlreadyActive),
            SessionSlot::Ended(_) => Err(SessionError::ConnectionClosed),
            SessionSlot::Empty if !conn.is_active() => Err(SessionError::ConnectionClosed),
            SessionSlot::Empty => {
                *slot = SessionSlot::Busy;
                Ok(Self {
                    conn,
                    settled: false,
                })
            }
        }
    }

    /// The registry took the slot over.
    fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut slot = self.conn.session_slot();
        if matches!(*slot, SessionSlot::Busy) {
            *slot = SessionSlot::Empty;
        }
    }
}

/// A restore ticket, given back to the registry when dropped unused.
struct TicketGuard<'a> {
    registry: &'a dyn SessionRegistry,
    ticket: Ticket,
    used: bool,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.registry.abandon(&self.ticket);
        }
    }
}

/// What [`Server::close_session`](crate::Server::close_session) did: the
/// connections whose session it closed, the clients it could not tell, and
/// whether the session manager deleted the session.
///
/// ```
/// # async fn f(server: webwire_server::Server, key: &str) {
/// let closed = server.close_session(key).await;
/// println!("closed on {} connections", closed.connections().len());
/// for (conn, err) in closed.errors() {
///     eprintln!("connection {} was not told: {err}", conn.id());
/// }
/// if let Some(err) = closed.store_error() {
///     eprintln!("the session was not deleted: {err}");
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ClosedSession {
    connections: Vec<Connection>,
    errors: Vec<(Connection, SessionError)>,
    store_error: Option<SessionStoreError>,
    destroyed: bool,
    /// What the other nodes of a cluster answered.
    pub(crate) remote: Option<crate::cluster::ClusterReply>,
}

impl ClosedSession {
    /// The connections that held the session: each has none now.
    ///
    /// ```
    /// assert!(webwire_server::session::ClosedSession::default().connections().is_empty());
    /// ```
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// The connections whose client could not be told
    /// (NotifySessionClosed), with why. The session is closed on them
    /// anyway.
    ///
    /// ```
    /// assert!(webwire_server::session::ClosedSession::default().errors().is_empty());
    /// ```
    pub fn errors(&self) -> &[(Connection, SessionError)] {
        &self.errors
    }

    /// Why the session manager failed to delete the session, if it did.
    ///
    /// ```
    /// assert!(webwire_server::session::ClosedSession::default().store_error().is_none());
    /// ```
    pub fn store_error(&self) -> Option<&SessionStoreError> {
        self.store_error.as_ref()
    }

    /// Whether this call destroyed the session (asked the session manager
    /// to delete it): false when sessions are disabled, the key cannot be
    /// a session key, or another close is destroying it already.
    ///
    /// ```
    /// assert!(!webwire_server::session::ClosedSession::default().destroyed());
    /// ```
    pub fn destroyed(&self) -> bool {
        self.destroyed
    }

    /// What the other nodes of the cluster answered (`None` without a
    /// cluster): how many of their connections held the session, and
    /// which nodes did not answer.
    ///
    /// ```
    /// assert!(webwire_server::session::ClosedSession::default().remote().is_none());
    /// ```
    pub fn remote(&self) -> Option<&crate::cluster::ClusterReply> {
        self.remote.as_ref()
    }

    /// The connections that held the session on every node: this
    /// server's [`connections`](Self::connections) and those the other
    /// nodes reported.
    ///
    /// ```
    /// assert_eq!(webwire_server::session::ClosedSession::default().affected(), 0);
    /// ```
    pub fn affected(&self) -> usize {
        self.connections.len() + self.remote.as_ref().map_or(0, |remote| remote.affected)
    }

    /// Whether every client was told, the session was deleted (or there
    /// was nothing to do), and every other node answered.
    ///
    /// ```
    /// assert!(webwire_server::session::ClosedSession::default().is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
            && self.store_error.is_none()
            && self
                .remote
                .as_ref()
                .is_none_or(crate::cluster::ClusterReply::is_complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_judged_before_any_lookup() {
        assert!(is_valid_key(b"a"));
        assert!(is_valid_key(b"../x"));
        assert!(is_valid_key(&[b'k'; 255]));
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(&[b'k'; 256]));
        assert!(!is_valid_key(b"tab\t"));
        assert!(!is_valid_key(b"del\x7f"));
        assert!(!is_valid_key("é".as_bytes()));
    }
}
