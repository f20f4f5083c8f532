/**
 * The load engine shared by `nimify bench` and `nimify tune` (src/cli/bench.ts, tune.ts): flag
 * parsers for durations, concurrency lists and shapes; random inputs that fit a model's inputs;
 * a closed loop of N outstanding calls measured into an HDR histogram (hdr-histogram-js) with the
 * event-loop delay of this process; and progress output (cli-progress on a terminal, one plain
 * line per level otherwise). The HTTP loop (autocannon) lives in bench-http.ts and reports the
 * same LevelResult.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { NimifyError } from '../runtime/errors';
import { toBf16Bits, toHalfBits } from '../protocol/datatypes';
import { loadModel, type Model } from '../runtime/model';
import type { LoadOptions } from '../runtime/options';
import { detectBatchDim, INFER_TIMEOUT_MS_DEFAULT, loadOptionsFor, planShapes, WARMUP_DIM, type ModelConfig } from '../repository/config';
import { CTORS, Tensor, TENSOR_TYPES, type TensorType } from '../runtime/tensor';
import type { CliIo } from './io';

// ---------------------------------------------------------------------------------------------
// Flag values

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `10s`, `500ms`, `2m`, `1.5s` → milliseconds (a bare number is seconds). */
export function parseDuration(flag: string, text: string, { min = 1 } = {}): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * DURATION_UNITS[m[2] ?? 's'] : NaN;
  if (!Number.isFinite(ms) || ms < min || ms > 24 * 3_600_000) {
    throw new NimifyError('INVALID_ARGUMENT', `${flag}: expected a duration such as 10s, 500ms or 2m (at least ${min} ms, at most 24 h), received ${JSON.stringify(text)}`);
  }
  return Math.round(ms);
}

/** `1,8,64` → [1, 8, 64]: positive integers, each at most `max`, no duplicates, kept in the given order. */
export function parseConcurrency(flag: string, text: string, max = 4096): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (!/^[0-9]+$/.test(p) || n < 1 || n > max) {
      throw new NimifyError('INVALID_ARGUMENT', `${flag}: expected a comma-separated list of integers in [1, ${max}] such as 1,8,64, received ${JSON.stringify(text)}`);
    }
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** --shape's help line (bench and tune). */
export const SHAPE_FLAG_HELP = `an input's whole shape per request (repeatable); the batch dim gets --batch, other variable dims ${WARMUP_DIM} (fewer for large inputs) as for the automatic warmup`;

/** Repeated `--shape name=d1,d2,...` → name → dims (each dim a positive integer). */
export function parseShapes(flag: string, values: readonly string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const v of values) {
    const m = /^([^=]+)=([0-9]+(?:,[0-9]+)*)?$/.exec(v.trim());
    const dims = m?.[2] === undefined ? [] : m[2].split(',').map(Number);
    if (!m || dims.some((d) => d < 1)) {
      throw new NimifyError('INVALID_ARGUMENT', `${flag}: expected name=d1,d2,... (positive dims; name= for a scalar), received ${JSON.stringify(v)}`);
    }
    if (shapes.has(m[1])) throw new NimifyError('INVALID_ARGUMENT', `${flag}: input '${m[1]}' is given twice`);
    shapes.set(m[1], dims);
  }
  return shapes;
}

// ---------------------------------------------------------------------------------------------
// Inputs

export interface InputSpec {
  name: string;
  type: TensorType;
  /** Numbers for fixed dims; a string or -1 for a variable dim; null = rank unknown. */
  shape: ReadonlyArray<number | string> | null;
}

export interface PlannedInput {
  name: string;
  type: TensorType;
  dims: number[];
}

/**
 * The shape of each input in one request: --shape gives an input's whole shape (dim 0 included:
 * on a batched model it sets the batch size); the others are planned by the rule the automatic
 * warmup uses (planShapes, src/repository/config.ts) with the batch dim at `batch`. Returns the
 * batch size used.
 */
