//! Taking the transport back from hyper after the upgrade: the server's own
//! TCP and TLS streams go to the connection task without hyper's boxed
//! layer (bytes hyper read ahead put in front with `Prefixed`); any other
//! transport stays behind it.

use super::*;

/// Spawns the connection's task on its transport, its future held by the
/// task itself (no box, and a plain TCP connection does not carry the size
/// of a TLS one). The transports the server itself creates are taken back
/// from hyper, so that reads and writes go to the socket without hyper's
/// boxed, type-erased layer; anything else stays behind it.
pub(super) fn spawn_connection<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    upgraded: Upgraded,
    accepted: Accepted,
) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return spawn_on(shared, handler, parts, accepted),
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => spawn_on(shared, handler, parts, accepted),
        Err(upgraded) => {
            let tasks = shared.connection_tasks().clone();
            tasks.spawn(serve(shared, handler, TokioIo::new(upgraded), accepted));
        }
    }
}

/// Spawns the connection's task on a transport taken back from hyper, with
/// the bytes hyper read ahead (if any) in front of it. Tracked like the
/// upgrade's task, which it outlives: the server's count of connection
/// tasks never drops to zero in between.
fn spawn_on<H, Io>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    parts: hyper::upgrade::Parts<TokioIo<Io>>,
    accepted: Accepted,
) where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tasks = shared.connection_tasks().clone();
    let io = parts.io.into_inner();
    if parts.read_buf.is_empty() {
        tasks.spawn(serve(shared, handler, io, accepted));
    } else {
        let io = Prefixed::new(parts.read_buf, io);
        tasks.spawn(serve(shared, handler, io, accepted));
    }
}
