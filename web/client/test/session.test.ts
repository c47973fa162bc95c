// The session against an in-memory WebTransport and a scripted server written with the same
// codecs: the §12.5 handshake, channel streams, datagrams, heartbeat and the §12.6 close.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ChannelId,
  ConnectError,
  Ed25519Identity,
  FrameDecoder,
  ReasonCode,
  Role,
  acceptDigest,
  bindingExporter,
  closeInfoFromMessage,
  closeInfoToMessage,
  connect,
  decodeControl,
  decodeHelloBody,
  encodeAcceptBody,
  encodeControl,
  encodeFrame,
  encodeJoinTicket,
  encodeJoinTicketClaims,
  encodePing,
  encodeSequenced,
  fragmentMessage,
  helloDigest,
  joinTicketMessage,
  parseDatagram,
  sha256,
  verifyStrict,
  concat,
  type ConnectOptions,
  type WebTransportLike,
} from '../src/index.js';

const fill = (n: number, b: number) => new Uint8Array(n).fill(b);
const CERT_HASH = fill(32, 0xc3);
const SCHEMA = fill(32, 0x08);

/** A pipe of byte chunks: what one side writes, the other reads. */
function pipe() {
  const t = new TransformStream<Uint8Array, Uint8Array>();
  let writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  return {
    readable: t.readable,
    writable: t.writable,
    get writer() {
      return (writer ??= t.writable.getWriter());
    },
  };
}

/** Reads frames from a readable stream. */
function frameReader(readable: ReadableStream<Uint8Array>, limit = 1 << 20) {
  const reader = readable.getReader();
  const decoder = new FrameDecoder(limit);
  const queue: Uint8Array[] = [];
  return async function next(): Promise<Uint8Array> {
    while (queue.length === 0) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      queue.push(...decoder.push(value));
    }
    return queue.shift()!;
  };
}

/** The in-memory transport and the server's handles on it. */
function fakeTransport(maxDatagramSize = 1200) {
  let bidiCtl!: ReadableStreamDefaultController<{ readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> }>;
  let uniCtl!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>;
  let dgramCtl!: ReadableStreamDefaultController<Uint8Array>;
  let settleClosed!: (info: { closeCode?: number; reason?: string }) => void;
  const clientDatagrams: Uint8Array[] = [];
  const clientStreams: ReadableStream<Uint8Array>[] = [];
  const closedByClient: { closeCode?: number; reason?: string }[] = [];
  const datagramWaiters: (() => void)[] = [];
  const wt: WebTransportLike = {
    ready: Promise.resolve(),
    closed: new Promise((resolve) => (settleClosed = resolve)),
    close(info) {
      closedByClient.push(info ?? {});
      settleClosed(info ?? {});
    },
    datagrams: {
      readable: new ReadableStream({ start: (c) => void (dgramCtl = c) }),
      writable: new WritableStream({
        write(chunk) {
          clientDatagrams.push(chunk);
          for (const w of datagramWaiters.splice(0)) w();
        },
      }),
      maxDatagramSize,
    },
    incomingBidirectionalStreams: new ReadableStream({ start: (c) => void (bidiCtl = c) }),
    incomingUnidirectionalStreams: new ReadableStream({ start: (c) => void (uniCtl = c) }),
    async createUnidirectionalStream() {
      const p = pipe();
      clientStreams.push(p.readable);
      return p.writable;
    },
  };
  const server = {
    openControl() {
      const toClient = pipe();
      const toServer = pipe();
      bidiCtl.enqueue({ readable: toClient.readable, writable: toServer.writable });
      return { write: (b: Uint8Array) => toClient.writer.write(b), next: frameReader(toServer.readable) };
    },
    openUni() {
      const p = pipe();
      uniCtl.enqueue(p.readable);
      return (b: Uint8Array) => p.writer.write(b);
    },
    datagram: (d: Uint8Array) => dgramCtl.enqueue(d),
    closeWith: (code: number, retryAfterMs: number | null, detail: string) =>
      settleClosed({ closeCode: code, reason: closeInfoToMessage({ retryAfterMs, detail }) }),
    clientDatagrams,
    clientStreams,
    closedByClient,
    async waitDatagram(pred: (d: Uint8Array) => boolean): Promise<Uint8Array> {
      for (;;) {
        const found = clientDatagrams.find(pred);
        if (found) return found;
        await new Promise<void>((r) => datagramWaiters.push(r));
      }
    },
  };
  return { wt, server };
}

