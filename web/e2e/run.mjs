// The end-to-end scenario of issue 5 against a real `clarateach up`:
// instructor creates and starts a workshop; two learners join; a learner runs `echo hello`, edits a
// file in Monaco (autosave), `cat`s it; reload keeps the seat and scrollback; rejoin from another
// browser with the reconnect code; join errors; the instructor watches the terminal live, takes
// over, the learner sees the notice; stop shows the learners "workshop ended". Also measures the
// figures of BENCHMARKS.md and writes screenshots to a temp dir (`npm run screenshots`: docs/screenshots/).
//
// Usage: CLARATEACH_BIN=/path/to/clarateach npm run e2e   (root needed for the sandboxes)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PageWatch, SHOTS, check, launchBrowser, log, startProxy, startServer, termText, typeInTerminal, waitFor } from './harness.mjs';
import { measureGrid } from './grid.mjs';
import { measurePageWeight } from './weight.mjs';
import { runToolkit } from './toolkit.mjs';
import { runImages } from './images.mjs';
import { runPreview } from './preview.mjs';
import { runToolkit3 } from './toolkit3.mjs';
import { runToolkit2 } from './toolkit2.mjs';
import { checkHardeningHeaders, checkNotFramable, checkTerminalLink, cspViolations, startEvilOrigin, watchCsp } from './security.mjs';

const VIEWPORT = { width: 1440, height: 900 };

async function waitTerm(page, label, re, what, timeout = 15000) {
  return waitFor(`${what} in ${label}`, async () => re.test(await termText(page, label)), { timeout });
}

async function newLearner(browser, url, watches, name) {
  const ctx = await browser.newContext({ viewport: VIEWPORT });
  await watchCsp(ctx);
  const page = await ctx.newPage();
  watches.push(new PageWatch(name, page));
  checkHardeningHeaders(await page.goto(url), `join page (${name})`);
  return { ctx, page };
}

async function joinAs(page, code, name) {
  await page.getByLabel('Workshop code').fill(code);
  if (name) await page.getByLabel(/Your name/).fill(name);
  await page.getByRole('button', { name: 'Join workshop' }).click();
}

