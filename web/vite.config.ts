/// <reference types="vitest/config" />
// Vite config: esbuild's automatic JSX runtime (no React plugin needed), Monaco split into its own
// lazily loaded chunk, and Vitest for the pure state logic under src/lib.
import { defineConfig } from 'vite';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  build: {
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes('node_modules/monaco-editor')) return 'monaco';
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
