/**
 * The webwire client: one WebSocket connection at a time, requests as
 * promises matched by id, signals both ways, sessions, heartbeats and
 * automatic reconnection.
 *
 * @module
 */

import { encodeMessage, parseMessage, type AcceptConfMessage, type Message, type RequestId } from './codec.js';
import {
  DisconnectedError,
  InternalError,
  MaxSessConnsReached,
  MessageTooLargeError,
  ProtocolError,
  RequestError,
  SessionNotFound,
  SessionsDisabled,
  ShutdownError,
  SubProtocolMismatch,
  TimeoutError,
  UpgradeRefusedError,
} from './errors.js';
import { Payload, Reply, Signal, decodeUtf8, encodeUtf8, type PayloadInput, type TextEncoding } from './payload.js';
import { copySession, defaultSessionStore, parseSessionJson, type Session, type SessionStore } from './session.js';

/** The protocol major version this client speaks. */
export const PROTOCOL_MAJOR = 2;

/** The connection status reported by {@link WebwireClient.status}. */
export type Status = 'connected' | 'connecting' | 'disconnected' | 'closed';

/**
 * What the client needs of a WebSocket: the browser's `WebSocket` and the
 * `ws` package's both fit.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- must accept the DOM's and ws's event types
  onopen: ((event: any) => unknown) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((event: any) => unknown) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((event: any) => unknown) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((event: any) => unknown) | null;
  send(data: Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * Backoff of the automatic reconnection. The n-th retry (from 1) waits
 * `min(maxDelay, initialDelay * factor^(n-1))` reduced by a random fraction
 * up to `jitter`; with the default jitter of 1 that is "full jitter", a random
 * wait between zero and the ceiling, so that clients that lost a server
 * together do not come back together.
 *
 * After the server closed the connection with code 1012 (service restart: a
 * server draining for a deploy), the first retry waits a random time between
 * `restartDelayMin` and `restartDelayMax` instead, so that the clients move to
 * other nodes gradually.
 */
export interface ReconnectOptions {
  /** Ceiling of the first retry's delay, in ms (default 500). */
  initialDelay?: number;
  /** Largest delay between retries, in ms (default 30000). */
  maxDelay?: number;
  /** Growth of the delay ceiling per failed attempt (default 2). */
  factor?: number;
  /** Random reduction of each delay, as a fraction 0..1 (default 1: full jitter). */
  jitter?: number;
  /** Shortest wait before reconnecting after close code 1012, in ms (default 0). */
  restartDelayMin?: number;
  /** Longest wait before reconnecting after close code 1012, in ms (default 5000). */
  restartDelayMax?: number;
}

/** The close code of a server that drains for a restart or a deploy. */
const SERVICE_RESTART = 1012;