async function setup(options: Partial<ConnectOptions> = {}, maxDatagramSize = 1200) {
  const client = await Ed25519Identity.fromSeed(fill(32, 1));
  const serverId = await Ed25519Identity.fromSeed(fill(32, 2));
  const issuer = await Ed25519Identity.fromSeed(fill(32, 9));
  const now = BigInt(Date.now());
  const claims = encodeJoinTicketClaims({
    clientId: 1n,
    gsId: 42n,
    jti: fill(16, 5),
    issuedAtMs: now,
    notBeforeMs: now,
    expiresAtMs: now + 60_000n,
    permissions: 0,
    clientKey: client.publicKey,
  });
  const ticket = encodeJoinTicket({ keyId: 1, claims, signature: await issuer.sign(joinTicketMessage(1, claims)) });
  const { wt, server } = fakeTransport(maxDatagramSize);
  const options_: ConnectOptions = {
    url: 'https://127.0.0.1:4433/tickwire',
    serverCertificateHashes: [{ algorithm: 'sha-256', value: CERT_HASH }],
    identity: client,
    joinTicket: ticket,
    schemaHash: SCHEMA,
    transport: () => wt,
    ...options,
  };
  return { client, serverId, server, options: options_ };
}

/** The server half of the handshake: Challenge, check the Hello, answer the Accept. */
async function serverHandshake(server: ReturnType<typeof fakeTransport>['server'], serverId: Ed25519Identity, opts: { certHash?: Uint8Array; corruptAccept?: boolean } = {}) {
  const control = server.openControl();
  const certHash = opts.certHash ?? CERT_HASH;
  const nonce = fill(24, 0x77);
  await control.write(encodeFrame(encodeControl({ kind: 'challenge', challenge: { binding: 0, certHash, nonce } })));
  const helloFrame = await control.next();
  const hello = decodeControl(helloFrame);
  assert.equal(hello.kind, 'hello');
  if (hello.kind !== 'hello') throw new Error('unreachable');
  const exporter = await bindingExporter(certHash, nonce);
  assert.ok(await verifyStrict(hello.signed.signature, await helloDigest(exporter, hello.signed.body), decodeHelloBody(hello.signed.body).identityKey));
  const body = decodeHelloBody(hello.signed.body);
  assert.equal(body.joinTicket?.keyId, 1);
  assert.equal(body.capabilities, 0n);
  const a = encodeAcceptBody({
    version: 1,
    schemaHash: body.schemaHash,
    clientNonce: body.nonce,
    serverNonce: fill(24, 4),
    sessionId: 0xfedc_ba98_7654_3210n,
    role: body.role,
    permissions: 0,
    capabilities: 0n,
    serverKey: serverId.publicKey,
    serverTick: 1000n,
    tickRateHz: 60,
    playTicket: null,
    extensions: [],
  });
  const sig = await serverId.sign(await acceptDigest(exporter, hello.signed.body, a));
  if (opts.corruptAccept) sig[5]! ^= 0x40;
  await control.write(encodeFrame(encodeControl({ kind: 'accept', signed: { body: a, signature: sig } })));
  return control;
}

