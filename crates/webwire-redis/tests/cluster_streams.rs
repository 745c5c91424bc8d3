//! Streams (webwire 2.1) across two server nodes on one real Redis: the
//! signals one node appends to a shared `RedisStreamStore` reach the other
//! node's connections live, in order, once (`RedisCluster::deliver_streams`).

mod common;
#[path = "common/nodes.rs"]
mod nodes;

use std::sync::Arc;
use std::time::Duration;

use nodes::{
    cluster_config, history, init_logs, next_stream_event, nothing_more, redis_cluster,
    redis_sessions, redis_streams, router, serve, shut_down, until, within,
};
use tokio::task::JoinHandle;
use webwire_client::{Client, ClientEvent, Events};
use webwire_proto::{RoomName, StreamId};
use webwire_redis::{redis, RedisCluster, RedisStoreConfig, RedisStreamStore};
use webwire_server::{Server, ServerError};

/// One node: sessions, the cluster and stream history in Redis; rooms
/// named `h-...` keep history.
struct Node {
    server: Server,
    cluster: RedisCluster,
    addr: std::net::SocketAddr,
    run: JoinHandle<Result<(), ServerError>>,
}

impl Node {
    async fn start(redis_url: &str, id: &str) -> Self {
        init_logs();
        let sessions = redis_sessions(redis_url).await;
        let streams = redis_streams(redis_url).await;
        let config = cluster_config(id).with_request_timeout(Duration::from_secs(2));
        let cluster = redis_cluster(redis_url, config, &streams).await;
        let server = Server::builder(router())
            .session_manager(Arc::new(sessions))
            .cluster(Arc::new(cluster.clone()))
            .stream_store(Arc::new(streams))
            .room_history(history)
            .build()
            .expect("server");
        let (addr, run) = serve(&server).await;
        Self {
            server,
            cluster,
            addr,
            run,
        }
    }