/** Options of {@link WebwireClient}. */
export interface ClientOptions {
  /** The WebSocket class; defaults to `globalThis.WebSocket` (required under Node 20: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /**
   * The sub-protocol name the server must announce. When set, another name
   * closes the connection with a {@link SubProtocolMismatch} and the client
   * does not reconnect. When unset, any name is accepted.
   */
  subProtocol?: string;
  /** Timeout of requests and other calls in ms, waiting for a connection included (default 60000). */
  timeout?: number;
  /** Timeout of one connection attempt (WebSocket open and AcceptConf) in ms (default 10000). */
  connectTimeout?: number;
  /** How strings are sent unless a call says otherwise (default 'utf8'). */
  textEncoding?: TextEncoding;
  /**
   * Automatic reconnection (default on): the client connects on the first
   * call and reconnects with backoff after losing the connection. With
   * `false`, only {@link WebwireClient.connect} connects, and calls made
   * while disconnected fail with {@link DisconnectedError}.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Where the session key is kept (default: localStorage in browsers,
   * memory elsewhere; see {@link defaultSessionStore}).
   */
  sessionStore?: SessionStore;
  /** Restore the stored session after every (re)connection (default true). */
  autoRestore?: boolean;
  /** Called for every signal from the server. */
  onSignal?: (signal: Signal) => void;
  /** Called when the server created a session for this connection. */
  onSessionCreated?: (session: Session) => void;
  /** Called when the session was closed (by the server, by {@link WebwireClient.closeSession}, or found gone on restore). */
  onSessionClosed?: () => void;
  /** Called when a session was restored ({@link WebwireClient.restoreSession} or automatically). */
  onSessionRestored?: (session: Session) => void;
  /** Called when {@link WebwireClient.status} changes. */
  onStatusChange?: (status: Status) => void;
  /** Called for errors not tied to a call: protocol violations, failed automatic restores, store failures. */
  onError?: (error: Error) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** Timeout in ms (default: the client's `timeout`); `Infinity` for none. */
  timeout?: number;
  /** Cancels the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link WebwireClient.request} and {@link WebwireClient.signal}. */
export interface SendOptions extends CallOptions {
  /** How a string payload is encoded (default: the client's `textEncoding`). */
  encoding?: TextEncoding;
}

/** The events of {@link WebwireClient.on}. */
export interface ClientEvents {
  signal: (signal: Signal) => void;
  sessionCreated: (session: Session) => void;
  sessionClosed: () => void;
  sessionRestored: (session: Session) => void;
  status: (status: Status) => void;
  error: (error: Error) => void;
}

/** The readyState of an open WebSocket. */
const WS_OPEN = 1;
const MAX_TIMER = 2 ** 31 - 1;

type Settle = (value: unknown) => void;

/** A call: a message waiting for a connection, in flight, or settled. */
interface Call {
  /** The encoded message; bytes 1..9 get the id when it is sent. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Null for signals (resolved once handed to the socket). */
  onReply: ((msg: Message) => unknown) | null;
  resolve: Settle;
  reject: Settle;
  cleanup: () => void;
  done: boolean;
  id: number;
}

/** State of one WebSocket connection. */
interface Connection {
  ws: WebSocketLike;
  accept: AcceptConfMessage | null;
  ready: boolean;
  lastSent: number;
  heartbeatTimer: ReturnType<typeof setTimeout> | null;
  handshakeTimer: ReturnType<typeof setTimeout> | null;
  /** The server refused the upgrade (seen only with the `ws` package). */
  refused: UpgradeRefusedError | null;
}

/** The part of the `ws` package's WebSocket that shows a refused upgrade. */
interface WsEmitter {
  on(event: 'unexpected-response', listener: (request: unknown, response: { statusCode?: number; headers?: Record<string, string | string[] | undefined> }) => void): unknown;
  terminate(): void;
}

function isWsEmitter(ws: unknown): ws is WsEmitter {
  const candidate = ws as { on?: unknown; terminate?: unknown };
  return typeof candidate.on === 'function' && typeof candidate.terminate === 'function';
}

/** `Retry-After` in milliseconds: whole seconds only (a date is not read). */
function parseRetryAfter(value: string | string[] | undefined): number | null {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\s*\d+\s*$/.test(text)) return null;
  return Number.parseInt(text, 10) * 1000;
}

interface Waiter {
  resolve: () => void;
  reject: Settle;
  cleanup: () => void;
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

function idBytes(id: number): RequestId {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, id >>> 0, true);
  view.setUint32(4, Math.floor(id / 2 ** 32), true);
  return out;
}

function idKey(id: Uint8Array): number {
  const view = new DataView(id.buffer, id.byteOffset, 8);
  return view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('the operation was aborted', 'AbortError');
}

function closeSocket(ws: WebSocketLike, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // Browsers only allow 1000 and 3000..=4999 from scripts.
    try {
      ws.close(1000, reason);
    } catch {
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
  }
}

function detach(ws: WebSocketLike): void {
  const noop = (): void => {};
  ws.onopen = noop;
  ws.onmessage = noop;
  ws.onclose = noop;
  // Keep a listener: the `ws` package throws on an 'error' event nobody listens to.
  ws.onerror = noop;
}

/** Maps a reply of types 0..=5 to its error; null for other messages. */
function replyFailure(msg: Message): Error | null {
  switch (msg.kind) {
    case 'replyError':
      return new RequestError(msg.code, msg.message);
    case 'replyShutdown':
      return new ShutdownError();
    case 'replyInternalError':
      return new InternalError();
    case 'replySessionNotFound':
      return new SessionNotFound();
    case 'replyMaxSessConnsReached':
      return new MaxSessConnsReached();
    case 'replySessionsDisabled':
      return new SessionsDisabled();
    default:
      return null;
  }
}

/**
 * A webwire v2.0 client.
 *
 * ```ts
 * const client = new WebwireClient('ws://localhost:9090/', { subProtocol: 'interop' });
 * await client.connect();
 * const reply = await client.request('echo', 'hi');
 * console.log(reply.encoding, reply.text);
 * await client.close();
 * ```
 */
export class WebwireClient {
  /** The server's URL. */
  readonly url: string;
  private readonly WebSocketCtor: WebSocketConstructor | undefined;
  private readonly subProtocol: string | undefined;
  private readonly timeout: number;
  private readonly connectTimeout: number;
  private readonly textEncoding: TextEncoding;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private readonly store: SessionStore;
  private readonly autoRestore: boolean;
  private readonly listeners: { [E in keyof ClientEvents]: Set<ClientEvents[E]> } = {
    signal: new Set(),
    sessionCreated: new Set(),
    sessionClosed: new Set(),
    sessionRestored: new Set(),
    status: new Set(),
    error: new Set(),
  };

