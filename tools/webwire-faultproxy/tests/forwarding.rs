//! Forwarding and cutting over real loopback sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use webwire_faultproxy::{cut_points, CutTrigger, Direction, FaultProxy};

/// A bound on every test, so a hang fails instead of blocking the suite.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

/// Upstream that echoes every connection until EOF, then closes its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Upstream that records everything it receives (until EOF or error) and
/// sends `send` on every connection; the recordings arrive on the channel.
async fn sink_server(send: Vec<u8>) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            let send = send.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let writing = async {
                    if !send.is_empty() {
                        let _ = w.write_all(&send).await;
                    }
                };
                let reading = async {
                    let mut got = Vec::new();
                    let mut buf = [0; 4096];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got
                };
                let ((), got) = tokio::join!(writing, reading);
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(salt ^ (i >> 8) as u8)
        })
        .collect()
}

/// Reads until EOF or a reset; a cut may end the stream either way.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn forwards_byte_exact_both_ways_with_half_close() {
    bounded(async {
        let upstream = echo_server().await;
        let proxy = FaultProxy::builder([upstream])
            .cutting(false)
            .start()
            .await
            .unwrap();
        let sizes = [
            1usize,
            7,
            1000,
            65_536,
            1_000_000,
            3,
            16 * 1024,
            16 * 1024 + 1,
        ];
        let mut sent = Vec::new();
        let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut r, mut w) = client.into_split();
        let chunks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| pattern(n, i as u8))
            .collect();
        for c in &chunks {
            sent.extend_from_slice(c);
        }
        let writer = tokio::spawn(async move {
            for c in chunks {
                w.write_all(&c).await.unwrap();
            }
            // Many one-byte writes too.
            for b in 0..200u8 {
                w.write_all(&[b]).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        sent.extend(0..200u8);
        let mut got = Vec::new();
        // EOF arrives only if the proxy passed the half-close on both ways.
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "echo differs");
        let stats = proxy.stats();
        assert_eq!(stats.cuts, 0);
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.bytes_client_to_server, sent.len() as u64);
        assert_eq!(stats.bytes_server_to_client, sent.len() as u64);
        // Not WebSocket: the observer waits for an HTTP head it never sees.
        assert_eq!(stats.requests_forwarded, 0);
    })
    .await;
}

#[tokio::test]
async fn cuts_client_to_server_at_the_seeded_byte_counts() {
    bounded(async {
        let range = 1000..=5000;
        let (upstream, mut received) = sink_server(Vec::new()).await;
        let data = pattern(100_000, 1);
        let mut cut_at = Vec::new();
        for seed in [11, 11, 12] {
            let proxy = FaultProxy::builder([upstream])
                .seed(seed)
                .cut_after(range.clone())
                .start()
                .await
                .unwrap();
            for k in 0..4 {
                let expected = cut_points(seed, k, Direction::ClientToServer, range.clone())
                    .next()
                    .unwrap();
                assert!(range.contains(&expected));
                let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
                // Fails with a reset once the proxy cut; that is the point.
                let _ = client.write_all(&data).await;
                let got = received.recv().await.unwrap();
                assert_eq!(got.len() as u64, expected, "seed {seed} connection {k}");
                assert!(got[..] == data[..got.len()], "the server got a prefix");
                let mut rest = Vec::new();
                // The client sees its connection closed.
                let _ = client.read_to_end(&mut rest).await;
                assert!(rest.is_empty());
                cut_at.push(expected);
            }
            let log = proxy.cut_log();
            assert_eq!(log.len(), 4);
            for (k, record) in log.iter().enumerate() {
                assert_eq!(record.connection, k as u64);
                assert_eq!(record.trigger, CutTrigger::ClientToServer);
                assert_eq!(record.client_to_server_bytes, cut_at[cut_at.len() - 4 + k]);
                assert_eq!(record.server_to_client_bytes, 0);
            }
            let stats = proxy.stats();
            assert_eq!(stats.cuts, 4);
            assert_eq!(stats.manual_cuts, 0);
            assert_eq!(
                stats.bytes_discarded,
                log.iter().map(|r| r.discarded_bytes).sum::<u64>()
            );
        }
        // Same seed, same cuts; another seed, other cuts.
        assert_eq!(cut_at[..4], cut_at[4..8]);
        assert_ne!(cut_at[..4], cut_at[8..]);
    })
    .await;
}

