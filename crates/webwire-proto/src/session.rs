//! The session as it travels on the wire (docs/protocol.md section 8).

use std::fmt;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rfc3339::{format_rfc3339, parse_rfc3339, TimeParseError, TimeRangeError};

/// The application's information attached to a session: a JSON object.
///
/// ```
/// use serde_json::json;
/// use webwire_proto::SessionInfo;
///
/// let mut info = SessionInfo::new();
/// info.insert("user".into(), json!("alice"));
/// assert_eq!(serde_json::Value::Object(info), json!({"user": "alice"}));
/// ```
pub type SessionInfo = serde_json::Map<String, serde_json::Value>;

/// A session: its key, creation time, last lookup time and optional info.
///
/// On the wire (the payload of NotifySessionCreated, and the reply to a
/// session restore) a session is the UTF-8 JSON object
/// `{"k":key,"c":creation,"l":last_lookup,"i":info}`, written by
/// [`Session::to_json`] and read by [`Session::from_json`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use webwire_proto::{Session, SessionInfo};
///
/// let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
/// let session = Session::new("key", created, None);
/// let json = session.to_json()?;
/// assert_eq!(json, r#"{"k":"key","c":"2026-01-02T03:04:05.000000000Z","l":"2026-01-02T03:04:05.000000000Z"}"#);
/// assert_eq!(Session::from_json(json.as_bytes())?, session);
/// # Ok::<(), webwire_proto::SessionJsonError>(())
/// ```
///
/// Its [`Debug`](fmt::Debug) shows the key as a [`KeyDigest`], never the
/// key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The session key (printable ASCII; the default server generator makes
    /// 64 URL-safe base64 characters).
    pub key: String,
    /// When the session was created.
    pub creation: SystemTime,
    /// When the session was last looked up (restored), or its creation time.
    pub last_lookup: SystemTime,
    /// The application's information, if any.
    pub info: Option<SessionInfo>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("key", &KeyDigest::new(&self.key))
            .field("creation", &self.creation)
            .field("last_lookup", &self.last_lookup)
            .field("info", &self.info)
            .finish()
    }
}

/// How a session key is shown in logs, errors and `Debug` output: the first
/// 4 bytes of its SHA-1, in hex, after `sha1:`.
///
/// A session key is a bearer credential (whoever knows it can restore the
/// session), so no log line, error message or `Debug` output prints one.
/// The digest tells keys apart (the same key always gives the same digest,
/// on every node) without telling anything useful about a random key.
///
/// ```
/// use webwire_proto::{KeyDigest, Session};
///
/// let key = "ZmFrZS1rZXktZm9yLXRoZS1kb2N1bWVudGF0aW9u";
/// let digest = KeyDigest::new(key).to_string();
/// assert_eq!(digest.len(), "sha1:".len() + 8);
/// assert_eq!(digest, KeyDigest::new(key.as_bytes()).to_string());
/// assert_ne!(digest, KeyDigest::new("another key").to_string());
///
/// let session = Session::new(key, std::time::SystemTime::now(), None);
/// let debug = format!("{session:?}");
/// assert!(!debug.contains(key) && debug.contains(&digest));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 4]);

impl KeyDigest {
    /// The digest of `key`.
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        let hash = sha1_smol::Sha1::from(key.as_ref()).digest().bytes();
        Self([hash[0], hash[1], hash[2], hash[3]])
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "sha1:{a:02x}{b:02x}{c:02x}{d:02x}")
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a session could not be read from or written as JSON.
///
/// ```
/// use webwire_proto::{Session, SessionJsonError};
///
/// let err = Session::from_json(br#"{"k":"key"}"#).unwrap_err();
/// assert!(matches!(err, SessionJsonError::Json(_)));
/// assert!(err.to_string().contains("missing field `c`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionJsonError {
    /// Not JSON, not an object, a missing field or a field of the wrong type.
    #[error("invalid session JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A time field that is not an RFC 3339 date and time.
    #[error("session field {field:?} is not an RFC 3339 time ({value:?}): {reason}")]
    BadTime {
        /// The field: `"c"` or `"l"`.
        field: &'static str,
        /// The field's text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time outside what both RFC 3339 (years 0000 to 9999) and this
    /// platform's [`SystemTime`] can hold.
    #[error("session field {field:?} holds a time outside the years 0000..=9999")]
    TimeOutOfRange {
        /// The field: `"c"` or `"l"`.
        field: &'static str,
    },
    /// An info field that does not have the requested type.
    #[error("session info field {name:?} has an unexpected type: {source}")]
    InfoField {
        /// The field's name.
        name: String,
        /// Why it did not deserialize.
        #[source]
        source: serde_json::Error,
    },
}

