// Broadcast, checks and consent (issue 10) end to end against a real `clarateach up` with real
// seats: three learners; one edits the handed-out file (merged, not overwritten), the others do
// not; the instructor broadcasts from the UI and sees written/merged per seat, the learner who
// edited sees "merged with your changes"; a check passes in two seats and fails in one, the grid
// colours the cards and a click shows the failing seat's output; the learner sees when the
// instructor watches; the audit lists it all.
//
// Run alone: CLARATEACH_BIN=/path/to/clarateach node e2e/toolkit2.mjs (root, for the sandboxes);
// run.mjs runs it too after its own scenario.
import { pathToFileURL } from 'node:url';
import { PageWatch, check, joinAsLearner, log, runAlone, startWorkshop, waitFor } from './harness.mjs';

const V1 = 'def f():\n    return 1\n\n\n\ndef g():\n    pass\n';
const V2 = 'def f():\n    return 1\n\n\n\ndef g():\n    return "step 2"\n';


const seatApi = (url, token) => ({
  put: (path, content) =>
    fetch(`${url}/api/session/files/${path}`, { method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ content }) }),
  read: async (path) => (await (await fetch(`${url}/api/session/files/${path}`, { headers: { Authorization: `Bearer ${token}` } })).json()).content,
});

export async function runToolkit2(browser, url, token, viewport, watches) {
  const { workshop, headers } = await startWorkshop(url, token, { name: 'Toolkit 2', seats: 3 });
  const figures = {};
  const names = ['Ann', 'Ben', 'Cid'];
  const ls = [];
  for (const n of names) ls.push(await joinAsLearner(browser, url, viewport, watches, workshop.code, n, 'toolkit2'));

  // Instructor page.
  const sess = await (await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers })).json();
  const ictx = await browser.newContext({ viewport });
  await ictx.addInitScript((s) => sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s)), sess);
  const ipage = await ictx.newPage();
  watches.push(new PageWatch('toolkit2-instructor', ipage));
  await ipage.goto(`${url}/instructor/workshops/${workshop.id}`);
  await ipage.getByTestId('toolkit').waitFor({ timeout: 15000 });

  // Broadcast v1 from the UI: written everywhere.
  const send = async (content) => {
    await ipage.getByTestId('toolkit-tab-broadcast').click();
    await ipage.getByTestId('broadcast-path').fill('ex/step.py');
    await ipage.getByTestId('broadcast-content').fill(content);
    const t = Date.now();
    await ipage.getByTestId('broadcast-send').click();
    return t;
  };
  await send(V1);
  await waitFor('v1 written to 3 seats', async () => (await ipage.locator('[data-testid="broadcast-row"][data-outcome="written"]').count()) === 3, { timeout: 15000 });
  check((await seatApi(url, ls[2].token).read('ex/step.py')) === V1, 'Cid has v1');

  // Ann edits the file elsewhere; v2 is merged into hers, the others are replaced.
  check((await seatApi(url, ls[0].token).put('ex/step.py', V1.replace('return 1', 'return 42  # Ann'))).ok, 'Ann edits');
  const t2 = await send(V2);
  await waitFor('v2 report', async () => (await ipage.locator('[data-testid="broadcast-row"][data-outcome="merged"]').count()) === 1, { timeout: 15000 });
  figures.broadcast_ui_ms = Date.now() - t2;
  check((await ipage.locator('[data-testid="broadcast-row"][data-outcome="written"]').count()) === 2, 'two seats replaced');
  const ann = await seatApi(url, ls[0].token).read('ex/step.py');
  check(ann.includes('return 42  # Ann') && ann.includes('step 2'), `Ann's edit kept and v2 merged in: ${JSON.stringify(ann)}`);
  check((await seatApi(url, ls[1].token).read('ex/step.py')) === V2, 'Ben has v2');
  // The learner sees what arrived.
  await ls[0].page.getByTestId('broadcast-notice').filter({ hasText: 'merged with your changes' }).waitFor({ timeout: 15000 });
  await ls[1].page.getByTestId('broadcast-notice').filter({ hasText: 'new version' }).waitFor({ timeout: 15000 });
  log(`toolkit2: broadcast merged Ann's edit, replaced the others (${figures.broadcast_ui_ms} ms in the UI)`);

  // A check passing in two seats and failing in one.
  for (const i of [0, 1]) check((await seatApi(url, ls[i].token).put('done.txt', 'yes')).ok, 'exercise done');
  await ipage.getByTestId('toolkit-tab-check').click();
  await ipage.getByTestId('check-command').fill('test -f done.txt || { echo "done.txt is missing" >&2; exit 3; }');
  const t3 = Date.now();
  await ipage.getByTestId('check-run').click();
  await ipage.getByTestId('check-summary').filter({ hasText: '2/3 seats passed' }).waitFor({ timeout: 30000 });
  figures.check_ui_ms = Date.now() - t3;
  const card = (n) => ipage.locator('.seat', { hasText: n });
  await waitFor('cards coloured', async () =>
    (await card('Ann').getAttribute('data-check')) === 'pass' &&
    (await card('Ben').getAttribute('data-check')) === 'pass' &&
    (await card('Cid').getAttribute('data-check')) === 'fail', { timeout: 5000 });
  await card('Cid').click();
  await ipage.getByTestId('check-output').filter({ hasText: 'done.txt is missing' }).waitFor({ timeout: 5000 });
  check((await ipage.getByTestId('check-output').textContent()).includes('exit 3'), 'the exit status shows');
  log(`toolkit2: check 2/3 passed, cards coloured, Cid's output shown (${figures.check_ui_ms} ms)`);

  // Consent: Cid sees the instructor watching (the shadow terminal is open on Cid's seat).
  await ls[2].page.getByTestId('presence-badge').filter({ hasText: 'watching' }).waitFor({ timeout: 10000 });
  await ipage.getByRole('button', { name: 'Close terminal' }).click();
  await ls[2].page.getByTestId('presence-badge').waitFor({ state: 'detached', timeout: 10000 });

  // The audit: the watch, the check and both broadcasts.
  await ipage.getByTestId('toolkit-tab-audit').click();
  await waitFor('audit rows', async () => (await ipage.getByTestId('audit-row').count()) >= 4, { timeout: 10000 });
  const actions = await ipage.getByTestId('audit-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-action')));
  check(JSON.stringify(actions.slice(0, 4)) === JSON.stringify(['watch', 'check', 'broadcast', 'broadcast']), `audit: ${actions}`);
  log('toolkit2: learner saw the watch notice; audit lists watch, check, broadcasts');

  for (const w of watches) w.expectErrors = true; // stopping ends the learners' sessions
  await fetch(`${url}/api/workshops/${workshop.id}/stop`, { method: 'POST', headers });
  await Promise.all([...ls.map((l) => l.ctx.close()), ictx.close()]);
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runAlone(runToolkit2);
}
