//! Webwire 2.1 opt-in and keyed requests (docs/protocol.md 14.1, 14.4)
//! end to end, over raw frames on in-memory connections under paused time:
//! the opt-in and what a 2.0 client sees; every row of the server's
//! decision table; a retry while the run is under way; a retry on a new
//! connection after the first dropped mid-handler; a restarted server;
//! acknowledgements and each bound; a panicking handler; the timeout; the
//! lease renewal; a logout whose answer was lost; graceful shutdown while a
//! handler runs detached. Handler runs are counted.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, reply_text, within, TestClient};
use tokio::sync::Semaphore;
use webwire_proto::{
    ClientMessage, ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, KeyedRequest, Name,
    Payload, Request, RequestId, RequestKey, ServerMessage,
};
use webwire_server::ledger::{
    Begin, LedgerLimits, LedgerRequest, LedgerScope, MemoryLedger, RequestDigest, RequestLedger,
    BAD_KEY, KEY_REUSED, NO_SESSION,
};
use webwire_server::options::Concurrency;
use webwire_server::session::{FileSessionManager, MemorySessionManager, SessionManager};
use webwire_server::{Connection, MessageRouter, ReplyError, Server, ServerBuilder};

const INSTANCE: &str = "instance-0123456789abcdef";

/// What the handlers did.
struct Runs {
    /// Runs of `incr` and `slow` (each adds one; the reply is the new count).
    count: AtomicUsize,
    logout: AtomicUsize,
    panic: AtomicUsize,
    /// `slow` waits for a permit here before it counts.
    gate: Semaphore,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            logout: AtomicUsize::new(0),
            panic: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        }
    }
}

impl Runs {
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn router(runs: &Arc<Runs>) -> MessageRouter {
    let (incr, slow, logout, panic) = (runs.clone(), runs.clone(), runs.clone(), runs.clone());
    MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("LOGIN", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        })
        .request("incr", move |_: Connection, _: Payload| {
            let runs = incr.clone();
            async move {
                let n = runs.count.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, ReplyError>(n.to_string())
            }
        })
        .request("slow", move |_: Connection, _: Payload| {
            let runs = slow.clone();
            async move {
                runs.gate.acquire().await.expect("gate open").forget();
                let n = runs.count.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, ReplyError>(n.to_string())
            }
        })
        .request("logout", move |conn: Connection, _: Payload| {
            let runs = logout.clone();
            async move {
                runs.logout.fetch_add(1, Ordering::SeqCst);
                let had = conn
                    .close_session()
                    .await
                    .map_err(|err| ReplyError::from_static("LOGOUT", err.to_string()))?;
                Ok::<_, ReplyError>(format!("logged out: {had}"))
            }
        })
        .request("panic", move |_: Connection, _: Payload| {
            let runs = panic.clone();
            async move {
                runs.panic.fetch_add(1, Ordering::SeqCst);
                if runs.panic.load(Ordering::SeqCst) > 0 {
                    panic!("a keyed handler panicked on purpose");
                }
                Ok::<_, ReplyError>("never")
            }
        })
}

fn builder(runs: &Arc<Runs>, sessions: &Arc<impl SessionManager>) -> ServerBuilder<MessageRouter> {
    Server::builder(router(runs))
        .session_manager(sessions.clone())
        // Tests advance the clock by minutes: no read timeout meanwhile.
        .read_timeout(Duration::from_secs(3600))
}

/// A server with a fresh session store.
fn server(runs: &Arc<Runs>) -> Server {
    builder(runs, &Arc::<MemorySessionManager>::default())
        .build()
        .expect("server")
}

/// Opts in with `flags`; returns the ExtensionAccept.
async fn opt_in(client: &mut TestClient, flags: FeatureFlags) -> ExtensionAccept {
    let id = InstanceId::new(Bytes::from_static(INSTANCE.as_bytes())).expect("instance id");
    let hello = ExtensionHello::new(flags, id).expect("hello");
    client.send(ClientMessage::ExtensionHello(hello)).await;
    match client.recv().await {
        ServerMessage::ExtensionAccept(accept) => accept,
        other => panic!("expected ExtensionAccept, got {other:?}"),
    }
}

