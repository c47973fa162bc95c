// Postcard subset (PROTOCOL.md §1.3) and stream frames (§3).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DecodeError, FrameDecoder, FrameTooLargeError, Reader, Writer, encodeFrame, fromHex, toHex, concat } from '../src/index.js';

test('varints are minimal LEB128', () => {
  const cases: [number | bigint, string][] = [
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8001'],
    [300, 'ac02'],
    [1000, 'e807'],
    [0xffff, 'ffff03'],
    [0xffff_ffff, 'ffffffff0f'],
    [1_767_225_600_000n, '80d0eab6b733'],
    [(1n << 64n) - 1n, 'ffffffffffffffffff01'],
  ];
  for (const [value, hex] of cases) assert.equal(toHex(new Writer().varint(value).finish()), hex, String(value));
  assert.throws(() => new Writer().varint(1n << 64n), RangeError);
  assert.throws(() => new Writer().varint(-1), RangeError);
});

test('readers accept overlong varints within the type and refuse overflow', () => {
  assert.equal(new Reader(fromHex('8000')).u16(), 0);
  assert.equal(new Reader(fromHex('808000')).u16(), 0);
  assert.throws(() => new Reader(fromHex('80808000')).u16(), DecodeError); // 4 bytes for a u16
  assert.throws(() => new Reader(fromHex('808004')).u16(), DecodeError); // 0x10000
  assert.equal(new Reader(fromHex('ffffffff0f')).u32(), 0xffff_ffff);
  assert.throws(() => new Reader(fromHex('ffffffff1f')).u32(), DecodeError);
  assert.equal(new Reader(fromHex('ffffffffffffffffff01')).u64(), (1n << 64n) - 1n);
  assert.throws(() => new Reader(fromHex('ffffffffffffffffff02')).u64(), DecodeError);
  assert.throws(() => new Reader(fromHex('80')).u32(), DecodeError); // truncated
});

test('options, byte vectors, strings and exact decoding', () => {
  const w = new Writer();
  w.option(5, (v) => w.varint(v)).option(null, () => {}).bytes(fromHex('aabb')).string('hé').raw(fromHex('0102'));
  const bytes = w.finish();
  assert.equal(toHex(bytes), '0105' + '00' + '02aabb' + '0368c3a9' + '0102');
  const r = new Reader(bytes);
  assert.equal(r.option(() => r.u32()), 5);
  assert.equal(r.option(() => r.u32()), null);
  assert.deepEqual(r.bytes(), fromHex('aabb'));
  assert.equal(r.string(), 'hé');
  assert.deepEqual(r.raw(2), fromHex('0102'));
  r.end();
  assert.throws(() => new Reader(fromHex('02')).option(() => 0), DecodeError); // tag 2
  assert.throws(() => new Reader(fromHex('02ff')).string(), DecodeError); // invalid UTF-8 / short
  assert.throws(() => new Reader(fromHex('01c3')).string(), DecodeError);
  assert.throws(() => new Reader(fromHex('05aa')).bytes(), DecodeError); // length beyond input
  const trailing = new Reader(fromHex('0000'));
  trailing.u8();
  assert.throws(() => trailing.end(), DecodeError);
});

test('frames round-trip whatever the chunking', () => {
  const payloads = [new Uint8Array(0), fromHex('01'), new Uint8Array(300).map((_, i) => i), new Uint8Array(0), fromHex('ffee')];
  const stream = concat(...payloads.map(encodeFrame));
  assert.equal(toHex(encodeFrame(fromHex('6869'))), '000000026869');
  for (const size of [1, 2, 3, 4, 5, 7, 64, stream.length]) {
    const d = new FrameDecoder(4096);
    const out: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += size) out.push(...d.push(stream.subarray(i, i + size)));
    assert.deepEqual(out, payloads, `chunks of ${size}`);
    assert.equal(d.hasPartial, false);
  }
});

test('a frame over the limit fails on its prefix, before any payload', () => {
  const d = new FrameDecoder(4096);
  assert.deepEqual(d.push(fromHex('000010')), []);
  assert.equal(d.bufferedBytes, 3);
  assert.throws(
    () => d.push(fromHex('01')),
    (e: unknown) => e instanceof FrameTooLargeError && e.length === 4097 && e.limit === 4096,
  );
  assert.throws(() => d.push(fromHex('00')), FrameTooLargeError); // no resynchronisation
  const exact = new FrameDecoder(2);
  assert.deepEqual(exact.push(fromHex('00000002aabb')), [fromHex('aabb')]);
});
