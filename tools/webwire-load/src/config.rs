//! What a run does: [`LoadConfig`] for request and signal load,
//! [`ConnectConfig`] for idle connections.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use webwire_proto::Name;

use crate::LoadError;

/// What the load generator sends.
///
/// ```
/// use webwire_load::Mode;
///
/// assert_eq!("signal".parse::<Mode>()?, Mode::Signal);
/// assert_eq!(Mode::Request.to_string(), "request");
/// # Ok::<(), webwire_load::LoadError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Requests, each answered by one reply with the same id.
    #[default]
    Request,
    /// `ping` signals, each answered by a `pong` signal carrying the same
    /// payload (see docs/interop.md).
    Signal,
    /// webwire 2.1 keyed requests (docs/protocol.md 14.4): each connection
    /// opts in with `KEYED_REQUESTS`, logs in (a session) and sends its
    /// requests as KeyedRequests with consecutive seqs and a cumulative
    /// ack. Compared against [`Mode::Request`] on the same server.
    Keyed,
    /// webwire 2.1 history-room stream signals (docs/protocol.md 14.3):
    /// each connection opts in with `STREAMS`, logs in, joins a history
    /// room of its own and sends `room-ping` signals, each answered by a
    /// `room-pong` StreamSignal on the room's stream (offsets checked to
    /// follow each other). Compared against [`Mode::Signal`].
    Hist,
}

impl Mode {
    /// `"request"` or `"signal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Signal => "signal",
            Self::Keyed => "keyed",
            Self::Hist => "hist",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "request" => Ok(Self::Request),
            "signal" => Ok(Self::Signal),
            "keyed" => Ok(Self::Keyed),
            "hist" => Ok(Self::Hist),
            other => Err(LoadError::Config(format!(
                "unknown mode `{other}` (expected `request`, `signal`, `keyed` or `hist`)"
            ))),
        }
    }
}

/// A request or signal load run: see [`run`](crate::run).
///
/// Build it with [`LoadConfig::new`] and change the public fields.
///
/// ```
/// use std::time::Duration;
/// use webwire_load::{LoadConfig, Mode};
///
/// let mut config = LoadConfig::new("ws://127.0.0.1:9090/");
/// config.conns = 64;
/// config.inflight = 16;
/// config.mode = Mode::Request;
/// assert_eq!(config.size, 16);
/// assert_eq!(config.duration, Duration::from_secs(5));
/// config.validate()?;
/// # Ok::<(), webwire_load::LoadError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadConfig {
    /// The server, `ws://HOST:PORT/PATH`.
    pub url: String,
    /// Number of connections (default 1).
    pub conns: usize,
    /// Requests (or signals) outstanding per connection (default 1): each
    /// answer is followed by a new request at once.
    pub inflight: usize,
    /// Payload size in bytes (default 16). The first 8 bytes carry a
    /// counter unique within the run (fewer when the payload is shorter).
    pub size: usize,
    /// Measured time (default 5 s).
    pub duration: Duration,
    /// Time under load before measuring starts (default 1 s).
    pub warmup: Duration,
    /// How long to wait for the replies still outstanding when the measured
    /// time is over (default 2 s); what is still missing then is
    /// unanswered.
    pub grace: Duration,
    /// Requests or `ping` signals.
    pub mode: Mode,
    /// The requests' name; `None` (the default) sends requests without a
    /// name, which the interop server echoes.
    pub name: Option<Name>,
    /// The server is a raw WebSocket echo: it sends no AcceptConf and
    /// answers every message with the message itself, so the echoed request
    /// (or `ping` signal) is the reply.
    pub raw_echo: bool,
    /// The server's process id, to report its CPU time per operation.
    pub server_pid: Option<u32>,
    /// How long to wait for the server's AcceptConf (default 5 s).
    pub accept_timeout: Duration,
}

