/**
 * Loads the native addon (a source build in build/Release, else the prebuilt platform package
 * @nimify/<platform>) and ONNX Runtime (NIMIFY_ORT_LIBRARY, else the platform package's copy,
 * else onnxruntime-node's).
 * Both happen on first use, never at `require('nimify')`, so importing nimify cannot fail
 * because ORT is missing; the first call that needs ORT gets a NimifyError naming every path
 * tried and the fix.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NimifyError, fromNative } from './errors';

/** null: ORT wrote into the buffer passed with the call; else the copy path's [data, dims]. */
export type NativeResult = [data: unknown, dims: number[]] | null;

export interface NativeIoInfo {
  name: string;
  type: string;
  shape: Array<number | string> | null;
}

export interface NativeDescription {
  inputs: NativeIoInfo[];
  outputs: NativeIoInfo[];
  metadata: {
    producerName: string;
    graphName: string;
    domain: string;
    description: string;
    graphDescription: string;
    version: number;
    custom: Record<string, string>;
  };
  /** null when dim 0 of every input and output can be the batch dim; else why not (native/scheduler.cc BatchDimProblem, the one rule). */
  noBatchDim: string | null;
  /** The execution providers the session was created with, in preference order, ending with 'cpu'. */
  providers: string[];
  /** Providers that were asked for but not used, and why (native/execution_providers.h). */
  skippedProviders: Array<{ name: string; reason: string }>;
  /** Whether infer() goes through the native scheduler, whose watchdog ends running requests at their timeout (native/scheduler.h). */
  scheduled: boolean;
  /** Whether the session runs on a provider besides the CPU (native SessionCore::on_device, the one rule). */
  onDevice: boolean;
  /** Where the session keeps tensors: 'cpu', 'cuda:0', … (native/device_memory.h). */
  device: string;
  /** Whether batches are gathered into the provider's pinned host memory (a GPU provider that has it). */
  pinnedStaging: boolean;
}

/** The addon's DeviceTensor wrapper (native/device_tensor.h); TypeScript's DeviceTensor holds one. */
export interface NativeDeviceTensor {
  describe(): { type: string; dims: number[]; location: string; byteLength: number };
  /** A copy in a new JS buffer, made off the JS thread. */
  download(): Promise<[data: unknown, dims: number[]]>;
  /** Frees the memory now (idempotent). */
  dispose(): void;
}

export interface NativeSession {
  describe(): NativeDescription;
  /**
   * See native/run_job.h for the argument layout (everything in the model's I/O order). Settles
   * the promise of the spec's ticket (settle.ts; io-plan.ts SPEC_REQUEST) with one result per
   * fetched output, or with null when every output was written into outData; throws when the
   * request is refused (nothing settles then). `timing` (tracing only): a Float64Array of
   * RUN_TIMING_LENGTH the addon fills when the run settles (RUN_TIMING).
   */
  run(inData: unknown, outData: unknown, spec: Float64Array, timing?: Float64Array): void;
  runSync(inData: unknown, outData: unknown, spec: Float64Array): NativeResult[] | null;
  cancel(runId: number, code: 'ABORTED' | 'TIMEOUT'): boolean;
  /** Settles queued requests with DISPOSED (scheduled models). */
  close(): void;
  release(): void;
  stats(): NativeStats;
  /** Zeroes every cumulative counter and histogram of stats() (native/session.h ResetStats). */
  resetStats(): void;
}

/**
 * The slots of infer()'s internal `timing` array (per-request tracing, src/server/tracing.ts).
 * Slot SUBMITTED_MS is TypeScript's (model.ts: performance.now() right before the native call);
 * the addon fills the rest when the request settles (native/run_job.cc WriteTrace, kTraceSlots):
 * times in µs after the request was queued (Attach, in that same native call), on the steady
 * clock of the thread that ran it.
 */