export function planInputs(inputs: readonly InputSpec[], o: { batched: boolean; batch: number | undefined; shapes: Map<string, number[]> }): { inputs: PlannedInput[]; batch: number } {
  for (const name of o.shapes.keys()) {
    if (!inputs.some((i) => i.name === name)) {
      throw new NimifyError('INVALID_ARGUMENT', `--shape: the model has no input '${name}' (its inputs: ${inputs.map((i) => `'${i.name}'`).join(', ')})`);
    }
  }
  if (!o.batched && o.batch !== undefined && o.batch !== 1) {
    throw new NimifyError('INVALID_ARGUMENT', `--batch: the model has no batch dim (dim 0 of every input and output variable), so each inference is one input of the model's own shape; expected 1, received ${o.batch}`);
  }
  let batch = o.batch;
  if (o.batched && batch === undefined) {
    // A --shape on a batched model sets the batch size through its dim 0.
    const given = [...o.shapes.entries()].filter(([, d]) => d.length > 0);
    if (given.length > 0) {
      batch = given[0][1][0];
      const other = given.find(([, d]) => d[0] !== batch);
      if (other) throw new NimifyError('INVALID_ARGUMENT', `--shape: dim 0 is the batch dim and must be the same for every input; '${given[0][0]}' says ${batch}, '${other[0]}' says ${other[1][0]}`);
    }
  }
  batch ??= 1;
  for (const input of inputs) {
    const given = o.shapes.get(input.name);
    if (given !== undefined) {
      if (input.shape !== null) {
        if (given.length !== input.shape.length) {
          throw new NimifyError('INVALID_ARGUMENT', `--shape: input '${input.name}' has ${input.shape.length} dims [${input.shape.join(', ')}], received ${given.length} [${given.join(', ')}]`);
        }
        input.shape.forEach((d, j) => {
          if (typeof d === 'number' && d >= 0 && given[j] !== d) {
            throw new NimifyError('INVALID_ARGUMENT', `--shape: dim ${j} of input '${input.name}' is fixed at ${d} in the model [${input.shape!.join(', ')}], received ${given[j]}`);
          }
        });
      }
      if (o.batched && given[0] !== batch) {
        throw new NimifyError('INVALID_ARGUMENT', `--shape: dim 0 of '${input.name}' is the batch dim; it must equal --batch ${batch}, received ${given[0]}`);
      }
    } else if (input.shape === null) {
      throw new NimifyError('INVALID_ARGUMENT', `--shape: the model does not declare the rank of input '${input.name}'; give its shape with --shape ${input.name}=d1,d2,...`);
    }
  }
  const shapes = planShapes(inputs, { batchDim: o.batched, batch, given: o.shapes })!;
  return { inputs: inputs.map((input, i) => ({ name: input.name, type: input.type, dims: shapes[i] })), batch };
}

/** A deterministic uniform [0, 1) generator from a 32-bit seed (mulberry32): runs are repeatable. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random values for one input: floats uniform in [0, 1); integers in [0, 10) (valid indices for
 * embedding-style inputs); bools 0/1; short ASCII strings.
 */
export function randomTensor(input: PlannedInput, rnd: () => number): Tensor {
  const n = input.dims.reduce((a, b) => a * b, 1);
  if (input.type === 'string') return new Tensor('string', Array.from({ length: n }, () => Math.floor(rnd() * 1e6).toString(36)), input.dims);
  const data = new CTORS[input.type](n) as unknown as { [i: number]: number | bigint };
  for (let i = 0; i < n; i++) {
    const r = rnd();
    switch (input.type) {
      case 'float32':
      case 'float64':
        data[i] = r;
        break;
      case 'float16':
        data[i] = toHalfBits(r);
        break;
      case 'bfloat16':
        data[i] = toBf16Bits(r);
        break;
      case 'bool':
        data[i] = r < 0.5 ? 0 : 1;
        break;
      case 'int64':
      case 'uint64':
        data[i] = BigInt(Math.floor(r * 10));
        break;
      default:
        data[i] = Math.floor(r * 10);
    }
  }
  return new Tensor(input.type, data as never, input.dims);
}

// ---------------------------------------------------------------------------------------------
// Measurement

/** Latency recorded in nanoseconds (3 significant digits), reported in milliseconds. */
export class LatencyHistogram {
  readonly #h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: 3, autoResize: true });

  recordMs(ms: number): void {
    this.#h.recordValue(Math.max(1, Math.round(ms * 1e6)));
  }

  get count(): number {
    return this.#h.totalCount;
  }

  summary(): LatencySummary {
    const h = this.#h;
    if (h.totalCount === 0) return { p50: null, p90: null, p99: null, max: null, mean: null };
    const ms = (ns: number) => +(ns / 1e6).toFixed(4);
    return { p50: ms(h.getValueAtPercentile(50)), p90: ms(h.getValueAtPercentile(90)), p99: ms(h.getValueAtPercentile(99)), max: ms(h.maxValue), mean: ms(h.mean) };
  }

  destroy(): void {
    this.#h.destroy();
  }
}

