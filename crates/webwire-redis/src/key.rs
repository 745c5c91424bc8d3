//! Session keys and the Redis keys built from them.

/// The longest session key accepted, in bytes (docs/protocol.md section 8).
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Whether `key` is a session key this manager stores: 1 to 255 bytes, each
/// printable ASCII (32..=126).
///
/// Such a key is used only as the suffix of the configured prefix, and only
/// as a key argument (never as a pattern), so it cannot name a Redis key
/// outside the prefix.
pub(crate) fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| (32..=126).contains(&b))
}

/// What a valid key looks like, for error messages.
pub(crate) const VALID_KEY: &str = "1 to 255 bytes of printable ASCII (32..=126)";

/// How a session key appears in an error message or a log line: keys are
/// bearer credentials, so only their [`KeyDigest`](webwire_proto::KeyDigest)
/// is shown.
pub(crate) fn redacted(key: &str) -> webwire_proto::KeyDigest {
    webwire_proto::KeyDigest::new(key)
}

/// Whether `prefix` may be the namespace of the session keys: 1 to 1024
/// bytes of printable ASCII.
pub(crate) fn is_valid_prefix(prefix: &str) -> bool {
    (1..=1024).contains(&prefix.len()) && prefix.bytes().all(|b| (32..=126).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_of_1_to_255_bytes_is_valid() {
        let longest = "k".repeat(255);
        for good in [
            "a",
            " ",
            "~",
            "../x",
            "*",
            "a:b",
            "[a-z]?",
            "\\",
            "\"quoted\"",
            &longest,
        ] {
            assert!(is_valid_key(good), "{good:?}");
        }
    }

    #[test]
    fn other_keys_are_invalid() {
        let too_long = "k".repeat(256);
        let far_too_long = "k".repeat(300);
        for bad in [
            "",
            "a\nb",
            "a\rb",
            "\t",
            "\0",
            "a\0b",
            "\u{7f}",
            "é",
            "\u{1f600}",
            &too_long,
            &far_too_long,
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn redacted_shows_no_part_of_the_key() {
        let shown = redacted("abcdefgh").to_string();
        assert!(!shown.contains("abcd"), "{shown}");
        assert_eq!(shown, webwire_proto::KeyDigest::new("abcdefgh").to_string());
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("webwire:session:"));
        assert!(is_valid_prefix("x"));
        assert!(!is_valid_prefix(""));
        assert!(!is_valid_prefix("a\nb"));
        assert!(!is_valid_prefix(&"p".repeat(1025)));
    }
}
