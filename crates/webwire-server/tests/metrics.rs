//! The server's metrics through a Prometheus recorder, after a known
//! workload on in-memory connections: requests by route and outcome,
//! unknown names under one label, signals, connections, closes, restores
//! and the session store.
//!
//! One test in this binary: the recorder is global, and the gauges are the
//! server's.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{within, TestClient};
use metrics_exporter_prometheus::PrometheusBuilder;
use webwire_proto::{ClientMessage, Payload, ServerMessage};
use webwire_server::options::Concurrency;
use webwire_server::session::MemorySessionManager;
use webwire_server::{Connection, MessageRouter, ReplyError, Server};

/// The value of the sample `series` (name and labels as rendered) in the
/// Prometheus text `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
}

#[tokio::test(start_paused = true)]
async fn a_known_workload_shows_in_the_metrics() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    // Built after the recorder was installed, as documented.
    let router = MessageRouter::new()
        .request("echo", |payload: Payload| async move {
            Ok::<_, ReplyError>(payload)
        })
        .request("fail", |_: Payload| async move {
            Err::<(), _>(ReplyError::from_static("NOPE", "no"))
        })
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("SESSION", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        })
        // Pending at their first poll: they finish in a task of their own
        // (unlimited concurrency), or are dropped at the shutdown deadline.
        .request("slow", |_: Payload| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, ReplyError>("done")
        })
        .request("stuck", |_: Payload| async move {
            std::future::pending::<()>().await;
            Ok::<_, ReplyError>("never")
        })
        .signal("ping", |conn: Connection, _: Payload| async move {
            let _ = conn.signal("pong", Payload::utf8("")).await;
        });
    let server = Server::builder(router)
        .session_manager(std::sync::Arc::new(MemorySessionManager::new()))
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap();

    let mut client = TestClient::in_memory(&server).await;
    for _ in 0..3 {
        client.request("echo", Payload::utf8("hi")).await;
    }
    client.request("fail", Payload::utf8("")).await;
    // Client-chosen names must not become label values.
    for n in 0..5 {
        client
            .request(&format!("random-{n}"), Payload::utf8(""))
            .await;
    }
    client.signal("ping", Payload::utf8("")).await;
    let pong = client.recv().await;
    assert!(matches!(pong, ServerMessage::Signal(_)), "{pong:?}");
    let login = client.request("login", Payload::utf8("")).await;
    let key = match login {
        ServerMessage::Reply(reply) => reply.payload.to_text().unwrap().into_owned(),
        other => panic!("{other:?}"),
    };

    let text = prometheus.render();
    let total = |name: &str, outcome: &str| {
        sample(
            &text,
            &format!("webwire_requests_total{{name=\"{name}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(total("echo", "ok"), Some(3.0), "{text}");
    assert_eq!(total("fail", "error"), Some(1.0), "{text}");
    assert_eq!(total("_unknown", "error"), Some(5.0), "{text}");
    assert!(!text.contains("random-"), "{text}");
    assert_eq!(
        sample(
            &text,
            "webwire_request_duration_seconds_count{name=\"echo\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(sample(&text, "webwire_signals_received_total"), Some(1.0));
    assert_eq!(sample(&text, "webwire_signals_sent_total"), Some(1.0));
    assert_eq!(sample(&text, "webwire_connections"), Some(1.0));
    assert_eq!(sample(&text, "webwire_sessions_active"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "webwire_session_store_duration_seconds_count{op=\"create\"}"
        ),
        Some(1.0),
        "{text}"
    );
    client.close().await;

    // An unknown key refused, then the session restored on a new connection.
    let mut again = TestClient::in_memory(&server).await;
    for key in ["no-such-session".to_owned(), key] {
        let id = again.next_id();
        again
            .send(ClientMessage::RestoreSession {
                id,
                key: Bytes::from(key),
            })
            .await;
        again.reply_to(id).await;
    }
    let slow = again.request("slow", Payload::utf8("")).await;
    assert!(matches!(slow, ServerMessage::Reply(_)), "{slow:?}");
    let stuck = again.send_request("stuck", Payload::utf8("")).await;
    within(
        "shutdown",
        server.shutdown_with_deadline(Duration::from_secs(1)),
    )
    .await;
    assert!(matches!(
        again.reply_to(stuck).await,
        ServerMessage::Shutdown(_)
    ));

    let text = prometheus.render();
    let total = |name: &str, outcome: &str| {
        sample(
            &text,
            &format!("webwire_requests_total{{name=\"{name}\",outcome=\"{outcome}\"}}"),
        )
    };
    let restores = |outcome: &str| {
        sample(
            &text,
            &format!("webwire_restores_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(restores("ok"), Some(1.0), "{text}");
    assert_eq!(total("slow", "ok"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "webwire_request_duration_seconds_count{name=\"slow\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(total("stuck", "shutdown"), Some(1.0), "{text}");
    assert_eq!(restores("not_found"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "webwire_connections"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "webwire_closes_total{reason=\"client_closed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "webwire_closes_total{reason=\"shutdown\"}"),
        Some(1.0),
        "{text}"
    );

    // Messages over a rate limit, by kind: the second request in the same
    // instant is answered with RATE_LIMITED, the signal after it dropped.
    let limited = Server::builder(
        MessageRouter::new()
            .request("echo", |payload: Payload| async move {
                Ok::<_, ReplyError>(payload)
            })
            .signal("ping", |_: Payload| async {}),
    )
    .session_manager(std::sync::Arc::new(MemorySessionManager::new()))
    .message_rate_per_connection(webwire_server::limits::Rate::per_second(1))
    .build()
    .unwrap();
    let mut client = TestClient::in_memory(&limited).await;
    assert!(matches!(
        client.request("echo", Payload::utf8("a")).await,
        ServerMessage::Reply(_)
    ));
    match client.request("echo", Payload::utf8("b")).await {
        ServerMessage::Error(err) => assert_eq!(err.code.as_str(), "RATE_LIMITED"),
        other => panic!("expected RATE_LIMITED, got {other:?}"),
    }
    client.signal("ping", Payload::utf8("c")).await;
    let conn = limited.connections().remove(0);
    common::eventually("the signal counted", || conn.stats().rate_limited == 2).await;
    let text = prometheus.render();
    for kind in ["request", "signal"] {
        assert_eq!(
            sample(
                &text,
                &format!("webwire_rate_limited_total{{kind=\"{kind}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
    }
    client.close().await;
    within("shutdown", limited.shutdown()).await;

    // Keyed requests (2.1), by the ledger's decision: a run, a retry from
    // the store, a key reused, another ledger epoch.
    let keyed = Server::builder(MessageRouter::new().request(
        "login",
        |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("SESSION", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        },
    ))
    .session_manager(std::sync::Arc::new(MemorySessionManager::new()))
    .build()
    .unwrap();
    let mut client = TestClient::in_memory(&keyed).await;
    let instance =
        webwire_proto::InstanceId::new(Bytes::from_static(b"metrics-instance-01")).unwrap();
    let hello =
        webwire_proto::ExtensionHello::new(webwire_proto::FeatureFlags::KEYED_REQUESTS, instance)
            .unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    let ServerMessage::ExtensionAccept(accept) = client.recv().await else {
        panic!("ExtensionAccept")
    };
    client.request("login", Payload::utf8("")).await;
    for (seq, epoch, payload) in [
        (1, accept.ledger_epoch, "a"),
        (1, accept.ledger_epoch, "a"),
        (1, accept.ledger_epoch, "b"),
        (2, accept.ledger_epoch ^ 1, "a"),
    ] {
        let id = client.next_id();
        let request = webwire_proto::Request::new(
            id,
            webwire_proto::Name::from_static("unrouted"),
            Payload::utf8(payload),
        )
        .unwrap();
        let key = webwire_proto::RequestKey { seq, epoch };
        let request = webwire_proto::KeyedRequest::new(request, key, 0).unwrap();
        client.send(ClientMessage::KeyedRequest(request)).await;
        client.reply_to(id).await;
    }
    let text = prometheus.render();
    for decision in ["run", "stored", "key_reused", "outcome_unknown"] {
        assert_eq!(
            sample(
                &text,
                &format!("webwire_keyed_requests_total{{decision=\"{decision}\"}}")
            ),
            Some(1.0),
            "{decision}: {text}"
        );
    }
    client.close().await;
    within("shutdown", keyed.shutdown()).await;
}
