//! The webwire 2.1 modes and the resume benchmark against the interop
//! server (in this process): clean reports when the server does its job,
//! and failures counted when the sessions cannot resume.

use std::time::Duration;

use webwire_interop::serve::{start, Running, ServeOptions};
use webwire_load::{ConnectConfig, LoadConfig, Mode, ResumeConfig};

async fn interop() -> Running {
    start(ServeOptions::new("127.0.0.1:0")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_and_hist_rows_are_clean_against_a_21_server() {
    let server = interop().await;
    for mode in [Mode::Keyed, Mode::Hist] {
        let mut config = LoadConfig::new(server.url());
        config.conns = 3;
        config.inflight = 4;
        config.mode = mode;
        config.duration = Duration::from_millis(300);
        config.warmup = Duration::ZERO;
        config.grace = Duration::from_millis(500);
        let report = webwire_load::run(&config).await.unwrap();
        assert!(report.completed > 0, "{report}");
        assert_eq!(report.failures(), 0, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_21_connections_hold_a_session_and_a_stream() {
    let server = interop().await;
    let mut config = ConnectConfig::new(server.url());
    config.conns = 20;
    config.hold = Duration::from_millis(100);
    config.v21 = true;
    let report = webwire_load::run_connect(&config).await.unwrap();
    assert_eq!((report.connected, report.open_at_end), (20, 20), "{report}");
    // Each opened only after its login and its stream signal (set_up_idle
    // fails otherwise, and a failed set-up counts as a failed open).
    assert!(report.v21);
    assert_eq!(report.failed, 0, "{report}");
}

fn resume_config(url: String) -> ResumeConfig {
    let mut config = ResumeConfig::new(url);
    config.sessions = 30;
    config.before = 2;
    config.during = 3;
    config.concurrency = 8;
    config.senders = 2;
    config.timeout = Duration::from_secs(20);
    config.settle = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_at_once_all_resume_with_nothing_missing() {
    let server = interop().await;
    let report = webwire_load::run_resume(&resume_config(server.url()))
        .await
        .unwrap();
    assert_eq!(report.failures(), 0, "{report}");
    assert_eq!(report.complete, 30, "{report}");
    let all = report.all_complete_seconds.expect("all complete");
    assert!(all > 0.0 && all >= report.complete_p50_seconds, "{report}");
    // The sessions and the admin connection were dropped, and each
    // session came back.
    assert!(report.dropped >= 31, "{report}");
    assert!(report.reconnect_attempts >= 30, "{report}");
    assert_eq!(report.restore_failures, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_cannot_resume_are_counted_not_hidden() {
    // The sessions come back to another server that knows none of them:
    // the restores fail, the missed signals never arrive.
    let first = interop().await;
    let other = interop().await;
    let mut config = resume_config(first.url());
    config.resume_url = Some(other.url());
    config.sessions = 5;
    config.timeout = Duration::from_secs(2);
    let report = webwire_load::run_resume(&config).await.unwrap();
    assert_eq!(report.all_complete_seconds, None, "{report}");
    assert_eq!(report.complete, 0, "{report}");
    assert_eq!(report.restore_failures, 5, "{report}");
    assert_eq!(report.missing, 5 * 3, "{report}");
    assert!(report.failures() > 0);
}
