/**
 * Execution providers: the one table of what each provider accepts (nimify's option name → ONNX
 * Runtime's string option key), its validation, and the request the addon reads.
 *
 * ONNX Runtime takes provider options as string key/value pairs (the CUDA and TensorRT "V2"
 * provider options of the C API, and the plugin-EP API's `SessionOptionsAppendExecutionProvider_V2`).
 * Users write typed camelCase options; this module checks names, types and ranges (unknown keys
 * are refused) and translates them, so the addon only appends what it is handed (native/
 * execution_providers.cc). The list is ordered by preference: the addon appends each provider in
 * turn and skips one that cannot be used (its library missing, no device) unless it is `required`;
 * the CPU provider is always the last resort, whether listed or not.
 */
import { NimifyError } from './errors';
import {
  describe,
  expectBoolean,
  expectDims,
  expectInteger,
  expectKnownKeys,
  expectOneOf,
  expectPlainObject,
  expectString,
  invalid,
  isPlainObject,
} from './validate';

/** CUDA execution provider options (ONNX Runtime's CUDA provider options, camelCase). */
export interface CudaProviderOptions {
  name: 'cuda';
  /** Fail loadModel() with EP_UNAVAILABLE instead of falling back when this provider cannot be used. */
  required?: boolean;
  /** A CUDA execution-provider library to load through ONNX Runtime's plugin-EP API. */
  library?: string;
  deviceId?: number;
  /** Bytes the provider's arena may hold on the device. */
  gpuMemLimit?: number;
  arenaExtendStrategy?: 'nextPowerOfTwo' | 'sameAsRequested';
  cudnnConvAlgoSearch?: 'exhaustive' | 'heuristic' | 'default';
  /** Capture and replay the whole graph as a CUDA graph (fixed input shapes and addresses only). */
  enableCudaGraph?: boolean;
  copyInDefaultStream?: boolean;
  cudnnConvUseMaxWorkspace?: boolean;
  tunableOpEnable?: boolean;
  preferNhwc?: boolean;
  useTf32?: boolean;
}

/** Shapes per input name for one TensorRT optimization profile, e.g. { x: [1, 3, 224, 224] }. */
export type ShapeProfile = Record<string, number[]>;

/** TensorRT execution provider options (ONNX Runtime's TensorRT provider options, camelCase). */
export interface TensorRtProviderOptions {
  name: 'tensorrt';
  required?: boolean;
  library?: string;
  deviceId?: number;
  fp16?: boolean;
  int8?: boolean;
  int8CalibrationTable?: string;
  /** Reuse built engines across loads: a folder TensorRT writes them to. */
  engineCache?: { path: string };
  timingCache?: { path: string };
  maxWorkspaceSize?: number;
  builderOptimizationLevel?: number;
  /** One optimization profile: the min, opt and max shape of each dynamic input. */
  profiles?: { min: ShapeProfile; opt: ShapeProfile; max: ShapeProfile };
  maxPartitionIterations?: number;
  minSubgraphSize?: number;
  cudaGraph?: boolean;
  dlaCore?: number;
}

/** Any other provider, loaded from its plugin library; `options` go to it as given. */
export interface PluginProviderOptions {
  name: string;
  library: string;
  required?: boolean;
  /** The provider's own option keys and values (passed through as strings). */
  options?: Record<string, string | number | boolean>;
}

export type ExecutionProvider =
  | 'cpu'
  | 'cuda'
  | 'tensorrt'
  | { name: 'cpu' }
  | CudaProviderOptions
  | TensorRtProviderOptions
  | PluginProviderOptions;

/** What the addon reads for one provider (native/execution_providers.h EpRequest). */
export interface NativeProviderRequest {
  /** nimify's name: 'cuda', 'tensorrt', or a plugin's. */
  name: string;
  /** ONNX Runtime's provider name (CUDAExecutionProvider, ...); empty for an unknown plugin. */
  ortName: string;
  required: boolean;
  /** Plugin-EP library path; empty: the provider built into (or shipped beside) the ORT library. */
  library: string;
  keys: string[];
  values: string[];
}

type Translate = (field: string, value: unknown, out: Map<string, string>) => void;

const flag =
  (key: string): Translate =>
  (field, value, out) => {
    out.set(key, expectBoolean(field, value) ? '1' : '0');
  };
