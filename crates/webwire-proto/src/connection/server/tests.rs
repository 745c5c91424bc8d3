use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::{
    ErrorReply, ExtensionAccept, InstanceId, LossReason, Name, Payload, Reply, RequestKey,
    StreamId, StreamLoss, StreamPosition, StreamSignal,
};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the model's client may keep exceeding its rate limit.
const CLOSE_AFTER: Duration = Duration::from_secs(1);
/// Marks a model message the server's limiter refuses.
const OVER_LIMIT: u8 = 2;

fn request(id: u64) -> Bytes {
    let request = Request::new(
        RequestId::from(id),
        Name::from_static("r"),
        Payload::binary(Bytes::from_static(b"x")),
    )
    .unwrap();
    ClientMessage::Request(request).to_bytes()
}

fn signal() -> Bytes {
    let signal = Signal::new(Name::from_static("s"), Payload::binary(Bytes::new())).unwrap();
    ClientMessage::Signal(signal).to_bytes()
}

fn reply(id: RequestId) -> ServerMessage {
    ServerMessage::Reply(Reply::new(id, Payload::binary(Bytes::new())))
}

fn server_signal() -> ServerMessage {
    ServerMessage::Signal(
        Signal::new(Name::from_static("s"), Payload::binary(Bytes::new())).unwrap(),
    )
}

const INSTANCE: &str = "0123456789abcdef";

fn hello(flags: FeatureFlags) -> Bytes {
    let hello = ExtensionHello::new(flags, InstanceId::new(INSTANCE).unwrap()).unwrap();
    ClientMessage::ExtensionHello(hello).to_bytes()
}

fn keyed_request(id: u64, seq: u64) -> Bytes {
    let request = Request::new(
        RequestId::from(id),
        Name::from_static("k"),
        Payload::binary(Bytes::from_static(b"x")),
    )
    .unwrap();
    let keyed = KeyedRequest::new(request, RequestKey { seq, epoch: 1 }, 0).unwrap();
    ClientMessage::KeyedRequest(keyed).to_bytes()
}

fn resume(id: u64) -> Bytes {
    let position = StreamPosition {
        stream: StreamId::Session,
        epoch: 1,
        offset: 0,
    };
    ClientMessage::StreamResume(StreamResume::new(RequestId::from(id), vec![position]).unwrap())
        .to_bytes()
}

fn stream_signal() -> ServerMessage {
    let signal = Signal::new(Name::from_static("s"), Payload::binary(Bytes::new())).unwrap();
    ServerMessage::StreamSignal(StreamSignal::new(StreamId::Session, 1, 1, signal).unwrap())
}

fn stream_loss() -> ServerMessage {
    ServerMessage::StreamLoss(StreamLoss {
        stream: StreamId::Session,
        epoch: 1,
        lost_from: 1,
        lost_to: 2,
        next: 3,
        reason: LossReason::Trimmed,
    })
}

fn accept(flags: FeatureFlags) -> ServerMessage {
    ServerMessage::ExtensionAccept(ExtensionAccept {
        flags,
        ledger_epoch: 1,
    })
}

fn not_allowed(kind: MessageType, rule: ExtensionRule) -> Closing {
    Closing::ProtocolViolation(ParseError::NotAllowed { kind, rule })
}

/// The close that `frame` makes the machine decide, if any.
fn closing_of(conn: &mut ServerConnection, frame: Bytes) -> Option<Closing> {
    match conn.handle_message(frame) {
        Received::Close(closing) => Some(closing),
        _ => None,
    }
}

#[test]
fn extension_hello_first_grants_the_asked_and_supported_features() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now())
        .with_extensions(FeatureFlags::KEYED_REQUESTS | FeatureFlags::from_bits(1 << 9));
    let Received::ExtensionHello { hello, granted } =
        conn.handle_message(hello(FeatureFlags::from_bits(u32::MAX)))
    else {
        panic!("the hello is taken first");
    };
    assert_eq!(hello.instance_id().as_str(), INSTANCE);
    // Unknown bits are never granted, even when "supported".
    assert_eq!(granted, FeatureFlags::KEYED_REQUESTS);
    assert_eq!(conn.granted(), None);
    // Nothing of the extensions goes out before the accept...
    assert!(!conn.send(&ServerMessage::OutcomeUnknown(RequestId::from(1))));
    // ...and an accept with other flags than granted is refused.
    assert!(!conn.send(&accept(FeatureFlags::KNOWN)));
    assert!(conn.send(&accept(granted)));
    assert_eq!(conn.granted(), Some(FeatureFlags::KEYED_REQUESTS));
    assert!(!conn.send(&accept(granted)), "the accept goes once");

    // Keyed requests are requests: counted, answered by OutcomeUnknown.
    let Received::KeyedRequest(request) = conn.handle_message(keyed_request(5, 1)) else {
        panic!("a keyed request is run");
    };
    assert_eq!((request.id(), request.key().seq), (RequestId::from(5), 1));
    assert_eq!(conn.unanswered(), 1);
    assert!(conn.send(&ServerMessage::OutcomeUnknown(request.id())));
    assert_eq!(conn.unanswered(), 0);

    // Streams were not granted: no stream message either way.
    assert!(!conn.send(&stream_signal()));
    assert!(!conn.may_send_frame(&stream_loss().to_bytes()));
    assert_eq!(
        closing_of(&mut conn, resume(6)),
        Some(not_allowed(
            MessageType::StreamResume,
            ExtensionRule::NotGranted(FeatureFlags::STREAMS)
        ))
    );
    assert_eq!(conn.state(), State::Closing);
}

