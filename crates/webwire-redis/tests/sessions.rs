//! The Redis session manager against a real Redis: storage layout, lookups,
//! the sliding TTL, hostile keys and malformed stored values.

mod common;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use webwire_redis::redis::{self, AsyncCommands as _};
use webwire_redis::{RedisSessionConfig, RedisSessionError, RedisSessionManager};
use webwire_server::session::{Session, SessionInfo, SessionManager};

const PREFIX: &str = "webwire:session:";

fn info(user: &str) -> Option<SessionInfo> {
    json!({"user": user, "n": 1}).as_object().cloned()
}

async fn manager(server: &common::RedisServer, config: RedisSessionConfig) -> RedisSessionManager {
    RedisSessionManager::connect(&server.url(), config)
        .await
        .expect("connect")
}

/// Every key in Redis with its serialized value (DUMP) and whether it has a
/// TTL. For checking that nothing else was touched (the test may use KEYS;
/// the manager never does).
async fn snapshot(
    raw: &mut redis::aio::MultiplexedConnection,
) -> BTreeMap<Vec<u8>, (Vec<u8>, bool)> {
    let keys: Vec<Vec<u8>> = raw.keys("*").await.unwrap();
    let mut all = BTreeMap::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(raw).await.unwrap();
        let pttl: i64 = raw.pttl(&key).await.unwrap();
        all.insert(key, (dump, pttl >= 0));
    }
    all
}

#[tokio::test]
async fn create_lookup_close() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    let created = SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789);
    let session = Session::new("abc-_XYZ09", created, info("alice"));
    m.on_session_created(&session).await.unwrap();

    // One hash under the prefix, with the documented fields, and no TTL.
    let stored: BTreeMap<String, String> = raw.hgetall("webwire:session:abc-_XYZ09").await.unwrap();
    assert_eq!(stored["c"], "2026-01-02T03:04:05.123456789Z");
    assert_eq!(stored["l"], "2026-01-02T03:04:05.123456789Z");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored["i"]).unwrap(),
        json!({"user": "alice", "n": 1})
    );
    assert_eq!(stored.len(), 3);
    let pttl: i64 = raw.pttl("webwire:session:abc-_XYZ09").await.unwrap();
    assert_eq!(pttl, -1, "no TTL configured");

    let before = SystemTime::now();
    let found = m.on_session_lookup("abc-_XYZ09").await.unwrap().unwrap();
    assert_eq!(found.creation, created, "nanoseconds kept");
    assert_eq!(found.info, session.info);
    assert!(found.last_lookup >= before);
    assert_eq!(m.on_session_lookup("other").await.unwrap(), None);

    m.on_session_closed("abc-_XYZ09").await.unwrap();
    let exists: bool = raw.exists("webwire:session:abc-_XYZ09").await.unwrap();
    assert!(!exists, "close deletes the key");
    m.on_session_closed("abc-_XYZ09").await.unwrap();
    assert_eq!(m.on_session_lookup("abc-_XYZ09").await.unwrap(), None);
    assert!(snapshot(&mut raw).await.is_empty());
}

#[tokio::test]
async fn sessions_without_info_and_with_empty_info() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    m.on_session_created(&Session::new("none", SystemTime::now(), None))
        .await
        .unwrap();
    let has_i: bool = raw.hexists("webwire:session:none", "i").await.unwrap();
    assert!(!has_i, "no info, no field");
    assert_eq!(
        m.on_session_lookup("none").await.unwrap().unwrap().info,
        None
    );

    let empty = Some(SessionInfo::new());
    m.on_session_created(&Session::new("empty", SystemTime::now(), empty.clone()))
        .await
        .unwrap();
    assert_eq!(
        m.on_session_lookup("empty").await.unwrap().unwrap().info,
        empty
    );
}

