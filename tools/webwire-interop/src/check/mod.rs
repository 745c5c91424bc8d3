//! The checker: every row of docs/interop.md driven through this project's Rust
//! client against a server at a URL.
//!
//! Each check is one async function that connects its own clients, and
//! fails with a one-line reason ([`Failure`]). The runner ([`run`]) runs
//! them one after the other, each within [`CheckOptions::timeout`] (a check
//! that hangs is a failure, not a hang), and reports every result as it
//! comes.
//!
//! - `support`: what the checks share (connecting, comparing payloads,
//!   waiting for events).
//! - `basic`: the accept configuration, echo, errors, payloads.
//! - `signals`: signals both ways, sleep, concurrency, broadcast,
//!   disconnection.
//! - `sessions`: login, whoami, logout, restore, limits, close everywhere.
//!
//! ```no_run
//! use webwire_interop::check::{run, CheckOptions};
//!
//! # async fn f() {
//! let summary = run("ws://127.0.0.1:9090/", &CheckOptions::default(), |result| {
//!     println!("{result}");
//! })
//! .await;
//! println!("{summary}");
//! # }
//! ```

mod basic;
mod sessions;
mod signals;
mod support;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

pub use support::Failure;

use support::Ctx;

/// The time each check may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How the checks run.
///
/// ```
/// use std::time::Duration;
/// use webwire_interop::check::CheckOptions;
///
/// let options = CheckOptions::default().timeout(Duration::from_secs(5)).only("echo");
/// assert_eq!(options.timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Each check fails if it takes longer than this.
    pub timeout: Duration,
    /// Run only the checks whose name contains this text.
    pub only: Option<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            only: None,
        }
    }
}

impl CheckOptions {
    /// Each check fails if it takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs only the checks whose name contains `text`.
    pub fn only(mut self, text: impl Into<String>) -> Self {
        self.only = Some(text.into());
        self
    }
}

/// The result of one check.
///
/// Displayed as the checker prints it: `PASS name` or `FAIL name: reason`.
///
/// ```
/// use std::time::Duration;
/// use webwire_interop::check::CheckResult;
///
/// let result = CheckResult { name: "echo-utf8", failure: None, elapsed: Duration::ZERO };
/// assert_eq!(result.to_string(), "PASS echo-utf8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: &'static str,
    /// Why it failed (one line), `None` if it passed.
    pub failure: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

impl CheckResult {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(f, "PASS {}", self.name),
            Some(reason) => write!(f, "FAIL {}: {reason}", self.name),
        }
    }
}

/// Every check's result, in order.
///
/// Displayed as the checker's last line: `N passed, M failed`.
///
/// ```
/// use webwire_interop::check::Summary;
///
/// let summary = Summary::default();
/// assert_eq!(summary.to_string(), "0 passed, 0 failed");
/// assert!(!summary.success(), "no check ran");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The results, in the order the checks ran.
    pub results: Vec<CheckResult>,
}

impl Summary {
    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Whether at least one check ran and none failed.
    pub fn success(&self) -> bool {
        !self.results.is_empty() && self.failed() == 0
    }

    /// The result of the check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.name == name)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

type CheckFn = fn(Ctx) -> BoxFuture<'static, Result<(), Failure>>;

/// Boxes a check function for the table.
fn boxed<F, Fut>(check: F, ctx: Ctx) -> BoxFuture<'static, Result<(), Failure>>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    Box::pin(check(ctx))
}

macro_rules! checks {
    ($($name:literal => $check:path,)*) => {
        /// Every check, in the order it runs.
        const CHECKS: &[(&str, CheckFn)] = &[
            $(($name, |ctx| boxed($check, ctx)),)*
        ];
    };
}

checks! {
    "accept-conf" => basic::accept_conf,
    "sub-protocol-mismatch" => basic::sub_protocol_mismatch,
    "any-path" => basic::any_path,
    "echo-utf8" => basic::echo_utf8,
    "echo-utf16" => basic::echo_utf16,
    "echo-binary" => basic::echo_binary,
    "echo-nameless" => basic::echo_nameless,
    "echo-name-only" => basic::echo_name_only,
    "request-error" => basic::request_error,
    "internal-error" => basic::internal_error,
    "unknown-request" => basic::unknown_request,
    "unicode" => basic::unicode,
    "large-payload" => basic::large_payload,
    "signal-me" => signals::signal_me,
    "ping-pong" => signals::ping_pong,
    "record" => signals::record,
    "sleep" => signals::sleep,
    "sleep-timeout" => signals::sleep_timeout,
    "bad-sleep" => signals::bad_sleep,
    "concurrent-requests" => signals::concurrent_requests,
    "100-requests" => signals::hundred_requests,
    "broadcast" => signals::broadcast,
    "disconnect-me" => signals::disconnect_me,
    "heartbeat" => signals::heartbeat,
    "login" => sessions::login_notification,
    "login-twice" => sessions::login_twice,
    "whoami" => sessions::whoami,
    "logout" => sessions::logout,
    "client-closes-session" => sessions::client_closes_session,
    "session-connections" => sessions::session_connections,
    "restore" => sessions::restore,
    "restore-unknown" => sessions::restore_unknown,
    "restore-while-active" => sessions::restore_while_active,
    "max-session-connections" => sessions::max_session_connections,
    "close-session-everywhere" => sessions::close_session_everywhere,
    "disconnect-keeps-session" => sessions::disconnect_keeps_session,
}

