// The client's rule for stream signals (docs/protocol.md 14.3.3, 14.3.5),
// sans-IO: StreamTracker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamTracker, MAX_RESUME_STREAMS } from '../dist/index.js';
import { MAX_RESUME_STREAMS as CODEC_MAX, encodeMessage } from '../dist/codec.js';

const room = (name) => ({ kind: 'room', room: name });
const SESSION = { kind: 'session' };
const E = 7n;
const sig = (stream, offset, epoch = E) => ({ stream, epoch, offset: BigInt(offset) });
const loss = (stream, reason, { epoch = E, lostFrom = 0n, lostTo = 0n, next = 0n } = {}) => ({
  kind: 'streamLoss',
  stream,
  epoch,
  lostFrom,
  lostTo,
  next,
  reason,
});

test('in order: the first signal sets the position, then last + 1 is delivered', () => {
  const t = new StreamTracker();
  assert.deepEqual(t.onSignal(sig(room('a'), 5)), { deliver: true, resume: null });
  assert.deepEqual(t.onSignal(sig(room('a'), 6)), { deliver: true, resume: null });
  // Streams are independent.
  assert.deepEqual(t.onSignal(sig(SESSION, 1)), { deliver: true, resume: null });
  assert.deepEqual(t.positions(), [
    { stream: room('a'), epoch: E, offset: 6n },
    { stream: SESSION, epoch: E, offset: 1n },
  ]);
});

test('duplicates are dropped silently', () => {
  const t = new StreamTracker();
  t.onSignal(sig(room('a'), 1));
  t.onSignal(sig(room('a'), 2));
  assert.deepEqual(t.onSignal(sig(room('a'), 2)), { deliver: false, resume: null });
  assert.deepEqual(t.onSignal(sig(room('a'), 1)), { deliver: false, resume: null });
  assert.equal(t.positions()[0].offset, 2n);
});

test('a gap asks for one resume; while resuming, last + 1 flows, duplicates and other gaps are dropped without another resume', () => {
  const t = new StreamTracker();
  t.onSignal(sig(room('a'), 1));
  const first = t.onSignal(sig(room('a'), 3));
  assert.deepEqual(first, { deliver: false, resume: { stream: room('a'), epoch: E, offset: 1n } });
  assert.deepEqual(t.onSignal(sig(room('a'), 4)), { deliver: false, resume: null }, 'still a gap, no second resume');
  assert.deepEqual(t.onSignal(sig(room('a'), 2)), { deliver: true, resume: null }, 'the resume brings 2');
  assert.deepEqual(t.onSignal(sig(room('a'), 2)), { deliver: false, resume: null });
  assert.deepEqual(t.onSignal(sig(room('a'), 3)), { deliver: true, resume: null });
  t.resumeEnded([room('a')]);
  // A hole that appeared while resuming shows up with the next signal.
  assert.deepEqual(t.onSignal(sig(room('a'), 6)), { deliver: false, resume: { stream: room('a'), epoch: E, offset: 3n } });
});

test('another epoch is a gap', () => {
  const t = new StreamTracker();
  t.onSignal(sig(SESSION, 9));
  assert.deepEqual(t.onSignal(sig(SESSION, 10, 8n)), { deliver: false, resume: { stream: SESSION, epoch: E, offset: 9n } });
  // Even offset 1 of the other epoch is not delivered: the resume decides.
  assert.deepEqual(t.onSignal(sig(SESSION, 1, 8n)), { deliver: false, resume: null });
});

test('StreamLoss: TRIMMED moves the position unless the range is held; EPOCH_CHANGED and AHEAD move it; UNKNOWN_STREAM forgets', () => {
  const t = new StreamTracker();
  t.onSignal(sig(room('a'), 20));
  assert.equal(t.onLoss(loss(room('a'), 'trimmed', { lostFrom: 1n, lostTo: 15n, next: 16n })), false, 'already held: ignored');
  assert.equal(t.positions()[0].offset, 20n);
  assert.equal(t.onLoss(loss(room('a'), 'trimmed', { lostFrom: 21n, lostTo: 30n, next: 31n })), true);
  assert.equal(t.positions()[0].offset, 30n);
  assert.equal(t.onSignal(sig(room('a'), 31)).deliver, true);
  assert.equal(t.onLoss(loss(room('a'), 'epochChanged', { epoch: 99n, lostFrom: 0n, lostTo: 0n, next: 1n })), true);
  assert.deepEqual(t.positions()[0], { stream: room('a'), epoch: 99n, offset: 0n });
  assert.equal(t.onSignal(sig(room('a'), 1, 99n)).deliver, true);
  t.onSignal(sig(room('a'), 2, 99n));
  assert.equal(t.onLoss(loss(room('a'), 'ahead', { epoch: 99n, lostFrom: 2n, lostTo: 2n, next: 2n })), true);
  assert.equal(t.positions()[0].offset, 1n);
  assert.equal(t.onSignal(sig(room('a'), 2, 99n)).deliver, true, 'offset 2 is used again by another signal');
  assert.equal(t.onLoss(loss(room('a'), 'unknownStream', { epoch: 0n })), true);
  assert.deepEqual(t.positions(), []);
  // A loss for a stream without position sets one.
  assert.equal(t.onLoss(loss(room('b'), 'trimmed', { lostFrom: 1n, lostTo: 4n, next: 5n })), true);
  assert.deepEqual(t.positions(), [{ stream: room('b'), epoch: E, offset: 4n }]);
});

