/**
 * Loads the native addon (a prebuild or a local build, through node-gyp-build) and ONNX Runtime.
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
}

export interface NativeSession {
  describe(): NativeDescription;
  /** See native/run_job.h for the argument layout (everything in the model's I/O order). */
  /** Resolves with one result per fetched output, or null when every output was written into outData. */
  run(inData: unknown[], outData: (ArrayBufferView | null)[], spec: Float64Array, runId: number, priority: number, timeoutUs: number): Promise<NativeResult[] | null>;
  runSync(inData: unknown[], outData: (ArrayBufferView | null)[], spec: Float64Array): NativeResult[] | null;
  cancel(runId: number, code: 'ABORTED' | 'TIMEOUT'): boolean;
  /** Settles queued requests with DISPOSED (scheduled models). */
  close(): void;
  release(): void;
  stats(): NativeStats;
}

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
  /** Requests accepted into the queue. */
  requests: number;
  /** Runs (batches) executed. */
  batches: number;
  /** Of those, batches run on the JS thread itself (batching.inlineBelowMicros). */
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
  /** Requests refused with QUEUE_FULL. */
  rejected: number;
  /** Requests dropped with TIMEOUT before they ran. */
  expired: number;
  /** Requests removed from the queue by an AbortSignal. */
  cancelled: number;
  /** Requests that ran and failed. */
  failed: number;
  instances: number;
  /** Bytes copied into batch tensors, and out of them into each request's outputs. */
  bytesGathered: number;
  bytesScattered: number;
  /** The queue delay in effect now (adaptive: the current estimate; 0 while traffic is sparse). */
  delayUs: number;
}

export interface NativeStats extends Omit<ModelStats, keyof SchedulerStats | 'scheduled'> {
  scheduler?: SchedulerStats;
}

/** Cumulative counters of one model (see Model.stats()), plus the queue's current depth and in-flight count. */
export interface ModelStats extends SchedulerStats {
  /** Whether infer() goes through the native scheduler (batching or instances configured). */
  scheduled: boolean;
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
}

export interface NativeBinding {
  loadRuntime(candidates: string[]): RuntimeInfo;
  runtimeInfo(): RuntimeInfo | null;
  createSession(source: string | Uint8Array, config: Record<string, unknown>): Promise<NativeSession>;
  /** Settles finished infer() runs of this thread; `keepPolling` tells executor threads to skip wake-ups. Returns runs still pending. */
  poll(keepPolling: boolean): number;
}

const PACKAGE_ROOT = path.resolve(__dirname, '..');
let addon: NativeBinding | undefined;
let runtime: RuntimeInfo | undefined;

function loadAddon(): NativeBinding {
  if (addon) return addon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeBinding;
    addon = nodeGypBuild(PACKAGE_ROOT);
  } catch (err) {
    throw new NimifyError(
      'RUNTIME_UNAVAILABLE',
      `the nimify native addon could not be loaded (${(err as Error).message}). ` +
        'No prebuild matches this platform and no local build exists: run `npm rebuild nimify` (needs a C++ compiler and cmake or python3).',
      { cause: err },
    );
  }
  return addon;
}

function libraryNames(): string[] {
  if (process.platform === 'win32') return ['onnxruntime.dll'];
  if (process.platform === 'darwin') return ['libonnxruntime.dylib'];
  return ['libonnxruntime.so.1', 'libonnxruntime.so'];
}

/**
 * Where ONNX Runtime is looked for, in order: $NIMIFY_ORT_LIBRARY alone when set (an explicit
 * choice never falls back silently), else the library bundled in the onnxruntime-node package.
 */
export function runtimeCandidates(env: NodeJS.ProcessEnv = process.env): { candidates: string[]; notes: string[] } {
  const explicit = env.NIMIFY_ORT_LIBRARY;
  if (explicit) return { candidates: [path.resolve(explicit)], notes: ['NIMIFY_ORT_LIBRARY is set'] };
  const notes: string[] = [];
  const candidates: string[] = [];
  let pkgDir: string | undefined;
  try {
    pkgDir = path.dirname(require.resolve('onnxruntime-node/package.json', { paths: [PACKAGE_ROOT, process.cwd()] }));
  } catch {
    notes.push('the onnxruntime-node package is not installed');
  }
  if (pkgDir) {
    const binDir = path.join(pkgDir, 'bin', 'napi-v6', process.platform, process.arch);
    let found = false;
    for (const name of libraryNames()) {
      const p = path.join(binDir, name);
      candidates.push(p);
      if (fs.existsSync(p)) found = true;
    }
    if (process.platform === 'darwin' && fs.existsSync(binDir)) {
      for (const f of fs.readdirSync(binDir)) {
        if (/^libonnxruntime\..*dylib$/.test(f)) candidates.push(path.join(binDir, f));
      }
    }
    if (!found) notes.push(`onnxruntime-node has no ONNX Runtime library for ${process.platform}/${process.arch}`);
  }
  return { candidates, notes };
}

/** The addon with ONNX Runtime loaded. Throws NimifyError('RUNTIME_UNAVAILABLE') otherwise. */
export function getBinding(): NativeBinding {
  const b = loadAddon();
  if (runtime) return b;
  const { candidates, notes } = runtimeCandidates();
  try {
    runtime = b.loadRuntime(candidates);
  } catch (err) {
    const e = fromNative(err);
    const noteText = notes.length ? ` (${notes.join('; ')})` : '';
    throw new NimifyError(
      'RUNTIME_UNAVAILABLE',
      `could not load ONNX Runtime${noteText}: ${candidates.length ? e.message : 'no library paths to try'}\n` +
        'Fix: install onnxruntime-node (`npm install onnxruntime-node`), or set NIMIFY_ORT_LIBRARY to the path of ' +
        'libonnxruntime.so from ONNX Runtime >= 1.23.',
      { cause: err },
    );
  }
  return b;
}

/** Which ONNX Runtime nimify uses; loads it if needed. */
export function runtimeInfo(): RuntimeInfo {
  getBinding();
  return { ...(runtime as RuntimeInfo) };
}
