/**
 * Memory a model keeps after a run (issue 14 item 9): ORT's CPU memory arena keeps the largest
 * tensors a run ever needed for the model's life (`memoryArena: false` turns it off), and glibc
 * keeps freed heap pages until trimMemory() (malloc_trim) gives them back. Each case measures a
 * fresh child process's resident size (/proc/self/statm via process.memoryUsage.rss()), with
 * margins of tens of MB against effects of hundreds.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src';
import { getBinding } from '../../src/runtime/binding';
import { ROOT, model } from '../helpers';

const MiB = 1024 * 1024;

/** Runs `code` in `node --expose-gc` with `nimify` = this checkout's dist; returns what it printed as JSON. */
function child(code: string): Record<string, number | boolean> {
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', `const nimify = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});\n(async () => {\n${code}\n})().catch((e) => { console.error(e); process.exit(1); });`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

/**
 * embed_int64 on ids [1, 2^21]: Gather makes a [1, 2^21, 8] float32 intermediate (64 MiB), which
 * ORT takes from the session's allocator; the output ([1, 8], [1]) is tiny. Returns how much the
 * resident size grew from before the big run to after it (inputs dropped, GC done).
 */
const keptAfterHugeRun = (options: string) => `
  const m = await nimify.loadModel(${JSON.stringify(model('embed_int64.onnx'))}, ${options});
  const small = new nimify.Tensor('int64', new BigInt64Array(16), [1, 16]);
  for (let i = 0; i < 20; i++) await m.infer({ ids: small });
  global.gc();
  const before = process.memoryUsage.rss();
  let ids = new nimify.Tensor('int64', new BigInt64Array(1 << 21), [1, 1 << 21]);
  const out = await m.infer({ ids });
  ids = null;
  global.gc();
  await new Promise((r) => setTimeout(r, 50));
  global.gc();
  const after = process.memoryUsage.rss();
  console.log(JSON.stringify({ kept: after - before, rows: out.argmax.dims[0] }));
`;

describe('memoryArena', () => {
  it('validates its value', async () => {
    await expect(loadModel(model('mlp_tiny.onnx'), { memoryArena: 'off' as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('options.memoryArena'),
    });
  });

  it('off: a run with a huge intermediate tensor gives its memory back; on (ORT default) keeps it', () => {
    const on = child(keptAfterHugeRun('{}'));
    const off = child(keptAfterHugeRun('{ memoryArena: false }'));
    expect(on.rows).toBe(1);
    expect(off.rows).toBe(1);
    expect(on.kept).toBeGreaterThan(48 * MiB); // the arena holds the 64 MiB block
    expect(off.kept).toBeLessThan(16 * MiB);
  });

  it('true is accepted (the arena kept on explicitly)', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { memoryArena: true });
    await m.dispose();
  });
});

describe('trimMemory', () => {
  it('gives freed heap pages back to the OS', () => {
    // 3000 × 64 KiB buffers come from the main malloc heap (below glibc's mmap threshold); the
    // last one stays alive, so the heap's top cannot shrink by itself when the others are freed.
    const r = child(`
      const binding = require(${JSON.stringify(path.join(ROOT, 'dist', 'runtime', 'binding.js'))}).getBinding();
      let bufs = Array.from({ length: 3000 }, () => Buffer.alloc(64 * 1024, 1));
      const last = Buffer.alloc(64 * 1024, 1);
      const full = process.memoryUsage.rss();
      bufs = null;
      global.gc();
      await new Promise((r) => setTimeout(r, 100));
      global.gc();
      const freed = process.memoryUsage.rss();
      const released = binding.trimMemory();
      const trimmed = process.memoryUsage.rss();
      console.log(JSON.stringify({ full, freed, trimmed, released, last: last.length }));
    `);
    expect(r.released).toBe(true);
    expect((r.trimmed as number)).toBeLessThan((r.freed as number) - 100 * MiB);
  });

  it('is callable in this process and answers a boolean', () => {
    expect(typeof getBinding().trimMemory()).toBe('boolean');
  });
});
