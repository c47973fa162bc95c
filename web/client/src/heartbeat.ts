/**
 * The heartbeat (PROTOCOL.md §5.5): pings on a fixed interval, pongs answered at once, RTT
 * samples smoothed per RFC 6298 §2 (SRTT, RTTVAR), interarrival jitter of the peer's pings per
 * RFC 3550 §6.4.1, ping loss from sequence numbers, and the failure timeout.
 *
 * Sans-IO: every method takes the current time in microseconds on one monotonic clock (the
 * session passes `performance.now() × 1000`); nothing here reads a clock or sends anything.
 */

import type { Ping, Pong } from './datagram.js';

/** Heartbeat settings (§5.5); the defaults are the specification's. */
export interface HeartbeatConfig {
  /** Time between pings, in ms. Default 500. */
  intervalMs: number;
  /** Lower bound of the failure timeout, in ms. Default 5 000. */
  timeoutMs: number;
  /** SRTT before the first sample, in ms (RTTVAR = half of it). Default 333. */
  initialRttMs: number;
  /** Pings remembered for matching pongs; older ones are forgotten. Default 32. */
  maxOutstandingPings: number;
}

/** The defaults of §5.5. */
export const DEFAULT_HEARTBEAT_CONFIG: Readonly<HeartbeatConfig> = Object.freeze({
  intervalMs: 500,
  timeoutMs: 5_000,
  initialRttMs: 333,
  maxOutstandingPings: 32,
});

/** What the heartbeat measured. Times in milliseconds. */
export interface HeartbeatStats {
  /** Smoothed RTT (RFC 6298 SRTT). */
  srttMs: number;
  /** RTT variation (RFC 6298 RTTVAR). */
  rttvarMs: number;
  /** The latest RTT sample, or null before the first. */
  latestRttMs: number | null;
  /** The smallest raw RTT seen, or null before the first. */
  minRttMs: number | null;
  /** RTT samples taken. */
  rttSamples: number;
  /** Interarrival jitter of the peer's pings (RFC 3550 §6.4.1). */
  jitterMs: number;
  pingsSent: number;
  pongsReceived: number;
  /** Pongs that matched no outstanding ping, or echoed a time in the future. */
  pongsIgnored: number;
  pingsReceived: number;
  /** Own pings declared lost: no pong within the loss delay (local policy, see `lossDelayMs`). */
  pingsLost: number;
  /** Round-trip loss: `pingsLost / (pingsLost + pongs answered)`, 0 before either. */
  lossRatio: number;
  /** Peer pings never received, from the gaps in their `seq` (may shrink when late ones arrive). */
  peerPingsLost: number;
  peerPingsDuplicated: number;
  peerPingsReordered: number;
  /** Incoming loss: `peerPingsLost / expected`, 0 before two pings. */
  incomingLossRatio: number;
}

const SEQ_WINDOW = 64;

/** One side's heartbeat state machine. */
export class Heartbeat {
  readonly config: HeartbeatConfig;
  private readonly epochUs: number;
  private nextPingUs: number;
  private nextSeq = 0;
  /** Outstanding pings: seq → (ts_us sent, local send time in µs). */
  private readonly outstanding = new Map<number, { tsUs: bigint; sentUs: number }>();
  private pingsLost = 0;
  private srttUs: number;
  private rttvarUs: number;
  private latestUs: number | null = null;
  private minRttUs: number | null = null;
  private samples = 0;
  private jitterUs = 0;
  private prevTransitUs: bigint | null = null;
  private lastActivityUs: number;
  private counts = { pingsSent: 0, pongsReceived: 0, pongsIgnored: 0, pingsReceived: 0, duplicated: 0, reordered: 0 };
  // Peer ping sequence tracking, on an extended (never wrapping) sequence space.
  private firstSeq: number | null = null;
  private highestSeq = 0;
  private receivedUnique = 0;
  private window = 0n;

  /** A heartbeat whose session was established at `nowUs`; its first ping is due at once. */
  constructor(nowUs: number, config: Partial<HeartbeatConfig> = {}) {
    this.config = { ...DEFAULT_HEARTBEAT_CONFIG, ...config };
    this.epochUs = nowUs;
    this.nextPingUs = nowUs;
    this.lastActivityUs = nowUs;
    this.srttUs = this.config.initialRttMs * 1000;
    this.rttvarUs = this.srttUs / 2;
  }

  private rel(nowUs: number): bigint {
    return BigInt(Math.max(0, Math.floor(nowUs - this.epochUs)));
  }

  /** When the next ping is due, in µs. */
  get nextPingAtUs(): number {
    return this.nextPingUs;
  }

