//! Webwire 2.1 against a scripted server: the opt-in and the fallback to
//! 2.0, keyed requests across reconnects, stream signals and their repair
//! (docs/protocol.md section 14), exact messages on the wire.

mod common;

use std::time::Duration;

use common::{builder, default_conf, session_json, wait_event, MemoryPeer, Peer, PeerConn};
use webwire_client::{
    Client, ClientEvent, Events, LossReason, Payload, RequestError, RoomName, StreamId, StreamLoss,
    StreamSignal,
};
use webwire_proto::{
    AcceptConf, ClientMessage, ErrorCode, ErrorReply, ExtensionAccept, ExtensionHello,
    FeatureFlags, KeyedRequest, Name, RequestId, ServerMessage, Signal, StreamPosition,
};

/// The ledger epoch of the scripted server.
const EPOCH: u64 = 0x1122_3344_5566_7788;
/// The epoch of its streams.
const STREAM_EPOCH: u64 = 0xa1a2_a3a4_a5a6_a7a8;
/// How long "nothing is sent" is watched.
const QUIET: Duration = Duration::from_millis(200);

fn conf_2_1() -> AcceptConf {
    default_conf().with_minor(1)
}

/// The next connection, as a 2.1 server granting `flags` (of those asked
/// for) with ledger epoch `epoch`; the client's hello.
async fn accept_2_1(
    peer: &mut Peer,
    flags: FeatureFlags,
    epoch: u64,
) -> (PeerConn, ExtensionHello) {
    let mut conn = peer.accept_with(conf_2_1()).await;
    let ClientMessage::ExtensionHello(hello) = conn.recv().await else {
        panic!("expected the ExtensionHello first")
    };
    let flags = flags & hello.flags();
    let ledger_epoch = if flags.contains(FeatureFlags::KEYED_REQUESTS) {
        epoch
    } else {
        0
    };
    conn.send(ServerMessage::ExtensionAccept(ExtensionAccept {
        flags,
        ledger_epoch,
    }))
    .await;
    (conn, hello)
}

/// A client connected to a 2.1 server granting everything, and its events.
async fn connect_2_1(
    peer: &mut Peer,
    configure: fn(webwire_client::ClientBuilder) -> webwire_client::ClientBuilder,
) -> (Client, PeerConn, Events, ExtensionHello) {
    let url = peer.url.clone();
    let (client, (conn, hello)) = tokio::join!(
        configure(builder(&url)).connect(),
        accept_2_1(peer, FeatureFlags::KNOWN, EPOCH)
    );
    let client = client.unwrap();
    let events = client.events();
    (client, conn, events, hello)
}

/// The server creates session `key` for the connection.
async fn login(conn: &mut PeerConn, events: &mut Events, key: &str) {
    conn.send(ServerMessage::SessionCreated(session_json(key, "{}")))
        .await;
    wait_event(events, |e| matches!(e, ClientEvent::SessionCreated(_))).await;
}

fn session_payload(key: &str) -> Payload {
    Payload::utf8(String::from_utf8(session_json(key, "{}").to_vec()).unwrap())
}

async fn recv_keyed(conn: &mut PeerConn) -> KeyedRequest {
    match conn.recv().await {
        ClientMessage::KeyedRequest(keyed) => keyed,
        other => panic!("expected a keyed request, got {other:?}"),
    }
}

/// Reads the restore of session `key` and, with streams, the StreamResume
/// right behind it (its positions); answers neither.
async fn recv_restore(
    conn: &mut PeerConn,
    key: &str,
) -> (RequestId, RequestId, Vec<StreamPosition>) {
    let ClientMessage::RestoreSession { id, key: got } = conn.recv().await else {
        panic!("expected the session restore")
    };
    assert_eq!(got, key);
    let ClientMessage::StreamResume(resume) = conn.recv().await else {
        panic!("expected a StreamResume right behind the restore")
    };
    let (resume_id, positions) = resume.into_parts();
    (id, resume_id, positions)
}

/// Answers the restore with the session and the resume with an empty reply.
async fn restore_ok(conn: &mut PeerConn, key: &str) {
    let (id, resume_id, _) = recv_restore(conn, key).await;
    conn.reply(id, session_payload(key)).await;
    conn.reply(resume_id, Payload::binary(Vec::new())).await;
}

