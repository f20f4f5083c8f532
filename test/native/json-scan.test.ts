/**
 * The JSON number scanner (native/json_scan.h), unit- and fuzz-tested natively:
 * test/native/json_scan_test.cc with native/json_scan.cc, built with AddressSanitizer and UBSan
 * where the compiler has them (CI installs them), so a read or write past any buffer fails the
 * test. test/protocol/infer-json.test.ts checks the same scanner through the addon against
 * JSON.parse. Skipped, saying why, only where no C++ compiler exists.
 */
import { describe, expect, it } from 'vitest';
import { buildAndRun, findCompiler, hasSanitizers } from './compile';

const cxx = findCompiler();
if (cxx === null) console.warn('test/native/json-scan.test.ts: skipped, no C++ compiler found (set CXX, or install g++)');
const sanitizers = cxx !== null && hasSanitizers(cxx);
if (cxx !== null && !sanitizers) console.warn('test/native/json-scan.test.ts: AddressSanitizer/UBSan unavailable, running the fuzz checks without them');

describe.skipIf(cxx === null)('JSON number scanner (native unit and fuzz tests)', () => {
  it('compiles warning-free and passes every check on 200,000 mutated bodies', () => {
    const flags = sanitizers ? ['-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all'] : [];
    const { build, run } = buildAndRun(cxx!, ['native/json_scan.cc', 'test/native/json_scan_test.cc'], flags);
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
    expect(run!.stderr).toBe('');
    expect(run!.stdout).toMatch(/^ok: \d+ checks\n$/);
    expect(run!.status).toBe(0);
  }, 150_000);
});
