/**
 * `nimify bench <model.onnx | url>`: perf_analyzer's job in one command. A closed loop of
 * `concurrency` outstanding inferences per level — in this process through model.infer() (the
 * model loaded as `nimify serve` would load it), or against a running KServe v2 server over HTTP
 * (autocannon) — with latency percentiles from an HDR histogram, throughput, event-loop delay and
 * errors; optionally the same loop on onnxruntime-node for a side-by-side. The engine is
 * bench-engine.ts (shared with `nimify tune`), HTTP is bench-http.ts, outputs bench-report.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runtimeInfo } from '../runtime/binding';
import { NimifyError } from '../runtime/errors';
import { DEFAULT_BATCHING, parseModelConfig, type ModelConfig } from '../repository/config';
import type { Tensor } from '../runtime/tensor';
import { version } from '../runtime/version';
import { closedLoop, SHAPE_FLAG_HELP, FEED_SETS, levelLine, loadForBench, parseConcurrency, parseDuration, parseShapes, planInputs, prng, Progress, randomTensor, type LevelResult, type LoopOptions } from './bench-engine';
import { buildRequests, httpLevel, resolveHttpTarget } from './bench-http';
import { markdownReport, ratios, svgReport, textReport, type BenchReport, type EngineResult } from './bench-report';
import { flagHelp, parseFlags, type FlagSpec, type FlagValues, onePositional } from './flags';
import { EXIT, type CliIo } from './io';
import { isUrl } from './target';

export const BENCH_FLAGS = {
  concurrency: { type: 'string', short: 'c', arg: 'list', help: 'requests in flight, one level after another (default 1,8,64)' },
  duration: { type: 'string', short: 'd', arg: 'time', help: 'measured time per level: 10s, 500ms, 2m (default 10s)' },
  warmup: { type: 'string', arg: 'time', help: 'unmeasured load before each level (default 2s)' },
  batch: { type: 'string', short: 'b', arg: 'n', help: 'rows per inference on a batched model (default 1)', integer: { min: 1, max: 1 << 20 } },
  shape: { type: 'string', multiple: true, arg: 'name=d1,d2', help: SHAPE_FLAG_HELP },
  compare: { type: 'string', arg: 'engine', help: 'in-process: run the same loop on onnxruntime-node too and print ratios', choices: ['onnxruntime-node'] },
  config: { type: 'string', arg: 'config.json', help: "in-process: take instances, batching and runtime from this config.json (e.g. one `nimify tune --write` wrote)" },
  instances: { type: 'string', arg: 'n', help: 'in-process: ORT sessions that run concurrently (default 1, as `nimify serve`)', integer: { min: 1, max: 64 } },
  'max-batch-size': { type: 'string', arg: 'n', help: `in-process: dynamic batching's most rows per run; 0 = no batching (default ${DEFAULT_BATCHING.maxBatchSize})`, integer: { min: 0, max: 1 << 20 } },
  'max-queue-delay-us': { type: 'string', arg: 'us', help: 'in-process: dynamic batching\'s longest wait for a fuller batch (default 500, adaptive)', integer: { min: 0, max: 60_000_000 } },
  'intra-op-threads': { type: 'string', arg: 'n', help: 'in-process: ORT threads inside one operator, for nimify and onnxruntime-node alike (default: ORT decides)', integer: { min: 0, max: 1024 } },
  model: { type: 'string', short: 'm', arg: 'name', help: 'HTTP: the model to load-test (default: the URL\'s /v2/models/<name>, else the only model served)' },
  binary: { type: 'boolean', help: 'HTTP: send and receive tensors with the binary tensor extension instead of JSON' },
  'api-key': { type: 'string', arg: 'key', help: 'HTTP: send Authorization: Bearer <key>' },
  json: { type: 'string', arg: 'file', help: 'write the report as one JSON document' },
  md: { type: 'string', arg: 'file', help: 'write the report as a Markdown table' },
  svg: { type: 'string', arg: 'file', help: 'write a chart: samples/s and p99 per concurrency, one line per engine' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify bench <model.onnx | http(s)://server[/v2/models/<name>]> [options]

A closed-loop load test: for each concurrency level, that many inferences stay in flight for the
duration (after a warmup); prints latency p50/p90/p99/max/mean, inferences/s and samples/s,
event-loop delay and errors. A model file runs in this process, loaded as \`nimify serve\` would
load it (dynamic batching on); a URL load-tests a running KServe v2 server. Exit 0 when no
inference failed, 1 when some did (the report says which), 2 on a usage error.

options (each also read from the environment variable in brackets):
${flagHelp(BENCH_FLAGS, 'bench')}`;

const IN_PROCESS_ONLY = ['compare', 'config', 'instances', 'max-batch-size', 'max-queue-delay-us', 'intra-op-threads'] as const;
const HTTP_ONLY = ['model', 'binary', 'api-key'] as const;


/**
 * The config a model file is benched (and tuned) with: --config's file, then the flags on top,
 * with `nimify serve`'s flag rules (0 = no batching; a batching flag turns on the default batcher).
 * Checked by the real config parser.
 */
