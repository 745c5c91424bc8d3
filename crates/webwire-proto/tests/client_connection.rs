//! The client connection state machine driven directly: no sockets, no
//! tasks, time passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use webwire_proto::connection::client::{
    ClientConnection, ConnectionConfig, End, Event, Ignored, Outcome, Refusal, RequestIds,
    RestoreOutcome, Transmit,
};
use webwire_proto::{
    AcceptConf, ClientMessage, ErrorCode, ErrorReply, ExtensionAccept, ExtensionHello,
    ExtensionRule, FeatureFlags, InstanceId, KeyedRequest, LossReason, MessageType, Name,
    ParseError, Payload, Reply, Request, RequestId, RequestKey, ServerMessage, Session, Signal,
    StreamId, StreamLoss, StreamPosition, StreamResume, StreamSignal,
};

const HEARTBEAT: Duration = Duration::from_secs(45);

fn machine(now: Instant) -> (ClientConnection<u64>, RequestIds) {
    let ids = RequestIds::new();
    let config = ConnectionConfig::new(1024, Some(HEARTBEAT));
    (ClientConnection::new(config, ids.clone(), now), ids)
}

fn request_frame(id: u64, payload: &str) -> Bytes {
    let request = Request::new(
        RequestId::from(id),
        Name::from_static("r"),
        Payload::utf8(payload.to_owned()),
    )
    .unwrap();
    ClientMessage::Request(request).to_bytes()
}

fn signal_frame() -> Bytes {
    let signal = Signal::new(Name::from_static("s"), Payload::utf8("x")).unwrap();
    ClientMessage::Signal(signal).to_bytes()
}

fn reply(id: u64, text: &str) -> Bytes {
    ServerMessage::Reply(Reply::new(
        RequestId::from(id),
        Payload::utf8(text.to_owned()),
    ))
    .to_bytes()
}

/// Sends request `id` with its id as token.
fn send(conn: &mut ClientConnection<u64>, id: u64, deadline: Option<Instant>) {
    conn.send_request(id, request_frame(id, "p"), deadline, id)
        .map_err(|refused| refused.reason)
        .unwrap();
}

fn transmits(conn: &mut ClientConnection<u64>, now: Instant) -> Vec<Transmit<u64>> {
    std::iter::from_fn(|| conn.poll_transmit(now)).collect()
}

fn events(conn: &mut ClientConnection<u64>) -> Vec<Event<u64>> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// The outcomes among `events`, by id.
fn outcomes(events: &[Event<u64>]) -> Vec<(u64, Outcome)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Answer { id, token, outcome } => {
                assert_eq!(id, token);
                Some((*id, outcome.clone()))
            }
            _ => None,
        })
        .collect()
}

fn session_json(key: &str) -> String {
    Session::new(key, SystemTime::UNIX_EPOCH, None)
        .to_json()
        .unwrap()
}

// ---- 2.1: the opt-in --------------------------------------------------------

/// A machine whose server announced 2.1.
fn machine_2_1(now: Instant) -> (ClientConnection<u64>, RequestIds) {
    let ids = RequestIds::new();
    let conf = AcceptConf::new(Duration::from_secs(60), 1024, "").with_minor(1);
    let config = ConnectionConfig::from_accept_conf(&conf);
    assert!(config.extensions_offered);
    (ClientConnection::new(config, ids.clone(), now), ids)
}

fn hello(flags: FeatureFlags) -> ExtensionHello {
    ExtensionHello::new(flags, InstanceId::new("0123456789abcdef").unwrap()).unwrap()
}

fn accept(flags: FeatureFlags) -> Bytes {
    ServerMessage::ExtensionAccept(ExtensionAccept {
        flags,
        ledger_epoch: 7,
    })
    .to_bytes()
}

fn keyed_frame(id: u64, seq: u64) -> Bytes {
    let request = Request::new(
        RequestId::from(id),
        Name::from_static("k"),
        Payload::utf8("p"),
    )
    .unwrap();
    let keyed = KeyedRequest::new(request, RequestKey { seq, epoch: 7 }, seq - 1).unwrap();
    ClientMessage::KeyedRequest(keyed).to_bytes()
}

fn resume_frame(id: u64) -> Bytes {
    let position = StreamPosition {
        stream: StreamId::Session,
        epoch: 1,
        offset: 3,
    };
    ClientMessage::StreamResume(StreamResume::new(RequestId::from(id), vec![position]).unwrap())
        .to_bytes()
}

fn stream_signal() -> StreamSignal {
    let signal = Signal::new(Name::from_static("s"), Payload::utf8("x")).unwrap();
    StreamSignal::new(StreamId::Session, 1, 4, signal).unwrap()
}

fn stream_loss() -> StreamLoss {
    StreamLoss {
        stream: StreamId::Session,
        epoch: 2,
        lost_from: 0,
        lost_to: 9,
        next: 10,
        reason: LossReason::EpochChanged,
    }
}

