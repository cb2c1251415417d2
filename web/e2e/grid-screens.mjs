// Figure (issue 10): the instructor grid with 50 live screens updating every second. A real
// `clarateach up` (CLARATEACH_BIN) with a 50-seat workshop started; 50 learners join through the
// API and each opens its `main` terminal over the real WebSocket from node (not 50 pages) and
// types `while :; do date +%T.%N; sleep 1; done`, so every seat's screen changes every second.
// Then the instructor's grid page is watched for 20 s: long tasks (PerformanceObserver
// 'longtask'), requestAnimationFrame intervals (p50/p99), the screens WebSocket's frames and bytes
// per seat per second, and the control plane's CPU over the window (utime+stime of the `up`
// process from /proc/PID/stat: it also runs the agent, and the sandboxes' shells are separate
// processes). Prints one JSON line of figures with their goals.
//
// Not part of `npm run e2e` (50 real seats take minutes to start on a loaded machine):
//   cd web && npm run build:e2e && CLARATEACH_BIN=../target/release/clarateach npm run bench:grid-screens
// Needs root (sandboxes) and Node's WebSocket (`--experimental-websocket` on Node 20, in the
// script). E2E_GRID_SEATS=N changes the seat count.
import { readFileSync, readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { PageWatch, check, log, measuredInstructorContext, runAlone, startWorkshop, waitFor } from './harness.mjs';

const SEATS = Number(process.env.E2E_GRID_SEATS ?? 50);
const WINDOW_S = 20;
const LOOP = 'while :; do date +%T.%N; sleep 1; done';

/** utime + stime of `pid` in clock ticks (USER_HZ, 100 on Linux). */
function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** The pid of the `clarateach up` listening at `url` (from the processes' command lines). */
function serverPid(url) {
  const listen = new URL(url).host;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (args[1] === 'up' && args.includes(listen)) return Number(d);
    } catch {}
  }
  return null;
}

/** One learner: joins, opens the `main` terminal over a ticketed WebSocket, starts the loop. */
async function learnerLoop(url, code, i) {
  const j = await fetch(`${url}/api/join`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code, name: `Learner ${i + 1}` }),
  });
  check(j.ok, `join ${i + 1}: ${j.status}`);
  const { token, seat } = await j.json();
  const t = await fetch(`${url}/api/session/ticket`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({}),
  });
  check(t.ok, `ticket ${i + 1}: ${t.status} ${await t.clone().text()}`);
  const { ticket } = await t.json();
  const wsUrl = new URL('/api/session/terminal', url);
  wsUrl.protocol = 'ws:';
  wsUrl.searchParams.set('ticket', ticket);
  wsUrl.searchParams.set('session', 'main');
  wsUrl.searchParams.set('format', 'json');
  const ws = new WebSocket(wsUrl);
  let output = '';
  ws.onmessage = (e) => {
    // Keep only the tail: enough to see the loop running.
    if (typeof e.data === 'string') output = (output + e.data).slice(-4096);
  };
  await new Promise((res, rej) => {
    ws.onopen = res;
    ws.onerror = () => rej(new Error(`terminal ${i + 1} did not open`));
  });
  ws.send(JSON.stringify({ type: 'input', data: `${LOOP}\r` }));
  return { seat, ws, output: () => output };
}

