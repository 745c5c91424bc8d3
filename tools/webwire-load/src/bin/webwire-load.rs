//! `webwire-load`: request and signal load against a webwire server (or a
//! raw echo server), and the `connect` mode for idle connections.
//!
//! Exit status: 0 done; 1 with `--fail-on-error` when the run saw errors,
//! mismatches or unanswered requests (or, in `connect` mode, connections
//! that failed or closed); 2 when the run could not take place.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use webwire_load::{ConnectConfig, LoadConfig, Mode, ResumeConfig};
use webwire_proto::Name;

/// Load generator for webwire servers (2.0 and 2.1).
#[derive(Debug, Parser)]
#[command(
    name = "webwire-load",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open many connections, hold them with heartbeats, report how many
    /// stayed open and the server's memory per connection.
    Connect(ConnectArgs),
    /// webwire 2.1 resume benchmark: sessions with a history room each;
    /// the server drops all their connections at once; the time until
    /// all have reconnected, restored and received every missed signal
    /// (verified: nothing missing, nothing doubled).
    Resume(ResumeArgs),
}

/// The resume benchmark.
#[derive(Debug, Args)]
struct ResumeArgs {
    /// The node the sessions connect to first and that drops them
    /// (`close-all-connections` of the interop server), ws://HOST:PORT/.
    #[arg(long)]
    url: String,
    /// The node the sessions reconnect to [default: --url]; for two nodes,
    /// another interop server sharing the first one's Redis.
    #[arg(long)]
    resume_url: Option<String>,
    /// Sessions (one connection each in this process).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Signals said into each session's room before the drop.
    #[arg(long, default_value_t = 1)]
    before: u64,
    /// Signals said into each room from the drop on, while the sessions
    /// reconnect.
    #[arg(long, default_value_t = 2)]
    during: u64,
    /// Set-ups and reconnections in progress at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Connections that say the signals.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// `say` requests outstanding per sender connection.
    #[arg(long, default_value_t = 64)]
    sender_inflight: usize,
    /// Give up on a phase after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Keep reading this long after all are complete (late duplicates).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// A server's pid (repeatable): its CPU time during the resume.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 if a session did not complete, or anything was
    /// missing, doubled, lost or wrong.
    #[arg(long)]
    fail_on_error: bool,
}

/// Request or signal load.
#[derive(Debug, Args)]
struct LoadArgs {
    /// The server, ws://HOST:PORT/PATH.
    #[arg(long, required = true)]
    url: Option<String>,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Requests (or signals) outstanding per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Measured time (5s, 500ms, ...).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time under load before measuring.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// How long to wait for outstanding replies at the end.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// `request`: requests answered by replies; `signal`: `ping` signals
    /// answered by `pong` signals; `keyed`: webwire 2.1 keyed requests
    /// (each connection opts in and logs in first); `hist`: `room-ping`
    /// signals answered by `room-pong` stream signals of a history room
    /// (webwire 2.1; each connection opts in, logs in and joins its room).
    /// The 2.1 modes need a 2.1 server: compare them with `request` and
    /// `signal` on the same server, not with the raw echo.
    #[arg(long, default_value = "request")]
    mode: Mode,
    /// The requests' name (default: none, which the interop server echoes).
    #[arg(long, value_parser = parse_name)]
    name: Option<Name>,
    /// The server is a raw WebSocket echo (no AcceptConf; the echoed
    /// message is the reply).
    #[arg(long)]
    raw_echo: bool,
    /// The server's pid: report its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 on any error, mismatch or unanswered request.
    #[arg(long)]
    fail_on_error: bool,
}

/// Idle connections.
#[derive(Debug, Args)]
struct ConnectArgs {
    /// The server, ws://HOST:PORT/PATH.
    #[arg(long)]
    url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// The server's pid: report its resident memory before and after.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server is a raw WebSocket echo (no AcceptConf, no heartbeats).
    #[arg(long)]
    raw_echo: bool,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 if a connection failed to open or closed early.
    #[arg(long)]
    fail_on_error: bool,
    /// Each connection opts in to webwire 2.1, logs in and gets one signal
    /// on its session stream before idling (needs a 2.1 server).
    #[arg(long)]
    v21: bool,
}

fn parse_name(s: &str) -> Result<Name, String> {
    Name::try_from(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match webwire_load::start_process(cli.threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("webwire-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Some(Command::Connect(args)) => runtime.block_on(connect(args)),
        Some(Command::Resume(args)) => runtime.block_on(resume(args)),
        None => runtime.block_on(load(cli.load)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("webwire-load: {e}");
            ExitCode::from(2)
        }
    }
}

async fn load(args: LoadArgs) -> Result<ExitCode, webwire_load::LoadError> {
    let mut config = LoadConfig::new(args.url.unwrap_or_default());
    config.conns = args.conns;
    config.inflight = args.inflight;
    config.size = args.size;
    config.duration = args.duration;
    config.warmup = args.warmup;
    config.grace = args.grace;
    config.mode = args.mode;
    config.name = args.name;
    config.raw_echo = args.raw_echo;
    config.server_pid = args.server_pid;
    let report = webwire_load::run(&config).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(if args.fail_on_error && report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn connect(args: ConnectArgs) -> Result<ExitCode, webwire_load::LoadError> {
    let mut config = ConnectConfig::new(args.url);
    config.conns = args.conns;
    config.hold = args.hold;
    config.server_pid = args.server_pid;
    config.concurrency = args.concurrency;
    config.raw_echo = args.raw_echo;
    config.v21 = args.v21;
    let report = webwire_load::run_connect(&config).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(if args.fail_on_error && report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn resume(args: ResumeArgs) -> Result<ExitCode, webwire_load::LoadError> {
    let mut config = ResumeConfig::new(args.url);
    config.resume_url = args.resume_url;
    config.sessions = args.sessions;
    config.before = args.before;
    config.during = args.during;
    config.concurrency = args.concurrency;
    config.senders = args.senders;
    config.sender_inflight = args.sender_inflight;
    config.timeout = args.timeout;
    config.settle = args.settle;
    config.server_pids = args.server_pid;
    let report = webwire_load::run_resume(&config).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(if args.fail_on_error && report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