/// The close code and rule of the violation among `events`.
fn violation(events: &[Event<u64>]) -> Option<(u16, MessageType, ExtensionRule)> {
    events.iter().find_map(|event| match event {
        Event::Ended(End::Violation {
            code,
            error: Some(ParseError::NotAllowed { kind, rule }),
        }) => Some((*code, *kind, *rule)),
        _ => None,
    })
}

#[test]
fn the_hello_goes_first_and_holds_everything_until_the_accept() {
    let now = Instant::now();
    let (mut conn, ids) = machine_2_1(now);
    conn.send_extension_hello(&hello(FeatureFlags::KNOWN))
        .unwrap();
    assert!(conn.is_opting_in());
    assert_eq!(
        conn.send_extension_hello(&hello(FeatureFlags::KNOWN)),
        Err(Refusal::HelloNotFirst)
    );
    let id = ids.next();
    let refused = conn
        .send_request(id, request_frame(id, "p"), None, id)
        .unwrap_err();
    assert_eq!(refused.reason, Refusal::OptingIn);
    assert_eq!(
        conn.send_signal(signal_frame(), 0).unwrap_err().reason,
        Refusal::OptingIn
    );
    let sent = transmits(&mut conn, now);
    let [Transmit::Message { frame, .. }] = &sent[..] else {
        panic!("only the hello: {sent:?}");
    };
    assert_eq!(frame[0], 34);
    // No heartbeat while the server has not answered.
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(now + Duration::from_secs(600));
    assert!(transmits(&mut conn, now).is_empty());

    conn.handle_frame(accept(FeatureFlags::KNOWN));
    assert!(matches!(
        &events(&mut conn)[..],
        [Event::ExtensionAccepted(ExtensionAccept { flags, ledger_epoch: 7 })] if *flags == FeatureFlags::KNOWN
    ));
    assert!(!conn.is_opting_in());
    assert_eq!(conn.granted(), Some(FeatureFlags::KNOWN));
    assert!(conn.poll_timeout().is_some(), "heartbeats again");

    // Now keyed requests and resumes go out; OutcomeUnknown answers.
    let (keyed, resume) = (ids.next(), ids.next());
    conn.send_request(keyed, keyed_frame(keyed, 1), None, keyed)
        .unwrap();
    conn.send_request(resume, resume_frame(resume), None, resume)
        .unwrap();
    assert_eq!(transmits(&mut conn, now).len(), 2);
    conn.handle_frame(ServerMessage::OutcomeUnknown(RequestId::from(keyed)).to_bytes());
    conn.handle_frame(ServerMessage::StreamSignal(stream_signal()).to_bytes());
    conn.handle_frame(ServerMessage::StreamLoss(stream_loss()).to_bytes());
    conn.handle_frame(reply(resume, ""));
    let events = events(&mut conn);
    assert_eq!(
        outcomes(&events),
        [
            (
                keyed,
                Outcome::Answered(ServerMessage::OutcomeUnknown(RequestId::from(keyed)))
            ),
            (
                resume,
                Outcome::Answered(ServerMessage::Reply(Reply::new(
                    RequestId::from(resume),
                    Payload::utf8("")
                )))
            ),
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StreamSignal(s) if *s == stream_signal())));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StreamLoss(l) if *l == stream_loss())));
}

#[test]
fn the_hello_is_refused_to_a_2_0_server_after_another_message_and_when_too_large() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    assert_eq!(
        conn.send_extension_hello(&hello(FeatureFlags::KNOWN)),
        Err(Refusal::ExtensionsNotOffered)
    );
    let (mut conn, _) = machine_2_1(now);
    send(&mut conn, 1, None);
    assert_eq!(
        conn.send_extension_hello(&hello(FeatureFlags::KNOWN)),
        Err(Refusal::HelloNotFirst)
    );
    let (mut conn, _) = machine_2_1(now);
    conn.handle_timeout(now + HEARTBEAT * 2);
    assert_eq!(transmits(&mut conn, now).len(), 1, "a heartbeat");
    assert_eq!(
        conn.send_extension_hello(&hello(FeatureFlags::KNOWN)),
        Err(Refusal::HelloNotFirst)
    );
    let conf = AcceptConf::new(Duration::from_secs(60), 10, "").with_minor(1);
    let mut conn = ClientConnection::<u64>::new(
        ConnectionConfig::from_accept_conf(&conf),
        RequestIds::new(),
        now,
    );
    assert_eq!(
        conn.send_extension_hello(&hello(FeatureFlags::KNOWN)),
        Err(Refusal::TooLarge { size: 22, max: 10 })
    );
}

