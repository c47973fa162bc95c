/**
 * A tickwire session over WebTransport (PROTOCOL.md §12): `connect` opens the WebTransport
 * session, answers the server's `Challenge` with a signed Hello, verifies the Accept, and
 * resolves with an established `Session` that sends and receives channel messages, runs the
 * heartbeat, and reports how it ended.
 *
 * What the browser does for us (§12.4): it opens the HTTP/3 connection and the CONNECT
 * stream, adds and strips the WebTransport stream signals (`0x41 ‖ sid`, `0x54 ‖ sid`) and the
 * quarter-stream-id prefix of datagrams, and carries close codes in
 * `CLOSE_WEBTRANSPORT_SESSION` capsules. So from here the control stream is the first
 * bidirectional stream the server opens, a channel stream is the channel byte followed by
 * frames, and a datagram is the tickwire datagram alone.
 */

import { bytesEqual, concat } from './bytes.js';
import { type Channel, DEFAULT_CHANNELS, maySend, validateChannels } from './channels.js';
import { Ed25519Identity, randomBytes } from './crypto.js';
import {
  type Datagram,
  type InvalidDatagram,
  encodePing,
  encodePong,
  encodeSequenced,
  encodeUnreliable,
  parseDatagram,
  seqNewer,
} from './datagram.js';
import { type CloseReport, ConfigError, ConnectError, DecodeError, FrameTooLargeError, type Initiator, SendError, closeReport } from './errors.js';
import { type FragmentConfig, Reassembler, type ReassemblyStats, fragmentMessage } from './fragment.js';
import { DEFAULT_MAX_RELIABLE_MESSAGE_BYTES, FrameDecoder, MAX_CONTROL_FRAME_BYTES, encodeFrame } from './frame.js';
import {
  type AcceptBody,
  type Challenge,
  HELLO_NONCE_BYTES,
  HandshakeFailure,
  type HelloBody,
  type JoinTicket,
  PROTOCOL_VERSION,
  Role,
  bindingExporter,
  checkAccept,
  checkChallenge,
  decodeControl,
  decodeJoinTicket,
  decodeJoinTicketClaims,
  encodeControl,
  encodeHelloBody,
  helloDigest,
} from './handshake.js';
import { Heartbeat, type HeartbeatConfig, type HeartbeatStats, TickSync } from './heartbeat.js';
import { type CloseInfo, ReasonCode, closeInfoFromMessage, closeInfoToMessage, reasonFromWire, truncateUtf8 } from './reason.js';

/** The parts of the W3C `WebTransport` interface the session uses (tests pass a fake). */
export interface WebTransportLike {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<{ closeCode?: number; reason?: string }>;
  close(info?: { closeCode?: number; reason?: string }): void;
  readonly datagrams: {
    readonly readable: ReadableStream<Uint8Array>;
    readonly writable?: WritableStream<Uint8Array>;
    createWritable?(): WritableStream<Uint8Array>;
    readonly maxDatagramSize: number;
  };
  readonly incomingBidirectionalStreams: ReadableStream<{ readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> }>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
}

/** A certificate hash to pin, as `serverCertificateHashes` takes it (SHA-256 of the DER). */
export interface CertificateHash {
  algorithm: 'sha-256';
  value: Uint8Array;
}

