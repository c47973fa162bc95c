// The demo game in a browser: asks the lobby for its session parameters, joins the game server
// over WebTransport with @tickwire/client, sends an input every client tick, draws the
// snapshots it receives, and shows RTT, jitter and loss. Its state is exposed for tests as
// `window.tickwireDemo` and mirrored in `<pre id=state>`.
//
// Message formats (the demo game's schema, `tickwire-demo/1`):
//   input    (client → server, channel 3, sequenced): u64be(tick) ‖ dir: u8 (0 +x, 1 +y, 2 −x, 3 −y)
//   snapshot (server → client, channel 3, sequenced): u64be(tick) ‖ per player
//            u64be(id) ‖ f32be(x) ‖ f32be(y), then padding bytes 0xA5 up to its size
//   events   (server → client, channel 0, reliable): UTF-8 text ("tick N players M")

import {
  ChannelId,
  ConnectError,
  Ed25519Identity,
  type Session,
  connect,
  fromBase64,
  fromHex,
  toHex,
} from '@tickwire/client';

/** What the lobby's `GET /session` returns. */
interface LobbySession {
  url: string;
  certificateHashes: { algorithm: 'sha-256'; value: string }[];
  joinTicket: string;
  schemaHash: string;
}

interface DemoState {
  joined: boolean;
  sessionId: string | null;
  inputsSent: number;
  snapshotsReceived: number;
  fragmentedSnapshots: number;
  rttMs: number | null;
  jitterMs: number | null;
  lossPct: number | null;
  closeReason: string | null;
  closeCode: number | null;
  log: string[];
}

const MAX_LOG_LINES = 50;

const state: DemoState = {
  joined: false,
  sessionId: null,
  inputsSent: 0,
  snapshotsReceived: 0,
  fragmentedSnapshots: 0,
  rttMs: null,
  jitterMs: null,
  lossPct: null,
  closeReason: null,
  closeCode: null,
  log: [],
};
(window as unknown as { tickwireDemo: DemoState }).tickwireDemo = state;

function log(line: string): void {
  state.log.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
  if (state.log.length > MAX_LOG_LINES) state.log.splice(0, state.log.length - MAX_LOG_LINES);
}

const $ = (id: string) => document.getElementById(id)!;

interface Player {
  id: bigint;
  x: number;
  y: number;
}
let players: Player[] = [];
let snapshotTick = 0n;
let steer: number | null = null;

/** Parses a snapshot; padding (0xA5…) ends the player list, since ids are small numbers. */
function parseSnapshot(bytes: Uint8Array): { tick: bigint; players: Player[] } | null {
  if (bytes.length < 8) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tick = view.getBigUint64(0, false);
  const out: Player[] = [];
  for (let o = 8; o + 16 <= bytes.length; o += 16) {
    if (view.getUint32(o, false) !== 0) break; // padding, not an id
    out.push({ id: view.getBigUint64(o, false), x: view.getFloat32(o + 8, false), y: view.getFloat32(o + 12, false) });
  }
  return { tick, players: out };
}

function draw(): void {
  const canvas = $('view') as HTMLCanvasElement;
  const g = canvas.getContext('2d');
  if (g) {
    g.fillStyle = '#000';
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = '#222';
    for (let i = 0; i <= canvas.width; i += 40) {
      g.beginPath();
      g.moveTo(i, 0);
      g.lineTo(i, canvas.height);
      g.moveTo(0, i);
      g.lineTo(canvas.width, i);
      g.stroke();
    }
    const scale = 40; // pixels per unit
    for (const p of players) {
      // Players walk off in straight lines: wrap the world onto the canvas.
      const wrap = (v: number, size: number) => ((((v * scale + size / 2) % size) + size) % size);
      const x = wrap(p.x, canvas.width);
      const y = wrap(-p.y, canvas.height);
      g.fillStyle = `hsl(${(Number(p.id) * 67) % 360} 80% 60%)`;
      g.beginPath();
      g.arc(x, y, 8, 0, 2 * Math.PI);
      g.fill();
      g.fillStyle = '#fff';
      g.fillText(String(p.id), x + 10, y - 10);
    }
    g.fillStyle = '#888';
    g.fillText(`tick ${snapshotTick}`, 8, 16);
  }
  requestAnimationFrame(draw);
}

