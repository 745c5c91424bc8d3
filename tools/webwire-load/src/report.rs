//! What a run measured, as text for people and as one JSON line for scripts.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Mode;

/// Errors seen during a run, by kind.
///
/// ```
/// use webwire_load::ErrorCounts;
///
/// let mut errors = ErrorCounts::default();
/// errors.shutdown = 2;
/// errors.protocol = 1;
/// assert_eq!(errors.total(), 3);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ErrorCounts {
    /// Requests answered with ReplyError (a request error of the
    /// application).
    pub error_reply: u64,
    /// Requests answered with ReplyInternalError.
    pub internal_error: u64,
    /// Requests answered with ReplyShutdown.
    pub shutdown: u64,
    /// Keyed requests answered with ReplyOutcomeUnknown (webwire 2.1).
    pub outcome_unknown: u64,
    /// Stream signals out of place (mode `hist`): an offset that does not
    /// follow the previous one, or another epoch: a signal missing or
    /// delivered twice.
    pub stream_gaps: u64,
    /// Connections that closed or failed before the run was over.
    pub disconnected: u64,
    /// Messages that are not a valid answer: malformed, of a type a load run
    /// never gets, a text frame, or a reply to an id that is not
    /// outstanding.
    pub protocol: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.error_reply
            + self.internal_error
            + self.shutdown
            + self.outcome_unknown
            + self.stream_gaps
            + self.disconnected
            + self.protocol
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.error_reply += other.error_reply;
        self.internal_error += other.internal_error;
        self.shutdown += other.shutdown;
        self.outcome_unknown += other.outcome_unknown;
        self.stream_gaps += other.stream_gaps;
        self.disconnected += other.disconnected;
        self.protocol += other.protocol;
    }
}

/// Round-trip latency percentiles of the answers received while measuring,
/// in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// CPU time a process used while measuring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CpuUsage {
    /// The process id.
    pub pid: u32,
    /// User and system time, in seconds (10 ms resolution).
    pub seconds: f64,
    /// CPU time per completed operation, in microseconds.
    pub us_per_op: f64,
}

/// The result of a load run.
///
/// `failures()` is what `--fail-on-error` checks.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Requests or signals.
    pub mode: Mode,
    /// The server.
    pub url: String,
    /// Connections.
    pub conns: usize,
    /// Requests (or signals) outstanding per connection.
    pub inflight: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// The measured time, in seconds.
    pub seconds: f64,
    /// Verified answers received while measuring.
    pub completed: u64,
    /// `completed` per second: requests/s, or signals/s (round trips).
    pub per_second: f64,
    /// Requests (or pings) sent during the whole run, warm-up included.
    pub sent: u64,
    /// Latency of the answers received while measuring.
    pub latency: Latency,
    /// Errors during the whole run.
    pub errors: ErrorCounts,
    /// Answers whose payload (or name or encoding) differs from what was
    /// sent.
    pub mismatches: u64,
    /// Requests (or pings) still without an answer at the end of the grace
    /// period, including those lost with a closed connection.
    pub unanswered: u64,
    /// The server's CPU time while measuring, when its pid was given.
    pub server_cpu: Option<CpuUsage>,
}

impl Report {
    /// Errors, mismatches and unanswered requests together.
    ///
    /// ```
    /// # fn check(report: &webwire_load::Report) -> bool {
    /// report.failures() == 0
    /// # }
    /// ```
    pub fn failures(&self) -> u64 {
        self.errors.total() + self.mismatches + self.unanswered
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.mode {
            Mode::Request => "requests",
            Mode::Signal => "signals",
            Mode::Keyed => "keyed requests",
            Mode::Hist => "stream signals",
        };
        writeln!(
            f,
            "{} x {} in flight, {} B payload, {}: {:.2} s measured",
            self.conns, self.inflight, self.size, self.url, self.seconds
        )?;
        writeln!(
            f,
            "  {what}/s      {:.0}  ({} answered while measuring, {} sent in all)",
            self.per_second, self.completed, self.sent
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency (ms) p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50_us / 1e3,
            l.p90_us / 1e3,
            l.p99_us / 1e3,
            l.p999_us / 1e3,
            l.max_us / 1e3
        )?;
        if let Some(cpu) = &self.server_cpu {
            writeln!(
                f,
                "  server CPU   {:.2} s, {:.3} us per {}",
                cpu.seconds,
                cpu.us_per_op,
                &what[..what.len() - 1]
            )?;
        }
        if matches!(self.mode, Mode::Keyed | Mode::Hist) {
            writeln!(
                f,
                "  webwire 2.1: compare with the plain webwire row ({}), not the raw echo, which cannot do 2.1",
                if self.mode == Mode::Keyed { "request" } else { "signal" }
            )?;
        }
        let e = &self.errors;
        write!(
            f,
            "  errors       {} (error reply {}, internal error {}, shutdown {}, outcome unknown {}, stream gaps {}, disconnected {}, protocol {})\n  mismatches   {}\n  unanswered   {}",
            e.total(),
            e.error_reply,
            e.internal_error,
            e.shutdown,
            e.outcome_unknown,
            e.stream_gaps,
            e.disconnected,
            e.protocol,
            self.mismatches,
            self.unanswered
        )
    }
}

/// The result of an idle-connection run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConnectReport {
    /// The server.
    pub url: String,
    /// The connections were webwire 2.1 connections with a session and a
    /// stream (`--v21`).
    pub v21: bool,
    /// Connections asked for.
    pub conns: usize,
    /// Connections that opened (with their AcceptConf).
    pub connected: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first connection error, if any.
    pub first_error: Option<String>,
    /// Seconds it took to open them all.
    pub connect_seconds: f64,
    /// Seconds they were held.
    pub hold_seconds: f64,
    /// Connections still open at the end of the hold.
    pub open_at_end: usize,
    /// Heartbeat interval in milliseconds (3/4 of the server's read
    /// timeout), `None` against a raw echo server.
    pub heartbeat_ms: Option<u64>,
    /// The server's resident memory before connecting, KiB.
    pub rss_before_kib: Option<u64>,
    /// The server's resident memory at the end of the hold, KiB.
    pub rss_after_kib: Option<u64>,
    /// `(after - before) / open_at_end`, KiB.
    pub kib_per_conn: Option<f64>,
}

impl ConnectReport {
    /// Connections that failed to open or closed early.
    pub fn failures(&self) -> usize {
        self.conns - self.open_at_end
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} of {} {}connections opened in {:.2} s, {} still open after holding {:.1} s",
            self.url,
            self.connected,
            self.conns,
            if self.v21 {
                "webwire 2.1 (session, stream) "
            } else {
                ""
            },
            self.connect_seconds,
            self.open_at_end,
            self.hold_seconds
        )?;
        match self.heartbeat_ms {
            Some(ms) => writeln!(f, "  heartbeat every {ms} ms")?,
            None => writeln!(f, "  no heartbeats (raw echo)")?,
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  {} failed to open; first error: {e}", self.failed)?;
        }
        match (self.rss_before_kib, self.rss_after_kib, self.kib_per_conn) {
            (Some(before), Some(after), per) => write!(
                f,
                "  server VmRSS {before} KiB before, {after} KiB after: {} KiB per connection",
                per.map_or_else(|| "-".to_owned(), |p| format!("{p:.2}"))
            ),
            _ => write!(f, "  server memory not measured (no --server-pid)"),
        }
    }
}

/// Seconds as a float, for reports.
pub(crate) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}
