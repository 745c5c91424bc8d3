//! A passive reader of the webwire traffic on one proxied connection.
//!
//! It follows the HTTP upgrade and then the WebSocket frames (RFC 6455) in
//! both directions, reads the webwire type byte and request id at the start
//! of each message, and keeps the set of requests that were sent but whose
//! reply has not been delivered. It only ever reads copies of the bytes the
//! proxy forwards. Whatever it cannot follow (a failed upgrade, a reserved
//! opcode, a compressed frame, a header too long) makes it stop observing
//! the connection; it never panics, whatever the input.

use std::collections::HashSet;

/// The longest HTTP head the observer waits for before giving up.
const MAX_HTTP_HEAD: usize = 64 * 1024;

/// Bytes of a message the observer reads: the type byte and an 8-byte id.
const MESSAGE_PREFIX: u64 = 9;

/// Which way bytes travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client that connected to the proxy to the upstream server.
    ClientToServer,
    /// From the upstream server back to the client.
    ServerToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// What a message's type byte says about it, for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A client message that carries a request id at bytes 1..9 and gets a
    /// reply: requests (127-132), RequestCloseSession (31),
    /// RequestRestoreSession (32), StreamResume (35).
    Request,
    /// A server message answering a request id at bytes 1..9: replies
    /// (191-193) and the special replies (0-6).
    Reply,
    /// A signal (63-65) or a stream signal (66-68), either direction.
    Signal,
    Other,
}

fn classify(direction: Direction, ty: u8) -> Class {
    match (direction, ty) {
        (_, 63..=68) => Class::Signal,
        (Direction::ClientToServer, 127..=132 | 31 | 32 | 35) => Class::Request,
        (Direction::ServerToClient, 0..=6 | 191..=193) => Class::Reply,
        _ => Class::Other,
    }
}

/// Messages whose last byte the observer saw in one call of
/// [`Observer::feed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completed {
    /// Requests (including session and stream-resume requests).
    pub requests: u64,
    /// Replies of any kind.
    pub replies: u64,
    /// Signals and stream signals.
    pub signals: u64,
}

/// What the observer knew about the traffic at the moment of a cut.
///
/// It is the proxy's view: bytes still in the kernel's socket buffers (not
/// yet read by the proxy, or written by it and not yet read by the peer)
/// are invisible to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutObservation {
    /// False when the observer had stopped following this connection; the
    /// other fields are then all zero or false.
    pub observed: bool,
    /// Requests sent by the client (forwarded, partly forwarded or held by
    /// the proxy) whose reply had not been completely forwarded to it.
    pub requests_in_flight: usize,
    /// A signal was partly forwarded, or started in bytes the proxy held.
    pub signal_in_flight: bool,
    /// The forwarded bytes of at least one direction ended inside a
    /// WebSocket frame.
    pub mid_frame: bool,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Reading the HTTP request or response head up to its blank line.
    Http {
        len: usize,
        /// How much of `\r\n\r\n` the last bytes matched.
        matched: u8,
        /// The first bytes of the head, for the response's status code.
        start: [u8; 12],
    },
    Frames(FrameState),
}

#[derive(Debug, Clone)]
enum FrameState {
    Header {
        buf: [u8; 14],
        have: usize,
    },
    Payload {
        remaining: u64,
        /// Bytes of this frame's payload already seen (for unmasking).
        position: u64,
        mask: Option<[u8; 4]>,
        control: bool,
        fin: bool,
    },
}

#[derive(Debug, Clone, Default)]
struct Message {
    /// Payload bytes of the message seen so far, across its frames.
    offset: u64,
    ty: Option<u8>,
    id: [u8; 8],
}

/// Something the byte-level parser found; the observer decides what it
/// means for the connection.
#[derive(Debug, Clone, Copy)]
enum Event {
    Started(u8),
    Id(u8, u64),
    Ended {
        ty: Option<u8>,
        id: Option<u64>,
    },
    /// The traffic cannot be followed any further.
    Lost,
}

