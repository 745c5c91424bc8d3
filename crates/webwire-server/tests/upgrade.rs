//! The HTTP upgrade: the connection limit, the origin check, the
//! before-upgrade hook, the path option, and what a connection knows about
//! its upgrade request, the header limit, and the answers to client
//! mistakes in the handshake.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{
    check_bad_handshakes, eventually, raw_status, reply_text, upgrade_of_len, within,
    ClientOptions, TestClient, TestServer,
};
use http::header::ORIGIN;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webwire_proto::Payload;
use webwire_server::{
    options::{Concurrency, ConnectionOptions, OriginPolicy, Refusal},
    Connection, MessageRouter, ReplyError, Request, Server,
};

fn router() -> MessageRouter {
    MessageRouter::new().request("info", |conn: Connection, _: Payload| async move {
        Ok::<_, ReplyError>(format!(
            "{} {} {:?} {}",
            conn.info().uri(),
            conn.info()
                .headers()
                .get("x-test")
                .map_or("-", |v| v.to_str().unwrap()),
            conn.options().concurrency_limit().limit(),
            conn.remote_addr().is_some_and(|a| a.ip().is_loopback()),
        ))
    })
}

/// Connects and expects the upgrade to be refused; returns the status.
async fn refused(addr: SocketAddr, options: ClientOptions) -> u16 {
    match within("connect", TestClient::try_connect(addr, options)).await {
        Err(tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
        )) => status,
        Err(err) => panic!("expected a refusal, got {err:?}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

fn with_origin(origin: &str) -> ClientOptions {
    ClientOptions {
        headers: vec![(ORIGIN, origin.to_owned())],
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn the_connection_limit_answers_503() {
    let server = TestServer::start(Server::builder(router()).max_connections(2)).await;
    let first = server.connect().await;
    let mut second = server.connect().await;
    assert_eq!(refused(server.addr, ClientOptions::default()).await, 503);
    // A connection's limit permit is given back when it ends.
    first.close().await;
    eventually("first gone", || server.server.connection_count() == 1).await;
    let mut third = within(
        "connect",
        TestClient::try_connect(server.addr, ClientOptions::default()),
    )
    .await
    .expect("a free limit permit");
    assert_eq!(
        reply_text(&third.request("info", Payload::utf8("")).await),
        "/ - Some(1) true"
    );
    assert_eq!(
        reply_text(&second.request("info", Payload::utf8("")).await),
        "/ - Some(1) true"
    );
    second.close().await;
    third.close().await;
    server.stop().await;
}

#[tokio::test]
async fn cross_origin_is_refused_by_default() {
    let server = TestServer::start(Server::builder(router())).await;
    assert_eq!(
        refused(server.addr, with_origin("http://evil.example")).await,
        403
    );
    assert_eq!(refused(server.addr, with_origin("null")).await, 403);
    // Same origin (the Host header is 127.0.0.1:port) and no origin at all are fine.
    let same = format!("http://{}", server.addr);
    let client = within(
        "connect",
        TestClient::try_connect(server.addr, with_origin(&same)),
    )
    .await
    .expect("same origin");
    client.close().await;
    server.connect().await.close().await;
    server.stop().await;
}

#[tokio::test]
async fn cross_origin_is_allowed_by_the_option() {
    let any =
        TestServer::start(Server::builder(router()).origin_policy(OriginPolicy::AllowAny)).await;
    let client = within(
        "connect",
        TestClient::try_connect(any.addr, with_origin("http://evil.example")),
    )
    .await
    .expect("any origin");
    client.close().await;
    any.stop().await;

    let listed = TestServer::start(
        Server::builder(router()).origin_policy(OriginPolicy::allow_list(["https://app.example"])),
    )
    .await;
    let client = within(
        "connect",
        TestClient::try_connect(listed.addr, with_origin("https://app.example")),
    )
    .await
    .expect("listed origin");
    client.close().await;
    assert_eq!(
        refused(listed.addr, with_origin("https://other.example")).await,
        403
    );
    listed.stop().await;
}

#[tokio::test]
async fn the_before_upgrade_hook_refuses_or_sets_options() {
    let server = TestServer::start(Server::builder(router()).before_upgrade(|info| {
        match info.headers().get("x-test").map(|v| v.as_bytes()) {
            Some(b"unlimited") => Ok(ConnectionOptions::new().concurrency(Concurrency::Unlimited)),
            Some(b"four") => Ok(ConnectionOptions::new().concurrency(Concurrency::limited(4))),
            Some(_) => Err(Refusal::default()),
            None => Err(Refusal::new(StatusCode::UNAUTHORIZED)),
        }
    }))
    .await;
    assert_eq!(refused(server.addr, ClientOptions::default()).await, 401);
    let nope = ClientOptions {
        headers: vec![("x-test".parse().unwrap(), "nope".into())],
        ..ClientOptions::default()
    };
    assert_eq!(refused(server.addr, nope).await, 403);

    for (value, limit) in [("unlimited", "None"), ("four", "Some(4)")] {
        let options = ClientOptions {
            path: "/chat?room=7".into(),
            headers: vec![("x-test".parse().unwrap(), value.into())],
            ..ClientOptions::default()
        };
        let mut client = within("connect", TestClient::try_connect(server.addr, options))
            .await
            .expect("accepted");
        assert_eq!(
            reply_text(&client.request("info", Payload::utf8("")).await),
            format!("/chat?room=7 {value} {limit} true")
        );
        client.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_path_option_and_plain_http() {
    let server = TestServer::start(
        Server::builder(
            MessageRouter::new().request("echo", |req: Request| async move {
                Ok::<_, ReplyError>(req.payload().clone())
            }),
        )
        .path("/ws"),
    )
    .await;
    let elsewhere = ClientOptions {
        path: "/other".into(),
        ..ClientOptions::default()
    };
    assert_eq!(refused(server.addr, elsewhere).await, 404);
    let at_path = ClientOptions {
        path: "/ws".into(),
        ..ClientOptions::default()
    };
    let mut client = within("connect", TestClient::try_connect(server.addr, at_path))
        .await
        .expect("at the path");
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("x")).await),
        "x"
    );
    client.close().await;

    // A plain HTTP request is told to upgrade.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    within("response", tcp.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    server.stop().await;
}

/// Regression: an HTTP/1.0 upgrade got 500 and an ERROR line (anyone could
/// fill the log with server faults), and keys of the wrong length and
/// requests without Host were accepted.
#[tokio::test]
async fn client_mistakes_in_the_handshake_get_4xx_and_no_error_log() {
    let server = TestServer::start(Server::builder(router())).await;
    check_bad_handshakes(server.addr, "/").await;
    server.stop().await;
}

/// A server whose hook records the length of each upgrade's `X-Pad`
/// header, as the application reads it.
async fn pad_server(limit: Option<usize>) -> (TestServer, Arc<Mutex<Vec<usize>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut builder = Server::builder(router()).before_upgrade(move |info| {
        let pad = info.headers().get("x-pad").map_or(0, |v| v.len());
        record.lock().unwrap().push(pad);
        Ok(ConnectionOptions::new())
    });
    if let Some(limit) = limit {
        builder = builder.max_header_bytes(limit);
    }
    (TestServer::start(builder).await, seen)
}

/// Regression: the only bound on an upgrade's headers was hyper's 400 KiB
/// buffer, and a connection kept them all for its life. A head of exactly
/// the limit (16 KiB by default) is accepted and its headers are there for
/// the application; one byte more gets 431.
#[tokio::test]
async fn upgrade_headers_are_bounded_with_431() {
    for (limit, set) in [
        (16 * 1024, None),
        (4096, Some(4096)),
        (20_000, Some(20_000)),
    ] {
        let (server, seen) = pad_server(set).await;
        let (status, head) = raw_status(server.addr, upgrade_of_len("/", limit)).await;
        assert_eq!(status, 101, "{limit}: {head}");
        let pad = seen.lock().unwrap().pop().expect("the hook saw it");
        assert!(pad > limit - 200, "{limit}: {pad}");
        let (status, head) = raw_status(server.addr, upgrade_of_len("/", limit + 1)).await;
        assert_eq!(status, 431, "{limit}: {head}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "the hook saw a refused head"
        );
        server.stop().await;
    }
}
