/**
 * The handshake's messages and checks (PROTOCOL.md §4, §12.5): the `Control` enum carried in
 * control-stream frames (`Hello`, `Accept`, `Challenge`), the bodies and tickets inside them,
 * the transcript digests both signatures cover, the WebTransport certificate binding that
 * replaces the TLS exporter, and the client's checks of the Accept (§4.4.3).
 */

import { ascii, bytesEqual, u32be } from './bytes.js';
import { sha256, verifyStrict } from './crypto.js';
import { DecodeError } from './errors.js';
import { Reader, Writer } from './postcard.js';
import { ReasonCode } from './reason.js';

/** Protocol version this client speaks (min = max = 1). */
export const PROTOCOL_VERSION = 1;

/** Session roles (§4.1 `Role`, variant index = value). */
export const Role = { Player: 0, Spectator: 1, Admin: 2, GameServer: 3 } as const;
/** A role's variant index, 0–3. */
export type RoleValue = (typeof Role)[keyof typeof Role];
const ROLE_NAMES = ['player', 'spectator', 'admin', 'game_server'] as const;
/** The configuration name of a role (`"player"`, …, §7.1). */
export function roleName(role: number): string {
  return ROLE_NAMES[role] ?? `unknown(${role})`;
}

/** Capability bits (§4.4.2). */
export const Capability = { ZSTD: 1n, ZSTD_DICTIONARY: 2n } as const;
/** Permission bit 31 of a join ticket: may take the Admin role (§4.4.2). */
export const PERMISSION_ADMIN = 0x8000_0000;

/** Sizes of fixed fields, in bytes. */
export const HELLO_NONCE_BYTES = 24;
/** Server nonce of a `Challenge` (§12.5), in bytes. */
export const CHALLENGE_NONCE_BYTES = 24;
/** Largest standalone join ticket or envelope accepted, in bytes (§4.6.1, §8.5). */
export const MAX_JOIN_TICKET_BYTES = 512;
/** Largest play-ticket envelope a client accepts, in bytes (§4.4.3 check 7). */
export const MAX_ENVELOPE_BYTES = 512;
/** At most this many extensions in a Hello or Accept (§4.4.4). */
export const MAX_EXTENSIONS = 16;

const HELLO_LABEL = ascii('tickwire/hello/v1');
const ACCEPT_LABEL = ascii('tickwire/accept/v1');
const WT_BINDING_LABEL = ascii('tickwire/wt-binding/v1');
const JOIN_TICKET_CONTEXT = ascii('tickwire/join-ticket/v1\0');
const PLAY_TICKET_CONTEXT = ascii('tickwire/play-ticket/v1\0');

/** A typed extension (§4.4.4): `kind` u16, `data` bytes. */
export interface Extension {
  kind: number;
  data: Uint8Array;
}

/** `Control` variant indices (§4.1, §12.5). */
export const ControlKind = { Hello: 0, Accept: 1, Challenge: 2 } as const;

/** A signed body: the body bytes exactly as signed and a 64-byte Ed25519 signature. */
export interface Signed {
  body: Uint8Array;
  signature: Uint8Array;
}

/** The WebTransport `Challenge` (§12.5). */
export interface Challenge {
  /** 0 = certificate binding, the only value defined. */
  binding: number;
  /** SHA-256 of the server's DER certificate, 32 bytes. */
  certHash: Uint8Array;
  /** Fresh server nonce, 24 bytes. */
  nonce: Uint8Array;
}

/** A decoded control payload. */
export type Control =
  | { kind: 'hello'; signed: Signed }
  | { kind: 'accept'; signed: Signed }
  | { kind: 'challenge'; challenge: Challenge };

/** The postcard `Control` payload of a control frame. */
export function encodeControl(control: Control): Uint8Array {
  const w = new Writer(512, 4096 + 16);
  switch (control.kind) {
    case 'hello':
    case 'accept':
      w.varint(control.kind === 'hello' ? ControlKind.Hello : ControlKind.Accept);
      w.bytes(control.signed.body);
      w.raw(control.signed.signature);
      break;
    case 'challenge':
      w.varint(ControlKind.Challenge);
      w.u8(control.challenge.binding);
      w.raw(control.challenge.certHash);
      w.raw(control.challenge.nonce);
      break;
  }
  return w.finish();
}

/**
 * Decodes a control payload exactly.
 *
 * @throws {DecodeError} on an unknown variant, truncation or trailing bytes.
 */