fn spawn_request(
    client: &Client,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<Payload, RequestError>> {
    let client = client.clone();
    tokio::spawn(async move { client.request(name, "p").await })
}

fn lobby() -> StreamId {
    StreamId::Room(RoomName::from_static("lobby"))
}

fn stream_signal(stream: StreamId, epoch: u64, offset: u64) -> ServerMessage {
    let signal = Signal::new(Name::from_static("msg"), Payload::utf8(offset.to_string())).unwrap();
    ServerMessage::StreamSignal(StreamSignal::new(stream, epoch, offset, signal).unwrap())
}

/// The offsets of the stream signal events among the next events, until
/// `until` of them came.
async fn stream_offsets(events: &mut Events, until: usize) -> Vec<u64> {
    let mut offsets = Vec::new();
    while offsets.len() < until {
        if let ClientEvent::StreamSignal(signal) =
            wait_event(events, |e| matches!(e, ClientEvent::StreamSignal(_))).await
        {
            offsets.push(signal.offset());
        }
    }
    offsets
}

#[tokio::test]
async fn opts_in_with_a_2_1_server_and_keys_requests_under_a_session() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, hello) = connect_2_1(&mut peer, |b| b).await;
    assert_eq!(hello.flags(), FeatureFlags::KNOWN);
    assert_eq!(hello.instance_id().as_str(), client.instance_id());
    assert_eq!(hello.instance_id().len(), 22);

    // Before a session exists (a login), requests are plain.
    let login_call = spawn_request(&client, "login");
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "login");
    conn.reply(id, Payload::utf8("ok")).await;
    login_call.await.unwrap().unwrap();
    login(&mut conn, &mut events, "k1").await;

    // Under the session: keyed, seq from 1, the ledger epoch, the ack
    // below the lowest one still waiting.
    let a = spawn_request(&client, "a");
    let first = recv_keyed(&mut conn).await;
    let b = spawn_request(&client, "b");
    let second = recv_keyed(&mut conn).await;
    assert_eq!(
        (first.key().seq, first.key().epoch, first.ack()),
        (1, EPOCH, 0)
    );
    assert_eq!((second.key().seq, second.ack()), (2, 0));
    assert_eq!(first.request().name().as_str(), "a");
    conn.reply(first.id(), Payload::utf8("A")).await;
    assert_eq!(a.await.unwrap().unwrap(), Payload::utf8("A"));
    let c = spawn_request(&client, "c");
    let third = recv_keyed(&mut conn).await;
    assert_eq!((third.key().seq, third.ack()), (3, 1));
    conn.reply(second.id(), Payload::utf8("B")).await;
    conn.reply(third.id(), Payload::utf8("C")).await;
    assert_eq!(b.await.unwrap().unwrap(), Payload::utf8("B"));
    assert_eq!(c.await.unwrap().unwrap(), Payload::utf8("C"));
    let d = spawn_request(&client, "d");
    let fourth = recv_keyed(&mut conn).await;
    assert_eq!((fourth.key().seq, fourth.ack()), (4, 3), "acks advance");
    conn.send(ServerMessage::OutcomeUnknown(fourth.id())).await;
    assert_eq!(d.await.unwrap(), Err(RequestError::OutcomeUnknown));
}

#[tokio::test]
async fn a_2_0_server_gets_a_2_0_client() {
    let mut peer = Peer::start().await;
    // A 2.0 server: no hello, plain requests also under a session.
    let (client, mut conn) = peer.connect_default().await;
    let mut events = client.events();
    login(&mut conn, &mut events, "k1").await;
    let call = spawn_request(&client, "a");
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "a");
    conn.reply(id, Payload::utf8("A")).await;
    call.await.unwrap().unwrap();

    // A 2.1 server and a client that turned 2.1 off: the same.
    let (client, conn) = tokio::join!(
        builder(&peer.url).extensions(false).connect(),
        peer.accept_with(conf_2_1())
    );
    let (client, mut conn) = (client.unwrap(), conn);
    let mut events = client.events();
    login(&mut conn, &mut events, "k2").await;
    let call = spawn_request(&client, "b");
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "b");
    conn.reply(id, Payload::utf8("B")).await;
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_keyed_request_is_sent_again_after_a_cut_with_the_same_key() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, hello) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;
    let pay = spawn_request(&client, "pay");
    let first = recv_keyed(&mut conn).await;
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    let (mut conn, hello_again) = accept_2_1(&mut peer, FeatureFlags::KNOWN, EPOCH).await;
    assert_eq!(
        hello_again.instance_id(),
        hello.instance_id(),
        "one id per instance"
    );
    let (id, resume_id, positions) = recv_restore(&mut conn, "k1").await;
    assert!(positions.is_empty(), "no stream seen yet");
    // Nothing else before the restore's answer.
    let early = conn.read_within(QUIET).await;
    assert!(early.is_none(), "{early:?}");
    conn.reply(id, session_payload("k1")).await;
    conn.reply(resume_id, Payload::binary(Vec::new())).await;
    let again = recv_keyed(&mut conn).await;
    assert_eq!(again.key(), first.key(), "same seq and epoch");
    assert_ne!(again.id(), first.id(), "a new request id");
    assert_eq!(again.request().name(), first.request().name());
    assert_eq!(again.request().payload(), first.request().payload());
    conn.reply(again.id(), Payload::utf8("paid")).await;
    assert_eq!(pay.await.unwrap().unwrap(), Payload::utf8("paid"));
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
}

