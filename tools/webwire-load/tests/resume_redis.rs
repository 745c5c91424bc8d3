//! The resume benchmark on two nodes sharing a Redis: sessions dropped by
//! node A resume on node B and get every signal said on A, once each.
//! Needs redis-server (skips without it, fails without it when CI=true).

#[path = "../../../crates/webwire-redis/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use webwire_interop::serve::{start, Running, ServeOptions};
use webwire_load::ResumeConfig;

async fn node(redis: &str, id: &str) -> Running {
    let mut options = ServeOptions::new("127.0.0.1:0");
    options.redis = Some(redis.to_owned());
    options.node_id = Some(id.to_owned());
    start(options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_by_one_node_resume_on_the_other() {
    let redis = redis_or_skip!();
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let mut config = ResumeConfig::new(a.url());
    config.resume_url = Some(b.url());
    config.sessions = 20;
    config.before = 2;
    config.during = 3;
    config.concurrency = 8;
    config.senders = 2;
    config.timeout = Duration::from_secs(20);
    config.settle = Duration::from_millis(200);
    let report = webwire_load::run_resume(&config).await.unwrap();
    assert_eq!(report.failures(), 0, "{report}");
    assert_eq!(report.complete, 20, "{report}");
    assert!(report.all_complete_seconds.is_some(), "{report}");
    assert_eq!(report.resume_url, b.url());
}