/** Options of `connect`. Sizes in bytes, times in milliseconds. */
export interface ConnectOptions {
  /** The session URL, `https://host:port/path` (default path `/tickwire`, §12.3). */
  url: string;
  /** Hashes to pin through `serverCertificateHashes` (§12.1); the Challenge's `cert_hash`
   *  must be one of them (§12.5). Empty: the Web PKI decides, and the check proves nothing. */
  serverCertificateHashes?: CertificateHash[];
  /** The client's Ed25519 identity; the join ticket must name its public key. */
  identity: Ed25519Identity;
  /** The join ticket, in its standalone postcard encoding (§4.6.1; at most 512 bytes). */
  joinTicket: Uint8Array;
  /** SHA-256 of the game's schema (32 bytes); must equal the server's. */
  schemaHash: Uint8Array;
  /** Requested role. Default `Role.Player`. */
  role?: number;
  /** The channel table; must be the server's. Default: the default table (§7.1). */
  channels?: readonly Channel[];
  /** Pin the server's identity key (32 bytes, §4.4.3 check 4). */
  pinnedServerKey?: Uint8Array;
  /** Trusted VS keys by key id; the Accept must then carry a valid play ticket (§4.4.3). */
  trustedVsKeys?: Map<number, Uint8Array>;
  /** Skew allowed on the play ticket's times. Default 2 000. */
  playTicketMaxSkewMs?: number;
  /** From `connect` to an established session, else `HANDSHAKE_TIMEOUT` (§4.5). Default 10 000. */
  handshakeTimeoutMs?: number;
  /** Heartbeat settings (§5.5). */
  heartbeat?: Partial<HeartbeatConfig>;
  /** Reassembly limits (§5.4). */
  fragment?: Partial<FragmentConfig>;
  /** Largest reliable message received and sent (§3). Default 8 MiB. */
  maxReliableMessageBytes?: number;
  /** A channel stream holding a partial frame with no new byte for this long closes the
   *  session with `PROTOCOL_VIOLATION` (§3). Default 10 000. */
  partialFrameTimeoutMs?: number;
  /** Received messages held until the application takes them. Reliable streams stop being
   *  read while it is full (flow control then holds the server back); datagram messages that
   *  find it full are dropped and counted. Default 1 024. */
  maxReceivedMessages?: number;
  /** Datagrams handed to the browser and not yet taken; more are dropped and counted. Default 1 024. */
  maxQueuedDatagrams?: number;
  /** Reliable bytes written and not yet taken by the browser, over all channels; a send that
   *  would exceed it fails with `queue-full`. Default 16 MiB. */
  maxQueuedReliableBytes?: number;
  /** How far ahead of the server the client tick runs, in ticks (§7.2). Default 2. */
  tickMarginTicks?: number;
  /** Opens the transport; default `new WebTransport(url, options)`. */
  transport?: (url: string, options: WebTransportOptions) => WebTransportLike;
  /** Monotonic clock in ms; default `performance.now()`. */
  now?: () => number;
  /** Wall clock in Unix ms (play-ticket checks); default `Date.now()`. */
  wallClock?: () => number;
}

/** A received message. */
export interface Message {
  channel: number;
  payload: Uint8Array;
  /** How it travelled. */
  kind: 'reliable' | 'unreliable' | 'sequenced';
  /** Reassembled from more than one fragment (§5.4). */
  fragmented: boolean;
  /** The sequence number of a sequenced message. */
  seq?: number;
}

/** What the server granted, from the verified Accept (§4.2). */
export interface Established {
  sessionId: bigint;
  role: number;
  permissions: number;
  capabilities: bigint;
  serverKey: Uint8Array;
  serverTick: bigint;
  tickRateHz: number;
  playTicket: Uint8Array | null;
  /** The certificate hash the Challenge named (§12.5). */
  certHash: Uint8Array;
  /** From `connect` to the verified Accept, in ms. */
  handshakeMs: number;
  /** From sending the Hello to receiving the Accept, in ms: the first RTT estimate. */
  handshakeRttMs: number;
}

/** Session counters. */
export interface SessionStats {
  heartbeat: HeartbeatStats;
  reassembly: ReassemblyStats;
  messagesSent: number;
  messagesReceived: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams that arrived before the session was established (§5.6). */
  datagramsDroppedEarly: number;
  /** Datagrams dropped as invalid, by cause (§5.6). */
  datagramsInvalid: Record<InvalidDatagram | 'wrong-channel', number>;
  /** Sequenced messages or fragments not newer than the last delivered (§5.3). */
  sequencedStale: number;
  /** Datagram messages dropped because the receive queue was full. */
  receiveQueueDrops: number;
  /** Datagrams not sent because the browser's queue held `maxQueuedDatagrams`. */
  sendQueueDrops: number;
  /** Reliable bytes written and not yet taken by the browser. */
  reliableBytesQueued: number;
}

interface ChannelReceiver {
  channel: number;
  decoder: FrameDecoder;
  lastByteMs: number;
}

interface ChannelSender {
  writer: Promise<WritableStreamDefaultWriter<Uint8Array>>;
  /** Writes chained in order. */
  tail: Promise<void>;
}

/**
 * Opens a WebTransport session and runs the tickwire handshake (§12.5, §4); resolves once the
 * Accept is verified.
 *
 * @throws {ConfigError} the options are unusable (checked before anything is sent).
 * @throws {ConnectError} the transport failed, or the handshake was rejected (by the server
 *   or by this client's checks); `report.code` says why.
 */
export async function connect(options: ConnectOptions): Promise<Session> {
  const session = new Session(options);
  await session.start();
  return session;
}

