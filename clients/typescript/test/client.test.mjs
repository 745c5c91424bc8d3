// Client behaviour against a fake in-process WebSocket (no network).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WebwireClient,
  MemorySessionStore,
  LocalStorageSessionStore,
  RequestError,
  InternalError,
  ShutdownError,
  SessionNotFound,
  MaxSessConnsReached,
  SessionsDisabled,
  TimeoutError,
  UpgradeRefusedError,
  DisconnectedError,
  MessageTooLargeError,
  ProtocolError,
  SubProtocolMismatch,
  Payload,
  encodeUtf16,
} from '../dist/index.js';
import { FakeServer, sleep, until } from './fake-websocket.mjs';

const SESSION_JSON = (key, user = 'alice') =>
  JSON.stringify({ k: key, c: '2026-01-02T03:04:05.123456789Z', l: '2026-01-02T03:04:06.000000001Z', i: { user } });

/** A client on the fake server, force-closed when the test ends (also when it fails). */
function makeClient(t, server, options = {}) {
  const client = new WebwireClient('ws://fake/', {
    WebSocket: server.WebSocket,
    sessionStore: new MemorySessionStore(),
    reconnect: { initialDelay: 10, maxDelay: 40 },
    timeout: 5000,
    ...options,
  });
  t.after(() => client.close({ force: true }));
  return client;
}

const text = (bytes) => new TextDecoder().decode(bytes);

test('connects after AcceptConf and reports status changes', async (t) => {
  const server = new FakeServer({ autoAccept: false, accept: { readTimeoutMs: 5000, bufferSize: 4096, subProtocol: 'p' } });
  const statuses = [];
  const client = makeClient(t, server, { onStatusChange: (s) => statuses.push(s) });
  assert.equal(client.status(), 'disconnected');
  const connected = client.connect();
  assert.equal(client.status(), 'connecting');
  await until(() => server.last?.readyState === 1, 1000, 'open');
  await sleep(5);
  assert.equal(client.status(), 'connecting', 'open is not enough: AcceptConf is awaited');
  server.last.push(server.accept);
  await connected;
  assert.equal(client.status(), 'connected');
  assert.equal(server.last.binaryType, 'arraybuffer');
  assert.deepEqual(client.serverInfo(), { major: 2, minor: 0, readTimeoutMs: 5000, bufferSize: 4096, subProtocol: 'p' });
  await client.close();
  assert.equal(client.status(), 'closed');
  assert.deepEqual(statuses, ['connecting', 'connected', 'closed']);
  assert.equal(server.last.closeCode, 1000);
});

test('requests: encodings on the wire, reply encoding and text', async (t) => {
  const server = new FakeServer();
  const client = makeClient(t, server);
  const r1 = await client.request('echo', 'Привет');
  assert.equal(r1.encoding, 'utf8');
  assert.equal(r1.text, 'Привет');
  const r2 = await client.request('echo', 'Привет 😀', { encoding: 'utf16' });
  assert.equal(r2.encoding, 'utf16');
  assert.equal(r2.text, 'Привет 😀');
  const r3 = await client.request('echo', Uint8Array.of(0, 255));
  assert.equal(r3.encoding, 'binary');
  assert.deepEqual([...r3.data], [0, 255]);
  const r4 = await client.request('echo', Payload.utf16('x'));
  assert.equal(r4.encoding, 'utf16');
  const types = server.last.raw.map((b) => b[0]);
  assert.deepEqual(types, [128, 129, 127, 129]);
  // The UTF-16 request is padded after the odd... even name 'echo': no padding.
  assert.deepEqual([...server.last.raw[1].subarray(14, 16)], [0x1f, 0x04]);
  await client.close();
});

test('textEncoding option makes UTF-16 the default for strings', async (t) => {
  const server = new FakeServer();
  const client = makeClient(t, server, { textEncoding: 'utf16' });
  await client.signal('abc', 'hi');
  await client.request('echo', 'hi');
  assert.deepEqual([...server.last.raw[0]], [65, 3, 97, 98, 99, 0, 104, 0, 105, 0]);
  assert.equal(server.last.raw[1][0], 129);
  await client.close();
});