#[tokio::test]
async fn another_ledger_epoch_or_a_2_0_server_fails_it_as_outcome_unknown() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, _) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;

    // The ledger restarted: never sent again.
    let pay = spawn_request(&client, "pay");
    recv_keyed(&mut conn).await;
    drop(conn);
    let (mut conn, _) = accept_2_1(&mut peer, FeatureFlags::KNOWN, EPOCH + 1).await;
    restore_ok(&mut conn, "k1").await;
    assert_eq!(pay.await.unwrap(), Err(RequestError::OutcomeUnknown));
    // The next request is the next seq, under the new epoch.
    let next = spawn_request(&client, "next");
    let keyed = recv_keyed(&mut conn).await;
    assert_eq!((keyed.key().seq, keyed.key().epoch), (2, EPOCH + 1));
    conn.reply(keyed.id(), Payload::utf8("ok")).await;
    next.await.unwrap().unwrap();

    // A 2.0 server (an old node in a rolling deploy): not sent again, and
    // new requests are plain.
    let pay = spawn_request(&client, "pay");
    recv_keyed(&mut conn).await;
    drop(conn);
    let mut conn = peer.accept_with(default_conf()).await;
    let ClientMessage::RestoreSession { id, .. } = conn.recv().await else {
        panic!("expected the restore, and no hello")
    };
    conn.reply(id, session_payload("k1")).await;
    assert_eq!(pay.await.unwrap(), Err(RequestError::OutcomeUnknown));
    let plain = spawn_request(&client, "plain");
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "plain");
    conn.reply(id, Payload::utf8("ok")).await;
    plain.await.unwrap().unwrap();
}

#[tokio::test]
async fn after_session_not_found_sent_requests_ask_the_closed_ledger_and_unsent_ones_fail() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, _) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;
    // "logout" closes its own session; its answer is lost with the connection.
    let logout = spawn_request(&client, "logout");
    let first = recv_keyed(&mut conn).await;
    let other = spawn_request(&client, "other");
    let second = recv_keyed(&mut conn).await;
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    // Made while disconnected, under the session: never sent.
    let unsent = spawn_request(&client, "unsent");
    tokio::time::sleep(QUIET).await;

    let (mut conn, _) = accept_2_1(&mut peer, FeatureFlags::KNOWN, EPOCH).await;
    let (id, resume_id, _) = recv_restore(&mut conn, "k1").await;
    conn.send(ServerMessage::SessionNotFound(id)).await;
    conn.send(ServerMessage::Error(ErrorReply::new(
        resume_id,
        ErrorCode::from_static("NO_SESSION"),
        "",
    )))
    .await;
    // Both sent ones again, in seq order, without a session.
    let again = recv_keyed(&mut conn).await;
    let again_2 = recv_keyed(&mut conn).await;
    assert_eq!((again.key(), again_2.key()), (first.key(), second.key()));
    assert_eq!(unsent.await.unwrap(), Err(RequestError::OutcomeUnknown));
    // Nothing else until they are answered.
    let later = spawn_request(&client, "later");
    assert!(conn.read_within(QUIET).await.is_none());
    conn.reply(again.id(), Payload::utf8("bye")).await;
    conn.send(ServerMessage::Error(ErrorReply::new(
        again_2.id(),
        ErrorCode::from_static("NO_SESSION"),
        "",
    )))
    .await;
    assert_eq!(logout.await.unwrap().unwrap(), Payload::utf8("bye"));
    assert_eq!(other.await.unwrap(), Err(RequestError::OutcomeUnknown));
    // Then the rest, plain: there is no session.
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "later");
    conn.reply(id, Payload::utf8("ok")).await;
    later.await.unwrap().unwrap();
    assert!(client.session().is_none());
}