/// The parser of one direction.
#[derive(Debug, Clone)]
struct Reader {
    direction: Direction,
    phase: Phase,
    message: Option<Message>,
}

impl Reader {
    fn new(direction: Direction) -> Self {
        Self {
            direction,
            phase: Phase::Http {
                len: 0,
                matched: 0,
                start: [0; 12],
            },
            message: None,
        }
    }

    fn mid_frame(&self) -> bool {
        matches!(
            self.phase,
            Phase::Frames(FrameState::Header { have: 1.., .. } | FrameState::Payload { .. })
        )
    }

    fn partial(&self) -> Option<Class> {
        let ty = self.message.as_ref()?.ty?;
        Some(classify(self.direction, ty))
    }

    /// Parses `bytes`, reporting what it finds; stops at the first
    /// [`Event::Lost`] (the reader is then useless and must be dropped).
    fn feed(&mut self, mut bytes: &[u8], on: &mut impl FnMut(Event)) -> bool {
        while !bytes.is_empty() {
            let used = match &mut self.phase {
                Phase::Http {
                    len,
                    matched,
                    start,
                } => {
                    let mut used = 0;
                    let mut done = false;
                    for &b in bytes {
                        used += 1;
                        if *len < start.len() {
                            start[*len] = b;
                        }
                        *len += 1;
                        let want = b"\r\n\r\n"[usize::from(*matched)];
                        *matched = if b == want {
                            *matched + 1
                        } else if b == b'\r' {
                            1
                        } else {
                            0
                        };
                        if *matched == 4 {
                            done = true;
                            break;
                        }
                        if *len > MAX_HTTP_HEAD {
                            on(Event::Lost);
                            return false;
                        }
                    }
                    if done {
                        // The server must switch protocols; anything else
                        // (an error page, a redirect) is not WebSocket.
                        if self.direction == Direction::ServerToClient
                            && (*len < 12
                                || !start.starts_with(b"HTTP/1.")
                                || &start[9..12] != b"101")
                        {
                            on(Event::Lost);
                            return false;
                        }
                        self.phase = Phase::Frames(FrameState::Header {
                            buf: [0; 14],
                            have: 0,
                        });
                    }
                    used
                }
                Phase::Frames(FrameState::Header { buf, have }) => {
                    let mut used = 0;
                    while *have < 2 && used < bytes.len() {
                        buf[*have] = bytes[used];
                        *have += 1;
                        used += 1;
                    }
                    if *have < 2 {
                        used
                    } else {
                        let masked = buf[1] & 0x80 != 0;
                        let extended = match buf[1] & 0x7f {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        };
                        let need = 2 + extended + if masked { 4 } else { 0 };
                        while *have < need && used < bytes.len() {
                            buf[*have] = bytes[used];
                            *have += 1;
                            used += 1;
                        }
                        if *have == need {
                            let header = *buf;
                            match self.start_frame(&header[..need], on) {
                                Some(state) => self.phase = Phase::Frames(state),
                                None => return false,
                            }
                        }
                        used
                    }
                }
                Phase::Frames(FrameState::Payload {
                    remaining,
                    position,
                    mask,
                    control,
                    fin,
                }) => {
                    // bytes is non-empty and remaining > 0, so this is >= 1.
                    let take =
                        usize::try_from(*remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                    if !*control && let Some(message) = self.message.as_mut() {
                        let mut i = 0;
                        while i < take && message.offset < MESSAGE_PREFIX {
                            let k = (*position + i as u64) % 4;
                            let b = bytes[i] ^ mask.map_or(0, |m| m[k as usize]);
                            if message.offset == 0 {
                                message.ty = Some(b);
                                on(Event::Started(b));
                            } else {
                                message.id[(message.offset - 1) as usize] = b;
                                if message.offset == MESSAGE_PREFIX - 1
                                    && let Some(ty) = message.ty
                                {
                                    on(Event::Id(ty, u64::from_le_bytes(message.id)));
                                }
                            }
                            message.offset += 1;
                            i += 1;
                        }
                        message.offset = message.offset.saturating_add((take - i) as u64);
                    }
                    *remaining -= take as u64;
                    *position += take as u64;
                    if *remaining == 0 {
                        let end_of_message = !*control && *fin;
                        self.phase = Phase::Frames(FrameState::Header {
                            buf: [0; 14],
                            have: 0,
                        });
                        if end_of_message {
                            self.end_message(on);
                        }
                    }
                    take
                }
            };
            bytes = &bytes[used..];
        }
        true
    }

    /// Checks a complete frame header and returns the state that reads its
    /// payload; `None` (after [`Event::Lost`]) when it cannot be followed.
    fn start_frame(&mut self, header: &[u8], on: &mut impl FnMut(Event)) -> Option<FrameState> {
        let fin = header[0] & 0x80 != 0;
        let rsv = header[0] & 0x70;
        let opcode = header[0] & 0x0f;
        let masked = header[1] & 0x80 != 0;
        let (len, rest) = match header[1] & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes([header[2], header[3]])),
                &header[4..],
            ),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&header[2..10]);
                (u64::from_be_bytes(b), &header[10..])
            }
            n => (u64::from(n), &header[2..]),
        };
        let mask = masked.then(|| [rest[0], rest[1], rest[2], rest[3]]);
        let control = opcode >= 8;
        let valid = rsv == 0
            && len >> 63 == 0
            && match opcode {
                0 => self.message.is_some(),
                1 | 2 => self.message.is_none(),
                8..=10 => fin && len <= 125,
                _ => false,
            };
        if !valid {
            on(Event::Lost);
            return None;
        }
        if opcode == 1 || opcode == 2 {
            self.message = Some(Message::default());
        }
        if len == 0 {
            if !control && fin {
                self.end_message(on);
            }
            return Some(FrameState::Header {
                buf: [0; 14],
                have: 0,
            });
        }
        Some(FrameState::Payload {
            remaining: len,
            position: 0,
            mask,
            control,
            fin,
        })
    }

    fn end_message(&mut self, on: &mut impl FnMut(Event)) {
        if let Some(message) = self.message.take() {
            let id = (message.offset >= MESSAGE_PREFIX).then(|| u64::from_le_bytes(message.id));
            on(Event::Ended { ty: message.ty, id });
        }
    }
}

