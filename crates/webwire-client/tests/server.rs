//! The client against the project's own server (webwire-server), over
//! 127.0.0.1 or, where the socket does not matter, in memory through
//! `ClientBuilder::transport` and `Server::connect_in_memory`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{builder, ca_and_leaf, eventually, wait_event, TestCerts, PATIENCE};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webwire_client::{
    ClientEvent, ConnectError, Encoding, Payload, RequestError, Status, TlsConfig,
};
use webwire_server::{
    error::DisconnectReason,
    options::Concurrency,
    session::{FileSessionManager, MemorySessionManager},
    Connection, MessageRouter, ReplyError, Request, Server, ServerBuilder, ServerError,
};

/// A running server and what its handlers saw.
struct TestServer {
    server: Server,
    addr: SocketAddr,
    /// The listener's task; `None` in memory.
    run: Option<JoinHandle<Result<(), ServerError>>>,
    /// Requests that reached a handler.
    handled: Arc<AtomicUsize>,
    /// Why connections ended.
    disconnects: mpsc::UnboundedReceiver<DisconnectReason>,
}

impl TestServer {
    async fn start(
        configure: impl FnOnce(ServerBuilder<MessageRouter>) -> ServerBuilder<MessageRouter>,
    ) -> Self {
        Self::start_on("127.0.0.1:0", configure).await
    }

    async fn start_on(
        addr: &str,
        configure: impl FnOnce(ServerBuilder<MessageRouter>) -> ServerBuilder<MessageRouter>,
    ) -> Self {
        let mut server = Self::in_memory(configure);
        let listener = server.server.bind(addr).await.unwrap();
        server.addr = listener.local_addr();
        server.run = Some(tokio::spawn(listener.run()));
        server
    }

    /// A server without a listener: clients reach it with [`client`](Self::client).
    fn in_memory(
        configure: impl FnOnce(ServerBuilder<MessageRouter>) -> ServerBuilder<MessageRouter>,
    ) -> Self {
        let handled = Arc::new(AtomicUsize::new(0));
        let (tx, disconnects) = mpsc::unbounded_channel();
        // Sessions in memory unless a test configures another manager.
        let sessions = Arc::new(MemorySessionManager::new());
        let base = Server::builder(router(Arc::clone(&handled), tx)).session_manager(sessions);
        let server = configure(base).build().unwrap();
        Self {
            server,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            run: None,
            handled,
            disconnects,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// A client builder whose every connection, reconnections too, is a
    /// new in-memory connection to this server.
    fn client(&self) -> webwire_client::ClientBuilder {
        let server = self.server.clone();
        builder("ws://webwire.test/").transport(move || {
            let stream = server.connect_in_memory();
            async move { Ok(stream) }
        })
    }

    async fn stop(self) {
        tokio::time::timeout(PATIENCE, self.server.shutdown())
            .await
            .unwrap();
        if let Some(run) = self.run {
            let _ = tokio::time::timeout(PATIENCE, run).await.unwrap();
        }
    }

    async fn next_disconnect(&mut self) -> DisconnectReason {
        tokio::time::timeout(PATIENCE, self.disconnects.recv())
            .await
            .expect("no disconnection in time")
            .unwrap()
    }
}

/// The test application: echo, errors, sleep, signals, disconnection,
/// sessions (as docs/interop.md's `login`, `logout`, `whoami`).
fn router(
    handled: Arc<AtomicUsize>,
    disconnects: mpsc::UnboundedSender<DisconnectReason>,
) -> MessageRouter {
    let count = move || {
        handled.fetch_add(1, Ordering::Relaxed);
    };
    let echo = count.clone();
    let sleep = count.clone();
    MessageRouter::new()
        .request("echo", move |req: Request| {
            echo();
            async move { Ok::<_, ReplyError>(req.payload().clone()) }
        })
        .request("error", |text: String| async move {
            Err::<Payload, _>(ReplyError::from_static("BAD", format!("bad {text}")))
        })
        .request("internal", |_: Payload| async move {
            Err::<Payload, _>(std::io::Error::other("secret cause"))
        })
        .request("sleep", move |ms: String| {
            sleep();
            async move {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, ReplyError>(Payload::utf8("slept"))
            }
        })
        .request(
            "signal-me",
            |conn: Connection, payload: Payload| async move {
                conn.signal("notice", payload).await.unwrap();
                Ok::<_, ReplyError>(Payload::utf8("ok"))
            },
        )
        .request("disconnect-me", |conn: Connection, _: Payload| async move {
            conn.close();
            Ok::<_, ReplyError>(Payload::utf8("ok"))
        })
        .request("login", |conn: Connection, user: String| async move {
            let info = serde_json::json!({ "user": user }).as_object().cloned();
            let session = conn.create_session(info).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
        })
        .request("logout", |conn: Connection, _: Payload| async move {
            conn.close_session().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
        })
        .request("whoami", |conn: Connection, _: Payload| async move {
            let user: Option<String> = conn.session_info("user")?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                user.unwrap_or_else(|| "anonymous".into()),
            )
        })
        .signal("ping", |conn: Connection, payload: Payload| async move {
            let _ = conn.signal("pong", payload).await;
        })
        .on_disconnect(move |_conn, reason| {
            let _ = disconnects.send(reason);
            async {}
        })
}

fn unlimited(builder: ServerBuilder<MessageRouter>) -> ServerBuilder<MessageRouter> {
    builder.concurrency(Concurrency::Unlimited)
}

#[tokio::test]
async fn requests_and_typed_errors() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    for payload in [
        Payload::utf8("hello"),
        Payload::utf16("héllo 🌍"),
        Payload::binary(vec![0, 255, 1]),
        Payload::default(),
    ] {
        let reply = client.request("echo", payload.clone()).await.unwrap();
        assert_eq!(reply, payload);
    }
    assert_eq!(
        client.request("error", "x").await,
        Err(RequestError::Request {
            code: "BAD".into(),
            message: "bad x".into()
        })
    );
    assert_eq!(
        client.request("internal", "x").await,
        Err(RequestError::InternalError)
    );
    assert!(matches!(
        client.request("nope", "x").await,
        Err(RequestError::Request { code, .. }) if code == "UNKNOWN_REQUEST"
    ));
    assert_eq!(
        client.server_config().unwrap().buffer_size,
        8192,
        "the server's default"
    );
    server.stop().await;
}

