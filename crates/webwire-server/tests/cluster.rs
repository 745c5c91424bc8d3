//! The server's side of a cluster, with a fake adapter that records what
//! the server asks and answers as told: events published for broadcasts,
//! room and session signals; other nodes' events delivered; close
//! everywhere adding the other nodes' counts; the per-session limit
//! answered by the cluster (full, unreachable, a place given back).

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, reply_text, within, TestClient, TestServer};
use webwire_proto::{ClientMessage, Payload, ServerMessage};
use webwire_server::{
    cluster::{Cluster, ClusterError, ClusterEvent, ClusterNode, ClusterReply, SessionJoin},
    session::MemorySessionManager,
    Connection, MessageRouter, Server,
};

/// What the fake cluster answers to a restore's request for a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Room,
    Full,
    Down,
}

#[derive(Debug)]
struct Fake {
    node: OnceLock<ClusterNode>,
    events: Mutex<Vec<ClusterEvent>>,
    /// Calls in order: "join KEY MAX", "leave KEY", "clear KEY", "set KEY N".
    calls: Mutex<Vec<String>>,
    answer: Mutex<Answer>,
    remote: usize,
}

impl Fake {
    fn new(remote: usize) -> Arc<Self> {
        Arc::new(Self {
            node: OnceLock::new(),
            events: Mutex::default(),
            calls: Mutex::default(),
            answer: Mutex::new(Answer::Room),
            remote,
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<ClusterEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl Cluster for Fake {
    fn attach(&self, node: ClusterNode) {
        self.node.set(node).unwrap();
    }
    fn publish(&self, event: ClusterEvent) {
        self.events.lock().unwrap().push(event);
    }
    async fn close_session(&self, _key: &str) -> ClusterReply {
        let mut reply = ClusterReply::new(self.remote);
        reply.unreached = vec!["c".into()];
        reply
    }
    async fn join_session(&self, key: &str, max: usize) -> Result<SessionJoin, ClusterError> {
        self.calls.lock().unwrap().push(format!("join {key} {max}"));
        match *self.answer.lock().unwrap() {
            Answer::Room => Ok(SessionJoin::Counted),
            Answer::Full if max > 0 => Ok(SessionJoin::Full),
            Answer::Full => Ok(SessionJoin::Counted),
            Answer::Down => Err(ClusterError::msg("down")),
        }
    }
    async fn leave_session(&self, key: &str) -> Result<(), ClusterError> {
        self.calls.lock().unwrap().push(format!("leave {key}"));
        Ok(())
    }
    async fn clear_session(&self, key: &str) -> Result<(), ClusterError> {
        self.calls.lock().unwrap().push(format!("clear {key}"));
        Ok(())
    }
    async fn set_session_counts(&self, counts: &[(String, usize)]) -> Result<(), ClusterError> {
        let mut counts: Vec<String> = counts.iter().map(|(k, n)| format!("set {k} {n}")).collect();
        counts.sort();
        self.calls.lock().unwrap().extend(counts);
        match *self.answer.lock().unwrap() {
            Answer::Down => Err(ClusterError::msg("down")),
            _ => Ok(()),
        }
    }
    async fn session_connections(&self, _key: &str) -> Result<Option<usize>, ClusterError> {
        Ok(Some(42))
    }
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

async fn start(fake: &Arc<Fake>) -> TestServer {
    TestServer::start(
        Server::builder(router())
            .session_manager(Arc::new(MemorySessionManager::new()))
            .max_session_connections(3)
            .cluster(fake.clone()),
    )
    .await
}

async fn login(client: &mut TestClient) -> String {
    let key = reply_text(&client.request("login", Payload::utf8("")).await);
    client.take_pending();
    key
}

async fn restore(client: &mut TestClient, key: &str) -> ServerMessage {
    let id = client.next_id();
    client
        .send(ClientMessage::RestoreSession {
            id,
            key: Bytes::copy_from_slice(key.as_bytes()),
        })
        .await;
    client.reply_to(id).await
}

fn signal_of(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Signal(signal) => signal.payload().to_text().unwrap().into_owned(),
        other => panic!("expected a signal, got {other:?}"),
    }
}

#[tokio::test]
async fn signals_are_published_and_other_nodes_events_delivered() {
    let fake = Fake::new(0);
    let server = start(&fake).await;
    let mut a = server.connect().await;
    a.request("join", Payload::utf8("r")).await;
    let key = login(&mut a).await;

    server.server.signal_all("all", "1").unwrap();
    server.server.room_signal("r", "room", "2", None).unwrap();
    server.server.signal_session(&key, "you", "3").unwrap();
    for expected in ["1", "2", "3"] {
        assert_eq!(signal_of(&a.recv().await), expected);
    }
    let events = fake.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(&events[0], ClusterEvent::Broadcast { .. }));
    assert!(matches!(&events[1], ClusterEvent::Room { room, .. } if room == "r"));
    assert!(matches!(&events[2], ClusterEvent::Session { key: k, .. } if *k == key));

    // Another node's events, delivered here (the frames are the same bytes).
    let node = fake.node.get().unwrap();
    for event in &events {
        assert_eq!(node.deliver(event), 1);
    }
    for expected in ["1", "2", "3"] {
        assert_eq!(signal_of(&a.recv().await), expected);
    }
    assert_eq!(
        node.deliver(&ClusterEvent::Room {
            room: "nobody".into(),
            frame: events[1].frame().unwrap().clone()
        }),
        0
    );
    assert_eq!(node.session_counts(), vec![(key.clone(), 1)]);
    assert_eq!(
        server
            .server
            .session_connection_count_everywhere(&key)
            .await
            .unwrap(),
        42,
        "the cluster's count"
    );
    server.stop().await;
}

#[tokio::test]
async fn counts_follow_creates_restores_leaves_and_closes() {
    let fake = Fake::new(5);
    let server = start(&fake).await;
    let mut a = server.connect().await;
    let key = login(&mut a).await;
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, &key).await,
        ServerMessage::Reply(_)
    ));

