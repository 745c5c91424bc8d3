//! Bad and hostile input: every protocol violation closes only its own
//! connection with the right close code; fragments and pings; floods and
//! clients that do not read stay within bounds. (The read timeout is checked
//! on paused time in `in_memory.rs`.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, reply_text, within, ClientOptions, TestClient, TestServer};
use tokio::sync::{mpsc, Semaphore};
use tokio_websockets::Message;
use webwire_proto::{ParseError, Payload, ServerMessage};
use webwire_server::{
    Concurrency, Connection, DisconnectReason, MessageRouter, ReplyError, Request, Server,
};

/// A router that echoes, and reports every disconnect reason.
fn echo_router(reasons: mpsc::UnboundedSender<DisconnectReason>) -> MessageRouter {
    MessageRouter::new()
        .request("echo", |req: Request| async move {
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let reasons = reasons.clone();
            async move {
                let _ = reasons.send(reason);
            }
        })
}

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

/// Requests and the client's close frame in one read: the server's replies
/// for that batch are not yet written when the close frame is read (a
/// closing stream takes no more data frames), but the close handshake
/// still completes: the client gets its close code back, not an abrupt end.
#[tokio::test]
async fn requests_arriving_with_the_close_frame_still_end_with_a_clean_close() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    for round in 0..20 {
        let mut client = server.connect().await;
        let mut messages = Vec::new();
        for _ in 0..8 {
            let id = client.next_id();
            let request =
                webwire_proto::Request::new(id, "echo".try_into().unwrap(), Payload::utf8("x"))
                    .unwrap();
            messages.push(Message::binary(
                webwire_proto::ClientMessage::Request(request).to_bytes(),
            ));
        }
        messages.push(Message::close(
            Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
            "bye",
        ));
        client.send_together(messages).await;
        assert_eq!(client.closed().await, Some(1000), "round {round}");
        assert!(matches!(
            within("reason", reasons.recv()).await,
            Some(DisconnectReason::ClientClosed {
                code: Some(1000),
                ..
            })
        ));
    }
    // The server goes on.
    let mut client = server.connect().await;
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("still")).await),
        "still"
    );
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_requests_in_flight_with_limit_one_are_answered_in_order() {
    let router = MessageRouter::new().request("slow-echo", |req: Request| async move {
        tokio::task::yield_now().await;
        Ok::<_, ReplyError>(req.payload().clone())
    });
    let server = TestServer::start(Server::builder(router)).await;
    let mut client = server.connect().await;
    let mut ids = Vec::new();
    for n in 0..1000u32 {
        ids.push(
            client
                .send_request("slow-echo", Payload::binary(n.to_le_bytes().to_vec()))
                .await,
        );
    }
    for (n, id) in ids.into_iter().enumerate() {
        match client.recv().await {
            ServerMessage::Reply(reply) => {
                assert_eq!(reply.id, id, "replies come in order");
                assert_eq!(&reply.payload.as_bytes()[..], (n as u32).to_le_bytes());
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    client.close().await;
    server.stop().await;
}

/// Counts handlers running at once, held at a gate the test opens.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
    done: AtomicUsize,
}

#[tokio::test]
async fn a_signal_flood_never_runs_more_handlers_than_the_limit() {
    const LIMIT: usize = 4;
    const SIGNALS: usize = 100_000;
    let gauge = Arc::new(Gauge::default());
    let gate = Arc::new(Semaphore::new(0));
    let router = {
        let (gauge, gate) = (gauge.clone(), gate.clone());
        MessageRouter::new().signal("work", move |_: Payload| {
            let (gauge, gate) = (gauge.clone(), gate.clone());
            async move {
                let now = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.max.fetch_max(now, Ordering::SeqCst);
                // Slow: waits until the test lets it through.
                gate.acquire().await.unwrap().forget();
                gauge.running.fetch_sub(1, Ordering::SeqCst);
                gauge.done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let server =
        TestServer::start(Server::builder(router).concurrency(Concurrency::limited(LIMIT))).await;
    let mut client = server.connect().await;
    eventually("connected", || server.server.connection_count() == 1).await;
    let conn = server.server.connections().remove(0);

    let flood = tokio::spawn(async move {
        for _ in 0..SIGNALS {
            client
                .signal("work", Payload::binary(vec![1, 2, 3, 4]))
                .await;
        }
        client
    });

    // With every slot taken, the server stops reading: it has read one
    // message per slot, and at most one more is waiting for a slot.
    eventually("all slots taken", || {
        gauge.running.load(Ordering::SeqCst) == LIMIT
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = conn.stats();
    assert_eq!(stats.handlers_running, LIMIT);
    assert!(
        stats.messages_received <= LIMIT as u64 + 1,
        "read {} messages with {LIMIT} slots",
        stats.messages_received
    );

    gate.add_permits(SIGNALS + 1);
    let mut client = within("the flood to be sent", flood).await.unwrap();
    eventually("every signal handled", || {
        gauge.done.load(Ordering::SeqCst) == SIGNALS
    })
    .await;
    assert!(gauge.max.load(Ordering::SeqCst) <= LIMIT);
    assert_eq!(gauge.max.load(Ordering::SeqCst), LIMIT);
    let stats = conn.stats();
    assert_eq!(stats.messages_received, SIGNALS as u64);
    assert!(stats.max_queued <= stats.queue_capacity);
    // Still serving.
    client.signal("work", Payload::utf8("last")).await;
    eventually("the last one", || {
        gauge.done.load(Ordering::SeqCst) == SIGNALS + 1
    })
    .await;
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_cannot_grow_the_server() {
    const CAPACITY: usize = 4;
    const REQUESTS: usize = 2000;
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let router = echo_router(reasons_tx).request("big", |_: Payload| async move {
        Ok::<_, ReplyError>(vec![0u8; 60 * 1024])
    });
    let server = TestServer::start(
        Server::builder(router)
            .message_buffer_size(64 * 1024)
            .queue_capacity(CAPACITY)
            .queue_timeout(Duration::from_millis(1500)),
    )
    .await;
    let mut client = server.connect().await;
    eventually("connected", || server.server.connection_count() == 1).await;
    let conn = server.server.connections().remove(0);

    // Ask for far more than the socket buffers hold, and never read. The
    // replies fill the socket; the connection task stops writing, and so
    // stops reading: what others send it stays queued.
    for _ in 0..REQUESTS {
        client.send_request("big", Payload::utf8("x")).await;
    }
    eventually("the outbound queue to fill", || {
        let _ = conn.try_signal("late", Payload::utf8("x"));
        conn.stats().queued == CAPACITY
    })
    .await;
    let stats = conn.stats();
    assert_eq!(stats.queue_capacity, CAPACITY);
    assert!(stats.max_queued <= CAPACITY);
    // The reader stopped: it does not take requests it could not answer.
    assert!(
        stats.messages_received < REQUESTS as u64,
        "read all {} requests",
        stats.messages_received
    );
    // A signal to it fails at once instead of queueing forever.
    assert_eq!(
        conn.try_signal("late", Payload::utf8("x")),
        Err(webwire_server::SignalError::QueueFull)
    );
    let read = conn.stats().messages_received;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conn.stats().messages_received, read, "the reader waits");

    // The queue stays full past the queue timeout: the connection is closed.
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::QueueStalled)
    );
    assert!(!conn.is_active());
    eventually("unregistered", || server.server.connection_count() == 0).await;
    drop(client);
    server.stop().await;
}

/// A handler's signals go out before its reply, and the connection's
/// counters see them queued, whatever the concurrency limit.
#[tokio::test]
async fn signals_queued_by_a_handler_go_before_its_reply_and_are_counted() {
    for concurrency in [Concurrency::limited(1), Concurrency::Unlimited] {
        let router =
            MessageRouter::new().request("five", |conn: Connection, _: Payload| async move {
                for i in 0..5 {
                    conn.try_signal("progress", Payload::utf8(i.to_string()))
                        .unwrap();
                }
                Ok::<_, ReplyError>("done")
            });
        let server = TestServer::start(Server::builder(router).concurrency(concurrency)).await;
        let mut client = server.connect().await;
        eventually("connected", || server.server.connection_count() == 1).await;
        let conn = server.server.connections().remove(0);
        let before = conn.stats().messages_sent;

        client.send_request("five", Payload::utf8("")).await;
        for i in 0..5 {
            match client.recv().await {
                ServerMessage::Signal(signal) => {
                    assert_eq!(signal.payload().to_text().unwrap(), i.to_string());
                }
                other => panic!("{concurrency:?}: expected signal {i} first, got {other:?}"),
            }
        }
        assert_eq!(reply_text(&client.recv().await), "done");
        let stats = conn.stats();
        assert_eq!(stats.max_queued, 5, "{concurrency:?}");
        assert_eq!(stats.messages_sent - before, 6, "{concurrency:?}");
        client.close().await;
        server.stop().await;
    }
}
