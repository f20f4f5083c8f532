/**
 * `nimify tune`: the sweep grid, a real sweep of the tiny MLP within a small time budget
 * (configurations that do not fit are skipped and counted), the best one marked and written as a
 * config.json that the real config parser accepts and that a real `nimify serve` child process
 * loads and serves; --force rules; an impossible latency budget; bad flags. Behaviour only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor, type CliIo } from '../../src/cli/io';
import { candidateConfig, run, sweepGrid, writeTarget, type TuneReport } from '../../src/cli/tune';
import { DEFAULT_BATCHING, parseModelConfig } from '../../src/repository/config';
import { MODELS, ROOT } from '../helpers';

const TINY = path.join(MODELS, 'mlp_tiny.onnx');
const CLI = path.join(ROOT, 'dist', 'cli', 'index.js');

async function tune(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIo = { out: (t) => stdout.push(t), err: (t) => stderr.push(t), env, isTTY: false };
  let code: number;
  let error: Error | undefined;
  try {
    code = await run(argv, io);
  } catch (err) {
    error = err as Error;
    code = exitCodeFor(err);
  }
  return { code, error, out: stdout.join('\n'), err: stderr.join('\n') };
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-tune-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** `nimify serve <dir>` on a free port; resolves with its address and everything it printed so far. */
function serve(dir: string): Promise<{ base: string; output: () => string }> {
  const child = spawn(process.execPath, [CLI, 'serve', dir, '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /serving .* at (http:\/\/\S+)/.exec(out);
      if (m && /config \{.*\}\n/.test(out)) resolve({ base: m[1], output: () => out });
    });
    child.stderr!.on('data', (d: Buffer) => (out += d));
    child.on('exit', (code) => reject(new Error(`nimify serve exited ${code}:\n${out}`)));
  });
}

describe('the sweep grid', () => {
  it("starts with `nimify serve`'s default, covers instances × threads × batching, and fits the batch", () => {
    const grid = sweepGrid({ maxInstances: 4, cpus: 4, batched: true, batch: 1 });
    expect(grid[0]).toMatchObject({ instances: 1, batching: DEFAULT_BATCHING, intraOpNumThreads: undefined });
    expect(new Set(grid.map((c) => c.instances))).toEqual(new Set([1, 2, 4]));
    expect(new Set(grid.map((c) => c.intraOpNumThreads))).toEqual(new Set([undefined, 1, 2, 4]));
    expect(grid.some((c) => c.batching === false)).toBe(true);
    expect(new Set(grid.map((c) => (c.batching ? c.batching.maxBatchSize : 0)))).toEqual(new Set([0, 8, 32, 128]));
    expect(new Set(grid.map((c) => c.label)).size).toBe(grid.length); // no configuration twice
    // One change from the default comes before two.
    const firstTwoChanges = grid.findIndex((c) => c.instances !== 1 && c.batching === false);
    const oneChange = grid.findIndex((c) => c.instances === 1 && c.batching === false);
    expect(oneChange).toBeLessThan(firstTwoChanges);
    // Batch sizes below the request's rows are not tried; a model without a batch dim is not batched.
    expect(sweepGrid({ maxInstances: 1, cpus: 2, batched: true, batch: 16 }).filter((c) => c.batching && c.batching.maxBatchSize === 8)).toEqual([]);
    expect(sweepGrid({ maxInstances: 2, cpus: 2, batched: false, batch: 1 }).slice(1).every((c) => c.batching === false)).toBe(true);
  });

  it('a candidate replaces only what tune chooses; the rest of the base config stays', () => {
    const base = { timeoutMs: 1234, runtime: { graphOptimizationLevel: 'basic' as const, intraOpNumThreads: 8 }, instances: 3 };
    const c = candidateConfig(base, { label: '', instances: 2, batching: false, intraOpNumThreads: 1 });
    expect(c).toEqual({ timeoutMs: 1234, instances: 2, batching: false, runtime: { graphOptimizationLevel: 'basic', intraOpNumThreads: 1 } });
    expect(candidateConfig(base, { label: '', instances: 1, batching: { maxBatchSize: 8 }, intraOpNumThreads: undefined }).runtime).toEqual({ graphOptimizationLevel: 'basic' });
  });
});