export function benchConfig(v: FlagValues): ModelConfig {
  let config: ModelConfig = {};
  if (typeof v.config === 'string') {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(v.config, 'utf8'));
    } catch (err) {
      throw new NimifyError('INVALID_ARGUMENT', `--config: cannot read ${JSON.stringify(v.config)} as JSON (${(err as Error).message})`);
    }
    config = parseModelConfig('--config', json);
  }
  const c: ModelConfig = { ...config };
  if (v.instances !== undefined) c.instances = v.instances as number;
  if (v['max-batch-size'] === 0) c.batching = false;
  else if (v['max-batch-size'] !== undefined || v['max-queue-delay-us'] !== undefined) {
    c.batching = { ...(c.batching || DEFAULT_BATCHING) };
    if (v['max-batch-size'] !== undefined) c.batching.maxBatchSize = v['max-batch-size'] as number;
    if (v['max-queue-delay-us'] !== undefined) c.batching.maxQueueDelayMicros = v['max-queue-delay-us'] as number;
  }
  if (v['intra-op-threads'] !== undefined) c.runtime = { ...(c.runtime ?? {}), intraOpNumThreads: v['intra-op-threads'] as number };
  return parseModelConfig('bench configuration', c);
}

/** Where onnxruntime-node is loaded from: the user's project first, then nimify's own install. */
export function resolveOnnxruntimeNode(cwd = process.cwd()): { entry: string; dir: string; version: string } {
  const roots = [cwd, path.resolve(__dirname, '..', '..')];
  for (const root of roots) {
    try {
      const pkg = require.resolve('onnxruntime-node/package.json', { paths: [root] });
      const entry = require.resolve('onnxruntime-node', { paths: [root] });
      return { entry, dir: path.dirname(pkg), version: (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version };
    } catch {
      /* not installed where this root can see it */
    }
  }
  throw new NimifyError('NOT_FOUND', `--compare onnxruntime-node: the onnxruntime-node package is not installed (looked from ${roots.join(' and ')}); install it with \`npm install onnxruntime-node\``);
}

interface OrtModule {
  InferenceSession: { create(path: string, options?: Record<string, unknown>): Promise<{ run(feeds: Record<string, unknown>): Promise<unknown>; release(): Promise<void> }> };
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => unknown;
}

function writeOut(flag: string, file: string, text: string): void {
  try {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, text);
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `--${flag}: cannot write ${JSON.stringify(file)} (${(err as Error).message})`);
  }
}

