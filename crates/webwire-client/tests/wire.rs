//! The client against a scripted server: exact messages on the wire.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{builder, default_conf, eventually, session_json, wait_event, Peer, Read};
use tokio_websockets::CloseCode;
use webwire_client::{ClientEvent, ConnectError, Encoding, Payload, RequestError, Status};
use webwire_proto::{
    AcceptConf, ClientMessage, ErrorCode, ErrorReply, MessageType, Name, RequestId, ServerMessage,
    Signal, ValueError,
};

#[tokio::test]
async fn connects_and_takes_the_servers_configuration() {
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_millis(1500), 4096, "chat");
    let (client, _conn) = tokio::join!(
        builder(&peer.url).sub_protocol("chat").connect(),
        peer.accept_with(conf.clone())
    );
    let client = client.unwrap();
    assert_eq!(client.status(), Status::Connected);
    assert_eq!(client.server_config(), Some(conf));
    let mut events = client.events();
    assert_eq!(events.recv().await, Some(ClientEvent::Connected));
}

#[tokio::test]
async fn any_sub_protocol_is_accepted_when_none_is_configured() {
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_secs(60), 8192, "whatever");
    let (client, _conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    client.unwrap();
}

#[tokio::test]
async fn sub_protocol_mismatch_is_refused() {
    let mut peer = Peer::start().await;
    for announced in ["games", ""] {
        let conf = AcceptConf::new(Duration::from_secs(60), 8192, announced);
        let (client, mut conn) = tokio::join!(
            builder(&peer.url).sub_protocol("chat").connect(),
            peer.accept_with(conf)
        );
        match client.unwrap_err() {
            ConnectError::SubProtocolMismatch {
                expected,
                announced: got,
            } => assert_eq!((expected.as_str(), got.as_str()), ("chat", announced)),
            other => panic!("unexpected {other:?}"),
        }
        // The client closes the connection.
        assert!(matches!(conn.read().await, Read::Close(_) | Read::End));
    }
}

#[tokio::test]
async fn another_major_version_is_refused() {
    let mut peer = Peer::start().await;
    let mut conf = default_conf();
    conf.major = 3;
    conf.minor = 1;
    let (client, _conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    assert!(matches!(
        client.unwrap_err(),
        ConnectError::IncompatibleVersion { major: 3, minor: 1 }
    ));
}

#[tokio::test]
async fn first_message_must_be_the_configuration() {
    let mut peer = Peer::start().await;
    let signal = Signal::new(Name::from_static("x"), Payload::utf8("y")).unwrap();
    let (client, _conn) = tokio::join!(builder(&peer.url).connect(), async {
        let mut conn = peer.accept().await;
        conn.send(ServerMessage::Signal(signal)).await;
        conn
    });
    assert!(matches!(
        client.unwrap_err(),
        ConnectError::UnexpectedFirstMessage(MessageType::SignalUtf8)
    ));
    let (client, _conn) = tokio::join!(builder(&peer.url).connect(), async {
        let mut conn = peer.accept().await;
        conn.send_raw(Bytes::from_static(&[23, 2, 0])).await;
        conn
    });
    assert!(matches!(client.unwrap_err(), ConnectError::Protocol(_)));
}

#[tokio::test]
async fn dial_times_out_without_configuration() {
    let mut peer = Peer::start().await;
    let started = Instant::now();
    let (client, _conn) = tokio::join!(
        builder(&peer.url)
            .dial_timeout(Duration::from_millis(300))
            .connect(),
        peer.accept()
    );
    assert!(matches!(client.unwrap_err(), ConnectError::TimedOut(_)));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn refused_connections_and_bad_urls_are_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = builder(&format!("ws://127.0.0.1:{port}/"))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
    let err = builder("http://127.0.0.1/").connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn requests_are_encoded_exactly_and_replies_keep_their_encoding() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    for (name, payload) in [
        ("echo", Payload::utf8("hi")),
        ("abc", Payload::utf16("hé")),
        ("", Payload::binary(vec![0xff, 0])),
        ("empty", Payload::binary(Vec::new())),
    ] {
        let request = client.request(name, payload.clone());
        let peer_side = async {
            let (id, got_name, got) = conn.recv_request().await;
            assert_eq!((got_name.as_str(), &got), (name, &payload));
            conn.reply(id, got).await;
        };
        let (reply, ()) = tokio::join!(request, peer_side);
        let reply = reply.unwrap();
        assert_eq!(reply, payload);
        assert_eq!(reply.encoding(), payload.encoding());
    }
}

#[tokio::test]
async fn server_answers_become_typed_errors() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    type Answer = fn(RequestId) -> ServerMessage;
    let cases: [(Answer, RequestError); 6] = [
        (
            |id| ServerMessage::Error(ErrorReply::new(id, ErrorCode::from_static("E1"), "bad")),
            RequestError::Request {
                code: "E1".into(),
                message: "bad".into(),
            },
        ),
        (ServerMessage::Shutdown, RequestError::ServerShutdown),
        (ServerMessage::InternalError, RequestError::InternalError),
        (
            ServerMessage::SessionNotFound,
            RequestError::SessionNotFound,
        ),
        (
            ServerMessage::MaxSessConnsReached,
            RequestError::MaxSessionConnsReached,
        ),
        (
            ServerMessage::SessionsDisabled,
            RequestError::SessionsDisabled,
        ),
    ];
    for (answer, expected) in cases {
        let (result, ()) = tokio::join!(client.request("x", "y"), async {
            let (id, _, _) = conn.recv_request().await;
            conn.send(answer(id)).await;
        });
        assert_eq!(result, Err(expected));
    }
}

