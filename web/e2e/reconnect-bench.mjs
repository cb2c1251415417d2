// Reconnect bench (issue 12: "a learner's reconnect resumes it, goal <= 300 ms from click to
// live terminal"). Against a real `clarateach up` with real bubblewrap seats, a learner rejoins
// from a fresh browser context with the reconnect code, N times to a running seat and N times to
// a seat the idle policy paused, and the page itself times, with the Performance API, the click
// on "Rejoin my seat" -> the first echoed byte of a key typed the moment the scrollback replay
// is on screen ("live terminal"), broken down by step. Beside it, in the same run, the physical
// floor: the same attach + replay + keystroke echo straight to the seat daemon's Unix socket
// (no browser, no control plane, no agent), and a keystroke's echo round trip on an open socket,
// through the gateway (in the page) and to the daemon alone.
//
// Run (root, for the sandboxes; after `npm run build:e2e`):
//   CLARATEACH_BIN=$PWD/../target/release/clarateach npm run bench:reconnect
// Env: RECONNECT_N (default 20), CLARATEACH_BIN (default target/debug/clarateach).
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { check, launchBrowser, log, startServer, startWorkshop, termText, waitFor } from './harness.mjs';

const N = Number(process.env.RECONNECT_N ?? 20);
const GOAL_MS = 300;
const TERM = 'Terminal main';
/** The key typed: in no prompt (`learner@seat-NN:/workspace$`) and no scrollback line of ours. */
const KEY = 'Q';

/**
 * Runs in every rejoin page before its scripts: times the click, every WebSocket (created,
 * open, first frame), types KEY through xterm's input path the moment the terminal's scrollback
 * replay is on screen, and times its echo; then one more key on the open socket (the gateway
 * round trip) and Ctrl-U to leave the prompt clean.
 */
function pageProbe([term, key, renderer]) {
  if (renderer) localStorage.setItem('clarateach.test.renderer', renderer);
  const B = (window.__bench = { click: null, ws: [], replayed: null, keyAt: null, echo: null, key2At: null, echo2: null });
  const code = key.charCodeAt(0);
  B.longTasks = [];
  new PerformanceObserver((l) => l.getEntries().forEach((e) => B.longTasks.push({ start: e.startTime, ms: e.duration }))).observe({ type: 'longtask', buffered: true });
  document.addEventListener(
    'click',
    (e) => {
      if (B.click === null && e.target instanceof Element && e.target.closest('button[type=submit]')) B.click = performance.now();
    },
    true,
  );
  const has = (data) => (typeof data === 'string' ? data.includes(key) : new Uint8Array(data).includes(code));
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const rec = { path: new URL(url, location.href).pathname, created: performance.now(), open: null, first: null };
      B.ws.push(rec);
      if (rec.path === '/api/session/terminal') {
        const send = this.send.bind(this);
        this.send = (d) => {
          if (typeof d === 'string' && d.includes('"resize"')) (B.resizes ??= []).push([performance.now(), d]);
          send(d);
        };
      }
      this.addEventListener('open', () => (rec.open = performance.now()));
      this.addEventListener('message', (ev) => {
        const t = performance.now();
        rec.first ??= t;
        if (rec.path !== '/api/session/terminal') return;
        if (B.keyAt !== null && B.echo === null && has(ev.data)) {
          B.echo = t;
          B.key2At = performance.now();
          window.__claraTerminalInputs.get(term)(key);
        } else if (B.key2At !== null && B.echo2 === null && has(ev.data)) {
          B.echo2 = t;
          window.__claraTerminalInputs.get(term)('\x15');
        }
      });
    }
  };
  window.addEventListener('clara:terminal-replayed', (e) => {
    if (e.detail !== term || B.keyAt !== null) return;
    B.replayed = performance.now();
    B.keyAt = performance.now();
    window.__claraTerminalInputs.get(term)(key);
  });
}

/** Rejoins seat `odehash` of `workshopCode` in a fresh context; the page's timings.
 *  `onPage(page)` runs before the click (a profiler, say). */