  private currentStatus: Status = 'disconnected';
  private conn: Connection | null = null;
  private readonly waiting = new Set<Call>();
  private readonly pending = new Map<number, Call>();
  private readonly connectWaiters = new Set<Waiter>();
  private nextId = 1;
  private currentSession: Session | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private failedAttempts = 0;
  private lastBufferSize: number | null = null;
  private closing: Promise<void> | null = null;

  /**
   * Creates a client; it does not connect yet (see {@link WebwireClient.connect}).
   *
   * @param url `ws://` or `wss://` URL of the server.
   */
  constructor(url: string, options: ClientOptions = {}) {
    this.url = url;
    // Typed assignment: the DOM's WebSocket must fit WebSocketConstructor.
    const platform: WebSocketConstructor | undefined = typeof WebSocket === 'undefined' ? undefined : WebSocket;
    this.WebSocketCtor = options.WebSocket ?? platform;
    this.subProtocol = options.subProtocol;
    this.timeout = options.timeout ?? 60_000;
    this.connectTimeout = options.connectTimeout ?? 10_000;
    this.textEncoding = options.textEncoding ?? 'utf8';
    const rc = options.reconnect ?? true;
    const ro: ReconnectOptions = rc === true || rc === false ? {} : rc;
    this.reconnect =
      rc === false
        ? null
        : {
            initialDelay: ro.initialDelay ?? 500,
            maxDelay: ro.maxDelay ?? 30_000,
            factor: ro.factor ?? 2,
            jitter: Math.min(1, Math.max(0, ro.jitter ?? 1)),
            restartDelayMin: Math.max(0, ro.restartDelayMin ?? 0),
            restartDelayMax: Math.max(0, ro.restartDelayMin ?? 0, ro.restartDelayMax ?? 5000),
          };
    this.store = options.sessionStore ?? defaultSessionStore(url);
    this.autoRestore = options.autoRestore ?? true;
    if (options.onSignal) this.on('signal', options.onSignal);
    if (options.onSessionCreated) this.on('sessionCreated', options.onSessionCreated);
    if (options.onSessionClosed) this.on('sessionClosed', options.onSessionClosed);
    if (options.onSessionRestored) this.on('sessionRestored', options.onSessionRestored);
    if (options.onStatusChange) this.on('status', options.onStatusChange);
    if (options.onError) this.on('error', options.onError);
  }

  // ---------------------------------------------------------------- public API

  /** The connection status. */
  status(): Status {
    return this.currentStatus;
  }

  /**
   * The server's AcceptConf of the current connection (read timeout, buffer
   * size, sub-protocol), or null while not connected.
   */
  serverInfo(): Readonly<Omit<AcceptConfMessage, 'kind'>> | null {
    const accept = this.conn?.accept;
    if (!accept) return null;
    const { major, minor, readTimeoutMs, bufferSize, subProtocol } = accept;
    return { major, minor, readTimeoutMs, bufferSize, subProtocol };
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void {
    this.listeners[event].add(handler);
    return () => this.off(event, handler);
  }

  /** Unsubscribes a handler added with {@link WebwireClient.on}. */
  off<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): void {
    this.listeners[event].delete(handler);
  }

