//! `RedisLedger` against a real redis-server: the decision table and
//! bounds of the in-memory ledger, and what only Redis has: two ledgers
//! (nodes) on one Redis (one run for concurrent begins, a retry on one
//! node waiting for a run on the other), leases that lapse in real time and
//! fence a late finish out, a Redis restarted empty, a paused Redis.
//!
//! Leases and ages here are short (half a second) where a test waits for
//! one to pass, and long where that would be a failure; what a test checks
//! within such a bound is done in a few Redis calls.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use webwire_core::ledger::{
    Begin, Finish, Lease, LedgerLimits, LedgerRequest, LedgerScope, Lookup, RequestDigest,
    RequestLedger, RunOutcome, StoredReply,
};
use webwire_proto::Encoding;
use webwire_redis::redis::AsyncCommands as _;
use webwire_redis::{RedisLedger, RedisSessionError, RedisStoreConfig};

const SESSION: &str = "session-key";
const INSTANCE: &str = "instance-0123456789";
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Slack for a loaded machine on top of a bound a test waits for.
const SLACK: Duration = Duration::from_secs(2);

fn config() -> RedisStoreConfig {
    RedisStoreConfig::new()
        .with_prefix("t:")
        .with_op_timeout(OP_TIMEOUT)
}

async fn ledger_with(server: &common::RedisServer, limits: LedgerLimits) -> RedisLedger {
    RedisLedger::connect(&server.url(), config(), limits)
        .await
        .unwrap()
}

async fn ledger(server: &common::RedisServer) -> RedisLedger {
    ledger_with(server, LedgerLimits::default()).await
}

fn scope() -> LedgerScope {
    LedgerScope::new(SESSION, INSTANCE)
}

fn digest(name: &str) -> RequestDigest {
    RequestDigest::new(name.as_bytes(), Encoding::Utf8, b"payload")
}

async fn request(ledger: &RedisLedger, seq: u64, ack: u64) -> LedgerRequest {
    LedgerRequest {
        seq,
        epoch: ledger.epoch().await.unwrap(),
        ack,
        digest: digest("pay"),
    }
}

/// A binary reply whose payload is `body`.
fn reply(body: &[u8]) -> StoredReply {
    let mut frame = vec![191, 9, 9, 9, 9, 9, 9, 9, 9];
    frame.extend_from_slice(body);
    StoredReply::from_frame(Bytes::from(frame)).unwrap()
}

async fn begin(ledger: &RedisLedger, request: &LedgerRequest) -> Begin {
    ledger.begin(&scope(), request).await.unwrap()
}

async fn lookup(ledger: &RedisLedger, request: &LedgerRequest) -> Lookup {
    ledger.lookup(&scope(), request).await.unwrap()
}

async fn run(ledger: &RedisLedger, request: &LedgerRequest) -> Lease {
    match begin(ledger, request).await {
        Begin::Run(lease) => lease,
        other => panic!("expected a run, got {other:?}"),
    }
}

async fn complete(ledger: &RedisLedger, request: &LedgerRequest, body: &[u8]) -> Finish {
    let lease = run(ledger, request).await;
    ledger.finish(lease, reply(body)).await.unwrap()
}

fn stored(begin: &Begin) -> Option<Vec<u8>> {
    match begin {
        Begin::Stored(reply) => Some(reply.body().to_vec()),
        _ => None,
    }
}

fn is_unknown(begin: &Begin) -> bool {
    matches!(begin, Begin::Unknown)
}