#[tokio::test]
async fn last_lookup_is_updated_and_stored() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    let created = SystemTime::now() - Duration::from_secs(3600);
    m.on_session_created(&Session::new("k", created, None))
        .await
        .unwrap();

    let first = m.on_session_lookup("k").await.unwrap().unwrap();
    assert_eq!(first.creation, created);
    assert!(first.last_lookup > created);
    let stored: String = raw.hget("webwire:session:k", "l").await.unwrap();
    let stored =
        Session::from_json(format!(r#"{{"k":"k","c":"{stored}","l":"{stored}"}}"#).as_bytes())
            .unwrap()
            .last_lookup;
    assert_eq!(
        stored, first.last_lookup,
        "the stored time is the returned one"
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = m.on_session_lookup("k").await.unwrap().unwrap();
    assert!(second.last_lookup > first.last_lookup);
    assert_eq!(second.creation, created, "creation never changes");
}

#[tokio::test]
async fn creating_again_replaces_the_whole_session() {
    let server = redis_or_skip!();
    let m = manager(
        &server,
        RedisSessionConfig::new().with_ttl(Duration::from_secs(60)),
    )
    .await;
    let mut raw = server.raw().await;

    m.on_session_created(&Session::new("k", SystemTime::UNIX_EPOCH, info("old")))
        .await
        .unwrap();
    let newer = Session::new("k", SystemTime::now(), None);
    m.on_session_created(&newer).await.unwrap();
    let found = m.on_session_lookup("k").await.unwrap().unwrap();
    assert_eq!(found.creation, newer.creation);
    assert_eq!(found.info, None, "the old info is gone");
    let pttl: i64 = raw.pttl("webwire:session:k").await.unwrap();
    assert!((1..=60_000).contains(&pttl), "{pttl}");
}

#[tokio::test]
async fn lookup_restarts_the_ttl() {
    let server = redis_or_skip!();
    let m = manager(
        &server,
        RedisSessionConfig::new().with_ttl(Duration::from_secs(60)),
    )
    .await;
    let mut raw = server.raw().await;

    m.on_session_created(&Session::new("k", SystemTime::now(), None))
        .await
        .unwrap();
    let pttl: i64 = raw.pttl("webwire:session:k").await.unwrap();
    assert!(
        (50_000..=60_000).contains(&pttl),
        "create sets the TTL: {pttl}"
    );

    // As if most of the TTL had passed.
    let _: bool = raw.pexpire("webwire:session:k", 5_000).await.unwrap();
    assert!(m.on_session_lookup("k").await.unwrap().is_some());
    let pttl: i64 = raw.pttl("webwire:session:k").await.unwrap();
    assert!(pttl > 50_000, "the lookup restarted the TTL: {pttl}");

    // Without a TTL, neither create nor lookup sets one.
    let m = manager(&server, RedisSessionConfig::new()).await;
    m.on_session_created(&Session::new("k2", SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup("k2").await.unwrap().is_some());
    let pttl: i64 = raw.pttl("webwire:session:k2").await.unwrap();
    assert_eq!(pttl, -1);
}

#[tokio::test]
async fn a_session_past_its_ttl_cannot_be_restored() {
    let server = redis_or_skip!();
    let m = manager(
        &server,
        RedisSessionConfig::new().with_ttl(Duration::from_secs(1)),
    )
    .await;
    let mut raw = server.raw().await;

    m.on_session_created(&Session::new("short", SystemTime::now(), info("a")))
        .await
        .unwrap();
    assert!(m.on_session_lookup("short").await.unwrap().is_some());

    // Wait (without looking it up, which would restart the TTL) until Redis
    // has expired it; bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exists: bool = raw.exists("webwire:session:short").await.unwrap();
        if !exists {
            break;
        }
        assert!(Instant::now() < deadline, "the session did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(m.on_session_lookup("short").await.unwrap(), None);
    let exists: bool = raw.exists("webwire:session:short").await.unwrap();
    assert!(
        !exists,
        "a lookup of an expired session does not recreate it"
    );
}

#[tokio::test]
async fn hostile_valid_keys_stay_inside_the_prefix() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    // Keys outside the prefix, some looking like what a hostile key could
    // aim at, and one session inside it.
    let outside = [
        "x",
        "../x",
        "*",
        "a:b",
        "webwire:x",
        "webwire:session",
        "webwire:sessionx",
        "other:session:k",
    ];
    for key in outside {
        let _: () = raw
            .hset_multiple(key, &[("c", "2026-01-02T03:04:05Z"), ("i", "{}")])
            .await
            .unwrap();
    }
    m.on_session_created(&Session::new("victim", SystemTime::now(), info("victim")))
        .await
        .unwrap();
    let before = snapshot(&mut raw).await;

    let hostile = [
        "../x",
        "*",
        "?",
        "[a-z]*",
        "a:b",
        "x",
        "victim*",
        "*victim",
        "../victim",
        ":victim",
        " victim",
        "webwire:session:victim",
    ];
    for key in hostile {
        // Not found: no pattern matching, and no key outside the prefix.
        assert_eq!(m.on_session_lookup(key).await.unwrap(), None, "{key:?}");
        // Creating and closing touch only `{prefix}{key}`.
        m.on_session_created(&Session::new(key, SystemTime::now(), info(key)))
            .await
            .unwrap();
        let found = m.on_session_lookup(key).await.unwrap().unwrap();
        assert_eq!(found.info, info(key), "{key:?}");
        let stored: bool = raw.exists(format!("{PREFIX}{key}")).await.unwrap();
        assert!(stored, "{key:?} is stored as {PREFIX}{key}");
    }

    let after = snapshot(&mut raw).await;
    for (key, value) in &before {
        assert_eq!(
            after.get(key),
            Some(value),
            "{:?} was changed",
            String::from_utf8_lossy(key)
        );
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        assert!(
            key.starts_with(PREFIX.as_bytes()),
            "{:?} is outside the prefix",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(after.len(), before.len() + hostile.len());

    for key in hostile {
        m.on_session_closed(key).await.unwrap();
    }
    assert_eq!(
        snapshot(&mut raw).await,
        before,
        "close deleted only its own keys"
    );
    assert!(m.on_session_lookup("victim").await.unwrap().is_some());
}

#[tokio::test]
async fn invalid_keys_never_reach_redis() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    let _: () = raw.set("x", "outside").await.unwrap();
    m.on_session_created(&Session::new("victim", SystemTime::now(), None))
        .await
        .unwrap();
    let before = snapshot(&mut raw).await;

    let long = "k".repeat(300);
    let just_too_long = "k".repeat(256);
    let invalid = [
        "",
        long.as_str(),
        just_too_long.as_str(),
        "a\nb",
        "victim\r\nFLUSHALL\r\n",
        "\r\n*1\r\n$8\r\nFLUSHALL\r\n",
        "a\0b",
        "\t",
        "\u{7f}",
        "é",
        "victim\u{0}",
    ];
    for key in invalid {
        let err = m
            .on_session_created(&Session::new(key, SystemTime::now(), None))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("printable ASCII"),
            "{key:?}: {err}"
        );
        let source = err
            .source()
            .and_then(|s| s.downcast_ref::<RedisSessionError>());
        assert!(
            matches!(source, Some(RedisSessionError::InvalidKey)),
            "{key:?}: {source:?}"
        );
        assert_eq!(m.on_session_lookup(key).await.unwrap(), None, "{key:?}");
        m.on_session_closed(key).await.unwrap();
    }
    // The longest valid key works.
    let longest = "k".repeat(255);
    m.on_session_created(&Session::new(longest.as_str(), SystemTime::now(), None))
        .await
        .unwrap();
    assert!(m.on_session_lookup(&longest).await.unwrap().is_some());
    m.on_session_closed(&longest).await.unwrap();

    assert_eq!(snapshot(&mut raw).await, before, "nothing was touched");
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let server = redis_or_skip!();
    let app1 = manager(
        &server,
        RedisSessionConfig::new().with_prefix("app1:session:"),
    )
    .await;
    let app2 = manager(
        &server,
        RedisSessionConfig::new().with_prefix("app2:session:"),
    )
    .await;
    let mut raw = server.raw().await;

    app2.on_session_created(&Session::new("k", SystemTime::now(), info("app2")))
        .await
        .unwrap();
    let before = snapshot(&mut raw).await;

    // The other namespace's session, by its key and by its full Redis key.
    for key in ["k", "app2:session:k", "../app2:session:k"] {
        assert_eq!(app1.on_session_lookup(key).await.unwrap(), None, "{key:?}");
        app1.on_session_closed(key).await.unwrap();
    }
    assert_eq!(snapshot(&mut raw).await, before, "app2's session untouched");

    // A session of app1 whose key equals app2's full Redis key is app1's own.
    app1.on_session_created(&Session::new(
        "app2:session:k",
        SystemTime::now(),
        info("app1"),
    ))
    .await
    .unwrap();
    let mine = app1
        .on_session_lookup("app2:session:k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.info, info("app1"));
    let theirs = app2.on_session_lookup("k").await.unwrap().unwrap();
    assert_eq!(theirs.info, info("app2"));
    let keys: Vec<String> = raw.keys("*").await.unwrap();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, ["app1:session:app2:session:k", "app2:session:k"]);
}

#[tokio::test]
async fn stored_values_that_are_not_sessions_are_errors() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;

    m.on_session_created(&Session::new("good", SystemTime::now(), None))
        .await
        .unwrap();
    let _: () = raw.set("webwire:session:string", "x").await.unwrap();
    let _: () = raw
        .hset_multiple("webwire:session:bad-time", &[("c", "yesterday")])
        .await
        .unwrap();
    let _: () = raw
        .hset_multiple(
            "webwire:session:bad-info",
            &[("c", "2026-01-02T03:04:05Z"), ("i", "[1]")],
        )
        .await
        .unwrap();
    let _: () = raw
        .hset_multiple("webwire:session:no-creation", &[("x", "1")])
        .await
        .unwrap();

    for (key, expect) in [
        ("string", "Redis failed"),
        ("bad-time", "malformed session"),
        ("bad-info", "malformed session"),
    ] {
        let err = m.on_session_lookup(key).await.unwrap_err();
        assert!(err.to_string().contains("looking up"), "{key}: {err}");
        let source = err.source().unwrap().to_string();
        assert!(source.contains(expect), "{key}: {source}");
        // The other sessions still work.
        assert!(m.on_session_lookup("good").await.unwrap().is_some());
    }
    // A hash without a creation time is no session.
    assert_eq!(m.on_session_lookup("no-creation").await.unwrap(), None);
    // Each can still be closed (deleted), and then is simply not found.
    for key in ["string", "bad-time", "bad-info", "no-creation"] {
        m.on_session_closed(key).await.unwrap();
        assert_eq!(m.on_session_lookup(key).await.unwrap(), None);
    }
}

#[tokio::test]
async fn reads_times_with_any_offset_written_by_others() {
    let server = redis_or_skip!();
    let m = manager(&server, RedisSessionConfig::new()).await;
    let mut raw = server.raw().await;
    let _: () = raw
        .hset_multiple(
            "webwire:session:go",
            &[
                ("c", "2026-01-02T04:04:05.5+01:00"),
                ("l", "2026-01-02T04:04:05+01:00"),
                ("i", r#"{"n":1}"#),
            ],
        )
        .await
        .unwrap();
    let found = m.on_session_lookup("go").await.unwrap().unwrap();
    assert_eq!(
        found.creation,
        SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 500_000_000)
    );
    assert_eq!(found.info, json!({"n": 1}).as_object().cloned());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_use_of_clones() {
    let server = redis_or_skip!();
    let m = manager(
        &server,
        RedisSessionConfig::new().with_ttl(Duration::from_secs(60)),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            m.on_session_created(&Session::new(key.as_str(), SystemTime::now(), info(&key)))
                .await
                .unwrap();
            for _ in 0..5 {
                let found = m.on_session_lookup(&key).await.unwrap().unwrap();
                assert_eq!(found.info, info(&key));
            }
            if i % 2 == 0 {
                m.on_session_closed(&key).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for i in 0..32 {
        let found = m.on_session_lookup(&format!("k{i}")).await.unwrap();
        assert_eq!(found.is_some(), i % 2 == 1, "k{i}");
    }
}

/// The test helper never shares a Redis: a port on which another Redis
/// answers is refused (its own child exits or the pid differs), so that two
/// tests never see each other's keys.
#[test]
fn the_test_helper_refuses_a_port_another_redis_answers_on() {
    let Some(first) = common::RedisServer::start() else {
        return;
    };
    let second = common::RedisServer::try_start_on(first.port());
    assert!(
        second.is_err(),
        "a second server shared port {}",
        first.port()
    );
}
