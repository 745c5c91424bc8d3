//! The HTTP side of a connection: checking a WebSocket upgrade request
//! (RFC 6455 4.2), the server's state, the abuse limits (see
//! `admission`), the origin, the connection limit and the application's
//! before-upgrade hook, then answering 101 and
//! handing the upgraded stream to a connection task.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;

use crate::admission::Refused as NotAdmitted;
use crate::connection::ConnectionInfo;
use crate::driver::Accepted;
use crate::server::Shared;

/// The body of the server's HTTP answers.
pub(crate) type Body = Full<Bytes>;

/// The client's address, put into the request's extensions by the
/// standalone listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

/// Answers one HTTP request: 101 and a new connection, or an error status.
///
/// A client's mistake gets a 4xx answer and a DEBUG line (anyone can send
/// one: it must not fill the log with server faults); only the server's
/// own faults are logged as errors, with a 5xx answer.
pub(crate) fn handle<B>(shared: &Arc<Shared>, mut request: Request<B>) -> Response<Body> {
    // First: whatever the request is, a head past the limit is not read
    // further (in headless mode the application's server read it).
    let len = head_len(&request);
    let max = shared.config().max_header_bytes;
    if len > max {
        return refuse(NotUpgrade::TooLarge { len, max });
    }
    if let Some(path) = &shared.config().path
        && request.uri().path() != path
    {
        tracing::debug!(path = %request.uri().path(), "upgrade refused: not the server's path");
        return status(StatusCode::NOT_FOUND, "not found");
    }
    let key = match check_handshake(&request) {
        Ok(key) => key,
        Err(not_upgrade) => return refuse(not_upgrade),
    };
    if shared.shutdown_started() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
    }
    if shared.is_draining() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "server draining");
    }
    let remote_addr = remote_addr(&request);
    let client_ip = shared.client_ip(remote_addr, request.headers());
    let address_permit = match shared.admit(client_ip) {
        Ok(permit) => permit,
        Err(refused) => {
            tracing::debug!(client = ?client_ip, error = %refused, "upgrade refused: over a limit");
            return not_admitted(refused);
        }
    };
    if !shared.allows_origin(request.headers()) {
        tracing::debug!(origin = ?request.headers().get(http::header::ORIGIN), "upgrade refused: origin not allowed");
        return status(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let limit_permit = match shared.take_limit_permit() {
        Ok(permit) => permit,
        Err(_) => {
            tracing::debug!("upgrade refused: connection limit reached");
            return status(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        }
    };
    // Every HTTP/1.1 request with an Upgrade header has one (hyper); it is
    // missing only when the HTTP server does not do upgrades: a fault of
    // the server's set-up, not of the client.
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        tracing::error!(
            "the HTTP server does not support upgrades (serve hyper connections `with_upgrades`)"
        );
        return status(StatusCode::INTERNAL_SERVER_ERROR, "upgrades not supported");
    };
    let info = ConnectionInfo::from_upgrade(
        detach_uri(request.uri()),
        request.headers(),
        remote_addr,
        client_ip,
    );
    let options = match shared.connection_options(&info) {
        Ok(options) => options,
        Err(refusal) => {
            tracing::debug!(status = %refusal.status(), "upgrade refused by the before-upgrade hook");
            return status(refusal.status(), "refused");
        }
    };
    shared.start_connection(
        on_upgrade,
        Accepted {
            info,
            options,
            limit_permit,
            address_permit,
        },
    );

    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    response
}

/// The path of the liveness check (standalone mode): 200 while the
/// process serves.
pub(crate) const HEALTHZ: &str = "/healthz";
/// The path of the readiness check (standalone mode): 200 while the
/// server takes new connections, 503 once a drain or a shutdown started.
pub(crate) const READYZ: &str = "/readyz";

/// Answers a plain `GET` (or `HEAD`) of [`HEALTHZ`] or [`READYZ`] in
/// standalone mode; `None` for anything else, upgrade requests included
/// (they upgrade on any path the server's path option allows).
pub(crate) fn health_check<B>(shared: &Shared, request: &Request<B>) -> Option<Response<Body>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        || request.headers().contains_key(UPGRADE)
    {
        return None;
    }
    match request.uri().path() {
        HEALTHZ => Some(status(StatusCode::OK, "ok")),
        READYZ if shared.is_ready() => Some(status(StatusCode::OK, "ready")),
        READYZ if shared.is_draining() => Some(status(StatusCode::SERVICE_UNAVAILABLE, "draining")),
        READYZ => Some(status(StatusCode::SERVICE_UNAVAILABLE, "shutting down")),
        _ => None,
    }
}

/// Why a request is not a WebSocket upgrade this server takes: each is
/// the client's mistake (RFC 6455 4.2.1), answered with a 4xx status.
#[derive(Debug, Clone, Copy, thiserror::Error)]
enum NotUpgrade {
    #[error("the request head is {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("WebSocket upgrades use GET")]
    Method,
    #[error("this is a webwire (WebSocket) endpoint")]
    NoUpgrade,
    #[error("WebSocket upgrades need HTTP/1.1, not {0:?}")]
    HttpVersion(Version),
    #[error("unsupported WebSocket version")]
    Version,
    #[error("missing Host header")]
    NoHost,
    #[error("missing Sec-WebSocket-Key")]
    NoKey,
    #[error("Sec-WebSocket-Key is not 16 bytes in base64, or is given twice")]
    BadKey,
}

