//! Bad and hostile input over real sockets: every protocol violation closes
//! only its own connection with the right close code; fragments and pings.
//! (The read timeout and the close race are checked on paused time in
//! `in_memory.rs`, floods and clients that do not read in
//! `backpressure.rs`.)

mod common;

use common::{echo_router, reply_text, within, ClientOptions, TestClient, TestServer};
use tokio::sync::mpsc;
use tokio_websockets::Message;
use webwire_proto::{ParseError, Payload};
use webwire_server::{error::DisconnectReason, Server};

#[tokio::test]
async fn protocol_violations_close_only_that_connection() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server =
        TestServer::start(Server::builder(echo_router(reasons_tx)).message_buffer_size(64)).await;
    let mut bystander = server.connect().await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty message", vec![]),
        ("unknown type", vec![7]),
        ("a type only servers send", vec![2, 1, 0, 0, 0, 0, 0, 0, 0]),
        ("too short", vec![128, 1, 0, 0]),
        (
            "name byte outside 32..=126",
            vec![128, 1, 0, 0, 0, 0, 0, 0, 0, 1, 10, b'x'],
        ),
        (
            "name length past the end",
            vec![128, 1, 0, 0, 0, 0, 0, 0, 0, 9, b'a', b'b'],
        ),
        // UTF-16 request with name "a": odd total length.
        (
            "misaligned UTF-16",
            vec![129, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, b'h'],
        ),
        (
            "non-zero UTF-16 padding",
            vec![129, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'a', 9, b'h', 0],
        ),
        ("heartbeat with a tail", vec![33, 0]),
        ("neither name nor payload", vec![64, 0]),
    ];
    for (what, bytes) in cases {
        let mut client = server.connect().await;
        client.send_raw(bytes).await;
        assert_eq!(client.closed().await, Some(1002), "{what}");
        let reason = within("disconnect reason", reasons.recv()).await.unwrap();
        assert!(
            matches!(reason, DisconnectReason::ProtocolViolation(_)),
            "{what}: {reason:?}"
        );
        // The server and the other connection go on.
        assert_eq!(
            reply_text(&bystander.request("echo", Payload::utf8(what)).await),
            what
        );
    }

    // A text frame: close code 1003.
    let mut client = server.connect().await;
    client.send_ws(Message::text("hello")).await;
    assert_eq!(client.closed().await, Some(1003));
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::TextMessage)
    );

    // Larger than the message buffer size: close code 1009.
    let mut client = server.connect().await;
    client.send_raw(vec![64u8; 65]).await;
    assert_eq!(client.closed().await, Some(1009));
    assert!(matches!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::MessageTooBig { max: 64, .. })
    ));

    // The same, split into small fragments.
    let mut client = within(
        "connect",
        TestClient::try_connect(
            server.addr,
            ClientOptions {
                frame_size: Some(8),
                ..ClientOptions::default()
            },
        ),
    )
    .await
    .unwrap();
    client.send_raw(vec![64u8; 100]).await;
    assert_eq!(client.closed().await, Some(1009));

    assert_eq!(
        reply_text(&bystander.request("echo", Payload::utf8("alive")).await),
        "alive"
    );
    assert_eq!(server.server.connection_count(), 1);
    bystander.close().await;
    server.stop().await;
}

#[tokio::test]
async fn violation_reason_carries_the_parse_error() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    let mut client = server.connect().await;
    client.send_raw(vec![7u8]).await;
    assert_eq!(client.closed().await, Some(1002));
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::ProtocolViolation(
            ParseError::UnknownType(7)
        ))
    );
    server.stop().await;
}

#[tokio::test]
async fn fragments_are_reassembled_and_pings_answered() {
    let (reasons_tx, _reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    let mut client = within(
        "connect",
        TestClient::try_connect(
            server.addr,
            ClientOptions {
                frame_size: Some(3),
                ..ClientOptions::default()
            },
        ),
    )
    .await
    .unwrap();
    let text = "a message in many small fragments";
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8(text)).await),
        text
    );

    client.send_ws(Message::ping("are you there")).await;
    let pong = client.recv_ws().await.unwrap().unwrap();
    assert!(pong.is_pong());
    assert_eq!(&pong.as_payload()[..], b"are you there");
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("after")).await),
        "after"
    );
    client.close().await;
    server.stop().await;
}
