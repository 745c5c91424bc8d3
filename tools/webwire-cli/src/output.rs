//! What goes to standard output: a reply's payload, signals as JSON lines.

use std::io::Write;

use base64::Engine;
use webwire_client::{Encoding, Payload};

/// Writes a reply: text payloads as text and a newline, binary ones raw
/// (or in base64 and a newline with `base64`).
pub(crate) fn write_reply(payload: &Payload, base64: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match payload.encoding() {
        Encoding::Binary if base64 => writeln!(out, "{}", encode(payload)),
        Encoding::Binary => out.write_all(payload.as_bytes()),
        Encoding::Utf8 | Encoding::Utf16 => writeln!(out, "{}", text(payload)),
    }?;
    out.flush()
}

/// Writes one signal as a JSON line and flushes it, so that a reader sees
/// each signal when it comes.
pub(crate) fn write_signal_line(name: &str, payload: &Payload) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", signal_json(name, payload))?;
    out.flush()
}

/// A signal's JSON line, its fields in this order.
#[derive(serde::Serialize)]
struct SignalLine<'a> {
    name: &'a str,
    /// `utf8`, `utf16` or `binary`.
    encoding: &'static str,
    /// The text, or the bytes in base64 for a binary payload.
    payload: String,
}

/// `{"name":…,"encoding":"utf8"|"utf16"|"binary","payload":…}`.
fn signal_json(name: &str, payload: &Payload) -> String {
    let (encoding, data) = match payload.encoding() {
        Encoding::Binary => ("binary", encode(payload)),
        Encoding::Utf8 => ("utf8", text(payload)),
        Encoding::Utf16 => ("utf16", text(payload)),
    };
    let line = SignalLine {
        name,
        encoding,
        payload: data,
    };
    // Strings only: serializing cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// A text payload as text; what is not valid text becomes U+FFFD.
fn text(payload: &Payload) -> String {
    match payload.to_text() {
        Ok(text) => text.into_owned(),
        Err(_) if payload.encoding() == Encoding::Utf16 => {
            let units = payload
                .as_bytes()
                .chunks(2)
                .map(|pair| u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        Err(_) => String::from_utf8_lossy(payload.as_bytes()).into_owned(),
    }
}

fn encode(payload: &Payload) -> String {
    base64::engine::general_purpose::STANDARD.encode(payload.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        assert_eq!(
            signal_json("pong", &Payload::utf16("héllo")),
            r#"{"name":"pong","encoding":"utf16","payload":"héllo"}"#
        );
        assert_eq!(
            signal_json("b", &Payload::binary(vec![0, 1, 0xfe, 0xff])),
            r#"{"name":"b","encoding":"binary","payload":"AAH+/w=="}"#
        );
    }

    #[test]
    fn invalid_text_is_replaced() {
        let utf16 = Payload::new(Encoding::Utf16, vec![0x3d, 0xd8, b'a', 0]).unwrap();
        assert_eq!(text(&utf16), "\u{fffd}a");
        let utf8 = Payload::new(Encoding::Utf8, vec![b'a', 0xff]).unwrap();
        assert_eq!(text(&utf8), "a\u{fffd}");
    }
}
