/**
 * `nimify tune <model.onnx>`: Triton model_analyzer's job. Sweeps instances × dynamic batching
 * (max batch size × max queue delay) × intra-op threads with the bench engine (bench-engine.ts,
 * in-process, the model loaded exactly as `nimify serve` would load it with that config.json),
 * within a total time budget; prints the table, marks the best configuration (highest throughput
 * whose p99 is within --latency-budget-ms) and with --write writes it as the model's config.json
 * where `nimify serve` reads it:
 *   - a model already in a repository (`<repo>/<name>/<v>/model.onnx` with <v> a version number,
 *     or `<repo>/<name>/model.onnx` beside an existing config.json): `<repo>/<name>/config.json`;
 *   - any other file (a standalone `m.onnx`, or a model.onnx in ~/Downloads): a one-model repository `<dir>/m-repository/m/{config.json, 1/model.onnx}`
 *     (--repository chooses the folder; the model is hard-linked, or copied across file systems,
 *     because a served repository refuses files that resolve outside it). `nimify serve` of the
 *     single file takes no config.json, so the repository is what makes the tuned config servable.
 * An existing config.json is replaced only with --force, and then only its instances, batching and
 * runtime.intraOpNumThreads change; its other fields are kept (and were in effect during the sweep,
 * and --config is refused then, so that the configuration measured is the one written).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { NimifyError } from '../runtime/errors';
import type { BatchingOptions } from '../runtime/options';
import { DEFAULT_BATCHING, parseModelConfig, type ModelConfig } from '../repository/config';
import { checkModelName, singleFileModelName, VERSION_RE } from '../repository/repository';
import { version } from '../runtime/version';
import { closedLoop, SHAPE_FLAG_HELP, levelLine, loadForBench, parseShapes, Progress, type LevelResult } from './bench-engine';
import { flagHelp, parseFlags, type FlagSpec, onePositional } from './flags';
import { EXIT, type CliIo } from './io';
import { isUrl } from './target';

const CPUS = os.availableParallelism?.() ?? os.cpus().length;

export const TUNE_FLAGS = {
  'latency-budget-ms': { type: 'string', arg: 'ms', help: 'best = highest throughput whose p99 latency is at most this (default: no limit)' },
  concurrency: { type: 'string', short: 'c', arg: 'n', help: 'requests in flight while each configuration is measured (default 16)', integer: { min: 1, max: 4096 } },
  'max-instances': { type: 'string', arg: 'n', help: `most ORT sessions per model to try (default min(4, cores) = ${Math.min(4, CPUS)})`, integer: { min: 1, max: 64 } },
  budget: { type: 'string', arg: 'seconds', help: 'total time for the sweep; configurations that do not fit are skipped (default 60)', integer: { min: 1, max: 86_400 } },
  batch: { type: 'string', short: 'b', arg: 'n', help: 'rows per request on a batched model (default 1)', integer: { min: 1, max: 1 << 20 } },
  shape: { type: 'string', multiple: true, arg: 'name=d1,d2', help: SHAPE_FLAG_HELP },
  config: { type: 'string', arg: 'config.json', help: 'base config the sweep starts from and --write keeps (default: the model folder\'s config.json, if any)' },
  write: { type: 'boolean', help: "write the best configuration as the model's config.json (see --help text above for where)" },
  force: { type: 'boolean', help: 'with --write: replace an existing config.json (its other fields are kept)' },
  repository: { type: 'string', arg: 'dir', help: 'with --write, for a standalone model file: the repository to create (default <model dir>/<name>-repository)' },
  json: { type: 'string', arg: 'file', help: 'write the sweep (every configuration and its numbers, the best one) as JSON' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify tune <model.onnx> [options]

Sweeps instances × dynamic batching (max batch size × max queue delay) × intra-op threads,
measuring each configuration briefly in this process under a closed loop of --concurrency
requests, within --budget seconds in all (the ones that do not fit are skipped, and the output
says how many). Prints the table, marks the best configuration (highest throughput with p99 ≤
--latency-budget-ms) and, with --write, writes it as the model's config.json where
\`nimify serve\` reads it: <repo>/<name>/config.json for a model inside a repository, else a
one-model repository <dir>/<name>-repository/ (serve it with \`nimify serve <that dir>\`).
Exit 0 with a best configuration, 1 when none met the latency budget, 2 on a usage error.

options (each also read from the environment variable in brackets):
${flagHelp(TUNE_FLAGS, 'tune')}`;

/** The fields tune chooses; everything else of a config is the base config's. */
export interface Candidate {
  label: string;
  instances: number;
  batching: BatchingOptions | false;
  intraOpNumThreads: number | undefined;
}