/** Milliseconds; null when nothing succeeded. */
export interface LatencySummary {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** One concurrency level of one engine, measured after its warmup. */
export interface LevelResult {
  concurrency: number;
  /** Length of the measured window. */
  seconds: number;
  /** Inferences that succeeded (HTTP: 2xx responses) in the window. */
  inferences: number;
  /** Inferences that failed in the window (HTTP: non-2xx responses plus socket errors and timeouts). */
  errors: number;
  /** The first failure's message, if any. */
  firstError: string | null;
  inferencesPerSec: number;
  /** inferencesPerSec × samples per inference (the batch size for a batched model). */
  samplesPerSec: number;
  /** Latency of the successful inferences (ms). */
  latencyMs: LatencySummary;
  /** p99 of this process's event-loop delay during the window (ms; in-process runs only). */
  eventLoopDelayP99Ms: number | null;
  /** HTTP runs: responses per status code, non-2xx count, socket errors, timeouts. */
  http?: { statusCodes: Record<string, number>; non2xx: number; socketErrors: number; timeouts: number };
}

export interface LoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Samples one inference carries (its batch size). */
  samples: number;
  /** Called about every 100 ms with the time spent so far (warmup included) and the successes counted so far. */
  onProgress?: (elapsedMs: number, totalMs: number, inferences: number) => void;
}

/** monitorEventLoopDelay's timer interval (ms): the delay is what a tick exceeds it by. */
const ELD_RESOLUTION_MS = 1;

const errorText = (err: unknown) => (err instanceof NimifyError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err));

/**
 * A closed loop: `concurrency` workers each awaiting `call(worker)` back to back, for the warmup
 * and then the measured window. Inferences and latencies count when they complete inside the
 * window; in-flight calls are awaited before it returns. A failed call is counted and the worker
 * yields to the event loop before its next call (a model that fails at once cannot starve the
 * timers that end the window).
 */
export async function closedLoop(call: (worker: number) => Promise<unknown>, o: LoopOptions): Promise<LevelResult> {
  const hist = new LatencyHistogram();
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  let measuring = false;
  let stopped = false;
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  const t0 = performance.now();
  let windowStart = t0 + o.warmupMs;
  let windowEnd = windowStart + o.durationMs;
  // Timers can run late on a busy loop; the workers also check the clock.
  const hardEnd = windowEnd + Math.max(1000, o.durationMs);

  const worker = async (i: number) => {
    while (!stopped) {
      const start = performance.now();
      if (start > hardEnd) {
        stopped = true;
        break;
      }
      try {
        await call(i);
        if (measuring) {
          ok++;
          hist.recordMs(performance.now() - start);
        }
      } catch (err) {
        if (measuring) {
          errors++;
          firstError ??= errorText(err);
        }
        await new Promise((r) => setImmediate(r));
      }
    }
  };

  const progress = o.onProgress
    ? setInterval(() => o.onProgress!(performance.now() - t0, o.warmupMs + o.durationMs, ok), 100)
    : undefined;
  const workers = Array.from({ length: o.concurrency }, (_, i) => worker(i));
  await new Promise<void>((resolve) =>
    setTimeout(() => {
      windowStart = performance.now();
      windowEnd = windowStart + o.durationMs;
      measuring = true;
      eld.enable();
      resolve();
    }, o.warmupMs),
  );
  await new Promise<void>((resolve) =>
    setTimeout(() => {
      windowEnd = performance.now();
      measuring = false;
      stopped = true;
      eld.disable();
      resolve();
    }, o.durationMs),
  );
  await Promise.all(workers);
  if (progress) clearInterval(progress);
  o.onProgress?.(o.warmupMs + o.durationMs, o.warmupMs + o.durationMs, ok);
  return levelResult(o, windowEnd - windowStart, hist, { ok, errors, firstError }, eld.count > 0 ? +Math.max(0, eld.percentile(99) / 1e6 - ELD_RESOLUTION_MS).toFixed(3) : null);
}

/**
 * One level's result from its measured window (ms) and counts, for the in-process loop and the
 * HTTP one alike; releases `hist` (its WASM memory).
 */
