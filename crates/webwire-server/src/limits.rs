//! Abuse limits: the values the [`ServerBuilder`](crate::ServerBuilder)'s
//! limit options take ([`Rate`]), and the trusted reverse proxies whose
//! `Forwarded` / `X-Forwarded-For` headers name the client ([`IpNet`]).
//!
//! Every limit is off by default:
//!
//! | option | over the limit |
//! | --- | --- |
//! | [`max_connections_per_ip`](crate::ServerBuilder::max_connections_per_ip) | HTTP 429 with `Retry-After: 1` |
//! | [`handshake_rate_per_ip`](crate::ServerBuilder::handshake_rate_per_ip) | HTTP 429 with `Retry-After` (seconds until a token is back) |
//! | [`handshake_rate`](crate::ServerBuilder::handshake_rate) (server-wide, paces a reconnect storm) | HTTP 503 with `Retry-After` |
//! | [`message_rate_per_connection`](crate::ServerBuilder::message_rate_per_connection), [`message_rate_per_session`](crate::ServerBuilder::message_rate_per_session) | a request gets an error reply with code `RATE_LIMITED` (its handler does not run); a signal is dropped and counted ([`ConnectionStats::rate_limited`](crate::connection::ConnectionStats::rate_limited)); a client that keeps exceeding for [`rate_limit_close_after`](crate::ServerBuilder::rate_limit_close_after) is closed with 1008 |
//!
//! The limits are token buckets (GCRA): a [`Rate`] of `n` per second with a
//! burst of `b` lets `b` through at once and then one every `1/n` seconds.
//!
//! Addresses: an IPv4 address counts as itself, an IPv6 address by its
//! /64 prefix (one subscriber usually has a whole /64). The per-address
//! handshake buckets are kept for at most
//! [`max_tracked_addresses`](crate::ServerBuilder::max_tracked_addresses)
//! addresses: a full bucket is forgotten when room is needed, and when
//! every tracked address is still limited, a new address is not tracked
//! (its handshakes pass that limit; the server-wide rate still holds), so
//! a client with many addresses cannot grow the server's memory.
//!
//! The per-address limits need the peer's address: always there in
//! standalone mode; in an axum app, serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()`, or the
//! per-address limits do not apply (the server-wide ones still do).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// The code of the error reply to a request over a message rate limit.
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// A token bucket's rate: `per_second` tokens a second, up to `burst` at
/// once (by default as many as one second's).
///
/// ```
/// use std::time::Duration;
/// use webwire_server::limits::Rate;
///
/// let rate = Rate::per_second(100).burst(20);
/// assert_eq!(rate.interval(), Duration::from_millis(10));
/// assert_eq!(rate.burst_size(), 20);
/// assert_eq!(Rate::per_second(0).interval(), Duration::from_secs(1), "0 is taken as 1");
/// assert_eq!(Rate::per_minute(6).interval(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Duration,
    burst: NonZeroU32,
}

impl Rate {
    /// `n` tokens a second (0 is taken as 1), a burst of `n`.
    pub fn per_second(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            interval: Duration::from_secs(1) / n.get(),
            burst: n,
        }
    }

    /// `n` tokens a minute (0 is taken as 1), a burst of `n`.
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            interval: Duration::from_secs(60) / n.get(),
            burst: n,
        }
    }

    /// At most `burst` tokens at once (0 is taken as 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// The time one token takes to come back.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The most tokens taken at once.
    pub fn burst_size(&self) -> u32 {
        self.burst.get()
    }
}

/// An IP network (an address and a prefix length), for
/// [`ServerBuilder::trusted_proxies`](crate::ServerBuilder::trusted_proxies).
/// Parsed from `10.0.0.0/8`, `fd00::/8`, or a single address.
///
/// ```
/// use webwire_server::limits::IpNet;
///
/// let net: IpNet = "10.1.0.0/16".parse()?;
/// assert!(net.contains("10.1.200.3".parse()?));
/// assert!(!net.contains("10.2.0.1".parse()?));
/// let one: IpNet = "::1".parse()?;
/// assert!(one.contains("::1".parse()?));
/// assert!("10.0.0.0/33".parse::<IpNet>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr`'s first `prefix` bits; `None` when the prefix
    /// is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= bits).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

/// An IPv4-mapped IPv6 address as its IPv4 address (a dual-stack socket
/// reports IPv4 peers so).
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> Self {
        let prefix = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Self { addr, prefix }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A string that is not an IP network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or network (ADDRESS[/PREFIX]): {0:?}")]
pub struct IpNetParseError(String);

impl FromStr for IpNet {
    type Err = IpNetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetParseError(s.to_owned());
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(Self::from).map_err(|_| err()),
            Some((addr, prefix)) => {
                let addr = addr.parse::<IpAddr>().map_err(|_| err())?;
                let prefix = prefix.parse::<u8>().map_err(|_| err())?;
                Self::new(addr, prefix).ok_or_else(err)
            }
        }
    }
}