#[tokio::test]
async fn replies_are_matched_by_id_in_any_order() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let requests =
        futures_util::future::join_all((0..20).map(|i| client.request("n", format!("{i}"))));
    let peer_side = async {
        let mut got = Vec::new();
        for _ in 0..20 {
            got.push(conn.recv_request().await);
        }
        let ids: std::collections::HashSet<_> = got.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(ids.len(), 20, "ids are unique");
        for (id, _, payload) in got.into_iter().rev() {
            conn.reply(id, payload).await;
        }
    };
    let (replies, ()) = tokio::join!(requests, peer_side);
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().to_text().unwrap(), i.to_string());
    }
}

/// On paused time (the peer is in this process, on loopback, so no socket
/// event is ever in flight while the clock jumps): each heartbeat comes at
/// exactly 3/4 of the read timeout of silence, never earlier and never at
/// the timeout.
#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_idle_connection_within_the_read_timeout() {
    const READ_TIMEOUT: Duration = Duration::from_millis(1000);
    const HEARTBEAT: Duration = Duration::from_millis(750);
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(READ_TIMEOUT, 8192, "");
    let (client, mut conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    let client = client.unwrap();
    let within = |elapsed: Duration| {
        assert!(
            elapsed >= HEARTBEAT && elapsed < HEARTBEAT + Duration::from_millis(10),
            "a heartbeat after {elapsed:?} of silence"
        );
    };
    let mut last = tokio::time::Instant::now();
    for _ in 0..3 {
        let message = conn.recv().await;
        assert_eq!(message, ClientMessage::Heartbeat);
        within(last.elapsed());
        last = tokio::time::Instant::now();
    }
    // Sending resets the heartbeat timer: a request, then silence again.
    tokio::time::sleep(HEARTBEAT / 2).await;
    let (reply, ()) = tokio::join!(client.request("x", ""), async {
        let (id, _, _) = conn.recv_request().await;
        conn.reply(id, Payload::default()).await;
    });
    reply.unwrap();
    let sent = tokio::time::Instant::now();
    assert_eq!(conn.recv().await, ClientMessage::Heartbeat);
    within(sent.elapsed());
    assert_eq!(client.status(), Status::Connected);
}