    /// A 2.1 client that gets stream signals with their offsets.
    async fn client(&self) -> (Client, Events) {
        let client = within(
            "connect",
            Client::builder(format!("ws://{}/", self.addr))
                .stream_signal_events(true)
                .connect(),
        )
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
    within("the nodes see each other", async {
        while !(a.cluster.peers() == ["b"] && b.cluster.peers() == ["a"]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (a, b)
}

fn room(name: &str) -> StreamId {
    StreamId::Room(RoomName::new(name).expect("room name"))
}

/// The next stream signal as (stream, offset, payload text); a StreamLoss
/// or a plain signal fails the test.
async fn next_stream_signal(events: &mut Events) -> (StreamId, u64, String) {
    match next_stream_event(events, "a stream signal").await {
        Ok(signal) => signal,
        Err(loss) => panic!("unexpected {loss:?}"),
    }
}

#[tokio::test]
async fn room_and_session_stream_signals_of_one_node_reach_the_other_in_order_once() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    let (on_b, mut events) = b.client().await;
    let key = on_b.request("login", "").await.expect("login");
    let key = key.to_text().expect("text").into_owned();
    on_b.request("join", "h-room").await.expect("join");

    // Room signals sent on A, interleaved with session signals for the
    // session held on B: each stream in order, numbered by the one store.
    let mut expected = Vec::new();
    for i in 1..=20u64 {
        let at = a
            .server
            .signal_room_stream("h-room", "said", format!("r{i}"))
            .await
            .expect("room signal");
        assert_eq!(at.offset, i);
        expected.push((room("h-room"), i, format!("r{i}")));
        if i % 4 == 0 {
            let n = i / 4;
            let at = a
                .server
                .signal_session_stream(&key, "noted", format!("s{n}"))
                .await
                .expect("session signal");
            assert_eq!(at.offset, n);
            expected.push((StreamId::Session, n, format!("s{n}")));
        }
    }
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(next_stream_signal(&mut events).await);
    }
    // One channel from one node: the order of sending, across streams too.
    assert_eq!(got, expected);
    nothing_more(&mut events).await;

    // B's own sends still reach its connection once, after A's.
    let at = b
        .server
        .signal_room_stream("h-room", "said", "from b")
        .await
        .expect("room signal on b");
    assert_eq!(at.offset, 21);
    assert_eq!(
        next_stream_signal(&mut events).await,
        (room("h-room"), 21, "from b".to_owned())
    );
    nothing_more(&mut events).await;

    on_b.close().await;
    a.stop().await;
    b.stop().await;
}

/// Waits for a client event that `wanted` picks, skipping the others (a
/// stream signal or loss in between fails the test).
async fn wait_for(events: &mut Events, what: &str, wanted: impl Fn(&ClientEvent) -> bool) {
    nodes::wait_for(events, what, |event| {
        if wanted(event) {
            return true;
        }
        if matches!(
            event,
            ClientEvent::StreamSignal(_) | ClientEvent::StreamLoss(_)
        ) {
            panic!("{what}: unexpected {event:?}");
        }
        false
    })
    .await;
}

#[tokio::test]
async fn a_client_restored_on_another_node_is_back_in_its_rooms_with_nothing_missed() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    // The client dials whichever node `target` names (none: refused).
    let target = Arc::new(std::sync::Mutex::new(Some(a.addr)));
    let client = within(
        "connect",
        Client::builder(format!("ws://{}/", a.addr))
            .stream_signal_events(true)
            .reconnect_interval(Duration::from_millis(50))
            .max_reconnect_interval(Duration::from_millis(200))
            .transport({
                let target = target.clone();
                move || {
                    let addr = *target.lock().unwrap();
                    async move {
                        match addr {
                            Some(addr) => tokio::net::TcpStream::connect(addr).await,
                            None => Err(std::io::ErrorKind::ConnectionRefused.into()),
                        }
                    }
                }
            })
            .connect(),
    )
    .await
    .expect("client");
    let mut events = client.events();
    let key = client.request("login", "").await.expect("login");
    let key = key.to_text().expect("text").into_owned();
    client.request("join", "h-room").await.expect("join");
    assert!(b.server.session_rooms(&key).is_empty(), "B has not seen it");

    let said = |n: u64| (room("h-room"), n, format!("r{n}"));
    let say = |node: &Node, n: u64| {
        let server = node.server.clone();
        async move {
            let at = server
                .signal_room_stream("h-room", "said", format!("r{n}"))
                .await
                .expect("room signal");
            assert_eq!(at.offset, n);
        }
    };
    say(&a, 1).await;
    assert_eq!(next_stream_signal(&mut events).await, said(1));

    // Cut from A; nothing reaches the client while A's room gets more.
    *target.lock().unwrap() = None;
    for conn in a.server.session_connections(&key) {
        conn.close();
    }
    wait_for(&mut events, "the cut", |event| {
        matches!(event, ClientEvent::Disconnected)
    })
    .await;
    say(&a, 2).await;
    say(&a, 3).await;
    a.server
        .signal_session_stream(&key, "noted", "s1")
        .await
        .expect("session signal");

    // Reconnected to B: restored there, in the room without joining again,
    // and its resume brings what was sent meanwhile.
    *target.lock().unwrap() = Some(b.addr);
    wait_for(&mut events, "the reconnection to B", |event| {
        matches!(event, ClientEvent::Connected)
    })
    .await;
    assert_eq!(b.server.session_rooms(&key), ["h-room"]);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_stream_signal(&mut events).await);
    }
    let (mut rooms, sessions): (Vec<_>, Vec<_>) = got
        .into_iter()
        .partition(|(stream, _, _)| *stream == room("h-room"));
    assert_eq!(sessions, [(StreamId::Session, 1, "s1".to_owned())]);
    assert_eq!(rooms, [said(2), said(3)], "in order, once");

    // Afterwards: live from the other node and from B, in order, once.
    say(&a, 4).await;
    say(&b, 5).await;
    rooms.clear();
    for _ in 0..2 {
        rooms.push(next_stream_signal(&mut events).await);
    }
    assert_eq!(rooms, [said(4), said(5)]);
    nothing_more(&mut events).await;

    client.close().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_redis_store_keeps_memberships_for_every_node() {
    use webwire_server::stream::{StreamKey, StreamPosition, StreamStore as _};

    let redis = redis_or_skip!();
    let config = RedisStoreConfig::new().with_prefix("m:");
    let one = RedisStreamStore::connect(&redis.url(), config.clone())
        .await
        .expect("store");
    let other = RedisStreamStore::connect(&redis.url(), config)
        .await
        .expect("store");
    assert_eq!(one.session_rooms("k").await.unwrap(), Some(Vec::new()));
    let (first, later) = (StreamPosition::new(0xabc, 7), StreamPosition::new(0xabc, 9));
    one.join_room("k", "h-b", first).await.unwrap();
    one.join_room("k", "h-a", later).await.unwrap();
    // A member keeps its first join position.
    other.join_room("k", "h-b", later).await.unwrap();
    assert_eq!(
        other.session_rooms("k").await.unwrap(),
        Some(vec![("h-a".to_owned(), later), ("h-b".to_owned(), first)])
    );
    other.leave_room("k", "h-a").await.unwrap();
    other.leave_room("k", "h-none").await.unwrap();
    assert_eq!(
        one.session_rooms("k").await.unwrap(),
        Some(vec![("h-b".to_owned(), first)])
    );
    // Another session's are its own; closing the session removes them.
    assert_eq!(one.session_rooms("k2").await.unwrap(), Some(Vec::new()));
    one.remove(&StreamKey::session("k")).await.unwrap();
    assert_eq!(one.session_rooms("k").await.unwrap(), Some(Vec::new()));
    // Bad input is a typed error, not a key made of it.
    assert!(one.join_room("", "h-a", first).await.is_err());
    assert!(one.join_room("k", "", first).await.is_err());

    // Something that is not a membership in the hash is refused.
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("HSET")
        .arg("m:stream:rooms:bad")
        .arg("h-a")
        .arg("nonsense")
        .query_async::<i64>(&mut raw)
        .await
        .unwrap();
    assert!(one.session_rooms("bad").await.is_err());
}