  /**
   * Connects (if not connected or connecting) and resolves once connected:
   * AcceptConf checked and the stored session restored. With reconnection on,
   * failed attempts are retried until the timeout.
   *
   * @throws SubProtocolMismatch / ProtocolError when the server is incompatible
   *   (the client is then closed), TimeoutError, DisconnectedError when the
   *   client is closed or (without reconnection) the attempt failed.
   */
  connect(options: CallOptions = {}): Promise<void> {
    if (this.currentStatus === 'closed') return Promise.reject(new DisconnectedError('the client is closed'));
    if (this.currentStatus === 'connected') return Promise.resolve();
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = options.timeout ?? this.timeout;
      let timer: ReturnType<typeof setTimeout> | null = null;
      const onAbort = (): void => finish(() => reject(abortReason(signal!)));
      const waiter: Waiter = {
        resolve: () => finish(resolve),
        reject: (e) => finish(() => reject(e)),
        cleanup: () => {
          if (timer !== null) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      const finish = (action: () => void): void => {
        if (!this.connectWaiters.delete(waiter)) return;
        waiter.cleanup();
        action();
      };
      this.connectWaiters.add(waiter);
      if (Number.isFinite(timeoutMs) && timeoutMs <= MAX_TIMER) {
        timer = setTimeout(() => finish(() => reject(new TimeoutError(timeoutMs, `not connected after ${timeoutMs} ms`))), Math.max(0, timeoutMs));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.ensureConnecting(true);
    });
  }

  /**
   * Sends a request and resolves with the reply. Strings are sent as UTF-8
   * (UTF-16 with `encoding: 'utf16'`), bytes as binary, a {@link Payload} as
   * it is.
   *
   * @throws RequestError, InternalError, ShutdownError (server answers);
   *   TimeoutError, DisconnectedError, MessageTooLargeError, the abort
   *   reason; TypeError / RangeError for an invalid name or an empty unnamed
   *   request.
   */
  request(name: string, payload?: PayloadInput, options: SendOptions = {}): Promise<Reply> {
    return this.call<Reply>(
      () => {
        const p = Payload.from(payload, options.encoding ?? this.textEncoding);
        return encodeMessage({ kind: 'request', id: idBytes(0), name, encoding: p.encoding, payload: p.data });
      },
      (msg) => {
        if (msg.kind === 'reply') return new Reply(msg.encoding, msg.payload);
        throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a request`);
      },
      options,
    );
  }

  /**
   * Sends a signal; resolves once it is handed to the WebSocket (waiting for
   * a connection like a request does).
   */
  signal(name: string, payload?: PayloadInput, options: SendOptions = {}): Promise<void> {
    return this.call<void>(
      () => {
        const p = Payload.from(payload, options.encoding ?? this.textEncoding);
        return encodeMessage({ kind: 'signal', name, encoding: p.encoding, payload: p.data });
      },
      null,
      options,
    );
  }

  /** A snapshot of the current session, or null. */
  session(): Session | null {
    return this.currentSession === null ? null : copySession(this.currentSession);
  }

  /** A copy of one field of the current session's info, or undefined. */
  sessionInfo(field: string): unknown {
    const info = this.currentSession?.info;
    if (!info || !Object.prototype.hasOwnProperty.call(info, field)) return undefined;
    const value = info[field];
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  /**
   * Restores the session with this key on the current connection, stores its
   * key and resolves with the session.
   *
   * @throws SessionNotFound, MaxSessConnsReached, SessionsDisabled,
   *   InternalError, ShutdownError, RequestError (code `SESSION_ACTIVE` when
   *   this connection already has a session), and the call errors.
   */
  restoreSession(key: string, options: CallOptions = {}): Promise<Session> {
    if (typeof key !== 'string') return Promise.reject(new TypeError('a session key must be a string'));
    // An empty key cannot be sent (the layout needs at least one byte) and names no session.
    if (key.length === 0) return Promise.reject(new SessionNotFound());
    return this.call<Session>(
      () => encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(key) }),
      (msg) => this.acceptRestored(msg),
      options,
    );
  }

  /**
   * Closes the session on this connection (the server destroys it when this
   * was its last connection) and forgets the stored key.
   *
   * @throws SessionsDisabled and the call errors.
   */
  closeSession(options: CallOptions = {}): Promise<void> {
    return this.call<void>(
      () => encodeMessage({ kind: 'requestCloseSession', id: idBytes(0) }),
      (msg) => {
        if (msg.kind !== 'reply') throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a close-session request`);
        this.dropSession(true);
        return undefined;
      },
      options,
    );
  }

