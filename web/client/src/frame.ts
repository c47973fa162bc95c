/**
 * Stream framing (PROTOCOL.md §3): `frame = u32be(len) ‖ payload`.
 *
 * `FrameDecoder` holds at most one partial frame: its declared length is checked against the
 * limit as soon as the 4-byte prefix has arrived, before any payload is kept.
 */

import { u32be } from './bytes.js';
import { FrameTooLargeError } from './errors.js';

/** Largest control-stream frame payload, in bytes (`MAX_CONTROL_FRAME_BYTES`, §3). */
export const MAX_CONTROL_FRAME_BYTES = 4096;
/** Default largest channel-stream frame payload, in bytes (8 MiB, `max_reliable_message_bytes`, §3). */
export const DEFAULT_MAX_RELIABLE_MESSAGE_BYTES = 8 * 1024 * 1024;

/** `u32be(len) ‖ payload`. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  out.set(u32be(payload.length), 0);
  out.set(payload, 4);
  return out;
}

/**
 * Splits a byte stream into frames. Feed it chunks in order with `push`; it returns the
 * frames they complete. Memory held: at most 3 bytes of a prefix plus one payload of at most
 * `limit` bytes.
 */
export class FrameDecoder {
  private header = new Uint8Array(4);
  private headerLen = 0;
  private payload: Uint8Array | null = null;
  private payloadLen = 0;
  private failed = false;

  constructor(
    /** Largest accepted payload, in bytes (1..=2³²−1). */
    readonly limit: number,
  ) {}

  /** Bytes held in the current partial frame (prefix included). */
  get bufferedBytes(): number {
    return this.headerLen + this.payloadLen;
  }

  /** Whether a frame has started but not completed. */
  get hasPartial(): boolean {
    return this.headerLen > 0;
  }

  /**
   * Consumes `chunk` and returns the frames it completes, in order.
   *
   * @throws {FrameTooLargeError} as soon as a prefix declares more than `limit`; the decoder
   *   then refuses every further byte (the stream cannot be resynchronised).
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw new FrameTooLargeError(-1, this.limit);
    const frames: Uint8Array[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.payload === null) {
        const take = Math.min(4 - this.headerLen, chunk.length - i);
        this.header.set(chunk.subarray(i, i + take), this.headerLen);
        this.headerLen += take;
        i += take;
        if (this.headerLen < 4) break;
        const len = new DataView(this.header.buffer).getUint32(0, false);
        if (len > this.limit) {
          this.failed = true;
          throw new FrameTooLargeError(len, this.limit);
        }
        this.payload = new Uint8Array(len);
        this.payloadLen = 0;
      }
      const want = this.payload.length - this.payloadLen;
      const take = Math.min(want, chunk.length - i);
      this.payload.set(chunk.subarray(i, i + take), this.payloadLen);
      this.payloadLen += take;
      i += take;
      if (this.payloadLen === this.payload.length) {
        frames.push(this.payload);
        this.payload = null;
        this.payloadLen = 0;
        this.headerLen = 0;
      }
    }
    return frames;
  }
}
