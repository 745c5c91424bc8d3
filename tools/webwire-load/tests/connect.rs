//! The connect mode holds connections open with heartbeats and measures the
//! server's memory.

mod common;

use std::time::Duration;

use common::{Behaviour, Fault};
use webwire_load::ConnectConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_connections_past_the_read_timeout() {
    // The server closes a connection that is silent for 300 ms; the hold
    // lasts 800 ms, so only heartbeats (every 225 ms) keep them open.
    let url = common::start(Behaviour {
        fault: Fault::None,
        read_timeout: Duration::from_millis(300),
    })
    .await;
    let mut config = ConnectConfig::new(&url);
    config.conns = 20;
    config.hold = Duration::from_millis(800);
    config.concurrency = 4;
    // The test server runs in this process.
    config.server_pid = Some(std::process::id());
    let report = webwire_load::run_connect(&config).await.unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.open_at_end, 20, "{report}");
    assert_eq!(report.failures(), 0);
    assert_eq!(report.heartbeat_ms, Some(225));
    assert!(
        report.rss_after_kib.unwrap() > 0 && report.kib_per_conn.is_some(),
        "{report}"
    );

    // Without heartbeats (as against a raw echo server) the same server
    // closes them all.
    config.raw_echo = true;
    config.server_pid = None;
    let report = webwire_load::run_connect(&config).await.unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.open_at_end, 0, "{report}");
    assert_eq!(report.failures(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_connections_that_fail_to_open() {
    // A port nobody listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = ConnectConfig::new(format!("ws://{addr}/"));
    config.conns = 3;
    config.hold = Duration::from_millis(10);
    let report = webwire_load::run_connect(&config).await.unwrap();
    assert_eq!(
        (report.connected, report.failed, report.open_at_end),
        (0, 3, 0)
    );
    assert!(report.first_error.is_some());
}