test('many requests in flight are matched by id, whatever the reply order', async (t) => {
  const held = [];
  const server = new FakeServer({ handler: (socket, msg) => msg.kind === 'request' && held.push([socket, msg]) });
  const client = makeClient(t, server);
  await client.connect();
  const calls = [];
  for (let i = 0; i < 20; i++) calls.push(client.request('n', String(i)));
  await until(() => held.length === 20);
  const ids = new Set(held.map(([, m]) => Buffer.from(m.id).toString('hex')));
  assert.equal(ids.size, 20, 'ids are unique');
  // A reply for an unknown id is ignored.
  server.last.push({ kind: 'reply', id: Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9), encoding: 'utf8', payload: new Uint8Array(0) });
  for (const [socket, msg] of held.reverse()) {
    socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new TextEncoder().encode(`re:${text(msg.payload)}`) });
  }
  const replies = await Promise.all(calls);
  replies.forEach((r, i) => assert.equal(r.text, `re:${i}`));
  assert.equal(client.inFlight, 0);
  await client.close();
});

test('error replies map to typed errors', async (t) => {
  const server = new FakeServer({
    handler: (socket, msg) => {
      if (msg.kind !== 'request') return;
      const kind = msg.name;
      if (kind === 'err') socket.push({ kind: 'replyError', id: msg.id, code: 'E1', message: 'bad ж' });
      else socket.push({ kind, id: msg.id });
    },
  });
  const client = makeClient(t, server);
  await assert.rejects(client.request('err', 'x'), (e) => e instanceof RequestError && e.code === 'E1' && e.message === 'bad ж');
  await assert.rejects(client.request('replyShutdown', 'x'), ShutdownError);
  await assert.rejects(client.request('replyInternalError', 'x'), InternalError);
  await assert.rejects(client.request('replySessionNotFound', 'x'), SessionNotFound);
  await assert.rejects(client.request('replyMaxSessConnsReached', 'x'), MaxSessConnsReached);
  await assert.rejects(client.request('replySessionsDisabled', 'x'), SessionsDisabled);
  await client.close();
});

test('timeouts: per call and the client default; late replies are ignored', async (t) => {
  const held = [];
  const server = new FakeServer({ handler: (s, m) => m.kind === 'request' && held.push(m) });
  const client = makeClient(t, server, { timeout: 40 });
  await client.connect();
  await assert.rejects(client.request('slow', 'x'), (e) => e instanceof TimeoutError && e.timeoutMs === 40);
  await assert.rejects(client.request('slow', 'x', { timeout: 10 }), (e) => e instanceof TimeoutError && e.timeoutMs === 10);
  assert.equal(client.inFlight, 0);
  server.last.push({ kind: 'reply', id: held[0].id, encoding: 'utf8', payload: new Uint8Array(0) });
  assert.equal(client.status(), 'connected');
  await client.close();
});

test('abort: before sending and while in flight', async (t) => {
  const server = new FakeServer({ handler: () => {} });
  const client = makeClient(t, server);
  await client.connect();
  const pre = new AbortController();
  pre.abort(new Error('pre-aborted'));
  await assert.rejects(client.request('x', 'y', { signal: pre.signal }), /pre-aborted/);
  assert.equal(server.last.requests().length, 0, 'nothing sent');
  const ac = new AbortController();
  const p = client.request('x', 'y', { signal: ac.signal });
  await until(() => server.last.requests().length === 1);
  ac.abort();
  await assert.rejects(p, (e) => e.name === 'AbortError');
  assert.equal(client.inFlight, 0);
  await client.close();
});

test('heartbeat after 3/4 of a short read timeout of silence', async (t) => {
  const server = new FakeServer({ accept: { readTimeoutMs: 200 } });
  const client = makeClient(t, server);
  await client.connect();
  const hb = () => server.last.received.filter((m) => m.kind === 'heartbeat').length;
  await sleep(60);
  assert.equal(hb(), 0, 'no heartbeat long before 150 ms of silence');
  await until(() => hb() >= 2, 3000, 'two heartbeats');
  assert.deepEqual([...server.last.raw.find((b) => b[0] === 33)], [33]);
  await client.close();
});

