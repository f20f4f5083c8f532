/**
 * The scheduler's batch formation (native/formation.h), unit-tested natively: builds
 * test/native/formation_test.cc with native/formation.cc using the system C++ compiler (the
 * flags of binding.gyp, warnings as errors) and runs it. No ORT, no addon, no timing: the C++
 * test drives a fake clock. Skipped, saying why, only where no C++ compiler exists (CI has one).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers';

function findCompiler(): string | null {
  for (const cxx of [process.env.CXX, 'c++', 'g++', 'clang++']) {
    if (cxx && spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status === 0) return cxx;
  }
  return null;
}

const cxx = findCompiler();
if (cxx === null) console.warn('test/native/formation.test.ts: skipped, no C++ compiler found (set CXX, or install g++)');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-formation-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.skipIf(cxx === null)('batch formation (native unit tests)', () => {
  it('compiles warning-free and passes every check', () => {
    const exe = path.join(dir, 'formation_test');
    const build = spawnSync(
      cxx!,
      ['-std=c++17', '-Wall', '-Wextra', '-Werror', '-O1', path.join(ROOT, 'native', 'formation.cc'), path.join(ROOT, 'test', 'native', 'formation_test.cc'), '-o', exe],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
    const run = spawnSync(exe, [], { encoding: 'utf8', timeout: 30_000 });
    expect(run.stdout).toMatch(/^ok: \d+ checks\n$/);
    expect(run.status).toBe(0);
  }, 150_000);
});