#[tokio::test]
async fn the_decision_table_as_in_memory() {
    let server = redis_or_skip!();
    let ledger = ledger(&server).await;
    let epoch = ledger.epoch().await.unwrap();
    assert_ne!(epoch, 0);
    assert_eq!(ledger.epoch().await.unwrap(), epoch, "made once");

    // Bad keys, before anything (even under another epoch).
    for (seq, ack) in [(0, 0), (3, 3), (3, 4)] {
        let bad = request(&ledger, seq, ack).await;
        assert!(matches!(begin(&ledger, &bad).await, Begin::BadKey));
        assert!(matches!(lookup(&ledger, &bad).await, Lookup::BadKey));
        let other = LedgerRequest {
            epoch: epoch ^ 1,
            ..bad
        };
        assert!(matches!(begin(&ledger, &other).await, Begin::BadKey));
    }
    // Another epoch: unknown, and nothing recorded.
    let old = LedgerRequest {
        epoch: epoch ^ 1,
        ..request(&ledger, 1, 0).await
    };
    assert!(is_unknown(&begin(&ledger, &old).await));
    let mut raw = server.raw().await;
    let keys: Vec<String> = raw.keys("t:ledger:*:*").await.unwrap();
    assert!(keys.iter().all(|key| !key.contains(SESSION)), "{keys:?}");

    // A finished request answers its retries from the store, under the
    // retry's id.
    let first = request(&ledger, 1, 0).await;
    assert_eq!(complete(&ledger, &first, b"paid").await, Finish::Stored);
    assert_eq!(
        stored(&begin(&ledger, &first).await),
        Some(b"paid".to_vec())
    );
    // A live scope expires the idle timeout after its last use, from the
    // begin that made it on (a node may die before its finish).
    let fresh = LedgerScope::new("fresh-session", INSTANCE);
    let Begin::Run(_lease) = ledger.begin(&fresh, &first).await.unwrap() else {
        panic!("run");
    };
    for key in [
        format!("t:ledger:h:19:{INSTANCE}:fresh-session"),
        "t:ledger:s:fresh-session".to_owned(),
        format!("t:ledger:z:19:{INSTANCE}:{SESSION}"),
    ] {
        let ttl: i64 = raw.pttl(&key).await.unwrap();
        assert!((86_000_000..=86_400_000).contains(&ttl), "{key}: {ttl}");
    }
    let Begin::Stored(again) = begin(&ledger, &first).await else {
        panic!("stored");
    };
    assert_eq!(
        &again.to_frame(webwire_proto::RequestId::from(5))[..],
        b"\xbf\x05\x00\x00\x00\x00\x00\x00\x00paid"
    );

    // A key reused for another request, running and done.
    let two = request(&ledger, 2, 0).await;
    let other = LedgerRequest {
        digest: digest("refund"),
        ..two
    };
    let lease = run(&ledger, &two).await;
    assert!(matches!(begin(&ledger, &other).await, Begin::KeyReused));
    assert!(matches!(lookup(&ledger, &other).await, Lookup::KeyReused));
    // Every reply type round-trips, the error reply included.
    let error = StoredReply::from_frame(Bytes::from_static(
        b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x04CODEbad \xff",
    ))
    .unwrap();
    assert_eq!(
        ledger.finish(lease, error.clone()).await.unwrap(),
        Finish::Stored
    );
    assert!(matches!(begin(&ledger, &other).await, Begin::KeyReused));
    assert!(matches!(begin(&ledger, &two).await, Begin::Stored(r) if r == error));

    // Keys below the marks without an entry are unknown.
    complete(&ledger, &request(&ledger, 4, 2).await, b"d").await;
    // 1 and 2 were acknowledged with 4; 3 was skipped by the client.
    for seq in [1, 2, 3] {
        assert!(is_unknown(
            &begin(&ledger, &request(&ledger, seq, 0).await).await
        ));
    }
    // Above the high-water mark (4) but acknowledged (7): never runs.
    ledger.acknowledge(&scope(), 7).await.unwrap();
    assert!(is_unknown(
        &begin(&ledger, &request(&ledger, 6, 5).await).await
    ));
    assert!(matches!(
        lookup(&ledger, &request(&ledger, 7, 5).await).await,
        Lookup::Unknown
    ));
    assert!(matches!(
        begin(&ledger, &request(&ledger, 8, 7).await).await,
        Begin::Run(_)
    ));
    // Acknowledging a scope the ledger does not hold does nothing.
    ledger
        .acknowledge(&LedgerScope::new("other", INSTANCE), 9)
        .await
        .unwrap();
    let keys: Vec<String> = raw.keys("t:ledger:h:*other").await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn acknowledgements_and_bounds_release_replies() {
    let server = redis_or_skip!();
    let ledger = ledger(&server).await;
    for seq in 1..=3 {
        complete(&ledger, &request(&ledger, seq, 0).await, b"x").await;
    }
    ledger.acknowledge(&scope(), 2).await.unwrap();
    assert!(is_unknown(
        &begin(&ledger, &request(&ledger, 2, 0).await).await
    ));
    assert_eq!(
        stored(&begin(&ledger, &request(&ledger, 3, 0).await).await),
        Some(b"x".to_vec())
    );

    // Acknowledged while running: not kept, but its waiter has it.
    let five = request(&ledger, 5, 3).await;
    let lease = run(&ledger, &five).await;
    let Begin::Running(wait) = begin(&ledger, &five).await else {
        panic!("running");
    };
    ledger.acknowledge(&scope(), 5).await.unwrap();
    assert_eq!(
        ledger.finish(lease, reply(b"z")).await.unwrap(),
        Finish::NotKept
    );
    assert_eq!(wait.await, RunOutcome::Reply(reply(b"z")));
    assert!(is_unknown(&begin(&ledger, &five).await));

    // The count bound releases the oldest by finish time: 7 finishes
    // last, so 8 is the oldest.
    let counted = LedgerScope::new(SESSION, "counted-instance-id");
    let small = ledger_with(
        &server,
        LedgerLimits {
            max_replies: 2,
            max_bytes: 40,
            ..LedgerLimits::default()
        },
    )
    .await;
    let epoch = small.epoch().await.unwrap();
    let req = |seq| async move { request_with(epoch, seq) };
    let seven = match small.begin(&counted, &req(7).await).await.unwrap() {
        Begin::Run(lease) => lease,
        other => panic!("{other:?}"),
    };
    for seq in [8, 9] {
        let Begin::Run(lease) = small.begin(&counted, &req(seq).await).await.unwrap() else {
            panic!("run");
        };
        assert_eq!(
            small.finish(lease, reply(&[1; 10])).await.unwrap(),
            Finish::Stored
        );
        // Finish times differ by Redis' millisecond clock.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(
        small.finish(seven, reply(b"7")).await.unwrap(),
        Finish::Stored
    );
    let got = |seq| {
        let (small, counted) = (small.clone(), counted.clone());
        async move { small.begin(&counted, &request_with(epoch, seq)).await }
    };
    assert!(is_unknown(&got(8).await.unwrap()));
    assert_eq!(stored(&got(7).await.unwrap()), Some(b"7".to_vec()));
    assert_eq!(stored(&got(9).await.unwrap()), Some(vec![1; 10]));
    // One more: the oldest now, 9, goes.
    let Begin::Run(lease) = small.begin(&counted, &req(10).await).await.unwrap() else {
        panic!("run");
    };
    assert_eq!(
        small.finish(lease, reply(&[2; 10])).await.unwrap(),
        Finish::Stored
    );
    assert!(is_unknown(&got(9).await.unwrap()));
    assert_eq!(stored(&got(7).await.unwrap()), Some(b"7".to_vec()));
    // A reply larger than the bound: its waiter (on another node) has
    // it, retries do not.
    let other_node = ledger_with(&server, *small.limits()).await;
    let Begin::Run(lease) = small.begin(&counted, &req(11).await).await.unwrap() else {
        panic!("run");
    };
    let Begin::Running(wait) = other_node.begin(&counted, &req(11).await).await.unwrap() else {
        panic!("running");
    };
    let big = [3u8; 41];
    assert_eq!(
        small.finish(lease, reply(&big)).await.unwrap(),
        Finish::NotKept
    );
    assert_eq!(wait.await, RunOutcome::Reply(reply(&big)));
    assert!(is_unknown(&got(11).await.unwrap()));
    assert_eq!(stored(&got(10).await.unwrap()), Some(vec![2; 10]));
}

#[tokio::test]
async fn the_age_bound_releases_replies_but_not_the_marks() {
    let server = redis_or_skip!();
    let ledger = ledger_with(
        &server,
        LedgerLimits {
            max_age: Duration::from_millis(500),
            ..LedgerLimits::default()
        },
    )
    .await;
    complete(&ledger, &request(&ledger, 1, 0).await, b"a").await;
    assert!(stored(&begin(&ledger, &request(&ledger, 1, 0).await).await).is_some());
    tokio::time::sleep(Duration::from_millis(550)).await;
    // The reply is gone; the key is still known as old.
    assert!(is_unknown(
        &begin(&ledger, &request(&ledger, 1, 0).await).await
    ));
    let mut raw = server.raw().await;
    let bytes: Option<i64> = raw
        .hget(format!("t:ledger:h:19:{INSTANCE}:{SESSION}"), "b")
        .await
        .unwrap();
    assert_eq!(bytes, Some(0), "its bytes were given back");
}

#[tokio::test]
async fn a_retry_on_another_node_waits_for_the_run_and_gets_its_reply() {
    let server = redis_or_skip!();
    // Polling every 10 s: only the wake notice can end the wait in time.
    // A prefix with a space: channel names hold it.
    let slow_poll = config()
        .with_prefix("t x:")
        .with_poll_interval(Duration::from_secs(10));
    let url = server.url();
    let connect = || RedisLedger::connect(&url, slow_poll.clone(), LedgerLimits::default());
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let pay = request(&a, 1, 0).await;
    let lease = run(&a, &pay).await;
    let Begin::Running(first) = begin(&b, &pay).await else {
        panic!("running");
    };
    let Lookup::Running(second) = lookup(&b, &pay).await else {
        panic!("running");
    };
    let Begin::Running(local) = begin(&a, &pay).await else {
        panic!("running");
    };
    let waiting = tokio::spawn(async move { (first.await, second.await, local.await) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let started = Instant::now();
    assert_eq!(a.finish(lease, reply(b"r")).await.unwrap(), Finish::Stored);
    let outcomes = tokio::time::timeout(SLACK, waiting)
        .await
        .expect("woken, not polled")
        .unwrap();
    assert!(started.elapsed() < SLACK);
    let expected = RunOutcome::Reply(reply(b"r"));
    assert_eq!(outcomes, (expected.clone(), expected.clone(), expected));
}

#[tokio::test]
async fn concurrent_begins_on_two_nodes_run_once() {
    let server = redis_or_skip!();
    let nodes = [ledger(&server).await, ledger(&server).await];
    for seq in 1..=3u64 {
        let pay = request(&nodes[0], seq, seq - 1).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks = (0..16)
            .map(|i| {
                let ledger = nodes[i % 2].clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    match ledger.begin(&scope(), &pay).await.unwrap() {
                        Begin::Run(lease) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            ledger.finish(lease, reply(b"once")).await.unwrap();
                            (1, RunOutcome::Reply(reply(b"once")))
                        }
                        Begin::Running(wait) => (0, wait.await),
                        Begin::Stored(reply) => (0, RunOutcome::Reply(reply)),
                        other => panic!("unexpected {other:?}"),
                    }
                })
            })
            .collect::<Vec<_>>();
        let mut runs = 0;
        for task in tasks {
            let (ran, outcome) = task.await.unwrap();
            runs += ran;
            assert_eq!(outcome, RunOutcome::Reply(reply(b"once")));
        }
        assert_eq!(runs, 1, "seq {seq}");
    }
}

