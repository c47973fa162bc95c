/**
 * Datagram layout (PROTOCOL.md §5.1–§5.3): the type byte `kind << 5 | channel`, Ping and Pong
 * bodies, sequenced and fragment headers, and RFC 1982 serial-number comparison on 16 bits.
 *
 * In a WebTransport session each of these is one HTTP datagram; the browser adds and strips
 * the quarter-stream-id prefix (§12.4), so these functions see the tickwire datagram alone.
 */

import { readU16be, u16be } from './bytes.js';
import { Reader, Writer } from './postcard.js';

/** Datagram kinds (§5.1). 6 and 7 are reserved. */
export const DatagramKind = {
  Ping: 0,
  Pong: 1,
  Unreliable: 2,
  Sequenced: 3,
  Fragment: 4,
  SequencedFragment: 5,
} as const;

/** Bytes of a fragment header after the type byte: `u16be(message_id) ‖ index ‖ count`. */
export const FRAGMENT_HEADER_BYTES = 4;

/** `Ping` (§5.2). */
export interface Ping {
  /** u32, 0 for the first ping of a connection, +1 per ping (wrapping). */
  seq: number;
  /** The sender's tick (§7.2). */
  tick: bigint;
  /** The sender's clock in µs since an arbitrary per-connection epoch. */
  tsUs: bigint;
}

/** `Pong` (§5.2). */
export interface Pong {
  seq: number;
  tick: bigint;
  /** The ping's `ts_us`, unchanged. */
  echoTsUs: bigint;
  /** µs between receiving the ping and sending the pong (u32). */
  holdUs: number;
}

/** A fragment header (§5.1). */
export interface FragmentHeader {
  messageId: number;
  index: number;
  count: number;
}

/** A parsed datagram. `payload` views the datagram's bytes. */
export type Datagram =
  | { kind: 'ping'; ping: Ping }
  | { kind: 'pong'; pong: Pong }
  | { kind: 'unreliable'; channel: number; payload: Uint8Array }
  | { kind: 'sequenced'; channel: number; seq: number; payload: Uint8Array }
  | { kind: 'fragment'; sequenced: boolean; channel: number; header: FragmentHeader; chunk: Uint8Array };

/** Why a datagram was dropped unread (§5.6). */
export type InvalidDatagram = 'empty' | 'reserved-kind' | 'short' | 'bad-ping' | 'bad-pong' | 'bad-fragment-header';

/** The type byte for `kind` on `channel` (0–31). */
export function typeByte(kind: number, channel: number): number {
  return ((kind & 7) << 5) | (channel & 31);
}

/** `newer(a, b)` under RFC 1982 serial arithmetic on 16 bits (§5.3). */
export function seqNewer(a: number, b: number): boolean {
  return a !== b && ((a - b) & 0xffff) < 0x8000;
}

/** A Ping datagram. */
export function encodePing(p: Ping): Uint8Array {
  return new Writer(24).u8(typeByte(DatagramKind.Ping, 0)).varint(p.seq).varint(p.tick).varint(p.tsUs).finish();
}

/** A Pong datagram. */
export function encodePong(p: Pong): Uint8Array {
  return new Writer(32).u8(typeByte(DatagramKind.Pong, 0)).varint(p.seq).varint(p.tick).varint(p.echoTsUs).varint(p.holdUs).finish();
}

/** An unreliable datagram carrying a whole message. */
export function encodeUnreliable(channel: number, message: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + message.length);
  out[0] = typeByte(DatagramKind.Unreliable, channel);
  out.set(message, 1);
  return out;
}

/** A sequenced datagram carrying a whole message. */
export function encodeSequenced(channel: number, seq: number, message: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + message.length);
  out[0] = typeByte(DatagramKind.Sequenced, channel);
  out.set(u16be(seq & 0xffff), 1);
  out.set(message, 3);
  return out;
}

/** A fragment datagram (kind 4, or 5 when `sequenced`). */
export function encodeFragment(sequenced: boolean, channel: number, header: FragmentHeader, chunk: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + FRAGMENT_HEADER_BYTES + chunk.length);
  out[0] = typeByte(sequenced ? DatagramKind.SequencedFragment : DatagramKind.Fragment, channel);
  out.set(u16be(header.messageId & 0xffff), 1);
  out[3] = header.index;
  out[4] = header.count;
  out.set(chunk, 5);
  return out;
}

/**
 * Parses a datagram's header (§5.1). Returns the reason it is invalid instead of throwing:
 * datagrams are never a reason to close (§5.6). Whether the channel is a datagram channel of
 * the right kind is the caller's check.
 */
export function parseDatagram(d: Uint8Array): Datagram | { invalid: InvalidDatagram } {
  if (d.length === 0) return { invalid: 'empty' };
  const kind = d[0]! >>> 5;
  const channel = d[0]! & 31;
  switch (kind) {
    case DatagramKind.Ping:
      try {
        const r = new Reader(d.subarray(1), 'Ping');
        const ping = { seq: r.u32(), tick: r.u64(), tsUs: r.u64() };
        r.end();
        return { kind: 'ping', ping };
      } catch {
        return { invalid: 'bad-ping' };
      }
    case DatagramKind.Pong:
      try {
        const r = new Reader(d.subarray(1), 'Pong');
        const pong = { seq: r.u32(), tick: r.u64(), echoTsUs: r.u64(), holdUs: r.u32() };
        r.end();
        return { kind: 'pong', pong };
      } catch {
        return { invalid: 'bad-pong' };
      }
    case DatagramKind.Unreliable:
      return { kind: 'unreliable', channel, payload: d.subarray(1) };
    case DatagramKind.Sequenced:
      if (d.length < 3) return { invalid: 'short' };
      return { kind: 'sequenced', channel, seq: readU16be(d, 1), payload: d.subarray(3) };
    case DatagramKind.Fragment:
    case DatagramKind.SequencedFragment: {
      if (d.length < 1 + FRAGMENT_HEADER_BYTES) return { invalid: 'short' };
      const header = { messageId: readU16be(d, 1), index: d[3]!, count: d[4]! };
      if (header.count === 0 || header.index >= header.count) return { invalid: 'bad-fragment-header' };
      return { kind: 'fragment', sequenced: kind === DatagramKind.SequencedFragment, channel, header, chunk: d.subarray(5) };
    }
    default:
      return { invalid: 'reserved-kind' };
  }
}
