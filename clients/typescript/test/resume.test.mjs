// The 2.1 state kept across page reloads, and duplicated-tab detection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResumeState, newInstanceId } from '../dist/index.js';
import { memoryStorage } from './fake-websocket.mjs';

const noError = (e) => {
  throw e;
};

test('instance ids: 22 printable characters of base64url, random', () => {
  const ids = new Set();
  for (let i = 0; i < 200; i++) {
    const id = newInstanceId();
    assert.match(id, /^[A-Za-z0-9_-]{22}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 200);
});

test('a reload (the old page was hidden first) keeps the instance id, the session, the positions and the pending keyed requests', async () => {
  const storage = memoryStorage();
  const page = new EventTarget();
  const a = new ResumeState(storage, 'item', page, noError);
  assert.equal(a.duplicated, false);
  a.session = 'K';
  a.streams.onSignal({ stream: { kind: 'room', room: 'lobby' }, epoch: 3n, offset: 4n });
  const e = a.ledger.assign('send', 'utf8', new TextEncoder().encode('hi'));
  a.ledger.markWritten(e, 9n);
  a.save();
  await Promise.resolve();
  assert.equal(JSON.parse(storage.getItem('item')).live, true);
  page.dispatchEvent(new Event('pagehide'));
  assert.equal(JSON.parse(storage.getItem('item')).live, false);

  const b = new ResumeState(storage, 'item', new EventTarget(), noError);
  assert.equal(b.duplicated, false);
  assert.equal(b.instanceId, a.instanceId);
  assert.equal(b.session, 'K');
  assert.deepEqual(b.streams.positions(), a.streams.positions());
  assert.deepEqual(b.ledger.pending(), a.ledger.pending());
  assert.equal(b.ledger.nextSeq, 2n);
  assert.equal(JSON.parse(storage.getItem('item')).live, true, 'the new page holds it now');
});

test('a duplicated tab (the state is held by a live page) mints a fresh id and drops the copied keyed requests', () => {
  const storage = memoryStorage();
  const a = new ResumeState(storage, 'item', new EventTarget(), noError);
  a.session = 'K';
  a.streams.onSignal({ stream: { kind: 'session' }, epoch: 3n, offset: 4n });
  a.ledger.assign('send', 'utf8', new Uint8Array(1));
  a.flush();
  // The browser copies sessionStorage into the new tab; the original still runs.
  const copy = memoryStorage(new Map(storage.items));
  const b = new ResumeState(copy, 'item', new EventTarget(), noError);
  assert.equal(b.duplicated, true);
  assert.notEqual(b.instanceId, a.instanceId);
  assert.equal(b.ledger.empty, true);
  assert.equal(b.ledger.nextSeq, 1n);
  assert.equal(b.session, 'K');
  assert.deepEqual(b.streams.positions(), a.streams.positions(), 'positions only say where to resume');
  // The original tab is untouched.
  assert.equal(JSON.parse(storage.getItem('item')).instanceId, a.instanceId);
});

test('pageshow (back from the page cache) holds the state again; release() lets go of it', () => {
  const storage = memoryStorage();
  const page = new EventTarget();
  const a = new ResumeState(storage, 'item', page, noError);
  page.dispatchEvent(new Event('pagehide'));
  page.dispatchEvent(new Event('pageshow'));
  assert.equal(JSON.parse(storage.getItem('item')).live, true);
  a.release();
  assert.equal(JSON.parse(storage.getItem('item')).live, false);
  page.dispatchEvent(new Event('pageshow'));
  assert.equal(JSON.parse(storage.getItem('item')).live, false, 'no longer listening');
});

test('unreadable or foreign stored state is replaced; storage failures are reported, not thrown', () => {
  for (const bad of ['{', '{"v":2,"instanceId":"aaaaaaaaaaaaaaaaaaaa"}', '{"v":1,"instanceId":"short"}', '{"v":1,"instanceId":"aaaaaaaaaaaaaaaa\\u0001"}']) {
    const storage = memoryStorage(new Map([['item', bad]]));
    const errors = [];
    const s = new ResumeState(storage, 'item', null, (e) => errors.push(e));
    assert.match(s.instanceId, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(s.duplicated, false);
    assert.equal(errors.length, bad === '{' ? 1 : 0);
  }
  const errors = [];
  const failing = { getItem: () => null, setItem: () => {
    throw new Error('quota');
  }, removeItem: () => {} };
  const s = new ResumeState(failing, 'item', null, (e) => errors.push(e));
  s.flush();
  assert.equal(errors.length, 2);
  assert.match(errors[0].message, /quota/);
});

test('without a storage the state lives in memory only', () => {
  const s = new ResumeState(null, 'item', null, noError);
  s.save();
  s.flush();
  assert.match(s.instanceId, /^[A-Za-z0-9_-]{22}$/);
});
