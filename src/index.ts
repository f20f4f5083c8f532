/**
 * 'nimify': the runtime — loadModel, Model, Tensor, errors, runtime and addon information. It
 * loads the addon and nothing of the server or pipeline layers: 'nimify/server' (buildServer,
 * nimifyPlugin, ModelRepository, the protocol codec) and 'nimify/pipeline' (PreprocessPool,
 * pipeline types) are their own entry points. loadModel() with options.pipeline loads the
 * pipeline layer then, on first use.
 */
import { loadModel as loadRuntimeModel, type Model } from './runtime/model';
import type { LoadOptions } from './runtime/options';

/**
 * Loads a model from a file path or from its bytes. Parsing and optimization run off the main
 * thread. With options.pipeline, model.predict() and runPipeline() work (the pipeline layer is
 * loaded for it).
 */
export function loadModel(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<Model> {
  if (options !== null && typeof options === 'object' && options.pipeline !== undefined) {
    return import('./pipeline/load').then((pipeline) => pipeline.loadModel(source, options));
  }
  return loadRuntimeModel(source, options);
}

export { Model } from './runtime/model';
export type { Feeds, Outputs, DeviceOutputs, TensorInfo, ModelMetadata, PredictOptions } from './runtime/model';
export { DeviceTensor } from './runtime/device-tensor';
export type { PipelineOptions, PredictInput } from './pipeline/pipeline';
export type { Prediction } from './pipeline/postprocess';
export { Tensor, TENSOR_TYPES } from './runtime/tensor';
export type { TensorType, TensorData, TensorDataMap, TensorLike } from './runtime/tensor';
export { NimifyError, ERROR_TABLE } from './runtime/errors';
export type { ErrorCode, ErrorCategory } from './runtime/errors';
export type { LoadOptions, InferOptions, BatchingOptions, ExecutionProvider, OutputLocation } from './runtime/options';
export { runtimeInfo, addonInfo } from './runtime/binding';
export type { RuntimeInfo, AddonInfo, LoaderCandidate, ModelStats, SchedulerStats, Percentiles } from './runtime/binding';
