// Heartbeat (PROTOCOL.md §5.5) and client tick estimation (§7.2).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Heartbeat, TickSync } from '../src/index.js';

test('pings: one at once, then every interval, never a burst', () => {
  const hb = new Heartbeat(1_000_000);
  const first = hb.pollPing(1_000_000, 0n)!;
  assert.deepEqual(first, { seq: 0, tick: 0n, tsUs: 0n });
  assert.equal(hb.pollPing(1_400_000, 0n), null);
  assert.equal(hb.pollPing(1_500_000, 3n)!.seq, 1);
  assert.equal(hb.pollPing(5_000_000, 3n)!.seq, 2); // late: one ping
  assert.equal(hb.pollPing(5_000_001, 3n), null);
});

test('RTT: first sample sets SRTT and RTTVAR = rtt / 2; then RFC 6298 smoothing', () => {
  const hb = new Heartbeat(0);
  assert.equal(hb.stats().srttMs, 333);
  assert.equal(hb.stats().rttvarMs, 166.5);
  const p0 = hb.pollPing(0, 0n)!;
  assert.equal(hb.handlePong({ seq: p0.seq, tick: 10n, echoTsUs: p0.tsUs, holdUs: 0 }, 40_000), 40);
  assert.deepEqual([hb.stats().srttMs, hb.stats().rttvarMs], [40, 20]);
  const p1 = hb.pollPing(500_000, 0n)!;
  hb.handlePong({ seq: p1.seq, tick: 40n, echoTsUs: p1.tsUs, holdUs: 0 }, 580_000);
  // RTTVAR = 3/4·20 + 1/4·|40 − 80| = 25; SRTT = 7/8·40 + 1/8·80 = 45.
  assert.deepEqual([hb.stats().srttMs, hb.stats().rttvarMs], [45, 25]);
  // The hold time is subtracted, even below the smallest raw RTT; a hold longer than the
  // round trip is ignored.
  const p2 = hb.pollPing(1_000_000, 0n)!;
  assert.equal(hb.handlePong({ seq: p2.seq, tick: 0n, echoTsUs: p2.tsUs, holdUs: 10_000 }, 1_060_000), 50);
  const p3 = hb.pollPing(1_500_000, 0n)!;
  assert.equal(hb.handlePong({ seq: p3.seq, tick: 0n, echoTsUs: p3.tsUs, holdUs: 30_000 }, 1_560_000), 30);
  assert.equal(hb.stats().minRttMs, 30);
  const p4 = hb.pollPing(2_000_000, 0n)!;
  assert.equal(hb.handlePong({ seq: p4.seq, tick: 0n, echoTsUs: p4.tsUs, holdUs: 900_000 }, 2_070_000), 70);
  // Unknown, repeated and future pongs are ignored.
  assert.equal(hb.handlePong({ seq: p3.seq, tick: 0n, echoTsUs: p3.tsUs, holdUs: 0 }, 2_100_000), null);
  assert.equal(hb.handlePong({ seq: 99, tick: 0n, echoTsUs: 0n, holdUs: 0 }, 2_100_000), null);
  assert.equal(hb.stats().pongsIgnored, 2);
});

test('failure timeout is max(timeout, 3 × (SRTT + max(4 RTTVAR, 1 ms) + interval))', () => {
  const hb = new Heartbeat(0);
  // Before samples: 3 × (333 + 666 + 500) = 4497 < 5000.
  assert.equal(hb.failureTimeoutMs(), 5000);
  const slow = new Heartbeat(0, { initialRttMs: 1000 });
  assert.equal(slow.failureTimeoutMs(), 3 * (1000 + 2000 + 500));
  hb.onActivity(2_000_000);
  assert.equal(hb.failureAtUs, 7_000_000);
});

test('jitter per RFC 3550 and loss, duplication and reordering from ping seqs', () => {
  const hb = new Heartbeat(0);
  // Peer pings every 500 ms; the second arrives 16 ms late relative to the first.
  hb.handlePing({ seq: 0, tick: 0n, tsUs: 0n }, 10_000, 0n);
  const pong = hb.handlePing({ seq: 1, tick: 30n, tsUs: 500_000n }, 526_000, 0n);
  assert.deepEqual(pong, { seq: 1, tick: 0n, echoTsUs: 500_000n, holdUs: 0 });
  assert.equal(hb.stats().jitterMs, 1); // |16 ms| / 16
  hb.handlePing({ seq: 4, tick: 0n, tsUs: 2_000_000n }, 2_010_000, 0n); // 2 and 3 missing
  assert.equal(hb.stats().peerPingsLost, 2);
  hb.handlePing({ seq: 2, tick: 0n, tsUs: 1_000_000n }, 2_020_000, 0n); // late
  hb.handlePing({ seq: 2, tick: 0n, tsUs: 1_000_000n }, 2_030_000, 0n); // duplicate
  const s = hb.stats();
  assert.equal(s.peerPingsLost, 1);
  assert.equal(s.peerPingsReordered, 1);
  assert.equal(s.peerPingsDuplicated, 1);
  assert.equal(s.incomingLossRatio, 1 / 5);
});

test('round-trip loss: a ping without a pong within the loss delay counts as lost', () => {
  const hb = new Heartbeat(0);
  // Before samples: max(2 × max(333, 500), 333 + 4 × 166.5) = 1000 ms.
  assert.equal(hb.lossDelayMs(), 1000);
  const p0 = hb.pollPing(0, 0n)!;
  hb.pollPing(500_000, 0n);
  hb.handlePong({ seq: p0.seq, tick: 0n, echoTsUs: p0.tsUs, holdUs: 0 }, 100_000);
  // SRTT 100 ms, RTTVAR 50 ms: the loss delay is 2 × 500 = 1000 ms; ping 1 (sent at 500 ms)
  // is lost from 1500 ms on.
  hb.pollPing(1_400_000, 0n);
  assert.equal(hb.stats().pingsLost, 0);
  hb.pollPing(1_900_000, 0n);
  assert.equal(hb.stats().pingsLost, 1);
  assert.equal(hb.stats().lossRatio, 1 / 2);
});

test('ping seqs wrap at 2³²', () => {
  const hb = new Heartbeat(0);
  hb.handlePing({ seq: 0xffff_fffe, tick: 0n, tsUs: 0n }, 0, 0n);
  hb.handlePing({ seq: 0xffff_ffff, tick: 0n, tsUs: 1n }, 1, 0n);
  hb.handlePing({ seq: 0, tick: 0n, tsUs: 2n }, 2, 0n);
  hb.handlePing({ seq: 2, tick: 0n, tsUs: 3n }, 3, 0n);
  assert.equal(hb.stats().peerPingsLost, 1);
});

test('client ticks run ahead of the estimated server tick, each once', () => {
  const t = new TickSync(60, 2);
  // Server tick 100 with a 100 ms RTT: 100 + 0.5 + 0.05 × 60 = 103.5 now.
  t.observe(100n, 100, 0);
  assert.equal(t.serverTick(0), 103.5);
  assert.equal(t.pollTick(0), 105);
  assert.equal(t.pollTick(0), null);
  assert.equal(t.pollTick(10), 106); // 103.5 + 0.6 → 104
  assert.equal(t.pollTick(10), null);
  assert.equal(t.currentTick, 106);
  // Far behind: jumps to the latest.
  assert.equal(t.pollTick(1000), 165); // 103.5 + 60 → 163, + 2
  // A re-estimate that goes backwards repeats nothing.
  t.observe(150n, 0, 1000);
  assert.equal(t.pollTick(1000), null);
  assert.equal(new TickSync(0).tickRateHz, 1);
});