#[tokio::test]
async fn timed_out_request_is_cancelled_and_its_late_reply_discarded() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let (result, (first_id, _, _)) = tokio::join!(
        client.request_timeout("slow", "1", Duration::from_millis(200)),
        conn.recv_request()
    );
    assert_eq!(result, Err(RequestError::TimedOut));
    eventually("the cancel", || client.pending_requests() == 0).await;
    // The late reply is discarded; the next request gets its own reply.
    conn.reply(first_id, Payload::utf8("late")).await;
    let (result, ()) = tokio::join!(client.request("next", "2"), async {
        let (id, _, _) = conn.recv_request().await;
        assert_ne!(id, first_id, "ids are never reused");
        conn.reply(id, Payload::utf8("own")).await;
    });
    assert_eq!(result.unwrap().to_text().unwrap(), "own");
}

#[tokio::test]
async fn dropping_a_request_future_cancels_it() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.request("forever", "x").await }
    });
    let (id, _, _) = conn.recv_request().await;
    assert_eq!(client.pending_requests(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    eventually("the cancel", || client.pending_requests() == 0).await;
    conn.reply(id, Payload::utf8("nobody listens")).await;
    let (result, ()) = tokio::join!(client.request("after", "y"), async {
        let (id, _, payload) = conn.recv_request().await;
        conn.reply(id, payload).await;
    });
    assert_eq!(result.unwrap().to_text().unwrap(), "y");
}

#[tokio::test]
async fn oversized_messages_are_refused_before_sending() {
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_secs(60), 64, "");
    let (client, mut conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    let client = client.unwrap();
    // 10 header bytes + 3 name bytes + 52 payload bytes = 65 > 64.
    let big = "x".repeat(52);
    assert_eq!(
        client.request("big", big.clone()).await,
        Err(RequestError::MessageTooLarge { size: 65, max: 64 })
    );
    assert_eq!(
        client.signal("big", "y".repeat(70)).await,
        Err(RequestError::MessageTooLarge { size: 75, max: 64 })
    );
    // Exactly the buffer size is fine; the peer sees only that one.
    let fits = "x".repeat(51);
    let (result, ()) = tokio::join!(client.request("big", fits.clone()), async {
        let (id, _, payload) = conn.recv_request().await;
        assert_eq!(payload.len(), 51);
        conn.reply(id, Payload::default()).await;
    });
    result.unwrap();
}

#[tokio::test]
async fn invalid_names_and_payloads_are_refused() {
    let mut peer = Peer::start().await;
    let (client, _conn) = tokio::join!(
        builder(&peer.url).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    assert!(matches!(
        client.request("é", "x").await,
        Err(RequestError::InvalidMessage(
            ValueError::InvalidNameByte { .. }
        ))
    ));
    assert_eq!(
        client.request("", "").await,
        Err(RequestError::InvalidMessage(ValueError::NoNameNoPayload(
            "request"
        )))
    );
    assert_eq!(
        client.signal("x", Payload::utf16("")).await,
        Err(RequestError::InvalidMessage(ValueError::EmptyUtf16Signal))
    );
}

#[tokio::test]
async fn signals_go_both_ways() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    client
        .signal("typing", Payload::utf16("abc"))
        .await
        .unwrap();
    let expected = Signal::new(Name::from_static("typing"), Payload::utf16("abc")).unwrap();
    assert_eq!(conn.recv().await, ClientMessage::Signal(expected));

    let signal = Signal::new(Name::from_static("notice"), Payload::binary(vec![1, 2])).unwrap();
    conn.send(ServerMessage::Signal(signal.clone())).await;
    let event = wait_event(&mut events, |e| matches!(e, ClientEvent::Signal(_))).await;
    assert_eq!(event, ClientEvent::Signal(signal));
}

#[tokio::test]
async fn session_notifications_update_the_session() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    assert_eq!(client.session(), None);
    assert_eq!(client.session_info::<String>("user").unwrap(), None);

    conn.send(ServerMessage::SessionCreated(session_json(
        "k1",
        r#"{"user":"ann","n":7}"#,
    )))
    .await;
    let ClientEvent::SessionCreated(session) =
        wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await
    else {
        unreachable!()
    };
    assert_eq!(session.key, "k1");
    assert_eq!(
        session.creation,
        std::time::SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789)
    );
    assert_eq!(client.session(), Some(session));
    assert_eq!(
        client.session_info::<String>("user").unwrap().as_deref(),
        Some("ann")
    );
    assert_eq!(client.session_info::<u8>("n").unwrap(), Some(7));
    assert!(client.session_info::<u8>("user").is_err());

    conn.send(ServerMessage::SessionClosed).await;
    wait_event(&mut events, |e| *e == ClientEvent::SessionClosed).await;
    assert_eq!(client.session(), None);
}

