/**
 * The client's side of keyed requests (docs/protocol.md 14.4 and 14.5),
 * sans-IO: sequence numbers, the cumulative acknowledgement, which pending
 * keyed requests to send again, send as plain requests or fail with
 * "outcome unknown" on a new connection, and their stored form.
 *
 * @module
 */

import type { Encoding } from './payload.js';

/** A keyed request the client has not got the answer of. */
export interface KeyedEntry {
  /** The key's sequence number (from 1 within a session and client instance). */
  readonly seq: bigint;
  /** The ledger epoch it was first sent under; null while never sent. */
  epoch: bigint | null;
  /** Whether it was written to a connection at least once (the server may have run it). */
  written: boolean;
  readonly name: string;
  readonly encoding: Encoding;
  readonly payload: Uint8Array;
}

/** How the restore of the session ended on a new connection. */
export type RestoreOutcome = 'restored' | 'notFound' | 'failed';

/** What to do with the pending keyed requests on a new connection ({@link KeyedLedger.plan}). */
export interface ReconnectPlan {
  /** Send again as KeyedRequests with their seq and original epoch, in this (seq) order. */
  resend: KeyedEntry[];
  /** Send for the first time as KeyedRequests under the current ledger epoch, in this order, after `resend`. */
  sendNew: KeyedEntry[];
  /** Send as plain requests (a 2.0 connection): they are no longer keyed. */
  sendPlain: KeyedEntry[];
  /** Fail with "outcome unknown", without sending. */
  failUnknown: KeyedEntry[];
  /** Stay pending for a later connection. */
  keep: KeyedEntry[];
}

/** A keyed request as stored. */
export interface StoredEntry {
  seq: string;
  epoch: string | null;
  written: boolean;
  name: string;
  encoding: Encoding;
  /** Base64. */
  payload: string;
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The keyed requests of one client instance within one session: the next
 * seq and the entries still waiting for an answer, in seq order.
 */
export class KeyedLedger {
  private next = 1n;
  private readonly entries = new Map<bigint, KeyedEntry>();

  /** Gives the next seq to a new keyed request (not yet sent: epoch null). */
  assign(name: string, encoding: Encoding, payload: Uint8Array): KeyedEntry {
    const entry: KeyedEntry = { seq: this.next, epoch: null, written: false, name, encoding, payload };
    this.next += 1n;
    this.entries.set(entry.seq, entry);
    return entry;
  }

  /** The entry of a seq, if still pending. */
  get(seq: bigint): KeyedEntry | undefined {
    return this.entries.get(seq);
  }

  /** Records that an entry was written under `epoch` (a resend keeps its first epoch). */
  markWritten(entry: KeyedEntry, epoch: bigint): void {
    entry.epoch ??= epoch;
    entry.written = true;
  }

  /** The entry got its answer, or is given up: it is no longer pending. */
  remove(seq: bigint): void {
    this.entries.delete(seq);
  }

  /**
   * The cumulative acknowledgement: every seq below the lowest pending one
   * is answered (or was never sent). Always below the seq of any pending
   * entry, so `ack < seq` holds for every request sent.
   */
  ack(): bigint {
    for (const seq of this.entries.keys()) return seq - 1n; // insertion order is seq order
    return this.next - 1n;
  }

  /** The pending entries in seq order. */
  pending(): KeyedEntry[] {
    return [...this.entries.values()];
  }

  /** Whether nothing is pending. */
  get empty(): boolean {
    return this.entries.size === 0;
  }

  /** The seq the next keyed request gets. */
  get nextSeq(): bigint {
    return this.next;
  }

  /** Starts over for another session: the pending entries are returned and forgotten, seq starts at 1. */
  reset(): KeyedEntry[] {
    const dropped = this.pending();
    this.entries.clear();
    this.next = 1n;
    return dropped;
  }

  /**
   * What to do with the pending entries on a new connection of the same
   * session (docs/protocol.md 14.5), given whether keyed requests were
   * granted and with which ledger epoch, and how the restore ended.
   *
   * - Keyed requests not granted (a 2.0 server, or the feature refused):
   *   the written ones fail with outcome unknown; the others are sent as
   *   plain requests once the session is restored, fail if it is not found,
   *   and wait otherwise.
   * - Restored: the written ones are sent again unless their epoch is not
   *   the server's (outcome unknown); the others are sent new.
   * - Not found: the written ones are sent again without a session (the
   *   server answers from the closed session's ledger and never runs
   *   them); the others fail with outcome unknown.
   * - Otherwise they stay pending for a later connection.
   */
  plan(keyed: boolean, ledgerEpoch: bigint, restore: RestoreOutcome): ReconnectPlan {
    const plan: ReconnectPlan = { resend: [], sendNew: [], sendPlain: [], failUnknown: [], keep: [] };
    for (const entry of this.entries.values()) {
      if (!keyed) {
        if (entry.written) plan.failUnknown.push(entry);
        else if (restore === 'restored') plan.sendPlain.push(entry);
        else if (restore === 'notFound') plan.failUnknown.push(entry);
        else plan.keep.push(entry);
      } else if (restore === 'restored') {
        if (!entry.written) plan.sendNew.push(entry);
        else if (entry.epoch === ledgerEpoch) plan.resend.push(entry);
        else plan.failUnknown.push(entry);
      } else if (restore === 'notFound') {
        if (entry.written) plan.resend.push(entry);
        else plan.failUnknown.push(entry);
      } else {
        plan.keep.push(entry);
      }
    }
    return plan;
  }

  /** The ledger for storage. */
  toStored(): { next: string; entries: StoredEntry[] } {
    return {
      next: this.next.toString(),
      entries: this.pending().map((e) => ({
        seq: e.seq.toString(),
        epoch: e.epoch === null ? null : e.epoch.toString(),
        written: e.written,
        name: e.name,
        encoding: e.encoding,
        payload: toBase64(e.payload),
      })),
    };
  }

  /** Replaces the ledger with a stored one; entries that do not read are skipped. */
  loadStored(next: unknown, entries: unknown): void {
    this.entries.clear();
    this.next = 1n;
    const list: KeyedEntry[] = [];
    if (Array.isArray(entries)) {
      for (const item of entries as unknown[]) {
        const e = item as Partial<StoredEntry> | null;
        if (e === null || typeof e !== 'object') continue;
        if (typeof e.seq !== 'string' || typeof e.name !== 'string' || typeof e.payload !== 'string') continue;
        if (e.encoding !== 'binary' && e.encoding !== 'utf8' && e.encoding !== 'utf16') continue;
        try {
          const seq = BigInt(e.seq);
          const epoch = typeof e.epoch === 'string' ? BigInt(e.epoch) : null;
          if (seq <= 0n) continue;
          list.push({ seq, epoch, written: e.written === true && epoch !== null, name: e.name, encoding: e.encoding, payload: fromBase64(e.payload) });
        } catch {
          continue;
        }
      }
    }
    list.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    for (const entry of list) this.entries.set(entry.seq, entry);
    let stored = 1n;
    try {
      if (typeof next === 'string') stored = BigInt(next);
    } catch {
      stored = 1n;
    }
    const last = list.at(-1);
    // Never hand out a seq again, whatever the stored counter says.
    this.next = stored > 0n ? stored : 1n;
    if (last !== undefined && this.next <= last.seq) this.next = last.seq + 1n;
  }
}
