// Issue 10's presenting tools end to end against a real `clarateach up` with real seats:
// an announcement typed in the dashboard reaches two learners' banners live (and survives a
// reload), the instructor spotlights Ada's terminal and both learners' Presenter tabs show it
// live (Bob's keystrokes there change nothing), and Ada's recording replays in the dashboard's
// player (play/pause, timeline). Figure: replay page load (click on a recording -> first frame
// open in the player, before it plays at 1x).
//
// Run alone: CLARATEACH_BIN=/path/to/clarateach node e2e/toolkit3.mjs (root, for the sandboxes);
// run.mjs runs it too after its other scenarios.
import { pathToFileURL } from 'node:url';
import { PageWatch, check, joinAsLearner, log, runAlone, startWorkshop, termText, typeInTerminal, waitFor } from './harness.mjs';

const castText = (page, label) => page.evaluate((l) => [...(window.__claraCasts?.entries() ?? [])].filter(([k]) => k.startsWith(l)).map(([, f]) => f()).join('\n'), label);



export async function runToolkit3(browser, url, token, viewport, watches) {
  const { workshop, headers } = await startWorkshop(url, token, { name: 'Presenting', seats: 2 });
  const figures = {};

  const a = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Ada', 'toolkit3');
  const b = await joinAsLearner(browser, url, viewport, watches, workshop.code, 'Bob', 'toolkit3');
  await typeInTerminal(a.page, 'Terminal main', 'echo present-$((6*7))');
  await waitFor('Ada echo', async () => /present-42/.test(await termText(a.page, 'Terminal main')));

  const sess = await (await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers })).json();
  const ictx = await browser.newContext({ viewport });
  await ictx.addInitScript((s) => sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s)), sess);
  const ipage = await ictx.newPage();
  watches.push(new PageWatch('toolkit3-instructor', ipage));
  await ipage.goto(`${url}/instructor/workshops/${workshop.id}`);

  // Announcement: typed in the dashboard, shown in both learners' banners.
  const sent = Date.now();
  await ipage.getByTestId('announce-input').fill('Break until 11:00, back in 10');
  await ipage.getByTestId('announce-send').click();
  for (const l of [a, b]) {
    await l.page.getByTestId('announcement-banner').filter({ hasText: 'Break until 11:00' }).waitFor({ timeout: 10000 });
  }
  figures.announcement_to_two_learners_ms = Date.now() - sent;
  await b.page.reload();
  await b.page.getByTestId('announcement-banner').filter({ hasText: 'Break until 11:00' }).waitFor({ timeout: 15000 });
  log('toolkit3: announcement reached two learners live and survives a reload');

  // Spotlight Ada's terminal from her shadow panel; both learners get a live Presenter tab.
  await ipage.locator('.seat', { hasText: 'Ada' }).click();
  await ipage.getByTestId('shadow-panel').waitFor();
  await ipage.getByTestId('spotlight-seat').click();
  await ipage.getByTestId('spotlight-status').waitFor({ timeout: 10000 });
  for (const l of [a, b]) {
    await l.page.getByTestId('presenter-tab').waitFor({ timeout: 10000 });
    await waitFor('presenter shows Ada', async () => /present-42/.test(await termText(l.page, 'Presenter terminal')), { timeout: 15000 });
  }
  await a.page.locator('[role="tab"]', { hasText: 'main' }).click();
  await typeInTerminal(a.page, 'Terminal main', 'echo spot-$((7*8))');
  await waitFor('Bob sees it live', async () => /spot-56/.test(await termText(b.page, 'Presenter terminal')), { timeout: 10000 });
  // Bob types into the Presenter tab: nothing reaches Ada's shell.
  await b.page.locator('[data-terminal="Presenter terminal"]').click();
  await b.page.keyboard.type('echo bob-was-here-$((2+2))', { delay: 5 });
  await b.page.keyboard.press('Enter');
  await new Promise((r) => setTimeout(r, 1500));
  check(!/bob-was-here/.test(await termText(a.page, 'Terminal main')), "Bob's keystrokes reached Ada's terminal");
  log('toolkit3: spotlight seen live by every learner, read-only');
  await ipage.getByTestId('spotlight-seat').click(); // stop
  await b.page.getByTestId('presenter-tab').waitFor({ state: 'detached', timeout: 10000 });

  // Replay: Ada reloads (her first connection's cast is complete), the instructor plays it.
  await a.page.reload();
  await a.page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
  await ipage.getByTestId('open-recordings').click();
  const list = ipage.getByTestId('recording-list');
  await list.waitFor({ timeout: 10000 });
  const clicked = Date.now();
  await list.locator('button').last().click(); // newest first: the last is the first connection
  // Load: click -> cast fetched, parsed and the player's terminal open (it then plays at 1x).
  await ipage.getByTestId('cast-player').waitFor({ timeout: 15000 });
  await waitFor('player open', async () => (await castText(ipage, 'Recording')) !== '', { timeout: 15000, interval: 10 });
  figures.replay_load_ms = Date.now() - clicked;
  await ipage.locator('#cast-speed').selectOption('8');
  await waitFor('replay shows the session', async () => /present-42/.test(await castText(ipage, 'Recording')), { timeout: 30000, interval: 50 });
  await ipage.getByTestId('cast-play').click(); // pause (or play again if it already ended)
  await ipage.getByTestId('cast-timeline').fill('0');
  await ipage.getByTestId('cast-time').filter({ hasText: /^0:00/ }).waitFor({ timeout: 5000 });
  log(`toolkit3: a recording replays (player open ${figures.replay_load_ms} ms after the click)`);

  for (const w of watches) w.expectErrors = true; // stopping ends the learners' sessions
  await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  await Promise.all([a.ctx.close(), b.ctx.close(), ictx.close()]);
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runAlone(runToolkit3);
}
