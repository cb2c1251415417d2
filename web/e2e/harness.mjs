// End-to-end harness: starts a real `clarateach up` on a free loopback port with a temp data dir,
// launches Debian's Chromium through playwright-core (never a downloaded browser) and watches
// every page for console errors and failed requests.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Where screenshots go: `CLARATEACH_SCREENSHOTS_DIR` (`npm run screenshots` points it at
 * docs/screenshots to refresh the README's), else a fresh temp dir, never over tracked files.
 */
export const SHOTS = process.env.CLARATEACH_SCREENSHOTS_DIR
  ? resolve(process.env.CLARATEACH_SCREENSHOTS_DIR)
  : mkdtempSync(join(tmpdir(), 'clarateach-shots-'));

/**
 * The UI build the tests load: `npm run build:e2e` (the production bundle has no test hooks, so
 * the tests could not read the terminals), served by `up --web-dir`.
 */
export const WEB_DIR = resolve(process.env.CLARATEACH_WEB_DIR ?? join(import.meta.dirname, '../dist-e2e'));

export function log(...args) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}]`, ...args);
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

export async function waitFor(what, fn, { timeout = 15000, interval = 100 } = {}) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Starts `clarateach up`; returns {url, token, dataDir, stop()}. */
export async function startServer() {
  const bin = resolve(process.env.CLARATEACH_BIN ?? join(import.meta.dirname, '../../target/debug/clarateach'));
  check(existsSync(bin), `clarateach binary not found at ${bin} (set CLARATEACH_BIN)`);
  check(existsSync(join(WEB_DIR, 'index.html')), `no e2e UI build at ${WEB_DIR}: run \`npm run build:e2e\` in web/ (or set CLARATEACH_WEB_DIR)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'clarateach-e2e-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = join(dataDir, 'server.log');
  const out = createWriteStream(logPath);
  const child = spawn(bin, ['up', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--web-dir', WEB_DIR], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  let exited = null;
  child.on('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
  log(`started ${bin} up on ${url}, data dir ${dataDir}`);
  try {
    await waitFor(
      'the control plane to answer /api/health',
      async () => {
        if (exited) throw new Error(`clarateach up ended (${exited}); log:\n${readFileSync(logPath, 'utf8').slice(-3000)}`);
        const r = await fetch(`${url}/api/health`);
        return r.ok;
      },
      { timeout: 90000, interval: 250 },
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const tokenPath = join(dataDir, 'instructor.token');
  const token = await waitFor('instructor.token', () => existsSync(tokenPath) && readFileSync(tokenPath, 'utf8').trim(), {
    timeout: 10000,
  });
  return {
    url,
    token,
    dataDir,
    logPath,
    async stop({ keep = false } = {}) {
      if (!exited) {
        child.kill('SIGTERM');
        const deadline = Date.now() + 15000;
        while (!exited && Date.now() < deadline) await sleep(100);
        if (!exited) child.kill('SIGKILL');
      }
      if (!keep) {
        unmountUnder(dataDir);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Seats' file systems stay mounted after `up` stops (their files are kept): unmount every
 * mount below `dir`, deepest first, so the data dir can be removed. */
function unmountUnder(dir) {
  const out = spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).stdout || '';
  const mounts = out
    .split('\n')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

export async function launchBrowser() {
  check(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * Records console errors, page errors, failed requests and HTTP errors of a page. Problems seen
 * while `expectErrors` is on (deliberate bad joins, the workshop being stopped) are not counted.
 */
export class PageWatch {
  constructor(name, page) {
    this.name = name;
    this.page = page;
    this.problems = [];
    this.expectErrors = false;
    const add = (kind, text) => {
      if (!this.expectErrors) this.problems.push(`${name}: ${kind}: ${text}`);
    };
    page.on('console', (m) => m.type() === 'error' && add('console error', m.text()));
    page.on('pageerror', (e) => add('page error', e.message));
    page.on('requestfailed', (r) => {
      const f = r.failure()?.errorText ?? '';
      if (f.includes('ERR_ABORTED')) return; // navigation/reload cancelling in-flight requests
      add('request failed', `${r.method()} ${r.url()} ${f}`);
    });
    page.on('response', (r) => r.status() >= 400 && add('http error', `${r.status()} ${r.request().method()} ${r.url()}`));
  }
}

/**
 * A loopback TCP proxy in front of the server, so a test can cut a browser's connections (as a
 * flaky network would) and watch it reconnect. `cut(ms)` drops every connection and refuses new
 * ones for `ms`.
 */
export async function startProxy(targetUrl) {
  const { port: targetPort } = new URL(targetUrl);
  const { connect } = await import('node:net');
  const sockets = new Set();
  let refuseUntil = 0;
  const server = createServer((client) => {
    if (Date.now() < refuseUntil) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(targetPort), '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut(ms) {
      refuseUntil = Date.now() + ms;
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

// What the scenario files share: a terminal's text and typing into it (the test-hook build),
// a learner joining in a browser context of their own, a started workshop, and running one
// scenario alone from the command line.

/** The text on screen of the terminal tab `label` (test-hook build only). */
export const termText = (page, label = 'Terminal main') =>
  page.evaluate((l) => window.__claraTerminals?.get(l)?.() ?? '', label);

/** Types `line` into the terminal tab `label` and presses Enter. */
export async function typeInTerminal(page, label, line, { delay = 5 } = {}) {
  await page.locator(`[data-terminal="${label}"]`).click();
  await page.keyboard.type(line, { delay });
  await page.keyboard.press('Enter');
}

/** A learner joins workshop `code` as `name` in a browser context of their own and opens the
 *  workspace; `{ctx, page, token}` with the learner's session token from the page's storage. */
export async function joinAsLearner(browser, url, viewport, watches, code, name, tag) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  watches.push(new PageWatch(`${tag}-${name}`, page));
  await page.goto(url);
  await page.getByLabel('Workshop code').fill(code);
  await page.getByLabel(/Your name/).fill(name);
  await page.getByRole('button', { name: 'Join workshop' }).click();
  await page.getByRole('button', { name: 'Open my workspace' }).click();
  await page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
  const token = await page.evaluate(() => {
    for (const store of [sessionStorage, localStorage]) {
      for (let i = 0; i < store.length; i++) {
        const m = /"token":"([^"]+)"/.exec(store.getItem(store.key(i) ?? '') ?? '');
        if (m) return m[1];
      }
    }
    return null;
  });
  check(!!token, `${name}'s session token is in the page's storage`);
  return { ctx, page, token };
}

/** Creates a workshop (`body` of POST /api/workshops), starts it and waits until it runs. */
export async function startWorkshop(url, token, body) {
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const created = await fetch(`${url}/api/workshops`, { method: 'POST', headers, body: JSON.stringify(body) });
  check(created.status === 201, `create ${body.name}: ${created.status}`);
  const { workshop } = await created.json();
  check((await fetch(`${url}/api/workshops/${workshop.id}/start`, { method: 'POST', headers })).ok, `start ${body.name}`);
  await waitFor(`${body.name} running`, async () => {
    const w = await (await fetch(`${url}/api/workshops/${workshop.id}`, { headers })).json();
    return (w.workshop ?? w).status === 'running';
  }, { timeout: 120000, interval: 250 });
  return { workshop, headers };
}

/** Runs one scenario `(browser, url, token, viewport, watches) => figures` on its own server:
 *  for `node e2e/NAME.mjs`. Fails on any console error or failed request the watches saw,
 *  unless the scenario makes some on purpose (`failOnProblems: false`). */
/**
 * A browser context signed in as the instructor (`session` in sessionStorage, as the UI keeps
 * it) that records long tasks in `window.__longTasks` and frame intervals in `window.__frames`.
 */
export async function measuredInstructorContext(browser, viewport, session) {
  const ctx = await browser.newContext({ viewport });
  await ctx.addInitScript((s) => {
    sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s));
    window.__longTasks = [];
    window.__frames = [];
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__longTasks.push(e.duration))).observe({
      type: 'longtask',
      buffered: true,
    });
    let last = performance.now();
    const frame = (now) => {
      window.__frames.push(now - last);
      last = now;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }, session);
  return ctx;
}

export async function runAlone(scenario, { failOnProblems = true } = {}) {
  const server = await startServer();
  const browser = await launchBrowser();
  const watches = [];
  let ok = false;
  try {
    const figures = await scenario(browser, server.url, server.token, { width: 1440, height: 900 }, watches);
    const problems = watches.flatMap((w) => w.problems);
    if (failOnProblems) check(problems.length === 0, `no console errors or failed requests:\n  ${problems.join('\n  ')}`);
    log('figures', JSON.stringify(figures));
    ok = true;
    log('PASS');
  } finally {
    await browser.close().catch(() => {});
    await server.stop({ keep: !ok });
    if (!ok) log(`kept ${server.dataDir}`);
  }
}
