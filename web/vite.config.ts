/// <reference types="vitest/config" />
// Vite config: esbuild's automatic JSX runtime (no React plugin needed), vendor chunks for caching
// (Monaco stays behind its dynamic import, in its own lazily loaded chunks), and Vitest.
import { defineConfig } from 'vite';

// Test hooks (terminal text for the end-to-end tests) exist only in `npm run build:e2e`; the
// production build replaces the flag with `false` and drops the code.
const testHooks = process.env.CLARATEACH_WEB_TEST_HOOKS === '1';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  define: { __CLARA_TEST_HOOKS__: JSON.stringify(testHooks) },
  build: {
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes('node_modules/@xterm')) return 'xterm';
          if (id.includes('node_modules/react')) return 'react';
          return undefined;
        },
      },
    },
  },
  worker: { format: 'es' },
  server: {
    proxy: {
      '/api': { target: process.env.CLARATEACH_URL ?? 'http://127.0.0.1:8080', ws: true, changeOrigin: true },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
