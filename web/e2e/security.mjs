// Browser hardening checked in Chromium against the real server: the pages carry the CSP and run
// under it, another origin that frames the dashboard gets nothing, and a link printed in a
// terminal opens only after a confirmation showing its URL, in a new tab without opener/referrer.
import { createServer } from 'node:http';
import { check, log, waitFor } from './harness.mjs';

/** A loopback origin of our own (another port: another origin) that frames `target`. */
export async function startEvilOrigin(target) {
  const hits = [];
  const server = createServer((req, res) => {
    hits.push({ url: req.url, referer: req.headers.referer ?? null });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    if (req.url === '/frame') {
      res.end(`<!doctype html><title>evil</title><iframe id="victim" src="${target}" width="900" height="600"></iframe>`);
    } else {
      res.end('<!doctype html><title>landed</title><p id="landed">landed</p>');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, hits, close: () => server.close() };
}

const CSP_PARTS = ["default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"];

/** The answer to a page load carries the hardening headers. */
export function checkHardeningHeaders(response, what) {
  const h = response.headers();
  const csp = h['content-security-policy'] ?? '';
  for (const part of CSP_PARTS) check(csp.includes(part), `${what}: CSP has ${part} (got ${csp})`);
  check(!/unsafe-eval/.test(csp) && !/script-src[^;]*unsafe-inline/.test(csp), `${what}: no unsafe script sources`);
  check(h['x-frame-options'] === 'DENY', `${what}: X-Frame-Options DENY`);
  check(h['referrer-policy'] === 'no-referrer', `${what}: Referrer-Policy`);
  check(h['x-content-type-options'] === 'nosniff', `${what}: nosniff`);
}

/** Records CSP violations of every page of `ctx` in `window.__cspViolations`. */
export async function watchCsp(ctx) {
  await ctx.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations ?? ['(watch not installed)']);
}

/** An attacker's page frames the instructor dashboard; the frame must stay empty. */
export async function checkNotFramable(browser, url, evil) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const messages = [];
  page.on('console', (m) => messages.push(m.text()));
  await page.goto(`${evil.origin}/frame`);
  await page.waitForTimeout(1500);
  const frame = page.frames().find((f) => f !== page.mainFrame());
  const text = frame ? await frame.evaluate(() => document.body?.innerText ?? '').catch(() => '') : '';
  const roots = frame ? await frame.locator('#root').count().catch(() => 0) : 0;
  check(!/Instructor|Sign in|ClaraTeach/i.test(text) && roots === 0, `framed dashboard rendered nothing (got ${JSON.stringify(text.slice(0, 80))})`);
  check(
    messages.some((m) => /frame-ancestors|Refused to (display|frame)/i.test(m)),
    `Chromium reported the refused frame: ${messages.join(' | ')}`,
  );
  await ctx.close();
  log(`the dashboard framed by ${evil.origin} shows nothing (${messages.find((m) => /frame/i.test(m))?.slice(0, 90)})`);
}

/** Prints a link in the learner's terminal, clicks it, confirms, and checks the new tab. */
export async function checkTerminalLink(page, label, evil, typeInTerminal) {
  const href = `${evil.origin}/landed?from=terminal`;
  await typeInTerminal(page, label, `printf '\\n  see ${href} now\\n'`);
  // The typed command line holds the URL too; wait for the printed line (no `printf` in it).
  await waitFor('link printed', async () =>
    (await page.evaluate((l) => window.__claraTerminals?.get(l)?.() ?? '', label))
      .split('\n')
      .some((t) => t.includes(`see ${href} now`) && !t.includes('printf')),
  );
  const pos = await page.evaluate(
    ({ l, needle }) => {
      const text = window.__claraTerminals.get(l)().split('\n');
      const g = window.__claraTerminalGrids.get(l)();
      const line = text.findLastIndex((t) => t.includes(needle) && !t.includes('printf'));
      const col = text[line].indexOf(needle) + 'see '.length + 4;
      const box = document.querySelector(`[data-terminal="${l}"] .xterm-screen`).getBoundingClientRect();
      const cw = box.width / g.cols;
      const ch = box.height / g.rows;
      return { x: box.x + (col + 0.5) * cw, y: box.y + (line - g.viewportY + 0.5) * ch };
    },
    { l: label, needle: `see ${href}` },
  );
  await page.mouse.move(pos.x - 20, pos.y);
  await page.mouse.move(pos.x, pos.y, { steps: 4 });
  await page.waitForTimeout(300);
  await page.mouse.click(pos.x, pos.y);
  const shown = page.getByTestId('terminal-link-target');
  await shown.waitFor({ timeout: 5000 });
  check((await shown.textContent()) === href, `the confirmation shows the URL (${await shown.textContent()})`);
  // Cancel opens nothing.
  let opened = 0;
  const onPage = () => opened++;
  page.context().on('page', onPage);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.waitForTimeout(500);
  check(opened === 0, 'cancel opens no tab');
  page.context().off('page', onPage);
  // Confirm opens a new tab with no opener and no referrer.
  await page.mouse.move(pos.x - 20, pos.y);
  await page.mouse.move(pos.x, pos.y, { steps: 4 });
  await page.waitForTimeout(300);
  await page.mouse.click(pos.x, pos.y);
  await shown.waitFor({ timeout: 5000 });
  const [tab] = await Promise.all([
    page.context().waitForEvent('page'),
    page.getByRole('button', { name: 'Open in new tab' }).click(),
  ]);
  await tab.waitForLoadState();
  check(tab.url() === href, `new tab at the link (${tab.url()})`);
  check(await tab.evaluate(() => window.opener === null), 'new tab has no opener');
  check((await tab.evaluate(() => document.referrer)) === '', 'new tab has no referrer');
  const hit = evil.hits.find((h) => h.url === '/landed?from=terminal');
  check(hit && hit.referer === null, `no Referer sent to the link's site (${JSON.stringify(hit)})`);
  await tab.close();
  log('terminal link: confirmation shows the URL, cancel opens nothing, confirm opens a new tab without opener/referrer');
}