#[tokio::test]
async fn restore_and_close_session_on_the_wire() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;

    // Not found.
    let (result, ()) = tokio::join!(client.restore_session("nope"), async {
        let ClientMessage::RestoreSession { id, key } = conn.recv().await else {
            panic!("expected a restore request")
        };
        assert_eq!(key, "nope");
        conn.send(ServerMessage::SessionNotFound(id)).await;
    });
    assert_eq!(result, Err(RequestError::SessionNotFound));
    assert_eq!(client.session(), None);

    // Found: a UTF-8 reply with the session JSON.
    let (result, ()) = tokio::join!(client.restore_session("k2"), async {
        let ClientMessage::RestoreSession { id, key } = conn.recv().await else {
            panic!("expected a restore request")
        };
        assert_eq!(key, "k2");
        let json = session_json("k2", r#"{"user":"bob"}"#);
        conn.reply(id, Payload::new(Encoding::Utf8, json).unwrap())
            .await;
    });
    assert_eq!(result.unwrap().key, "k2");
    assert_eq!(client.session().unwrap().key, "k2");
    assert_eq!(
        client.session_info::<String>("user").unwrap().as_deref(),
        Some("bob")
    );

    // Close: an empty binary reply.
    let (result, ()) = tokio::join!(client.close_session(), async {
        let ClientMessage::CloseSession(id) = conn.recv().await else {
            panic!("expected a close-session request")
        };
        conn.reply(id, Payload::default()).await;
    });
    result.unwrap();
    assert_eq!(client.session(), None);
    // Without a session there is nothing to close.
    client.close_session().await.unwrap();
}

#[tokio::test]
async fn invalid_session_in_a_restore_reply_is_an_error() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let (result, ()) = tokio::join!(client.restore_session("k"), async {
        let ClientMessage::RestoreSession { id, .. } = conn.recv().await else {
            panic!("expected a restore request")
        };
        conn.reply(id, Payload::utf8("not json")).await;
    });
    assert!(matches!(result, Err(RequestError::InvalidSession(_))));
    assert_eq!(client.session(), None);
}

#[tokio::test]
async fn reconnects_restores_the_session_then_sends_waiting_requests() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    conn.send(ServerMessage::SessionCreated(session_json("key-1", "{}")))
        .await;
    wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await;

    // A request in flight when the connection drops fails.
    let (result, ()) = tokio::join!(client.request("inflight", "x"), async {
        conn.recv_request().await;
        drop(conn);
    });
    assert_eq!(result, Err(RequestError::Disconnected));
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    // A request made while reconnecting waits; the server is slow to answer.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.request("waiting", "w").await }
    });
    let mut conn = peer.accept().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.status(), Status::Connecting);
    conn.send(ServerMessage::AcceptConf(default_conf())).await;
    // The session restoration comes first.
    let ClientMessage::RestoreSession { id, key } = conn.recv().await else {
        panic!("expected the session restoration first")
    };
    assert_eq!(key, "key-1");
    // Nothing else is sent before the restoration is answered.
    assert!(conn.read_within(Duration::from_millis(200)).await.is_none());
    conn.reply(
        id,
        Payload::utf8(String::from_utf8(session_json("key-1", "{}").to_vec()).unwrap()),
    )
    .await;
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "waiting");
    conn.reply(id, Payload::utf8("done")).await;
    assert_eq!(waiting.await.unwrap().unwrap().to_text().unwrap(), "done");
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(client.status(), Status::Connected);
    assert_eq!(client.session().unwrap().key, "key-1");
}

