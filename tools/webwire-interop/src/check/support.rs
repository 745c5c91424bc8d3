//! What the checks share: connecting clients the way docs/interop.md asks,
//! requests with readable failures, payload comparison, waiting for events.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use webwire_client::{Client, ClientBuilder, ClientEvent, Encoding, Events, Payload, RequestError};

/// The sub-protocol name of the interop server.
pub(crate) const SUB_PROTOCOL: &str = "interop";
/// How long one request may take (checks that wait longer say so).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a signal or notification that should come.
pub(crate) const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest reason printed; longer ones are cut.
const MAX_REASON: usize = 400;

/// Why a check failed: one line of text.
///
/// ```
/// use webwire_interop::check::Failure;
///
/// let failure = Failure::new("expected \"ok\",\ngot \"no\"");
/// assert_eq!(failure.to_string(), "expected \"ok\", got \"no\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(String);

impl Failure {
    /// A failure with this reason (newlines become spaces, long reasons are cut).
    pub fn new(reason: impl Into<String>) -> Self {
        let reason: String = reason.into();
        let mut line: String = reason
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if line.chars().count() > MAX_REASON {
            line = line.chars().take(MAX_REASON).collect::<String>() + "...";
        }
        Self(line)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fails the check with a formatted reason unless the condition holds.
macro_rules! ensure {
    ($cond:expr_2021, $($reason:tt)+) => {
        if !$cond {
            return Err($crate::check::support::Failure::new(format!($($reason)+)));
        }
    };
}
pub(crate) use ensure;

/// Adds what was being done to an error.
pub(crate) trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T, Failure>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|err| Failure::new(format!("{what}: {err}")))
    }
}

/// What a check gets: the server's URL, and where it leaves a note for
/// its result line.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    url: String,
    note: Arc<Mutex<Option<String>>>,
}

impl Ctx {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            note: Arc::default(),
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// What the check measured or saw, shown after its result
    /// (`PASS name (note)`); a later note replaces an earlier one.
    pub(crate) fn note(&self, note: impl Into<String>) {
        *self.note.lock().unwrap_or_else(PoisonError::into_inner) = Some(note.into());
    }

    /// The note left by the check, if any.
    pub(crate) fn take_note(&self) -> Option<String> {
        self.note
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A client builder with the interop sub-protocol and short timeouts.
    pub(crate) fn builder(&self) -> ClientBuilder {
        self.builder_for(&self.url)
    }

    /// The same for another URL.
    pub(crate) fn builder_for(&self, url: &str) -> ClientBuilder {
        Client::builder(url)
            .sub_protocol(SUB_PROTOCOL)
            .dial_timeout(REQUEST_TIMEOUT)
            .request_timeout(REQUEST_TIMEOUT)
            .reconnect_interval(Duration::from_millis(50))
            .max_reconnect_interval(Duration::from_millis(500))
            .close_timeout(Duration::from_secs(2))
    }

    /// The server's URL with `path` (no leading slash, may have a query)
    /// appended to its path.
    pub(crate) fn url_with_path(&self, path: &str) -> String {
        // The URL's own query, if any, is dropped.
        let base = self
            .url
            .split_once('?')
            .map_or(self.url.as_str(), |(base, _)| base);
        let slash = if base.ends_with('/') { "" } else { "/" };
        format!("{base}{slash}{path}")
    }

    /// A connected client and its events (from the start).
    pub(crate) async fn client(&self) -> Result<(Client, Events), Failure> {
        let client = self
            .builder()
            .connect()
            .await
            .context(format_args!("connecting to {}", self.url))?;
        let events = client.events();
        Ok((client, events))
    }
}

/// A request that must succeed.
pub(crate) async fn request(
    client: &Client,
    name: &str,
    payload: impl Into<Payload>,
) -> Result<Payload, Failure> {
    client
        .request(name, payload)
        .await
        .context(format_args!("request {name:?}"))
}

/// A request whose reply must be the UTF-8 text `expected`.
pub(crate) async fn expect_text(
    client: &Client,
    name: &str,
    payload: impl Into<Payload>,
    expected: &str,
) -> Result<(), Failure> {
    let reply = request(client, name, payload).await?;
    same(
        &format!("reply to {name:?}"),
        &reply,
        &Payload::utf8(expected),
    )
}

/// A request that must fail with `expected` (compared with `==`).
pub(crate) async fn expect_error(
    client: &Client,
    name: &str,
    payload: impl Into<Payload>,
    expected: &RequestError,
) -> Result<(), Failure> {
    match client.request(name, payload).await {
        Ok(reply) => Err(Failure::new(format!(
            "request {name:?}: expected the error \"{expected}\", got the reply {}",
            describe(&reply)
        ))),
        Err(err) => {
            ensure!(
                &err == expected,
                "request {name:?}: expected the error \"{expected}\", got \"{err}\""
            );
            Ok(())
        }
    }
}

/// A request that must fail with a request error of this code; returns its message.
pub(crate) async fn expect_code(
    client: &Client,
    name: &str,
    payload: impl Into<Payload>,
    code: &str,
) -> Result<String, Failure> {
    match client.request(name, payload).await {
        Ok(reply) => Err(Failure::new(format!(
            "request {name:?}: expected an error reply with code {code}, got the reply {}",
            describe(&reply)
        ))),
        Err(RequestError::Request { code: got, message }) => {
            ensure!(
                got == code,
                "request {name:?}: expected the error code {code}, got {got} ({message:?})"
            );
            Ok(message)
        }
        Err(err) => Err(Failure::new(format!(
            "request {name:?}: expected an error reply with code {code}, got \"{err}\""
        ))),
    }
}

/// The encoding's name as docs/interop.md and the TypeScript client say it.
pub(crate) fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Binary => "binary",
        Encoding::Utf8 => "utf8",
        Encoding::Utf16 => "utf16",
    }
}