export function decodeControl(payload: Uint8Array): Control {
  const r = new Reader(payload, 'Control');
  const variant = r.variant();
  let control: Control;
  if (variant === ControlKind.Hello || variant === ControlKind.Accept) {
    const body = r.bytes();
    const signature = r.raw(64);
    control = { kind: variant === ControlKind.Hello ? 'hello' : 'accept', signed: { body, signature } };
  } else if (variant === ControlKind.Challenge) {
    control = { kind: 'challenge', challenge: { binding: r.u8(), certHash: r.raw(32), nonce: r.raw(CHALLENGE_NONCE_BYTES) } };
  } else {
    throw new DecodeError('Control', `unknown variant ${variant}`);
  }
  r.end();
  return control;
}

// ---------------------------------------------------------------------------------------------
// Join tickets (§4.6)

/** `JoinTicketClaims` (§4.6.1). Times are Unix epoch milliseconds. */
export interface JoinTicketClaims {
  clientId: bigint;
  gsId: bigint;
  /** 16 bytes. */
  jti: Uint8Array;
  issuedAtMs: bigint;
  notBeforeMs: bigint;
  expiresAtMs: bigint;
  permissions: number;
  /** The client's Ed25519 public key, 32 bytes. */
  clientKey: Uint8Array;
}

/** A join ticket: issuer key id, the claims bytes exactly as signed, and the signature. */
export interface JoinTicket {
  keyId: number;
  claims: Uint8Array;
  signature: Uint8Array;
}

/** The postcard encoding of `JoinTicketClaims`. */
export function encodeJoinTicketClaims(c: JoinTicketClaims): Uint8Array {
  return new Writer(128)
    .varint(c.clientId)
    .varint(c.gsId)
    .raw(c.jti)
    .varint(c.issuedAtMs)
    .varint(c.notBeforeMs)
    .varint(c.expiresAtMs)
    .varint(c.permissions)
    .raw(c.clientKey)
    .finish();
}

/** Decodes `JoinTicketClaims` exactly. @throws {DecodeError} */
export function decodeJoinTicketClaims(bytes: Uint8Array): JoinTicketClaims {
  const r = new Reader(bytes, 'JoinTicketClaims');
  const claims: JoinTicketClaims = {
    clientId: r.u64(),
    gsId: r.u64(),
    jti: r.raw(16),
    issuedAtMs: r.u64(),
    notBeforeMs: r.u64(),
    expiresAtMs: r.u64(),
    permissions: r.u32(),
    clientKey: r.raw(32),
  };
  r.end();
  return claims;
}

/** The standalone (and embedded) postcard encoding of a `JoinTicket` (§4.6.1). */
export function encodeJoinTicket(t: JoinTicket): Uint8Array {
  return new Writer(192).varint(t.keyId).bytes(t.claims).raw(t.signature).finish();
}

function readJoinTicket(r: Reader): JoinTicket {
  return { keyId: r.u32(), claims: r.bytes(), signature: r.raw(64) };
}

/**
 * Decodes a standalone join ticket exactly; more than 512 bytes is refused before decoding.
 * The claims are not decoded (use `decodeJoinTicketClaims`).
 *
 * @throws {DecodeError}
 */
export function decodeJoinTicket(bytes: Uint8Array): JoinTicket {
  if (bytes.length > MAX_JOIN_TICKET_BYTES) {
    throw new DecodeError('JoinTicket', `${bytes.length} bytes exceed the limit of ${MAX_JOIN_TICKET_BYTES}`);
  }
  const r = new Reader(bytes, 'JoinTicket');
  const ticket = readJoinTicket(r);
  r.end();
  return ticket;
}

/** The message a join ticket's issuer signs: context ‖ u32be(key_id) ‖ claims (§4.6.2). */
export function joinTicketMessage(keyId: number, claims: Uint8Array): Uint8Array {
  return new Writer(256).raw(JOIN_TICKET_CONTEXT).raw(u32be(keyId)).raw(claims).finish();
}

// ---------------------------------------------------------------------------------------------
// Hello and Accept bodies (§4.1, §4.2)

/** `HelloBody` (§4.1). */
export interface HelloBody {
  versionMin: number;
  versionMax: number;
  /** 32 bytes. */
  schemaHash: Uint8Array;
  /** 24 bytes, fresh per connection. */
  nonce: Uint8Array;
  capabilities: bigint;
  role: number;
  /** The client's Ed25519 public key, 32 bytes. */
  identityKey: Uint8Array;
  /** The join ticket, or null (role GameServer only). */
  joinTicket: JoinTicket | null;
  extensions: Extension[];
}