    *fake.answer.lock().unwrap() = Answer::Full;
    let mut c = server.connect().await;
    assert!(matches!(
        restore(&mut c, &key).await,
        ServerMessage::MaxSessConnsReached(_)
    ));
    *fake.answer.lock().unwrap() = Answer::Down;
    assert!(matches!(
        restore(&mut c, &key).await,
        ServerMessage::InternalError(_)
    ));

    // The unanswered join may be applied late: the count (a and b) is
    // written again as a value.
    *fake.answer.lock().unwrap() = Answer::Room;
    let f = fake.clone();
    let set = format!("set {key} 2");
    eventually("the count is written again", || {
        f.calls().last() == Some(&set)
    })
    .await;
    b.close().await;
    let expected_after_leave = vec![
        format!("join {key} 0"),
        format!("join {key} 3"),
        format!("join {key} 3"),
        format!("join {key} 3"),
        format!("set {key} 2"),
        format!("leave {key}"),
    ];
    let f = fake.clone();
    eventually("the leave is counted", || f.calls() == expected_after_leave).await;

    let closed = server.server.close_session(&key).await;
    assert_eq!(closed.connections().len(), 1);
    assert_eq!(closed.affected(), 6, "1 here + 5 on other nodes");
    assert_eq!(closed.remote().unwrap().unreached, ["c"]);
    assert!(!closed.is_ok(), "a node did not answer");
    let f = fake.clone();
    let key2 = key.clone();
    eventually("the close is counted", || {
        f.calls().last() == Some(&format!("clear {key2}"))
    })
    .await;
    // The closed session is gone, the refused restores left nothing behind.
    assert_eq!(server.server.session_connection_count(&key), 0);
    assert!(fake.node.get().unwrap().session_counts().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn while_the_cluster_does_not_answer_changes_are_noted_and_written_once() {
    let fake = Fake::new(0);
    let server = start(&fake).await;
    let mut a = server.connect().await;
    let key = login(&mut a).await;
    *fake.answer.lock().unwrap() = Answer::Down;
    let mut b = server.connect().await;
    assert!(matches!(
        restore(&mut b, &key).await,
        ServerMessage::InternalError(_)
    ));
    // Many changes while the cluster does not answer: none is sent (no
    // backlog of calls each waiting for a timeout), and restores fail at
    // once rather than queue behind them.
    let mut others = Vec::new();
    for _ in 0..8 {
        let mut c = server.connect().await;
        others.push(login(&mut c).await);
        c.close().await;
    }
    let mut c = server.connect().await;
    assert!(matches!(
        restore(&mut c, &key).await,
        ServerMessage::InternalError(_)
    ));
    let sent: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|call| !call.starts_with("set "))
        .collect();
    assert_eq!(
        sent,
        [format!("join {key} 0"), format!("join {key} 3")],
        "only the failed restore's call (and attempts to write the counts)"
    );
    let server_ = server.server.clone();
    let others_ = others.clone();
    eventually("the closed connections left their sessions", || {
        others_
            .iter()
            .all(|k| server_.session_connection_count(k) == 0)
    })
    .await;
    // Back: one call writes the count of every session it missed, then
    // restores work again.
    *fake.answer.lock().unwrap() = Answer::Room;
    within("a restore once the cluster answers", async {
        loop {
            match restore(&mut c, &key).await {
                ServerMessage::InternalError(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ServerMessage::Reply(_) => break,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    let mut expected: Vec<String> = others.iter().map(|k| format!("set {k} 0")).collect();
    expected.push(format!("set {key} 1"));
    expected.sort();
    expected.push(format!("join {key} 3"));
    let calls = fake.calls();
    assert_eq!(calls[calls.len() - expected.len()..], expected[..]);
    server.stop().await;
}
