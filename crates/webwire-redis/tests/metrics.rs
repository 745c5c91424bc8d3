//! The Redis metrics after a known workload on a real redis-server: every
//! call timed by operation, cluster messages published and received. One
//! test in this binary: the recorder is the process's global one.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use webwire_client::{Client, ClientEvent};
use webwire_redis::{RedisCluster, RedisClusterConfig, RedisSessionConfig, RedisSessionManager};
use webwire_server::{Connection, MessageRouter, Payload, Server};

const WAIT: Duration = Duration::from_secs(20);

/// The value of the sample `series` in the Prometheus text `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
}

/// A node on `url` with its sessions in Redis; the listener's URL.
async fn node(url: &str, id: &str) -> (Server, RedisCluster, String) {
    let sessions = RedisSessionManager::connect(url, RedisSessionConfig::new())
        .await
        .unwrap();
    let cluster = RedisCluster::connect(
        url,
        RedisClusterConfig::new(id).with_heartbeat_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let router = MessageRouter::new().request("login", |conn: Connection, _: Payload| async move {
        let session = conn.create_session(None).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.key)
    });
    let server = Server::builder(router)
        .session_manager(Arc::new(sessions))
        .cluster(Arc::new(cluster.clone()))
        .build()
        .unwrap();
    let listener = server.bind("127.0.0.1:0").await.unwrap();
    let ws = format!("ws://{}/", listener.local_addr());
    tokio::spawn(listener.run());
    (server, cluster, ws)
}

#[tokio::test]
async fn redis_calls_and_cluster_messages_show_in_the_metrics() {
    let redis = redis_or_skip!();
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let (a, cluster_a, _) = node(&redis.url(), "a").await;
    let (b, cluster_b, url_b) = node(&redis.url(), "b").await;
    tokio::time::timeout(WAIT, async {
        while cluster_a.peers() != ["b"] || cluster_b.peers() != ["a"] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the nodes see each other");

    let client = Client::connect(&url_b).await.unwrap();
    let mut events = client.events();
    client.request("login", "").await.unwrap();
    assert_eq!(a.signal_all("all", "everybody").unwrap(), 0);
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::Signal(signal)) = events.recv().await
                && signal.name().as_str() == "all"
            {
                return;
            }
        }
    })
    .await
    .expect("the broadcast from the other node");

    let text = prometheus.render();
    let count = |series: &str| sample(&text, series).unwrap_or(0.0);
    let cluster = |direction: &str| {
        count(&format!(
            "webwire_cluster_messages_total{{direction=\"{direction}\"}}"
        ))
    };
    assert!(cluster("published") >= 1.0, "{text}");
    assert!(cluster("received") >= 1.0, "{text}");
    for op in ["store", "publish", "heartbeat", "subscribe", "connect"] {
        assert!(
            count(&format!(
                "webwire_redis_duration_seconds_count{{op=\"{op}\"}}"
            )) >= 1.0,
            "{op}: {text}"
        );
    }
    client.close().await;
    a.shutdown().await;
    b.shutdown().await;
}
