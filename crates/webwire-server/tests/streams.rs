//! Resumable signal streams (webwire 2.1, docs/protocol.md section 14.3),
//! over in-memory connections and raw frames: offsets, 2.0 connections,
//! resumes after a dropped connection (also while signals are sent), each
//! loss, a restart, memberships restored, a full queue repaired, bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{reply_text, TestClient};
use webwire_proto::{
    ClientMessage, ExtensionHello, FeatureFlags, InstanceId, LossReason, Payload, RequestId,
    RoomName, ServerMessage, StreamId, StreamLoss, StreamPosition, StreamResume, StreamSignal,
};
use webwire_server::session::MemorySessionManager;
use webwire_server::stream::{
    HistoryLimits, MemoryStreamStore, StreamKey, StreamRead, StreamStore, StreamStoreError,
};
use webwire_server::{Connection, MessageRouter, Server, ServerBuilder};

/// Rooms named `h-...` keep 100 signals for an hour; `t-...` keep 3,
/// `a-...` keep them for a minute.
fn builder() -> ServerBuilder<MessageRouter> {
    builder_with(Arc::new(MemorySessionManager::new()))
}

fn builder_with(sessions: Arc<MemorySessionManager>) -> ServerBuilder<MessageRouter> {
    let router = MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn.create_session(None).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
        })
        .request("join", |conn: Connection, room: String| async move {
            conn.join_session_room(&room).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
        })
        .request("join-conn", |conn: Connection, room: String| async move {
            conn.join_room(&room)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
        })
        .request("say", |conn: Connection, text: String| async move {
            let at = conn.signal_room_stream("h-a", "said", text).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(at.offset.to_string())
        })
        .request("note", |conn: Connection, text: String| async move {
            let at = conn.signal_session_stream("noted", text).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(at.offset.to_string())
        });
    Server::builder(router)
        .extensions(FeatureFlags::STREAMS)
        .session_manager(sessions)
        .room_history(|room| {
            if room.starts_with("h-") {
                Some(HistoryLimits::new(100, Duration::from_secs(3600)))
            } else if room.starts_with("t-") {
                Some(HistoryLimits::new(3, Duration::from_secs(3600)))
            } else if room.starts_with("a-") {
                Some(HistoryLimits::new(100, Duration::from_secs(60)))
            } else {
                None
            }
        })
}

fn room(name: &str) -> StreamId {
    StreamId::Room(RoomName::new(name).unwrap())
}

/// A client that opted in to streams.
async fn streams_client(server: &Server) -> TestClient {
    let mut client = TestClient::in_memory(server).await;
    assert_eq!(client.conf.minor, 1, "the server announces 2.1");
    let hello = ExtensionHello::new(FeatureFlags::STREAMS, InstanceId::new("").unwrap()).unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    match client.recv().await {
        ServerMessage::ExtensionAccept(accept) => {
            assert_eq!(accept.flags, FeatureFlags::STREAMS);
            assert_eq!(accept.ledger_epoch, 0);
        }
        other => panic!("expected ExtensionAccept, got {other:?}"),
    }
    client
}

async fn login(client: &mut TestClient) -> String {
    let reply = client.request("login", Payload::default()).await;
    let key = reply_text(&reply);
    for message in client.take_pending() {
        assert!(
            matches!(message, ServerMessage::SessionCreated(_)),
            "{message:?}"
        );
    }
    key
}

async fn ok(client: &mut TestClient, name: &str, text: &str) {
    let reply = client.request(name, Payload::utf8(text)).await;
    assert_eq!(reply_text(&reply), "ok", "{reply:?}");
}

async fn restore(client: &mut TestClient, key: &str) {
    let id = client.next_id();
    client
        .send(ClientMessage::RestoreSession {
            id,
            key: Bytes::from(key.to_owned()),
        })
        .await;
    let reply = client.reply_to(id).await;
    assert!(matches!(reply, ServerMessage::Reply(_)), "{reply:?}");
}

/// Sends a StreamResume; returns what came before its answer, and the answer.
async fn resume(
    client: &mut TestClient,
    positions: Vec<StreamPosition>,
) -> (Vec<ServerMessage>, ServerMessage) {
    let id = client.next_id();
    let resume = StreamResume::new(id, positions).unwrap();
    client.send(ClientMessage::StreamResume(resume)).await;
    let mut before = client.take_pending();
    loop {
        let message = client.recv().await;
        if message.request_id() == Some(id) {
            return (before, message);
        }
        before.push(message);
    }
}

fn at(stream: StreamId, epoch: u64, offset: u64) -> StreamPosition {
    StreamPosition {
        stream,
        epoch,
        offset,
    }
}

fn stream_signal(message: &ServerMessage) -> &StreamSignal {
    match message {
        ServerMessage::StreamSignal(signal) => signal,
        other => panic!("expected a StreamSignal, got {other:?}"),
    }
}

fn loss(message: &ServerMessage) -> &StreamLoss {
    match message {
        ServerMessage::StreamLoss(loss) => loss,
        other => panic!("expected a StreamLoss, got {other:?}"),
    }
}

fn text(signal: &StreamSignal) -> String {
    signal.signal().payload().to_text().unwrap().into_owned()
}

fn is_empty_reply(message: &ServerMessage) -> bool {
    matches!(message, ServerMessage::Reply(reply) if reply.payload.is_empty())
}

/// What a client keeps per stream (docs/protocol.md 14.3.3), strict: a
/// gap fails the test unless `gaps` is allowed.
#[derive(Debug, Default)]
struct Position {
    epoch: u64,
    last: u64,
    delivered: Vec<String>,
}

impl Position {
    /// Applies the client's rule; `false` for a gap.
    fn take(&mut self, signal: &StreamSignal) -> bool {
        if self.epoch == 0 {
            self.epoch = signal.epoch();
        }
        assert_eq!(signal.epoch(), self.epoch, "the epoch changed");
        if signal.offset() == self.last + 1 {
            self.last += 1;
            self.delivered.push(text(signal));
            true
        } else {
            signal.offset() <= self.last
        }
    }
}

