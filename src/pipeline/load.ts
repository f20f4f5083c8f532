/**
 * Loading a model with a pipeline: the runtime's loader with this layer's resolver, which checks
 * the sections against the loaded model and reads the files they name. The package root calls it
 * only when LoadOptions.pipeline is given, so that importing 'nimify' loads none of this layer
 * (piscina, the worker pool, the optional sharp / tokenizers).
 */
import * as path from 'node:path';
import { loadModelWith, type Model } from '../runtime/model';
import type { LoadOptions } from '../runtime/options';
import { checkPipelineOptions, Pipeline, type PreprocessSpec } from './pipeline';
import type { PostprocessSpec } from './postprocess';

/** Pipeline sections already checked (e.g. the repository's config.json), and what names them in errors. */
export interface PipelineSections {
  where: string;
  preprocess: PreprocessSpec | null;
  postprocess: PostprocessSpec | null;
  /** The folder of the files the sections name; null: the model file's folder (or the working directory for bytes). */
  dir: string | null;
}

/**
 * loadModel() with options.pipeline resolved against the model: model.predict() and
 * runPipeline() then work. `checked`: sections the caller already checked (they win over
 * options.pipeline).
 */
export function loadModel(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions, checked?: PipelineSections): Promise<Model> {
  let sections: PipelineSections | null;
  try {
    sections = checked ?? (options?.pipeline === undefined ? null : { where: 'options.pipeline', ...checkPipelineOptions('options.pipeline', options.pipeline) });
  } catch (err) {
    return Promise.reject(err);
  }
  if (sections === null) return loadModelWith(source, options);
  const s = sections;
  return loadModelWith(source, options, (description, file) =>
    Pipeline.resolve(s.where, s, description, path.resolve(s.dir ?? (file !== null ? path.dirname(file) : process.cwd()))),
  );
}
