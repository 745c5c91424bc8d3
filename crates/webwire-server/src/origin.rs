//! Which browser pages may connect: the `Origin` check of the upgrade.

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Uri};

/// Which origins may open a connection.
///
/// Browsers send an `Origin` header with every WebSocket upgrade; other
/// clients usually send none, and a request without one is always
/// allowed. The default, [`OriginPolicy::SameOrigin`], accepts an `Origin`
/// whose host (and port) equals the request's `Host` header, as the
/// original server's WebSocket library did, so that pages of other sites
/// cannot connect with the user's cookies.
///
/// ```
/// use webwire_server::options::OriginPolicy;
///
/// let policy = OriginPolicy::allow_list(["https://app.example.com"]);
/// assert!(policy.allows(Some("https://APP.example.com"), Some("api.example.com")));
/// assert!(!policy.allows(Some("https://evil.example"), Some("api.example.com")));
/// // Same origin is always allowed, and so is a request without an Origin.
/// assert!(policy.allows(Some("https://api.example.com"), Some("api.example.com")));
/// assert!(policy.allows(None, Some("api.example.com")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Only pages of the server's own origin (`Origin` host equals `Host`).
    #[default]
    SameOrigin,
    /// The server's own origin and these origins (`scheme://host[:port]`,
    /// compared without regard to ASCII case).
    AllowList(Vec<String>),
    /// Any origin (what the interop server does).
    AllowAny,
}

impl OriginPolicy {
    /// Same origin plus the given origins, such as `"https://app.example.com"`.
    pub fn allow_list<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::AllowList(
            origins
                .into_iter()
                .map(|origin| origin.into().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether a request with this `Origin` and `Host` header may connect.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            Self::AllowAny => true,
            Self::SameOrigin => same_origin(origin, host),
            Self::AllowList(list) => {
                same_origin(origin, host)
                    || list
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(origin.trim_end_matches('/')))
            }
        }
    }

    pub(crate) fn allows_request(&self, headers: &HeaderMap) -> bool {
        let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        self.allows(origin, host)
    }
}

/// The origin's `host[:port]` equals the `Host` header, ignoring ASCII case.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Ok(uri) = origin.parse::<Uri>() else {
        return false;
    };
    uri.authority()
        .is_some_and(|authority| authority.as_str().eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_compares_host_and_port() {
        let policy = OriginPolicy::SameOrigin;
        assert!(policy.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(!policy.allows(Some("http://127.0.0.1:8081"), Some("127.0.0.1:8080")));
        assert!(!policy.allows(Some("null"), Some("127.0.0.1:8080")));
        assert!(!policy.allows(Some("http://a.example"), None));
        assert!(policy.allows(None, None));
    }

    #[test]
    fn allow_any_allows_everything() {
        assert!(OriginPolicy::AllowAny.allows(Some("null"), None));
    }
}