#[tokio::test]
async fn a_lapsed_lease_stores_nothing_and_a_late_finish_is_fenced_out() {
    let server = redis_or_skip!();
    let lease_ttl = Duration::from_millis(500);
    let limits = LedgerLimits {
        lease_ttl,
        ..LedgerLimits::default()
    };
    let (a, b) = (
        ledger_with(&server, limits).await,
        ledger_with(&server, limits).await,
    );

    // A node that hung: its lease lapses; the retry on the other node
    // waiting for it learns "unknown" at the lease's end, never hangs.
    let pay = request(&a, 1, 0).await;
    let lease = run(&a, &pay).await;
    let Begin::Running(wait) = begin(&b, &pay).await else {
        panic!("running");
    };
    let started = Instant::now();
    assert_eq!(
        tokio::time::timeout(lease_ttl + SLACK, wait).await,
        Ok(RunOutcome::Unknown)
    );
    assert!(started.elapsed() >= lease_ttl - Duration::from_millis(50));
    assert!(!a.renew(&lease).await.unwrap());
    assert!(is_unknown(&begin(&b, &pay).await));
    assert_eq!(
        a.finish(lease, reply(b"late")).await.unwrap(),
        Finish::LeaseLost
    );
    assert!(is_unknown(&begin(&a, &pay).await));
    assert!(matches!(lookup(&a, &pay).await, Lookup::Unknown));

    // Nothing looked at the marker since it lapsed: the finish itself
    // refuses (compare-and-set on the deadline).
    let two = request(&a, 2, 0).await;
    let lease = run(&a, &two).await;
    tokio::time::sleep(lease_ttl + Duration::from_millis(50)).await;
    assert_eq!(
        a.finish(lease, reply(b"late")).await.unwrap(),
        Finish::LeaseLost
    );
    assert!(is_unknown(&begin(&b, &two).await));

    // A lease presented by another node (another incarnation) is not
    // held there, even with the right token.
    let three = request(&a, 3, 0).await;
    let lease = run(&a, &three).await;
    let forged = Lease::new(lease.scope().clone(), lease.seq(), lease.token());
    assert!(!b.renew(&forged).await.unwrap());
    assert_eq!(
        b.finish(forged, reply(b"forged")).await.unwrap(),
        Finish::LeaseLost
    );
    assert_eq!(a.finish(lease, reply(b"ok")).await.unwrap(), Finish::Stored);
    assert_eq!(stored(&begin(&b, &three).await), Some(b"ok".to_vec()));
}