  /**
   * The ping to send now, or null if none is due. A late call sends one ping, never a burst;
   * the next is due `intervalMs` after this one.
   */
  pollPing(nowUs: number, tick: bigint): Ping | null {
    if (nowUs < this.nextPingUs) return null;
    this.expirePings(nowUs);
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) >>> 0;
    const tsUs = this.rel(nowUs);
    this.outstanding.set(seq, { tsUs, sentUs: nowUs });
    while (this.outstanding.size > this.config.maxOutstandingPings) {
      this.outstanding.delete(this.outstanding.keys().next().value as number);
      this.pingsLost++;
    }
    this.nextPingUs = nowUs + this.config.intervalMs * 1000;
    this.counts.pingsSent++;
    return { seq, tick, tsUs };
  }

  /**
   * How long a ping waits for its pong before it counts as lost, in ms: `max(2 × max(SRTT,
   * interval), SRTT + 4 × RTTVAR)`. Statistics only; the specification leaves it to the
   * implementation (this is the reference implementation's choice).
   */
  lossDelayMs(): number {
    const srtt = this.srttUs / 1000;
    return Math.max(2 * Math.max(srtt, this.config.intervalMs), srtt + (4 * this.rttvarUs) / 1000);
  }

  private expirePings(nowUs: number): void {
    const limitUs = this.lossDelayMs() * 1000;
    for (const [seq, ping] of this.outstanding) {
      if (nowUs - ping.sentUs < limitUs) break; // in send order
      this.outstanding.delete(seq);
      this.pingsLost++;
    }
  }

  /** Records that something arrived from the peer (it restarts the failure clock). */
  onActivity(nowUs: number): void {
    if (nowUs > this.lastActivityUs) this.lastActivityUs = nowUs;
  }

  /** Answers a peer's ping at once (`hold_us` = 0) and counts it for jitter and loss. */
  handlePing(ping: Ping, nowUs: number, tick: bigint): Pong {
    this.onActivity(nowUs);
    this.counts.pingsReceived++;
    if (this.trackSeq(ping.seq)) {
      // RFC 3550 §6.4.1: D from the relative transit times of consecutive counted pings, in
      // arrival order (duplicates are not counted; late ones are).
      const transit = this.rel(nowUs) - ping.tsUs;
      if (this.prevTransitUs !== null) {
        const d = Math.abs(Number(transit - this.prevTransitUs));
        this.jitterUs += (d - this.jitterUs) / 16;
      }
      this.prevTransitUs = transit;
    }
    return { seq: ping.seq, tick, echoTsUs: ping.tsUs, holdUs: 0 };
  }

  /** Tracks a peer ping seq; returns whether it counts (not a duplicate, within the window). */
  private trackSeq(seq: number): boolean {
    if (this.firstSeq === null) {
      this.firstSeq = seq;
      this.highestSeq = seq;
      this.receivedUnique = 1;
      this.window = 1n;
      return true;
    }
    const delta = ((seq - (this.highestSeq % 0x1_0000_0000)) | 0) as number; // signed 32-bit distance
    if (delta > 0) {
      this.highestSeq += delta;
      this.window = delta >= SEQ_WINDOW ? 1n : ((this.window << BigInt(delta)) | 1n) & ((1n << BigInt(SEQ_WINDOW)) - 1n);
      this.receivedUnique++;
      return true;
    }
    const back = -delta;
    if (back >= SEQ_WINDOW) {
      this.counts.reordered++;
      return false;
    }
    if ((this.window >> BigInt(back)) & 1n) {
      this.counts.duplicated++;
      return false;
    }
    this.counts.reordered++;
    this.window |= 1n << BigInt(back);
    this.receivedUnique++;
    this.firstSeq = Math.min(this.firstSeq, this.highestSeq - back);
    return true;
  }

  /**
   * Takes a pong: an RTT sample if it answers an outstanding ping. Returns the sample in ms,
   * or null when it was ignored.
   */
  handlePong(pong: Pong, nowUs: number): number | null {
    this.onActivity(nowUs);
    const sent = this.outstanding.get(pong.seq)?.tsUs;
    if (sent === undefined || sent !== pong.echoTsUs) {
      this.counts.pongsIgnored++;
      return null;
    }
    this.outstanding.delete(pong.seq);
    const now = this.rel(nowUs);
    if (pong.echoTsUs > now) {
      this.counts.pongsIgnored++;
      return null;
    }
    this.counts.pongsReceived++;
    const raw = Number(now - pong.echoTsUs);
    // The peer's hold time is subtracted; a hold longer than the whole round trip is
    // impossible and ignored (§5.5: holds are routine, so unlike RFC 9002 §5.3's ack delay
    // they are not checked against a minimum raw RTT, which would include one).
    const rtt = pong.holdUs > raw ? raw : raw - pong.holdUs;
    this.minRttUs = this.minRttUs === null ? rtt : Math.min(this.minRttUs, rtt);
    if (this.samples === 0) {
      this.srttUs = rtt;
      this.rttvarUs = rtt / 2;
    } else {
      this.rttvarUs = 0.75 * this.rttvarUs + 0.25 * Math.abs(this.srttUs - rtt);
      this.srttUs = 0.875 * this.srttUs + 0.125 * rtt;
    }
    this.samples++;
    this.latestUs = rtt;
    return rtt / 1000;
  }

  /** `max(timeout_ms, 3 × (SRTT + max(4 × RTTVAR, 1 ms) + interval))`, in ms (§5.5). */
  failureTimeoutMs(): number {
    const pto = this.srttUs / 1000 + Math.max((4 * this.rttvarUs) / 1000, 1) + this.config.intervalMs;
    return Math.max(this.config.timeoutMs, 3 * pto);
  }

  /** When the peer is declared gone if nothing arrives first, in µs. */
  get failureAtUs(): number {
    return this.lastActivityUs + this.failureTimeoutMs() * 1000;
  }

  /** Time since the peer was last heard from, in ms. */
  silenceMs(nowUs: number): number {
    return Math.max(0, (nowUs - this.lastActivityUs) / 1000);
  }

  /** Statistics so far. */
  stats(): HeartbeatStats {
    const expected = this.firstSeq === null ? 0 : this.highestSeq - this.firstSeq + 1;
    const lost = Math.max(0, expected - this.receivedUnique);
    return {
      srttMs: this.srttUs / 1000,
      rttvarMs: this.rttvarUs / 1000,
      latestRttMs: this.latestUs === null ? null : this.latestUs / 1000,
      minRttMs: this.minRttUs === null ? null : this.minRttUs / 1000,
      rttSamples: this.samples,
      jitterMs: this.jitterUs / 1000,
      pingsSent: this.counts.pingsSent,
      pongsReceived: this.counts.pongsReceived,
      pongsIgnored: this.counts.pongsIgnored,
      pingsReceived: this.counts.pingsReceived,
      pingsLost: this.pingsLost,
      lossRatio: this.pingsLost + this.counts.pongsReceived > 0 ? this.pingsLost / (this.pingsLost + this.counts.pongsReceived) : 0,
      peerPingsLost: lost,
      peerPingsDuplicated: this.counts.duplicated,
      peerPingsReordered: this.counts.reordered,
      incomingLossRatio: expected > 1 ? lost / expected : 0,
    };
  }
}

