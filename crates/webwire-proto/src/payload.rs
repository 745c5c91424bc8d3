use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use crate::ValueError;

/// How a payload's bytes are to be read.
///
/// ```
/// use webwire_proto::Encoding;
///
/// assert_eq!(Encoding::default(), Encoding::Binary);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Opaque bytes.
    #[default]
    Binary,
    /// UTF-8 text.
    Utf8,
    /// UTF-16 little-endian code units (an even number of bytes).
    Utf16,
}

/// Why a payload could not be read as text.
///
/// ```
/// use webwire_proto::{Encoding, Payload, TextError};
///
/// // A lone high surrogate (0xD83D) is not text.
/// let payload = Payload::new(Encoding::Utf16, vec![0x3d, 0xd8])?;
/// assert_eq!(payload.to_text(), Err(TextError::UnpairedSurrogate { offset: 0 }));
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A binary or UTF-8 payload that is not valid UTF-8.
    #[error("payload is not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    InvalidUtf8 {
        /// How many leading bytes are valid UTF-8.
        valid_up_to: usize,
    },
    /// A UTF-16 payload with an odd number of bytes.
    #[error("UTF-16 payload has odd length {len}")]
    OddUtf16Length {
        /// The payload's length.
        len: usize,
    },
    /// A UTF-16 surrogate without its pair.
    #[error("UTF-16 payload has an unpaired surrogate at byte offset {offset}")]
    UnpairedSurrogate {
        /// The byte offset of the surrogate's code unit.
        offset: usize,
    },
}

/// The data of a request, signal or reply, with its encoding.
///
/// Cloning is cheap: the bytes are reference-counted.
///
/// ```
/// use webwire_proto::{Encoding, Payload};
///
/// let text = Payload::utf16("héllo 🌍");
/// assert_eq!(text.encoding(), Encoding::Utf16);
/// assert_eq!(text.to_text()?, "héllo 🌍");
///
/// let raw = Payload::binary(vec![0xff, 0x00]);
/// assert_eq!(raw.as_bytes().as_ref(), [0xff, 0x00]);
/// # Ok::<(), webwire_proto::TextError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload {
    encoding: Encoding,
    data: Bytes,
}

impl Payload {
    /// A payload of the given encoding, refused if UTF-16 with an odd length.
    ///
    /// UTF-8 payloads are not validated here (a peer may send anything);
    /// [`Payload::to_text`] validates when the text is read.
    pub fn new(encoding: Encoding, data: impl Into<Bytes>) -> Result<Self, ValueError> {
        let data = data.into();
        if encoding == Encoding::Utf16 && !data.len().is_multiple_of(2) {
            return Err(ValueError::OddUtf16Length { len: data.len() });
        }
        Ok(Self { encoding, data })
    }

    /// Wraps bytes whose layout the parser has already checked.
    pub(crate) fn from_checked(encoding: Encoding, data: Bytes) -> Self {
        Self { encoding, data }
    }

