//! The router end to end: raw and typed handlers, fallbacks, hooks.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{eventually, reply_text, within, TestServer};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use webwire_proto::{Encoding, Payload, ServerMessage};
use webwire_server::{Connection, Json, MessageRouter, ReplyError, Request, Server, Signal};

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sum {
    sum: i64,
}

#[tokio::test]
async fn raw_typed_and_fallback_handlers() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let router = {
        let seen_signals = seen.clone();
        let seen_fallback = seen.clone();
        MessageRouter::new()
            .request("raw", |conn: Connection, req: Request| async move {
                Ok::<_, ReplyError>(format!(
                    "{} {} {:?} {}",
                    conn.is_active(),
                    req.name(),
                    req.payload().encoding(),
                    req.payload().len()
                ))
            })
            .request("bytes", |bytes: Bytes| async move {
                Ok::<_, ReplyError>(bytes.iter().rev().copied().collect::<Vec<u8>>())
            })
            .request("text", |text: String| async move {
                Ok::<_, ReplyError>(text.to_uppercase())
            })
            .request("add", |Json(add): Json<Add>| async move {
                Ok::<_, ReplyError>(Json(Sum { sum: add.a + add.b }))
            })
            .request("unit", |_: Payload| async move { Ok::<_, ReplyError>(()) })
            .signal("note", move |signal: Signal| {
                let seen = seen_signals.clone();
                async move {
                    let text = signal.payload().to_text().unwrap().into_owned();
                    seen.lock().await.push(format!("{}:{text}", signal.name()));
                }
            })
            .signal_fallback(move |conn: Connection, signal: Signal| {
                let seen = seen_fallback.clone();
                async move {
                    let _ = conn.id();
                    seen.lock()
                        .await
                        .push(format!("fallback:{}", signal.name()));
                }
            })
            .request_fallback(|req: Request| async move {
                Err::<(), _>(ReplyError::from_static(
                    "NO_ROUTE",
                    format!("nothing at {}", req.name()),
                ))
            })
    };
    let server = TestServer::start(Server::builder(router)).await;
    let mut client = server.connect().await;

    assert_eq!(
        reply_text(&client.request("raw", Payload::utf16("ab")).await),
        "true raw Utf16 4"
    );
    match client
        .request("bytes", Payload::binary(vec![1, 2, 3]))
        .await
    {
        ServerMessage::Reply(reply) => {
            assert_eq!(reply.payload.encoding(), Encoding::Binary);
            assert_eq!(&reply.payload.as_bytes()[..], [3, 2, 1]);
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    // UTF-16 text in, UTF-8 text out.
    match client.request("text", Payload::utf16("héllo")).await {
        ServerMessage::Reply(reply) => {
            assert_eq!(reply.payload.encoding(), Encoding::Utf8);
            assert_eq!(reply.payload.to_text().unwrap(), "HÉLLO");
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    // Invalid text is a request error, not a crash.
    match client.request("text", Payload::binary(vec![0xff])).await {
        ServerMessage::Error(err) => assert_eq!(err.code, ReplyError::INVALID_PAYLOAD),
        other => panic!("expected an error reply, got {other:?}"),
    }

    let sum = reply_text(
        &client
            .request("add", Payload::utf8(r#"{"a":2,"b":40}"#))
            .await,
    );
    assert_eq!(serde_json::from_str::<Sum>(&sum).unwrap(), Sum { sum: 42 });
    let sum = reply_text(
        &client
            .request("add", Payload::utf16(r#"{"a":1,"b":1}"#))
            .await,
    );
    assert_eq!(serde_json::from_str::<Sum>(&sum).unwrap(), Sum { sum: 2 });
    match client.request("add", Payload::utf8(r#"{"a":"x"}"#)).await {
        ServerMessage::Error(err) => assert_eq!(err.code, ReplyError::INVALID_PAYLOAD),
        other => panic!("expected an error reply, got {other:?}"),
    }
    match client.request("unit", Payload::utf8("x")).await {
        ServerMessage::Reply(reply) => assert!(reply.payload.is_empty()),
        other => panic!("expected a reply, got {other:?}"),
    }
    match client.request("elsewhere", Payload::utf8("x")).await {
        ServerMessage::Error(err) => {
            assert_eq!(err.code, "NO_ROUTE");
            assert_eq!(err.message_text(), "nothing at elsewhere");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }

    client.signal("note", Payload::utf16("one")).await;
    client.signal("other", Payload::utf8("two")).await;
    // Limit 1: handled in order; a request after them sees both done.
    client.request("unit", Payload::utf8("sync")).await;
    assert_eq!(*seen.lock().await, ["note:one", "fallback:other"]);
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn connect_and_disconnect_hooks() {
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let router = {
        let on_connect = events.clone();
        let on_disconnect = events.clone();
        MessageRouter::new()
            .on_connect(move |conn: Connection| {
                let events = on_connect.clone();
                async move {
                    // The hook may signal: the accept configuration went first.
                    conn.signal("welcome", Payload::utf8("hi")).await.unwrap();
                    events.lock().await.push(format!("connected {}", conn.id()));
                }
            })
            .on_disconnect(move |conn: Connection, reason| {
                let events = on_disconnect.clone();
                async move {
                    events
                        .lock()
                        .await
                        .push(format!("disconnected {} ({reason})", conn.id()));
                }
            })
    };
    let server = TestServer::start(Server::builder(router)).await;
    let mut client = server.connect().await;
    match client.recv().await {
        ServerMessage::Signal(signal) => assert_eq!(signal.name(), "welcome"),
        other => panic!("expected the welcome signal, got {other:?}"),
    }
    client.close().await;
    eventually("disconnected", || server.server.connection_count() == 0).await;
    let events = within("events", events.lock()).await.clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "connected 1");
    assert!(
        events[1].starts_with("disconnected 1 (closed by the client"),
        "{events:?}"
    );
    server.stop().await;
}

#[test]
#[should_panic(expected = "routed twice")]
fn a_name_routed_twice_panics() {
    let handler = |_: Payload| async move { Ok::<_, ReplyError>(()) };
    let _ = MessageRouter::new()
        .request("x", handler)
        .request("x", handler);
}

#[test]
#[should_panic(expected = "invalid webwire route name")]
fn an_invalid_route_name_panics() {
    let _ =
        MessageRouter::new().request("tab\t", |_: Payload| async move { Ok::<_, ReplyError>(()) });
}