test('traffic postpones the heartbeat', async (t) => {
  const server = new FakeServer({ accept: { readTimeoutMs: 400 } });
  const client = makeClient(t, server);
  await client.connect();
  // Keep sending every 50 ms for 500 ms: the connection is never silent for 300 ms.
  for (let i = 0; i < 10; i++) {
    await client.signal('tick', 'x');
    await sleep(50);
  }
  assert.equal(server.last.received.filter((m) => m.kind === 'heartbeat').length, 0);
  await client.close();
});

test('reconnection: in-flight requests fail, new ones wait and succeed', async (t) => {
  const server = new FakeServer({ handler: (s, m) => m.name === 'echo' && s.push({ kind: 'reply', id: m.id, encoding: m.encoding, payload: m.payload }) });
  const statuses = [];
  const client = makeClient(t, server, { onStatusChange: (s) => statuses.push(s) });
  await client.connect();
  const lost = client.request('hang', 'x');
  await until(() => server.last.requests().length === 1);
  server.refuse = true;
  server.last.drop();
  await assert.rejects(lost, DisconnectedError);
  assert.notEqual(client.status(), 'connected');
  const waiting = client.request('echo', 'after');
  await until(() => server.sockets.length >= 3, 2000, 'retries with backoff');
  server.refuse = false;
  const reply = await waiting;
  assert.equal(reply.text, 'after');
  assert.equal(client.status(), 'connected');
  assert.deepEqual(statuses.slice(0, 4), ['connecting', 'connected', 'disconnected', 'connecting']);
  assert.equal(statuses.at(-1), 'connected');
  await client.close();
});

test('while disconnected, requests wait up to their timeout', async (t) => {
  const server = new FakeServer({ refuse: true });
  const client = makeClient(t, server);
  await assert.rejects(client.request('echo', 'x', { timeout: 80 }), TimeoutError);
  assert.ok(server.sockets.length >= 2, 'kept retrying');
  await client.close();
  const n = server.sockets.length;
  await sleep(60);
  assert.equal(server.sockets.length, n, 'no retries after close');
});

test('failed attempts back off', async (t) => {
  const server = new FakeServer({ refuse: true });
  // Delays 20, 40, 80, 160 ... (jitter off): at most 5 attempts fit in 300 ms; without backoff there would be dozens.
  const client = makeClient(t, server, { reconnect: { initialDelay: 20, factor: 2, maxDelay: 10000, jitter: 0 } });
  client.connect().catch(() => {});
  await sleep(300);
  assert.ok(server.sockets.length >= 2, `retried (${server.sockets.length})`);
  assert.ok(server.sockets.length <= 5, `backed off (${server.sockets.length} attempts)`);
});

test('a refused upgrade (ws package) is an UpgradeRefusedError, and reconnecting waits its Retry-After', async (t) => {
  const server = new FakeServer({ refuseWith: { status: 503, retryAfter: '1' } });
  const errors = [];
  const client = makeClient(t, server, { reconnect: { initialDelay: 10, maxDelay: 40, jitter: 0 } });
  client.on('error', (e) => errors.push(e));
  const connected = client.connect();
  await until(() => server.sockets.length === 1);
  const first = Date.now();
  // The backoff alone would have tried again after 10 ms, then every 40 ms.
  await sleep(500);
  assert.equal(server.sockets.length, 1, 'no attempt before Retry-After');
  server.refuseWith = null;
  await connected;
  assert.equal(server.sockets.length, 2);
  assert.ok(Date.now() - first >= 950, `the second attempt after ${Date.now() - first} ms`);
  await client.close();

  const once = new FakeServer({ refuseWith: { status: 429, retryAfter: '2' } });
  const manual = makeClient(t, once, { reconnect: false });
  await assert.rejects(
    manual.connect(),
    (e) => e instanceof UpgradeRefusedError && e instanceof DisconnectedError && e.status === 429 && e.retryAfterMs === 2000,
  );
  const noHeader = new FakeServer({ refuseWith: { status: 403 } });
  const refusedPlain = makeClient(t, noHeader, { reconnect: false });
  await assert.rejects(refusedPlain.connect(), (e) => e instanceof UpgradeRefusedError && e.status === 403 && e.retryAfterMs === null);
});

