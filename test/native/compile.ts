/**
 * Builds and runs a native unit test (a C++ main() over native/ sources, no napi, no ORT) with
 * the system C++ compiler and the flags of binding.gyp, warnings as errors. Shared by the
 * test/native/*.test.ts runners.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../helpers';

/** The first C++ compiler that answers (CXX first), or null where none is installed. */
export function findCompiler(): string | null {
  for (const cxx of [process.env.CXX, 'c++', 'g++', 'clang++']) {
    if (cxx && spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status === 0) return cxx;
  }
  return null;
}

export interface NativeRun {
  /** The compiler's stderr and status. */
  build: { stderr: string; status: number | null };
  /** The test's stdout and status (null when the build failed). */
  run: { stdout: string; stderr: string; status: number | null } | null;
}

/**
 * Compiles `sources` (paths from the repository root) into a fresh temporary folder with `flags`
 * added, runs the result, and removes the folder.
 */
export function buildAndRun(cxx: string, sources: string[], flags: string[] = []): NativeRun {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-native-test-'));
  try {
    const exe = path.join(dir, 'test');
    const b = spawnSync(cxx, ['-std=c++17', '-Wall', '-Wextra', '-Werror', '-O1', ...flags, ...sources.map((s) => path.join(ROOT, s)), '-o', exe], { encoding: 'utf8', timeout: 120_000 });
    if (b.status !== 0) return { build: { stderr: b.stderr, status: b.status }, run: null };
    const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 60_000 });
    return { build: { stderr: b.stderr, status: b.status }, run: { stdout: r.stdout, stderr: r.stderr, status: r.status } };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether `cxx` can build and run a program with AddressSanitizer and UBSan (the runtime libraries are installed). */
export function hasSanitizers(cxx: string): boolean {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-asan-probe-'));
  try {
    const src = path.join(dir, 'probe.cc');
    fs.writeFileSync(src, 'int main() { return 0; }\n');
    const exe = path.join(dir, 'probe');
    return spawnSync(cxx, ['-fsanitize=address,undefined', src, '-o', exe], { stdio: 'ignore', timeout: 60_000 }).status === 0 && spawnSync(exe, [], { stdio: 'ignore' }).status === 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
