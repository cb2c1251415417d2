// Previews and reconnect-resume (issue 12) end to end against a real `clarateach up` with real
// seats. Previews: the learner starts `python3 -m http.server 8000` and a WebSocket echo server
// (standard library only) in their terminal; "Open preview :8000" appears in the IDE, opens the
// app on its own origin (p8000-{handle}.localhost:{port}) and shows the page; a WebSocket round
// trip works from that page; the preview page cannot read the main origin's storage nor its API;
// another learner's browser and an anonymous one are refused until the learner makes the port
// public. Reconnect-resume: the idle policy pauses the seat after its learner left; the learner
// comes back with the reconnect code and the time from the click to a live terminal (the seat
// thawed, the socket open, the scrollback on screen) is measured (goal <= 300 ms).
//
// Run alone: CLARATEACH_BIN=/path/to/clarateach node e2e/preview.mjs (root, for the sandboxes);
// run.mjs runs it too after its own scenario.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PageWatch, check, joinAsLearner, log, runAlone, startWorkshop, termText, typeInTerminal, waitFor } from './harness.mjs';

const ECHO = readFileSync(join(import.meta.dirname, '../../crates/clarateach/tests/preview_echo.py'), 'utf8');



/** Rejoins with the reconnect code; ms from the click to the scrollback marker on screen. */
async function rejoin(browser, url, viewport, watches, workshopCode, reconnect) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  watches.push(new PageWatch('preview-rejoin', page));
  await page.goto(url);
  await page.getByRole('tab', { name: 'Rejoin a seat' }).click();
  await page.getByLabel('Workshop code').fill(workshopCode);
  await page.getByRole('textbox', { name: 'Reconnect code' }).fill(reconnect);
  const clicked = Date.now();
  await page.getByRole('button', { name: 'Rejoin my seat' }).click();
  await waitFor('live terminal after rejoin', async () => /^before-break-21$/m.test(await termText(page)), { timeout: 20000, interval: 10 });
  const ms = Date.now() - clicked;
  await page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor();
  return { ctx, page, ms };
}

