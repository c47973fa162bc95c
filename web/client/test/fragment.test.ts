// Fragmentation and bounded reassembly (PROTOCOL.md §5.4).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Reassembler, fragmentMessage, parseDatagram } from '../src/index.js';

function parts(datagrams: Uint8Array[]) {
  return datagrams.map((d) => {
    const p = parseDatagram(d);
    if (!('kind' in p) || p.kind !== 'fragment') throw new Error('not a fragment');
    return p;
  });
}

const message = (n: number, seed = 1) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

test('a message splits into ⌈L / (M − 5)⌉ chunks, the last holding the rest', () => {
  const m = message(2500);
  const frags = parts(fragmentMessage(m, 1000, false, 2, 7)!);
  assert.equal(frags.length, 3);
  assert.deepEqual(frags.map((f) => f.chunk.length), [995, 995, 510]);
  assert.ok(frags.every((f) => f.header.messageId === 7 && f.header.count === 3 && f.channel === 2 && !f.sequenced));
  const empty = parts(fragmentMessage(new Uint8Array(0), 1000, true, 3, 9)!);
  assert.equal(empty.length, 1);
  assert.equal(empty[0]!.chunk.length, 0);
  assert.ok(empty[0]!.sequenced);
  assert.equal(fragmentMessage(message(256 * 10), 15, false, 2, 0), null); // 256 chunks of 10
  assert.equal(fragmentMessage(message(255 * 10), 15, false, 2, 0)!.length, 255);
  assert.equal(fragmentMessage(message(10), 5, false, 2, 0), null); // no room for a chunk
});

test('reassembly in any order, duplicates ignored, late duplicates dropped', () => {
  const m = message(5000);
  const frags = parts(fragmentMessage(m, 1200, false, 2, 42)!);
  const r = new Reassembler();
  const order = [3, 0, 4, 0, 2, 1];
  let out: Uint8Array | null = null;
  for (const i of order) {
    const f = frags[i]!;
    const got = r.push(f.channel, f.header, f.chunk, 0);
    if (got) out = got;
  }
  assert.deepEqual(out, m);
  let s = r.stats();
  assert.equal(s.messagesReassembled, 1);
  assert.equal(s.duplicateFragments, 1);
  assert.equal(s.partials, 0);
  assert.equal(s.bufferedBytes, 0);
  assert.equal(r.push(2, frags[1]!.header, frags[1]!.chunk, 1), null);
  s = r.stats();
  assert.equal(s.lateDuplicates, 1);
});

test('partials expire after the reassembly timeout, from their first fragment', () => {
  const frags = parts(fragmentMessage(message(3000), 1200, false, 2, 1)!);
  const r = new Reassembler({ reassemblyTimeoutMs: 1000 });
  r.push(2, frags[0]!.header, frags[0]!.chunk, 0);
  r.push(2, frags[1]!.header, frags[1]!.chunk, 999);
  assert.equal(r.nextExpiry(), 1000);
  r.expire(1000);
  assert.equal(r.stats().expiredTimeout, 1);
  assert.equal(r.stats().partials, 0);
  assert.equal(r.push(2, frags[2]!.header, frags[2]!.chunk, 1001), null); // starts over, incomplete
});

test('the partial limit evicts the oldest; the memory budget bounds what is charged', () => {
  const r = new Reassembler({ maxPartialMessages: 4, memoryBudgetBytes: 10_000, maxMessageBytes: 100_000 });
  for (let id = 0; id < 6; id++) {
    const f = parts(fragmentMessage(message(4000, id), 1005, false, 2, id)!)[0]!;
    r.push(2, f.header, f.chunk, 0);
    assert.ok(r.stats().bufferedBytes <= 10_000, `charged ${r.stats().bufferedBytes}`);
    assert.ok(r.stats().partials <= 4);
  }
  const s = r.stats();
  assert.ok(s.evictedPartialLimit + s.evictedMemoryBudget >= 2);
  // A first chunk charges room for the whole message: 4 × 1000 bytes.
  const one = new Reassembler();
  const f = parts(fragmentMessage(message(4000), 1005, false, 2, 0)!);
  one.push(2, f[0]!.header, f[0]!.chunk, 0);
  assert.equal(one.stats().bufferedBytes, 4000);
  const last = new Reassembler();
  last.push(2, f[3]!.header, f[3]!.chunk, 0);
  assert.equal(last.stats().bufferedBytes, 1000); // the last chunk alone
});

test('fragments implying a message over the limit are dropped at once', () => {
  const r = new Reassembler({ maxMessageBytes: 2000 });
  const f = parts(fragmentMessage(message(3000), 1005, false, 2, 0)!);
  assert.equal(r.push(2, f[0]!.header, f[0]!.chunk, 0), null);
  assert.equal(r.stats().droppedTooLarge, 1);
  assert.equal(r.stats().partials, 0);
  const few = new Reassembler({ maxFragments: 2 });
  assert.equal(few.push(2, f[0]!.header, f[0]!.chunk, 0), null);
  assert.equal(few.stats().droppedTooManyFragments, 1);
});

test('a fragment that disagrees with its partial restarts it (a wrapped id)', () => {
  const r = new Reassembler();
  const a = parts(fragmentMessage(message(3000, 1), 1005, false, 2, 5)!); // 3 × 1000
  const b = parts(fragmentMessage(message(1500, 2), 505, false, 2, 5)!); // 3 × 500
  r.push(2, a[0]!.header, a[0]!.chunk, 0);
  r.push(2, b[0]!.header, b[0]!.chunk, 0); // chunk length differs: new partial
  r.push(2, b[1]!.header, b[1]!.chunk, 0);
  const out = r.push(2, b[2]!.header, b[2]!.chunk, 0);
  assert.deepEqual(out, message(1500, 2));
});

test('model check: random interleavings of messages and losses never exceed the bounds', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const config = { maxPartialMessages: 8, memoryBudgetBytes: 20_000, maxMessageBytes: 16_000, reassemblyTimeoutMs: 50 };
  const r = new Reassembler(config);
  const sent = new Map<number, Uint8Array>();
  let pending: { id: number; f: ReturnType<typeof parts>[number] }[] = [];
  let now = 0;
  for (let id = 0; id < 400; id++) {
    const m = message(Math.floor(rand() * 12_000), id);
    sent.set(id & 0xffff, m);
    for (const f of parts(fragmentMessage(m, 200 + Math.floor(rand() * 1000), false, 2, id)!)) {
      if (rand() < 0.05) continue; // lost
      pending.push({ id, f });
    }
    // Deliver a shuffled prefix.
    pending.sort(() => rand() - 0.5);
    const take = Math.floor(pending.length * rand());
    for (const { id: mid, f } of pending.slice(0, take)) {
      const out = r.push(f.channel, f.header, f.chunk, now);
      if (out) assert.deepEqual(out, sent.get(mid), `message ${mid}`);
      const s = r.stats();
      assert.ok(s.partials <= config.maxPartialMessages);
      assert.ok(s.bufferedBytes <= config.memoryBudgetBytes);
    }
    pending = pending.slice(take);
    now += Math.floor(rand() * 10);
  }
  assert.ok(r.stats().messagesReassembled > 20, `reassembled ${r.stats().messagesReassembled}`);
});
