// Fails when a production build carries a test-only hook: the names the e2e build exposes on
// `window` must not appear in any file the server would send.
// Usage: node scripts/check-bundle.mjs [DIST]   (after `npm run build`)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const dist = resolve(process.argv[2] ?? new URL('../dist', import.meta.url).pathname);
const FORBIDDEN = ['__claraTerminals', '__claraTerminalGrids', '__claraTerminalInputs', 'clara:terminal-replayed', 'clarateach.test.renderer', '__CLARA_TEST_HOOKS__'];

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.(js|mjs|html|css)$/.test(p)) yield p;
  }
}

let scanned = 0;
const found = [];
for (const file of files(dist)) {
  const text = readFileSync(file, 'utf8');
  scanned += 1;
  for (const name of FORBIDDEN) if (text.includes(name)) found.push(`${file}: ${name}`);
}
if (scanned === 0) {
  console.error(`check-bundle: no built files in ${dist} (run npm run build first)`);
  process.exit(2);
}
if (found.length) {
  console.error(`check-bundle: test hooks in the production bundle:\n  ${found.join('\n  ')}`);
  process.exit(1);
}
console.log(`check-bundle: ${scanned} files in ${dist}, no test hooks`);