export const RUN_TIMING = {
  /** performance.now() (ms) when infer() handed the request to the addon. */
  SUBMITTED_MS: 0,
  /** 1 when the request ran (else it was refused, cancelled or expired before its run: the rest is 0). */
  RAN: 1,
  /** Its run (batch) started: the queue wait ended (Triton's COMPUTE_START). */
  START_US: 2,
  /** The batch's inputs were gathered (COMPUTE_INPUT_END; = START_US when nothing was gathered). */
  INPUT_END_US: 3,
  /** ORT's run ended (COMPUTE_OUTPUT_START). */
  RUN_END_US: 4,
  /** The outputs were scattered to their requests (COMPUTE_END). */
  END_US: 5,
  /** Rows of the run (the batch size; padding excluded). */
  BATCH_ROWS: 6,
  /** Requests in the run. */
  BATCH_REQUESTS: 7,
  /** The scheduler instance that ran it (0-based); -1 for the JS thread (inline) or the executor (no scheduler). */
  INSTANCE: 8,
} as const;
export const RUN_TIMING_LENGTH = 9;

export interface Percentiles {
  p50: number;
  p99: number;
  /** Number of samples and their sum (µs), cumulative. */
  count: number;
  sum: number;
}

/** The scheduler's counters (native/scheduler.cc Scheduler::Stats). */
export interface SchedulerStats {
  /** Requests waiting in the queue now. */
  queueDepth: number;
  /** Requests in batches running now. */
  inFlight: number;
  /** Runs (batches) executed. */
  batches: number;
  /** Of those, batches run on the JS thread itself (LoadOptions.inlineBelowMicros). */
  inlineBatches: number;
  /** Times the JS thread woke a sleeping instance thread (at most one per event-loop turn). */
  wakes: number;
  /** Batch size (rows on the batch dim; 1 for a request that runs alone) → number of batches. */
  batchSizeHistogram: Record<string, number>;
  /** Time from enqueue to the start of the request's batch. */
  queueTimeUs: Percentiles;
  /** Time per batch: gather + run + scatter. */
  computeTimeUs: Percentiles;
  /** Cumulative gather / ORT run / scatter time (µs). */
  computeInputUs: number;
  computeInferUs: number;
  computeOutputUs: number;
  instances: number;
  /** Bytes copied into batch tensors, and out of them into each request's outputs. */
  bytesGathered: number;
  bytesScattered: number;
  /** Zero rows added to batches by batching.padToPreferred (computed, never returned). */
  paddingRows: number;
  /** The queue delay in effect now (adaptive: the current estimate; 0 while traffic is sparse). */
  delayUs: number;
}

/**
 * What became of the model's infer() requests (native/request_counts.h), the same for scheduled
 * and unscheduled models. Triton's statistics map onto them: `inference_stats.success.count` =
 * `succeeded`; `fail.count` = `rejected + failed + expired + cancelled` (failure reasons REJECTED
 * = rejected, BACKEND = failed, CANCELED = cancelled; expired is a timeout). inferSync() calls are
 * not requests (they show in `runs` / `failures` only), nor are calls refused by validation or
 * after dispose().
 */
export interface RequestStats {
  /** infer() requests admitted: queued by the scheduler, or started (unscheduled models). */
  requests: number;
  /** Requests refused with QUEUE_FULL at admission (queue depth, or a predicted queue wait over their timeoutMs); never in `requests`. */
  rejected: number;
  /** Admitted requests that resolved. */
  succeeded: number;
  /** Admitted requests that ran and failed (ONNX Runtime or output errors). */
  failed: number;
  /** Admitted requests that ended with TIMEOUT: dropped from the queue at their deadline, or their run terminated. */
  expired: number;
  /** Admitted requests that ended with ABORTED (AbortSignal) or DISPOSED (the model was disposed first). */
  cancelled: number;
  // requests = succeeded + failed + expired + cancelled + the requests not yet settled.
}

export interface NativeStats extends Omit<ModelStats, keyof SchedulerStats | 'scheduled'> {
  scheduler?: SchedulerStats;
  /** Runs on the JS thread of a model without a scheduler (ModelStats reports them as inlineBatches). */
  inlineRuns: number;
}

