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
