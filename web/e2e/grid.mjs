// Figure: the instructor seat grid with 50 seats staying live. Starts a 50-seat workshop, opens
// its grid, then for 20 s (ten 2 s polls) has a learner join through the API every second while
// Chromium records long tasks (> 50 ms main-thread blocks) and frame intervals. Stops it after.
import { PageWatch, SHOTS, log, measuredInstructorContext, waitFor } from './harness.mjs';

const SEATS = Number(process.env.E2E_GRID_SEATS ?? 50);
const START = (process.env.E2E_GRID_START ?? '1') !== '0';

export async function measureGrid(browser, url, token, viewport, watches) {
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const created = await fetch(`${url}/api/workshops`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ name: `Grid ${SEATS}`, seats: SEATS }),
  });
  if (created.status !== 201) throw new Error(`create grid workshop: ${created.status} ${await created.text()}`);
  const { workshop } = await created.json();
  if (START) {
    const s = await fetch(`${url}/api/workshops/${workshop.id}/start`, { method: 'POST', headers });
    if (!s.ok) throw new Error(`start grid workshop: ${s.status}`);
  }
  // The UI keeps only a short-lived session, in sessionStorage.
  const sess = await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers });
  if (sess.status !== 201) throw new Error(`instructor session: ${sess.status}`);
  const session = await sess.json();
  const ctx = await measuredInstructorContext(browser, viewport, session);
  const page = await ctx.newPage();
  watches.push(new PageWatch('instructor-grid', page));
  await page.goto(`${url}/instructor/workshops/${workshop.id}`);
  await waitFor(`${SEATS} seat cards`, async () => (await page.locator('.seat').count()) === SEATS, { timeout: 20000 });
  // Steady state: reset the counters, then watch 20 s of live polling.
  await page.evaluate(() => {
    window.__longTasks = [];
    window.__frames = [];
  });
  const states = new Set();
  const end = Date.now() + 20000;
  let joins = 0;
  while (Date.now() < end) {
    if (START) {
      const j = await fetch(`${url}/api/join`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ code: workshop.code, name: `Learner ${joins + 1}` }),
      });
      if (j.ok) joins++;
    }
    const s = await page.locator('.seat').evaluateAll((els) => els.map((e) => e.textContent).join('|'));
    states.add(s);
    await new Promise((r) => setTimeout(r, 1000));
  }
  await waitFor('the last join on the grid', async () =>
    (await page.locator('.seat', { hasText: `Learner ${joins}` }).count()) > 0 || joins === 0,
  );
  const { longTasks, frames } = await page.evaluate(() => ({ longTasks: window.__longTasks, frames: window.__frames }));
  const sorted = [...frames].sort((a, b) => a - b);
  const p = (q) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 10) / 10;
  const ready = await page.locator('.seat[data-state="ready"]').count();
  const result = {
    seats: SEATS,
    started: START,
    window_s: 20,
    learners_joined_during_window: joins,
    grid_updates_seen: states.size,
    seats_ready_at_end: ready,
    long_tasks: longTasks.length,
    long_task_max_ms: Math.round(Math.max(0, ...longTasks)),
    total_blocking_ms: Math.round(longTasks.reduce((s, d) => s + Math.max(0, d - 50), 0)),
    frames: frames.length,
    frame_p50_ms: p(0.5),
    frame_p99_ms: p(0.99),
    frames_over_50ms: frames.filter((f) => f > 50).length,
  };
  await page.screenshot({ path: `${SHOTS}/instructor-grid-50.png` });
  await ctx.close();
  if (START) {
    await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  }
  log(`grid: ${JSON.stringify(result)}`);
  return result;
}
