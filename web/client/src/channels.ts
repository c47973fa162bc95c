/**
 * The channel table (PROTOCOL.md §7.1): up to 32 channels, each reliable (a stream per
 * direction), unreliable or sequenced ("latest only") datagrams, with the roles and
 * permission bits that may send on it. Both peers must use the same table; it belongs to the
 * game's schema.
 */

import { ConfigError } from './errors.js';
import { Role } from './handshake.js';

/** How a channel's messages travel. */
export type ChannelKind = 'reliable' | 'unreliable' | 'sequenced';

/** Who may send on a channel (§7.1 `senders`). */
export interface Senders {
  /** Role variant indices (`Role.Player`, …) allowed to send. */
  roles: number[];
  /** Permission bits the session's granted permissions must all include. */
  permissions: number;
}

/** One channel-table entry. Compression (§7.3) is not supported by this client: it never
 *  offers the `ZSTD` capability, so no channel carries a flag byte. */
export interface Channel {
  kind: ChannelKind;
  /** Default: every role but spectator, no permission bits. */
  senders?: Senders;
}

/** The default senders: player, admin and game server (§7.1). */
export const DEFAULT_SENDERS: Readonly<Senders> = Object.freeze({
  roles: [Role.Player, Role.Admin, Role.GameServer],
  permissions: 0,
});

/** Well-known channel ids of the default table. */
export const ChannelId = { GAME: 0, BULK: 1, UNRELIABLE: 2, LATEST: 3 } as const;

/** The default table: 0 reliable (game), 1 reliable (bulk), 2 unreliable, 3 sequenced (§7.1). */
export const DEFAULT_CHANNELS: readonly Channel[] = Object.freeze([
  { kind: 'reliable' },
  { kind: 'reliable' },
  { kind: 'unreliable' },
  { kind: 'sequenced' },
]);

/** Checks a table: 1–32 entries with known kinds. @throws {ConfigError} */
export function validateChannels(channels: readonly Channel[]): void {
  if (channels.length < 1 || channels.length > 32) throw new ConfigError(`a channel table has 1 to 32 entries, got ${channels.length}`);
  channels.forEach((c, i) => {
    if (c.kind !== 'reliable' && c.kind !== 'unreliable' && c.kind !== 'sequenced') {
      throw new ConfigError(`channel ${i}: unknown kind ${String(c.kind)}`);
    }
  });
}

/** Whether a session with `role` and `permissions` may send on `channel` (§7.1 send rule). */
export function maySend(channel: Channel, role: number, permissions: number): boolean {
  const senders = channel.senders ?? DEFAULT_SENDERS;
  const required = senders.permissions >>> 0;
  return senders.roles.includes(role) && ((permissions >>> 0) & required) >>> 0 === required;
}
