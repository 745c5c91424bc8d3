//! Readings from `/proc` and the open-file limit (Linux).

use std::io;
use std::time::Duration;

use crate::LoadError;

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its
/// hard limit and returns the new soft limit. Many connections need many
/// file descriptors, in the load generator and in the servers.
///
/// ```
/// let limit = webwire_load::raise_fd_limit()?;
/// assert!(limit > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The start-up shared by the `webwire-load` and `webwire-echo` binaries:
/// logs to stderr (filter from `RUST_LOG`, default `warn`), raises the
/// open-file limit ([`raise_fd_limit`]; a failure is only logged) and
/// builds a multi-threaded Tokio runtime with `threads` workers (default:
/// one per CPU).
///
/// Call it once per process: it installs the global log subscriber.
///
/// ```
/// let runtime = webwire_load::start_process(Some(1))?;
/// assert_eq!(runtime.block_on(async { 1 + 1 }), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn start_process(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match raise_fd_limit() {
        Ok(limit) => tracing::debug!("open file limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads);
    }
    runtime.enable_all().build()
}

/// The resident memory (`VmRSS` of `/proc/PID/status`) of process `pid`,
/// in KiB.
///
/// ```
/// let rss = webwire_load::vm_rss_kib(std::process::id())?;
/// assert!(rss > 0);
/// # Ok::<(), webwire_load::LoadError>(())
/// ```
pub fn vm_rss_kib(pid: u32) -> Result<u64, LoadError> {
    let status = read_proc(pid, "status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| proc_error(pid, "no VmRSS line"))
}

/// The CPU time (user + system, all threads) process `pid` has used so far.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration, LoadError> {
    // /proc reports clock ticks in USER_HZ, which Linux fixes at 100 on
    // every architecture it exposes to user space this way.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = read_proc(pid, "stat")?;
    // The command name (field 2) may contain spaces; fields after it are
    // counted from the last ')'. utime and stime are fields 14 and 15.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| proc_error(pid, "malformed stat"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut tick = || -> Result<u64, LoadError> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| proc_error(pid, "malformed stat"))
    };
    let ticks = tick()? + tick()?;
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

fn read_proc(pid: u32, file: &str) -> Result<String, LoadError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .map_err(|source| LoadError::Proc { pid, source })
}

fn proc_error(pid: u32, what: &str) -> LoadError {
    LoadError::Proc {
        pid,
        source: io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(vm_rss_kib(pid).unwrap() > 0);
        // Burn CPU until the kernel has charged at least one tick (10 ms) to
        // this process: on a loaded machine a fixed wall time may not be enough.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time(pid).unwrap() == Duration::ZERO {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no CPU time charged after 10 s of spinning"
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn missing_process_is_an_error() {
        // Above the kernel's maximum pid (2^22).
        assert!(matches!(
            vm_rss_kib(u32::MAX),
            Err(LoadError::Proc { pid: u32::MAX, .. })
        ));
    }
}
