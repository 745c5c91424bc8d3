/**
 * Stream positions and the client's rule for stream signals
 * (docs/protocol.md 14.3.3 and 14.3.5), sans-IO: the client feeds it the
 * StreamSignals and StreamLosses it reads and sends the StreamResumes it
 * asks for.
 *
 * @module
 */

import type { StreamId, StreamLossMessage, StreamPosition, StreamSignalMessage } from './codec.js';
import { MAX_RESUME_STREAMS } from './codec.js';

/** What the client does with one StreamSignal ({@link StreamTracker.onSignal}). */
export interface SignalVerdict {
  /** Hand the signal to the application. */
  deliver: boolean;
  /** Send a StreamResume for this one position (a gap was found and no resume is outstanding). */
  resume: StreamPosition | null;
}

/** A StreamLoss as the application sees it: the stream, the lost range and where the stream continues. */
export type StreamLoss = Omit<StreamLossMessage, 'kind'>;

interface Entry {
  stream: StreamId;
  epoch: bigint;
  last: bigint;
  /** A StreamResume listing the stream is unanswered. */
  resuming: boolean;
}

/** The key of a stream in maps and storage: `session`, or `room:` and the room's name. */
export function streamKey(stream: StreamId): string {
  return stream.kind === 'room' ? `room:${stream.room}` : 'session';
}

const utf8 = new TextEncoder();

/** Bytes of one StreamResume entry (docs/protocol.md 14.2.4). */
function entrySize(stream: StreamId): number {
  return 18 + (stream.kind === 'room' ? utf8.encode(stream.room).length : 0);
}

/** A stream position as stored (bigints as decimal strings). */
export interface StoredPosition {
  kind: 'session' | 'room';
  room?: string;
  epoch: string;
  last: string;
}

/**
 * The positions of the streams of one session, and whether a StreamResume
 * for each is outstanding.
 */
export class StreamTracker {
  private readonly streams = new Map<string, Entry>();

  /**
   * Applies the client's rule to a StreamSignal: deliver it or not, and
   * whether to ask for a resume (docs/protocol.md 14.3.3 with its
   * amendment: while a resume is outstanding, `last + 1` is delivered,
   * duplicates dropped, other gaps dropped without another resume).
   */
  onSignal(msg: Pick<StreamSignalMessage, 'stream' | 'epoch' | 'offset'>): SignalVerdict {
    const key = streamKey(msg.stream);
    const entry = this.streams.get(key);
    if (entry === undefined) {
      this.streams.set(key, { stream: msg.stream, epoch: msg.epoch, last: msg.offset, resuming: false });
      return { deliver: true, resume: null };
    }
    if (msg.epoch === entry.epoch) {
      if (msg.offset === entry.last + 1n) {
        entry.last = msg.offset;
        return { deliver: true, resume: null };
      }
      if (msg.offset <= entry.last) return { deliver: false, resume: null };
    }
    if (entry.resuming) return { deliver: false, resume: null };
    entry.resuming = true;
    return { deliver: false, resume: { stream: entry.stream, epoch: entry.epoch, offset: entry.last } };
  }

  /**
   * Applies a StreamLoss (docs/protocol.md 14.3.5); returns whether the
   * application is to be told. A TRIMMED range the client already holds is
   * ignored; UNKNOWN_STREAM forgets the stream; otherwise the position moves
   * to `(epoch, next - 1)`.
   */
  onLoss(msg: StreamLossMessage): boolean {
    const key = streamKey(msg.stream);
    const entry = this.streams.get(key);
    if (msg.reason === 'trimmed' && entry !== undefined && entry.epoch === msg.epoch && entry.last >= msg.lostTo) return false;
    if (msg.reason === 'unknownStream') {
      this.streams.delete(key);
      return true;
    }
    const last = msg.next > 0n ? msg.next - 1n : 0n;
    if (entry === undefined) this.streams.set(key, { stream: msg.stream, epoch: msg.epoch, last, resuming: false });
    else {
      entry.epoch = msg.epoch;
      entry.last = last;
    }
    return true;
  }

  /**
   * The positions to list in the StreamResume after a restore: as many as
   * fit in `maxBytes` (and in {@link MAX_RESUME_STREAMS}), each then marked
   * resuming. The others are resumed by the server from their join position
   * (or the start of the session stream); the rule drops what the client
   * already has.
   */
  resumeAll(maxBytes: number): StreamPosition[] {
    const out: StreamPosition[] = [];
    let size = 11;
    for (const entry of this.streams.values()) {
      if (out.length === MAX_RESUME_STREAMS) break;
      const add = entrySize(entry.stream);
      if (size + add > maxBytes) continue;
      size += add;
      entry.resuming = true;
      out.push({ stream: entry.stream, epoch: entry.epoch, offset: entry.last });
    }
    return out;
  }

  /**
   * The positions of these streams (those the client still has), each then
   * marked resuming: a gap repair asked again.
   */
  resumeStreams(streams: readonly StreamId[]): StreamPosition[] {
    const out: StreamPosition[] = [];
    for (const stream of streams) {
      const entry = this.streams.get(streamKey(stream));
      if (entry === undefined) continue;
      entry.resuming = true;
      out.push({ stream: entry.stream, epoch: entry.epoch, offset: entry.last });
    }
    return out;
  }

  /** The answer of a StreamResume listing these streams arrived (whatever it was), or it is lost. */
  resumeEnded(streams: readonly StreamId[]): void {
    for (const stream of streams) {
      const entry = this.streams.get(streamKey(stream));
      if (entry !== undefined) entry.resuming = false;
    }
  }

  /** The connection is gone: no resume is outstanding any more. */
  connectionLost(): void {
    for (const entry of this.streams.values()) entry.resuming = false;
  }

  /** Forgets every position (the session is closed, or another one begins). */
  clear(): void {
    this.streams.clear();
  }

  /** Whether there is no position. */
  get empty(): boolean {
    return this.streams.size === 0;
  }

  /** A copy of the positions. */
  positions(): StreamPosition[] {
    return [...this.streams.values()].map((e) => ({ stream: e.stream, epoch: e.epoch, offset: e.last }));
  }

  /** The positions for storage. */
  toStored(): StoredPosition[] {
    return [...this.streams.values()].map((e) => ({
      kind: e.stream.kind,
      ...(e.stream.kind === 'room' ? { room: e.stream.room } : {}),
      epoch: e.epoch.toString(),
      last: e.last.toString(),
    }));
  }

  /** Replaces the positions with stored ones; entries that do not read are skipped. */
  loadStored(stored: unknown): void {
    this.streams.clear();
    if (!Array.isArray(stored)) return;
    for (const item of stored as unknown[]) {
      const p = item as Partial<StoredPosition> | null;
      if (p === null || typeof p !== 'object' || typeof p.epoch !== 'string' || typeof p.last !== 'string') continue;
      let stream: StreamId;
      if (p.kind === 'session') stream = { kind: 'session' };
      else if (p.kind === 'room' && typeof p.room === 'string' && p.room.length > 0) stream = { kind: 'room', room: p.room };
      else continue;
      let epoch: bigint;
      let last: bigint;
      try {
        epoch = BigInt(p.epoch);
        last = BigInt(p.last);
      } catch {
        continue;
      }
      if (epoch <= 0n || last < 0n) continue;
      this.streams.set(streamKey(stream), { stream, epoch, last, resuming: false });
    }
  }
}
