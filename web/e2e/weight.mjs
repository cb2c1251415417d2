// Initial page weight as Chromium transfers it: a cold browser context loads a page, and the
// bytes are summed from the DevTools protocol's `Network.loadingFinished.encodedDataLength`
// (headers + body as received, i.e. after brotli/gzip), next to the decoded body sizes.
import { log } from './harness.mjs';

export async function measurePageWeight(browser, pageUrl, { settleMs = 1500 } = {}) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const requests = new Map();
  cdp.on('Network.responseReceived', (e) => {
    requests.set(e.requestId, {
      url: e.response.url,
      type: e.type,
      encoding: e.response.headers['content-encoding'] ?? e.response.headers['Content-Encoding'] ?? 'identity',
      decoded: 0,
      wire: 0,
    });
  });
  cdp.on('Network.dataReceived', (e) => {
    const r = requests.get(e.requestId);
    if (r) r.decoded += e.dataLength;
  });
  cdp.on('Network.loadingFinished', (e) => {
    const r = requests.get(e.requestId);
    if (r) r.wire = e.encodedDataLength;
  });
  await page.goto(pageUrl, { waitUntil: 'load' });
  await page.waitForTimeout(settleMs);
  await ctx.close();
  const all = [...requests.values()].filter((r) => r.url.startsWith('http'));
  const sum = (rs, k) => rs.reduce((s, r) => s + r[k], 0);
  const scripts = all.filter((r) => r.type === 'Script');
  const result = {
    url: pageUrl,
    requests: all.length,
    wire_bytes: sum(all, 'wire'),
    decoded_bytes: sum(all, 'decoded'),
    script_wire_bytes: sum(scripts, 'wire'),
    script_decoded_bytes: sum(scripts, 'decoded'),
    encodings: [...new Set(scripts.map((r) => r.encoding))],
    /** Scripts of 1 KiB or more that came uncompressed (the build compresses those). */
    uncompressed_scripts: scripts.filter((r) => r.encoding === 'identity' && r.decoded >= 1024).map((r) => r.url),
  };
  log(`page weight ${pageUrl}: ${(result.wire_bytes / 1024).toFixed(1)} KB on the wire ` +
    `(${(result.decoded_bytes / 1024).toFixed(1)} KB decoded), scripts ${result.encodings.join(',')}`);
  return result;
}
