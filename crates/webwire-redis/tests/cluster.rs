//! Two server nodes on one real Redis: sessions restored across nodes,
//! close everywhere, the per-session limit over both nodes, room signals
//! and broadcasts across nodes (each client gets each signal once), and
//! recovery after Redis restarts.

mod common;
#[path = "common/nodes.rs"]
mod nodes;

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodes::{cluster_config, init_logs, redis_sessions, shut_down, within, WAIT};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use webwire_client::{Client, ClientEvent, Events, RequestError};
use webwire_redis::{
    redis, RedisCluster, RedisClusterConfig, RedisSessionConfig, RedisSessionManager,
};
use webwire_server::{
    cluster::{Cluster as _, SessionJoin},
    session::{MemorySessionManager, Session, SessionLookup, SessionManager, SessionStoreError},
    Connection, MessageRouter, Payload, Server, ServerError,
};

struct Node {
    server: Server,
    cluster: RedisCluster,
    url: String,
    run: JoinHandle<Result<(), ServerError>>,
}

fn router() -> MessageRouter {
    MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn.create_session(None).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
        })
        .request("join", |conn: Connection, room: String| async move {
            conn.join_room(&room)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
        })
}

impl Node {
    async fn start(redis_url: &str, id: &str) -> Self {
        let sessions = redis_sessions(redis_url).await;
        Self::start_with(redis_url, id, Arc::new(sessions)).await
    }

    /// A node storing its sessions in `sessions` (counting them in Redis).
    async fn start_with(redis_url: &str, id: &str, sessions: Arc<impl SessionManager>) -> Self {
        init_logs();
        let config = cluster_config(id).with_request_timeout(Duration::from_secs(2));
        let cluster = RedisCluster::connect(redis_url, config)
            .await
            .expect("cluster");
        let server = Server::builder(router())
            .session_manager(sessions)
            .cluster(Arc::new(cluster.clone()))
            .max_session_connections(3)
            .build()
            .expect("server");
        let listener = server.bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr());
        let run = tokio::spawn(listener.run());
        Self {
            server,
            cluster,
            url,
            run,
        }
    }

    async fn client(&self) -> (Client, Events) {
        let client = within("connect", Client::connect(&self.url))
            .await
            .expect("client");
        let events = client.events();
        (client, events)
    }

    async fn stop(self) {
        shut_down(&self.server, self.run).await;
    }
}