#[test]
fn extension_messages_of_features_not_granted_are_not_sent() {
    let now = Instant::now();
    // A 2.0 connection.
    let (mut conn, _) = machine_2_1(now);
    for (frame, kind) in [
        (keyed_frame(1, 1), MessageType::KeyedRequestUtf8),
        (resume_frame(1), MessageType::StreamResume),
    ] {
        let refused = conn.send_request(1, frame, None, 1).unwrap_err();
        assert_eq!(refused.reason, Refusal::NotGranted(kind));
    }
    // Only streams granted.
    conn.send_extension_hello(&hello(FeatureFlags::KNOWN))
        .unwrap();
    conn.handle_frame(accept(FeatureFlags::STREAMS));
    let refused = conn
        .send_request(3, keyed_frame(3, 1), None, 3)
        .unwrap_err();
    assert_eq!(
        refused.reason,
        Refusal::NotGranted(MessageType::KeyedRequestUtf8)
    );
    conn.send_request(4, resume_frame(4), None, 4).unwrap();
    // The hello has its own method.
    let frame = ClientMessage::ExtensionHello(hello(FeatureFlags::STREAMS)).to_bytes();
    assert_eq!(
        conn.send_signal(frame, 0).unwrap_err().reason,
        Refusal::NotGranted(MessageType::ExtensionHello)
    );
}

#[test]
fn extension_messages_without_the_opt_in_or_the_feature_are_violations() {
    let now = Instant::now();
    let outcome_unknown = ServerMessage::OutcomeUnknown(RequestId::from(1)).to_bytes();
    let stream = ServerMessage::StreamSignal(stream_signal()).to_bytes();
    let loss = ServerMessage::StreamLoss(stream_loss()).to_bytes();
    type Setup = fn(&mut ClientConnection<u64>);
    let plain: Setup = |_| {};
    let asked: Setup = |conn| {
        conn.send_extension_hello(&hello(FeatureFlags::STREAMS))
            .unwrap()
    };
    let streams: Setup = |conn| {
        conn.send_extension_hello(&hello(FeatureFlags::STREAMS))
            .unwrap();
        conn.handle_frame(accept(FeatureFlags::STREAMS));
    };
    let keyed: Setup = |conn| {
        conn.send_extension_hello(&hello(FeatureFlags::KEYED_REQUESTS))
            .unwrap();
        conn.handle_frame(accept(FeatureFlags::KEYED_REQUESTS));
    };
    let cases: Vec<(&str, Setup, Bytes, MessageType, ExtensionRule)> = vec![
        (
            "2.0: stream signal",
            plain,
            stream.clone(),
            MessageType::StreamSignalUtf8,
            ExtensionRule::NotOptedIn,
        ),
        (
            "2.0: stream loss",
            plain,
            loss.clone(),
            MessageType::StreamLoss,
            ExtensionRule::NotOptedIn,
        ),
        (
            "2.0: outcome unknown",
            plain,
            outcome_unknown.clone(),
            MessageType::ReplyOutcomeUnknown,
            ExtensionRule::NotOptedIn,
        ),
        (
            "2.0: accept",
            plain,
            accept(FeatureFlags::NONE),
            MessageType::ExtensionAccept,
            ExtensionRule::NotOptedIn,
        ),
        (
            "before the accept: stream signal",
            asked,
            stream.clone(),
            MessageType::StreamSignalUtf8,
            ExtensionRule::NotOptedIn,
        ),
        (
            "accept granting more than asked",
            asked,
            accept(FeatureFlags::KNOWN),
            MessageType::ExtensionAccept,
            ExtensionRule::NotAsked(FeatureFlags::KEYED_REQUESTS),
        ),
        (
            "a second accept",
            streams,
            accept(FeatureFlags::STREAMS),
            MessageType::ExtensionAccept,
            ExtensionRule::Repeated,
        ),
        (
            "outcome unknown, keyed not granted",
            streams,
            outcome_unknown,
            MessageType::ReplyOutcomeUnknown,
            ExtensionRule::NotGranted(FeatureFlags::KEYED_REQUESTS),
        ),
        (
            "stream signal, streams not granted",
            keyed,
            stream,
            MessageType::StreamSignalUtf8,
            ExtensionRule::NotGranted(FeatureFlags::STREAMS),
        ),
        (
            "stream loss, streams not granted",
            keyed,
            loss,
            MessageType::StreamLoss,
            ExtensionRule::NotGranted(FeatureFlags::STREAMS),
        ),
    ];
    for (description, setup, frame, kind, rule) in cases {
        let (mut conn, _) = machine_2_1(now);
        setup(&mut conn);
        transmits(&mut conn, now);
        events(&mut conn);
        conn.handle_frame(frame);
        assert_eq!(
            transmits(&mut conn, now),
            [Transmit::Close(1002)],
            "{description}"
        );
        assert_eq!(
            violation(&events(&mut conn)),
            Some((1002, kind, rule)),
            "{description}"
        );
        assert!(conn.is_ended());
    }
}

