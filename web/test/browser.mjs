#!/usr/bin/env node
// Opens a page in headless Chromium and waits until its `window.tickwireDemo` state meets a
// condition; prints the final state as JSON on stdout.
//
//   node web/test/browser.mjs --url http://127.0.0.1:8080/ \
//       --until 'joined && snapshotsReceived >= 50' [--fail-if 'closeReason !== null'] \
//       [--timeout-ms 30000] [--screenshot shot.png] [--chromium /usr/bin/chromium]
//
// Conditions are JavaScript expressions over the state's fields (joined, sessionId,
// inputsSent, snapshotsReceived, fragmentedSnapshots, rttMs, jitterMs, lossPct, closeReason,
// closeCode, log). Exit codes: 0 the condition held; 1 it did not within the timeout, or
// --fail-if held first; 2 bad arguments or the browser could not start. The page's console
// goes to stderr.

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
      until: { type: 'string' },
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
if (!args.until) usage('--until is required');
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

let code = 1;
let outcome = 'timeout';
let state = null;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  await page.goto(args.url, { timeout: timeoutMs });
  try {
    const handle = await page.waitForFunction(check, [args.until, args['fail-if'] ?? null], { timeout: timeoutMs, polling: 100 });
    outcome = await handle.jsonValue();
    code = outcome === 'ok' ? 0 : 1;
  } catch (e) {
    if (!/Timeout/i.test(e.message)) throw e;
  }
  state = await page.evaluate(readState);
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
} catch (e) {
  process.stderr.write(`browser.mjs: ${e.message}\n`);
  code = code === 0 ? 1 : code;
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify({ outcome, state })}\n`);
if (code !== 0) process.stderr.write(`browser.mjs: condition ${outcome === 'failed' ? 'failed (--fail-if held)' : 'not met within the timeout'}\n`);
process.exit(code);
