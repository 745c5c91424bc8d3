//! Webwire 2.1 end to end through the fault-injecting proxy
//! (webwire-faultproxy, issue 14): the Rust client against one server in
//! this process, and against two interop server processes on one Redis
//! (each reconnect lands on the other node), while the proxy cuts the
//! connection at random points in both directions, mid-frame included,
//! discarding what it held. Under a steady stream of keyed requests,
//! every handler runs at most once per key and every caller gets exactly
//! one answer; under a steady stream of session-stream and room-stream
//! signals as well (on one node, and on two nodes sharing the Redis stream
//! store and the session's room memberships), the application sees every
//! offset of each stream once, in order, with no StreamLoss. The proxy's figures show
//! that the cuts landed while requests and signals were in flight.
//!
//! A failing run prints its seed; `WEBWIRE_CHAOS_SEED=N` replays the cut
//! points (the timing of the workload still varies).

#[path = "../../../crates/webwire-redis/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webwire_client::{Client, ClientEvent, RequestError, RoomName, StreamId};
use webwire_faultproxy::{FaultProxy, Stats};
use webwire_server::options::Concurrency;
use webwire_server::session::MemorySessionManager;
use webwire_server::stream::HistoryLimits;
use webwire_server::{Connection, MessageRouter, Payload, ReplyError, Server};

/// Cuts per case in CI.
const CUTS: u64 = 100;
/// Cuts per case in the soak tests (ignored; BENCHMARKS.md has figures).
const SOAK_CUTS: u64 = 2_000;
/// Bytes between two cuts of one direction.
const CUT_AFTER: std::ops::RangeInclusive<u64> = 256..=4096;
/// Workers sending keyed requests, each one at a time.
const WORKERS: usize = 8;
/// The workload stops after this long per 100 cuts even if the proxy cut
/// less often.
const WILD_FOR_100_CUTS: Duration = Duration::from_secs(15);
/// How long the calm phase may take to answer every request.
const DRAIN: Duration = Duration::from_secs(30);

/// The history of the session streams and rooms of the in-process server.
const HISTORY: HistoryLimits = HistoryLimits::new(1_000_000, Duration::from_secs(600));
/// The history room the client's session joins.
const ROOM: &str = "lobby";
/// Signals sent on each stream together, then a pause of [`SIGNAL_EVERY`].
const SIGNAL_BURST: u64 = 4;
/// The pause between two bursts.
const SIGNAL_EVERY: Duration = Duration::from_millis(1);

/// How many times each key's handler ran, by payload.
#[derive(Default)]
struct Runs(Mutex<HashMap<String, usize>>);

impl Runs {
    fn run(&self, key: &str) -> usize {
        let mut runs = self.0.lock().unwrap();
        let n = runs.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }

    fn snapshot(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

fn seed() -> u64 {
    match std::env::var("WEBWIRE_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("WEBWIRE_CHAOS_SEED is a u64"),
        Err(_) => std::collections::hash_map::RandomState::new().hash_one(0u8),
    }
}

/// A server on 127.0.0.1: `login` makes a session, `incr` counts its runs
/// per payload and answers `payload:runs` after a short pause (so that
/// cuts land while handlers run).
async fn start_server(runs: Arc<Runs>) -> (Server, SocketAddr) {
    let router = MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("LOGIN", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        })
        .request("join", |conn: Connection, payload: Payload| async move {
            let room = payload.to_text().expect("text payload").into_owned();
            conn.join_session_room(&room)
                .await
                .map_err(|err| ReplyError::from_static("JOIN", err.to_string()))?;
            Ok::<_, ReplyError>("ok")
        })
        .request("incr", move |payload: Payload| {
            let runs = runs.clone();
            async move {
                let key = payload.to_text().expect("text payload").into_owned();
                let pause = key.len() as u64 % 3;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let n = runs.run(&key);
                Ok::<_, ReplyError>(format!("{key}:{n}"))
            }
        });
    let server = Server::builder(router)
        .session_manager(Arc::new(MemorySessionManager::default()))
        .concurrency(Concurrency::limited(WORKERS * 2))
        // History long enough that nothing is trimmed during a run: every
        // gap is repairable, so a StreamLoss is a failure.
        .session_history(HISTORY)
        .room_history(|_| Some(HISTORY))
        .build()
        .expect("server");
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr();
    tokio::spawn(listener.run());
    (server, addr)
}

/// What the callers got.
#[derive(Default)]
struct Outcomes {
    /// payload -> the result its one caller got.
    results: HashMap<String, Result<String, RequestError>>,
}

/// Keyed requests from `WORKERS` workers, one after the other each, until
/// `stop` is set; each request's payload is unique.
async fn keyed_workload(client: &Client, stop: Arc<AtomicBool>) -> Outcomes {
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = client.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let key = format!("w{w}-{i}");
                let result = client
                    .request("incr", key.clone())
                    .await
                    .map(|p| p.to_text().expect("text reply").into_owned());
                got.push((key, result));
            }
            got
        }));
    }
    let mut outcomes = Outcomes::default();
    for worker in workers {
        for (key, result) in worker.await.expect("worker") {
            assert!(
                outcomes.results.insert(key.clone(), result).is_none(),
                "{key} asked twice"
            );
        }
    }
    outcomes
}

fn print_stats(case: &str, stats: &Stats) {
    println!(
        "{case}: seed {}: {} connections, {} cuts ({} with requests in flight, {} with a signal \
         in flight, {} mid-frame), {} requests / {} replies / {} signals forwarded, {} bytes \
         discarded",
        stats.seed,
        stats.connections,
        stats.cuts,
        stats.cuts_with_requests_in_flight,
        stats.cuts_with_signals_in_flight,
        stats.cuts_mid_frame,
        stats.requests_forwarded,
        stats.replies_forwarded,
        stats.signals_forwarded,
        stats.bytes_discarded,
    );
}

/// Checks the keyed requests: each handler ran at most once; each caller
/// got its own run's answer, or OutcomeUnknown at most `unknown_allowed`
/// times. Returns how many were answered.
fn check_keyed(
    seed: u64,
    outcomes: &Outcomes,
    runs: &HashMap<String, usize>,
    reply_of_first_run: impl Fn(&str) -> String,
    unknown_allowed: usize,
) -> usize {
    let mut unknown = Vec::new();
    let mut answered = 0;
    for (key, result) in &outcomes.results {
        let ran = runs.get(key).copied().unwrap_or(0);
        assert!(
            ran <= 1,
            "seed {seed}: the handler of {key} ran {ran} times"
        );
        match result {
            Ok(reply) => {
                assert_eq!(
                    reply,
                    &reply_of_first_run(key),
                    "seed {seed}: the reply to {key}"
                );
                assert_eq!(ran, 1, "seed {seed}: {key} answered but not run");
                answered += 1;
            }
            Err(RequestError::OutcomeUnknown) => unknown.push(key.clone()),
            Err(err) => panic!("seed {seed}: {key} failed: {err}"),
        }
    }
    for key in runs.keys() {
        assert!(
            outcomes.results.contains_key(key),
            "seed {seed}: {key} ran but nobody asked"
        );
    }
    assert!(
        unknown.len() <= unknown_allowed,
        "seed {seed}: {} requests ended with outcome unknown: {unknown:?}",
        unknown.len()
    );
    answered
}

/// What the producer sent on one stream: its epoch, and the payload of
/// each offset from 1.
#[derive(Debug, Default, Clone)]
struct Sent {
    epoch: u64,
    payloads: Vec<String>,
}

/// What the client delivered on one stream, in order.
type Delivered = Vec<(u64, u64, String)>;