#[test]
fn replies_are_matched_by_id_and_unknown_ones_ignored() {
    let now = Instant::now();
    let (mut conn, ids) = machine(now);
    let (a, b) = (ids.next(), ids.next());
    send(&mut conn, a, None);
    send(&mut conn, b, None);
    assert_eq!(conn.in_flight(), 2);
    let sent = transmits(&mut conn, now);
    assert_eq!(sent.len(), 2);
    conn.handle_frame(reply(b, "to b"));
    conn.handle_frame(reply(b, "again"));
    conn.handle_frame(reply(99, "nobody"));
    conn.handle_frame(ServerMessage::InternalError(RequestId::from(a)).to_bytes());
    let events = events(&mut conn);
    assert_eq!(
        outcomes(&events),
        [
            (
                b,
                Outcome::Answered(ServerMessage::Reply(Reply::new(
                    RequestId::from(b),
                    Payload::utf8("to b")
                )))
            ),
            (
                a,
                Outcome::Answered(ServerMessage::InternalError(RequestId::from(a)))
            ),
        ]
    );
    let ignored: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            Event::Ignored(Ignored::UnknownReply(id)) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ignored, [b, 99]);
    assert_eq!(conn.ignored_replies(), 2);
    assert_eq!(conn.in_flight(), 0);
    // An id in flight cannot be taken twice.
    send(&mut conn, 5, None);
    let refused = conn
        .send_request(5, request_frame(5, "p"), None, 55)
        .unwrap_err();
    assert_eq!(
        (refused.reason, refused.token),
        (Refusal::DuplicateId(5), 55)
    );
}

#[test]
fn deadlines_time_requests_out_and_cancels_hand_the_token_back() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    let second = Duration::from_secs(1);
    send(&mut conn, 1, Some(now + 3 * second));
    send(&mut conn, 2, Some(now + second));
    send(&mut conn, 3, None);
    transmits(&mut conn, now);
    assert_eq!(conn.poll_timeout(), Some(now + second));
    conn.handle_timeout(now + second);
    assert_eq!(outcomes(&events(&mut conn)), [(2, Outcome::TimedOut)]);
    assert_eq!(conn.poll_timeout(), Some(now + 3 * second));
    assert_eq!(conn.cancel(1), Some(1));
    assert_eq!(conn.cancel(1), None);
    // The cancelled request's deadline is not asked for any more.
    assert_eq!(conn.poll_timeout(), Some(now + HEARTBEAT));
    conn.handle_frame(reply(1, "late"));
    conn.handle_frame(reply(2, "late"));
    let late = events(&mut conn);
    assert!(outcomes(&late).is_empty(), "{late:?}");
    assert_eq!(conn.ignored_replies(), 2);
    assert_eq!(conn.in_flight(), 1);
}

#[test]
fn heartbeats_follow_silence_and_any_frame_restarts_the_interval() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    assert_eq!(conn.poll_timeout(), Some(now + HEARTBEAT));
    conn.handle_timeout(now + HEARTBEAT - Duration::from_millis(1));
    assert!(transmits(&mut conn, now).is_empty(), "not yet");
    let beat = now + HEARTBEAT;
    conn.handle_timeout(beat);
    assert_eq!(
        transmits(&mut conn, beat),
        [Transmit::Message {
            frame: Bytes::from_static(&[33]),
            signal: None
        }]
    );
    assert_eq!(conn.poll_timeout(), Some(beat + HEARTBEAT));
    let later = beat + Duration::from_secs(10);
    conn.send_signal(signal_frame(), 7).unwrap();
    assert_eq!(
        transmits(&mut conn, later),
        [Transmit::Message {
            frame: signal_frame(),
            signal: Some(7)
        }]
    );
    assert_eq!(conn.poll_timeout(), Some(later + HEARTBEAT));
    // Without a heartbeat nothing is timed.
    let config = ConnectionConfig::from_accept_conf(&AcceptConf::new(Duration::ZERO, 64, ""));
    let mut quiet = ClientConnection::<u64>::new(config, RequestIds::new(), now);
    assert_eq!(quiet.poll_timeout(), None);
}

#[test]
fn oversized_messages_are_refused() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    let big = request_frame(1, &"x".repeat(1024));
    let refused = conn.send_request(1, big.clone(), None, 1).unwrap_err();
    assert_eq!(
        refused.reason,
        Refusal::TooLarge {
            size: big.len(),
            max: 1024
        }
    );
    assert_eq!(refused.frame, big);
    let refused = conn.send_signal(Bytes::from(vec![0; 1025]), 2).unwrap_err();
    assert_eq!(refused.token, 2);
    assert!(transmits(&mut conn, now).is_empty());
    assert_eq!(conn.in_flight(), 0);
}

