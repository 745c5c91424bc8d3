//! The upgrade request's headers as a connection keeps them: one buffer
//! until the application asks for them as a [`HeaderMap`].
//!
//! A `HeaderMap` costs about 100 bytes per header in three allocations
//! (a browser's upgrade: 1.5–3 KiB); every idle connection would hold one
//! that most applications never read after the upgrade.

use std::fmt;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Headers stored compactly, made into a [`HeaderMap`] on first use.
#[derive(Clone, Default)]
pub(crate) struct StoredHeaders {
    /// For each header: name length (u16 LE), name, value length (u32 LE),
    /// value, and 1 if the value is sensitive.
    packed: Bytes,
    map: OnceLock<HeaderMap>,
}

impl StoredHeaders {
    /// Headers given as a map (kept as they are).
    pub(crate) fn from_map(map: HeaderMap) -> Self {
        Self {
            packed: Bytes::new(),
            map: OnceLock::from(map),
        }
    }

    /// A copy of `headers` in one allocation of its own (nothing of the
    /// request's buffers is kept).
    pub(crate) fn packed(headers: &HeaderMap) -> Self {
        let len = headers
            .iter()
            .map(|(name, value)| 2 + name.as_str().len() + 4 + value.len() + 1)
            .sum();
        let mut packed = BytesMut::with_capacity(len);
        for (name, value) in headers {
            let name = name.as_str().as_bytes();
            // Header names and values fit: the head was checked against
            // the server's `max_header_bytes` (16 KiB by default).
            packed.put_u16_le(u16::try_from(name.len()).unwrap_or(u16::MAX));
            packed.put_slice(&name[..name.len().min(usize::from(u16::MAX))]);
            packed.put_u32_le(u32::try_from(value.len()).unwrap_or(u32::MAX));
            packed.put_slice(value.as_bytes());
            packed.put_u8(u8::from(value.is_sensitive()));
        }
        Self {
            packed: packed.freeze(),
            map: OnceLock::new(),
        }
    }

    /// The headers as a map, made the first time.
    pub(crate) fn get(&self) -> &HeaderMap {
        self.map.get_or_init(|| unpack(&self.packed))
    }
}

/// The map of packed headers; values are slices of the packed buffer.
fn unpack(packed: &Bytes) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut at = 0;
    while at < packed.len() {
        let name_len = usize::from(u16::from_le_bytes([packed[at], packed[at + 1]]));
        let name = &packed[at + 2..at + 2 + name_len];
        at += 2 + name_len;
        let value_len =
            u32::from_le_bytes([packed[at], packed[at + 1], packed[at + 2], packed[at + 3]])
                as usize;
        let value = packed.slice(at + 4..at + 4 + value_len);
        let sensitive = packed[at + 4 + value_len] == 1;
        at += 4 + value_len + 1;
        // Both were valid when packed.
        let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(value),
        ) else {
            continue;
        };
        value.set_sensitive(sensitive);
        map.append(name, value);
    }
    map
}

impl fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, CONNECTION};

    #[test]
    fn packed_headers_read_back_equal() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.append("x-multi", HeaderValue::from_static("one"));
        headers.append("x-multi", HeaderValue::from_static(""));
        headers.append("x-multi", HeaderValue::from_static("three"));
        headers.append("x-binary", HeaderValue::from_bytes(&[0x80, 0xff]).unwrap());
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        headers.append(AUTHORIZATION, secret);

        let stored = StoredHeaders::packed(&headers);
        assert_eq!(stored.get(), &headers);
        let multi: Vec<_> = stored.get().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "", "three"]);
        assert!(stored.get()[AUTHORIZATION].is_sensitive());
        assert!(!stored.get()[CONNECTION].is_sensitive());
        assert_eq!(stored.clone().get(), &headers);
        assert!(StoredHeaders::packed(&HeaderMap::new()).get().is_empty());
        assert_eq!(StoredHeaders::from_map(headers.clone()).get(), &headers);
    }
}
