/**
 * A served model's configuration: `<repo>/<model>/config.json` (every field optional), the
 * server-wide defaults (CLI flags, NIMIFY_* env) and the model's own metadata, merged into one
 * completed config that the server prints at startup and serves at /v2/models/{m}/config.
 *
 * Precedence: config.json > server defaults > auto-completion from the model.
 */
import { NimifyError } from '../runtime/errors';
import { checkPreprocess, publicPreprocess, type PreprocessSpec } from '../pipeline/pipeline';
import { checkPostprocess, type PostprocessSpec } from '../pipeline/postprocess';
import type { Model, TensorInfo } from '../runtime/model';
import { findFileOption } from '../runtime/providers';
import { INLINE_BELOW_MICROS_DEFAULT, RUNTIME_OPTION_KEYS, toNativeConfig, type BatchingOptions, type LoadOptions } from '../runtime/options';
import { DATATYPES, isDatatype, toDatatype, type Datatype } from '../protocol/datatypes';
import type { WireModel, WireTensor } from '../protocol/request';
import { expectBoolean, expectInteger, expectKnownKeys, expectOneOf, expectPlainObject, expectString, invalid } from '../runtime/validate';

export type VersionPolicy = { latest: number } | 'all' | { specific: number[] };

export interface WarmupInput {
  shape: number[];
  /** 'zero' (default) or 'random' values, or explicit `data`. */
  fill?: 'zero' | 'random';
  /** Values as an inference request's JSON `data` carries them (flat or nested; a scalar for one element). */
  data?: unknown;
}

export interface WarmupRequest {
  name?: string;
  inputs: Record<string, WarmupInput>;
  /** How many times to run it (default 1). */
  count?: number;
  /**
   * true: a failure is logged as a warning and the version still becomes READY. Default false:
   * a failure keeps it UNAVAILABLE. The automatic warmup is optional (nobody asked for it).
   */
  optional?: boolean;
}

/** ONNX Runtime session options a config may set (LoadOptions without the scheduling ones). */
export type RuntimeConfig = Omit<LoadOptions, 'instances' | 'batching'>;

export interface ModelConfig {
  name?: string;
  platform?: 'onnxruntime_onnx';
  instances?: number;
  /** Dynamic batching options, or false for none. */
  batching?: BatchingOptions | false;
  runtime?: RuntimeConfig;
  versionPolicy?: VersionPolicy;
  /** Declared shapes (tighter than the model's: a fixed value for a variable dim) and datatypes to check. */
  inputs?: Array<{ name: string; datatype?: Datatype; shape?: number[] }>;
  outputs?: Array<{ name: string; datatype?: Datatype; shape?: number[] }>;
  /** Requests run before the model is ready; [] = none. Default: autoWarmup() (optional). */
  warmup?: WarmupRequest[];
  /** Default per-request timeout for this model, in ms (the request's `timeout` parameter overrides). */
  timeoutMs?: number;
  /** How request images or texts become the model's inputs (src/pipeline/image.ts, text.ts). */
  preprocess?: PreprocessSpec;
  /** How the model's output becomes predictions (src/pipeline/postprocess.ts). */
  postprocess?: PostprocessSpec;
  /** Triton's response cache for this model (server-wide budget: responseCacheBytes / --cache-size). Default off. */
  responseCache?: { enable: boolean };
}

export interface CompletedConfig {
  name: string;
  platform: 'onnxruntime_onnx';
  instances: number;
  batching: BatchingOptions | false;
  runtime: RuntimeConfig;
  versionPolicy: VersionPolicy;
  inputs: WireTensor[];
  outputs: WireTensor[];
  warmup: WarmupRequest[];
  timeoutMs: number | undefined;
  /** As the model's pipeline resolved them (tensor names, tokenizer padding and lengths). */
  preprocess: PreprocessSpec | null;
  postprocess: PostprocessSpec | null;
  /** Whether repeated requests are answered from the server's response cache (src/server/cache.ts). */
  responseCache: { enable: boolean };
}

/** Server-wide defaults for every model (CLI flags / env); a model's config.json wins. */
export interface ModelDefaults {
  instances?: number;
  batching?: BatchingOptions | false;
  runtime?: RuntimeConfig;
  timeoutMs?: number;
}

export const CONFIG_KEYS = ['name', 'platform', 'instances', 'batching', 'runtime', 'versionPolicy', 'inputs', 'outputs', 'warmup', 'timeoutMs', 'preprocess', 'postprocess', 'responseCache'] as const;
/** The keys of config.json's `runtime` section: loadModel()'s ORT session settings. */
export const RUNTIME_KEYS = RUNTIME_OPTION_KEYS;

