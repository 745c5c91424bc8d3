//! The command line: subcommands, the connection options they share, and
//! how payloads are read.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use webwire_client::{Client, ClientBuilder, Payload, TlsConfig};

use crate::exit::Failure;

const EXAMPLES: &str = "\
Examples:
  webwire request ws://127.0.0.1:9090/ echo hello
  webwire request ws://127.0.0.1:9090/ echo --utf16 'héllo'
  webwire request ws://127.0.0.1:9090/ echo --binary --file image.png > copy.png
  echo -n '{\"a\":1}' | webwire request ws://127.0.0.1:9090/ save --file -
  webwire request wss://example.com/ws whoami --session-key \"$KEY\"
  webwire request ws://127.0.0.1:9090/ login ann --print-session-key 2> key.txt
  webwire signal ws://127.0.0.1:9090/ ping hi
  webwire listen ws://127.0.0.1:9090/ --request login ann --count 10
  webwire listen wss://localhost:8443/ --ca ca.pem -H 'Authorization: Bearer abc'

Exit status:
  0   done
  1   error reply (its code and message on standard error), or the
      session of --session-key could not be restored
  2   could not connect, or the connection was lost
  3   no reply within --timeout
  4   internal-error or shutdown reply
  64  bad command line or input";

/// A command-line webwire client: send requests and signals, print the
/// server's signals.
#[derive(Debug, Parser)]
#[command(name = "webwire", version, about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sends a request and prints its reply's payload: text as text,
    /// binary raw (or in base64 with --base64).
    #[command(after_help = EXAMPLES)]
    Request(RequestArgs),
    /// Sends a signal (one-way, never answered).
    #[command(after_help = EXAMPLES)]
    Signal(SignalArgs),
    /// Sends the --request requests in order, then prints each signal from
    /// the server as a JSON line {"name","encoding","payload"} (binary
    /// payloads in base64) until Ctrl-C or --count signals.
    #[command(after_help = EXAMPLES)]
    Listen(ListenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The server's URL (ws://HOST:PORT/PATH or wss://...).
    pub(crate) url: String,
    /// The request's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    /// Print a binary reply in base64 (and a newline) instead of raw.
    #[arg(long)]
    pub(crate) base64: bool,
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SignalArgs {
    /// The server's URL (ws://HOST:PORT/PATH or wss://...).
    pub(crate) url: String,
    /// The signal's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The server's URL (ws://HOST:PORT/PATH or wss://...).
    pub(crate) url: String,
    /// Stop after this many signals.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// A request to send before listening (repeatable; sent in order, each
    /// after the previous one's reply). Its reply is not printed; an error
    /// reply ends the command.
    #[arg(long, num_args = 2, value_names = ["NAME", "PAYLOAD"], action = clap::ArgAction::Append)]
    pub(crate) request: Vec<String>,
    /// Send the --request payloads as UTF-16.
    #[arg(long, conflicts_with = "binary")]
    pub(crate) utf16: bool,
    /// Send the --request payloads as binary.
    #[arg(long)]
    pub(crate) binary: bool,
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// The payload of a request or signal.
#[derive(Debug, Args)]
pub(crate) struct PayloadArgs {
    /// The payload (UTF-8 unless --utf16 or --binary); none: empty.
    #[arg(conflicts_with = "file")]
    payload: Option<String>,
    /// Read the payload from this file ("-": standard input).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Send the payload as UTF-16 text.
    #[arg(long, conflicts_with = "binary")]
    utf16: bool,
    /// Send the payload as binary (the file's bytes as they are).
    #[arg(long)]
    binary: bool,
}

/// The options every subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Restore this session before anything else.
    #[arg(long, value_name = "KEY")]
    pub(crate) session_key: Option<String>,
    /// Print the key of a session the server creates during the command on
    /// standard error (alone on its line).
    #[arg(long)]
    pub(crate) print_session_key: bool,
    /// An extra header for the WebSocket upgrade request, "Name: value"
    /// (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The Origin header to send, as a browser page of that origin would.
    #[arg(long)]
    origin: Option<String>,
    /// The sub-protocol the server must announce (fail otherwise).
    #[arg(long, value_name = "NAME")]
    subprotocol: Option<String>,
    /// Seconds that connecting, and each request, may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// Trust only the CA certificates of this PEM file (wss://).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (wss://): for test servers only.
    #[arg(long)]
    insecure: bool,
}

impl ConnectionArgs {
    /// The client's options; the URL comes from the subcommand.
    pub(crate) fn builder(&self, url: &str) -> Result<ClientBuilder, Failure> {
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|timeout| !timeout.is_zero())
            .ok_or_else(|| Failure::Usage(format!("invalid --timeout {}", self.timeout)))?;
        // One attempt: a command that lost its connection fails rather
        // than waiting for the server to come back. Without reconnects the
        // 2.1 extensions (resent keyed requests, resumed streams) give a
        // command nothing, and their opt-in would only delay its first
        // request by a round trip; stream signals still arrive as signals.
        let mut builder = Client::builder(url)
            .auto_reconnect(false)
            .extensions(false)
            .dial_timeout(timeout)
            .request_timeout(timeout)
            .close_timeout(timeout);
        for header in &self.headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                Failure::Usage(format!("--header {header:?} is not \"Name: value\""))
            })?;
            builder = builder.header(name.trim(), value.trim());
        }
        if let Some(origin) = &self.origin {
            builder = builder.origin(origin);
        }
        if let Some(name) = &self.subprotocol {
            builder = builder.sub_protocol(name);
        }
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path).map_err(|err| {
                Failure::Usage(format!("cannot read --ca {}: {err}", path.display()))
            })?;
            let tls = TlsConfig::with_ca_pem(&pem).map_err(|err| {
                Failure::Usage(format!("unusable --ca {}: {err}", path.display()))
            })?;
            builder = builder.tls(tls);
        } else if self.insecure {
            builder = builder.tls(TlsConfig::danger_accept_any_certificate());
        }
        Ok(builder)
    }
}