/// Where the stream signals come from.
#[derive(Clone)]
enum Source {
    /// Sent by the server in this process.
    InProcess(Server),
    /// Asked of an interop server process (`stream-me`, `say`) by a
    /// client of its own, straight to it, in the same session.
    Node(SocketAddr),
}

/// Sends stream signals for the session `key` and records them.
enum Sender {
    InProcess { server: Server, key: String },
    Node(Client),
}

impl Sender {
    async fn new(source: &Source, key: String) -> Self {
        match source {
            Source::InProcess(server) => Self::InProcess {
                server: server.clone(),
                key,
            },
            Source::Node(addr) => {
                let client = Client::connect(&format!("ws://{addr}/"))
                    .await
                    .expect("producer connects");
                client
                    .restore_session(&key)
                    .await
                    .expect("producer restores");
                Self::Node(client)
            }
        }
    }

    /// `n` signals on the session stream.
    async fn session(&self, sent: &mut HashMap<StreamId, Sent>, n: u64) {
        match self {
            Self::InProcess { server, key } => {
                for _ in 0..n {
                    let payload = format!("s{}", next(sent, &StreamId::Session));
                    let at = server
                        .signal_session_stream(key, "s", payload.clone())
                        .await
                        .expect("session stream send");
                    record(sent, StreamId::Session, at.epoch, at.offset, payload);
                }
            }
            Self::Node(client) => {
                // `stream-me N` sends the payloads 1..=N and answers the
                // last offset.
                let last: u64 = client
                    .request("stream-me", n.to_string())
                    .await
                    .expect("stream-me")
                    .to_text()
                    .expect("text")
                    .parse()
                    .expect("an offset");
                for k in 1..=n {
                    record(sent, StreamId::Session, 0, last - n + k, k.to_string());
                }
            }
        }
    }

    /// One signal on [`ROOM`]'s stream.
    async fn room(&self, sent: &mut HashMap<StreamId, Sent>) {
        let room = StreamId::Room(RoomName::from_static(ROOM));
        let payload = format!("r{}", next(sent, &room));
        let (epoch, offset) = match self {
            Self::InProcess { server, .. } => {
                let at = server
                    .signal_room_stream(ROOM, "r", payload.clone())
                    .await
                    .expect("room stream send");
                (at.epoch, at.offset)
            }
            Self::Node(client) => {
                let offset = client
                    .request("say", format!("{ROOM} {payload}"))
                    .await
                    .expect("say")
                    .to_text()
                    .expect("text")
                    .parse()
                    .expect("an offset");
                (0, offset)
            }
        };
        record(sent, room, epoch, offset, payload);
    }

    async fn close(self) {
        if let Self::Node(client) = self {
            client.close().await;
        }
    }
}

/// The offset the next signal of `stream` will get.
fn next(sent: &HashMap<StreamId, Sent>, stream: &StreamId) -> usize {
    sent.get(stream).map_or(0, |s| s.payloads.len()) + 1
}

/// Sends on the session stream and on [`ROOM`]'s stream,
/// [`SIGNAL_BURST`] signals each per [`SIGNAL_EVERY`], until `stop`.
async fn produce(sender: Arc<Sender>, stop: Arc<AtomicBool>) -> HashMap<StreamId, Sent> {
    let mut sent: HashMap<StreamId, Sent> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        sender.session(&mut sent, SIGNAL_BURST).await;
        for _ in 0..SIGNAL_BURST {
            sender.room(&mut sent).await;
        }
        tokio::time::sleep(SIGNAL_EVERY).await;
    }
    sent
}

/// Records a signal sent at `offset` (epoch 0: not known to the sender).
fn record(
    sent: &mut HashMap<StreamId, Sent>,
    stream: StreamId,
    epoch: u64,
    offset: u64,
    payload: String,
) {
    let entry = sent.entry(stream).or_default();
    if entry.epoch == 0 {
        entry.epoch = epoch;
    }
    assert_eq!(entry.epoch, epoch.max(entry.epoch), "one epoch per stream");
    entry.payloads.push(payload);
    assert_eq!(
        u64::try_from(entry.payloads.len()).unwrap(),
        offset,
        "dense offsets"
    );
}