#[tokio::test]
async fn cuts_server_to_client_and_discards_what_it_held() {
    bounded(async {
        let range = 20_000..=40_000;
        let data = pattern(200_000, 2);
        let (upstream, _received) = sink_server(data.clone()).await;
        let proxy = FaultProxy::builder([upstream])
            .seed(99)
            .cut_after(range.clone())
            .chunk_size(64 * 1024)
            .start()
            .await
            .unwrap();
        let expected = proxy
            .cut_points(0, Direction::ServerToClient)
            .next()
            .unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let got = read_until_closed(&mut client).await;
        assert_eq!(got.len() as u64, expected);
        assert!(got[..] == data[..got.len()]);
        let log = proxy.cut_log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].trigger, CutTrigger::ServerToClient);
        assert_eq!(log[0].server_to_client_bytes, expected);
        // Whatever the proxy had read past the cut point was not sent.
        assert!(log[0].discarded_bytes <= data.len() as u64 - expected);
        assert!(!log[0].observed || log[0].requests_in_flight == 0);
    })
    .await;
}

#[tokio::test]
async fn cut_all_cuts_every_open_connection_even_when_calm() {
    bounded(async {
        let upstream = echo_server().await;
        let proxy = FaultProxy::builder([upstream])
            .cutting(false)
            .start()
            .await
            .unwrap();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            let mut b = [0];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i);
            clients.push(c);
        }
        assert_eq!(proxy.cut_all().await, 3);
        for mut c in clients {
            assert!(read_until_closed(&mut c).await.is_empty());
        }
        let stats = proxy.stats();
        assert_eq!((stats.cuts, stats.manual_cuts), (3, 3));
        assert!(proxy
            .cut_log()
            .iter()
            .all(|r| r.trigger == CutTrigger::Manual));
        // Nothing left to cut; new connections are served.
        assert_eq!(proxy.cut_all().await, 0);
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut b = [0];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
    })
    .await;
}

#[tokio::test]
async fn calm_skips_cut_points_and_wild_cuts_again() {
    bounded(async {
        let upstream = echo_server().await;
        let range = 100..=300;
        let proxy = FaultProxy::builder([upstream])
            .seed(5)
            .cut_after(range)
            .cutting(false)
            .start()
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let data = pattern(10_000, 3);
        c.write_all(&data).await.unwrap();
        let mut back = vec![0; data.len()];
        c.read_exact(&mut back).await.unwrap();
        assert!(back == data);
        assert_eq!(proxy.stats().cuts, 0);
        proxy.set_cutting(true);
        assert!(proxy.is_cutting());
        let _ = c.write_all(&data).await;
        let _ = read_until_closed(&mut c).await;
        let log = proxy.cut_log();
        assert_eq!(log.len(), 1);
        let r = log[0];
        // The cut lands exactly on a later seeded point of its direction.
        let (direction, at) = match r.trigger {
            CutTrigger::ClientToServer => (Direction::ClientToServer, r.client_to_server_bytes),
            CutTrigger::ServerToClient => (Direction::ServerToClient, r.server_to_client_bytes),
            CutTrigger::Manual => panic!("not a manual cut"),
        };
        assert!(at > 10_000);
        assert!(proxy
            .cut_points(0, direction)
            .take_while(|&p| p <= at)
            .any(|p| p == at));
    })
    .await;
}

#[tokio::test]
async fn round_robin_over_two_upstreams() {
    bounded(async {
        let mut upstreams = Vec::new();
        for tag in [b'a', b'b'] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            upstreams.push(listener.local_addr().unwrap());
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let _ = s.write_all(&[tag]).await;
                }
            });
        }
        let proxy = FaultProxy::builder(upstreams)
            .cutting(false)
            .start()
            .await
            .unwrap();
        let mut tags = Vec::new();
        for _ in 0..5 {
            let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
            tags.extend(read_until_closed(&mut c).await);
        }
        assert_eq!(tags, b"ababa");
    })
    .await;
}

#[tokio::test]
async fn refused_upstream_closes_the_client() {
    bounded(async {
        // Bound and dropped: nothing listens there any more.
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = FaultProxy::builder([gone]).start().await.unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert!(read_until_closed(&mut c).await.is_empty());
        let stats = proxy.stats();
        assert_eq!((stats.upstream_failures, stats.cuts), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn refuses_bad_configuration() {
    let lo = SocketAddr::from(([127, 0, 0, 1], 1));
    let public = SocketAddr::from(([192, 0, 2, 1], 1));
    assert!(FaultProxy::builder([]).start().await.is_err());
    assert!(FaultProxy::builder([public]).start().await.is_err());
    assert!(FaultProxy::builder([lo])
        .listen(SocketAddr::from(([0, 0, 0, 0], 0)))
        .start()
        .await
        .is_err());
    assert!(FaultProxy::builder([lo])
        .cut_after(0..=10)
        .start()
        .await
        .is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 10..=5;
    assert!(FaultProxy::builder([lo])
        .cut_after(empty)
        .start()
        .await
        .is_err());
    assert!(FaultProxy::builder([lo])
        .chunk_size(0)
        .start()
        .await
        .is_err());
}
