// Compile-time flags replaced by Vite's `define` (vite.config.ts).

/** True only in the end-to-end build (`npm run build:e2e`): exposes terminal text to the tests. */
declare const __CLARA_TEST_HOOKS__: boolean;
