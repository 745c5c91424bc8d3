//! Graceful shutdown (docs/protocol.md 9.3) and graceful close of one connection
//! (docs/protocol.md 9.2): every request read is answered, new upgrades get 503,
//! the deadline ends stuck handlers, nothing hangs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, within, ClientOptions, TestClient, TestServer};
use tokio::sync::Semaphore;
use webwire_proto::{Payload, ServerMessage};
use webwire_server::{Concurrency, Connection, MessageRouter, ReplyError, Request, Server};

/// Requests to `gated` wait until the test adds permits; `stuck` never returns.
fn router(gate: Arc<Semaphore>, signals: Arc<AtomicUsize>) -> MessageRouter {
    MessageRouter::new()
        .request("gated", move |req: Request| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, ReplyError>(req.payload().clone())
            }
        })
        .request("sleep", |req: Request| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .request("stuck", |_: Payload| async move {
            std::future::pending::<()>().await;
            Ok::<_, ReplyError>(())
        })
        .signal("count", move |_: Payload| {
            let signals = signals.clone();
            async move {
                signals.fetch_add(1, Ordering::SeqCst);
            }
        })
}

/// Reads until the close frame; returns (replies, shutdown replies, close code).
async fn read_to_close(client: &mut TestClient) -> (usize, usize, Option<u16>) {
    let code = client.closed().await;
    let (mut replies, mut shutdowns) = (0, 0);
    for message in client.take_pending() {
        match message {
            ServerMessage::Reply(_) => replies += 1,
            ServerMessage::Shutdown(_) => shutdowns += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    (replies, shutdowns, code)
}

#[tokio::test]
async fn graceful_shutdown_under_load_answers_every_request_read() {
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 50;
    let gate = Arc::new(Semaphore::new(0));
    let server = TestServer::start(
        Server::builder(router(gate.clone(), Arc::default())).concurrency(Concurrency::limited(8)),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = server.connect().await;
        for n in 0..REQUESTS {
            let name = if n % 2 == 0 { "gated" } else { "sleep" };
            client.send_request(name, Payload::utf8("x")).await;
        }
        clients.push(client);
    }
    eventually("connected", || server.server.connection_count() == CLIENTS).await;
    let conns = server.server.connections();
    // Every connection has handlers held at the gate.
    eventually("handlers running", || {
        conns.iter().all(|c| c.stats().handlers_running > 0)
    })
    .await;

    let shutdown = {
        let server = server.server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    eventually("shutting down", || server.server.is_shutting_down()).await;
    // New upgrades are refused while the running handlers finish.
    match within(
        "connect",
        TestClient::try_connect(server.addr, ClientOptions::default()),
    )
    .await
    {
        Err(tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(503),
        )) => {}
        Err(err) => panic!("expected 503, got {err:?}"),
        Ok(_) => panic!("expected 503, got a connection"),
    }
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for running handlers"
    );
    gate.add_permits(CLIENTS * REQUESTS);

    for (client, conn) in clients.iter_mut().zip(&conns) {
        let (replies, shutdowns, code) = read_to_close(client).await;
        assert_eq!(code, Some(1001));
        let read = conn.stats().messages_received as usize;
        assert_eq!(read, REQUESTS, "every request was read");
        assert_eq!(replies + shutdowns, read, "every request read is answered");
        assert!(
            replies > 0 && shutdowns > 0,
            "{replies} replies, {shutdowns} shutdowns"
        );
    }
    within("shutdown", shutdown).await.unwrap();
    assert_eq!(server.server.connection_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn the_deadline_ends_a_stuck_handler() {
    for concurrency in [
        Concurrency::ONE,
        Concurrency::limited(2),
        Concurrency::Unlimited,
    ] {
        let server = TestServer::start(
            Server::builder(router(Arc::new(Semaphore::new(0)), Arc::default()))
                .concurrency(concurrency),
        )
        .await;
        let mut client = server.connect().await;
        let id = client.send_request("stuck", Payload::utf8("x")).await;
        eventually("handler running", || {
            server
                .server
                .connections()
                .first()
                .is_some_and(|c| c.stats().handlers_running == 1)
        })
        .await;
        let started = tokio::time::Instant::now();
        let server_handle = server.server.clone();
        let shutdown = tokio::spawn(async move {
            server_handle
                .shutdown_with_deadline(Duration::from_millis(300))
                .await
        });
        assert_eq!(
            client.reply_to(id).await,
            ServerMessage::Shutdown(id),
            "{concurrency:?}"
        );
        assert_eq!(client.closed().await, Some(1001));
        within("shutdown", shutdown).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        server.stop().await;
    }
}

#[tokio::test]
async fn closing_a_connection_while_its_handlers_run() {
    for concurrency in [Concurrency::ONE, Concurrency::limited(4)] {
        let gate = Arc::new(Semaphore::new(0));
        let signals = Arc::new(AtomicUsize::new(0));
        let server = TestServer::start(
            Server::builder(router(gate.clone(), signals.clone())).concurrency(concurrency),
        )
        .await;
        let mut client = server.connect().await;
        let running = concurrency.limit().unwrap_or(1);
        let mut ids = Vec::new();
        for _ in 0..running {
            ids.push(client.send_request("gated", Payload::utf8("work")).await);
        }
        eventually("connected", || server.server.connection_count() == 1).await;
        let conn: Connection = server.server.connections().remove(0);
        eventually("handlers running", || {
            conn.stats().handlers_running == running
        })
        .await;

        conn.close();
        assert!(!conn.is_active());
        // What arrives while closing: requests get a shutdown reply, signals are dropped.
        let late = client.send_request("sleep", Payload::utf8("late")).await;
        client.signal("count", Payload::utf8("dropped")).await;
        if running > 1 {
            // Read while handlers still run (with limit 1 the reader is busy
            // with the running handler; it reads these after it).
            assert_eq!(client.reply_to(late).await, ServerMessage::Shutdown(late));
        }
        // The running handlers finish and their replies are sent, then the close.
        gate.add_permits(running);
        for id in ids {
            match client.reply_to(id).await {
                ServerMessage::Reply(reply) => assert_eq!(reply.payload, Payload::utf8("work")),
                other => panic!("expected the reply, got {other:?}"),
            }
        }
        assert_eq!(client.closed().await, Some(1000));
        within("closed", conn.closed()).await;
        if running == 1 {
            // Read after the running handler returned, if it had arrived by
            // then; a request read is always answered.
            let late_was_read = conn.stats().messages_received > running as u64;
            let pending = client.take_pending();
            if late_was_read {
                assert_eq!(pending, [ServerMessage::Shutdown(late)]);
            } else {
                assert_eq!(pending, []);
            }
        }
        assert_eq!(signals.load(Ordering::SeqCst), 0);
        assert_eq!(server.server.connection_count(), 0);
        server.stop().await;
    }
}

#[tokio::test]
async fn shutdown_without_connections_and_run_until() {
    let server = Server::builder(MessageRouter::new()).build().unwrap();
    let listener = server.bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(listener.run_until(async move {
        let _ = stop_rx.await;
    }));
    stop_tx.send(()).unwrap();
    within("run_until", running).await.unwrap().unwrap();
    assert!(server.is_shutting_down());
    // A second shutdown returns at once.
    within("shutdown again", server.shutdown()).await;
}
