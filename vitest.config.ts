import { configDefaults, defineConfig } from 'vitest/config';

// The suites that run python through a real daemon (test/e2e, test/hostile) run twice: once on
// the warm path (templates, the product's default) and once on the cold path (a fresh interpreter
// per run, CODEJAIL_TEST_RUN_PATH=cold: test/helpers/daemon.ts). A test's name carries its
// project, [warm], [cold] or [held] (warm.holdAhead on: src/run/held.ts). Everything else runs once, in "unit". test/e2e/warm.test.ts runs
// both paths itself, side by side, so it is not repeated cold.
const DAEMON_SUITES = ['test/e2e/**/*.test.ts', 'test/hostile/**/*.test.ts'];
// The soak, fault and fuzz suite (test/soak) is a project of its own: long tests, one daemon per
// file, sized by CODEJAIL_SOAK_SCALE (README, Development).
const SOAK_SUITES = ['test/soak/**/*.test.ts'];

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...DAEMON_SUITES, ...SOAK_SUITES] } },
      { extends: true, test: { name: 'soak', include: SOAK_SUITES } },
      { extends: true, test: { name: 'warm', include: DAEMON_SUITES, env: { CODEJAIL_TEST_RUN_PATH: 'warm' } } },
      {
        extends: true,
        test: { name: 'cold', include: DAEMON_SUITES, exclude: [...configDefaults.exclude, 'test/e2e/warm.test.ts'], env: { CODEJAIL_TEST_RUN_PATH: 'cold' } },
      },
      // Held runs (warm.holdAhead, src/run/held.ts): the same suites with each idle slot holding
      // its next warm run, started ahead.
      { extends: true, test: { name: 'held', include: DAEMON_SUITES, env: { CODEJAIL_TEST_RUN_PATH: 'held' } } },
    ],
  },
});
