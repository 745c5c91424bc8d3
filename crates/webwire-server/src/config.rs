//! The server's options, their defaults and their validation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use webwire_proto::FeatureFlags;

use crate::admission::{LimitsConfig, DEFAULT_CLOSE_AFTER, DEFAULT_MAX_TRACKED_ADDRESSES};
use crate::ledger::{ErasedLedger, LedgerLimits};
use crate::options::Concurrency;
use crate::session::ErasedSessionManager;
use crate::session::SessionKeyGenerator;
use crate::ServerError;

/// The options of a server, validated by [`ServerBuilder::build`](crate::ServerBuilder::build).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) read_timeout: Duration,
    pub(crate) buffer_size: usize,
    pub(crate) sub_protocol: String,
    pub(crate) max_connections: Option<usize>,
    pub(crate) queue_capacity: usize,
    pub(crate) queue_timeout: Duration,
    pub(crate) concurrency: Concurrency,
    pub(crate) path: Option<String>,
    /// The largest request head of an upgrade (request line and headers).
    pub(crate) max_header_bytes: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) sessions_enabled: bool,
    /// Connections per session, 0 for no limit.
    pub(crate) max_session_connections: usize,
    /// `None`: a [`FileSessionManager`](crate::session::FileSessionManager) in
    /// [`default_session_dir`].
    pub(crate) session_manager: Option<Arc<dyn ErasedSessionManager>>,
    /// `None`: the [`DefaultKeyGenerator`](crate::session::DefaultKeyGenerator).
    pub(crate) session_keys: Option<Arc<dyn SessionKeyGenerator>>,
    /// The abuse limits (all off by default).
    pub(crate) limits: LimitsConfig,
    /// The 2.1 features the server offers; none: it announces 2.0.
    pub(crate) extensions: FeatureFlags,
    /// `None`: a [`MemoryLedger`](crate::ledger::MemoryLedger) with
    /// `ledger_limits`.
    pub(crate) request_ledger: Option<Arc<dyn ErasedLedger>>,
    /// The bounds of the default in-memory ledger.
    pub(crate) ledger_limits: LedgerLimits,
    /// How long a keyed request's handler may run (detached from its
    /// connection) before its stored answer is an internal error.
    pub(crate) keyed_request_timeout: Duration,
    /// How often a running keyed handler renews its lease in the ledger.
    pub(crate) keyed_lease_renewal: Duration,
    /// Stream history: the store, the session streams' and the rooms'.
    pub(crate) streams: crate::stream::hub::StreamConfig,
}

/// The original server's read timeout.
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The original server's message buffer size; Go clients need it to match theirs.
pub(crate) const DEFAULT_BUFFER_SIZE: usize = 8192;
/// Outbound messages a connection may have queued (or reserved for replies).
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 128;
/// How long a write may make no progress (see `ServerBuilder::queue_timeout`).
pub(crate) const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest upgrade request head, in bytes (see
/// `ServerBuilder::max_header_bytes` for why 16 KiB).
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a keyed request's handler may run (docs/protocol.md 14.4.2).
pub(crate) const DEFAULT_KEYED_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a running keyed handler renews its lease: a third of the
/// default lease time (30 s), so that two renewals may fail or be late.
pub(crate) const DEFAULT_KEYED_LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// The 2.1 features a server offers by default.
pub(crate) const DEFAULT_EXTENSIONS: FeatureFlags = FeatureFlags::KNOWN;
/// How long a closing connection waits for the client's close frame.
pub(crate) const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The folder of the default session manager's files, under the current
/// directory.
pub(crate) const DEFAULT_SESSION_DIR: &str = "webwire-sessions";

/// The default session manager's folder: `webwire-sessions` in the current
/// directory (made absolute when the server is built, so that a later change
/// of directory does not move it).
pub(crate) fn default_session_dir() -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) => dir.join(DEFAULT_SESSION_DIR),
        Err(_) => PathBuf::from(DEFAULT_SESSION_DIR),
    }
}

const MIN_READ_TIMEOUT: Duration = Duration::from_secs(1);
const MIN_BUFFER_SIZE: usize = 32;
/// Below this even a bare upgrade without cookies may not fit.
const MIN_HEADER_BYTES: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            read_timeout: DEFAULT_READ_TIMEOUT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            sub_protocol: String::new(),
            max_connections: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            concurrency: Concurrency::ONE,
            path: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            sessions_enabled: true,
            max_session_connections: 0,
            session_manager: None,
            session_keys: None,
            limits: LimitsConfig {
                close_after: DEFAULT_CLOSE_AFTER,
                max_tracked_addresses: DEFAULT_MAX_TRACKED_ADDRESSES,
                ..LimitsConfig::default()
            },
            extensions: DEFAULT_EXTENSIONS,
            request_ledger: None,
            ledger_limits: LedgerLimits::default(),
            keyed_request_timeout: DEFAULT_KEYED_REQUEST_TIMEOUT,
            keyed_lease_renewal: DEFAULT_KEYED_LEASE_RENEWAL,
            streams: crate::stream::hub::StreamConfig::default(),
        }
    }
}

