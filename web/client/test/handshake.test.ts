// The worked example of PROTOCOL.md §4.7, byte for byte, and the §12.5 Challenge and binding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Ed25519Identity,
  Role,
  acceptDigest,
  bindingExporter,
  checkAccept,
  checkChallenge,
  decodeAcceptBody,
  decodeControl,
  decodeHelloBody,
  decodeJoinTicket,
  decodeJoinTicketClaims,
  encodeAcceptBody,
  encodeControl,
  encodeFrame,
  encodeHelloBody,
  encodeJoinTicket,
  encodeJoinTicketClaims,
  fromHex,
  helloDigest,
  joinTicketMessage,
  sha256,
  toHex,
  verifyStrict,
  ascii,
  concat,
  HandshakeFailure,
  ReasonCode,
  type AcceptBody,
  type HelloBody,
} from '../src/index.js';

const fill = (n: number, b: number) => new Uint8Array(n).fill(b);
const CLIENT_PUB = '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c';
const SERVER_PUB = '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394';
const ISSUER_PUB = 'fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618';
const TICKET_SIG =
  '98a6a1998315b024a11fe67ac2bcf217aa850b63f6e286401df21dfe7edc6ede5c2e5c47d800ba1c3ff81b35c1698bfcbb147f59a818f61d76bb3a18525bf201';
const HELLO_DIGEST = '00ce80f94c36e5252c39bf6d742441e9f2bf6b77e5854e8238b96d06bc84dea5';
const SIG_C =
  '251b904d5c1b068183aa71383d9b731fe5b62654d4b026c0d19e0584de5271fa5c765bad70db698eb68af2a2378ce21f24114c07249d8926195499dba9353f04';
const ACCEPT_DIGEST = 'c7dd8d60a0eca5eb2acbe93f9fb1013ba34dd4d8c52a603908ec8fe9855a069a';
const SIG_S =
  'c61b231cdfce6502cd4917d3b5ec42994273bf8475974e74bc5ef25f2f98129e03ac2a1d3d92c4aece0d4449b8e88a6a8336a442dc992699119d902e58262e01';

async function example() {
  const client = await Ed25519Identity.fromSeed(fill(32, 0x01));
  const server = await Ed25519Identity.fromSeed(fill(32, 0x02));
  const issuer = await Ed25519Identity.fromSeed(fill(32, 0x09));
  const t0 = 1_767_225_600_000n;
  const claims = encodeJoinTicketClaims({
    clientId: 7n,
    gsId: 42n,
    jti: fill(16, 0x05),
    issuedAtMs: t0,
    notBeforeMs: t0,
    expiresAtMs: t0 + 60_000n,
    permissions: 0,
    clientKey: client.publicKey,
  });
  const ticketSig = await issuer.sign(joinTicketMessage(1, claims));
  const hello: HelloBody = {
    versionMin: 1,
    versionMax: 1,
    schemaHash: fill(32, 0x08),
    nonce: fill(24, 0x03),
    capabilities: 3n,
    role: Role.Player,
    identityKey: client.publicKey,
    joinTicket: { keyId: 1, claims, signature: ticketSig },
    extensions: [{ kind: 1, data: fill(32, 0xdd) }],
  };
  const accept: AcceptBody = {
    version: 1,
    schemaHash: fill(32, 0x08),
    clientNonce: fill(24, 0x03),
    serverNonce: fill(24, 0x04),
    sessionId: 77n,
    role: Role.Player,
    permissions: 0,
    capabilities: 3n,
    serverKey: server.publicKey,
    serverTick: 1000n,
    tickRateHz: 60,
    playTicket: null,
    extensions: [],
  };
  return { client, server, issuer, claims, ticketSig, hello, accept, exporter: fill(32, 0xee) };
}

test('§4.7 keys derive from their seeds', async () => {
  const { client, server, issuer } = await example();
  assert.equal(toHex(client.publicKey), CLIENT_PUB);
  assert.equal(toHex(server.publicKey), SERVER_PUB);
  assert.equal(toHex(issuer.publicKey), ISSUER_PUB);
});