  /**
   * Closes the client gracefully: calls still waiting for a connection fail
   * with DisconnectedError, requests in flight get their replies (or time
   * out), then the WebSocket is closed (code 1000). With `force`, requests
   * in flight fail at once with DisconnectedError instead. The status
   * becomes 'closed' at once and stays so; create a new client to connect
   * again. Calling close again returns the first call's promise (a later
   * `force` still cuts the wait short).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.forceClose();
    if (this.closing) return this.closing;
    this.closing = this.shutdown();
    return this.closing;
  }

  // ---------------------------------------------------------------- calls

  private call<T>(encode: () => Uint8Array<ArrayBuffer>, onReply: ((msg: Message) => unknown) | null, options: CallOptions): Promise<T> {
    if (this.currentStatus === 'closed') return Promise.reject(new DisconnectedError('the client is closed'));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = encode();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = options.timeout ?? this.timeout;
      let timer: ReturnType<typeof setTimeout> | null = null;
      const onAbort = (): void => this.failCall(call, abortReason(signal!));
      const call: Call = {
        bytes,
        onReply,
        resolve: resolve as Settle,
        reject,
        done: false,
        id: 0,
        cleanup: () => {
          if (timer !== null) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      if (Number.isFinite(timeoutMs) && timeoutMs <= MAX_TIMER) {
        timer = setTimeout(() => this.failCall(call, new TimeoutError(timeoutMs)), Math.max(0, timeoutMs));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const conn = this.conn;
      if (conn !== null && conn.ready) {
        this.transmit(conn, call);
        return;
      }
      if (this.conn === null && this.reconnectTimer === null && this.reconnect === null) {
        this.failCall(call, new DisconnectedError('not connected (automatic reconnection is off)'));
        return;
      }
      this.waiting.add(call);
      this.ensureConnecting(false);
    });
  }

  private settleCall(call: Call, action: () => void): void {
    if (call.done) return;
    call.done = true;
    call.cleanup();
    this.waiting.delete(call);
    if (call.id !== 0) this.pending.delete(call.id);
    action();
  }

  private failCall(call: Call, error: unknown): void {
    this.settleCall(call, () => call.reject(error));
  }

  /**
   * Sends a call on a ready (or handshaking, for the restore) connection. If
   * the socket is already going away, the call waits for the next connection
   * (or fails, with `requeue` false).
   */
  private transmit(conn: Connection, call: Call, requeue = true): void {
    if (call.done) return;
    const limit = conn.accept!.bufferSize;
    if (call.bytes.length > limit) {
      this.failCall(call, new MessageTooLargeError(call.bytes.length, limit));
      return;
    }
    if (conn.ws.readyState !== WS_OPEN) {
      // The socket is going away; its close event follows.
      if (requeue) this.waiting.add(call);
      else this.failCall(call, new DisconnectedError('the connection is closing'));
      return;
    }
    if (call.onReply !== null) {
      call.id = this.nextId++;
      call.bytes.set(idBytes(call.id), 1);
      this.pending.set(call.id, call);
    }
    try {
      this.sendRaw(conn, call.bytes);
    } catch (e) {
      this.failCall(call, new DisconnectedError(`sending failed: ${String(e)}`));
      return;
    }
    if (call.onReply === null) this.settleCall(call, () => call.resolve(undefined));
  }

  private sendRaw(conn: Connection, bytes: Uint8Array<ArrayBuffer>): void {
    conn.ws.send(bytes);
    conn.lastSent = now();
  }

  private onReplyMessage(msg: Message & { id: RequestId }): void {
    const call = this.pending.get(idKey(msg.id));
    if (call === undefined) return; // timed out, aborted, or not ours
    let value: unknown;
    try {
      value = call.onReply!(msg);
    } catch (e) {
      this.failCall(call, e);
      return;
    }
    this.settleCall(call, () => call.resolve(value));
  }

  // ---------------------------------------------------------------- connection

  private setStatus(status: Status): void {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    this.emit('status', status);
  }

