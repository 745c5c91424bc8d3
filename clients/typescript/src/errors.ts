/**
 * Typed errors of the webwire client.
 *
 * Every error the client produces on its own is a {@link WebwireError}; the
 * server's answers map to one class each (ReplyError to {@link RequestError},
 * ReplyShutdown to {@link ShutdownError}, and so on). Invalid arguments (a
 * name with a byte outside printable ASCII, an empty request) are reported
 * with the built-in `TypeError` / `RangeError`, and an aborted call rejects
 * with its `AbortSignal`'s reason.
 *
 * @module
 */

/** Base class of every error this package defines. */
export class WebwireError extends Error {
  override name = 'WebwireError';
}

/** The server's request handler failed with a request error (ReplyError, type 0). */
export class RequestError extends WebwireError {
  override name = 'RequestError';
  /** The error code chosen by the server's application (printable ASCII, 1..=255 bytes). */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** The server failed to handle the request for an internal reason (ReplyInternalError, type 2). */
export class InternalError extends WebwireError {
  override name = 'InternalError';
  constructor(message = 'internal server error') {
    super(message);
  }
}

/** The server is shutting down and refused the request (ReplyShutdown, type 1). */
export class ShutdownError extends WebwireError {
  override name = 'ShutdownError';
  constructor(message = 'the server is shutting down') {
    super(message);
  }
}

/** The server found no session with the given key (ReplySessionNotFound, type 3). */
export class SessionNotFound extends WebwireError {
  override name = 'SessionNotFound';
  constructor(message = 'session not found') {
    super(message);
  }
}

/** The session already has the maximum number of connections (ReplyMaxSessConnsReached, type 4). */
export class MaxSessConnsReached extends WebwireError {
  override name = 'MaxSessConnsReached';
  constructor(message = 'the session already has the maximum number of connections') {
    super(message);
  }
}

/** Sessions are disabled on the server (ReplySessionsDisabled, type 5). */
export class SessionsDisabled extends WebwireError {
  override name = 'SessionsDisabled';
  constructor(message = 'sessions are disabled on the server') {
    super(message);
  }
}

/** A call did not complete within its timeout (waiting for a connection included). */
export class TimeoutError extends WebwireError {
  override name = 'TimeoutError';
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;

  constructor(timeoutMs: number, message = `timed out after ${timeoutMs} ms`) {
    super(message);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The connection was lost (or the client closed) before the call completed,
 * or the client is disconnected and will not reconnect by itself.
 */
export class DisconnectedError extends WebwireError {
  override name = 'DisconnectedError';
  constructor(message = 'disconnected from the server') {
    super(message);
  }
}

/**
 * The server answered the WebSocket upgrade with an HTTP status instead of
 * switching protocols: 429 (a limit of this client's address), 503 (the
 * server shuts down or paces new connections), and so on. Reconnecting
 * waits at least {@link UpgradeRefusedError.retryAfterMs} before the next
 * attempt.
 *
 * Only WebSocket implementations that show a refused upgrade's response
 * produce it: the `ws` package under Node does; browsers and Node's
 * built-in `WebSocket` do not (they report a closed connection, code 1006,
 * and the client backs off as after any failed attempt).
 */
export class UpgradeRefusedError extends DisconnectedError {
  override name = 'UpgradeRefusedError';
  /** The HTTP status. */
  readonly status: number;
  /** The server's `Retry-After`, in milliseconds (`null` without one; a date is not read). */
  readonly retryAfterMs: number | null;

  constructor(status: number, retryAfterMs: number | null) {
    super(`the server refused the connection with HTTP ${status}${retryAfterMs === null ? '' : ` (retry after ${retryAfterMs / 1000} s)`}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The message is larger than the server's announced message buffer size; it
 * was refused before sending.
 */
export class MessageTooLargeError extends WebwireError {
  override name = 'MessageTooLargeError';
  /** Size of the encoded message in bytes. */
  readonly size: number;
  /** The server's announced message buffer size in bytes. */
  readonly limit: number;

  constructor(size: number, limit: number) {
    super(`message of ${size} bytes exceeds the server's message buffer size of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

/**
 * A message violates the protocol (docs/protocol.md) (bad layout, unknown type, wrong version, a
 * text frame, a first message other than AcceptConf ...).
 */
export class ProtocolError extends WebwireError {
  override name = 'ProtocolError';
}

/**
 * The server announced a sub-protocol name other than the one the client
 * expects. The client closes and does not reconnect.
 */
export class SubProtocolMismatch extends ProtocolError {
  override name = 'SubProtocolMismatch';
  /** The sub-protocol name the client was configured to expect. */
  readonly expected: string;
  /** The sub-protocol name the server announced. */
  readonly actual: string;

  constructor(expected: string, actual: string) {
    super(`sub-protocol mismatch: expected ${JSON.stringify(expected)}, server announced ${JSON.stringify(actual)}`);
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * The server cannot tell whether a keyed request's handler ran, and will
 * never run it for that key (docs/protocol.md 14.4.3): the request may or
 * may not have had its effect. The application finds out by other means
 * (reload the data, ask with a new request). Distinct from a failure: it is
 * never a reason to send the same request again, which would be a new key.
 *
 * It answers ReplyOutcomeUnknown, and a keyed request the client had sent
 * without an answer when the next connection cannot retry it (a 2.0 server,
 * another ledger epoch, a session that is gone), and a keyed request of a
 * session that cannot be restored that was never sent.
 */
export class OutcomeUnknownError extends WebwireError {
  override name = 'OutcomeUnknownError';
  /** The key's sequence number, or null when the request was never keyed on the wire. */
  readonly seq: bigint | null;

  constructor(seq: bigint | null, message = 'the outcome of the request is unknown: it may or may not have run') {
    super(message);
    this.seq = seq;
  }
}

/**
 * Too many calls are waiting for a connection (the client's `maxQueued`
 * option); the call was not queued and will not be sent.
 */
export class QueueFullError extends WebwireError {
  override name = 'QueueFullError';
  /** The bound that was reached. */
  readonly limit: number;

  constructor(limit: number) {
    super(`${limit} calls are already waiting for a connection`);
    this.limit = limit;
  }
}
