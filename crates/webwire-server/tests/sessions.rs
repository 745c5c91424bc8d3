//! Sessions end to end (docs/protocol.md 8), over real WebSocket connections on
//! 127.0.0.1: create and notify, restore on another connection, the limit of
//! connections per session, close on one connection and everywhere,
//! disconnect, sessions disabled, the file manager across a server restart,
//! concurrent restores and closes, and bad input (hostile keys, corrupt
//! session files, a failing store, protocol violations).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{eventually, reply_text, within, TestClient, TestServer};
use serde_json::json;
use tokio::sync::mpsc;
use webwire_proto::{ClientMessage, Encoding, Payload, ServerMessage};
use webwire_server::{
    error::SessionError,
    options::Concurrency,
    session::{
        FileSessionManager, MemorySessionManager, Session, SessionKeyGenerator, SessionLookup,
        SessionManager, SessionStoreError,
    },
    Connection, MessageRouter, ReplyError, Server, ServerBuilder,
};

// ---------------------------------------------------------------------------
// Fixture

/// A session store in memory that counts what the server asks of it.
#[derive(Debug, Default)]
struct Store {
    sessions: Mutex<HashMap<String, Session>>,
    created: AtomicUsize,
    lookups: AtomicUsize,
    closed: AtomicUsize,
    /// Keys of stored sessions that `on_session_closed` deleted, in order.
    deleted: Mutex<Vec<String>>,
    fail_create: AtomicBool,
    fail_close: AtomicBool,
    /// How long a lookup takes after reading, and a delete before deleting
    /// (the window in which a lookup races a destroy), in milliseconds.
    io_millis: AtomicU64,
}

impl Store {
    fn contains(&self, key: &str) -> bool {
        self.sessions.lock().unwrap().contains_key(key)
    }

    async fn io(&self) {
        match self.io_millis.load(Ordering::SeqCst) {
            0 => tokio::task::yield_now().await,
            ms => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }

    fn deletions(&self, key: &str) -> usize {
        self.deleted
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == key)
            .count()
    }
}

fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

impl SessionManager for Store {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(SessionStoreError::new(
                "storing the session",
                std::io::Error::other("disk full"),
            ));
        }
        self.sessions
            .lock()
            .unwrap()
            .insert(session.key.clone(), session.clone());
        Ok(())
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.sessions.lock().unwrap().get_mut(key).map(|session| {
            session.last_lookup = SystemTime::now();
            SessionLookup::from(session.clone())
        });
        // Found, but not answered yet: a destroy may come in between.
        self.io().await;
        Ok(found)
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.closed.fetch_add(1, Ordering::SeqCst);
        self.io().await;
        if self.fail_close.load(Ordering::SeqCst) {
            return Err(SessionStoreError::msg("the store is read-only"));
        }
        if self.sessions.lock().unwrap().remove(key).is_some() {
            self.deleted.lock().unwrap().push(key.to_owned());
        }
        Ok(())
    }
}

/// A [`Store`] whose stores wait for the test's word, so that a session
/// can be closed while it is still being stored.
#[derive(Debug, Default)]
struct HeldStore {
    store: Store,
    /// A store started and waits for `release`.
    saving: tokio::sync::Notify,
    release: tokio::sync::Notify,
    /// `on_session_closed` was called.
    deleting: tokio::sync::Notify,
}

impl SessionManager for HeldStore {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.saving.notify_one();
        self.release.notified().await;
        self.store.on_session_created(session).await
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        self.store.on_session_lookup(key).await
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.deleting.notify_one();
        self.store.on_session_closed(key).await
    }
}

impl HeldStore {
    /// Lets the held store go on once the delete has reached the store,
    /// or after a second without it. The server under test must not let
    /// the delete through before the release, so on it this always waits
    /// the second; a server that lets it through shows the fault for sure.
    async fn release_after_the_delete_or_a_second(&self) -> bool {
        let early = tokio::time::timeout(Duration::from_secs(1), self.deleting.notified())
            .await
            .is_ok();
        self.release.notify_one();
        early
    }
}

/// A [`FileSessionManager`] that counts lookups.
#[derive(Debug)]
struct CountingFiles {
    files: FileSessionManager,
    lookups: AtomicUsize,
}

impl CountingFiles {
    fn new(dir: &Path) -> Self {
        Self {
            files: FileSessionManager::new(dir),
            lookups: AtomicUsize::new(0),
        }
    }
}

impl SessionManager for CountingFiles {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.files.on_session_created(session).await
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.files.on_session_lookup(key).await
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.files.on_session_closed(key).await
    }
}

fn failed(code: &'static str, err: impl std::fmt::Display) -> ReplyError {
    ReplyError::from_static(code, err.to_string())
}

/// `login` creates a session with info `{"user": payload}` and answers its
/// key; `logout` closes the session on this connection (server side) and
/// answers whether there was one; `whoami` answers the user, or
/// `anonymous`.
fn router() -> MessageRouter {
    MessageRouter::new()
        .request("login", |conn: Connection, user: String| async move {
            let info = json!({ "user": user }).as_object().cloned();
            match conn.create_session(info).await {
                Ok(session) => Ok(session.key),
                Err(err) => Err(failed("CREATE_FAILED", err)),
            }
        })
        .request("logout", |conn: Connection, _: Payload| async move {
            match conn.close_session().await {
                Ok(had) => Ok(had.to_string()),
                Err(err) => Err(failed("CLOSE_FAILED", err)),
            }
        })
        .request("whoami", |conn: Connection, _: Payload| async move {
            let user: Option<String> = conn
                .session_info("user")
                .map_err(|err| failed("BAD_INFO", err))?;
            Ok::<_, ReplyError>(user.unwrap_or_else(|| "anonymous".into()))
        })
}