#[test]
fn the_restore_goes_first_and_holds_everything_else() {
    let now = Instant::now();
    let (mut conn, ids) = machine(now);
    let deadline = now + Duration::from_secs(10);
    conn.restore_session(Bytes::from_static(b"key-1"), deadline);
    assert!(conn.is_restoring());
    // The restore is the machine's own request: not counted as a caller's.
    assert_eq!(conn.in_flight(), 0);
    let [Transmit::Message {
        frame,
        signal: None,
    }] = &transmits(&mut conn, now)[..]
    else {
        panic!("expected the restore request")
    };
    let ClientMessage::RestoreSession { id, key } = ClientMessage::parse(frame.clone()).unwrap()
    else {
        panic!("expected the restore request")
    };
    assert_eq!(key, "key-1");
    assert_eq!(conn.poll_timeout(), Some(deadline));
    let next = ids.next();
    let refused = conn
        .send_request(next, request_frame(next, "p"), None, next)
        .unwrap_err();
    assert_eq!(refused.reason, Refusal::Restoring);
    assert_eq!(
        conn.send_signal(signal_frame(), 1).unwrap_err().reason,
        Refusal::Restoring
    );
    // The restore cannot be cancelled.
    assert_eq!(conn.cancel(id.to_u64()), None);
    conn.handle_frame(reply(id.to_u64(), &session_json("key-1")));
    let events = events(&mut conn);
    let [Event::Restore(RestoreOutcome::Restored(session))] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(session.key, "key-1");
    assert!(!conn.is_restoring());
    send(&mut conn, next, None);
    assert_eq!(transmits(&mut conn, now).len(), 1);
}

/// A StreamResume may follow the restore before its answer (the server
/// handles it after the restore); a keyed request may not.
#[test]
fn a_stream_resume_may_follow_the_restore_at_once() {
    let now = Instant::now();
    let (mut conn, ids) = machine_2_1(now);
    conn.send_extension_hello(&hello(FeatureFlags::KNOWN))
        .unwrap();
    conn.handle_frame(accept(FeatureFlags::KNOWN));
    events(&mut conn);
    conn.restore_session(Bytes::from_static(b"key-1"), now + Duration::from_secs(10));
    let id = ids.next();
    conn.send_request(id, resume_frame(id), None, id)
        .map_err(|refused| refused.reason)
        .unwrap();
    let next = ids.next();
    let refused = conn
        .send_request(next, keyed_frame(next, 1), None, next)
        .unwrap_err();
    assert_eq!(refused.reason, Refusal::Restoring);
    let kinds: Vec<u8> = transmits(&mut conn, now)
        .into_iter()
        .map(|transmit| match transmit {
            Transmit::Message { frame, .. } => frame[0],
            Transmit::Close(_) => panic!("closed"),
        })
        .collect();
    assert_eq!(kinds, [34, 32, 35]);
    // Too large is still too large.
    let big = StreamResume::new(
        RequestId::from(99),
        (0..100)
            .map(|i| StreamPosition {
                stream: StreamId::Room(webwire_proto::RoomName::new(format!("room-{i}")).unwrap()),
                epoch: 1,
                offset: 1,
            })
            .collect(),
    )
    .unwrap();
    let refused = conn
        .send_request(99, ClientMessage::StreamResume(big).to_bytes(), None, 99)
        .unwrap_err();
    assert!(matches!(refused.reason, Refusal::TooLarge { .. }));
}

/// Answers the restore with `answer` (made from its id) and returns the
/// events.
fn restore_answered(answer: impl FnOnce(RequestId) -> ServerMessage) -> Vec<Event<u64>> {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    conn.restore_session(Bytes::from_static(b"k"), now + Duration::from_secs(1));
    let Some(Transmit::Message { frame, .. }) = conn.poll_transmit(now) else {
        panic!("expected the restore request")
    };
    let ClientMessage::RestoreSession { id, .. } = ClientMessage::parse(frame).unwrap() else {
        panic!("expected the restore request")
    };
    conn.handle_frame(answer(id).to_bytes());
    assert!(!conn.is_restoring());
    events(&mut conn)
}

#[test]
fn a_restore_answered_not_found_gives_that_event_and_no_session() {
    let events = restore_answered(ServerMessage::SessionNotFound);
    assert!(
        matches!(&events[..], [Event::Restore(RestoreOutcome::NotFound)]),
        "{events:?}"
    );
    let events = restore_answered(ServerMessage::Shutdown);
    assert!(matches!(
        &events[..],
        [Event::Restore(RestoreOutcome::Shutdown)]
    ));
    let events = restore_answered(|id| {
        ServerMessage::Error(ErrorReply::new(id, ErrorCode::from_static("E"), "no"))
    });
    assert!(matches!(
        &events[..],
        [Event::Restore(RestoreOutcome::Refused(
            ServerMessage::Error(_)
        ))]
    ));
    let events =
        restore_answered(|id| ServerMessage::Reply(Reply::new(id, Payload::utf8("not json"))));
    assert!(matches!(
        &events[..],
        [Event::Restore(RestoreOutcome::InvalidSession(_))]
    ));
}