#[test]
fn a_granted_stream_connection_takes_resumes_and_gets_stream_messages() {
    let mut conn =
        ServerConnection::new(TIMEOUT, Instant::now()).with_extensions(FeatureFlags::KNOWN);
    let Received::ExtensionHello { granted, .. } =
        conn.handle_message(hello(FeatureFlags::STREAMS))
    else {
        panic!("the hello is taken first");
    };
    assert_eq!(granted, FeatureFlags::STREAMS);
    let frame = stream_signal().to_bytes();
    assert!(!conn.may_send_frame(&frame), "not before the accept");
    assert!(conn.send(&accept(granted)));
    assert!(conn.may_send_frame(&frame));
    assert!(conn.may_send_frame(&stream_loss().to_bytes()));
    assert!(conn.send(&stream_signal()));
    // Replies and the accept are never sent encoded already.
    assert!(!conn.may_send_frame(&ServerMessage::OutcomeUnknown(RequestId::from(1)).to_bytes()));
    assert!(!conn.may_send_frame(&accept(granted).to_bytes()));

    let Received::StreamResume(resume) = conn.handle_message(resume(3)) else {
        panic!("a resume is a request");
    };
    assert_eq!(resume.positions().len(), 1);
    assert_eq!(conn.unanswered(), 1);
    assert!(conn.send(&reply(resume.id())));
    // Keyed requests were not asked for.
    assert_eq!(
        closing_of(&mut conn, keyed_request(4, 1)),
        Some(not_allowed(
            MessageType::KeyedRequestBinary,
            ExtensionRule::NotGranted(FeatureFlags::KEYED_REQUESTS)
        ))
    );
}

#[test]
fn extension_messages_without_the_opt_in_close_with_1002() {
    let announced =
        || ServerConnection::new(TIMEOUT, Instant::now()).with_extensions(FeatureFlags::KNOWN);
    let cases: Vec<(&str, ServerConnection, Vec<Bytes>, Closing)> = vec![
        (
            "hello to a 2.0 server",
            ServerConnection::new(TIMEOUT, Instant::now()),
            vec![hello(FeatureFlags::KNOWN)],
            not_allowed(MessageType::ExtensionHello, ExtensionRule::NotAnnounced),
        ),
        (
            "keyed request to a 2.0 server",
            ServerConnection::new(TIMEOUT, Instant::now()),
            vec![keyed_request(1, 1)],
            not_allowed(MessageType::KeyedRequestBinary, ExtensionRule::NotAnnounced),
        ),
        (
            "hello after a heartbeat",
            announced(),
            vec![Bytes::from_static(&[33]), hello(FeatureFlags::KNOWN)],
            not_allowed(MessageType::ExtensionHello, ExtensionRule::HelloNotFirst),
        ),
        (
            "hello after a request",
            announced(),
            vec![request(1), hello(FeatureFlags::KNOWN)],
            not_allowed(MessageType::ExtensionHello, ExtensionRule::HelloNotFirst),
        ),
        (
            "a second hello",
            announced(),
            vec![hello(FeatureFlags::KNOWN), hello(FeatureFlags::KNOWN)],
            not_allowed(MessageType::ExtensionHello, ExtensionRule::Repeated),
        ),
        (
            "resume as the first message",
            announced(),
            vec![resume(1)],
            not_allowed(MessageType::StreamResume, ExtensionRule::NotOptedIn),
        ),
        (
            "keyed request after a plain start",
            announced(),
            vec![signal(), keyed_request(1, 1)],
            not_allowed(MessageType::KeyedRequestBinary, ExtensionRule::NotOptedIn),
        ),
        (
            "keyed request, only streams asked for",
            announced(),
            vec![hello(FeatureFlags::STREAMS), keyed_request(1, 1)],
            not_allowed(
                MessageType::KeyedRequestBinary,
                ExtensionRule::NotGranted(FeatureFlags::KEYED_REQUESTS),
            ),
        ),
        (
            "resume, streams not supported",
            ServerConnection::new(TIMEOUT, Instant::now())
                .with_extensions(FeatureFlags::KEYED_REQUESTS),
            vec![hello(FeatureFlags::KNOWN), resume(1)],
            not_allowed(
                MessageType::StreamResume,
                ExtensionRule::NotGranted(FeatureFlags::STREAMS),
            ),
        ),
    ];
    for (description, mut conn, frames, expected) in cases {
        let (last, before) = frames.split_last().unwrap();
        for frame in before {
            assert!(
                closing_of(&mut conn, frame.clone()).is_none(),
                "{description}: closed early"
            );
        }
        let closing = closing_of(&mut conn, last.clone());
        assert_eq!(closing.as_ref(), Some(&expected), "{description}");
        assert_eq!(expected.close_frame().unwrap().0, 1002);
        assert_eq!(conn.state(), State::Closing, "{description}");
    }
}

