// An in-process fake of the browser WebSocket API with a scriptable server
// side, for testing the client without a network.
import { encodeMessage, parseMessage } from '../dist/index.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond()` is truthy (polling), failing after `ms`. */
export async function until(cond, ms = 2000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** A Web Storage in memory (`items` is its Map), as sessionStorage would be. */
export function memoryStorage(init = new Map()) {
  const items = init;
  return {
    items,
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
}

export function idOf(msg) {
  return msg.id;
}

/**
 * A fake server. `handler(socket, msg)` sees every parsed client message;
 * the default answers `echo` requests, closes sessions and ignores the rest.
 */
export class FakeServer {
  constructor(options = {}) {
    this.accept = {
      kind: 'acceptConf',
      major: 2,
      minor: 0,
      readTimeoutMs: 60000,
      bufferSize: 8192,
      subProtocol: '',
      ...options.accept,
    };
    /** When true, connection attempts fail (error + close 1006). */
    this.refuse = options.refuse ?? false;
    /**
     * When set ({ status, retryAfter }), upgrades are refused with this HTTP
     * status, shown as the `ws` package shows it: an 'unexpected-response'
     * event to a listener, else error + close 1006.
     */
    this.refuseWith = options.refuseWith ?? null;
    /** When false, the server does not send AcceptConf by itself. */
    this.autoAccept = options.autoAccept ?? true;
    this.handler = options.handler ?? defaultHandler;
    this.sockets = [];
    const server = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url) {
        super(server, url);
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }
}

export function defaultHandler(socket, msg) {
  if (msg.kind === 'request' && (msg.name === 'echo' || msg.name === '')) {
    socket.push({ kind: 'reply', id: msg.id, encoding: msg.encoding, payload: msg.payload });
  } else if (msg.kind === 'requestCloseSession') {
    socket.push({ kind: 'reply', id: msg.id, encoding: 'binary', payload: new Uint8Array(0) });
  } else if (msg.kind === 'requestRestoreSession') {
    socket.push({ kind: 'replySessionNotFound', id: msg.id });
  }
}

export class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(server, url) {
    this.server = server;
    this.url = url;
    this.readyState = 0;
    this.binaryType = 'blob';
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    /** Raw bytes the client sent. */
    this.raw = [];
    /** Parsed messages the client sent. */
    this.received = [];
    this.closeCode = null;
    this.listeners = {};
    server.sockets.push(this);
    setImmediate(() => {
      const refusal = server.refuseWith;
      if (refusal !== null && this.listeners['unexpected-response']) {
        const headers = refusal.retryAfter === undefined ? {} : { 'retry-after': refusal.retryAfter };
        this.listeners['unexpected-response']({}, { statusCode: refusal.status, headers });
        return;
      }
      if (server.refuse || refusal !== null) {
        this.readyState = 3;
        this.onerror?.({ type: 'error' });
        this.onclose?.({ code: 1006, reason: '' });
        return;
      }
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
      if (server.autoAccept) this.push(server.accept);
    });
  }

  // ---- client side (the API the client uses)
  /** The `ws` package's event listeners (only 'unexpected-response' is used). */
  on(event, listener) {
    this.listeners[event] = listener;
    return this;
  }

  /** The `ws` package's abrupt end: error, then close 1006. */
  terminate() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setImmediate(() => {
      this.onerror?.({ type: 'error' });
      this.onclose?.({ code: 1006, reason: '' });
    });
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('InvalidStateError');
    const bytes = Uint8Array.from(data);
    this.raw.push(bytes);
    const msg = parseMessage(bytes);
    this.received.push(msg);
    this.server.handler(this, msg);
  }

  close(code = 1005, reason = '') {
    if (this.readyState >= 2) return;
    this.closeCode = code;
    this.readyState = 2;
    setImmediate(() => {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    });
  }

  // ---- server side
  /** Sends a message (object for the codec, or raw bytes, or a string for a text frame). */
  push(msg) {
    if (this.readyState !== 1) return;
    let data;
    if (typeof msg === 'string') data = msg;
    else if (msg instanceof Uint8Array) data = msg.slice().buffer;
    else data = encodeMessage(msg).buffer;
    if (this.binaryType !== 'arraybuffer' && typeof data !== 'string') throw new Error('client did not set binaryType');
    this.onmessage?.({ data });
  }

  /** Drops the connection as a network failure would. */
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }

  requests() {
    return this.received.filter((m) => m.kind === 'request');
  }
}