/**
 * An established tickwire session (see `connect`).
 *
 * Methods by kind: getters (`established`, `stats`, `maxDatagramBytes`); commands (`send`,
 * `close`); outputs drained until empty (`pollMessage`, `pollTick`); and `nextMessage` /
 * `closed` promises for code that prefers to await.
 */
export class Session {
  private readonly opts: ConnectOptions;
  private readonly channels: readonly Channel[];
  private readonly now: () => number;
  private readonly wall: () => number;
  private readonly ticket: JoinTicket;
  private readonly pinned: Uint8Array[];
  private readonly maxReliable: number;
  private readonly partialTimeoutMs: number;
  private readonly maxReceived: number;
  private readonly maxQueuedDatagrams: number;
  private readonly maxQueuedReliable: number;
  private wt!: WebTransportLike;
  private startedMs = 0;
  private helloSentMs = 0;
  private hello: HelloBody | null = null;
  private helloBytes: Uint8Array | null = null;
  private exporter: Uint8Array | null = null;
  private challenge: Challenge | null = null;
  private controlWriter: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private controlSeen = false;
  private info: Established | null = null;
  private report: CloseReport | null = null;
  private heartbeat: Heartbeat | null = null;
  private tick: TickSync | null = null;
  private readonly reassembler: Reassembler;
  private datagramWriter: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private datagramsInFlight = 0;
  private reliableQueued = 0;
  private readonly senders = new Map<number, ChannelSender>();
  private readonly receivers = new Set<ChannelReceiver>();
  private readonly lastSeq = new Map<number, number>();
  private readonly nextSeqOut = new Map<number, number>();
  private nextFragmentId = 0;
  private readonly inbox: Message[] = [];
  private readonly inboxWaiters: ((m: Message | null) => void)[] = [];
  private roomWaiters: (() => void)[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private settleEstablished!: { resolve: () => void; reject: (e: unknown) => void };
  private readonly establishedPromise: Promise<void>;
  private settleClosed!: (r: CloseReport) => void;
  /** Resolves once with how the session ended; never rejects. */
  readonly closed: Promise<CloseReport>;
  private readonly counters = {
    messagesSent: 0,
    messagesReceived: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    datagramsDroppedEarly: 0,
    sequencedStale: 0,
    receiveQueueDrops: 0,
    sendQueueDrops: 0,
  };
  private readonly invalid: Record<InvalidDatagram | 'wrong-channel', number> = {
    empty: 0,
    'reserved-kind': 0,
    short: 0,
    'bad-ping': 0,
    'bad-pong': 0,
    'bad-fragment-header': 0,
    'wrong-channel': 0,
  };

  /** @internal use `connect`. */
  constructor(options: ConnectOptions) {
    this.opts = options;
    this.channels = options.channels ?? DEFAULT_CHANNELS;
    validateChannels(this.channels);
    this.now = options.now ?? (() => performance.now());
    this.wall = options.wallClock ?? (() => Date.now());
    if (!(options.identity instanceof Ed25519Identity)) throw new ConfigError('identity must be an Ed25519Identity');
    if (options.schemaHash.length !== 32) throw new ConfigError(`schemaHash must be 32 bytes, got ${options.schemaHash.length}`);
    try {
      this.ticket = decodeJoinTicket(options.joinTicket);
    } catch (e) {
      throw new ConfigError(`the join ticket does not decode: ${(e as Error).message}`);
    }
    try {
      const claims = decodeJoinTicketClaims(this.ticket.claims);
      if (!bytesEqual(claims.clientKey, options.identity.publicKey)) {
        throw new ConfigError('the join ticket names another identity key than the one given');
      }
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      // Claims that do not decode are the server's to refuse (TICKET_MALFORMED).
    }
    this.pinned = (options.serverCertificateHashes ?? []).map((h) => {
      if (h.algorithm !== 'sha-256' || h.value.length !== 32) throw new ConfigError('certificate hashes must be 32-byte sha-256 values');
      return h.value;
    });
    this.maxReliable = options.maxReliableMessageBytes ?? DEFAULT_MAX_RELIABLE_MESSAGE_BYTES;
    this.partialTimeoutMs = options.partialFrameTimeoutMs ?? 10_000;
    this.maxReceived = options.maxReceivedMessages ?? 1024;
    this.maxQueuedDatagrams = options.maxQueuedDatagrams ?? 1024;
    this.maxQueuedReliable = options.maxQueuedReliableBytes ?? 16 * 1024 * 1024;
    this.reassembler = new Reassembler(options.fragment);
    this.establishedPromise = new Promise<void>((resolve, reject) => {
      this.settleEstablished = { resolve, reject };
    });
    this.establishedPromise.catch(() => {});
    this.closed = new Promise<CloseReport>((resolve) => {
      this.settleClosed = resolve;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Getters

  /** What the server granted; null until the Accept is verified. */
  get established(): Established | null {
    return this.info;
  }

  /** How the session ended; null while it is open. */
  get closeReport(): CloseReport | null {
    return this.report;
  }

  /** The largest datagram the browser sends now (`M`, §2.5), in bytes. */
  get maxDatagramBytes(): number {
    return this.wt.datagrams.maxDatagramSize;
  }

  /** Counters and gauges. */
  stats(): SessionStats {
    return {
      heartbeat: (this.heartbeat ?? new Heartbeat(this.now() * 1000, this.opts.heartbeat)).stats(),
      reassembly: this.reassembler.stats(),
      ...this.counters,
      datagramsInvalid: { ...this.invalid },
      reliableBytesQueued: this.reliableQueued,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Handshake

  /** @internal Opens the transport and runs the handshake; see `connect`. */
  async start(): Promise<void> {
    this.startedMs = this.now();
    const wtOptions: WebTransportOptions = {
      allowPooling: false,
      requireUnreliable: true,
      ...(this.pinned.length > 0 ? { serverCertificateHashes: this.pinned.map((value) => ({ algorithm: 'sha-256', value: value as Uint8Array<ArrayBuffer> })) } : {}),
    };
    const open = this.opts.transport ?? ((url: string, o: WebTransportOptions) => new WebTransport(url, o) as unknown as WebTransportLike);
    try {
      this.wt = open(this.opts.url, wtOptions);
    } catch (e) {
      throw new ConfigError(`cannot open a WebTransport session to ${this.opts.url}: ${(e as Error).message}`);
    }
    this.wt.closed.then(
      (info) => this.onTransportClosed(info),
      (err) => this.onTransportFailed(err),
    );
    this.timer = setInterval(() => this.onTimer(), 25);
    try {
      await this.wt.ready;
    } catch (e) {
      this.onTransportFailed(e);
    }
    if (!this.report) {
      void this.acceptBidirectional();
      void this.acceptUnidirectional();
      void this.readDatagrams();
    }
    try {
      await this.establishedPromise;
    } catch {
      throw new ConnectError(this.report!);
    }
  }

  private async acceptBidirectional(): Promise<void> {
    const reader = this.wt.incomingBidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.report) return;
        if (this.controlSeen) {
          // The server opens exactly one bidirectional stream, the control stream (§12.4).
          void value.readable.cancel().catch(() => {});
          this.closeWith(ReasonCode.PROTOCOL_VIOLATION, 'the server opened a second bidirectional stream', 'local');
          return;
        }
        this.controlSeen = true;
        this.controlWriter = value.writable.getWriter();
        void this.readControl(value.readable);
      }
    } catch {
      // The transport closed; onTransportClosed reports it.
    }
  }

  private async readControl(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new FrameDecoder(MAX_CONTROL_FRAME_BYTES);
    const reader = stream.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.report) return;
        this.heartbeat?.onActivity(this.now() * 1000);
        let frames: Uint8Array[];
        try {
          frames = decoder.push(value);
        } catch (e) {
          if (e instanceof FrameTooLargeError) this.closeWith(ReasonCode.BAD_HANDSHAKE, `control frame of ${e.length} bytes exceeds ${MAX_CONTROL_FRAME_BYTES}`, 'local');
          return;
        }
        for (const frame of frames) {
          if (this.report) return;
          await this.onControlFrame(frame);
        }
      }
    } catch {
      // Stream reset or transport gone: the close is reported by onTransportClosed.
    }
  }