/// A 2.1 client with a session: opted in, logged in. Returns the ledger
/// epoch and the session key.
async fn keyed_client(server: &Server) -> (TestClient, u64, String) {
    let mut client = TestClient::in_memory(server).await;
    let accept = opt_in(&mut client, FeatureFlags::KEYED_REQUESTS).await;
    assert_eq!(accept.flags, FeatureFlags::KEYED_REQUESTS);
    let key = reply_text(&client.request("login", Payload::default()).await);
    client.take_pending();
    (client, accept.ledger_epoch, key)
}

/// Another connection of the same client instance: opted in, `key`
/// restored (the restore's answer returned).
async fn reconnect(server: &Server, key: &str) -> (TestClient, ServerMessage) {
    let mut client = TestClient::in_memory(server).await;
    opt_in(&mut client, FeatureFlags::KEYED_REQUESTS).await;
    let restored = restore(&mut client, key).await;
    (client, restored)
}

async fn restore(client: &mut TestClient, key: &str) -> ServerMessage {
    let id = client.next_id();
    client
        .send(ClientMessage::RestoreSession {
            id,
            key: Bytes::from(key.to_owned()),
        })
        .await;
    client.reply_to(id).await
}

/// Sends a keyed request; returns its id.
async fn send_keyed(
    client: &mut TestClient,
    name: &str,
    payload: &str,
    (seq, epoch, ack): (u64, u64, u64),
) -> RequestId {
    let id = client.next_id();
    let request = Request::new(
        id,
        Name::try_from(name).expect("name"),
        Payload::utf8(payload.to_owned()),
    )
    .expect("request");
    let keyed = KeyedRequest::new(request, RequestKey { seq, epoch }, ack).expect("keyed");
    client.send(ClientMessage::KeyedRequest(keyed)).await;
    id
}

/// Sends a keyed request and waits for its answer.
async fn keyed(client: &mut TestClient, name: &str, key: (u64, u64, u64)) -> ServerMessage {
    let id = send_keyed(client, name, "", key).await;
    let answer = client.reply_to(id).await;
    assert_eq!(answer.request_id(), Some(id));
    answer
}

