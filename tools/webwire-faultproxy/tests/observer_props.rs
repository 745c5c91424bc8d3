//! Properties of the observer: any input is survived, and well-formed
//! traffic, however it is framed and chunked, is counted exactly.

use std::collections::BTreeSet;

use proptest::prelude::*;
use webwire_faultproxy::{Direction, Observer};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

fn direction(up: bool) -> Direction {
    if up {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes, raw or after a valid upgrade, in random chunks and
    /// directions, with random held bytes at the cut: no panic, and the
    /// answers stay coherent.
    #[test]
    fn any_bytes_never_panic(
        upgrade in any::<bool>(),
        chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)), 0..64),
        held in (prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        let mut o = Observer::new();
        if upgrade {
            o.feed(Direction::ClientToServer, REQUEST);
            o.feed(Direction::ServerToClient, RESPONSE);
        }
        for (up, bytes) in &chunks {
            o.feed(direction(*up), bytes);
            let cut = o.at_cut(&held.0, &held.1);
            prop_assert_eq!(cut.observed, o.is_observing());
            if !cut.observed {
                prop_assert_eq!(cut.requests_in_flight, 0);
            } else {
                prop_assert!(cut.requests_in_flight >= o.requests_in_flight().count());
            }
        }
    }
}

/// One step of a well-formed exchange.
#[derive(Debug, Clone)]
enum Op {
    /// A client request of the given type (one with an id) and id.
    Request(u8, u64, usize),
    /// The reply (of the given type) to the n-th request not yet answered.
    Reply(u8, usize),
    /// A signal either way with a payload length.
    Signal(bool, u8, usize),
    /// Some other message (a heartbeat, a notification).
    Other(bool, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            prop::sample::select(vec![127u8, 128, 129, 130, 131, 132, 31, 32, 35]),
            0..20u64,
            0..40usize
        )
            .prop_map(|(t, id, n)| Op::Request(t, id, n)),
        (
            prop::sample::select(vec![191u8, 192, 193, 0, 1, 2, 3, 4, 5, 6]),
            0..8usize
        )
            .prop_map(|(t, n)| Op::Reply(t, n)),
        (any::<bool>(), 63..=68u8, 0..300usize).prop_map(|(up, t, n)| Op::Signal(up, t, n)),
        (
            any::<bool>(),
            prop::sample::select(vec![21u8, 22, 23, 24, 25, 33, 34])
        )
            .prop_map(|(up, t)| Op::Other(up, t)),
    ]
}

/// Frames `payload` as one message in fragments of `fragment` bytes, with a
/// ping after the first fragment when `ping`; masked when `up`.
fn frames(up: bool, payload: &[u8], fragment: usize, ping: bool, mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(fragment).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let fin = i + 1 == pieces.len();
        let opcode = if i == 0 { 2 } else { 0 };
        push_frame(&mut out, up, fin, opcode, piece, mask);
        if ping && i == 0 && !fin {
            push_frame(&mut out, up, true, 9, b"hb", mask);
        }
    }
    out
}

fn push_frame(out: &mut Vec<u8>, up: bool, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(u8::from(fin) << 7 | opcode);
    let m = if up { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if up {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Requests stay in flight exactly until their reply's last byte, the
    /// completed counts match, whatever the fragmentation and chunking.
    #[test]
    fn well_formed_traffic_is_counted_exactly(
        ops in prop::collection::vec(op(), 0..40),
        fragment in 1..12usize,
        ping in any::<bool>(),
        mask in any::<[u8; 4]>(),
        chunk in 1..50usize,
    ) {
        let mut o = Observer::new();
        o.feed(Direction::ClientToServer, REQUEST);
        o.feed(Direction::ServerToClient, RESPONSE);
        let mut pending: Vec<u64> = Vec::new();
        let (mut requests, mut replies, mut signals) = (0, 0, 0);
        let mut done = (0, 0, 0);
        for op in ops {
            let is_reply = matches!(op, Op::Reply(..));
            let (up, payload) = match op {
                Op::Request(t, id, n) => {
                    // Ids are unique per connection, as webwire requires.
                    if pending.contains(&id) {
                        continue;
                    }
                    pending.push(id);
                    requests += 1;
                    let mut p = vec![t];
                    p.extend_from_slice(&id.to_le_bytes());
                    p.resize(9 + n, 7);
                    (true, p)
                }
                Op::Reply(t, n) => {
                    if pending.is_empty() {
                        continue;
                    }
                    let id = pending.remove(n % pending.len());
                    replies += 1;
                    let mut p = vec![t];
                    p.extend_from_slice(&id.to_le_bytes());
                    (false, p)
                }
                Op::Signal(up, t, n) => {
                    signals += 1;
                    let mut p = vec![t, 0];
                    p.resize(2 + n, 1);
                    (up, p)
                }
                Op::Other(up, t) => (up, vec![t]),
            };
            let bytes = frames(up, &payload, fragment, ping, mask);
            let (head, last) = bytes.split_at(bytes.len() - 1);
            for c in head.chunks(chunk) {
                let got = o.feed(direction(up), c);
                done = (done.0 + got.requests, done.1 + got.replies, done.2 + got.signals);
            }
            // One byte short: a reply does not count yet, its request is
            // still in flight, and the cut lands mid-frame.
            let cut = o.at_cut(&[], &[]);
            prop_assert!(cut.mid_frame);
            let signal_started = payload.first().is_some_and(|t| (63..=68).contains(t)) && bytes.len() > 1;
            prop_assert_eq!(cut.signal_in_flight, signal_started);
            let in_flight_before = pending.len() + usize::from(is_reply);
            prop_assert_eq!(cut.requests_in_flight, in_flight_before);
            let got = o.feed(direction(up), last);
            done = (done.0 + got.requests, done.1 + got.replies, done.2 + got.signals);
            let set: BTreeSet<u64> = o.requests_in_flight().collect();
            prop_assert_eq!(set, pending.iter().copied().collect::<BTreeSet<u64>>());
            let cut = o.at_cut(&[], &[]);
            prop_assert!(!cut.mid_frame && !cut.signal_in_flight);
        }
        prop_assert!(o.is_observing());
        prop_assert_eq!(done, (requests, replies, signals));
    }
}
