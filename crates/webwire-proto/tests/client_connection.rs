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
    AcceptConf, ClientMessage, ErrorCode, ErrorReply, Name, Payload, Reply, Request, RequestId,
    ServerMessage, Session, Signal,
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
                Event::Ended(_) => self.ended = true,
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
    ) {
        let mut now = Instant::now();
        let (mut conn, ids) = machine(now);
        let mut sent: Vec<u64> = Vec::new();
        let mut seen = Seen::default();
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
