//! Decodes webwire messages given as hex and prints what they hold.
//!
//! ```text
//! cargo run -p webwire-proto --example inspect -- 800100000000000000046563686f6869
//! cargo run -p webwire-proto --example inspect -- --from-server 17020060ea000000200000
//! ```

use bytes::Bytes;
use webwire_proto::{ClientMessage, ServerMessage};

fn main() {
    let mut from_server = false;
    let mut status = 0;
    for arg in std::env::args().skip(1) {
        if arg == "--from-server" {
            from_server = true;
            continue;
        }
        let Some(frame) = decode_hex(&arg) else {
            eprintln!("{arg}: not an even number of hex digits");
            status = 2;
            continue;
        };
        let frame = Bytes::from(frame);
        let parsed = if from_server {
            ServerMessage::parse(frame).map(|m| format!("{m:#?}"))
        } else {
            ClientMessage::parse(frame).map(|m| format!("{m:#?}"))
        };
        match parsed {
            Ok(message) => println!("{arg}:\n{message}"),
            Err(err) => {
                println!("{arg}: malformed: {err}");
                status = 1;
            }
        }
    }
    std::process::exit(status);
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