#[test]
fn a_2_0_connection_is_never_written_an_extension_message() {
    for mut conn in [
        ServerConnection::new(TIMEOUT, Instant::now()),
        // Announced, but the client started with a plain message.
        ServerConnection::new(TIMEOUT, Instant::now()).with_extensions(FeatureFlags::KNOWN),
    ] {
        let Received::Request(request) = conn.handle_message(request(1)) else {
            panic!("a request is run");
        };
        for message in [
            accept(FeatureFlags::NONE),
            accept(FeatureFlags::KNOWN),
            stream_signal(),
            stream_loss(),
            ServerMessage::OutcomeUnknown(request.id()),
        ] {
            assert!(!conn.may_send_frame(&message.to_bytes()), "{message:?}");
            assert!(!conn.send(&message), "{message:?}");
        }
        assert_eq!(conn.unanswered(), 1, "a refused message answers nothing");
        assert!(conn.send(&reply(request.id())));
        assert!(conn.may_send_frame(&server_signal().to_bytes()));
        assert_eq!(conn.granted(), None);
    }
}

#[test]
fn keyed_requests_and_resumes_are_answered_with_shutdown_while_draining() {
    let mut conn =
        ServerConnection::new(TIMEOUT, Instant::now()).with_extensions(FeatureFlags::KNOWN);
    let Received::ExtensionHello { granted, .. } = conn.handle_message(hello(FeatureFlags::KNOWN))
    else {
        panic!("the hello is taken first");
    };
    assert!(conn.send(&accept(granted)));
    conn.close(Drain::Shutdown);
    for frame in [keyed_request(1, 1), resume(2)] {
        let Received::Answer(answer) = conn.handle_message(frame) else {
            panic!("answered at once while draining");
        };
        assert!(matches!(answer, ServerMessage::Shutdown(_)));
        assert!(conn.send(&answer));
    }
    assert_eq!(conn.unanswered(), 0);
}

#[test]
fn requests_are_run_while_open_and_answered_with_shutdown_while_draining() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    assert!(
        matches!(conn.handle_message(request(1)), Received::Request(r) if r.id() == RequestId::from(1))
    );
    conn.close(Drain::Shutdown);
    assert_eq!(conn.state(), State::Draining(Drain::Shutdown));
    let Received::Answer(answer) = conn.handle_message(request(2)) else {
        panic!("a request while draining is answered at once");
    };
    assert_eq!(answer, ServerMessage::Shutdown(RequestId::from(2)));
    assert!(matches!(conn.handle_message(signal()), Received::Nothing));
    assert_eq!(conn.unanswered(), 2);
    assert!(conn.send(&answer));
    assert!(conn.send(&reply(RequestId::from(1))));
    assert_eq!(conn.unanswered(), 0);
    assert_eq!(conn.received(), 3);
}

#[test]
fn session_requests_are_answered_with_shutdown_while_draining() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    let restore = ClientMessage::RestoreSession {
        id: RequestId::from(7),
        key: Bytes::from_static(b"k"),
    };
    assert!(matches!(
        conn.handle_message(restore.to_bytes()),
        Received::RestoreSession { id, .. } if id == RequestId::from(7)
    ));
    conn.close(Drain::Close);
    let close = ClientMessage::CloseSession(RequestId::from(8)).to_bytes();
    assert!(matches!(
        conn.handle_message(close),
        Received::Answer(ServerMessage::Shutdown(id)) if id == RequestId::from(8)
    ));
    assert!(matches!(
        conn.handle_message(restore.to_bytes()),
        Received::Answer(ServerMessage::Shutdown(_))
    ));
}

#[test]
fn a_broken_message_closes_with_1002_and_text_with_1003() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    let Received::Close(closing) = conn.handle_message(Bytes::from_static(&[200])) else {
        panic!("an unknown type is a violation");
    };
    assert_eq!(
        closing,
        Closing::ProtocolViolation(ParseError::UnknownType(200))
    );
    assert_eq!(closing.close_frame(), Some((1002, "protocol violation")));
    assert_eq!(conn.state(), State::Closing);
    // What is queued still goes out before the close frame.
    let frame = server_signal().to_bytes();
    assert!(conn.may_send_frame(&frame));
    conn.close_sent();
    assert!(!conn.may_send_frame(&frame));

    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    assert_eq!(conn.handle_text().close_frame().unwrap().0, 1003);
    assert_eq!(conn.received(), 1);
}

