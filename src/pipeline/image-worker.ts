/**
 * Piscina worker of the preprocessing pool: turns one request's image bytes into its input
 * tensor (image.ts). The bytes arrive transferred; the tensor's buffer goes back transferred
 * (Piscina.move). Bad input comes back as an error value (a NimifyError does not cross
 * threads); the main thread rethrows it, so only that request fails.
 */
import { Piscina } from 'piscina';
import { NimifyError } from '../errors';
import { imageToTensor, type ImageSpec } from './image';

export interface ImageTask {
  bytes: Uint8Array;
  spec: ImageSpec;
  /** Test hook: make this worker throw (`throw`) or die (`crash`) while handling the task. */
  fault?: 'throw' | 'crash';
}

export type ImageTaskResult = { data: Float32Array | Uint8Array; dims: number[] } | { error: { code: string; message: string } };

export default async function preprocessImage(task: ImageTask): Promise<ImageTaskResult | ReturnType<typeof Piscina.move>> {
  if (task.fault === 'crash') process.exit(70);
  try {
    if (task.fault === 'throw') throw new Error('injected fault');
    const { data, dims } = await imageToTensor(task.bytes, task.spec);
    // A Piscina transferable: the value is { data, dims }; the tensor's buffer moves with it.
    return Piscina.move({ [Piscina.transferableSymbol]: [data.buffer], [Piscina.valueSymbol]: { data, dims } } as never) as ReturnType<typeof Piscina.move>;
  } catch (err) {
    if (err instanceof NimifyError) return { error: { code: err.code, message: err.message } };
    throw err;
  }
}
