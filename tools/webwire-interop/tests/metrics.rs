//! `serve --metrics-addr`: after a known workload over real sockets, the
//! Prometheus text at `/metrics` counts it. One test in this binary: the
//! recorder is the process's global one.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webwire_client::Client;
use webwire_interop::serve::{self, ServeOptions};

/// `GET path` on `addr`: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .expect("no answer")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `series` in the Prometheus text `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
}

#[tokio::test]
async fn the_metrics_endpoint_counts_a_known_workload() {
    let mut options = ServeOptions::new("127.0.0.1:0");
    options.metrics_addr = Some("127.0.0.1:0".to_owned());
    let server = serve::start(options).await.unwrap();
    let metrics = server.metrics_addr().expect("metrics address");

    let client = Client::connect(&server.url()).await.unwrap();
    for _ in 0..7 {
        client.request("echo", "hi").await.unwrap();
    }
    for _ in 0..2 {
        client.request("error", "").await.unwrap_err();
    }
    for n in 0..3 {
        client.request(&format!("nope-{n}"), "").await.unwrap_err();
    }

    let (status, text) = get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let requests = |name: &str, outcome: &str| {
        sample(
            &text,
            &format!("webwire_requests_total{{name=\"{name}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(requests("echo", "ok"), Some(7.0), "{text}");
    assert_eq!(requests("error", "error"), Some(2.0), "{text}");
    assert_eq!(requests("_unknown", "error"), Some(3.0), "{text}");
    assert!(!text.contains("nope-"), "{text}");
    // A histogram with the documented buckets.
    assert_eq!(
        sample(
            &text,
            "webwire_request_duration_seconds_count{name=\"echo\"}"
        ),
        Some(7.0),
        "{text}"
    );
    assert!(
        text.contains("webwire_request_duration_seconds_bucket{name=\"echo\",le=\"0.001\"}"),
        "{text}"
    );
    assert_eq!(sample(&text, "webwire_connections"), Some(1.0), "{text}");

    let (status, _) = get(metrics, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    client.close().await;
    server.shutdown().await.unwrap();
}