async fn whoami(client: &mut TestClient) -> String {
    reply_text(&client.request("whoami", Payload::utf8("")).await)
}

/// Logs in as `user`; checks the notification that came before the reply.
async fn login(client: &mut TestClient, user: &str) -> Session {
    let reply = client.request("login", Payload::utf8(user)).await;
    let key = reply_text(&reply);
    let pending = client.take_pending();
    let [ServerMessage::SessionCreated(json)] = pending.as_slice() else {
        panic!("expected one NotifySessionCreated before the reply, got {pending:?}");
    };
    let session = Session::from_json(json).expect("session JSON");
    assert_eq!(session.key, key);
    session
}

async fn restore(client: &mut TestClient, key: impl Into<Bytes>) -> ServerMessage {
    let id = client.next_id();
    client
        .send(ClientMessage::RestoreSession {
            id,
            key: key.into(),
        })
        .await;
    client.reply_to(id).await
}

async fn close(client: &mut TestClient) -> ServerMessage {
    let id = client.next_id();
    client.send(ClientMessage::CloseSession(id)).await;
    client.reply_to(id).await
}

/// The session a restore answered with (a UTF-8 reply).
fn restored(message: &ServerMessage) -> Session {
    match message {
        ServerMessage::Reply(reply) => {
            assert_eq!(reply.payload.encoding(), Encoding::Utf8);
            Session::from_json(reply.payload.as_bytes()).expect("session JSON")
        }
        other => panic!("expected the session, got {other:?}"),
    }
}

fn assert_empty_reply(message: &ServerMessage) {
    match message {
        ServerMessage::Reply(reply) => {
            assert_eq!(reply.payload.encoding(), Encoding::Binary);
            assert!(reply.payload.as_bytes().is_empty());
        }
        other => panic!("expected an empty binary reply, got {other:?}"),
    }
}