export async function measureGridScreens(browser, url, token, viewport, watches) {
  const started = Date.now();
  const { workshop, headers } = await startWorkshop(url, token, { name: `Screens ${SEATS}`, seats: SEATS });
  await waitFor(
    `${SEATS} seats ready`,
    async () => {
      const w = await (await fetch(`${url}/api/workshops/${workshop.id}`, { headers })).json();
      return (w.workshop ?? w).seats_ready === SEATS;
    },
    { timeout: 600000, interval: 1000 },
  );
  const seatsReadyS = Math.round((Date.now() - started) / 1000);
  log(`grid-screens: ${SEATS} seats ready after ${seatsReadyS} s`);

  // Joins one after another (the join order gives seat numbers), terminals opened at once.
  const learners = [];
  for (let i = 0; i < SEATS; i++) learners.push(await learnerLoop(url, workshop.code, i));
  await waitFor(
    'every loop printing',
    () => learners.every((l) => /\d\d:\d\d:\d\d\.\d+/.test(l.output())),
    { timeout: 60000, interval: 500 },
  );

  const sess = await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers });
  check(sess.status === 201, `instructor session: ${sess.status}`);
  const session = await sess.json();
  const ctx = await measuredInstructorContext(browser, viewport, session);
  const page = await ctx.newPage();
  watches.push(new PageWatch('grid-screens', page));
  const screenFrames = [];
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/screens')) return;
    ws.on('framereceived', (f) => {
      let seat = null;
      try {
        seat = JSON.parse(f.payload).seat ?? null;
      } catch {}
      screenFrames.push({ at: Date.now(), bytes: Buffer.byteLength(f.payload), seat });
    });
  });
  await page.goto(`${url}/instructor/workshops/${workshop.id}`);
  await waitFor(`${SEATS} seat cards`, async () => (await page.locator('.seat').count()) === SEATS, { timeout: 30000 });
  await waitFor(
    'a live screen on every card',
    async () => (await page.locator('[data-testid="seat-screen"]').count()) === SEATS,
    { timeout: 30000, interval: 500 },
  );
  // Steady state: a few seconds in, reset the counters and watch the window.
  await new Promise((r) => setTimeout(r, 3000));
  await page.evaluate(() => {
    window.__longTasks = [];
    window.__frames = [];
  });
  const pid = serverPid(url);
  check(pid !== null, 'the server process is found');
  const cpu0 = pid ? cpuTicks(pid) : null;
  const from = Date.now();
  const sample0 = await page.locator('[data-testid="seat-screen"]').first().textContent();
  await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
  const sample1 = await page.locator('[data-testid="seat-screen"]').first().textContent();
  const elapsedS = (Date.now() - from) / 1000;
  const cpu1 = pid ? cpuTicks(pid) : null;
  const { longTasks, frames } = await page.evaluate(() => ({ longTasks: window.__longTasks, frames: window.__frames }));
  const inWindow = screenFrames.filter((f) => f.at >= from);
  const sorted = [...frames].sort((a, b) => a - b);
  const p = (q) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 10) / 10;
  const seatsSeen = new Set(inWindow.map((f) => f.seat).filter((s) => s !== null));
  const bytes = inWindow.reduce((n, f) => n + f.bytes, 0);
  const result = {
    seats: SEATS,
    seats_ready_s: seatsReadyS,
    window_s: Math.round(elapsedS * 10) / 10,
    card_changed_during_window: sample0 !== sample1,
    screen_frames: inWindow.length,
    seats_with_frames: seatsSeen.size,
    frames_per_seat_per_s: Math.round((inWindow.length / SEATS / elapsedS) * 100) / 100,
    bytes_per_seat_per_s: Math.round(bytes / SEATS / elapsedS),
    frame_bytes_max: Math.max(0, ...inWindow.map((f) => f.bytes)),
    long_tasks: longTasks.length,
    long_task_max_ms: Math.round(Math.max(0, ...longTasks)),
    goal_long_task_max_ms: 50,
    total_blocking_ms: Math.round(longTasks.reduce((s, d) => s + Math.max(0, d - 50), 0)),
    frames: frames.length,
    frame_p50_ms: p(0.5),
    frame_p99_ms: p(0.99),
    goal_frame_p99_ms: 17,
    control_plane_cpu_pct: pid ? Math.round(((cpu1 - cpu0) / 100 / elapsedS) * 1000) / 10 : null,
    load_avg_1m: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
  };
  log(`grid-screens: ${JSON.stringify(result)}`);
  check(result.card_changed_during_window, 'the first card changed during the window');
  check(result.seats_with_frames === SEATS, `frames from every seat (${result.seats_with_frames}/${SEATS})`);
  for (const l of learners) l.ws.close();
  await ctx.close();
  for (const w of watches) w.expectErrors = true; // stopping ends the sessions
  await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  console.log(`FIGURE grid-screens ${JSON.stringify(result)}`);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runAlone(measureGridScreens);
}