    /// A binary payload.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self {
            encoding: Encoding::Binary,
            data: data.into(),
        }
    }

    /// A UTF-8 text payload.
    pub fn utf8(text: impl Into<String>) -> Self {
        Self {
            encoding: Encoding::Utf8,
            data: Bytes::from(text.into()),
        }
    }

    /// A UTF-16 (little-endian) text payload, encoded from `text`.
    pub fn utf16(text: &str) -> Self {
        let mut data = Vec::with_capacity(text.len() * 2);
        for unit in text.encode_utf16() {
            data.extend_from_slice(&unit.to_le_bytes());
        }
        Self {
            encoding: Encoding::Utf16,
            data: Bytes::from(data),
        }
    }

    /// A UTF-8 payload holding `value` as JSON.
    ///
    /// ```
    /// use webwire_proto::Payload;
    ///
    /// let payload = Payload::json(&serde_json::json!({"a": 1}))?;
    /// assert_eq!(payload.to_text().unwrap(), r#"{"a":1}"#);
    /// let back: serde_json::Value = payload.parse_json()?;
    /// assert_eq!(back["a"], 1);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self {
            encoding: Encoding::Utf8,
            data: Bytes::from(serde_json::to_vec(value)?),
        })
    }

    /// The payload read as JSON: binary and UTF-8 payloads directly,
    /// UTF-16 payloads after decoding.
    pub fn parse_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.encoding {
            Encoding::Binary | Encoding::Utf8 => serde_json::from_slice(&self.data),
            Encoding::Utf16 => match decode_utf16le(&self.data) {
                Ok(text) => serde_json::from_str(&text),
                Err(err) => Err(serde::de::Error::custom(err)),
            },
        }
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The raw bytes, as they travel on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// The raw bytes, consuming the payload.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The length of the raw bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The payload as text.
    ///
    /// Binary and UTF-8 payloads are read as UTF-8 and borrowed; UTF-16
    /// payloads are decoded (losslessly, when valid) into a new string.
    pub fn to_text(&self) -> Result<Cow<'_, str>, TextError> {
        match self.encoding {
            Encoding::Binary | Encoding::Utf8 => std::str::from_utf8(&self.data)
                .map(Cow::Borrowed)
                .map_err(|err| TextError::InvalidUtf8 {
                    valid_up_to: err.valid_up_to(),
                }),
            Encoding::Utf16 => decode_utf16le(&self.data).map(Cow::Owned),
        }
    }
}

fn decode_utf16le(data: &[u8]) -> Result<String, TextError> {
    if !data.len().is_multiple_of(2) {
        return Err(TextError::OddUtf16Length { len: data.len() });
    }
    let units = data
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    let mut text = String::with_capacity(data.len() / 2);
    let mut offset = 0;
    for decoded in char::decode_utf16(units) {
        match decoded {
            Ok(c) => {
                text.push(c);
                offset += c.len_utf16() * 2;
            }
            Err(_) => return Err(TextError::UnpairedSurrogate { offset }),
        }
    }
    Ok(text)
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("encoding", &self.encoding)
            .field("data", &self.data)
            .finish()
    }
}

impl From<&str> for Payload {
    /// A UTF-8 payload (the text is copied).
    fn from(text: &str) -> Self {
        Self {
            encoding: Encoding::Utf8,
            data: Bytes::copy_from_slice(text.as_bytes()),
        }
    }
}

impl From<String> for Payload {
    /// A UTF-8 payload.
    fn from(text: String) -> Self {
        Self::utf8(text)
    }
}

impl From<Bytes> for Payload {
    /// A binary payload.
    fn from(data: Bytes) -> Self {
        Self::binary(data)
    }
}

impl From<Vec<u8>> for Payload {
    /// A binary payload.
    fn from(data: Vec<u8>) -> Self {
        Self::binary(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_round_trips_astral_characters() {
        let text = "Привет, 🌍! \u{10FFFF}";
        let payload = Payload::utf16(text);
        assert_eq!(payload.len() % 2, 0);
        assert_eq!(payload.to_text().unwrap(), text);
    }

    #[test]
    fn utf16_errors() {
        assert_eq!(
            Payload::new(Encoding::Utf16, vec![1, 2, 3]),
            Err(ValueError::OddUtf16Length { len: 3 })
        );
        // 'a', then a lone low surrogate 0xDC00.
        let payload = Payload::new(Encoding::Utf16, vec![b'a', 0, 0x00, 0xdc]).unwrap();
        assert_eq!(
            payload.to_text(),
            Err(TextError::UnpairedSurrogate { offset: 2 })
        );
        // A high surrogate followed by a non-surrogate.
        let payload = Payload::new(Encoding::Utf16, vec![0x3d, 0xd8, b'a', 0]).unwrap();
        assert_eq!(
            payload.to_text(),
            Err(TextError::UnpairedSurrogate { offset: 0 })
        );
    }

    #[test]
    fn utf8_text_is_borrowed_and_validated() {
        let payload = Payload::utf8("ok");
        assert!(matches!(payload.to_text().unwrap(), Cow::Borrowed("ok")));
        let bad = Payload::new(Encoding::Utf8, vec![b'a', 0xff]).unwrap();
        assert_eq!(
            bad.to_text(),
            Err(TextError::InvalidUtf8 { valid_up_to: 1 })
        );
    }
}
