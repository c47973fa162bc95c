/**
 * Fragmentation of datagram-channel messages larger than one datagram, and their bounded
 * reassembly (PROTOCOL.md §5.4).
 */

import { concat } from './bytes.js';
import { FRAGMENT_HEADER_BYTES, encodeFragment, type FragmentHeader } from './datagram.js';

/**
 * Splits `message` into fragment datagrams for a current maximum datagram payload of
 * `maxDatagramBytes` (`M`, §2.5): chunks of `C = M − 5` bytes, the last holding the rest,
 * `count = ⌈L / C⌉` (an empty message is one fragment with an empty chunk). Returns `null`
 * when more than `maxFragments` (at most 255) would be needed, or `M` leaves no room for a
 * chunk.
 */
export function fragmentMessage(
  message: Uint8Array,
  maxDatagramBytes: number,
  sequenced: boolean,
  channel: number,
  messageId: number,
  maxFragments = 255,
): Uint8Array[] | null {
  const chunkBytes = maxDatagramBytes - 1 - FRAGMENT_HEADER_BYTES;
  if (chunkBytes < 1) return null;
  const count = message.length === 0 ? 1 : Math.ceil(message.length / chunkBytes);
  if (count > Math.min(255, maxFragments)) return null;
  const out: Uint8Array[] = [];
  for (let index = 0; index < count; index++) {
    const chunk = message.subarray(index * chunkBytes, Math.min(message.length, (index + 1) * chunkBytes));
    out.push(encodeFragment(sequenced, channel, { messageId, index, count }, chunk));
  }
  return out;
}

/** Receiver limits (§5.4 `FragmentConfig`); the defaults are the specification's. */
export interface FragmentConfig {
  /** Largest reassembled message, in bytes. Default 262 144. */
  maxMessageBytes: number;
  /** Largest fragment `count` accepted. Default 255. */
  maxFragments: number;
  /** Partial messages held at once; the oldest is evicted for a new one. Default 32. */
  maxPartialMessages: number;
  /** A partial is dropped this long after its first fragment, in ms. Default 1 000. */
  reassemblyTimeoutMs: number;
  /** Bytes all partials may be charged, in bytes. Default 1 048 576. */
  memoryBudgetBytes: number;
  /** Recently completed `(channel, message_id)` keys remembered to drop late duplicates. Default 64. */
  completedHistory: number;
}

/** The defaults of §5.4. */
export const DEFAULT_FRAGMENT_CONFIG: Readonly<FragmentConfig> = Object.freeze({
  maxMessageBytes: 262_144,
  maxFragments: 255,
  maxPartialMessages: 32,
  reassemblyTimeoutMs: 1_000,
  memoryBudgetBytes: 1_048_576,
  completedHistory: 64,
});

/** What the reassembler did (counters) and holds (gauges). */
export interface ReassemblyStats {
  fragmentsReceived: number;
  messagesReassembled: number;
  /** Fragments that completed no message and were not kept: every drop below, summed. */
  fragmentsDropped: number;
  duplicateFragments: number;
  lateDuplicates: number;
  invalidFragments: number;
  droppedTooLarge: number;
  droppedTooManyFragments: number;
  evictedPartialLimit: number;
  evictedMemoryBudget: number;
  expiredTimeout: number;
  /** Gauge: partial messages held now. */
  partials: number;
  /** Gauge: bytes charged to the budget now. */
  bufferedBytes: number;
}

interface PartialMessage {
  key: string;
  count: number;
  /** `C`, once a non-last chunk has arrived. */
  chunkBytes: number | null;
  /** Length of the last chunk, once it has arrived. */
  lastBytes: number | null;
  chunks: (Uint8Array | undefined)[];
  received: number;
  charged: number;
  startedMs: number;
}

/**
 * Reassembles fragments into messages under the bounds of `FragmentConfig`: at most
 * `maxPartialMessages` partials, charged at most `memoryBudgetBytes`, each for at most
 * `reassemblyTimeoutMs`. Never throws on peer input: bad fragments are counted and dropped.
 */
export class Reassembler {
  readonly config: FragmentConfig;
  private readonly partials = new Map<string, PartialMessage>();
  private readonly completed: string[] = [];
  private readonly completedSet = new Set<string>();
  private charged = 0;
  private readonly counters = {
    fragmentsReceived: 0,
    messagesReassembled: 0,
    fragmentsDropped: 0,
    duplicateFragments: 0,
    lateDuplicates: 0,
    invalidFragments: 0,
    droppedTooLarge: 0,
    droppedTooManyFragments: 0,
    evictedPartialLimit: 0,
    evictedMemoryBudget: 0,
    expiredTimeout: 0,
  };

  constructor(config: Partial<FragmentConfig> = {}) {
    this.config = { ...DEFAULT_FRAGMENT_CONFIG, ...config };
  }

  /** Counters and gauges. */
  stats(): ReassemblyStats {
    return { ...this.counters, partials: this.partials.size, bufferedBytes: this.charged };
  }

