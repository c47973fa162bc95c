/**
 * Typed errors. Each class belongs to one kind of operation, and its `kind` says what happened;
 * the doc of each kind says what a caller can do next. Peer faults (bytes that do not decode,
 * a handshake the server rejected) are kept apart from misuse of the API (a send before the
 * session is established).
 */

import type { CloseInfo } from './reason.js';
import { reasonName } from './reason.js';

/** Base class of every error this library throws. */
export class TickwireError extends Error {
  override name = 'TickwireError';
}

/**
 * Bytes from the peer (or handed in by the caller, like a join ticket) do not decode as the
 * structure expected (PROTOCOL.md §1.3). Nothing to retry: the input is malformed.
 */
export class DecodeError extends TickwireError {
  override name = 'DecodeError';
  /** What was being decoded, e.g. `"HelloBody.nonce"`. */
  readonly what: string;
  constructor(what: string, message: string) {
    super(`${what}: ${message}`);
    this.what = what;
  }
}

/**
 * A frame's declared length exceeds the receiver's limit (PROTOCOL.md §3). The stream cannot
 * be resynchronised: the session must close (`BAD_HANDSHAKE` on the control stream,
 * `PROTOCOL_VIOLATION` on a channel stream).
 */
export class FrameTooLargeError extends TickwireError {
  override name = 'FrameTooLargeError';
  constructor(
    /** The declared length, in bytes. */
    readonly length: number,
    /** The limit in force, in bytes. */
    readonly limit: number,
  ) {
    super(`frame of ${length} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** Why `Session.send` refused a message. */
export type SendErrorKind =
  /** The session is not established yet (PROTOCOL.md §2.4): wait for `connect` to resolve. */
  | 'not-established'
  /** The session has closed: see `Session.closed` for why; connect again if it is retryable. */
  | 'closed'
  /** No such channel in the table (ids 0–31 that the table defines). Fix the channel id. */
  | 'unknown-channel'
  /** The session's role or permissions may not send on this channel (§7.1 send rule). */
  | 'not-permitted'
  /** Larger than the channel allows (reliable: the peer's frame limit; datagrams: the
   *  fragmentation limits, §5.4). Send less, or on a reliable channel. */
  | 'too-large'
  /** The local send buffer for this channel is full: the network is slower than the sender.
   *  Drop the message or retry later. */
  | 'queue-full';

/** A message could not be sent; `kind` says why. */
export class SendError extends TickwireError {
  override name = 'SendError';
  constructor(
    readonly kind: SendErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** Who ended a session. */
export type Initiator = 'local' | 'peer' | 'transport';

/** How a session (or a handshake) ended: a reason code (§6.1) and its `CloseInfo` (§6.2). */
export interface CloseReport {
  /** The reason code (0–65 535). */
  code: number;
  /** Its name, `"SERVER_FULL"`, or `"UNKNOWN(n)"`. */
  name: string;
  /** When to try again, in ms, if the closer said. */
  retryAfterMs: number | null;
  /** The closer's human-readable detail. */
  detail: string;
  /** Whether the session had been established (Accept verified) before it ended. */
  established: boolean;
  /** Who closed it: this client, the server (a close capsule), or the transport below. */
  initiator: Initiator;
}

/** Builds a `CloseReport`. */
export function closeReport(code: number, info: CloseInfo, established: boolean, initiator: Initiator): CloseReport {
  return {
    code,
    name: reasonName(code),
    retryAfterMs: info.retryAfterMs,
    detail: info.detail,
    established,
    initiator,
  };
}

/**
 * `connect` failed: the WebTransport session could not be opened, or the handshake was
 * rejected by the server or by this client's checks of the Accept (PROTOCOL.md §4.4.3,
 * §12.5). `report.code` decides what to do next: retry after `report.retryAfterMs` if the
 * code is retryable (`isRetryable`), with a fresh join ticket; otherwise give up.
 */
export class ConnectError extends TickwireError {
  override name = 'ConnectError';
  constructor(readonly report: CloseReport) {
    super(`${report.name}${report.detail ? `: ${report.detail}` : ''}`);
  }
}

/**
 * The options given to `connect` are unusable (a join ticket that does not decode, a key of
 * the wrong length, a channel table out of range). Fix the caller.
 */
export class ConfigError extends TickwireError {
  override name = 'ConfigError';
}
