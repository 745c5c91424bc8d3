//! The abuse limits at work (see [`crate::limits`] for what they are):
//! token buckets, the admission of upgrades (per address and server-wide),
//! the client's address behind trusted proxies, and the per-message
//! limiter of a connection.
//!
//! The buckets are GCRA (the "virtual scheduling" form of a token bucket:
//! one number per bucket, the time at which it is full again), on tokio's
//! clock so that tests run them on paused time. A bucket is one atomic,
//! so that a session's bucket is shared by its connections' tasks
//! without a lock. (The `governor` crate does the same; its clock is not
//! tokio's, and its keyed store would have to be bounded by hand all the
//! same, so the few lines are here.)

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::header::{HeaderName, FORWARDED};
use http::HeaderMap;
use tokio::time::Instant;
use webwire_proto::Session;

use crate::limits::{canonical, IpNet, Rate};

/// The abuse limits as configured (all off by default).
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitsConfig {
    pub(crate) connections_per_ip: Option<usize>,
    pub(crate) handshakes_per_ip: Option<Rate>,
    pub(crate) handshakes: Option<Rate>,
    pub(crate) messages_per_connection: Option<Rate>,
    pub(crate) messages_per_session: Option<Rate>,
    pub(crate) close_after: Duration,
    pub(crate) max_tracked_addresses: usize,
    pub(crate) trusted_proxies: Vec<IpNet>,
}

/// How long a client may keep exceeding its message rate before it is
/// closed with 1008.
pub(crate) const DEFAULT_CLOSE_AFTER: Duration = Duration::from_secs(10);
/// Addresses whose handshake buckets are kept at most.
pub(crate) const DEFAULT_MAX_TRACKED_ADDRESSES: usize = 65_536;

/// A token bucket's rule: the time one token takes, and how far ahead
/// of now a bucket may be booked (the burst).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
    interval: u64,
    tolerance: u64,
}

impl Gcra {
    pub(crate) fn new(rate: Rate) -> Self {
        let interval = nanos(rate.interval()).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst_size())),
        }
    }

    /// Takes a token at `now` (nanoseconds on the server's clock) if there
    /// is one; otherwise how long until there is.
    #[inline]
    pub(crate) fn check(&self, bucket: &Bucket, now: u64) -> Result<(), Duration> {
        let mut tat = bucket.0.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let ahead = next - now;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            match bucket
                .0
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Takes a token from a bucket kept as a plain number (under a lock).
    fn check_plain(&self, tat: &mut u64, now: u64) -> Result<(), Duration> {
        let next = (*tat).max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        *tat = next;
        Ok(())
    }
}

/// One token bucket: when it is full again, in nanoseconds on the
/// server's clock.
#[derive(Debug, Default)]
pub(crate) struct Bucket(AtomicU64);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The server's clock for the buckets: nanoseconds since it was built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.0))
    }
}

/// Why an upgrade is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("too many connections from this address")]
    ConnectionsPerIp,
    #[error("too many handshakes from this address")]
    HandshakesPerIp { retry_after: Duration },
    #[error("too many handshakes on this server")]
    Handshakes { retry_after: Duration },
}

impl Refused {
    /// Whole seconds for `Retry-After`, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let wait = match self {
            Self::ConnectionsPerIp => Duration::from_secs(1),
            Self::HandshakesPerIp { retry_after } | Self::Handshakes { retry_after } => {
                *retry_after
            }
        };
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
    }
}

/// The key an address counts under: IPv4 as itself, IPv6 by its /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The server's admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    config: LimitsConfig,
    clock: Clock,
    connections: Option<Mutex<HashMap<IpAddr, usize>>>,
    handshakes_per_ip: Option<(Gcra, Mutex<HashMap<IpAddr, u64>>)>,
    handshakes: Option<(Gcra, Bucket)>,
    messages_per_connection: Option<Gcra>,
    messages_per_session: Option<(Gcra, SessionBuckets)>,
}

