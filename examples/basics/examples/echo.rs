//! Request-reply with webwire: an echo server and a client.
//!
//! ```sh
//! cargo run -p webwire-examples --example echo                  # both, in one process
//! cargo run -p webwire-examples --example echo -- server [ADDR] # the server (default 127.0.0.1:9090)
//! cargo run -p webwire-examples --example echo -- client URL    # a client, e.g. ws://127.0.0.1:9090/
//! ```
//!
//! The code is in `src/echo.rs`.

use std::process::ExitCode;

use webwire_examples::echo;

const USAGE: &str = "usage: echo [server [ADDR] | client URL]";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    webwire_examples::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => {
            echo::run_demo().await?;
        }
        ["server"] => echo::serve("127.0.0.1:9090").await?,
        ["server", addr] => echo::serve(addr).await?,
        ["client", url] => {
            echo::run_client(url).await?;
        }
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}