describe('nimify tune', () => {
  it('sweeps within the budget, marks the best, writes a config.json that parseModelConfig accepts and `nimify serve` loads', async () => {
    const dir = path.join(tmp, 'standalone');
    fs.mkdirSync(dir);
    const model = path.join(dir, 'tiny.onnx');
    fs.copyFileSync(TINY, model);
    const json = path.join(dir, 'tune.json');
    const r = await tune([model, '--budget', '3', '--concurrency', '2', '--write', '--json', json]);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as TuneReport;
    expect(report.measured).toBeGreaterThan(0);
    expect(report.measured + report.skipped + report.rows.filter((x) => x.error).length).toBe(report.rows.length);
    // The budget bounds the sweep: whatever did not fit was skipped and is said to be.
    if (report.skipped > 0) expect(r.out).toContain(`${report.skipped} skipped: the 3 s budget ran out`);
    const measured = report.rows.filter((x) => x.result !== null);
    for (const row of measured) {
      expect(row.result!.inferences).toBeGreaterThan(0);
      expect(row.result!.latencyMs.p50!).toBeLessThanOrEqual(row.result!.latencyMs.p99!);
    }
    expect(report.best).not.toBeNull();
    const best = report.rows[report.best!];
    expect(best.result!.samplesPerSec).toBe(Math.max(...measured.map((x) => x.result!.samplesPerSec)));
    expect(r.out).toMatch(new RegExp(`^\\*\\s+${report.best! + 1}\\s+${best.candidate.label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
    expect(r.err).toContain(`${report.rows.length} configurations, 3 s budget`);

    // Written where `nimify serve` reads it: a one-model repository beside the file.
    const repo = path.join(dir, 'tiny-repository');
    expect(report.written).toBe(path.join(repo, 'tiny', 'config.json'));
    const written = JSON.parse(fs.readFileSync(report.written!, 'utf8'));
    expect(parseModelConfig('config.json', written)).toEqual(written);
    expect(written).toEqual({ name: 'tiny', ...report.bestConfig });
    expect(fs.readFileSync(path.join(repo, 'tiny', '1', 'model.onnx')).equals(fs.readFileSync(model))).toBe(true);

    const { base, output } = await serve(repo);
    const served = JSON.parse(/config (\{.*\})\n/.exec(output())![1]);
    expect(served.instances).toBe(written.instances);
    if (written.batching === false) expect(served.batching).toBe(false);
    else expect(served.batching).toMatchObject(written.batching);
    expect(served.runtime.intraOpNumThreads).toBe(written.runtime?.intraOpNumThreads);
    const res = await fetch(`${base}/v2/models/tiny/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] }) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: Array<{ shape: number[] }> }).outputs[0].shape).toEqual([1, 10]);

    // A second --write refuses to overwrite, before measuring anything.
    const again = await tune([model, '--budget', '3', '--write']);
    expect(again.code).toBe(2);
    expect(again.error?.message).toMatch(/--write: .*config\.json exists; pass --force/);
    expect(again.err).toBe('');
  }, 60_000);

  it('in a repository: writes <repo>/<model>/config.json; --force keeps the fields tune does not choose', async () => {
    const repo = path.join(tmp, 'repo');
    fs.mkdirSync(path.join(repo, 'mlp', '1'), { recursive: true });
    fs.copyFileSync(TINY, path.join(repo, 'mlp', '1', 'model.onnx'));
    fs.writeFileSync(path.join(repo, 'mlp', 'config.json'), JSON.stringify({ timeoutMs: 4321, instances: 1, batching: false }));
    const model = path.join(repo, 'mlp', '1', 'model.onnx');
    const refused = await tune([model, '--budget', '2', '--write']);
    expect(refused.code).toBe(2);
    const r = await tune([model, '--budget', '2', '--concurrency', '2', '--write', '--force']);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const written = JSON.parse(fs.readFileSync(path.join(repo, 'mlp', 'config.json'), 'utf8'));
    expect(written.timeoutMs).toBe(4321);
    expect(written.name).toBe('mlp');
    expect(parseModelConfig('config.json', written)).toEqual(written);
    expect(r.out).toContain(`serve it with: nimify serve ${repo}`);
    expect(fs.readdirSync(repo)).toEqual(['mlp']); // nothing beside the model folder
  }, 60_000);

  it('a model.onnx outside any repository (~/Downloads/model.onnx) is a standalone file: its folder is not taken for a model', async () => {
    const downloads = path.join(tmp, 'Downloads');
    fs.mkdirSync(downloads);
    fs.copyFileSync(TINY, path.join(downloads, 'model.onnx'));
    const r = await tune([path.join(downloads, 'model.onnx'), '--budget', '2', '--concurrency', '2', '--write']);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const repo = path.join(downloads, 'model-repository');
    expect(fs.existsSync(path.join(downloads, 'config.json'))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(repo, 'model', 'config.json'), 'utf8')).name).toBe('model');
    expect(fs.existsSync(path.join(repo, 'model', '1', 'model.onnx'))).toBe(true);
    expect(r.out).toContain(`serve it with: nimify serve ${repo}`);
  }, 30_000);

  it('the repository layout: <repo>/<m>/<v>/model.onnx, or <repo>/<m>/model.onnx beside a config.json; a folder that is no model name fails naming --write', () => {
    const repo = path.join(tmp, 'layouts');
    fs.mkdirSync(path.join(repo, 'flat'), { recursive: true });
    fs.copyFileSync(TINY, path.join(repo, 'flat', 'model.onnx'));
    fs.writeFileSync(path.join(repo, 'flat', 'config.json'), JSON.stringify({ timeoutMs: 99 }));
    expect(writeTarget(path.join(repo, 'flat', 'model.onnx'), { repository: undefined, force: true })).toEqual({ name: 'flat', repository: repo, configPath: path.join(repo, 'flat', 'config.json'), modelCopy: null, existing: { timeoutMs: 99 } });
    fs.mkdirSync(path.join(repo, 'versioned', '7'), { recursive: true });
    fs.copyFileSync(TINY, path.join(repo, 'versioned', '7', 'model.onnx'));
    expect(writeTarget(path.join(repo, 'versioned', '7', 'model.onnx'), { repository: undefined, force: false })).toMatchObject({ name: 'versioned', repository: repo, configPath: path.join(repo, 'versioned', 'config.json'), modelCopy: null });
    expect(() => writeTarget(path.join(repo, 'versioned', '7', 'model.onnx'), { repository: path.join(tmp, 'elsewhere'), force: false })).toThrow(/^--repository: expected only for a standalone model file; .* is already in the repository/);
    // A version folder inside a folder whose name is no model name.
    fs.mkdirSync(path.join(repo, 'bad name', '1'), { recursive: true });
    fs.copyFileSync(TINY, path.join(repo, 'bad name', '1', 'model.onnx'));
    expect(() => writeTarget(path.join(repo, 'bad name', '1', 'model.onnx'), { repository: undefined, force: false })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^--write: the model folder .*bad name names the model "bad name", which is not a valid model name: expected letters, digits.*received "bad name"/) }),
    );
    // A standalone file whose name makes no model name ('..' is refused).
    fs.copyFileSync(TINY, path.join(repo, 'a..b.onnx'));
    expect(() => writeTarget(path.join(repo, 'a..b.onnx'), { repository: undefined, force: false })).toThrow(/^--write: the file name a\.\.b\.onnx names the model "a\.\.b", which is not a valid model name: expected/);
    // A model.onnx in a folder with no version folder and no config.json is standalone.
    fs.mkdirSync(path.join(tmp, 'dl'));
    expect(writeTarget(path.join(tmp, 'dl', 'model.onnx'), { repository: undefined, force: false })).toMatchObject({ name: 'model', repository: path.join(tmp, 'dl', 'model-repository'), modelCopy: path.join(tmp, 'dl', 'model-repository', 'model', '1', 'model.onnx') });
  });

  it('--write --force over an existing config.json: that file is the base, its other fields are kept, and --config is refused', async () => {
    const repo = path.join(tmp, 'keep');
    fs.mkdirSync(path.join(repo, 'mlp', '1'), { recursive: true });
    fs.copyFileSync(TINY, path.join(repo, 'mlp', '1', 'model.onnx'));
    fs.writeFileSync(path.join(repo, 'mlp', 'config.json'), JSON.stringify({ timeoutMs: 4321, runtime: { graphOptimizationLevel: 'extended' } }));
    const other = path.join(tmp, 'other-config.json');
    fs.writeFileSync(other, JSON.stringify({ timeoutMs: 999, versionPolicy: 'all' }));
    // Measuring one base and writing another would write a configuration nobody measured.
    const refused = await tune([path.join(repo, 'mlp', '1', 'model.onnx'), '--config', other, '--budget', '2', '--write', '--force']);
    expect(refused.code).toBe(2);
    expect(refused.error?.message).toMatch(/^--config: with --write the existing .*config\.json is the base config/);
    const r = await tune([path.join(repo, 'mlp', '1', 'model.onnx'), '--budget', '2', '--concurrency', '2', '--write', '--force']);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const written = JSON.parse(fs.readFileSync(path.join(repo, 'mlp', 'config.json'), 'utf8'));
    expect(written).toMatchObject({ name: 'mlp', timeoutMs: 4321, runtime: { graphOptimizationLevel: 'extended' } });
    expect(parseModelConfig('config.json', written)).toEqual(written);
  }, 30_000);

  it('no configuration within an impossible latency budget: exit 1, nothing written', async () => {
    const dir = path.join(tmp, 'strict');
    fs.mkdirSync(dir);
    fs.copyFileSync(TINY, path.join(dir, 'm.onnx'));
    const r = await tune([path.join(dir, 'm.onnx'), '--budget', '2', '--concurrency', '2', '--latency-budget-ms', '0.000001', '--write']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('no measured configuration had p99 ≤ 0.000001 ms');
    expect(r.out).toMatch(/\s+no$/m);
    expect(fs.existsSync(path.join(dir, 'm-repository'))).toBe(false);
  }, 30_000);

  it('bad flags exit 2 naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[TINY, '--budget', '0'], /--budget: expected an integer/],
      [[TINY, '--latency-budget-ms', 'fast'], /--latency-budget-ms: expected a positive number/],
      [[TINY, '--concurrency', '1,2'], /--concurrency: expected an integer/],
      [[TINY, '--max-instances', '0'], /--max-instances/],
      [[TINY, '--force'], /--force: only with --write/],
      [['http://127.0.0.1:8000'], /tune: expected a model file/],
      [[path.join(MODELS, 'nope.onnx')], /does not exist/],
      [[path.join(MODELS, 'model.onnx', '..', 'x.txt')], /expected an \.onnx model file/],
      [[TINY, '--shape', 'y=1'], /--shape: the model has no input 'y'/],
    ];
    for (const [argv, re] of cases) {
      const r = await tune(argv);
      expect(r.code, argv.join(' ')).toBe(/does not exist/.test(String(re)) ? 1 : 2);
      expect(r.error?.message).toMatch(re);
    }
  });
});
