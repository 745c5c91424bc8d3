//! Draining for a deploy (`Server::drain`): closes with 1012 spread over
//! the window, requests during the drain answered, upgrades refused; and
//! the health endpoints of the standalone listener.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    eventually, raw_request, raw_status, upgrade_headers, within, TestClient, TestServer,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use webwire_proto::{Payload, ServerMessage};
use webwire_server::{options::Concurrency, MessageRouter, ReplyError, Request, Server};

/// Requests to `gated` wait until the test adds permits.
fn router(gate: Arc<Semaphore>) -> MessageRouter {
    MessageRouter::new().request("gated", move |req: Request| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, ReplyError>(req.payload().clone())
        }
    })
}

fn get(path: &str) -> Vec<u8> {
    raw_request(
        path,
        "HTTP/1.1",
        &["Host: 127.0.0.1".into(), "Connection: close".into()],
    )
}

#[tokio::test(start_paused = true)]
async fn drain_spreads_the_closes_over_the_window_with_1012() {
    const CLIENTS: u32 = 4;
    const WINDOW: Duration = Duration::from_secs(8);
    let server = Server::builder(MessageRouter::new()).build().unwrap();
    let start = Instant::now();
    let mut closes = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = TestClient::in_memory(&server).await;
        closes.push(tokio::spawn(async move {
            let code = client.closed().await;
            (code, start.elapsed())
        }));
    }
    eventually("connected", || {
        server.connection_count() == CLIENTS as usize
    })
    .await;
    assert!(server.is_ready());
    // Connecting took no virtual time; the drain starts at `start`.
    assert_eq!(start.elapsed(), Duration::ZERO);

    let drain = tokio::spawn({
        let server = server.clone();
        async move {
            server.drain(WINDOW).await;
            start.elapsed()
        }
    });
    eventually("draining", || server.is_draining()).await;
    assert!(!server.is_ready());
    for (i, close) in (0..CLIENTS).zip(closes) {
        let (code, at) = within("a close", close).await.unwrap();
        assert_eq!(code, Some(1012), "connection {i}");
        assert_eq!(
            at,
            WINDOW * i / CLIENTS,
            "connection {i} closed at i*window/n"
        );
    }
    let ended = within("the drain", drain).await.unwrap();
    assert_eq!(
        ended,
        WINDOW * (CLIENTS - 1) / CLIENTS,
        "returns after the last close"
    );
    assert_eq!(server.connection_count(), 0);
    assert!(
        !server.is_shutting_down(),
        "a drain does not shut down by itself"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_draining_connection_answers_every_request_and_new_upgrades_get_503() {
    let gate = Arc::new(Semaphore::new(0));
    let server = Server::builder(router(gate.clone()))
        .concurrency(Concurrency::limited(4))
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    let running = client.send_request("gated", Payload::utf8("first")).await;
    eventually("handler running", || {
        server
            .connections()
            .iter()
            .all(|c| c.stats().handlers_running == 1)
    })
    .await;

    let drain = tokio::spawn({
        let server = server.clone();
        async move { server.drain(Duration::from_secs(1)).await }
    });
    eventually("draining", || server.is_draining()).await;
    // The only connection is closed at once (0 * window / 1); its handler
    // still runs, so the drain waits for it.
    eventually("closing", || {
        server.connections().iter().all(|c| !c.is_active())
    })
    .await;
    let late = client.send_request("gated", Payload::utf8("late")).await;
    assert!(matches!(client.reply_to(late).await, ServerMessage::Shutdown(id) if id == late));
    assert!(!drain.is_finished(), "the drain waits for running handlers");

    let pipe = server.connect_in_memory();
    match tokio_websockets::ClientBuilder::new()
        .uri("ws://localhost/")
        .unwrap()
        .connect_on(pipe)
        .await
    {
        Err(tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(503),
        )) => {}
        Err(err) => panic!("expected 503, got {err:?}"),
        Ok(_) => panic!("expected 503, got a connection"),
    }

    gate.add_permits(1);
    let reply = client.reply_to(running).await;
    assert_eq!(common::reply_text(&reply), "first");
    assert_eq!(client.closed().await, Some(1012));
    within("the drain", drain).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_a_drain_closes_the_rest_with_1001() {
    let server = Server::builder(MessageRouter::new()).build().unwrap();
    let mut first = TestClient::in_memory(&server).await;
    let mut second = TestClient::in_memory(&server).await;
    eventually("connected", || server.connection_count() == 2).await;
    let drain = tokio::spawn({
        let server = server.clone();
        async move { server.drain(Duration::from_secs(60)).await }
    });
    assert_eq!(first.closed().await, Some(1012));
    within("shutdown", server.shutdown()).await;
    assert_eq!(second.closed().await, Some(1001));
    within("the drain", drain).await.unwrap();
}

#[tokio::test]
async fn health_endpoints_answer_plain_gets_and_readiness_flips_on_drain() {
    let server = TestServer::start(Server::builder(MessageRouter::new())).await;
    let addr = server.addr;
    assert_eq!(raw_status(addr, get("/healthz")).await.0, 200);
    let (status, head) = raw_status(addr, get("/readyz")).await;
    assert_eq!(status, 200, "{head}");
    // Any other plain GET is not a health check: the upgrade path answers.
    assert_eq!(raw_status(addr, get("/other")).await.0, 426);
    // An upgrade request upgrades on any path, the health paths included.
    let mut client = TestClient::try_connect(
        addr,
        common::ClientOptions {
            path: "/healthz".into(),
            ..Default::default()
        },
    )
    .await
    .expect("an upgrade on /healthz");

    let closed = tokio::spawn(async move { client.closed().await });
    within("drain", server.server.drain(Duration::ZERO)).await;
    assert_eq!(closed.await.unwrap(), Some(1012));
    assert!(!server.server.is_ready());
    assert_eq!(raw_status(addr, get("/readyz")).await.0, 503);
    assert_eq!(
        raw_status(addr, get("/healthz")).await.0,
        200,
        "alive while draining"
    );
    let (status, head) = raw_status(addr, raw_request("/", "HTTP/1.1", &upgrade_headers())).await;
    assert_eq!(status, 503, "{head}");
    server.stop().await;
}

#[tokio::test]
async fn readiness_is_false_once_a_shutdown_began_and_the_path_option_keeps_health_checks() {
    let gate = Arc::new(Semaphore::new(0));
    let server = TestServer::start(Server::builder(router(gate.clone())).path("/ws")).await;
    let addr = server.addr;
    assert_eq!(raw_status(addr, get("/readyz")).await.0, 200);
    let (status, _) = raw_status(
        addr,
        raw_request("/healthz", "HTTP/1.1", &upgrade_headers()),
    )
    .await;
    assert_eq!(status, 404, "upgrades still only on the server's path");

    // A handler holds the shutdown, so the listener still answers.
    let mut client = TestClient::try_connect(
        addr,
        common::ClientOptions {
            path: "/ws".into(),
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    let id = client.send_request("gated", Payload::utf8("x")).await;
    eventually("handler running", || {
        server
            .server
            .connections()
            .iter()
            .all(|c| c.stats().handlers_running == 1)
    })
    .await;
    let shutdown = tokio::spawn({
        let server = server.server.clone();
        async move { server.shutdown().await }
    });
    eventually("shutting down", || server.server.is_shutting_down()).await;
    assert!(!server.server.is_ready());
    assert_eq!(raw_status(addr, get("/readyz")).await.0, 503);
    assert_eq!(raw_status(addr, get("/healthz")).await.0, 200);
    gate.add_permits(1);
    client.reply_to(id).await;
    assert_eq!(client.closed().await, Some(1001));
    within("shutdown", shutdown).await.unwrap();
    server.stop().await;
}
