use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::{ErrorReply, Name, Payload, Reply};

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
    assert!(conn.may_send_frame());
    conn.close_sent();
    assert!(!conn.may_send_frame());

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
    ];
    prop_oneof![
        8 => incoming.prop_map(Step::Arrive),
        8 => Just(Step::Read),
        5 => (0usize..8).prop_map(Step::Finish),
        2 => Just(Step::QueueSignal),
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
    CloseFrame(u16),
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
}

impl Model {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            conn: ServerConnection::new(TIMEOUT, now),
            now,
            arrived: VecDeque::new(),
            next_id: 1,
            running: Vec::new(),
            written: Vec::new(),
            dropped: Vec::new(),
            read: Vec::new(),
            read_draining: Vec::new(),
            ended: None,
        }
    }

    fn send(&mut self, message: ServerMessage) {
        let written = match &message {
            ServerMessage::Signal(_) => Written::Signal,
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
        let received = self.conn.handle_message(frame);
        let id = match &received {
            Received::Request(r) => Some(r.id()),
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

    fn apply(&mut self, step: Step) {
        if self.ended.is_some() {
            // The task is gone; only other tasks still try to send.
            if let Step::QueueSignal = step {
                self.send(server_signal());
            }
            return;
        }
        match step {
            Step::Arrive(incoming) => self.arrive(incoming),
            Step::Read => self.read(),
            Step::Finish(n) => self.finish(n),
            Step::QueueSignal => self.send(server_signal()),
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
        steps in proptest::collection::vec(step(), 0..80)
    ) {
        let mut model = Model::new();
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
    }
}