test('backoff uses full jitter by default: a delay anywhere from zero to the ceiling', async (t) => {
  const server = new FakeServer();
  // A ceiling of 10 s, and a random draw at its top: the wait is next to nothing.
  const client = makeClient(t, server, { reconnect: { initialDelay: 10_000 } });
  await client.connect();
  t.mock.method(Math, 'random', () => 0.9999);
  server.last.drop();
  await until(() => server.sockets.length === 2, 1000, 'reconnected at once (full jitter)');
  await client.close();
});

test('after close code 1012 the client waits a random time in the restart range', async (t) => {
  const server = new FakeServer();
  const client = makeClient(t, server, { reconnect: { initialDelay: 10, maxDelay: 40, restartDelayMin: 150, restartDelayMax: 250 } });
  await client.connect();
  const start = performance.now();
  server.last.drop(1012);
  await sleep(100);
  assert.equal(server.sockets.length, 1, 'no reconnection before the restart delay');
  await until(() => server.sockets.length === 2 && client.status() === 'connected', 2000, 'reconnected');
  const waited = performance.now() - start;
  assert.ok(waited >= 145, `waited ${waited} ms`);
  // Other close codes keep the short backoff.
  server.last.drop(1001);
  await until(() => server.sockets.length === 3, 100, 'reconnected at once after 1001');
  await client.close();
});

test('reconnect disabled: no retry, calls fail fast while disconnected', async (t) => {
  const server = new FakeServer();
  const client = makeClient(t, server, { reconnect: false });
  await assert.rejects(client.request('echo', 'x'), DisconnectedError, 'no connect without connect()');
  await client.connect();
  assert.equal((await client.request('echo', 'x')).text, 'x');
  server.last.drop();
  await until(() => client.status() === 'disconnected');
  await sleep(30);
  assert.equal(server.sockets.length, 1);
  await assert.rejects(client.request('echo', 'x'), DisconnectedError);
  server.refuse = true;
  await assert.rejects(client.connect(), DisconnectedError);
  server.refuse = false;
  await client.connect();
  assert.equal(client.status(), 'connected');
  await client.close();
});

test('message size: refused before sending when above the server buffer size', async (t) => {
  const server = new FakeServer({ accept: { bufferSize: 64 } });
  const client = makeClient(t, server);
  await client.connect();
  // 10 bytes header + 4 name + 50 payload = 64: fits exactly.
  assert.equal((await client.request('echo', 'x'.repeat(50))).text.length, 50);
  await assert.rejects(client.request('echo', 'x'.repeat(51)), (e) => e instanceof MessageTooLargeError && e.size === 65 && e.limit === 64);
  await assert.rejects(client.signal('s', new Uint8Array(100)), MessageTooLargeError);
  assert.equal(server.last.raw.length, 1, 'nothing else was sent');
  assert.equal(client.status(), 'connected');
  await client.close();
});

test('sub-protocol mismatch: typed error, closed, no reconnection', async (t) => {
  const server = new FakeServer({ accept: { subProtocol: 'other' } });
  const errors = [];
  const client = makeClient(t, server, { subProtocol: 'interop', onError: (e) => errors.push(e) });
  const pending = client.request('echo', 'x');
  await assert.rejects(client.connect(), (e) => e instanceof SubProtocolMismatch && e instanceof ProtocolError && e.expected === 'interop' && e.actual === 'other');
  await assert.rejects(pending, SubProtocolMismatch);
  assert.equal(client.status(), 'closed');
  assert.equal(server.last.closeCode, 1002);
  await sleep(80);
  assert.equal(server.sockets.length, 1, 'no reconnection');
  assert.ok(errors[0] instanceof SubProtocolMismatch);
  await assert.rejects(client.request('echo', 'x'), DisconnectedError);
  await client.close();
});

test('no expected sub-protocol: any announced name is accepted', async (t) => {
  const server = new FakeServer({ accept: { subProtocol: 'whatever' } });
  const client = makeClient(t, server);
  await client.connect();
  assert.equal(client.serverInfo().subProtocol, 'whatever');
  await client.close();
});