fn error_code(message: &ServerMessage) -> (String, String) {
    match message {
        ServerMessage::Error(err) => (err.code.to_string(), err.message_text().into_owned()),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Collects what the server logs on this thread (tests on the
/// current-thread runtime run the server on the test's thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        Self::capture_from(tracing::Level::WARN)
    }

    fn capture_from(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server builder whose connections do not wait long for the close
/// frames of idle test clients when the server stops.
fn builder(router: MessageRouter) -> ServerBuilder<MessageRouter> {
    Server::builder(router).close_timeout(Duration::from_millis(100))
}

async fn start_with(store: &Arc<Store>, router: MessageRouter) -> TestServer {
    TestServer::start(builder(router).session_manager(store.clone())).await
}

// ---------------------------------------------------------------------------
// Create, restore, limit, close, disconnect

#[tokio::test]
async fn create_notifies_the_client_and_registers_the_session() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut client = server.connect().await;
    assert_eq!(whoami(&mut client).await, "anonymous");
    assert_eq!(server.server.active_session_count(), 0);

    let session = login(&mut client, "alice").await;
    assert_eq!(session.key.len(), 64, "the default generator's keys");
    assert_eq!(session.creation, session.last_lookup);
    assert_eq!(
        session.info_field::<String>("user").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(whoami(&mut client).await, "alice");

    assert_eq!(server.server.active_session_count(), 1);
    assert_eq!(server.server.session_connection_count(&session.key), 1);
    let holders = server.server.session_connections(&session.key);
    let [conn] = holders.as_slice() else {
        panic!("one connection holds the session");
    };
    assert!(conn.has_session());
    assert_eq!(conn.session_key().as_deref(), Some(session.key.as_str()));
    assert_eq!(conn.session_creation(), Some(session.creation));
    assert_eq!(conn.session(), Some(session.clone()), "the same as sent");
    assert!(conn.session_info::<u64>("user").is_err(), "typed access");
    assert_eq!(conn.session_info::<String>("missing").unwrap(), None);
    assert!(store.contains(&session.key));
    assert_eq!(count(&store.created), 1);

    // A second session on the same connection is refused, without a notification.
    let reply = client.request("login", Payload::utf8("bob")).await;
    let (code, message) = error_code(&reply);
    assert_eq!(code, "CREATE_FAILED");
    assert!(message.contains("already has a session"), "{message}");
    assert!(client.take_pending().is_empty());
    assert_eq!(whoami(&mut client).await, "alice");
    assert_eq!(count(&store.created), 1);
    server.stop().await;
}

#[tokio::test]
async fn restore_on_another_connection_joins_the_session() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;

    let mut b = server.connect().await;
    let got = restored(&restore(&mut b, session.key.clone()).await);
    assert_eq!(got.key, session.key);
    assert_eq!(got.creation, session.creation);
    assert_eq!(got.info, session.info);
    assert!(got.last_lookup >= session.last_lookup);
    assert_eq!(whoami(&mut b).await, "alice");
    assert_eq!(server.server.session_connection_count(&session.key), 2);
    assert_eq!(server.server.active_session_count(), 1);

    // An unknown key.
    let mut c = server.connect().await;
    let reply = restore(&mut c, "no-such-session").await;
    assert!(
        matches!(reply, ServerMessage::SessionNotFound(_)),
        "{reply:?}"
    );
    assert_eq!(whoami(&mut c).await, "anonymous");
    assert_eq!(count(&store.lookups), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_per_session_connection_limit_is_kept() {
    let store = Arc::new(Store::default());
    let server = TestServer::start(
        builder(router())
            .session_manager(store.clone())
            .max_session_connections(2),
    )
    .await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    let mut b = server.connect().await;
    restored(&restore(&mut b, session.key.clone()).await);

    let mut c = server.connect().await;
    let reply = restore(&mut c, session.key.clone()).await;
    assert!(
        matches!(reply, ServerMessage::MaxSessConnsReached(_)),
        "{reply:?}"
    );
    assert_eq!(count(&store.lookups), 1, "refused before the lookup");
    assert_eq!(whoami(&mut c).await, "anonymous");
    assert_eq!(server.server.session_connection_count(&session.key), 2);

    // One leaves: there is room again.
    b.close().await;
    let key = session.key.clone();
    let srv = server.server.clone();
    eventually("b left the session", || {
        srv.session_connection_count(&key) == 1
    })
    .await;
    restored(&restore(&mut c, session.key.clone()).await);
    assert_eq!(whoami(&mut c).await, "alice");
    server.stop().await;
}

#[tokio::test]
async fn close_on_one_connection_versus_everywhere() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    let key = session.key.clone();
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    restored(&restore(&mut b, key.clone()).await);
    restored(&restore(&mut c, key.clone()).await);
    assert_eq!(server.server.session_connection_count(&key), 3);

    // Server-side close on one connection: that client is told, the
    // session lives on in the others and in the store.
    assert_eq!(
        reply_text(&a.request("logout", Payload::utf8("")).await),
        "true"
    );
    assert_eq!(a.take_pending(), vec![ServerMessage::SessionClosed]);
    assert_eq!(whoami(&mut a).await, "anonymous");
    assert_eq!(
        reply_text(&a.request("logout", Payload::utf8("")).await),
        "false",
        "nothing to close"
    );
    assert!(a.take_pending().is_empty());
    assert_eq!(server.server.session_connection_count(&key), 2);
    assert!(store.contains(&key));
    assert_eq!(count(&store.closed), 0);
    for client in [&mut b, &mut c] {
        assert_eq!(whoami(client).await, "alice");
        assert!(client.take_pending().is_empty(), "not told");
    }

    // Everywhere: every remaining connection told, the store emptied once.
    // Exactly the connections that hold it now: b and c, not a.
    let mut expected: Vec<_> = server
        .server
        .connections()
        .into_iter()
        .filter(|conn| conn.has_session())
        .map(|conn| conn.id())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 2);
    let closed = within("close everywhere", server.server.close_session(&key)).await;
    assert!(closed.destroyed());
    assert!(closed.is_ok(), "{closed:?}");
    let mut affected: Vec<_> = closed.connections().iter().map(Connection::id).collect();
    affected.sort();
    assert_eq!(affected, expected);
    for client in [&mut b, &mut c] {
        assert_eq!(client.recv().await, ServerMessage::SessionClosed);
        assert_eq!(whoami(client).await, "anonymous");
    }
    // a had left already: a round trip on it shows that no notice came
    // (one would be ordered before the reply).
    assert_eq!(whoami(&mut a).await, "anonymous");
    assert!(a.take_pending().is_empty(), "a was told again");
    assert_eq!(count(&store.closed), 1);
    assert_eq!(store.deletions(&key), 1);
    assert!(!store.contains(&key));
    assert_eq!(server.server.active_session_count(), 0);
    assert_eq!(server.server.session_connection_count(&key), 0);

    // Gone for good.
    assert!(matches!(
        restore(&mut a, key.clone()).await,
        ServerMessage::SessionNotFound(_)
    ));
    // Closing it again touches no connection.
    let again = server.server.close_session(&key).await;
    assert!(again.connections().is_empty());
    assert_eq!(store.deletions(&key), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_client_close_request_is_confirmed_by_an_empty_reply() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let key = login(&mut a, "alice").await.key;
    let mut b = server.connect().await;
    restored(&restore(&mut b, key.clone()).await);

    // Not the last connection: the session stays.
    assert_empty_reply(&close(&mut b).await);
    assert!(b.take_pending().is_empty(), "no NotifySessionClosed");
    assert_eq!(whoami(&mut b).await, "anonymous");
    assert_eq!(whoami(&mut a).await, "alice");
    assert!(store.contains(&key));
    assert_eq!(count(&store.closed), 0);

    // The last connection: destroyed, deleted once.
    assert_empty_reply(&close(&mut a).await);
    assert!(a.take_pending().is_empty());
    assert_eq!(whoami(&mut a).await, "anonymous");
    assert_eq!(count(&store.closed), 1);
    assert_eq!(store.deletions(&key), 1);
    assert_eq!(server.server.active_session_count(), 0);

    // Without a session: an empty reply all the same, nothing deleted.
    assert_empty_reply(&close(&mut a).await);
    assert_eq!(count(&store.closed), 1);
    server.stop().await;
}

/// Logs in without waiting for the reply: returns the login's request id
/// and the key of the NotifySessionCreated that comes first.
async fn login_held(
    client: &mut TestClient,
    held: &HeldStore,
) -> (webwire_proto::RequestId, String) {
    let id = client.send_request("login", Payload::utf8("alice")).await;
    let ServerMessage::SessionCreated(json) = client.recv().await else {
        panic!("expected NotifySessionCreated");
    };
    within("the store to start", held.saving.notified()).await;
    (id, Session::from_json(&json).expect("session JSON").key)
}

#[tokio::test]
async fn a_close_while_the_session_is_being_stored_leaves_it_unrestorable() {
    // Login and logout back to back, with handlers running concurrently
    // (as in the interop server): the logout closes the session while the
    // store of the new session is still running.
    let held = Arc::new(HeldStore::default());
    let server = TestServer::start(
        builder(router())
            .concurrency(Concurrency::Unlimited)
            .session_manager(held.clone()),
    )
    .await;
    let mut a = server.connect().await;
    let (login_id, key) = login_held(&mut a, &held).await;
    let logout_id = a.send_request("logout", Payload::utf8("")).await;
    let early = held.release_after_the_delete_or_a_second().await;
    assert_eq!(reply_text(&a.reply_to(logout_id).await), "true");
    assert_eq!(reply_text(&a.reply_to(login_id).await), key);
    assert_eq!(a.take_pending(), vec![ServerMessage::SessionClosed]);

    assert!(
        !held.store.contains(&key),
        "the store holds a closed session"
    );
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, key.clone()).await,
        ServerMessage::SessionNotFound(_)
    ));
    assert_eq!(count(&held.store.closed), 1);
    assert!(
        !early,
        "the delete reached the store while it was storing the session"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_close_everywhere_while_the_session_is_being_stored_leaves_it_unrestorable() {
    let held = Arc::new(HeldStore::default());
    let server = TestServer::start(builder(router()).session_manager(held.clone())).await;
    let mut a = server.connect().await;
    let (login_id, key) = login_held(&mut a, &held).await;
    let close = tokio::spawn({
        let server = server.server.clone();
        let key = key.clone();
        async move { server.close_session(&key).await }
    });
    let early = held.release_after_the_delete_or_a_second().await;
    let closed = within("close everywhere", close).await.unwrap();
    assert!(closed.destroyed() && closed.is_ok(), "{closed:?}");
    assert_eq!(closed.connections().len(), 1);
    assert_eq!(reply_text(&a.reply_to(login_id).await), key);
    assert_eq!(a.recv().await, ServerMessage::SessionClosed);

    assert!(
        !held.store.contains(&key),
        "the store holds a closed session"
    );
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, key.clone()).await,
        ServerMessage::SessionNotFound(_)
    ));
    assert!(
        !early,
        "the delete reached the store while it was storing the session"
    );
    server.stop().await;
}

