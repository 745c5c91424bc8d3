//! `webwire-faultproxy`: the fault-injecting proxy as a process, for tests
//! written in other languages (the TypeScript client's tests in Node).
//!
//! Prints `LISTENING 127.0.0.1:PORT`, then answers one line per stdin
//! command: `cut` (`OK cut N`, N connections cut), `calm` (`OK calm`),
//! `wild` (`OK wild`), `stats` (the stats as one JSON line). On stdin EOF
//! SIGTERM or SIGINT it prints the stats as one JSON line and exits. The JSON
//! object has the fields of `webwire_faultproxy::Stats`: `seed`,
//! `connections`, `cuts`, `manual_cuts`, `cuts_with_requests_in_flight`,
//! `cuts_with_signals_in_flight`, `cuts_mid_frame`, `bytes_client_to_server`,
//! `bytes_server_to_client`, `bytes_discarded`, `requests_forwarded`,
//! `replies_forwarded`, `signals_forwarded`, `unobserved_connections`,
//! `upstream_failures`.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::process::ExitCode;

use clap::Parser;
use tokio::io::AsyncBufReadExt;
use webwire_faultproxy::FaultProxy;

#[derive(Debug, Parser)]
#[command(version, about = "A fault-injecting TCP proxy for loopback tests")]
struct Args {
    /// A server to forward to (loopback); give it twice for two nodes:
    /// connection k goes to upstream k mod n.
    #[arg(long, required = true)]
    upstream: Vec<SocketAddr>,
    /// The seed of the cut points; random (and printed on stderr) if not
    /// given.
    #[arg(long)]
    seed: Option<u64>,
    /// Bytes between two cuts of one direction, `MIN..MAX` (both
    /// inclusive) or one number; the default is the library's
    /// `DEFAULT_CUT_AFTER`.
    #[arg(long, value_parser = parse_range, default_value = "512..8192")]
    cut_after: RangeInclusive<u64>,
    /// The address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Start without cutting (until `wild`).
    #[arg(long)]
    calm: bool,
}

fn parse_range(s: &str) -> Result<RangeInclusive<u64>, String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|e| format!("{v:?} is not a byte count: {e}"))
    };
    let (min, max) = match s.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b.strip_prefix('=').unwrap_or(b))?),
        None => {
            let n = parse(s)?;
            (n, n)
        }
    };
    if min == 0 || min > max {
        return Err(format!("need 1 <= MIN <= MAX, got {min}..{max}"));
    }
    Ok(min..=max)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let seed = args
        .seed
        .unwrap_or_else(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    if args.seed.is_none() {
        eprintln!("webwire-faultproxy: seed {seed}");
    }
    let proxy = match FaultProxy::builder(args.upstream)
        .listen(args.listen)
        .seed(seed)
        .cut_after(args.cut_after)
        .cutting(!args.calm)
        .start()
        .await
    {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("webwire-faultproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let terminate = terminate();
    tokio::pin!(terminate);
    println!("LISTENING {}", proxy.local_addr());

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            () = &mut terminate => break,
            line = lines.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("webwire-faultproxy: reading stdin: {e}");
                break;
            }
        };
        match line.trim() {
            "" => {}
            "cut" => println!("OK cut {}", proxy.cut_all().await),
            "calm" => {
                proxy.set_cutting(false);
                println!("OK calm");
            }
            "wild" => {
                proxy.set_cutting(true);
                println!("OK wild");
            }
            "stats" => println!("{}", stats_json(&proxy)),
            other => println!("ERR unknown command {other:?}"),
        }
    }
    println!("{}", stats_json(&proxy));
    // The stdin reader may still block in a thread the runtime would wait
    // for; nothing is left to clean up.
    std::process::exit(0)
}

fn stats_json(proxy: &FaultProxy) -> String {
    serde_json::to_string(&proxy.stats()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Resolves on SIGTERM or SIGINT. Installs the SIGTERM handler at once
/// (not on the first poll), so a signal sent right after the LISTENING
/// line is not fatal.
#[cfg(unix)]
fn terminate() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let sigterm = signal(SignalKind::terminate());
    async move {
        let sigterm = async {
            match sigterm {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(e) => {
                    eprintln!("webwire-faultproxy: no SIGTERM handler: {e}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = sigterm => {}
            Ok(()) = tokio::signal::ctrl_c() => {}
        }
    }
}

#[cfg(not(unix))]
fn terminate() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