test('a session: handshake, messages both ways, heartbeat, and the server close', async () => {
  const { serverId, server, options } = await setup();
  const [session] = await Promise.all([connect(options), serverHandshake(server, serverId)]);
  const info = session.established!;
  assert.equal(info.sessionId, 0xfedc_ba98_7654_3210n);
  assert.equal(info.role, Role.Player);
  assert.equal(info.tickRateHz, 60);
  assert.deepEqual(info.certHash, CERT_HASH);

  // The client pings at once.
  const ping = parseDatagram(await server.waitDatagram((d) => d[0] === 0x00));
  assert.ok('kind' in ping && ping.kind === 'ping' && ping.ping.seq === 0);

  // Server → client: a ping (answered), a reliable message, a fragmented sequenced snapshot,
  // and a stale sequenced one (dropped).
  server.datagram(encodePing({ seq: 0, tick: 1001n, tsUs: 123n }));
  const pong = parseDatagram(await server.waitDatagram((d) => d[0] === 0x20));
  assert.ok('kind' in pong && pong.kind === 'pong' && pong.pong.echoTsUs === 123n && pong.pong.seq === 0);
  const uni = server.openUni();
  await uni(concat(new Uint8Array([ChannelId.GAME]), encodeFrame(new TextEncoder().encode('tick 60 players 1'))));
  const snapshot = new Uint8Array(5000).map((_, i) => i & 0xff);
  for (const d of fragmentMessage(snapshot, 1200, true, ChannelId.LATEST, 7)!) server.datagram(d);
  server.datagram(encodeSequenced(ChannelId.LATEST, 6, new Uint8Array([1])));
  server.datagram(encodeSequenced(ChannelId.LATEST, 8, new Uint8Array([2])));

  const got = [];
  while (got.length < 3) {
    const m = await session.nextMessage();
    assert.ok(m);
    got.push(m);
  }
  const reliable = got.find((m) => m.kind === 'reliable')!;
  assert.equal(new TextDecoder().decode(reliable.payload), 'tick 60 players 1');
  const big = got.find((m) => m.fragmented)!;
  assert.equal(big.seq, 7);
  assert.deepEqual(big.payload, snapshot);
  assert.ok(got.some((m) => m.seq === 8));
  assert.equal(session.stats().sequencedStale, 1);

  // Client → server: an input on the sequenced channel, and a reliable message.
  const tick = session.pollTick();
  assert.ok(tick !== null && tick >= 1002);
  session.send(ChannelId.LATEST, new Uint8Array(9));
  const input = parseDatagram(await server.waitDatagram((d) => d[0] === 0x63));
  assert.ok('kind' in input && input.kind === 'sequenced' && input.seq === 0 && input.payload.length === 9);
  session.send(ChannelId.GAME, new TextEncoder().encode('hello'));
  while (server.clientStreams.length === 0) await new Promise((r) => setTimeout(r, 1));
  const reader = server.clientStreams[0]!.getReader();
  const { value } = await reader.read();
  assert.deepEqual(value, concat(new Uint8Array([0]), encodeFrame(new TextEncoder().encode('hello'))));
  assert.throws(() => session.send(9, new Uint8Array(1)), (e: unknown) => (e as { kind?: string }).kind === 'unknown-channel');

  // The server closes (§12.6): code SERVER_SHUTDOWN, retry advice and detail in the message.
  server.closeWith(ReasonCode.SERVER_SHUTDOWN, 2000, 'demo over');
  const report = await session.closed;
  assert.deepEqual(report, { code: 1, name: 'SERVER_SHUTDOWN', retryAfterMs: 2000, detail: 'demo over', established: true, initiator: 'peer' });
  assert.equal(await session.nextMessage(), null);
  assert.throws(() => session.send(ChannelId.LATEST, new Uint8Array(1)), (e: unknown) => (e as { kind?: string }).kind === 'closed');
});

test('a rejection during the handshake rejects connect with its reason code', async () => {
  const { server, options } = await setup();
  const connecting = connect(options);
  server.openControl();
  server.closeWith(ReasonCode.TICKET_EXPIRED, null, 'ticket expired 5 s ago');
  await assert.rejects(connecting, (e: unknown) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(e.report.code, ReasonCode.TICKET_EXPIRED);
    assert.equal(e.report.name, 'TICKET_EXPIRED');
    assert.equal(e.report.detail, 'ticket expired 5 s ago');
    assert.equal(e.report.established, false);
    return true;
  });
});

test('a Challenge naming an unpinned certificate is refused with BAD_HANDSHAKE', async () => {
  const { serverId, server, options } = await setup();
  const connecting = connect(options);
  void serverHandshake(server, serverId, { certHash: fill(32, 0x01) }).catch(() => {});
  await assert.rejects(connecting, (e: unknown) => e instanceof ConnectError && e.report.code === ReasonCode.BAD_HANDSHAKE && e.report.initiator === 'local');
  assert.equal(server.closedByClient[0]?.closeCode, ReasonCode.BAD_HANDSHAKE);
  assert.match(closeInfoFromMessage(server.closedByClient[0]!.reason!).detail, /pinned/);
});

test('an Accept whose signature does not verify is refused with BAD_SIGNATURE', async () => {
  const { serverId, server, options } = await setup();
  const connecting = connect(options);
  void serverHandshake(server, serverId, { corruptAccept: true });
  await assert.rejects(connecting, (e: unknown) => e instanceof ConnectError && e.report.code === ReasonCode.BAD_SIGNATURE);
  assert.equal(server.closedByClient[0]?.closeCode, ReasonCode.BAD_SIGNATURE);
});

test('no Challenge within the handshake timeout closes with HANDSHAKE_TIMEOUT', async () => {
  const { options } = await setup({ handshakeTimeoutMs: 60 });
  await assert.rejects(connect(options), (e: unknown) => e instanceof ConnectError && e.report.code === ReasonCode.HANDSHAKE_TIMEOUT);
});

test('a ticket for another identity is a configuration error', async () => {
  const { options } = await setup();
  const other = await Ed25519Identity.fromSeed(fill(32, 3));
  await assert.rejects(connect({ ...options, identity: other }), /another identity key/);
  await assert.rejects(connect({ ...options, joinTicket: new Uint8Array(3) }), /does not decode/);
  assert.equal((await sha256(new Uint8Array(0))).length, 32);
});
