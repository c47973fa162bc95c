/**
 * The subset of postcard 1.x that tickwire uses (PROTOCOL.md §1.3,
 * <https://postcard.jamesmunns.com/wire-format>): u8, LEB128 varints for u16/u32/u64,
 * `Option`, byte vectors and strings, fixed arrays; structs and enums are written field by
 * field by the callers.
 *
 * Integers up to u32 are JavaScript numbers; u64 is `bigint` so that every value round-trips.
 */

import { DecodeError } from './errors.js';

/** Largest encoding of a varint per type, in bytes (§1.3). */
const VARINT_MAX_BYTES = { u16: 3, u32: 5, u64: 10 } as const;

/**
 * Appends postcard values into a growing buffer of at most `maxBytes` bytes. Senders always
 * emit minimal varints (§1.3).
 */
export class Writer {
  private buf: Uint8Array;
  private len = 0;
  constructor(
    initialCapacity = 64,
    /** Hard cap on the encoding's size; exceeding it throws `RangeError`. */
    private readonly maxBytes = 1 << 24,
  ) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity));
  }

  private reserve(n: number): void {
    const need = this.len + n;
    if (need > this.maxBytes) throw new RangeError(`encoding exceeds ${this.maxBytes} bytes`);
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(Math.min(cap, this.maxBytes));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** One raw byte. */
  u8(x: number): this {
    this.reserve(1);
    this.buf[this.len++] = x & 0xff;
    return this;
  }

  /** An unsigned varint (u16, u32 or u64): 7 bits per byte, least significant first. */
  varint(x: number | bigint): this {
    let v = BigInt(x);
    if (v < 0n) throw new RangeError('varint of a negative value');
    if (v >= 1n << 64n) throw new RangeError('varint exceeds u64');
    if (typeof x === 'number' && x <= 0xffff_ffff) {
      // Fast path without bigint arithmetic.
      let n = x;
      while (n >= 0x80) {
        this.u8((n % 0x80) | 0x80);
        n = Math.floor(n / 0x80);
      }
      return this.u8(n);
    }
    while (v >= 0x80n) {
      this.u8(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    return this.u8(Number(v));
  }

  /** Raw bytes with no length (`[u8; N]` fields). */
  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** `Vec<u8>`: varint length, then the bytes. */
  bytes(bytes: Uint8Array): this {
    this.varint(bytes.length);
    return this.raw(bytes);
  }

  /** `String`: varint length of the UTF-8, then the UTF-8. */
  string(text: string): this {
    return this.bytes(new TextEncoder().encode(text));
  }

  /** `Option<T>`: `00`, or `01` then the value written by `write`. */
  option<T>(value: T | null | undefined, write: (v: T) => void): this {
    if (value === null || value === undefined) return this.u8(0);
    this.u8(1);
    write(value);
    return this;
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/**
 * Reads postcard values from a byte array. Every method throws `DecodeError` on truncated or
 * invalid input. Overlong varints are accepted within the type's maximum length, values that
 * overflow the type are refused (postcard 1.1, §1.3).
 */
export class Reader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    /** Name of the structure being read, for error messages. */
    private readonly what = 'postcard',
  ) {}

  /** Bytes not yet read. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private fail(message: string): never {
    throw new DecodeError(this.what, `${message} at offset ${this.pos}`);
  }

  /** One raw byte. */
  u8(): number {
    if (this.pos >= this.buf.length) this.fail('unexpected end of input');
    return this.buf[this.pos++]!;
  }

  private varintBig(maxBytes: number, max: bigint, type: string): bigint {
    let value = 0n;
    for (let i = 0; i < maxBytes; i++) {
      const byte = this.u8();
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) {
        if (value > max) this.fail(`varint overflows ${type}`);
        return value;
      }
    }
    return this.fail(`varint longer than ${maxBytes} bytes for ${type}`);
  }

  /** A u16 varint (at most 3 bytes). */
  u16(): number {
    return Number(this.varintBig(VARINT_MAX_BYTES.u16, 0xffffn, 'u16'));
  }

  /** A u32 varint (at most 5 bytes). */
  u32(): number {
    return Number(this.varintBig(VARINT_MAX_BYTES.u32, 0xffff_ffffn, 'u32'));
  }

  /** A u64 varint (at most 10 bytes), as a bigint. */
  u64(): bigint {
    return this.varintBig(VARINT_MAX_BYTES.u64, (1n << 64n) - 1n, 'u64');
  }

  /** `[u8; n]`: exactly `n` raw bytes (a copy). */
  raw(n: number): Uint8Array {
    if (this.remaining < n) this.fail(`expected ${n} bytes, ${this.remaining} left`);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** `Vec<u8>`: varint length (as u64), then that many bytes. */
  bytes(): Uint8Array {
    const len = this.u64();
    if (len > BigInt(this.remaining)) this.fail(`length ${len} exceeds the ${this.remaining} bytes left`);
    return this.raw(Number(len));
  }

  /** `String`: a `Vec<u8>` that must be valid UTF-8. */
  string(): string {
    const bytes = this.bytes();
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return this.fail('string is not valid UTF-8');
    }
  }

  /** `Option<T>`: tag 0 (None) or 1 (Some) then the value; any other tag is an error. */
  option<T>(read: () => T): T | null {
    const tag = this.u8();
    if (tag === 0) return null;
    if (tag === 1) return read();
    return this.fail(`invalid Option tag ${tag}`);
  }

  /** An enum's variant index (a u32 varint). */
  variant(): number {
    return this.u32();
  }

  /** Asserts that every byte was read (messages decode exactly, §1.3). */
  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes`);
  }
}
