//! The idle-connection mode: how many connections a server holds, and what
//! each costs it in memory.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_websockets::Message;
use webwire_proto::ClientMessage;

use crate::client::{OpenOptions, Target, Ws};
use crate::report::{seconds, ConnectReport};
use crate::{sys, ConnectConfig, LoadError};

/// Opens `config.conns` connections (at most `config.concurrency`
/// handshakes at once), holds them for `config.hold` once all are open,
/// sending a heartbeat on each after 3/4 of the server's read timeout of
/// silence, and reports how many stayed open and, given the server's pid,
/// its resident memory before and after.
///
/// Connections that fail to open are counted, not fatal. The caller needs
/// one file descriptor per connection (see [`raise_fd_limit`]).
///
/// [`raise_fd_limit`]: crate::raise_fd_limit
///
/// ```no_run
/// use webwire_load::ConnectConfig;
///
/// # async fn example() -> Result<(), webwire_load::LoadError> {
/// let mut config = ConnectConfig::new("ws://127.0.0.1:9090/");
/// config.conns = 10_000;
/// config.server_pid = Some(4242);
/// let report = webwire_load::run_connect(&config).await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
pub async fn run_connect(config: &ConnectConfig) -> Result<ConnectReport, LoadError> {
    config.validate()?;
    let target = Target::resolve(&config.url).await?;
    let rss_before = config.server_pid.map(sys::vm_rss_kib).transpose()?;
    let options = OpenOptions {
        raw_echo: config.raw_echo,
        accept_timeout: config.accept_timeout,
    };

    let v21 = config.v21;
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let stop = CancellationToken::new();
    // Each connection says once whether it opened (and its heartbeat
    // interval), lets go of the sender, and then holds until `stop`.
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..config.conns {
        let target = target.clone();
        let permits = Arc::clone(&permits);
        let stop = stop.clone();
        let opened_tx = opened_tx.clone();
        tasks.spawn(async move {
            let permit = permits.acquire_owned().await;
            let mut opened = target.open(index, options).await;
            if let (true, Ok((ws, conf))) = (v21, &mut opened)
                && let Err(e) =
                    crate::v21::set_up_idle(ws, conf.as_ref(), index, options.accept_timeout).await
            {
                opened = Err(e);
            }
            drop(permit);
            match opened {
                Ok((ws, conf)) => {
                    let heartbeat = conf.map(|conf| conf.read_timeout() * 3 / 4);
                    let _ = opened_tx.send(Ok(heartbeat));
                    drop(opened_tx);
                    hold(ws, heartbeat, stop).await
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    false
                }
            }
        });
    }
    drop(opened_tx);

    let (mut connected, mut failed) = (0, 0);
    let mut first_error = None;
    let mut heartbeat = None;
    while let Some(opened) = opened_rx.recv().await {
        match opened {
            Ok(interval) => {
                connected += 1;
                heartbeat = heartbeat.or(interval);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let connect_time = started.elapsed();

    tokio::time::sleep(config.hold).await;
    let rss_after = config.server_pid.map(sys::vm_rss_kib).transpose()?;
    stop.cancel();
    let mut open_at_end = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(still_open) => open_at_end += usize::from(still_open),
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }

    let kib_per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if open_at_end > 0 => {
            Some((after as f64 - before as f64) / open_at_end as f64)
        }
        _ => None,
    };
    Ok(ConnectReport {
        url: config.url.clone(),
        v21,
        conns: config.conns,
        connected,
        failed,
        first_error,
        connect_seconds: seconds(connect_time),
        hold_seconds: seconds(config.hold),
        open_at_end,
        heartbeat_ms: heartbeat.map(|d: Duration| d.as_millis() as u64),
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        kib_per_conn,
    })
}

/// Keeps one connection open until `stop`, with heartbeats; true if it was
/// still open then.
async fn hold(mut ws: Ws, heartbeat: Option<Duration>, stop: CancellationToken) -> bool {
    // A raw echo server has no read timeout: no heartbeats, wake for the
    // stop only.
    let interval = heartbeat.unwrap_or(Duration::from_secs(86_400));
    let mut next_heartbeat = Instant::now() + interval;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return true,
            message = ws.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(tokio_websockets::Error::Io(_))) | None => return false,
                // The library closes the connection; the stream ends next.
                Some(Err(_)) => {}
            },
            () = tokio::time::sleep_until(next_heartbeat), if heartbeat.is_some() => {
                if ws.send(Message::binary(ClientMessage::Heartbeat.to_bytes())).await.is_err() {
                    return false;
                }
                next_heartbeat = Instant::now() + interval;
            }
        }
    }
}
