/**
 * 'nimify/pipeline': pre- and postprocessing (images with sharp, texts with tokenizers, ranked
 * predictions) and the worker pool they run in. loadModel() here is the package root's with a
 * pipeline always resolvable; the root routes options.pipeline here by itself.
 */
export { loadModel } from './load';
export type { PipelineSections } from './load';
export { PreprocessPool, sharedPreprocessPool } from './pool';
export type { PreprocessPoolOptions } from './pool';
export { Pipeline, checkPipelineOptions, MAX_PREDICT_ITEMS } from './pipeline';
export type { PipelineOptions, PredictInput, PredictOptions, PreprocessSpec } from './pipeline';
export type { ImagePreprocessConfig, ImageSpec } from './image';
export type { TextPreprocessConfig, TextSpec } from './text';
export type { PostprocessConfig, PostprocessSpec, Prediction } from './postprocess';
