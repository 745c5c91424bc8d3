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
    // Tracked like the upgrade's task, which it outlives: the server's
    // count of connection tasks never drops to zero in between.
    let tasks = shared.connections.clone();
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            if parts.read_buf.is_empty() {
                tasks.spawn(serve(shared, handler, io, accepted));
            } else {
                let io = Prefixed::new(parts.read_buf, io);
                tasks.spawn(serve(shared, handler, io, accepted));
            }
            return;
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            if parts.read_buf.is_empty() {
                tasks.spawn(serve(shared, handler, io, accepted));
            } else {
                let io = Prefixed::new(parts.read_buf, io);
                tasks.spawn(serve(shared, handler, io, accepted));
            }
        }
        Err(upgraded) => {
            tasks.spawn(serve(shared, handler, TokioIo::new(upgraded), accepted));
        }
    }
}
