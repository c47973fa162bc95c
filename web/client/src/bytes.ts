/**
 * Byte helpers: concatenation, fixed-width big-endian integers (PROTOCOL.md §1.2), hex, and
 * unpadded base64url (RFC 4648 §5) as the WebTransport close message uses it (§12.6).
 */

/** Concatenates byte arrays into one new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** `u16be(x)`: 2 bytes, big-endian. `x` must be in 0..=0xffff. */
export function u16be(x: number): Uint8Array {
  return new Uint8Array([(x >>> 8) & 0xff, x & 0xff]);
}

/** `u32be(x)`: 4 bytes, big-endian. `x` must be in 0..=0xffff_ffff. */
export function u32be(x: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, x >>> 0, false);
  return out;
}

/** Reads a big-endian u16 at `offset`. */
export function readU16be(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}

/** Reads a big-endian u32 at `offset`. */
export function readU32be(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) >>> 0) + ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * Bytes of a hex string (either case, even length, no separators).
 *
 * @throws {TypeError} on an odd length or a non-hex character.
 */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0) throw new TypeError(`hex string has odd length ${hex.length}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const pair = hex.slice(2 * i, 2 * i + 2);
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) throw new TypeError(`invalid hex at offset ${2 * i}`);
    out[i] = parseInt(pair, 16);
  }
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function encode64(bytes: Uint8Array, alphabet: string, pad: boolean): string {
  let out = '';
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += alphabet[(n >>> 18) & 63]! + alphabet[(n >>> 12) & 63]! + alphabet[(n >>> 6) & 63]! + alphabet[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += alphabet[(n >>> 18) & 63]! + alphabet[(n >>> 12) & 63]! + (pad ? '==' : '');
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += alphabet[(n >>> 18) & 63]! + alphabet[(n >>> 12) & 63]! + alphabet[(n >>> 6) & 63]! + (pad ? '=' : '');
  }
  return out;
}

function decode64(text: string, alphabet: string, allowPad: boolean): Uint8Array {
  let body = text;
  if (allowPad) body = body.replace(/={1,2}$/, '');
  if (body.length % 4 === 1) throw new TypeError('base64 text has an impossible length');
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const ch of body) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new TypeError(`invalid base64 character ${JSON.stringify(ch)}`);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  // RFC 4648 §3.5: the unused trailing bits must be zero (canonical encoding).
  if ((acc & ((1 << bits) - 1)) !== 0) throw new TypeError('base64 text has non-zero padding bits');
  return out;
}

/** Unpadded base64url (RFC 4648 §5), as in the close message of PROTOCOL.md §12.6. */
export function toBase64Url(bytes: Uint8Array): string {
  return encode64(bytes, B64URL, false);
}

/**
 * Bytes of unpadded base64url text (RFC 4648 §5).
 *
 * @throws {TypeError} on a character outside the alphabet, padding, or a non-canonical tail.
 */
export function fromBase64Url(text: string): Uint8Array {
  return decode64(text, B64URL, false);
}

/** Standard padded base64 (RFC 4648 §4), as certificate hashes are published. */
export function toBase64(bytes: Uint8Array): string {
  return encode64(bytes, B64, true);
}

/**
 * Bytes of standard base64 (RFC 4648 §4), padding optional.
 *
 * @throws {TypeError} on malformed text.
 */
export function fromBase64(text: string): Uint8Array {
  return decode64(text, B64, true);
}

/** Byte-wise equality. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** ASCII bytes of `text` (the labels and contexts of PROTOCOL.md are ASCII). */
export function ascii(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
