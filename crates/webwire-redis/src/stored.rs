//! How a session is stored in Redis: a hash with the fields `c` (creation),
//! `l` (last lookup), both RFC 3339 in UTC with nine fractional digits, and
//! `i` (the info as JSON text, absent without info).
//!
//! A hash rather than one JSON string lets the lookup script update `l`
//! without parsing JSON in Lua.

use std::time::SystemTime;

use webwire_core::session::SessionInfo;
use webwire_proto::{format_rfc3339, parse_rfc3339, TimeParseError};

use crate::error::RedisSessionError;

/// The hash field holding the creation time.
pub(crate) const CREATION: &str = "c";
/// The hash field holding the last lookup time.
pub(crate) const LAST_LOOKUP: &str = "l";
/// The hash field holding the info JSON.
pub(crate) const INFO: &str = "i";

/// `t` as RFC 3339 in UTC with nine fractional digits, as on the wire.
pub(crate) fn format_time(t: SystemTime) -> Result<String, RedisSessionError> {
    format_rfc3339(t).map_err(|err| RedisSessionError::Encode(err.to_string()))
}

/// A stored RFC 3339 time (field `field`) as a [`SystemTime`].
pub(crate) fn parse_time(text: &str, field: &str) -> Result<SystemTime, RedisSessionError> {
    parse_rfc3339(text).map_err(|err| {
        let reason = match err {
            TimeParseError::OutOfRange(_) => "out of range".to_owned(),
            TimeParseError::Syntax(reason) => reason,
            other => other.to_string(),
        };
        RedisSessionError::Decode(format!(
            "field {field:?} is not an RFC 3339 time ({text:?}): {reason}"
        ))
    })
}

/// The info as stored: JSON text.
pub(crate) fn format_info(info: &SessionInfo) -> Result<String, RedisSessionError> {
    serde_json::to_string(info)
        .map_err(|err| RedisSessionError::Encode(format!("the session info: {err}")))
}

/// The stored info JSON text as the info object.
pub(crate) fn parse_info(text: &str) -> Result<SessionInfo, RedisSessionError> {
    serde_json::from_str(text).map_err(|err| {
        RedisSessionError::Decode(format!("field \"i\" is not a JSON object: {err}"))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn times_round_trip_with_nanoseconds() {
        let cases = [
            (
                SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789),
                "2026-01-02T03:04:05.123456789Z",
            ),
            (SystemTime::UNIX_EPOCH, "1970-01-01T00:00:00.000000000Z"),
            (
                SystemTime::UNIX_EPOCH - Duration::new(1, 500_000_000),
                "1969-12-31T23:59:58.500000000Z",
            ),
        ];
        for (t, text) in cases {
            assert_eq!(format_time(t).unwrap(), text);
            assert_eq!(parse_time(text, "c").unwrap(), t);
        }
    }

    #[test]
    fn other_offsets_are_read() {
        let t = parse_time("2026-01-02T04:04:05.5+01:00", "l").unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 500_000_000)
        );
    }

    #[test]
    fn bad_times_are_decode_errors() {
        for bad in ["", "yesterday", "2026-01-02", "2026-13-02T03:04:05Z"] {
            match parse_time(bad, "c") {
                Err(RedisSessionError::Decode(msg)) => {
                    assert!(msg.contains("field \"c\""), "{msg}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn far_times_cannot_be_stored() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(matches!(
            format_time(far),
            Err(RedisSessionError::Encode(_))
        ));
    }

    #[test]
    fn info_round_trips_and_rejects_non_objects() {
        let info = json!({"user": "alice", "n": 12345678901234567890u64, "f": 0.1})
            .as_object()
            .cloned()
            .unwrap();
        let text = format_info(&info).unwrap();
        assert_eq!(parse_info(&text).unwrap(), info);
        for bad in ["", "[1]", "\"x\"", "null", "{", "1"] {
            assert!(
                matches!(parse_info(bad), Err(RedisSessionError::Decode(_))),
                "{bad:?}"
            );
        }
    }
}
