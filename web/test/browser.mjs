#!/usr/bin/env node
// Opens a page in headless Chromium and waits until its `window.tickwireDemo` state meets a
// condition; prints the state as JSON on stdout.
//
//   node web/test/browser.mjs --url http://127.0.0.1:8080/ \
//       --until 'joined && snapshotsReceived >= 50' [--until 'closeReason !== null' ...] \
//       [--fail-if 'closeReason !== null'] [--timeout-ms 30000] [--screenshot shot.png] \
//       [--chromium /usr/bin/chromium]
//
// Conditions are JavaScript expressions over the state's fields (joined, sessionId,
// inputsSent, snapshotsReceived, fragmentedSnapshots, rttMs, jitterMs, lossPct, closeReason,
// closeCode, log). Several --until are stages, waited for in order on the same page, each
// within --timeout-ms: as each is met (or not) one line `{"outcome":"ok"|"timeout"|"failed",
// "state":{…}}` is printed and flushed, so a caller can act between stages (stop the server,
// then wait for the page to show the close). --fail-if is checked in every stage, after that
// stage's --until. Exit codes: 0 every stage held; 1 one did not within the timeout, or
// --fail-if held first (no later stage runs); 2 bad arguments or the browser could not
// start. The page's console goes to stderr.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

function usage(message) {
  process.stderr.write(`browser.mjs: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      until: { type: 'string', multiple: true },
      'fail-if': { type: 'string' },
      'timeout-ms': { type: 'string', default: '30000' },
      screenshot: { type: 'string' },
      chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    },
    strict: true,
  }));
} catch (e) {
  usage(e.message);
}
if (!args.url) usage('--url is required');
if (!args.until?.length) usage('--until is required');
const timeoutMs = Number(args['timeout-ms']);
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) usage('--timeout-ms must be a positive number');

// As root Chromium needs --no-sandbox; the background-networking flags keep it from calling
// out of this machine. QUIC stays enabled: WebTransport runs on it.
const flags = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const profile = mkdtempSync(join(tmpdir(), 'tickwire-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, { executablePath: args.chromium, headless: true, args: flags });
} catch (e) {
  rmSync(profile, { recursive: true, force: true });
  usage(`cannot start Chromium at ${args.chromium}: ${e.message.split('\n')[0]}`);
}

const readState = () => (window.tickwireDemo ? JSON.parse(JSON.stringify(window.tickwireDemo)) : null);
const check = ([until, failIf]) => {
  const s = window.tickwireDemo;
  if (!s) return null;
  const test = (expr) => new Function(...Object.keys(s), `return (${expr});`)(...Object.values(s));
  if (test(until)) return 'ok';
  if (failIf && test(failIf)) return 'failed';
  return null;
};

/** Writes one line to stdout and resolves once it is handed to the OS (stdout may be a pipe). */
const emit = (line) => new Promise((resolve) => process.stdout.write(`${line}\n`, resolve));

let code = 1;
let outcome = 'timeout';
let state = null;
let stage = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  await page.goto(args.url, { timeout: timeoutMs });
  for (; stage < args.until.length; stage++) {
    outcome = 'timeout';
    try {
      const handle = await page.waitForFunction(check, [args.until[stage], args['fail-if'] ?? null], { timeout: timeoutMs, polling: 100 });
      outcome = await handle.jsonValue();
    } catch (e) {
      if (!/Timeout/i.test(e.message)) throw e;
    }
    state = await page.evaluate(readState);
    if (outcome !== 'ok') break;
    if (stage + 1 < args.until.length) await emit(JSON.stringify({ outcome, state }));
  }
  code = outcome === 'ok' ? 0 : 1;
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
} catch (e) {
  process.stderr.write(`browser.mjs: ${e.message}\n`);
  code = code === 0 ? 1 : code;
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
await emit(JSON.stringify({ outcome, state }));
if (code !== 0) {
  const which = args.until.length > 1 ? ` ${stage + 1} of ${args.until.length}` : '';
  process.stderr.write(`browser.mjs: condition${which} ${outcome === 'failed' ? 'failed (--fail-if held)' : 'not met within the timeout'}\n`);
}
process.exit(code);