impl LoadConfig {
    /// The defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            conns: 1,
            inflight: 1,
            size: 16,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            grace: Duration::from_secs(2),
            mode: Mode::Request,
            name: None,
            raw_echo: false,
            server_pid: None,
            accept_timeout: Duration::from_secs(5),
        }
    }

    /// Checks the values that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), LoadError> {
        let fail = |reason: &str| Err(LoadError::Config(reason.to_owned()));
        if self.conns == 0 {
            return fail("--conns must be at least 1");
        }
        if self.inflight == 0 {
            return fail("--inflight must be at least 1");
        }
        if self.duration.is_zero() {
            return fail("--duration must be longer than 0");
        }
        if self.raw_echo && matches!(self.mode, Mode::Keyed | Mode::Hist) {
            return fail(
                "a raw echo server cannot do webwire 2.1: modes keyed and hist run against a webwire 2.1 server",
            );
        }
        match self.mode {
            Mode::Request | Mode::Keyed => {
                if self.size == 0 && self.name.as_ref().is_none_or(Name::is_empty) {
                    return fail(
                        "a request without a name needs a payload: --size must be at least 1",
                    );
                }
            }
            Mode::Signal | Mode::Hist => {
                if self.size < 8 {
                    return fail(
                        "signal mode needs --size of at least 8: the payload's counter matches a pong to its ping",
                    );
                }
                if self.name.is_some() {
                    return fail(
                        "--name applies to requests; signal modes send `ping` or `room-ping`",
                    );
                }
            }
        }
        Ok(())
    }
}

/// An idle-connection run: see [`run_connect`](crate::run_connect).
///
/// ```
/// use std::time::Duration;
/// use webwire_load::ConnectConfig;
///
/// let mut config = ConnectConfig::new("ws://127.0.0.1:9090/");
/// config.conns = 10_000;
/// config.hold = Duration::from_secs(10);
/// assert_eq!(config.concurrency, 64);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectConfig {
    /// The server, `ws://HOST:PORT/PATH`.
    pub url: String,
    /// Number of connections to open (default 1000).
    pub conns: usize,
    /// How long to hold them once all are open (default 10 s).
    pub hold: Duration,
    /// The server's process id, to report its resident memory before and
    /// after.
    pub server_pid: Option<u32>,
    /// Connection handshakes in progress at once (default 64).
    pub concurrency: usize,
    /// The server is a raw WebSocket echo (no AcceptConf, no heartbeats).
    pub raw_echo: bool,
    /// How long to wait for each AcceptConf (default 5 s).
    pub accept_timeout: Duration,
    /// Each connection opts in to webwire 2.1 (both features), logs in
    /// and gets one signal on its session stream before it idles: the
    /// memory of an idle 2.1 connection with a session and a stream
    /// (default false: a bare 2.0 connection).
    pub v21: bool,
}

impl ConnectConfig {
    /// The defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            conns: 1000,
            hold: Duration::from_secs(10),
            server_pid: None,
            concurrency: 64,
            raw_echo: false,
            accept_timeout: Duration::from_secs(5),
            v21: false,
        }
    }

    /// Checks the values that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.conns == 0 {
            return Err(LoadError::Config("--conns must be at least 1".into()));
        }
        if self.v21 && self.raw_echo {
            return Err(LoadError::Config(
                "a raw echo server cannot do webwire 2.1: --v21 runs against a webwire 2.1 server"
                    .into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(LoadError::Config("--concurrency must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_work() {
        let ok = LoadConfig::new("ws://127.0.0.1:1/");
        ok.validate().unwrap();

        let mut c = ok.clone();
        c.conns = 0;
        assert!(matches!(c.validate(), Err(LoadError::Config(_))));

        let mut c = ok.clone();
        c.size = 0;
        assert!(c.validate().is_err());
        c.name = Some(Name::from_static("x"));
        c.validate().unwrap();

        let mut c = ok.clone();
        c.mode = Mode::Signal;
        c.size = 7;
        assert!(c.validate().is_err());
        c.size = 8;
        c.validate().unwrap();

        assert!("bogus".parse::<Mode>().is_err());
        for mode in [Mode::Request, Mode::Signal, Mode::Keyed, Mode::Hist] {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }

        let mut c = ok.clone();
        c.mode = Mode::Keyed;
        c.validate().unwrap();
        c.raw_echo = true;
        assert!(c.validate().is_err());
        c.mode = Mode::Hist;
        assert!(c.validate().is_err());
    }
}
