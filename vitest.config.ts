import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // e2e suites start real supervisors, sandboxes and proxies; keep them from starving each other
    // on small CI machines.
    pool: 'forks',
    maxWorkers: 2,
  },
});