export async function rejoin(browser, url, viewport, workshopCode, odehash, onPage = async () => {}) {
  const ctx = await browser.newContext({ viewport });
  try {
    await ctx.addInitScript(pageProbe, [TERM, KEY, process.env.RECONNECT_RENDERER ?? '']);
    const page = await ctx.newPage();
    await page.goto(url);
    await page.getByRole('tab', { name: 'Rejoin a seat' }).click();
    await page.getByLabel('Workshop code').fill(workshopCode);
    await page.getByRole('textbox', { name: 'Reconnect code' }).fill(odehash);
    await onPage(page);
    await page.getByRole('button', { name: 'Rejoin my seat' }).click();
    await page.waitForFunction(() => window.__bench.echo2 !== null, null, { timeout: 30000, polling: 25 });
    const b = await page.evaluate(() => ({
      ...window.__bench,
      marks: performance.getEntriesByType('mark').map((m) => ({ name: m.name, at: m.startTime })),
      resources: performance.getEntriesByType('resource').map((r) => ({
        path: new URL(r.name).pathname,
        start: r.startTime,
        end: r.responseEnd,
      })),
    }));
    return { page, ctx, b };
  } catch (e) {
    await ctx.close();
    throw e;
  }
}

/** The steps of one rejoin, ms; each from the end of the one before, so they add up. */
function steps(b) {
  const term = b.ws.find((w) => w.path === '/api/session/terminal');
  const joinReq = b.resources.find((r) => r.path === '/api/join' && r.start >= b.click);
  check(term && joinReq && term.open !== null && term.first !== null, `a rejoin without its join or terminal: ${JSON.stringify(b)}`);
  // The ticket the terminal socket used: the last one answered before the socket was made.
  const ticket = b.resources
    .filter((r) => r.path === '/api/session/ticket' && r.end <= term.created + 0.5)
    .sort((x, y) => y.end - x.end)[0];
  const s = {
    'click -> join sent': joinReq.start - b.click,
    'POST /api/join': joinReq.end - joinReq.start,
    'join answered -> ticket asked (render IDE, xterm)': (ticket?.start ?? joinReq.end) - joinReq.end,
    'POST /api/session/ticket': ticket ? ticket.end - ticket.start : 0,
    'ticket -> socket made': term.created - (ticket?.end ?? joinReq.end),
    'socket made -> open event (upgrade, thaw; waits for a busy main thread)': term.open - term.created,
    'open -> first frame (attached)': term.first - term.open,
    'attached -> replay on screen': b.replayed - term.first,
    'key typed -> echo': b.echo - b.keyAt,
  };
  return { steps: s, total: b.echo - b.click, rtt: b.echo2 - b.key2At };
}

/** One rejoin's timeline relative to the click (RECONNECT_TRACE=1): requests, sockets, marks,
 *  long tasks; for finding where the time goes. */
function trace(b) {
  const at = (t) => (t === null ? '-' : (t - b.click).toFixed(1));
  const rows = [
    ...b.resources.filter((r) => r.end >= b.click).map((r) => [r.start, `fetch ${r.path} ${at(r.start)} -> ${at(r.end)}`]),
    ...b.ws.map((w) => [w.created, `ws ${w.path} made ${at(w.created)} open ${at(w.open)} first ${at(w.first)}`]),
    ...b.marks.map((m) => [m.at, `mark ${m.name} ${at(m.at)}`]),
    ...b.longTasks.filter((l) => l.start + l.ms >= b.click).map((l) => [l.start, `long task ${at(l.start)} for ${l.ms.toFixed(0)} ms`]),
    [b.replayed, `replayed ${at(b.replayed)}; echo ${at(b.echo)}`],
    ...(b.resizes ?? []).map(([t, d]) => [t, `resize sent ${at(t)} ${d}`]),
  ].sort((x, y) => x[0] - y[0]);
  console.log(rows.map((r) => `  ${r[1]}`).join('\n'));
}

/** Nearest-rank percentile. */
function pct(xs, p) {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}
const ms = (x) => `${x.toFixed(1)} ms`;