/// The JSON object written on the wire; field order is the wire order.
#[derive(Serialize)]
struct WireOut<'a> {
    k: &'a str,
    c: &'a str,
    l: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<&'a SessionInfo>,
}

/// The JSON object read from the wire; unknown fields are ignored.
#[derive(Deserialize)]
struct WireIn {
    k: String,
    c: String,
    l: String,
    #[serde(default)]
    i: Option<SessionInfo>,
}

impl Session {
    /// A session created at `now`: both its creation and last lookup time
    /// are `now`.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use webwire_proto::Session;
    ///
    /// let now = SystemTime::now();
    /// let session = Session::new("key", now, None);
    /// assert_eq!(session.creation, now);
    /// assert_eq!(session.last_lookup, now);
    /// ```
    pub fn new(key: impl Into<String>, now: SystemTime, info: Option<SessionInfo>) -> Self {
        Self {
            key: key.into(),
            creation: now,
            last_lookup: now,
            info,
        }
    }

    /// The session as wire JSON: `{"k":key,"c":creation,"l":last_lookup,"i":info}`.
    ///
    /// Times are written in UTC with nine fractional digits
    /// (`2026-01-02T03:04:05.123456789Z`); `"i"` is left out when
    /// [`info`](Self::info) is `None`. Fails only with
    /// [`SessionJsonError::TimeOutOfRange`] for a time before the year 0000
    /// or after 9999.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use serde_json::json;
    /// use webwire_proto::Session;
    ///
    /// let t = SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789);
    /// let info = json!({"user": "alice"}).as_object().cloned();
    /// let session = Session::new("key", t, info);
    /// assert_eq!(
    ///     session.to_json()?,
    ///     r#"{"k":"key","c":"2026-01-02T03:04:05.123456789Z","l":"2026-01-02T03:04:05.123456789Z","i":{"user":"alice"}}"#
    /// );
    /// # Ok::<(), webwire_proto::SessionJsonError>(())
    /// ```
    pub fn to_json(&self) -> Result<String, SessionJsonError> {
        let creation = format_time(self.creation, "c")?;
        let last_lookup = format_time(self.last_lookup, "l")?;
        let wire = WireOut {
            k: &self.key,
            c: &creation,
            l: &last_lookup,
            i: self.info.as_ref(),
        };
        serde_json::to_string(&wire).map_err(SessionJsonError::Json)
    }

    /// Reads a session from wire JSON.
    ///
    /// Times may be any RFC 3339 date and time: any UTC offset (the original
    /// Go server writes local offsets) and 0 to 9 fractional digits. `"i"`
    /// may be missing or `null` (no info); other unknown fields are ignored.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use webwire_proto::Session;
    ///
    /// let session = Session::from_json(
    ///     br#"{"k":"abc","c":"2026-01-02T05:04:05+02:00","l":"2026-01-02T03:04:05.5Z","i":{"n":1}}"#,
    /// )?;
    /// assert_eq!(session.key, "abc");
    /// assert_eq!(session.creation, SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045));
    /// assert_eq!(session.last_lookup, session.creation + Duration::from_millis(500));
    /// assert_eq!(session.info_field::<u32>("n")?, Some(1));
    /// # Ok::<(), webwire_proto::SessionJsonError>(())
    /// ```
    pub fn from_json(json: &[u8]) -> Result<Self, SessionJsonError> {
        let wire: WireIn = serde_json::from_slice(json).map_err(SessionJsonError::Json)?;
        Ok(Self {
            creation: parse_time(&wire.c, "c")?,
            last_lookup: parse_time(&wire.l, "l")?,
            key: wire.k,
            info: wire.i,
        })
    }

