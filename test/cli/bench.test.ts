/**
 * `nimify bench`: flag parsing and validation (exit 2 naming the flag), the in-process closed
 * loop on the real tiny MLP (sane numbers, the configuration `nimify serve` would use, the
 * JSON/Markdown/SVG files), `--compare onnxruntime-node` (both engines, ratios, versions), and
 * the HTTP mode against a real `nimify serve` child process on a real port, JSON and binary
 * bodies, with zero errors. Behaviour only: no assertion depends on how fast anything ran.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runtimeInfo } from '../../src/runtime/binding';
import { loadForBench, parseConcurrency, parseDuration, parseShapes, planInputs } from '../../src/cli/bench-engine';
import { isUrl, parseServerUrl } from '../../src/cli/target';
import type { BenchReport } from '../../src/cli/bench-report';
import { resolveOnnxruntimeNode, run } from '../../src/cli/bench';
import { exitCodeFor, type CliIo } from '../../src/cli/io';
import { completeConfig, INFER_TIMEOUT_MS_DEFAULT, loadOptionsFor, WARMUP_DIM, WARMUP_MAX_ELEMENTS } from '../../src/repository/config';
import { MODELS, ROOT } from '../helpers';

const TINY = path.join(MODELS, 'mlp_tiny.onnx');
const CLI = path.join(ROOT, 'dist', 'cli', 'index.js');
const SHORT = ['--duration', '300ms', '--warmup', '100ms'];

function capture(env: NodeJS.ProcessEnv = {}): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t), env, isTTY: false };
}

/** run() as index.ts runs it: a thrown error becomes its exit code. */
async function bench(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const io = capture(env);
  let code: number;
  let error: Error | undefined;
  try {
    code = await run(argv, io);
  } catch (err) {
    error = err as Error;
    code = exitCodeFor(err);
  }
  return { code, error, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

/** Well-formed XML: balanced tags, quoted attributes, no stray '<' or '&' (enough for an SVG we write). */
function expectWellFormedXml(text: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  let roots = 0;
  while ((m = re.exec(text)) !== null) {
    const between = text.slice(last, m.index);
    expect(between, `stray markup before ${m[0]}`).not.toMatch(/<|&(?!(amp|lt|gt|quot|apos|#\d+);)/);
    last = re.lastIndex;
    if (m[1]) expect(stack.pop(), `closing ${m[2]}`).toBe(m[2]);
    else if (!m[4]) {
      if (stack.length === 0) roots++;
      stack.push(m[2]);
    }
  }
  expect(text.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

let tmp: string;
let silero: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-bench-'));
  // silero VAD v5, a real model whose ops refuse length-1 axes: about 6 MB from the registry once, cached after.
  silero = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'fetch-test-models.js'), 'silero_vad_v5'], { encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}, 200_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('flag values', () => {
  it('durations, concurrency lists and shapes parse, or fail naming the flag', () => {
    expect(parseDuration('--duration', '10s')).toBe(10_000);
    expect(parseDuration('--duration', '500ms')).toBe(500);
    expect(parseDuration('--duration', '2m')).toBe(120_000);
    expect(parseDuration('--duration', '1.5')).toBe(1500);
    for (const bad of ['', '10x', '-1s', 's', '1e3ms', '25h']) expect(() => parseDuration('--duration', bad)).toThrow(/^--duration: expected a duration/);
    expect(parseConcurrency('--concurrency', '1,8,64')).toEqual([1, 8, 64]);
    expect(parseConcurrency('--concurrency', '8, 1 ,8')).toEqual([8, 1]);
    for (const bad of ['0', '1,,2', 'a', '1.5', '-4', '5000']) expect(() => parseConcurrency('--concurrency', bad)).toThrow(/^--concurrency: expected a comma-separated list/);
    expect(parseShapes('--shape', ['x=2,64', 's='])).toEqual(new Map([['x', [2, 64]], ['s', []]]));
    expect(() => parseShapes('--shape', ['x=2,0'])).toThrow(/--shape: expected name=d1,d2/);
    expect(() => parseShapes('--shape', ['x'])).toThrow(/--shape: expected name=d1,d2/);
    expect(() => parseShapes('--shape', ['x=1', 'x=2'])).toThrow(/--shape: input 'x' is given twice/);
  });

  it('plans request shapes: batch dim from --batch or --shape, other variable dims from --shape or the default', () => {
    const inputs = [{ name: 'x', type: 'float32' as const, shape: ['batch', 'seq', 8] }, { name: 'k', type: 'int64' as const, shape: ['batch'] }];
    expect(planInputs(inputs, { batched: true, batch: 4, shapes: new Map() })).toEqual({ batch: 4, inputs: [{ name: 'x', type: 'float32', dims: [4, WARMUP_DIM, 8] }, { name: 'k', type: 'int64', dims: [4] }] });
    expect(planInputs(inputs, { batched: true, batch: undefined, shapes: new Map([['x', [3, 5, 8]]]) }).batch).toBe(3);
    expect(() => planInputs(inputs, { batched: true, batch: 2, shapes: new Map([['x', [3, 5, 8]]]) })).toThrow(/--shape: dim 0 of 'x' is the batch dim; it must equal --batch 2/);
    expect(() => planInputs(inputs, { batched: true, batch: 1, shapes: new Map([['x', [1, 5, 9]]]) })).toThrow(/--shape: dim 2 of input 'x' is fixed at 8/);
    expect(() => planInputs(inputs, { batched: true, batch: 1, shapes: new Map([['y', [1]]]) })).toThrow(/--shape: the model has no input 'y'/);
    expect(() => planInputs(inputs, { batched: false, batch: 2, shapes: new Map() })).toThrow(/--batch: the model has no batch dim/);
    expect(() => planInputs([{ name: 'z', type: 'float32', shape: null }], { batched: false, batch: undefined, shapes: new Map() })).toThrow(/--shape z=d1,d2/);
  });

  it('in-process requests carry the deadline `nimify serve` gives them, so an unbatched model runs where the server runs it', async () => {
    const served = await loadForBench(TINY, { batching: false }, { batch: undefined, shapes: new Map() });
    const timed = await loadForBench(TINY, { batching: false, timeoutMs: 250 }, { batch: undefined, shapes: new Map() });
    try {
      expect(served.inferOptions).toEqual({ timeoutMs: INFER_TIMEOUT_MS_DEFAULT });
      expect(timed.inferOptions).toEqual({ timeoutMs: 250 });
      // With a deadline, a model without a scheduler never runs on the JS thread (as in the server).
      for (let i = 0; i < 10; i++) await served.model.infer(served.feeds[i % served.feeds.length], served.inferOptions);
      expect(served.model.stats().inlineBatches).toBe(0);
      expect(served.model.stats().succeeded).toBe(10);
    } finally {
      await Promise.all([served.model.dispose(), timed.model.dispose()]);
    }
  });

  it('the shapes bench and tune invent are the automatic warmup\'s: same non-batch dims, the batch dim from --batch', async () => {
    for (const [file, batch] of [[TINY, 1], [TINY, 8], [path.join(MODELS, 'embed_int64.onnx'), 4], [silero, undefined]] as const) {
      const setup = await loadForBench(file, {}, { batch, shapes: new Map() });
      try {
        const warmup = completeConfig('m', {}, {}, setup.model).warmup[0]!.inputs;
        for (const p of setup.inputs) {
          const w = warmup[p.name]!.shape;
          expect(p.dims.slice(setup.batched ? 1 : 0), `${file} ${p.name}`).toEqual(w.slice(setup.batched ? 1 : 0));
          if (setup.batched) expect(p.dims[0]).toBe(batch);
        }
      } finally {
        await setup.model.dispose();
      }
    }
    // Large inputs shrink their variable dims as the warmup does, whatever the batch size.
    const big = [{ name: 'v', type: 'float32' as const, shape: ['b', 'h', 'w', 'c'] }];
    const d = planInputs(big, { batched: true, batch: 64, shapes: new Map() }).inputs[0]!.dims;
    expect(d[0]).toBe(64);
    expect(d[1] ** 3).toBeLessThanOrEqual(WARMUP_MAX_ELEMENTS);
    expect((2 * d[1]) ** 3).toBeGreaterThan(WARMUP_MAX_ELEMENTS);
  });

  it('server URLs: http(s) only; a /v2/models/<m> path names the model', () => {
    expect(parseServerUrl('http://127.0.0.1:8000')).toEqual({ base: 'http://127.0.0.1:8000', model: undefined, version: undefined });
    expect(parseServerUrl('https://h/prefix/v2/models/m/versions/3/')).toEqual({ base: 'https://h/prefix', model: 'm', version: '3' });
    expect(() => parseServerUrl('ftp://h/x')).toThrow(/<url>: expected an http: or https: URL/);
    expect(() => parseServerUrl('http://')).toThrow(/<url>: expected http\(s\):\/\/host:port/);
    expect(parseServerUrl('http://h/v2/models/a%20b/versions/2')).toMatchObject({ model: 'a b', version: '2' });
    // A %-escape that is not UTF-8 is a usage error naming <url>, not a URIError.
    for (const bad of ['http://h/v2/models/%E0', 'http://h/v2/models/m/versions/%FF']) {
      expect(() => parseServerUrl(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^<url>: expected a path whose %-escapes are UTF-8, received .*%(E0|FF)/) }));
    }
    expect([isUrl('http://h'), isUrl('HTTPS://h'), isUrl('ftp://h'), isUrl('model.onnx'), isUrl('./http:/x'), isUrl('C:\\m.onnx')]).toEqual([true, true, true, false, false, false]);
  });

  it('bad flags and arguments exit 2 and name the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[TINY, '--duration', '10x'], /--duration/],
      [[TINY, '--warmup', 'soon'], /--warmup/],
      [[TINY, '--concurrency', '0,8'], /--concurrency/],
      [[TINY, '--batch', '0'], /--batch/],
      [[TINY, '--batch', '33'], /--batch: expected at most 32/],
      [[TINY, '--compare', 'tensorflow'], /--compare: expected one of onnxruntime-node/],
      [[TINY, '--binary'], /--binary: only against a server URL/],
      [[TINY, '--max-batch-size', '-1'], /--max-batch-size/],
      [['http://127.0.0.1:1', '--compare', 'onnxruntime-node'], /--compare: only for a model file/],
      [['ftp://127.0.0.1/x'], /<url>/],
      [['http://127.0.0.1:1/v2/models/%E0'], /<url>: expected a path whose %-escapes are UTF-8/],
      [[TINY, '--shape', 'x=1,63'], /--shape: dim 1 of input 'x' is fixed at 64/],
      [[], /expected one model file or server URL/],
      [[TINY, '--svg', os.tmpdir()], /--svg: expected a file path to write, received the directory/],
    ];
    for (const [argv, re] of cases) {
      const r = await bench([...SHORT, ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.error?.message).toMatch(re);
    }
    // NIMIFY_BENCH_* mirrors the flags; a bad value is refused naming the flag.
    const env = await bench([TINY], { NIMIFY_BENCH_DURATION: 'long' });
    expect(env.code).toBe(2);
    expect(env.error?.message).toMatch(/--duration/);
  });

  it('the real binary: exit 2 and the flag on stderr; --help exits 0', () => {
    const bad = spawnSync(process.execPath, [CLI, 'bench', TINY, '--concurrency', '1,x'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--concurrency: expected a comma-separated list/);
    const help = spawnSync(process.execPath, [CLI, 'bench', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const flag of ['--concurrency', '--duration', '--warmup', '--batch', '--binary', '--model', '--compare', '--json', '--md', '--svg', '--shape']) expect(help.stdout).toContain(flag);
  });
});

describe('in-process', () => {
  it('measures every level with sane numbers, as `nimify serve` would run the model, and writes JSON, Markdown and SVG', async () => {
    const files = { json: path.join(tmp, 'r.json'), md: path.join(tmp, 'r.md'), svg: path.join(tmp, 'out', 'r.svg') };
    const r = await bench([TINY, '--concurrency', '1,4', '--batch', '2', ...SHORT, '--json', files.json, '--md', files.md, '--svg', files.svg]);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(files.json, 'utf8')) as BenchReport;
    expect(report).toMatchObject({ tool: 'nimify bench', mode: 'in-process', batch: 2, concurrency: [1, 4], durationMs: 300, warmupMs: 100, ratios: null });
    expect(report.model).toEqual({ name: 'mlp_tiny', batched: true, inputs: [{ name: 'x', type: 'float32', dims: [2, 64] }] });
    // What was measured is what `nimify serve mlp_tiny.onnx` runs: its own config completion.
    expect(report.configuration).toEqual(JSON.parse(JSON.stringify(loadOptionsFor({}, {}))));
    expect(report.engines.map((e) => e.name)).toEqual(['nimify']);
    expect(report.engines[0].runtime).toEqual({ version: runtimeInfo().version, path: runtimeInfo().library });
    const levels = report.engines[0].levels;
    expect(levels.map((l) => l.concurrency)).toEqual([1, 4]);
    for (const l of levels) {
      expect(l.inferences).toBeGreaterThan(0);
      expect(l.errors).toBe(0);
      expect(l.seconds).toBeGreaterThan(0.2);
      expect(l.inferencesPerSec / (l.inferences / l.seconds)).toBeCloseTo(1, 2);
      expect(l.samplesPerSec / l.inferencesPerSec).toBeCloseTo(2, 3);
      const lat = l.latencyMs;
      expect(lat.p50).toBeGreaterThan(0);
      expect(lat.p50!).toBeLessThanOrEqual(lat.p90!);
      expect(lat.p90!).toBeLessThanOrEqual(lat.p99!);
      expect(lat.p99!).toBeLessThanOrEqual(lat.max!);
      expect(lat.mean!).toBeLessThanOrEqual(lat.max!);
      expect(l.eventLoopDelayP99Ms).not.toBeNull();
      expect(l.eventLoopDelayP99Ms!).toBeGreaterThanOrEqual(0);
    }
    // The table on stdout, one progress line per level on stderr (not a TTY).
    expect(r.out).toMatch(/engine\s+conc\s+inf\/s\s+samples\/s\s+p50 ms\s+p90 ms\s+p99 ms\s+max ms\s+mean ms\s+ELD p99 ms\s+errors/);
    expect(r.out).toMatch(/^nimify\s+1\s/m);
    expect(r.out).toMatch(/^nimify\s+4\s/m);
    expect(r.out).toContain('x float32 [2, 64]');
    expect(r.err.split('\n').filter((l) => l.startsWith('nimify c='))).toHaveLength(2);
    const md = fs.readFileSync(files.md, 'utf8');
    expect(md).toMatch(/^# nimify bench: mlp_tiny/);
    const rows = md.split('\n').filter((l) => l.startsWith('| nimify |'));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.split('|').length).toBe(md.split('\n').find((l) => l.startsWith('| engine'))!.split('|').length);
    const svg = fs.readFileSync(files.svg, 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expectWellFormedXml(svg);
    expect(svg.match(/<circle /g)).toHaveLength(4); // 2 levels × (samples/s, p99)
  });

  it('--compare onnxruntime-node runs the same loop on both, side by side, with the version each loaded', async () => {
    const json = path.join(tmp, 'cmp.json');
    const r = await bench([TINY, '--concurrency', '2', ...SHORT, '--compare', 'onnxruntime-node', '--json', json]);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
    expect(report.engines.map((e) => e.name)).toEqual(['nimify', 'onnxruntime-node']);
    const ortPkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string };
    expect(report.engines[1].runtime.version).toBe(ortPkg.version);
    expect(report.engines[0].runtime.version).toBe(runtimeInfo().version);
    for (const e of report.engines) {
      expect(e.levels).toHaveLength(1);
      expect(e.levels[0].inferences).toBeGreaterThan(0);
      expect(e.levels[0].errors).toBe(0);
    }
    const [a, b] = report.engines.map((e) => e.levels[0]);
    expect(report.ratios).toHaveLength(1);
    expect(report.ratios![0].concurrency).toBe(2);
    expect(report.ratios![0].throughput).toBeCloseTo(a.inferencesPerSec / b.inferencesPerSec, 2);
    expect(report.ratios![0].p99).toBeCloseTo(a.latencyMs.p99! / b.latencyMs.p99!, 2);
    expect(r.out).toMatch(/^onnxruntime-node\s+2\s/m);
    expect(r.out).toContain('nimify ÷ onnxruntime-node');
    expect(r.out).toContain(`onnxruntime-node: ONNX Runtime ${ortPkg.version}`);
  });

  it('onnxruntime-node is resolved from the current directory first, then from nimify\'s own install', () => {
    const project = path.join(tmp, 'project');
    fs.mkdirSync(path.join(project, 'node_modules', 'onnxruntime-node'), { recursive: true });
    fs.writeFileSync(path.join(project, 'node_modules', 'onnxruntime-node', 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version: '9.9.9', main: 'index.js' }));
    fs.writeFileSync(path.join(project, 'node_modules', 'onnxruntime-node', 'index.js'), '');
    expect(resolveOnnxruntimeNode(project)).toMatchObject({ version: '9.9.9', dir: path.join(project, 'node_modules', 'onnxruntime-node') });
    expect(resolveOnnxruntimeNode(os.tmpdir()).dir).toBe(path.join(ROOT, 'node_modules', 'onnxruntime-node'));
  });

  it('a model whose inference fails on the generated inputs fails with the reason, exit 1', async () => {
    const r = await bench([path.join(MODELS, 'reshape_fail.onnx'), ...SHORT]);
    expect(r.code).toBe(1);
    expect(r.error?.message).toMatch(new RegExp(`the first inference on random inputs \\(x \\[${WARMUP_DIM}\\], shape \\[2\\]\\) failed: .*Reshape`));
  });
});

describe('over HTTP against a real `nimify serve`', () => {
  let server: ChildProcess;
  let base: string;
  beforeAll(async () => {
    server = spawn(process.execPath, [CLI, 'serve', TINY, '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    base = await new Promise<string>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /serving .* at (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      server.stderr!.on('data', (d: Buffer) => (out += d));
      server.on('exit', (code) => reject(new Error(`nimify serve exited ${code}:\n${out}`)));
    });
  }, 30_000);
  afterAll(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });

  for (const encoding of ['json', 'binary'] as const) {
    it(`${encoding} bodies: every level answered 2xx, nothing failed`, async () => {
      const json = path.join(tmp, `http-${encoding}.json`);
      const r = await bench([base, '--concurrency', '1,4', '--batch', '3', ...SHORT, '--json', json, ...(encoding === 'binary' ? ['--binary'] : [])]);
      expect(r.error).toBeUndefined();
      expect(r.code).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
      expect(report).toMatchObject({ mode: 'http', encoding, batch: 3, target: `${base}/v2/models/mlp_tiny`, configuration: null });
      expect(report.model.inputs).toEqual([{ name: 'x', type: 'float32', dims: [3, 64] }]);
      for (const l of report.engines[0].levels) {
        expect(l.inferences).toBeGreaterThan(0);
        expect(l.errors).toBe(0);
        expect(l.http).toEqual({ statusCodes: { 200: l.inferences }, non2xx: 0, socketErrors: 0, timeouts: 0 });
        expect(l.samplesPerSec / l.inferencesPerSec).toBeCloseTo(3, 3);
        expect(l.latencyMs.p50!).toBeLessThanOrEqual(l.latencyMs.p99!);
        expect(l.eventLoopDelayP99Ms).toBeNull();
      }
    }, 30_000);
  }

  it('names the model from the URL or --model; an unknown model or a server that does not answer is an error', async () => {
    const named = await bench([`${base}/v2/models/mlp_tiny`, '--concurrency', '1', ...SHORT]);
    expect(named.code).toBe(0);
    const missing = await bench([base, '--model', 'nope', '--concurrency', '1', ...SHORT]);
    expect(missing.code).toBe(1);
    expect(missing.error?.message).toMatch(/404/);
    const shaped = await bench([base, '--shape', 'x=2,64', '--concurrency', '1', ...SHORT]);
    expect(shaped.code).toBe(0);
    expect(shaped.out).toContain('x float32 [2, 64]');
    const down = await bench(['http://127.0.0.1:1', '--concurrency', '1', ...SHORT]);
    expect(down.code).toBe(1);
    expect(down.error?.message).toMatch(/did not answer/);
  }, 30_000);
});