/// Checks that each stream delivered exactly what was sent: every offset
/// once, in order, with its payload, under the stream's one epoch.
fn check_streams(
    seed: u64,
    sent: &HashMap<StreamId, Sent>,
    delivered: &HashMap<StreamId, Delivered>,
) {
    for (stream, sent) in sent {
        let got = delivered.get(stream).map(Vec::as_slice).unwrap_or_default();
        // The epoch the client saw, when the sender did not know it.
        let epoch = if sent.epoch == 0 {
            got.first().map_or(0, |g| g.0)
        } else {
            sent.epoch
        };
        let expected: Delivered = sent
            .payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (epoch, u64::try_from(i).unwrap() + 1, p.clone()))
            .collect();
        if got != expected.as_slice() {
            let first_bad = got
                .iter()
                .zip(&expected)
                .position(|(g, e)| g != e)
                .unwrap_or(got.len().min(expected.len()));
            panic!(
                "seed {seed}: stream {stream:?}: {} delivered, {} sent; first difference at \
                 index {first_bad}: got {:?}, expected {:?}",
                got.len(),
                expected.len(),
                got.get(first_bad),
                expected.get(first_bad)
            );
        }
    }
}

/// What a keyed run through the proxy gave.
struct KeyedRun {
    seed: u64,
    outcomes: Outcomes,
    stats: Stats,
}