test('resumeAll lists every position that fits, marks them resuming; resumeStreams for a repair', () => {
  const t = new StreamTracker();
  t.onSignal(sig(SESSION, 3));
  t.onSignal(sig(room('lobby'), 7));
  t.onSignal(sig(room('x'.repeat(200)), 1));
  // 11 + 18 (session) + 23 (lobby) = 52: the long room does not fit.
  const listed = t.resumeAll(52);
  assert.deepEqual(listed, [
    { stream: SESSION, epoch: E, offset: 3n },
    { stream: room('lobby'), epoch: E, offset: 7n },
  ]);
  assert.equal(encodeMessage({ kind: 'streamResume', id: new Uint8Array(8), entries: listed }).length, 52);
  // Listed streams are resuming: a gap asks for nothing more.
  assert.equal(t.onSignal(sig(room('lobby'), 9)).resume, null);
  // The unlisted one is not.
  assert.notEqual(t.onSignal(sig(room('x'.repeat(200)), 5)).resume, null);
  t.connectionLost();
  assert.notEqual(t.onSignal(sig(room('lobby'), 9)).resume, null, 'a lost connection ends every resume');
  assert.deepEqual(t.resumeStreams([room('lobby'), room('gone')]), [{ stream: room('lobby'), epoch: E, offset: 7n }]);
});

test('resumeAll lists at most MAX_RESUME_STREAMS', () => {
  assert.equal(MAX_RESUME_STREAMS, CODEC_MAX);
  const t = new StreamTracker();
  for (let i = 0; i < MAX_RESUME_STREAMS + 5; i++) t.onSignal(sig(room(`r${i}`), 1));
  const listed = t.resumeAll(1 << 30);
  assert.equal(listed.length, MAX_RESUME_STREAMS);
  encodeMessage({ kind: 'streamResume', id: new Uint8Array(8), entries: listed });
});

test('stored positions round-trip; bad entries are skipped', () => {
  const t = new StreamTracker();
  t.onSignal(sig(SESSION, 3));
  t.onSignal(sig(room('ж'), 2n ** 63n + 1n, 2n ** 64n - 1n));
  const stored = JSON.parse(JSON.stringify(t.toStored()));
  const u = new StreamTracker();
  u.loadStored([...stored, null, 5, { kind: 'room', room: '', epoch: '1', last: '1' }, { kind: 'x', epoch: '1', last: '1' }, { kind: 'session', epoch: 'zz', last: '1' }]);
  assert.deepEqual(u.positions(), t.positions());
  u.loadStored('garbage');
  assert.equal(u.empty, true);
});

// A stream of N signals sent through a lossy, duplicating, reordering link;
// the client asks for resumes, which the "server" answers from its full
// history. Whatever happens, the application sees 1..N in order, each once.
test('any interleaving of deliveries, duplicates and gaps: each offset at most once, in order, and all of them in the end', () => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 300; round++) {
    const N = 1 + Math.floor(rand() * 40);
    const t = new StreamTracker();
    const seen = [];
    const stream = room('r');
    /** What is in flight to the client: offsets, and 'end' markers of resumes. */
    const link = [];
    let live = 0;
    const receive = (item) => {
      if (item.end !== undefined) {
        t.resumeEnded([stream]);
        return;
      }
      const v = t.onSignal(sig(stream, item.offset));
      if (v.deliver) seen.push(item.offset);
      if (v.resume !== null) {
        // The server writes offset+1..=end, then the answer.
        for (let o = Number(v.resume.offset) + 1; o <= live; o++) link.push({ offset: BigInt(o) });
        link.push({ end: true });
      }
    };
    // The first signal the client sees sets the position; make it offset 1.
    live = 1;
    receive({ offset: 1n });
    while (live < N || link.length > 0) {
      const r = rand();
      if (live < N && r < 0.5) {
        live++;
        if (rand() < 0.3) continue; // dropped live (queue full)
        link.push({ offset: BigInt(live) });
        if (rand() < 0.1) link.push({ offset: BigInt(live) }); // duplicated
      } else if (link.length > 0) {
        receive(link.shift());
      }
    }
    // A last live signal reveals a trailing hole, as in real life.
    const before = seen.length;
    if (Number(t.positions()[0].offset) < N) {
      live++;
      receive({ offset: BigInt(live) });
      while (link.length > 0) receive(link.shift());
    }
    for (let i = 0; i < seen.length; i++) assert.equal(seen[i], BigInt(i + 1), `round ${round}: in order, once`);
    assert.ok(seen.length >= N, `round ${round}: nothing lost (${before} then ${seen.length} of ${N})`);
  }
});
