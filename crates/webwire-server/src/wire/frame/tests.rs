//! The framing rules one by one, and (proptest) that any split of a valid
//! stream decodes to the same messages and that no input panics.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// A client frame: FIN as given, masked with `mask`, the length in its
/// shortest encoding.
pub(crate) fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | op];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, op, payload, [1, 2, 3, 4])
}

/// Everything `bytes` decodes to, up to the first error.
fn decode_all(max: usize, bytes: &[u8]) -> (Vec<Incoming>, Option<FrameError>) {
    let mut decoder = Decoder::new(max);
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut src) {
            Ok(Some(incoming)) => out.push(incoming),
            Ok(None) => return (out, None),
            Err(err) => return (out, Some(err)),
        }
    }
}

fn error_of(bytes: &[u8]) -> FrameError {
    decode_all(1 << 20, bytes).1.expect("an error")
}

fn binary(payload: &[u8]) -> Incoming {
    Incoming::Binary(Bytes::copy_from_slice(payload))
}

#[test]
fn a_binary_message_is_unmasked_and_the_buffer_left_empty() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let bytes = client_frame(true, opcode::BINARY, &payload, [0xde, 0xad, 0xbe, 0xef]);
    let mut decoder = Decoder::new(4096);
    let mut src = BytesMut::from(&bytes[..]);
    assert_eq!(decoder.decode(&mut src).unwrap(), Some(binary(&payload)));
    assert!(src.is_empty());
    assert_eq!(decoder.decode(&mut src).unwrap(), None);
}

#[test]
fn lengths_7_16_and_64_bit() {
    for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 200_000] {
        let payload = vec![7u8; len];
        let (out, err) = decode_all(1 << 20, &frame(opcode::BINARY, &payload));
        assert_eq!(err, None, "{len}");
        assert_eq!(out, vec![binary(&payload)], "{len}");
    }
}

#[test]
fn lengths_must_use_the_shortest_encoding() {
    // 125 bytes in the 16-bit form.
    let mut bytes = vec![0x82, 0x80 | 126, 0, 125, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0; 125]);
    assert_eq!(error_of(&bytes), ProtocolError::InvalidPayloadLength.into());
    // 65 535 bytes in the 64-bit form: refused at the header.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&0xFFFFu64.to_be_bytes());
    assert_eq!(error_of(&bytes), ProtocolError::InvalidPayloadLength.into());
}

#[test]
fn unmasked_client_frames_are_refused() {
    assert_eq!(
        error_of(&[0x82, 0x01, b'x']),
        ProtocolError::UnexpectedUnmaskedFrame.into()
    );
}

#[test]
fn reserved_bits_are_refused() {
    for rsv in [0x40, 0x20, 0x10] {
        let mut bytes = frame(opcode::BINARY, b"x");
        bytes[0] |= rsv;
        assert_eq!(
            error_of(&bytes),
            ProtocolError::InvalidRsv.into(),
            "{rsv:#x}"
        );
    }
}

#[test]
fn reserved_opcodes_are_refused() {
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        assert_eq!(
            error_of(&frame(op, b"")),
            ProtocolError::InvalidOpcode.into(),
            "{op:#x}"
        );
    }
}

#[test]
fn fragments_are_joined_with_control_frames_between_them() {
    let mut bytes = client_frame(false, opcode::BINARY, b"one ", [9, 8, 7, 6]);
    bytes.extend(frame(opcode::PING, b"hi"));
    bytes.extend(client_frame(
        false,
        opcode::CONTINUATION,
        b"two ",
        [5, 5, 5, 5],
    ));
    bytes.extend(frame(opcode::PONG, b""));
    bytes.extend(client_frame(
        true,
        opcode::CONTINUATION,
        b"three",
        [0, 1, 0, 1],
    ));
    bytes.extend(frame(opcode::BINARY, b"next"));
    let (out, err) = decode_all(1024, &bytes);
    assert_eq!(err, None);
    assert_eq!(
        out,
        vec![
            Incoming::Ping(Bytes::from_static(b"hi")),
            Incoming::Pong,
            binary(b"one two three"),
            binary(b"next"),
        ]
    );
}

