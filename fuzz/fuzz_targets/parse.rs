//! Feeds arbitrary bytes to both parsers. Whatever a parser accepts must
//! re-encode to exactly the same bytes, with `encoded_len` equal to their
//! length; reading the parts of an accepted message (text payloads, the
//! session JSON, the 2.1 messages' streams, keys and ids) must not panic
//! either.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use webwire_proto::{ClientMessage, ServerMessage, Session, StreamId};

/// Reads a stream id the way a client or server would.
fn read_stream(stream: &StreamId) {
    match stream {
        StreamId::Session => assert_eq!(stream.encoded_len(), 2),
        StreamId::Room(room) => {
            assert!(!room.as_str().is_empty());
            assert_eq!(room.as_str().len(), room.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let mut buf = BytesMut::new();

    let client = ClientMessage::parse(frame.clone());
    if let Ok(message) = &client {
        assert_eq!(message.encoded_len(), data.len(), "{message:?}");
        message.encode(&mut buf);
        assert_eq!(&buf[..], data, "{message:?}");
        match message {
            ClientMessage::Request(request) => drop(request.payload().to_text()),
            ClientMessage::Signal(signal) => drop(signal.payload().to_text()),
            ClientMessage::ExtensionHello(hello) => {
                assert_eq!(hello.instance_id().as_str().len(), hello.instance_id().len());
                drop(hello.flags().to_string());
            }
            ClientMessage::StreamResume(resume) => {
                assert!(resume.positions().len() <= webwire_proto::MAX_RESUME_STREAMS);
                for position in resume.positions() {
                    read_stream(&position.stream);
                }
            }
            ClientMessage::KeyedRequest(keyed) => {
                assert!(keyed.key().seq >= 1);
                assert!(keyed.message_type().is_extension());
                drop(keyed.request().payload().to_text());
            }
            _ => {}
        }
    }

    let server = ServerMessage::parse(frame);
    if let Ok(message) = &server {
        assert_eq!(message.encoded_len(), data.len(), "{message:?}");
        buf.clear();
        message.encode(&mut buf);
        assert_eq!(&buf[..], data, "{message:?}");
        match message {
            ServerMessage::Reply(reply) => drop(reply.payload.to_text()),
            ServerMessage::Error(error) => drop(error.message_text()),
            ServerMessage::Signal(signal) => drop(signal.payload().to_text()),
            ServerMessage::SessionCreated(json) => {
                if let Ok(session) = Session::from_json(json) {
                    drop(session.to_json());
                }
            }
            ServerMessage::StreamSignal(signal) => {
                read_stream(signal.stream());
                drop(signal.signal().payload().to_text());
                // What a 2.0 connection gets instead is a valid signal too.
                let plain = ServerMessage::Signal(signal.signal().clone()).to_bytes();
                assert!(ServerMessage::parse(plain).is_ok());
            }
            ServerMessage::StreamLoss(loss) => {
                read_stream(&loss.stream);
                assert!((1..=4).contains(&loss.reason.byte()));
            }
            ServerMessage::ExtensionAccept(accept) => drop(accept.flags.to_string()),
            _ => {}
        }
    }

    // A signal reads the same from either side.
    if let (Ok(ClientMessage::Signal(a)), Ok(ServerMessage::Signal(b))) = (&client, &server) {
        assert_eq!(a, b);
    }
});