/**
 * ORT settings a served model gets unless its config or the server says otherwise: pool threads
 * do not spin between runs, so they do not take the event loop's core on small machines (the
 * HTTP benchmark, bench/http.js, runs `nimify serve` with this default); no CPU memory arena, so
 * a request with a huge shape does not leave the server that large (bench/memory.js).
 */
export const SERVER_RUNTIME_DEFAULTS: RuntimeConfig = { allowSpinning: false, memoryArena: false };

/** ServerOptions.inferTimeoutMs when left out: every inference request's deadline (ms) unless the request or the model's config.timeoutMs says otherwise. */
export const INFER_TIMEOUT_MS_DEFAULT = 30_000;

/** Default batching when neither config.json nor the server says: the scheduler with adaptive delay. */
export const DEFAULT_BATCHING: BatchingOptions = { maxBatchSize: 32, adaptive: true };

/**
 * Structural validation of a config.json (or a load request's config override). Values inside
 * `runtime` and `batching` are validated by loadModel()'s own checks when the model loads.
 */
export function parseModelConfig(where: string, value: unknown, { fromApi = false } = {}): ModelConfig {
  const c = expectPlainObject(where, value);
  expectKnownKeys(where, c, CONFIG_KEYS);
  const out: ModelConfig = {};
  if (c.name !== undefined) out.name = expectString(`${where}.name`, c.name);
  if (c.platform !== undefined) {
    out.platform = expectOneOf(`${where}.platform`, c.platform, ['onnxruntime_onnx'] as const);
  }
  if (c.instances !== undefined) out.instances = expectInteger(`${where}.instances`, c.instances, 1, 64);
  if (c.batching !== undefined) {
    if (c.batching === false) out.batching = false;
    else out.batching = expectPlainObject(`${where}.batching`, c.batching) as BatchingOptions;
  }
  if (c.runtime !== undefined) {
    const r = expectPlainObject(`${where}.runtime`, c.runtime);
    expectKnownKeys(`${where}.runtime`, r, RUNTIME_KEYS);
    out.runtime = r as RuntimeConfig;
  }
  if (c.versionPolicy !== undefined) out.versionPolicy = parseVersionPolicy(`${where}.versionPolicy`, c.versionPolicy);
  if (c.inputs !== undefined) out.inputs = parseTensorDecls(`${where}.inputs`, c.inputs);
  if (c.outputs !== undefined) out.outputs = parseTensorDecls(`${where}.outputs`, c.outputs);
  if (c.warmup !== undefined) out.warmup = parseWarmup(`${where}.warmup`, c.warmup);
  if (c.timeoutMs !== undefined) out.timeoutMs = expectInteger(`${where}.timeoutMs`, c.timeoutMs, 1, 2_147_483_647);
  if (c.responseCache !== undefined) {
    const rc = expectPlainObject(`${where}.responseCache`, c.responseCache);
    expectKnownKeys(`${where}.responseCache`, rc, ['enable']);
    out.responseCache = { enable: expectBoolean(`${where}.responseCache.enable`, rc.enable) };
  }
  if (c.preprocess !== undefined) out.preprocess = checkPreprocess(`${where}.preprocess`, c.preprocess);
  if (c.postprocess !== undefined) out.postprocess = checkPostprocess(`${where}.postprocess`, c.postprocess);
  if (fromApi && out.runtime?.optimizedModelFilePath !== undefined) {
    // It makes ONNX Runtime write a file: only the operator's config.json may say where.
    throw new NimifyError('INVALID_ARGUMENT', `${where}.runtime.optimizedModelFilePath: cannot be set through the repository API (set it in config.json)`);
  }
  const epFile = fromApi ? findFileOption(out.runtime?.executionProviders) : null;
  if (epFile !== null) {
    // A provider library runs its code in the server; TensorRT's caches are written: the operator's only.
    throw new NimifyError('INVALID_ARGUMENT', `${where}.runtime.executionProviders${epFile}: cannot be set through the repository API (set it in config.json or with --execution-provider)`);
  }
  // Every runtime and batching value checked now, with the same rules loadModel() applies.
  try {
    toNativeConfig({ ...(out.runtime ?? {}), ...(out.instances !== undefined ? { instances: out.instances } : {}), ...(out.batching ? { batching: out.batching } : {}) });
  } catch (err) {
    if (err instanceof NimifyError) {
      throw new NimifyError(err.code, err.message.replace(/^options\.(batching|instances)/, `${where}.$1`).replace(/^options(\.|:)/, `${where}.runtime$1`));
    }
    throw err;
  }
  return out;
}

