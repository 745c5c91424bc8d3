//! [`ClientBuilder`]: the client's options, and the checked configuration
//! the connection task runs with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::dial::Transport;
use crate::error::ConnectError;
use crate::{Client, TlsConfig};

/// Default for [`ClientBuilder::dial_timeout`].
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ClientBuilder::request_timeout`] (as the original clients).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientBuilder::reconnect_interval`].
const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(500);
/// Default for [`ClientBuilder::max_reconnect_interval`].
const DEFAULT_MAX_RECONNECT_INTERVAL: Duration = Duration::from_secs(30);
/// Default for [`ClientBuilder::restart_reconnect_delay`]: up to 5 s.
const DEFAULT_RESTART_DELAY: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(5));
/// Default for [`ClientBuilder::close_timeout`].
const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ClientBuilder::event_capacity`].
const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default for [`ClientBuilder::max_queued`].
const DEFAULT_MAX_QUEUED: usize = 1024;

/// Options of a [`Client`], ending in [`connect`](Self::connect).
///
/// ```no_run
/// use std::time::Duration;
/// use webwire_client::Client;
///
/// # async fn run() -> Result<(), webwire_client::ConnectError> {
/// let client = Client::builder("ws://127.0.0.1:9090/")
///     .sub_protocol("interop")
///     .dial_timeout(Duration::from_secs(5))
///     .request_timeout(Duration::from_secs(10))
///     .reconnect_interval(Duration::from_millis(200))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is called"]
pub struct ClientBuilder {
    url: String,
    config: Options,
}

/// The options, without the URL.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) dial_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) sub_protocol: Option<String>,
    pub(crate) auto_reconnect: bool,
    pub(crate) reconnect_interval: Duration,
    pub(crate) max_reconnect_interval: Duration,
    /// The range of the random wait before reconnecting after close code
    /// 1012, as (min, max).
    pub(crate) restart_delay: (Duration, Duration),
    pub(crate) close_timeout: Duration,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) event_capacity: usize,
    /// Extra upgrade request headers, as given (checked in `connect`).
    pub(crate) headers: Vec<(String, String)>,
    /// Opens the byte stream instead of TCP (and TLS); see
    /// `ClientBuilder::transport`.
    pub(crate) transport: Option<Transport>,
    /// Whether to opt in to webwire 2.1 with servers that offer it.
    pub(crate) extensions: bool,
    /// The most calls waiting for a connection.
    pub(crate) max_queued: usize,
    /// Stream signals as `ClientEvent::StreamSignal` instead of `Signal`.
    pub(crate) stream_signal_events: bool,
}

/// A checked `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL, with `/` as path when it had none.
    pub(crate) uri: Uri,
    /// Host name or IP address, without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) secure: bool,
}