/// Two nodes that see each other.
async fn pair(redis: &common::RedisServer) -> (Node, Node) {
    let a = Node::start(&redis.url(), "a").await;
    let b = Node::start(&redis.url(), "b").await;
    eventually("the nodes see each other", || {
        a.cluster.peers() == ["b"] && b.cluster.peers() == ["a"]
    })
    .await;
    (a, b)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The next signal (name, text) an event receiver gets, skipping other events.
async fn next_signal(events: &mut Events) -> (String, String) {
    within("a signal", async {
        loop {
            match events.recv().await.expect("events") {
                ClientEvent::Signal(signal) => {
                    return (
                        signal.name().to_string(),
                        signal.payload().to_text().expect("text").into_owned(),
                    )
                }
                _ => continue,
            }
        }
    })
    .await
}

/// Whether a signal arrives within `wait`.
async fn signal_within(events: &mut Events, wait: Duration) -> Option<(String, String)> {
    tokio::time::timeout(wait, next_signal(events)).await.ok()
}

async fn login(client: &Client) -> String {
    let key = client.request("login", "").await.expect("login");
    key.to_text().expect("text").into_owned()
}

#[tokio::test]
async fn a_session_from_a_restores_on_b_and_b_closes_it_everywhere() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (c1, mut e1) = a.client().await;
    let key = login(&c1).await;
    let (c2, _e2) = b.client().await;
    let session = c2.restore_session(&key).await.expect("restored on b");
    assert_eq!(session.key, key);
    assert_eq!(
        b.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        2
    );
    assert_eq!(b.server.session_connection_count(&key), 1, "local count");

    let closed = within("close everywhere", b.server.close_session(&key)).await;
    assert_eq!(closed.affected(), 2, "{closed:?}");
    assert_eq!(closed.connections().len(), 1);
    assert!(closed.remote().unwrap().is_complete());
    assert!(closed.is_ok());
    within("a's client told", async {
        loop {
            if let ClientEvent::SessionClosed = e1.recv().await.expect("events") {
                break;
            }
        }
    })
    .await;
    assert_eq!(a.server.session_connection_count(&key), 0);
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        0
    );
    // Gone from the store too.
    let (c3, _e3) = a.client().await;
    assert_eq!(
        c3.restore_session(&key).await.unwrap_err(),
        RequestError::SessionNotFound
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_session_limit_counts_both_nodes() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;
    let (c2, _e2) = a.client().await;
    c2.restore_session(&key).await.expect("second on a");
    let (c3, _e3) = a.client().await;
    c3.restore_session(&key).await.expect("third on a");
    let (c4, _e4) = b.client().await;
    assert_eq!(
        c4.restore_session(&key).await.unwrap_err(),
        RequestError::MaxSessionConnsReached
    );
    assert_eq!(
        b.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        3
    );
    // One leaves node A: node B has room.
    c3.close().await;
    let deadline = Instant::now() + WAIT;
    loop {
        if b.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap()
            == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "the count did not drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c4.restore_session(&key).await.expect("room on b now");
    let (c5, _e5) = a.client().await;
    assert_eq!(
        c5.restore_session(&key).await.unwrap_err(),
        RequestError::MaxSessionConnsReached,
        "full again, counted from a"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn room_signals_and_broadcasts_cross_nodes_once() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (ca, mut ea) = a.client().await;
    let (cb, mut eb) = b.client().await;
    let (cb2, mut eb2) = b.client().await;
    ca.request("join", "r").await.expect("join a");
    cb.request("join", "r").await.expect("join b");

    let sent = a
        .server
        .room_signal("r", "news", Payload::utf8("to the room"), None)
        .unwrap();
    assert_eq!(sent, 1, "one local member");
    assert_eq!(
        next_signal(&mut ea).await,
        ("news".into(), "to the room".into())
    );
    assert_eq!(
        next_signal(&mut eb).await,
        ("news".into(), "to the room".into())
    );

    assert_eq!(a.server.signal_all("all", "everybody").unwrap(), 1);
    for events in [&mut ea, &mut eb, &mut eb2] {
        assert_eq!(
            next_signal(events).await,
            ("all".into(), "everybody".into())
        );
    }
    // No duplicates, and cb2 (in no room) never got the room signal: a
    // marker from each node fences what came before. Each node's messages
    // reach the other in order through Redis, so a copy of an earlier
    // signal would arrive before the other node's marker.
    assert_eq!(a.server.signal_all("marker", "a").unwrap(), 1);
    assert_eq!(b.server.signal_all("marker", "b").unwrap(), 2);
    for events in [&mut ea, &mut eb, &mut eb2] {
        let mut got = vec![next_signal(events).await, next_signal(events).await];
        got.sort();
        assert_eq!(
            got,
            [
                ("marker".to_owned(), "a".to_owned()),
                ("marker".to_owned(), "b".to_owned())
            ],
            "only the markers after the signals above"
        );
    }

    // A session signal from B reaches the session's connection on A.
    let key = login(&ca).await;
    assert_eq!(b.server.signal_session(&key, "you", "hi").unwrap(), 0);
    assert_eq!(next_signal(&mut ea).await, ("you".into(), "hi".into()));
    drop((cb, cb2));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn both_nodes_recover_after_redis_restarts() {
    let mut redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (ca, mut ea) = a.client().await;
    let (cb, mut eb) = b.client().await;
    cb.request("join", "r").await.expect("join b");

    redis.stop();
    // While Redis is down: local delivery still works (A's client gets
    // it), remote is lost (B's never does, checked below).
    assert_eq!(a.server.signal_all("down", "x").unwrap(), 1);
    assert_eq!(next_signal(&mut ea).await, ("down".into(), "x".into()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();

    // Room signals from A reach B again once both are resubscribed.
    within("a room signal crosses again", async {
        loop {
            a.server
                .room_signal("r", "again", Payload::utf8("x"), None)
                .unwrap();
            if let Some(signal) = signal_within(&mut eb, Duration::from_millis(300)).await {
                assert_ne!(signal.0, "down", "a signal published while Redis was down");
                if signal.0 == "again" {
                    break;
                }
            }
        }
    })
    .await;
    eventually("the nodes see each other again", || {
        a.cluster.peers() == ["b"] && b.cluster.peers() == ["a"]
    })
    .await;

    // Sessions and the limit work again (Redis restarted empty).
    let key = within("login after the restart", async {
        loop {
            match ca.request("login", "").await {
                Ok(key) => break key.to_text().unwrap().into_owned(),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    cb.restore_session(&key).await.expect("restored on b");
    let closed = within("close everywhere", a.server.close_session(&key)).await;
    assert_eq!(closed.affected(), 2, "{closed:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_that_leaves_stops_counting() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    b.stop().await;
    eventually("a sees b leave", || a.cluster.peers().is_empty()).await;
    // Close everywhere does not wait for b: waiting would take the whole
    // request timeout (2 s) and leave b unreached.
    let started = Instant::now();
    let closed = a.server.close_session("no-such-session").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(closed.affected(), 0);
    assert!(closed.remote().unwrap().is_complete());
    a.stop().await;
}

#[tokio::test]
async fn connections_of_silent_members_stop_counting() {
    use webwire_redis::redis::AsyncCommands as _;

    let redis = redis_or_skip!();
    let a = Node::start(&redis.url(), "a").await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;
    let mut raw = redis.raw().await;
    let conns = format!("webwire:conns:{key}");
    let members = "webwire:cluster:members";
    // A member that crashed holding two connections of the session.
    let _: () = raw.hset(&conns, "ghost/1", 2).await.unwrap();
    // Never heard of (Redis restarted, say): not counted, not deleted.
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        1
    );
    let (now, _): (i64, i64) = redis::cmd("TIME").query_async(&mut raw).await.unwrap();
    let now_ms = now * 1000;
    // Heard from recently: counted, so the session is full.
    let _: () = raw.hset(members, "ghost/1", now_ms).await.unwrap();
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        3
    );
    let (c2, _e2) = a.client().await;
    assert_eq!(
        c2.restore_session(&key).await.unwrap_err(),
        RequestError::MaxSessionConnsReached
    );
    // Silent for longer than the node timeout (1 s): not counted, and the
    // next restore deletes its count.
    let _: () = raw.hset(members, "ghost/1", now_ms - 5_000).await.unwrap();
    c2.restore_session(&key).await.expect("room again");
    let ghost: Option<i64> = raw.hget(&conns, "ghost/1").await.unwrap();
    assert_eq!(ghost, None);
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        2
    );
    a.stop().await;
}

/// Restores `key` on `client`, again while the cluster answers with an
/// internal error (Redis was paused a moment ago).
async fn restore_when_redis_answers(client: &Client, key: &str) -> Result<(), RequestError> {
    within("a restore once Redis answers", async {
        loop {
            match client.restore_session(key).await {
                Err(RequestError::InternalError) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other.map(drop),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_close_on_one_node_keeps_the_session_another_node_holds() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;
    let (c2, _e2) = b.client().await;
    c2.restore_session(&key).await.expect("restored on b");
    // B's only connection closes the session: A still holds it.
    c2.close_session().await.expect("closed on b");
    assert!(c1.session().is_some());
    let (c3, _e3) = b.client().await;
    c3.restore_session(&key)
        .await
        .expect("still stored: A holds it");
    let (c4, _e4) = a.client().await;
    c4.restore_session(&key).await.expect("and on a");
    // The last holder on every node destroys it, whichever node it is on.
    c4.close_session().await.unwrap();
    c1.close_session().await.unwrap();
    let (c5, _e5) = a.client().await;
    c5.restore_session(&key)
        .await
        .expect("b's c3 still holds it");
    c5.close_session().await.unwrap();
    c3.close_session().await.unwrap();
    let (c6, _e6) = a.client().await;
    assert_eq!(
        c6.restore_session(&key).await.unwrap_err(),
        RequestError::SessionNotFound,
        "closed on its last connection of all nodes: destroyed"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_close_while_redis_is_paused_deletes_nothing() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;
    let (c2, _e2) = b.client().await;
    c2.restore_session(&key).await.expect("restored on b");
    let (c3, _e3) = b.client().await;

    // Whether A holds the session cannot be known: B must not delete it
    // (a delete sent now would be applied when Redis resumes).
    redis.pause();
    let closed = within("close while paused", c2.close_session()).await;
    redis.resume();
    closed.expect("the client's close is answered");
    restore_when_redis_answers(&c3, &key)
        .await
        .expect("still stored: A holds it");
    a.stop().await;
    b.stop().await;
}

/// A close on a node's last connection while Redis is paused keeps the
/// session (whether another node holds it cannot be known), but only until
/// Redis answers again: then it is decided again, and no node holding it,
/// it is deleted.
#[tokio::test]
async fn a_last_close_while_redis_is_paused_is_decided_once_it_answers() {
    let redis = redis_or_skip!();
    let a = Node::start(&redis.url(), "a").await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;

    redis.pause();
    let closed = within("close while paused", c1.close_session()).await;
    redis.resume();
    closed.expect("the client's close is answered");

    // The counts are written again every second once Redis answers; the
    // undecided close with them. A generous bound: a loaded machine.
    let store = RedisSessionManager::connect(&redis.url(), RedisSessionConfig::new())
        .await
        .expect("session manager");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(None) = store.on_session_lookup(&key).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session closed on its last connection is still stored after Redis answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (c2, _e2) = a.client().await;
    assert_eq!(
        restore_when_redis_answers(&c2, &key).await.unwrap_err(),
        RequestError::SessionNotFound
    );
    a.stop().await;
}

#[tokio::test]
async fn a_join_answered_after_its_timeout_is_given_back() {
    let redis = redis_or_skip!();
    // Sessions in memory, so that only the cluster's count needs Redis.
    let a = Node::start_with(&redis.url(), "a", Arc::new(MemorySessionManager::new())).await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;
    let (c2, _e2) = a.client().await;
    let (c3, _e3) = a.client().await;
    let (c4, _e4) = a.client().await;

    // The join reaches Redis but its answer comes after the timeout: the
    // restore fails, and Redis applies the join when it resumes.
    redis.pause();
    let failed = within("restore while paused", c2.restore_session(&key)).await;
    redis.resume();
    assert_eq!(failed.unwrap_err(), RequestError::InternalError);

    restore_when_redis_answers(&c2, &key)
        .await
        .expect("c2 restores once Redis answers");
    c3.restore_session(&key)
        .await
        .expect("three connections of three: no place is left to the failed join");
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        c4.restore_session(&key).await.unwrap_err(),
        RequestError::MaxSessionConnsReached
    );
    a.stop().await;
}

/// Sessions in Redis whose next lookup, once armed, waits after it found
/// the session until released: a restore held between its lookup and its
/// place in the cluster's count.
#[derive(Debug)]
struct HeldLookup {
    sessions: RedisSessionManager,
    armed: AtomicBool,
    looked_up: Notify,
    release: Notify,
}

/// Starts a restore of `key` from a new client of `node` whose lookup
/// finds the session in `held` and then waits there until released.
async fn held_restore(
    node: &Node,
    held: &HeldLookup,
    key: &str,
) -> (Client, Events, JoinHandle<Result<Session, RequestError>>) {
    held.armed.store(true, AtomicOrdering::SeqCst);
    let (client, events) = node.client().await;
    let restoring = tokio::spawn({
        let client = client.clone();
        let key = key.to_owned();
        async move { client.restore_session(&key).await }
    });
    within("the held lookup", held.looked_up.notified()).await;
    (client, events, restoring)
}

impl SessionManager for HeldLookup {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.sessions.on_session_created(session).await
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        let found = self.sessions.on_session_lookup(key).await;
        if self.armed.swap(false, AtomicOrdering::SeqCst) {
            self.looked_up.notify_one();
            self.release.notified().await;
        }
        found
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.sessions.on_session_closed(key).await
    }
}

#[tokio::test]
async fn a_restore_that_looked_up_a_session_before_its_last_close_does_not_hold_it() {
    let redis = redis_or_skip!();
    let a = Node::start(&redis.url(), "a").await;
    let held = Arc::new(HeldLookup {
        sessions: redis_sessions(&redis.url()).await,
        armed: AtomicBool::new(false),
        looked_up: Notify::new(),
        release: Notify::new(),
    });
    let b = Node::start_with(&redis.url(), "b", held.clone()).await;
    eventually("the nodes see each other", || {
        a.cluster.peers() == ["b"] && b.cluster.peers() == ["a"]
    })
    .await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;

    // B's restore finds the session in the store, then waits.
    let (c2, _e2, restoring) = held_restore(&b, &held, &key).await;

    // Meanwhile A's only holder closes it: no node counts it, so A
    // destroys it.
    within("close on a", c1.close_session()).await.unwrap();
    let (c3, _e3) = a.client().await;
    assert_eq!(
        c3.restore_session(&key).await.unwrap_err(),
        RequestError::SessionNotFound,
        "destroyed"
    );

    // B's restore goes on: the session it found is gone.
    held.release.notify_one();
    let restored = within("b's restore", restoring).await.unwrap();
    // (Not printed: the session would show its key.)
    assert!(
        matches!(restored, Err(RequestError::SessionNotFound)),
        "b's restore of the destroyed session: {:?}",
        restored.map(drop)
    );
    assert!(c2.session().is_none());
    assert_eq!(b.server.session_connection_count(&key), 0);
    assert_eq!(
        b.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        0
    );

    // Nor may a node's count written again bring it back.
    b.cluster
        .set_session_counts(&[(key.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        0,
        "a destroyed session's count is not written again"
    );
    assert_eq!(
        a.cluster.join_session(&key, 3).await.unwrap(),
        SessionJoin::Destroyed
    );
    a.stop().await;
    b.stop().await;
}

/// A restore of the session under way on the node whose last holder
/// closes it: the close destroys the session (the restore holds nothing
/// yet), the restore answers SessionNotFound and leaves no count behind.
#[tokio::test]
async fn a_restore_under_way_on_the_closing_node_does_not_keep_the_session() {
    let redis = redis_or_skip!();
    let held = Arc::new(HeldLookup {
        sessions: redis_sessions(&redis.url()).await,
        armed: AtomicBool::new(false),
        looked_up: Notify::new(),
        release: Notify::new(),
    });
    let a = Node::start_with(&redis.url(), "a", held.clone()).await;
    let (c1, _e1) = a.client().await;
    let key = login(&c1).await;

    let (_c2, _e2, restoring) = held_restore(&a, &held, &key).await;
    within("close on a", c1.close_session()).await.unwrap();
    held.release.notify_one();
    let restored = within("the restore", restoring).await.unwrap();
    assert!(
        matches!(restored, Err(RequestError::SessionNotFound)),
        "the restore of the closed session: {:?}",
        restored.map(drop)
    );
    assert!(held
        .sessions
        .on_session_lookup(&key)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        a.server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        a.cluster.join_session(&key, 3).await.unwrap(),
        SessionJoin::Destroyed
    );
    a.stop().await;
}

/// Keys that start with [`SECRET`], numbered.
#[derive(Debug, Default)]
struct KnownKeys(std::sync::atomic::AtomicUsize);

/// What every key of [`KnownKeys`] starts with: neither it nor its first
/// four characters may appear in a log line.
const SECRET: &str = "KNOWN-SECRET-KEY";

impl webwire_server::session::SessionKeyGenerator for KnownKeys {
    fn generate(&self) -> String {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("{SECRET}-{n}")
    }
}

/// Collects what is logged on this thread (the current-thread runtime
/// runs the server, the cluster and the clients here).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
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

#[tokio::test]
async fn no_log_line_shows_a_session_key_while_redis_is_down() {
    let mut redis = redis_or_skip!();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sessions = RedisSessionManager::connect(
        &redis.url(),
        RedisSessionConfig::new().with_op_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("session manager");
    let config = RedisClusterConfig::new("a")
        .with_heartbeat_interval(Duration::from_millis(200))
        .with_node_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_millis(500))
        .with_op_timeout(Duration::from_millis(300));
    let cluster = RedisCluster::connect(&redis.url(), config)
        .await
        .expect("cluster");
    let server = Server::builder(router())
        .session_manager(Arc::new(sessions))
        .session_key_generator(Arc::new(KnownKeys::default()))
        .cluster(Arc::new(cluster.clone()))
        .max_session_connections(3)
        .build()
        .expect("server");
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr());
    let run = tokio::spawn(listener.run());
    let node = Node {
        server,
        cluster,
        url,
        run,
    };
    let (a, _ea) = node.client().await;
    let (b, _eb) = node.client().await;
    let key = login(&a).await;
    assert!(key.starts_with(SECRET));
    b.restore_session(&key).await.expect("restored");

    redis.stop();
    // Count updates that fail (a leave; a new session's join), a store
    // and a lookup that fail, a close everywhere whose delete fails.
    b.close_session().await.expect("closed on b");
    let (c, _ec) = node.client().await;
    let _ = c.request("login", "").await;
    let _ = b.restore_session(&key).await;
    let closed = within("close everywhere", node.server.close_session(&key)).await;
    assert!(closed.store_error().is_some(), "{closed:?}");
    for text in [
        format!("{closed:?}"),
        closed.store_error().unwrap().to_string(),
    ] {
        assert!(!text.contains(&SECRET[..4]), "shows a session key: {text}");
    }
    eventually("a count update failed", || {
        logs.text()
            .contains("the cluster did not take a session count change")
    })
    .await;
    node.stop().await;

    let text = logs.text();
    assert!(text.contains("failed to delete a closed session"), "{text}");
    assert!(
        !text.contains(&SECRET[..4]),
        "the logs show a session key: {text}"
    );
}