const int =
  (key: string, min: number, max = Number.MAX_SAFE_INTEGER): Translate =>
  (field, value, out) => {
    out.set(key, String(expectInteger(field, value, min, max)));
  };
const oneOf =
  (key: string, values: Record<string, string>): Translate =>
  (field, value, out) => {
    out.set(key, values[expectOneOf(field, value, Object.keys(values))]!);
  };
const text =
  (key: string): Translate =>
  (field, value, out) => {
    out.set(key, expectString(field, value));
  };
/** { path } → the enable flag and the path. */
const cacheFolder =
  (enableKey: string, pathKey: string): Translate =>
  (field, value, out) => {
    const o = expectPlainObject(field, value);
    expectKnownKeys(field, o, ['path']);
    out.set(enableKey, '1');
    out.set(pathKey, expectString(`${field}.path`, o.path));
  };
/** TensorRT's profile shapes: "input:1x3x224x224,other:1x8". */
const profiles: Translate = (field, value, out) => {
  const o = expectPlainObject(field, value);
  expectKnownKeys(field, o, ['min', 'opt', 'max']);
  const ranks = new Map<string, number>();
  for (const which of ['min', 'opt', 'max'] as const) {
    const p = expectPlainObject(`${field}.${which}`, o[which]);
    const names = Object.keys(p);
    if (names.length === 0) throw invalid(`${field}.${which}`, 'an object of input name → dims', p);
    const parts = names.map((input) => {
      if (!/^[^:,]+$/.test(input)) throw invalid(`${field}.${which}`, "input names without ':' or ','", input);
      const dims = expectDims(`${field}.${which}.${input}`, p[input]);
      const rank = ranks.get(input);
      if (rank !== undefined && rank !== dims.length) {
        throw invalid(`${field}.${which}.${input}`, `dims of rank ${rank} (as in the other profiles)`, dims);
      }
      ranks.set(input, dims.length);
      return `${input}:${dims.join('x')}`;
    });
    out.set(`trt_profile_${which}_shapes`, parts.join(','));
  }
};

interface ProviderSpec {
  ortName: string;
  options: Record<string, Translate>;
}

/**
 * The providers nimify knows by name and the options of each. `ortName` is ONNX Runtime's name
 * for it (what `runtimeInfo().providers` and `nimify doctor` list).
 */
export const PROVIDERS: Readonly<Record<'cpu' | 'cuda' | 'tensorrt', ProviderSpec>> = Object.freeze({
  cpu: { ortName: 'CPUExecutionProvider', options: {} },
  cuda: {
    ortName: 'CUDAExecutionProvider',
    options: {
      deviceId: int('device_id', 0, 1023),
      gpuMemLimit: int('gpu_mem_limit', 1),
      arenaExtendStrategy: oneOf('arena_extend_strategy', { nextPowerOfTwo: 'kNextPowerOfTwo', sameAsRequested: 'kSameAsRequested' }),
      cudnnConvAlgoSearch: oneOf('cudnn_conv_algo_search', { exhaustive: 'EXHAUSTIVE', heuristic: 'HEURISTIC', default: 'DEFAULT' }),
      enableCudaGraph: flag('enable_cuda_graph'),
      copyInDefaultStream: flag('do_copy_in_default_stream'),
      cudnnConvUseMaxWorkspace: flag('cudnn_conv_use_max_workspace'),
      tunableOpEnable: flag('tunable_op_enable'),
      preferNhwc: flag('prefer_nhwc'),
      useTf32: flag('use_tf32'),
    },
  },
  tensorrt: {
    ortName: 'TensorrtExecutionProvider',
    options: {
      deviceId: int('device_id', 0, 1023),
      fp16: flag('trt_fp16_enable'),
      int8: flag('trt_int8_enable'),
      int8CalibrationTable: text('trt_int8_calibration_table_name'),
      engineCache: cacheFolder('trt_engine_cache_enable', 'trt_engine_cache_path'),
      timingCache: cacheFolder('trt_timing_cache_enable', 'trt_timing_cache_path'),
      maxWorkspaceSize: int('trt_max_workspace_size', 1),
      builderOptimizationLevel: int('trt_builder_optimization_level', 0, 5),
      profiles,
      maxPartitionIterations: int('trt_max_partition_iterations', 1, 1_000_000),
      minSubgraphSize: int('trt_min_subgraph_size', 1, 1_000_000),
      cudaGraph: flag('trt_cuda_graph_enable'),
      dlaCore: (field, value, out) => {
        out.set('trt_dla_enable', '1');
        out.set('trt_dla_core', String(expectInteger(field, value, 0, 15)));
      },
    },
  },
});

