// The client's webwire 2.1 (docs/protocol.md 14) against a scripted fake
// 2.1 server: opt-in and fallback, keyed requests across reconnects, streams,
// page reloads and duplicated tabs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WebwireClient,
  MemorySessionStore,
  OutcomeUnknownError,
  ProtocolError,
  QueueFullError,
  RequestError,
  StreamSignal,
  TimeoutError,
  ExtensionFlags,
} from '../dist/index.js';
import { FakeServer, memoryStorage, sleep, until } from './fake-websocket.mjs';

const enc = new TextEncoder();
const text = (bytes) => new TextDecoder().decode(bytes);
const SESSION_JSON = (key) => JSON.stringify({ k: key, c: '2026-01-02T03:04:05Z', l: '2026-01-02T03:04:06Z', i: null });
const LEDGER = 0x1122334455667788n;
const E = 0xa1a2a3a4a5a6a7a8n;
const LOBBY = { kind: 'room', room: 'lobby' };
const SESSION = { kind: 'session' };

/**
 * A fake 2.1 server: grants what is asked (within `granted`), restores the
 * sessions in `sessions`, answers StreamResume with an empty reply, echoes
 * plain requests, and hands keyed requests to `onKeyed` (default: echo).
 */
function server21(options = {}) {
  const state = {
    granted: options.granted ?? 3,
    ledgerEpoch: options.ledgerEpoch ?? LEDGER,
    sessions: new Set(options.sessions ?? []),
    onKeyed: options.onKeyed ?? ((socket, msg) => socket.push({ kind: 'reply', id: msg.id, encoding: msg.encoding, payload: msg.payload })),
    onResume: options.onResume ?? ((socket, msg) => socket.push({ kind: 'reply', id: msg.id, encoding: 'binary', payload: new Uint8Array(0) })),
    onRestore: null,
  };
  const server = new FakeServer({
    accept: { minor: options.minor ?? 1 },
    handler: (socket, msg) => {
      switch (msg.kind) {
        case 'extensionHello': {
          const flags = msg.flags & state.granted;
          socket.push({ kind: 'extensionAccept', flags, ledgerEpoch: flags & ExtensionFlags.KeyedRequests ? state.ledgerEpoch : 0n });
          break;
        }
        case 'requestRestoreSession': {
          if (state.onRestore) {
            state.onRestore(socket, msg);
            break;
          }
          const key = text(msg.key);
          if (state.sessions.has(key)) socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode(SESSION_JSON(key)) });
          else socket.push({ kind: 'replySessionNotFound', id: msg.id });
          break;
        }
        case 'streamResume':
          state.onResume(socket, msg);
          break;
        case 'keyedRequest':
          state.onKeyed(socket, msg);
          break;
        case 'request':
          socket.push({ kind: 'reply', id: msg.id, encoding: msg.encoding, payload: msg.payload });
          break;
        case 'requestCloseSession':
          socket.push({ kind: 'reply', id: msg.id, encoding: 'binary', payload: new Uint8Array(0) });
          break;
        default:
      }
    },
  });
  server.state = state;
  /** Creates session `key` on the current connection. */
  server.login = (key) => {
    state.sessions.add(key);
    server.last.push({ kind: 'notifySessionCreated', sessionJson: SESSION_JSON(key) });
  };
  return server;
}

function makeClient(t, server, options = {}) {
  const client = new WebwireClient('ws://fake/', {
    WebSocket: server.WebSocket,
    sessionStore: new MemorySessionStore(),
    resumeStorage: null,
    pageLifecycle: null,
    reconnect: { initialDelay: 10, maxDelay: 40, jitter: 0 },
    timeout: 5000,
    ...options,
  });
  t.after(() => client.close({ force: true }));
  return client;
}

const kinds = (socket) => socket.received.map((m) => m.kind);
const signal = (stream, offset, name = 'm', epoch = E) => ({
  kind: 'streamSignal',
  stream,
  epoch,
  offset: BigInt(offset),
  name,
  encoding: 'utf8',
  payload: enc.encode(`#${offset}`),
});

// ---------------------------------------------------------------- opt-in and fallback

