// Keyed requests' bookkeeping (docs/protocol.md 14.4, 14.5), sans-IO:
// KeyedLedger and the reconnect plan.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedLedger } from '../dist/index.js';

const bytes = (s) => new TextEncoder().encode(s);
const seqs = (list) => list.map((e) => e.seq);

test('seq from 1; ack = the lowest pending seq - 1, always below every pending seq', () => {
  const l = new KeyedLedger();
  assert.equal(l.ack(), 0n);
  const a = l.assign('a', 'utf8', bytes('1'));
  const b = l.assign('b', 'utf8', bytes('2'));
  const c = l.assign('c', 'binary', Uint8Array.of(3));
  assert.deepEqual(seqs([a, b, c]), [1n, 2n, 3n]);
  assert.equal(l.ack(), 0n);
  l.remove(2n);
  assert.equal(l.ack(), 0n, 'seq 1 still pending');
  l.remove(1n);
  assert.equal(l.ack(), 2n);
  l.remove(3n);
  assert.equal(l.ack(), 3n, 'nothing pending: everything given out is acknowledged');
  const d = l.assign('d', 'utf8', bytes('4'));
  assert.equal(d.seq, 4n);
  assert.ok(l.ack() < d.seq);
});

test('markWritten keeps the first epoch', () => {
  const l = new KeyedLedger();
  const e = l.assign('a', 'utf8', bytes('x'));
  assert.equal(e.epoch, null);
  assert.equal(e.written, false);
  l.markWritten(e, 5n);
  l.markWritten(e, 6n);
  assert.equal(e.epoch, 5n);
  assert.equal(e.written, true);
});

function ledgerWith() {
  const l = new KeyedLedger();
  const w5 = l.assign('w5', 'utf8', bytes('a'));
  l.markWritten(w5, 5n);
  const w6 = l.assign('w6', 'utf8', bytes('b'));
  l.markWritten(w6, 6n);
  const u = l.assign('u', 'utf8', bytes('c'));
  return { l, w5, w6, u };
}

test('plan: restored with keyed requests: resend those of the same epoch, fail the others, send the unsent new', () => {
  const { l } = ledgerWith();
  const p = l.plan(true, 5n, 'restored');
  assert.deepEqual(seqs(p.resend), [1n]);
  assert.deepEqual(seqs(p.failUnknown), [2n]);
  assert.deepEqual(seqs(p.sendNew), [3n]);
  assert.deepEqual([...p.sendPlain, ...p.keep], []);
});

test('plan: session not found: resend every written one (no session), fail the unsent', () => {
  const { l } = ledgerWith();
  const p = l.plan(true, 9n, 'notFound');
  assert.deepEqual(seqs(p.resend), [1n, 2n], 'epochs do not matter: the server answers from the closed ledger');
  assert.deepEqual(seqs(p.failUnknown), [3n]);
});

test('plan: a 2.0 connection: written ones fail, unsent ones go plain once restored', () => {
  const { l } = ledgerWith();
  let p = l.plan(false, 0n, 'restored');
  assert.deepEqual(seqs(p.failUnknown), [1n, 2n]);
  assert.deepEqual(seqs(p.sendPlain), [3n]);
  p = l.plan(false, 0n, 'notFound');
  assert.deepEqual(seqs(p.failUnknown), [1n, 2n, 3n]);
  p = l.plan(false, 0n, 'failed');
  assert.deepEqual(seqs(p.failUnknown), [1n, 2n]);
  assert.deepEqual(seqs(p.keep), [3n]);
});

test('plan: a restore that failed otherwise keeps everything pending', () => {
  const { l } = ledgerWith();
  const p = l.plan(true, 5n, 'failed');
  assert.deepEqual(seqs(p.keep), [1n, 2n, 3n]);
  assert.deepEqual([...p.resend, ...p.sendNew, ...p.failUnknown, ...p.sendPlain], []);
});

test('reset starts a new session at seq 1 and returns what was pending', () => {
  const { l } = ledgerWith();
  assert.deepEqual(seqs(l.reset()), [1n, 2n, 3n]);
  assert.equal(l.empty, true);
  assert.equal(l.assign('x', 'utf8', bytes('x')).seq, 1n);
});

test('stored form round-trips (payloads, epochs up to 2^64-1); the next seq never goes back', () => {
  const l = new KeyedLedger();
  const big = l.assign('big', 'binary', Uint8Array.from({ length: 70000 }, (_, i) => i & 255));
  l.markWritten(big, 2n ** 64n - 1n);
  l.assign('u16', 'utf16', Uint8Array.of(104, 0));
  l.assign('gone', 'utf8', bytes('g'));
  l.remove(3n);
  const stored = JSON.parse(JSON.stringify(l.toStored()));
  const m = new KeyedLedger();
  m.loadStored(stored.next, stored.entries);
  assert.deepEqual(m.pending(), l.pending());
  assert.equal(m.nextSeq, 4n);
  // A stored counter below a stored entry (a hand-edited or torn item) is raised.
  m.loadStored('1', stored.entries);
  assert.equal(m.nextSeq, 3n);
  m.loadStored(undefined, [{ seq: 'x' }, null, { seq: '0', name: 'a', encoding: 'utf8', payload: '' }, ...stored.entries.reverse()]);
  assert.deepEqual(seqs(m.pending()), [1n, 2n], 'sorted, bad entries skipped');
  // An entry stored as written without an epoch cannot be resent: it is read as never written.
  m.loadStored('5', [{ seq: '4', epoch: null, written: true, name: 'a', encoding: 'utf8', payload: '' }]);
  assert.equal(m.pending()[0].written, false);
});
