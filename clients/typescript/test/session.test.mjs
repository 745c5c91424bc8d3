import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseSessionJson,
  MemorySessionStore,
  LocalStorageSessionStore,
  defaultSessionStore,
  ProtocolError,
} from '../dist/index.js';

test('parses the session JSON of the vectors (nanosecond times)', () => {
  const s = parseSessionJson(
    '{"k":"key","c":"2026-01-02T03:04:05.123456789Z","l":"2026-01-02T03:04:06.5Z","i":{"user":"alice"}}',
  );
  assert.equal(s.key, 'key');
  assert.ok(s.creation instanceof Date);
  assert.equal(s.creation.toISOString(), '2026-01-02T03:04:05.123Z');
  assert.equal(s.lastLookup.toISOString(), '2026-01-02T03:04:06.500Z');
  assert.deepEqual(s.info, { user: 'alice' });
});

test('info is optional; offsets and missing fractions are accepted', () => {
  const s = parseSessionJson('{"k":"a","c":"2026-01-02T03:04:05Z","l":"2026-01-02T05:04:05+02:00"}');
  assert.equal(s.info, null);
  assert.equal(s.creation.getTime(), s.lastLookup.getTime());
});

test('malformed session JSON is a ProtocolError', () => {
  for (const bad of [
    'not json',
    '[]',
    '{"c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z"}',
    '{"k":"","c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z"}',
    '{"k":"a","c":"yesterday","l":"2026-01-02T03:04:05Z"}',
    '{"k":"a","c":"2026-13-02T03:04:05Z","l":"2026-01-02T03:04:05Z"}',
    '{"k":"a","c":"2026-01-02T03:04:05Z"}',
    '{"k":"a","c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z","i":[1]}',
    '{"k":"a","c":"2026-01-02T03:04:05Z","l":"2026-01-02T03:04:05Z","i":"x"}',
  ]) {
    assert.throws(() => parseSessionJson(bad), ProtocolError, bad);
  }
});

test('memory store', () => {
  const s = new MemorySessionStore();
  assert.equal(s.load(), null);
  s.save('k1');
  assert.equal(s.load(), 'k1');
  s.clear();
  assert.equal(s.load(), null);
});

class FakeStorage {
  map = new Map();
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test('localStorage store uses one item', () => {
  const storage = new FakeStorage();
  const s = new LocalStorageSessionStore('webwire:test', storage);
  s.save('abc');
  assert.equal(storage.getItem('webwire:test'), 'abc');
  assert.equal(s.load(), 'abc');
  s.clear();
  assert.equal(s.load(), null);
});

test('default store: localStorage when present and usable, memory otherwise', () => {
  assert.ok(defaultSessionStore('ws://x/') instanceof MemorySessionStore);
  const storage = new FakeStorage();
  globalThis.localStorage = storage;
  try {
    const s = defaultSessionStore('ws://x/');
    assert.ok(s instanceof LocalStorageSessionStore);
    assert.equal(s.itemName, 'webwire:ws://x/');
    globalThis.localStorage = { getItem() {}, setItem() { throw new Error('quota'); }, removeItem() {} };
    assert.ok(defaultSessionStore('ws://x/') instanceof MemorySessionStore);
  } finally {
    delete globalThis.localStorage;
  }
});
