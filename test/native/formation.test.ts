/**
 * The scheduler's batch formation (native/formation.h), unit-tested natively: builds
 * test/native/formation_test.cc with native/formation.cc using the system C++ compiler (the
 * flags of binding.gyp, warnings as errors) and runs it. No ORT, no addon, no timing: the C++
 * test drives a fake clock. Skipped, saying why, only where no C++ compiler exists (CI has one).
 */
import { describe, expect, it } from 'vitest';
import { buildAndRun, findCompiler } from './compile';

const cxx = findCompiler();
if (cxx === null) console.warn('test/native/formation.test.ts: skipped, no C++ compiler found (set CXX, or install g++)');

describe.skipIf(cxx === null)('batch formation (native unit tests)', () => {
  it('compiles warning-free and passes every check', () => {
    const { build, run } = buildAndRun(cxx!, ['native/formation.cc', 'test/native/formation_test.cc']);
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
    expect(run!.stdout).toMatch(/^ok: \d+ checks\n$/);
    expect(run!.status).toBe(0);
  }, 150_000);

  // (Here, beside the scheduler's estimator: the same kind of unit, for models without a scheduler.)
  it('the run-cost estimate of models without a scheduler (native/run_cost.h) passes every check', () => {
    const { build, run } = buildAndRun(cxx!, ['test/native/run_cost_test.cc']);
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
    expect(run!.stdout).toMatch(/^ok: \d+ checks\n$/);
    expect(run!.status).toBe(0);
  }, 150_000);
});