test('2.1 server: ExtensionHello first (both features, a printable instance id), nothing else before ExtensionAccept', async (t) => {
  let held = null;
  const server = server21();
  const hello = server.state;
  const client = makeClient(t, server);
  // Hold the accept back to see what the client sends meanwhile.
  server.handler = ((inner) => (socket, msg) => (msg.kind === 'extensionHello' ? (held = [socket, msg]) : inner(socket, msg)))(server.handler);
  const early = client.request('echo', 'early');
  await until(() => held !== null);
  await sleep(20);
  assert.deepEqual(kinds(server.last), ['extensionHello']);
  const [socket, msg] = held;
  assert.equal(msg.flags, 3);
  assert.match(msg.instanceId, /^[\x20-\x7e]{16,64}$/);
  assert.equal(msg.instanceId, client.instanceId);
  assert.equal(client.status(), 'connecting');
  socket.push({ kind: 'extensionAccept', flags: 3, ledgerEpoch: hello.ledgerEpoch });
  assert.equal((await early).text, 'early');
  assert.deepEqual(kinds(server.last), ['extensionHello', 'request'], 'no session: a plain request');
  assert.deepEqual(client.extensionInfo(), { flags: 3, ledgerEpoch: LEDGER });
  await client.close();
});

test('no heartbeat while ExtensionAccept is awaited, heartbeats again after it', async (t) => {
  let held = null;
  const server = server21({ minor: 1 });
  server.accept.readTimeoutMs = 40; // a heartbeat after 30 ms of silence
  server.handler = ((inner) => (socket, msg) => (msg.kind === 'extensionHello' ? (held = [socket, msg]) : inner(socket, msg)))(server.handler);
  const client = makeClient(t, server);
  const connected = client.connect();
  await until(() => held !== null);
  await sleep(120);
  assert.deepEqual(kinds(server.last), ['extensionHello']);
  held[0].push({ kind: 'extensionAccept', flags: 3, ledgerEpoch: LEDGER });
  await connected;
  await until(() => kinds(server.last).includes('heartbeat'), 2000, 'a heartbeat');
  await client.close();
});

test('2.0 server: no ExtensionHello, requests stay plain with a session', async (t) => {
  const server = server21({ minor: 0 });
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  await client.request('echo', 'x');
  assert.deepEqual(kinds(server.last), ['request']);
  assert.equal(client.extensionInfo(), null);
  await client.close();
});

test('extensions: false is a 2.0 client on a 2.1 server; a higher minor is accepted', async (t) => {
  const server = server21();
  const client = makeClient(t, server, { extensions: false });
  await client.connect();
  server.login('K');
  await client.request('echo', 'x');
  assert.deepEqual(kinds(server.last), ['request']);
  const later = server21({ minor: 7 });
  const other = makeClient(t, later);
  await other.connect();
  assert.deepEqual(kinds(later.last), ['extensionHello']);
  await client.close();
  await other.close();
});

test('a server that grants nothing: an opted-in connection without features', async (t) => {
  const server = server21({ granted: 0 });
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  await client.request('echo', 'x');
  assert.deepEqual(kinds(server.last), ['extensionHello', 'request']);
  assert.deepEqual(client.extensionInfo(), { flags: 0, ledgerEpoch: 0n });
  await client.close();
});

test('extension messages the client did not opt into, or not granted, or out of place: close 1002', async (t) => {
  const cases = [
    // [server options, what to push after connecting]
    [{ minor: 0 }, { kind: 'replyOutcomeUnknown', id: new Uint8Array(8) }, /did not opt in/],
    [{ minor: 0 }, { kind: 'extensionAccept', flags: 0, ledgerEpoch: 0n }, /did not opt in/],
    [{}, { kind: 'extensionAccept', flags: 3, ledgerEpoch: 1n }, /second extensionAccept/],
    [{ granted: 2 }, signal(LOBBY, 1), /not granted/],
    [{ granted: 2 }, { kind: 'streamLoss', stream: LOBBY, epoch: 0n, lostFrom: 0n, lostTo: 0n, next: 0n, reason: 'unknownStream' }, /not granted/],
    [{ granted: 1 }, { kind: 'replyOutcomeUnknown', id: new Uint8Array(8) }, /not granted/],
  ];
  for (const [options, push, pattern] of cases) {
    const server = server21(options);
    const errors = [];
    const client = makeClient(t, server, { onError: (e) => errors.push(e) });
    await client.connect();
    server.last.push(push);
    assert.equal(server.sockets[0].closeCode, 1002, `${push.kind} with ${JSON.stringify(options)}`);
    assert.ok(errors[0] instanceof ProtocolError);
    assert.match(errors[0].message, pattern);
    await client.close();
  }
});