#[test]
fn the_clients_close_frame_stops_all_writing_and_replies_are_counted_as_dropped() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    let Received::Request(request) = conn.handle_message(request(1)) else {
        panic!()
    };
    let closing = conn.handle_close_frame(1000, "bye");
    assert_eq!(
        closing.close_frame(),
        None,
        "the WebSocket layer answers it"
    );
    assert!(!conn.send(&server_signal()));
    assert!(!conn.send(&reply(request.id())));
    assert_eq!((conn.unanswered(), conn.discarded()), (0, 1));
}

#[test]
fn a_shutdown_wins_over_a_close_asked_for_before_but_not_the_other_way() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    conn.close(Drain::Close);
    conn.close(Drain::Shutdown);
    assert_eq!(conn.state(), State::Draining(Drain::Shutdown));
    conn.close(Drain::Close);
    assert_eq!(conn.state(), State::Draining(Drain::Shutdown));
    assert!(matches!(conn.next_read(false), Read::Arrived));
    assert_eq!(
        conn.nothing_arrived().close_frame(),
        Some((1001, "server shutdown"))
    );
}

#[test]
fn a_restart_closes_with_1012_and_wins_over_a_close_but_not_over_a_shutdown() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    conn.handle_message(request(1));
    conn.close(Drain::Close);
    conn.close(Drain::Restart);
    assert_eq!(conn.state(), State::Draining(Drain::Restart));
    conn.close(Drain::Close);
    assert_eq!(conn.state(), State::Draining(Drain::Restart));
    assert!(matches!(
        conn.handle_message(request(2)),
        Received::Answer(ServerMessage::Shutdown(_))
    ));
    assert!(matches!(conn.next_read(false), Read::Arrived));
    assert_eq!(
        conn.nothing_arrived().close_frame(),
        Some((1012, "service restart"))
    );

    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    conn.close(Drain::Restart);
    conn.close(Drain::Shutdown);
    assert_eq!(conn.state(), State::Draining(Drain::Shutdown));
    conn.close(Drain::Restart);
    assert_eq!(conn.state(), State::Draining(Drain::Shutdown));
}

#[test]
fn a_drained_connection_reads_a_bounded_number_of_late_messages() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    conn.close(Drain::Close);
    assert!(
        matches!(conn.next_read(true), Read::Wait),
        "handlers still run"
    );
    for _ in 0..MAX_LATE_READS {
        assert!(matches!(conn.next_read(false), Read::Arrived));
        conn.handle_message(Bytes::from_static(&[33]));
    }
    assert!(matches!(
        conn.next_read(false),
        Read::Close(Closing::Drained(Drain::Close))
    ));
}

#[test]
fn the_read_timeout_counts_from_the_last_activity_the_task_saw() {
    let start = Instant::now();
    let mut conn = ServerConnection::new(TIMEOUT, start);
    assert_eq!(
        conn.read_deadline(|| unreachable!("no activity: no clock")),
        start + TIMEOUT
    );
    assert_eq!(conn.handle_timeout(start + TIMEOUT / 2), None);

    // Activity, then the task reads the clock before it waits again.
    conn.handle_control();
    let later = start + TIMEOUT / 2;
    assert_eq!(conn.read_deadline(|| later), later + TIMEOUT);
    assert_eq!(conn.handle_timeout(start + TIMEOUT), None, "moved on");
    // Activity the task has not seen the clock for yet never times out.
    conn.handle_message(Bytes::from_static(&[33]));
    assert_eq!(conn.handle_timeout(later + TIMEOUT * 2), None);
    conn.read_deadline(|| later + TIMEOUT);
    assert_eq!(
        conn.handle_timeout(later + TIMEOUT * 2),
        Some(Closing::ReadTimeout)
    );
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(
        Closing::ReadTimeout.close_frame(),
        Some((1001, "read timeout"))
    );
}

