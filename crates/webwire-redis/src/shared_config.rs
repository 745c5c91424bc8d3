//! What the configurations of this crate ([`RedisSessionConfig`],
//! [`RedisClusterConfig`] and [`RedisStoreConfig`]) check and build the
//! same way: the key prefix, the bound on each Redis call, and the
//! connection manager's settings that follow from that bound.
//!
//! [`RedisSessionConfig`]: crate::RedisSessionConfig
//! [`RedisClusterConfig`]: crate::RedisClusterConfig
//! [`RedisStoreConfig`]: crate::RedisStoreConfig

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use crate::error::RedisSessionError;
use crate::key::is_valid_prefix;

/// The default bound on each Redis call.
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a key and channel prefix: 1 to 1024 bytes of printable ASCII.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), RedisSessionError> {
    if !is_valid_prefix(prefix) {
        return Err(RedisSessionError::Config(
            "the prefix must be 1 to 1024 bytes of printable ASCII (32..=126)".into(),
        ));
    }
    Ok(())
}

/// Checks the bound on each Redis call: not zero.
pub(crate) fn check_op_timeout(op_timeout: Duration) -> Result<(), RedisSessionError> {
    if op_timeout.is_zero() {
        return Err(RedisSessionError::Config(
            "the operation timeout must not be zero".into(),
        ));
    }
    Ok(())
}

/// The connection manager's settings: it never stops reconnecting (so it
/// comes back after an outage of any length), waiting 100 ms to 1 s
/// between attempts, and bounds each attempt and each answer by
/// `op_timeout` (each attempt by 1 s at most).
pub(crate) fn connection_manager_config(op_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(usize::MAX)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(Duration::from_secs(1).min(op_timeout)))
        .set_response_timeout(Some(op_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(check_prefix("webwire:").is_ok());
        assert!(check_op_timeout(Duration::from_millis(1)).is_ok());
        for bad in [
            check_prefix(""),
            check_prefix("a\nb"),
            check_op_timeout(Duration::ZERO),
        ] {
            assert!(matches!(bad, Err(RedisSessionError::Config(_))), "{bad:?}");
        }
    }
}