  /** Starts an attempt unless one runs; `now` also skips a pending backoff delay. */
  private ensureConnecting(immediately: boolean): void {
    if (this.currentStatus === 'closed' || this.conn !== null) return;
    if (this.reconnectTimer !== null) {
      if (!immediately) return;
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.openSocket();
  }

  private openSocket(): void {
    const Ctor = this.WebSocketCtor;
    if (Ctor === undefined) {
      this.fatal(new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the ws package under Node)'));
      return;
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(this.url);
    } catch (e) {
      this.fatal(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    ws.binaryType = 'arraybuffer';
    const conn: Connection = { ws, accept: null, ready: false, lastSent: now(), heartbeatTimer: null, handshakeTimer: null, refused: null };
    this.conn = conn;
    if (isWsEmitter(ws)) {
      // The `ws` package shows a refused upgrade's response to a listener
      // (browsers show nothing): its status and Retry-After are kept, then
      // the attempt is ended as ws would end it (error, then close).
      ws.on('unexpected-response', (_request, response) => {
        conn.refused = new UpgradeRefusedError(response.statusCode ?? 0, parseRetryAfter(response.headers?.['retry-after']));
        ws.terminate();
      });
    }
    this.setStatus('connecting');
    ws.onopen = () => {
      conn.lastSent = now();
    };
    ws.onmessage = (event: { data: unknown }) => this.onData(conn, event.data);
    ws.onclose = (event: { code?: number; reason?: string }) => {
      if (this.conn !== conn) return;
      const code = event?.code ?? 1006;
      const reason = event?.reason ? `: ${event.reason}` : '';
      this.lostConnection(conn, conn.refused ?? new DisconnectedError(`connection closed (code ${code}${reason})`), code);
    };
    ws.onerror = () => {
      // A close event follows.
    };
    if (Number.isFinite(this.connectTimeout) && this.connectTimeout <= MAX_TIMER) {
      conn.handshakeTimer = setTimeout(() => {
        if (this.conn !== conn || conn.ready) return;
        closeSocket(ws, 1000, 'handshake timeout');
        this.lostConnection(conn, new TimeoutError(this.connectTimeout, `no handshake within ${this.connectTimeout} ms`));
      }, this.connectTimeout);
    }
  }

  private onData(conn: Connection, data: unknown): void {
    if (this.conn !== conn) return;
    if (typeof data === 'string') {
      this.violation(conn, new ProtocolError('protocol violation: text message'), 1003);
      return;
    }
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      this.violation(conn, new ProtocolError('unsupported WebSocket message data (set binaryType to arraybuffer)'), 1003);
      return;
    }
    let msg: Message;
    try {
      msg = parseMessage(bytes);
    } catch (e) {
      this.violation(conn, e instanceof Error ? e : new ProtocolError(String(e)), 1002);
      return;
    }
    if (conn.accept === null) {
      if (msg.kind !== 'acceptConf') {
        this.violation(conn, new ProtocolError(`protocol violation: first message is ${msg.kind}, not acceptConf`), 1002);
        return;
      }
      this.onAcceptConf(conn, msg);
      return;
    }
    switch (msg.kind) {
      case 'reply':
      case 'replyError':
      case 'replyShutdown':
      case 'replyInternalError':
      case 'replySessionNotFound':
      case 'replyMaxSessConnsReached':
      case 'replySessionsDisabled':
        this.onReplyMessage(msg);
        return;
      case 'signal':
        this.emit('signal', new Signal(msg.name, msg.encoding, msg.payload));
        return;
      case 'notifySessionCreated': {
        let session: Session;
        try {
          session = parseSessionJson(msg.sessionJson);
        } catch (e) {
          this.violation(conn, e as Error, 1002);
          return;
        }
        this.currentSession = session;
        this.storeSave(session.key);
        this.emit('sessionCreated', copySession(session));
        return;
      }
      case 'notifySessionClosed':
        this.dropSession(true);
        return;
      default:
        this.violation(conn, new ProtocolError(`protocol violation: the server sent ${msg.kind}`), 1002);
    }
  }

  private onAcceptConf(conn: Connection, accept: AcceptConfMessage): void {
    if (accept.major !== PROTOCOL_MAJOR) {
      this.fatal(new ProtocolError(`incompatible protocol version ${accept.major}.${accept.minor}, this client speaks ${PROTOCOL_MAJOR}.x`));
      return;
    }
    if (this.subProtocol !== undefined && accept.subProtocol !== this.subProtocol) {
      this.fatal(new SubProtocolMismatch(this.subProtocol, accept.subProtocol));
      return;
    }
    conn.accept = accept;
    this.lastBufferSize = accept.bufferSize;
    this.scheduleHeartbeat(conn);
    void this.restoreOnConnect(conn);
  }

  /** Restores the known session on a fresh connection, then marks it ready. */
  private async restoreOnConnect(conn: Connection): Promise<void> {
    if (!this.autoRestore) {
      // A new connection has no session until the application restores one.
      if (this.currentSession !== null) {
        this.currentSession = null;
        this.emit('sessionClosed');
      }
      this.markReady(conn);
      return;
    }
    let key: string | null = this.currentSession?.key ?? null;
    if (key === null) {
      try {
        key = await this.store.load();
      } catch (e) {
        this.emit('error', e instanceof Error ? e : new Error(String(e)));
      }
    }
    if (this.conn !== conn) return;
    if (key !== null && key.length > 0) {
      const restoreKey = key;
      try {
        await new Promise<Session>((resolve, reject) => {
          const call: Call = {
            bytes: encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(restoreKey) }),
            onReply: (msg) => this.acceptRestored(msg),
            resolve: resolve as Settle,
            reject,
            done: false,
            id: 0,
            cleanup: () => clearTimeout(timer),
          };
          const timer = setTimeout(() => this.failCall(call, new TimeoutError(this.timeout)), Math.min(this.timeout, MAX_TIMER));
          this.transmit(conn, call, false);
        });
      } catch (e) {
        if (this.conn !== conn) return;
        if (e instanceof SessionNotFound || e instanceof SessionsDisabled) {
          // The session is gone for good.
          this.storeClear();
        }
        if (this.currentSession !== null) {
          this.currentSession = null;
          this.emit('sessionClosed');
        }
        this.emit('error', e instanceof Error ? e : new Error(String(e)));
      }
    }
    if (this.conn !== conn) return;
    this.markReady(conn);
  }

