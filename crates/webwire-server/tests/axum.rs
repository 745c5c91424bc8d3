//! Headless mode: the server mounted in an axum app, beside an ordinary
//! HTTP route, on the app's port.

mod common;

use std::net::SocketAddr;

use axum::routing::get;
use common::{
    check_bad_handshakes, raw_status, reply_text, upgrade_headers, upgrade_of_len, within,
    ClientOptions, LogCapture, TestClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webwire_proto::Payload;
use webwire_server::{Connection, MessageRouter, ReplyError, Request, Server};

#[tokio::test]
async fn mounted_in_an_axum_app_beside_an_http_route() {
    common::init_logs();
    let router =
        MessageRouter::new().request("whoami", |conn: Connection, _: Request| async move {
            Ok::<_, ReplyError>(format!(
                "{} {}",
                conn.info().uri().path(),
                conn.remote_addr().is_some()
            ))
        });
    let webwire = Server::builder(router).build().unwrap();
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route_service("/ws", webwire.service());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(tcp, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = app_stopped.await;
            })
            .await
    });

    // The ordinary route.
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    within("health", http.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // The webwire route on the same port.
    let options = ClientOptions {
        path: "/ws".into(),
        ..ClientOptions::default()
    };
    let mut client = within("connect", TestClient::try_connect(addr, options))
        .await
        .unwrap();
    assert_eq!(
        reply_text(&client.request("whoami", Payload::utf8("")).await),
        "/ws true"
    );
    assert_eq!(webwire.connection_count(), 1);

    // Shutting the webwire server down closes its connections; then the app stops.
    let closing = tokio::spawn(async move { client.closed().await });
    let webwire_shutdown = webwire.clone();
    let stopped = tokio::spawn(async move { webwire_shutdown.shutdown().await });
    assert_eq!(within("close", closing).await.unwrap(), Some(1001));
    within("webwire shutdown", stopped).await.unwrap();
    assert_eq!(webwire.connection_count(), 0);
    stop_app.send(()).unwrap();
    within("axum", serving).await.unwrap().unwrap();
}

/// An axum app serving `webwire` at `/ws`; stopped by sending on the
/// returned channel.
async fn serve_app(
    webwire: &Server,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = axum::Router::new().route_service("/ws", webwire.service());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(tcp, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = app_stopped.await;
            })
            .await
    });
    (addr, stop_app, serving)
}

/// Regression (headless): an HTTP/1.0 upgrade got 500 and an ERROR line,
/// keys of the wrong length and requests without Host were accepted, and
/// 350 KiB of headers were taken (the app's HTTP server reads the head:
/// the webwire service itself answers 431).
#[tokio::test]
async fn headless_client_mistakes_get_4xx_and_no_error_log() {
    let webwire = Server::builder(MessageRouter::new()).build().unwrap();
    let (addr, stop_app, serving) = serve_app(&webwire).await;
    check_bad_handshakes(addr, "/ws").await;
    within("webwire shutdown", webwire.shutdown()).await;
    stop_app.send(()).unwrap();
    within("axum", serving).await.unwrap().unwrap();
}

/// Headless: the header limit holds to the byte, like standalone.
#[tokio::test]
async fn headless_upgrade_headers_are_bounded_with_431() {
    for (limit, set) in [(16 * 1024, None), (4096, Some(4096))] {
        let mut builder = Server::builder(MessageRouter::new());
        if let Some(limit) = set {
            builder = builder.max_header_bytes(limit);
        }
        let webwire = builder.build().unwrap();
        let (addr, stop_app, serving) = serve_app(&webwire).await;
        let (status, head) = raw_status(addr, upgrade_of_len("/ws", limit)).await;
        assert_eq!(status, 101, "{limit}: {head}");
        let (status, head) = raw_status(addr, upgrade_of_len("/ws", limit + 1)).await;
        assert_eq!(status, 431, "{limit}: {head}");
        within("webwire shutdown", webwire.shutdown()).await;
        stop_app.send(()).unwrap();
        within("axum", serving).await.unwrap().unwrap();
    }
}

/// A server fault stays one: an HTTP/1.1 upgrade the HTTP server cannot
/// hand over (served without upgrades) gets 500 and an ERROR line.
#[tokio::test]
async fn an_http_server_without_upgrades_is_a_server_fault() {
    use tower::ServiceExt as _;

    let (logs, _guard) = LogCapture::start();
    let webwire = Server::builder(MessageRouter::new()).build().unwrap();
    let mut request = http::Request::get("/ws");
    for line in upgrade_headers() {
        let (name, value) = line.split_once(": ").unwrap();
        request = request.header(name, value);
    }
    let response = webwire
        .service()
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(logs.lines_at("ERROR").len(), 1, "{}", logs.text());
}