#[tokio::test]
async fn disconnect_keeps_the_session() {
    let store = Arc::new(Store::default());
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let router = router().on_disconnect(move |conn: Connection, _| {
        let ended_tx = ended_tx.clone();
        async move {
            let _ = ended_tx.send(conn);
        }
    });
    let server = start_with(&store, router).await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    a.close().await;

    let conn = within("the disconnect hook", ended.recv()).await.unwrap();
    // The ended connection left the session; the session is still stored.
    assert_eq!(server.server.session_connection_count(&session.key), 0);
    assert_eq!(server.server.active_session_count(), 0);
    assert!(store.contains(&session.key));
    assert_eq!(count(&store.closed), 0);
    // Its handle still tells which session it had, and can do nothing more.
    assert_eq!(conn.session_key().as_deref(), Some(session.key.as_str()));
    assert!(!conn.close_session().await.unwrap());
    assert!(matches!(
        conn.create_session(None).await,
        Err(SessionError::ConnectionClosed)
    ));
    assert!(store.contains(&session.key));

    let mut b = server.connect().await;
    let got = restored(&restore(&mut b, session.key.clone()).await);
    assert_eq!(got.info, session.info);
    assert_eq!(whoami(&mut b).await, "alice");
    server.stop().await;
}

#[tokio::test]
async fn sessions_disabled() {
    let store = Arc::new(Store::default());
    let server = TestServer::start(
        builder(router())
            .session_manager(store.clone())
            .sessions_enabled(false),
    )
    .await;
    let mut client = server.connect().await;
    let (code, message) = error_code(&client.request("login", Payload::utf8("alice")).await);
    assert_eq!(code, "CREATE_FAILED");
    assert!(message.contains("disabled"), "{message}");
    assert!(client.take_pending().is_empty());
    assert!(matches!(
        restore(&mut client, "some-key").await,
        ServerMessage::SessionsDisabled(_)
    ));
    assert!(matches!(
        close(&mut client).await,
        ServerMessage::SessionsDisabled(_)
    ));
    assert_eq!(
        reply_text(&client.request("logout", Payload::utf8("")).await),
        "false"
    );
    let closed = server.server.close_session("some-key").await;
    assert!(!closed.destroyed());
    assert_eq!(count(&store.lookups), 0);
    assert_eq!(count(&store.closed), 0);
    assert_eq!(count(&store.created), 0);
    server.stop().await;
}

#[tokio::test]
async fn the_file_manager_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sessions");
    let start = || {
        TestServer::start(
            builder(router()).session_manager(Arc::new(FileSessionManager::new(&folder))),
        )
    };

    let first = start().await;
    let mut client = first.connect().await;
    let session = login(&mut client, "alice").await;
    assert!(folder.join(&session.key).is_file());
    first.stop().await;
    assert!(
        folder.join(&session.key).is_file(),
        "shutdown keeps sessions"
    );

    let second = start().await;
    let mut client = second.connect().await;
    let got = restored(&restore(&mut client, session.key.clone()).await);
    assert_eq!(got.creation, session.creation);
    assert_eq!(got.info, session.info);
    assert!(got.last_lookup > session.last_lookup);
    assert_eq!(whoami(&mut client).await, "alice");

    assert_empty_reply(&close(&mut client).await);
    assert!(!folder.join(&session.key).exists(), "closed: deleted");
    second.stop().await;
}