#[test]
fn a_restore_times_out_is_lost_with_the_connection_or_is_too_large() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    let deadline = now + Duration::from_secs(1);
    conn.restore_session(Bytes::from_static(b"k"), deadline);
    transmits(&mut conn, now);
    conn.handle_timeout(deadline);
    assert!(matches!(
        &events(&mut conn)[..],
        [Event::Restore(RestoreOutcome::TimedOut)]
    ));
    assert!(!conn.is_restoring());

    let (mut conn, _) = machine(now);
    conn.restore_session(Bytes::from_static(b"k"), deadline);
    conn.peer_closed();
    assert!(matches!(
        &events(&mut conn)[..],
        [
            Event::Restore(RestoreOutcome::Lost),
            Event::Ended(End::Lost)
        ]
    ));

    let (mut conn, _) = machine(now);
    conn.restore_session(Bytes::from(vec![b'k'; 1100]), deadline);
    assert!(!conn.is_restoring());
    assert!(transmits(&mut conn, now).is_empty());
    assert!(matches!(
        &events(&mut conn)[..],
        [Event::Restore(RestoreOutcome::TooLarge { max: 1024, .. })]
    ));
}

#[test]
fn what_is_sent_never_shows_a_session_key_in_debug() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    conn.restore_session(Bytes::from_static(b"secret-key"), now + HEARTBEAT);
    let transmit = conn.poll_transmit(now).unwrap();
    let shown = format!("{transmit:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("RequestRestoreSession"), "{shown}");
    let (mut conn, _) = machine(now);
    conn.close(now, Duration::ZERO);
    let frame = ClientMessage::RestoreSession {
        id: RequestId::from(3),
        key: Bytes::from_static(b"secret-key"),
    }
    .to_bytes();
    let refused = conn.send_request(3, frame, None, 3).unwrap_err();
    let shown = format!("{refused:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn session_notifications_and_signals_become_events() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    conn.handle_frame(ServerMessage::SessionCreated(Bytes::from(session_json("s1"))).to_bytes());
    conn.handle_frame(ServerMessage::SessionCreated(Bytes::from_static(b"{}")).to_bytes());
    conn.handle_frame(ServerMessage::SessionClosed.to_bytes());
    let signal = Signal::new(Name::from_static("n"), Payload::binary(vec![1])).unwrap();
    conn.handle_frame(ServerMessage::Signal(signal.clone()).to_bytes());
    conn.handle_frame(
        ServerMessage::AcceptConf(AcceptConf::new(Duration::from_secs(1), 64, "")).to_bytes(),
    );
    let events = events(&mut conn);
    assert!(
        matches!(
            &events[..],
            [
                Event::SessionCreated(session),
                Event::Ignored(Ignored::InvalidSession(_)),
                Event::SessionClosed,
                Event::Signal(got),
                Event::Ignored(Ignored::AcceptConf),
            ] if session.key == "s1" && *got == signal
        ),
        "{events:?}"
    );
    assert!(transmits(&mut conn, now).is_empty());
}

#[test]
fn close_waits_for_requests_in_flight_then_completes_the_handshake() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    send(&mut conn, 1, None);
    transmits(&mut conn, now);
    conn.close(now, Duration::from_secs(3));
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(3)));
    assert!(transmits(&mut conn, now).is_empty(), "waits for request 1");
    assert_eq!(
        conn.send_request(2, request_frame(2, "p"), None, 2)
            .unwrap_err()
            .reason,
        Refusal::Closed
    );
    conn.handle_frame(reply(1, "answered"));
    assert!(matches!(
        &outcomes(&events(&mut conn))[..],
        [(1, Outcome::Answered(_))]
    ));
    let at = now + Duration::from_millis(5);
    assert_eq!(transmits(&mut conn, at), [Transmit::Close(1000)]);
    // Waiting for the server's close frame, no heartbeat.
    assert_eq!(conn.poll_timeout(), Some(at + Duration::from_secs(1)));
    conn.handle_timeout(at + HEARTBEAT);
    conn.peer_closed();
    assert!(matches!(
        &events(&mut conn)[..],
        [Event::Ended(End::Closed)]
    ));
    assert!(transmits(&mut conn, at).is_empty());
    assert!(conn.is_ended());
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn close_gives_up_after_its_grace_and_after_the_handshake_timeout() {
    let now = Instant::now();
    let (mut conn, _) = machine(now);
    send(&mut conn, 1, None);
    transmits(&mut conn, now);
    conn.close(now, Duration::from_secs(3));
    let grace_end = now + Duration::from_secs(3);
    conn.handle_timeout(grace_end);
    assert_eq!(outcomes(&events(&mut conn)), [(1, Outcome::Closed)]);
    assert_eq!(transmits(&mut conn, grace_end), [Transmit::Close(1000)]);
    conn.handle_frame(reply(1, "too late"));
    let handshake_end = grace_end + Duration::from_secs(1);
    assert_eq!(conn.poll_timeout(), Some(handshake_end));
    conn.handle_timeout(handshake_end);
    assert!(matches!(
        &events(&mut conn)[..],
        [
            Event::Ignored(Ignored::UnknownReply(1)),
            Event::Ended(End::Closed)
        ]
    ));
}