function render(): void {
  $('rtt').textContent = state.rttMs === null ? '–' : `${state.rttMs.toFixed(2)} ms`;
  $('jitter').textContent = state.jitterMs === null ? '–' : `${state.jitterMs.toFixed(3)} ms`;
  $('loss').textContent = state.lossPct === null ? '–' : `${state.lossPct.toFixed(2)} %`;
  $('inputs').textContent = String(state.inputsSent);
  $('snapshots').textContent = `${state.snapshotsReceived} (${state.fragmentedSnapshots} fragmented)`;
  $('state').textContent = JSON.stringify(state, null, 2);
}

function run(session: Session): void {
  const pump = () => {
    if (session.closeReport) return;
    for (let tick = session.pollTick(); tick !== null; tick = session.pollTick()) {
      const input = new Uint8Array(9);
      new DataView(input.buffer).setBigUint64(0, BigInt(tick), false);
      input[8] = steer ?? Math.floor(tick / 120) % 4;
      try {
        session.send(ChannelId.LATEST, input);
        state.inputsSent++;
      } catch (e) {
        log(`input not sent: ${(e as Error).message}`);
      }
    }
    for (let m = session.pollMessage(); m; m = session.pollMessage()) {
      if (m.channel === ChannelId.LATEST) {
        state.snapshotsReceived++;
        if (m.fragmented) state.fragmentedSnapshots++;
        const snap = parseSnapshot(m.payload);
        if (snap) {
          players = snap.players;
          snapshotTick = snap.tick;
        }
      } else {
        log(`channel ${m.channel}: ${new TextDecoder().decode(m.payload)}`);
      }
    }
    const hb = session.stats().heartbeat;
    state.rttMs = hb.rttSamples > 0 ? hb.srttMs : null;
    state.jitterMs = hb.jitterMs;
    state.lossPct = hb.lossRatio * 100;
  };
  // Ticks run at 60 Hz; poll at twice that so that no tick waits for a frame.
  const timer = setInterval(pump, 1000 / 120);
  void session.closed.then((report) => {
    clearInterval(timer);
    pump();
    state.closeReason = report.name;
    state.closeCode = report.code;
    log(`closed by ${report.initiator}: ${report.name}${report.detail ? ` (${report.detail})` : ''}`);
    $('status').textContent = `closed: ${report.name}`;
    render();
  });
}

async function main(): Promise<void> {
  setInterval(render, 250);
  requestAnimationFrame(draw);
  window.addEventListener('keydown', (e) => {
    const dir = { ArrowRight: 0, ArrowUp: 1, ArrowLeft: 2, ArrowDown: 3 }[e.key];
    if (dir !== undefined) steer = dir;
  });
  const identity = await Ed25519Identity.generate();
  const page = new URLSearchParams(location.search);
  const query = new URLSearchParams({ key: toHex(identity.publicKey) });
  if (page.get('expired') === '1') query.set('expired', '1');
  log(`identity ${toHex(identity.publicKey).slice(0, 16)}…; asking the lobby`);
  const response = await fetch(`/session?${query}`);
  if (!response.ok) throw new Error(`lobby: HTTP ${response.status}: ${await response.text()}`);
  const lobby = (await response.json()) as LobbySession;
  log(`joining ${lobby.url}`);
  try {
    const session = await connect({
      url: lobby.url,
      serverCertificateHashes: lobby.certificateHashes.map((h) => ({ algorithm: 'sha-256', value: fromBase64(h.value) })),
      identity,
      joinTicket: fromHex(lobby.joinTicket),
      schemaHash: fromHex(lobby.schemaHash),
    });
    const info = session.established!;
    state.joined = true;
    state.sessionId = info.sessionId.toString(16).padStart(16, '0');
    $('status').textContent = 'joined';
    $('session').textContent = `${state.sessionId} (${info.tickRateHz} Hz, handshake ${info.handshakeMs.toFixed(0)} ms)`;
    log(`joined: session ${state.sessionId}, server tick ${info.serverTick}, handshake ${info.handshakeMs.toFixed(1)} ms`);
    run(session);
  } catch (e) {
    if (e instanceof ConnectError) {
      state.closeReason = e.report.name;
      state.closeCode = e.report.code;
      log(`rejected by ${e.report.initiator}: ${e.report.name}${e.report.detail ? ` (${e.report.detail})` : ''}`);
      $('status').textContent = `rejected: ${e.report.name}`;
    } else {
      throw e;
    }
  }
  render();
}

main().catch((e: unknown) => {
  const message = e instanceof Error ? e.message : String(e);
  log(`error: ${message}`);
  state.closeReason = state.closeReason ?? 'ERROR';
  $('status').textContent = `error: ${message}`;
  render();
});