function checkExtensions(extensions: Extension[], what: string): void {
  if (extensions.length > MAX_EXTENSIONS) throw new DecodeError(what, `${extensions.length} extensions, at most ${MAX_EXTENSIONS}`);
  for (let i = 1; i < extensions.length; i++) {
    if (extensions[i]!.kind <= extensions[i - 1]!.kind) throw new DecodeError(what, 'extensions not in strictly ascending kind order');
  }
}

function writeExtensions(w: Writer, extensions: Extension[]): void {
  w.varint(extensions.length);
  for (const e of extensions) w.varint(e.kind).bytes(e.data);
}

function readExtensions(r: Reader, what: string): Extension[] {
  const count = r.u64();
  if (count > BigInt(MAX_EXTENSIONS)) throw new DecodeError(what, `${count} extensions, at most ${MAX_EXTENSIONS}`);
  const out: Extension[] = [];
  for (let i = 0; i < Number(count); i++) out.push({ kind: r.u16(), data: r.bytes() });
  checkExtensions(out, what);
  return out;
}

/** The postcard encoding of a `HelloBody` (the bytes the client signs). */
export function encodeHelloBody(h: HelloBody): Uint8Array {
  checkExtensions(h.extensions, 'HelloBody');
  const w = new Writer(320, 4096)
    .varint(h.versionMin)
    .varint(h.versionMax)
    .raw(h.schemaHash)
    .raw(h.nonce)
    .varint(h.capabilities)
    .varint(h.role)
    .raw(h.identityKey);
  w.option(h.joinTicket, (t) => w.varint(t.keyId).bytes(t.claims).raw(t.signature));
  writeExtensions(w, h.extensions);
  return w.finish();
}

/** Decodes a `HelloBody` exactly (a server's check 3, §4.4.1). @throws {DecodeError} */
export function decodeHelloBody(bytes: Uint8Array): HelloBody {
  const r = new Reader(bytes, 'HelloBody');
  const versionMin = r.u16();
  const versionMax = r.u16();
  const schemaHash = r.raw(32);
  const nonce = r.raw(HELLO_NONCE_BYTES);
  const capabilities = r.u64();
  const role = r.variant();
  if (role > 3) throw new DecodeError('HelloBody', `unknown role ${role}`);
  const identityKey = r.raw(32);
  const joinTicket = r.option(() => readJoinTicket(r));
  const extensions = readExtensions(r, 'HelloBody');
  r.end();
  return { versionMin, versionMax, schemaHash, nonce, capabilities, role, identityKey, joinTicket, extensions };
}

/** `AcceptBody` (§4.2). */
export interface AcceptBody {
  version: number;
  schemaHash: Uint8Array;
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
  /** Opaque 64-bit session id. */
  sessionId: bigint;
  role: number;
  permissions: number;
  capabilities: bigint;
  /** The server's Ed25519 identity key, 32 bytes. */
  serverKey: Uint8Array;
  /** The server's current tick when it accepted (§7.2). */
  serverTick: bigint;
  tickRateHz: number;
  /** The play ticket envelope (§8.5), exactly as sent, or null. */
  playTicket: Uint8Array | null;
  extensions: Extension[];
}

/** The postcard encoding of an `AcceptBody`. */
export function encodeAcceptBody(a: AcceptBody): Uint8Array {
  checkExtensions(a.extensions, 'AcceptBody');
  const w = new Writer(256, 4096)
    .varint(a.version)
    .raw(a.schemaHash)
    .raw(a.clientNonce)
    .raw(a.serverNonce)
    .varint(a.sessionId)
    .varint(a.role)
    .varint(a.permissions)
    .varint(a.capabilities)
    .raw(a.serverKey)
    .varint(a.serverTick)
    .varint(a.tickRateHz);
  w.option(a.playTicket, (p) => w.bytes(p));
  writeExtensions(w, a.extensions);
  return w.finish();
}

/** Decodes an `AcceptBody` exactly (§4.4.3 check 2). @throws {DecodeError} */
export function decodeAcceptBody(bytes: Uint8Array): AcceptBody {
  const r = new Reader(bytes, 'AcceptBody');
  const body: AcceptBody = {
    version: r.u16(),
    schemaHash: r.raw(32),
    clientNonce: r.raw(HELLO_NONCE_BYTES),
    serverNonce: r.raw(24),
    sessionId: r.u64(),
    role: r.variant(),
    permissions: 0,
    capabilities: 0n,
    serverKey: new Uint8Array(0),
    serverTick: 0n,
    tickRateHz: 0,
    playTicket: null,
    extensions: [],
  };
  if (body.role > 3) throw new DecodeError('AcceptBody', `unknown role ${body.role}`);
  body.permissions = r.u32();
  body.capabilities = r.u64();
  body.serverKey = r.raw(32);
  body.serverTick = r.u64();
  body.tickRateHz = r.u16();
  body.playTicket = r.option(() => r.bytes());
  body.extensions = readExtensions(r, 'AcceptBody');
  r.end();
  return body;
}