#[tokio::test]
async fn a_renewed_lease_outlives_the_lease_time() {
    let server = redis_or_skip!();
    let lease_ttl = Duration::from_millis(500);
    let ledger = ledger_with(
        &server,
        LedgerLimits {
            lease_ttl,
            ..LedgerLimits::default()
        },
    )
    .await;
    let pay = request(&ledger, 1, 0).await;
    let lease = run(&ledger, &pay).await;
    let Begin::Running(wait) = begin(&ledger, &pay).await else {
        panic!("running");
    };
    let waiting = tokio::spawn(wait);
    for _ in 0..5 {
        tokio::time::sleep(lease_ttl / 4).await;
        assert!(ledger.renew(&lease).await.unwrap());
    }
    assert!(!waiting.is_finished());
    assert!(matches!(begin(&ledger, &pay).await, Begin::Running(_)));
    assert_eq!(
        ledger.finish(lease, reply(b"ok")).await.unwrap(),
        Finish::Stored
    );
    assert_eq!(waiting.await.unwrap(), RunOutcome::Reply(reply(b"ok")));
}

#[tokio::test]
async fn a_dropped_lease_gives_the_run_up_at_once() {
    let server = redis_or_skip!();
    // Leases of an hour: only giving up can end these waits.
    let limits = LedgerLimits {
        lease_ttl: Duration::from_secs(3600),
        ..LedgerLimits::default()
    };
    let (a, b) = (
        ledger_with(&server, limits).await,
        ledger_with(&server, limits).await,
    );
    for seq in [1, 2] {
        let pay = request(&a, seq, 0).await;
        let lease = run(&a, &pay).await;
        let Begin::Running(wait) = begin(&b, &pay).await else {
            panic!("running");
        };
        let handler = tokio::spawn(async move {
            let _lease = lease;
            if seq == 1 {
                panic!("the handler failed");
            }
            std::future::pending::<()>().await;
        });
        if seq == 2 {
            tokio::task::yield_now().await;
            handler.abort();
        }
        assert!(handler.await.is_err());
        assert_eq!(
            tokio::time::timeout(SLACK, wait).await,
            Ok(RunOutcome::Unknown)
        );
        assert!(is_unknown(&begin(&b, &pay).await));
    }
}

