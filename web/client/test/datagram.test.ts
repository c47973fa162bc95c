// Datagram layout (PROTOCOL.md §5.1–§5.3) and CloseInfo (§6.2, §12.6).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  closeInfoFromMessage,
  closeInfoToMessage,
  decodeCloseInfo,
  encodeCloseInfo,
  encodeFragment,
  encodePing,
  encodePong,
  encodeSequenced,
  encodeUnreliable,
  fromBase64Url,
  fromHex,
  isRetryable,
  parseDatagram,
  reasonFromWire,
  reasonName,
  ReasonCode,
  seqNewer,
  toBase64Url,
  toHex,
  ascii,
} from '../src/index.js';

test('§5.1 examples: a sequenced datagram and a fragment', () => {
  assert.equal(toHex(encodeSequenced(3, 0x1234, ascii('hi'))), '6312346869');
  assert.equal(toHex(encodeFragment(false, 2, { messageId: 9, index: 1, count: 3 }, ascii('xy'))), '82000901037879');
  assert.deepEqual(parseDatagram(fromHex('6312346869')), { kind: 'sequenced', channel: 3, seq: 0x1234, payload: ascii('hi') });
  assert.deepEqual(parseDatagram(fromHex('82000901037879')), {
    kind: 'fragment',
    sequenced: false,
    channel: 2,
    header: { messageId: 9, index: 1, count: 3 },
    chunk: ascii('xy'),
  });
  assert.deepEqual(parseDatagram(encodeUnreliable(2, ascii('z'))), { kind: 'unreliable', channel: 2, payload: ascii('z') });
});

test('§5.2 examples: Ping and Pong', () => {
  const ping = { seq: 5, tick: 1000n, tsUs: 1_500_000n };
  assert.equal(toHex(encodePing(ping)), '0005e807e0c65b');
  const pong = { seq: 5, tick: 1003n, echoTsUs: 1_500_000n, holdUs: 0 };
  assert.equal(toHex(encodePong(pong)), '2005eb07e0c65b00');
  assert.deepEqual(parseDatagram(fromHex('0005e807e0c65b')), { kind: 'ping', ping });
  assert.deepEqual(parseDatagram(fromHex('2005eb07e0c65b00')), { kind: 'pong', pong });
});

test('§5.6 invalid datagrams are reported, never thrown', () => {
  assert.deepEqual(parseDatagram(new Uint8Array(0)), { invalid: 'empty' });
  assert.deepEqual(parseDatagram(fromHex('c0')), { invalid: 'reserved-kind' });
  assert.deepEqual(parseDatagram(fromHex('e1')), { invalid: 'reserved-kind' });
  assert.deepEqual(parseDatagram(fromHex('6312')), { invalid: 'short' });
  assert.deepEqual(parseDatagram(fromHex('82000900')), { invalid: 'short' });
  assert.deepEqual(parseDatagram(fromHex('8200090000')), { invalid: 'bad-fragment-header' }); // count 0
  assert.deepEqual(parseDatagram(fromHex('8200090303')), { invalid: 'bad-fragment-header' }); // index = count
  assert.deepEqual(parseDatagram(fromHex('0005e807e0c65b00')), { invalid: 'bad-ping' }); // trailing byte
  assert.deepEqual(parseDatagram(fromHex('2005eb07e0c6')), { invalid: 'bad-pong' });
});

test('§5.3 newer() is RFC 1982 serial arithmetic on 16 bits', () => {
  assert.ok(seqNewer(1, 0));
  assert.ok(!seqNewer(0, 0));
  assert.ok(!seqNewer(0, 1));
  assert.ok(seqNewer(0, 0xffff));
  assert.ok(seqNewer(0x7fff, 0));
  assert.ok(!seqNewer(0x8000, 0));
});

test('§6.2 CloseInfo example and malformed phrases', () => {
  const info = { retryAfterMs: 5000, detail: '1024 sessions' };
  assert.equal(toHex(encodeCloseInfo(info)), '0188270d313032342073657373696f6e73');
  assert.deepEqual(decodeCloseInfo(fromHex('0188270d313032342073657373696f6e73')), info);
  assert.equal(toHex(encodeCloseInfo({ retryAfterMs: null, detail: '' })), '0000');
  assert.deepEqual(decodeCloseInfo(fromHex('0000ffff')), { retryAfterMs: null, detail: '' }); // trailing ignored
  assert.deepEqual(decodeCloseInfo(fromHex('02')), { retryAfterMs: null, detail: '' });
  assert.deepEqual(decodeCloseInfo(fromHex('0005ff')), { retryAfterMs: null, detail: '' });
  // Details are truncated to 200 bytes at a character boundary.
  const long = encodeCloseInfo({ retryAfterMs: null, detail: 'é'.repeat(150) });
  assert.equal(decodeCloseInfo(long).detail, 'é'.repeat(100));
});

test('§12.6 close message: unpadded base64url of the CloseInfo', () => {
  const info = { retryAfterMs: 5000, detail: '1024 sessions' };
  const message = closeInfoToMessage(info);
  assert.equal(message, 'AYgnDTEwMjQgc2Vzc2lvbnM');
  assert.ok(!message.includes('='));
  assert.deepEqual(closeInfoFromMessage(message), info);
  assert.deepEqual(closeInfoFromMessage(''), { retryAfterMs: null, detail: '' });
  assert.deepEqual(closeInfoFromMessage('not base64!'), { retryAfterMs: null, detail: '' });
  assert.deepEqual(closeInfoFromMessage('AYgnDTEwMjQgc2Vzc2lvbnM='), { retryAfterMs: null, detail: '' }); // padding refused
  for (const n of [0, 1, 2, 3, 4, 5, 31]) {
    const bytes = new Uint8Array(n).map((_, i) => (i * 97 + 251) & 0xff);
    assert.deepEqual(fromBase64Url(toBase64Url(bytes)), bytes);
  }
  assert.equal(toBase64Url(fromHex('fbff')), '-_8');
});

test('§6.1 reason names, retry advice and wire mapping', () => {
  assert.equal(reasonName(ReasonCode.SERVER_FULL), 'SERVER_FULL');
  assert.equal(reasonName(36), 'PERMISSION_DENIED');
  assert.equal(reasonName(37), 'UNKNOWN(37)');
  assert.ok(isRetryable(ReasonCode.RATE_LIMITED));
  assert.ok(!isRetryable(ReasonCode.TICKET_EXPIRED));
  assert.ok(!isRetryable(4000));
  assert.equal(reasonFromWire(14), 14);
  assert.equal(reasonFromWire(0x1_0000), 0xffff);
});