test('major version other than 2 is fatal', async (t) => {
  const server = new FakeServer({ accept: { major: 3 } });
  const client = makeClient(t, server);
  await assert.rejects(client.connect(), (e) => e instanceof ProtocolError && /version 3/.test(e.message));
  assert.equal(client.status(), 'closed');
  await sleep(40);
  assert.equal(server.sockets.length, 1);
});

test('protocol violations close the connection and the client reconnects', async (t) => {
  const server = new FakeServer({ handler: () => {} });
  const errors = [];
  const client = makeClient(t, server, { onError: (e) => errors.push(e) });
  await client.connect();
  const inflight = client.request('x', 'y');
  await until(() => server.last.requests().length === 1);
  server.last.push(Uint8Array.of(200, 1));
  await assert.rejects(inflight, ProtocolError);
  assert.equal(server.sockets[0].closeCode, 1002);
  await until(() => client.status() === 'connected' && server.sockets.length === 2, 2000, 'reconnected');
  server.last.push('a text frame');
  assert.equal(server.sockets[1].closeCode, 1003);
  await until(() => server.sockets.length === 3 && client.status() === 'connected', 2000, 'reconnected again');
  // A message only clients send is a violation too.
  server.last.push({ kind: 'heartbeat' });
  assert.equal(server.sockets[2].closeCode, 1002);
  assert.equal(errors.length, 3);
  assert.ok(errors.every((e) => e instanceof ProtocolError));
  await client.close();
});

test('first message must be AcceptConf', async (t) => {
  const server = new FakeServer({ autoAccept: false });
  const errors = [];
  const client = makeClient(t, server, { onError: (e) => errors.push(e) });
  client.connect().catch(() => {});
  await until(() => server.last?.readyState === 1);
  server.last.push({ kind: 'notifySessionClosed' });
  assert.match(errors[0].message, /first message/);
  assert.equal(server.sockets[0].closeCode, 1002);
  await client.close();
});

test('signals both ways', async (t) => {
  const server = new FakeServer();
  const seen = [];
  const client = makeClient(t, server, { onSignal: (s) => seen.push(['opt', s.name, s.encoding, s.text]) });
  const off = client.on('signal', (s) => seen.push(['on', s.name]));
  await client.connect();
  server.last.push({ kind: 'signal', name: 'notice', encoding: 'utf16', payload: encodeUtf16('ж😀') });
  off();
  server.last.push({ kind: 'signal', name: '', encoding: 'binary', payload: Uint8Array.of(1) });
  assert.deepEqual(seen, [
    ['opt', 'notice', 'utf16', 'ж😀'],
    ['on', 'notice'],
    ['opt', '', 'binary', '\u0001'],
  ]);
  await client.signal('ping', 'p');
  await client.signal('ping', 'p', { encoding: 'utf16' });
  await client.signal('', Uint8Array.of(7));
  assert.deepEqual(server.last.raw.map((b) => [...b]), [
    [64, 4, 112, 105, 110, 103, 112],
    [65, 4, 112, 105, 110, 103, 112, 0],
    [63, 0, 7],
  ]);
  await assert.rejects(client.signal('', ''), RangeError);
  await assert.rejects(client.signal('bad\u00e9', 'x'), TypeError);
  await client.close();
});

test('sessions: created and closed by the server, snapshot and info, store', async (t) => {
  const server = new FakeServer();
  const store = new MemorySessionStore();
  const events = [];
  const client = makeClient(t, server, {
    sessionStore: store,
    onSessionCreated: (s) => events.push(['created', s.key]),
    onSessionClosed: () => events.push(['closed']),
  });
  await client.connect();
  assert.equal(client.session(), null);
  assert.equal(client.sessionInfo('user'), undefined);
  server.last.push({ kind: 'notifySessionCreated', sessionJson: SESSION_JSON('K1') });
  const s = client.session();
  assert.equal(s.key, 'K1');
  assert.ok(s.creation instanceof Date);
  assert.equal(s.lastLookup.toISOString(), '2026-01-02T03:04:06.000Z');
  assert.deepEqual(s.info, { user: 'alice' });
  s.info.user = 'mallory';
  assert.equal(client.sessionInfo('user'), 'alice', 'snapshots are copies');
  assert.equal(client.sessionInfo('missing'), undefined);
  assert.equal(store.load(), 'K1');
  server.last.push({ kind: 'notifySessionClosed' });
  assert.equal(client.session(), null);
  assert.equal(store.load(), null);
  assert.deepEqual(events, [['created', 'K1'], ['closed']]);
  await client.close();
});