#[tokio::test]
async fn a_closed_session_stays_answerable_for_the_age_bound() {
    let server = redis_or_skip!();
    let ledger = ledger(&server).await;
    let limits = *ledger.limits();
    // The logout closes its own session while it runs.
    let logout = request(&ledger, 1, 0).await;
    let lease = run(&ledger, &logout).await;
    ledger.session_closed(SESSION).await.unwrap();
    assert_eq!(
        ledger.finish(lease, reply(b"bye")).await.unwrap(),
        Finish::Stored
    );
    let Lookup::Stored(again) = lookup(&ledger, &logout).await else {
        panic!("stored");
    };
    assert_eq!(&again.body()[..], b"bye");
    // Never accepted: not run; another epoch: unknown; another instance:
    // not retained.
    assert!(matches!(
        lookup(&ledger, &request(&ledger, 2, 1).await).await,
        Lookup::NotRun
    ));
    let old = LedgerRequest {
        epoch: logout.epoch ^ 1,
        ..logout
    };
    assert!(matches!(lookup(&ledger, &old).await, Lookup::Unknown));
    assert!(matches!(
        ledger
            .lookup(&LedgerScope::new(SESSION, "another-instance-id"), &logout)
            .await
            .unwrap(),
        Lookup::Unretained
    ));
    // A lookup never runs, nor records.
    assert!(matches!(
        lookup(&ledger, &request(&ledger, 2, 1).await).await,
        Lookup::NotRun
    ));
    // The scope expires after the age bound and a lease (Redis drops it),
    // from the close: lookups do not extend it.
    let mut raw = server.raw().await;
    let scope_key = format!("t:ledger:h:19:{INSTANCE}:{SESSION}");
    let _: () = raw.pexpire(&scope_key, 60_000).await.unwrap();
    assert!(matches!(
        lookup(&ledger, &request(&ledger, 2, 0).await).await,
        Lookup::NotRun
    ));
    let ttl: i64 = raw.pttl(&scope_key).await.unwrap();
    assert!((0..=60_000).contains(&ttl), "{ttl}");
    let most = limits.max_age + limits.lease_ttl;
    for key in [
        format!("t:ledger:h:19:{INSTANCE}:{SESSION}"),
        format!("t:ledger:s:{SESSION}"),
    ] {
        let ttl: i64 = raw.pttl(&key).await.unwrap();
        let most = i64::try_from(most.as_millis()).unwrap();
        assert!(ttl > 0 && ttl <= most, "{key}: {ttl}");
    }
    // Closing a session the ledger never saw, or an invalid key, is fine.
    ledger.session_closed("never-seen").await.unwrap();
    ledger.session_closed("").await.unwrap();
}