/// Observes both directions of one proxied connection.
///
/// Feed it, in order, every byte the proxy forwards; at a cut, ask
/// [`Observer::at_cut`] what was in flight.
///
/// ```
/// use webwire_faultproxy::{Direction, Observer};
///
/// let mut observer = Observer::new();
/// observer.feed(Direction::ClientToServer, b"GET / HTTP/1.1\r\n\r\n");
/// observer.feed(Direction::ServerToClient, b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
/// // A masked binary frame (mask 0) with a request: type 127, id 7, no name.
/// let mut frame = vec![0x82, 0x80 | 10, 0, 0, 0, 0, 127];
/// frame.extend_from_slice(&7u64.to_le_bytes());
/// frame.push(0);
/// observer.feed(Direction::ClientToServer, &frame);
/// assert_eq!(observer.at_cut(&[], &[]).requests_in_flight, 1);
/// // Its reply: an empty binary reply, type 191.
/// let mut reply = vec![0x82, 9, 191];
/// reply.extend_from_slice(&7u64.to_le_bytes());
/// observer.feed(Direction::ServerToClient, &reply);
/// assert_eq!(observer.at_cut(&[], &[]).requests_in_flight, 0);
/// ```
#[derive(Debug, Clone)]
pub struct Observer {
    readers: Option<[Reader; 2]>,
    in_flight: HashSet<u64>,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer {
    /// An observer at the start of a connection (before the HTTP upgrade).
    pub fn new() -> Self {
        Self {
            readers: Some([
                Reader::new(Direction::ClientToServer),
                Reader::new(Direction::ServerToClient),
            ]),
            in_flight: HashSet::new(),
        }
    }

    /// False once the observer met traffic it cannot follow.
    pub fn is_observing(&self) -> bool {
        self.readers.is_some()
    }

    /// The ids of the requests forwarded to the server whose reply has not
    /// been completely forwarded to the client.
    pub fn requests_in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.in_flight.iter().copied()
    }