// ---------------------------------------------------------------------------
// Concurrency

/// A client's view of its session, from what the server sent it, in order.
struct Racer {
    client: TestClient,
    holds: bool,
    /// NotifySessionClosed messages received so far.
    closed_notices: usize,
}

impl Racer {
    /// Sends `message` and reads until its answer, applying the session
    /// notifications that come before it.
    async fn call(
        &mut self,
        message: ClientMessage,
        id: webwire_proto::RequestId,
    ) -> ServerMessage {
        self.client.send(message).await;
        loop {
            let message = self.client.recv().await;
            match &message {
                ServerMessage::SessionClosed => {
                    self.holds = false;
                    self.closed_notices += 1;
                }
                ServerMessage::SessionCreated(_) => self.holds = true,
                _ if message.request_id() == Some(id) => return message,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn restore(&mut self, key: &str) {
        let id = self.client.next_id();
        let reply = self
            .call(
                ClientMessage::RestoreSession {
                    id,
                    key: Bytes::from(key.to_owned()),
                },
                id,
            )
            .await;
        match reply {
            ServerMessage::Reply(_) => {
                assert!(!self.holds, "restored while holding the session");
                self.holds = true;
            }
            ServerMessage::Error(err) => {
                assert_eq!(err.code, "SESSION_ACTIVE");
                assert!(self.holds);
            }
            ServerMessage::SessionNotFound(_) | ServerMessage::MaxSessConnsReached(_) => {}
            other => panic!("unexpected answer to a restore: {other:?}"),
        }
    }

    async fn close(&mut self) {
        let id = self.client.next_id();
        let reply = self.call(ClientMessage::CloseSession(id), id).await;
        assert_empty_reply(&reply);
        self.holds = false;
    }

    async fn logout(&mut self) {
        let id = self.client.next_id();
        let request = webwire_proto::Request::new(
            id,
            webwire_proto::Name::from_static("logout"),
            Payload::utf8(""),
        )
        .unwrap();
        let notices = self.closed_notices;
        let reply = self.call(ClientMessage::Request(request), id).await;
        match reply_text(&reply).as_str() {
            // It closed this connection's session: the NotifySessionClosed
            // came before the reply.
            "true" => assert!(
                self.closed_notices > notices,
                "a logout closed a session without telling the client first"
            ),
            // Nothing to close: the client knew it held none (or was told
            // meanwhile).
            "false" => assert!(
                !self.holds,
                "the client thinks it holds a session the server lost"
            ),
            other => panic!("unexpected logout reply {other:?}"),
        }
    }

    /// What the server thinks: whether this connection has the session.
    async fn server_view(&mut self) -> bool {
        let id = self.client.next_id();
        let request = webwire_proto::Request::new(
            id,
            webwire_proto::Name::from_static("whoami"),
            Payload::utf8(""),
        )
        .unwrap();
        let reply = self.call(ClientMessage::Request(request), id).await;
        reply_text(&reply) != "anonymous"
    }
}

/// Watches a session while racers use it, from a thread of its own: it
/// never has more than `max` connections, and once the store has deleted
/// it, no connection joins it again (a restore that looked it up before
/// the delete must be refused).
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(server: &Server, store: &Arc<Store>, key: &str, max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (server, store, key) = (server.clone(), store.clone(), key.to_owned());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut deleted = false;
            while !stopped.load(Ordering::SeqCst) {
                // The store first: a join after a delete seen here is a bug.
                deleted |= !store.contains(&key);
                let holders = server.session_connection_count(&key);
                assert!(holders <= max, "{holders} connections, at most {max}");
                assert!(
                    !deleted || holders == 0,
                    "{holders} connections joined a deleted session"
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// What happens besides the racers' restores and closes in one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The server closes the session everywhere.
    Everywhere,
    /// The connection that created it never closes it.
    OwnerKeeps,
    /// That connection closes it first thing.
    OwnerLeaves,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_restores_and_closes_stay_consistent() {
    const RACERS: usize = 8;
    const ROUNDS: usize = 8;
    const EPOCHS: usize = 9;
    const MAX: usize = 3;
    let store = Arc::new(Store::default());
    store.io_millis.store(2, Ordering::SeqCst);
    let server = TestServer::start(
        builder(router())
            .session_manager(store.clone())
            .max_session_connections(MAX),
    )
    .await;
    let mut racers = Vec::new();
    for _ in 0..RACERS {
        racers.push(Racer {
            client: server.connect().await,
            holds: false,
            closed_notices: 0,
        });
    }

    for epoch in 0..EPOCHS {
        let kind = [Kind::Everywhere, Kind::OwnerKeeps, Kind::OwnerLeaves][epoch % 3];
        let key = login(&mut racers[0].client, "alice").await.key;
        racers[0].holds = true;

        // Every racer restores and closes in its own rhythm, while the
        // server closes the session everywhere at some point, or the owner
        // keeps it, or leaves it at once.
        let mut tasks = Vec::new();
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        for (i, mut racer) in racers.drain(..).enumerate() {
            let key = key.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    // All restore at first (more than the limit allows),
                    // then, together again, a mix.
                    if round == 2 {
                        barrier.wait().await;
                    }
                    match (round, (i + round + epoch) % 3) {
                        // The owner keeps the session, or logs out at once
                        // while the others' restores are under way.
                        _ if i == 0 && kind == Kind::OwnerKeeps => racer.restore(&key).await,
                        (0, _) if i == 0 && kind == Kind::OwnerLeaves => racer.logout().await,
                        (0 | 1, _) | (_, 0) => racer.restore(&key).await,
                        (_, 1) => racer.close().await,
                        _ => racer.logout().await,
                    }
                }
                racer
            }));
        }
        let monitor = Monitor::start(&server.server, &store, &key, MAX);
        let everywhere = (kind == Kind::Everywhere).then(|| {
            let server = server.server.clone();
            let key = key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(3 + epoch as u64)).await;
                server.close_session(&key).await
            })
        });
        for task in tasks {
            racers.push(within("a racer", task).await.unwrap());
        }
        if let Some(everywhere) = everywhere {
            let closed = within("close everywhere", everywhere).await.unwrap();
            assert!(closed.errors().is_empty());
        }
        monitor.stop();