    /// The info field `name`, deserialized as a `T`.
    ///
    /// `Ok(None)` when there is no info or no such field; an error when the
    /// field's value is not a `T`.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use serde_json::json;
    /// use webwire_proto::Session;
    ///
    /// let info = json!({"user": "alice", "roles": ["admin"]}).as_object().cloned();
    /// let session = Session::new("key", SystemTime::now(), info);
    /// assert_eq!(session.info_field::<String>("user")?, Some("alice".to_owned()));
    /// assert_eq!(session.info_field::<Vec<String>>("roles")?, Some(vec!["admin".to_owned()]));
    /// assert_eq!(session.info_field::<String>("missing")?, None);
    /// assert!(session.info_field::<u64>("user").is_err());
    /// # Ok::<(), webwire_proto::SessionJsonError>(())
    /// ```
    pub fn info_field<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, SessionJsonError> {
        let Some(value) = self.info.as_ref().and_then(|info| info.get(name)) else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| SessionJsonError::InfoField {
                name: name.to_owned(),
                source,
            })
    }
}

/// `t` as RFC 3339 in UTC with nine fractional digits.
fn format_time(t: SystemTime, field: &'static str) -> Result<String, SessionJsonError> {
    format_rfc3339(t).map_err(|TimeRangeError| SessionJsonError::TimeOutOfRange { field })
}

