//! The load generator catches servers that corrupt, drop or refuse replies,
//! and reports none of that against the raw echo baseline.

mod common;

use std::time::Duration;

use common::{Behaviour, Fault};
use webwire_load::{EchoServer, LoadConfig, LoadError, Mode, Report};

/// A run short enough for a test: 300 ms measured, 200 ms of grace.
fn quick(url: &str, mode: Mode) -> LoadConfig {
    let mut config = LoadConfig::new(url);
    config.conns = 2;
    config.inflight = 4;
    config.mode = mode;
    config.duration = Duration::from_millis(300);
    config.warmup = Duration::ZERO;
    config.grace = Duration::from_millis(200);
    config.accept_timeout = Duration::from_secs(1);
    config
}

async fn against(fault: Fault, mode: Mode) -> Report {
    let url = common::start(Behaviour::faulty(fault)).await;
    webwire_load::run(&quick(&url, mode)).await.unwrap()
}

async fn echo_url() -> String {
    let server = EchoServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    tokio::spawn(server.run());
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_server_gives_a_clean_report() {
    for mode in [Mode::Request, Mode::Signal] {
        let report = against(Fault::None, mode).await;
        assert!(report.completed > 0, "{report}");
        assert_eq!(report.failures(), 0, "{report}");
        assert!(report.latency.p50_us > 0.0 && report.latency.max_us >= report.latency.p99_us);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_corrupted_replies() {
    for mode in [Mode::Request, Mode::Signal] {
        let report = against(Fault::CorruptEvery(3), mode).await;
        assert!(report.mismatches > 0, "{report}");
        assert!(report.completed > 0, "{report}");
        assert_eq!(report.errors.total(), 0, "{report}");
        assert!(report.failures() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_dropped_replies() {
    for mode in [Mode::Request, Mode::Signal] {
        let report = against(Fault::DropEvery(5), mode).await;
        assert!(report.unanswered > 0, "{report}");
        assert_eq!(report.mismatches, 0, "{report}");
        assert_eq!(report.errors.total(), 0, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_errors_by_kind() {
    let report = against(Fault::ErrorKinds, Mode::Request).await;
    assert!(report.errors.error_reply > 0, "{report}");
    assert!(report.errors.internal_error > 0, "{report}");
    assert!(report.errors.shutdown > 0, "{report}");
    assert_eq!(
        report.errors.disconnected + report.errors.protocol,
        0,
        "{report}"
    );
    assert_eq!(report.mismatches + report.unanswered, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_baseline_in_raw_mode_has_no_errors() {
    let url = echo_url().await;
    for mode in [Mode::Request, Mode::Signal] {
        let mut config = quick(&url, mode);
        config.raw_echo = true;
        config.size = 1000;
        let report = webwire_load::run(&config).await.unwrap();
        assert!(report.completed > 0, "{report}");
        assert_eq!(report.failures(), 0, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_accept_conf_needs_raw_echo() {
    let url = echo_url().await;
    let mut config = quick(&url, Mode::Request);
    config.accept_timeout = Duration::from_millis(200);
    let err = webwire_load::run(&config).await.unwrap_err();
    assert!(matches!(err, LoadError::NoAcceptConf { .. }), "{err}");
    assert!(err.to_string().contains("--raw-echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_messages_larger_than_the_server_accepts() {
    let url = common::start(Behaviour::faulty(Fault::None)).await;
    let mut config = quick(&url, Mode::Request);
    config.size = 1 << 20; // plus the header: over the announced 1 MiB
    let err = webwire_load::run(&config).await.unwrap_err();
    assert!(
        matches!(err, LoadError::MessageTooLarge { max: 1048576, .. }),
        "{err}"
    );
}

/// The binary, as scripts/test-all.sh runs it: `--fail-on-error` turns
/// unanswered requests into exit status 1, and `--json` prints one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_on_error_and_prints_json() {
    let url = common::start(Behaviour::faulty(Fault::DropEvery(5))).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_webwire-load"))
        .args(["--url", &url, "--conns", "2", "--inflight", "4"])
        .args(["--duration", "300ms", "--warmup", "0s", "--grace", "200ms"])
        .args(["--json", "--fail-on-error"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(json["unanswered"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["mode"], "request");
    assert_eq!(json["errors"]["protocol"], 0);
}