#[tokio::test]
async fn refused_restoration_after_reconnect_drops_the_session() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    conn.send(ServerMessage::SessionCreated(session_json("gone", "{}")))
        .await;
    wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await;
    conn.close(CloseCode::GOING_AWAY).await;
    drop(conn);

    let mut conn = peer.accept_with(default_conf()).await;
    let ClientMessage::RestoreSession { id, .. } = conn.recv().await else {
        panic!("expected the session restoration")
    };
    conn.send(ServerMessage::SessionNotFound(id)).await;
    wait_event(&mut events, |e| *e == ClientEvent::SessionClosed).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(client.session(), None);
}

/// The session restore after a reconnection goes through the connection's
/// main message path: while the server is slow to answer it, heartbeats
/// keep the connection within the server's read timeout (the restore used
/// to read the socket on its own, and nothing else was sent meanwhile).
#[tokio::test(start_paused = true)]
async fn heartbeats_go_out_while_the_session_restore_waits() {
    const HEARTBEAT: Duration = Duration::from_millis(750);
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_millis(1000), 8192, "");
    let (client, mut conn) =
        tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf.clone()));
    let client = client.unwrap();
    let mut events = client.events();
    conn.send(ServerMessage::SessionCreated(session_json("key-1", "{}")))
        .await;
    wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await;
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    let mut conn = peer.accept_with(conf).await;
    let ClientMessage::RestoreSession { id, key } = conn.recv().await else {
        panic!("expected the session restoration")
    };
    assert_eq!(key, "key-1");
    let asked = tokio::time::Instant::now();
    assert_eq!(conn.recv().await, ClientMessage::Heartbeat);
    let elapsed = asked.elapsed();
    assert!(
        elapsed >= HEARTBEAT && elapsed < HEARTBEAT + Duration::from_millis(10),
        "a heartbeat after {elapsed:?} of silence"
    );
    assert_eq!(client.status(), Status::Connecting);
    conn.reply(
        id,
        Payload::utf8(String::from_utf8(session_json("key-1", "{}").to_vec()).unwrap()),
    )
    .await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert_eq!(client.session().unwrap().key, "key-1");
}

/// Closing while the session restore of a reconnection waits for its
/// answer is a graceful close like any other: the restore is answered,
/// then close code 1000 (the connection used to be dropped without a
/// close frame).
#[tokio::test]
async fn close_during_the_session_restore_waits_for_its_answer_then_closes_with_1000() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    conn.send(ServerMessage::SessionCreated(session_json("key-1", "{}")))
        .await;
    wait_event(&mut events, |e| matches!(e, ClientEvent::SessionCreated(_))).await;
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    let mut conn = peer.accept_with(default_conf()).await;
    let ClientMessage::RestoreSession { id, .. } = conn.recv().await else {
        panic!("expected the session restoration")
    };
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close().await }
    });
    eventually("closing", || client.status() == Status::Closed).await;
    assert!(conn.read_within(Duration::from_millis(100)).await.is_none());
    conn.send(ServerMessage::SessionNotFound(id)).await;
    match conn.read().await {
        Read::Close(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected a close frame, got {other:?}"),
    }
    conn.close(CloseCode::NORMAL_CLOSURE).await;
    closing.await.unwrap();
    let mut rest = Vec::new();
    while let Some(event) = events.recv().await {
        rest.push(event);
    }
    assert_eq!(
        rest,
        [ClientEvent::SessionClosed],
        "never announced as connected"
    );
}

