//! The abuse limits of `serve` (docs/interop.md, section 1.1): all off
//! unless a flag sets them.

use std::time::Duration;

use webwire_server::limits::{IpNet, Rate};
use webwire_server::{Handler, ServerBuilder};

/// The limits the interop server applies (each `None`: off).
///
/// ```
/// use webwire_interop::limits::{parse_rate, LimitOptions};
///
/// let mut limits = LimitOptions::default();
/// limits.max_connections_per_ip = Some(10);
/// limits.message_rate = Some(parse_rate("100/s:200")?);
/// assert!(limits.handshake_rate.is_none());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LimitOptions {
    /// `--max-connections-per-ip`.
    pub max_connections_per_ip: Option<usize>,
    /// `--handshakes-per-ip`.
    pub handshakes_per_ip: Option<Rate>,
    /// `--handshake-rate`.
    pub handshake_rate: Option<Rate>,
    /// `--message-rate`.
    pub message_rate: Option<Rate>,
    /// `--session-message-rate`.
    pub session_message_rate: Option<Rate>,
    /// `--rate-limit-close-after`.
    pub rate_limit_close_after: Option<Duration>,
    /// `--trusted-proxy`, repeated.
    pub trusted_proxies: Vec<IpNet>,
}

impl LimitOptions {
    /// Sets the limits on a server builder.
    pub fn apply<H: Handler>(&self, mut builder: ServerBuilder<H>) -> ServerBuilder<H> {
        if let Some(max) = self.max_connections_per_ip {
            builder = builder.max_connections_per_ip(max);
        }
        if let Some(rate) = self.handshakes_per_ip {
            builder = builder.handshake_rate_per_ip(rate);
        }
        if let Some(rate) = self.handshake_rate {
            builder = builder.handshake_rate(rate);
        }
        if let Some(rate) = self.message_rate {
            builder = builder.message_rate_per_connection(rate);
        }
        if let Some(rate) = self.session_message_rate {
            builder = builder.message_rate_per_session(rate);
        }
        if let Some(after) = self.rate_limit_close_after {
            builder = builder.rate_limit_close_after(after);
        }
        if !self.trusted_proxies.is_empty() {
            builder = builder.trusted_proxies(self.trusted_proxies.iter().copied());
        }
        builder
    }
}

/// Parses a rate flag: `N/s` or `N/m` (N per second or minute; a bare `N`
/// is per second), optionally `:BURST` (default N).
///
/// ```
/// use std::time::Duration;
/// use webwire_interop::limits::parse_rate;
///
/// let rate = parse_rate("5/s:20")?;
/// assert_eq!((rate.interval(), rate.burst_size()), (Duration::from_millis(200), 20));
/// assert_eq!(parse_rate("30/m")?.interval(), Duration::from_secs(2));
/// assert_eq!(parse_rate("10")?.burst_size(), 10);
/// assert!(parse_rate("0/s").is_err());
/// assert!(parse_rate("5/h").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("{text:?} is not a rate (N/s or N/m, optionally :BURST, e.g. 5/s:20)");
    let (rate, burst) = match text.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (text, None),
    };
    let (n, per) = rate.split_once('/').unwrap_or((rate, "s"));
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    let rate = match per.trim() {
        "s" => Rate::per_second(n),
        "m" => Rate::per_minute(n),
        _ => return Err(bad()),
    };
    match burst {
        None => Ok(rate),
        Some(burst) => match burst.trim().parse::<u32>() {
            Ok(burst) if burst > 0 => Ok(rate.burst(burst)),
            _ => Err(bad()),
        },
    }
}