#[tokio::test]
async fn a_join_or_leave_on_one_node_moves_the_sessions_connections_on_the_other() {
    let redis = redis_or_skip!();
    let (a, b) = pair(&redis).await;
    // One session, a tab on each node.
    let (on_a, mut events_a) = a.client().await;
    let key = on_a.request("login", "").await.expect("login");
    let key = key.to_text().expect("text").into_owned();
    let (on_b, mut events_b) = b.client().await;
    within("restore on b", on_b.restore_session(&key))
        .await
        .expect("restored on b");

    // The tab on A joins; the tab on B is in the room too, without a
    // reconnect, from the join position on.
    on_a.request("join", "h-room").await.expect("join");
    until("b's connection joins", || {
        b.server.room_count("h-room") != 0
    })
    .await;
    assert_eq!(b.server.session_rooms(&key), ["h-room"]);
    for (i, node) in [(1u64, &a), (2, &b), (3, &a)] {
        let at = node
            .server
            .signal_room_stream("h-room", "said", format!("r{i}"))
            .await
            .expect("room signal");
        assert_eq!(at.offset, i);
    }
    for events in [&mut events_a, &mut events_b] {
        for i in 1..=3u64 {
            assert_eq!(
                next_stream_signal(events).await,
                (room("h-room"), i, format!("r{i}"))
            );
        }
    }

    // B ends the membership: A's connection leaves the room too.
    assert!(b.server.leave_session_room(&key, "h-room"));
    until("a's connection leaves", || {
        a.server.room_count("h-room") == 0
    })
    .await;
    assert!(a.server.session_rooms(&key).is_empty());
    a.server
        .signal_room_stream("h-room", "said", "after")
        .await
        .expect("room signal");
    nothing_more(&mut events_a).await;
    nothing_more(&mut events_b).await;

    on_a.close().await;
    on_b.close().await;
    a.stop().await;
    b.stop().await;
}