impl NotUpgrade {
    fn response(self) -> Response<Body> {
        let (code, text) = match self {
            Self::TooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            ),
            Self::Method => (StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrades use GET"),
            Self::NoUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "this is a webwire (WebSocket) endpoint",
            ),
            Self::HttpVersion(_) => (StatusCode::BAD_REQUEST, "WebSocket upgrades need HTTP/1.1"),
            Self::Version => (
                StatusCode::UPGRADE_REQUIRED,
                "unsupported WebSocket version",
            ),
            Self::NoHost => (StatusCode::BAD_REQUEST, "missing Host"),
            Self::NoKey => (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"),
            Self::BadKey => (StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key"),
        };
        let mut response = status(code, text);
        let headers = response.headers_mut();
        match self {
            Self::Method => {
                headers.insert(http::header::ALLOW, HeaderValue::from_static("GET"));
            }
            Self::NoUpgrade => {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            }
            Self::Version => {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            // As hyper does when its buffer is too small for a head: a
            // client sending that much is not worth keeping.
            Self::TooLarge { .. } => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Self::HttpVersion(_) | Self::NoHost | Self::NoKey | Self::BadKey => {}
        }
        response
    }
}

/// Logs a client's mistake (below ERROR: anyone can make one) and answers it.
fn refuse(not_upgrade: NotUpgrade) -> Response<Body> {
    tracing::debug!(error = %not_upgrade, "upgrade refused");
    not_upgrade.response()
}

/// Checks that the request asks for a WebSocket (version 13) as RFC 6455
/// 4.2.1 says; returns its key.
fn check_handshake<B>(request: &Request<B>) -> Result<HeaderValue, NotUpgrade> {
    if request.method() != Method::GET {
        return Err(NotUpgrade::Method);
    }
    let headers = request.headers();
    if !header_has_token(headers, &CONNECTION, "upgrade")
        || !header_has_token(headers, &UPGRADE, "websocket")
    {
        return Err(NotUpgrade::NoUpgrade);
    }
    // HTTP/1.0 has no upgrades (hyper gives its requests none), and a
    // WebSocket over HTTP/2 is not a GET with an Upgrade header.
    if request.version() != Version::HTTP_11 {
        return Err(NotUpgrade::HttpVersion(request.version()));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(NotUpgrade::Version);
    }
    if !headers.contains_key(HOST) {
        return Err(NotUpgrade::NoHost);
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    match (keys.next(), keys.next()) {
        (None, _) => Err(NotUpgrade::NoKey),
        (Some(key), None) if is_valid_key(key.as_bytes()) => Ok(key.clone()),
        (Some(_), _) => Err(NotUpgrade::BadKey),
    }
}

/// Whether a `Sec-WebSocket-Key` is 16 bytes in base64 (RFC 6455 4.1).
fn is_valid_key(key: &[u8]) -> bool {
    // Room for the decoder's estimate of 24 characters (18 bytes); a
    // longer key does not fit and is refused with the rest.
    let mut decoded = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded),
            Ok(16)
        )
}

/// The size of the request's head as sent: its request line and each
/// header as `Name: value` with its line end, then the empty line (hyper
/// keeps no count; what the client sent beyond this form, such as spaces
/// around values, is hyper's buffer's to bound in standalone mode).
fn head_len<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let target = match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.as_str().len() + 3 + authority.as_str().len(),
        (None, Some(authority)) => authority.as_str().len(),
        _ => 0,
    } + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    // "GET /path HTTP/1.1\r\n"
    let request_line = request.method().as_str().len() + 1 + target + 1 + 8 + 2;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + headers + 2
}

/// Whether a comma-separated header contains `token` (ignoring ASCII case).
fn header_has_token(headers: &HeaderMap, name: &http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The URI in its own allocation: hyper's parsed parts are slices of its
/// read buffer, which a long-lived connection must not keep alive.
fn detach_uri(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().cloned();
    parts.authority = uri.authority().and_then(|a| {
        http::uri::Authority::from_maybe_shared(Bytes::copy_from_slice(a.as_str().as_bytes())).ok()
    });
    parts.path_and_query = uri.path_and_query().and_then(|pq| {
        http::uri::PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(pq.as_str().as_bytes()))
            .ok()
    });
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

fn remote_addr<B>(request: &Request<B>) -> Option<SocketAddr> {
    if let Some(RemoteAddr(addr)) = request.extensions().get::<RemoteAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    None
}

/// The answer to an upgrade over an abuse limit: 429 for one client's
/// excess, 503 for the server's pacing of new connections, each with
/// `Retry-After` in seconds.
fn not_admitted(refused: NotAdmitted) -> Response<Body> {
    let mut response = match refused {
        NotAdmitted::ConnectionsPerIp => status(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        ),
        NotAdmitted::HandshakesPerIp { .. } => status(
            StatusCode::TOO_MANY_REQUESTS,
            "too many new connections from this address",
        ),
        NotAdmitted::Handshakes { .. } => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many new connections, come back later",
        ),
    };
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(refused.retry_after_secs()),
    );
    response
}

/// A short plain-text answer.
pub(crate) fn status(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn connection_header_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(header_has_token(&headers, &CONNECTION, "upgrade"));
        assert!(!header_has_token(&headers, &UPGRADE, "websocket"));
    }
}