#[tokio::test]
async fn without_auto_reconnect_calls_fail_until_reconnect() {
    let mut peer = Peer::start().await;
    let (client, conn) = tokio::join!(
        builder(&peer.url).auto_reconnect(false).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let mut events = client.events();
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    assert_eq!(client.status(), Status::Disconnected);
    assert_eq!(
        client.request("x", "y").await,
        Err(RequestError::Disconnected)
    );
    assert_eq!(
        client.signal("x", "y").await,
        Err(RequestError::Disconnected)
    );

    let (result, mut conn) = tokio::join!(client.reconnect(), peer.accept_with(default_conf()));
    result.unwrap();
    assert_eq!(client.status(), Status::Connected);
    let (result, ()) = tokio::join!(client.request("x", "y"), async {
        let (id, _, payload) = conn.recv_request().await;
        conn.reply(id, payload).await;
    });
    assert_eq!(result.unwrap().to_text().unwrap(), "y");
    // Connected already: nothing to do.
    client.reconnect().await.unwrap();
}

#[tokio::test]
async fn failed_manual_reconnect_reports_why() {
    let mut peer = Peer::start().await;
    let (client, conn) = tokio::join!(
        builder(&peer.url).auto_reconnect(false).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    drop(conn);
    eventually("disconnected", || client.status() == Status::Disconnected).await;
    let mut conf = default_conf();
    conf.major = 1;
    let (result, _conn) = tokio::join!(client.reconnect(), peer.accept_with(conf));
    assert!(matches!(
        result,
        Err(ConnectError::IncompatibleVersion { major: 1, .. })
    ));
    assert_eq!(client.status(), Status::Disconnected);
}

#[tokio::test]
async fn close_waits_for_in_flight_requests_then_closes_with_1000() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    let inflight = tokio::spawn({
        let client = client.clone();
        async move { client.request("slow", "x").await }
    });
    let (id, _, _) = conn.recv_request().await;
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close().await }
    });
    eventually("closing", || client.status() == Status::Closed).await;
    assert_eq!(client.request("new", "y").await, Err(RequestError::Closed));
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.reply(id, Payload::utf8("answered")).await;
    assert_eq!(
        inflight.await.unwrap().unwrap().to_text().unwrap(),
        "answered"
    );
    match conn.read().await {
        Read::Close(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected a close frame, got {other:?}"),
    }
    conn.close(CloseCode::NORMAL_CLOSURE).await;
    closing.await.unwrap();
    assert_eq!(client.status(), Status::Closed);
    // Events end after the last ones.
    let mut rest = Vec::new();
    while let Some(event) = events.recv().await {
        rest.push(event);
    }
    assert!(!rest.contains(&ClientEvent::Disconnected), "{rest:?}");
    client.close().await;
    assert_eq!(
        client.reconnect().await.unwrap_err().to_string(),
        "the client is closed"
    );
}

#[tokio::test]
async fn close_gives_up_on_unanswered_requests_after_its_timeout() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = tokio::join!(
        builder(&peer.url)
            .close_timeout(Duration::from_millis(200))
            .connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let inflight = tokio::spawn({
        let client = client.clone();
        async move { client.request("never", "x").await }
    });
    conn.recv_request().await;
    client.close().await;
    assert_eq!(inflight.await.unwrap(), Err(RequestError::Closed));
    assert!(matches!(conn.read().await, Read::Close(Some(1000))));
}

#[tokio::test]
async fn protocol_violations_by_the_server_close_and_reconnect() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    conn.send_raw(Bytes::from_static(&[7])).await;
    assert!(matches!(conn.read().await, Read::Close(Some(1002))));
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    let mut conn = peer.accept_with(default_conf()).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    conn.send_text("hello").await;
    assert!(matches!(conn.read().await, Read::Close(Some(1003))));
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    let _conn = peer.accept_with(default_conf()).await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    drop(client);
    assert!(matches!(conn.read().await, Read::Close(Some(1000))));
    conn.close(CloseCode::NORMAL_CLOSURE).await;
    let mut rest = Vec::new();
    while let Some(event) = events.recv().await {
        rest.push(event);
    }
    assert_eq!(rest, [ClientEvent::Connected]);
}

#[tokio::test]
async fn ten_thousand_requests_in_flight_from_eight_tasks() {
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_secs(60), 8192, "");
    let (client, mut conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    let client = client.unwrap();
    // The peer reads all 10 000 before answering any, in reverse order:
    // they are all in flight at once.
    let server = tokio::spawn(async move {
        let mut got = Vec::with_capacity(10_000);
        while got.len() < 10_000 {
            got.push(conn.recv_request().await);
        }
        for (id, _, payload) in got.into_iter().rev() {
            conn.reply(id, payload).await;
        }
        conn
    });
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                let calls = (0..1250).map(|i| {
                    let client = &client;
                    async move {
                        let text = format!("{task}-{i}");
                        let reply = client.request("echo", text.clone()).await.unwrap();
                        assert_eq!(reply.to_text().unwrap(), text);
                    }
                });
                futures_util::future::join_all(calls).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let _conn = server.await.unwrap();
    assert_eq!(client.pending_requests(), 0);
}