export function levelResult(
  o: { concurrency: number; samples: number },
  windowMs: number,
  hist: LatencyHistogram,
  counts: { ok: number; errors: number; firstError: string | null },
  eventLoopDelayP99Ms: number | null,
  http?: LevelResult['http'],
): LevelResult {
  const seconds = windowMs / 1000;
  const result: LevelResult = {
    concurrency: o.concurrency,
    seconds: +seconds.toFixed(3),
    inferences: counts.ok,
    errors: counts.errors,
    firstError: counts.firstError,
    inferencesPerSec: +(counts.ok / seconds).toFixed(1),
    samplesPerSec: +((counts.ok * o.samples) / seconds).toFixed(1),
    latencyMs: hist.summary(),
    eventLoopDelayP99Ms,
    ...(http ? { http } : {}),
  };
  hist.destroy();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Progress

/**
 * Progress of a run of levels: a cli-progress bar on stderr when stdout is a terminal, else one
 * plain line per finished level on stderr (stdout carries only the final table).
 */
export class Progress {
  readonly #io: CliIo;
  #bar: import('cli-progress').SingleBar | null = null;

  constructor(io: CliIo) {
    this.#io = io;
  }

  /** Starts a level; returns its update function. */
  start(label: string, totalMs: number): (elapsedMs: number, inferences: number) => void {
    if (!this.#io.isTTY) return () => undefined;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { SingleBar, Presets } = require('cli-progress') as typeof import('cli-progress');
    this.#bar = new SingleBar({ format: `${label.padEnd(34)} [{bar}] {percentage}% | {done} done`, stream: process.stderr, hideCursor: true, clearOnComplete: true, barsize: 24 }, Presets.shades_classic);
    this.#bar.start(totalMs, 0, { done: 0 });
    return (elapsed, inferences) => this.#bar?.update(Math.min(elapsed, totalMs), { done: inferences });
  }

  /** Ends the level with its one-line summary. */
  done(line: string): void {
    this.#bar?.stop();
    this.#bar = null;
    this.#io.err(line);
  }
}

/** The one-line summary of a level (progress output). */
export function levelLine(engine: string, r: LevelResult): string {
  const lat = r.latencyMs;
  const f = (v: number | null) => (v === null ? '–' : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 3));
  return `${engine} c=${r.concurrency}: ${r.inferencesPerSec.toFixed(1)} inf/s, ${r.samplesPerSec.toFixed(1)} samples/s, p50 ${f(lat.p50)} ms, p99 ${f(lat.p99)} ms${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// In-process setup (bench and tune)

/** A model loaded the way `nimify serve` would load it with `config`, and the random requests to send it. */
export interface InProcessSetup {
  model: Model;
  /** What loadModel() got: loadOptionsFor(config, {}) — `nimify serve`'s own completion. */
  options: LoadOptions;
  inputs: PlannedInput[];
  batch: number;
  batched: boolean;
  /** A few seeded random request feeds; worker i sends feeds[i % feeds.length]. */
  feeds: Array<Record<string, Tensor>>;
  /**
   * What infer() gets with each request: the deadline `nimify serve` gives every request
   * (config.timeoutMs, else the server's default) — which also decides where a model without
   * batching runs (LoadOptions.inlineBelowMicros: a request with a deadline takes a thread).
   */
  inferOptions: { timeoutMs: number };
}

/** Distinct random requests per run: enough that a cache or branch predictor cannot learn one, few enough to stay small. */
export const FEED_SETS = 4;

export async function loadForBench(file: string, config: ModelConfig, o: { batch: number | undefined; shapes: Map<string, number[]> }): Promise<InProcessSetup> {
  const options = loadOptionsFor(config, {});
  const model = await loadModel(file, options);
  try {
    const specs: InputSpec[] = model.inputs.map((i) => {
      if (!(TENSOR_TYPES as readonly string[]).includes(i.type)) {
        throw new NimifyError('UNSUPPORTED', `input '${i.name}' is a ${i.type}, which nimify bench cannot generate`);
      }
      return { name: i.name, type: i.type as TensorType, shape: i.shape };
    });
    const batched = detectBatchDim(model, options.batching ?? {});
    const plan = planInputs(specs, { batched, batch: o.batch, shapes: o.shapes });
    if (batched && plan.batch > model.maxBatchRows) {
      throw new NimifyError('INVALID_ARGUMENT', `--batch: expected at most ${model.maxBatchRows} (the batching maxBatchSize the model runs with; raise it with --max-batch-size), received ${plan.batch}`);
    }
    const rnd = prng(0x5eed);
    const feeds = Array.from({ length: FEED_SETS }, () => Object.fromEntries(plan.inputs.map((p) => [p.name, randomTensor(p, rnd)])));
    return { model, options, inputs: plan.inputs, batch: plan.batch, batched, feeds, inferOptions: { timeoutMs: config.timeoutMs ?? INFER_TIMEOUT_MS_DEFAULT } };
  } catch (err) {
    await model.dispose();
    throw err;
  }
}
