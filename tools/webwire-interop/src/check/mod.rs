//! The checker: every row of docs/interop.md driven through this project's Rust
//! client against a server at a URL.
//!
//! Each check is one async function that connects its own clients, and
//! fails with a one-line reason ([`Failure`]). The runner ([`run`]) runs
//! them one after the other, each within [`CheckOptions::timeout`] (a check
//! that hangs is a failure, not a hang), and reports every result as it
//! comes. The few checks that mostly wait on the server's clocks (the read
//! timeout, the cap of `sleep`) start first and run alongside the others,
//! so that a full run costs the longest of those waits, not their sum.
//!
//! - `support`: what the checks share (connecting, comparing payloads,
//!   waiting for events).
//! - `basic`: the accept configuration, echo, errors, payloads.
//! - `signals`: signals both ways, sleep, concurrency, broadcast,
//!   disconnection.
//! - `sessions`: login, whoami, logout, restore, limits, close everywhere.
//! - `raw`: a bare WebSocket, for what the client never does (stay silent,
//!   send a foreign `Origin`).
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
mod raw;
mod sessions;
mod signals;
mod support;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};

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
    /// Run only the checks whose name contains this text, or one of
    /// several texts separated by commas.
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

    /// Runs only the checks whose name contains `text` (or one of the
    /// comma-separated parts of `text`).
    pub fn only(mut self, text: impl Into<String>) -> Self {
        self.only = Some(text.into());
        self
    }
}

/// The result of one check.
///
/// Displayed as the checker prints it: `PASS name`, `PASS name (note)` or
/// `FAIL name: reason`.
///
/// ```
/// use std::time::Duration;
/// use webwire_interop::check::CheckResult;
///
/// let result = CheckResult {
///     name: "echo-utf8",
///     failure: None,
///     note: None,
///     elapsed: Duration::ZERO,
/// };
/// assert_eq!(result.to_string(), "PASS echo-utf8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: &'static str,
    /// Why it failed (one line), `None` if it passed.
    pub failure: Option<String>,
    /// What a passing check measured or saw (the announced version, a
    /// timing), shown in parentheses.
    pub note: Option<String>,
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
        match (&self.failure, &self.note) {
            (None, None) => write!(f, "PASS {}", self.name),
            (None, Some(note)) => write!(f, "PASS {} ({note})", self.name),
            (Some(reason), _) => write!(f, "FAIL {}: {reason}", self.name),
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
    "any-origin" => basic::any_origin,
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
    "sleep-cap" => signals::sleep_cap,
    "concurrent-requests" => signals::concurrent_requests,
    "100-requests" => signals::hundred_requests,
    "concurrent-signals" => signals::concurrent_signals,
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

/// The checks that start before the others and run alongside them: they
/// spend seconds waiting on the server's clocks and nothing else, so they
/// disturb no other check.
const BACKGROUND: &[&str] = &["heartbeat", "sleep-cap"];

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
    let selected = checks
        .iter()
        .filter(|(name, _)| selected(name, options.only.as_deref()));
    let (background, foreground): (Vec<_>, Vec<_>) =
        selected.partition(|(name, _)| BACKGROUND.contains(name));
    let mut running: FuturesUnordered<_> = background
        .into_iter()
        .map(|&(name, check)| {
            // A task of its own, so that it runs while the others are awaited.
            let task = tokio::spawn(run_one(name, check, url.to_owned(), options.timeout));
            async move { (name, task.await) }
        })
        .collect();
    let mut summary = Summary::default();
    let mut done = |result: CheckResult, summary: &mut Summary| {
        report(&result);
        summary.results.push(result);
    };
    for &(name, check) in foreground {
        let result = run_one(name, check, url.to_owned(), options.timeout).await;
        done(result, &mut summary);
        // Background checks that ended meanwhile are reported now.
        while let Some(Some((name, joined))) = running.next().now_or_never() {
            done(background_result(name, joined), &mut summary);
        }
    }
    while let Some((name, joined)) = running.next().await {
        done(background_result(name, joined), &mut summary);
    }
    summary
}

/// Whether the check `name` runs with `--only only`.
fn selected(name: &str, only: Option<&str>) -> bool {
    match only {
        None => true,
        Some(only) => only
            .split(',')
            .map(str::trim)
            .any(|part| !part.is_empty() && name.contains(part)),
    }
}

/// The result of a background check's task (which does not panic: the check
/// runs in a task of its own inside).
fn background_result(
    name: &'static str,
    joined: Result<CheckResult, tokio::task::JoinError>,
) -> CheckResult {
    joined.unwrap_or_else(|err| CheckResult {
        name,
        failure: Some(format!("the check's task was lost: {err}")),
        note: None,
        elapsed: Duration::ZERO,
    })
}

/// Runs one check within `timeout`.
async fn run_one(
    name: &'static str,
    check: CheckFn,
    url: String,
    timeout: Duration,
) -> CheckResult {
    let started = Instant::now();
    let ctx = Ctx::new(&url);
    // Spawned, so that a check that panics is a failure too; dropping
    // a check that runs too long drops its clients, which disconnects them.
    let mut task = tokio::spawn(check(ctx.clone()));
    let outcome = tokio::select! {
        joined = &mut task => match joined {
            Ok(outcome) => outcome,
            Err(err) => Err(Failure::new(format!("the check panicked: {err}"))),
        },
        () = tokio::time::sleep(timeout) => {
            task.abort();
            Err(Failure::new(format!("did not finish within {timeout:?}")))
        }
    };
    let note = ctx.take_note();
    CheckResult {
        name,
        failure: outcome.err().map(|failure| failure.to_string()),
        note,
        elapsed: started.elapsed(),
    }
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
    fn only_takes_several_parts() {
        assert!(selected("restore-unknown", None));
        assert!(selected("restore-unknown", Some("restore")));
        assert!(selected("broadcast", Some("login, broadcast")));
        assert!(!selected("echo-utf8", Some("login,broadcast")));
        assert!(!selected("echo-utf8", Some(",")));
        for name in BACKGROUND {
            assert!(names().contains(name), "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn background_checks_run_alongside_the_others() {
        async fn slow(_: Ctx) -> Result<(), Failure> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
        async fn slower(_: Ctx) -> Result<(), Failure> {
            tokio::time::sleep(Duration::from_millis(450)).await;
            Ok(())
        }
        // "heartbeat" is a background name: it starts first, ends during
        // "two", and is reported after it.
        let table: &[(&str, CheckFn)] = &[
            ("heartbeat", |ctx| boxed(slower, ctx)),
            ("one", |ctx| boxed(slow, ctx)),
            ("two", |ctx| boxed(slow, ctx)),
        ];
        let started = tokio::time::Instant::now();
        let summary = run_table(table, "ws://127.0.0.1:1/", &CheckOptions::default(), |_| {}).await;
        let names: Vec<_> = summary.results.iter().map(|r| r.name).collect();
        assert_eq!(names, ["one", "two", "heartbeat"]);
        // 600 ms, not 1050: the background check overlapped the others.
        assert_eq!(started.elapsed(), Duration::from_millis(600));
    }

    #[test]
    fn lines() {
        let failed = CheckResult {
            name: "x",
            failure: Some("why".into()),
            note: None,
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