/// Logs a client in through a calm proxy in front of `upstreams`, then
/// runs the keyed workload while the proxy cuts until it has cut `cuts`
/// times (or `WILD_FOR_100_CUTS` per 100 cuts passed), calms it and waits until every request
/// is answered. Checks the client's events: no orphan reply, nothing
/// lagged, still a session.
async fn keyed_through_cuts(
    case: &str,
    upstreams: Vec<SocketAddr>,
    cuts: u64,
    streams: Option<Source>,
) -> KeyedRun {
    // The client's errors (and more with RUST_LOG) in the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_test_writer()
        .try_init();
    let seed = seed();
    let proxy = FaultProxy::builder(upstreams)
        .seed(seed)
        .cut_after(CUT_AFTER)
        .cutting(false)
        .start()
        .await
        .expect("proxy");
    let client = Client::builder(format!("ws://{}/", proxy.local_addr()))
        .reconnect_interval(Duration::from_millis(5))
        .max_reconnect_interval(Duration::from_millis(50))
        .request_timeout(DRAIN * 2)
        .stream_signal_events(true)
        .event_capacity(1 << 16)
        .connect()
        .await
        .expect("connect");
    // Read all along: thousands of reconnections make more events than
    // the client keeps for a slow reader.
    let mut events = client.events();
    let delivered: Arc<Mutex<HashMap<StreamId, Delivered>>> = Arc::default();
    let watched = tokio::spawn({
        let delivered = delivered.clone();
        async move {
            let mut unexpected = Vec::new();
            let mut reconnects = 0u64;
            while let Some(event) = events.recv().await {
                match event {
                    ClientEvent::Connected => reconnects += 1,
                    ClientEvent::StreamSignal(signal) => {
                        let payload = signal
                            .signal()
                            .payload()
                            .to_text()
                            .expect("text")
                            .into_owned();
                        delivered
                            .lock()
                            .unwrap()
                            .entry(signal.stream().clone())
                            .or_default()
                            .push((signal.epoch(), signal.offset(), payload));
                    }
                    ClientEvent::OrphanReply { .. }
                    | ClientEvent::Lagged(_)
                    | ClientEvent::StreamLoss(_)
                    | ClientEvent::Signal(_) => unexpected.push(event),
                    _ => {}
                }
            }
            (reconnects, unexpected)
        }
    });
    client.request("login", "chaos").await.expect("login");
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = match &streams {
        Some(source) => {
            client.request("join", ROOM).await.expect("join");
            let key = client.session().expect("a session").key;
            let sender = Arc::new(Sender::new(source, key).await);
            let producing = tokio::spawn(produce(sender.clone(), stop_producing.clone()));
            Some((sender, producing))
        }
        None => None,
    };

    proxy.set_cutting(true);
    let stop = Arc::new(AtomicBool::new(false));
    let workload = tokio::spawn({
        let client = client.clone();
        let stop = stop.clone();
        async move { keyed_workload(&client, stop).await }
    });
    let started = tokio::time::Instant::now();
    let deadline = started + WILD_FOR_100_CUTS * u32::try_from(cuts.div_ceil(100)).unwrap();
    while proxy.stats().cuts < cuts && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wild = started.elapsed();
    proxy.set_cutting(false);
    stop.store(true, Ordering::SeqCst);
    let outcomes = tokio::time::timeout(DRAIN, workload)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: requests still unanswered after {DRAIN:?}"))
        .expect("workload");
    let answered_after = started.elapsed() - wild;
    if let Some((sender, producing)) = producer {
        stop_producing.store(true, Ordering::SeqCst);
        let mut sent = producing.await.expect("producer");
        // One more signal on each stream, now that nothing is cut: a
        // client that missed the last ones before sees the gap.
        sender.session(&mut sent, 1).await;
        sender.room(&mut sent).await;
        Arc::into_inner(sender)
            .expect("the only sender")
            .close()
            .await;
        let complete = || {
            let delivered = delivered.lock().unwrap();
            sent.iter().all(|(stream, sent)| {
                delivered.get(stream).map(Vec::len) >= Some(sent.payloads.len())
            })
        };
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !complete() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Anything after the last would be a duplicate.
        tokio::time::sleep(Duration::from_millis(100)).await;
        check_streams(seed, &sent, &delivered.lock().unwrap());
        let counts: Vec<String> = sent
            .iter()
            .map(|(stream, sent)| format!("{stream:?}: {}", sent.payloads.len()))
            .collect();
        println!(
            "{case}: stream signals delivered once each, in order: {}",
            counts.join(", ")
        );
    }
    let stats = proxy.stats();
    print_stats(case, &stats);
    println!("{case}: {wild:?} cutting, {answered_after:?} until every request was answered");
    assert!(
        client.session().is_some(),
        "seed {seed}: the session was lost"
    );
    client.close().await;
    drop(client);
    let (reconnects, unexpected) = watched.await.expect("event reader");
    println!("{case}: {reconnects} reconnections");
    assert!(
        unexpected.is_empty(),
        "seed {seed}: unexpected {unexpected:?}"
    );
    assert!(
        stats.cuts >= cuts / 2,
        "seed {seed}: only {} cuts",
        stats.cuts
    );
    assert!(
        stats.cuts_with_requests_in_flight > 0,
        "seed {seed}: no cut with a request in flight"
    );
    assert!(stats.cuts_mid_frame > 0, "seed {seed}: no cut mid-frame");
    if streams.is_some() {
        assert!(
            stats.cuts_with_signals_in_flight > 0,
            "seed {seed}: no cut with a signal in flight"
        );
    }
    KeyedRun {
        seed,
        outcomes,
        stats,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_requests_and_streams_survive_cuts_on_one_node() {
    keyed_on_one_node(CUTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak test: 2,000 cuts; run by hand, figures in BENCHMARKS.md"]
async fn soak_keyed_requests_and_streams_on_one_node() {
    keyed_on_one_node(SOAK_CUTS).await;
}

async fn keyed_on_one_node(cuts: u64) {
    let runs = Arc::new(Runs::default());
    let (server, addr) = start_server(runs.clone()).await;
    let run = keyed_through_cuts(
        "keyed requests and streams, one node",
        vec![addr],
        cuts,
        Some(Source::InProcess(server.clone())),
    )
    .await;
    // One live node with its in-memory ledger: every retry finds its key,
    // so no request may end with outcome unknown.
    let answered = check_keyed(
        run.seed,
        &run.outcomes,
        &runs.snapshot(),
        |key| format!("{key}:1"),
        0,
    );
    println!("{answered} keyed requests answered, each run once");
    assert!(answered > 0);
    server.shutdown().await;
}

/// An interop server process (`serve --redis`), killed when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn start(redis: &str, id: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webwire-interop"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--redis",
                redis,
                "--node-id",
                id,
            ])
            .env(
                "RUST_LOG",
                std::env::var("WEBWIRE_CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start webwire-interop serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        // Keep reading so that the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("node {id}: unexpected first line {line:?}"))
            .parse()
            .expect("its address");
        Self { child, addr }
    }

    /// The `counter` of each key on this node, asked directly (not through
    /// the proxy), many at a time.
    async fn counters(&self, keys: &[String]) -> HashMap<String, usize> {
        let client = Client::connect(&format!("ws://{}/", self.addr))
            .await
            .expect("connect to the node");
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(keys.len().div_ceil(16).max(1)) {
            let client = client.clone();
            let chunk = chunk.to_vec();
            tasks.spawn(async move {
                let mut got = Vec::new();
                for key in chunk {
                    let reply = client
                        .request("counter", key.clone())
                        .await
                        .expect("counter");
                    let n: usize = reply.to_text().expect("text").parse().expect("a number");
                    got.push((key, n));
                }
                got
            });
        }
        let mut counters = HashMap::new();
        while let Some(got) = tasks.join_next().await {
            counters.extend(got.expect("counter task"));
        }
        client.close().await;
        counters
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_requests_survive_cuts_across_two_nodes_on_redis() {
    keyed_on_two_nodes(CUTS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_requests_and_streams_survive_cuts_across_two_nodes_on_redis() {
    keyed_on_two_nodes(CUTS, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak test: 2,000 cuts; run by hand, figures in BENCHMARKS.md"]
async fn soak_keyed_requests_across_two_nodes_on_redis() {
    keyed_on_two_nodes(SOAK_CUTS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak test: 2,000 cuts; run by hand, figures in BENCHMARKS.md"]
async fn soak_keyed_requests_and_streams_across_two_nodes_on_redis() {
    keyed_on_two_nodes(SOAK_CUTS, true).await;
}

async fn keyed_on_two_nodes(cuts: u64, streams: bool) {
    let redis = redis_or_skip!();
    let nodes = [
        Node::start(&redis.url(), "a"),
        Node::start(&redis.url(), "b"),
    ];
    let run = keyed_through_cuts(
        "keyed requests, two nodes on Redis",
        nodes.iter().map(|n| n.addr).collect(),
        cuts,
        // Sent through node a; the client gets them on whichever node it is.
        streams.then(|| Source::Node(nodes[0].addr)),
    )
    .await;
    // How often each key ran: the sum of both nodes' counters.
    let keys: Vec<String> = run.outcomes.results.keys().cloned().collect();
    let mut runs: HashMap<String, usize> = HashMap::new();
    let counting = std::time::Instant::now();
    for node in &nodes {
        for (key, n) in node.counters(&keys).await {
            if n > 0 {
                *runs.entry(key).or_default() += n;
            }
        }
    }
    println!("counters read in {:?}", counting.elapsed());
    // Both nodes are alive and share the Redis ledger: a retry on the
    // other node finds the first run (done, or running under its lease),
    // so no request may end with outcome unknown.
    let answered = check_keyed(run.seed, &run.outcomes, &runs, |_| "1".to_owned(), 0);
    println!(
        "{answered} keyed requests answered, each run once, over {} connections",
        run.stats.connections
    );
    assert!(answered > 0);
}