#[test]
fn a_continuation_without_a_message_is_refused() {
    assert_eq!(
        error_of(&frame(opcode::CONTINUATION, b"x")),
        ProtocolError::InvalidOpcode.into()
    );
}

#[test]
fn a_new_message_inside_a_fragmented_one_is_refused() {
    for op in [opcode::BINARY, opcode::TEXT] {
        let mut bytes = client_frame(false, opcode::BINARY, b"a", [1, 1, 1, 1]);
        bytes.extend(frame(op, b"b"));
        assert_eq!(error_of(&bytes), ProtocolError::InvalidOpcode.into());
    }
}

#[test]
fn control_frames_are_not_fragmented_and_at_most_125_bytes() {
    for op in [opcode::PING, opcode::PONG, opcode::CLOSE] {
        assert_eq!(
            error_of(&client_frame(false, op, b"", [0; 4])),
            ProtocolError::FragmentedControlFrame.into()
        );
        let payload = [b'a'; 126];
        let mut ok = vec![0x03, 0xE8];
        ok.extend_from_slice(&[b'a'; 123]);
        assert_eq!(decode_all(1024, &frame(op, &ok)).1, None, "{op}: 125 bytes");
        assert_eq!(
            error_of(&frame(op, &payload)),
            ProtocolError::InvalidPayloadLength.into()
        );
    }
}

#[test]
fn a_ping_gives_its_payload_for_the_pong() {
    let (out, _) = decode_all(1024, &frame(opcode::PING, &[b'p'; 125]));
    assert_eq!(out, vec![Incoming::Ping(Bytes::from(vec![b'p'; 125]))]);
}

#[test]
fn close_codes_and_reasons() {
    let close = |payload: &[u8]| decode_all(1024, &frame(opcode::CLOSE, payload));
    assert_eq!(
        close(b"").0,
        vec![Incoming::Close {
            code: 1005,
            reason: String::new()
        }]
    );
    let mut bytes = 1000u16.to_be_bytes().to_vec();
    bytes.extend_from_slice("bye ✓".as_bytes());
    assert_eq!(
        close(&bytes).0,
        vec![Incoming::Close {
            code: 1000,
            reason: "bye ✓".into()
        }]
    );
    for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
        assert_eq!(close(&u16::to_be_bytes(code)).1, None, "{code}");
    }
    for code in [
        0,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2000,
        2999,
        5000,
        u16::MAX,
    ] {
        assert_eq!(
            close(&u16::to_be_bytes(code)).1,
            Some(ProtocolError::InvalidCloseCode.into()),
            "{code}"
        );
    }
    assert_eq!(
        close(&[0x03]).1,
        Some(ProtocolError::InvalidPayloadLength.into())
    );
    let err = close(&[0x03, 0xE8, 0xC3, 0x28]).1.unwrap();
    assert_eq!(err, ProtocolError::InvalidUtf8.into());
    assert_eq!(err.close_frame().unwrap().0, 1007);
}

#[test]
fn the_size_limit_counts_the_whole_message() {
    assert_eq!(decode_all(64, &frame(opcode::BINARY, &[0; 64])).1, None);
    let err = error_of_max(64, &frame(opcode::BINARY, &[0; 65]));
    assert_eq!(err, FrameError::TooBig { len: 65, max: 64 });
    assert_eq!(err.close_frame(), Some((1009, "max length: 64".to_owned())));
    // Refused at the header, before the payload arrived.
    let header = &frame(opcode::BINARY, &[0; 1000])[..8];
    assert_eq!(
        error_of_max(64, header),
        FrameError::TooBig { len: 1000, max: 64 }
    );
    // A control frame counts too (as it did with tokio-websockets).
    assert_eq!(
        error_of_max(16, &frame(opcode::PING, &[0; 17])),
        FrameError::TooBig { len: 17, max: 16 }
    );
}