#[test]
fn a_client_that_keeps_exceeding_its_rate_limit_is_closed_with_1008() {
    let start = Instant::now();
    let mut conn = ServerConnection::new(TIMEOUT, start);
    let close_after = Duration::from_secs(5);
    let at = |ms: u64| start + Duration::from_millis(ms);
    // Over the limit every 900 ms: one run, closed once it lasted 5 s.
    for ms in (0..5000).step_by(900) {
        assert_eq!(conn.over_limit(at(ms), close_after), None, "at {ms} ms");
    }
    // A quiet second ends the run: the next message over the limit starts anew.
    assert_eq!(conn.over_limit(at(6500), close_after), None);
    assert_eq!(conn.over_limit(at(11_000), close_after), None);
    assert!(conn.is_open());
    for ms in (11_000..=11_500).step_by(100) {
        assert_eq!(conn.over_limit(at(ms), close_after), None);
    }
    for ms in (11_500..=16_500).step_by(500) {
        if let Some(closing) = conn.over_limit(at(ms), close_after) {
            assert_eq!(ms, 16_000, "closed 5 s after the run began");
            assert_eq!(closing, Closing::PolicyViolation);
            break;
        }
    }
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(
        Closing::PolicyViolation.close_frame(),
        Some((1008, "rate limit exceeded"))
    );
    // The answer to the last message is still written, then the close frame.
    assert!(conn.send(&ServerMessage::Signal(
        Signal::new(Name::from_static("s"), Payload::binary(Bytes::new())).unwrap()
    )));
    // A connection that is closing already is not closed again.
    assert_eq!(conn.over_limit(at(30_000), close_after), None);
}

#[test]
fn heartbeats_and_unknown_signals_ask_for_nothing() {
    let mut conn = ServerConnection::new(TIMEOUT, Instant::now());
    assert!(matches!(
        conn.handle_message(Bytes::from_static(&[33])),
        Received::Nothing
    ));
    // A reply is a server's message.
    let wrong = ServerMessage::Error(ErrorReply::new(
        RequestId::from(1),
        crate::ErrorCode::from_static("E"),
        "m",
    ))
    .to_bytes();
    assert!(matches!(
        conn.handle_message(wrong),
        Received::Close(Closing::ProtocolViolation(
            ParseError::WrongDirection { .. }
        ))
    ));
}

// ---- The properties, over any interleaving -------------------------------

/// What happens next, in the model of a connection task.
#[derive(Debug, Clone)]
enum Step {
    /// A message of the client's arrives (it is read by a later `Read`).
    Arrive(Incoming),
    /// The task reads, as its loop would.
    Read,
    /// The handler of the n-th running request (modulo their number)
    /// finishes and its reply is written.
    Finish(usize),
    /// Another task queued a signal for this connection.
    QueueSignal,
    /// Another task queued a stream signal (as a message, or encoded
    /// already for many connections).
    QueueStreamSignal { encoded: bool },
    /// The application closes the connection.
    AskClose,
    /// The server drains for a restart.
    AskRestart,
    /// The server shuts down.
    AskShutdown,
    /// The client's close frame is read.
    PeerClose,
    /// The read timer fires after this many seconds.
    Timer(u64),
}

#[derive(Debug, Clone, Copy)]
enum Incoming {
    /// A request whose handler finishes at its first poll (`true`) or runs on.
    Request(bool),
    Signal,
    Heartbeat,
    Restore,
    CloseSession,
    Garbage,
    Text,
    /// A request over the rate limit: answered with an error reply at once.
    RequestOverLimit,
    /// A signal over the rate limit: dropped.
    SignalOverLimit,
    /// 2.1: an ExtensionHello asking for these features.
    Hello(FeatureFlags),
    /// 2.1: a keyed request whose handler finishes at once (answering
    /// OutcomeUnknown) or runs on.
    Keyed(bool),
    /// 2.1: a StreamResume.
    Resume,
}

fn step() -> impl Strategy<Value = Step> {
    let incoming = prop_oneof![
        4 => any::<bool>().prop_map(Incoming::Request),
        2 => Just(Incoming::Signal),
        1 => Just(Incoming::Heartbeat),
        1 => Just(Incoming::Restore),
        1 => Just(Incoming::CloseSession),
        1 => Just(Incoming::Garbage),
        1 => Just(Incoming::Text),
        2 => Just(Incoming::RequestOverLimit),
        2 => Just(Incoming::SignalOverLimit),
        3 => (0u32..4).prop_map(|bits| Incoming::Hello(FeatureFlags::from_bits(bits))),
        2 => any::<bool>().prop_map(Incoming::Keyed),
        1 => Just(Incoming::Resume),
    ];
    prop_oneof![
        8 => incoming.prop_map(Step::Arrive),
        8 => Just(Step::Read),
        5 => (0usize..8).prop_map(Step::Finish),
        2 => Just(Step::QueueSignal),
        2 => any::<bool>().prop_map(|encoded| Step::QueueStreamSignal { encoded }),
        1 => Just(Step::AskClose),
        1 => Just(Step::AskRestart),
        1 => Just(Step::AskShutdown),
        1 => Just(Step::PeerClose),
        // Short steps too, so that runs over the rate limit last long enough.
        1 => prop_oneof![0u64..2, 0u64..90].prop_map(Step::Timer),
    ]
}

/// What the model's socket saw written.
#[derive(Debug, Clone, PartialEq)]
enum Written {
    Reply(RequestId),
    Signal,
    /// The ExtensionAccept.
    Accept(FeatureFlags),
    /// A stream signal or StreamLoss.
    Stream,
    CloseFrame(u16),
}

