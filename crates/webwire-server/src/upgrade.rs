//! The HTTP side of a connection: checking a WebSocket upgrade request
//! (RFC 6455 4.2), the server's state, the origin, the connection limit
//! and the application's before-upgrade hook, then answering 101 and
//! handing the upgraded stream to a connection task.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;

use crate::driver::Accepted;
use crate::server::Shared;
use crate::{ConnectionInfo, ConnectionOptions};

/// The body of the server's HTTP answers.
pub(crate) type Body = Full<Bytes>;

/// The client's address, put into the request's extensions by the
/// standalone listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

/// Answers one HTTP request: 101 and a new connection, or an error status.
pub(crate) fn handle<B>(shared: &Arc<Shared>, mut request: Request<B>) -> Response<Body> {
    if let Some(path) = &shared.config.path {
        if request.uri().path() != path {
            return status(StatusCode::NOT_FOUND, "not found");
        }
    }
    let key = match check_handshake(&request) {
        Ok(key) => key,
        Err(not_upgrade) => return not_upgrade.response(),
    };
    if shared.shutdown.is_cancelled() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
    }
    if !shared.origin.allows_request(request.headers()) {
        tracing::debug!(origin = ?request.headers().get(http::header::ORIGIN), "upgrade refused: origin not allowed");
        return status(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let slot = match &shared.connection_limit {
        Some(limit) => match limit.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                tracing::debug!("upgrade refused: connection limit reached");
                return status(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
            }
        },
        None => None,
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        tracing::error!(
            "the HTTP server does not support upgrades (serve hyper connections `with_upgrades`)"
        );
        return status(StatusCode::INTERNAL_SERVER_ERROR, "upgrades not supported");
    };
    let info = ConnectionInfo::from_upgrade(
        detach_uri(request.uri()),
        request.headers(),
        remote_addr(&request),
    );
    let options = match &shared.before_upgrade {
        Some(hook) => match hook(&info) {
            Ok(options) => options,
            Err(refusal) => {
                tracing::debug!(status = %refusal.status(), "upgrade refused by the before-upgrade hook");
                return status(refusal.status(), "refused");
            }
        },
        None => ConnectionOptions::new().concurrency(shared.config.concurrency),
    };
    shared.runner.start(
        shared.clone(),
        on_upgrade,
        Accepted {
            info,
            options,
            slot,
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

/// Why a request is not a WebSocket upgrade this server takes.
#[derive(Debug, Clone, Copy)]
enum NotUpgrade {
    Method,
    NoUpgrade,
    Version,
    NoKey,
}

impl NotUpgrade {
    fn response(self) -> Response<Body> {
        let (code, text) = match self {
            Self::Method => (StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrades use GET"),
            Self::NoUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "this is a webwire (WebSocket) endpoint",
            ),
            Self::Version => (
                StatusCode::UPGRADE_REQUIRED,
                "unsupported WebSocket version",
            ),
            Self::NoKey => (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"),
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
            Self::NoKey => {}
        }
        response
    }
}

/// Checks that the request asks for a WebSocket (version 13); returns its key.
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
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(NotUpgrade::Version);
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(key.clone()),
        _ => Err(NotUpgrade::NoKey),
    }
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