test('ExtensionAccept granting a flag not asked for, or keyed requests with ledger epoch 0, or anything before it: close 1002', async (t) => {
  const pushes = [
    [{ kind: 'extensionAccept', flags: 4, ledgerEpoch: 0n }, /not asked for/],
    [{ kind: 'extensionAccept', flags: 2, ledgerEpoch: 0n }, /ledger epoch 0/],
    [signal(LOBBY, 1), /before extensionAccept/],
  ];
  for (const [push, pattern] of pushes) {
    const server = server21();
    server.handler = (socket, msg) => msg.kind === 'extensionHello' && socket.push(push);
    const errors = [];
    const client = makeClient(t, server, { onError: (e) => errors.push(e) });
    client.connect().catch(() => {});
    await until(() => errors.length > 0);
    assert.equal(server.sockets[0].closeCode, 1002);
    assert.match(errors[0].message, pattern);
    await client.close();
  }
});

test('2.0 messages before ExtensionAccept are accepted (a signal from the on-connect hook)', async (t) => {
  const server = server21();
  const inner = server.handler;
  server.handler = (socket, msg) => {
    if (msg.kind === 'extensionHello') socket.push({ kind: 'signal', name: 'hi', encoding: 'utf8', payload: enc.encode('x') });
    inner(socket, msg);
  };
  const seen = [];
  const client = makeClient(t, server, { onSignal: (s) => seen.push(s.name) });
  await client.connect();
  assert.deepEqual(seen, ['hi']);
  assert.equal(server.sockets.length, 1);
  await client.close();
});

// ---------------------------------------------------------------- keyed requests

test('with a session, requests are keyed: seq from 1, the ledger epoch, ack = lowest pending - 1', async (t) => {
  const held = [];
  const server = server21({ onKeyed: (socket, msg) => held.push([socket, msg]) });
  const client = makeClient(t, server);
  await client.connect();
  await client.request('echo', 'before login');
  server.login('K');
  const a = client.request('a', 'A');
  const b = client.request('b', 'B');
  await until(() => held.length === 2);
  assert.deepEqual(
    held.map(([, m]) => [m.seq, m.epoch, m.ack, m.name]),
    [
      [1n, LEDGER, 0n, 'a'],
      [2n, LEDGER, 0n, 'b'],
    ],
  );
  // Answer b first: ack stays at 0 while seq 1 is pending.
  held[1][0].push({ kind: 'reply', id: held[1][1].id, encoding: 'utf8', payload: enc.encode('rb') });
  assert.equal((await b).text, 'rb');
  const c = client.request('c', 'C');
  await until(() => held.length === 3);
  assert.deepEqual([held[2][1].seq, held[2][1].ack], [3n, 0n]);
  held[0][0].push({ kind: 'reply', id: held[0][1].id, encoding: 'utf8', payload: enc.encode('ra') });
  assert.equal((await a).text, 'ra');
  const d = client.request('d', 'D');
  await until(() => held.length === 4);
  assert.deepEqual([held[3][1].seq, held[3][1].ack], [4n, 2n], 'seq 1 and 2 answered, 3 pending');
  for (const [socket, msg] of held.slice(2)) socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new Uint8Array(0) });
  await Promise.all([c, d]);
  assert.equal(server.last.received[0].kind, 'extensionHello');
  assert.equal(server.last.received[1].kind, 'request', 'the request before the login was plain');
  assert.deepEqual(client.pendingKeyed(), []);
  await client.close();
});

test('the connection drops before the answer: the request is sent again after the restore, same seq and epoch, and answered once', async (t) => {
  let runs = 0;
  const server = server21({
    onKeyed: (socket, msg) => {
      runs++;
      if (runs === 1) {
        socket.drop(); // the answer is lost with the connection
        return;
      }
      socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('stored') });
    },
  });
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  const reply = await client.request('pay', '10 EUR');
  assert.equal(reply.text, 'stored');
  assert.equal(server.sockets.length, 2);
  const second = server.sockets[1].received;
  assert.deepEqual(second.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest']);
  assert.equal(text(second[1].key), 'K');
  assert.deepEqual(second[2].entries, [], 'an empty StreamResume ends the hold');
  const first = server.sockets[0].received.find((m) => m.kind === 'keyedRequest');
  assert.deepEqual([second[3].seq, second[3].epoch, second[3].name, text(second[3].payload)], [first.seq, first.epoch, 'pay', '10 EUR']);
  assert.notDeepEqual([...second[3].id], [...first.id], 'a new request id');
  await client.close();
});

test('the ledger epoch changed (the server lost its state): a sent request fails with OutcomeUnknownError, never sent again', async (t) => {
  const server = server21({ sessions: ['K'] });
  server.state.onKeyed = (socket) => {
    server.state.ledgerEpoch = 99n; // a restart: the answer and the ledger are lost
    socket.drop();
  };
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  const p = client.request('pay', 'x');
  await assert.rejects(p, (e) => e instanceof OutcomeUnknownError && e.seq === 1n);
  await until(() => client.status() === 'connected');
  assert.equal(server.sockets[1].received.filter((m) => m.kind === 'keyedRequest').length, 0);
  // New requests are keyed under the new epoch, with the next seq.
  server.state.onKeyed = (socket, msg) => socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: new Uint8Array(0) });
  await client.request('next', 'y');
  const next = server.last.received.find((m) => m.kind === 'keyedRequest');
  assert.deepEqual([next.seq, next.epoch, next.ack], [2n, 99n, 1n]);
  await client.close();
});

