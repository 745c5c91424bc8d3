//! Runnable examples of `webwire-server` and `webwire-client`.
//!
//! Each example is a module with the server side (a [`MessageRouter`]) and the
//! client side, and a `run_demo` that starts both in one process on
//! 127.0.0.1 and returns what the clients got: the example binaries in
//! `examples/` print it, the tests in `tests/` check it.
//!
//! - [`echo`]: request-reply. `cargo run -p webwire-examples --example echo`
//! - [`pubsub`]: the server signals the subscribers of a topic.
//!   `cargo run -p webwire-examples --example pubsub`
//!
//! [`MessageRouter`]: webwire_server::MessageRouter

// The repository's README: its Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub mod echo;
pub mod pubsub;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use webwire_client::Payload;

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings only, so that
/// the examples' own output stays readable; try `RUST_LOG=debug`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A UTF-8 JSON payload, what the server's [`Json`](webwire_server::Json)
/// extractor reads. (The client takes payloads, not typed values, so the
/// examples serialize themselves.)
pub fn json_payload<T: Serialize>(value: &T) -> anyhow::Result<Payload> {
    Ok(Payload::utf8(serde_json::to_string(value)?))
}

/// A JSON reply (the server's [`Json`](webwire_server::Json) replies are
/// UTF-8 JSON) read as `T`.
pub fn from_json<T: DeserializeOwned>(payload: &Payload) -> anyhow::Result<T> {
    let text = payload.to_text().context("reply is not text")?;
    serde_json::from_str(&text).with_context(|| format!("unexpected reply {text:?}"))
}

/// A payload for people: its encoding and its text, or its bytes in hex.
///
/// ```
/// use webwire_client::Payload;
/// use webwire_examples::describe;
///
/// assert_eq!(describe(&Payload::utf16("hé")), r#"UTF-16 "hé""#);
/// assert_eq!(describe(&Payload::binary(vec![0, 255])), "binary [00 ff]");
/// ```
pub fn describe(payload: &Payload) -> String {
    use webwire_client::Encoding;
    let text = || match payload.to_text() {
        Ok(text) => format!("{text:?}"),
        Err(err) => format!("<{err}>"),
    };
    match payload.encoding() {
        Encoding::Utf8 => format!("UTF-8 {}", text()),
        Encoding::Utf16 => format!("UTF-16 {}", text()),
        Encoding::Binary => {
            let hex: Vec<String> = payload
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("binary [{}]", hex.join(" "))
        }
    }
}