/// The buckets of the sessions on this node, by key; a bucket lives as
/// long as a connection of its session holds it.
type SessionBuckets = Mutex<HashMap<Arc<str>, Weak<Bucket>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves its map consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Admission {
    pub(crate) fn new(config: LimitsConfig) -> Self {
        Self {
            clock: Clock(Instant::now()),
            connections: config.connections_per_ip.map(|_| Mutex::default()),
            handshakes_per_ip: config
                .handshakes_per_ip
                .map(|rate| (Gcra::new(rate), Mutex::default())),
            handshakes: config
                .handshakes
                .map(|rate| (Gcra::new(rate), Bucket::default())),
            messages_per_connection: config.messages_per_connection.map(Gcra::new),
            messages_per_session: config
                .messages_per_session
                .map(|rate| (Gcra::new(rate), Mutex::default())),
            config,
        }
    }

    /// The client's address for the limits and [`ConnectionInfo`](crate::connection::ConnectionInfo).
    pub(crate) fn client_ip(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        Some(client_ip(peer, headers, &self.config.trusted_proxies))
    }

    /// Admits an upgrade from `ip`: its place under the per-address
    /// connection limit (released when the permit is dropped), or why not.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
    ) -> Result<Option<AddressPermit>, Refused> {
        let key = ip.map(ip_key);
        let now = self.clock.now();
        let permit = match (&self.connections, key, self.config.connections_per_ip) {
            (Some(connections), Some(key), Some(max)) => {
                let mut connections = lock(connections);
                let count = connections.entry(key).or_default();
                if *count >= max {
                    return Err(Refused::ConnectionsPerIp);
                }
                *count += 1;
                Some(AddressPermit {
                    admission: self.clone(),
                    key,
                })
            }
            _ => None,
        };
        if let (Some((gcra, buckets)), Some(key)) = (&self.handshakes_per_ip, key) {
            let mut buckets = lock(buckets);
            let room = buckets.len() < self.config.max_tracked_addresses
                || buckets.contains_key(&key)
                || {
                    // Full buckets are as good as none.
                    buckets.retain(|_, tat| *tat > now);
                    buckets.len() < self.config.max_tracked_addresses
                };
            if room {
                let tat = buckets.entry(key).or_default();
                gcra.check_plain(tat, now)
                    .map_err(|retry_after| Refused::HandshakesPerIp { retry_after })?;
            } else {
                tracing::debug!("too many addresses are limited: this one is not tracked");
            }
        }
        if let Some((gcra, bucket)) = &self.handshakes {
            gcra.check(bucket, now)
                .map_err(|retry_after| Refused::Handshakes { retry_after })?;
        }
        Ok(permit)
    }

    fn release(&self, key: IpAddr) {
        if let Some(connections) = &self.connections {
            let mut connections = lock(connections);
            if let Some(count) = connections.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    connections.remove(&key);
                }
            }
        }
    }

    /// A new connection's message limiter, `None` when no message limit is set.
    pub(crate) fn message_limiter(self: &Arc<Self>) -> Option<Box<MessageLimiter>> {
        if self.messages_per_connection.is_none() && self.messages_per_session.is_none() {
            return None;
        }
        Some(Box::new(MessageLimiter {
            admission: self.clone(),
            connection: Bucket::default(),
            session: None,
        }))
    }

    /// The bucket of a session on this node, shared by its connections.
    fn session_bucket(&self, session: &Session) -> Option<Arc<Bucket>> {
        let (_, buckets) = self.messages_per_session.as_ref()?;
        let mut buckets = lock(buckets);
        let key = session.key.as_str();
        if let Some(bucket) = buckets.get(key).and_then(Weak::upgrade) {
            return Some(bucket);
        }
        if buckets.len() >= 64 && buckets.len().is_power_of_two() {
            // Sessions whose connections have all ended go, now and then:
            // the map stays within twice the sessions in use.
            buckets.retain(|_, bucket| bucket.strong_count() > 0);
        }
        let bucket = Arc::new(Bucket::default());
        buckets.insert(Arc::from(key), Arc::downgrade(&bucket));
        Some(bucket)
    }

    /// How long a client may keep exceeding its message rate.
    pub(crate) fn close_after(&self) -> Duration {
        self.config.close_after
    }
}

/// A connection's place under the per-address connection limit.
#[derive(Debug)]
pub(crate) struct AddressPermit {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// A connection's message limits: its own bucket, and its session's.
#[derive(Debug)]
pub(crate) struct MessageLimiter {
    admission: Arc<Admission>,
    connection: Bucket,
    /// The session the bucket was taken for (compared by pointer).
    session: Option<(Arc<Session>, Arc<Bucket>)>,
}

impl MessageLimiter {
    /// Whether a message may go through now; `session` gives the
    /// connection's session, if it has one (asked only with a session limit).
    pub(crate) fn allow(&mut self, session: impl FnOnce() -> Option<Arc<Session>>) -> bool {
        let admission = &*self.admission;
        let now = admission.clock.now();
        if let Some(gcra) = &admission.messages_per_connection
            && gcra.check(&self.connection, now).is_err()
        {
            return false;
        }
        if let (Some((gcra, _)), Some(session)) = (
            &admission.messages_per_session,
            admission
                .messages_per_session
                .as_ref()
                .and_then(|_| session()),
        ) {
            let cached = self
                .session
                .as_ref()
                .filter(|(held, _)| Arc::ptr_eq(held, &session));
            let bucket = match cached {
                Some((_, bucket)) => bucket.clone(),
                None => {
                    let Some(bucket) = admission.session_bucket(&session) else {
                        return true;
                    };
                    self.session = Some((session, bucket.clone()));
                    bucket
                }
            };
            if gcra.check(&bucket, now).is_err() {
                return false;
            }
        }
        true
    }