test('ReplyOutcomeUnknown fails the call with OutcomeUnknownError; KEY_REUSED is a request error', async (t) => {
  const server = server21({
    onKeyed: (socket, msg) => {
      if (msg.name === 'unknown') socket.push({ kind: 'replyOutcomeUnknown', id: msg.id });
      else socket.push({ kind: 'replyError', id: msg.id, code: 'KEY_REUSED', message: '' });
    },
  });
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  await assert.rejects(client.request('unknown', 'x'), (e) => e instanceof OutcomeUnknownError && e.seq === 1n);
  await assert.rejects(client.request('reused', 'x'), (e) => e instanceof RequestError && e.code === 'KEY_REUSED');
  assert.equal(client.status(), 'connected');
  await client.close();
});

test('a reconnect to a 2.0 server: sent keyed requests fail with outcome unknown, queued ones go out as plain requests', async (t) => {
  const server = server21({ sessions: ['K'], onKeyed: (socket) => socket.drop() });
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  const sent = client.request('sent', 'x');
  await until(() => client.status() === 'disconnected');
  server.refuse = true;
  await sleep(15);
  const queued = client.request('queued', 'y');
  assert.equal(client.pendingKeyed().length, 2, 'the queued one already has its key');
  server.accept.minor = 0;
  server.refuse = false;
  await assert.rejects(sent, (e) => e instanceof OutcomeUnknownError && e.seq === 1n);
  assert.equal((await queued).text, 'y');
  assert.deepEqual(kinds(server.last), ['requestRestoreSession', 'request']);
  assert.deepEqual(client.pendingKeyed(), []);
  await client.close();
});

test('requests made while disconnected wait (bounded) and are sent once after the restore, in seq order', async (t) => {
  const server = server21();
  const client = makeClient(t, server, { maxQueued: 3 });
  await client.connect();
  server.login('K');
  server.refuse = true;
  server.last.drop();
  await until(() => client.status() === 'disconnected');
  const calls = [client.request('q1', '1'), client.signal('s', 'x'), client.request('q2', '2')];
  await assert.rejects(client.request('q3', '3'), (e) => e instanceof QueueFullError && e.limit === 3);
  server.refuse = false;
  const replies = await Promise.all(calls);
  assert.deepEqual([replies[0].text, replies[2].text], ['1', '2']);
  const got = server.last.received;
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest', 'keyedRequest', 'signal']);
  assert.deepEqual(got.filter((m) => m.kind === 'keyedRequest').map((m) => [m.seq, m.name]), [
    [1n, 'q1'],
    [2n, 'q2'],
  ]);
  await client.close();
});

test('a queued keyed request whose caller gives up before it is sent is dropped (its seq stays unused)', async (t) => {
  const server = server21();
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  server.refuse = true;
  server.last.drop();
  await until(() => client.status() === 'disconnected');
  await assert.rejects(client.request('late', 'x', { timeout: 20 }), TimeoutError);
  assert.deepEqual(client.pendingKeyed(), []);
  server.refuse = false;
  const r = client.request('next', 'y');
  await r;
  const keyed = server.last.received.filter((m) => m.kind === 'keyedRequest');
  assert.deepEqual(keyed.map((m) => [m.seq, m.ack]), [[2n, 1n]]);
  await client.close();
});

test('an answer whose caller is gone (timed out after sending) raises orphanedReply with its seq', async (t) => {
  const held = [];
  const server = server21({ onKeyed: (socket, msg) => held.push([socket, msg]) });
  const orphans = [];
  const client = makeClient(t, server, { onOrphanedReply: (o) => orphans.push(o) });
  await client.connect();
  server.login('K');
  await assert.rejects(client.request('slow', 'x', { timeout: 20 }), TimeoutError);
  assert.deepEqual(client.pendingKeyed().map((p) => [p.seq, p.written, p.awaited]), [[1n, true, false]]);
  const [socket, msg] = held[0];
  socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('done') });
  assert.equal(orphans.length, 1);
  assert.equal(orphans[0].seq, 1n);
  assert.equal(orphans[0].name, 'slow');
  assert.equal(orphans[0].request.text, 'x');
  assert.equal(orphans[0].reply.text, 'done');
  assert.equal(orphans[0].error, null);
  assert.deepEqual(client.pendingKeyed(), []);
  await client.close();
});

