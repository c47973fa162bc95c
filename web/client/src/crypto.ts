/**
 * Hashing and signatures: SHA-256 (FIPS 180-4) through WebCrypto, Ed25519 (RFC 8032
 * PureEdDSA) through `@noble/ed25519`, with verification as strict as ed25519-dalek's
 * `verify_strict` (PROTOCOL.md §4.3).
 */

import * as ed from '@noble/ed25519';
import { bytesEqual, concat } from './bytes.js';

/** The order of the Ed25519 base point, L = 2²⁵² + 27742317777372353535851937790883648493. */
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function subtle(): SubtleCrypto {
  const c = globalThis.crypto;
  if (!c?.subtle) throw new Error('WebCrypto (crypto.subtle) is not available: a secure context is required');
  return c.subtle;
}

/** SHA-256 of the concatenation of `parts`: 32 bytes. */
export async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const data = parts.length === 1 ? parts[0]! : concat(...parts);
  return new Uint8Array(await subtle().digest('SHA-256', data as Uint8Array<ArrayBuffer>));
}

async function sha512(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-512', data as Uint8Array<ArrayBuffer>));
}

/** `n` fresh random bytes from the platform CSPRNG (`crypto.getRandomValues`). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

function numberLE(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

/**
 * An Ed25519 identity: a 32-byte secret seed (RFC 8032 §5.1.5) and its 32-byte public key.
 * The seed never leaves this object except through `seed`.
 */
export class Ed25519Identity {
  private constructor(
    private readonly secret: Uint8Array,
    /** The public key, 32 bytes (RFC 8032 encoding). */
    readonly publicKey: Uint8Array,
  ) {}

  /** The identity of a 32-byte seed. */
  static async fromSeed(seed: Uint8Array): Promise<Ed25519Identity> {
    if (seed.length !== 32) throw new RangeError(`Ed25519 seed must be 32 bytes, got ${seed.length}`);
    const secret = seed.slice();
    return new Ed25519Identity(secret, await ed.getPublicKeyAsync(secret));
  }

  /** A fresh identity from the platform CSPRNG. */
  static async generate(): Promise<Ed25519Identity> {
    return Ed25519Identity.fromSeed(randomBytes(32));
  }

  /** The secret seed (a copy): store it only where a secret belongs. */
  seed(): Uint8Array {
    return this.secret.slice();
  }

  /** The 64-byte Ed25519 signature of `message` (PureEdDSA, deterministic). */
  async sign(message: Uint8Array): Promise<Uint8Array> {
    return ed.signAsync(message, this.secret);
  }
}

/**
 * Strict Ed25519 verification (PROTOCOL.md §4.3, as ed25519-dalek `verify_strict`): the
 * public key and `R` must decode to curve points that are not of small order, `S` must be
 * canonical (`S < L`), and `[S]B − [k]A` must encode to exactly `R` (the cofactorless
 * equation). A key or signature of the wrong length, or one that does not decode, fails.
 */
export async function verifyStrict(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  const rBytes = signature.subarray(0, 32);
  let A: ed.Point;
  let R: ed.Point;
  try {
    A = ed.Point.fromBytes(publicKey, false);
    R = ed.Point.fromBytes(rBytes, false);
  } catch {
    return false;
  }
  if (A.isSmallOrder() || R.isSmallOrder()) return false;
  const s = numberLE(signature.subarray(32, 64));
  if (s >= L) return false;
  const k = numberLE(await sha512(concat(rBytes, publicKey, message))) % L;
  const rCheck = ed.Point.BASE.multiply(s, false).subtract(A.multiply(k, false));
  return bytesEqual(rCheck.toBytes(), rBytes);
}
