// The instructor's toolkit (issue 10) end to end against a real `clarateach up` with real seats:
// learners run commands in their real terminals; the grid shows each seat's live screen and the
// last command's exit status; learner A asks for help with the `help` command in the terminal,
// learner B with the IDE's button; the instructor's queue shows both with the cwd and the last
// failing command, "On my way" makes "… is on the way" show at the learner's, resolve empties it.
// Slices not built yet (broadcast, checks, spotlight, replay) are not exercised here.
//
// Run alone: CLARATEACH_BIN=/path/to/clarateach node e2e/toolkit.mjs (root, for the sandboxes);
// run.mjs runs it too after its own scenario.
import { pathToFileURL } from 'node:url';
import { PageWatch, check, joinAsLearner, log, runAlone, startWorkshop, termText, typeInTerminal, waitFor } from './harness.mjs';




export async function runToolkit(browser, url, token, viewport, watches) {
  const { workshop, headers } = await startWorkshop(url, token, { name: 'Toolkit', seats: 2 });
  const figures = {};

  const a = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Ada', 'toolkit');
  const b = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Bob', 'toolkit');
  await typeInTerminal(a.page, 'Terminal main', 'cd /tmp && ls /does-not-exist');
  await waitFor('ls error', async () => /No such file/.test(await termText(a.page, 'Terminal main')));
  await typeInTerminal(b.page, 'Terminal main', 'echo toolkit-$((6*7))');

  // Instructor: the grid with live screens.
  const sess = await (await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers })).json();
  const ictx = await browser.newContext({ viewport });
  await ictx.addInitScript((s) => sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s)), sess);
  const ipage = await ictx.newPage();
  watches.push(new PageWatch('toolkit-instructor', ipage));
  const screenFrames = [];
  ipage.on('websocket', (ws) => {
    if (!ws.url().includes('/screens')) return;
    ws.on('framereceived', (f) => screenFrames.push({ at: Date.now(), bytes: Buffer.byteLength(f.payload) }));
  });
  const opened = Date.now();
  await ipage.goto(`${url}/instructor/workshops/${workshop.id}`);
  const cardA = ipage.locator('.seat', { hasText: 'Ada' });
  const cardB = ipage.locator('.seat', { hasText: 'Bob' });
  await cardB.locator('[data-testid="seat-screen"]', { hasText: 'toolkit-42' }).waitFor({ timeout: 15000 });
  figures.grid_first_screen_ms = Date.now() - opened;
  await cardA.locator('[data-testid="last-command"]', { hasText: 'exit 2' }).waitFor({ timeout: 10000 });
  check((await cardA.getAttribute('data-failing')) === 'true', 'the failing seat is marked');
  await cardB.locator('[data-testid="last-command"]', { hasText: 'exit 0' }).waitFor({ timeout: 10000 });
  // Live: a new line in B's terminal reaches B's card within ~1 s.
  const typed = Date.now();
  await typeInTerminal(b.page, 'Terminal main', 'echo live-$((7*8))');
  await cardB.locator('[data-testid="seat-screen"]', { hasText: 'live-56' }).waitFor({ timeout: 5000 });
  figures.screen_update_latency_ms = Date.now() - typed;
  // Bandwidth: B's terminal prints a line every 0.2 s for 10 s; A's stays quiet.
  await typeInTerminal(b.page, 'Terminal main', 'for i in $(seq 50); do date +%T.%N; sleep 0.2; done');
  await new Promise((r) => setTimeout(r, 1000));
  const from = Date.now();
  const before = screenFrames.length;
  await new Promise((r) => setTimeout(r, 10000));
  const inWindow = screenFrames.slice(before).filter((f) => f.at >= from);
  figures.busy_seat_frames_per_s = Math.round((inWindow.length / 10) * 10) / 10;
  figures.busy_seat_bytes_per_s = Math.round(inWindow.reduce((n, f) => n + f.bytes, 0) / 10);
  figures.frame_bytes_max = Math.max(0, ...inWindow.map((f) => f.bytes));
  check(figures.busy_seat_frames_per_s <= 1.3, `at most ~1 frame/s for the one busy seat (${figures.busy_seat_frames_per_s})`);
  log(`toolkit: busy seat ${figures.busy_seat_frames_per_s} frames/s, ${figures.busy_seat_bytes_per_s} B/s; quiet seat sends nothing`);
  await ipage.getByTestId('grid-filter').selectOption('failing');
  await waitFor('only the failing seat shown', async () => (await ipage.locator('.seat').count()) === 1);
  check((await ipage.locator('.seat').first().textContent()).includes('Ada'), 'failing filter keeps Ada');
  await ipage.getByTestId('grid-filter').selectOption('all');
  log(`toolkit: live screens on the grid (first ${figures.grid_first_screen_ms} ms, update ${figures.screen_update_latency_ms} ms), failing seat marked`);

  // Help from the terminal command (Ada) and from the IDE button (Bob).
  await typeInTerminal(a.page, 'Terminal main', 'help my ls fails');
  await a.page.getByTestId('help-status').filter({ hasText: '#1 in the queue' }).waitFor({ timeout: 10000 });
  await b.page.getByTestId('ask-help').click();
  await b.page.getByTestId('help-message').fill('where is the exercise?');
  await b.page.getByRole('button', { name: 'Ask for help' }).last().click();
  await b.page.getByTestId('help-status').filter({ hasText: '#2 in the queue' }).waitFor({ timeout: 10000 });
  const items = ipage.getByTestId('help-item');
  await waitFor('two help requests', async () => (await items.count()) === 2, { timeout: 10000 });
  const first = items.first();
  check((await first.textContent()).includes('Ada'), 'longest waiting first');
  await first.getByTestId('help-cwd').filter({ hasText: '/tmp' }).waitFor();
  await first.getByTestId('help-failing').filter({ hasText: 'ls /does-not-exist' }).waitFor();
  check((await items.nth(1).textContent()).includes('where is the exercise?'), 'the message shows');
  // Reload: the queue is in the store.
  await ipage.reload();
  await waitFor('queue after reload', async () => (await ipage.getByTestId('help-item').count()) === 2, { timeout: 10000 });
  // Keyboard: c claims the first.
  await ipage.locator('body').click({ position: { x: 5, y: 5 } });
  await ipage.keyboard.press('c');
  await a.page.getByTestId('help-status').filter({ hasText: 'on the way' }).waitFor({ timeout: 10000 });
  await b.page.getByTestId('help-status').filter({ hasText: '#1 in the queue' }).waitFor({ timeout: 10000 });
  // Clicking a request opens that seat's terminal.
  await ipage.getByTestId('help-item').first().locator('.help-open').click();
  await ipage.getByTestId('shadow-panel').filter({ hasText: 'Seat' }).waitFor();
  await ipage.keyboard.press('Escape');
  await ipage.getByTestId('help-item').first().getByRole('button', { name: 'Resolved' }).click();
  await waitFor('one request left', async () => (await ipage.getByTestId('help-item').count()) === 1, { timeout: 10000 });
  await a.page.getByTestId('ask-help').waitFor({ timeout: 35000 });
  log('toolkit: help from the terminal and the button, queue with cwd and failing command, claim by key, resolve');

  for (const w of watches) w.expectErrors = true; // stopping ends the learners' sessions
  await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  await Promise.all([a.ctx.close(), b.ctx.close(), ictx.close()]);
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runAlone(runToolkit);
}