  private async onControlFrame(payload: Uint8Array): Promise<void> {
    if (this.info) {
      this.closeWith(ReasonCode.PROTOCOL_VIOLATION, 'control frame after the Accept', 'local');
      return;
    }
    let control;
    try {
      control = decodeControl(payload);
    } catch (e) {
      this.closeWith(ReasonCode.BAD_HANDSHAKE, `control frame does not decode: ${(e as DecodeError).message}`, 'local');
      return;
    }
    try {
      if (!this.challenge) {
        if (control.kind !== 'challenge') throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, `first control frame is ${control.kind}, not a Challenge`);
        checkChallenge(control.challenge, this.pinned);
        this.challenge = control.challenge;
        await this.sendHello(control.challenge);
        return;
      }
      if (control.kind !== 'accept') throw new HandshakeFailure(ReasonCode.BAD_HANDSHAKE, `expected an Accept, got ${control.kind}`);
      const accept = await checkAccept(control.signed, {
        hello: this.hello!,
        helloBytes: this.helloBytes!,
        exporter: this.exporter!,
        pinnedServerKey: this.opts.pinnedServerKey,
        trustedVsKeys: this.opts.trustedVsKeys,
        playTicketMaxSkewMs: this.opts.playTicketMaxSkewMs,
        nowUnixMs: this.wall(),
      });
      if (this.report) return;
      this.onEstablished(accept, this.challenge.certHash);
    } catch (e) {
      if (e instanceof HandshakeFailure) this.closeWith(e.code, e.detail, 'local');
      else this.closeWith(ReasonCode.BAD_HANDSHAKE, `handshake failed: ${(e as Error).message}`, 'local');
    }
  }

  private async sendHello(challenge: Challenge): Promise<void> {
    this.exporter = await bindingExporter(challenge.certHash, challenge.nonce);
    this.hello = {
      versionMin: PROTOCOL_VERSION,
      versionMax: PROTOCOL_VERSION,
      schemaHash: this.opts.schemaHash,
      nonce: randomBytes(HELLO_NONCE_BYTES),
      capabilities: 0n,
      role: this.opts.role ?? Role.Player,
      identityKey: this.opts.identity.publicKey,
      joinTicket: this.ticket,
      extensions: [],
    };
    this.helloBytes = encodeHelloBody(this.hello);
    const signature = await this.opts.identity.sign(await helloDigest(this.exporter, this.helloBytes));
    const frame = encodeFrame(encodeControl({ kind: 'hello', signed: { body: this.helloBytes, signature } }));
    if (this.report) return;
    this.helloSentMs = this.now();
    await this.controlWriter!.write(frame);
  }

  private onEstablished(accept: AcceptBody, certHash: Uint8Array): void {
    const nowMs = this.now();
    this.info = {
      sessionId: accept.sessionId,
      role: accept.role,
      permissions: accept.permissions,
      capabilities: accept.capabilities,
      serverKey: accept.serverKey,
      serverTick: accept.serverTick,
      tickRateHz: accept.tickRateHz,
      playTicket: accept.playTicket,
      certHash,
      handshakeMs: nowMs - this.startedMs,
      handshakeRttMs: nowMs - this.helloSentMs,
    };
    this.heartbeat = new Heartbeat(nowMs * 1000, this.opts.heartbeat);
    this.tick = new TickSync(accept.tickRateHz, this.opts.tickMarginTicks ?? 2);
    this.tick.observe(accept.serverTick, this.info.handshakeRttMs, nowMs);
    const writable = this.wt.datagrams.createWritable?.() ?? this.wt.datagrams.writable;
    this.datagramWriter = writable ? writable.getWriter() : null;
    this.settleEstablished.resolve();
    this.onTimer();
  }

  // -------------------------------------------------------------------------------------------
  // Closing

  /**
   * Closes the session with a reason code (default `NORMAL`) and detail (§6.2, §12.6): a
   * `CLOSE_WEBTRANSPORT_SESSION` whose code is the reason code and whose message is the
   * base64url `CloseInfo`. A no-op once closed.
   */
  close(code: number = ReasonCode.NORMAL, detail = '', retryAfterMs: number | null = null): void {
    this.closeWith(code, detail, 'local', retryAfterMs);
  }

  private closeWith(code: number, detail: string, initiator: Initiator, retryAfterMs: number | null = null, info?: CloseInfo): void {
    if (this.report) return;
    const closeInfo = info ?? { retryAfterMs, detail: truncateUtf8(detail, 200) };
    this.report = closeReport(code, closeInfo, this.info !== null, initiator);
    if (initiator === 'local') {
      try {
        this.wt.close({ closeCode: code, reason: closeInfoToMessage(closeInfo) });
      } catch {
        // Already closed underneath.
      }
    }
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.settleEstablished.reject(new ConnectError(this.report));
    for (const w of this.inboxWaiters.splice(0)) w(null);
    for (const w of this.roomWaiters.splice(0)) w();
    this.settleClosed(this.report);
  }

  private onTransportClosed(info: { closeCode?: number; reason?: string }): void {
    // A close capsule from the server (§12.6); a FIN without one reads as code 0, NORMAL.
    const code = reasonFromWire(info?.closeCode ?? 0);
    this.closeWith(code, '', 'peer', null, closeInfoFromMessage(info?.reason ?? ''));
  }

  private onTransportFailed(err: unknown): void {
    // No capsule: reported as §6.3 says (the browser does not expose QUIC error codes).
    const message = err instanceof Error ? err.message : String(err);
    this.closeWith(ReasonCode.TRANSPORT_ERROR, `transport failed: ${message}`, 'transport');
  }

  // -------------------------------------------------------------------------------------------
  // Timers

  private onTimer(): void {
    if (this.report) return;
    const nowMs = this.now();
    if (!this.info) {
      const limit = this.opts.handshakeTimeoutMs ?? 10_000;
      if (nowMs - this.startedMs >= limit) this.closeWith(ReasonCode.HANDSHAKE_TIMEOUT, `no verified Accept within ${limit} ms`, 'local');
      return;
    }
    const nowUs = nowMs * 1000;
    const hb = this.heartbeat!;
    if (nowUs >= hb.failureAtUs) {
      this.closeWith(
        ReasonCode.HEARTBEAT_TIMEOUT,
        `no packets from peer for ${Math.floor(hb.silenceMs(nowUs))} ms (timeout ${Math.floor(hb.failureTimeoutMs())} ms)`,
        'local',
      );
      return;
    }
    this.drainTicks(nowMs);
    const ping = hb.pollPing(nowUs, BigInt(this.tick!.currentTick));
    if (ping) this.writeDatagram(encodePing(ping), true);
    this.reassembler.expire(nowMs);
    for (const r of this.receivers) {
      if (r.decoder.hasPartial && nowMs - r.lastByteMs >= this.partialTimeoutMs) {
        this.closeWith(
          ReasonCode.PROTOCOL_VIOLATION,
          `partial frame stalled on channel ${r.channel}: ${r.decoder.bufferedBytes} bytes held, no bytes for ${Math.floor(nowMs - r.lastByteMs)} ms (timeout ${this.partialTimeoutMs} ms)`,
          'local',
        );
        return;
      }
    }
  }

  private pendingTicks: number[] = [];

  private drainTicks(nowMs: number): void {
    for (let t = this.tick!.pollTick(nowMs); t !== null; t = this.tick!.pollTick(nowMs)) {
      this.pendingTicks.push(t);
      if (this.pendingTicks.length > 64) this.pendingTicks.shift();
    }
  }

  /**
   * The next client tick that is due (§7.2), or null: each at most once, ascending. The
   * client tick runs `tickMarginTicks` ahead of the estimated server tick, so inputs sent for
   * it arrive before the server runs it. Drain it until null, e.g. once per animation frame.
   */
  pollTick(): number | null {
    if (!this.tick || this.report) return null;
    this.drainTicks(this.now());
    return this.pendingTicks.shift() ?? null;
  }

  /** The estimated current server tick (fractional), or null before the Accept. */
  serverTick(): number | null {
    return this.tick ? this.tick.serverTick(this.now()) : null;
  }

  // -------------------------------------------------------------------------------------------
  // Receiving

  /** The oldest received message not yet taken, or undefined. Drain it until undefined. */
  pollMessage(): Message | undefined {
    const m = this.inbox.shift();
    if (m && this.inbox.length < this.maxReceived) for (const w of this.roomWaiters.splice(0)) w();
    return m;
  }

  /** The next received message, waiting for one; null once the session has closed. */
  nextMessage(): Promise<Message | null> {
    const m = this.pollMessage();
    if (m) return Promise.resolve(m);
    if (this.report) return Promise.resolve(null);
    return new Promise((resolve) => this.inboxWaiters.push(resolve));
  }

  private deliver(m: Message): boolean {
    this.counters.messagesReceived++;
    const waiter = this.inboxWaiters.shift();
    if (waiter) {
      waiter(m);
      return true;
    }
    if (m.kind !== 'reliable' && this.inbox.length >= this.maxReceived) {
      this.counters.receiveQueueDrops++;
      return false;
    }
    this.inbox.push(m);
    return true;
  }

  private waitForRoom(): Promise<void> {
    if (this.inbox.length < this.maxReceived || this.report) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private async acceptUnidirectional(): Promise<void> {
    const reader = this.wt.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.report) return;
        if (this.receivers.size >= this.channels.length + 4) {
          // More streams than channels: a peer may open one per reliable channel (§2.4).
          void value.cancel().catch(() => {});
          continue;
        }
        void this.readChannelStream(value);
      }
    } catch {
      // Transport closed.
    }
  }

  private async readChannelStream(stream: ReadableStream<Uint8Array>): Promise<void> {
    // Channel data that arrives before the session is established stays unread (§2.4).
    try {
      await this.establishedPromise;
    } catch {
      void stream.cancel().catch(() => {});
      return;
    }
    const reader = stream.getReader();
    let receiver: ChannelReceiver | null = null;
    try {
      for (;;) {
        await this.waitForRoom();
        if (this.report) break;
        const { value, done } = await reader.read();
        if (done || this.report) break;
        const nowMs = this.now();
        this.heartbeat?.onActivity(nowMs * 1000);
        let chunk = value;
        if (!receiver) {
          if (chunk.length === 0) continue;
          const channel = chunk[0]!;
          if (this.channels[channel]?.kind !== 'reliable') {
            this.closeWith(ReasonCode.PROTOCOL_VIOLATION, `channel stream for channel ${channel}, which is not a reliable channel`, 'local');
            break;
          }
          receiver = { channel, decoder: new FrameDecoder(this.maxReliable), lastByteMs: nowMs };
          this.receivers.add(receiver);
          chunk = chunk.subarray(1);
        }
        receiver.lastByteMs = nowMs;
        let frames: Uint8Array[];
        try {
          frames = receiver.decoder.push(chunk);
        } catch (e) {
          const len = e instanceof FrameTooLargeError ? e.length : -1;
          this.closeWith(ReasonCode.PROTOCOL_VIOLATION, `frame of ${len} bytes on channel ${receiver.channel} exceeds ${this.maxReliable}`, 'local');
          break;
        }
        for (const payload of frames) this.deliver({ channel: receiver.channel, payload, kind: 'reliable', fragmented: false });
      }
    } catch {
      // Reset by the peer: forgotten with its partial frame (§3).
    } finally {
      if (receiver) this.receivers.delete(receiver);
    }
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.wt.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.report) return;
        this.onDatagram(value);
      }
    } catch {
      // Transport closed.
    }
  }

  private onDatagram(bytes: Uint8Array): void {
    this.counters.datagramsReceived++;
    if (!this.info) {
      this.counters.datagramsDroppedEarly++;
      return;
    }
    const nowMs = this.now();
    const nowUs = nowMs * 1000;
    this.heartbeat!.onActivity(nowUs);
    const d = parseDatagram(bytes);
    if ('invalid' in d) {
      this.invalid[d.invalid]++;
      return;
    }
    this.onParsedDatagram(d, nowMs);
  }

  private onParsedDatagram(d: Datagram, nowMs: number): void {
    const nowUs = nowMs * 1000;
    switch (d.kind) {
      case 'ping': {
        const pong = this.heartbeat!.handlePing(d.ping, nowUs, BigInt(this.tick!.currentTick));
        this.writeDatagram(encodePong(pong), true);
        return;
      }
      case 'pong': {
        const rtt = this.heartbeat!.handlePong(d.pong, nowUs);
        if (rtt !== null) this.tick!.observe(d.pong.tick, rtt, nowMs);
        return;
      }
      case 'unreliable':
        if (this.channels[d.channel]?.kind !== 'unreliable') {
          this.invalid['wrong-channel']++;
          return;
        }
        this.deliver({ channel: d.channel, payload: d.payload, kind: 'unreliable', fragmented: false });
        return;
      case 'sequenced':
        if (this.channels[d.channel]?.kind !== 'sequenced') {
          this.invalid['wrong-channel']++;
          return;
        }
        if (!this.acceptSeq(d.channel, d.seq)) return;
        this.deliver({ channel: d.channel, payload: d.payload, kind: 'sequenced', fragmented: false, seq: d.seq });
        return;
      case 'fragment': {
        const want = d.sequenced ? 'sequenced' : 'unreliable';
        if (this.channels[d.channel]?.kind !== want) {
          this.invalid['wrong-channel']++;
          return;
        }
        if (d.sequenced && !this.isNewer(d.channel, d.header.messageId)) {
          this.counters.sequencedStale++;
          return;
        }
        const message = this.reassembler.push(d.channel, d.header, d.chunk, nowMs);
        if (!message) return;
        if (d.sequenced) {
          // Checked again on completion: a newer message may have been delivered meanwhile.
          if (!this.acceptSeq(d.channel, d.header.messageId)) return;
          this.deliver({ channel: d.channel, payload: message, kind: 'sequenced', fragmented: d.header.count > 1, seq: d.header.messageId });
        } else {
          this.deliver({ channel: d.channel, payload: message, kind: 'unreliable', fragmented: d.header.count > 1 });
        }
        return;
      }
    }
  }

  private isNewer(channel: number, seq: number): boolean {
    const last = this.lastSeq.get(channel);
    return last === undefined || seqNewer(seq, last);
  }

  private acceptSeq(channel: number, seq: number): boolean {
    if (!this.isNewer(channel, seq)) {
      this.counters.sequencedStale++;
      return false;
    }
    this.lastSeq.set(channel, seq);
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  /**
   * Sends `payload` on `channel`: a frame on the channel's stream (reliable), or one datagram
   * or its fragments (unreliable, sequenced; §5.3, §5.4). Returns at once; reliable data is
   * written in order behind earlier sends.
   *
   * @throws {SendError} `not-established`, `closed`, `unknown-channel`, `not-permitted`,
   *   `too-large` or `queue-full` (see `SendErrorKind`).
   */
  send(channel: number, payload: Uint8Array): void {
    if (this.report) throw new SendError('closed', `the session has closed (${this.report.name})`);
    if (!this.info) throw new SendError('not-established', 'the session is not established');
    const entry = this.channels[channel];
    if (!entry) throw new SendError('unknown-channel', `no channel ${channel} in the table`);
    if (!maySend(entry, this.info.role, this.info.permissions)) throw new SendError('not-permitted', `role and permissions may not send on channel ${channel}`);
    if (entry.kind === 'reliable') return this.sendReliable(channel, payload);
    const m = this.maxDatagramBytes;
    const limits = this.reassembler.config;
    if (payload.length > limits.maxMessageBytes) throw new SendError('too-large', `${payload.length} bytes exceed the datagram message limit of ${limits.maxMessageBytes}`);
    const sequenced = entry.kind === 'sequenced';
    let datagrams: Uint8Array[] | null;
    if (sequenced) {
      const seq = this.nextSeqOut.get(channel) ?? 0;
      datagrams = payload.length + 3 <= m ? [encodeSequenced(channel, seq, payload)] : fragmentMessage(payload, m, true, channel, seq, limits.maxFragments);
      if (!datagrams) throw new SendError('too-large', `${payload.length} bytes need more than ${limits.maxFragments} fragments of a ${m}-byte datagram`);
      this.nextSeqOut.set(channel, (seq + 1) & 0xffff);
    } else if (payload.length + 1 <= m) {
      datagrams = [encodeUnreliable(channel, payload)];
    } else {
      datagrams = fragmentMessage(payload, m, false, channel, this.nextFragmentId, limits.maxFragments);
      if (!datagrams) throw new SendError('too-large', `${payload.length} bytes need more than ${limits.maxFragments} fragments of a ${m}-byte datagram`);
      this.nextFragmentId = (this.nextFragmentId + 1) & 0xffff;
    }
    for (const d of datagrams) this.writeDatagram(d, false);
    this.counters.messagesSent++;
  }

  private writeDatagram(d: Uint8Array, control: boolean): void {
    const writer = this.datagramWriter;
    if (!writer) return;
    if (!control && this.datagramsInFlight >= this.maxQueuedDatagrams) {
      this.counters.sendQueueDrops++;
      return;
    }
    this.datagramsInFlight++;
    this.counters.datagramsSent++;
    writer.write(d).then(
      () => this.datagramsInFlight--,
      () => this.datagramsInFlight--,
    );
  }

  private sendReliable(channel: number, payload: Uint8Array): void {
    if (payload.length > this.maxReliable) throw new SendError('too-large', `${payload.length} bytes exceed the reliable message limit of ${this.maxReliable}`);
    const frame = encodeFrame(payload);
    if (this.reliableQueued + frame.length > this.maxQueuedReliable) throw new SendError('queue-full', `${this.reliableQueued} reliable bytes already queued`);
    let sender = this.senders.get(channel);
    let bytes = frame;
    if (!sender) {
      // The first write carries the channel byte (§2.4).
      const writer = this.wt.createUnidirectionalStream().then((s) => s.getWriter());
      sender = { writer, tail: Promise.resolve() };
      this.senders.set(channel, sender);
      bytes = concat(new Uint8Array([channel]), frame);
    }
    this.reliableQueued += frame.length;
    this.counters.messagesSent++;
    const s = sender;
    s.tail = s.tail
      .then(() => s.writer)
      .then((w) => w.write(bytes))
      .catch(() => {
        // The stream failed: the transport is closing, and the close is reported there.
      })
      .finally(() => {
        this.reliableQueued -= frame.length;
      });
  }
}
