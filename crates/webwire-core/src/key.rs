use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Makes the key of each new session.
///
/// The key is a bearer credential: whoever knows it can restore the session.
/// Keep the [`DefaultKeyGenerator`] unless you know exactly why not. A key
/// must be 1 to 255 bytes of printable ASCII (32..=126) for clients to
/// restore it; `webwire-server`'s `FileSessionManager` further accepts
/// only `A-Z a-z 0-9 _ -`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use webwire_core::session::SessionKeyGenerator;
///
/// /// Predictable keys: for tests only!
/// #[derive(Debug, Default)]
/// struct Counter(AtomicU64);
///
/// impl SessionKeyGenerator for Counter {
///     fn generate(&self) -> String {
///         format!("test-{}", self.0.fetch_add(1, Ordering::Relaxed))
///     }
/// }
///
/// let keys = Counter::default();
/// assert_eq!(keys.generate(), "test-0");
/// assert_eq!(keys.generate(), "test-1");
/// ```
pub trait SessionKeyGenerator: Send + Sync + fmt::Debug {
    /// A new session key, different from every key made before.
    fn generate(&self) -> String;
}

/// The default session key generator: 48 bytes from the operating system's
/// secure random generator, URL-safe base64 without padding, so 64
/// characters of `A-Z a-z 0-9 - _`.
///
/// ```
/// use webwire_core::session::{DefaultKeyGenerator, SessionKeyGenerator};
///
/// let key = DefaultKeyGenerator.generate();
/// assert_eq!(key.len(), 64);
/// assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
/// assert_ne!(key, DefaultKeyGenerator.generate());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultKeyGenerator;

/// How many random bytes a default key holds.
const KEY_BYTES: usize = 48;

impl SessionKeyGenerator for DefaultKeyGenerator {
    /// # Panics
    ///
    /// If the operating system's random generator fails, which on the
    /// supported systems does not happen once it has been seeded; a session
    /// without a secret key must not be made.
    fn generate(&self) -> String {
        let mut bytes = [0u8; KEY_BYTES];
        if let Err(err) = getrandom::fill(&mut bytes) {
            panic!("the operating system's secure random generator failed: {err}");
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn default_keys_are_64_url_safe_chars_of_48_random_bytes() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let key = DefaultKeyGenerator.generate();
            assert_eq!(key.len(), 64);
            assert!(key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(URL_SAFE_NO_PAD.decode(&key).unwrap().len(), KEY_BYTES);
            assert!(seen.insert(key), "duplicate key");
        }
    }

    #[test]
    fn usable_as_trait_object() {
        let generator: std::sync::Arc<dyn SessionKeyGenerator> =
            std::sync::Arc::new(DefaultKeyGenerator);
        assert_eq!(generator.generate().len(), 64);
    }
}