test('the restore finds the session gone: sent requests are resent without a session and answered before anything else; unsent ones fail', async (t) => {
  const log = [];
  let client;
  const server = server21({ sessions: ['K'], onKeyed: () => {} });
  const sessionEvents = [];
  client = makeClient(t, server, { onSessionClosed: () => sessionEvents.push('closed') });
  await client.connect();
  server.login('K');
  const stored = client.request('pay', 'x');
  const lost = client.request('other', 'o');
  await until(() => server.last.received.filter((m) => m.kind === 'keyedRequest').length === 2);
  // The session expires on the server, and the connection drops.
  server.state.sessions.delete('K');
  server.refuse = true;
  server.last.drop();
  await until(() => client.status() === 'disconnected');
  const never = client.request('never', 'n');
  server.state.onKeyed = (socket, msg) => {
    log.push(`keyed ${msg.seq}`);
    if (msg.seq === 1n) {
      // Meanwhile the application asks something: it must wait for the answers.
      client.request('echo', 'after').then((r) => log.push(`reply ${r.text}`));
      setTimeout(() => {
        log.push('answer 1');
        socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('paid') });
      }, 20);
    } else {
      log.push('answer 2');
      socket.push({ kind: 'replyError', id: msg.id, code: 'NO_SESSION', message: '' });
    }
  };
  const inner = server.handler;
  server.handler = (socket, msg) => {
    if (msg.kind === 'request') log.push('request');
    inner(socket, msg);
  };
  const lostFails = assert.rejects(lost, OutcomeUnknownError, 'NO_SESSION after a failed restore: outcome unknown');
  const neverFails = assert.rejects(never, OutcomeUnknownError, 'never sent, and never sent under another session');
  server.refuse = false;
  assert.equal((await stored).text, 'paid', 'answered from the closed session\'s ledger');
  await lostFails;
  await neverFails;
  await until(() => log.includes('reply after'));
  assert.deepEqual(log, ['keyed 1', 'keyed 2', 'answer 2', 'answer 1', 'request', 'reply after']);
  const got = server.last.received;
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest', 'keyedRequest', 'request']);
  assert.equal(text(got[1].key), 'K');
  assert.equal(client.session(), null);
  assert.deepEqual(sessionEvents, ['closed']);
  assert.deepEqual(client.pendingKeyed(), []);
  await client.close();
});

test('a keyed request that closes its own session (logout) and loses its answer: its retry names the closed session and gets the stored answer', async (t) => {
  const server = server21({ sessions: ['K'] });
  let first = true;
  server.state.onKeyed = (socket, msg) => {
    if (first) {
      first = false;
      server.state.sessions.delete('K');
      socket.push({ kind: 'notifySessionClosed' });
      socket.drop();
      return;
    }
    socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('bye') });
  };
  const errors = [];
  const client = makeClient(t, server, { onError: (e) => errors.push(e) });
  await client.connect();
  server.login('K');
  assert.equal((await client.request('logout', '')).text, 'bye');
  const got = server.last.received;
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest']);
  assert.equal(text(got[1].key), 'K', 'the stored key was cleared, but the ledger remembers the session');
  assert.equal(got[3].seq, 1n);
  assert.equal(errors.length, 0, 'the expected SessionNotFound is not reported');
  assert.equal(client.session(), null);
  // The next request has no session: a plain one.
  await client.request('echo', 'x');
  assert.equal(server.last.received.at(-1).kind, 'request');
  await client.close();
});

// ---------------------------------------------------------------- streams

test('stream signals: in order, duplicates dropped, a gap asks for one StreamResume and the repair fills it', async (t) => {
  const server = server21();
  const resumes = [];
  server.state.onResume = (socket, msg) => resumes.push([socket, msg]);
  const seen = [];
  const client = makeClient(t, server, { onSignal: (s) => seen.push(s) });
  await client.connect();
  server.login('K');
  const s = server.last;
  s.push(signal(LOBBY, 1));
  s.push(signal(LOBBY, 2));
  s.push(signal(LOBBY, 2));
  s.push(signal(LOBBY, 4));
  s.push(signal(LOBBY, 5));
  assert.equal(resumes.length, 1, 'one resume for the gap');
  assert.deepEqual(resumes[0][1].entries, [{ stream: LOBBY, epoch: E, offset: 2n }]);
  // The repair: 3, 4, 5 then the answer; live 6 follows.
  s.push(signal(LOBBY, 3));
  s.push(signal(LOBBY, 4));
  s.push(signal(LOBBY, 5));
  s.push({ kind: 'reply', id: resumes[0][1].id, encoding: 'binary', payload: new Uint8Array(0) });
  s.push(signal(LOBBY, 6));
  assert.deepEqual(seen.map((x) => x.offset), [1n, 2n, 3n, 4n, 5n, 6n]);
  assert.ok(seen[0] instanceof StreamSignal);
  assert.deepEqual([seen[0].name, seen[0].text, seen[0].stream, seen[0].epoch], ['m', '#1', LOBBY, E]);
  assert.deepEqual(client.streamPositions(), [{ stream: LOBBY, epoch: E, offset: 6n }]);
  // After the answer, a new gap asks again.
  s.push(signal(LOBBY, 9));
  assert.equal(resumes.length, 2);
  await client.close();
});