#[tokio::test]
async fn signals_both_ways() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let mut events = client.events();
    client.signal("ping", Payload::utf16("p")).await.unwrap();
    let ClientEvent::Signal(pong) =
        wait_event(&mut events, |e| matches!(e, ClientEvent::Signal(_))).await
    else {
        unreachable!()
    };
    assert_eq!(pong.name(), "pong");
    assert_eq!(pong.payload(), &Payload::utf16("p"));

    // A signal sent by a handler arrives before the reply.
    let reply = client.request("signal-me", "n").await.unwrap();
    assert_eq!(reply.to_text().unwrap(), "ok");
    let ClientEvent::Signal(notice) = events.try_recv().expect("signal before reply") else {
        panic!("expected the signal")
    };
    assert_eq!(notice.name(), "notice");
    server.stop().await;
}

/// On paused time: server and client are in this process, on loopback.
#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_idle_client_connected() {
    let mut server = TestServer::in_memory(|b| b.read_timeout(Duration::from_secs(1)));
    let client = server.client().connect().await.unwrap();
    assert_eq!(client.server_config().unwrap().read_timeout_ms, 1000);
    let mut events = client.events();
    assert_eq!(events.recv().await, Some(ClientEvent::Connected));
    // Idle for ten read timeouts (virtual time).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(client.status(), Status::Connected);
    assert_eq!(events.try_recv(), None, "no disconnection meanwhile");
    assert_eq!(
        client.request("echo", "still here").await.unwrap(),
        Payload::utf8("still here")
    );
    assert!(server.disconnects.try_recv().is_err());
    server.server.shutdown().await;
    assert_eq!(server.next_disconnect().await, DisconnectReason::Shutdown);
}