test('restoreSession: success, not found, and the wire format', async (t) => {
  const server = new FakeServer({
    handler: (socket, msg) => {
      if (msg.kind !== 'requestRestoreSession') return;
      const key = text(msg.key);
      if (key === 'good') socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new TextEncoder().encode(SESSION_JSON('good', 'bob')) });
      else if (key === 'full') socket.push({ kind: 'replyMaxSessConnsReached', id: msg.id });
      else socket.push({ kind: 'replySessionNotFound', id: msg.id });
    },
  });
  const restored = [];
  const client = makeClient(t, server, { onSessionRestored: (s) => restored.push(s.key) });
  await client.connect();
  await assert.rejects(client.restoreSession('nope'), SessionNotFound);
  await assert.rejects(client.restoreSession('full'), MaxSessConnsReached);
  await assert.rejects(client.restoreSession(''), SessionNotFound);
  const s = await client.restoreSession('good');
  assert.equal(s.key, 'good');
  assert.equal(client.sessionInfo('user'), 'bob');
  assert.deepEqual(restored, ['good']);
  const raw = server.last.raw.at(-1);
  assert.equal(raw[0], 32);
  assert.equal(text(raw.subarray(9)), 'good');
  await client.close();
});

test('closeSession sends type 31 and forgets the session', async (t) => {
  const server = new FakeServer();
  const store = new MemorySessionStore();
  let closed = 0;
  const client = makeClient(t, server, { sessionStore: store, onSessionClosed: () => closed++ });
  await client.connect();
  server.last.push({ kind: 'notifySessionCreated', sessionJson: SESSION_JSON('K') });
  await client.closeSession();
  assert.equal(server.last.raw.at(-1).length, 9);
  assert.equal(server.last.raw.at(-1)[0], 31);
  assert.equal(client.session(), null);
  assert.equal(store.load(), null);
  assert.equal(closed, 1);
  server.handler = (socket, msg) => socket.push({ kind: 'replySessionsDisabled', id: msg.id });
  await assert.rejects(client.closeSession(), SessionsDisabled);
  await client.close();
});

test('the session is restored automatically after a reconnect, before queued calls', async (t) => {
  const server = new FakeServer({
    handler: (socket, msg) => {
      if (msg.kind === 'requestRestoreSession') {
        socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new TextEncoder().encode(SESSION_JSON(text(msg.key))) });
      } else if (msg.kind === 'request') {
        socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: msg.payload });
      }
    },
  });
  const restored = [];
  const client = makeClient(t, server, { onSessionRestored: (s) => restored.push(s.key) });
  await client.connect();
  server.last.push({ kind: 'notifySessionCreated', sessionJson: SESSION_JSON('KEY') });
  server.refuse = true;
  server.last.drop();
  await until(() => client.status() === 'disconnected');
  const queued = client.request('q', 'queued');
  await sleep(30);
  server.refuse = false;
  assert.equal((await queued).text, 'queued');
  const kinds = server.last.received.map((m) => m.kind);
  assert.deepEqual(kinds.slice(0, 2), ['requestRestoreSession', 'request']);
  assert.equal(text(server.last.received[0].key), 'KEY');
  assert.deepEqual(restored, ['KEY']);
  assert.equal(client.session().key, 'KEY');
  await client.close();
});

test('a stored key is restored on the first connection; a gone session is forgotten', async (t) => {
  const server = new FakeServer(); // answers every restore with SessionNotFound
  const store = new MemorySessionStore('OLD');
  const errors = [];
  let closedEvents = 0;
  const client = makeClient(t, server, { sessionStore: store, onError: (e) => errors.push(e), onSessionClosed: () => closedEvents++ });
  await client.connect();
  assert.equal(text(server.last.received[0].key), 'OLD');
  assert.equal(store.load(), null);
  assert.equal(client.session(), null);
  assert.ok(errors[0] instanceof SessionNotFound);
  assert.equal(closedEvents, 0, 'there was no session on this client yet');
  await client.close();
});