// A WebSocket client over the seat daemon's Unix socket (RFC 6455, just what the bench needs:
// masked text frames out, unmasked frames in), so the floor has no browser and no gateway.
async function daemonSocket(socketPath, path, token) {
  const sock = connect(socketPath);
  await new Promise((res, rej) => sock.once('connect', res).once('error', rej));
  sock.setNoDelay(true);
  const key = randomBytes(16).toString('base64');
  sock.write(
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  let upgraded = false;
  let onFrame = () => {};
  const frames = [];
  let failed = null;
  sock.on('error', (e) => (failed = e));
  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) {
        failed = new Error(`daemon refused the upgrade: ${head.split('\r\n')[0]}`);
        return;
      }
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + len) return;
      const payload = buf.subarray(off, off + len);
      buf = buf.subarray(off + len);
      if (op === 1 || op === 2 || op === 0) {
        const f = { text: op === 1, data: Buffer.from(payload), at: performance.now() };
        frames.push(f);
        onFrame(f);
      }
    }
  });
  const send = (text) => {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0xfe, payload.length >> 8, payload.length & 0xff]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
    sock.write(Buffer.concat([head, mask, masked]));
  };
  /** Resolves with the first frame (from now, or already received after `since`) `pred` accepts. */
  const next = (pred, since = -1, timeout = 10000) =>
    new Promise((res, rej) => {
      const seen = frames.find((f) => f.at > since && pred(f));
      if (seen) return res(seen);
      const t = setTimeout(() => rej(failed ?? new Error('daemon socket: timed out')), timeout);
      onFrame = (f) => {
        if (pred(f)) {
          clearTimeout(t);
          onFrame = () => {};
          res(f);
        }
      };
    });
  return { send, next, close: () => sock.destroy() };
}

/** The seat daemon's socket and token (the sandbox record the agent keeps, root only). */
function daemonOf(dataDir, workshopId, seat) {
  const rec = JSON.parse(readFileSync(join(dataDir, 'sandboxes', workshopId, `seat-${String(seat).padStart(2, '0')}.json`), 'utf8'));
  return { socket: rec.socket, token: rec.daemon_token };
}

const isKey = (f) => !f.text && f.data.includes(KEY.charCodeAt(0));

/** The floor of a reconnect: connect + attach + replay + one key's echo, straight to the daemon;
 *  then one more key's round trip on the open socket. */
async function daemonReconnect(d) {
  const t0 = performance.now();
  const ws = await daemonSocket(d.socket, '/terminal?session=main&mode=interactive', d.token);
  const attached = await ws.next((f) => f.text && f.data.toString().includes('"attached"'));
  let left = JSON.parse(attached.data.toString()).replay_bytes ?? 0;
  let last = attached;
  while (left > 0) {
    last = await ws.next((f) => !f.text && f.at > last.at);
    left -= last.data.length;
  }
  const keyAt = performance.now();
  ws.send(JSON.stringify({ type: 'input', data: KEY }));
  const echo = await ws.next(isKey, keyAt);
  const key2At = performance.now();
  ws.send(JSON.stringify({ type: 'input', data: KEY }));
  const echo2 = await ws.next(isKey, key2At);
  ws.send(JSON.stringify({ type: 'input', data: '\x15' }));
  await new Promise((r) => setTimeout(r, 20));
  ws.close();
  return { total: echo.at - t0, replay: keyAt - t0, rtt: echo2.at - key2At };
}

/** The server's own timing of each thaw a learner's return asked for (its log lines; the
 *  requests that waited for a thaw already under way, `asked=false`, are left out). */