export function parseVersionPolicy(where: string, value: unknown): VersionPolicy {
  if (value === 'all') return 'all';
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === 'latest') return { latest: expectInteger(`${where}.latest`, v.latest, 1, 1000) };
    if (keys.length === 1 && keys[0] === 'specific') {
      if (!Array.isArray(v.specific) || v.specific.length === 0) throw invalid(`${where}.specific`, 'a non-empty array of version numbers', v.specific);
      return { specific: v.specific.map((n, i) => expectInteger(`${where}.specific[${i}]`, n, 0)) };
    }
  }
  throw invalid(where, `{"latest": n}, "all" or {"specific": [versions]}`, value);
}

function parseTensorDecls(where: string, value: unknown): Array<{ name: string; datatype?: Datatype; shape?: number[] }> {
  if (!Array.isArray(value)) throw invalid(where, 'an array of {name, datatype?, shape?}', value);
  return value.map((entry, i) => {
    const e = expectPlainObject(`${where}[${i}]`, entry);
    expectKnownKeys(`${where}[${i}]`, e, ['name', 'datatype', 'shape']);
    const out: { name: string; datatype?: Datatype; shape?: number[] } = { name: expectString(`${where}[${i}].name`, e.name) };
    if (e.datatype !== undefined) {
      if (!isDatatype(e.datatype)) throw invalid(`${where}[${i}].datatype`, `one of ${DATATYPES.join(', ')}`, e.datatype);
      out.datatype = e.datatype;
    }
    if (e.shape !== undefined) {
      if (!Array.isArray(e.shape)) throw invalid(`${where}[${i}].shape`, 'an array of dims (-1 = variable)', e.shape);
      out.shape = e.shape.map((d, j) => expectInteger(`${where}[${i}].shape[${j}]`, d, -1));
    }
    return out;
  });
}

function parseWarmup(where: string, value: unknown): WarmupRequest[] {
  if (!Array.isArray(value)) throw invalid(where, 'an array of warmup requests', value);
  return value.map((entry, i) => {
    const w = expectPlainObject(`${where}[${i}]`, entry);
    expectKnownKeys(`${where}[${i}]`, w, ['name', 'inputs', 'count', 'optional']);
    const inputs = expectPlainObject(`${where}[${i}].inputs`, w.inputs);
    // Input names are the model's (any string, `__proto__` included): a null-prototype record
    // keeps them own data properties, never the record's prototype.
    const req: WarmupRequest = { inputs: Object.create(null) as WarmupRequest['inputs'] };
    if (w.name !== undefined) req.name = expectString(`${where}[${i}].name`, w.name);
    if (w.count !== undefined) req.count = expectInteger(`${where}[${i}].count`, w.count, 1, 10_000);
    if (w.optional !== undefined) req.optional = expectBoolean(`${where}[${i}].optional`, w.optional);
    for (const [name, spec] of Object.entries(inputs)) {
      const s = expectPlainObject(`${where}[${i}].inputs.${name}`, spec);
      expectKnownKeys(`${where}[${i}].inputs.${name}`, s, ['shape', 'fill', 'data']);
      if (!Array.isArray(s.shape)) throw invalid(`${where}[${i}].inputs.${name}.shape`, 'an array of non-negative dims', s.shape);
      const input: WarmupInput = { shape: s.shape.map((d, j) => expectInteger(`${where}[${i}].inputs.${name}.shape[${j}]`, d, 0, 1 << 24)) };
      if (s.fill !== undefined) input.fill = expectOneOf(`${where}[${i}].inputs.${name}.fill`, s.fill, ['zero', 'random'] as const);
      if (s.data !== undefined) {
        // Checked element by element against the input's datatype when the warmup runs (the model is loaded then).
        if (s.data === null || (typeof s.data === 'object' && !Array.isArray(s.data))) {
          throw invalid(`${where}[${i}].inputs.${name}.data`, 'an array of values (flat or nested), or one value for a one-element shape', s.data);
        }
        if (s.fill !== undefined) throw invalid(`${where}[${i}].inputs.${name}`, 'either fill or data, not both', s);
        input.data = s.data;
      }
      req.inputs[name] = input;
    }
    return req;
  });
}