/// The opt-in as the model's client sees it (docs/protocol.md section 14),
/// kept apart from the machine's to check it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Opt {
    NotAnnounced,
    Offered(FeatureFlags),
    Declined,
    Granted(FeatureFlags),
}

/// A connection task reduced to what it does with the machine's answers.
struct Model {
    conn: ServerConnection,
    now: Instant,
    arrived: VecDeque<Bytes>,
    next_id: u64,
    /// Requests whose handler runs on.
    running: Vec<RequestId>,
    written: Vec<Written>,
    dropped: Vec<RequestId>,
    read: Vec<RequestId>,
    /// Requests read after a close or shutdown was asked for.
    read_draining: Vec<RequestId>,
    ended: Option<Closing>,
    opt: Opt,
    /// An extension message was read that the opt-in does not allow.
    violated: bool,
}

impl Model {
    /// A connection of a server that announced 2.0 (`None`) or 2.1 with
    /// these features.
    fn new(extensions: Option<FeatureFlags>) -> Self {
        let now = Instant::now();
        let conn = ServerConnection::new(TIMEOUT, now);
        let (conn, opt) = match extensions {
            Some(supported) => (conn.with_extensions(supported), Opt::Offered(supported)),
            None => (conn, Opt::NotAnnounced),
        };
        Self {
            conn,
            now,
            arrived: VecDeque::new(),
            next_id: 1,
            running: Vec::new(),
            written: Vec::new(),
            dropped: Vec::new(),
            read: Vec::new(),
            read_draining: Vec::new(),
            ended: None,
            opt,
            violated: false,
        }
    }

    /// Whether the opt-in allows `frame` (a malformed one is not about the
    /// opt-in); keeps the model's opt-in state.
    fn allowed(&mut self, frame: &Bytes) -> bool {
        let Ok(message) = ClientMessage::parse(frame.clone()) else {
            return true;
        };
        match (message, self.opt) {
            (ClientMessage::ExtensionHello(hello), Opt::Offered(supported)) => {
                self.opt = Opt::Granted(hello.flags() & supported & FeatureFlags::KNOWN);
                true
            }
            (ClientMessage::ExtensionHello(_), _) => false,
            (ClientMessage::KeyedRequest(_), Opt::Granted(granted)) => {
                granted.contains(FeatureFlags::KEYED_REQUESTS)
            }
            (ClientMessage::StreamResume(_), Opt::Granted(granted)) => {
                granted.contains(FeatureFlags::STREAMS)
            }
            (ClientMessage::KeyedRequest(_) | ClientMessage::StreamResume(_), _) => false,
            (_, Opt::Offered(_)) => {
                self.opt = Opt::Declined;
                true
            }
            _ => true,
        }
    }

    fn send(&mut self, message: ServerMessage) {
        let written = match &message {
            ServerMessage::Signal(_) => Written::Signal,
            ServerMessage::StreamSignal(_) | ServerMessage::StreamLoss(_) => Written::Stream,
            ServerMessage::ExtensionAccept(accept) => Written::Accept(accept.flags),
            other => Written::Reply(other.request_id().expect("a reply")),
        };
        if self.conn.send(&message) {
            self.written.push(written);
        } else if let Written::Reply(id) = written {
            self.dropped.push(id);
        }
    }

    fn arrive(&mut self, incoming: Incoming) {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        let frame = match incoming {
            Incoming::Request(at_once) => {
                let mut frame = request(id.to_u64()).to_vec();
                // The handler's behaviour rides in the payload's last byte.
                *frame.last_mut().unwrap() = u8::from(at_once);
                Bytes::from(frame)
            }
            Incoming::RequestOverLimit => {
                let mut frame = request(id.to_u64()).to_vec();
                *frame.last_mut().unwrap() = OVER_LIMIT;
                Bytes::from(frame)
            }
            Incoming::Signal => signal(),
            Incoming::SignalOverLimit => {
                let mut frame = signal().to_vec();
                frame.push(OVER_LIMIT);
                Bytes::from(frame)
            }
            Incoming::Heartbeat => Bytes::from_static(&[33]),
            Incoming::Restore => ClientMessage::RestoreSession {
                id,
                key: Bytes::from_static(b"k"),
            }
            .to_bytes(),
            Incoming::CloseSession => ClientMessage::CloseSession(id).to_bytes(),
            Incoming::Garbage => Bytes::from_static(&[250, 1]),
            Incoming::Hello(flags) => hello(flags),
            Incoming::Keyed(at_once) => {
                let mut frame = keyed_request(id.to_u64(), id.to_u64()).to_vec();
                *frame.last_mut().unwrap() = u8::from(at_once);
                Bytes::from(frame)
            }
            Incoming::Resume => resume(id.to_u64()),
            Incoming::Text => Bytes::new(),
        };
        self.arrived.push_back(frame);
    }