#[test]
fn fragments_over_the_limit_drop_the_message_and_the_stream_reads_on() {
    // In fragments of 40 bytes: the second one makes 80.
    let mut bytes = client_frame(false, opcode::BINARY, &[0; 40], [0; 4]);
    bytes.extend(client_frame(false, opcode::CONTINUATION, &[0; 40], [0; 4]));
    bytes.extend(client_frame(false, opcode::CONTINUATION, &[0; 40], [0; 4]));
    bytes.extend(frame(opcode::PING, b"p"));
    bytes.extend(client_frame(true, opcode::CONTINUATION, &[0; 40], [0; 4]));
    bytes.extend(frame(opcode::CLOSE, &1000u16.to_be_bytes()));
    let mut decoder = Decoder::new(64);
    let mut src = BytesMut::from(&bytes[..]);
    let err = decoder.decode(&mut src).unwrap_err();
    assert_eq!(err, FrameError::FragmentsTooBig { len: 80, max: 64 });
    assert_eq!(err.close_frame(), None, "the server closes, not the stream");
    // The rest of the message is skipped; what follows is read.
    assert_eq!(
        decoder.decode(&mut src).unwrap(),
        Some(Incoming::Ping(Bytes::from_static(b"p")))
    );
    assert_eq!(
        decoder.decode(&mut src).unwrap(),
        Some(Incoming::Close {
            code: 1000,
            reason: String::new()
        })
    );
    assert!(src.is_empty());
}

fn error_of_max(max: usize, bytes: &[u8]) -> FrameError {
    decode_all(max, bytes).1.expect("an error")
}

#[test]
fn a_text_message_is_reported_at_its_first_frame_and_skipped() {
    let mut bytes = client_frame(false, opcode::TEXT, b"\xff\xfe not utf-8", [3; 4]);
    bytes.extend(client_frame(true, opcode::CONTINUATION, b"rest", [4; 4]));
    bytes.extend(frame(opcode::BINARY, b"after"));
    let (out, err) = decode_all(1024, &bytes);
    assert_eq!(err, None);
    assert_eq!(out, vec![Incoming::Text, binary(b"after")]);
}

#[test]
fn protocol_errors_close_with_1002() {
    for err in [
        ProtocolError::FragmentedControlFrame,
        ProtocolError::InvalidCloseCode,
        ProtocolError::InvalidOpcode,
        ProtocolError::InvalidPayloadLength,
        ProtocolError::InvalidRsv,
        ProtocolError::UnexpectedUnmaskedFrame,
    ] {
        let (code, reason) = FrameError::from(err).close_frame().unwrap();
        assert_eq!((code, reason), (1002, err.to_string()));
    }
}

#[test]
fn wanted_is_the_whole_frame_once_its_header_arrived() {
    let bytes = frame(opcode::BINARY, &[1; 70_000]);
    let mut decoder = Decoder::new(1 << 20);
    let mut src = BytesMut::from(&bytes[..5]);
    assert_eq!(decoder.decode(&mut src).unwrap(), None);
    assert_eq!(decoder.wanted(), 0, "the 64-bit length is not complete");
    src.extend_from_slice(&bytes[5..100]);
    assert_eq!(decoder.decode(&mut src).unwrap(), None);
    assert_eq!(decoder.wanted(), bytes.len());
    src.extend_from_slice(&bytes[100..]);
    assert!(decoder.decode(&mut src).unwrap().is_some());
    assert_eq!(decoder.wanted(), 0);
}

#[test]
fn server_headers_use_the_shortest_length() {
    for (len, expected) in [
        (0, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0, 126]),
        (0xFFFF, vec![0x82, 126, 0xFF, 0xFF]),
        (0x1_0000, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let mut buf = BytesMut::new();
        put_header(&mut buf, opcode::BINARY, len);
        assert_eq!(&buf[..], &expected[..], "{len}");
        assert_eq!(header_len(len), expected.len());
    }
}