const MAX_BATCH_SIZES = [8, 32, 128];
const QUEUE_DELAYS_US = [100, 500, 2000];

function label(c: Omit<Candidate, 'label'>): string {
  const b = c.batching === false ? 'no batching' : `batch ≤${c.batching.maxBatchSize ?? DEFAULT_BATCHING.maxBatchSize} delay ≤${c.batching.maxQueueDelayMicros ?? 500}µs`;
  return `instances ${c.instances}, threads ${c.intraOpNumThreads ?? 'ORT default'}, ${b}`;
}

/**
 * The sweep, most informative first: `nimify serve`'s default (no config), then configurations
 * one change away from it, then two, and so on, so that a short budget still covers each
 * dimension once. Instances are powers of two up to maxInstances; threads 1 and cores ÷
 * instances; batching off or max batch size × delay (only sizes that hold `batch` rows; none on
 * a model without a batch dim).
 */
export function sweepGrid(o: { maxInstances: number; cpus: number; batched: boolean; batch: number }): Candidate[] {
  const instances: number[] = [];
  for (let n = 1; n <= o.maxInstances; n *= 2) instances.push(n);
  if (!instances.includes(o.maxInstances)) instances.push(o.maxInstances);
  const batchings: Array<BatchingOptions | false> = [false];
  if (o.batched) for (const s of MAX_BATCH_SIZES.filter((s) => s >= o.batch)) for (const d of QUEUE_DELAYS_US) batchings.push({ maxBatchSize: s, maxQueueDelayMicros: d, adaptive: true });
  // Distance from `nimify serve`'s default: 1 instance, batch ≤ 32, delay ≤ 500 µs, and the cores shared among the instances.
  const base = { instances: 1, size: DEFAULT_BATCHING.maxBatchSize, delay: 500 };
  const all: Array<Omit<Candidate, 'label'> & { distance: number }> = [];
  for (const n of instances) {
    for (const t of [...new Set([1, Math.max(1, Math.floor(o.cpus / n))])]) {
      for (const b of batchings) {
        const distance = Number(n !== base.instances) + Number(t !== Math.max(1, Math.floor(o.cpus / n))) + (b === false ? 1 : Number(b.maxBatchSize !== base.size) + Number(b.maxQueueDelayMicros !== base.delay));
        all.push({ instances: n, intraOpNumThreads: t, batching: b, distance });
      }
    }
  }
  all.sort((a, b) => a.distance - b.distance);
  const serveDefault = { instances: 1, batching: { ...DEFAULT_BATCHING }, intraOpNumThreads: undefined };
  return [serveDefault, ...all].map(({ instances: i, batching, intraOpNumThreads }) => ({ label: '', instances: i, batching, intraOpNumThreads })).map((c) => ({ ...c, label: label(c) }));
}

/** The config a candidate runs with: the base config with tune's fields replaced. */
export function candidateConfig(base: ModelConfig, c: Candidate): ModelConfig {
  const { intraOpNumThreads: _t, ...runtime } = base.runtime ?? {};
  const out: ModelConfig = { ...base, instances: c.instances, batching: c.batching === false ? false : { ...c.batching } };
  if (c.intraOpNumThreads !== undefined) out.runtime = { ...runtime, intraOpNumThreads: c.intraOpNumThreads };
  else if (base.runtime !== undefined) out.runtime = Object.keys(runtime).length ? runtime : undefined;
  if (out.runtime === undefined) delete out.runtime;
  return out;
}

interface WriteTarget {
  name: string;
  repository: string;
  configPath: string;
  /** Standalone model files are linked (or copied) here; null when the model is already in a repository. */
  modelCopy: string | null;
  existing: ModelConfig | null;
}

