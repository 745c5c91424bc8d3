// GENERATED FILE, do not edit: clients/typescript/dist/client.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
/**
 * The webwire client: one WebSocket connection at a time, requests as
 * promises matched by id, signals both ways, sessions, heartbeats and
 * automatic reconnection.
 *
 * @module
 */
import { encodeMessage, parseMessage } from './codec.js';
import { DisconnectedError, InternalError, MaxSessConnsReached, MessageTooLargeError, ProtocolError, RequestError, SessionNotFound, SessionsDisabled, ShutdownError, SubProtocolMismatch, TimeoutError, UpgradeRefusedError, } from './errors.js';
import { Payload, Reply, Signal, decodeUtf8, encodeUtf8 } from './payload.js';
import { copySession, defaultSessionStore, parseSessionJson } from './session.js';
/** The protocol major version this client speaks. */
export const PROTOCOL_MAJOR = 2;
/** The close code of a server that drains for a restart or a deploy. */
const SERVICE_RESTART = 1012;
/** The readyState of an open WebSocket. */
const WS_OPEN = 1;
const MAX_TIMER = 2 ** 31 - 1;
function isWsEmitter(ws) {
    const candidate = ws;
    return typeof candidate.on === 'function' && typeof candidate.terminate === 'function';
}
/** `Retry-After` in milliseconds: whole seconds only (a date is not read). */
function parseRetryAfter(value) {
    const text = Array.isArray(value) ? value[0] : value;
    if (text === undefined || !/^\s*\d+\s*$/.test(text))
        return null;
    return Number.parseInt(text, 10) * 1000;
}
function now() {
    return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
function idBytes(id) {
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, id >>> 0, true);
    view.setUint32(4, Math.floor(id / 2 ** 32), true);
    return out;
}
function idKey(id) {
    const view = new DataView(id.buffer, id.byteOffset, 8);
    return view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
}
function abortReason(signal) {
    return signal.reason ?? new DOMException('the operation was aborted', 'AbortError');
}
function closeSocket(ws, code, reason) {
    try {
        ws.close(code, reason);
    }
    catch {
        // Browsers only allow 1000 and 3000..=4999 from scripts.
        try {
            ws.close(1000, reason);
        }
        catch {
            try {
                ws.close();
            }
            catch {
                // already closed
            }
        }
    }
}
function detach(ws) {
    const noop = () => { };
    ws.onopen = noop;
    ws.onmessage = noop;
    ws.onclose = noop;
    // Keep a listener: the `ws` package throws on an 'error' event nobody listens to.
    ws.onerror = noop;
}
/** Maps a reply of types 0..=5 to its error; null for other messages. */
function replyFailure(msg) {
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
    url;
    WebSocketCtor;
    subProtocol;
    timeout;
    connectTimeout;
    textEncoding;
    reconnect;
    store;
    autoRestore;
    listeners = {
        signal: new Set(),
        sessionCreated: new Set(),
        sessionClosed: new Set(),
        sessionRestored: new Set(),
        status: new Set(),
        error: new Set(),
    };
    currentStatus = 'disconnected';
    conn = null;
    waiting = new Set();
    pending = new Map();
    connectWaiters = new Set();
    nextId = 1;
    currentSession = null;
    reconnectTimer = null;
    failedAttempts = 0;
    lastBufferSize = null;
    closing = null;
    /**
     * Creates a client; it does not connect yet (see {@link WebwireClient.connect}).
     *
     * @param url `ws://` or `wss://` URL of the server.
     */
    constructor(url, options = {}) {
        this.url = url;
        // Typed assignment: the DOM's WebSocket must fit WebSocketConstructor.
        const platform = typeof WebSocket === 'undefined' ? undefined : WebSocket;
        this.WebSocketCtor = options.WebSocket ?? platform;
        this.subProtocol = options.subProtocol;
        this.timeout = options.timeout ?? 60_000;
        this.connectTimeout = options.connectTimeout ?? 10_000;
        this.textEncoding = options.textEncoding ?? 'utf8';
        const rc = options.reconnect ?? true;
        const ro = rc === true || rc === false ? {} : rc;
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
        if (options.onSignal)
            this.on('signal', options.onSignal);
        if (options.onSessionCreated)
            this.on('sessionCreated', options.onSessionCreated);
        if (options.onSessionClosed)
            this.on('sessionClosed', options.onSessionClosed);
        if (options.onSessionRestored)
            this.on('sessionRestored', options.onSessionRestored);
        if (options.onStatusChange)
            this.on('status', options.onStatusChange);
        if (options.onError)
            this.on('error', options.onError);
    }
    // ---------------------------------------------------------------- public API
    /** The connection status. */
    status() {
        return this.currentStatus;
    }
    /**
     * The server's AcceptConf of the current connection (read timeout, buffer
     * size, sub-protocol), or null while not connected.
     */
    serverInfo() {
        const accept = this.conn?.accept;
        if (!accept)
            return null;
        const { major, minor, readTimeoutMs, bufferSize, subProtocol } = accept;
        return { major, minor, readTimeoutMs, bufferSize, subProtocol };
    }
    /** Subscribes to an event; returns a function that unsubscribes. */
    on(event, handler) {
        this.listeners[event].add(handler);
        return () => this.off(event, handler);
    }
    /** Unsubscribes a handler added with {@link WebwireClient.on}. */
    off(event, handler) {
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
    connect(options = {}) {
        if (this.currentStatus === 'closed')
            return Promise.reject(new DisconnectedError('the client is closed'));
        if (this.currentStatus === 'connected')
            return Promise.resolve();
        const { signal } = options;
        if (signal?.aborted)
            return Promise.reject(abortReason(signal));
        return new Promise((resolve, reject) => {
            const timeoutMs = options.timeout ?? this.timeout;
            let timer = null;
            const onAbort = () => finish(() => reject(abortReason(signal)));
            const waiter = {
                resolve: () => finish(resolve),
                reject: (e) => finish(() => reject(e)),
                cleanup: () => {
                    if (timer !== null)
                        clearTimeout(timer);
                    signal?.removeEventListener('abort', onAbort);
                },
            };
            const finish = (action) => {
                if (!this.connectWaiters.delete(waiter))
                    return;
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
    request(name, payload, options = {}) {
        return this.call(() => {
            const p = Payload.from(payload, options.encoding ?? this.textEncoding);
            return encodeMessage({ kind: 'request', id: idBytes(0), name, encoding: p.encoding, payload: p.data });
        }, (msg) => {
            if (msg.kind === 'reply')
                return new Reply(msg.encoding, msg.payload);
            throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a request`);
        }, options);
    }
    /**
     * Sends a signal; resolves once it is handed to the WebSocket (waiting for
     * a connection like a request does).
     */
    signal(name, payload, options = {}) {
        return this.call(() => {
            const p = Payload.from(payload, options.encoding ?? this.textEncoding);
            return encodeMessage({ kind: 'signal', name, encoding: p.encoding, payload: p.data });
        }, null, options);
    }
    /** A snapshot of the current session, or null. */
    session() {
        return this.currentSession === null ? null : copySession(this.currentSession);
    }
    /** A copy of one field of the current session's info, or undefined. */
    sessionInfo(field) {
        const info = this.currentSession?.info;
        if (!info || !Object.prototype.hasOwnProperty.call(info, field))
            return undefined;
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
    restoreSession(key, options = {}) {
        if (typeof key !== 'string')
            return Promise.reject(new TypeError('a session key must be a string'));
        // An empty key cannot be sent (the layout needs at least one byte) and names no session.
        if (key.length === 0)
            return Promise.reject(new SessionNotFound());
        return this.call(() => encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(key) }), (msg) => this.acceptRestored(msg), options);
    }
    /**
     * Closes the session on this connection (the server destroys it when this
     * was its last connection) and forgets the stored key.
     *
     * @throws SessionsDisabled and the call errors.
     */
    closeSession(options = {}) {
        return this.call(() => encodeMessage({ kind: 'requestCloseSession', id: idBytes(0) }), (msg) => {
            if (msg.kind !== 'reply')
                throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a close-session request`);
            this.dropSession(true);
            return undefined;
        }, options);
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
    close(options = {}) {
        if (options.force)
            this.forceClose();
        if (this.closing)
            return this.closing;
        this.closing = this.shutdown();
        return this.closing;
    }
    // ---------------------------------------------------------------- calls
    call(encode, onReply, options) {
        if (this.currentStatus === 'closed')
            return Promise.reject(new DisconnectedError('the client is closed'));
        const { signal } = options;
        if (signal?.aborted)
            return Promise.reject(abortReason(signal));
        let bytes;
        try {
            bytes = encode();
        }
        catch (e) {
            return Promise.reject(e);
        }
        return new Promise((resolve, reject) => {
            const timeoutMs = options.timeout ?? this.timeout;
            let timer = null;
            const onAbort = () => this.failCall(call, abortReason(signal));
            const call = {
                bytes,
                onReply,
                resolve: resolve,
                reject,
                done: false,
                id: 0,
                cleanup: () => {
                    if (timer !== null)
                        clearTimeout(timer);
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
    settleCall(call, action) {
        if (call.done)
            return;
        call.done = true;
        call.cleanup();
        this.waiting.delete(call);
        if (call.id !== 0)
            this.pending.delete(call.id);
        action();
    }
    failCall(call, error) {
        this.settleCall(call, () => call.reject(error));
    }
    /**
     * Sends a call on a ready (or handshaking, for the restore) connection. If
     * the socket is already going away, the call waits for the next connection
     * (or fails, with `requeue` false).
     */
    transmit(conn, call, requeue = true) {
        if (call.done)
            return;
        const limit = conn.accept.bufferSize;
        if (call.bytes.length > limit) {
            this.failCall(call, new MessageTooLargeError(call.bytes.length, limit));
            return;
        }
        if (conn.ws.readyState !== WS_OPEN) {
            // The socket is going away; its close event follows.
            if (requeue)
                this.waiting.add(call);
            else
                this.failCall(call, new DisconnectedError('the connection is closing'));
            return;
        }
        if (call.onReply !== null) {
            call.id = this.nextId++;
            call.bytes.set(idBytes(call.id), 1);
            this.pending.set(call.id, call);
        }
        try {
            this.sendRaw(conn, call.bytes);
        }
        catch (e) {
            this.failCall(call, new DisconnectedError(`sending failed: ${String(e)}`));
            return;
        }
        if (call.onReply === null)
            this.settleCall(call, () => call.resolve(undefined));
    }
    sendRaw(conn, bytes) {
        conn.ws.send(bytes);
        conn.lastSent = now();
    }
    onReplyMessage(msg) {
        const call = this.pending.get(idKey(msg.id));
        if (call === undefined)
            return; // timed out, aborted, or not ours
        let value;
        try {
            value = call.onReply(msg);
        }
        catch (e) {
            this.failCall(call, e);
            return;
        }
        this.settleCall(call, () => call.resolve(value));
    }
    // ---------------------------------------------------------------- connection
    setStatus(status) {
        if (this.currentStatus === status)
            return;
        this.currentStatus = status;
        this.emit('status', status);
    }
    /** Starts an attempt unless one runs; `now` also skips a pending backoff delay. */
    ensureConnecting(immediately) {
        if (this.currentStatus === 'closed' || this.conn !== null)
            return;
        if (this.reconnectTimer !== null) {
            if (!immediately)
                return;
            clearTimeout(this.reconnectTimer);
            this.reconnectTimer = null;
        }
        this.openSocket();
    }
    openSocket() {
        const Ctor = this.WebSocketCtor;
        if (Ctor === undefined) {
            this.fatal(new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the ws package under Node)'));
            return;
        }
        let ws;
        try {
            ws = new Ctor(this.url);
        }
        catch (e) {
            this.fatal(e instanceof Error ? e : new Error(String(e)));
            return;
        }
        ws.binaryType = 'arraybuffer';
        const conn = { ws, accept: null, ready: false, lastSent: now(), heartbeatTimer: null, handshakeTimer: null, refused: null };
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
        ws.onmessage = (event) => this.onData(conn, event.data);
        ws.onclose = (event) => {
            if (this.conn !== conn)
                return;
            const code = event?.code ?? 1006;
            const reason = event?.reason ? `: ${event.reason}` : '';
            this.lostConnection(conn, conn.refused ?? new DisconnectedError(`connection closed (code ${code}${reason})`), code);
        };
        ws.onerror = () => {
            // A close event follows.
        };
        if (Number.isFinite(this.connectTimeout) && this.connectTimeout <= MAX_TIMER) {
            conn.handshakeTimer = setTimeout(() => {
                if (this.conn !== conn || conn.ready)
                    return;
                closeSocket(ws, 1000, 'handshake timeout');
                this.lostConnection(conn, new TimeoutError(this.connectTimeout, `no handshake within ${this.connectTimeout} ms`));
            }, this.connectTimeout);
        }
    }
    onData(conn, data) {
        if (this.conn !== conn)
            return;
        if (typeof data === 'string') {
            this.violation(conn, new ProtocolError('protocol violation: text message'), 1003);
            return;
        }
        let bytes;
        if (data instanceof ArrayBuffer)
            bytes = new Uint8Array(data);
        else if (ArrayBuffer.isView(data))
            bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        else {
            this.violation(conn, new ProtocolError('unsupported WebSocket message data (set binaryType to arraybuffer)'), 1003);
            return;
        }
        let msg;
        try {
            msg = parseMessage(bytes);
        }
        catch (e) {
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
                let session;
                try {
                    session = parseSessionJson(msg.sessionJson);
                }
                catch (e) {
                    this.violation(conn, e, 1002);
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
    onAcceptConf(conn, accept) {
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
    async restoreOnConnect(conn) {
        if (!this.autoRestore) {
            // A new connection has no session until the application restores one.
            if (this.currentSession !== null) {
                this.currentSession = null;
                this.emit('sessionClosed');
            }
            this.markReady(conn);
            return;
        }
        let key = this.currentSession?.key ?? null;
        if (key === null) {
            try {
                key = await this.store.load();
            }
            catch (e) {
                this.emit('error', e instanceof Error ? e : new Error(String(e)));
            }
        }
        if (this.conn !== conn)
            return;
        if (key !== null && key.length > 0) {
            const restoreKey = key;
            try {
                await new Promise((resolve, reject) => {
                    const call = {
                        bytes: encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(restoreKey) }),
                        onReply: (msg) => this.acceptRestored(msg),
                        resolve: resolve,
                        reject,
                        done: false,
                        id: 0,
                        cleanup: () => clearTimeout(timer),
                    };
                    const timer = setTimeout(() => this.failCall(call, new TimeoutError(this.timeout)), Math.min(this.timeout, MAX_TIMER));
                    this.transmit(conn, call, false);
                });
            }
            catch (e) {
                if (this.conn !== conn)
                    return;
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
        if (this.conn !== conn)
            return;
        this.markReady(conn);
    }
    acceptRestored(msg) {
        if (msg.kind !== 'reply')
            throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a restore request`);
        const session = parseSessionJson(msg.encoding === 'utf16' ? new Payload('utf16', msg.payload).text : decodeUtf8(msg.payload));
        this.currentSession = session;
        this.storeSave(session.key);
        this.emit('sessionRestored', copySession(session));
        return copySession(session);
    }
    markReady(conn) {
        conn.ready = true;
        if (conn.handshakeTimer !== null) {
            clearTimeout(conn.handshakeTimer);
            conn.handshakeTimer = null;
        }
        this.failedAttempts = 0;
        this.setStatus('connected');
        for (const waiter of [...this.connectWaiters])
            waiter.resolve();
        for (const call of [...this.waiting]) {
            if (this.conn !== conn || !conn.ready)
                break;
            this.waiting.delete(call);
            this.transmit(conn, call);
        }
    }
    scheduleHeartbeat(conn) {
        const interval = (conn.accept.readTimeoutMs * 3) / 4;
        if (!(interval > 0))
            return;
        const tick = () => {
            conn.heartbeatTimer = null;
            if (this.conn !== conn)
                return;
            const idle = now() - conn.lastSent;
            if (idle >= interval - 1 && conn.ws.readyState === WS_OPEN) {
                try {
                    this.sendRaw(conn, encodeMessage({ kind: 'heartbeat' }));
                }
                catch {
                    // the close event follows
                }
            }
            conn.heartbeatTimer = setTimeout(tick, Math.max(1, conn.lastSent + interval - now()));
        };
        conn.heartbeatTimer = setTimeout(tick, Math.max(1, conn.lastSent + interval - now()));
    }
    stopTimers(conn) {
        if (conn.heartbeatTimer !== null)
            clearTimeout(conn.heartbeatTimer);
        if (conn.handshakeTimer !== null)
            clearTimeout(conn.handshakeTimer);
        conn.heartbeatTimer = null;
        conn.handshakeTimer = null;
    }
    /** The server broke the protocol: close, fail what was in flight, reconnect with backoff. */
    violation(conn, error, code) {
        closeSocket(conn.ws, code, 'protocol violation');
        this.emit('error', error);
        this.lostConnection(conn, error);
    }
    /** The connection (or attempt) is over; fail the calls in flight and maybe reconnect. */
    lostConnection(conn, error, closeCode) {
        if (this.conn !== conn)
            return;
        this.stopTimers(conn);
        detach(conn.ws);
        this.conn = null;
        for (const call of [...this.pending.values()])
            this.failCall(call, error);
        if (this.currentStatus === 'closed')
            return;
        this.failedAttempts++;
        if (this.reconnect === null) {
            this.setStatus('disconnected');
            const err = error instanceof DisconnectedError ? error : new DisconnectedError(error.message);
            for (const call of [...this.waiting])
                this.failCall(call, err);
            for (const waiter of [...this.connectWaiters])
                waiter.reject(err);
            return;
        }
        this.setStatus('disconnected');
        const { initialDelay, maxDelay, factor, jitter, restartDelayMin, restartDelayMax } = this.reconnect;
        let delay;
        if (closeCode === SERVICE_RESTART) {
            // The server drains: come back to another node after a random wait.
            delay = restartDelayMin + (restartDelayMax - restartDelayMin) * Math.random();
        }
        else {
            // The first retry after a working connection waits up to initialDelay; each failed attempt multiplies it.
            const base = Math.min(maxDelay, initialDelay * factor ** (this.failedAttempts - 1));
            delay = base * (1 - jitter * Math.random());
        }
        // A server that refused with Retry-After (429, 503) is not asked again sooner.
        delay = Math.max(delay, conn.refused?.retryAfterMs ?? 0);
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = null;
            if (this.currentStatus !== 'closed' && this.conn === null)
                this.openSocket();
        }, delay);
    }
    /** An error that makes reconnecting pointless: close for good. */
    fatal(error) {
        const conn = this.conn;
        this.closing ??= Promise.resolve();
        this.setStatus('closed');
        if (this.reconnectTimer !== null)
            clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        if (conn !== null) {
            this.stopTimers(conn);
            detach(conn.ws);
            closeSocket(conn.ws, 1002, error.name === 'SubProtocolMismatch' ? 'sub-protocol mismatch' : 'incompatible server');
            this.conn = null;
        }
        for (const call of [...this.pending.values()])
            this.failCall(call, error);
        for (const call of [...this.waiting])
            this.failCall(call, error);
        for (const waiter of [...this.connectWaiters])
            waiter.reject(error);
        this.emit('error', error);
    }
    forceClose() {
        const closed = new DisconnectedError('the client is closed');
        for (const call of [...this.pending.values()])
            this.failCall(call, closed);
    }
    async shutdown() {
        const closed = new DisconnectedError('the client is closed');
        this.setStatus('closed');
        if (this.reconnectTimer !== null)
            clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        for (const call of [...this.waiting])
            this.failCall(call, closed);
        for (const waiter of [...this.connectWaiters])
            waiter.reject(closed);
        const conn = this.conn;
        if (conn === null)
            return;
        if (conn.ready && this.pending.size > 0) {
            // Let the requests in flight finish (each has its own timeout).
            await Promise.allSettled([...this.pending.values()].map((call) => new Promise((resolve) => {
                const { cleanup } = call;
                call.cleanup = () => {
                    cleanup();
                    resolve();
                };
            })));
        }
        if (this.conn !== conn)
            return;
        this.stopTimers(conn);
        this.conn = null;
        for (const call of [...this.pending.values()])
            this.failCall(call, closed);
        await new Promise((resolve) => {
            const timer = setTimeout(done, 2000);
            function done() {
                clearTimeout(timer);
                detach(conn.ws);
                resolve();
            }
            conn.ws.onclose = done;
            conn.ws.onmessage = () => { };
            closeSocket(conn.ws, 1000, 'client closed');
            if (conn.ws.readyState === 3)
                done();
        });
    }
    // ---------------------------------------------------------------- sessions and events
    dropSession(notify) {
        const had = this.currentSession !== null;
        this.currentSession = null;
        this.storeClear();
        if (had && notify)
            this.emit('sessionClosed');
    }
    storeSave(key) {
        try {
            const r = this.store.save(key);
            if (r instanceof Promise)
                r.catch((e) => this.emit('error', e instanceof Error ? e : new Error(String(e))));
        }
        catch (e) {
            this.emit('error', e instanceof Error ? e : new Error(String(e)));
        }
    }
    storeClear() {
        try {
            const r = this.store.clear();
            if (r instanceof Promise)
                r.catch((e) => this.emit('error', e instanceof Error ? e : new Error(String(e))));
        }
        catch (e) {
            this.emit('error', e instanceof Error ? e : new Error(String(e)));
        }
    }
    emit(event, ...args) {
        for (const handler of [...this.listeners[event]]) {
            try {
                handler(...args);
            }
            catch (e) {
                // An application bug: report it like EventTarget does, without breaking the client.
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
    /** Exposed for tests and diagnostics: the number of requests awaiting a reply. */
    get inFlight() {
        return this.pending.size;
    }
    /** The server's message buffer size as last announced, or null before the first connection. */
    get bufferSize() {
        return this.lastBufferSize;
    }
}