test('§4.7 join ticket: claims bytes, signed message and signature', async () => {
  const { claims, ticketSig, issuer } = await example();
  assert.equal(claims.length, 69);
  assert.equal(
    toHex(claims),
    '072a' + '05'.repeat(16) + '80d0eab6b733' + '80d0eab6b733' + 'e0a4eeb6b733' + '00' + CLIENT_PUB,
  );
  const message = joinTicketMessage(1, claims);
  assert.equal(toHex(message.subarray(0, 28)), '7469636b776972652f6a6f696e2d7469636b65742f763100' + '00000001');
  assert.equal(toHex(ticketSig), TICKET_SIG);
  assert.ok(await verifyStrict(ticketSig, message, issuer.publicKey));
  const standalone = encodeJoinTicket({ keyId: 1, claims, signature: ticketSig });
  const back = decodeJoinTicket(standalone);
  assert.equal(back.keyId, 1);
  assert.deepEqual(decodeJoinTicketClaims(back.claims).gsId, 42n);
});

test('§4.7 Hello frame: 334 bytes, digest and sig_c', async () => {
  const { client, hello, exporter } = await example();
  const body = encodeHelloBody(hello);
  assert.equal(body.length, 263);
  const digest = await helloDigest(exporter, body);
  assert.equal(toHex(digest), HELLO_DIGEST);
  const sig = await client.sign(digest);
  assert.equal(toHex(sig), SIG_C);
  const frame = encodeFrame(encodeControl({ kind: 'hello', signed: { body, signature: sig } }));
  assert.equal(frame.length, 334);
  const hex = toHex(frame);
  assert.ok(hex.startsWith('0000014a' + '00' + '8702' + '0101' + '08'.repeat(32) + '03'.repeat(24) + '0300' + CLIENT_PUB + '01' + '01' + '45'));
  assert.ok(hex.endsWith(TICKET_SIG.slice(-8) + '01' + '0120' + 'dd'.repeat(32) + SIG_C));
  // And it decodes back to the same body.
  const control = decodeControl(frame.subarray(4));
  assert.equal(control.kind, 'hello');
  const decoded = decodeHelloBody(control.kind === 'hello' ? control.signed.body : new Uint8Array());
  assert.deepEqual(encodeHelloBody(decoded), body);
});

test('§4.7 Accept frame: 192 bytes, A, digest and sig_s', async () => {
  const { server, hello, accept, exporter } = await example();
  const helloBody = encodeHelloBody(hello);
  const a = encodeAcceptBody(accept);
  assert.equal(
    toHex(a),
    '01' + '08'.repeat(32) + '03'.repeat(24) + '04'.repeat(24) + '4d000003' + SERVER_PUB + 'e807' + '3c' + '00' + '00',
  );
  assert.equal(a.length, 122);
  const digest = await acceptDigest(exporter, helloBody, a);
  assert.equal(toHex(digest), ACCEPT_DIGEST);
  const sig = await server.sign(digest);
  assert.equal(toHex(sig), SIG_S);
  const frame = encodeFrame(encodeControl({ kind: 'accept', signed: { body: a, signature: sig } }));
  assert.equal(frame.length, 192);
  assert.ok(toHex(frame).startsWith('000000bc' + '01' + '7a'));
  assert.deepEqual(encodeAcceptBody(decodeAcceptBody(a)), a);
});