fn invalid(option: &'static str, reason: String) -> ServerError {
    ServerError::InvalidOption { option, reason }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), ServerError> {
        if self.read_timeout < MIN_READ_TIMEOUT {
            return Err(invalid(
                "read_timeout",
                format!("{:?} is below the minimum of 1 s", self.read_timeout),
            ));
        }
        if self.read_timeout.as_millis() > u128::from(u32::MAX) {
            return Err(invalid(
                "read_timeout",
                format!(
                    "{:?} does not fit the protocol's u32 milliseconds",
                    self.read_timeout
                ),
            ));
        }
        if self.buffer_size < MIN_BUFFER_SIZE {
            return Err(invalid(
                "message_buffer_size",
                format!(
                    "{} bytes is below the minimum of {MIN_BUFFER_SIZE} bytes",
                    self.buffer_size
                ),
            ));
        }
        if u32::try_from(self.buffer_size).is_err() {
            return Err(invalid(
                "message_buffer_size",
                format!("{} bytes does not fit the protocol's u32", self.buffer_size),
            ));
        }
        if 11 + self.sub_protocol.len() > self.buffer_size {
            return Err(invalid(
                "sub_protocol",
                format!(
                    "{} bytes do not fit the message buffer size of {} bytes",
                    self.sub_protocol.len(),
                    self.buffer_size
                ),
            ));
        }
        match self.max_connections {
            Some(0) => return Err(invalid("max_connections", "must be at least 1".into())),
            Some(n) if n > tokio::sync::Semaphore::MAX_PERMITS => {
                return Err(invalid(
                    "max_connections",
                    format!(
                        "{n} is above the maximum of {}",
                        tokio::sync::Semaphore::MAX_PERMITS
                    ),
                ))
            }
            _ => {}
        }
        if self.queue_capacity < 2 {
            return Err(invalid(
                "queue_capacity",
                format!("{} is below the minimum of 2", self.queue_capacity),
            ));
        }
        if self.queue_timeout.is_zero() {
            return Err(invalid("queue_timeout", "must not be zero".into()));
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(invalid(
                "max_header_bytes",
                format!(
                    "{} bytes is below the minimum of {MIN_HEADER_BYTES} bytes",
                    self.max_header_bytes
                ),
            ));
        }
        if self.close_timeout.is_zero() {
            return Err(invalid("close_timeout", "must not be zero".into()));
        }
        if self.limits.connections_per_ip == Some(0) {
            return Err(invalid(
                "max_connections_per_ip",
                "must be at least 1".into(),
            ));
        }
        if self.limits.max_tracked_addresses == 0 {
            return Err(invalid(
                "max_tracked_addresses",
                "must be at least 1".into(),
            ));
        }
        if self.keyed_request_timeout.is_zero() {
            return Err(invalid("keyed_request_timeout", "must not be zero".into()));
        }
        if self.keyed_lease_renewal.is_zero() {
            return Err(invalid("keyed_lease_renewal", "must not be zero".into()));
        }
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(invalid("path", format!("{path:?} does not start with '/'")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_originals() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.read_timeout, Duration::from_secs(60));
        assert_eq!(config.buffer_size, 8192);
        assert!(config.sessions_enabled);
        assert_eq!(config.max_session_connections, 0);
        assert_eq!(config.max_header_bytes, 16 * 1024);
    }

    #[test]
    fn the_default_session_folder_is_absolute_under_the_current_directory() {
        let dir = default_session_dir();
        assert!(dir.ends_with(DEFAULT_SESSION_DIR));
        assert_eq!(dir.parent(), std::env::current_dir().ok().as_deref());
    }

    #[test]
    fn limits_are_checked() {
        let check = |f: fn(&mut Config)| {
            let mut config = Config::default();
            f(&mut config);
            match config.validate() {
                Err(ServerError::InvalidOption { option, .. }) => option,
                other => panic!("expected an invalid option, got {other:?}"),
            }
        };
        assert_eq!(
            check(|c| c.read_timeout = Duration::from_millis(999)),
            "read_timeout"
        );
        assert_eq!(check(|c| c.buffer_size = 31), "message_buffer_size");
        assert_eq!(check(|c| c.max_connections = Some(0)), "max_connections");
        assert_eq!(check(|c| c.queue_capacity = 1), "queue_capacity");
        assert_eq!(check(|c| c.path = Some("ws".into())), "path");
        assert_eq!(check(|c| c.max_header_bytes = 1023), "max_header_bytes");
        assert_eq!(
            check(|c| c.limits.connections_per_ip = Some(0)),
            "max_connections_per_ip"
        );
        assert_eq!(
            check(|c| c.limits.max_tracked_addresses = 0),
            "max_tracked_addresses"
        );
        let ok = Config {
            read_timeout: Duration::from_secs(1),
            buffer_size: 32,
            max_header_bytes: 1024,
            ..Config::default()
        };
        ok.validate().unwrap();
    }
}
