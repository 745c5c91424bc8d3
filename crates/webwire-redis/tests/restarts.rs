//! Webwire 2.1 across the failures of the list, end to end with the
//! Rust client on a real Redis: a server restarted on Redis loses nothing
//! and runs no key twice; Redis restarted empty is a StreamLoss notice,
//! then normal service; a node killed while a keyed handler runs leaves its
//! retry on another node an "outcome unknown", never a second run.

mod common;
#[path = "common/nodes.rs"]
mod nodes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodes::{
    cluster_config, history, init_logs, next_stream_event, nothing_more, redis_cluster,
    redis_sessions, redis_streams, serve, shut_down, until, wait_for, within, BoxError, OP,
};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use webwire_client::{Client, ClientEvent, Events, LossReason, RequestError};
use webwire_proto::{RoomName, StreamId};
use webwire_redis::{RedisLedger, RedisStoreConfig};
use webwire_server::ledger::LedgerLimits;
use webwire_server::session::MemorySessionManager;
use webwire_server::{Connection, MessageRouter, Payload, Server, ServerError};

/// What the `slow` handler shares with the test: how many runs started, and
/// the permits that let a run finish.
struct Runs {
    started: AtomicUsize,
    finish: Semaphore,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            started: AtomicUsize::new(0),
            finish: Semaphore::new(0),
        }
    }
}

fn router(runs: Arc<Runs>) -> MessageRouter {
    nodes::router().request("slow", move |_: Connection, _: Payload| {
        let runs = runs.clone();
        async move {
            runs.started.fetch_add(1, Ordering::SeqCst);
            runs.finish.acquire().await?.forget();
            Ok::<_, BoxError>("done")
        }
    })
}

/// Which stores a node keeps in Redis.
#[derive(Clone, Copy)]
enum Stores {
    /// Sessions, cluster, request ledger and streams.
    All,
    /// Only the streams; sessions in this process' memory.
    StreamsOnly,
}

/// One server node; rooms named `h-...` keep history.
struct Node {
    server: Server,
    addr: SocketAddr,
    run: JoinHandle<Result<(), ServerError>>,
}

impl Node {
    async fn start(redis_url: &str, id: &str, stores: Stores, runs: Arc<Runs>) -> Self {
        init_logs();
        let streams = redis_streams(redis_url).await;
        let mut builder = Server::builder(router(runs))
            .room_history(history)
            .keyed_lease_renewal(Duration::from_millis(200));
        match stores {
            Stores::All => {
                let sessions = redis_sessions(redis_url).await;
                let cluster = redis_cluster(redis_url, cluster_config(id), &streams).await;
                // A short lease, so that a killed node's run lapses soon.
                let limits = LedgerLimits {
                    lease_ttl: Duration::from_secs(1),
                    ..LedgerLimits::default()
                };
                let ledger = RedisLedger::connect(
                    redis_url,
                    RedisStoreConfig::new().with_op_timeout(OP),
                    limits,
                )
                .await
                .expect("ledger");
                builder = builder
                    .session_manager(Arc::new(sessions))
                    .cluster(Arc::new(cluster))
                    .request_ledger(Arc::new(ledger))
                    .ledger_limits(limits);
            }
            Stores::StreamsOnly => {
                builder = builder.session_manager(Arc::new(MemorySessionManager::new()));
            }
        }
        let server = builder
            .stream_store(Arc::new(streams))
            .build()
            .expect("server");
        let (addr, run) = serve(&server).await;
        Self { server, addr, run }
    }

    async fn stop(self) {
        shut_down(&self.server, self.run).await;
    }

    /// Signals `r{n}` on room `h-room` and checks it got offset `n`.
    async fn say(&self, n: u64) {
        let at = self
            .server
            .signal_room_stream("h-room", "said", format!("r{n}"))
            .await
            .expect("room signal");
        assert_eq!(at.offset, n);
    }
}