#[tokio::test]
async fn redis_restarted_empty_is_a_new_epoch() {
    let mut server = redis_or_skip!();
    let ledger = ledger(&server).await;
    let pay = request(&ledger, 1, 0).await;
    complete(&ledger, &pay, b"done").await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let epoch = loop {
        match ledger.epoch().await {
            Ok(epoch) => break epoch,
            Err(err) => assert!(Instant::now() < deadline, "{err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(epoch, pay.epoch);
    // The retry of a request sent before: unknown, never a second run.
    assert!(is_unknown(&begin(&ledger, &pay).await));
    assert!(matches!(lookup(&ledger, &pay).await, Lookup::Unretained));
    let fresh = request(&ledger, 2, 0).await;
    assert_eq!(fresh.epoch, epoch);
    assert!(matches!(begin(&ledger, &fresh).await, Begin::Run(_)));
}

#[tokio::test]
async fn a_paused_redis_fails_calls_in_time_and_waits_end() {
    let server = redis_or_skip!();
    let lease_ttl = Duration::from_millis(500);
    let ledger = ledger_with(
        &server,
        LedgerLimits {
            lease_ttl,
            ..LedgerLimits::default()
        },
    )
    .await;
    let pay = request(&ledger, 1, 0).await;
    let _lease = run(&ledger, &pay).await;
    let Begin::Running(wait) = begin(&ledger, &pay).await else {
        panic!("running");
    };
    server.pause();
    let started = Instant::now();
    let err = ledger
        .begin(&scope(), &request_with(pay.epoch, 2))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // The wait cannot read Redis: it ends unknown after the lease.
    let outcome = tokio::time::timeout(lease_ttl + OP_TIMEOUT + SLACK, wait).await;
    server.resume();
    assert!(elapsed < OP_TIMEOUT + SLACK, "{elapsed:?}");
    assert!(
        err.to_string().contains("deciding a keyed request"),
        "{err}"
    );
    assert!(!err.to_string().contains(SESSION), "{err}");
    let source = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<RedisSessionError>());
    assert!(
        matches!(
            source,
            Some(RedisSessionError::Timeout(_) | RedisSessionError::Redis(_))
        ),
        "{source:?}"
    );
    assert_eq!(outcome, Ok(RunOutcome::Unknown));
}

fn request_with(epoch: u64, seq: u64) -> LedgerRequest {
    LedgerRequest {
        seq,
        epoch,
        ack: 0,
        digest: digest("pay"),
    }
}

#[tokio::test]
async fn invalid_scopes_never_reach_redis_and_keys_never_show() {
    let server = redis_or_skip!();
    let ledger = ledger(&server).await;
    let pay = request(&ledger, 1, 0).await;
    let err = ledger
        .begin(&LedgerScope::new("bad\nkey", INSTANCE), &pay)
        .await
        .unwrap_err();
    let source = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<RedisSessionError>());
    assert!(
        matches!(source, Some(RedisSessionError::InvalidName(_))),
        "{source:?}"
    );
    let lease = run(&ledger, &pay).await;
    let shown = format!("{ledger:?} {lease:?} {err}");
    assert!(
        !shown.contains(SESSION) && !shown.contains("bad\nkey"),
        "{shown}"
    );
}