        // Quiet now. Each client's view matches the server's, the registry
        // matches the connections' session slots, and the store matches
        // the registry.
        let mut holders = 0;
        for racer in &mut racers {
            let server_view = racer.server_view().await;
            assert_eq!(racer.holds, server_view, "client and server disagree");
            holders += usize::from(server_view);
        }
        let registered = server.server.session_connection_count(&key);
        assert_eq!(registered, holders);
        assert!(registered <= MAX);
        let slots = server
            .server
            .connections()
            .iter()
            .filter(|conn| conn.session_key().as_deref() == Some(key.as_str()))
            .count();
        assert_eq!(slots, registered);
        assert_eq!(store.contains(&key), registered > 0, "store vs registry");
        assert_eq!(store.deletions(&key), usize::from(registered == 0));
        assert_eq!(
            server.server.active_session_count(),
            usize::from(registered > 0)
        );

        // Clean up for the next epoch.
        let closed = server.server.close_session(&key).await;
        assert_eq!(closed.connections().len(), registered);
        for racer in &mut racers {
            assert!(!racer.server_view().await);
            racer.holds = false;
        }
        assert_eq!(store.deletions(&key), 1, "deleted exactly once");
        assert_eq!(server.server.active_session_count(), 0);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Bad input

#[tokio::test]
async fn a_protocol_violation_closes_the_connection_and_keeps_its_session() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    a.send_raw(vec![7]).await;
    assert_eq!(a.closed().await, Some(1002));

    let srv = server.server.clone();
    let key = session.key.clone();
    eventually("the connection left", || {
        srv.session_connection_count(&key) == 0
    })
    .await;
    assert!(store.contains(&session.key));
    assert_eq!(count(&store.closed), 0);
    let mut b = server.connect().await;
    restored(&restore(&mut b, session.key.clone()).await);
    assert_eq!(whoami(&mut b).await, "alice");
    server.stop().await;
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let contents = std::fs::read(&path).unwrap();
                files.insert(path, contents);
            }
        }
    }
    files
}

fn write_file(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .write_all(contents)
        .unwrap();
}

fn session_file(key: &str) -> Vec<u8> {
    let info = json!({"user": "mallory"}).as_object().cloned();
    Session::new(key, SystemTime::now(), info)
        .to_json()
        .unwrap()
        .into_bytes()
}

#[tokio::test]
async fn hostile_keys_are_not_found_and_touch_nothing_outside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sessions");
    // Sessions a path built from the key would find.
    write_file(&dir.path().join("x"), &session_file("../x"));
    write_file(&folder.join("a").join("b"), &session_file("a/b"));
    write_file(&folder.join("..\\x"), &session_file("..\\x"));
    write_file(&dir.path().join("etc").join("passwd"), b"root:x:0:0");
    let before = snapshot(dir.path());

    let manager = Arc::new(CountingFiles::new(&folder));
    let server = TestServer::start(builder(router()).session_manager(manager.clone())).await;
    let mut client = server.connect().await;
    let keys = [
        "../x",
        "a/b",
        "..\\x",
        "..",
        ".",
        "/etc/passwd",
        "../etc/passwd",
    ];
    for key in keys {
        let reply = restore(&mut client, key).await;
        assert!(
            matches!(reply, ServerMessage::SessionNotFound(_)),
            "{key}: {reply:?}"
        );
        assert_eq!(whoami(&mut client).await, "anonymous", "{key}");
    }
    assert_eq!(count(&manager.lookups), keys.len(), "printable: asked");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "no file read-and-rewritten or made"
    );
    server.stop().await;
}

#[tokio::test]
async fn long_and_non_printable_keys_are_refused_without_a_lookup() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut client = server.connect().await;
    let keys: Vec<Vec<u8>> = vec![
        vec![b'k'; 300],
        vec![b'k'; 256],
        b"abc\x01".to_vec(),
        b"abc\x7f".to_vec(),
        b"a\nb".to_vec(),
        b"\x00".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
        vec![0xff, 0xfe],
    ];
    for key in keys {
        let reply = restore(&mut client, key.clone()).await;
        assert!(
            matches!(reply, ServerMessage::SessionNotFound(_)),
            "{key:?}: {reply:?}"
        );
    }
    assert_eq!(count(&store.lookups), 0, "the manager was never asked");
    // The longest allowed key is asked about.
    let reply = restore(&mut client, vec![b'k'; 255]).await;
    assert!(matches!(reply, ServerMessage::SessionNotFound(_)));
    assert_eq!(count(&store.lookups), 1);
    assert_eq!(whoami(&mut client).await, "anonymous");
    server.stop().await;
}