test('after a reconnect: RequestRestoreSession, then StreamResume listing every position; stream signals resume without a duplicate', async (t) => {
  const server = server21({ sessions: ['K'] });
  const seen = [];
  const client = makeClient(t, server, { onSignal: (s) => seen.push(`${s.stream.kind}:${s.offset}`) });
  await client.connect();
  server.login('K');
  server.last.push(signal(LOBBY, 7));
  server.last.push(signal(SESSION, 12));
  server.state.onResume = (socket, msg) => {
    // What the server missed sending: lobby 8, 9 (and 7 again, a duplicate the client drops).
    socket.push(signal(LOBBY, 7));
    socket.push(signal(LOBBY, 8));
    socket.push(signal(LOBBY, 9));
    socket.push({ kind: 'reply', id: msg.id, encoding: 'binary', payload: new Uint8Array(0) });
  };
  server.last.drop();
  await until(() => server.sockets.length === 2 && client.status() === 'connected');
  const got = server.last.received;
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume']);
  assert.deepEqual(got[2].entries, [
    { stream: LOBBY, epoch: E, offset: 7n },
    { stream: SESSION, epoch: E, offset: 12n },
  ]);
  assert.deepEqual(seen, ['room:7', 'session:12', 'room:8', 'room:9']);
  await client.close();
});

test('StreamLoss raises streamLoss and moves the position; a TRIMMED range already held is ignored; UNKNOWN_STREAM forgets', async (t) => {
  const server = server21();
  const losses = [];
  const client = makeClient(t, server, { onStreamLoss: (l) => losses.push(l) });
  await client.connect();
  server.login('K');
  const s = server.last;
  s.push(signal(LOBBY, 20));
  s.push({ kind: 'streamLoss', stream: LOBBY, epoch: E, lostFrom: 1n, lostTo: 10n, next: 11n, reason: 'trimmed' });
  assert.equal(losses.length, 0);
  s.push({ kind: 'streamLoss', stream: LOBBY, epoch: 5n, lostFrom: 0n, lostTo: 0n, next: 1n, reason: 'epochChanged' });
  assert.deepEqual(losses, [{ stream: LOBBY, epoch: 5n, lostFrom: 0n, lostTo: 0n, next: 1n, reason: 'epochChanged' }]);
  assert.deepEqual(client.streamPositions(), [{ stream: LOBBY, epoch: 5n, offset: 0n }]);
  s.push({ kind: 'streamLoss', stream: LOBBY, epoch: 0n, lostFrom: 0n, lostTo: 0n, next: 0n, reason: 'unknownStream' });
  assert.equal(losses.length, 2);
  assert.deepEqual(client.streamPositions(), []);
  await client.close();
});

test('a StreamResume answered ReplyInternalError is tried again later', async (t) => {
  const server = server21({ sessions: ['K'] });
  let failures = 1;
  server.state.onResume = (socket, msg) => {
    if (failures-- > 0) socket.push({ kind: 'replyInternalError', id: msg.id });
    else socket.push({ kind: 'reply', id: msg.id, encoding: 'binary', payload: new Uint8Array(0) });
  };
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  server.last.push(signal(LOBBY, 1));
  server.last.drop();
  await until(() => server.sockets.length === 2 && server.last.received.filter((m) => m.kind === 'streamResume').length === 2, 2000, 'the retry');
  const [first, second] = server.last.received.filter((m) => m.kind === 'streamResume');
  assert.deepEqual(second.entries, first.entries);
  await client.close();
});

test('positions belong to the session: closed or not restored, they are forgotten', async (t) => {
  const server = server21();
  const client = makeClient(t, server);
  await client.connect();
  server.login('K');
  server.last.push(signal(LOBBY, 3));
  await client.closeSession();
  assert.deepEqual(client.streamPositions(), []);
  server.login('K2');
  server.last.push(signal(LOBBY, 4));
  server.state.sessions.clear();
  server.last.drop();
  await until(() => server.sockets.length === 2 && client.status() === 'connected');
  assert.deepEqual(client.streamPositions(), []);
  await client.close();
});