function machine(): BenchReport['machine'] {
  return { platform: process.platform, arch: process.arch, cpus: os.availableParallelism?.() ?? os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', node: process.version };
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, BENCH_FLAGS, io.env, 'bench');
  if (v.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  const target = onePositional('bench', positionals, 'one model file or server URL', USAGE);
  const concurrency = parseConcurrency('--concurrency', (v.concurrency as string | undefined) ?? '1,8,64');
  const durationMs = parseDuration('--duration', (v.duration as string | undefined) ?? '10s', { min: 50 });
  const warmupMs = parseDuration('--warmup', (v.warmup as string | undefined) ?? '2s', { min: 0 });
  const shapes = parseShapes('--shape', (v.shape as string[] | undefined) ?? []);
  const batchFlag = v.batch as number | undefined;
  const http = isUrl(target);
  // Output paths are checked now, not after a long run.
  for (const f of ['json', 'md', 'svg'] as const) {
    const file = v[f];
    if (typeof file === 'string' && (file === '' || (fs.existsSync(file) && fs.statSync(file).isDirectory()))) {
      throw new NimifyError('INVALID_ARGUMENT', `--${f}: expected a file path to write, received ${file === '' ? 'an empty string' : `the directory ${JSON.stringify(file)}`}`);
    }
  }
  for (const f of http ? IN_PROCESS_ONLY : HTTP_ONLY) {
    if (v[f] !== undefined && v[f] !== false) throw new NimifyError('INVALID_ARGUMENT', `--${f}: ${http ? 'only for a model file (in-process), not a server URL' : 'only against a server URL (HTTP), not a model file'}`);
  }
  const progress = new Progress(io);
  const loop = (label: string, o: LoopOptions, measure: (o: LoopOptions) => Promise<LevelResult>) => {
    const update = progress.start(label, o.warmupMs + o.durationMs);
    return measure({ ...o, onProgress: (e, _t, n) => update(e, n) }).then((r) => {
      progress.done(levelLine(label.split(' ')[0], r));
      return r;
    });
  };

  let report: BenchReport;
  if (http) {
    const t = await resolveHttpTarget(target, v.model as string | undefined, v['api-key'] as string | undefined);
    const plan = planInputs(t.inputs, { batched: t.batched, batch: batchFlag, shapes });
    const rnd = prng(0x5eed);
    const sets = Array.from({ length: FEED_SETS }, () => Object.fromEntries(plan.inputs.map((p) => [p.name, randomTensor(p, rnd)])) as Record<string, Tensor>);
    const requests = buildRequests(t, plan.inputs, sets, v.binary === true);
    // One request first: a body the server refuses fails here with the server's own words.
    const probe = await fetch(new URL(requests[0].path!, `${t.base}/`), { method: 'POST', headers: requests[0].headers, body: requests[0].body as RequestInit['body'] });
    if (!probe.ok) {
      throw new NimifyError('RUNTIME_ERROR', `the first request to ${t.base} (model '${t.model}') answered ${probe.status}: ${(await probe.text()).slice(0, 300)}`);
    }
    await probe.arrayBuffer();
    const levels: LevelResult[] = [];
    for (const c of concurrency) {
      levels.push(await loop(`http c=${c}`, { concurrency: c, warmupMs, durationMs, samples: plan.batch }, (o) => httpLevel(t, requests, o)));
    }
    report = {
      tool: 'nimify bench', nimifyVersion: version, date: new Date().toISOString(), mode: 'http', target: `${t.base}/v2/models/${t.model}${t.version ? `/versions/${t.version}` : ''}`,
      model: { name: t.model, batched: t.batched, inputs: plan.inputs }, batch: plan.batch, warmupMs, durationMs, concurrency, encoding: v.binary ? 'binary' : 'json', configuration: null,
      engines: [{ name: 'server', runtime: { version: null, path: t.base }, levels }], ratios: null, machine: machine(),
    };
  } else {
    const config = benchConfig(v);
    const ort = v.compare === 'onnxruntime-node' ? resolveOnnxruntimeNode() : null;
    const setup = await loadForBench(target, config, { batch: batchFlag, shapes });
    const engines: EngineResult[] = [];
    try {
      const rt = runtimeInfo();
      const nimify: EngineResult = { name: 'nimify', runtime: { version: rt.version, path: rt.library }, levels: [] };
      engines.push(nimify);
      const feeds = setup.feeds;
      try {
        await setup.model.infer(feeds[0], setup.inferOptions);
      } catch (err) {
        throw new NimifyError(err instanceof NimifyError ? err.code : 'RUNTIME_ERROR', `the first inference on random inputs (${setup.inputs.map((i) => `${i.name} [${i.dims.join(', ')}]`).join(', ')}) failed: ${(err as Error).message}`);
      }
      let session: Awaited<ReturnType<OrtModule['InferenceSession']['create']>> | null = null;
      let ortFeeds: Array<Record<string, unknown>> = [];
      let ortEngine: EngineResult | null = null;
      if (ort) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const mod = require(ort.entry) as OrtModule;
        const threads = setup.options.intraOpNumThreads;
        session = await mod.InferenceSession.create(path.resolve(target), threads !== undefined ? { intraOpNumThreads: threads } : {});
        ortFeeds = feeds.map((f) => Object.fromEntries(Object.entries(f).map(([k, t]) => [k, new mod.Tensor(t.type, t.data, t.dims)])));
        await session.run(ortFeeds[0]);
        ortEngine = { name: 'onnxruntime-node', runtime: { version: ort.version, path: ort.dir }, levels: [] };
        engines.push(ortEngine);
      }
      try {
        for (const c of concurrency) {
          const o = { concurrency: c, warmupMs, durationMs, samples: setup.batch };
          nimify.levels.push(await loop(`nimify c=${c}`, o, (lo) => closedLoop((i) => setup.model.infer(feeds[i % feeds.length], setup.inferOptions), lo)));
          if (session && ortEngine) {
            const s = session;
            ortEngine.levels.push(await loop(`onnxruntime-node c=${c}`, o, (lo) => closedLoop((i) => s.run(ortFeeds[i % ortFeeds.length]), lo)));
          }
        }
      } finally {
        await session?.release();
      }
    } finally {
      await setup.model.dispose();
    }
    report = {
      tool: 'nimify bench', nimifyVersion: version, date: new Date().toISOString(), mode: 'in-process', target: path.resolve(target),
      model: { name: path.basename(target, '.onnx'), batched: setup.batched, inputs: setup.inputs }, batch: setup.batch, warmupMs, durationMs, concurrency, encoding: null,
      configuration: { ...setup.options } as Record<string, unknown>, engines, ratios: engines.length === 2 ? ratios(engines[0], engines[1]) : null, machine: machine(),
    };
  }

  io.out(textReport(report));
  if (typeof v.json === 'string') writeOut('json', v.json, `${JSON.stringify(report, null, 2)}\n`);
  if (typeof v.md === 'string') writeOut('md', v.md, markdownReport(report));
  if (typeof v.svg === 'string') writeOut('svg', v.svg, svgReport(report));
  const failed = report.engines.some((e) => e.levels.some((l) => l.errors > 0));
  return failed ? EXIT.FAILURE : EXIT.OK;
}
