#!/usr/bin/env node
// Opens a page in headless Chromium or Firefox and waits until its `window.tickwireDemo` state
// meets a condition; prints the state as JSON on stdout.
//
//   node web/test/browser.mjs --url http://127.0.0.1:8080/ \
//       --until 'joined && snapshotsReceived >= 50' [--until 'closeReason !== null' ...] \
//       [--fail-if 'closeReason !== null'] [--timeout-ms 30000] [--screenshot shot.png] \
//       [--browser chromium|firefox] [--chromium /usr/bin/chromium] [--firefox /usr/bin/firefox-esr]
//
// Chromium is driven by playwright-core, Firefox by puppeteer-core over WebDriver BiDi (the
// stock Firefox has no playwright protocol); the stages are the same. The executables default
// to $CHROMIUM and $FIREFOX, else Debian's paths.
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
      browser: { type: 'string', default: 'chromium' },
      chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
      firefox: { type: 'string', default: process.env.FIREFOX ?? '/usr/bin/firefox-esr' },
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

/**
 * Each browser's start: resolves to `{ page, close, waitForFunction }`, where `page` has the
 * methods both drivers share (on, goto, evaluate, screenshot), `close` ends the browser, and
 * `waitForFunction(fn, arg, timeoutMs)` polls `fn(arg)` in the page every 100 ms until it is
 * truthy (the drivers order these arguments differently). `profile` is a fresh, empty
 * directory.
 */
const launchers = {
  async chromium(executablePath, profile) {
    const { chromium } = await import('playwright-core');
    // As root Chromium needs --no-sandbox; the background-networking flags keep it from
    // calling out of this machine. QUIC stays enabled: WebTransport runs on it.
    const flags = [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ];
    const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: flags });
    const page = context.pages()[0] ?? (await context.newPage());
    return {
      page,
      close: () => context.close(),
      waitForFunction: (fn, arg, timeout) => page.waitForFunction(fn, arg, { timeout, polling: 100 }),
    };
  },
  async firefox(executablePath, profile) {
    const { default: puppeteer } = await import('puppeteer-core');
    // Puppeteer applies Firefox's recommended automation preferences, which quiet most of its
    // background services; remote settings still call out, unless pointed at nothing as
    // Mozilla's own test profiles do (a release build honours that preference only with
    // MOZ_REMOTE_SETTINGS_DEVTOOLS=1). Nothing WebTransport needs is a preference: it and
    // serverCertificateHashes are on by default, and as root no sandbox flag is needed.
    const browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath,
      headless: true,
      userDataDir: profile,
      env: { ...process.env, MOZ_REMOTE_SETTINGS_DEVTOOLS: '1' },
      extraPrefsFirefox: { 'services.settings.server': 'data:,#remote-settings-dummy/v1' },
    });
    const page = (await browser.pages())[0] ?? (await browser.newPage());
    return {
      page,
      close: () => browser.close(),
      waitForFunction: (fn, arg, timeout) => page.waitForFunction(fn, { timeout, polling: 100 }, arg),
    };
  },
};
const launch = launchers[args.browser];
if (!launch) usage(`--browser must be one of ${Object.keys(launchers).join(', ')}`);
const executable = args[args.browser];

const profile = mkdtempSync(join(tmpdir(), `tickwire-${args.browser}-`));
let driver;
try {
  driver = await launch(executable, profile);
} catch (e) {
  rmSync(profile, { recursive: true, force: true });
  usage(`cannot start ${args.browser} at ${executable}: ${e.message.split('\n')[0]}`);
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
  const { page } = driver;
  page.on('console', (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  await page.goto(args.url, { timeout: timeoutMs });
  for (; stage < args.until.length; stage++) {
    outcome = 'timeout';
    try {
      const handle = await driver.waitForFunction(check, [args.until[stage], args['fail-if'] ?? null], timeoutMs);
      outcome = await handle.jsonValue();
    } catch (e) {
      if (e.name !== 'TimeoutError' && !/Timeout/i.test(e.message)) throw e;
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
  await driver.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
await emit(JSON.stringify({ outcome, state }));
if (code !== 0) {
  const which = args.until.length > 1 ? ` ${stage + 1} of ${args.until.length}` : '';
  process.stderr.write(`browser.mjs: condition${which} ${outcome === 'failed' ? 'failed (--fail-if held)' : 'not met within the timeout'}\n`);
}
process.exit(code);