#[tokio::test]
async fn slow_event_receivers_lag_and_later_receivers_see_new_events_only() {
    let mut peer = Peer::start().await;
    let (client, mut conn) = tokio::join!(
        builder(&peer.url).event_capacity(2).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let mut first = client.events();
    for i in 0..5u8 {
        let signal = Signal::new(Name::from_static("n"), Payload::binary(vec![i])).unwrap();
        conn.send(ServerMessage::Signal(signal)).await;
    }
    // The round trip makes sure every signal was handled.
    let (reply, ()) = tokio::join!(client.request("sync", "x"), async {
        let (id, _, payload) = conn.recv_request().await;
        conn.reply(id, payload).await;
    });
    reply.unwrap();
    let mut later = client.events();
    // Connected and three signals were dropped: the receiver is told so,
    // then gets the two newest.
    assert_eq!(first.recv().await, Some(ClientEvent::Lagged(4)));
    for i in 3..5u8 {
        let Some(ClientEvent::Signal(signal)) = first.recv().await else {
            panic!("expected a signal")
        };
        assert_eq!(signal.payload().as_bytes().as_ref(), [i]);
    }
    assert_eq!(later.try_recv(), None);
    conn.send(ServerMessage::SessionClosed).await;
    assert_eq!(
        wait_event(&mut later, |_| true).await,
        ClientEvent::SessionClosed
    );
}

/// Regression (hardening issue, item 1, client side): the WebSocket stream
/// answers every ping with a pong it queues itself, and the client went on
/// reading pings while its writer could not write: a server that pinged
/// and never read grew the client without end. Past a small budget of
/// pongs, the client now reads on only once its writer has flushed them:
/// it stops reading, and the flood stops at what the sockets hold.
#[tokio::test]
async fn a_server_flooding_pings_without_reading_cannot_grow_the_client() {
    // More than the socket buffers can hold (Linux autotuning: up to 32
    // MiB received, 4 MiB sent; about 7 MiB in practice): on the old code,
    // all of it was read and answered into memory.
    const FLOOD: usize = 48 << 20;
    let mut peer = Peer::start().await;
    let (client, mut conn) = peer.connect_default().await;
    let sent = conn.flood_pings(FLOOD, Duration::from_secs(2)).await;
    assert!(sent < FLOOD, "the client read all {sent} bytes of pings");
    // Closing on purpose still ends (the close frame cannot be written).
    tokio::time::timeout(Duration::from_secs(10), client.close())
        .await
        .expect("closed in time");
    drop(conn);
}

/// A server that pings and takes none of the client's writes for its own
/// read timeout has stopped reading: the client takes the connection as
/// lost (and would reconnect) instead of waiting for its pongs forever.
#[tokio::test]
async fn a_server_that_takes_no_writes_for_its_read_timeout_is_left() {
    let mut peer = Peer::start().await;
    let conf = AcceptConf::new(Duration::from_secs(2), 8192, "");
    let (client, mut conn) = tokio::join!(builder(&peer.url).connect(), peer.accept_with(conf));
    let client = client.unwrap();
    let mut events = client.events();
    let started = Instant::now();
    // The flood ends when the client drops the connection (a write error)
    // or, on the old code, after 8 s of the client not reading.
    let (sent, event) = tokio::join!(
        conn.flood_pings(48 << 20, Duration::from_secs(8)),
        wait_event(&mut events, |event| matches!(
            event,
            ClientEvent::Disconnected
        ))
    );
    assert_eq!(event, ClientEvent::Disconnected);
    assert!(sent < 48 << 20);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "left after {:?}",
        started.elapsed()
    );
    drop(conn);
    client.close().await;
}