// ---------------------------------------------------------------------------------------------
// Transcript (§4.3) and WebTransport binding (§12.5)

/** `E = SHA-256("tickwire/wt-binding/v1" ‖ cert_hash ‖ nonce)` (§12.5). */
export function bindingExporter(certHash: Uint8Array, nonce: Uint8Array): Promise<Uint8Array> {
  return sha256(WT_BINDING_LABEL, certHash, nonce);
}

/** `hello_digest = SHA-256("tickwire/hello/v1" ‖ E ‖ H)` (§4.3). */
export function helloDigest(exporter: Uint8Array, helloBody: Uint8Array): Promise<Uint8Array> {
  return sha256(HELLO_LABEL, exporter, helloBody);
}

/** `accept_digest = SHA-256("tickwire/accept/v1" ‖ E ‖ u32be(len(H)) ‖ H ‖ A)` (§4.3). */
export function acceptDigest(exporter: Uint8Array, helloBody: Uint8Array, acceptBody: Uint8Array): Promise<Uint8Array> {
  return sha256(ACCEPT_LABEL, exporter, u32be(helloBody.length), helloBody, acceptBody);
}

// ---------------------------------------------------------------------------------------------
// Play tickets (§8.5)

/** `PlayTicketClaims` (§8.5.2). */
export interface PlayTicketClaims {
  gsId: bigint;
  gsKey: Uint8Array;
  issuedAtMs: bigint;
  expiresAtMs: bigint;
  sequence: bigint;
  measurement: Uint8Array;
}

/** An envelope (§8.5): key id, claims bytes as signed, signature. */
export type Envelope = JoinTicket;

/** Decodes a standalone envelope exactly; more than 512 bytes refused first. @throws {DecodeError} */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length > MAX_ENVELOPE_BYTES) throw new DecodeError('Envelope', `${bytes.length} bytes exceed ${MAX_ENVELOPE_BYTES}`);
  const r = new Reader(bytes, 'Envelope');
  const e = readJoinTicket(r);
  r.end();
  return e;
}

/** Decodes `PlayTicketClaims` exactly. @throws {DecodeError} */
export function decodePlayTicketClaims(bytes: Uint8Array): PlayTicketClaims {
  const r = new Reader(bytes, 'PlayTicketClaims');
  const c = { gsId: r.u64(), gsKey: r.raw(32), issuedAtMs: r.u64(), expiresAtMs: r.u64(), sequence: r.u64(), measurement: r.raw(32) };
  r.end();
  return c;
}

/** The message a play ticket's VS signs: context ‖ u32be(key_id) ‖ claims (§8.5). */
export function playTicketMessage(keyId: number, claims: Uint8Array): Uint8Array {
  return new Writer(256).raw(PLAY_TICKET_CONTEXT).raw(u32be(keyId)).raw(claims).finish();
}

// ---------------------------------------------------------------------------------------------
// Client checks

/** A handshake check failed: close the session with `code` (§6.1) and `detail`. */
export class HandshakeFailure extends Error {
  constructor(
    readonly code: number,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * The client's check of a `Challenge` before it signs a Hello (§12.5): `binding` = 0 and
 * `cert_hash` among the pinned hashes (when any are pinned; a browser that trusts the Web PKI
 * instead cannot see the certificate, and the check then proves nothing).
 *
 * @throws {HandshakeFailure} with `BAD_HANDSHAKE`.
 */
export function checkChallenge(challenge: Challenge, pinnedHashes: Uint8Array[]): void {
  if (challenge.binding !== 0) throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, `unknown channel binding ${challenge.binding}`);
  if (pinnedHashes.length > 0 && !pinnedHashes.some((h) => bytesEqual(h, challenge.certHash))) {
    throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, 'challenge names a certificate that is not among the pinned hashes');
  }
}

