//! The server's timing rules on paused time, through in-memory connections
//! (`Server::connect_in_memory`): the same upgrade path and connection task
//! as over TCP, with no socket and no real waiting, so each timeout is
//! checked exactly instead of with slack.

mod common;

use std::time::Duration;

use common::{echo_router, reply_text, within, TestClient};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_websockets::Message;
use webwire_proto::{ClientMessage, Payload};
use webwire_server::{error::DisconnectReason, ReplyError, Server};

#[tokio::test(start_paused = true)]
async fn an_in_memory_connection_is_served_like_a_socket() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = Server::builder(echo_router(reasons_tx)).build().unwrap();
    let mut client = TestClient::in_memory(&server).await;
    assert_eq!(client.conf.read_timeout(), Duration::from_secs(60));
    assert_eq!(server.connection_count(), 1);
    let info = server.connections().remove(0);
    assert_eq!(info.remote_addr(), Some(([127, 0, 0, 1], 0).into()));
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("hi")).await),
        "hi"
    );
    client.close().await;
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::ClientClosed {
            code: Some(1000),
            reason: String::new()
        })
    );
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_read_timeout_not_before() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = Server::builder(echo_router(reasons_tx))
        .read_timeout(TIMEOUT)
        .build()
        .unwrap();
    let mut silent = TestClient::in_memory(&server).await;
    let started = Instant::now();
    assert_eq!(silent.closed().await, Some(1001));
    let elapsed = started.elapsed();
    // Virtual time: the close comes at the timeout, give or take the
    // scheduler's millisecond, never early and never late.
    assert!(
        elapsed >= TIMEOUT && elapsed <= TIMEOUT + Duration::from_millis(5),
        "closed after {elapsed:?}"
    );
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::ReadTimeout)
    );
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_and_pings_within_the_timeout_keep_a_connection_open() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = Server::builder(echo_router(reasons_tx))
        .read_timeout(TIMEOUT)
        .build()
        .unwrap();
    let mut busy = TestClient::in_memory(&server).await;
    // Each message comes 1 ms before the timeout would fire: the timeout
    // counts from the last message, so ten of them span ten timeouts.
    for round in 0..10 {
        tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
        if round % 2 == 0 {
            busy.send(ClientMessage::Heartbeat).await;
        } else {
            busy.send_ws(Message::ping("keepalive")).await;
        }
    }
    assert_eq!(
        reply_text(&busy.request("echo", Payload::utf8("still here")).await),
        "still here"
    );
    assert!(reasons.try_recv().is_err(), "no disconnect");
    // Silence after the last message: closed one timeout later.
    let started = Instant::now();
    assert_eq!(busy.closed().await, Some(1001));
    assert!(started.elapsed() <= TIMEOUT + Duration::from_millis(5));
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::ReadTimeout)
    );
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_as_stalled_after_the_queue_timeout() {
    const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let router = echo_router(reasons_tx).request("big", |_: Payload| async move {
        Ok::<_, ReplyError>(vec![0u8; 16 * 1024])
    });
    let server = Server::builder(router)
        .message_buffer_size(64 * 1024)
        .queue_capacity(4)
        .queue_timeout(QUEUE_TIMEOUT)
        .build()
        .unwrap();
    // A pipe of 4 KiB fills after the first reply; the client never reads.
    let mut client = TestClient::in_memory_with(&server, 4 * 1024).await;
    let conn = server.connections().remove(0);
    for _ in 0..64 {
        client.send_request("big", Payload::utf8("x")).await;
    }
    let started = Instant::now();
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::QueueStalled)
    );
    // The stall counts from when the task began to wait for the pipe,
    // which is at the start (the first reply fills it).
    let elapsed = started.elapsed();
    assert!(
        elapsed >= QUEUE_TIMEOUT - Duration::from_millis(5)
            && elapsed <= QUEUE_TIMEOUT + Duration::from_millis(5),
        "stalled after {elapsed:?}"
    );
    assert!(!conn.is_active());
    assert!(
        conn.stats().messages_received < 64,
        "the reader stops while it cannot write"
    );
    drop(client);
    within("shutdown", server.shutdown()).await;
}

/// Requests and the client's close frame in one read: the server's replies
/// for that batch are not yet written when the close frame is read (a
/// closing stream takes no more data frames), but the close handshake
/// still completes: the client gets its close code back, not an abrupt end.
#[tokio::test(start_paused = true)]
async fn requests_arriving_with_the_close_frame_still_end_with_a_clean_close() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = Server::builder(echo_router(reasons_tx)).build().unwrap();
    for round in 0..20 {
        let mut client = TestClient::in_memory(&server).await;
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
    let mut client = TestClient::in_memory(&server).await;
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("still")).await),
        "still"
    );
    client.close().await;
    within("shutdown", server.shutdown()).await;
}
