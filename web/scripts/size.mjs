// Prints the gzipped size of what the first page load fetches (entry script, its modulepreloads
// and stylesheets from dist/index.html) and, separately, the lazily loaded Monaco chunks.
// Usage: npm run build && npm run size   (exit 1 when the initial JS exceeds 300 KB gzipped)
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const dist = new URL('../dist/', import.meta.url).pathname;
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+)"/g)].map((m) => m[1]);
const gz = (f) => gzipSync(readFileSync(join(dist, f)), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

let js = 0;
let css = 0;
for (const f of refs) {
  const size = gz(f);
  if (f.endsWith('.js')) js += size;
  else css += size;
  console.log(`initial  ${kb(size).padStart(10)}  ${f}`);
}
const initial = new Set(refs);
let lazy = 0;
for (const f of readdirSync(join(dist, 'assets'))) {
  if (!initial.has(`assets/${f}`) && /\.(js|css)$/.test(f)) lazy += gz(`assets/${f}`);
}
console.log(`\ninitial JS (gzip -9):  ${kb(js)}   goal <= 300 KB`);
console.log(`initial CSS (gzip -9): ${kb(css)}`);
console.log(`lazy chunks (Monaco, workers, languages): ${kb(lazy)}`);
process.exit(js <= 300 * 1024 ? 0 : 1);
