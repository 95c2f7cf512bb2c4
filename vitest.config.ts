import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    // Many files start real supervisors, sandboxes and proxies; on CI's 2-core machine two of them
    // run at once, so a step that takes 3 s alone can take 20. Timeouts catch hangs, not slowness.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e suites start real supervisors, sandboxes and proxies; keep them from starving each other
    // on small CI machines.
    pool: 'forks',
    maxWorkers: 2,
  },
});