#[tokio::test(start_paused = true)]
async fn offsets_are_dense_per_stream_and_2_0_connections_get_plain_signals() {
    let server = builder().build().unwrap();
    let mut new = streams_client(&server).await;
    let mut old = TestClient::in_memory(&server).await;
    ok(&mut new, "join-conn", "h-a").await;
    ok(&mut old, "join-conn", "h-a").await;
    let key = login(&mut new).await;
    for i in 1..=3 {
        let sent = server
            .signal_room_stream("h-a", "msg", format!("a{i}"))
            .await
            .unwrap();
        assert_eq!(sent.offset, i);
    }
    let mut epoch = None;
    for i in 1..=3 {
        let message = new.recv().await;
        let signal = stream_signal(&message);
        assert_eq!(signal.stream(), &room("h-a"));
        assert_eq!(signal.offset(), i);
        assert_eq!(*epoch.get_or_insert(signal.epoch()), signal.epoch());
        assert_eq!(text(signal), format!("a{i}"));
        // The 2.0 connection: the same signal, plain.
        match old.recv().await {
            ServerMessage::Signal(plain) => {
                assert_eq!(plain.name().as_bytes(), &b"msg"[..]);
                assert_eq!(plain.payload().to_text().unwrap(), format!("a{i}"));
            }
            other => panic!("a 2.0 connection got {other:?}"),
        }
    }
    // The session stream counts on its own.
    let sent = server.signal_session_stream(&key, "s", "s1").await.unwrap();
    assert_eq!(sent.offset, 1);
    assert_ne!(Some(sent.epoch), epoch);
    let message = new.recv().await;
    let signal = stream_signal(&message);
    assert_eq!(
        (signal.stream(), signal.offset(), signal.epoch()),
        (&StreamId::Session, 1, sent.epoch)
    );
    // A room without history has no stream.
    let err = server
        .signal_room_stream("plain", "x", "y")
        .await
        .unwrap_err();
    assert!(
        matches!(err, webwire_server::error::StreamError::NoHistory { .. }),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_2_0_client_is_never_sent_a_2_1_message_and_may_not_resume() {
    let server = builder().build().unwrap();
    let mut old = TestClient::in_memory(&server).await;
    let key = login(&mut old).await;
    ok(&mut old, "join", "h-a").await;
    server.signal_session_stream(&key, "s", "1").await.unwrap();
    server.signal_room_stream("h-a", "r", "2").await.unwrap();
    assert!(matches!(old.recv().await, ServerMessage::Signal(_)));
    assert!(matches!(old.recv().await, ServerMessage::Signal(_)));
    // A StreamResume from a client that did not opt in: a violation.
    let resume = StreamResume::new(RequestId::from(99), vec![]).unwrap();
    old.send(ClientMessage::StreamResume(resume)).await;
    assert_eq!(old.closed().await, Some(1002));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resume_after_a_dropped_connection_gets_the_missed_signals_in_order_then_live_ones() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let (mut room_pos, mut session_pos) = (Position::default(), Position::default());
    for i in 1..=3 {
        server
            .signal_room_stream("h-a", "r", format!("r{i}"))
            .await
            .unwrap();
        server
            .signal_session_stream(&key, "s", format!("s{i}"))
            .await
            .unwrap();
    }
    for _ in 0..6 {
        let message = client.recv().await;
        let signal = stream_signal(&message);
        let position = match signal.stream() {
            StreamId::Session => &mut session_pos,
            _ => &mut room_pos,
        };
        assert!(position.take(signal));
    }
    client.close().await;
    within_eventually(&server, 0).await;
    // Sent while the client is away.
    for i in 4..=7 {
        server
            .signal_room_stream("h-a", "r", format!("r{i}"))
            .await
            .unwrap();
        server
            .signal_session_stream(&key, "s", format!("s{i}"))
            .await
            .unwrap();
    }
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    // Back in the session's room without joining it again.
    assert_eq!(server.room_count("h-a"), 1);
    // Sent after the restore, before the resume: held, then resumed once.
    server.signal_room_stream("h-a", "r", "r8").await.unwrap();
    let (before, answer) = resume(
        &mut client,
        vec![
            at(room("h-a"), room_pos.epoch, room_pos.last),
            at(StreamId::Session, session_pos.epoch, session_pos.last),
        ],
    )
    .await;
    assert!(is_empty_reply(&answer), "{answer:?}");
    for message in &before {
        let signal = stream_signal(message);
        let position = match signal.stream() {
            StreamId::Session => &mut session_pos,
            _ => &mut room_pos,
        };
        let last = position.last;
        assert!(position.take(signal), "a gap: {signal:?}");
        assert_eq!(position.last, last + 1, "a duplicate: {signal:?}");
    }
    server.signal_room_stream("h-a", "r", "r9").await.unwrap();
    let message = client.recv().await;
    assert!(room_pos.take(stream_signal(&message)));
    assert_eq!(
        room_pos.delivered,
        (1..=9).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        session_pos.delivered,
        (1..=7).map(|i| format!("s{i}")).collect::<Vec<_>>()
    );
    server.shutdown().await;
}

/// Waits until the server has `n` connections.
async fn within_eventually(server: &Server, n: usize) {
    common::eventually("the connection count", || server.connection_count() == n).await;
}

/// A store that takes its time, as one over the network does: other
/// tasks run while it answers.
#[derive(Debug, Default)]
struct SlowStore(MemoryStreamStore);

async fn a_while() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

impl StreamStore for SlowStore {
    async fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        let at = self.0.append(stream, limits, frame).await;
        a_while().await;
        at
    }

    async fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<webwire_server::stream::StreamPosition>,
    ) -> Result<StreamRead, StreamStoreError> {
        let read = self.0.read(stream, limits, after).await;
        a_while().await;
        read
    }

    async fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        let end = self.0.end(stream, limits).await;
        a_while().await;
        end
    }

    async fn remove(&self, stream: &StreamKey) -> Result<(), StreamStoreError> {
        self.0.remove(stream).await
    }
}