#[tokio::test]
async fn a_corrupt_session_file_fails_only_that_restore() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sessions");
    let truncated = session_file("truncatedkey");
    write_file(
        &folder.join("truncatedkey"),
        &truncated[..truncated.len() / 2],
    );
    write_file(&folder.join("notjsonkey"), b"hello, world");
    write_file(&folder.join("emptykey"), b"");
    let server = TestServer::start(
        builder(router()).session_manager(Arc::new(FileSessionManager::new(&folder))),
    )
    .await;

    let mut client = server.connect().await;
    for key in ["truncatedkey", "notjsonkey", "emptykey"] {
        let reply = restore(&mut client, key).await;
        assert!(
            matches!(reply, ServerMessage::InternalError(_)),
            "{key}: {reply:?}"
        );
        assert_eq!(whoami(&mut client).await, "anonymous");
    }
    let text = logs.text();
    assert_eq!(text.matches("session lookup failed").count(), 3, "{text}");
    assert!(text.contains("is not a session"), "the cause: {text}");
    assert!(!text.contains("truncatedkey"), "keys are redacted: {text}");

    // The server goes on: sessions work, on this connection and others.
    let session = login(&mut client, "alice").await;
    let mut other = server.connect().await;
    restored(&restore(&mut other, session.key.clone()).await);
    assert_eq!(whoami(&mut other).await, "alice");
    server.stop().await;
}