/** What the client checks the Accept against. */
export interface AcceptExpectations {
  /** The Hello it sent (decoded) and its body bytes as sent. */
  hello: HelloBody;
  helloBytes: Uint8Array;
  /** The exporter value `E` (§4.3, §12.5). */
  exporter: Uint8Array;
  /** Pin: the server's identity key must equal this (§4.4.3 check 4). */
  pinnedServerKey?: Uint8Array | undefined;
  /** Trusted VS keys by key id: a valid play ticket is then required (checks 6–13). */
  trustedVsKeys?: Map<number, Uint8Array> | undefined;
  /** Allowed clock skew for the play ticket, in ms (`play_ticket_max_skew_ms`, default 2 000). */
  playTicketMaxSkewMs?: number | undefined;
  /** The client's wall clock at the moment it processes the Accept, Unix ms. */
  nowUnixMs: number;
}

/**
 * The client's checks on an Accept, in the order of §4.4.3 (checks 2–13; check 1 is the
 * frame's), returning the decoded body.
 *
 * @throws {HandshakeFailure} with the reason code of the first failing check.
 */
export async function checkAccept(signed: Signed, x: AcceptExpectations): Promise<AcceptBody> {
  let a: AcceptBody;
  try {
    a = decodeAcceptBody(signed.body);
  } catch (e) {
    throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, `Accept does not decode: ${(e as Error).message}`);
  }
  const bad = (detail: string): never => {
    throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, detail);
  };
  if (!bytesEqual(a.clientNonce, x.hello.nonce)) bad('Accept echoes another nonce');
  if (!bytesEqual(a.schemaHash, x.hello.schemaHash)) bad('Accept names another schema hash');
  if (a.version < x.hello.versionMin || a.version > x.hello.versionMax) bad(`Accept negotiated version ${a.version}, outside the Hello's range`);
  if ((a.capabilities & ~x.hello.capabilities) !== 0n) bad('Accept grants capabilities the Hello did not offer');
  if ((a.capabilities & Capability.ZSTD_DICTIONARY) !== 0n && (a.capabilities & Capability.ZSTD) === 0n) bad('Accept grants ZSTD_DICTIONARY without ZSTD');
  if (a.role !== x.hello.role) bad(`Accept assigns role ${roleName(a.role)}, not the requested ${roleName(x.hello.role)}`);
  if (x.pinnedServerKey && !bytesEqual(a.serverKey, x.pinnedServerKey)) {
    throw new HandshakeFailure(ReasonCode.SERVER_KEY_MISMATCH, 'the server identity key is not the pinned one');
  }
  const digest = await acceptDigest(x.exporter, x.helloBytes, signed.body);
  if (!(await verifyStrict(signed.signature, digest, a.serverKey))) {
    throw new HandshakeFailure(ReasonCode.BAD_SIGNATURE, 'Accept signature does not verify');
  }
  if (x.trustedVsKeys && x.trustedVsKeys.size > 0) await checkPlayTicket(a, x.trustedVsKeys, x.playTicketMaxSkewMs ?? 2000, x.nowUnixMs);
  return a;
}

async function checkPlayTicket(a: AcceptBody, keys: Map<number, Uint8Array>, skewMs: number, nowMs: number): Promise<void> {
  const invalid = (detail: string): never => {
    throw new HandshakeFailure(ReasonCode.PLAY_TICKET_INVALID, detail);
  };
  if (a.playTicket === null) throw new HandshakeFailure(ReasonCode.NOT_AUTHORISED, 'the server presented no play ticket');
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(a.playTicket);
  } catch (e) {
    return invalid(`play ticket does not decode: ${(e as Error).message}`);
  }
  const key = keys.get(envelope.keyId);
  if (!key) return invalid(`play ticket signed by unknown key id ${envelope.keyId}`);
  if (!(await verifyStrict(envelope.signature, playTicketMessage(envelope.keyId, envelope.claims), key))) invalid('play ticket signature does not verify');
  let claims: PlayTicketClaims;
  try {
    claims = decodePlayTicketClaims(envelope.claims);
  } catch (e) {
    return invalid(`play ticket claims do not decode: ${(e as Error).message}`);
  }
  if (!bytesEqual(claims.gsKey, a.serverKey)) invalid('play ticket names another game-server key');
  const now = BigInt(Math.floor(nowMs));
  const skew = BigInt(Math.floor(skewMs));
  if (now > claims.expiresAtMs + skew) throw new HandshakeFailure(ReasonCode.NOT_AUTHORISED, 'play ticket expired');
  const earliest = claims.issuedAtMs > skew ? claims.issuedAtMs - skew : 0n;
  if (now < earliest) throw new HandshakeFailure(ReasonCode.NOT_AUTHORISED, 'play ticket issued in the future');
}
