// Writes a brotli (.br, quality 11) and a gzip (.gz, level 9) copy next to every compressible
// file of a build, kept only when smaller, so the server answers Accept-Encoding without
// compressing anything per request (crates/clarateach-web serves them).
// Usage: node scripts/compress.mjs [DIST]   (default: dist)
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const dist = resolve(process.argv[2] ?? new URL('../dist', import.meta.url).pathname);
const COMPRESSIBLE = /\.(js|mjs|css|html|svg|json|txt|map|wasm|ttf|ico|webmanifest)$/;
const MIN_BYTES = 512;

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) yield* files(p);
    else if (st.isFile()) yield p;
  }
}

let plain = 0;
let br = 0;
let count = 0;
for (const file of files(dist)) {
  if (!COMPRESSIBLE.test(file)) continue;
  const data = readFileSync(file);
  if (data.length < MIN_BYTES) continue;
  const b = brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
  const g = gzipSync(data, { level: 9 });
  if (b.length < data.length) writeFileSync(`${file}.br`, b);
  if (g.length < data.length) writeFileSync(`${file}.gz`, g);
  plain += data.length;
  br += Math.min(b.length, data.length);
  count += 1;
}
const kb = (n) => `${(n / 1024).toFixed(0)} KB`;
console.log(`compressed ${count} files in ${dist}: ${kb(plain)} -> ${kb(br)} (brotli)`);
