//! The server's metrics through a Prometheus recorder, after a known
//! workload on in-memory connections: requests by route and outcome,
//! unknown names under one label, signals, connections, closes, restores
//! and the session store.
//!
//! One test in this binary: the recorder is global, and the gauges are the
//! server's.

mod common;

use bytes::Bytes;
use common::{within, TestClient};
use metrics_exporter_prometheus::PrometheusBuilder;
use webwire_proto::{ClientMessage, Payload, ServerMessage};
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
        .signal("ping", |conn: Connection, _: Payload| async move {
            let _ = conn.signal("pong", Payload::utf8("")).await;
        });
    let server = Server::builder(router).build().unwrap();

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
    within("shutdown", server.shutdown()).await;

    let text = prometheus.render();
    let restores = |outcome: &str| {
        sample(
            &text,
            &format!("webwire_restores_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(restores("ok"), Some(1.0), "{text}");
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
}