test('checkAccept passes the §4.7 Accept and refuses each tampering with its reason code', async () => {
  const { server, hello, accept, exporter } = await example();
  const helloBytes = encodeHelloBody(hello);
  const sign = async (body: AcceptBody) => {
    const bytes = encodeAcceptBody(body);
    return { body: bytes, signature: await server.sign(await acceptDigest(exporter, helloBytes, bytes)) };
  };
  const x = { hello, helloBytes, exporter, nowUnixMs: 1_767_225_600_000 };
  const ok = await checkAccept(await sign(accept), x);
  assert.equal(ok.sessionId, 77n);
  const expectCode = async (p: Promise<unknown>, code: number) => {
    await assert.rejects(p, (e: unknown) => e instanceof HandshakeFailure && e.code === code);
  };
  await expectCode(checkAccept(await sign({ ...accept, clientNonce: fill(24, 9) }), x), ReasonCode.BAD_HANDSHAKE);
  await expectCode(checkAccept(await sign({ ...accept, role: Role.Spectator }), x), ReasonCode.BAD_HANDSHAKE);
  await expectCode(checkAccept(await sign({ ...accept, capabilities: 4n }), x), ReasonCode.BAD_HANDSHAKE);
  await expectCode(checkAccept(await sign({ ...accept, capabilities: 2n }), x), ReasonCode.BAD_HANDSHAKE);
  await expectCode(checkAccept(await sign(accept), { ...x, pinnedServerKey: fill(32, 1) }), ReasonCode.SERVER_KEY_MISMATCH);
  const good = await sign(accept);
  const badSig = { body: good.body, signature: good.signature.slice() };
  badSig.signature[0]! ^= 1;
  await expectCode(checkAccept(badSig, x), ReasonCode.BAD_SIGNATURE);
  await expectCode(checkAccept({ body: concat(good.body, new Uint8Array([0])), signature: good.signature }, x), ReasonCode.BAD_HANDSHAKE);
  // A required play ticket that is missing.
  await expectCode(checkAccept(good, { ...x, trustedVsKeys: new Map([[1, fill(32, 7)]]) }), ReasonCode.NOT_AUTHORISED);
});

test('strict verification refuses a non-canonical S and a small-order key', async () => {
  const { client } = await example();
  const msg = ascii('message');
  const sig = await client.sign(msg);
  assert.ok(await verifyStrict(sig, msg, client.publicKey));
  // S + L is the same scalar mod L, but not canonical.
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
  let big = s + L;
  const malleated = sig.slice();
  for (let i = 32; i < 64; i++) {
    malleated[i] = Number(big & 0xffn);
    big >>= 8n;
  }
  assert.equal(await verifyStrict(malleated, msg, client.publicKey), false);
  // The identity point (small order) as a key, with R = identity and S = 0, passes the
  // cofactorless equation but must be refused.
  const identity = fromHex('0100000000000000000000000000000000000000000000000000000000000000');
  const forged = concat(identity, new Uint8Array(32));
  assert.equal(await verifyStrict(forged, msg, identity), false);
  assert.equal(await verifyStrict(sig, msg, new Uint8Array(31)), false);
});

test('§12.5 Challenge: encoding, binding exporter and pinned-hash check', async () => {
  const challenge = { binding: 0, certHash: fill(32, 0xab), nonce: fill(24, 0xcd) };
  const payload = encodeControl({ kind: 'challenge', challenge });
  assert.equal(toHex(payload), '02' + '00' + 'ab'.repeat(32) + 'cd'.repeat(24));
  assert.equal(payload.length, 58);
  const back = decodeControl(payload);
  assert.deepEqual(back, { kind: 'challenge', challenge });
  const label = ascii('tickwire/wt-binding/v1');
  assert.equal(label.length, 22);
  assert.deepEqual(await bindingExporter(challenge.certHash, challenge.nonce), await sha256(concat(label, challenge.certHash, challenge.nonce)));
  checkChallenge(challenge, [fill(32, 0xab)]);
  checkChallenge(challenge, []);
  assert.throws(() => checkChallenge(challenge, [fill(32, 0xac)]), (e: unknown) => e instanceof HandshakeFailure && e.code === ReasonCode.BAD_HANDSHAKE);
  assert.throws(() => checkChallenge({ ...challenge, binding: 1 }, []), HandshakeFailure);
  assert.throws(() => decodeControl(concat(payload, new Uint8Array([0]))));
  assert.throws(() => decodeControl(new Uint8Array([3])));
});
