//! Requests, replies and signals end to end: every reply type, signals
//! both ways, name-only and payload-only requests, UTF-16 alignment.

mod common;

use std::time::Duration;

use common::{reply_text, within, TestServer};
use webwire_proto::{ClientMessage, Encoding, Name, Payload, Reply, ServerMessage};
use webwire_server::{Connection, MessageRouter, ReplyError, Request, Server, Signal};

fn router() -> MessageRouter {
    MessageRouter::new()
        .request("echo", |req: Request| async move {
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .request("", |req: Request| async move {
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .request("abc", |req: Request| async move {
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .request("error", |text: String| async move {
            Err::<(), _>(ReplyError::from_static("E1", format!("bad {text}")))
        })
        .request("internal", |_: Payload| async move {
            Err::<(), _>(std::io::Error::other("secret detail"))
        })
        .request("panic", panics)
        .request("too-big", |_: Payload| async move {
            Ok::<_, ReplyError>(vec![7u8; 100])
        })
        .request(
            "signal-me",
            |conn: Connection, payload: Payload| async move {
                conn.signal("notice", payload).await?;
                Ok::<_, webwire_server::error::SignalError>("ok")
            },
        )
        .signal("ping", |conn: Connection, signal: Signal| async move {
            let _ = conn.signal("pong", signal.payload().clone()).await;
        })
}

async fn panics(_: Payload) -> Result<(), ReplyError> {
    panic!("handler panicked on purpose")
}

async fn start() -> TestServer {
    TestServer::start(
        Server::builder(router())
            .message_buffer_size(64)
            .sub_protocol("test"),
    )
    .await
}

#[tokio::test]
async fn accept_conf_comes_first() {
    let server = start().await;
    let client = server.connect().await;
    assert_eq!(
        (client.conf.major, client.conf.minor),
        (2, 1),
        "2.1 announced by default"
    );
    assert_eq!(client.conf.read_timeout(), Duration::from_secs(60));
    assert_eq!(client.conf.buffer_size, 64);
    assert_eq!(&client.conf.sub_protocol[..], b"test");
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn every_reply_type() {
    let server = start().await;
    let mut client = server.connect().await;

    for payload in [
        Payload::binary(vec![0xff, 0]),
        Payload::utf8("hi"),
        Payload::utf16("hé🌍"),
    ] {
        match client.request("echo", payload.clone()).await {
            ServerMessage::Reply(reply) => assert_eq!(reply.payload, payload),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    match client.request("error", Payload::utf8("input")).await {
        ServerMessage::Error(err) => {
            assert_eq!(err.code, "E1");
            assert_eq!(err.message_text(), "bad input");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }

    let id = client.send_request("internal", Payload::utf8("x")).await;
    assert_eq!(client.reply_to(id).await, ServerMessage::InternalError(id));

    // A reply larger than the message buffer size is never sent.
    let id = client.send_request("too-big", Payload::utf8("x")).await;
    assert_eq!(client.reply_to(id).await, ServerMessage::InternalError(id));

    // Session requests without a session (tests/sessions.rs has the rest):
    // closing is confirmed with an empty binary reply; an unknown key is not
    // found (a key the default file manager does not even look for).
    let id = client.next_id();
    client.send(ClientMessage::CloseSession(id)).await;
    assert_eq!(
        client.recv().await,
        ServerMessage::Reply(Reply::new(id, Payload::default()))
    );
    let id = client.next_id();
    client
        .send(ClientMessage::RestoreSession {
            id,
            key: "no.such.key".into(),
        })
        .await;
    assert_eq!(client.recv().await, ServerMessage::SessionNotFound(id));

    // A request to an unknown name: the router's default fallback.
    match client.request("nope", Payload::utf8("x")).await {
        ServerMessage::Error(err) => assert_eq!(err.code, ReplyError::UNKNOWN_REQUEST),
        other => panic!("expected an error reply, got {other:?}"),
    }
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_gives_an_internal_error_and_the_connection_lives_on() {
    let server = start().await;
    let mut client = server.connect().await;
    let id = client.send_request("panic", Payload::utf8("x")).await;
    assert_eq!(client.reply_to(id).await, ServerMessage::InternalError(id));
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("still here")).await),
        "still here"
    );
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn name_only_and_payload_only_requests() {
    let server = start().await;
    let mut client = server.connect().await;
    // A name, no payload.
    match client.request("echo", Payload::utf8("")).await {
        ServerMessage::Reply(reply) => {
            assert!(reply.payload.is_empty());
            assert_eq!(reply.payload.encoding(), Encoding::Utf8);
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    // A payload, no name: routed to the empty name.
    assert_eq!(
        reply_text(&client.request("", Payload::utf8("anonymous")).await),
        "anonymous"
    );
    // UTF-16, no name: the payload starts right after the name length.
    match client.request("", Payload::utf16("x")).await {
        ServerMessage::Reply(reply) => assert_eq!(reply.payload, Payload::utf16("x")),
        other => panic!("expected a reply, got {other:?}"),
    }
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn utf16_alignment_on_the_wire() {
    let server = start().await;
    let mut client = server.connect().await;
    // docs/protocol.md's worked example (12.2): UTF-16 request, id 2, odd name "abc" (padded), payload "hi".
    client
        .send_raw(
            &[
                129u8, 2, 0, 0, 0, 0, 0, 0, 0, 3, 97, 98, 99, 0, 104, 0, 105, 0,
            ][..],
        )
        .await;
    // The UTF-16 reply carries its padding byte: 193, id, 0, payload.
    assert_eq!(
        &client.recv_raw().await[..],
        [193, 2, 0, 0, 0, 0, 0, 0, 0, 0, 104, 0, 105, 0]
    );
    // An even name ("echo") needs no padding.
    client
        .send_raw(&[129u8, 3, 0, 0, 0, 0, 0, 0, 0, 4, 101, 99, 104, 111, 104, 0][..])
        .await;
    assert_eq!(
        &client.recv_raw().await[..],
        [193, 3, 0, 0, 0, 0, 0, 0, 0, 0, 104, 0]
    );
    // A UTF-16 signal from the server to a client: odd name "pong" is
    // even with its 2-byte header, so no padding.
    client
        .send_raw(&[65u8, 4, b'p', b'i', b'n', b'g', 104, 0][..])
        .await;
    assert_eq!(
        &client.recv_raw().await[..],
        [65, 4, b'p', b'o', b'n', b'g', 104, 0]
    );
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn signals_both_ways() {
    let server = start().await;
    let mut client = server.connect().await;

    // Client to server, answered by a server signal in the same encoding.
    for payload in [
        Payload::utf8("a"),
        Payload::utf16("b"),
        Payload::binary(vec![1]),
    ] {
        client.signal("ping", payload.clone()).await;
        match client.recv().await {
            ServerMessage::Signal(signal) => {
                assert_eq!(signal.name(), "pong");
                assert_eq!(signal.payload(), &payload);
            }
            other => panic!("expected a signal, got {other:?}"),
        }
    }

    // A handler signals before replying: the signal comes first.
    let id = client
        .send_request("signal-me", Payload::utf8("note"))
        .await;
    match client.recv().await {
        ServerMessage::Signal(signal) => {
            assert_eq!(signal.name(), "notice");
            assert_eq!(signal.payload(), &Payload::utf8("note"));
        }
        other => panic!("expected a signal, got {other:?}"),
    }
    assert_eq!(reply_text(&client.reply_to(id).await), "ok");

    // A heartbeat is taken silently.
    client.send(ClientMessage::Heartbeat).await;
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("after")).await),
        "after"
    );

    // The server lists its connections and signals all of them.
    let mut other = server.connect().await;
    common::eventually("two connections", || server.server.connection_count() == 2).await;
    let sent = server
        .server
        .signal_all(Name::from_static("all"), Payload::utf8("everyone"))
        .unwrap();
    assert_eq!(sent, 2);
    for client in [&mut client, &mut other] {
        match client.recv().await {
            ServerMessage::Signal(signal) => assert_eq!(signal.name(), "all"),
            other => panic!("expected a signal, got {other:?}"),
        }
    }
    client.close().await;
    other.close().await;
    server.stop().await;
}

#[tokio::test]
async fn signal_errors() {
    let server = start().await;
    let mut client = server.connect().await;
    common::eventually("connected", || server.server.connection_count() == 1).await;
    let conn = server.server.connections().remove(0);
    assert!(conn.is_active());
    assert_eq!(
        conn.signal("x", vec![0u8; 100]).await,
        Err(webwire_server::error::SignalError::TooLarge { len: 103, max: 64 })
    );
    assert!(matches!(
        conn.signal("bad\n", Payload::utf8("x")).await,
        Err(webwire_server::error::SignalError::Invalid(_))
    ));
    conn.close();
    let (code, ()) = within("closed", async {
        tokio::join!(client.closed(), conn.closed())
    })
    .await;
    assert_eq!(code, Some(1000));
    assert!(!conn.is_active());
    assert_eq!(
        conn.signal("x", Payload::utf8("late")).await,
        Err(webwire_server::error::SignalError::Closed)
    );
    server.stop().await;
}