#[test]
fn protocol_violations_close_at_once_and_lose_the_requests() {
    let now = Instant::now();
    for (input, code) in [(Some(Bytes::from_static(&[7])), 1002), (None, 1003)] {
        let (mut conn, _) = machine(now);
        send(&mut conn, 1, None);
        transmits(&mut conn, now);
        match input {
            Some(frame) => conn.handle_frame(frame),
            None => conn.handle_text(),
        }
        assert_eq!(transmits(&mut conn, now), [Transmit::Close(code)]);
        let events = events(&mut conn);
        assert_eq!(outcomes(&events), [(1, Outcome::Lost)]);
        assert!(
            matches!(events.last(), Some(Event::Ended(End::Violation { code: got, .. })) if *got == code)
        );
        conn.handle_frame(reply(1, "x"));
        conn.peer_closed();
        assert!(conn.poll_event().is_none());
        assert!(transmits(&mut conn, now).is_empty());
    }
}

/// What a test does to the machine.
#[derive(Debug, Clone)]
enum Op {
    /// A request, with a deadline this many ms from now if any.
    Send(Option<u16>),
    Signal,
    /// The reply to the n-th request sent (modulo), or to an unknown id.
    Reply(usize),
    UnknownReply,
    Cancel(usize),
    Advance(u16),
    Close(u16),
    PeerClosed,
    Garbage,
    SessionClosed,
    /// 2.1: the server sends an extension message: a stream signal, a
    /// StreamLoss, OutcomeUnknown for the n-th request sent, or a second
    /// ExtensionAccept.
    Extension(u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::option::of(0..2000u16).prop_map(Op::Send),
        2 => Just(Op::Signal),
        6 => any::<usize>().prop_map(Op::Reply),
        1 => Just(Op::UnknownReply),
        2 => any::<usize>().prop_map(Op::Cancel),
        4 => (0..3000u16).prop_map(Op::Advance),
        1 => (0..2000u16).prop_map(Op::Close),
        1 => Just(Op::PeerClosed),
        1 => Just(Op::Garbage),
        1 => Just(Op::SessionClosed),
        2 => (0u8..4, any::<usize>()).prop_map(|(kind, n)| Op::Extension(kind, n)),
    ]
}

/// What the test saw of the machine.
#[derive(Default)]
struct Seen {
    deadlines: HashMap<u64, Instant>,
    outcomes: HashMap<u64, usize>,
    close_sent: bool,
    ended: bool,
    restore_pending: bool,
    restore_id: Option<u64>,
    end: Option<End>,
}

