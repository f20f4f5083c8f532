import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../../src';
import { model } from '../helpers';

const SCRIPT = path.join(__dirname, 'worker-script.js');

function runWorker(data: Record<string, unknown>): { worker: Worker; message: Promise<Record<string, unknown>> } {
  const worker = new Worker(SCRIPT, { workerData: data });
  const message = new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, message };
}

describe('worker_threads', () => {
  it('loads and infers in several workers at once with the same results as the main thread', async () => {
    const runs = 50;
    const workers = Array.from({ length: 4 }, () => runWorker({ model: model('mlp_tiny.onnx'), runs }));
    const m = await loadModel(model('mlp_tiny.onnx'));
    const expected: unknown[][] = [];
    for (let i = 0; i < runs; i++) {
      const x = new Tensor('float32', Float32Array.from({ length: 64 }, (_, k) => Math.sin(k * 0.01 * (i + 1))), [1, 64]);
      expected.push(Array.from((await m.infer({ x })).y.data as Float32Array));
    }
    for (const w of workers) {
      const msg = await w.message;
      expect(msg.error).toBeUndefined();
      expect(msg.results).toEqual(expected);
      await w.worker.terminate();
    }
    await m.dispose();
  });

  it('a process whose workers alone load nimify survives their termination mid-inference', () => {
    // Exercises two teardown races: Node unloading the addon when its last worker exits (native
    // threads still run its code), and a finished run's wake-up racing the env's teardown.
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, [path.join(__dirname, 'worker-only.js')], { encoding: 'utf8', timeout: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('ok\n');
      expect(r.status).toBe(0);
    }
  }, 120_000);

  it('terminating a worker mid-inference neither crashes nor leaks, and the process keeps inferring', async () => {
    const rssBefore: number[] = [];
    for (let cycle = 0; cycle < 6; cycle++) {
      // Odd cycles go through a native scheduler with two instances and a queue behind them.
      const scheduled = cycle % 2 === 1 ? { options: { instances: 2, batching: { maxQueueSize: 8 } }, queued: 4 } : {};
      const w = runWorker({ model: model('slow.onnx'), mode: 'slow', ...scheduled });
      const msg = await w.message;
      expect(msg.started).toBe(true);
      await new Promise((r) => setTimeout(r, 30));
      // The env cleanup hook terminates the ORT run, so this returns promptly instead of after the
      // million-iteration loop.
      const code = await w.worker.terminate();
      expect(code).toBe(1);
      if (cycle === 1) rssBefore.push(process.memoryUsage().rss);
    }
    const growth = process.memoryUsage().rss - rssBefore[0];
    expect(growth).toBeLessThan(150 * 1024 * 1024);
    const m = await loadModel(model('mlp_tiny.onnx'));
    const out = await m.infer({ x: new Tensor('float32', new Float32Array(64), [1, 64]) });
    expect(out.y.dims).toEqual([1, 10]);
    await m.dispose();
  });
});