#[tokio::test(start_paused = true)]
async fn resume_while_signals_are_sent_concurrently_loses_and_doubles_nothing() {
    const N: u64 = 300;
    let server = builder()
        .queue_capacity(1024)
        .stream_store(Arc::new(SlowStore::default()))
        .build()
        .unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let sender = tokio::spawn({
        let server = server.clone();
        let key = key.clone();
        async move {
            for i in 1..=N {
                server
                    .signal_room_stream("h-a", "r", format!("{i}"))
                    .await
                    .unwrap();
                server
                    .signal_session_stream(&key, "s", format!("{i}"))
                    .await
                    .unwrap();
                // Paced, so that sends go on while the client reconnects
                // and resumes.
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let (mut room_pos, mut session_pos) = (Position::default(), Position::default());
    let mut reconnects = 0;
    while room_pos.last < N || session_pos.last < N {
        // Read a few, then drop the connection and resume on a new one.
        for _ in 0..40 {
            if room_pos.last == N && session_pos.last == N {
                break;
            }
            let message = client.recv().await;
            let signal = stream_signal(&message);
            let position = match signal.stream() {
                StreamId::Session => &mut session_pos,
                _ => &mut room_pos,
            };
            assert!(position.take(signal), "a gap: {signal:?}");
        }
        if room_pos.last == N && session_pos.last == N {
            break;
        }
        client.close().await;
        reconnects += 1;
        client = streams_client(&server).await;
        restore(&mut client, &key).await;
        let mut positions = vec![];
        if room_pos.epoch != 0 {
            positions.push(at(room("h-a"), room_pos.epoch, room_pos.last));
        }
        if session_pos.epoch != 0 {
            positions.push(at(StreamId::Session, session_pos.epoch, session_pos.last));
        }
        let (before, answer) = resume(&mut client, positions).await;
        assert!(is_empty_reply(&answer), "{answer:?}");
        for message in &before {
            let signal = stream_signal(message);
            let position = match signal.stream() {
                StreamId::Session => &mut session_pos,
                _ => &mut room_pos,
            };
            assert!(position.take(signal), "a gap: {signal:?}");
        }
    }
    sender.await.unwrap();
    assert!(reconnects > 0);
    let all: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    assert_eq!(room_pos.delivered, all);
    assert_eq!(session_pos.delivered, all);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn trimmed_history_is_reported_then_the_rest_follows() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "t-a").await;
    let first = server.signal_room_stream("t-a", "r", "1").await.unwrap();
    server.signal_room_stream("t-a", "r", "2").await.unwrap();
    // Away at offset 2; 8 more are sent, 3 are kept.
    for i in 3..=10 {
        server
            .signal_room_stream("t-a", "r", format!("{i}"))
            .await
            .unwrap();
    }
    let mut client2 = streams_client(&server).await;
    restore(&mut client2, &key).await;
    let (before, answer) = resume(&mut client2, vec![at(room("t-a"), first.epoch, 2)]).await;
    assert!(is_empty_reply(&answer));
    // Whatever the first connection still reads is not this one's.
    drop(client);
    let trimmed = loss(&before[0]);
    assert_eq!(trimmed.reason, LossReason::Trimmed);
    assert_eq!(
        (
            trimmed.epoch,
            trimmed.lost_from,
            trimmed.lost_to,
            trimmed.next
        ),
        (first.epoch, 3, 7, 8)
    );
    let offsets: Vec<u64> = before[1..]
        .iter()
        .map(|m| stream_signal(m).offset())
        .collect();
    assert_eq!(offsets, [8, 9, 10]);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ahead_and_foreign_epochs_and_streams_without_rights() {
    let server = builder().build().unwrap();
    let mut other = streams_client(&server).await;
    let other_key = login(&mut other).await;
    ok(&mut other, "join", "h-theirs").await;
    let theirs = server
        .signal_session_stream(&other_key, "s", "x")
        .await
        .unwrap();
    let mut client = streams_client(&server).await;
    let _key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let end = server.signal_room_stream("h-a", "r", "1").await.unwrap();
    assert!(stream_signal(&client.recv().await).offset() == 1);
    let (before, answer) = resume(
        &mut client,
        vec![
            // Beyond the end, in the stream's epoch (a lost tail).
            at(room("h-a"), end.epoch, end.offset + 4),
            // Another session's session-stream epoch.
            at(StreamId::Session, theirs.epoch, 1),
            // Another session's room, a room without history, and one
            // that does not exist.
            at(room("h-theirs"), 1, 0),
            at(room("plain"), 1, 0),
            at(room("h-nobody"), 1, 0),
        ],
    )
    .await;
    assert!(is_empty_reply(&answer), "{answer:?}");
    let losses: Vec<&StreamLoss> = before.iter().map(loss).collect();
    let unknown: Vec<&StreamLoss> = losses
        .iter()
        .copied()
        .filter(|l| l.reason == LossReason::UnknownStream)
        .collect();
    assert_eq!(unknown.len(), 3);
    for l in &unknown {
        assert_eq!((l.epoch, l.lost_from, l.lost_to, l.next), (0, 0, 0, 0));
    }
    let ahead = losses
        .iter()
        .find(|l| l.reason == LossReason::Ahead)
        .unwrap();
    assert_eq!(ahead.stream, room("h-a"));
    assert_eq!(
        (ahead.epoch, ahead.lost_from, ahead.lost_to, ahead.next),
        (end.epoch, 2, 5, 2)
    );
    let changed = losses
        .iter()
        .find(|l| l.reason == LossReason::EpochChanged)
        .unwrap();
    assert_eq!(changed.stream, StreamId::Session);
    assert_ne!(changed.epoch, theirs.epoch);
    assert_eq!(
        (changed.lost_from, changed.lost_to, changed.next),
        (0, 0, 1)
    );
    assert_eq!(losses.len(), 5, "{losses:?}");
    // The client goes on from `next`: the next signal is offset 2.
    server.signal_room_stream("h-a", "r", "2").await.unwrap();
    assert_eq!(stream_signal(&client.recv().await).offset(), 2);
    // The made-up room was not made.
    assert!(server.session_rooms(&other_key) == ["h-theirs"]);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resume_without_a_session_is_answered_no_session() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    let (before, answer) = resume(&mut client, vec![at(StreamId::Session, 1, 1)]).await;
    assert!(before.is_empty());
    match answer {
        ServerMessage::Error(err) => assert_eq!(err.code.as_bytes(), &b"NO_SESSION"[..]),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resume_of_more_than_1024_streams_is_a_violation() {
    let server = builder().message_buffer_size(64 * 1024).build().unwrap();
    let mut client = streams_client(&server).await;
    let _key = login(&mut client).await;
    let mut frame = BytesMut::new();
    frame.put_u8(35);
    frame.put_u64_le(7);
    frame.put_u16_le(1025);
    for i in 0..1025u32 {
        let name = format!("h-{i}");
        frame.put_u8(2);
        frame.put_u8(name.len() as u8);
        frame.put_slice(name.as_bytes());
        frame.put_u64_le(1);
        frame.put_u64_le(0);
    }
    client.send_raw(frame.freeze()).await;
    assert_eq!(client.closed().await, Some(1002));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_epoch_changed_then_normal_service() {
    let sessions = Arc::new(MemorySessionManager::new());
    let server = builder_with(sessions.clone()).build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    let before_restart = server
        .signal_session_stream(&key, "s", "old")
        .await
        .unwrap();
    assert_eq!(stream_signal(&client.recv().await).offset(), 1);
    client.close().await;
    server.shutdown().await;

    // The same sessions, a new process: the stream store starts empty.
    let server = builder_with(sessions)
        .stream_store(Arc::new(MemoryStreamStore::new()))
        .build()
        .unwrap();
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    let (before, answer) = resume(
        &mut client,
        vec![at(StreamId::Session, before_restart.epoch, 1)],
    )
    .await;
    assert!(is_empty_reply(&answer));
    let changed = loss(&before[0]);
    assert_eq!(changed.reason, LossReason::EpochChanged);
    assert_ne!(changed.epoch, before_restart.epoch);
    assert_eq!(
        (changed.lost_from, changed.lost_to, changed.next),
        (0, 0, 1)
    );
    assert_eq!(before.len(), 1);
    let sent = server
        .signal_session_stream(&key, "s", "new")
        .await
        .unwrap();
    let message = client.recv().await;
    let signal = stream_signal(&message);
    assert_eq!((signal.epoch(), signal.offset()), (changed.epoch, 1));
    assert_eq!(sent.epoch, changed.epoch);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unlisted_membership_resumes_from_its_join_position_and_the_session_stream_from_the_start(
) {
    let server = builder().build().unwrap();
    server
        .signal_room_stream("h-a", "r", "before the join")
        .await
        .unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    server.signal_session_stream(&key, "s", "s1").await.unwrap();
    ok(&mut client, "join", "h-a").await;
    client.close().await;
    within_eventually(&server, 0).await;
    server
        .signal_room_stream("h-a", "r", "after the join")
        .await
        .unwrap();
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    let (before, answer) = resume(&mut client, vec![]).await;
    assert!(is_empty_reply(&answer));
    let mut texts: Vec<(StreamId, u64, String)> = before
        .iter()
        .map(stream_signal)
        .map(|s| (s.stream().clone(), s.offset(), text(s)))
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            (StreamId::Session, 1, "s1".to_owned()),
            (room("h-a"), 2, "after the join".to_owned()),
        ]
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn live_signals_dropped_on_a_full_queue_are_repaired_by_the_server() {
    const N: u64 = 40;
    let server = builder().queue_capacity(2).build().unwrap();
    let mut client = TestClient::in_memory_with(&server, 256).await;
    let hello = ExtensionHello::new(FeatureFlags::STREAMS, InstanceId::new("").unwrap()).unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    assert!(matches!(
        client.recv().await,
        ServerMessage::ExtensionAccept(_)
    ));
    let _key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    // The client reads nothing meanwhile: the pipe and the queue fill up.
    for i in 1..=N {
        server
            .signal_room_stream("h-a", "r", format!("{i}"))
            .await
            .unwrap();
    }
    let mut sent = N;
    let mut position = Position::default();
    let mut gaps = 0;
    loop {
        // Nothing more arrives (virtual time passes only when every task
        // waits): the next signal shows a hole at the tail, if any.
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), client.recv()).await else {
            if position.last == sent {
                break;
            }
            assert!(sent < N + 5, "the hole is never repaired");
            sent += 1;
            server
                .signal_room_stream("h-a", "r", format!("{sent}"))
                .await
                .unwrap();
            continue;
        };
        let signal = stream_signal(&message);
        if !position.take(signal) {
            gaps += 1;
            let (before, answer) = resume(
                &mut client,
                vec![at(room("h-a"), position.epoch, position.last)],
            )
            .await;
            assert!(is_empty_reply(&answer), "{answer:?}");
            for message in &before {
                position.take(stream_signal(message));
            }
        }
    }
    // With 40 signals for a queue of 2 and a pipe of 256 bytes, most miss
    // the queue live (this loop saw gaps before the server repaired them):
    // the server repairs each from history, in order, and the client
    // never sees a gap.
    assert_eq!(gaps, 0, "the server left a gap to the client");
    assert_eq!(
        position.delivered,
        (1..=sent).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    server.shutdown().await;
}

/// A 2.1 client with a session on `server`, whose pipe holds 256 bytes.
async fn small_pipe_client(server: &Server) -> (TestClient, String) {
    let mut client = TestClient::in_memory_with(server, 256).await;
    let hello = ExtensionHello::new(FeatureFlags::STREAMS, InstanceId::new("").unwrap()).unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    assert!(matches!(
        client.recv().await,
        ServerMessage::ExtensionAccept(_)
    ));
    let key = login(&mut client).await;
    (client, key)
}

/// Fills the connection of the session `key` while its client reads
/// nothing: plain signals (fire-and-forget, not on any stream) fill the
/// pipe and the queue; those that do not fit are dropped. Returns how many
/// the queue refused.
fn fill_queue(server: &Server, key: &str) -> usize {
    (0..32)
        .filter(|_| !matches!(server.signal_session(key, "fill", "x".repeat(100)), Ok(1)))
        .count()
}

/// Reads until nothing more arrives, applying the Rust client's rule
/// ([`StreamPositions`](webwire_proto::connection::client::StreamPositions))
/// to the StreamSignals of `stream` (a gap is resumed as a client does);
/// returns the payloads delivered to the application.
async fn read_as_client(
    client: &mut TestClient,
    positions: &mut webwire_proto::connection::client::StreamPositions,
    stream: &StreamId,
) -> Vec<String> {
    use webwire_proto::connection::client::Verdict;
    let mut delivered = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    loop {
        let message = match pending.pop_front() {
            Some(message) => message,
            None => match tokio::time::timeout(Duration::from_secs(1), client.recv()).await {
                Ok(message) => message,
                Err(_) => return delivered,
            },
        };
        let signal = match &message {
            ServerMessage::StreamSignal(signal) if signal.stream() == stream => signal,
            ServerMessage::Signal(_) => continue,
            other => panic!("unexpected {other:?}"),
        };
        match positions.on_stream_signal(signal) {
            Verdict::Deliver => delivered.push(text(signal)),
            Verdict::Duplicate | Verdict::Gap(None) => {}
            Verdict::Gap(Some(from)) => {
                let (before, answer) = resume(client, vec![from]).await;
                assert!(is_empty_reply(&answer), "{answer:?}");
                pending.extend(before);
                positions.resume_answered(std::slice::from_ref(stream));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_signal_of_a_room_joined_live_missed_on_a_full_queue_is_not_lost() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    // History before the join, which the client must not get.
    for i in 1..=3 {
        server
            .signal_room_stream("h-a", "r", format!("{i}"))
            .await
            .unwrap();
    }
    ok(&mut client, "join", "h-a").await;
    assert!(fill_queue(&server, &key) > 0, "the queue never filled");
    // The first signal of the room this connection would get, and the
    // next ones, while the queue is full.
    for i in 4..=6 {
        server
            .signal_room_stream("h-a", "r", format!("{i}"))
            .await
            .unwrap();
    }
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let mut delivered = read_as_client(&mut client, &mut positions, &room("h-a")).await;
    // Later signals, with room in the queue.
    for i in 7..=8 {
        server
            .signal_room_stream("h-a", "r", format!("{i}"))
            .await
            .unwrap();
    }
    delivered.extend(read_as_client(&mut client, &mut positions, &room("h-a")).await);
    assert_eq!(
        delivered,
        (4..=8).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_first_session_stream_signal_missed_on_a_full_queue_is_not_lost() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    assert!(fill_queue(&server, &key) > 0, "the queue never filled");
    for i in 1..=3 {
        server
            .signal_session_stream(&key, "s", format!("{i}"))
            .await
            .unwrap();
    }
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let mut delivered = read_as_client(&mut client, &mut positions, &StreamId::Session).await;
    for i in 4..=5 {
        server
            .signal_session_stream(&key, "s", format!("{i}"))
            .await
            .unwrap();
    }
    delivered.extend(read_as_client(&mut client, &mut positions, &StreamId::Session).await);
    assert_eq!(
        delivered,
        (1..=5).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn closing_the_session_ends_its_memberships_and_its_stream() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    ok(&mut client, "join-conn", "h-b").await;
    assert_eq!(server.session_rooms(&key), ["h-a", "h-b"]);
    let first = server.signal_session_stream(&key, "s", "1").await.unwrap();
    server.close_session(&key).await;
    common::eventually("the memberships to go", || {
        server.session_rooms(&key).is_empty()
    })
    .await;
    assert_eq!(
        server.room_count("h-a"),
        0,
        "the connection left the session's rooms"
    );
    // The session stream was removed: a new one has a new epoch.
    let again = server.signal_session_stream(&key, "s", "2").await.unwrap();
    assert_eq!(again.offset, 1);
    assert_ne!(again.epoch, first.epoch);
    server.shutdown().await;
}

/// A store whose reads, once `gated`, wait for `open` after reading.
#[derive(Debug)]
struct GateStore {
    inner: MemoryStreamStore,
    gated: std::sync::atomic::AtomicBool,
    /// Reads waiting at the gate.
    waiting: std::sync::atomic::AtomicUsize,
    open: tokio::sync::Semaphore,
}

impl Default for GateStore {
    fn default() -> Self {
        Self {
            inner: MemoryStreamStore::new(),
            gated: Default::default(),
            waiting: Default::default(),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

impl StreamStore for GateStore {
    async fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        self.inner.append(stream, limits, frame).await
    }

    async fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<webwire_server::stream::StreamPosition>,
    ) -> Result<StreamRead, StreamStoreError> {
        let read = self.inner.read(stream, limits, after).await;
        if self.gated.load(std::sync::atomic::Ordering::SeqCst) {
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.open.acquire().await.unwrap().forget();
        }
        read
    }

    async fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        self.inner.end(stream, limits).await
    }

    async fn remove(&self, stream: &StreamKey) -> Result<(), StreamStoreError> {
        self.inner.remove(stream).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_signal_sent_while_a_resume_catches_up_follows_it() {
    let store = Arc::new(GateStore::default());
    let server = builder().stream_store(store.clone()).build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let first = server.signal_room_stream("h-a", "r", "1").await.unwrap();
    assert_eq!(stream_signal(&client.recv().await).offset(), 1);
    client.close().await;
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    store.gated.store(true, std::sync::atomic::Ordering::SeqCst);
    let id = client.next_id();
    let request = StreamResume::new(id, vec![at(room("h-a"), first.epoch, 1)]).unwrap();
    client.send(ClientMessage::StreamResume(request)).await;
    let waiting = |n| {
        let store = store.clone();
        move || store.waiting.load(std::sync::atomic::Ordering::SeqCst) == n
    };
    // The resume read the room's history; let it on to its catch-up read,
    // the last before the room flows again, and send then.
    common::eventually("the resume to read", waiting(1)).await;
    store.open.add_permits(1);
    common::eventually("the resume to catch up", waiting(2)).await;
    let send = tokio::spawn({
        let server = server.clone();
        async move { server.signal_room_stream("h-a", "r", "2").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Every read from here on (the session stream's too) goes through.
    store
        .gated
        .store(false, std::sync::atomic::Ordering::SeqCst);
    store.open.add_permits(16);
    let mut got = vec![];
    loop {
        let message = client.recv().await;
        if message.request_id() == Some(id) {
            assert!(is_empty_reply(&message), "{message:?}");
            break;
        }
        got.push(stream_signal(&message).offset());
    }
    assert_eq!(send.await.unwrap().offset, 2);
    server.signal_room_stream("h-a", "r", "3").await.unwrap();
    while got.last() != Some(&3) {
        got.push(stream_signal(&client.recv().await).offset());
    }
    // Signal 2 came once, in order: not lost to the resume's hold.
    assert_eq!(got, [2, 3]);
    server.shutdown().await;
}

/// A client that does not read holds up no sender of the stream it resumes.
#[tokio::test(start_paused = true)]
async fn a_resume_that_waits_for_a_client_to_read_stalls_no_sender() {
    let server = builder().queue_capacity(2).build().unwrap();
    let mut client = TestClient::in_memory_with(&server, 256).await;
    let hello = ExtensionHello::new(FeatureFlags::STREAMS, InstanceId::new("").unwrap()).unwrap();
    client.send(ClientMessage::ExtensionHello(hello)).await;
    assert!(matches!(
        client.recv().await,
        ServerMessage::ExtensionAccept(_)
    ));
    let _key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let mut last = None;
    for i in 1..=50 {
        last = Some(
            server
                .signal_room_stream("h-a", "r", format!("{i:>4000}"))
                .await
                .unwrap(),
        );
        // Read live, so that the connection reads the resume below.
        assert_eq!(stream_signal(&client.recv().await).offset(), i);
    }
    // A resume from the start, which the client does not read.
    let resume = StreamResume::new(
        RequestId::from(77),
        vec![at(room("h-a"), last.unwrap().epoch, 0)],
    )
    .unwrap();
    client.send(ClientMessage::StreamResume(resume)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    server.signal_room_stream("h-a", "r", "51").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn history_rooms_joined_before_the_session_become_the_sessions() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    ok(&mut client, "join-conn", "h-a").await;
    ok(&mut client, "join-conn", "plain").await;
    let key = login(&mut client).await;
    assert_eq!(server.session_rooms(&key), ["h-a"]);
    client.close().await;
    within_eventually(&server, 0).await;
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    assert_eq!(server.room_count("h-a"), 1);
    assert_eq!(server.room_count("plain"), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_entry_from_the_cluster_is_delivered_in_the_streams_order() {
    let server = builder().build().unwrap();
    let mut new = streams_client(&server).await;
    let mut old = TestClient::in_memory(&server).await;
    ok(&mut new, "join-conn", "h-a").await;
    ok(&mut old, "join-conn", "h-a").await;
    let signal = webwire_proto::Signal::new(
        webwire_proto::Name::from_static("remote"),
        Payload::utf8("from b"),
    )
    .unwrap();
    let frame = ServerMessage::Signal(signal).to_bytes();
    let at = webwire_server::stream::StreamPosition::new(77, 5);
    let sent = server
        .deliver_stream_entry(&StreamKey::room("h-a"), at, frame)
        .await;
    assert_eq!(sent, 2);
    let message = new.recv().await;
    let got = stream_signal(&message);
    assert_eq!(
        (got.epoch(), got.offset(), text(got)),
        (77, 5, "from b".into())
    );
    assert!(matches!(old.recv().await, ServerMessage::Signal(_)));
    // Not a signal: dropped.
    let sent = server
        .deliver_stream_entry(&StreamKey::room("h-a"), at, Bytes::from_static(b"\x16"))
        .await;
    assert_eq!(sent, 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn history_expired_by_age_while_away_is_reported_trimmed() {
    let server = builder().build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "a-a").await;
    let first = server.signal_room_stream("a-a", "r", "1").await.unwrap();
    assert_eq!(stream_signal(&client.recv().await).offset(), 1);
    client.close().await;
    within_eventually(&server, 0).await;
    server.signal_room_stream("a-a", "r", "2").await.unwrap();
    server.signal_room_stream("a-a", "r", "3").await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    server.signal_room_stream("a-a", "r", "4").await.unwrap();
    let mut client = streams_client(&server).await;
    restore(&mut client, &key).await;
    let (before, answer) = resume(&mut client, vec![at(room("a-a"), first.epoch, 1)]).await;
    assert!(is_empty_reply(&answer));
    let trimmed = loss(&before[0]);
    assert_eq!(
        (
            trimmed.reason,
            trimmed.lost_from,
            trimmed.lost_to,
            trimmed.next
        ),
        (LossReason::Trimmed, 2, 3, 4)
    );
    assert_eq!(stream_signal(&before[1]).offset(), 4);
    assert_eq!(before.len(), 2);
    server.shutdown().await;
}

/// A store that can be made unreachable.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryStreamStore,
    down: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StreamStoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StreamStoreError::msg("the store is down"))
        } else {
            Ok(())
        }
    }
}

impl StreamStore for FlakyStore {
    async fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        self.check()?;
        self.inner.append(stream, limits, frame).await
    }

    async fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<webwire_server::stream::StreamPosition>,
    ) -> Result<StreamRead, StreamStoreError> {
        self.check()?;
        self.inner.read(stream, limits, after).await
    }

    async fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<webwire_server::stream::StreamPosition, StreamStoreError> {
        self.check()?;
        self.inner.end(stream, limits).await
    }

    async fn remove(&self, stream: &StreamKey) -> Result<(), StreamStoreError> {
        self.check()?;
        self.inner.remove(stream).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_fails_stream_sends_and_resumes_but_not_plain_signals() {
    let store = Arc::new(FlakyStore::default());
    let server = builder().stream_store(store.clone()).build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = server
        .signal_room_stream("h-a", "r", "lost")
        .await
        .unwrap_err();
    assert!(
        matches!(err, webwire_server::error::StreamError::Store(_)),
        "{err}"
    );
    let err = server
        .signal_session_stream(&key, "s", "lost")
        .await
        .unwrap_err();
    assert!(
        matches!(err, webwire_server::error::StreamError::Store(_)),
        "{err}"
    );
    // Plain signals stay fire-and-forget; nothing of the failed sends came.
    assert_eq!(
        server.room_signal("h-a", "plain", "still", None).unwrap(),
        1
    );
    match client.recv().await {
        ServerMessage::Signal(signal) => assert_eq!(signal.name().as_bytes(), &b"plain"[..]),
        other => panic!("{other:?}"),
    }
    let (before, answer) = resume(&mut client, vec![]).await;
    assert!(before.is_empty(), "{before:?}");
    assert!(
        matches!(answer, ServerMessage::InternalError(_)),
        "{answer:?}"
    );
    // Back up: normal service.
    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let sent = server.signal_room_stream("h-a", "r", "ok").await.unwrap();
    assert_eq!(sent.offset, 1);
    assert_eq!(stream_signal(&client.recv().await).offset(), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_missed_signal_the_store_cannot_repair_closes_the_connection_for_a_restore() {
    let store = Arc::new(FlakyStore::default());
    let server = builder()
        .stream_store(store.clone())
        .queue_capacity(2)
        .build()
        .unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    ok(&mut client, "join", "h-a").await;
    assert!(fill_queue(&server, &key) > 0, "the queue never filled");
    // Appended, missed by the full queue; the store fails before the
    // repair reads it.
    server.signal_room_stream("h-a", "r", "1").await.unwrap();
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    // Rather than later signals taken as the client's start, a close its
    // client answers with a reconnect and a restore (which resumes).
    assert_eq!(client.closed().await, Some(1012));
    for message in client.take_pending() {
        assert!(
            matches!(message, ServerMessage::Signal(_)),
            "only the plain signals that fit: {message:?}"
        );
    }
    server.shutdown().await;
}

/// A cluster that hands its node to the test and keeps what the server
/// publishes.
#[derive(Debug, Default)]
struct Node(
    std::sync::Mutex<Option<webwire_server::cluster::ClusterNode>>,
    std::sync::Mutex<Vec<webwire_server::cluster::ClusterEvent>>,
);

impl webwire_server::cluster::Cluster for Node {
    fn attach(&self, node: webwire_server::cluster::ClusterNode) {
        *self.0.lock().unwrap() = Some(node);
    }

    fn publish(&self, event: webwire_server::cluster::ClusterEvent) {
        self.1.lock().unwrap().push(event);
    }

    async fn close_session(&self, _key: &str) -> webwire_server::cluster::ClusterReply {
        webwire_server::cluster::ClusterReply::default()
    }

    async fn join_session(
        &self,
        _key: &str,
        _max: usize,
    ) -> Result<webwire_server::cluster::SessionJoin, webwire_server::cluster::ClusterError> {
        Ok(webwire_server::cluster::SessionJoin::Counted)
    }

    async fn leave_session(&self, _key: &str) -> Result<(), webwire_server::cluster::ClusterError> {
        Ok(())
    }

    async fn clear_session(&self, _key: &str) -> Result<(), webwire_server::cluster::ClusterError> {
        Ok(())
    }

    async fn session_connections(
        &self,
        _key: &str,
    ) -> Result<Option<usize>, webwire_server::cluster::ClusterError> {
        Ok(None)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_stream_event_reaches_the_streams_connections() {
    let cluster = Arc::new(Node::default());
    let server = builder().cluster(cluster.clone()).build().unwrap();
    let mut client = streams_client(&server).await;
    let key = login(&mut client).await;
    let node = cluster.0.lock().unwrap().clone().unwrap();
    let signal = webwire_proto::Signal::new(
        webwire_proto::Name::from_static("remote"),
        Payload::utf8("from b"),
    )
    .unwrap();
    let event = webwire_server::cluster::ClusterEvent::Stream {
        stream: StreamKey::session(key.clone()),
        // The session's first signal (a later one first would be repaired
        // from this node's store, which another node's entries are not in
        // here).
        position: webwire_server::stream::StreamPosition::new(9, 1),
        frame: ServerMessage::Signal(signal).to_bytes(),
    };
    assert!(
        !format!("{event:?}").contains(&key),
        "no session key in logs"
    );
    assert_eq!(node.deliver(&event), 1);
    let message = client.recv().await;
    let got = stream_signal(&message);
    assert_eq!(
        (got.stream(), got.epoch(), got.offset()),
        (&StreamId::Session, 9, 1)
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn handlers_send_on_streams_through_their_connection() {
    let server = builder().build().unwrap();
    let mut a = streams_client(&server).await;
    let mut b = streams_client(&server).await;
    ok(&mut b, "join-conn", "h-a").await;
    // Without a session there is no session stream.
    let reply = a.request("note", Payload::utf8("x")).await;
    assert!(
        matches!(reply, ServerMessage::InternalError(_)),
        "{reply:?}"
    );
    let _key = login(&mut a).await;
    let reply = a.request("note", Payload::utf8("n1")).await;
    assert_eq!(reply_text(&reply), "1");
    let noted = a.take_pending();
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert_eq!(text(stream_signal(&noted[0])), "n1");
    // The sender need not be a member.
    let reply = a.request("say", Payload::utf8("s1")).await;
    assert_eq!(reply_text(&reply), "1");
    let message = b.recv().await;
    let said = stream_signal(&message);
    assert_eq!(
        (said.stream(), said.offset(), text(said)),
        (&room("h-a"), 1, "s1".into())
    );
    server.shutdown().await;
}

/// A 2.1 client with a session on a server whose queues hold 2, with a
/// pipe of 256 bytes, in the room `h-a` with 50 signals of 4 KB read
/// live; returns it, its session key and the room's last position.
async fn member_of_a_long_room(
    server: &Server,
) -> (TestClient, String, webwire_server::stream::StreamPosition) {
    let (mut client, key) = small_pipe_client(server).await;
    ok(&mut client, "join", "h-a").await;
    let mut last = None;
    for i in 1..=50 {
        last = Some(
            server
                .signal_room_stream("h-a", "r", format!("{i:>4000}"))
                .await
                .unwrap(),
        );
        assert_eq!(stream_signal(&client.recv().await).offset(), i);
    }
    (client, key, last.unwrap())
}

/// Blocks the connection of the session `key`, whose client reads
/// nothing: plain signals of 4 KB fill its pipe, its writer's buffer and
/// its queue, until the queue still refuses one after the connection had
/// time to take what it could. Nothing more is written before the client
/// reads.
async fn block_connection(server: &Server, key: &str) {
    let fill = || matches!(server.signal_session(key, "fill", "x".repeat(4000)), Ok(1));
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if !fill() {
            return;
        }
        while fill() {}
    }
    panic!("the connection never blocked");
}

/// Reads until nothing more arrives; returns what came.
async fn read_all(client: &mut TestClient) -> Vec<ServerMessage> {
    let mut messages = client.take_pending();
    while let Ok(message) = tokio::time::timeout(Duration::from_secs(1), client.recv()).await {
        messages.push(message);
    }
    messages
}

fn stream_signals(messages: &[ServerMessage], stream: &StreamId) -> usize {
    messages
        .iter()
        .filter(|message| {
            matches!(message, ServerMessage::StreamSignal(signal) if signal.stream() == stream)
        })
        .count()
}

fn answer_to(messages: &[ServerMessage], id: RequestId) -> &ServerMessage {
    messages
        .iter()
        .find(|message| message.request_id() == Some(id))
        .expect("the answer")
}

#[tokio::test(start_paused = true)]
async fn a_resume_writes_nothing_more_of_a_room_the_session_leaves_meanwhile() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key, last) = member_of_a_long_room(&server).await;
    block_connection(&server, &key).await;
    // A resume from the start: it waits for room in the queue with all
    // of the room's history to go.
    let id = RequestId::from(77);
    let resume = StreamResume::new(id, vec![at(room("h-a"), last.epoch, 0)]).unwrap();
    client.send(ClientMessage::StreamResume(resume)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.leave_session_room(&key, "h-a"));
    let messages = read_all(&mut client).await;
    assert!(
        !messages
            .iter()
            .any(|message| matches!(message, ServerMessage::StreamLoss(_))),
        "the resume was read while the session was in the room: {messages:?}"
    );
    assert_eq!(
        stream_signals(&messages, &room("h-a")),
        0,
        "the room's history was written after it was left"
    );
    // The resume went on with the session stream, and was answered.
    let answer = answer_to(&messages, id);
    assert!(is_empty_reply(answer), "{answer:?}");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resume_writes_nothing_more_of_the_session_stream_once_the_session_is_closed() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    let mut last = None;
    for i in 1..=50 {
        last = Some(
            server
                .signal_session_stream(&key, "s", format!("{i:>4000}"))
                .await
                .unwrap(),
        );
        assert_eq!(stream_signal(&client.recv().await).offset(), i);
    }
    block_connection(&server, &key).await;
    let id = RequestId::from(77);
    let resume =
        StreamResume::new(id, vec![at(StreamId::Session, last.unwrap().epoch, 0)]).unwrap();
    client.send(ClientMessage::StreamResume(resume)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The server closes the session (it tells the client, waiting for room
    // in the queue as the client reads).
    let closing = tokio::spawn({
        let (server, key) = (server.clone(), key.clone());
        async move { server.close_session(&key).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let messages = read_all(&mut client).await;
    closing.await.unwrap();
    assert!(
        messages
            .iter()
            .any(|message| matches!(message, ServerMessage::SessionClosed)),
        "the client is told"
    );
    assert_eq!(
        stream_signals(&messages, &StreamId::Session),
        0,
        "the closed session's stream was written after its close"
    );
    match answer_to(&messages, id) {
        ServerMessage::Error(err) => assert_eq!(err.code.as_bytes(), &b"NO_SESSION"[..]),
        other => panic!("expected NO_SESSION, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_repair_writes_nothing_of_a_room_the_session_leaves_meanwhile() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    ok(&mut client, "join", "h-a").await;
    block_connection(&server, &key).await;
    // Missed live on the full queue: the server repairs them from history
    // as soon as the queue has room, which it will not have.
    for i in 1..=20 {
        server
            .signal_room_stream("h-a", "r", format!("{i:>4000}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.leave_session_room(&key, "h-a"));
    let messages = read_all(&mut client).await;
    assert_eq!(
        stream_signals(&messages, &room("h-a")),
        0,
        "the repair wrote the room after it was left"
    );
    // The connection stays open and serves requests.
    ok(&mut client, "join", "h-b").await;
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_room_joined_again_after_a_leave_is_repaired_again() {
    let server = builder().queue_capacity(2).build().unwrap();
    let (mut client, key) = small_pipe_client(&server).await;
    ok(&mut client, "join", "h-a").await;
    block_connection(&server, &key).await;
    server.signal_room_stream("h-a", "r", "1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.leave_session_room(&key, "h-a"));
    // Joined again while the left repair still waits for room: the new
    // membership's signals are not held by it.
    assert!(server.join_session_room(&key, "h-a").await.unwrap());
    let messages = read_all(&mut client).await;
    assert_eq!(stream_signals(&messages, &room("h-a")), 0);
    block_connection(&server, &key).await;
    for i in 2..=4 {
        server
            .signal_room_stream("h-a", "r", i.to_string())
            .await
            .unwrap();
    }
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let delivered = read_as_client(&mut client, &mut positions, &room("h-a")).await;
    assert_eq!(delivered, ["2", "3", "4"]);
    server.shutdown().await;
}

/// Two nodes sharing one stream store: `a`, alone, whose sends `b` gets
/// only when the test delivers them, and `b` with a recording cluster.
fn two_nodes_on_one_store() -> (Server, Server, Arc<MemoryStreamStore>, Arc<Node>) {
    let store = Arc::new(MemoryStreamStore::new());
    let a = builder().stream_store(store.clone()).build().unwrap();
    let cluster = Arc::new(Node::default());
    let b = builder()
        .stream_store(store.clone())
        .cluster(cluster.clone())
        .build()
        .unwrap();
    (a, b, store, cluster)
}

/// The stored Signal of a stream entry, as another node publishes it.
fn entry_frame(text: &str) -> Bytes {
    let signal =
        webwire_proto::Signal::new(webwire_proto::Name::from_static("r"), Payload::utf8(text))
            .unwrap();
    ServerMessage::Signal(signal).to_bytes()
}

/// Two nodes sharing one stream store: node `b`'s own send overtakes node
/// `a`'s earlier one, whose publication reaches `b` only after it. The
/// client on `b`, which joined before both and so holds no offset of the
/// room yet, still gets both, in order, once.
#[tokio::test(start_paused = true)]
async fn a_later_signal_first_from_this_node_does_not_lose_another_nodes_earlier_one() {
    let (a, b, _, _) = two_nodes_on_one_store();
    let mut client = streams_client(&b).await;
    login(&mut client).await;
    ok(&mut client, "join", "h-a").await;
    let first = a.signal_room_stream("h-a", "r", "1").await.unwrap();
    let second = b.signal_room_stream("h-a", "r", "2").await.unwrap();
    assert_eq!((first.offset, second.offset), (1, 2));
    b.deliver_stream_entry(&StreamKey::room("h-a"), first, entry_frame("1"))
        .await;
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let delivered = read_as_client(&mut client, &mut positions, &room("h-a")).await;
    assert_eq!(delivered, ["1", "2"]);
    a.shutdown().await;
    b.shutdown().await;
}

/// As above, on the session stream of a session just created on `b`.
#[tokio::test(start_paused = true)]
async fn a_later_session_stream_signal_first_does_not_lose_another_nodes_earlier_one() {
    let (a, b, _, _) = two_nodes_on_one_store();
    let mut client = streams_client(&b).await;
    let key = login(&mut client).await;
    let first = a.signal_session_stream(&key, "s", "1").await.unwrap();
    let second = b.signal_session_stream(&key, "s", "2").await.unwrap();
    assert_eq!((first.offset, second.offset), (1, 2));
    b.deliver_stream_entry(&StreamKey::session(key.clone()), first, entry_frame("1"))
        .await;
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let delivered = read_as_client(&mut client, &mut positions, &StreamId::Session).await;
    assert_eq!(delivered, ["1", "2"]);
    a.shutdown().await;
    b.shutdown().await;
}

/// A session's joins and leaves are told to the other nodes, and theirs
/// move this node's connections of the session: a join from its position
/// on (a signal before it is not written, one after the first expected is
/// repaired from history), a leave at once.
#[tokio::test(start_paused = true)]
async fn joins_and_leaves_travel_between_nodes() {
    use webwire_server::cluster::ClusterEvent;
    let (a, b, store, cluster) = two_nodes_on_one_store();
    let node = cluster.0.lock().unwrap().clone().unwrap();
    let mut client = streams_client(&b).await;
    let key = login(&mut client).await;

    // This node's own join and leave are published.
    ok(&mut client, "join", "h-b").await;
    assert!(b.leave_session_room(&key, "h-b"));
    // The leave is published after the room's joins under way.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let published: Vec<_> = cluster
        .1
        .lock()
        .unwrap()
        .drain(..)
        .filter_map(|event| match event {
            ClusterEvent::SessionRoom {
                key: k,
                room,
                joined,
            } => Some((k == key, room, joined.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        published,
        [(true, "h-b".into(), true), (true, "h-b".into(), false)]
    );

    // A signal before another node's join, then the join.
    let limits = HistoryLimits::new(100, Duration::from_secs(3600));
    let before = a.signal_room_stream("h-a", "r", "0").await.unwrap();
    let joined = store.end(&StreamKey::room("h-a"), &limits).await.unwrap();
    assert_eq!(joined, before);
    let event = ClusterEvent::SessionRoom {
        key: key.clone(),
        room: "h-a".into(),
        joined: Some(joined),
    };
    assert!(
        !format!("{event:?}").contains(&key),
        "no session key in logs"
    );
    assert_eq!(node.deliver(&event), 1);
    assert_eq!(b.session_rooms(&key), ["h-a"]);
    // The signal before the join reaches this node late: not written.
    b.deliver_stream_entry(&StreamKey::room("h-a"), before, entry_frame("0"))
        .await;
    // Another node's first signal after the join is overtaken by this
    // node's.
    let first = a.signal_room_stream("h-a", "r", "1").await.unwrap();
    b.signal_room_stream("h-a", "r", "2").await.unwrap();
    b.deliver_stream_entry(&StreamKey::room("h-a"), first, entry_frame("1"))
        .await;
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let delivered = read_as_client(&mut client, &mut positions, &room("h-a")).await;
    assert_eq!(delivered, ["1", "2"]);

    // Another node's leave.
    let leave = ClusterEvent::SessionRoom {
        key: key.clone(),
        room: "h-a".into(),
        joined: None,
    };
    assert_eq!(node.deliver(&leave), 1);
    assert_eq!(b.room_count("h-a"), 0);
    assert!(b.session_rooms(&key).is_empty());
    // Rooms without history here, and unknown sessions, move nothing.
    for (key, room) in [(key.as_str(), "plain"), ("nobody", "h-a")] {
        let event = ClusterEvent::SessionRoom {
            key: key.into(),
            room: room.into(),
            joined: Some(joined),
        };
        assert_eq!(node.deliver(&event), 0);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Signals sent after another node's join can reach this node before the
/// join does (they come on another channel): the connections that join
/// get them from history at once, not only when a later signal shows the
/// hole.
#[tokio::test(start_paused = true)]
async fn signals_that_came_before_another_nodes_join_are_queued_at_the_join() {
    use webwire_server::cluster::ClusterEvent;
    let (a, b, store, cluster) = two_nodes_on_one_store();
    let node = cluster.0.lock().unwrap().clone().unwrap();
    let mut client = streams_client(&b).await;
    let key = login(&mut client).await;
    let limits = HistoryLimits::new(100, Duration::from_secs(3600));
    let joined = store.end(&StreamKey::room("h-a"), &limits).await.unwrap();
    // Sent on A after the join; B's connection is not in the room yet.
    a.signal_room_stream("h-a", "r", "1").await.unwrap();
    a.signal_room_stream("h-a", "r", "2").await.unwrap();
    let event = ClusterEvent::SessionRoom {
        key: key.clone(),
        room: "h-a".into(),
        joined: Some(joined),
    };
    assert_eq!(node.deliver(&event), 1);
    let mut positions = webwire_proto::connection::client::StreamPositions::new();
    let delivered = read_as_client(&mut client, &mut positions, &room("h-a")).await;
    assert_eq!(
        delivered,
        ["1", "2"],
        "queued at the join, with no later signal"
    );
    a.shutdown().await;
    b.shutdown().await;
}