/**
 * The client's estimate of the server's tick and its own tick, which runs `marginTicks`
 * ahead (§7.2). A tick `t` received with round-trip time `rtt` implies server tick
 * `t + 0.5 + (rtt / 2) × tick_rate_hz` at that moment.
 */
export class TickSync {
  /** Ticks per second (0 is treated as 1 Hz, §7.2). */
  readonly tickRateHz: number;
  private baseTick = 0;
  private baseMs = 0;
  private lastDelivered: number | null = null;

  constructor(
    tickRateHz: number,
    /** How far ahead of the server the client runs, in ticks. Default 2. */
    readonly marginTicks = 2,
    /** A client more than this many ticks behind jumps instead of catching up one by one. */
    readonly maxCatchUpTicks = 4,
  ) {
    this.tickRateHz = tickRateHz > 0 ? tickRateHz : 1;
  }

  /** Records that the server was at `serverTick` when it sent, `rttMs` ago by half. */
  observe(serverTick: bigint, rttMs: number, nowMs: number): void {
    this.baseTick = Number(serverTick) + 0.5 + (rttMs / 2000) * this.tickRateHz;
    this.baseMs = nowMs;
  }

  /** The estimated server tick now (fractional). */
  serverTick(nowMs: number): number {
    return this.baseTick + ((nowMs - this.baseMs) * this.tickRateHz) / 1000;
  }

  /** The client's last delivered tick, or 0 before its first (the tick its pings carry). */
  get currentTick(): number {
    return this.lastDelivered ?? 0;
  }

  /**
   * The next client tick due at `nowMs`, or null: each tick at most once and ascending. Drain
   * it until null. More than `maxCatchUpTicks` behind, it skips to the latest.
   */
  pollTick(nowMs: number): number | null {
    const target = Math.floor(this.serverTick(nowMs)) + this.marginTicks;
    if (this.lastDelivered === null || target - this.lastDelivered > this.maxCatchUpTicks) {
      if (this.lastDelivered !== null && target <= this.lastDelivered) return null;
      this.lastDelivered = target;
      return target;
    }
    if (target <= this.lastDelivered) return null;
    this.lastDelivered += 1;
    return this.lastDelivered;
  }

  /** When the next tick is due, in ms on the same clock. */
  nextTickAtMs(): number {
    const next = (this.lastDelivered ?? 0) + 1 - this.marginTicks;
    return this.baseMs + ((next - this.baseTick) * 1000) / this.tickRateHz;
  }
}