    /// One turn of the read loop.
    fn read(&mut self) {
        let frame = match self.conn.next_read(!self.running.is_empty()) {
            Read::Close(closing) => return self.end(closing),
            Read::Wait => match self.arrived.pop_front() {
                Some(frame) => frame,
                None => return,
            },
            Read::Arrived => match self.arrived.pop_front() {
                Some(frame) => frame,
                None => {
                    let closing = self.conn.nothing_arrived();
                    return self.end(closing);
                }
            },
        };
        if frame.is_empty() {
            // The model's text message.
            let closing = self.conn.handle_text();
            return self.end(closing);
        }
        let draining = self.conn.is_draining();
        let allowed = self.allowed(&frame);
        let received = self.conn.handle_message(frame);
        if !allowed {
            assert!(
                matches!(
                    received,
                    Received::Close(Closing::ProtocolViolation(ParseError::NotAllowed { .. }))
                ),
                "an extension message the opt-in forbids was taken: {received:?}"
            );
            self.violated = true;
        }
        let id = match &received {
            Received::Request(r) => Some(r.id()),
            Received::KeyedRequest(r) => Some(r.id()),
            Received::StreamResume(r) => Some(r.id()),
            Received::RestoreSession { id, .. } | Received::CloseSession(id) => Some(*id),
            Received::Answer(answer) => answer.request_id(),
            _ => None,
        };
        if let Some(id) = id {
            self.read.push(id);
            if draining {
                self.read_draining.push(id);
            }
        }
        match received {
            // The server's limiter said no: an error reply at once, and
            // maybe the close for keeping on.
            Received::Request(request) if request.payload().as_bytes()[0] == OVER_LIMIT => {
                self.send(ServerMessage::Error(ErrorReply::new(
                    request.id(),
                    crate::ErrorCode::from_static("RATE_LIMITED"),
                    "",
                )));
                self.over_limit();
            }
            Received::Signal(signal) if signal.payload().as_bytes()[..] == [OVER_LIMIT] => {
                self.over_limit();
            }
            Received::Request(request) if request.payload().as_bytes()[0] == 1 => {
                self.send(reply(request.id()));
            }
            Received::Request(request) => self.running.push(request.id()),
            // Session requests are answered by the task itself.
            Received::RestoreSession { id, .. } => self.send(ServerMessage::SessionNotFound(id)),
            Received::CloseSession(id) => self.send(reply(id)),
            Received::Answer(answer) => self.send(answer),
            Received::ExtensionHello { granted, .. } => {
                assert_eq!(self.opt, Opt::Granted(granted));
                self.send(accept(granted));
            }
            Received::KeyedRequest(request) if request.request().payload().as_bytes()[0] == 1 => {
                self.send(ServerMessage::OutcomeUnknown(request.id()));
            }
            Received::KeyedRequest(request) => self.running.push(request.id()),
            Received::StreamResume(resume) => self.send(reply(resume.id())),
            Received::Signal(_) | Received::Nothing => {}
            Received::Close(closing) => self.end(closing),
        }
    }

    /// The task tells the rules that a message was over the rate limit.
    fn over_limit(&mut self) {
        if let Some(closing) = self.conn.over_limit(self.now, CLOSE_AFTER) {
            self.end(closing);
        }
    }

    fn finish(&mut self, n: usize) {
        if !self.running.is_empty() {
            let id = self.running.remove(n % self.running.len());
            self.send(reply(id));
        }
    }

    /// The task's close: the close frame (if the rules send one), then the
    /// handlers still running end, their replies dropped.
    fn end(&mut self, closing: Closing) {
        if let Some((code, _)) = closing.close_frame() {
            self.written.push(Written::CloseFrame(code));
            self.conn.close_sent();
        }
        self.ended = Some(closing);
        while !self.running.is_empty() {
            self.finish(0);
        }
    }

    /// Another task's stream signal, as the server sends it: to every
    /// connection, whatever it was granted (the rules refuse it where it
    /// may not go).
    fn queue_stream_signal(&mut self, encoded: bool) {
        if encoded {
            if self.conn.may_send_frame(&stream_signal().to_bytes()) {
                self.written.push(Written::Stream);
            }
        } else {
            self.send(stream_signal());
        }
    }

