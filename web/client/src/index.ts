/**
 * `@tickwire/client`: a browser client for tickwire game sessions over WebTransport
 * (PROTOCOL.md §12), written from the protocol specification.
 *
 * ```ts
 * import { connect, Ed25519Identity, ChannelId, fromHex, fromBase64 } from '@tickwire/client';
 *
 * const lobby = await (await fetch(`/session?key=${toHex(identity.publicKey)}`)).json();
 * const session = await connect({
 *   url: lobby.url,
 *   serverCertificateHashes: lobby.certificateHashes.map((h) => ({ algorithm: 'sha-256', value: fromBase64(h.value) })),
 *   identity,
 *   joinTicket: fromHex(lobby.joinTicket),
 *   schemaHash: fromHex(lobby.schemaHash),
 * });
 * function frame() {
 *   for (let tick = session.pollTick(); tick !== null; tick = session.pollTick()) {
 *     session.send(ChannelId.LATEST, input(tick));
 *   }
 *   for (let m = session.pollMessage(); m; m = session.pollMessage()) draw(m);
 *   requestAnimationFrame(frame);
 * }
 * requestAnimationFrame(frame);
 * session.closed.then((report) => console.log(report.name, report.detail));
 * ```
 */

export * from './bytes.js';
export * from './channels.js';
export { Ed25519Identity, sha256, verifyStrict, randomBytes } from './crypto.js';
export * from './datagram.js';
export * from './errors.js';
export * from './fragment.js';
export * from './frame.js';
export * from './handshake.js';
export * from './heartbeat.js';
export { Reader, Writer } from './postcard.js';
export * from './reason.js';
export { connect, Session } from './session.js';
export type { CertificateHash, ConnectOptions, Established, Message, SessionStats, WebTransportLike } from './session.js';
