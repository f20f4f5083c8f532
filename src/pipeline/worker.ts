/**
 * Piscina worker of the preprocessing pool: turns one request's image bytes into its input
 * tensor (image.ts), or a batch of texts into token tensors (text.ts). Image bytes arrive
 * transferred; result buffers go back transferred (Piscina.move). Bad input comes back as an
 * error value (a NimifyError does not cross threads); the main thread rethrows it, so only that
 * request fails.
 */
import { Piscina } from 'piscina';
import { NimifyError } from '../runtime/errors';
import { imageToTensor, type ImageSpec } from './image';
import { findPadId, openTokenizer, textToTensors, type TextSpec, type TokenTensors } from './text';

/** Test hook: make this worker throw (`throw`) or die (`crash`) while handling the task. */
export type Fault = 'throw' | 'crash';

export interface ImageTask {
  kind: 'image';
  bytes: Uint8Array;
  spec: ImageSpec;
  fault?: Fault;
}

export interface TextTask {
  kind: 'text';
  texts: string[];
  pairs: (string | null)[] | null;
  spec: TextSpec;
  /** What names the texts in errors (`where[i]`). */
  where: string;
  fault?: Fault;
}

/** Load-time check of a tokenizer.json: it loads, and its padding token (see findPadId). */
export interface TokenizerTask {
  kind: 'tokenizer';
  file: string;
  padToken: string | null;
  /** The config section, e.g. 'config.preprocess', named in errors. */
  where: string;
  fault?: Fault;
}

export type ImageTensor = { data: Float32Array | Uint8Array; dims: number[] };
export type TaskError = { error: { code: string; message: string } };
export type PadToken = { token: string; id: number };
export type TaskResult = ImageTensor | TokenTensors | PadToken | TaskError;

function moved<T extends object>(value: T, buffers: ArrayBufferLike[]): T {
  // A Piscina transferable: the value arrives as is; the listed buffers move with it.
  return Piscina.move({ [Piscina.transferableSymbol]: buffers, [Piscina.valueSymbol]: value } as never) as unknown as T;
}

export default async function preprocess(task: ImageTask | TextTask | TokenizerTask): Promise<TaskResult> {
  if (task.fault === 'crash') process.exit(70);
  try {
    if (task.fault === 'throw') throw new Error('injected fault');
    if (task.kind === 'tokenizer') return findPadId(task.where, openTokenizer(`${task.where}.tokenizer`, task.file), task.file, task.padToken);
    if (task.kind === 'text') {
      const t = await textToTensors(task.texts, task.pairs, task.spec, task.where);
      return moved(t, [t.ids.buffer, t.attentionMask.buffer, t.typeIds.buffer]);
    }
    const t = await imageToTensor(task.bytes, task.spec);
    return moved(t, [t.data.buffer]);
  } catch (err) {
    if (err instanceof NimifyError) return { error: { code: err.code, message: err.message } };
    throw err;
  }
}
