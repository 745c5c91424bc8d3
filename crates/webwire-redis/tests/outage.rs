//! Redis going away and coming back: calls fail within the operation
//! timeout (no hang, no panic), and the same manager works again after
//! Redis restarts, reconnected by the connection manager.

mod common;

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use webwire_redis::{RedisSessionConfig, RedisSessionError, RedisSessionManager};
use webwire_server::session::{Session, SessionManager, SessionStoreError};

const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Slack on top of the operation timeout for a loaded machine.
const SLACK: Duration = Duration::from_secs(2);
/// How long Redis may take to be usable again after a restart.
const RECOVERY: Duration = Duration::from_secs(15);

fn config() -> RedisSessionConfig {
    RedisSessionConfig::new().with_op_timeout(OP_TIMEOUT)
}

/// Checks that a failed call failed in time and carries our error.
fn assert_prompt_failure(err: &SessionStoreError, started: Instant, what: &str) {
    let elapsed = started.elapsed();
    assert!(
        elapsed < OP_TIMEOUT + SLACK,
        "{what} took {elapsed:?} while Redis was down"
    );
    let source = err
        .source()
        .and_then(|s| s.downcast_ref::<RedisSessionError>());
    assert!(
        matches!(
            source,
            Some(RedisSessionError::Timeout(_) | RedisSessionError::Redis(_))
        ),
        "{what}: {err} / {source:?}"
    );
}

/// Looks up `key` until a call succeeds again, at most [`RECOVERY`].
async fn wait_until_usable(m: &RedisSessionManager, key: &str) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match m.on_session_lookup(key).await {
            Ok(_) => return,
            Err(err) => assert!(
                Instant::now() < deadline,
                "still failing {RECOVERY:?} after the restart: {err}: {:?}",
                err.source()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn calls_fail_in_time_while_down_and_work_after_restart() {
    let mut server = redis_or_skip!();
    let m = RedisSessionManager::connect(&server.url(), config())
        .await
        .unwrap();
    m.on_session_created(&Session::new("before", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("before").await.unwrap().is_some());

    server.stop();
    for round in 0..3 {
        let started = Instant::now();
        let err = m.on_session_lookup("before").await.unwrap_err();
        assert_prompt_failure(&err, started, &format!("lookup {round}"));
        assert!(err.to_string().contains("looking up"), "{err}");
    }
    let started = Instant::now();
    let err = m
        .on_session_created(&Session::new("during", SystemTime::now(), None))
        .await
        .unwrap_err();
    assert_prompt_failure(&err, started, "create");
    let started = Instant::now();
    let err = m.on_session_closed("before").await.unwrap_err();
    assert_prompt_failure(&err, started, "close");

    server.restart();
    wait_until_usable(&m, "before").await;
    // Redis came back empty (no persistence): the old session is gone, and
    // the same manager (and its clones) store and find new ones.
    assert_eq!(m.on_session_lookup("before").await.unwrap(), None);
    let clone = m.clone();
    clone
        .on_session_created(&Session::new("after", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("after").await.unwrap().is_some());
}

#[tokio::test]
async fn lookup_script_is_loaded_again_after_restart() {
    // With a TTL, lookups run the Lua script (EVALSHA). A restarted Redis has
    // no scripts; the first lookup must load it again by itself.
    let mut server = redis_or_skip!();
    let m = RedisSessionManager::connect(&server.url(), config().with_ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    m.on_session_created(&Session::new("k", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("k").await.unwrap().is_some());

    server.restart();
    wait_until_usable(&m, "k").await;
    m.on_session_created(&Session::new("k", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("k").await.unwrap().is_some());
}

#[tokio::test]
async fn a_lazy_manager_starts_while_redis_is_down() {
    let mut server = redis_or_skip!();
    server.stop();

    let m = RedisSessionManager::connect_lazy(&server.url(), config()).unwrap();
    let started = Instant::now();
    let err = m.on_session_lookup("k").await.unwrap_err();
    assert_prompt_failure(&err, started, "lookup before Redis ever answered");

    server.restart();
    wait_until_usable(&m, "k").await;
    m.on_session_created(&Session::new("k", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("k").await.unwrap().is_some());
}

#[tokio::test]
async fn connecting_while_redis_is_down_fails_in_time() {
    let mut server = redis_or_skip!();
    server.stop();

    let started = Instant::now();
    let err = RedisSessionManager::connect(&server.url(), config())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < OP_TIMEOUT + SLACK,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, RedisSessionError::Timeout(t) if t == OP_TIMEOUT),
        "{err:?}"
    );
}
