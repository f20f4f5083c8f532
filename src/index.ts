export { loadModel, Model } from './model';
export type { Feeds, Outputs, TensorInfo, ModelMetadata } from './model';
export { Tensor, TENSOR_TYPES } from './tensor';
export type { TensorType, TensorData, TensorDataMap, TensorLike } from './tensor';
export { NimifyError, ERROR_TABLE } from './errors';
export type { ErrorCode, ErrorCategory } from './errors';
export type { LoadOptions, InferOptions, BatchingOptions, ExecutionProvider } from './options';
export { runtimeInfo } from './binding';
export type { RuntimeInfo, ModelStats, SchedulerStats, Percentiles } from './binding';
