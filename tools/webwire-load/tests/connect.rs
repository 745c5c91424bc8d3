//! The connect mode holds connections open with heartbeats and measures the
//! server's memory.

mod common;

use std::time::Duration;

use common::{Behaviour, Fault};
use webwire_load::ConnectConfig;

/// The read timeout of the test server: the tool heartbeats at 3/4 of it,
/// so a heartbeat may come 500 ms late before the server closes.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_connections_past_the_read_timeout() {
    // The hold outlasts the read timeout: only heartbeats (every 1.5 s)
    // keep the connections open.
    let url = common::start(Behaviour {
        fault: Fault::None,
        read_timeout: READ_TIMEOUT,
    })
    .await;
    let mut config = ConnectConfig::new(&url);
    config.conns = 20;
    config.hold = Duration::from_millis(2500);
    config.concurrency = 4;
    // The test server runs in this process: the memory measured is ours.
    let pid = std::process::id();
    config.server_pid = Some(pid);
    let ours_before = webwire_load::vm_rss_kib(pid).unwrap();
    let report = webwire_load::run_connect(&config).await.unwrap();
    let ours_after = webwire_load::vm_rss_kib(pid).unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.open_at_end, 20, "{report}");
    assert_eq!(report.failures(), 0);
    assert_eq!(report.heartbeat_ms, Some(1500));
    // What was measured is this process's resident memory (within what
    // the process itself allocates meanwhile), and the figure per
    // connection is the difference shared by the connections held.
    let (before, after) = (
        report.rss_before_kib.unwrap(),
        report.rss_after_kib.unwrap(),
    );
    let near = |a: u64, b: u64| a.abs_diff(b) <= b / 5 + 512;
    assert!(
        near(before, ours_before),
        "{before} KiB vs ours {ours_before} KiB"
    );
    assert!(
        near(after, ours_after),
        "{after} KiB vs ours {ours_after} KiB"
    );
    let per_conn = report.kib_per_conn.unwrap();
    assert_eq!(per_conn, (after as f64 - before as f64) / 20.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_heartbeats_the_server_closes_them_all() {
    // As against a raw echo server: no heartbeats, and a hold well past
    // the read timeout.
    let url = common::start(Behaviour {
        fault: Fault::None,
        read_timeout: READ_TIMEOUT,
    })
    .await;
    let mut config = ConnectConfig::new(&url);
    config.conns = 20;
    config.hold = READ_TIMEOUT + Duration::from_millis(1500);
    config.concurrency = 4;
    config.raw_echo = true;
    let report = webwire_load::run_connect(&config).await.unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.open_at_end, 0, "{report}");
    assert_eq!(report.failures(), 20);
    assert_eq!(report.kib_per_conn, None, "no pid, no memory figure");
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