/**
 * Options that name a file or library: loading a library runs its code, and the TensorRT caches
 * are written. Only the operator's own settings (loadModel(), config.json, CLI flags) may set
 * them, never a repository-API request (src/repository/config.ts).
 */
export const PROVIDER_FILE_OPTIONS = ['library', 'int8CalibrationTable', 'engineCache', 'timingCache'] as const;

/** The first file-naming option in an executionProviders list, as `[i].option`, or null. */
export function findFileOption(value: unknown): string | null {
  if (!Array.isArray(value)) return null;
  for (let i = 0; i < value.length; i++) {
    const entry: unknown = value[i];
    if (typeof entry !== 'object' || entry === null) continue;
    for (const option of PROVIDER_FILE_OPTIONS) {
      if ((entry as Record<string, unknown>)[option] !== undefined) return `[${i}].${option}`;
    }
  }
  return null;
}

const KNOWN = Object.keys(PROVIDERS) as Array<keyof typeof PROVIDERS>;
const COMMON_KEYS = ['name', 'required', 'library'] as const;

function isKnown(name: string): name is keyof typeof PROVIDERS {
  return Object.prototype.hasOwnProperty.call(PROVIDERS, name);
}

/**
 * Validates `executionProviders` (loadModel() options, config.json's runtime section, `nimify
 * serve --execution-provider`) and returns the addon's requests, in preference order, without
 * the CPU provider (always the fallback). Throws NimifyError('INVALID_ARGUMENT').
 */
export function toProviderRequests(field: string, value: unknown): NativeProviderRequest[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid(field, "a non-empty array such as ['cuda', 'cpu']", value);
  }
  const seen = new Set<string>();
  const requests: NativeProviderRequest[] = [];
  value.forEach((entry: unknown, i: number) => {
    const at = `${field}[${i}]`;
    if (typeof entry !== 'string' && !isPlainObject(entry)) {
      throw invalid(at, "a provider name such as 'cuda' or an object such as { name: 'cuda', deviceId: 0 }", entry);
    }
    const o: Record<string, unknown> = typeof entry === 'string' ? { name: entry } : entry;
    if (typeof o.name !== 'string' || o.name === '') {
      throw invalid(`${at}.name`, `a provider name (${KNOWN.join(', ')}, or a plugin's name with \`library\`)`, o.name);
    }
    const name = o.name;
    if (seen.has(name)) throw invalid(at, 'each provider listed once', name);
    seen.add(name);
    const library = o.library === undefined ? '' : expectString(`${at}.library`, o.library);
    const required = o.required === undefined ? false : expectBoolean(`${at}.required`, o.required);
    if (name === 'cpu') {
      expectKnownKeys(at, o, ['name']);
      return;
    }
    const keys = new Map<string, string>();
    if (isKnown(name)) {
      const spec = PROVIDERS[name];
      expectKnownKeys(at, o, [...COMMON_KEYS, ...Object.keys(spec.options)]);
      for (const [option, translate] of Object.entries(spec.options)) {
        if (o[option] !== undefined) translate(`${at}.${option}`, o[option], keys);
      }
      requests.push({ name, ortName: spec.ortName, required, library, keys: [...keys.keys()], values: [...keys.values()] });
      return;
    }
    if (library === '') {
      throw new NimifyError(
        'INVALID_ARGUMENT',
        `${at}.name: expected one of ${KNOWN.join(', ')} (or any provider's name together with \`library\`, the path of its plugin-EP library), received ${describe(name)}`,
      );
    }
    expectKnownKeys(at, o, [...COMMON_KEYS, 'options']);
    if (o.options !== undefined) {
      for (const [k, v] of Object.entries(expectPlainObject(`${at}.options`, o.options))) {
        if (typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) {
          throw invalid(`${at}.options.${k}`, 'a string, number or boolean', v);
        }
        keys.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
      }
    }
    requests.push({ name, ortName: '', required, library, keys: [...keys.keys()], values: [...keys.values()] });
  });
  return requests;
}