// ---------------------------------------------------------------- page reloads and duplicated tabs

/**
 * A page that dies: its client is left as it is (no close), its server
 * refuses from now on, and `pagehide` fires.
 */
function pageDies(server, page) {
  server.refuse = true;
  page.dispatchEvent(new Event('pagehide'));
  server.last.drop();
}

test('a reload: a new client over the same storage keeps the instance id, resumes the streams and resends the pending key; its answer is an orphanedReply', async (t) => {
  const storage = memoryStorage();
  const page1 = new EventTarget();
  const old = server21({ sessions: ['K'], onKeyed: () => {} });
  const sessionStore = new MemorySessionStore();
  const first = makeClient(t, old, { resumeStorage: storage, pageLifecycle: page1, sessionStore });
  await first.connect();
  old.login('K');
  old.last.push(signal(LOBBY, 41));
  first.request('send', 'hello').catch(() => {});
  await until(() => old.last.received.some((m) => m.kind === 'keyedRequest'));
  const sent = old.last.received.find((m) => m.kind === 'keyedRequest');
  pageDies(old, page1);

  const server = server21({ sessions: ['K'] });
  server.state.onKeyed = (socket, msg) => socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('stored') });
  const orphans = [];
  const second = makeClient(t, server, { resumeStorage: storage, pageLifecycle: new EventTarget(), sessionStore, onOrphanedReply: (o) => orphans.push(o) });
  assert.equal(second.instanceId, first.instanceId);
  assert.deepEqual(second.pendingKeyed().map((p) => [p.seq, p.name, p.written, p.awaited]), [[1n, 'send', true, false]]);
  await second.connect();
  await until(() => orphans.length === 1);
  const got = server.last.received;
  assert.equal(got[0].instanceId, first.instanceId);
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest']);
  assert.deepEqual(got[2].entries, [{ stream: LOBBY, epoch: E, offset: 41n }]);
  assert.deepEqual([got[3].seq, got[3].epoch, text(got[3].payload)], [sent.seq, sent.epoch, 'hello']);
  assert.deepEqual([orphans[0].seq, orphans[0].name, orphans[0].reply.text], [1n, 'send', 'stored']);
  // New requests continue the seq.
  await second.request('more', 'x');
  assert.equal(server.last.received.at(-1).seq, 2n);
  await second.close();
});

test('a request queued offline survives a reload and is sent once, keyed, after the restore', async (t) => {
  const storage = memoryStorage();
  const page1 = new EventTarget();
  const old = server21({ sessions: ['K'] });
  const sessionStore = new MemorySessionStore();
  const first = makeClient(t, old, { resumeStorage: storage, pageLifecycle: page1, sessionStore });
  await first.connect();
  old.login('K');
  old.refuse = true;
  old.last.drop();
  await until(() => first.status() === 'disconnected');
  first.request('typed offline', 'msg').catch(() => {});
  pageDies(old, page1);

  const server = server21({ sessions: ['K'] });
  const orphans = [];
  const second = makeClient(t, server, { resumeStorage: storage, pageLifecycle: new EventTarget(), sessionStore, onOrphanedReply: (o) => orphans.push(o) });
  assert.deepEqual(second.pendingKeyed().map((p) => [p.seq, p.name, p.written]), [[1n, 'typed offline', false]]);
  await second.connect();
  await until(() => orphans.length === 1);
  const keyed = server.last.received.filter((m) => m.kind === 'keyedRequest');
  assert.deepEqual(keyed.map((m) => [m.seq, m.epoch, m.ack, text(m.payload)]), [[1n, LEDGER, 0n, 'msg']]);
  assert.equal(orphans[0].reply.text, 'msg');
  assert.deepEqual(second.pendingKeyed(), []);
  await second.close();
});

test('a duplicated tab gets a fresh instance id and does not resend the copied pending keys', async (t) => {
  const storage = memoryStorage();
  const server = server21({ sessions: ['K'], onKeyed: () => {} });
  const sessionStore = new MemorySessionStore();
  const original = makeClient(t, server, { resumeStorage: storage, pageLifecycle: new EventTarget(), sessionStore });
  await original.connect();
  server.login('K');
  original.request('send', 'hello').catch(() => {});
  await until(() => server.last.received.some((m) => m.kind === 'keyedRequest'));
  await Promise.resolve();
  // The browser copies sessionStorage into the new tab; the original tab keeps running.
  const copy = memoryStorage(new Map(storage.items));
  const dup = makeClient(t, server, { resumeStorage: copy, pageLifecycle: new EventTarget(), sessionStore });
  assert.notEqual(dup.instanceId, original.instanceId);
  assert.deepEqual(dup.pendingKeyed(), []);
  await dup.connect();
  const got = server.last.received;
  assert.equal(got[0].instanceId, dup.instanceId);
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume']);
  await dup.close();
});