#[test]
fn close_reasons_are_cut_to_fit_a_control_frame() {
    let reason = "é".repeat(100); // 200 bytes
    let mut buf = BytesMut::new();
    put_close(&mut buf, 1009, &reason);
    assert_eq!(buf[0], 0x88);
    let len = usize::from(buf[1]);
    assert!(len <= 125, "{len}");
    assert_eq!(&buf[2..4], &1009u16.to_be_bytes());
    assert!(std::str::from_utf8(&buf[4..]).is_ok());
    assert_eq!(buf.len(), 2 + len);
}

#[test]
fn unmasking_matches_bytewise_xor_at_every_length() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for len in 0..100 {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut fast = data.clone();
        unmask(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow, "{len}");
    }
}

/// What a client sends, for the property tests.
#[derive(Debug, Clone)]
enum Sent {
    /// A binary message in fragments of these sizes (at least one).
    Binary(Vec<u8>, Vec<usize>),
    Ping(Vec<u8>),
    Pong,
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..3000), proptest::collection::vec(0usize..1500, 0..4))
            .prop_map(|(payload, cuts)| Sent::Binary(payload, cuts)),
        1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Ping),
        1 => Just(Sent::Pong),
    ]
}

/// Encodes the messages (a ping between the first two fragments of a
/// fragmented message), and what they decode to.
fn encode(messages: &[Sent], mask: [u8; 4]) -> (Vec<u8>, Vec<Incoming>) {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for message in messages {
        match message {
            Sent::Binary(payload, cuts) => {
                let mut parts = Vec::new();
                let mut rest = &payload[..];
                for &cut in cuts {
                    let cut = cut.min(rest.len());
                    parts.push(&rest[..cut]);
                    rest = &rest[cut..];
                }
                parts.push(rest);
                let last = parts.len() - 1;
                for (i, part) in parts.iter().enumerate() {
                    let op = if i == 0 {
                        opcode::BINARY
                    } else {
                        opcode::CONTINUATION
                    };
                    bytes.extend(client_frame(i == last, op, part, mask));
                    if i == 0 && last > 0 {
                        bytes.extend(client_frame(true, opcode::PING, b"mid", mask));
                        expected.push(Incoming::Ping(Bytes::from_static(b"mid")));
                    }
                }
                expected.push(binary(payload));
            }
            Sent::Ping(payload) => {
                bytes.extend(client_frame(true, opcode::PING, payload, mask));
                expected.push(Incoming::Ping(Bytes::copy_from_slice(payload)));
            }
            Sent::Pong => {
                bytes.extend(client_frame(true, opcode::PONG, b"", mask));
                expected.push(Incoming::Pong);
            }
        }
    }
    (bytes, expected)
}

proptest! {
    #[test]
    fn any_split_of_the_stream_decodes_the_same(
        messages in proptest::collection::vec(sent(), 1..8),
        mask in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(1usize..600, 0..40),
    ) {
        let (bytes, expected) = encode(&messages, mask);
        let mut decoder = Decoder::new(1 << 20);
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            src.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(incoming) = decoder.decode(&mut src).unwrap() {
                out.push(incoming);
            }
            if decoder.wanted() > 0 {
                prop_assert!(decoder.wanted() > src.len());
            }
        }
        prop_assert!(src.is_empty());
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..300) {
        let mut decoder = Decoder::new(max);
        let mut src = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode(&mut src) {}
    }

    #[test]
    fn mutated_frames_are_decoded_or_refused_never_panic(
        messages in proptest::collection::vec(sent(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (mut bytes, _) = encode(&messages, [1, 2, 3, 4]);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let mut decoder = Decoder::new(4096);
        let mut src = BytesMut::from(&bytes[..]);
        while let Ok(Some(incoming)) = decoder.decode(&mut src) {
            if let Incoming::Binary(payload) = incoming {
                prop_assert!(payload.len() <= 4096);
            }
        }
    }
}
