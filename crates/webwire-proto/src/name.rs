use std::fmt;

use bytes::Bytes;

use crate::ValueError;

/// The longest name or error code, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The offset and value of the first byte outside printable ASCII (32..=126).
pub(crate) fn first_unprintable(bytes: &[u8]) -> Option<(usize, u8)> {
    bytes
        .iter()
        .position(|b| !(32..=126).contains(b))
        .map(|offset| (offset, bytes[offset]))
}

/// The accessors and trait impls shared by [`Name`] and [`ErrorCode`]:
/// both wrap [`Bytes`] already checked to be printable ASCII.
macro_rules! ascii_bytes_impls {
    ($ty:ident, $what:literal, $plural:literal) => {
        impl $ty {
            #[doc = concat!("The ", $what, " as bytes.")]
            pub fn as_bytes(&self) -> &Bytes {
                &self.0
            }

            #[doc = concat!("The ", $what, " as text (always valid: ", $plural)]
            #[doc = " are printable ASCII)."]
            pub fn as_str(&self) -> &str {
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = ValueError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::new(Bytes::copy_from_slice(value.as_bytes()))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = ValueError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The name of a request or signal: 0 to 255 bytes of printable ASCII.
///
/// Names are the application's namespaces; an empty name means "no name".
/// A name parsed from a message shares that message's bytes.
///
/// ```
/// use webwire_proto::Name;
///
/// let name = Name::new("chat.send")?;
/// assert_eq!(name, "chat.send");
/// assert!(Name::new("é").is_err());
/// assert!(Name::default().is_empty());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Bytes);

impl Name {
    /// A name from bytes, refused if longer than 255 bytes or not printable ASCII.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_NAME_LEN {
            return Err(ValueError::NameTooLong { len: bytes.len() });
        }
        if let Some((offset, byte)) = first_unprintable(&bytes) {
            return Err(ValueError::InvalidNameByte { offset, byte });
        }
        Ok(Self(bytes))
    }

    /// A name from a string literal.
    ///
    /// # Panics
    ///
    /// If the literal is not a valid name: a programming error, like an
    /// invalid literal given to `http::HeaderName::from_static`.
    pub fn from_static(name: &'static str) -> Self {
        match Self::new(Bytes::from_static(name.as_bytes())) {
            Ok(name) => name,
            Err(err) => panic!("invalid webwire name {name:?}: {err}"),
        }
    }

    /// Wraps bytes the parser has already checked.
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// Whether this is the empty name ("no name").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

ascii_bytes_impls!(Name, "name", "names");

/// The code of an error reply: 1 to 255 bytes of printable ASCII.
///
/// ```
/// use webwire_proto::ErrorCode;
///
/// let code = ErrorCode::new("NOT_ALLOWED")?;
/// assert_eq!(code, "NOT_ALLOWED");
/// assert!(ErrorCode::new("").is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(Bytes);

impl ErrorCode {
    /// An error code from bytes, refused if empty, longer than 255 bytes or
    /// not printable ASCII.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ValueError::EmptyErrorCode);
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err(ValueError::ErrorCodeTooLong { len: bytes.len() });
        }
        if let Some((offset, byte)) = first_unprintable(&bytes) {
            return Err(ValueError::InvalidErrorCodeByte { offset, byte });
        }
        Ok(Self(bytes))
    }

    /// An error code from a string literal.
    ///
    /// # Panics
    ///
    /// If the literal is not a valid error code (a programming error).
    pub fn from_static(code: &'static str) -> Self {
        match Self::new(Bytes::from_static(code.as_bytes())) {
            Ok(code) => code,
            Err(err) => panic!("invalid webwire error code {code:?}: {err}"),
        }
    }

    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The length in bytes (1..=255).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

ascii_bytes_impls!(ErrorCode, "code", "codes");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_limits() {
        assert!(Name::new(vec![b'a'; 255]).is_ok());
        assert_eq!(
            Name::new(vec![b'a'; 256]),
            Err(ValueError::NameTooLong { len: 256 })
        );
        assert_eq!(
            Name::new(&b"ab\x7f"[..]),
            Err(ValueError::InvalidNameByte {
                offset: 2,
                byte: 127
            })
        );
        assert_eq!(
            Name::new(&b"\x1f"[..]),
            Err(ValueError::InvalidNameByte {
                offset: 0,
                byte: 31
            })
        );
        assert!(Name::new(&b" ~"[..]).is_ok());
    }

    #[test]
    fn error_code_limits() {
        assert_eq!(ErrorCode::new(""), Err(ValueError::EmptyErrorCode));
        assert_eq!(
            ErrorCode::new(vec![b'E'; 256]),
            Err(ValueError::ErrorCodeTooLong { len: 256 })
        );
        assert!(ErrorCode::new(vec![b'E'; 255]).is_ok());
        assert_eq!(
            ErrorCode::new("E\u{e9}"),
            Err(ValueError::InvalidErrorCodeByte {
                offset: 1,
                byte: 0xc3
            })
        );
    }

    #[test]
    #[should_panic(expected = "invalid webwire name")]
    fn from_static_panics_on_invalid_literal() {
        let _ = Name::from_static("tab\there");
    }
}
