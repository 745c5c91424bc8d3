//! RFC 3339 times as the protocol writes them (session JSON) and as the
//! session stores keep them: written in UTC with nine fractional digits,
//! read with any UTC offset and any number of fractional digits.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A time outside what both RFC 3339 (years 0000 to 9999) and this
/// platform's [`SystemTime`] can hold.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use webwire_proto::{format_rfc3339, TimeRangeError};
///
/// let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
/// assert_eq!(format_rfc3339(far), Err(TimeRangeError));
/// assert_eq!(TimeRangeError.to_string(), "a time outside the years 0000..=9999");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a time outside the years 0000..=9999")]
pub struct TimeRangeError;

/// Why [`parse_rfc3339`] refused a text.
///
/// ```
/// use webwire_proto::{parse_rfc3339, TimeParseError};
///
/// assert!(matches!(parse_rfc3339("yesterday"), Err(TimeParseError::Syntax(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeParseError {
    /// Not an RFC 3339 date and time; holds what is wrong with it.
    #[error("not an RFC 3339 time: {0}")]
    Syntax(String),
    /// A valid RFC 3339 time that this platform's [`SystemTime`] cannot hold.
    #[error(transparent)]
    OutOfRange(#[from] TimeRangeError),
}

/// `t` as RFC 3339 in UTC with nine fractional digits, as on the wire.
///
/// Fails with [`TimeRangeError`] for a time before the year 0000 or after
/// the year 9999.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use webwire_proto::format_rfc3339;
///
/// let t = SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789);
/// assert_eq!(format_rfc3339(t)?, "2026-01-02T03:04:05.123456789Z");
/// # Ok::<(), webwire_proto::TimeRangeError>(())
/// ```
pub fn format_rfc3339(t: SystemTime) -> Result<String, TimeRangeError> {
    let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()),
        Err(before) => i128::try_from(before.duration().as_nanos()).map(|n| -n),
    }
    .map_err(|_| TimeRangeError)?;
    let utc = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| TimeRangeError)?;
    if !(0..=9999).contains(&utc.year()) {
        return Err(TimeRangeError);
    }
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.nanosecond()
    ))
}

/// Any RFC 3339 date and time (any UTC offset, any number of fractional
/// digits) as a [`SystemTime`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use webwire_proto::parse_rfc3339;
///
/// let t = parse_rfc3339("2026-01-02T04:04:05.5+01:00")?;
/// assert_eq!(t, SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 500_000_000));
/// # Ok::<(), webwire_proto::TimeParseError>(())
/// ```
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, TimeParseError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|err| TimeParseError::Syntax(err.to_string()))?;
    let nanos = parsed.unix_timestamp_nanos();
    let magnitude = nanos.unsigned_abs();
    let secs = u64::try_from(magnitude / 1_000_000_000).map_err(|_| TimeRangeError)?;
    // The remainder is below 10^9 and fits.
    let magnitude = Duration::new(secs, (magnitude % 1_000_000_000) as u32);
    let t = if nanos >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    };
    Ok(t.ok_or(TimeRangeError)?)
}