/** Cumulative counters of one model (see Model.stats()), plus the queue's current depth and in-flight count. */
export interface ModelStats extends SchedulerStats, RequestStats {
  /** Whether infer() goes through the native scheduler (batching or instances configured). */
  scheduled: boolean;
  /**
   * Whether runs on the JS thread (inlineBatches) use a second, single-threaded session of the
   * model rather than the model's own (LoadOptions.inlineBelowMicros, README "Inline runs").
   */
  inlineSingleThreaded: boolean;
  /** ORT runs, including failed ones. */
  runs: number;
  failures: number;
  /** Outputs ORT wrote straight into JS memory (caller-supplied buffers not included). */
  outputsZeroCopy: number;
  /** Outputs whose shape could not be known before the run, copied once from ORT's memory. */
  outputsCopied: number;
  bytesCopied: number;
  /** Runs repeated because the model's declared output shape did not match what it produced. */
  shapeFallbacks: number;
}

export interface RuntimeInfo {
  /** The ONNX Runtime shared library that was loaded. */
  library: string;
  /** ONNX Runtime's own version string. */
  version: string;
  /** The C API version nimify requested. */
  apiVersion: number;
  /** Execution providers compiled into that library (ORT's names, e.g. CPUExecutionProvider). */
  providers: string[];
}

export interface NativeBinding {
  loadRuntime(candidates: string[]): RuntimeInfo;
  runtimeInfo(): RuntimeInfo | null;
  createSession(source: string | Uint8Array, config: Record<string, unknown>): Promise<NativeSession>;
  /** Settles finished infer() runs of this thread; `keepPolling` tells executor threads to skip wake-ups. Returns runs still pending. */
  poll(keepPolling: boolean): number;
  /** Registers this thread's settler of infer() promises (settle.ts; native/settlement.h). */
  setSettler(settler: (n: number, entries: Int32Array, values: unknown[], data: ArrayBuffer) => void): void;
  /** glibc malloc_trim(0): gives freed heap pages back to the OS; false when nothing was released or not glibc. */
  trimMemory(): boolean;
  /**
   * KServe v2 JSON request bodies: parses the numeric `inputs[i].data` arrays of body[0, length)
   * into `nums` and writes the body with each replaced by a placeholder to `out` (native/json_scan.h).
   * Returns the number of arrays taken (spans[0] = the text's length, then start, count and
   * nesting depth per array), -1 when the body must be parsed as it is, or -2 when `nums` is too small.
   */
  scanInferJson(body: Uint8Array, length: number, nums: Float64Array, out: Uint8Array, spans: Uint32Array): number;
  /**
   * infer() copies a call's numeric inputs when, each rounded up to ownedInputAlign bytes in
   * turn, they total at most ownedInputBytes (native/run_job.h kOwnedInputBytes): such inputs are
   * read from the copy, never from the caller's memory.
   */
  ownedInputBytes: number;
  ownedInputAlign: number;
  /** infer()'s predicted outputs of at most this many bytes are copied at settlement (native/run_job.h kCopiedOutputBytes; io-plan.ts). */
  copiedOutputBytes: number;
  /** The class of device-resident results (its constructor refuses JS callers). */
  DeviceTensor: abstract new (...args: never[]) => NativeDeviceTensor;
}

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

interface PlatformModule {
  platformId(): string;
  packageName(id?: string): string;
}
// Plain JS shared with the install hook and the release packer (it runs before anything compiles).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const platform = require(path.join(PACKAGE_ROOT, 'scripts', 'platform.js')) as PlatformModule;

/** One place nimify looked for its addon or for ONNX Runtime, and what it found there. */
export interface LoaderCandidate {
  path: string;
  /** Where this candidate comes from. */
  origin: 'source-build' | 'prebuilt' | 'NIMIFY_ORT_LIBRARY' | 'onnxruntime-node';
  /** Why it was not used; absent for the one that was. */
  error?: string;
}