    /// How long a client may keep exceeding its message rate.
    pub(crate) fn close_after(&self) -> Duration {
        self.admission.close_after()
    }
}

/// The client's address: the peer's, or, when the peer is a trusted
/// proxy, the right-most address of `Forwarded` (or, without it,
/// `X-Forwarded-For`) that is not a trusted proxy. An entry that is no
/// address (`unknown`, an obfuscated name) ends the search with the
/// address before it, so that a client cannot hide behind one.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = forwarded_for(headers, &FORWARDED, forwarded_element);
    let hops = if forwarded.is_empty() {
        forwarded_for(headers, &X_FORWARDED_FOR, |part| Some(part.trim()))
    } else {
        forwarded
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_node(hop) else {
            break;
        };
        let ip = canonical(ip);
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The hops a header lists, in order, over all its lines.
fn forwarded_for<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    hop: impl Fn(&'a str) -> Option<&'a str>,
) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(hop)
        .collect()
}

/// The `for=` node of a `Forwarded` element (RFC 7239), if it has one.
fn forwarded_element(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address out of a node: `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`, `::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_one_per_interval() {
        let gcra = Gcra::new(Rate::per_second(10).burst(3));
        let bucket = Bucket::default();
        let start = 1_000_000_000;
        for _ in 0..3 {
            gcra.check(&bucket, start).unwrap();
        }
        let wait = gcra.check(&bucket, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(gcra.check(&bucket, start + 99_000_000).is_err());
        gcra.check(&bucket, start + 100_000_000).unwrap();
        assert!(gcra.check(&bucket, start + 100_000_000).is_err());
        // A second's rest fills it again, up to the burst.
        let later = start + 2_000_000_000;
        for _ in 0..3 {
            gcra.check(&bucket, later).unwrap();
        }
        assert!(gcra.check(&bucket, later).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let refused = |ms| Refused::Handshakes {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(refused(1).retry_after_secs(), 1);
        assert_eq!(refused(1000).retry_after_secs(), 1);
        assert_eq!(refused(1001).retry_after_secs(), 2);
        assert_eq!(refused(0).retry_after_secs(), 1);
        assert_eq!(Refused::ConnectionsPerIp.retry_after_secs(), 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(ip_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(ip_key(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2")]);
        // From a trusted proxy: the right-most address not trusted.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff, &trusted),
            ip("198.51.100.7")
        );
        // From anyone else: the peer, the header ignored.
        assert_eq!(client_ip(ip("192.0.2.1"), &xff, &trusted), ip("192.0.2.1"));
        // Several lines are one list.
        let lines = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &lines, &trusted),
            ip("203.0.113.9")
        );
        // Forwarded wins over X-Forwarded-For; quoted IPv6 with a port.
        let both = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, For=\"[2001:db8::17]:4711\"",
            ),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(ip("::1"), &both, &trusted), ip("2001:db8::17"));
        // Every hop trusted: the left-most.
        let inner = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &inner, &trusted), ip("10.9.9.9"));
        // An unknown hop: the last trusted address before it.
        let hidden = headers(&[("forwarded", "for=unknown, for=10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &hidden, &trusted), ip("10.0.0.5"));
        // No header: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_address_buckets_stay_bounded() {
        let admission = Arc::new(Admission::new(LimitsConfig {
            handshakes_per_ip: Some(Rate::per_minute(1)),
            max_tracked_addresses: 4,
            ..LimitsConfig::default()
        }));
        let addr = |n: u8| Some(IpAddr::from([192, 0, 2, n]));
        for n in 0..10 {
            admission.admit(addr(n)).unwrap();
        }
        let tracked = admission
            .handshakes_per_ip
            .as_ref()
            .unwrap()
            .1
            .lock()
            .unwrap()
            .len();
        assert_eq!(tracked, 4);
        // The tracked ones are limited.
        assert!(matches!(
            admission.admit(addr(0)),
            Err(Refused::HandshakesPerIp { .. })
        ));
        // Once their buckets are full again, they make room.
        tokio::time::advance(Duration::from_secs(61)).await;
        admission.admit(addr(9)).unwrap();
        assert!(matches!(
            admission.admit(addr(9)),
            Err(Refused::HandshakesPerIp { .. })
        ));
    }
}
