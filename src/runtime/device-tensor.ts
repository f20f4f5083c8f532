/**
 * DeviceTensor: a result that stays where the model's session keeps it — GPU memory for a model
 * on CUDA, the session's own host memory for a CPU model — instead of being copied into a JS
 * buffer (infer()'s `outputLocation: 'device'`, issue 15 item 3). Feed it to a later infer() of
 * a model on the same device (no copy: the next model reads it where it is), download() it into
 * a Tensor, or dispose() it.
 *
 * Ownership: the addon's wrapper (native/device_tensor.h) holds the memory and the session that
 * allocated it, so a DeviceTensor outlives its model's dispose(); the memory is freed by
 * dispose() or, failing that, when the wrapper is garbage collected. A request that was given
 * the tensor as a feed keeps it alive until it settles, whatever dispose() does meanwhile.
 */
import type { NativeDeviceTensor } from './binding';
import { NimifyError } from './errors';
import { Tensor, type TensorDataMap, type TensorType } from './tensor';

/** Handed to the constructor by the runtime only: users receive DeviceTensors from infer(). */
const CONSTRUCT = Symbol('nimify.DeviceTensor');

export class DeviceTensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly dims: readonly number[];
  /** Elements. */
  readonly size: number;
  readonly byteLength: number;
  /** Where the memory is: 'cpu', or the device ('cuda:0', …). */
  readonly location: string;
  #native: NativeDeviceTensor | null;

  /** @internal */
  constructor(token: symbol, native: NativeDeviceTensor) {
    if (token !== CONSTRUCT) {
      throw new NimifyError('INVALID_ARGUMENT', "DeviceTensor: made by infer() with outputLocation 'device', not by new");
    }
    const d = native.describe();
    this.type = d.type as T;
    this.dims = Object.freeze(d.dims);
    this.size = d.dims.reduce((a, b) => a * b, 1);
    this.byteLength = d.byteLength;
    this.location = d.location;
    this.#native = native;
  }

  /** @internal The runtime's way to make one from the addon's wrapper. */
  static fromNative(native: NativeDeviceTensor): DeviceTensor {
    return new DeviceTensor(CONSTRUCT, native);
  }

  /** @internal The addon's wrapper, fed as is (throws DISPOSED after dispose()). */
  static nativeOf(t: DeviceTensor, what: string): NativeDeviceTensor {
    // instanceof alone admits Object.create(DeviceTensor.prototype), which holds nothing.
    if (!(#native in t)) throw new NimifyError('INVALID_ARGUMENT', `${what}: not a DeviceTensor made by infer()`);
    if (t.#native === null) throw new NimifyError('DISPOSED', `${what}: the DeviceTensor was disposed`);
    return t.#native;
  }

  get disposed(): boolean {
    return !(#native in this) || this.#native === null;
  }

  /** Copies the tensor into a new Tensor in JS memory (the copy runs off the JS thread). */
  download(): Promise<Tensor<T>> {
    if (!(#native in this)) return Promise.reject(new NimifyError('INVALID_ARGUMENT', 'DeviceTensor.download(): not a DeviceTensor made by infer()'));
    const native = this.#native;
    if (native === null) return Promise.reject(new NimifyError('DISPOSED', 'DeviceTensor.download(): the tensor was disposed'));
    return native.download().then(([data, dims]) => Tensor.fromNative(this.type, data as TensorDataMap[T], dims));
  }

  /** Frees the memory now; later use throws or rejects with DISPOSED. Idempotent. */
  dispose(): void {
    if (!(#native in this)) return;
    this.#native?.dispose();
    this.#native = null;
  }

  toString(): string {
    return `DeviceTensor(${this.type}, [${(this.dims ?? []).join(', ')}], ${this.location}${this.disposed ? ', disposed' : ''})`;
  }
}
