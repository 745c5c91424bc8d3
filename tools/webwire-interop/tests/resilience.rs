//! Webwire 2.1 end to end through the fault-injecting proxy (issue 14):
//! the Rust client against a server on 127.0.0.1 while the proxy cuts
//! the connection at random points in both directions, mid-frame
//! included, discarding what it held. Under a steady stream of keyed
//! requests, every handler runs at most once per key and every caller
//! gets exactly one answer; the proxy's figures show that the cuts landed
//! while requests were in flight.
//!
//! A failing run prints its seed; `WEBWIRE_CHAOS_SEED=N` replays the cut
//! points (the timing of the workload still varies).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webwire_client::{Client, ClientEvent, RequestError};
use webwire_faultproxy::{FaultProxy, Stats};
use webwire_server::options::Concurrency;
use webwire_server::session::MemorySessionManager;
use webwire_server::{Connection, MessageRouter, Payload, ReplyError, Server};

/// Cuts per case in CI.
const CUTS: u64 = 100;
/// Bytes between two cuts of one direction.
const CUT_AFTER: std::ops::RangeInclusive<u64> = 256..=4096;
/// Requests each worker keeps going at a time (one after the other).
const WORKERS: usize = 8;
/// The workload stops after this long even if the proxy cut less often.
const WILD_FOR: Duration = Duration::from_secs(15);
/// How long the calm phase may take to answer every request.
const DRAIN: Duration = Duration::from_secs(30);

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
                    &format!("{key}:1"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_requests_survive_cuts_on_one_node() {
    let seed = seed();
    let runs = Arc::new(Runs::default());
    let (server, addr) = start_server(runs.clone()).await;
    let proxy = FaultProxy::builder([addr])
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
        .connect()
        .await
        .expect("connect");
    let mut events = client.events();
    client.request("login", "").await.expect("login");

    proxy.set_cutting(true);
    let stop = Arc::new(AtomicBool::new(false));
    let workload = tokio::spawn({
        let client = client.clone();
        let stop = stop.clone();
        async move { keyed_workload(&client, stop).await }
    });
    let deadline = tokio::time::Instant::now() + WILD_FOR;
    while proxy.stats().cuts < CUTS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set_cutting(false);
    stop.store(true, Ordering::SeqCst);
    let outcomes = tokio::time::timeout(DRAIN, workload)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: requests still unanswered after {DRAIN:?}"))
        .expect("workload");

    let stats = proxy.stats();
    print_stats("keyed requests, one node", &stats);
    // One live node with its in-memory ledger: every retry finds its key,
    // so no request may end with outcome unknown.
    let answered = check_keyed(seed, &outcomes, &runs.snapshot(), 0);
    println!("{answered} keyed requests answered, each run once");
    while let Some(event) = events.try_recv() {
        assert!(
            !matches!(
                event,
                ClientEvent::OrphanReply { .. } | ClientEvent::Lagged(_)
            ),
            "seed {seed}: unexpected {event:?}"
        );
    }
    assert!(
        stats.cuts >= CUTS / 2,
        "seed {seed}: only {} cuts",
        stats.cuts
    );
    assert!(
        stats.cuts_with_requests_in_flight > 0,
        "seed {seed}: no cut with a request in flight"
    );
    assert!(stats.cuts_mid_frame > 0, "seed {seed}: no cut mid-frame");
    assert!(answered > 0);
    assert!(
        client.session().is_some(),
        "seed {seed}: the session was lost"
    );
    client.close().await;
    server.shutdown().await;
}
