import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ROOT, model } from '../helpers';

// Completion delivery has two paths (src/runtime/completions.ts): threadsafe-function wake-ups (the
// default) and event-loop polling (NIMIFY_POLL_US > 0). Each child process runs short runs
// (delivered while polling) and a long one (polling gives up, a wake-up delivers it).
const SCRIPT = `
const { loadModel, Tensor } = require('./dist');
(async () => {
  const m = await loadModel(${JSON.stringify(model('mlp_tiny.onnx'))});
  const slow = await loadModel(${JSON.stringify(model('slow.onnx'))});
  const x = new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]);
  const want = Array.from(m.inferSync({ x }).y.data);
  let ok = 0;
  for (let i = 0; i < 300; i++) {
    const out = await m.infer({ x });
    if (JSON.stringify(Array.from(out.y.data)) === JSON.stringify(want)) ok++;
  }
  const burst = await Promise.all(Array.from({ length: 50 }, () => m.infer({ x })));
  ok += burst.filter((o) => JSON.stringify(Array.from(o.y.data)) === JSON.stringify(want)).length;
  const long = await slow.infer({ x: new Tensor('float32', new Float32Array(65536).fill(0.01), [256, 256]), iters: new Tensor('int64', new BigInt64Array([20n]), []) });
  console.log('OK', ok, long.y.dims.join('x'), m.pending, slow.pending);
  await m.dispose();
  await slow.dispose();
})().catch((e) => { console.log('ERR', e.code, e.message); });
`;

function run(env: Record<string, string>): string {
  const r = spawnSync(process.execPath, ['-e', SCRIPT], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0); // the process exits by itself: no handle is left referenced
  return r.stdout;
}

describe('completion delivery', () => {
  it('delivers every result through wake-ups (default)', () => {
    expect(run({ NIMIFY_POLL_US: '0' })).toContain('OK 350 256x256 0 0');
    // A single executor thread still serves bursts and long runs.
    expect(run({ NIMIFY_POLL_US: '0', NIMIFY_THREADS: '1' })).toContain('OK 350 256x256 0 0');
  });

  it('delivers every result while polling and falls back to wake-ups for long runs', () => {
    expect(run({ NIMIFY_POLL_US: '50' })).toContain('OK 350 256x256 0 0');
  });
});