impl Seen {
    /// Takes everything the machine has to say at `now`, checking it.
    fn drain(
        &mut self,
        conn: &mut ClientConnection<u64>,
        now: Instant,
    ) -> Result<(), TestCaseError> {
        while let Some(transmit) = conn.poll_transmit(now) {
            prop_assert!(!self.close_sent, "{:?} after the close frame", transmit);
            match transmit {
                Transmit::Close(_) => self.close_sent = true,
                Transmit::Message { frame, .. } => {
                    if let Ok(ClientMessage::RestoreSession { id, .. }) =
                        ClientMessage::parse(frame)
                    {
                        self.restore_id = Some(id.to_u64());
                    }
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            prop_assert!(!self.ended, "{:?} after the end", event);
            match event {
                Event::Answer { id, token, outcome } => {
                    prop_assert_eq!(id, token);
                    *self.outcomes.entry(id).or_default() += 1;
                    if outcome == Outcome::TimedOut {
                        prop_assert!(self.deadlines.get(&id).is_some_and(|d| *d <= now));
                    }
                }
                Event::Restore(_) => {
                    prop_assert!(self.restore_pending, "a second restore outcome");
                    self.restore_pending = false;
                }
                Event::Ended(end) => {
                    self.ended = true;
                    self.end = Some(end);
                }
                _ => {}
            }
        }
        if conn.is_ended() {
            prop_assert_eq!(conn.poll_timeout(), None, "a deadline after the end");
        }
        Ok(())
    }
}

proptest! {
    /// Every request the machine takes gets exactly one outcome, in any
    /// interleaving of replies (also duplicate and unknown ones), timeouts,
    /// cancels and closes; nothing is written after the close frame; no
    /// event follows the end; a deadline, once handled, is not asked again.
    #[test]
    fn every_request_gets_exactly_one_outcome(
        ops in proptest::collection::vec(op(), 0..60),
        restore in any::<bool>(),
        opt_in in any::<bool>(),
    ) {
        let mut now = Instant::now();
        let (mut conn, ids) = if opt_in { machine_2_1(now) } else { machine(now) };
        let mut sent: Vec<u64> = Vec::new();
        let mut seen = Seen::default();
        if opt_in {
            conn.send_extension_hello(&hello(FeatureFlags::KNOWN)).unwrap();
            conn.handle_frame(accept(FeatureFlags::KNOWN));
            seen.drain(&mut conn, now)?;
        }
        if restore {
            conn.restore_session(Bytes::from_static(b"key"), now + Duration::from_millis(1500));
            seen.restore_pending = true;
        }
        for op in ops {
            match op {
                Op::Send(deadline) => {
                    let id = ids.next();
                    let deadline = deadline.map(|ms| now + Duration::from_millis(ms.into()));
                    match conn.send_request(id, request_frame(id, "p"), deadline, id) {
                        Ok(()) => {
                            sent.push(id);
                            if let Some(deadline) = deadline {
                                seen.deadlines.insert(id, deadline);
                            }
                        }
                        Err(refused) => {
                            prop_assert_eq!(refused.token, id);
                            prop_assert!(matches!(refused.reason, Refusal::Restoring | Refusal::Closed));
                        }
                    }
                }
                Op::Signal => {
                    let _ = conn.send_signal(signal_frame(), 0);
                }
                Op::Reply(n) if !sent.is_empty() => {
                    conn.handle_frame(reply(sent[n % sent.len()], "r"));
                }
                Op::Reply(_) => {
                    if let Some(id) = seen.restore_id {
                        conn.handle_frame(ServerMessage::SessionNotFound(RequestId::from(id)).to_bytes());
                    }
                }
                Op::UnknownReply => conn.handle_frame(reply(u64::MAX, "?")),
                Op::Cancel(n) if !sent.is_empty() => {
                    let id = sent[n % sent.len()];
                    if let Some(token) = conn.cancel(id) {
                        prop_assert_eq!(token, id);
                        *seen.outcomes.entry(id).or_default() += 1;
                    }
                }
                Op::Cancel(_) => {}
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms.into());
                    // The owner wakes at each deadline it was given, in order.
                    while let Some(deadline) = conn.poll_timeout().filter(|d| *d <= now) {
                        conn.handle_timeout(deadline);
                        seen.drain(&mut conn, deadline)?;
                        if let Some(next) = conn.poll_timeout() {
                            prop_assert!(next > deadline, "asked for {:?} again at {:?}", next, deadline);
                        }
                    }
                    conn.handle_timeout(now);
                }
                Op::Close(ms) => conn.close(now, Duration::from_millis(ms.into())),
                Op::PeerClosed => conn.peer_closed(),
                Op::Garbage => conn.handle_frame(Bytes::from_static(&[7])),
                Op::SessionClosed => conn.handle_frame(ServerMessage::SessionClosed.to_bytes()),
                Op::Extension(kind, n) => {
                    let message = match kind {
                        0 => ServerMessage::StreamSignal(stream_signal()),
                        1 => ServerMessage::StreamLoss(stream_loss()),
                        2 => ServerMessage::OutcomeUnknown(RequestId::from(
                            if sent.is_empty() { u64::MAX } else { sent[n % sent.len()] },
                        )),
                        _ => ServerMessage::ExtensionAccept(ExtensionAccept {
                            flags: FeatureFlags::KNOWN,
                            ledger_epoch: 1,
                        }),
                    };
                    // A second accept is a violation on any connection;
                    // the others only where the client did not opt in.
                    let violates = !opt_in || kind == 3;
                    let live = !seen.close_sent && !conn.is_ended();
                    conn.handle_frame(message.to_bytes());
                    seen.drain(&mut conn, now)?;
                    if violates && live {
                        prop_assert!(
                            matches!(
                                seen.end,
                                Some(End::Violation { code: 1002, error: Some(ParseError::NotAllowed { .. }) })
                            ),
                            "an extension message the opt-in forbids ended {:?}", seen.end
                        );
                    }
                    if !violates && live {
                        prop_assert!(!conn.is_ended(), "a granted extension message ended the connection");
                    }
                }
            }
            seen.drain(&mut conn, now)?;
            for (id, count) in &seen.outcomes {
                prop_assert_eq!(*count, 1, "request {} had {} outcomes", id, count);
            }
            prop_assert_eq!(
                conn.in_flight() + seen.outcomes.len(),
                sent.len(),
                "every request is in flight or has its outcome"
            );
        }
        // Whatever happened, the end gives every request its outcome.
        conn.peer_closed();
        seen.drain(&mut conn, now)?;
        prop_assert!(seen.ended);
        prop_assert!(!seen.restore_pending, "the restore got no outcome");
        for id in &sent {
            prop_assert_eq!(seen.outcomes.get(id).copied(), Some(1), "request {}", id);
        }
        prop_assert_eq!(conn.in_flight(), 0);
    }
}