#[tokio::test]
async fn restoring_on_a_connection_with_a_session_is_a_session_active_error() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let mine = login(&mut a, "alice").await;
    let mut b = server.connect().await;
    let other = login(&mut b, "bob").await;

    for key in [&mine.key, &other.key] {
        let (code, _) = error_code(&restore(&mut a, key.clone()).await);
        assert_eq!(code, "SESSION_ACTIVE");
    }
    assert_eq!(count(&store.lookups), 0);
    assert_eq!(whoami(&mut a).await, "alice");
    assert_eq!(server.server.session_connection_count(&mine.key), 1);
    assert_eq!(server.server.session_connection_count(&other.key), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_store_that_fails_on_create_leaves_the_session_active_and_logs() {
    let (logs, _guard) = Logs::capture();
    let store = Arc::new(Store::default());
    store.fail_create.store(true, Ordering::SeqCst);
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    assert_eq!(whoami(&mut a).await, "alice");
    assert_eq!(server.server.session_connection_count(&session.key), 1);
    assert_eq!(count(&store.created), 1);
    assert!(!store.contains(&session.key));
    let text = logs.text();
    assert!(text.contains("failed to store a new session"), "{text}");
    assert!(text.contains("disk full"), "the cause: {text}");
    assert!(!text.contains(&session.key), "keys are redacted: {text}");

    // Not stored, so another connection cannot restore it.
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, session.key.clone()).await,
        ServerMessage::SessionNotFound(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_store_that_fails_on_delete_is_reported_and_the_session_is_closed_anyway() {
    let store = Arc::new(Store::default());
    let server = start_with(&store, router()).await;
    let mut a = server.connect().await;
    let key = login(&mut a, "alice").await.key;
    store.fail_close.store(true, Ordering::SeqCst);

    let closed = server.server.close_session(&key).await;
    assert_eq!(closed.connections().len(), 1);
    assert!(closed.store_error().is_some());
    assert!(!closed.is_ok());
    assert_eq!(a.recv().await, ServerMessage::SessionClosed);
    assert_eq!(whoami(&mut a).await, "anonymous");
    assert_eq!(server.server.active_session_count(), 0);

    // A server-side close on one connection reports it as an error.
    store.fail_close.store(false, Ordering::SeqCst);
    let key = login(&mut a, "alice").await.key;
    store.fail_close.store(true, Ordering::SeqCst);
    let (code, message) = error_code(&a.request("logout", Payload::utf8("")).await);
    assert_eq!(code, "CLOSE_FAILED");
    assert!(message.contains("session manager failed"), "{message}");
    assert_eq!(a.take_pending(), vec![ServerMessage::SessionClosed]);
    assert_eq!(server.server.session_connection_count(&key), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_session_larger_than_the_message_buffer_is_refused() {
    let store = Arc::new(Store::default());
    let server = TestServer::start(
        builder(router())
            .session_manager(store.clone())
            .message_buffer_size(256),
    )
    .await;
    let mut client = server.connect().await;
    let (code, message) = error_code(
        &client
            .request("login", Payload::utf8("x".repeat(100)))
            .await,
    );
    assert_eq!(code, "CREATE_FAILED");
    assert!(
        message.contains("exceeds the message buffer size"),
        "{message}"
    );
    assert!(client.take_pending().is_empty());
    assert_eq!(server.server.active_session_count(), 0);
    assert_eq!(count(&store.created), 0);
    // A smaller one fits.
    login(&mut client, "alice").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Session keys are never shown

/// Keys that start with [`SECRET`], numbered.
#[derive(Debug, Default)]
struct KnownKeys(AtomicUsize);

/// What every key of [`KnownKeys`] starts with: it must appear in no log
/// line and no `Debug` or `Display` output.
const SECRET: &str = "KNOWN-SECRET-KEY";

impl SessionKeyGenerator for KnownKeys {
    fn generate(&self) -> String {
        format!("{SECRET}-{}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Not the key, nor its first four characters.
fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains(&SECRET[..4]),
        "{what} shows a session key: {text}"
    );
}

#[tokio::test]
async fn no_log_line_or_error_shows_a_session_key() {
    // Every path that logs about a session, at TRACE, on this thread (the
    // current-thread runtime runs the server here too), through the global
    // subscriber so that no event is missed.
    let (logs, _guard) = common::LogCapture::start();
    let store = Arc::new(Store::default());
    let server = TestServer::start(
        builder(router())
            .session_manager(store.clone())
            .session_key_generator(Arc::new(KnownKeys::default())),
    )
    .await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;

    // A store that fails on create; a restore of a key that is not stored.
    store.fail_create.store(true, Ordering::SeqCst);
    let first = login(&mut a, "alice").await;
    assert!(first.key.starts_with(SECRET));
    assert!(matches!(
        restore(&mut b, first.key.clone()).await,
        ServerMessage::SessionNotFound(_)
    ));
    store.fail_create.store(false, Ordering::SeqCst);
    // A client's close, a store that fails on delete.
    store.fail_close.store(true, Ordering::SeqCst);
    assert_empty_reply(&close(&mut a).await);
    // Restored on b, closed everywhere with a failing delete.
    let second = login(&mut a, "bob").await;
    restored(&restore(&mut b, second.key.clone()).await);
    let closed = server.server.close_session(&second.key).await;
    assert!(closed.store_error().is_some());
    assert_eq!(a.recv().await, ServerMessage::SessionClosed);
    assert_eq!(b.recv().await, ServerMessage::SessionClosed);
    assert_no_key("a close everywhere's Debug", &format!("{closed:?}"));
    let err = closed.store_error().unwrap();
    assert_no_key("a store error", &format!("{err} {err:?}"));
    // The server-side close of one connection.
    let third = login(&mut a, "carol").await;
    let (_, message) = error_code(&a.request("logout", Payload::utf8("")).await);
    assert_no_key("a close error reply", &message);
    assert_eq!(a.recv().await, ServerMessage::SessionClosed);
    store.fail_close.store(false, Ordering::SeqCst);
    // A disconnect.
    let fourth = login(&mut b, "dave").await;
    b.close().await;
    eventually("b left", || server.server.active_session_count() == 0).await;

    for session in [&first, &second, &third, &fourth] {
        assert_no_key("a session's Debug", &format!("{session:?}"));
    }
    server.stop().await;
    let text = logs.text();
    assert!(text.contains("failed to store a new session"), "{text}");
    assert!(text.contains("failed to delete a closed session"), "{text}");
    assert!(text.contains("session closed on a connection"), "{text}");
    assert!(text.contains("a connection left its session"), "{text}");
    assert_no_key("the logs", &text);
    assert!(
        text.contains(&webwire_server::session::KeyDigest::new(&second.key).to_string()),
        "sessions are told apart by their digest: {text}"
    );
}

#[tokio::test]
async fn the_file_and_memory_managers_show_no_key() {
    let (logs, _guard) = common::LogCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FileSessionManager::new(dir.path()));
    let server = TestServer::start(
        builder(router())
            .session_manager(files.clone())
            .session_key_generator(Arc::new(KnownKeys::default())),
    )
    .await;
    let mut a = server.connect().await;
    let session = login(&mut a, "alice").await;
    // A corrupt session file: the lookup fails, and says so.
    std::fs::write(dir.path().join(&session.key), b"not a session").unwrap();
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, session.key.clone()).await,
        ServerMessage::InternalError(_)
    ));
    let err = files.on_session_lookup(&session.key).await.unwrap_err();
    assert_no_key("a file error", &format!("{err} {err:?}"));
    server.stop().await;
    let text = logs.text();
    assert!(text.contains("session lookup failed"), "{text}");
    assert_no_key("the logs", &text);

    // The memory manager's errors and Debug.
    let memory = MemorySessionManager::new();
    let session = Session::new(format!("{SECRET}-m"), SystemTime::now(), None);
    memory.on_session_created(&session).await.unwrap();
    assert_no_key("the memory manager's Debug", &format!("{memory:?}"));
    // A file manager refusing a key that cannot name a file.
    let bad = Session::new(format!("{SECRET}/bad"), SystemTime::now(), None);
    let err = files.on_session_created(&bad).await.unwrap_err();
    assert_no_key("a refused key's error", &format!("{err} {err:?}"));
}

/// A handler that fails because of what the client did (a second login on
/// a connection that has a session) is logged at WARN, not ERROR; one that
/// fails on its own is ERROR, with the error's sources.
#[tokio::test]
async fn a_handler_failing_on_the_clients_doing_is_not_an_error_line() {
    let (logs, _guard) = common::LogCapture::start();
    let router = MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn.create_session(None).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
        })
        .request("broken", |_: Payload| async move {
            let cause = std::io::Error::other("the disk is gone");
            Err::<Payload, _>(SessionError::Store(SessionStoreError::new(
                "writing failed",
                cause,
            )))
        });
    let server = TestServer::start(
        Server::builder(router).session_manager(Arc::new(MemorySessionManager::new())),
    )
    .await;
    let mut client = server.connect().await;
    let first = client.request("login", Payload::utf8("")).await;
    assert!(matches!(first, ServerMessage::Reply(_)), "{first:?}");
    let second = client.request("login", Payload::utf8("")).await;
    assert!(
        matches!(second, ServerMessage::InternalError(_)),
        "{second:?}"
    );
    let broken = client.request("broken", Payload::utf8("")).await;
    assert!(
        matches!(broken, ServerMessage::InternalError(_)),
        "{broken:?}"
    );
    client.close().await;
    server.stop().await;

    let warned = logs.lines_at("WARN");
    assert!(
        warned
            .iter()
            .any(|line| line.contains("already has a session") && line.contains("login")),
        "{warned:?}"
    );
    let errors = logs.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("broken") && errors[0].contains("the disk is gone"),
        "the failure with its sources: {errors:?}"
    );
}