  /** Drops partials older than the timeout. Called by `push`; call it on a timer too. */
  expire(nowMs: number): void {
    for (const p of this.partials.values()) {
      if (nowMs - p.startedMs >= this.config.reassemblyTimeoutMs) {
        this.remove(p);
        this.counters.expiredTimeout++;
      }
    }
  }

  /** The earliest time (ms) a partial expires, or null when none is held. */
  nextExpiry(): number | null {
    let first: number | null = null;
    for (const p of this.partials.values()) {
      const at = p.startedMs + this.config.reassemblyTimeoutMs;
      if (first === null || at < first) first = at;
    }
    return first;
  }

  private remove(p: PartialMessage): void {
    this.partials.delete(p.key);
    this.charged -= p.charged;
  }

  private drop(counter: keyof typeof this.counters): null {
    this.counters[counter]++;
    this.counters.fragmentsDropped++;
    return null;
  }

  private remember(key: string): void {
    if (this.config.completedHistory <= 0) return;
    this.completed.push(key);
    this.completedSet.add(key);
    while (this.completed.length > this.config.completedHistory) this.completedSet.delete(this.completed.shift()!);
  }

  private chargeFor(p: PartialMessage): number {
    if (p.chunkBytes !== null && p.lastBytes !== null) return (p.count - 1) * p.chunkBytes + p.lastBytes;
    if (p.chunkBytes !== null) return Math.min(p.count * p.chunkBytes, Math.min(this.config.maxMessageBytes, this.config.memoryBudgetBytes));
    return p.lastBytes ?? 0;
  }

  /**
   * Takes one fragment of `channel`; returns the message it completes, or null. `chunk` may
   * be a view into a datagram: it is copied when kept.
   */
  push(channel: number, header: FragmentHeader, chunk: Uint8Array, nowMs: number): Uint8Array | null {
    this.counters.fragmentsReceived++;
    this.expire(nowMs);
    const { messageId, index, count } = header;
    if (count < 1 || index >= count) return this.drop('invalidFragments');
    if (count > this.config.maxFragments) return this.drop('droppedTooManyFragments');
    const key = `${channel}:${messageId}`;
    if (this.completedSet.has(key)) return this.drop('lateDuplicates');
    const isLast = index === count - 1;
    // Only the single fragment of an empty message may be empty.
    if (chunk.length === 0 && count !== 1) return this.drop('invalidFragments');
    if (count === 1) {
      if (chunk.length > this.config.maxMessageBytes) return this.drop('droppedTooLarge');
      const existing = this.partials.get(key);
      if (existing) this.remove(existing);
      this.remember(key);
      this.counters.messagesReassembled++;
      return chunk.slice();
    }
    let p = this.partials.get(key);
    if (p) {
      const mismatch =
        p.count !== count ||
        (!isLast && p.chunkBytes !== null && chunk.length !== p.chunkBytes) ||
        (!isLast && p.lastBytes !== null && chunk.length < p.lastBytes) ||
        (isLast && p.chunkBytes !== null && chunk.length > p.chunkBytes);
      if (mismatch) {
        // A wrapped id, or a peer that disagrees with itself: start over (§5.4).
        this.remove(p);
        p = undefined;
      } else if (p.chunks[index] !== undefined) {
        return this.drop('duplicateFragments');
      }
    }
    // The smallest message these fragments imply (every chunk but the last is `C` ≥ the last).
    const chunkBytes = !isLast ? chunk.length : (p?.chunkBytes ?? null);
    const implied = chunkBytes !== null ? (count - 1) * chunkBytes + (isLast ? chunk.length : (p?.lastBytes ?? 1)) : count * chunk.length;
    if (implied > this.config.maxMessageBytes) {
      if (p) this.remove(p);
      return this.drop('droppedTooLarge');
    }
    if (!p) {
      while (this.partials.size >= this.config.maxPartialMessages) {
        const oldest = this.partials.values().next().value as PartialMessage;
        this.remove(oldest);
        this.counters.evictedPartialLimit++;
      }
      p = { key, count, chunkBytes: null, lastBytes: null, chunks: new Array(count), received: 0, charged: 0, startedMs: nowMs };
      this.partials.set(key, p);
    }
    if (isLast) p.lastBytes = chunk.length;
    else p.chunkBytes = chunk.length;
    p.chunks[index] = chunk.slice();
    p.received++;
    const charge = this.chargeFor(p);
    this.charged += charge - p.charged;
    p.charged = charge;
    // Evict the oldest other partials until the budget holds.
    for (const other of this.partials.values()) {
      if (this.charged <= this.config.memoryBudgetBytes) break;
      if (other === p) continue;
      this.remove(other);
      this.counters.evictedMemoryBudget++;
    }
    if (p.received < p.count) return null;
    this.remove(p);
    this.remember(key);
    this.counters.messagesReassembled++;
    return concat(...(p.chunks as Uint8Array[]));
  }
}