/** The load options a (partial) config and the defaults give, before the model is loaded. */
export function loadOptionsFor(config: ModelConfig, defaults: ModelDefaults): LoadOptions {
  const batching = config.batching ?? defaults.batching ?? DEFAULT_BATCHING;
  // (inlineBelowMicros spelled out with the library's default: the completed config and `nimify
  // bench` show where requests run)
  const options: LoadOptions = { inlineBelowMicros: INLINE_BELOW_MICROS_DEFAULT, ...SERVER_RUNTIME_DEFAULTS, ...(defaults.runtime ?? {}), ...(config.runtime ?? {}) };
  const instances = config.instances ?? defaults.instances;
  if (instances !== undefined) options.instances = instances;
  if (batching !== false) options.batching = { ...batching };
  return options;
}

function wireShape(info: TensorInfo): number[] {
  return (info.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
}

function wireTensors(where: string, infos: readonly TensorInfo[], decls: ModelConfig['inputs']): WireTensor[] {
  const tensors: WireTensor[] = [];
  for (const info of infos) {
    const datatype = toDatatype(info.type);
    if (datatype === null) {
      throw new NimifyError('UNSUPPORTED', `${where}: '${info.name}' is a ${info.type}, which the inference protocol cannot carry`);
    }
    tensors.push({ name: info.name, datatype, shape: wireShape(info) });
  }
  for (const [i, decl] of (decls ?? []).entries()) {
    const t = tensors.find((x) => x.name === decl.name);
    if (t === undefined) throw new NimifyError('INVALID_ARGUMENT', `${where}[${i}].name: the model has no ${where.endsWith('inputs') ? 'input' : 'output'} '${decl.name}' (it has ${tensors.map((x) => `'${x.name}'`).join(', ')})`);
    if (decl.datatype !== undefined && decl.datatype !== t.datatype) {
      throw new NimifyError('INVALID_ARGUMENT', `${where}[${i}].datatype: '${decl.name}' is ${t.datatype} in the model, the config says ${decl.datatype}`);
    }
    if (decl.shape !== undefined) {
      const compatible = decl.shape.length === t.shape.length && decl.shape.every((d, j) => t.shape[j] < 0 || d === t.shape[j]);
      if (!compatible) {
        throw new NimifyError('INVALID_ARGUMENT', `${where}[${i}].shape: [${decl.shape.join(', ')}] does not fit the model's [${t.shape.join(', ')}] for '${decl.name}'`);
      }
      t.shape = decl.shape.slice();
    }
  }
  return tensors;
}

/** Whether the scheduler treats dim 0 as the batch dim (the addon's rule, reported by the model). */
export function detectBatchDim(model: Pick<Model, 'noBatchDim'>, batching: BatchingOptions | false): boolean {
  if (batching === false) return false;
  if (batching.batchDim !== undefined) return batching.batchDim;
  return model.noBatchDim === null;
}

/** Fills in everything the config left out, from the defaults and the loaded model. */
export function completeConfig(name: string, config: ModelConfig, defaults: ModelDefaults, model: Model): CompletedConfig {
  const options = loadOptionsFor(config, defaults);
  const batching: BatchingOptions | false = options.batching === undefined ? false : { ...options.batching, batchDim: detectBatchDim(model, options.batching) };
  const inputs = wireTensors('config.inputs', model.inputs, config.inputs);
  const outputs = wireTensors('config.outputs', model.outputs, config.outputs);
  const { instances: _i, batching: _b, ...runtime } = options;
  return {
    name,
    platform: 'onnxruntime_onnx',
    instances: options.instances ?? 1,
    batching,
    runtime,
    versionPolicy: config.versionPolicy ?? { latest: 1 },
    inputs,
    outputs,
    // Dim 0 is a batch dim for the warmup when the scheduler batches on it, or would (batching off).
    warmup: config.warmup ?? autoWarmup(inputs, model.inputs, batching === false ? detectBatchDim(model, {}) : batching.batchDim === true),
    timeoutMs: config.timeoutMs ?? defaults.timeoutMs,
    preprocess: publicPreprocess(model.pipeline?.preprocess ?? null),
    postprocess: model.pipeline?.postprocess ?? null,
    responseCache: { enable: config.responseCache?.enable === true },
  };
}

/**
 * Length a variable dim that is not the batch dim gets wherever nimify invents inputs (the
 * automatic warmup, `nimify inspect`'s latency, `nimify bench`/`tune` without --shape). 1 is what
 * many ops refuse: a reflect Pad needs more elements than it pads, a convolution or STFT at least
 * its kernel or window, a pooling stack at least its total stride. 128 holds the windows of speech
 * models (silero VAD's 8 kHz STFT), survives five stride-2 stages of an image net (4 × 4 left)
 * and is a sequence every text model takes, while a run on it stays cheap.
 */
export const WARMUP_DIM = 128;

/** Most elements invented inputs hold, all inputs together at batch 1 (4 MiB of float32): variable dims shrink to fit. */
export const WARMUP_MAX_ELEMENTS = 1 << 20;

/** An input as the shape planner sees it: numbers ≥ 0 fixed; a symbolic name or a negative number variable; null = rank unknown. */
export interface PlanTensor {
  name: string;
  shape: ReadonlyArray<number | string> | null;
}

/**
 * The one rule for the shape of inputs nimify invents (owned here; the automatic warmup, `nimify
 * inspect`, `nimify bench` and `nimify tune` all call it): the batch dim — dim 0 when `batchDim`,
 * and any dim sharing its symbolic name — is `batch` (default 1); every other variable dim is
 * WARMUP_DIM, halved until all inputs together hold at most WARMUP_MAX_ELEMENTS at batch 1 (so the
 * non-batch dims do not depend on the batch size). `given` inputs keep their whole shape (bench's
 * --shape) and count towards the cap. Null when an input not given has an unknown rank: no shape
 * could be guessed.
 */
export function planShapes(inputs: readonly PlanTensor[], o: { batchDim: boolean; batch?: number; given?: ReadonlyMap<string, readonly number[]> }): number[][] | null {
  const given = o.given ?? new Map<string, readonly number[]>();
  if (inputs.some((t) => t.shape === null && !given.has(t.name))) return null;
  const batchNames = new Set<string>();
  if (o.batchDim) for (const t of inputs) if (typeof t.shape?.[0] === 'string') batchNames.add(t.shape[0]);
  const isBatch = (d: number | string, j: number) => (o.batchDim && j === 0) || (typeof d === 'string' && batchNames.has(d));
  const variable = (d: number | string) => typeof d === 'string' || d < 0;
  const shapesFor = (length: number, batch: number) =>
    inputs.map((t) => given.get(t.name)?.slice() ?? t.shape!.map((d, j) => (!variable(d) ? (d as number) : isBatch(d, j) ? batch : length)));
  const elements = (shapes: number[][]) => shapes.reduce((sum, s) => sum + s.reduce((a, b) => a * b, 1), 0);
  let length = WARMUP_DIM;
  while (length > 1 && elements(shapesFor(length, 1)) > WARMUP_MAX_ELEMENTS) length = Math.floor(length / 2);
  return shapesFor(length, o.batch ?? 1);
}

/**
 * The warmup a model gets when its config.json has none: one optional request (a failure is a
 * warning, not an UNAVAILABLE model) of zeros shaped by planShapes (the batch dim `batch`, default
 * 1). A numeric scalar gets 1 instead of 0 (a sample rate, a count, a top-k: 0 is the degenerate
 * value); bool is false, strings ''. None at all when an input's rank is unknown. `nimify inspect`
 * measures its latency on these requests too.
 */
export function autoWarmup(inputs: readonly WireTensor[], infos: readonly TensorInfo[], batchDim: boolean, batch = 1): WarmupRequest[] {
  const symbols = new Map(infos.map((t) => [t.name, t.shape]));
  // The wire shape (a config.json's declared shape wins), with the model's symbolic names where it is variable.
  const plan = planShapes(
    inputs.map((t) => {
      const sym = symbols.get(t.name);
      return { name: t.name, shape: sym === null ? null : t.shape.map((d, j) => (d < 0 && typeof sym?.[j] === 'string' ? sym[j] : d)) };
    }),
    { batchDim, batch },
  );
  if (plan === null) return [];
  const req: WarmupRequest = { name: 'automatic', optional: true, inputs: {} };
  for (const [i, t] of inputs.entries()) {
    const numericScalar = plan[i].length === 0 && t.datatype !== 'BOOL' && t.datatype !== 'BYTES';
    req.inputs[t.name] = numericScalar ? { shape: [], data: [1] } : { shape: plan[i], fill: 'zero' };
  }
  return [req];
}

export function wireModel(config: CompletedConfig): WireModel {
  return { inputs: config.inputs, outputs: config.outputs, batched: config.batching !== false && config.batching.batchDim === true };
}

/**
 * A loaded model's inputs and outputs as the protocol describes them, before any config is
 * applied; null when one has a type the protocol cannot carry. What metadata shows for a version
 * whose config did not complete.
 */
export function modelIo(model: Model): { inputs: WireTensor[]; outputs: WireTensor[] } | null {
  try {
    return { inputs: wireTensors('inputs', model.inputs, undefined), outputs: wireTensors('outputs', model.outputs, undefined) };
  } catch {
    return null;
  }
}