/// Any RFC 3339 date and time as a [`SystemTime`].
fn parse_time(text: &str, field: &'static str) -> Result<SystemTime, SessionJsonError> {
    parse_rfc3339(text).map_err(|err| match err {
        TimeParseError::Syntax(reason) => SessionJsonError::BadTime {
            field,
            value: text.to_owned(),
            reason,
        },
        TimeParseError::OutOfRange(TimeRangeError) => SessionJsonError::TimeOutOfRange { field },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::{json, Value};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    use super::*;

    /// 2026-01-02T03:04:05.123456789Z
    fn vector_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789)
    }

    fn info(value: Value) -> Option<SessionInfo> {
        value.as_object().cloned()
    }

    /// The "session created notification" vector of
    /// tests/data/webwire-v2.json (the shared protocol vectors), as the original Go server wrote it
    /// (the message's bytes after the type byte 21).
    const VECTOR_HEX: &str = "7b226b223a226b6579222c2263223a22323032362d30312d30325430333a30343a30352e3132333435363738395a222c226c223a22323032362d30312d30325430333a30343a30352e3132333435363738395a222c2269223a7b2275736572223a22616c696365227d7d";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn notify_session_created_vector_byte_exact() {
        let session = Session::new("key", vector_time(), info(json!({"user": "alice"})));
        let expected = unhex(VECTOR_HEX);
        assert_eq!(session.to_json().unwrap().as_bytes(), &expected[..]);
        assert_eq!(Session::from_json(&expected).unwrap(), session);
    }

    #[test]
    fn no_info_leaves_out_i() {
        let session = Session::new("k", vector_time(), None);
        let json = session.to_json().unwrap();
        assert_eq!(
            json,
            r#"{"k":"k","c":"2026-01-02T03:04:05.123456789Z","l":"2026-01-02T03:04:05.123456789Z"}"#
        );
        assert_eq!(Session::from_json(json.as_bytes()).unwrap().info, None);
    }

    #[test]
    fn empty_info_is_kept() {
        let session = Session::new("k", vector_time(), Some(SessionInfo::new()));
        let json = session.to_json().unwrap();
        assert!(json.ends_with(r#","i":{}}"#), "{json}");
        assert_eq!(Session::from_json(json.as_bytes()).unwrap(), session);
    }

    #[test]
    fn null_info_is_no_info() {
        let s = Session::from_json(
            br#"{"k":"k","c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z","i":null}"#,
        )
        .unwrap();
        assert_eq!(s.info, None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let s = Session::from_json(
            br#"{"x":1,"k":"k","c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(s.key, "k");
    }

    #[test]
    fn whole_seconds_and_pre_epoch_times_are_written_with_nine_digits() {
        let s = Session {
            key: "k".into(),
            creation: SystemTime::UNIX_EPOCH,
            last_lookup: SystemTime::UNIX_EPOCH - Duration::new(1, 500_000_000),
            info: None,
        };
        let json = s.to_json().unwrap();
        assert_eq!(
            json,
            r#"{"k":"k","c":"1970-01-01T00:00:00.000000000Z","l":"1969-12-31T23:59:58.500000000Z"}"#
        );
        assert_eq!(Session::from_json(json.as_bytes()).unwrap(), s);
    }

    #[test]
    fn accepts_offsets_and_any_fraction_length() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        let cases = [
            ("2026-01-02T03:04:05Z", base),
            ("2026-01-02T03:04:05.1Z", base + Duration::from_millis(100)),
            (
                "2026-01-02T03:04:05.123Z",
                base + Duration::from_millis(123),
            ),
            (
                "2026-01-02T03:04:05.123456Z",
                base + Duration::from_micros(123_456),
            ),
            ("2026-01-02T03:04:05.123456789Z", vector_time()),
            ("2026-01-02T04:04:05.123456789+01:00", vector_time()),
            ("2026-01-01T22:34:05.123456789-04:30", vector_time()),
            ("2026-01-02T03:04:05.123456789+00:00", vector_time()),
            ("2026-01-02t03:04:05.123456789z", vector_time()),
            // RFC 3339 section 5.6 allows a space for the "T".
            ("2026-01-02 03:04:05.123456789Z", vector_time()),
        ];
        for (text, expected) in cases {
            let json = format!(r#"{{"k":"k","c":"{text}","l":"{text}"}}"#);
            let s = Session::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.creation, expected, "{text}");
            assert_eq!(s.last_lookup, expected, "{text}");
        }
    }

    #[test]
    fn bad_times_are_typed_errors() {
        for bad in [
            "",
            "yesterday",
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-13-02T03:04:05Z",
            "2026-01-02T25:04:05Z",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+0100",
            "2026-01-02T03:04:05Z ",
        ] {
            let json = format!(r#"{{"k":"k","c":"2026-01-02T03:04:05Z","l":"{bad}"}}"#);
            match Session::from_json(json.as_bytes()) {
                Err(SessionJsonError::BadTime { field, value, .. }) => {
                    assert_eq!(field, "l", "{bad:?}");
                    assert_eq!(value, bad);
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn time_of_wrong_type_is_json_error() {
        let err = Session::from_json(br#"{"k":"k","c":1767323045,"l":"2026-01-02T03:04:05Z"}"#)
            .unwrap_err();
        assert!(matches!(err, SessionJsonError::Json(_)), "{err:?}");
    }

    #[test]
    fn malformed_json_is_json_error() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"\"k\"",
            b"{\"k\":\"k\",\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\"",
            b"{\"k\":\"k\",\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\"}x",
            b"\xff\xfe",
            b"{\"k\":\"\xff\",\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\"}",
            b"{\"k\":1,\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\"}",
            b"{\"k\":\"k\",\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\",\"i\":[1]}",
            b"{\"k\":\"k\",\"c\":\"2026-01-02T03:04:05Z\",\"l\":\"2026-01-02T03:04:05Z\",\"i\":\"x\"}",
        ] {
            let err = Session::from_json(bad).unwrap_err();
            assert!(matches!(err, SessionJsonError::Json(_)), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let full = json!({"k": "k", "c": "2026-01-02T03:04:05Z", "l": "2026-01-02T03:04:05Z"});
        for field in ["k", "c", "l"] {
            let mut partial = full.clone();
            partial.as_object_mut().unwrap().remove(field);
            let err = Session::from_json(partial.to_string().as_bytes()).unwrap_err();
            assert!(matches!(err, SessionJsonError::Json(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains(&format!("missing field `{field}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn out_of_range_times_are_refused_on_write() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        let s = Session::new("k", far, None);
        assert!(matches!(
            s.to_json(),
            Err(SessionJsonError::TimeOutOfRange { field: "c" })
        ));
        let s = Session {
            last_lookup: SystemTime::UNIX_EPOCH - Duration::from_secs(62_200_000_000),
            ..Session::new("k", SystemTime::UNIX_EPOCH, None)
        };
        assert!(matches!(
            s.to_json(),
            Err(SessionJsonError::TimeOutOfRange { field: "l" })
        ));
    }

    #[test]
    fn extreme_years_round_trip() {
        for text in [
            "0000-01-01T00:00:00.000000000Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let json = format!(r#"{{"k":"k","c":"{text}","l":"{text}"}}"#);
            let s = Session::from_json(json.as_bytes()).unwrap();
            assert_eq!(s.to_json().unwrap(), json);
        }
    }

    #[test]
    fn info_field_types() {
        let s = Session::new(
            "k",
            vector_time(),
            info(json!({"n": 5, "s": "x", "nested": {"a": [1, 2]}, "nil": null})),
        );
        assert_eq!(s.info_field::<i64>("n").unwrap(), Some(5));
        assert_eq!(s.info_field::<String>("s").unwrap(), Some("x".to_owned()));
        assert_eq!(
            s.info_field::<Value>("nested").unwrap(),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(s.info_field::<Option<u8>>("nil").unwrap(), Some(None));
        assert_eq!(s.info_field::<u8>("absent").unwrap(), None);
        match s.info_field::<u8>("s") {
            Err(SessionJsonError::InfoField { name, .. }) => assert_eq!(name, "s"),
            other => panic!("{other:?}"),
        }
        let none = Session::new("k", vector_time(), None);
        assert_eq!(none.info_field::<u8>("n").unwrap(), None);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Any instant RFC 3339 can write: years 0000 to 9999, in nanoseconds.
    fn arb_time() -> impl Strategy<Value = SystemTime> {
        (-62_167_219_200i64..253_402_300_800i64, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
            let base = if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            base + Duration::from_nanos(u64::from(nanos))
        })
    }

    proptest! {
        #[test]
        fn round_trip(
            key in any::<String>(),
            creation in arb_time(),
            last_lookup in arb_time(),
            info in prop::option::of(prop::collection::btree_map(any::<String>(), arb_value(), 0..6)),
        ) {
            let session = Session {
                key,
                creation,
                last_lookup,
                info: info.map(|m| m.into_iter().collect()),
            };
            let json = session.to_json().unwrap();
            prop_assert_eq!(Session::from_json(json.as_bytes()).unwrap(), session);
        }

        #[test]
        fn any_offset_reads_the_same_instant(
            t in arb_time(),
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32),
            digits in 0usize..=9,
        ) {
            let utc = format_time(t, "c").unwrap();
            let odt = OffsetDateTime::parse(&utc, &Rfc3339).unwrap();
            let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let local = odt.to_offset(offset);
            prop_assume!((0..=9999).contains(&local.year()));
            let fraction = format!("{:09}", local.nanosecond());
            let fraction = if digits == 0 { String::new() } else { format!(".{}", &fraction[..digits]) };
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{sign}{:02}:{:02}",
                local.year(), u8::from(local.month()), local.day(),
                local.hour(), local.minute(), local.second(),
                offset_minutes.unsigned_abs() / 60, offset_minutes.unsigned_abs() % 60,
            );
            let parsed = parse_time(&text, "c").unwrap();
            let truncated_nanos = (odt.nanosecond() / 10u32.pow(9 - digits as u32)) * 10u32.pow(9 - digits as u32);
            let expected = t - Duration::from_nanos(u64::from(odt.nanosecond() - truncated_nanos));
            prop_assert_eq!(parsed, expected, "{}", text);
        }
    }
}