export async function runPreview(browser, url, token, viewport, watches) {
  const { workshop, headers } = await startWorkshop(url, token, { name: 'Preview', seats: 2 });
  const figures = {};

  const a = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Ada', 'preview');
  const b = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Bob', 'preview');
  const put = await fetch(`${url}/api/session/files/echo.py`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${a.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: ECHO }),
  });
  check(put.ok, `echo.py written: ${put.status}`);
  await fetch(`${url}/api/session/files/index.html`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${a.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: '<!doctype html><title>seat app</title><h1 id="hello">hello from the seat</h1>' }),
  });
  // Main-origin storage the preview must not see.
  await a.page.evaluate(() => localStorage.setItem('main-origin-secret', 'do-not-leak'));
  await typeInTerminal(a.page, 'Terminal main', 'python3 -m http.server 8000 >/dev/null 2>&1 & python3 echo.py 9000 & echo servers-up');
  const started = Date.now();
  await a.page.getByTestId('open-preview-8000').waitFor({ timeout: 15000 });
  figures.listen_to_open_preview_button_ms = Date.now() - started;

  // Open preview: a new tab on the preview origin, signed in by the one-time ticket.
  const [tab] = await Promise.all([a.ctx.waitForEvent('page'), a.page.getByTestId('open-preview-8000').click()]);
  await tab.waitForURL(/^http:\/\/p8000-[a-z0-9]+s\d+\.localhost:\d+\/$/, { timeout: 15000 });
  const previewUrl = tab.url();
  const previewOrigin = new URL(previewUrl).origin;
  check(previewOrigin !== new URL(url).origin, 'the preview has its own origin');
  await tab.goto(`${previewOrigin}/index.html`);
  await tab.locator('#hello').filter({ hasText: 'hello from the seat' }).waitFor({ timeout: 10000 });
  check((await tab.evaluate(() => window.opener)) === null, 'the preview tab has no handle on the IDE');
  const leaked = await tab.evaluate(() => [localStorage.getItem('main-origin-secret'), localStorage.getItem('clarateach.learner'), document.cookie]);
  check(leaked[0] === null && leaked[1] === null, `the preview cannot read the main origin's storage: ${leaked}`);
  check(!leaked[2].includes('clarateach_preview'), 'the preview session cookie is HttpOnly');
  const apiRead = await tab.evaluate(async (main) => {
    try {
      const r = await fetch(`${main}/api/me`, { credentials: 'include' });
      return `read ${r.status}`;
    } catch (e) {
      return 'blocked';
    }
  }, url);
  check(apiRead === 'blocked', `the preview page cannot read the main origin's API: ${apiRead}`);
  log(`preview: ${previewUrl} shows the seat's page; no main-origin storage, cookie or API`);

  // WebSocket round trip from a page on the echo server's preview origin.
  const [wsTab] = await Promise.all([a.ctx.waitForEvent('page'), a.page.getByTestId('open-preview-9000').click()]);
  await wsTab.waitForURL(/^http:\/\/p9000-/, { timeout: 15000 });
  const echoed = await wsTab.evaluate(() => new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://${location.host}/hot-reload`);
    ws.onopen = () => ws.send('hmr-ping');
    ws.onmessage = (e) => { resolve({ data: e.data, ms: performance.now() - t0 }); ws.close(); };
    ws.onerror = () => reject(new Error('websocket failed'));
    setTimeout(() => reject(new Error('websocket timeout')), 5000);
  }));
  check(echoed.data === 'hmr-ping', `websocket echo through the preview: ${JSON.stringify(echoed)}`);
  figures.preview_ws_open_and_round_trip_ms = Math.round(echoed.ms * 10) / 10;
  log(`preview: websocket open + round trip ${figures.preview_ws_open_and_round_trip_ms} ms`);

  // Another learner's browser and an anonymous one: refused; public: anyone.
  const bTab = await b.ctx.newPage();
  const refused = await bTab.goto(previewUrl);
  check(refused.status() === 401, `another learner's browser gets ${refused.status()}`);
  const actx = await browser.newContext({ viewport });
  const anon = await actx.newPage();
  check((await anon.goto(previewUrl)).status() === 401, 'an anonymous browser is refused');
  for (const w of watches) w.expectErrors = true; // the 401s above are deliberate
  // The switch follows the server's answer (a controlled input), so click and wait for it.
  await a.page.getByTestId('public-preview-8000').click();
  await waitFor('switch on', () => a.page.getByTestId('public-preview-8000').isChecked());
  await waitFor('port public', async () => (await anon.goto(`${previewOrigin}/index.html`)).status() === 200, { timeout: 5000 });
  await anon.locator('#hello').waitFor();
  await a.page.getByTestId('public-preview-8000').click();
  await waitFor('switch off', async () => !(await a.page.getByTestId('public-preview-8000').isChecked()));
  await waitFor('port private again', async () => (await anon.goto(previewUrl)).status() === 401, { timeout: 5000 });
  log('preview: other learner and anonymous refused; public toggle opens and closes it');

  // The instructor opens the learner's preview from the grid's seat panel.
  const sess = await (await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers })).json();
  const ictx = await browser.newContext({ viewport });
  await ictx.addInitScript((s) => sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s)), sess);
  const ipage = await ictx.newPage();
  await ipage.goto(`${url}/instructor/workshops/${workshop.id}`);
  await ipage.locator('.seat', { hasText: 'Ada' }).click();
  const [iTab] = await Promise.all([ictx.waitForEvent('page'), (async () => {
    await ipage.getByTestId('shadow-panel').getByTestId('open-preview-8000').click({ timeout: 15000 });
  })()]);
  await iTab.waitForURL(/^http:\/\/p8000-[a-z0-9]+s\d+\.localhost:\d+\/$/, { timeout: 15000 });
  await iTab.locator('#hello').filter({ hasText: 'hello from the seat' }).waitFor({ timeout: 10000 }); // index.html at /
  log('preview: the instructor opened the learner\'s preview from the grid');
  await Promise.all([ictx.close(), actx.close(), b.ctx.close()]);

  // Reconnect resumes an idle-paused seat.
  const code = await a.page.getByTestId('topbar-reconnect-code').textContent();
  await typeInTerminal(a.page, 'Terminal main', 'echo before-break-$((20+1))');
  await waitFor('marker', async () => /^before-break-21$/m.test(await termText(a.page)));
  await a.ctx.close();
  // Baseline in the same run: the same rejoin while the seat is not paused.
  const base = await rejoin(browser, url, viewport, watches, workshop.code, code.trim());
  figures.reconnect_ready_seat_click_to_live_terminal_ms = base.ms;
  log(`reconnect to a running seat: click -> live terminal ${base.ms} ms`);
  await base.ctx.close();
  const policy = await fetch(`${url}/api/workshops/${workshop.id}/idle-policy`, { method: 'PUT', headers, body: JSON.stringify({ pause_after_minutes: 1 }) });
  check(policy.ok, `idle policy: ${policy.status}`);
  log('reconnect-resume: waiting for the idle policy to pause the seat (1 min)');
  await waitFor('seat paused by the idle policy', async () => {
    const { seats } = await (await fetch(`${url}/api/workshops/${workshop.id}/seats`, { headers })).json();
    return seats.some((s) => s.name === 'Ada' && s.state === 'paused');
  }, { timeout: 150000, interval: 500 });
  const runs = [];
  const { ctx: rctx, page: r, ms } = await rejoin(browser, url, viewport, watches, workshop.code, code.trim());
  runs.push(ms);
  const { seats } = await (await fetch(`${url}/api/workshops/${workshop.id}/seats`, { headers })).json();
  check(seats.some((s) => s.name === 'Ada' && s.state === 'ready'), 'the seat is ready again');
  figures.reconnect_resume_click_to_live_terminal_ms = runs[0];
  log(`reconnect-resume: click -> live terminal (scrollback on screen) ${runs[0]} ms (goal <= 300 ms)`);
  await rctx.close();
  await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runAlone(runPreview, { failOnProblems: false });
}
