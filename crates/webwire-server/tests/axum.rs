//! Headless mode: the server mounted in an axum app, beside an ordinary
//! HTTP route, on the app's port.

mod common;

use std::net::SocketAddr;

use axum::routing::get;
use common::{reply_text, within, ClientOptions, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webwire_proto::Payload;
use webwire_server::{Connection, Request, RequestError, Router, Server};

#[tokio::test]
async fn mounted_in_an_axum_app_beside_an_http_route() {
    common::init_logs();
    let router = Router::new().request("whoami", |conn: Connection, _: Request| async move {
        Ok::<_, RequestError>(format!(
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
