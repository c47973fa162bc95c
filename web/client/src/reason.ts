/**
 * Reason codes (PROTOCOL.md §6.1) and `CloseInfo` (§6.2), and their WebTransport carriage
 * (§12.6): the session close's code is the reason code, its message the unpadded base64url of
 * the postcard `CloseInfo`.
 */

import { fromBase64Url, toBase64Url } from './bytes.js';
import { Reader, Writer } from './postcard.js';

/** Reason codes defined by protocol version 1 (PROTOCOL.md §6.1). A u16 on the wire. */
export const ReasonCode = {
  NORMAL: 0,
  SERVER_SHUTDOWN: 1,
  UNSUPPORTED_VERSION: 2,
  SCHEMA_MISMATCH: 3,
  SERVER_FULL: 4,
  RATE_LIMITED: 5,
  HANDSHAKE_TIMEOUT: 6,
  BAD_HANDSHAKE: 7,
  BAD_SIGNATURE: 8,
  TICKET_MALFORMED: 9,
  TICKET_UNKNOWN_KEY: 10,
  TICKET_BAD_SIGNATURE: 11,
  TICKET_WRONG_AUDIENCE: 12,
  TICKET_NOT_YET_VALID: 13,
  TICKET_EXPIRED: 14,
  TICKET_REPLAYED: 15,
  TICKET_REVOKED: 16,
  TICKET_IDENTITY_MISMATCH: 17,
  TICKET_LIFETIME_TOO_LONG: 18,
  SERVER_BUSY: 19,
  HEARTBEAT_TIMEOUT: 20,
  PROTOCOL_VIOLATION: 21,
  KICKED: 22,
  ROLE_NOT_PERMITTED: 23,
  SERVER_KEY_MISMATCH: 24,
  TRANSPORT_ERROR: 25,
  NOT_AUTHORISED: 26,
  PLAY_TICKET_INVALID: 27,
  JOIN_CLOCK_SKEW: 28,
  UNKNOWN_GAME_SERVER: 29,
  AK_REJECTED: 30,
  QUOTE_INVALID: 31,
  QUOTE_REPLAYED: 32,
  QUOTE_BINDING_MISMATCH: 33,
  MEASUREMENT_MISMATCH: 34,
  GS_REVOKED: 35,
  PERMISSION_DENIED: 36,
} as const;

/** A reason code: any u16 (codes 37–65 535 are reserved and read as unknown). */
export type ReasonCodeValue = number;

const NAMES: string[] = [];
for (const [name, code] of Object.entries(ReasonCode)) NAMES[code] = name;

/** Codes after which a client may reasonably try again (PROTOCOL.md §6.1, column "retry"). */
const RETRYABLE = new Set<number>([
  ReasonCode.SERVER_SHUTDOWN,
  ReasonCode.SERVER_FULL,
  ReasonCode.RATE_LIMITED,
  ReasonCode.HANDSHAKE_TIMEOUT,
  ReasonCode.TICKET_NOT_YET_VALID,
  ReasonCode.SERVER_BUSY,
  ReasonCode.HEARTBEAT_TIMEOUT,
  ReasonCode.TRANSPORT_ERROR,
  ReasonCode.NOT_AUTHORISED,
  ReasonCode.JOIN_CLOCK_SKEW,
]);

/** The name of a reason code (`"SERVER_FULL"`), or `"UNKNOWN(n)"` for a reserved one. */
export function reasonName(code: number): string {
  return NAMES[code] ?? `UNKNOWN(${code})`;
}

/** Whether a client may retry after `code` (unknown codes are not retryable, §6.1). */
export function isRetryable(code: number): boolean {
  return RETRYABLE.has(code);
}

/**
 * A reason code as carried in a WebTransport close (a u32, §12.6) or a QUIC error code: values
 * above 65 535 are read as 65 535, an unknown code (§6.2).
 */
export function reasonFromWire(code: number): number {
  if (!Number.isFinite(code) || code < 0) return 0xffff;
  return code > 0xffff ? 0xffff : Math.floor(code);
}

/** Advice and detail that accompany a reason code (PROTOCOL.md §6.2). */
export interface CloseInfo {
  /** When the peer may try again, in milliseconds (a u32), if it said. */
  retryAfterMs: number | null;
  /** Human-readable detail, at most 200 UTF-8 bytes; never parsed. */
  detail: string;
}

/** Largest `detail` a sender emits, in UTF-8 bytes (§6.2). */
export const MAX_DETAIL_BYTES = 200;

/** Truncates `text` to at most `maxBytes` UTF-8 bytes at a character boundary. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).length <= maxBytes) return text;
  let out = '';
  let used = 0;
  for (const ch of text) {
    const n = encoder.encode(ch).length;
    if (used + n > maxBytes) break;
    out += ch;
    used += n;
  }
  return out;
}

/** The postcard encoding of `CloseInfo` (§6.2); `detail` is truncated to 200 bytes. */
export function encodeCloseInfo(info: CloseInfo): Uint8Array {
  const w = new Writer(8 + MAX_DETAIL_BYTES);
  if (info.retryAfterMs === null) {
    w.u8(0);
  } else {
    w.u8(1);
    w.varint(info.retryAfterMs);
  }
  w.string(truncateUtf8(info.detail, MAX_DETAIL_BYTES));
  return w.finish();
}

/**
 * `CloseInfo` from a reason phrase: bytes after the encoding are ignored, and a phrase that
 * does not decode is read as `{ retryAfterMs: null, detail: "" }` (§6.2).
 */
export function decodeCloseInfo(bytes: Uint8Array): CloseInfo {
  try {
    const r = new Reader(bytes);
    const retryAfterMs = r.option(() => r.u32());
    const detail = r.string();
    return { retryAfterMs, detail };
  } catch {
    return { retryAfterMs: null, detail: '' };
  }
}

/** The WebTransport close message for `info`: unpadded base64url of its postcard (§12.6). */
export function closeInfoToMessage(info: CloseInfo): string {
  return toBase64Url(encodeCloseInfo(info));
}

/** `CloseInfo` from a WebTransport close message; anything malformed reads as `{null, ""}`. */
export function closeInfoFromMessage(message: string): CloseInfo {
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(message);
  } catch {
    return { retryAfterMs: null, detail: '' };
  }
  return decodeCloseInfo(bytes);
}