/**
 * Where a model file sits in a repository `nimify serve` reads, or null for a standalone file:
 * `<repo>/<m>/<v>/model.onnx` (<v> a version directory), or `<repo>/<m>/model.onnx` beside an
 * existing `<repo>/<m>/config.json`. Any other file — a model.onnx in ~/Downloads included — is
 * standalone: its folder is not taken for a model folder.
 */
export function repositoryLayout(file: string): { modelDir: string; repository: string } | null {
  const abs = path.resolve(file);
  if (path.basename(abs) !== 'model.onnx') return null;
  const dir = path.dirname(abs);
  if (VERSION_RE.test(path.basename(dir))) return { modelDir: path.dirname(dir), repository: path.dirname(path.dirname(dir)) };
  if (fs.existsSync(path.join(dir, 'config.json'))) return { modelDir: dir, repository: path.dirname(dir) };
  return null;
}

/** A model name, or INVALID_ARGUMENT naming `flag` with what a model name must be. */
function modelName(flag: string, name: string, what: string): string {
  try {
    return checkModelName(name);
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `${flag}: ${what} ${JSON.stringify(name)}, which is not a valid model name: ${(err as Error).message.replace(/^model name: /, '')}`);
  }
}

/** Where --write writes (decided, and refused when it would overwrite, before anything runs). */
export function writeTarget(file: string, o: { repository: string | undefined; force: boolean }): WriteTarget {
  const abs = path.resolve(file);
  const layout = repositoryLayout(abs);
  let t: Omit<WriteTarget, 'existing'>;
  if (layout !== null) {
    if (o.repository !== undefined) {
      throw new NimifyError('INVALID_ARGUMENT', `--repository: expected only for a standalone model file; ${abs} is already in the repository ${layout.repository} (its config.json is written in ${layout.modelDir})`);
    }
    const name = modelName('--write', path.basename(layout.modelDir), `the model folder ${layout.modelDir} names the model`);
    t = { name, repository: layout.repository, configPath: path.join(layout.modelDir, 'config.json'), modelCopy: null };
  } else {
    const name = modelName('--write', singleFileModelName(abs), `the file name ${path.basename(abs)} names the model`);
    const repository = path.resolve(o.repository ?? path.join(path.dirname(abs), `${name}-repository`));
    t = { name, repository, configPath: path.join(repository, name, 'config.json'), modelCopy: path.join(repository, name, '1', 'model.onnx') };
  }
  let existing: ModelConfig | null = null;
  if (fs.existsSync(t.configPath)) {
    if (!o.force) throw new NimifyError('INVALID_ARGUMENT', `--write: ${t.configPath} exists; pass --force to replace its instances, batching and runtime.intraOpNumThreads (its other fields are kept)`);
    existing = readConfig(t.configPath, '--write');
  }
  return { ...t, existing };
}

function readConfig(file: string, flag: string): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `${flag}: cannot read ${file} as JSON (${(err as Error).message})`);
  }
  return parseModelConfig(file, json);
}

export interface TuneRow {
  candidate: Candidate;
  /** null: skipped (the budget ran out) or failed to load (see `error`). */
  result: LevelResult | null;
  error: string | null;
  withinBudget: boolean | null;
  loadMs: number | null;
}

export interface TuneReport {
  tool: 'nimify tune';
  nimifyVersion: string;
  date: string;
  model: string;
  concurrency: number;
  batch: number;
  latencyBudgetMs: number | null;
  budgetSeconds: number;
  elapsedSeconds: number;
  measured: number;
  skipped: number;
  rows: TuneRow[];
  /** Index into rows of the best configuration; null when none qualified. */
  best: number | null;
  /** The config.json the best configuration is (what --write writes). */
  bestConfig: ModelConfig | null;
  written: string | null;
}