    fn apply(&mut self, step: Step) {
        if self.ended.is_some() {
            // The task is gone; only other tasks still try to send.
            match step {
                Step::QueueSignal => self.send(server_signal()),
                Step::QueueStreamSignal { encoded } => self.queue_stream_signal(encoded),
                _ => {}
            }
            return;
        }
        match step {
            Step::Arrive(incoming) => self.arrive(incoming),
            Step::Read => self.read(),
            Step::Finish(n) => self.finish(n),
            Step::QueueSignal => self.send(server_signal()),
            Step::QueueStreamSignal { encoded } => self.queue_stream_signal(encoded),
            Step::AskClose => self.conn.close(Drain::Close),
            Step::AskRestart => self.conn.close(Drain::Restart),
            Step::AskShutdown => self.conn.close(Drain::Shutdown),
            Step::PeerClose => {
                let closing = self.conn.handle_close_frame(1000, "");
                self.end(closing);
            }
            Step::Timer(seconds) => {
                self.now += Duration::from_secs(seconds);
                let now = self.now;
                self.conn.read_deadline(|| now);
                if let Some(closing) = self.conn.handle_timeout(now) {
                    self.end(closing);
                }
            }
        }
    }

    /// A shutdown at the end: handlers finish, the loop reads until the
    /// machine closes.
    fn shut_down(&mut self) {
        if self.ended.is_some() {
            return;
        }
        self.conn.close(Drain::Shutdown);
        while !self.running.is_empty() {
            self.finish(0);
        }
        for _ in 0..=MAX_LATE_READS + 1 {
            self.read();
            if self.ended.is_some() {
                return;
            }
        }
        panic!("a drained connection did not close");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every request read gets exactly one reply (written, or dropped only
    /// once the connection has closed); nothing is written after the close
    /// frame; a connection that drained answered every request it read;
    /// requests read while draining were answered with a shutdown reply.
    #[test]
    fn every_request_gets_one_reply_and_nothing_follows_the_close_frame(
        steps in proptest::collection::vec(step(), 0..80),
        extensions in proptest::option::of((0u32..4).prop_map(FeatureFlags::from_bits)),
    ) {
        let mut model = Model::new(extensions);
        for step in steps {
            model.apply(step);
            let replies = model.written.iter().filter(|w| matches!(w, Written::Reply(_))).count();
            prop_assert!(replies <= model.read.len());
        }
        model.shut_down();

        let mut answers: HashMap<RequestId, usize> = HashMap::new();
        for written in &model.written {
            if let Written::Reply(id) = written {
                *answers.entry(*id).or_default() += 1;
            }
        }
        for id in &model.dropped {
            *answers.entry(*id).or_default() += 1;
        }
        for id in &model.read {
            prop_assert_eq!(answers.remove(id), Some(1), "request {:?}", id);
        }
        prop_assert!(answers.is_empty(), "replies for requests never read: {:?}", answers);
        prop_assert_eq!(model.conn.unanswered(), 0);
        prop_assert_eq!(model.conn.discarded(), model.dropped.len() as u64);

        let closes: Vec<usize> = model
            .written
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Written::CloseFrame(_)))
            .map(|(at, _)| at)
            .collect();
        prop_assert!(closes.len() <= 1);
        if let Some(&at) = closes.first() {
            prop_assert_eq!(at, model.written.len() - 1, "written after the close frame");
        }

        if let Some(Closing::PolicyViolation) = model.ended {
            prop_assert!(matches!(model.written.last(), Some(Written::CloseFrame(1008))));
        }
        if let Some(Closing::Drained(_)) = model.ended {
            prop_assert!(model.dropped.is_empty(), "a drained connection answers everything");
            prop_assert!(matches!(model.written.last(), Some(Written::CloseFrame(1000 | 1001 | 1012))));
        }
        for id in &model.read_draining {
            prop_assert!(model.written.contains(&Written::Reply(*id)) || model.dropped.contains(id));
        }

        // The opt-in: an extension message it forbids closed with 1002; a
        // 2.0 connection was written no extension message; on a 2.1 one
        // the ExtensionAccept (once, with the granted features) came
        // before any stream message, and those only with STREAMS granted.
        if model.violated {
            prop_assert!(matches!(model.ended, Some(Closing::ProtocolViolation(_))));
            prop_assert_eq!(model.written.last(), Some(&Written::CloseFrame(1002)));
        }
        let accepts: Vec<usize> = model
            .written
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Written::Accept(_)))
            .map(|(at, _)| at)
            .collect();
        let first_stream = model.written.iter().position(|w| *w == Written::Stream);
        match model.opt {
            Opt::Granted(granted) => {
                prop_assert!(accepts.len() <= 1);
                if let Some(&at) = accepts.first() {
                    prop_assert_eq!(&model.written[at], &Written::Accept(granted));
                }
                if let Some(stream) = first_stream {
                    prop_assert!(granted.contains(FeatureFlags::STREAMS));
                    prop_assert!(accepts.first().is_some_and(|&at| at < stream), "a stream message before the accept");
                }
            }
            Opt::NotAnnounced | Opt::Offered(_) | Opt::Declined => {
                prop_assert!(accepts.is_empty() && first_stream.is_none(), "an extension message to a 2.0 connection: {:?}", model.written);
            }
        }
        prop_assert_eq!(model.conn.granted().is_some(), !accepts.is_empty());
    }
}