    /// Reads `bytes`, the next bytes forwarded in `direction`, and returns
    /// the messages they completed.
    pub fn feed(&mut self, direction: Direction, bytes: &[u8]) -> Completed {
        let mut completed = Completed::default();
        let Some(readers) = self.readers.as_mut() else {
            return completed;
        };
        let in_flight = &mut self.in_flight;
        let mut lost = false;
        readers[direction.index()].feed(bytes, &mut |event| match event {
            Event::Started(_) => {}
            Event::Id(ty, id) => {
                if classify(direction, ty) == Class::Request {
                    in_flight.insert(id);
                }
            }
            Event::Ended { ty, id } => match ty.map(|ty| classify(direction, ty)) {
                Some(Class::Request) => completed.requests += 1,
                Some(Class::Reply) => {
                    completed.replies += 1;
                    if let Some(id) = id {
                        in_flight.remove(&id);
                    }
                }
                Some(Class::Signal) => completed.signals += 1,
                Some(Class::Other) | None => {}
            },
            Event::Lost => lost = true,
        });
        if lost {
            tracing::debug!(?direction, "traffic no longer followed by the observer");
            self.readers = None;
            self.in_flight.clear();
        }
        completed
    }

    /// What was in flight if the connection is cut now, the proxy holding
    /// `held_to_server` and `held_to_client` (read, not yet forwarded; they
    /// are lost with the cut).
    pub fn at_cut(&self, held_to_server: &[u8], held_to_client: &[u8]) -> CutObservation {
        let Some(readers) = self.readers.as_ref() else {
            return CutObservation::default();
        };
        let mut requests = self.in_flight.len();
        let mut signal = false;
        for reader in readers {
            match reader.partial() {
                // The id is not complete yet, so it is not in the set.
                Some(Class::Request)
                    if reader
                        .message
                        .as_ref()
                        .is_some_and(|m| m.offset < MESSAGE_PREFIX) =>
                {
                    requests += 1;
                }
                Some(Class::Signal) => signal = true,
                _ => {}
            }
        }
        // What starts in the held bytes never reaches the other side.
        for (reader, held) in readers.iter().zip([held_to_server, held_to_client]) {
            let mut peek = reader.clone();
            let direction = reader.direction;
            peek.feed(held, &mut |event| {
                if let Event::Started(ty) = event {
                    match classify(direction, ty) {
                        Class::Request => requests += 1,
                        Class::Signal => signal = true,
                        Class::Reply | Class::Other => {}
                    }
                }
            });
        }
        CutObservation {
            observed: true,
            requests_in_flight: requests,
            signal_in_flight: signal,
            mid_frame: readers.iter().any(Reader::mid_frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    fn upgraded() -> Observer {
        let mut o = Observer::new();
        o.feed(
            Direction::ClientToServer,
            b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        );
        o.feed(
            Direction::ServerToClient,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        );
        o
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => out.push(m | n as u8),
            n @ 126..=65535 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&MASK);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    fn request(ty: u8, id: u64, len: usize) -> Vec<u8> {
        let mut p = vec![ty];
        p.extend_from_slice(&id.to_le_bytes());
        p.resize(9 + len, b'x');
        p
    }

    #[test]
    fn request_and_reply_byte_by_byte() {
        let mut o = upgraded();
        let req = frame(true, 2, &request(128, 42, 300), true);
        for b in &req {
            o.feed(Direction::ClientToServer, std::slice::from_ref(b));
        }
        assert_eq!(o.requests_in_flight().collect::<Vec<_>>(), vec![42]);
        let reply = frame(true, 2, &request(192, 42, 5), false);
        let (head, tail) = reply.split_at(reply.len() - 1);
        o.feed(Direction::ServerToClient, head);
        // The reply is not delivered until its last byte is.
        let cut = o.at_cut(&[], &[]);
        assert_eq!(cut.requests_in_flight, 1);
        assert!(cut.mid_frame);
        let done = o.feed(Direction::ServerToClient, tail);
        assert_eq!(done.replies, 1);
        let cut = o.at_cut(&[], &[]);
        assert_eq!(cut.requests_in_flight, 0);
        assert!(!cut.mid_frame);
    }

    #[test]
    fn fragmented_request_with_control_frames_between() {
        let mut o = upgraded();
        let payload = request(127, 9, 3);
        let mut bytes = frame(false, 2, &[], true); // empty first fragment
        bytes.extend(frame(false, 0, &payload[..1], true));
        bytes.extend(frame(true, 9, b"ping", true));
        bytes.extend(frame(false, 0, &payload[1..4], true));
        bytes.extend(frame(true, 10, b"", true));
        bytes.extend(frame(true, 0, &payload[4..], true));
        let done = o.feed(Direction::ClientToServer, &bytes);
        assert_eq!(done.requests, 1);
        assert_eq!(o.requests_in_flight().collect::<Vec<_>>(), vec![9]);
        assert!(o.is_observing());
    }

    #[test]
    fn partial_request_and_held_signal() {
        let mut o = upgraded();
        let req = frame(true, 2, &request(130, 1, 0), true);
        o.feed(Direction::ClientToServer, &req[..8]); // type and 1 id byte
        let signal = frame(true, 2, b"\x3f\x01ab", false);
        let cut = o.at_cut(&[], &signal[..3]);
        assert_eq!(cut.requests_in_flight, 1);
        assert!(cut.signal_in_flight);
        // Held bytes that stop before the type byte say nothing.
        assert!(!o.at_cut(&[], &signal[..2]).signal_in_flight);
        // A partly forwarded signal.
        o.feed(Direction::ServerToClient, &signal[..3]);
        assert!(o.at_cut(&[], &[]).signal_in_flight);
        o.feed(Direction::ServerToClient, &signal[3..]);
        assert!(!o.at_cut(&[], &[]).signal_in_flight);
    }

    #[test]
    fn held_request_counts() {
        let o = upgraded();
        let req = frame(true, 2, &request(127, 5, 0), true);
        assert_eq!(o.at_cut(&req, &[]).requests_in_flight, 1);
        assert_eq!(o.at_cut(&[], &[]).requests_in_flight, 0);
    }

    #[test]
    fn refused_upgrade_stops_observing() {
        let mut o = Observer::new();
        o.feed(Direction::ClientToServer, b"GET / HTTP/1.1\r\n\r\n");
        o.feed(Direction::ServerToClient, b"HTTP/1.1 403 Forbidden\r\n\r\n");
        assert!(!o.is_observing());
        assert_eq!(o.at_cut(&[], &[]), CutObservation::default());
    }

    #[test]
    fn reserved_opcode_and_compressed_frames_stop_observing() {
        for first in [0x83u8, 0xc2] {
            let mut o = upgraded();
            o.feed(Direction::ServerToClient, &[first, 0]);
            assert!(!o.is_observing());
        }
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let mut o = upgraded();
        let mut f = vec![0x82, 127];
        f.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        f.extend_from_slice(&[1, 2, 3]);
        o.feed(Direction::ServerToClient, &f);
        assert!(o.is_observing());
        assert!(o.at_cut(&[], &[]).mid_frame);
    }
}
