// Integration tests against a live server implementing docs/interop.md.
//
// The server: WEBWIRE_URL if set; otherwise the project's interop server,
// started from the repository root with
//   cargo run --release -q -p webwire-interop -- serve --addr 127.0.0.1:0 --session-dir <tmp>
// whose stdout line `listening on ws://HOST:PORT/` gives the URL.
// Without WEBWIRE_URL and without tools/webwire-interop/Cargo.toml the tests
// skip with a printed reason. If the package exists but the server does not
// start, they skip too, except with CI=true, where they fail.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import {
  WebwireClient,
  MemorySessionStore,
  RequestError,
  InternalError,
  TimeoutError,
  MaxSessConnsReached,
  SessionNotFound,
  MessageTooLargeError,
  SubProtocolMismatch,
  Payload,
} from '../dist/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const INTEROP_MANIFEST = join(REPO_ROOT, 'tools', 'webwire-interop', 'Cargo.toml');
const CI = process.env.CI === 'true';
const START_TIMEOUT_MS = Number(process.env.WEBWIRE_SERVER_START_TIMEOUT_MS ?? 900_000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Starts the interop server; resolves with { url, child, sessionDir } or rejects with the reason. */
function startInteropServer() {
  const sessionDir = mkdtempSync(join(tmpdir(), 'webwire-ts-sessions-'));
  const child = spawn(
    'cargo',
    ['run', '--release', '-q', '-p', 'webwire-interop', '--', 'serve', '--addr', '127.0.0.1:0', '--session-dir', sessionDir],
    // Its own process group, so that the server under `cargo run` can be stopped with the group.
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  return new Promise((resolve, reject) => {
    let stdout = '';
    const fail = (why) => {
      clearTimeout(timer);
      stopServer({ child, sessionDir });
      reject(new Error(`${why}\n--- server stderr (tail) ---\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`the interop server did not print its address within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    child.on('error', (e) => fail(`could not run cargo: ${e.message}`));
    child.on('exit', (code, signal) => fail(`the interop server exited early (code ${code}, signal ${signal})`));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const m = /listening on (ws:\/\/\S+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({ url: m[1], child, sessionDir });
      }
    });
  });
}

async function stopServer(server) {
  const { child, sessionDir } = server;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(sessionDir, { recursive: true, force: true });
}

// ---- find the server (top-level await: the decision to skip is made before the tests exist)
let url = process.env.WEBWIRE_URL || null;
let server = null;
let skipReason = false;
let startError = null;
if (url === null) {
  if (!existsSync(INTEROP_MANIFEST)) {
    skipReason = `no interop server: WEBWIRE_URL is unset and ${INTEROP_MANIFEST} does not exist`;
  } else {
    console.log(`starting the interop server (cargo run --release -p webwire-interop; the first build takes a while)`);
    try {
      server = await startInteropServer();
      url = server.url;
    } catch (e) {
      if (CI) startError = e;
      else skipReason = `the interop server did not start (set CI=true to fail instead): ${e.message.split('\n')[0]}`;
      if (!CI) console.log(e.message);
    }
  }
}
if (skipReason) console.log(`SKIP integration tests: ${skipReason}`);
else if (url) console.log(`integration tests against ${url}`);

if (startError) {
  test('the interop server starts', () => {
    throw startError;
  });
}

if (skipReason) {
  test('integration tests against an interop server', { skip: skipReason }, () => {});
}

if (!skipReason && startError === null) describe('interop server (docs/interop.md)', () => {
  const clients = [];

  /** A client for the interop server; closed after the suite. */
  function client(options = {}) {
    const c = new WebwireClient(url, {
      WebSocket,
      subProtocol: 'interop',
      sessionStore: new MemorySessionStore(),
      timeout: 15_000,
      reconnect: { initialDelay: 50, maxDelay: 1000 },
      ...options,
    });
    clients.push(c);
    return c;
  }

  /** Records a client's events. */
  function recorder(c) {
    const log = { signals: [], created: [], closed: 0, restored: [], statuses: [] };
    c.on('signal', (s) => log.signals.push(s));
    c.on('sessionCreated', (s) => log.created.push(s));
    c.on('sessionClosed', () => log.closed++);
    c.on('sessionRestored', (s) => log.restored.push(s));
    c.on('status', (s) => log.statuses.push(s));
    return log;
  }

  const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

  // The heartbeat test's client connects first and stays idle while the
  // other tests run; the last test checks it is still connected more than
  // one read timeout later, so the wait costs (almost) nothing.
  let idle;
  before(async () => {
    const c = client();
    idle = { client: c, log: recorder(c) };
    await c.connect();
    idle.connectedAt = Date.now();
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close({ force: true })));
    if (server) await stopServer(server);
  });

  test('accept-conf: protocol 2.x, read timeout 3000 ms, buffer 1 MiB, sub-protocol interop', async () => {
    const c = client();
    await c.connect();
    // Any 2.x: a server announces the extensions it speaks in the minor
    // version (docs/protocol.md 14).
    const info = c.serverInfo();
    assert.equal(info.major, 2);
    assert.ok(Number.isInteger(info.minor) && info.minor >= 0, `minor ${info.minor}`);
    assert.deepEqual({ ...info, minor: 0 }, { major: 2, minor: 0, readTimeoutMs: 3000, bufferSize: 1048576, subProtocol: 'interop' });
  });

  test('webwire 2.1 only where announced: opted in on minor >= 1, a 2.0 connection on minor 0', async () => {
    const c = client();
    await c.connect();
    const ext = c.extensionInfo();
    if (c.serverInfo().minor === 0) {
      assert.equal(ext, null);
      return;
    }
    assert.ok(ext !== null, 'opted in');
    assert.equal(ext.flags & ~3, 0, 'only flags asked for are granted');
    if (ext.flags & 2) assert.notEqual(ext.ledgerEpoch, 0n);
    // With a session, requests are keyed (where granted) and answered as before.
    await c.request('login', unique('dave'));
    assert.equal((await c.request('echo', 'keyed')).text, 'keyed');
    assert.deepEqual(c.pendingKeyed(), []);
    await c.request('logout', '');
  });

  test('a client expecting another sub-protocol refuses the server and stays closed', async () => {
    const c = client({ subProtocol: 'not-interop' });
    await assert.rejects(c.connect(), (e) => e instanceof SubProtocolMismatch && e.actual === 'interop');
    assert.equal(c.status(), 'closed');
  });

  test('echo in three encodings, named and unnamed', async () => {
    const c = client();
    const r1 = await c.request('echo', 'hello');
    assert.equal(r1.encoding, 'utf8');
    assert.equal(r1.text, 'hello');
    const r2 = await c.request('echo', 'hello', { encoding: 'utf16' });
    assert.equal(r2.encoding, 'utf16');
    assert.equal(r2.text, 'hello');
    const r3 = await c.request('echo', Uint8Array.of(0, 1, 254, 255));
    assert.equal(r3.encoding, 'binary');
    assert.deepEqual([...r3.data], [0, 1, 254, 255]);
    const r4 = await c.request('', 'unnamed', { encoding: 'utf16' });
    assert.equal(r4.encoding, 'utf16');
    assert.equal(r4.text, 'unnamed');
    const r5 = await c.request('echo', '');
    assert.equal(r5.encoding, 'utf8');
    assert.equal(r5.data.length, 0);
    const r6 = await c.request('abc', 'odd name', { encoding: 'utf16' }).catch((e) => e);
    assert.ok(r6 instanceof RequestError && r6.code === 'UNKNOWN_REQUEST', 'an odd-length name is padded correctly');
  });

  test('Cyrillic and emoji in UTF-8 and UTF-16', async () => {
    const c = client();
    const s = 'Привет, мир! Ёлка 😀👍🏽 🇺🇦';
    for (const encoding of ['utf8', 'utf16']) {
      const r = await c.request('echo', s, { encoding });
      assert.equal(r.encoding, encoding);
      assert.equal(r.text, s);
      await assert.rejects(c.request('error', s, { encoding }), (e) => e instanceof RequestError && e.message === `interop error: ${s}`);
    }
  });

  test('error, internal and unknown requests', async () => {
    const c = client();
    await assert.rejects(c.request('error', 'boom'), (e) => e instanceof RequestError && e.code === 'INTEROP_ERROR' && e.message === 'interop error: boom');
    await assert.rejects(c.request('internal', 'x'), InternalError);
    await assert.rejects(c.request('no-such-request', 'x'), (e) => e instanceof RequestError && e.code === 'UNKNOWN_REQUEST');
    assert.equal((await c.request('echo', 'still fine')).text, 'still fine');
  });

  test('login, whoami, logout with session notifications', async () => {
    const c = client();
    const log = recorder(c);
    assert.equal((await c.request('whoami', '')).text, 'anonymous');
    assert.equal((await c.request('session-connections', '')).text, '0');
    const key = (await c.request('login', 'alice')).text;
    assert.ok(key.length > 0);
    assert.equal(log.created.length, 1);
    assert.equal(log.created[0].key, key);
    const s = c.session();
    assert.equal(s.key, key);
    assert.ok(s.creation instanceof Date && !Number.isNaN(s.creation.getTime()));
    assert.ok(s.lastLookup instanceof Date);
    assert.deepEqual(s.info, { user: 'alice' });
    assert.equal(c.sessionInfo('user'), 'alice');
    assert.equal((await c.request('whoami', '')).text, 'alice');
    assert.equal((await c.request('session-connections', '')).text, '1');
    await assert.rejects(c.request('login', 'bob'), InternalError, 'a second login on one connection fails');
    assert.equal((await c.request('logout', '')).text, 'ok');
    assert.equal(log.closed, 1);
    assert.equal(c.session(), null);
    assert.equal((await c.request('whoami', '')).text, 'anonymous');
    assert.equal((await c.request('logout', '')).text, 'ok', 'logout without a session is a no-op');
  });

  test('Cyrillic user name survives the session JSON', async () => {
    const c = client();
    await c.request('login', 'Алиса 😀', { encoding: 'utf16' });
    assert.equal(c.sessionInfo('user'), 'Алиса 😀');
    assert.equal((await c.request('whoami', '')).text, 'Алиса 😀');
    await c.closeSession();
    assert.equal(c.session(), null);
    assert.equal((await c.request('whoami', '')).text, 'anonymous');
  });

  test('signal-me: the notice signal arrives before the reply, in the request encoding', async () => {
    const c = client();
    const log = recorder(c);
    for (const [payload, encoding] of [['ж😀', 'utf16'], ['note', 'utf8']]) {
      const reply = await c.request('signal-me', payload, { encoding });
      assert.equal(reply.text, 'ok');
      const notice = log.signals.at(-1);
      assert.equal(notice?.name, 'notice');
      assert.equal(notice.encoding, encoding);
      assert.equal(notice.text, payload);
    }
    await c.request('signal-me', Uint8Array.of(7, 8));
    assert.equal(log.signals.at(-1).encoding, 'binary');
    assert.deepEqual([...log.signals.at(-1).data], [7, 8]);
  });

  test('ping signals are answered with pong signals, same payload and encoding', async () => {
    const c = client();
    const log = recorder(c);
    await c.signal('ping', 'p-utf8');
    await c.signal('ping', 'p-ютф16', { encoding: 'utf16' });
    await c.signal('ping', Uint8Array.of(1, 2, 3));
    await until(() => log.signals.filter((s) => s.name === 'pong').length === 3, 5000, 'three pongs');
    const pongs = log.signals.filter((s) => s.name === 'pong').map((s) => [s.encoding, s.encoding === 'binary' ? [...s.data] : s.text]);
    assert.deepEqual(
      pongs.sort((a, b) => a[0].localeCompare(b[0])),
      [
        ['binary', [1, 2, 3]],
        ['utf16', 'p-ютф16'],
        ['utf8', 'p-utf8'],
      ],
    );
  });

  test('record signals are counted by recorded', async () => {
    const c = client();
    assert.equal((await c.request('recorded', '')).text, '0');
    for (let i = 0; i < 5; i++) await c.signal('record', String(i));
    await c.signal('unknown-signal', 'ignored');
    // Signals are handled concurrently with requests: wait until all five are counted.
    await until(async () => (await c.request('recorded', '')).text === '5', 5000, 'five records');
    await sleep(50);
    assert.equal((await c.request('recorded', '')).text, '5');
    const other = client();
    assert.equal((await other.request('recorded', '')).text, '0', 'counted per connection');
  });

  test('sleep: a client timeout fires, the connection stays usable; bad input is a request error', async () => {
    const c = client();
    const started = Date.now();
    await assert.rejects(c.request('sleep', '600', { timeout: 200 }), TimeoutError);
    assert.ok(Date.now() - started < 600, 'the timeout did not wait for the reply');
    assert.equal((await c.request('echo', 'alive')).text, 'alive');
    assert.equal((await c.request('sleep', '10')).text, 'ok');
    await assert.rejects(c.request('sleep', 'soon'), (e) => e instanceof RequestError && e.code === 'BAD_SLEEP');
    await assert.rejects(c.request('sleep', '-5'), (e) => e instanceof RequestError && e.code === 'BAD_SLEEP');
    // The late reply to the timed-out request (after 0.6 s) is ignored.
    await sleep(Math.max(0, started + 800 - Date.now()));
    assert.equal(c.status(), 'connected');
    assert.equal((await c.request('echo', 'still')).text, 'still');
  });

  test('many requests in flight on one connection, handled at once, answered as they complete', async () => {
    const c = client();
    await c.connect();
    const calls = [];
    // The order in which the sleeps' replies arrive, by index.
    const order = [];
    const started = Date.now();
    for (let i = 0; i < 50; i++) {
      if (i % 5 === 0) {
        // Shorter and shorter: 600, 540, ... 60 ms (3.3 s one at a time).
        const ms = 600 - (i / 5) * 60;
        calls.push(c.request('sleep', String(ms)).then((r) => (order.push(i), r)));
      } else {
        calls.push(c.request('echo', `n${i}`, { encoding: i % 2 ? 'utf16' : 'utf8' }));
      }
    }
    const replies = await Promise.all(calls);
    const took = Date.now() - started;
    replies.forEach((r, i) => assert.equal(r.text, i % 5 === 0 ? 'ok' : `n${i}`));
    // All at once: about 600 ms; a generous bound well below 3.3 s.
    assert.ok(took < 2200, `50 requests with sleeps of 600 down to 60 ms took ${took} ms: not handled at once`);
    const sent = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45];
    assert.notDeepEqual(order, sent, 'the sleeps were answered in the order sent, although the later ones were shorter');
    assert.ok(order.indexOf(45) < order.indexOf(0), `the 60 ms sleep (sent last) was answered after the 600 ms one (sent first): ${order}`);
  });

  test('broadcast reaches every connected client, the caller included', async () => {
    const a = client();
    const b = client();
    const la = recorder(a);
    const lb = recorder(b);
    await b.connect();
    const msg = unique('hello all');
    assert.equal((await a.request('broadcast', msg)).text, 'ok');
    const got = (log) => log.signals.find((s) => s.name === 'broadcast' && s.text === msg);
    await until(() => got(la) && got(lb), 5000, 'broadcast on both clients');
    const msg16 = unique('всем');
    await a.request('broadcast', msg16, { encoding: 'utf16' });
    await until(() => got(lb) && lb.signals.find((s) => s.name === 'broadcast' && s.text === msg16), 5000, 'UTF-16 broadcast');
  });

  test('restore on a second connection; session-connections counts both', async () => {
    const a = client();
    const key = (await a.request('login', 'carol')).text;
    const b = client();
    const lb = recorder(b);
    await b.connect();
    const s = await b.restoreSession(key);
    assert.equal(s.key, key);
    assert.deepEqual(s.info, { user: 'carol' });
    assert.equal(lb.restored.length, 1);
    assert.equal((await b.request('whoami', '')).text, 'carol');
    assert.equal((await b.request('session-connections', '')).text, '2');
    await assert.rejects(b.restoreSession(key), (e) => e instanceof RequestError && e.code === 'SESSION_ACTIVE');
    const c = client();
    await assert.rejects(c.restoreSession('no-such-session-key'), SessionNotFound);
    await assert.rejects(c.restoreSession('bad key ✗'), SessionNotFound);
  });

  test('a fourth connection to a session is refused', async () => {
    const a = client();
    const key = (await a.request('login', 'dave')).text;
    const b = client();
    const c = client();
    await b.restoreSession(key);
    await c.restoreSession(key);
    assert.equal((await a.request('session-connections', '')).text, '3');
    const d = client();
    await assert.rejects(d.restoreSession(key), MaxSessConnsReached);
    assert.equal(d.session(), null);
    assert.equal((await d.request('whoami', '')).text, 'anonymous');
    // When one leaves, there is room again.
    await c.closeSession();
    assert.equal((await a.request('session-connections', '')).text, '2');
    await d.restoreSession(key);
    assert.equal((await d.request('whoami', '')).text, 'dave');
  });

  test('close-session-everywhere closes the session on every connection', async () => {
    const a = client();
    const la = recorder(a);
    const key = (await a.request('login', 'erin')).text;
    const b = client();
    const lb = recorder(b);
    await b.restoreSession(key);
    assert.equal((await a.request('close-session-everywhere', '')).text, '2');
    await until(() => la.closed === 1 && lb.closed === 1, 5000, 'session-closed on both');
    assert.equal(a.session(), null);
    assert.equal(b.session(), null);
    assert.equal((await b.request('whoami', '')).text, 'anonymous');
    assert.equal((await a.request('close-session-everywhere', '')).text, '0');
    const c = client();
    await assert.rejects(c.restoreSession(key), SessionNotFound, 'the session is destroyed');
  });

  test('disconnect-me: the client reconnects and restores its session', async () => {
    const c = client();
    const log = recorder(c);
    const key = (await c.request('login', 'frank')).text;
    assert.equal((await c.request('disconnect-me', '')).text, 'ok');
    await until(() => log.statuses.includes('disconnected'), 5000, 'the disconnection');
    // Calls made meanwhile wait for the new connection.
    assert.equal((await c.request('whoami', '')).text, 'frank');
    assert.equal(c.status(), 'connected');
    assert.equal(log.restored.length, 1);
    assert.equal(log.restored[0].key, key);
    assert.equal(c.session().key, key);
    assert.equal(log.closed, 0, 'the session survived the disconnection');
  });

  test('500 KB payloads in every encoding; above the buffer size is refused before sending', async () => {
    const c = client();
    const text8 = 'ж'.repeat(250 * 1024); // 500 KiB of UTF-8
    const r1 = await c.request('echo', text8);
    assert.equal(r1.data.length, 500 * 1024);
    assert.equal(r1.text, text8);
    const text16 = '😀'.repeat(128 * 1024); // 512 KiB of UTF-16
    const r2 = await c.request('echo', text16, { encoding: 'utf16' });
    assert.equal(r2.text, text16);
    const bin = new Uint8Array(500 * 1024).map((_, i) => (i * 31) & 0xff);
    const r3 = await c.request('echo', bin);
    assert.deepEqual(Buffer.from(r3.data), Buffer.from(bin));
    await assert.rejects(c.request('echo', new Uint8Array(1048576)), (e) => e instanceof MessageTooLargeError && e.limit === 1048576);
    assert.equal((await c.request('echo', Payload.utf8('after'))).text, 'after');
    assert.equal(c.status(), 'connected');
  });

  // Last: its client connected before the first test (see `before`).
  test('heartbeats keep an idle connection open beyond the 3 s read timeout', async () => {
    const { client: c, log, connectedAt } = idle;
    // 1.25 read timeouts since it connected, of which the other tests took most.
    await sleep(Math.max(0, connectedAt + 3750 - Date.now()));
    assert.equal(c.status(), 'connected');
    assert.ok(!log.statuses.includes('disconnected'), 'never disconnected');
    assert.equal((await c.request('echo', 'awake')).text, 'awake');
  });
});