#[tokio::test]
async fn the_offline_queue_is_bounded() {
    let mut peer = Peer::start().await;
    let (client, conn) = tokio::join!(
        builder(&peer.url).max_queued(2).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let mut events = client.events();
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;
    let a = spawn_request(&client, "a");
    let b = spawn_request(&client, "b");
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        client.request("c", "p").await,
        Err(RequestError::QueueFull { max: 2 })
    );
    // The queued ones go out once connected, once each.
    let mut conn = peer.accept_with(default_conf()).await;
    for _ in 0..2 {
        let (id, _, _) = conn.recv_request().await;
        conn.reply(id, Payload::utf8("ok")).await;
    }
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert!(conn.read_within(QUIET).await.is_none());
}

#[tokio::test]
async fn an_answer_whose_caller_is_gone_is_an_event_with_its_seq() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, _) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;
    let call = spawn_request(&client, "pay");
    let keyed = recv_keyed(&mut conn).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    tokio::time::sleep(QUIET).await;
    conn.reply(keyed.id(), Payload::utf8("paid")).await;
    let event = wait_event(&mut events, |e| {
        matches!(e, ClientEvent::OrphanReply { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::OrphanReply {
            seq: 1,
            result: Ok(Payload::utf8("paid"))
        }
    );
}

#[tokio::test]
async fn stream_signals_come_in_order_once_and_gaps_are_resumed() {
    let mut peer = Peer::start().await;
    let (_client, mut conn, mut events, _) =
        connect_2_1(&mut peer, |b| b.stream_signal_events(true)).await;
    login(&mut conn, &mut events, "k1").await;
    for offset in [1, 2, 2, 1] {
        conn.send(stream_signal(lobby(), STREAM_EPOCH, offset))
            .await;
    }
    // 3 is missing: one resume from (epoch, 2), then gaps are dropped.
    conn.send(stream_signal(lobby(), STREAM_EPOCH, 4)).await;
    let ClientMessage::StreamResume(resume) = conn.recv().await else {
        panic!("expected a StreamResume")
    };
    let (resume_id, positions) = resume.into_parts();
    assert_eq!(
        positions,
        [StreamPosition {
            stream: lobby(),
            epoch: STREAM_EPOCH,
            offset: 2
        }]
    );
    conn.send(stream_signal(lobby(), STREAM_EPOCH, 5)).await;
    assert!(
        conn.read_within(QUIET).await.is_none(),
        "one resume at a time"
    );
    // The resume's signals, live ones that overlap them, then its answer.
    for offset in [3, 4, 4, 5] {
        conn.send(stream_signal(lobby(), STREAM_EPOCH, offset))
            .await;
    }
    conn.reply(resume_id, Payload::binary(Vec::new())).await;
    conn.send(stream_signal(lobby(), STREAM_EPOCH, 6)).await;
    assert_eq!(stream_offsets(&mut events, 6).await, [1, 2, 3, 4, 5, 6]);

    // A loss is told, and the position moves past it.
    let loss = StreamLoss {
        stream: lobby(),
        epoch: STREAM_EPOCH,
        lost_from: 7,
        lost_to: 9,
        next: 10,
        reason: LossReason::Trimmed,
    };
    conn.send(ServerMessage::StreamLoss(loss.clone())).await;
    conn.send(stream_signal(lobby(), STREAM_EPOCH, 10)).await;
    let event = wait_event(&mut events, |e| matches!(e, ClientEvent::StreamLoss(_))).await;
    assert_eq!(event, ClientEvent::StreamLoss(loss));
    assert_eq!(stream_offsets(&mut events, 1).await, [10]);
}

#[tokio::test]
async fn stream_positions_are_resumed_after_a_restore_and_signals_stay_signals() {
    let mut peer = Peer::start().await;
    // Without stream_signal_events, stream signals are plain signal events.
    let (_client, mut conn, mut events, _) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;
    for offset in 1..=3 {
        conn.send(stream_signal(StreamId::Session, STREAM_EPOCH, offset))
            .await;
    }
    conn.send(stream_signal(lobby(), 5, 1)).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        if let ClientEvent::Signal(signal) =
            wait_event(&mut events, |e| matches!(e, ClientEvent::Signal(_))).await
        {
            seen.push(signal.payload().to_text().unwrap().into_owned());
        }
    }
    assert_eq!(seen, ["1", "2", "3", "1"]);
    drop(conn);

    let (mut conn, _) = accept_2_1(&mut peer, FeatureFlags::KNOWN, EPOCH).await;
    let (id, resume_id, positions) = recv_restore(&mut conn, "k1").await;
    assert_eq!(
        positions,
        [
            StreamPosition {
                stream: StreamId::Session,
                epoch: STREAM_EPOCH,
                offset: 3
            },
            StreamPosition {
                stream: lobby(),
                epoch: 5,
                offset: 1
            },
        ]
    );
    conn.reply(id, session_payload("k1")).await;
    // What was missed, a duplicate, then the resume's answer.
    for offset in [3, 4] {
        conn.send(stream_signal(StreamId::Session, STREAM_EPOCH, offset))
            .await;
    }
    conn.reply(resume_id, Payload::binary(Vec::new())).await;
    let ClientEvent::Signal(signal) =
        wait_event(&mut events, |e| matches!(e, ClientEvent::Signal(_))).await
    else {
        unreachable!()
    };
    assert_eq!(signal.payload().to_text().unwrap(), "4");
}

/// The 2.1 opt-in of a connection of a [`MemoryPeer`].
async fn opt_in(conn: &mut PeerConn, epoch: u64) {
    let ClientMessage::ExtensionHello(hello) = conn.recv().await else {
        panic!("expected the ExtensionHello first")
    };
    conn.send(ServerMessage::ExtensionAccept(ExtensionAccept {
        flags: hello.flags() & FeatureFlags::KNOWN,
        ledger_epoch: epoch,
    }))
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_the_connection_keeps_its_timeout() {
    let (builder, mut peer) = MemoryPeer::start();
    let (client, conn) = tokio::join!(builder.connect(), peer.accept_with(conf_2_1()));
    let (client, mut conn) = (client.unwrap(), conn);
    let mut events = client.events();
    opt_in(&mut conn, EPOCH).await;
    login(&mut conn, &mut events, "k1").await;
    drop(conn);
    wait_event(&mut events, |e| *e == ClientEvent::Disconnected).await;

    // The reconnection's server is slow to answer: the request times out
    // while it waits, and is never sent.
    let started = tokio::time::Instant::now();
    let result = client
        .request_timeout("slow", "p", Duration::from_secs(3))
        .await;
    assert_eq!(result, Err(RequestError::TimedOut));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let mut conn = peer.accept_with(conf_2_1()).await;
    opt_in(&mut conn, EPOCH).await;
    restore_ok(&mut conn, "k1").await;
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    let sent = conn.read_within(QUIET).await;
    assert!(sent.is_none(), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_keyed_request_whose_caller_timed_out_is_still_sent_again_and_answered_as_an_event() {
    let (builder, mut peer) = MemoryPeer::start();
    let (client, conn) = tokio::join!(builder.connect(), peer.accept_with(conf_2_1()));
    let (client, mut conn) = (client.unwrap(), conn);
    let mut events = client.events();
    opt_in(&mut conn, EPOCH).await;
    login(&mut conn, &mut events, "k1").await;
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request_timeout("pay", "10", Duration::from_secs(1))
                .await
        }
    });
    let first = recv_keyed(&mut conn).await;
    assert_eq!(call.await.unwrap(), Err(RequestError::TimedOut));
    drop(conn);

    // The server may have run it: it is asked again with its key, and the
    // answer goes to the application as an event.
    let mut conn = peer.accept_with(conf_2_1()).await;
    opt_in(&mut conn, EPOCH).await;
    restore_ok(&mut conn, "k1").await;
    let again = recv_keyed(&mut conn).await;
    assert_eq!(again.key(), first.key());
    conn.reply(again.id(), Payload::utf8("paid")).await;
    let event = wait_event(&mut events, |e| {
        matches!(e, ClientEvent::OrphanReply { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::OrphanReply {
            seq: 1,
            result: Ok(Payload::utf8("paid"))
        }
    );
}

#[tokio::test]
async fn a_logout_whose_answer_was_lost_is_asked_again_from_the_closed_sessions_ledger() {
    let mut peer = Peer::start().await;
    let (client, mut conn, mut events, _) = connect_2_1(&mut peer, |b| b).await;
    login(&mut conn, &mut events, "k1").await;
    let logout = spawn_request(&client, "logout");
    let first = recv_keyed(&mut conn).await;
    // The handler closed the session; its answer is lost with the connection.
    conn.send(ServerMessage::SessionClosed).await;
    wait_event(&mut events, |e| *e == ClientEvent::SessionClosed).await;
    assert!(client.session().is_none());
    drop(conn);

    // The client has no session, but the restore names the logout's, so
    // that its retry is answered from that session's ledger.
    let (mut conn, _) = accept_2_1(&mut peer, FeatureFlags::KNOWN, EPOCH).await;
    let (id, _, positions) = recv_restore(&mut conn, "k1").await;
    assert!(positions.is_empty());
    conn.send(ServerMessage::SessionNotFound(id)).await;
    let again = recv_keyed(&mut conn).await;
    assert_eq!(again.key(), first.key());
    conn.reply(again.id(), Payload::utf8("bye")).await;
    assert_eq!(logout.await.unwrap().unwrap(), Payload::utf8("bye"));
    wait_event(&mut events, |e| *e == ClientEvent::Connected).await;
    assert!(client.session().is_none());
}

#[tokio::test]
async fn nothing_goes_out_between_the_hello_and_the_accept() {
    let mut peer = Peer::start().await;
    let url = peer.url.clone();
    let (client, conn) = tokio::join!(builder(&url).connect(), peer.accept_with(conf_2_1()));
    let (client, mut conn) = (client.unwrap(), conn);
    let ClientMessage::ExtensionHello(hello) = conn.recv().await else {
        panic!("expected the ExtensionHello first")
    };
    let call = spawn_request(&client, "early");
    assert!(conn.read_within(QUIET).await.is_none());
    conn.send(ServerMessage::ExtensionAccept(ExtensionAccept {
        flags: hello.flags(),
        ledger_epoch: EPOCH,
    }))
    .await;
    let (id, name, _) = conn.recv_request().await;
    assert_eq!(name, "early");
    conn.reply(id, Payload::utf8("ok")).await;
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_restore_by_the_application_is_followed_by_a_stream_resume() {
    let mut peer = Peer::start().await;
    let (client, mut conn, _events, _) = connect_2_1(&mut peer, |b| b).await;
    let restore = tokio::spawn({
        let client = client.clone();
        async move { client.restore_session("saved").await }
    });
    let ClientMessage::RestoreSession { id, key } = conn.recv().await else {
        panic!("expected the restore")
    };
    assert_eq!(key, "saved");
    conn.reply(id, session_payload("saved")).await;
    // The server holds the session's streams until a resume, empty here.
    let ClientMessage::StreamResume(resume) = conn.recv().await else {
        panic!("expected a StreamResume after the restore")
    };
    assert!(resume.positions().is_empty());
    assert_eq!(restore.await.unwrap().unwrap().key, "saved");
}

/// A server shutting down answers the hello, then closes with 1001 before
/// the accept let the request out: without reconnection it fails as
/// `ServerShutdown` (it never ran), not as a lost connection.
#[tokio::test]
async fn a_request_held_for_the_accept_fails_as_shutdown_when_the_server_goes_away() {
    let mut peer = Peer::start().await;
    let url = peer.url.clone();
    let (client, conn) = tokio::join!(
        builder(&url).auto_reconnect(false).connect(),
        peer.accept_with(conf_2_1())
    );
    let (client, mut conn) = (client.unwrap(), conn);
    let ClientMessage::ExtensionHello(_) = conn.recv().await else {
        panic!("expected the ExtensionHello first")
    };
    let call = spawn_request(&client, "late");
    assert!(conn.read_within(QUIET).await.is_none());
    conn.close(tokio_websockets::CloseCode::GOING_AWAY).await;
    assert_eq!(
        call.await.unwrap().unwrap_err(),
        RequestError::ServerShutdown
    );
    // The next call, after the going-away close was reported, is a plain
    // disconnected one.
    assert_eq!(
        client
            .request("again", Payload::utf8(""))
            .await
            .unwrap_err(),
        RequestError::Disconnected
    );
}
