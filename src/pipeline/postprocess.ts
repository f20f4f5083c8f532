/**
 * Postprocessing: the `postprocess` section of a model's config (validated here, errors name the
 * field) and turning a classifier's output tensor into predictions: softmax (optional), top-k
 * with labels. Rows are the batch dim; the class scores are the remaining elements of each row.
 */
import { NimifyError } from '../runtime/errors';
import { expectBoolean, expectFileName, expectInteger, expectKnownKeys, expectPlainObject, expectString } from '../runtime/validate';

/** As written in config.json. */
export interface PostprocessConfig {
  /** The output that holds the class scores (default: the model's only output). */
  output?: string;
  /** Apply softmax to each row first (default true: models usually output logits). */
  softmax?: boolean;
  /** Predictions per row, best first (default 5, at most the number of classes). */
  topK?: number;
  /** A file next to config.json with one label per line, line i = class i (default: class indices). */
  labels?: string;
}

export interface PostprocessSpec {
  output: string | null;
  softmax: boolean;
  topK: number;
  labels: string | null;
}

export interface Prediction {
  /** The class's label, or its index as a string without labels. */
  label: string;
  index: number;
  score: number;
}

const KEYS = ['output', 'softmax', 'topK', 'labels'] as const;

export function checkPostprocess(where: string, value: unknown): PostprocessSpec {
  const o = expectPlainObject(where, value);
  expectKnownKeys(where, o, KEYS);
  return {
    output: o.output === undefined ? null : expectString(`${where}.output`, o.output),
    softmax: o.softmax === undefined ? true : expectBoolean(`${where}.softmax`, o.softmax),
    topK: o.topK === undefined ? 5 : expectInteger(`${where}.topK`, o.topK, 1, 100_000),
    // A file beside config.json: a plain name, never a path that could leave the model's folder.
    labels: o.labels === undefined ? null : expectFileName(`${where}.labels`, o.labels),
  };
}

/** Parses a labels file's text: one label per line; a trailing newline and CRLF are accepted. */
export function parseLabels(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * Predictions for each row of `scores` ([rows, classes] or [rows, ..., classes] flattened after
 * dim 0), best first. `labels`, when given, must hold one label per class.
 */
export function classify(spec: PostprocessSpec, scores: ArrayLike<number>, dims: readonly number[], labels: readonly string[] | null): Prediction[][] {
  if (dims.length < 1) throw new NimifyError('INVALID_ARGUMENT', `postprocess: the output is a scalar; expected [batch, classes]`);
  const rows = dims.length === 1 ? 1 : dims[0];
  const classes = rows === 0 ? 0 : scores.length / rows;
  if (!Number.isInteger(classes) || classes < 1) throw new NimifyError('INVALID_ARGUMENT', `postprocess: output shape [${dims.join(', ')}] has no classes to rank`);
  if (labels !== null && labels.length !== classes) {
    throw new NimifyError('INVALID_ARGUMENT', `postprocess.labels: ${labels.length} labels for ${classes} classes`);
  }
  const k = Math.min(spec.topK, classes);
  const out: Prediction[][] = [];
  const row = new Float64Array(classes);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < classes; c++) row[c] = Number(scores[r * classes + c]);
    if (spec.softmax) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) if (row[c] > max) max = row[c];
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += row[c] = Math.exp(row[c] - max);
      for (let c = 0; c < classes; c++) row[c] /= sum;
    }
    const order = Array.from({ length: classes }, (_, c) => c).sort((a, b) => row[b] - row[a] || a - b);
    out.push(order.slice(0, k).map((c) => ({ label: labels?.[c] ?? String(c), index: c, score: row[c] })));
  }
  return out;
}