/// Where the client dials (none: refused), and its sockets, which the test
/// can cut under it.
#[derive(Clone, Default)]
struct Dialer {
    target: Arc<Mutex<Option<SocketAddr>>>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Dialer {
    fn to(addr: SocketAddr) -> Self {
        let dialer = Self::default();
        dialer.point_to(Some(addr));
        dialer
    }

    fn point_to(&self, addr: Option<SocketAddr>) {
        *self.target.lock().unwrap() = addr;
    }

    /// Cuts every connection made so far (the TCP connection, under the
    /// WebSocket: neither side says goodbye).
    fn cut(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    fn dial(&self) -> std::io::Result<tokio::net::TcpStream> {
        let addr = self
            .target
            .lock()
            .unwrap()
            .ok_or(std::io::ErrorKind::ConnectionRefused)?;
        // Loopback: connecting does not block for long.
        let socket = std::net::TcpStream::connect(addr)?;
        socket.set_nonblocking(true)?;
        self.sockets.lock().unwrap().push(socket.try_clone()?);
        tokio::net::TcpStream::from_std(socket)
    }
}

/// A 2.1 client dialing through `dialer`, reconnecting quickly.
async fn client(dialer: &Dialer) -> (Client, Events) {
    let client = within(
        "connect",
        Client::builder("ws://webwire.test/")
            .stream_signal_events(true)
            .reconnect_interval(Duration::from_millis(50))
            .max_reconnect_interval(Duration::from_millis(200))
            .transport({
                let dialer = dialer.clone();
                move || std::future::ready(dialer.dial())
            })
            .connect(),
    )
    .await
    .expect("client");
    let events = client.events();
    (client, events)
}

async fn login_and_join(client: &Client) -> String {
    let key = client.request("login", "").await.expect("login");
    let key = key.to_text().expect("text").into_owned();
    client.request("join", "h-room").await.expect("join");
    key
}

fn room() -> StreamId {
    StreamId::Room(RoomName::new("h-room").expect("room name"))
}

/// What the client shows the application of the streams.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Signal(StreamId, u64, String),
    Loss(StreamId, LossReason),
}

/// The next stream signal or loss.
async fn next_seen(events: &mut Events) -> Seen {
    match next_stream_event(events, "a stream signal or loss").await {
        Ok((stream, offset, text)) => Seen::Signal(stream, offset, text),
        Err(loss) => Seen::Loss(loss.stream, loss.reason),
    }
}

fn said(n: u64) -> Seen {
    Seen::Signal(room(), n, format!("r{n}"))
}

/// A server restarted on Redis: the client, cut off while its keyed
/// request ran, comes back to the new server; the retry of that key gets
/// the reply the old server stored (one run), and the room's signals sent
/// before and after the restart arrive in order, once.
#[tokio::test]
async fn a_server_restarted_on_redis_loses_nothing_and_runs_no_key_twice() {
    let redis = redis_or_skip!();
    let runs = Arc::new(Runs::default());
    let old = Node::start(&redis.url(), "old", Stores::All, runs.clone()).await;
    let dialer = Dialer::to(old.addr);
    let (client, mut events) = client(&dialer).await;
    login_and_join(&client).await;
    old.say(1).await;
    assert_eq!(next_seen(&mut events).await, said(1));

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.request("slow", "").await }
    });
    until("the run started", || {
        runs.started.load(Ordering::SeqCst) == 1
    })
    .await;

    // Cut off while the key runs; it finishes, detached, and is stored.
    dialer.point_to(None);
    dialer.cut();
    wait_for(&mut events, "the cut", |e| {
        matches!(e, ClientEvent::Disconnected)
    })
    .await;
    runs.finish.add_permits(1);
    old.say(2).await;
    // The graceful shutdown waits for the detached run.
    old.stop().await;

    let new = Node::start(&redis.url(), "new", Stores::All, runs.clone()).await;
    new.say(3).await;
    dialer.point_to(Some(new.addr));

    let reply = within("the keyed reply", call).await.expect("task");
    assert_eq!(reply.expect("the stored reply").to_text().unwrap(), "done");
    assert_eq!(runs.started.load(Ordering::SeqCst), 1, "run once");
    assert_eq!(next_seen(&mut events).await, said(2));
    assert_eq!(next_seen(&mut events).await, said(3));
    new.say(4).await;
    assert_eq!(next_seen(&mut events).await, said(4));
    nothing_more(&mut events).await;

    client.close().await;
    new.stop().await;
}