  private acceptRestored(msg: Message): Session {
    if (msg.kind !== 'reply') throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a restore request`);
    const session = parseSessionJson(msg.encoding === 'utf16' ? new Payload('utf16', msg.payload).text : decodeUtf8(msg.payload));
    this.currentSession = session;
    this.storeSave(session.key);
    this.emit('sessionRestored', copySession(session));
    return copySession(session);
  }

  private markReady(conn: Connection): void {
    conn.ready = true;
    if (conn.handshakeTimer !== null) {
      clearTimeout(conn.handshakeTimer);
      conn.handshakeTimer = null;
    }
    this.failedAttempts = 0;
    this.setStatus('connected');
    for (const waiter of [...this.connectWaiters]) waiter.resolve();
    for (const call of [...this.waiting]) {
      if (this.conn !== conn || !conn.ready) break;
      this.waiting.delete(call);
      this.transmit(conn, call);
    }
  }

  private scheduleHeartbeat(conn: Connection): void {
    const interval = (conn.accept!.readTimeoutMs * 3) / 4;
    if (!(interval > 0)) return;
    const tick = (): void => {
      conn.heartbeatTimer = null;
      if (this.conn !== conn) return;
      const idle = now() - conn.lastSent;
      if (idle >= interval - 1 && conn.ws.readyState === WS_OPEN) {
        try {
          this.sendRaw(conn, encodeMessage({ kind: 'heartbeat' }));
        } catch {
          // the close event follows
        }
      }
      conn.heartbeatTimer = setTimeout(tick, Math.max(1, conn.lastSent + interval - now()));
    };
    conn.heartbeatTimer = setTimeout(tick, Math.max(1, conn.lastSent + interval - now()));
  }

  private stopTimers(conn: Connection): void {
    if (conn.heartbeatTimer !== null) clearTimeout(conn.heartbeatTimer);
    if (conn.handshakeTimer !== null) clearTimeout(conn.handshakeTimer);
    conn.heartbeatTimer = null;
    conn.handshakeTimer = null;
  }

  /** The server broke the protocol: close, fail what was in flight, reconnect with backoff. */
  private violation(conn: Connection, error: Error, code: number): void {
    closeSocket(conn.ws, code, 'protocol violation');
    this.emit('error', error);
    this.lostConnection(conn, error);
  }

  /** The connection (or attempt) is over; fail the calls in flight and maybe reconnect. */
  private lostConnection(conn: Connection, error: Error, closeCode?: number): void {
    if (this.conn !== conn) return;
    this.stopTimers(conn);
    detach(conn.ws);
    this.conn = null;
    for (const call of [...this.pending.values()]) this.failCall(call, error);
    if (this.currentStatus === 'closed') return;
    this.failedAttempts++;
    if (this.reconnect === null) {
      this.setStatus('disconnected');
      const err = error instanceof DisconnectedError ? error : new DisconnectedError(error.message);
      for (const call of [...this.waiting]) this.failCall(call, err);
      for (const waiter of [...this.connectWaiters]) waiter.reject(err);
      return;
    }
    this.setStatus('disconnected');
    const { initialDelay, maxDelay, factor, jitter, restartDelayMin, restartDelayMax } = this.reconnect;
    let delay: number;
    if (closeCode === SERVICE_RESTART) {
      // The server drains: come back to another node after a random wait.
      delay = restartDelayMin + (restartDelayMax - restartDelayMin) * Math.random();
    } else {
      // The first retry after a working connection waits up to initialDelay; each failed attempt multiplies it.
      const base = Math.min(maxDelay, initialDelay * factor ** (this.failedAttempts - 1));
      delay = base * (1 - jitter * Math.random());
    }
    // A server that refused with Retry-After (429, 503) is not asked again sooner.
    delay = Math.max(delay, conn.refused?.retryAfterMs ?? 0);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.currentStatus !== 'closed' && this.conn === null) this.openSocket();
    }, delay);
  }

  /** An error that makes reconnecting pointless: close for good. */
  private fatal(error: Error): void {
    const conn = this.conn;
    this.closing ??= Promise.resolve();
    this.setStatus('closed');
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (conn !== null) {
      this.stopTimers(conn);
      detach(conn.ws);
      closeSocket(conn.ws, 1002, error.name === 'SubProtocolMismatch' ? 'sub-protocol mismatch' : 'incompatible server');
      this.conn = null;
    }
    for (const call of [...this.pending.values()]) this.failCall(call, error);
    for (const call of [...this.waiting]) this.failCall(call, error);
    for (const waiter of [...this.connectWaiters]) waiter.reject(error);
    this.emit('error', error);
  }

  private forceClose(): void {
    const closed = new DisconnectedError('the client is closed');
    for (const call of [...this.pending.values()]) this.failCall(call, closed);
  }

  private async shutdown(): Promise<void> {
    const closed = new DisconnectedError('the client is closed');
    this.setStatus('closed');
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    for (const call of [...this.waiting]) this.failCall(call, closed);
    for (const waiter of [...this.connectWaiters]) waiter.reject(closed);
    const conn = this.conn;
    if (conn === null) return;
    if (conn.ready && this.pending.size > 0) {
      // Let the requests in flight finish (each has its own timeout).
      await Promise.allSettled(
        [...this.pending.values()].map(
          (call) =>
            new Promise<void>((resolve) => {
              const { cleanup } = call;
              call.cleanup = () => {
                cleanup();
                resolve();
              };
            }),
        ),
      );
    }
    if (this.conn !== conn) return;
    this.stopTimers(conn);
    this.conn = null;
    for (const call of [...this.pending.values()]) this.failCall(call, closed);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 2000);
      function done(): void {
        clearTimeout(timer);
        detach(conn!.ws);
        resolve();
      }
      conn.ws.onclose = done;
      conn.ws.onmessage = () => {};
      closeSocket(conn.ws, 1000, 'client closed');
      if (conn.ws.readyState === 3) done();
    });
  }

  // ---------------------------------------------------------------- sessions and events

  private dropSession(notify: boolean): void {
    const had = this.currentSession !== null;
    this.currentSession = null;
    this.storeClear();
    if (had && notify) this.emit('sessionClosed');
  }

  private storeSave(key: string): void {
    try {
      const r = this.store.save(key);
      if (r instanceof Promise) r.catch((e: unknown) => this.emit('error', e instanceof Error ? e : new Error(String(e))));
    } catch (e) {
      this.emit('error', e instanceof Error ? e : new Error(String(e)));
    }
  }

  private storeClear(): void {
    try {
      const r = this.store.clear();
      if (r instanceof Promise) r.catch((e: unknown) => this.emit('error', e instanceof Error ? e : new Error(String(e))));
    } catch (e) {
      this.emit('error', e instanceof Error ? e : new Error(String(e)));
    }
  }

  private emit<E extends keyof ClientEvents>(event: E, ...args: Parameters<ClientEvents[E]>): void {
    for (const handler of [...this.listeners[event]]) {
      try {
        (handler as (...a: unknown[]) => void)(...args);
      } catch (e) {
        // An application bug: report it like EventTarget does, without breaking the client.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  /** Exposed for tests and diagnostics: the number of requests awaiting a reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** The server's message buffer size as last announced, or null before the first connection. */
  get bufferSize(): number | null {
    return this.lastBufferSize;
  }
}
