//! The abuse limits: connections and handshakes per client address (429
//! with Retry-After), the server-wide handshake rate (503 with
//! Retry-After), the client address behind trusted proxies, and the
//! message rates per connection and per session (RATE_LIMITED, signals
//! dropped and counted, 1008 for a client that keeps exceeding).
//!
//! Client addresses vary by binding the client's socket to other loopback
//! addresses (127.0.0.2, 127.0.0.3, …), by the remote address of an
//! in-memory connection, and through a trusted proxy's headers.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, reply_text, within, TestClient, TestServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use webwire_proto::{ClientMessage, Payload, ServerMessage};
use webwire_server::error::DisconnectReason;
use webwire_server::limits::{Rate, RATE_LIMITED};
use webwire_server::options::ConnectionOptions;
use webwire_server::{Connection, MessageRouter, ReplyError, Server};

/// Sends a WebSocket upgrade request with `extra` header lines on
/// `stream`; returns the status and the `Retry-After` value. After a 101
/// the stream is the open connection.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    extra: &str,
) -> (u16, Option<String>) {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    within("send the upgrade", stream.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("the answer", stream.read(&mut byte))
            .await
            .expect("read");
        assert_eq!(n, 1, "the stream ended in the answer: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    let status = head[9..12].parse().expect("a status");
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    (status, retry_after)
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    within("connect", socket.connect(server))
        .await
        .expect("connect")
}

#[tokio::test]
async fn connections_per_address_answer_429_past_the_limit() {
    let server =
        TestServer::start(Server::builder(MessageRouter::new()).max_connections_per_ip(2)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect_from([127, 0, 0, 2], server.addr).await;
        assert_eq!(handshake(&mut tcp, "").await, (101, None));
        open.push(tcp);
    }
    let mut third = connect_from([127, 0, 0, 2], server.addr).await;
    assert_eq!(handshake(&mut third, "").await, (429, Some("1".to_owned())));
    // Another address has its own count.
    let mut other = connect_from([127, 0, 0, 3], server.addr).await;
    assert_eq!(handshake(&mut other, "").await.0, 101);
    // A connection that ends gives its place back.
    drop(open.pop());
    eventually("the connection gone", || {
        server.server.connection_count() == 2
    })
    .await;
    let mut again = connect_from([127, 0, 0, 2], server.addr).await;
    assert_eq!(handshake(&mut again, "").await.0, 101);
    drop((open, other, again));
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn handshakes_per_address_answer_429_with_the_time_until_a_token() {
    let server = Server::builder(MessageRouter::new())
        .handshake_rate_per_ip(Rate::per_minute(20).burst(2))
        .build()
        .unwrap();
    let from = |last: u8| SocketAddr::from(([192, 0, 2, last], 40000));
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut pipe = server.connect_in_memory_with(from(1), 4096);
        assert_eq!(handshake(&mut pipe, "").await.0, 101);
        open.push(pipe);
    }
    // A token comes back every 3 s.
    let mut pipe = server.connect_in_memory_with(from(1), 4096);
    assert_eq!(handshake(&mut pipe, "").await, (429, Some("3".to_owned())));
    let mut pipe = server.connect_in_memory_with(from(2), 4096);
    assert_eq!(handshake(&mut pipe, "").await.0, 101, "another address");
    open.push(pipe);
    tokio::time::advance(Duration::from_secs(3)).await;
    let mut pipe = server.connect_in_memory_with(from(1), 4096);
    assert_eq!(handshake(&mut pipe, "").await.0, 101, "a token came back");
    open.push(pipe);
    drop(open);
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn the_server_wide_handshake_rate_answers_503() {
    let server = Server::builder(MessageRouter::new())
        .handshake_rate(Rate::per_second(2).burst(3))
        .build()
        .unwrap();
    let mut open = Vec::new();
    for last in 1..=3 {
        let mut pipe =
            server.connect_in_memory_with(SocketAddr::from(([192, 0, 2, last], 1)), 4096);
        assert_eq!(handshake(&mut pipe, "").await.0, 101);
        open.push(pipe);
    }
    let mut pipe = server.connect_in_memory_with(SocketAddr::from(([192, 0, 2, 9], 1)), 4096);
    assert_eq!(handshake(&mut pipe, "").await, (503, Some("1".to_owned())));
    tokio::time::advance(Duration::from_millis(500)).await;
    let mut pipe = server.connect_in_memory_with(SocketAddr::from(([192, 0, 2, 9], 1)), 4096);
    assert_eq!(handshake(&mut pipe, "").await.0, 101);
    open.push(pipe);
    drop(open);
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_trusted_proxy_names_the_client_and_others_are_not_believed() {
    // What the hook saw: the client's address and the peer's.
    type Seen = Vec<(Option<IpAddr>, Option<SocketAddr>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let hook_seen = seen.clone();
    let server = Server::builder(MessageRouter::new())
        .max_connections_per_ip(1)
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .before_upgrade(move |info| {
            hook_seen
                .lock()
                .unwrap()
                .push((info.client_ip(), info.remote_addr()));
            Ok(ConnectionOptions::new())
        })
        .build()
        .unwrap();
    let proxy = SocketAddr::from(([10, 0, 0, 1], 5000));
    let untrusted = SocketAddr::from(([192, 0, 2, 1], 5000));
    let mut open = Vec::new();
    let connect = |from: SocketAddr| server.connect_in_memory_with(from, 4096);

    // Through the proxy: two clients, one connection each.
    for client in ["203.0.113.1", "203.0.113.2"] {
        let mut pipe = connect(proxy);
        let header = format!("X-Forwarded-For: {client}, 10.0.0.7\r\n");
        assert_eq!(handshake(&mut pipe, &header).await.0, 101);
        open.push(pipe);
    }
    let mut pipe = connect(proxy);
    let again = "Forwarded: for=203.0.113.1\r\n";
    assert_eq!(handshake(&mut pipe, again).await.0, 429, "one per client");

    // Anyone else's headers are ignored: the peer is the client.
    let mut pipe = connect(untrusted);
    let claim = "X-Forwarded-For: 203.0.113.3\r\n";
    assert_eq!(handshake(&mut pipe, claim).await.0, 101);
    open.push(pipe);
    let mut pipe = connect(untrusted);
    let other_claim = "X-Forwarded-For: 203.0.113.4\r\n";
    assert_eq!(handshake(&mut pipe, other_claim).await.0, 429);

    let seen = seen.lock().unwrap().clone();
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert_eq!(
        seen,
        vec![
            (ip("203.0.113.1"), Some(proxy)),
            (ip("203.0.113.2"), Some(proxy)),
            (ip("192.0.2.1"), Some(untrusted)),
        ],
        "the hook sees the client's address and the peer's"
    );
    drop(open);
    within("shutdown", server.shutdown()).await;
}

/// `work` counts its runs and answers `ok`; `note` counts its signals.
fn counting_router(
    requests: Arc<AtomicUsize>,
    signals: Arc<AtomicUsize>,
    reasons: Arc<Mutex<Vec<DisconnectReason>>>,
) -> MessageRouter {
    MessageRouter::new()
        .request("work", move |_: Connection, _: Payload| {
            requests.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ReplyError>("ok") }
        })
        .signal("note", move |_: Connection, _: Payload| {
            signals.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("LOGIN", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        })
        .on_disconnect(move |_: Connection, reason: DisconnectReason| {
            reasons.lock().unwrap().push(reason);
            async {}
        })
}

fn error_code(message: &ServerMessage) -> Option<String> {
    match message {
        ServerMessage::Error(err) => Some(err.code.to_string()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn messages_over_the_connection_rate_are_refused_dropped_and_then_closed_with_1008() {
    let (requests, signals, reasons) = (Arc::default(), Arc::default(), Arc::default());
    let server = Server::builder(counting_router(
        Arc::clone(&requests),
        Arc::clone(&signals),
        Arc::clone(&reasons),
    ))
    .message_rate_per_connection(Rate::per_second(10).burst(3))
    .rate_limit_close_after(Duration::from_secs(3))
    .build()
    .unwrap();
    let mut client = TestClient::in_memory(&server).await;

    for _ in 0..3 {
        assert_eq!(
            reply_text(&client.request("work", Payload::utf8("")).await),
            "ok"
        );
    }
    let refused = client.request("work", Payload::utf8("")).await;
    assert_eq!(error_code(&refused).as_deref(), Some(RATE_LIMITED));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "the handler did not run"
    );
    client.signal("note", Payload::utf8("")).await;
    client.signal("note", Payload::utf8("")).await;
    // A request after the signals: they have been handled when it is answered.
    let refused = client.request("work", Payload::utf8("")).await;
    assert_eq!(error_code(&refused).as_deref(), Some(RATE_LIMITED));
    assert_eq!(signals.load(Ordering::SeqCst), 0, "dropped");
    let conn = server.connections().pop().expect("the connection");
    assert_eq!(conn.stats().rate_limited, 4);

    // A token comes back every 100 ms.
    tokio::time::advance(Duration::from_millis(100)).await;
    client.signal("note", Payload::utf8("")).await;
    let refused = client.request("work", Payload::utf8("")).await;
    assert_eq!(error_code(&refused).as_deref(), Some(RATE_LIMITED));
    assert_eq!(signals.load(Ordering::SeqCst), 1);

    // Kept over the limit for 3 s (requests over it at most 500 ms
    // apart): closed with 1008, after the last request's answer.
    let mut closed = None;
    let mut last = None;
    'rounds: for round in 1..=10 {
        tokio::time::advance(Duration::from_millis(500)).await;
        // Five tokens came back: the sixth request is over the limit.
        for _ in 0..6 {
            client.send_request("work", Payload::utf8("")).await;
        }
        for _ in 0..6 {
            match client.recv_ws().await {
                Some(Ok(message)) if message.is_close() => {
                    let code: u16 = message.as_close().unwrap().0.into();
                    closed = Some((round, code));
                    break 'rounds;
                }
                Some(Ok(message)) if message.is_binary() => {
                    let data = bytes::Bytes::from(message.into_payload());
                    last = Some(ServerMessage::parse(data).unwrap());
                }
                other => panic!("expected an answer or the close, got {other:?}"),
            }
        }
        assert_eq!(
            error_code(last.as_ref().unwrap()).as_deref(),
            Some(RATE_LIMITED)
        );
    }
    // The run began at the first refusal (0 s); at 3.1 s it lasted 3 s.
    assert_eq!(closed, Some((6, 1008)));
    assert_eq!(error_code(&last.unwrap()).as_deref(), Some(RATE_LIMITED));
    eventually("the disconnect hook", || {
        !reasons.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        reasons.lock().unwrap().as_slice(),
        [DisconnectReason::RateLimited]
    );
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn the_connections_of_a_session_share_its_message_rate() {
    let (requests, signals, reasons) = (Arc::default(), Arc::default(), Arc::default());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder(counting_router(Arc::clone(&requests), signals, reasons))
        .session_manager(Arc::new(webwire_server::session::FileSessionManager::new(
            dir.path(),
        )))
        .message_rate_per_session(Rate::per_second(1).burst(4))
        .build()
        .unwrap();
    let mut first = TestClient::in_memory(&server).await;
    let mut second = TestClient::in_memory(&server).await;
    // Without a session, no session limit.
    for _ in 0..5 {
        assert_eq!(
            reply_text(&second.request("work", Payload::utf8("")).await),
            "ok"
        );
    }
    let key = reply_text(&first.request("login", Payload::utf8("")).await);
    first.take_pending();
    let id = second.next_id();
    second
        .send(ClientMessage::RestoreSession {
            id,
            key: key.into(),
        })
        .await;
    assert!(matches!(second.reply_to(id).await, ServerMessage::Reply(_)));
    // Four tokens for both connections together (the login came before
    // the session existed, the restore is a session request: neither counts).
    assert_eq!(
        reply_text(&first.request("work", Payload::utf8("")).await),
        "ok"
    );
    assert_eq!(
        reply_text(&second.request("work", Payload::utf8("")).await),
        "ok"
    );
    assert_eq!(
        reply_text(&first.request("work", Payload::utf8("")).await),
        "ok"
    );
    assert_eq!(
        reply_text(&second.request("work", Payload::utf8("")).await),
        "ok"
    );
    let refused = first.request("work", Payload::utf8("")).await;
    assert_eq!(error_code(&refused).as_deref(), Some(RATE_LIMITED));
    let refused = second.request("work", Payload::utf8("")).await;
    assert_eq!(error_code(&refused).as_deref(), Some(RATE_LIMITED));
    assert_eq!(requests.load(Ordering::SeqCst), 9);
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn without_limits_nothing_is_refused() {
    let (requests, signals, reasons) = (Arc::default(), Arc::default(), Arc::default());
    let server = Server::builder(counting_router(Arc::clone(&requests), signals, reasons))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(TestClient::in_memory(&server).await);
    }
    for _ in 0..200 {
        assert_eq!(
            reply_text(&clients[0].request("work", Payload::utf8("")).await),
            "ok"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 200);
    within("shutdown", server.shutdown()).await;
}