/// A payload for a failure message: encoding, length, and the start of it.
pub(crate) fn describe(payload: &Payload) -> String {
    const SHOWN: usize = 40;
    let encoding = encoding_name(payload.encoding());
    let len = payload.len();
    match payload.to_text() {
        Ok(text) if payload.encoding() != Encoding::Binary || len <= SHOWN => {
            let shown: String = text.chars().take(SHOWN).collect();
            let cut = if shown.len() < text.len() { "..." } else { "" };
            format!("{encoding} {shown:?}{cut} ({len} bytes)")
        }
        _ => {
            let bytes = &payload.as_bytes()[..len.min(SHOWN)];
            let cut = if len > SHOWN { " ..." } else { "" };
            format!("{encoding} {bytes:?}{cut} ({len} bytes)")
        }
    }
}

/// Fails unless `got` has the expected encoding and bytes.
pub(crate) fn same(what: &str, got: &Payload, expected: &Payload) -> Result<(), Failure> {
    if got.encoding() == expected.encoding() && got.as_bytes() == expected.as_bytes() {
        return Ok(());
    }
    let mut reason = format!(
        "{what}: expected {}, got {}",
        describe(expected),
        describe(got)
    );
    if got.len() == expected.len()
        && got.encoding() == expected.encoding()
        && let Some(at) = got
            .as_bytes()
            .iter()
            .zip(expected.as_bytes().iter())
            .position(|(a, b)| a != b)
    {
        reason.push_str(&format!(", first difference at byte {at}"));
    }
    Err(Failure::new(reason))
}

/// Waits for the first event that `want` picks, skipping the others.
pub(crate) async fn wait_event<T>(
    events: &mut Events,
    what: &str,
    mut want: impl FnMut(&ClientEvent) -> Option<T>,
) -> Result<T, Failure> {
    let wait = async {
        while let Some(event) = events.recv().await {
            if let Some(found) = want(&event) {
                return Ok(found);
            }
        }
        Err(Failure::new(format!(
            "waiting for {what}: the client's events ended"
        )))
    };
    match tokio::time::timeout(EVENT_TIMEOUT, wait).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(format!(
            "{what} did not arrive within {EVENT_TIMEOUT:?}"
        ))),
    }
}

/// The events already received, without waiting.
pub(crate) fn drain(events: &mut Events) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(event);
    }
    seen
}

/// A payload unique to this run, so that checks running at the same time
/// against the same server (broadcasts reach everybody) are told apart.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(Failure::new("a\n  b\r\nc").to_string(), "a b c");
        let long = Failure::new("x".repeat(1000)).to_string();
        assert_eq!(long.chars().count(), MAX_REASON + 3);
    }

    #[test]
    fn payload_comparison() {
        assert!(same("r", &Payload::utf8("a"), &Payload::utf8("a")).is_ok());
        let err = same("r", &Payload::utf16("a"), &Payload::utf8("a")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"r: expected utf8 "a" (1 bytes), got utf16 "a" (2 bytes)"#
        );
        let err = same("r", &Payload::utf8("abd"), &Payload::utf8("abc")).unwrap_err();
        assert!(
            err.to_string().ends_with("first difference at byte 2"),
            "{err}"
        );
        let big = Payload::binary(vec![0xff; 1000]);
        assert!(describe(&big).ends_with("... (1000 bytes)"));
    }

    #[test]
    fn paths() {
        let ctx = Ctx::new("ws://h:1/");
        assert_eq!(ctx.url_with_path("a/b?c=1"), "ws://h:1/a/b?c=1");
        assert_eq!(Ctx::new("ws://h:1").url_with_path("x"), "ws://h:1/x");
        assert_eq!(
            Ctx::new("ws://h:1/ws?t=1").url_with_path("x"),
            "ws://h:1/ws/x"
        );
    }

    #[test]
    fn unique_payloads() {
        assert_ne!(unique("a"), unique("a"));
    }
}
