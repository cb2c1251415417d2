// Seat images and templates in the browser (issue 11) against a real `clarateach up` whose agent
// has the built `claude` image: a template of that image with starter files and a README; the
// instructor picks it in the create form (which shows what the image holds) and starts the
// workshop; a learner's seat shows the README, has the starter file, and its real terminal runs
// `claude --version` and `python3` from the image (not the host, which has neither claude nor
// the image's node).
//
// Needs the images scripts/test.sh builds (`CLARATEACH_SEAT_IMAGES`, default
// /var/cache/clarateach/seat-images); prints SKIP without them. Starts its own server, since its
// agent must see that image store.
// Run alone: CLARATEACH_BIN=/path/to/clarateach node e2e/images.mjs (root, for the sandboxes);
// run.mjs runs it too after its own scenario.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PageWatch, check, launchBrowser, log, startServer, termText, typeInTerminal, waitFor } from './harness.mjs';

const VIEWPORT = { width: 1440, height: 900 };
const IMAGES = process.env.CLARATEACH_SEAT_IMAGES ?? '/var/cache/clarateach/seat-images';
const README = '# Claude workshop\n\nEverything you need is installed.\n\n- run `claude --version`\n- open hello.py\n\n```sh\npython3 hello.py\n```\n';

/** Starter files as the API takes them: a gzipped tar, base64. */
function starterTarGz() {
  const dir = mkdtempSync(join(tmpdir(), 'clarateach-e2e-starter-'));
  try {
    writeFileSync(join(dir, 'hello.py'), 'print("hello from the template")\n');
    execFileSync('tar', ['-czf', join(dir, 'starter.tar.gz'), '-C', dir, 'hello.py']);
    return readFileSync(join(dir, 'starter.tar.gz')).toString('base64');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Returns the figures, or null (after a SKIP line) when the `claude` image is not built. */
export async function runImages(browser) {
  if (!existsSync(join(IMAGES, 'claude', 'current'))) {
    console.log(`SKIP: images e2e: no built \`claude\` seat image in ${IMAGES} (scripts/test.sh builds it)`);
    return null;
  }
  process.env.CLARATEACH_IMAGES_DIR = IMAGES;
  const server = await startServer();
  const watches = [];
  let ok = false;
  try {
    const { url, token } = server;
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    const figures = {};

    // The agent reports the image with what it holds.
    const images = await waitFor('the agent to report its images', async () => {
      const r = await (await fetch(`${url}/api/images`, { headers })).json();
      return r.images?.some((i) => i.name === 'claude') && r.images;
    }, { timeout: 30000 });
    const claude = images.find((i) => i.name === 'claude');
    check(claude.packages.some((p) => p.includes('claude-code')), `claude image lists claude-code: ${JSON.stringify(claude.packages)}`);
    check(claude.agents.length === 1 && claude.digest.length > 0, `claude image on the agent: ${JSON.stringify(claude)}`);

    const created = await fetch(`${url}/api/templates`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'claude-intro', image: 'claude', description: 'Claude Code, day one', readme: README, files_tar_gz: starterTarGz() }),
    });
    check(created.status === 201, `template create: ${created.status} ${await created.text()}`);

    // Instructor: the picker lists the template and says what its image holds.
    const sess = await (await fetch(`${url}/api/instructor/sessions`, { method: 'POST', headers })).json();
    const ictx = await browser.newContext({ viewport: VIEWPORT });
    await ictx.addInitScript((s) => sessionStorage.setItem('clarateach.instructor.session', JSON.stringify(s)), sess);
    const ipage = await ictx.newPage();
    watches.push(new PageWatch('images-instructor', ipage));
    await ipage.goto(`${url}/instructor`);
    const form = ipage.getByRole('form', { name: 'Create a workshop' });
    await form.getByLabel('Name', { exact: true }).fill('Claude day');
    await form.getByLabel('Seats', { exact: true }).fill('1');
    const picker = form.getByLabel(/Template or seat image/);
    await waitFor('the template in the picker', async () => (await picker.locator('option[value="template:claude-intro"]').count()) === 1);
    await picker.selectOption('template:claude-intro');
    const facts = ipage.getByTestId('seat-source-facts');
    await facts.filter({ hasText: 'claude-code' }).waitFor({ timeout: 5000 });
    check(/README for learners/.test(await facts.textContent()), 'the facts mention the README');
    await form.getByRole('button', { name: 'Create workshop' }).click();
    const row = ipage.locator('tr', { hasText: 'Claude day' });
    await row.waitFor({ timeout: 10000 });
    const started = Date.now();
    await row.getByRole('button', { name: 'Start' }).click();
    await waitFor('Claude day running', async () => /running/.test(await row.textContent()), { timeout: 120000, interval: 250 });
    figures.image_workshop_running_ms = Date.now() - started;
    const list = await (await fetch(`${url}/api/workshops`, { headers })).json();
    const w = list.workshops.find((x) => x.name === 'Claude day');
    check(w && w.image === 'claude', `the workshop took the template's image: ${JSON.stringify(w)}`);

    // Learner: README panel, starter file, the image's tools in the real terminal.
    const lctx = await browser.newContext({ viewport: VIEWPORT });
    const page = await lctx.newPage();
    watches.push(new PageWatch('images-learner', page));
    await page.goto(url);
    await page.getByLabel('Workshop code').fill(w.code);
    await page.getByRole('button', { name: 'Join workshop' }).click();
    await page.getByRole('button', { name: 'Open my workspace' }).click();
    await page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
    const panel = page.getByTestId('readme-panel');
    await panel.getByRole('heading', { name: 'Claude workshop' }).waitFor({ timeout: 10000 });
    check((await panel.locator('pre').textContent()).includes('python3 hello.py'), 'the README code block is shown');
    await page.getByRole('button', { name: 'Close the instructions' }).click();
    await panel.waitFor({ state: 'detached', timeout: 5000 });
    await page.getByTestId('open-readme').click();
    await panel.waitFor({ timeout: 5000 });
    await page.getByText('hello.py', { exact: true }).first().waitFor({ timeout: 10000 });

    const typed = Date.now();
    await typeInTerminal(page, 'Terminal main', 'claude --version; python3 -c "print(6*7)"; python3 hello.py');
    await waitFor('claude --version in the seat', async () => /\d+\.\d+\.\d+ \(Claude Code\)/.test(await termText(page, 'Terminal main')), { timeout: 60000 });
    figures.claude_version_ms = Date.now() - typed;
    await waitFor('python3 in the seat', async () => {
      const t = await termText(page, 'Terminal main');
      return /^42\s*$/m.test(t) && /hello from the template/.test(t);
    }, { timeout: 20000 });
    log('images: claude --version and python3 ran in the seat of the claude template');

    const problems = watches.flatMap((x) => x.problems);
    check(problems.length === 0, `no console errors or failed requests:\n  ${problems.join('\n  ')}`);
    await lctx.close();
    await ictx.close();
    ok = true;
    return figures;
  } finally {
    await server.stop({ keep: !ok });
    if (!ok) log(`kept ${server.dataDir} (server log: ${server.logPath})`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const browser = await launchBrowser();
  try {
    const figures = await runImages(browser);
    log('figures', JSON.stringify(figures));
    log('PASS');
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
  } finally {
    await browser.close().catch(() => {});
  }
}