impl PayloadArgs {
    /// The payload from the argument, the file or standard input.
    pub(crate) fn read(&self) -> Result<Payload, Failure> {
        let bytes = match (&self.payload, &self.file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => read_file(path)?,
            (None, None) => Vec::new(),
        };
        encode(bytes, self.utf16, self.binary)
    }
}

impl ListenArgs {
    /// The `--request` pairs, their payloads encoded.
    pub(crate) fn requests(&self) -> Result<Vec<(String, Payload)>, Failure> {
        self.request
            .chunks_exact(2)
            .map(|pair| {
                let payload = encode(pair[1].clone().into_bytes(), self.utf16, self.binary)?;
                Ok((pair[0].clone(), payload))
            })
            .collect()
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut bytes).map(drop))
    };
    result.map_err(|err| Failure::Usage(format!("cannot read {}: {err}", path.display())))?;
    Ok(bytes)
}

/// UTF-8 by default (the bytes as they are), UTF-16 (the bytes must be
/// UTF-8 text, converted) or binary.
fn encode(bytes: Vec<u8>, utf16: bool, binary: bool) -> Result<Payload, Failure> {
    if binary {
        return Ok(Payload::binary(bytes));
    }
    if utf16 {
        let text = String::from_utf8(bytes)
            .map_err(|_| Failure::Usage("a --utf16 payload must be UTF-8 text".into()))?;
        return Ok(Payload::utf16(&text));
    }
    Payload::new(webwire_client::Encoding::Utf8, bytes)
        .map_err(|err| Failure::Usage(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_takes_request_pairs() {
        let cli = Cli::try_parse_from([
            "webwire",
            "listen",
            "ws://h/",
            "--request",
            "login",
            "ann",
            "--request",
            "signal-me",
            "x",
            "--count",
            "2",
        ])
        .unwrap();
        let Command::Listen(args) = cli.command else {
            panic!("listen expected")
        };
        let requests = args.requests().unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].0, "signal-me");
        assert_eq!(requests[1].1, Payload::utf8("x"));
        assert_eq!(args.count, Some(2));
    }

    #[test]
    fn payload_and_file_conflict() {
        let err = Cli::try_parse_from(["webwire", "request", "ws://h/", "n", "p", "--file", "f"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn encodings() {
        assert_eq!(
            encode("hé".into(), true, false).unwrap(),
            Payload::utf16("hé")
        );
        assert_eq!(
            encode(vec![0xff], false, true).unwrap(),
            Payload::binary(vec![0xff])
        );
        assert!(matches!(
            encode(vec![0xff], true, false),
            Err(Failure::Usage(_))
        ));
    }
}