test('a localStorage-backed store carries the session to the next page load', async (t) => {
  const items = new Map();
  const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v), removeItem: (k) => items.delete(k) };
  const server = new FakeServer({
    handler: (socket, msg) => {
      if (msg.kind === 'requestRestoreSession') {
        socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new TextEncoder().encode(SESSION_JSON(text(msg.key), 'zoe')) });
      }
    },
  });
  const first = makeClient(t, server, { sessionStore: new LocalStorageSessionStore('webwire:app', storage) });
  await first.connect();
  server.last.push({ kind: 'notifySessionCreated', sessionJson: SESSION_JSON('PERSISTED') });
  assert.equal(items.get('webwire:app'), 'PERSISTED');
  await first.close();
  // "Reload": a new client on the same storage restores the session while connecting.
  const second = makeClient(t, server, { sessionStore: new LocalStorageSessionStore('webwire:app', storage) });
  await second.connect();
  assert.equal(second.session().key, 'PERSISTED');
  assert.equal(second.sessionInfo('user'), 'zoe');
  assert.equal(server.last.received[0].kind, 'requestRestoreSession');
});

test('close() is graceful: replies in flight arrive, waiting calls fail', async (t) => {
  const held = [];
  const server = new FakeServer({ handler: (s, m) => m.kind === 'request' && held.push([s, m]) });
  const client = makeClient(t, server);
  await client.connect();
  const inflight = client.request('slow', 'x');
  await until(() => held.length === 1);
  const closing = client.close();
  assert.equal(client.status(), 'closed');
  await assert.rejects(client.request('echo', 'late'), DisconnectedError);
  await sleep(10);
  assert.equal(server.last.readyState, 1, 'socket still open while a reply is due');
  const [socket, msg] = held[0];
  socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new TextEncoder().encode('done') });
  assert.equal((await inflight).text, 'done');
  await closing;
  assert.equal(server.last.closeCode, 1000);
  assert.equal(client.close(), closing, 'close is idempotent');
});

test('close() while waiting for a connection rejects the waiting calls', async (t) => {
  const server = new FakeServer({ refuse: true });
  const client = makeClient(t, server);
  const waiting = assert.rejects(client.request('echo', 'x'), DisconnectedError);
  const connecting = assert.rejects(client.connect(), DisconnectedError);
  await sleep(15);
  await client.close();
  await waiting;
  await connecting;
});

test('invalid arguments are rejected without sending', async (t) => {
  const server = new FakeServer();
  const client = makeClient(t, server);
  await client.connect();
  await assert.rejects(client.request('ж', 'x'), TypeError);
  await assert.rejects(client.request('', ''), RangeError);
  await assert.rejects(client.request('n'.repeat(256), 'x'), RangeError);
  assert.equal(server.last.raw.length, 0);
  await client.close();
});

test('a missing WebSocket implementation is reported', async (t) => {
  // Node 22 and later have a global WebSocket: hide it for this test, so
  // that it checks the same thing on every Node version.
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  if (saved) {
    delete globalThis.WebSocket;
    t.after(() => Object.defineProperty(globalThis, 'WebSocket', saved));
  }
  assert.equal(typeof globalThis.WebSocket, 'undefined');
  const client = new WebwireClient('ws://x/', { sessionStore: new MemorySessionStore() });
  await assert.rejects(client.connect(), /no WebSocket implementation/);
  assert.equal(client.status(), 'closed');
  await client.close();
});

test('connect() has a timeout and an abort signal', async (t) => {
  const server = new FakeServer({ refuse: true });
  const client = makeClient(t, server);
  await assert.rejects(client.connect({ timeout: 30 }), TimeoutError);
  const ac = new AbortController();
  const p = client.connect({ signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e) => e.name === 'AbortError');
  await client.close();
});

test('a handshake that never completes times out and is retried', async (t) => {
  const server = new FakeServer({ autoAccept: false });
  const client = makeClient(t, server, { connectTimeout: 30 });
  client.connect().catch(() => {});
  await until(() => server.sockets.length >= 2, 2000, 'a second attempt');
  assert.equal(server.sockets[0].closeCode, 1000);
  await client.close();
});