function serverResumes(logPath) {
  const text = readFileSync(logPath, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
  return text
    .split('\n')
    .filter((l) => l.includes('idle seat resumed by its learner') && !l.includes('asked=false'))
    .map((l) => Number(/ms=([\d.]+)/.exec(l)?.[1] ?? NaN))
    .filter((x) => Number.isFinite(x));
}

function report(name, runs) {
  const totals = runs.map((r) => r.total);
  const keys = Object.keys(runs[0].steps);
  console.log(`\n${name}: click -> live terminal (first echoed byte of a key typed after the replay), n=${runs.length}`);
  console.log(`  p50 ${ms(pct(totals, 50))}  p99 ${ms(pct(totals, 99))}  min ${ms(Math.min(...totals))}  (goal <= ${GOAL_MS} ms: ${pct(totals, 50) <= GOAL_MS && pct(totals, 99) <= GOAL_MS ? 'met' : 'NOT met'})`);
  console.log('  | step | p50 ms | p99 ms |');
  console.log('  |---|---|---|');
  for (const k of keys) {
    const v = runs.map((r) => r.steps[k]);
    console.log(`  | ${k} | ${pct(v, 50).toFixed(1)} | ${pct(v, 99).toFixed(1)} |`);
  }
  return { p50: pct(totals, 50), p99: pct(totals, 99) };
}

async function main() {
  check(process.getuid?.() === 0, 'the bench needs root (real bubblewrap seats)');
  const server = await startServer();
  const browser = await launchBrowser();
  const viewport = { width: 1440, height: 900 };
  let ok = false;
  const load = [loadavg()[0]];
  try {
    const { workshop, headers } = await startWorkshop(server.url, server.token, { name: 'Reconnect bench', seats: N });
    const seats = [];
    for (let i = 0; i < N; i++) {
      const r = await fetch(`${server.url}/api/join`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: workshop.code, name: `L${i}` }) });
      check(r.ok, `join ${i}: ${r.status}`);
      seats.push(await r.json());
    }
    log(`${N} learners joined; warming up (a shell and ~15 KB of scrollback per seat)`);
    for (const s of seats) {
      const { ctx, page } = await rejoin(browser, server.url, viewport, workshop.code, s.odehash);
      await page.evaluate((t) => window.__claraTerminalInputs.get(t)('seq 1 3000; echo warm-up-$((1+1))\r'), TERM);
      await waitFor('warm-up output', async () => /^warm-up-2$/m.test(await termText(page)), { timeout: 20000, interval: 50 });
      await ctx.close();
    }

    log(`running seats: ${N} rejoins, each with a daemon-direct floor sample on the same seat`);
    const running = [];
    const floor = [];
    for (const s of seats) {
      const { ctx, b } = await rejoin(browser, server.url, viewport, workshop.code, s.odehash);
      await ctx.close();
      running.push(steps(b));
      if (process.env.RECONNECT_TRACE) trace(b);
      floor.push(await daemonReconnect(daemonOf(server.dataDir, workshop.id, s.seat)));
    }
    load.push(loadavg()[0]);

    if (process.env.RECONNECT_PAUSED === '0') {
      report('Running seat', running);
      ok = true;
      return;
    }
    const policy = await fetch(`${server.url}/api/workshops/${workshop.id}/idle-policy`, { method: 'PUT', headers, body: JSON.stringify({ pause_after_minutes: 1 }) });
    check(policy.ok, `idle policy: ${policy.status}`);
    log('waiting for the idle policy (1 min) to pause every seat');
    await waitFor('every seat paused by the idle policy', async () => {
      const r = await (await fetch(`${server.url}/api/workshops/${workshop.id}/seats`, { headers })).json();
      return r.seats.filter((x) => x.state === 'paused').length === N;
    }, { timeout: 240000, interval: 500 });
    log(`idle-paused seats: ${N} rejoins`);
    const paused = [];
    for (const s of seats) {
      const st = (await (await fetch(`${server.url}/api/workshops/${workshop.id}/seats`, { headers })).json()).seats.find((x) => x.seat === s.seat);
      check(st?.state === 'paused', `seat ${s.seat} is paused before its rejoin (${st?.state})`);
      const { ctx, b } = await rejoin(browser, server.url, viewport, workshop.code, s.odehash);
      await ctx.close();
      paused.push(steps(b));
      if (process.env.RECONNECT_TRACE) trace(b);
    }
    load.push(loadavg()[0]);
    const resumes = serverResumes(server.logPath);

    console.log(`\nReconnect bench, ${new Date().toISOString()}, ${process.env.CLARATEACH_BIN ?? 'target/debug/clarateach'}, load average ${load.map((l) => l.toFixed(1)).join(' / ')} (start / after running / after paused)`);
    const r = report('Running seat', running);
    const p = report('Idle-paused seat', paused);
    const fTotal = floor.map((f) => f.total);
    const fRtt = floor.map((f) => f.rtt);
    const gRtt = [...running, ...paused].map((x) => x.rtt);
    console.log(`\nFloor, same run: attach + replay + key echo straight to the daemon's socket p50 ${ms(pct(fTotal, 50))} p99 ${ms(pct(fTotal, 99))} (n=${floor.length})`);
    console.log(`  keystroke round trip on an open socket: daemon alone p50 ${ms(pct(fRtt, 50))} p99 ${ms(pct(fRtt, 99))}; through the gateway, in the page p50 ${ms(pct(gRtt, 50))} p99 ${ms(pct(gRtt, 99))}`);
    if (resumes.length) console.log(`  server: thaw started by the join -> seat ready (pause::admit) p50 ${ms(pct(resumes, 50))} p99 ${ms(pct(resumes, 99))} (n=${resumes.length})`);
    console.log(`\nRESULT running p50=${r.p50.toFixed(1)} p99=${r.p99.toFixed(1)} paused p50=${p.p50.toFixed(1)} p99=${p.p99.toFixed(1)} floor p50=${pct(fTotal, 50).toFixed(1)} goal<=${GOAL_MS}`);
    await fetch(`${server.url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
    ok = true;
  } finally {
    await browser.close().catch(() => {});
    await server.stop({ keep: !ok });
    if (!ok) log(`kept ${server.dataDir}`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