/// What the connection task runs with.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) target: Target,
    pub(crate) options: Options,
    /// The TLS configuration for `wss://` URLs (resolved at build time).
    pub(crate) tls: Option<TlsConfig>,
    /// The extra upgrade request headers, checked.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            config: Options {
                dial_timeout: DEFAULT_DIAL_TIMEOUT,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                sub_protocol: None,
                auto_reconnect: true,
                reconnect_interval: DEFAULT_RECONNECT_INTERVAL,
                max_reconnect_interval: DEFAULT_MAX_RECONNECT_INTERVAL,
                restart_delay: DEFAULT_RESTART_DELAY,
                close_timeout: DEFAULT_CLOSE_TIMEOUT,
                tls: None,
                event_capacity: DEFAULT_EVENT_CAPACITY,
                headers: Vec::new(),
                transport: None,
                extensions: true,
                max_queued: DEFAULT_MAX_QUEUED,
                stream_signal_events: false,
            },
        }
    }

    /// How long one connection attempt may take: TCP, TLS, WebSocket
    /// upgrade and the server's accept configuration. Default 10 s.
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.config.dial_timeout = timeout;
        self
    }

    /// The timeout of requests made without one of their own, including
    /// the time they wait for a connection. Default 60 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The sub-protocol name the server must announce; without it any
    /// name is accepted (as the original JavaScript client does).
    pub fn sub_protocol(mut self, name: impl Into<String>) -> Self {
        self.config.sub_protocol = Some(name.into());
        self
    }

    /// Whether to reconnect by itself when the connection is lost (and
    /// restore the session). Default on.
    ///
    /// When off, a lost connection leaves the client
    /// [`Disconnected`](crate::Status::Disconnected): calls fail with
    /// [`RequestError::Disconnected`](crate::RequestError::Disconnected)
    /// until [`Client::reconnect`] succeeds.
    pub fn auto_reconnect(mut self, enabled: bool) -> Self {
        self.config.auto_reconnect = enabled;
        self
    }

    /// The base of the reconnection backoff. The first attempt after a
    /// loss is immediate (after a server restart, see
    /// [`restart_reconnect_delay`](Self::restart_reconnect_delay)); after
    /// the `n`-th failed attempt (from 1) the client waits a random time
    /// between zero and `min(max_reconnect_interval, reconnect_interval *
    /// 2^(n-1))` ("full jitter"), so that clients that lost a server
    /// together do not come back together. Default 500 ms.
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.config.reconnect_interval = interval;
        self
    }

    /// The cap of the reconnection backoff (see
    /// [`reconnect_interval`](Self::reconnect_interval)). Default 30 s.
    pub fn max_reconnect_interval(mut self, interval: Duration) -> Self {
        self.config.max_reconnect_interval = interval;
        self
    }

    /// The range of the random wait before reconnecting after the server
    /// closed the connection with code 1012 (service restart: a server
    /// draining for a deploy, `webwire_server::Server::drain`), so that
    /// its clients move to other nodes gradually. Default from zero up to
    /// 5 s. A `max` below `min` is taken as `min`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use webwire_client::Client;
    ///
    /// # async fn run() -> Result<(), webwire_client::ConnectError> {
    /// let client = Client::builder("ws://127.0.0.1:9090/")
    ///     .restart_reconnect_delay(Duration::from_secs(1), Duration::from_secs(10))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn restart_reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.config.restart_delay = (min, max.max(min));
        self
    }

    /// How long [`Client::close`] waits for in-flight requests before it
    /// closes the connection anyway. Default 10 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// TLS for `wss://` URLs; default [`TlsConfig::native_roots`].
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// How many events a slow [`Events`](crate::Events) receiver may fall
    /// behind before it loses the oldest ones. Default 1024.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity.max(1);
        self
    }

    /// Whether to use webwire 2.1 with servers that announce it (default
    /// on). The client checks the server's version on every connection:
    /// with a 2.1 server it opts in, and then, within a session, signals
    /// of streams arrive in order with no gap and no duplicate across
    /// reconnects (or a [`ClientEvent::StreamLoss`](crate::ClientEvent::StreamLoss)
    /// says what is lost), and requests are keyed so that one resent after
    /// a reconnect is never run twice (or fails with
    /// [`RequestError::OutcomeUnknown`](crate::RequestError::OutcomeUnknown)).
    /// With a 2.0 server, or with this off, the client speaks 2.0.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), webwire_client::ConnectError> {
    /// let client = webwire_client::Client::builder("ws://127.0.0.1:9090/")
    ///     .extensions(false)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn extensions(mut self, enabled: bool) -> Self {
        self.config.extensions = enabled;
        self
    }

    /// How many requests and signals may wait for a connection while the
    /// client reconnects (default 1024); beyond, calls fail at once with
    /// [`RequestError::QueueFull`](crate::RequestError::QueueFull). Each is
    /// sent once, after the session is restored; its timeout runs while it
    /// waits.
    pub fn max_queued(mut self, max: usize) -> Self {
        self.config.max_queued = max;
        self
    }

    /// Webwire 2.1: deliver signals of streams as
    /// [`ClientEvent::StreamSignal`](crate::ClientEvent::StreamSignal), with
    /// their stream and offset, instead of as
    /// [`ClientEvent::Signal`](crate::ClientEvent::Signal) (the default,
    /// which code written for 2.0 expects).
    pub fn stream_signal_events(mut self, enabled: bool) -> Self {
        self.config.stream_signal_events = enabled;
        self
    }

    /// Adds a header to the WebSocket upgrade request, on every connection
    /// attempt (for example an `Authorization` token, or a cookie). A later
    /// header with the same name replaces an earlier one.
    ///
    /// The name and value are checked by [`connect`](Self::connect), which
    /// fails with [`ConnectError::InvalidHeader`] for a malformed one or for
    /// a header the WebSocket handshake sets itself (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), webwire_client::ConnectError> {
    /// let client = webwire_client::Client::builder("wss://chat.example.com/ws")
    ///     .header("Authorization", "Bearer 0123abcd")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Sends an `Origin` header with the upgrade request, as a browser
    /// does: servers that check the origin accept only the ones they
    /// allow. By default the client sends none. The same as
    /// `.header("Origin", origin)`.
    pub fn origin(self, origin: impl Into<String>) -> Self {
        self.header("Origin", origin)
    }

    /// Opens each connection's byte stream with `transport` instead of a
    /// TCP connection (feature `test-util`): the client then runs the
    /// WebSocket upgrade and everything after it over that stream. It is
    /// called once for the first connection and once per reconnection, so
    /// a reconnection is a fresh stream. The URL still gives the upgrade
    /// request's path and `Host` header; TLS is not used, whatever the
    /// scheme.
    ///
    /// Made for testing an application's handlers without sockets: with
    /// `webwire-server`'s `test-util` feature, `Server::connect_in_memory`
    /// gives a stream to the server in the same process that goes through
    /// the same upgrade path (hooks, connection info) as a TCP connection:
    ///
    /// ```
    /// use webwire_client::Client;
    /// use webwire_server::{Connection, MessageRouter, ReplyError, Request, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let router = MessageRouter::new().request("echo", |_conn: Connection, req: Request| async move {
    ///     Ok::<_, ReplyError>(req.payload().clone())
    /// });
    /// let server = Server::builder(router).build()?;
    /// let to_server = server.clone();
    /// let client = Client::builder("ws://localhost/")
    ///     .transport(move || {
    ///         let stream = to_server.connect_in_memory();
    ///         async move { Ok(stream) }
    ///     })
    ///     .connect()
    ///     .await?;
    /// assert_eq!(client.request("echo", "hi").await?.to_text()?, "hi");
    /// client.close().await;
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "test-util")]
    pub fn transport<F, Fut, S>(mut self, transport: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<S>> + Send + 'static,
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        self.config.transport = Some(Transport::new(transport));
        self
    }

    /// Connects, checks the server's accept configuration and starts the
    /// client. Fails if this first connection fails (there is no automatic
    /// retry for it).
    pub async fn connect(self) -> Result<Client, ConnectError> {
        let target = Target::parse(&self.url)?;
        let headers = check_headers(&self.config.headers)?;
        let tls = match (&self.config.tls, target.secure) {
            _ if self.config.transport.is_some() => None,
            (Some(tls), true) => Some(tls.clone()),
            (None, true) => Some(TlsConfig::native_roots().map_err(ConnectError::tls)?),
            (_, false) => None,
        };
        let config = Arc::new(Config {
            target,
            options: self.config,
            tls,
            headers,
        });
        Client::start(config).await
    }
}

