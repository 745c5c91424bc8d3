//! Feeds arbitrary bytes to both parsers. Whatever a parser accepts must
//! re-encode to exactly the same bytes, with `encoded_len` equal to their
//! length; reading the parts of an accepted message (text payloads, the
//! session JSON) must not panic either.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use webwire_proto::{ClientMessage, ServerMessage, Session};

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
            _ => {}
        }
    }

    // A signal reads the same from either side.
    if let (Ok(ClientMessage::Signal(a)), Ok(ServerMessage::Signal(b))) = (&client, &server) {
        assert_eq!(a, b);
    }
});