/// On paused time, so that the late replies (after 300 ms and 2 s) are
/// really written by the server before the test ends.
#[tokio::test(start_paused = true)]
async fn timeouts_and_cancellation() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let mut events = client.events();
    assert_eq!(events.recv().await, Some(ClientEvent::Connected));
    assert_eq!(
        client
            .request_timeout("sleep", "2000", Duration::from_millis(100))
            .await,
        Err(RequestError::TimedOut)
    );
    eventually("the cancel", || client.pending_requests() == 0).await;

    let task = tokio::spawn({
        let client = client.clone();
        async move { client.request("sleep", "300").await }
    });
    eventually("the request to be sent", || client.pending_requests() == 1).await;
    task.abort();
    eventually("the cancel", || client.pending_requests() == 0).await;
    // The late replies (after 300 ms and 2 s) are discarded; the
    // connection keeps working meanwhile and after them.
    let conn = server.server.connections().remove(0);
    assert_eq!(conn.stats().handlers_running, 2, "both sleeps still run");
    for _ in 0..25 {
        assert_eq!(
            client.request("echo", "x").await.unwrap(),
            Payload::utf8("x")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 2.5 s later: both handlers returned and their replies were written.
    assert_eq!(conn.stats().handlers_running, 0);
    assert_eq!(client.pending_requests(), 0);
    assert_eq!(client.status(), Status::Connected);
    assert_eq!(
        events.try_recv(),
        None,
        "nothing surfaced from the late replies"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_request_is_refused_before_reaching_the_server() {
    let server = TestServer::start(|b| b.message_buffer_size(64)).await;
    let client = builder(&server.url()).connect().await.unwrap();
    let big = "x".repeat(100);
    assert_eq!(
        client.request("echo", big).await,
        Err(RequestError::MessageTooLarge { size: 114, max: 64 })
    );
    assert_eq!(server.handled.load(Ordering::Relaxed), 0);
    // Still connected: a small one works.
    assert_eq!(
        client.request("echo", "ok").await.unwrap(),
        Payload::utf8("ok")
    );
    assert_eq!(server.handled.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn sub_protocol_must_match() {
    let server = TestServer::start(|b| b.sub_protocol("chat")).await;
    let err = builder(&server.url())
        .sub_protocol("games")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::SubProtocolMismatch { expected, announced } if expected == "games" && announced == "chat"),
        "{err:?}"
    );
    let client = builder(&server.url())
        .sub_protocol("chat")
        .connect()
        .await
        .unwrap();
    assert_eq!(client.server_config().unwrap().sub_protocol, "chat");
    server.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_server_drops_the_connection() {
    let mut server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let mut events = client.events();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(
        client.request("disconnect-me", "").await.unwrap(),
        Payload::utf8("ok")
    );
    assert_eq!(
        server.next_disconnect().await,
        DisconnectReason::ClosedByServer
    );
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(
        client.request("echo", "back").await.unwrap(),
        Payload::utf8("back")
    );
    // Also when the server closes it from outside a handler.
    for conn in server.server.connections() {
        conn.close();
    }
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(
        client.request("echo", "again").await.unwrap(),
        Payload::utf8("again")
    );
    server.stop().await;
}

/// The in-memory path is the upgrade path of a socket: the server's hooks
/// see the request's headers (extra ones and `Origin` too) and the
/// connection's remote address; each reconnection is a new connection.
#[tokio::test]
async fn in_memory_connections_go_through_the_upgrade_path() {
    use webwire_server::options::OriginPolicy;

    let server = TestServer::in_memory(|b| {
        b.origin_policy(OriginPolicy::allow_list(["https://app.example"]))
    });
    let refused = server
        .client()
        .origin("https://evil.example")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ConnectError::Refused { status: 403, .. }),
        "{refused:?}"
    );

    let client = server
        .client()
        .origin("https://app.example")
        .header("X-Token", "t0k")
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let conn = server.server.connections().remove(0);
    let headers = conn.info().headers();
    assert_eq!(headers["x-token"], "t0k");
    assert_eq!(headers["origin"], "https://app.example");
    assert_eq!(headers["host"], "webwire.test");
    assert_eq!(
        conn.remote_addr(),
        Some(SocketAddr::from(([127, 0, 0, 1], 0)))
    );

    conn.close();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let again = server.server.connections();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id(), conn.id(), "a new connection");
    assert_eq!(again[0].info().headers()["x-token"], "t0k");
    assert_eq!(
        client.request("echo", "back").await.unwrap(),
        Payload::utf8("back")
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_headers_are_refused_before_connecting() {
    let server = TestServer::in_memory(unlimited);
    let err = server
        .client()
        .header("Sec-WebSocket-Key", "mine")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::InvalidHeader { name, .. } if name == "Sec-WebSocket-Key"),
        "{err:?}"
    );
    assert_eq!(server.server.connection_count(), 0);
}

#[tokio::test]
async fn requests_wait_across_a_server_restart() {
    let server = TestServer::start(unlimited).await;
    let addr = server.addr;
    let client = builder(&server.url()).connect().await.unwrap();
    let mut events = client.events();
    server.stop().await;
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    assert_eq!(client.status(), Status::Connecting);
    // Made while the server is down: waits for the new one.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.request("echo", "waited").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    let server = TestServer::start_on(&addr.to_string(), unlimited).await;
    assert_eq!(waiting.await.unwrap().unwrap(), Payload::utf8("waited"));
    assert_eq!(client.status(), Status::Connected);
    server.stop().await;
}

#[tokio::test]
async fn requests_time_out_while_the_server_is_down() {
    let server = TestServer::start(unlimited).await;
    let client = builder(&server.url()).connect().await.unwrap();
    server.stop().await;
    eventually("reconnecting", || client.status() == Status::Connecting).await;
    assert_eq!(
        client
            .request_timeout("echo", "x", Duration::from_millis(200))
            .await,
        Err(RequestError::TimedOut)
    );
}

#[tokio::test]
async fn close_is_graceful() {
    let mut server = TestServer::start(unlimited).await;
    let client = builder(&server.url()).connect().await.unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.request("sleep", "300").await }
    });
    eventually("the request to be sent", || client.pending_requests() == 1).await;
    client.close().await;
    assert_eq!(slow.await.unwrap().unwrap(), Payload::utf8("slept"));
    assert_eq!(client.status(), Status::Closed);
    assert_eq!(
        server.next_disconnect().await,
        DisconnectReason::ClientClosed {
            code: Some(1000),
            reason: String::new()
        }
    );
    assert_eq!(client.request("echo", "x").await, Err(RequestError::Closed));
    server.stop().await;
}