export interface AddonInfo {
  /** The addon file that loaded. */
  path: string;
  origin: 'source-build' | 'prebuilt';
  /** The platform id (linux-x64, linuxmusl-arm64, darwin-arm64, …) and the package that would carry its prebuild. */
  platform: string;
  platformPackage: string;
  /** Every candidate, in the order tried. */
  tried: LoaderCandidate[];
}

let addon: NativeBinding | undefined;
let addonInfoValue: AddonInfo | undefined;
let runtime: RuntimeInfo | undefined;

/** The installed platform package's folder and manifest, or undefined when it is not installed. */
function platformPackage(): { dir: string; manifest: { version?: string; nimify?: { ortLibrary?: string; ortVersion?: string } } } | undefined {
  try {
    const file = require.resolve(`${platform.packageName()}/package.json`, { paths: [PACKAGE_ROOT] });
    return { dir: path.dirname(file), manifest: JSON.parse(fs.readFileSync(file, 'utf8')) };
  } catch {
    return undefined;
  }
}

/**
 * Where the addon is looked for, in order (as sharp does): a source build in this package's
 * build/Release (a development checkout, or the install fallback on a platform without a
 * prebuild), then the platform package @nimify/<platform>.
 */
export function addonCandidates(): LoaderCandidate[] {
  const list: LoaderCandidate[] = [{ path: path.join(PACKAGE_ROOT, 'build', 'Release', 'nimify.node'), origin: 'source-build' }];
  const pkg = platformPackage();
  list.push({ path: pkg ? path.join(pkg.dir, 'nimify.node') : `${platform.packageName()}/nimify.node`, origin: 'prebuilt', ...(pkg ? {} : { error: `${platform.packageName()} is not installed` }) });
  return list;
}

function loadAddon(): NativeBinding {
  if (addon) return addon;
  const tried = addonCandidates();
  for (const c of tried) {
    if (c.error) continue;
    if (!fs.existsSync(c.path)) {
      c.error = 'no such file';
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(c.path) as NativeBinding;
      addonInfoValue = { path: c.path, origin: c.origin as AddonInfo['origin'], platform: platform.platformId(), platformPackage: platform.packageName(), tried };
      return addon;
    } catch (err) {
      c.error = (err as Error).message.split('\n')[0];
    }
  }
  throw new NimifyError(
    'RUNTIME_UNAVAILABLE',
    `the nimify native addon could not be loaded for ${platform.platformId()}; tried:\n${tried.map((c) => `  ${c.path}: ${c.error}`).join('\n')}\n` +
      `Fix: install the prebuilt package (\`npm install ${platform.packageName()}\`; it installs with nimify on the platforms it exists for), ` +
      'or build from source: `npm rebuild nimify` with "allowScripts": {"nimify": true} in your package.json (needs a C++ compiler, python3 and the ONNX Runtime C headers: see the README, "Building from source").',
    { cause: tried },
  );
}

/** Which addon file loaded and what was tried (loads it if needed). */
export function addonInfo(): AddonInfo {
  loadAddon();
  return { ...(addonInfoValue as AddonInfo), tried: (addonInfoValue as AddonInfo).tried.map((c) => ({ ...c })) };
}

function onnxruntimeNodeLibraries(): { candidates: LoaderCandidate[]; note?: string } {
  let pkgDir: string;
  try {
    pkgDir = path.dirname(require.resolve('onnxruntime-node/package.json', { paths: [PACKAGE_ROOT, process.cwd()] }));
  } catch {
    return { candidates: [], note: 'onnxruntime-node is not installed' };
  }
  const binDir = path.join(pkgDir, 'bin', 'napi-v6', process.platform, process.arch);
  const names = process.platform === 'win32' ? ['onnxruntime.dll'] : process.platform === 'darwin' ? ['libonnxruntime.1.dylib', 'libonnxruntime.dylib'] : ['libonnxruntime.so.1', 'libonnxruntime.so'];
  const candidates = names.map((n) => ({ path: path.join(binDir, n), origin: 'onnxruntime-node' as const }));
  return candidates.some((c) => fs.existsSync(c.path)) ? { candidates } : { candidates, note: `onnxruntime-node has no ONNX Runtime library for ${process.platform}/${process.arch}` };
}