/// The names of every check, in the order they run.
///
/// ```
/// let names = webwire_interop::check::names();
/// assert!(names.contains(&"echo-utf16"));
/// ```
pub fn names() -> Vec<&'static str> {
    CHECKS.iter().map(|(name, _)| *name).collect()
}

/// Runs the checks against the server at `url` (`ws://HOST:PORT/`), one
/// after the other, calling `report` with each result as it comes, and
/// returns them all.
pub async fn run(url: &str, options: &CheckOptions, report: impl FnMut(&CheckResult)) -> Summary {
    run_table(CHECKS, url, options, report).await
}

async fn run_table(
    checks: &[(&'static str, CheckFn)],
    url: &str,
    options: &CheckOptions,
    mut report: impl FnMut(&CheckResult),
) -> Summary {
    let mut summary = Summary::default();
    for &(name, check) in checks {
        if let Some(only) = &options.only {
            if !name.contains(only.as_str()) {
                continue;
            }
        }
        let started = Instant::now();
        // Spawned, so that a check that panics is a failure too; dropping
        // a check that runs too long drops its clients, which disconnects them.
        let mut task = tokio::spawn(check(Ctx::new(url)));
        let outcome = tokio::select! {
            joined = &mut task => match joined {
                Ok(outcome) => outcome,
                Err(err) => Err(Failure::new(format!("the check panicked: {err}"))),
            },
            () = tokio::time::sleep(options.timeout) => {
                task.abort();
                Err(Failure::new(format!("did not finish within {:?}", options.timeout)))
            }
        };
        let result = CheckResult {
            name,
            failure: outcome.err().map(|failure| failure.to_string()),
            elapsed: started.elapsed(),
        };
        report(&result);
        summary.results.push(result);
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_simple() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for name in names {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
    }

    async fn passes(_: Ctx) -> Result<(), Failure> {
        Ok(())
    }

    async fn fails(_: Ctx) -> Result<(), Failure> {
        Err(Failure::new("as asked"))
    }

    async fn hangs(_: Ctx) -> Result<(), Failure> {
        std::future::pending().await
    }

    async fn panics(_: Ctx) -> Result<(), Failure> {
        panic!("on purpose")
    }

    #[tokio::test]
    async fn runner_reports_hangs_and_panics_as_failures() {
        let table: &[(&str, CheckFn)] = &[
            ("passes", |ctx| boxed(passes, ctx)),
            ("fails", |ctx| boxed(fails, ctx)),
            ("hangs", |ctx| boxed(hangs, ctx)),
            ("panics", |ctx| boxed(panics, ctx)),
        ];
        // Long enough for a panic to be reported on a busy machine.
        let options = CheckOptions::default().timeout(Duration::from_secs(1));
        let mut lines = Vec::new();
        let summary = run_table(table, "ws://127.0.0.1:1/", &options, |r| {
            lines.push(r.to_string())
        })
        .await;
        assert_eq!(lines[0], "PASS passes");
        assert_eq!(lines[1], "FAIL fails: as asked");
        assert_eq!(lines[2], "FAIL hangs: did not finish within 1s");
        assert!(
            lines[3].starts_with("FAIL panics: the check panicked"),
            "{}",
            lines[3]
        );
        assert_eq!(summary.to_string(), "1 passed, 3 failed");

        let only = CheckOptions::default().only("ang");
        let summary = run_table(
            &table[..3],
            "ws://127.0.0.1:1/",
            &only.timeout(Duration::from_millis(10)),
            |_| {},
        )
        .await;
        assert_eq!(summary.results.len(), 1);
        assert_eq!(summary.results[0].name, "hangs");
    }

    #[test]
    fn lines() {
        let failed = CheckResult {
            name: "x",
            failure: Some("why".into()),
            elapsed: Duration::ZERO,
        };
        assert_eq!(failed.to_string(), "FAIL x: why");
        let summary = Summary {
            results: vec![
                failed.clone(),
                CheckResult {
                    failure: None,
                    ..failed
                },
            ],
        };
        assert_eq!(summary.to_string(), "1 passed, 1 failed");
        assert!(!summary.success());
    }
}