#[tokio::test]
async fn wss_with_a_ca_made_in_the_test() {
    let TestCerts { ca, leaf, leaf_key } = ca_and_leaf();
    let tls = webwire_server::TlsConfig::from_pem(
        leaf.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = Server::builder(router(Arc::default(), mpsc::unbounded_channel().0))
        .build()
        .unwrap();
    let listener = server.bind_tls("127.0.0.1:0", tls).await.unwrap();
    let url = format!("wss://{}/", listener.local_addr());
    let run = tokio::spawn(listener.run());

    let client = builder(&url)
        .tls(TlsConfig::with_ca_pem(ca.pem().as_bytes()).unwrap())
        .connect()
        .await
        .unwrap();
    let reply = client
        .request("echo", Payload::utf16("secret"))
        .await
        .unwrap();
    assert_eq!(reply.encoding(), Encoding::Utf16);
    assert_eq!(reply.to_text().unwrap(), "secret");
    // Plain ws:// to the TLS port fails.
    assert!(builder(&url.replace("wss", "ws")).connect().await.is_err());
    client.close().await;
    server.shutdown().await;
    let _ = run.await;
}

#[tokio::test]
async fn ten_thousand_requests_in_flight_from_eight_tasks() {
    let server = TestServer::start(unlimited).await;
    let client = builder(&server.url()).connect().await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                let calls = (0..1250).map(|i| {
                    let client = &client;
                    async move {
                        let text = format!("{task}-{i}");
                        // Every 100th sleeps a little, so that replies come
                        // out of order.
                        let (name, payload) = if i % 100 == 0 {
                            ("sleep", "20".to_owned())
                        } else {
                            ("echo", text.clone())
                        };
                        let reply = client.request(name, payload).await.unwrap();
                        if name == "echo" {
                            assert_eq!(reply.to_text().unwrap(), text);
                        }
                    }
                });
                futures_util::future::join_all(calls).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(client.pending_requests(), 0);
    assert_eq!(server.handled.load(Ordering::Relaxed), 10_000);
    server.stop().await;
}

/// Logs in as `user`; returns the session key, checked against the
/// client's session and the SessionCreated event.
async fn login(client: &webwire_client::Client, user: &str) -> String {
    let mut events = client.events();
    let key = client.request("login", user.to_owned()).await.unwrap();
    let key = key.to_text().unwrap().into_owned();
    let ClientEvent::SessionCreated(session) =
        wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await
    else {
        unreachable!()
    };
    assert_eq!(session.key, key);
    assert_eq!(client.session().unwrap().key, key);
    key
}

async fn whoami(client: &webwire_client::Client) -> String {
    let reply = client.request("whoami", "").await.unwrap();
    reply.to_text().unwrap().into_owned()
}

#[tokio::test]
async fn sessions_created_and_closed_by_the_server() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let mut events = client.events();
    assert_eq!(whoami(&client).await, "anonymous");
    let key = login(&client, "ann").await;
    assert_eq!(key.len(), 64, "the default key generator");
    assert_eq!(
        client.session_info::<String>("user").unwrap().as_deref(),
        Some("ann")
    );
    assert_eq!(whoami(&client).await, "ann");
    assert_eq!(server.server.session_connection_count(&key), 1);
    // A second login fails on the server: the connection has a session.
    assert_eq!(
        client.request("login", "bob").await,
        Err(RequestError::InternalError)
    );

    assert_eq!(
        client
            .request("logout", "")
            .await
            .unwrap()
            .to_text()
            .unwrap(),
        "ok"
    );
    wait_event(&mut events, |e| *e == ClientEvent::SessionClosed).await;
    assert_eq!(client.session(), None);
    assert_eq!(client.session_info::<String>("user").unwrap(), None);
    assert_eq!(whoami(&client).await, "anonymous");
    assert_eq!(server.server.active_session_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn client_closes_its_session() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let key = login(&client, "ann").await;
    client.close_session().await.unwrap();
    assert_eq!(client.session(), None);
    assert_eq!(whoami(&client).await, "anonymous");
    assert_eq!(server.server.session_connection_count(&key), 0);
    // Destroyed (it was the last connection): it cannot be restored.
    assert_eq!(
        client.restore_session(&key).await,
        Err(RequestError::SessionNotFound)
    );
    server.stop().await;
}

#[tokio::test]
async fn another_client_restores_the_session() {
    let server = TestServer::in_memory(|b| b.max_session_connections(2));
    let first = server.client().connect().await.unwrap();
    let key = login(&first, "ann").await;

    let second = server.client().connect().await.unwrap();
    let session = second.restore_session(&key).await.unwrap();
    assert_eq!(session.key, key);
    assert_eq!(
        session.info_field::<String>("user").unwrap().as_deref(),
        Some("ann")
    );
    assert_eq!(second.session(), Some(session));
    assert_eq!(whoami(&second).await, "ann");
    assert_eq!(server.server.session_connection_count(&key), 2);
    // Restoring again on a connection that has a session is refused.
    assert!(matches!(
        second.restore_session(&key).await,
        Err(RequestError::Request { code, .. }) if code == "SESSION_ACTIVE"
    ));
    // A third connection is over the limit.
    let third = server.client().connect().await.unwrap();
    assert_eq!(
        third.restore_session(&key).await,
        Err(RequestError::MaxSessionConnsReached)
    );
    assert_eq!(third.session(), None);
    // Closing on one connection keeps it on the other.
    second.close_session().await.unwrap();
    assert_eq!(whoami(&first).await, "ann");
    assert_eq!(
        third.restore_session("no-such-key").await,
        Err(RequestError::SessionNotFound)
    );
    server.stop().await;
}

#[tokio::test]
async fn sessions_disabled() {
    let server = TestServer::start(|b| b.sessions_enabled(false)).await;
    let client = builder(&server.url()).connect().await.unwrap();
    assert_eq!(
        client.restore_session("some-key").await,
        Err(RequestError::SessionsDisabled)
    );
    assert_eq!(
        client.request("login", "ann").await,
        Err(RequestError::InternalError)
    );
    server.stop().await;
}

#[tokio::test]
async fn session_is_restored_after_the_server_drops_the_connection() {
    let server = TestServer::in_memory(unlimited);
    let client = server.client().connect().await.unwrap();
    let mut events = client.events();
    let key = login(&client, "ann").await;
    client.request("disconnect-me", "").await.unwrap();
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    let after = wait_event(&mut events, |e| {
        matches!(e, ClientEvent::Connected | ClientEvent::SessionClosed)
    })
    .await;
    assert_eq!(after, ClientEvent::Connected, "restored, not closed");
    assert_eq!(client.session().unwrap().key, key);
    assert_eq!(whoami(&client).await, "ann");
    assert_eq!(server.server.session_connection_count(&key), 1);
    server.stop().await;
}

#[tokio::test]
async fn session_comes_back_after_a_server_restart_with_the_file_manager() {
    let dir = tempfile::tempdir().unwrap();
    let files = |b: ServerBuilder<MessageRouter>| {
        b.session_manager(Arc::new(FileSessionManager::new(dir.path())))
    };
    let server = TestServer::start(files).await;
    let addr = server.addr.to_string();
    let client = builder(&server.url()).connect().await.unwrap();
    let mut events = client.events();
    let key = login(&client, "ann").await;
    server.stop().await;
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    // A new server process would find only the folder.
    let server = TestServer::start_on(&addr, files).await;
    let after = wait_event(&mut events, |e| {
        matches!(e, ClientEvent::Connected | ClientEvent::SessionClosed)
    })
    .await;
    assert_eq!(after, ClientEvent::Connected, "restored, not closed");
    assert_eq!(client.session().unwrap().key, key);
    assert_eq!(whoami(&client).await, "ann");
    assert_eq!(server.server.session_connection_count(&key), 1);
    server.stop().await;
}

#[tokio::test]
async fn session_lost_in_a_restart_is_reported() {
    // In memory: the restarted server does not know the session.
    let server = TestServer::start(unlimited).await;
    let addr = server.addr.to_string();
    let client = builder(&server.url()).connect().await.unwrap();
    let mut events = client.events();
    login(&client, "ann").await;
    server.stop().await;
    let server = TestServer::start_on(&addr, unlimited).await;
    wait_event(&mut events, |e| *e == ClientEvent::SessionClosed).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(client.session(), None);
    assert_eq!(whoami(&client).await, "anonymous");
    server.stop().await;
}

/// On paused time: after close code 1012 (the server drains), the client
/// waits a random time in the restart range before it reconnects.
#[tokio::test(start_paused = true)]
async fn reconnects_after_a_random_delay_when_the_server_drains() {
    const MIN: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(3);
    let mut server = TestServer::start(unlimited).await;
    let addr = server.addr;
    let client = builder(&server.url())
        .restart_reconnect_delay(MIN, MAX)
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let start = tokio::time::Instant::now();
    tokio::time::timeout(PATIENCE, server.server.drain(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        server.next_disconnect().await,
        DisconnectReason::ServiceRestart
    );
    server.stop().await;
    // The next node, at once (here: a new server on the same port).
    let server = TestServer::start_on(&addr.to_string(), unlimited).await;
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let waited = start.elapsed();
    assert!(
        (MIN..=MAX).contains(&waited),
        "reconnected after {waited:?}, not within {MIN:?}..={MAX:?}"
    );
    assert_eq!(
        client.request("echo", "back").await.unwrap(),
        Payload::utf8("back")
    );
    server.stop().await;
}

/// A server pacing new connections answers 503 with Retry-After: a first
/// connect fails with the status and the wait; a reconnection waits at
/// least that long before its next attempt (its backoff alone would have
/// tried at 1 s, 3 s, 7 s and then 15 s). On paused time.
#[tokio::test(start_paused = true)]
async fn reconnecting_honours_retry_after() {
    use webwire_server::limits::Rate;

    let server = TestServer::start(|b| b.handshake_rate(Rate::per_minute(6).burst(1))).await;
    let client = builder(&server.url())
        .reconnect_interval(Duration::from_secs(1))
        .max_reconnect_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;

    let refused = builder(&server.url()).connect().await.unwrap_err();
    assert!(
        matches!(
            refused,
            ConnectError::Refused {
                status: 503,
                retry_after: Some(wait)
            } if wait == Duration::from_secs(10)
        ),
        "{refused:?}"
    );

    client.request("disconnect-me", "").await.unwrap();
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    let lost = tokio::time::Instant::now();
    // Longer than `wait_event`'s patience: the server asks for 10 s.
    tokio::time::timeout(Duration::from_secs(60), async {
        while events.recv().await != Some(ClientEvent::Connected) {}
    })
    .await
    .expect("reconnected");
    let waited = lost.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(11),
        "reconnected after {waited:?}"
    );
    server.stop().await;
}

/// The payload texts of the `ClientEvent::Signal`s named `name` until
/// `count` of them came.
async fn signal_texts(events: &mut webwire_client::Events, count: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < count {
        if let ClientEvent::Signal(signal) =
            wait_event(events, |e| matches!(e, ClientEvent::Signal(_))).await
        {
            texts.push(signal.payload().to_text().unwrap().into_owned());
        }
    }
    texts
}

/// Against the server's 2.1 streams: the session stream and a history
/// room's signals sent while the client was disconnected reach it after
/// the reconnect, in order, once, and it is back in the room without
/// joining it again.
#[tokio::test]
async fn stream_signals_sent_while_disconnected_arrive_in_order_once() {
    let server = TestServer::in_memory(|b| {
        unlimited(b).room_history(|room| {
            (room == "lobby").then(webwire_server::stream::HistoryLimits::default)
        })
    });
    // A transport that can be cut: the client stays away while it is.
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = builder("ws://webwire.test/")
        .transport({
            let (server, down) = (server.server.clone(), down.clone());
            move || {
                let result = if down.load(Ordering::SeqCst) {
                    Err(std::io::Error::other("cut"))
                } else {
                    Ok(server.connect_in_memory())
                };
                async move { result }
            }
        })
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let key = login(&client, "ann").await;
    server
        .server
        .join_session_room(&key, "lobby")
        .await
        .unwrap();
    for i in 1..=2 {
        server
            .server
            .signal_session_stream(&key, "s", format!("s{i}"))
            .await
            .unwrap();
        server
            .server
            .signal_room_stream("lobby", "r", format!("r{i}"))
            .await
            .unwrap();
    }
    assert_eq!(signal_texts(&mut events, 4).await, ["s1", "r1", "s2", "r2"]);
    down.store(true, Ordering::SeqCst);
    for conn in server.server.connections() {
        conn.close();
    }
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    eventually("the connection to end", || {
        server.server.connection_count() == 0
    })
    .await;
    // Sent while the client is away.
    for i in 3..=4 {
        server
            .server
            .signal_session_stream(&key, "s", format!("s{i}"))
            .await
            .unwrap();
        server
            .server
            .signal_room_stream("lobby", "r", format!("r{i}"))
            .await
            .unwrap();
    }
    down.store(false, Ordering::SeqCst);
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let mut missed = signal_texts(&mut events, 4).await;
    // Each stream in order; the two streams may interleave.
    let (s, r): (Vec<_>, Vec<_>) = missed.drain(..).partition(|t| t.starts_with('s'));
    assert_eq!(
        (s, r),
        (
            vec!["s3".to_owned(), "s4".into()],
            vec!["r3".to_owned(), "r4".into()]
        )
    );
    eventually("back in the room", || {
        server.server.room_count("lobby") == 1
    })
    .await;
    server
        .server
        .signal_room_stream("lobby", "r", "r5")
        .await
        .unwrap();
    assert_eq!(signal_texts(&mut events, 1).await, ["r5"]);
    server.stop().await;
}