/**
 * Where ONNX Runtime is looked for, in order: $NIMIFY_ORT_LIBRARY alone when set (an explicit
 * choice never falls back silently), else the library in the platform package @nimify/<platform>,
 * else the one inside an installed onnxruntime-node package (a user who has it, e.g. for its GPU
 * providers, or a development checkout).
 */
export function runtimeCandidates(env: NodeJS.ProcessEnv = process.env): { candidates: string[]; notes: string[]; detail: LoaderCandidate[] } {
  const explicit = env.NIMIFY_ORT_LIBRARY;
  if (explicit) {
    const detail: LoaderCandidate[] = [{ path: path.resolve(explicit), origin: 'NIMIFY_ORT_LIBRARY' }];
    return { candidates: detail.map((d) => d.path), notes: ['NIMIFY_ORT_LIBRARY is set'], detail };
  }
  const notes: string[] = [];
  const detail: LoaderCandidate[] = [];
  const pkg = platformPackage();
  const lib = pkg?.manifest.nimify?.ortLibrary;
  if (pkg && lib) detail.push({ path: path.join(pkg.dir, lib), origin: 'prebuilt' });
  else notes.push(`${platform.packageName()} is not installed`);
  const ortNode = onnxruntimeNodeLibraries();
  detail.push(...ortNode.candidates);
  if (ortNode.note) notes.push(ortNode.note);
  return { candidates: detail.map((d) => d.path), notes, detail };
}

/** How the last attempt to load ONNX Runtime went: every candidate in order, with why each unused one failed. */
let runtimeTried: { detail: LoaderCandidate[]; notes: string[] } | undefined;

/** The addon without ONNX Runtime (for work that needs no model), or null when it cannot be loaded. */
export function addonIfLoadable(): NativeBinding | null {
  try {
    return loadAddon();
  } catch {
    return null;
  }
}

/** The addon with ONNX Runtime loaded. Throws NimifyError('RUNTIME_UNAVAILABLE') otherwise. */
export function getBinding(): NativeBinding {
  const b = loadAddon();
  if (runtime) return b;
  const { detail, notes } = runtimeCandidates();
  runtimeTried = { detail, notes };
  // One candidate at a time, so that each failure keeps its own reason (nimify doctor shows them).
  for (const [i, c] of detail.entries()) {
    try {
      runtime = b.loadRuntime([c.path]);
      detail.length = i + 1; // the rest were not tried
      return b;
    } catch (err) {
      c.error = fromNative(err).message.replace(/^tried:\n\s*- [^:]*: /, '');
    }
  }
  const noteText = notes.length ? ` (${notes.join('; ')})` : '';
  throw new NimifyError(
    'RUNTIME_UNAVAILABLE',
    `could not load ONNX Runtime${noteText}: ${detail.length ? `tried:${detail.map((c) => `\n  - ${c.path}: ${c.error}`).join('')}` : 'no library paths to try'}\n` +
      `Fix: install the platform package (\`npm install ${platform.packageName()}\`), or onnxruntime-node (\`npm install onnxruntime-node\`), ` +
      'or set NIMIFY_ORT_LIBRARY to the path of libonnxruntime.so from ONNX Runtime >= 1.23.',
  );
}

/** The ONNX Runtime candidates of the last load attempt (none before the first), for diagnostics. */
export function runtimeAttempts(): { detail: LoaderCandidate[]; notes: string[] } | undefined {
  return runtimeTried && { detail: runtimeTried.detail.map((c) => ({ ...c })), notes: [...runtimeTried.notes] };
}

/** Which ONNX Runtime nimify uses; loads it if needed. */
export function runtimeInfo(): RuntimeInfo {
  getBinding();
  return { ...(runtime as RuntimeInfo), providers: [...(runtime as RuntimeInfo).providers] };
}