test('after a reload onto a 2.0 server: a stored request never sent goes out plain, a sent one is reported outcome unknown, both through orphanedReply', async (t) => {
  const storage = memoryStorage();
  const page1 = new EventTarget();
  const old = server21({ sessions: ['K'], onKeyed: () => {} });
  const sessionStore = new MemorySessionStore();
  const first = makeClient(t, old, { resumeStorage: storage, pageLifecycle: page1, sessionStore });
  await first.connect();
  old.login('K');
  first.request('sent', 'a').catch(() => {});
  await until(() => old.last.received.some((m) => m.kind === 'keyedRequest'));
  old.refuse = true;
  old.last.drop();
  await until(() => first.status() === 'disconnected');
  first.request('unsent', 'b').catch(() => {});
  pageDies(old, page1);

  const server = server21({ sessions: ['K'], minor: 0 });
  const orphans = [];
  const second = makeClient(t, server, { resumeStorage: storage, pageLifecycle: new EventTarget(), sessionStore, onOrphanedReply: (o) => orphans.push(o) });
  await second.connect();
  await until(() => orphans.length === 2);
  const bySeq = Object.fromEntries(orphans.map((o) => [o.name, o]));
  assert.ok(bySeq.sent.error instanceof OutcomeUnknownError);
  assert.equal(bySeq.sent.reply, null);
  assert.equal(bySeq.unsent.reply.text, 'b');
  assert.deepEqual(kinds(server.last), ['requestRestoreSession', 'request']);
  assert.deepEqual(second.pendingKeyed(), []);
  await second.close();
});

test('a manual restoreSession (autoRestore off) is followed by a StreamResume, and the pending keyed requests of that session are resent', async (t) => {
  const server = server21({ sessions: ['K'] });
  let first = true;
  server.state.onKeyed = (socket, msg) => {
    if (first) {
      first = false;
      socket.drop();
      return;
    }
    socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('ok') });
  };
  const client = makeClient(t, server, { autoRestore: false });
  await client.connect();
  server.login('K');
  server.last.push(signal(SESSION, 3));
  const p = client.request('x', 'y');
  await until(() => server.sockets.length === 2 && client.status() === 'connected');
  assert.deepEqual(kinds(server.last), ['extensionHello'], 'no automatic restore');
  await client.restoreSession('K');
  assert.equal((await p).text, 'ok');
  const got = server.last.received;
  assert.deepEqual(got.map((m) => m.kind), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest']);
  assert.deepEqual(got[2].entries, [{ stream: SESSION, epoch: E, offset: 3n }]);
  assert.equal(got[3].seq, 1n);
  await client.close();
});

test('STREAMS granted without KEYED_REQUESTS: stream signals with positions, plain requests', async (t) => {
  const server = server21({ granted: 1 });
  const seen = [];
  const client = makeClient(t, server, { onSignal: (s) => seen.push(s.offset) });
  await client.connect();
  server.login('K');
  server.last.push(signal(SESSION, 1));
  server.last.push(signal(SESSION, 1));
  await client.request('echo', 'x');
  assert.deepEqual(kinds(server.last), ['extensionHello', 'request']);
  assert.deepEqual(seen, [1n]);
  assert.deepEqual(client.extensionInfo(), { flags: 1, ledgerEpoch: 0n });
  await client.close();
});

test('reconnect: false: a keyed request in flight when the connection drops waits for connect(), which sends it again', async (t) => {
  const server = server21({ sessions: ['K'] });
  let first = true;
  server.state.onKeyed = (socket, msg) => {
    if (first) {
      first = false;
      socket.drop();
      return;
    }
    socket.push({ kind: 'reply', id: msg.id, encoding: 'utf8', payload: enc.encode('once') });
  };
  const client = makeClient(t, server, { reconnect: false });
  await client.connect();
  server.login('K');
  const p = client.request('x', 'y');
  await until(() => client.status() === 'disconnected');
  await sleep(20);
  assert.equal(server.sockets.length, 1);
  await client.connect();
  assert.equal((await p).text, 'once');
  assert.deepEqual(kinds(server.last), ['extensionHello', 'requestRestoreSession', 'streamResume', 'keyedRequest']);
  await client.close();
});
