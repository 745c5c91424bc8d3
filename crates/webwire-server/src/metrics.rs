//! The server's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade: the application installs a recorder (an exporter) before it
//! builds the server, and the handles are resolved once, not looked up per
//! message.
//!
//! | metric | labels |
//! |---|---|
//! | `webwire_connections` (gauge) | |
//! | `webwire_sessions_active` (gauge) | |
//! | `webwire_requests_total` | `name`, `outcome` (`ok`, `error`, `internal_error`, `shutdown`) |
//! | `webwire_request_duration_seconds` (histogram) | `name` |
//! | `webwire_signals_received_total`, `webwire_signals_sent_total` | |
//! | `webwire_queue_full_total` | |
//! | `webwire_rate_limited_total` | `kind` (`request`, `signal`) |
//! | `webwire_closes_total` | `reason` (one per `DisconnectReason`; `queue_stalled` is the stall close) |
//! | `webwire_restores_total` | `outcome` |
//! | `webwire_keyed_requests_total` | `decision` (`run`, `stored`, `waited`, `outcome_unknown`, `key_reused`, `bad_key`, `no_session`, `internal_error`) |
//! | `webwire_session_store_duration_seconds` (histogram) | `op` (`create`, `lookup`, `delete`) |
//! | `webwire_redis_duration_seconds` (histogram, webwire-redis) | `op` |
//! | `webwire_cluster_messages_total` (webwire-redis) | `direction` (`published`, `received`, `dropped`) |
//!
//! What each counts, every label value, and the spans: docs/metrics.md.
//!
//! Label values are bounded: request names come from the router's table
//! (a route's handles are resolved at its first request), never from what
//! a client sent; every request without a route's handles counts under
//! [`UNKNOWN_ROUTE`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::error::DisconnectReason;

/// The `name` label of requests that did not go to a route of a
/// [`MessageRouter`](crate::MessageRouter): unknown names, the fallback,
/// and a custom [`Handler`](crate::Handler)'s `on_request`.
pub const UNKNOWN_ROUTE: &str = "_unknown";

/// How a request ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// A reply.
    Ok,
    /// An error reply (the handler's [`ReplyError`](crate::ReplyError), or
    /// an unknown name).
    Error,
    /// An internal-error reply: the handler failed or panicked.
    InternalError,
    /// A shutdown reply: the handler was dropped, or the connection closing.
    Shutdown,
}

impl RequestOutcome {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::InternalError => "internal_error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A route's request handles, resolved once.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    ok: Counter,
    error: Counter,
    internal_error: Counter,
    shutdown: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    fn new(name: &str) -> Self {
        let requests = |outcome: &'static str| counter!("webwire_requests_total", "name" => name.to_owned(), "outcome" => outcome);
        Self {
            ok: requests("ok"),
            error: requests("error"),
            internal_error: requests("internal_error"),
            shutdown: requests("shutdown"),
            duration: histogram!("webwire_request_duration_seconds", "name" => name.to_owned()),
        }
    }

    /// Counts a request that ended with `outcome`, `elapsed` after its
    /// handler was first polled.
    #[inline]
    pub(crate) fn finished(&self, outcome: RequestOutcome, elapsed: std::time::Duration) {
        match outcome {
            RequestOutcome::Ok => &self.ok,
            RequestOutcome::Error => &self.error,
            RequestOutcome::InternalError => &self.internal_error,
            RequestOutcome::Shutdown => &self.shutdown,
        }
        .increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// A route's handles, resolved at its first request (so that a router
/// built before the recorder was installed still reports).
#[derive(Debug, Default, Clone)]
pub(crate) struct LazyRouteMetrics(OnceLock<Arc<RouteMetrics>>);

impl LazyRouteMetrics {
    #[inline]
    pub(crate) fn get(&self, name: &str) -> &Arc<RouteMetrics> {
        self.0.get_or_init(|| Arc::new(RouteMetrics::new(name)))
    }
}

/// The server-wide handles, resolved when the server is built.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    pub(crate) connections: Gauge,
    pub(crate) sessions_active: Gauge,
    pub(crate) signals_received: Counter,
    pub(crate) signals_sent: Counter,
    pub(crate) queue_full: Counter,
    unknown: Arc<RouteMetrics>,
}

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        Self {
            connections: gauge!("webwire_connections"),
            sessions_active: gauge!("webwire_sessions_active"),
            signals_received: counter!("webwire_signals_received_total"),
            signals_sent: counter!("webwire_signals_sent_total"),
            queue_full: counter!("webwire_queue_full_total"),
            unknown: Arc::new(RouteMetrics::new(UNKNOWN_ROUTE)),
        }
    }

    /// The handles of requests without a route's.
    #[inline]
    pub(crate) fn unknown(&self) -> &Arc<RouteMetrics> {
        &self.unknown
    }

    /// Counts a connection that ended for `reason` (rare: looked up).
    pub(crate) fn closed(&self, reason: &DisconnectReason) {
        counter!("webwire_closes_total", "reason" => close_reason(reason)).increment(1);
    }

    /// Counts a message over a rate limit (`kind`: `request`, answered with
    /// `RATE_LIMITED`, or `signal`, dropped); rare: looked up.
    pub(crate) fn rate_limited(&self, kind: &'static str) {
        counter!("webwire_rate_limited_total", "kind" => kind).increment(1);
    }

    /// Counts a client's restore request that ended with `outcome`.
    /// A keyed request (2.1) was decided: `run` (a new key, its handler
    /// counted in `webwire_requests_total` too), `stored`, `waited` (for a
    /// run under way), `outcome_unknown`, `key_reused`, `bad_key`,
    /// `no_session` or `internal_error` (the ledger failed).
    pub(crate) fn keyed(&self, decision: &'static str) {
        counter!("webwire_keyed_requests_total", "decision" => decision).increment(1);
    }

    pub(crate) fn restore(&self, outcome: &'static str) {
        counter!("webwire_restores_total", "outcome" => outcome).increment(1);
    }
}

/// The `reason` label of [`DisconnectReason`]: one value per variant.
pub(crate) fn close_reason(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientClosed { .. } => "client_closed",
        DisconnectReason::ClosedByServer => "closed_by_server",
        DisconnectReason::ServiceRestart => "service_restart",
        DisconnectReason::Shutdown => "shutdown",
        DisconnectReason::ReadTimeout => "read_timeout",
        DisconnectReason::ProtocolViolation(_) => "protocol_violation",
        DisconnectReason::TextMessage => "text_message",
        DisconnectReason::MessageTooBig { .. } => "message_too_big",
        DisconnectReason::WebSocketError(_) => "websocket_error",
        DisconnectReason::QueueStalled => "queue_stalled",
        DisconnectReason::RateLimited => "rate_limited",
        DisconnectReason::ConnectionLost(_) => "connection_lost",
    }
}

/// Times a session-store operation (`op`: create, lookup, delete).
pub(crate) async fn time_store<T>(
    op: &'static str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = work.await;
    histogram!("webwire_session_store_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    out
}