#[cfg(test)]
impl ClientBuilder {
    /// The options as set so far.
    pub(crate) fn options(&self) -> &Options {
        &self.config
    }
}

/// Parses the extra headers, refusing those the handshake sets itself.
fn check_headers(
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, ConnectError> {
    headers
        .iter()
        .map(|(name, value)| {
            let invalid = |reason: &dyn fmt::Display| ConnectError::InvalidHeader {
                name: name.clone(),
                reason: reason.to_string(),
            };
            let parsed = HeaderName::try_from(name.as_str()).map_err(|err| invalid(&err))?;
            if tokio_websockets::client::DISALLOWED_HEADERS.contains(&parsed) {
                return Err(invalid(&"the WebSocket handshake sets it itself"));
            }
            let value = HeaderValue::try_from(value.as_str()).map_err(|err| invalid(&err))?;
            Ok((parsed, value))
        })
        .collect()
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, ConnectError> {
        let invalid = |reason: &str| ConnectError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(invalid("the scheme must be ws or wss")),
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        // The upgrade request needs a path; `ws://host:1` has none.
        let uri = if uri.path().is_empty() {
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            Uri::from_parts(parts).map_err(|err| invalid(&err.to_string()))?
        } else {
            uri
        };
        Ok(Self {
            uri,
            host,
            port,
            secure,
        })
    }

    /// `host:port` for messages.
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://127.0.0.1:9090").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.secure),
            ("127.0.0.1", 9090, false)
        );
        assert_eq!(t.uri.path(), "/");
        let t = Target::parse("wss://example.com/ws?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.secure),
            ("example.com", 443, true)
        );
        assert_eq!(t.uri.path_and_query().unwrap().as_str(), "/ws?x=1");
        let t = Target::parse("ws://[::1]:80/").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.addr(), "[::1]:80");
    }

    #[test]
    fn checks_headers() {
        let ok = check_headers(&[("X-Token".into(), "abc".into())]).unwrap();
        assert_eq!(ok[0].0.as_str(), "x-token");
        for (name, value) in [("Bad Name", "v"), ("X-A", "line\nbreak"), ("Host", "a")] {
            let err = check_headers(&[(name.into(), value.into())]).unwrap_err();
            assert!(
                matches!(&err, ConnectError::InvalidHeader { name: n, .. } if n == name),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn refuses_bad_urls() {
        for url in ["http://a/", "a:b", "", "ws:///x", "wss://"] {
            assert!(
                matches!(Target::parse(url), Err(ConnectError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
