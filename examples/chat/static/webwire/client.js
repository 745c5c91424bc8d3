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
import { ExtensionFlags, encodeMessage, extensionFeatureOf, parseMessage, sentByServer, } from './codec.js';
import { DisconnectedError, InternalError, MaxSessConnsReached, MessageTooLargeError, OutcomeUnknownError, ProtocolError, QueueFullError, RequestError, SessionNotFound, SessionsDisabled, ShutdownError, SubProtocolMismatch, TimeoutError, UpgradeRefusedError, } from './errors.js';
import { Payload, Reply, Signal, StreamSignal, decodeUtf8, encodeUtf8 } from './payload.js';
import { ResumeState, defaultPageLifecycle, defaultResumeStorage } from './resume.js';
import { copySession, defaultSessionStore, parseSessionJson } from './session.js';
/** The protocol major version this client speaks. */
export const PROTOCOL_MAJOR = 2;
/** The highest minor version this client speaks: 2.1 (docs/protocol.md 14). */
export const PROTOCOL_MINOR = 1;
/** The features this client asks for in ExtensionHello. */
const ASKED_FLAGS = ExtensionFlags.Streams | ExtensionFlags.KeyedRequests;
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
 * A webwire client: v2.0, and v2.1 (resumable streams, keyed requests)
 * where the server announces it.
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
        streamLoss: new Set(),
        orphanedReply: new Set(),
    };
    extensions;
    maxQueued;
    /** The 2.1 state: instance id, stream positions, pending keyed requests. */
    resume;
    /** The call waiting for each pending keyed request (absent: its caller is gone). */
    keyedOwners = new Map();
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
        if (options.onStreamLoss)
            this.on('streamLoss', options.onStreamLoss);
        if (options.onOrphanedReply)
            this.on('orphanedReply', options.onOrphanedReply);
        this.extensions = options.extensions ?? true;
        this.maxQueued = Math.max(0, options.maxQueued ?? 1000);
        // A 2.0-only client keeps nothing in the page's storage.
        const storage = !this.extensions ? null : options.resumeStorage === undefined ? defaultResumeStorage() : options.resumeStorage;
        const lifecycle = !this.extensions ? null : options.pageLifecycle === undefined ? defaultPageLifecycle() : options.pageLifecycle;
        this.resume = new ResumeState(storage, options.resumeItemName ?? `webwire-resume:${url}`, lifecycle, (e) => this.emit('error', e));
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
    /**
     * The 2.1 features of the current connection: the granted flags
     * ({@link ExtensionFlags}) and the ledger epoch; null while not connected
     * or on a 2.0 connection.
     */
    extensionInfo() {
        const conn = this.conn;
        if (conn === null || !conn.optedIn || conn.helloPending)
            return null;
        return { flags: conn.granted, ledgerEpoch: conn.ledgerEpoch };
    }
    /** This client instance's id (sent in ExtensionHello; kept across reloads in `resumeStorage`). */
    get instanceId() {
        return this.resume.instanceId;
    }
    /** The stream positions: the last offset delivered per stream. */
    streamPositions() {
        return this.resume.streams.positions();
    }
    /** The keyed requests still waiting for an answer, in seq order (after a reload: those sent again from storage). */
    pendingKeyed() {
        return this.resume.ledger.pending().map((e) => {
            const owner = this.keyedOwners.get(e.seq);
            return {
                seq: e.seq,
                name: e.name,
                request: new Payload(e.encoding, e.payload.slice()),
                written: e.written,
                awaited: owner !== undefined && !owner.done,
            };
        });
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
     * On a 2.1 connection that holds a session, the request is a **keyed
     * request** (docs/protocol.md 14.4): if the connection drops before the
     * answer, it is sent again after the reconnect and the server runs it at
     * most once; the call gets exactly one answer, which may be
     * {@link OutcomeUnknownError}. Made while disconnected with a session, it
     * waits (and is kept in `resumeStorage`) and is sent once after the
     * restore.
     *
     * @throws RequestError, InternalError, ShutdownError (server answers);
     *   OutcomeUnknownError (keyed requests); TimeoutError, DisconnectedError
     *   (a plain request in flight when the connection dropped),
     *   MessageTooLargeError, QueueFullError, the abort reason; TypeError /
     *   RangeError for an invalid name or an empty unnamed request.
     */
    request(name, payload, options = {}) {
        let p;
        try {
            p = Payload.from(payload, options.encoding ?? this.textEncoding);
        }
        catch (e) {
            return Promise.reject(e);
        }
        return this.call(() => encodeMessage({ kind: 'request', id: idBytes(0), name, encoding: p.encoding, payload: p.data }), (msg) => {
            if (msg.kind === 'reply')
                return new Reply(msg.encoding, msg.payload);
            throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a request`);
        }, options, 
        // A copy: the application may reuse its buffer while the request waits for a resend.
        { name, encoding: p.encoding, payload: p.data.slice() });
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
        return this.call(() => encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(key) }), (msg) => this.acceptRestored(msg), options).then((session) => {
            const conn = this.conn;
            if (conn !== null && conn.ready) {
                // As after an automatic restore (14.5): the resume ends the hold on
                // the session's streams; pending keyed requests are sent again.
                if ((conn.granted & ExtensionFlags.Streams) !== 0)
                    this.sendResume(conn, this.resume.streams.resumeAll(conn.accept.bufferSize), true);
                void this.settlePending(conn, 'restored');
            }
            return session;
        }, async (e) => {
            const conn = this.conn;
            if ((e instanceof SessionNotFound || e instanceof SessionsDisabled) && conn !== null && key === this.resume.session) {
                this.resume.streams.clear();
                this.resume.save();
                await this.settlePending(conn, 'notFound');
            }
            throw e;
        });
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
    call(encode, onReply, options, request) {
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
            if (request !== undefined)
                call.request = request;
            const conn = this.conn;
            if (conn !== null && conn.ready) {
                this.armCall(call, timeoutMs, signal, onAbort, (t) => (timer = t));
                this.transmit(conn, call);
                return;
            }
            if (this.conn === null && this.reconnectTimer === null && this.reconnect === null) {
                reject(new DisconnectedError('not connected (automatic reconnection is off)'));
                return;
            }
            if (this.waiting.size >= this.maxQueued) {
                reject(new QueueFullError(this.maxQueued));
                return;
            }
            this.armCall(call, timeoutMs, signal, onAbort, (t) => (timer = t));
            if (request !== undefined && this.extensions && this.currentSession !== null && this.currentSession.key === this.resume.session) {
                // Keyed from now on, so that a reload finds it in storage; whether it
                // goes out keyed or plain is decided on the next connection (14.5).
                const entry = this.resume.ledger.assign(request.name, request.encoding, request.payload);
                call.seq = entry.seq;
                this.keyedOwners.set(entry.seq, call);
                this.resume.save();
            }
            this.waiting.add(call);
            this.ensureConnecting(false);
        });
    }
    /** Starts a call's timeout and abort listener. */
    armCall(call, timeoutMs, signal, onAbort, setTimer) {
        if (Number.isFinite(timeoutMs) && timeoutMs <= MAX_TIMER) {
            setTimer(setTimeout(() => this.failCall(call, new TimeoutError(timeoutMs)), Math.max(0, timeoutMs)));
        }
        signal?.addEventListener('abort', onAbort, { once: true });
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
        if (call.done)
            return;
        this.settleCall(call, () => call.reject(error));
        if (call.seq !== undefined)
            this.abandonKeyed(call.seq);
    }
    /**
     * Sends a call on a ready (or handshaking, for the restore) connection. If
     * the socket is already going away, the call waits for the next connection
     * (or fails, with `requeue` false).
     */
    transmit(conn, call, requeue = true) {
        if (call.done)
            return;
        if (call.request !== undefined) {
            if (call.seq !== undefined) {
                const entry = this.resume.ledger.get(call.seq);
                if (entry !== undefined) {
                    if (this.mayKey(conn)) {
                        this.waiting.delete(call);
                        this.sendKeyed(conn, entry);
                        return;
                    }
                    const sessionHeld = this.currentSession !== null && this.currentSession.key === this.resume.session;
                    if (!sessionHeld || entry.written || (conn.granted & ExtensionFlags.KeyedRequests) !== 0) {
                        // Never sent under another session, nor without one (14.4.3): it
                        // waits for a connection that restores its session.
                        if (requeue)
                            this.waiting.add(call);
                        return;
                    }
                    // Its session on a connection without keyed requests (a 2.0 server): a plain request (14.5 step 2).
                    this.resume.ledger.remove(entry.seq);
                    this.keyedOwners.delete(entry.seq);
                    this.resume.save();
                }
                delete call.seq;
            }
            else if (this.mayKey(conn)) {
                const entry = this.resume.ledger.assign(call.request.name, call.request.encoding, call.request.payload);
                call.seq = entry.seq;
                this.keyedOwners.set(entry.seq, call);
                this.waiting.delete(call);
                this.sendKeyed(conn, entry);
                return;
            }
        }
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
    // ---------------------------------------------------------------- keyed requests (2.1)
    /** Whether a request sent now on this connection is keyed: KEYED_REQUESTS granted and the session held. */
    mayKey(conn) {
        return ((conn.granted & ExtensionFlags.KeyedRequests) !== 0 &&
            this.currentSession !== null &&
            this.currentSession.key === this.resume.session);
    }
    /**
     * Writes a KeyedRequest for an entry: its seq, its first epoch (the
     * connection's for a first sending), the current ack, a new request id.
     * `noSession`: a resend after the restore found the session gone, where
     * NO_SESSION means the outcome is unknown. `settled` runs once the
     * sending has an answer or is lost.
     */
    sendKeyed(conn, entry, noSession = false, settled) {
        const epoch = entry.epoch ?? conn.ledgerEpoch;
        let bytes;
        try {
            bytes = encodeMessage({
                kind: 'keyedRequest',
                id: idBytes(0),
                seq: entry.seq,
                epoch,
                ack: this.resume.ledger.ack(),
                name: entry.name,
                encoding: entry.encoding,
                payload: entry.payload,
            });
        }
        catch (e) {
            this.finishKeyed(entry.seq, { error: e instanceof Error ? e : new Error(String(e)) });
            settled?.();
            return;
        }
        if (bytes.length > conn.accept.bufferSize) {
            // A server with a smaller buffer than the one that took it the first time.
            const error = entry.written ? new OutcomeUnknownError(entry.seq) : new MessageTooLargeError(bytes.length, conn.accept.bufferSize);
            this.finishKeyed(entry.seq, { error });
            settled?.();
            return;
        }
        const seq = entry.seq;
        const tx = {
            bytes,
            onReply: (msg) => {
                this.finishKeyed(seq, this.keyedOutcome(seq, msg, noSession));
                return undefined;
            },
            resolve: () => settled?.(),
            reject: (error) => {
                settled?.();
                // A lost connection keeps the entry for the next one; only a closed client ends the wait.
                if (this.currentStatus === 'closed')
                    this.failOwner(seq, error);
            },
            cleanup: () => { },
            done: false,
            id: 0,
        };
        if (conn.ws.readyState === WS_OPEN) {
            // Before the write: from here on the server may have run it.
            this.resume.ledger.markWritten(entry, epoch);
            this.resume.save();
        }
        this.transmit(conn, tx, false);
    }
    /** The answer of a keyed request, as the caller gets it. */
    keyedOutcome(seq, msg, noSession) {
        if (msg.kind === 'reply')
            return { value: new Reply(msg.encoding, msg.payload) };
        if (msg.kind === 'replyOutcomeUnknown')
            return { error: new OutcomeUnknownError(seq) };
        if (noSession && msg.kind === 'replyError' && msg.code === 'NO_SESSION') {
            return { error: new OutcomeUnknownError(seq, 'the session is gone and the server does not know the outcome of the request') };
        }
        return { error: replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a keyed request`) };
    }
    /** A keyed request has its final answer: it leaves the ledger and goes to its caller, or to `orphanedReply`. */
    finishKeyed(seq, result) {
        const entry = this.resume.ledger.get(seq);
        if (entry === undefined)
            return;
        this.resume.ledger.remove(seq);
        this.resume.save();
        this.deliverKeyed(entry, result);
    }
    deliverKeyed(entry, result) {
        const owner = this.keyedOwners.get(entry.seq);
        this.keyedOwners.delete(entry.seq);
        if (owner !== undefined && !owner.done) {
            if ('error' in result)
                this.settleCall(owner, () => owner.reject(result.error));
            else
                this.settleCall(owner, () => owner.resolve(result.value));
            return;
        }
        this.emit('orphanedReply', {
            seq: entry.seq,
            name: entry.name,
            request: new Payload(entry.encoding, entry.payload),
            reply: 'value' in result ? result.value : null,
            error: 'error' in result ? result.error : null,
        });
    }
    /** Fails the caller of a keyed request (the client is closing) without forgetting the request. */
    failOwner(seq, error) {
        const owner = this.keyedOwners.get(seq);
        if (owner === undefined || owner.done)
            return;
        this.settleCall(owner, () => owner.reject(error));
    }
    /**
     * The caller of a keyed request gave up (timeout, abort, close). Never
     * sent: the request is dropped (its seq stays unused). Sent: it stays
     * pending, and its answer goes to `orphanedReply`.
     */
    abandonKeyed(seq) {
        const entry = this.resume.ledger.get(seq);
        if (entry === undefined || entry.written)
            return;
        this.resume.ledger.remove(seq);
        this.keyedOwners.delete(seq);
        this.resume.save();
    }
    /**
     * The connection holds session `key` now (created or restored): the 2.1
     * state belongs to it. State of another session is dropped: its pending
     * keyed requests fail with outcome unknown (never sent under another
     * session), its positions are forgotten.
     */
    bindSession(key) {
        if (this.resume.session === key)
            return;
        const dropped = this.resume.ledger.reset();
        this.resume.streams.clear();
        this.resume.session = key;
        this.resume.save();
        for (const entry of dropped) {
            this.deliverKeyed(entry, { error: new OutcomeUnknownError(entry.seq, 'the session of this request is gone: its outcome is unknown') });
        }
    }
    /**
     * Applies docs/protocol.md 14.5 steps 2, 4 and 5 to the pending keyed
     * requests once the restore of their session ended on this connection.
     * Resolves when it is done; after `notFound`, once every resend is answered.
     */
    async settlePending(conn, outcome) {
        const keyed = (conn.granted & ExtensionFlags.KeyedRequests) !== 0;
        const plan = this.resume.ledger.plan(keyed, conn.ledgerEpoch, outcome);
        for (const entry of plan.failUnknown) {
            const why = entry.written
                ? 'the request was sent but the server cannot retry it (a 2.0 server, a lost ledger, or a session that is gone)'
                : 'the session of this request is gone: it was never sent';
            this.finishKeyed(entry.seq, { error: new OutcomeUnknownError(entry.seq, why) });
        }
        for (const entry of plan.sendPlain) {
            // A 2.0 connection: it goes out as a plain request, never keyed again.
            this.resume.ledger.remove(entry.seq);
            this.resume.save();
            let owner = this.keyedOwners.get(entry.seq);
            this.keyedOwners.delete(entry.seq);
            if (owner === undefined || owner.done)
                owner = this.orphanPlainCall(entry);
            else
                delete owner.seq;
            this.waiting.delete(owner);
            this.transmit(conn, owner);
        }
        if (outcome === 'notFound') {
            await Promise.all(plan.resend.map((entry) => new Promise((resolve) => this.sendKeyed(conn, entry, true, resolve))));
            if (this.conn === conn && this.resume.ledger.empty) {
                this.resume.session = null;
                this.resume.save();
            }
            return;
        }
        const inOrder = [...plan.resend, ...plan.sendNew].sort((a, b) => (a.seq < b.seq ? -1 : 1));
        for (const entry of inOrder) {
            const owner = this.keyedOwners.get(entry.seq);
            if (owner !== undefined)
                this.waiting.delete(owner);
            this.sendKeyed(conn, entry);
        }
    }
    /** A call for a request from storage that goes out plain: its answer goes to `orphanedReply`. */
    orphanPlainCall(entry) {
        const settle = (result) => this.deliverKeyed(entry, result);
        return {
            bytes: encodeMessage({ kind: 'request', id: idBytes(0), name: entry.name, encoding: entry.encoding, payload: entry.payload }),
            onReply: (msg) => {
                if (msg.kind === 'reply')
                    return new Reply(msg.encoding, msg.payload);
                throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a request`);
            },
            resolve: (value) => settle({ value: value }),
            reject: (error) => settle({ error: error instanceof Error ? error : new Error(String(error)) }),
            cleanup: () => { },
            done: false,
            id: 0,
        };
    }
    // ---------------------------------------------------------------- streams (2.1)
    onStreamSignal(conn, msg) {
        const verdict = this.resume.streams.onSignal(msg);
        if (verdict.resume !== null)
            this.sendResume(conn, [verdict.resume], false);
        if (!verdict.deliver)
            return;
        this.resume.save();
        this.emit('signal', new StreamSignal(msg.name, msg.encoding, msg.payload, msg.stream, msg.epoch, msg.offset));
    }
    onStreamLoss(msg) {
        if (!this.resume.streams.onLoss(msg))
            return;
        this.resume.save();
        const { stream, epoch, lostFrom, lostTo, next, reason } = msg;
        this.emit('streamLoss', { stream, epoch, lostFrom, lostTo, next, reason });
    }
    /**
     * Sends a StreamResume (its answer ends the streams' *resuming*). `full`:
     * the resume after a restore, which lists every position; otherwise a gap
     * repair of the listed streams. A ReplyInternalError (the history could
     * not be read) is tried again after a backoff.
     */
    sendResume(conn, entries, full) {
        const streams = entries.map((e) => e.stream);
        let timer = null;
        const ended = () => this.resume.streams.resumeEnded(streams);
        const call = {
            bytes: encodeMessage({ kind: 'streamResume', id: idBytes(0), entries }),
            onReply: (msg) => {
                ended();
                if (msg.kind === 'replyInternalError')
                    this.retryResume(conn, streams, full);
                else if (msg.kind === 'reply')
                    conn.resumeFailures = 0;
                return undefined;
            },
            resolve: () => { },
            reject: ended,
            cleanup: () => {
                if (timer !== null)
                    clearTimeout(timer);
            },
            done: false,
            id: 0,
        };
        if (Number.isFinite(this.timeout) && this.timeout <= MAX_TIMER) {
            timer = setTimeout(() => this.failCall(call, new TimeoutError(this.timeout)), this.timeout);
        }
        this.transmit(conn, call, false);
    }
    retryResume(conn, streams, full) {
        if (this.conn !== conn)
            return;
        conn.resumeFailures++;
        const r = this.reconnect ?? { initialDelay: 500, maxDelay: 30_000, factor: 2 };
        const delay = Math.min(r.maxDelay, r.initialDelay * r.factor ** (conn.resumeFailures - 1));
        const timer = setTimeout(() => {
            conn.resumeTimers.delete(timer);
            if (this.conn !== conn)
                return;
            if (full) {
                this.sendResume(conn, this.resume.streams.resumeAll(conn.accept.bufferSize), true);
                return;
            }
            const entries = this.resume.streams.resumeStreams(streams);
            if (entries.length > 0)
                this.sendResume(conn, entries, false);
        }, delay);
        conn.resumeTimers.add(timer);
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
        const conn = {
            ws,
            accept: null,
            ready: false,
            lastSent: now(),
            heartbeatTimer: null,
            handshakeTimer: null,
            refused: null,
            optedIn: false,
            helloPending: false,
            granted: 0,
            ledgerEpoch: 0n,
            resumeTimers: new Set(),
            resumeFailures: 0,
        };
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
        const feature = extensionFeatureOf(msg);
        if (feature !== undefined && sentByServer(msg)) {
            // docs/protocol.md 14.1, rules for the client.
            let wrong = null;
            if (!conn.optedIn)
                wrong = `${msg.kind} on a connection that did not opt in to 2.1`;
            else if (msg.kind === 'extensionAccept')
                wrong = conn.helloPending ? null : 'a second extensionAccept';
            else if (conn.helloPending)
                wrong = `${msg.kind} before extensionAccept`;
            else if ((conn.granted & feature) === 0)
                wrong = `${msg.kind} of a feature that was not granted`;
            if (wrong !== null) {
                this.violation(conn, new ProtocolError(`protocol violation: ${wrong}`), 1002);
                return;
            }
        }
        switch (msg.kind) {
            case 'reply':
            case 'replyError':
            case 'replyShutdown':
            case 'replyInternalError':
            case 'replySessionNotFound':
            case 'replyMaxSessConnsReached':
            case 'replySessionsDisabled':
            case 'replyOutcomeUnknown':
                this.onReplyMessage(msg);
                return;
            case 'signal':
                this.emit('signal', new Signal(msg.name, msg.encoding, msg.payload));
                return;
            case 'extensionAccept':
                this.onExtensionAccept(conn, msg);
                return;
            case 'streamSignal':
                this.onStreamSignal(conn, msg);
                return;
            case 'streamLoss':
                this.onStreamLoss(msg);
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
                // A new session has nothing to resume: its streams flow at once (14.3.2).
                this.bindSession(session.key);
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
        if (this.extensions && accept.minor >= 1) {
            // Opt in (14.1): ExtensionHello first, then nothing until ExtensionAccept.
            conn.optedIn = true;
            conn.helloPending = true;
            try {
                this.sendRaw(conn, encodeMessage({ kind: 'extensionHello', flags: ASKED_FLAGS, instanceId: this.resume.instanceId }));
            }
            catch {
                // the close event follows
            }
            return;
        }
        void this.restoreOnConnect(conn);
    }
    onExtensionAccept(conn, msg) {
        let wrong = null;
        if ((msg.flags & ~ASKED_FLAGS) !== 0)
            wrong = `extensionAccept grants flags ${msg.flags} of which some were not asked for`;
        else if ((msg.flags & ExtensionFlags.KeyedRequests) !== 0 && msg.ledgerEpoch === 0n)
            wrong = 'extensionAccept grants keyed requests with ledger epoch 0';
        if (wrong !== null) {
            this.violation(conn, new ProtocolError(`protocol violation: ${wrong}`), 1002);
            return;
        }
        conn.helloPending = false;
        conn.granted = msg.flags;
        conn.ledgerEpoch = msg.ledgerEpoch;
        void this.restoreOnConnect(conn);
    }
    /**
     * Restores the known session on a fresh connection, settles the pending
     * keyed requests (docs/protocol.md 14.5), then marks it ready.
     */
    async restoreOnConnect(conn) {
        if (!this.autoRestore) {
            // A new connection has no session until the application restores one;
            // pending keyed requests wait for that restore.
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
        // The session of pending keyed requests, closed meanwhile (a logout whose
        // answer was lost): its restore fails, and the server answers their
        // resends from the closed session's ledger (14.4.2, "Without a session").
        const ledgerOnly = (key === null || key.length === 0) && this.resume.session !== null && !this.resume.ledger.empty;
        if (ledgerOnly)
            key = this.resume.session;
        if (key !== null && key.length > 0) {
            // Pending state of another session is never sent under this one.
            if (this.resume.session !== null && this.resume.session !== key)
                this.bindSession(key);
            const outcome = await this.restoreOn(conn, key, ledgerOnly);
            if (this.conn !== conn)
                return;
            await this.settlePending(conn, outcome);
            if (this.conn !== conn)
                return;
        }
        this.markReady(conn);
    }
    /**
     * Sends RequestRestoreSession and, with streams granted, the StreamResume
     * right behind it (14.5 step 3); resolves with how the restore ended.
     * `quiet`: a restore only for the pending keyed requests of a closed
     * session, whose failure is expected and not reported.
     */
    async restoreOn(conn, key, quiet) {
        try {
            const restored = new Promise((resolve, reject) => {
                const call = {
                    bytes: encodeMessage({ kind: 'requestRestoreSession', id: idBytes(0), key: encodeUtf8(key) }),
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
            if ((conn.granted & ExtensionFlags.Streams) !== 0 && this.conn === conn) {
                // The server handles it after the restore; it ends the hold on the
                // session's streams (14.3.2), so it goes out even with no position.
                if (this.resume.session !== key)
                    this.resume.streams.clear();
                this.sendResume(conn, this.resume.streams.resumeAll(conn.accept.bufferSize), true);
            }
            await restored;
            return 'restored';
        }
        catch (e) {
            if (this.conn !== conn)
                return 'failed';
            const gone = e instanceof SessionNotFound || e instanceof SessionsDisabled;
            if (gone) {
                // The session is gone for good, and so are its positions (14.3.3).
                if (!quiet)
                    this.storeClear();
                this.resume.streams.clear();
                this.resume.save();
            }
            if (this.currentSession !== null) {
                this.currentSession = null;
                this.emit('sessionClosed');
            }
            if (!quiet)
                this.emit('error', e instanceof Error ? e : new Error(String(e)));
            return gone ? 'notFound' : 'failed';
        }
    }
    acceptRestored(msg) {
        if (msg.kind !== 'reply')
            throw replyFailure(msg) ?? new ProtocolError(`unexpected ${msg.kind} for a restore request`);
        const session = parseSessionJson(msg.encoding === 'utf16' ? new Payload('utf16', msg.payload).text : decodeUtf8(msg.payload));
        this.currentSession = session;
        this.storeSave(session.key);
        this.bindSession(session.key);
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
        // Keyed requests that already have a seq go first, in seq order, so that
        // the server never reads a seq after a higher one (14.4.1).
        const queued = [...this.waiting];
        const numbered = queued.filter((c) => c.seq !== undefined).sort((a, b) => (a.seq < b.seq ? -1 : 1));
        for (const call of [...numbered, ...queued.filter((c) => c.seq === undefined)]) {
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
            // Nothing, not even a heartbeat, between ExtensionHello and ExtensionAccept (14.1).
            if (idle >= interval - 1 && conn.ws.readyState === WS_OPEN && !conn.helloPending) {
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
        for (const timer of conn.resumeTimers)
            clearTimeout(timer);
        conn.heartbeatTimer = null;
        conn.handshakeTimer = null;
        conn.resumeTimers.clear();
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
        // Keyed requests in flight stay pending (sent again after the reconnect);
        // plain ones fail: their answer is lost.
        for (const call of [...this.pending.values()])
            this.failCall(call, error);
        this.resume.streams.connectionLost();
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
        this.failKeyedOwners(error);
        this.resume.release();
        for (const waiter of [...this.connectWaiters])
            waiter.reject(error);
        this.emit('error', error);
    }
    /**
     * The client is closed: callers of keyed requests already sent stop
     * waiting; the requests stay in `resumeStorage` for a later client (their
     * answers then reach its `orphanedReply` event).
     */
    failKeyedOwners(error) {
        for (const seq of [...this.keyedOwners.keys()])
            this.failOwner(seq, error);
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
        if (conn === null) {
            this.failKeyedOwners(closed);
            this.resume.release();
            return;
        }
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
        this.failKeyedOwners(closed);
        this.resume.release();
        if (this.conn !== conn)
            return;
        this.stopTimers(conn);
        this.conn = null;
        for (const call of [...this.pending.values()])
            this.failCall(call, closed);
        this.failKeyedOwners(closed);
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
        // Positions belong to the session (14.3.3); pending keyed requests stay:
        // one of them may be the request that closed it, still to be answered.
        this.resume.streams.clear();
        this.resume.save();
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