/// Redis restarted empty under a connected client: the room's next signal
/// is in a new epoch; the client is told of the loss (EPOCH_CHANGED), then
/// gets the new epoch's signals in order, once.
#[tokio::test]
async fn redis_restarted_empty_is_a_loss_notice_then_normal_service() {
    let mut redis = redis_or_skip!();
    let runs = Arc::new(Runs::default());
    let node = Node::start(&redis.url(), "n", Stores::StreamsOnly, runs).await;
    let (client, mut events) = client(&Dialer::to(node.addr)).await;
    login_and_join(&client).await;
    node.say(1).await;
    node.say(2).await;
    assert_eq!(next_seen(&mut events).await, said(1));
    assert_eq!(next_seen(&mut events).await, said(2));

    redis.restart();
    // The store comes back by itself; until then a stream send fails.
    let first = within("the store back", async {
        loop {
            match node.server.signal_room_stream("h-room", "said", "r1").await {
                Ok(at) => return at,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(first.offset, 1, "a new epoch starts again at 1");
    assert_eq!(
        next_seen(&mut events).await,
        Seen::Loss(room(), LossReason::EpochChanged)
    );
    assert_eq!(next_seen(&mut events).await, said(1));
    node.say(2).await;
    assert_eq!(next_seen(&mut events).await, said(2));
    nothing_more(&mut events).await;

    client.close().await;
    node.stop().await;
}

/// Node A is killed (its runtime dropped: no graceful shutdown, no lease
/// renewal) while a keyed handler runs there; the client reconnects to
/// node B and sends the key again: B waits for A's lease to lapse and
/// answers "outcome unknown", and the handler never runs on B.
#[tokio::test]
async fn a_node_killed_while_a_keyed_handler_runs_is_outcome_unknown_never_a_second_run() {
    let redis = redis_or_skip!();
    let runs = Arc::new(Runs::default());
    let url = redis.url();
    // Node A on a runtime of its own, so that it can be killed whole.
    let (runtime, a_addr, _a) = std::thread::spawn({
        let runs = runs.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let a = runtime.block_on(Node::start(&url, "a", Stores::All, runs));
            let addr = a.addr;
            (runtime, addr, a)
        }
    })
    .join()
    .expect("node A");
    let b = Node::start(&redis.url(), "b", Stores::All, runs.clone()).await;

    let dialer = Dialer::to(a_addr);
    let (client, mut events) = client(&dialer).await;
    login_and_join(&client).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.request("slow", "").await }
    });
    until("the run started on A", || {
        runs.started.load(Ordering::SeqCst) == 1
    })
    .await;

    dialer.point_to(Some(b.addr));
    runtime.shutdown_background();
    wait_for(&mut events, "the loss of A", |e| {
        matches!(e, ClientEvent::Disconnected)
    })
    .await;
    // B may run anything new at once: it must not run this key.
    runs.finish.add_permits(100);

    let reply = within("the retry's answer", call).await.expect("task");
    assert_eq!(reply.unwrap_err(), RequestError::OutcomeUnknown);
    assert_eq!(runs.started.load(Ordering::SeqCst), 1, "never a second run");
    // The session and the connection serve on: a new key runs on B.
    let again = client.request("slow", "").await.expect("a new key");
    assert_eq!(again.to_text().unwrap(), "done");
    assert_eq!(runs.started.load(Ordering::SeqCst), 2);

    client.close().await;
    b.stop().await;
}