fn error_code(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Error(err) => err.code.as_str().to_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn is_unknown(message: &ServerMessage) -> bool {
    matches!(message, ServerMessage::OutcomeUnknown(_))
}

// ---------------------------------------------------------------------------
// The opt-in

#[tokio::test(start_paused = true)]
async fn opt_in_grants_keyed_requests_with_the_ledger_epoch() {
    let runs = Arc::new(Runs::default());
    let ledger = Arc::new(MemoryLedger::new());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .request_ledger(ledger.clone())
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    assert_eq!((client.conf.major, client.conf.minor), (2, 1));
    let accept = opt_in(&mut client, FeatureFlags::KNOWN).await;
    // Both features are offered by default.
    assert_eq!(accept.flags, FeatureFlags::KNOWN);
    assert_eq!(accept.ledger_epoch, ledger.current_epoch());
    assert_ne!(accept.ledger_epoch, 0);
    let conn = server.connections().pop().expect("one connection");
    assert_eq!(conn.features(), FeatureFlags::KNOWN);

    // Asking for streams only: no keyed requests, epoch 0.
    let mut other = TestClient::in_memory(&server).await;
    let accept = opt_in(&mut other, FeatureFlags::STREAMS).await;
    assert_eq!(
        (accept.flags, accept.ledger_epoch),
        (FeatureFlags::STREAMS, 0)
    );
    // ... and a keyed request from it is a violation.
    send_keyed(&mut other, "incr", "", (1, 1, 0)).await;
    assert_eq!(other.closed().await, Some(1002));
    assert_eq!(runs.count(), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_server_that_offers_nothing_announces_2_0_and_refuses_a_hello() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .extensions(FeatureFlags::NONE)
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    assert_eq!((client.conf.major, client.conf.minor), (2, 0));
    let id = InstanceId::new(Bytes::from_static(INSTANCE.as_bytes())).unwrap();
    let hello = ExtensionHello::new(FeatureFlags::KEYED_REQUESTS, id).unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    assert_eq!(client.closed().await, Some(1002));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_2_0_client_sees_no_2_1_message_and_a_keyed_request_from_it_closes_1002() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let mut client = TestClient::in_memory(&server).await;
    let key = reply_text(&client.request("login", Payload::default()).await);
    assert!(matches!(
        client.take_pending().as_slice(),
        [ServerMessage::SessionCreated(_)]
    ));
    assert_eq!(
        reply_text(&client.request("incr", Payload::default()).await),
        "1"
    );
    assert!(client.take_pending().is_empty());
    assert_eq!(server.connections()[0].features(), FeatureFlags::NONE);
    send_keyed(&mut client, "incr", "", (1, 1, 0)).await;
    assert_eq!(client.closed().await, Some(1002));
    assert!(client.take_pending().is_empty(), "nothing else was sent");
    assert_eq!(runs.count(), 1, "the keyed request did not run");

    // A late hello is a violation too.
    let mut late = TestClient::in_memory(&server).await;
    assert!(matches!(
        restore(&mut late, &key).await,
        ServerMessage::Reply(_)
    ));
    let id = InstanceId::new(Bytes::from_static(INSTANCE.as_bytes())).unwrap();
    let hello = ExtensionHello::new(FeatureFlags::KEYED_REQUESTS, id).unwrap();
    late.send(ClientMessage::ExtensionHello(hello)).await;
    assert_eq!(late.closed().await, Some(1002));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// The decision table (docs/protocol.md 14.4.2)

#[tokio::test(start_paused = true)]
async fn a_key_runs_once_and_its_retries_get_the_stored_reply_under_their_id() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut client, epoch, _) = keyed_client(&server).await;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    // Row 6: a retry (new request id) gets the stored reply, not a run.
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(runs.count(), 1);
    // Row 9: the next key runs.
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (2, epoch, 1)).await),
        "2"
    );
    assert_eq!(runs.count(), 2);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bad_keys_reused_keys_other_epochs_and_forgotten_keys_never_run() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut client, epoch, _) = keyed_client(&server).await;
    // Row 3: ack >= seq, checked before the epoch.
    assert_eq!(
        error_code(&keyed(&mut client, "incr", (2, epoch, 2)).await),
        BAD_KEY
    );
    assert_eq!(
        error_code(&keyed(&mut client, "incr", (2, epoch ^ 1, 5)).await),
        BAD_KEY
    );
    // Row 4: another ledger epoch.
    assert!(is_unknown(
        &keyed(&mut client, "incr", (2, epoch ^ 1, 0)).await
    ));
    assert_eq!(runs.count(), 0);

    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (3, epoch, 0)).await),
        "1"
    );
    // Row 5: the same seq for another request (name, or payload).
    assert_eq!(
        error_code(&keyed(&mut client, "slow", (3, epoch, 0)).await),
        KEY_REUSED
    );
    let id = send_keyed(&mut client, "incr", "other payload", (3, epoch, 0)).await;
    assert_eq!(error_code(&client.reply_to(id).await), KEY_REUSED);
    // Row 8: below the high-water mark without an entry.
    assert!(is_unknown(&keyed(&mut client, "incr", (2, epoch, 0)).await));
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_while_the_run_is_under_way_gets_that_runs_reply() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    let first = send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    let retry = send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    // Both are waiting: nothing answered yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs.count(), 0);
    runs.gate.add_permits(10);
    assert_eq!(reply_text(&client.reply_to(retry).await), "1");
    assert_eq!(reply_text(&client.reply_to(first).await), "1");
    assert_eq!(runs.count(), 1, "one run for two requests");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_goes_on_after_its_connection_dropped_and_answers_the_retry_on_a_new_one() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut first, epoch, key) = keyed_client(&server).await;
    send_keyed(&mut first, "slow", "", (1, epoch, 0)).await;
    eventually("the handler started", || server.connection_count() == 1).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(first);

    // The retry on a new connection finds the run still under way ...
    let (mut second, restored) = reconnect(&server, &key).await;
    assert!(matches!(restored, ServerMessage::Reply(_)), "{restored:?}");
    let retry = send_keyed(&mut second, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    runs.gate.add_permits(10);
    // ... and gets its reply when it ends.
    assert_eq!(reply_text(&second.reply_to(retry).await), "1");
    // A later retry gets it from the store.
    assert_eq!(
        reply_text(&keyed(&mut second, "slow", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_connection_is_gone_still_completes_and_stores_its_reply() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut first, epoch, key) = keyed_client(&server).await;
    send_keyed(&mut first, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    first.close().await;
    eventually("the connection ended", || server.connection_count() == 0).await;
    runs.gate.add_permits(1);
    eventually("the detached handler ran", || runs.count() == 1).await;

    let (mut second, _) = reconnect(&server, &key).await;
    assert_eq!(
        reply_text(&keyed(&mut second, "slow", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_retry_of_a_key_is_outcome_unknown_and_not_run() {
    restart_keeps_the_session_and_runs_no_key_twice(Arc::new(MemorySessionManager::new())).await;
}

/// The same with the default session store, files: the process restarts,
/// the session comes back from its file.
#[tokio::test]
async fn after_a_restart_with_file_sessions_the_retry_is_outcome_unknown_and_not_run() {
    let folder = tempfile::tempdir().unwrap();
    restart_keeps_the_session_and_runs_no_key_twice(Arc::new(FileSessionManager::new(
        folder.path(),
    )))
    .await;
}

/// A key answered before a restart: its retry after the restart is
/// "outcome unknown" (the in-memory ledger is new), never a second run;
/// the session survives in `sessions`.
async fn restart_keeps_the_session_and_runs_no_key_twice(sessions: Arc<impl SessionManager>) {
    let runs = Arc::new(Runs::default());
    let before = builder(&runs, &sessions).build().unwrap();
    let (mut client, epoch, key) = keyed_client(&before).await;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    drop(client);
    before.shutdown().await;

    // A new process: a new in-memory ledger, a new epoch; the session
    // survives in the store.
    let after = builder(&runs, &sessions).build().unwrap();
    let mut client = TestClient::in_memory(&after).await;
    let accept = opt_in(&mut client, FeatureFlags::KEYED_REQUESTS).await;
    assert_ne!(accept.ledger_epoch, epoch);
    assert!(matches!(
        restore(&mut client, &key).await,
        ServerMessage::Reply(_)
    ));
    assert!(is_unknown(&keyed(&mut client, "incr", (1, epoch, 0)).await));
    assert_eq!(runs.count(), 1, "never a second run");
    // New keys under the new epoch run.
    let new_epoch = accept.ledger_epoch;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (2, new_epoch, 1)).await),
        "2"
    );
    after.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_keyed_request_over_the_rate_limit_records_nothing_and_runs_when_sent_again() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .message_rate_per_connection(webwire_server::limits::Rate::per_minute(2).burst(2))
        .build()
        .unwrap();
    // The login takes one token, seq 1 the other.
    let (mut client, epoch, _) = keyed_client(&server).await;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(
        error_code(&keyed(&mut client, "incr", (2, epoch, 1)).await),
        "RATE_LIMITED"
    );
    assert_eq!(runs.count(), 1);
    // Nothing was recorded for seq 2: sent again later, it is new and runs.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (2, epoch, 1)).await),
        "2"
    );
    assert_eq!(runs.count(), 2);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Acknowledgements and bounds

#[tokio::test(start_paused = true)]
async fn an_acknowledged_reply_is_released_and_its_retry_is_outcome_unknown() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut client, epoch, _) = keyed_client(&server).await;
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (2, epoch, 0)).await),
        "2"
    );
    // Seq 3 acknowledges seq 1.
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (3, epoch, 1)).await),
        "3"
    );
    assert!(is_unknown(&keyed(&mut client, "incr", (1, epoch, 0)).await));
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (2, epoch, 1)).await),
        "2"
    );
    assert_eq!(runs.count(), 3);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stored_replies_are_bounded_by_count_bytes_and_age() {
    let runs = Arc::new(Runs::default());
    let limits = LedgerLimits {
        max_replies: 2,
        // Two replies of `incr` (10 bytes each), not an error reply.
        max_bytes: 20,
        max_age: Duration::from_secs(60),
        ..LedgerLimits::default()
    };
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .ledger_limits(limits)
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    for seq in 1..=3 {
        keyed(&mut client, "incr", (seq, epoch, 0)).await;
    }
    // Count: the oldest went.
    assert!(is_unknown(&keyed(&mut client, "incr", (1, epoch, 0)).await));
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (3, epoch, 0)).await),
        "3"
    );

    // Bytes: a reply larger than the bound is sent, not kept.
    let id = send_keyed(&mut client, "login", "", (4, epoch, 0)).await;
    let answer = client.reply_to(id).await;
    assert!(answer.encoded_len() > 20, "{answer:?}");
    assert_eq!(error_code(&answer), "LOGIN", "a second login fails");
    assert!(is_unknown(
        &keyed(&mut client, "login", (4, epoch, 0)).await
    ));

    // Age.
    assert_eq!(
        reply_text(&keyed(&mut client, "incr", (5, epoch, 0)).await),
        "4"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(is_unknown(&keyed(&mut client, "incr", (5, epoch, 0)).await));
    assert_eq!(runs.count(), 4);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Runs that end badly

#[tokio::test(start_paused = true)]
async fn a_panicking_keyed_handler_is_answered_internal_error_also_on_its_retry() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut client, epoch, _) = keyed_client(&server).await;
    let answer = keyed(&mut client, "panic", (1, epoch, 0)).await;
    assert!(
        matches!(answer, ServerMessage::InternalError(_)),
        "{answer:?}"
    );
    let retry = keyed(&mut client, "panic", (1, epoch, 0)).await;
    assert!(
        matches!(retry, ServerMessage::InternalError(_)),
        "{retry:?}"
    );
    assert_eq!(runs.panic.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_keyed_handler_past_its_timeout_is_answered_internal_error_once() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .keyed_request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    let started = tokio::time::Instant::now();
    let answer = keyed(&mut client, "slow", (1, epoch, 0)).await;
    assert!(
        matches!(answer, ServerMessage::InternalError(_)),
        "{answer:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    // The stored outcome: the handler is not run again.
    runs.gate.add_permits(10);
    let retry = keyed(&mut client, "slow", (1, epoch, 0)).await;
    assert!(
        matches!(retry, ServerMessage::InternalError(_)),
        "{retry:?}"
    );
    assert_eq!(runs.count(), 0);
    server.shutdown().await;
}

/// Regression: without renewal, a run longer than the lease time has its
/// reply refused by the ledger, and the retry gets "outcome unknown".
#[tokio::test(start_paused = true)]
async fn a_run_longer_than_the_lease_time_renews_its_lease_and_stores_its_reply() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .ledger_limits(LedgerLimits {
            lease_ttl: Duration::from_secs(3),
            ..LedgerLimits::default()
        })
        .keyed_lease_renewal(Duration::from_secs(1))
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    let id = send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    runs.gate.add_permits(10);
    assert_eq!(reply_text(&client.reply_to(id).await), "1");
    assert_eq!(
        reply_text(&keyed(&mut client, "slow", (1, epoch, 0)).await),
        "1"
    );
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Sessions

#[tokio::test(start_paused = true)]
async fn without_a_session_a_keyed_request_is_no_session_and_not_run() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let mut client = TestClient::in_memory(&server).await;
    let accept = opt_in(&mut client, FeatureFlags::KEYED_REQUESTS).await;
    let epoch = accept.ledger_epoch;
    assert_eq!(
        error_code(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        NO_SESSION
    );
    // A restore of an unknown session does not change that.
    assert!(matches!(
        restore(&mut client, "no-such-session").await,
        ServerMessage::SessionNotFound(_)
    ));
    assert_eq!(
        error_code(&keyed(&mut client, "incr", (1, epoch, 0)).await),
        NO_SESSION
    );
    assert_eq!(runs.count(), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_logout_whose_answer_was_lost_answers_its_retry_from_the_closed_sessions_ledger() {
    let runs = Arc::new(Runs::default());
    let server = server(&runs);
    let (mut first, epoch, key) = keyed_client(&server).await;
    assert_eq!(
        reply_text(&keyed(&mut first, "incr", (1, epoch, 0)).await),
        "1"
    );
    // The logout runs; its answer is lost with the connection.
    send_keyed(&mut first, "logout", "", (2, epoch, 0)).await;
    eventually("the logout ran", || runs.logout.load(Ordering::SeqCst) == 1).await;
    drop(first);

    let (mut second, restored) = reconnect(&server, &key).await;
    assert!(
        matches!(restored, ServerMessage::SessionNotFound(_)),
        "{restored:?}"
    );
    // The retry of the logout: its stored reply, not a second run.
    assert_eq!(
        reply_text(&keyed(&mut second, "logout", (2, epoch, 0)).await),
        "logged out: true"
    );
    assert_eq!(runs.logout.load(Ordering::SeqCst), 1);
    // Another resent key of that session: its stored reply too.
    assert_eq!(
        reply_text(&keyed(&mut second, "incr", (1, epoch, 0)).await),
        "1"
    );
    // A key that session's ledger never accepted: row 9 without a
    // session, outcome unknown, never run.
    assert!(is_unknown(&keyed(&mut second, "incr", (3, epoch, 2)).await));
    assert_eq!(runs.count(), 1);
    // A session whose ledger holds nothing for this instance: NO_SESSION.
    assert!(matches!(
        restore(&mut second, "never-a-session").await,
        ServerMessage::SessionNotFound(_)
    ));
    assert_eq!(
        error_code(&keyed(&mut second, "incr", (1, epoch, 0)).await),
        NO_SESSION
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Shutdown

#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_waits_for_a_keyed_handler_running_detached() {
    let runs = Arc::new(Runs::default());
    let ledger = Arc::new(MemoryLedger::new());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .request_ledger(ledger.clone())
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut client, epoch, key) = keyed_client(&server).await;
    send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    client.close().await;
    eventually("the connection ended", || server.connection_count() == 0).await;

    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the handler"
    );
    runs.gate.add_permits(1);
    within("the shutdown", shutdown).await.unwrap();
    assert_eq!(runs.count(), 1);

    // Its reply was stored for the retry.
    let request = LedgerRequest {
        seq: 1,
        epoch,
        ack: 0,
        digest: RequestDigest::new(b"slow", webwire_proto::Encoding::Utf8, b""),
    };
    let begun = ledger
        .begin(&LedgerScope::new(key, INSTANCE), &request)
        .await
        .unwrap();
    assert!(matches!(begun, Begin::Stored(_)), "{begun:?}");
}

#[tokio::test(start_paused = true)]
async fn a_keyed_handler_dropped_at_the_shutdown_deadline_is_outcome_unknown() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    let id = send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown_with_deadline(Duration::from_secs(2)).await }
    });
    // It had started: never ReplyShutdown ("not run").
    let answer = client.reply_to(id).await;
    assert!(is_unknown(&answer), "{answer:?}");
    // A keyed request read while draining did not start: ReplyShutdown.
    within("the shutdown", shutdown).await.unwrap();
    assert_eq!(runs.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_keyed_request_read_while_draining_is_answered_shutdown_and_not_recorded() {
    let runs = Arc::new(Runs::default());
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();
    let (mut client, epoch, _) = keyed_client(&server).await;
    let running = send_keyed(&mut client, "slow", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.connections()[0].close();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let late = send_keyed(&mut client, "incr", "", (2, epoch, 0)).await;
    assert!(matches!(
        client.reply_to(late).await,
        ServerMessage::Shutdown(_)
    ));
    runs.gate.add_permits(1);
    assert_eq!(reply_text(&client.reply_to(running).await), "1");
    assert_eq!(client.closed().await, Some(1000));
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}

/// A ledger whose `begin` takes effect at once but answers only after a
/// pause, as a remote ledger (Redis) does: the decision is made there and
/// the reply is on its way.
#[derive(Debug)]
struct SlowAnswers {
    inner: MemoryLedger,
    pause: Duration,
}

impl RequestLedger for SlowAnswers {
    async fn epoch(&self) -> Result<u64, webwire_server::ledger::LedgerError> {
        self.inner.epoch().await
    }

    async fn begin(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<Begin, webwire_server::ledger::LedgerError> {
        let begun = self.inner.begin(scope, request).await;
        tokio::time::sleep(self.pause).await;
        begun
    }

    async fn lookup(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<webwire_server::ledger::Lookup, webwire_server::ledger::LedgerError> {
        self.inner.lookup(scope, request).await
    }

    async fn renew(
        &self,
        lease: &webwire_server::ledger::Lease,
    ) -> Result<bool, webwire_server::ledger::LedgerError> {
        self.inner.renew(lease).await
    }

    async fn finish(
        &self,
        lease: webwire_server::ledger::Lease,
        reply: webwire_server::ledger::StoredReply,
    ) -> Result<webwire_server::ledger::Finish, webwire_server::ledger::LedgerError> {
        self.inner.finish(lease, reply).await
    }

    async fn acknowledge(
        &self,
        scope: &LedgerScope,
        ack: u64,
    ) -> Result<(), webwire_server::ledger::LedgerError> {
        self.inner.acknowledge(scope, ack).await
    }

    async fn session_closed(
        &self,
        session: &str,
    ) -> Result<(), webwire_server::ledger::LedgerError> {
        self.inner.session_closed(session).await
    }
}

/// Found by the fault-injection test against two nodes on Redis
/// (tools/webwire-interop/tests/resilience.rs): the connection's socket
/// failed while the ledger's `begin` was under way, the connection task
/// dropped the `begin`, and the key the ledger had marked running was
/// never run, so its retry (after the lease lapsed, with Redis) was
/// answered outcome unknown. A `begin` runs to its end, and a key it
/// started runs, whatever happens to the socket meanwhile.
#[tokio::test(start_paused = true)]
async fn a_begin_under_way_when_the_socket_fails_still_runs_its_key() {
    let runs = Arc::new(Runs::default());
    let ledger = SlowAnswers {
        inner: MemoryLedger::new(),
        pause: Duration::from_secs(1),
    };
    let server = builder(&runs, &Arc::<MemorySessionManager>::default())
        .request_ledger(Arc::new(ledger))
        .build()
        .unwrap();
    let (mut first, epoch, key) = keyed_client(&server).await;
    send_keyed(&mut first, "incr", "", (1, epoch, 0)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The socket is gone, and the connection task has something to write.
    drop(first);
    server.signal_all("news", "x").unwrap();
    eventually("the connection ended", || server.connection_count() == 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut second, _) = reconnect(&server, &key).await;
    let retry = keyed(&mut second, "incr", (1, epoch, 0)).await;
    assert_eq!(reply_text(&retry), "1", "{retry:?}");
    assert_eq!(runs.count(), 1);
    server.shutdown().await;
}
