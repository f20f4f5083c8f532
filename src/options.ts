/**
 * Validation of loadModel() and infer() options, and their translation into what the addon
 * reads (enums as numbers).
 */
import {
  expectInteger,
  expectKnownKeys,
  expectOneOf,
  expectPlainObject,
  expectPositiveNumber,
  expectString,
  invalid,
} from './validate';
import type { Tensor } from './tensor';

export type ExecutionProvider = 'cpu' | { name: 'cpu' };

export interface LoadOptions {
  /** Ordered list of execution providers. Only 'cpu' is available in this release. */
  executionProviders?: ExecutionProvider[];
  /** Threads ORT uses inside one operator (0 = ORT default: one per core). */
  intraOpNumThreads?: number;
  /** Threads ORT uses across operators in 'parallel' execution mode (0 = default). */
  interOpNumThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  executionMode?: 'sequential' | 'parallel';
  /** Where ORT saves the optimized graph after loading. */
  optimizedModelFilePath?: string;
  /** Fixes symbolic dims by name, e.g. { batch: 1 }. */
  freeDimensionOverrides?: Record<string, number>;
  /** ORT log severity for this session: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
}

export interface InferOptions {
  /** Output names to fetch, or output name → preallocated Tensor written in place. Default: all. */
  outputs?: readonly string[] | Record<string, Tensor | null | undefined>;
  /** Aborting rejects with ABORTED and terminates the run. */
  signal?: AbortSignal;
  /** Rejects with TIMEOUT and terminates the run after this many milliseconds. */
  timeoutMs?: number;
}

const LOAD_KEYS = [
  'executionProviders',
  'intraOpNumThreads',
  'interOpNumThreads',
  'graphOptimizationLevel',
  'executionMode',
  'optimizedModelFilePath',
  'freeDimensionOverrides',
  'logSeverityLevel',
] as const;

const OPT_LEVELS = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;
const EXEC_MODES = { sequential: 0, parallel: 1 } as const;
const KNOWN_PROVIDERS = ['cpu', 'cuda', 'tensorrt'] as const;

/** Validates LoadOptions and returns the addon's config object. */
export function toNativeConfig(options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  const o = expectPlainObject('options', options);
  expectKnownKeys('options', o, LOAD_KEYS);
  const config: Record<string, unknown> = {};
  if (o.executionProviders !== undefined) {
    if (!Array.isArray(o.executionProviders) || o.executionProviders.length === 0) {
      throw invalid('options.executionProviders', 'a non-empty array such as [\'cpu\']', o.executionProviders);
    }
    config.executionProviders = o.executionProviders.map((ep: unknown, i: number) => {
      const name = typeof ep === 'object' && ep !== null ? (ep as { name?: unknown }).name : ep;
      return expectOneOf(`options.executionProviders[${i}]`, name, KNOWN_PROVIDERS);
    });
  }
  if (o.intraOpNumThreads !== undefined) config.intraOpNumThreads = expectInteger('options.intraOpNumThreads', o.intraOpNumThreads, 0, 1024);
  if (o.interOpNumThreads !== undefined) config.interOpNumThreads = expectInteger('options.interOpNumThreads', o.interOpNumThreads, 0, 1024);
  if (o.graphOptimizationLevel !== undefined) {
    config.graphOptimizationLevel = OPT_LEVELS[expectOneOf('options.graphOptimizationLevel', o.graphOptimizationLevel, Object.keys(OPT_LEVELS) as (keyof typeof OPT_LEVELS)[])];
  }
  if (o.executionMode !== undefined) {
    config.executionMode = EXEC_MODES[expectOneOf('options.executionMode', o.executionMode, Object.keys(EXEC_MODES) as (keyof typeof EXEC_MODES)[])];
  }
  if (o.optimizedModelFilePath !== undefined) config.optimizedModelFilePath = expectString('options.optimizedModelFilePath', o.optimizedModelFilePath);
  if (o.freeDimensionOverrides !== undefined) {
    const fdo = expectPlainObject('options.freeDimensionOverrides', o.freeDimensionOverrides);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(fdo)) out[k] = expectInteger(`options.freeDimensionOverrides.${k}`, v, 0);
    config.freeDimensionOverrides = out;
  }
  if (o.logSeverityLevel !== undefined) config.logSeverityLevel = expectInteger('options.logSeverityLevel', o.logSeverityLevel, 0, 4);
  return config;
}

const INFER_KEYS = ['outputs', 'signal', 'timeoutMs'] as const;

export function checkInferOptions(options: unknown): InferOptions {
  if (options === undefined) return {};
  const o = expectPlainObject('options', options);
  expectKnownKeys('options', o, INFER_KEYS);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', o.signal);
  if (o.timeoutMs !== undefined) expectPositiveNumber('options.timeoutMs', o.timeoutMs);
  return o as InferOptions;
}