function table(r: TuneReport): string {
  const f = (n: number | null | undefined) => (n == null ? '–' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(3));
  const n = (x: number | undefined) => (x === undefined ? '–' : x >= 1000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
  const rows = r.rows.map((row, i) => [
    i === r.best ? '*' : '',
    String(i + 1),
    row.candidate.label,
    row.result ? n(row.result.inferencesPerSec) : row.error ? 'failed' : 'skipped',
    row.result ? n(row.result.samplesPerSec) : '',
    f(row.result?.latencyMs.p50),
    f(row.result?.latencyMs.p99),
    row.result ? String(row.result.errors) : '',
    row.withinBudget === null ? '–' : row.withinBudget ? 'yes' : 'no',
  ]);
  const head = ['', '#', 'configuration', 'inf/s', 'samples/s', 'p50 ms', 'p99 ms', 'errors', 'p99 ≤ budget'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 || i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, TUNE_FLAGS, io.env, 'tune');
  if (v.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  const file = onePositional('tune', positionals, 'one model file', USAGE);
  if (isUrl(file)) throw new NimifyError('INVALID_ARGUMENT', `tune: expected a model file (tune runs in-process), received the URL ${file}`);
  if (!file.endsWith('.onnx')) throw new NimifyError('INVALID_ARGUMENT', `tune: expected an .onnx model file, received ${JSON.stringify(file)}`);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new NimifyError('NOT_FOUND', `tune: model file ${JSON.stringify(file)} does not exist`);
  let latencyBudgetMs: number | null = null;
  if (v['latency-budget-ms'] !== undefined) {
    const text = v['latency-budget-ms'] as string;
    latencyBudgetMs = Number(text);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || !(latencyBudgetMs > 0)) throw new NimifyError('INVALID_ARGUMENT', `--latency-budget-ms: expected a positive number of milliseconds, received ${JSON.stringify(text)}`);
  }
  const concurrency = (v.concurrency as number | undefined) ?? 16;
  const maxInstances = (v['max-instances'] as number | undefined) ?? Math.min(4, CPUS);
  const budgetSeconds = (v.budget as number | undefined) ?? 60;
  const shapes = parseShapes('--shape', (v.shape as string[] | undefined) ?? []);
  if ((v.force || v.repository !== undefined) && !v.write) throw new NimifyError('INVALID_ARGUMENT', `--${v.force ? 'force' : 'repository'}: only with --write`);
  const target = v.write ? writeTarget(file, { repository: v.repository as string | undefined, force: v.force === true }) : null;

  // The base config: --config, else the config.json the model is served with. With --write over
  // an existing config.json that file is the base, so what is measured is what is written.
  if (typeof v.config === 'string' && target?.existing) {
    throw new NimifyError('INVALID_ARGUMENT', `--config: with --write the existing ${target.configPath} is the base config (its other fields are kept); expected no --config, received ${JSON.stringify(v.config)}`);
  }
  let base: ModelConfig = {};
  if (typeof v.config === 'string') base = readConfig(v.config, '--config');
  else if (target?.existing) base = target.existing;
  else {
    const layout = repositoryLayout(file);
    const cfg = layout && path.join(layout.modelDir, 'config.json');
    if (cfg && fs.existsSync(cfg)) base = readConfig(cfg, 'config.json');
  }

  const started = performance.now();
  const deadline = started + budgetSeconds * 1000;
  const progress = new Progress(io);

  // The first load tells whether the model has a batch dim (which sets the grid) and how long a load takes.
  const probe = await loadForBench(file, base, { batch: v.batch as number | undefined, shapes });
  const { batched, batch } = probe;
  await probe.model.dispose();
  const grid = sweepGrid({ maxInstances, cpus: CPUS, batched, batch });
  let loadEstimateMs = performance.now() - started;
  io.err(`nimify tune ${file}: ${grid.length} configurations, ${budgetSeconds} s budget, ${concurrency} requests in flight, batch ${batch}${latencyBudgetMs !== null ? `, p99 budget ${latencyBudgetMs} ms` : ''}`);

  const rows: TuneRow[] = grid.map((candidate) => ({ candidate, result: null, error: null, withinBudget: null, loadMs: null }));
  for (let i = 0; i < rows.length; i++) {
    const now = performance.now();
    const remaining = deadline - now;
    // An equal share of what is left, for each configuration still to measure.
    const slot = remaining / (rows.length - i);
    const warmupMs = Math.round(Math.min(500, Math.max(100, slot * 0.2)));
    const durationMs = Math.round(Math.min(3000, Math.max(200, slot - loadEstimateMs - warmupMs)));
    if (remaining < loadEstimateMs + warmupMs + durationMs) break;
    const row = rows[i];
    const config = candidateConfig(base, row.candidate);
    const t0 = performance.now();
    let setup;
    try {
      setup = await loadForBench(file, parseModelConfig('tune configuration', config), { batch, shapes });
    } catch (err) {
      row.error = err instanceof Error ? err.message : String(err);
      io.err(`  ${i + 1}/${rows.length} ${row.candidate.label}: failed to load: ${row.error}`);
      continue;
    }
    row.loadMs = Math.round(performance.now() - t0);
    loadEstimateMs = Math.max(loadEstimateMs * 0.5, row.loadMs);
    try {
      const name = `${i + 1}/${rows.length}`;
      const update = progress.start(`tune ${name}`, warmupMs + durationMs);
      const feeds = setup.feeds;
      row.result = await closedLoop((w) => setup.model.infer(feeds[w % feeds.length], setup.inferOptions), { concurrency, warmupMs, durationMs, samples: batch, onProgress: (e, _t, n) => update(e, n) });
      row.withinBudget = latencyBudgetMs === null ? null : row.result.latencyMs.p99 !== null && row.result.latencyMs.p99 <= latencyBudgetMs;
      progress.done(`  ${levelLine(name, row.result).replace(/ c=\d+/, '')} — ${row.candidate.label}`);
    } finally {
      await setup.model.dispose();
    }
  }

  const measured = rows.filter((r) => r.result !== null).length;
  const skipped = rows.filter((r) => r.result === null && r.error === null).length;
  let best: number | null = null;
  rows.forEach((r, i) => {
    if (r.result === null || r.result.errors > 0 || r.result.inferences === 0) return;
    if (latencyBudgetMs !== null && !r.withinBudget) return;
    if (best === null || r.result.samplesPerSec > rows[best].result!.samplesPerSec) best = i;
  });
  const bestConfig = best === null ? null : candidateConfig(base, rows[best].candidate);
  const report: TuneReport = {
    tool: 'nimify tune', nimifyVersion: version, date: new Date().toISOString(), model: path.resolve(file), concurrency, batch, latencyBudgetMs, budgetSeconds,
    elapsedSeconds: +((performance.now() - started) / 1000).toFixed(2), measured, skipped, rows, best, bestConfig, written: null,
  };

  io.out(`nimify tune ${file}: ${concurrency} requests in flight, batch ${batch}${latencyBudgetMs !== null ? `, p99 budget ${latencyBudgetMs} ms` : ''}; measured ${measured} of ${rows.length} configurations in ${report.elapsedSeconds} s${skipped ? ` (${skipped} skipped: the ${budgetSeconds} s budget ran out; raise --budget to measure them)` : ''}`);
  io.out('');
  io.out(table(report));
  io.out('');
  let code: number = EXIT.OK;
  if (best === null) {
    io.out(latencyBudgetMs !== null ? `no measured configuration had p99 ≤ ${latencyBudgetMs} ms without errors` : 'no configuration was measured without errors');
    code = EXIT.FAILURE;
  } else {
    io.out(`best (*): ${rows[best].candidate.label}`);
    io.out(`config.json: ${JSON.stringify({ name: target?.name, ...bestConfig })}`);
    if (target) {
      const config = parseModelConfig('tuned config.json', { ...bestConfig, name: target.name });
      fs.mkdirSync(path.dirname(target.configPath), { recursive: true });
      if (target.modelCopy !== null) {
        fs.mkdirSync(path.dirname(target.modelCopy), { recursive: true });
        fs.rmSync(target.modelCopy, { force: true });
        try {
          fs.linkSync(path.resolve(file), target.modelCopy);
        } catch {
          fs.copyFileSync(path.resolve(file), target.modelCopy);
        }
      }
      fs.writeFileSync(`${target.configPath}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
      fs.renameSync(`${target.configPath}.tmp`, target.configPath);
      report.written = target.configPath;
      io.out(`wrote ${target.configPath}; serve it with: nimify serve ${target.repository}`);
    }
  }
  if (typeof v.json === 'string') {
    try {
      fs.writeFileSync(v.json, `${JSON.stringify(report, null, 2)}\n`);
    } catch (err) {
      throw new NimifyError('INVALID_ARGUMENT', `--json: cannot write ${JSON.stringify(v.json)} (${(err as Error).message})`);
    }
  }
  return code;
}