async function main() {
  const server = await startServer();
  const browser = await launchBrowser();
  const watches = [];
  const figures = {};
  let ok = false;
  let proxyRef = null;
  let evil = null;
  try {
    mkdirSync(SHOTS, { recursive: true });
    const { url, token } = server;

    // Page weight on the wire, cold cache (issue 15's goal: <= 300 KB for the first page).
    figures.page_weight_join = await measurePageWeight(browser, `${url}/`);
    figures.page_weight_instructor = await measurePageWeight(browser, `${url}/instructor`);
    check(figures.page_weight_join.uncompressed_scripts.length === 0,
      `scripts come compressed (${figures.page_weight_join.uncompressed_scripts})`);
    check(figures.page_weight_join.wire_bytes <= 300 * 1024,
      `join page weighs ${figures.page_weight_join.wire_bytes} bytes on the wire (goal <= 300 KB)`);

    // Instructor: sign in, create, start.
    const ictx = await browser.newContext({ viewport: VIEWPORT });
    await watchCsp(ictx);
    const ipage = await ictx.newPage();
    const iwatch = new PageWatch('instructor', ipage);
    watches.push(iwatch);
    const wsUrls = [];
    ipage.on('websocket', (ws) => wsUrls.push(ws.url()));
    checkHardeningHeaders(await ipage.goto(`${url}/instructor`), 'instructor page');
    evil = await startEvilOrigin(`${url}/instructor`);
    await checkNotFramable(browser, url, evil);
    await ipage.getByLabel('Instructor token').fill(token);
    await ipage.getByRole('button', { name: 'Sign in' }).click();
    await ipage.getByRole('heading', { name: 'Workshops' }).waitFor();
    // The long-lived token was traded for a session: only the session is kept, in sessionStorage.
    const stored = await ipage.evaluate(() => ({
      local: JSON.stringify({ ...localStorage }),
      session: sessionStorage.getItem('clarateach.instructor.session'),
    }));
    check(!stored.local.includes(token), 'instructor token not in localStorage');
    check(!String(stored.session).includes(token), 'instructor token not in sessionStorage');
    const sessionToken = JSON.parse(stored.session ?? '{}').token ?? '';
    check(sessionToken.startsWith('cts_'), `a session token in sessionStorage (${stored.session})`);
    log('instructor signed in with a session; the instructor token is not stored');
    await ipage.getByLabel('Name', { exact: true }).fill('Intro to the shell');
    await ipage.getByLabel('Seats', { exact: true }).fill('3');
    await ipage.getByLabel(/API key/).fill('sk-e2e-secret-0123456789');
    await ipage.getByRole('button', { name: 'Create workshop' }).click();
    const row = ipage.locator('tr', { hasText: 'Intro to the shell' });
    await row.waitFor();
    const code = (await row.locator('.code-chip').textContent()).trim();
    const workshopId = await row.getAttribute('data-workshop');
    log(`created ${workshopId} with code ${code}`);

    // Join errors: unknown code and a workshop that has not started.
    const err = await newLearner(browser, url, watches, 'learner-errors');
    watches.at(-1).expectErrors = true; // this page provokes 404/409 answers on purpose
    await joinAs(err.page, 'NOPE-ZZZZ');
    await err.page.getByRole('alert').filter({ hasText: 'No workshop matches that code' }).waitFor();
    await joinAs(err.page, code.toLowerCase());
    await err.page.getByRole('alert').filter({ hasText: 'not running' }).waitFor();
    log('join errors shown: unknown code, not running');

    await row.getByRole('button', { name: 'Start' }).click();
    const startAt = Date.now();
    await waitFor('3/3 seats ready', async () => /3\/3 ready/.test(await row.textContent()), { timeout: 120000, interval: 250 });
    figures.start_3_seats_ms = Date.now() - startAt;
    await waitFor('status running', async () => /running/.test(await row.textContent()), { timeout: 30000 });
    log(`workshop running, 3 seats ready in ${figures.start_3_seats_ms} ms`);

    // Learner A joins with a sloppy code (lower case, space instead of dash).
    const a = await newLearner(browser, url, watches, 'learner-a');
    a.page.on('websocket', (ws) => wsUrls.push(ws.url()));
    const sloppy = ` ${code.toLowerCase().replace('-', ' ')} `;
    await a.page.getByLabel('Workshop code').fill(sloppy);
    await a.page.getByLabel(/Your name/).fill('Ada');
    await a.page.screenshot({ path: join(SHOTS, 'join.png') });
    await a.page.getByRole('button', { name: 'Join workshop' }).click();
    const reconnect = (await a.page.getByTestId('reconnect-code').textContent()).trim();
    check(reconnect.length > 0, 'reconnect code shown');
    await a.page.getByRole('button', { name: 'Open my workspace' }).click();
    await a.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
    await typeInTerminal(a.page, 'Terminal main', 'echo hello');
    await waitTerm(a.page, 'Terminal main', /^hello$/m, '"hello" output');
    log(`learner A joined (reconnect code ${reconnect}) and ran echo hello`);

    // Learner B joins too, through a proxy that can cut the connection, and gets another seat.
    const proxy = await startProxy(url);
    proxyRef = proxy;
    const b = await newLearner(browser, proxy.url, watches, 'learner-b');
    const bWatch = watches.at(-1);
    await joinAs(b.page, code, 'Grace');
    await b.page.getByRole('button', { name: 'Open my workspace' }).click();
    await b.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
    const seatA = await a.page.locator('.topbar .meta').textContent();
    const seatB = await b.page.locator('.topbar .meta').textContent();
    check(seatA !== seatB, `learners have different seats (${seatA} / ${seatB})`);

    // Network drop: learner B's connections are cut for 3 s; the UI shows it, backs off,
    // reconnects by itself and the scrollback comes back.
    await typeInTerminal(b.page, 'Terminal main', 'echo before-$((1+1))-drop');
    await waitTerm(b.page, 'Terminal main', /^before-2-drop$/m, 'output before the drop');
    bWatch.expectErrors = true; // the browser logs the refused connections while cut
    proxy.cut(3000);
    await b.page.getByTestId('connection-status').filter({ hasText: 'reconnecting' }).waitFor({ timeout: 5000 });
    const cutAt = Date.now();
    await b.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
    figures.reconnect_after_3s_outage_ms = Date.now() - cutAt;
    bWatch.expectErrors = false;
    await waitTerm(b.page, 'Terminal main', /^before-2-drop$/m, 'scrollback after reconnect');
    await typeInTerminal(b.page, 'Terminal main', 'echo after-$((1+1))-drop');
    await waitTerm(b.page, 'Terminal main', /^after-2-drop$/m, 'output after reconnect');
    log(`learner B reconnected by itself ${figures.reconnect_after_3s_outage_ms} ms after a 3 s outage`);

    // Full: the third seat goes to a third learner, a fourth join is refused.
    const c = await newLearner(browser, url, watches, 'learner-c');
    await joinAs(c.page, code, 'Linus');
    await c.page.getByRole('button', { name: 'Open my workspace' }).waitFor();
    await joinAs(err.page, code);
    await err.page.getByRole('alert').filter({ hasText: 'full' }).waitFor();
    await c.ctx.close();
    await err.ctx.close();
    log('third learner joined; a fourth join shows "workshop full"');

    // Learner A: new file in the tree, edit in Monaco, autosave, cat it in the terminal.
    await a.page.getByRole('button', { name: 'New file' }).click();
    await a.page.getByLabel('New file name').fill('hello.py');
    await a.page.keyboard.press('Enter');
    await a.page.getByRole('treeitem', { name: /hello\.py/ }).waitFor();
    await a.page.locator('.monaco-editor').waitFor({ timeout: 30000 });
    await a.page.locator('.monaco-editor .view-lines').click();
    await a.page.keyboard.type('answer = 42  # typed in Monaco', { delay: 5 });
    await a.page.keyboard.press('Enter');
    await a.page.getByRole('tab', { name: /hello\.py/ }).locator('.dirty-dot').waitFor();
    await a.page.getByText('All changes saved').waitFor({ timeout: 10000 });
    await typeInTerminal(a.page, 'Terminal main', 'cat hello.py');
    await waitTerm(a.page, 'Terminal main', /^answer = 42  # typed in Monaco$/m, 'file content');
    await a.page.screenshot({ path: join(SHOTS, 'learner-ide.png') });
    await a.page.getByRole('button', { name: 'Switch to dark theme' }).click();
    check((await a.page.evaluate(() => document.documentElement.dataset.theme)) === 'dark', 'dark theme applied');
    await a.page.waitForTimeout(300);
    await a.page.screenshot({ path: join(SHOTS, 'learner-ide-dark.png') });
    await a.page.getByRole('button', { name: 'Switch to light theme' }).click();
    log('Monaco edit autosaved and visible to cat');
    check((await cspViolations(a.page)).length === 0, `no CSP violations in the IDE (Monaco, xterm): ${await cspViolations(a.page)}`);
    await checkTerminalLink(a.page, 'Terminal main', evil, typeInTerminal);

    // A file created in the terminal shows up in the tree through the watch stream.
    await typeInTerminal(a.page, 'Terminal main', 'mkdir -p notes && echo hi > notes/todo.txt');
    await a.page.getByRole('treeitem', { name: /notes/ }).waitFor({ timeout: 10000 });

    // Reload: same seat, scrollback replayed; measure load -> interactive terminal.
    await a.page.reload();
    await a.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
    await waitTerm(a.page, 'Terminal main', /^hello$/m, 'scrollback after reload');
    check((await a.page.locator('.topbar .meta').textContent()) === seatA, 'same seat after reload');
    // Load -> interactive ends once the scrollback replay is on screen ('terminal-replayed');
    // the socket being open ('terminal-interactive') is recorded beside it.
    const loads = [];
    const opens = [];
    for (let i = 0; i < 5; i++) {
      await a.page.reload();
      const t = await waitFor('terminal-replayed mark', () =>
        a.page.evaluate(() => performance.getEntriesByName('terminal-replayed')[0]?.startTime),
      );
      loads.push(Math.round(t));
      opens.push(Math.round(await a.page.evaluate(() => performance.getEntriesByName('terminal-interactive')[0]?.startTime ?? -1)));
    }
    loads.sort((x, y) => x - y);
    opens.sort((x, y) => x - y);
    figures.load_to_interactive_terminal_ms = { median: loads[2], min: loads[0], max: loads[4], runs: loads, until: 'scrollback replay on screen' };
    figures.load_to_terminal_socket_open_ms = { median: opens[2], runs: opens };
    log(`reload keeps seat and scrollback; load -> interactive terminal (replay on screen) ${JSON.stringify(loads)} ms, socket open ${JSON.stringify(opens)} ms`);

    // Rejoin from another browser with the reconnect code.
    const r = await newLearner(browser, url, watches, 'learner-a-elsewhere');
    await r.page.getByRole('tab', { name: 'Rejoin a seat' }).click();
    await r.page.getByLabel('Workshop code').fill(code);
    await r.page.getByRole('textbox', { name: 'Reconnect code' }).fill(reconnect);
    await r.page.getByRole('button', { name: 'Rejoin my seat' }).click();
    await r.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
    const seatOf = (t) => /Seat (\d+)/.exec(t)?.[1];
    const seatR = await r.page.locator('.topbar .meta').textContent();
    check(seatOf(seatR) === seatOf(seatA), `rejoin lands on the same seat (${seatR} / ${seatA})`);
    await waitTerm(r.page, 'Terminal main', /^hello$/m, 'scrollback in the other browser');
    await r.ctx.close();
    log('rejoin with the reconnect code from another browser works');

    // Instructor: seat grid, watch learner A live, take over.
    await row.getByRole('link', { name: /Intro to the shell/ }).click();
    const seatNo = Number(/Seat (\d+)/.exec(seatA)[1]);
    const card = ipage.locator(`.seat[data-seat="${seatNo}"]`);
    await card.filter({ hasText: 'Ada' }).waitFor({ timeout: 10000 });
    await card.click();
    const shadow = `Seat ${seatNo} terminal main`;
    await ipage.getByTestId('shadow-panel').getByText('watching, read-only').waitFor({ timeout: 15000 });
    await typeInTerminal(a.page, 'Terminal main', 'echo watched-$((6*7))');
    await waitTerm(ipage, shadow, /^watched-42$/m, 'learner output live in the instructor view');
    await ipage.getByRole('switch', { name: 'Take over' }).check();
    await ipage.getByTestId('shadow-panel').getByText('typing as instructor').waitFor({ timeout: 15000 });
    await a.page.getByTestId('takeover-banner').waitFor({ timeout: 10000 });
    check(/instructor is typing/i.test(await a.page.getByTestId('takeover-banner').textContent()), 'takeover banner text');
    await typeInTerminal(ipage, shadow, 'echo from-$((40+2))-instructor');
    await waitTerm(a.page, 'Terminal main', /^from-42-instructor$/m, 'instructor input in the learner terminal');
    await ipage.screenshot({ path: join(SHOTS, 'instructor-grid.png'), fullPage: true });
    await a.page.screenshot({ path: join(SHOTS, 'learner-takeover.png') });
    await ipage.getByRole('switch', { name: 'Take over' }).uncheck();
    await a.page.getByTestId('takeover-banner').waitFor({ state: 'detached', timeout: 10000 });
    log('instructor watched live, took over, learner saw the notice');
    const learnerToken = await a.page.evaluate(() => JSON.parse(localStorage.getItem('clarateach.learner') ?? '{}').token);
    check(wsUrls.length >= 3, `websockets seen: ${wsUrls.length}`);
    for (const u of wsUrls) {
      const q = new URL(u).searchParams;
      check(q.has('ticket') && !q.has('token'), `websocket opened with a ticket: ${u}`);
      check(![token, sessionToken, learnerToken].some((t) => t && u.includes(t)), `no token in a websocket URL: ${u}`);
    }
    log(`${wsUrls.length} websockets opened with one-time tickets, no token in any URL`);

    // Export: the archive of every seat's files downloads through the bearer-authenticated fetch.
    const [download] = await Promise.all([
      ipage.waitForEvent('download'),
      ipage.getByRole('button', { name: 'Export' }).click(),
    ]);
    const archive = await download.path();
    const { statSync } = await import('node:fs');
    check(download.suggestedFilename().endsWith('.tar.gz') && statSync(archive).size > 0, 'export downloaded');
    const { execFileSync } = await import('node:child_process');
    const listing = execFileSync('tar', ['tzf', archive], { encoding: 'utf8' });
    check(/hello\.py/.test(listing), `export holds the learner's file:\n${listing}`);
    log(`export downloaded (${statSync(archive).size} bytes)`);

    // Reset learner A's seat from the grid: new reconnect code, the old token and code refused,
    // the files kept.
    const aWatch = watches.find((w) => w.name === 'learner-a');
    if (aWatch) aWatch.expectErrors = true; // its token is refused on purpose from here on
    await card.click().catch(() => {});
    await ipage.getByTestId('reset-seat').click();
    await ipage.getByRole('dialog').getByRole('button', { name: 'Reset learner' }).click();
    const newCode = (await ipage.getByTestId('reset-code').locator('.code-chip').textContent()).trim();
    check(newCode.length === 5 && newCode !== reconnect, `new reconnect code ${newCode} (was ${reconnect})`);
    const me = await fetch(`${url}/api/me`, { headers: { Authorization: `Bearer ${learnerToken}` } });
    check(me.status === 401, `old learner token refused after reset (${me.status})`);
    const oldJoin = await fetch(`${url}/api/join`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, odehash: reconnect }),
    });
    check(oldJoin.status === 404, `old reconnect code refused (${oldJoin.status})`);
    const rejoin = await fetch(`${url}/api/join`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, odehash: newCode }),
    });
    const rejoined = await rejoin.json();
    check(rejoin.status === 200 && rejoined.seat === seatNo, `new code rejoins seat ${seatNo}: ${JSON.stringify(rejoined)}`);
    const files = await fetch(`${url}/api/session/files?path=/`, { headers: { Authorization: `Bearer ${rejoined.token}` } });
    const listing0 = await files.text();
    check(files.status === 200 && /hello\.py/.test(listing0), `files kept after reset: ${listing0}`);
    log(`seat ${seatNo} reset: new code ${newCode}, old token 401, old code 404, hello.py still there`);

    // Stop: learners see "workshop ended".
    const problemsBeforeStop = watches.filter((w) => !w.expectErrors).flatMap((w) => w.problems);
    watches.forEach((w) => (w.expectErrors = true));
    await ipage.getByRole('button', { name: 'Stop' }).click();
    await ipage.getByRole('button', { name: 'Stop workshop' }).click();
    await b.page.getByTestId('workshop-ended').waitFor({ timeout: 30000 });
    await b.page.screenshot({ path: join(SHOTS, 'workshop-ended.png') });
    log('stop shows both learners the "workshop ended" state');
    await a.ctx.close();
    await b.ctx.close();

    // Delete the stopped workshop from the list.
    await ipage.getByRole('link', { name: 'Workshops' }).click();
    const stoppedRow = ipage.locator('tr', { hasText: 'Intro to the shell' });
    await waitFor('status stopped', async () => /stopped/.test(await stoppedRow.textContent()), { timeout: 30000 });
    await stoppedRow.getByRole('button', { name: 'Delete' }).click();
    await ipage.getByRole('button', { name: 'Delete workshop' }).click();
    await stoppedRow.waitFor({ state: 'detached', timeout: 10000 });
    log('stopped workshop deleted');
    check((await cspViolations(ipage)).length === 0, `no CSP violations on the dashboard: ${await cspViolations(ipage)}`);
    check(problemsBeforeStop.length === 0, `no console errors or failed requests:\n  ${problemsBeforeStop.join('\n  ')}`);

    // Figure: the 50-seat grid staying live.
    watches.forEach((w) => (w.expectErrors = false));
    figures.grid = await measureGrid(browser, url, token, VIEWPORT, watches);
    const late = watches.flatMap((w) => w.problems);
    check(late.length === 0, `no console errors or failed requests on the grid:\n  ${late.join('\n  ')}`);
    await ictx.close();
    figures.toolkit = await runToolkit(browser, url, token, VIEWPORT, []);
    figures.images = await runImages(browser);
    figures.preview = await runPreview(browser, url, token, VIEWPORT, []);
    figures.toolkit3 = await runToolkit3(browser, url, token, VIEWPORT, []);
    figures.toolkit2 = await runToolkit2(browser, url, token, VIEWPORT, []);
    ok = true;
  } finally {
    proxyRef?.close();
    evil?.close();
    await browser.close().catch(() => {});
    await server.stop({ keep: !ok });
    if (!ok) log(`kept ${server.dataDir} (server log: ${server.logPath})`);
  }
  writeFileSync(join(import.meta.dirname, 'last-run.json'), JSON.stringify(figures, null, 2) + '\n');
  log('figures', JSON.stringify(figures, null, 2));
  log('PASS');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
