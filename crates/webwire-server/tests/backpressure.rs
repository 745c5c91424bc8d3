//! Backpressure, on paused time through in-memory connections: a client
//! that sends faster than the handlers or its own reading allow makes the
//! connection task wait, not grow; a client that does not read fills its
//! pipe, then the queue, and is closed as stalled; replies keep their order
//! at limit 1 and come after the signals their handler sent.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{echo_router, eventually, reply_text, within, TestClient};
use tokio::sync::{mpsc, Semaphore};
use webwire_proto::{Payload, ServerMessage};
use webwire_server::{
    error::DisconnectReason, options::Concurrency, Connection, MessageRouter, ReplyError, Request,
    Server,
};

#[tokio::test(start_paused = true)]
async fn a_thousand_requests_in_flight_with_limit_one_are_answered_in_order() {
    let router = MessageRouter::new().request("slow-echo", |req: Request| async move {
        tokio::task::yield_now().await;
        Ok::<_, ReplyError>(req.payload().clone())
    });
    let server = Server::builder(router).build().unwrap();
    let mut client = TestClient::in_memory(&server).await;
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
    within("shutdown", server.shutdown()).await;
}

/// Counts handlers running at once, held at a gate the test opens.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
    done: AtomicUsize,
}

#[tokio::test(start_paused = true)]
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
    let server = Server::builder(router)
        .concurrency(Concurrency::limited(LIMIT))
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    eventually("connected", || server.connection_count() == 1).await;
    let conn = server.connections().remove(0);

    let flood = tokio::spawn(async move {
        for _ in 0..SIGNALS {
            client
                .signal("work", Payload::binary(vec![1, 2, 3, 4]))
                .await;
        }
        client
    });

    // With every concurrency permit taken, the server stops reading: it
    // has read one message per permit, and at most one more is waiting
    // for a permit.
    eventually("all permits taken", || {
        gauge.running.load(Ordering::SeqCst) == LIMIT
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = conn.stats();
    assert_eq!(stats.handlers_running, LIMIT);
    assert!(
        stats.messages_received <= LIMIT as u64 + 1,
        "read {} messages with {LIMIT} permits",
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
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_cannot_grow_the_server() {
    const CAPACITY: usize = 4;
    const REQUESTS: usize = 2000;
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let router = echo_router(reasons_tx).request("big", |_: Payload| async move {
        Ok::<_, ReplyError>(vec![0u8; 60 * 1024])
    });
    let server = Server::builder(router)
        .message_buffer_size(64 * 1024)
        .queue_capacity(CAPACITY)
        .queue_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    eventually("connected", || server.connection_count() == 1).await;
    let conn = server.connections().remove(0);

    // Ask for far more than the pipe holds, and never read. The
    // replies fill the pipe; the connection task stops writing, and so
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
        Err(webwire_server::error::SignalError::QueueFull)
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
    eventually("unregistered", || server.connection_count() == 0).await;
    drop(client);
    within("shutdown", server.shutdown()).await;
}

/// A handler's signals go out before its reply, and are counted as sent,
/// whatever the concurrency limit; a handler that finishes at its first
/// poll signals its own connection straight into the batch, without the
/// queue.
#[tokio::test(start_paused = true)]
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
        let server = Server::builder(router)
            .concurrency(concurrency)
            .build()
            .unwrap();
        let mut client = TestClient::in_memory(&server).await;
        eventually("connected", || server.connection_count() == 1).await;
        let conn = server.connections().remove(0);
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
        assert_eq!(stats.max_queued, 0, "{concurrency:?}: never queued");
        assert_eq!(stats.messages_sent - before, 6, "{concurrency:?}");
        client.close().await;
        within("shutdown", server.shutdown()).await;
    }
}
