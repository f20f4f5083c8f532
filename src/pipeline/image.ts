/**
 * Image preprocessing: the `preprocess: { type: 'image', ... }` section of a model's config,
 * validated here (errors name the field), and the conversion of encoded image bytes (JPEG, PNG,
 * WebP) into the model's input tensor. The conversion runs in the preprocessing worker pool
 * (pool.ts, worker.ts), never on the main thread in the server.
 *
 * Steps, in this order: decode (sharp / libvips; the header's pixel count is checked against
 * `maxInputPixels` before anything is decoded) → sRGB, alpha flattened onto white → resize to
 * width × height (`fit`, `interpolation`; with Pillow's arithmetic, or libvips' with
 * `resampler: 'libvips'`) → centre crop (`crop`) → colour (`rgb`, `bgr`, or
 * `grayscale` with the BT.601 integer weights that Pillow and OpenCV use) → value =
 * (pixel × scale − mean[c]) / std[c] → layout (NCHW or NHWC, with a leading batch dim of 1) →
 * float32 or uint8 (uint8 takes the pixel values as they are: no scale, mean or std).
 */
import { optionalModule } from '../runtime/optional';
import { NimifyError } from '../runtime/errors';
import { expectInteger, expectKnownKeys, expectOneOf, expectPlainObject, expectString, invalid } from '../runtime/validate';
import { resample } from './resample';

export const FITS = ['fill', 'contain', 'cover'] as const;
export const INTERPOLATIONS = ['nearest', 'bilinear', 'bicubic', 'lanczos3'] as const;
export const COLORS = ['rgb', 'bgr', 'grayscale'] as const;
export const LAYOUTS = ['NCHW', 'NHWC'] as const;
export const DTYPES = ['float32', 'uint8'] as const;
export const RESAMPLERS = ['pillow', 'libvips'] as const;

/** As written in config.json. */
export interface ImagePreprocessConfig {
  type: 'image';
  /** The model input the tensor feeds (default: the model's only input). */
  input?: string;
  width: number;
  height: number;
  /** How the image is fitted to width × height (default 'fill': stretched). */
  fit?: (typeof FITS)[number];
  interpolation?: (typeof INTERPOLATIONS)[number];
  /**
   * 'pillow' (default): resampling with Pillow's arithmetic (resample.ts): the tensors a
   * Pillow/torchvision training pipeline made, exactly. 'libvips': sharp's own resize, several
   * times faster on large photos (it decodes JPEGs at a reduced size), within a few levels of
   * Pillow on downscales but further apart on upscales.
   */
  resampler?: (typeof RESAMPLERS)[number];
  /** A centre crop taken after the resize. */
  crop?: { width: number; height: number };
  color?: (typeof COLORS)[number];
  /** Pixel values (0..255) are multiplied by this first (default 1). */
  scale?: number;
  /** Per channel (or one value for all), subtracted after scaling (default 0). */
  mean?: number[];
  /** Per channel (or one value for all), divided by last (default 1). */
  std?: number[];
  layout?: (typeof LAYOUTS)[number];
  dtype?: (typeof DTYPES)[number];
  /** Largest width × height accepted, checked from the header before decoding (default 4096²). */
  maxInputPixels?: number;
}

/** Every field filled in; what the worker receives (plain data: it crosses threads). */
export interface ImageSpec {
  type: 'image';
  input: string | null;
  width: number;
  height: number;
  fit: (typeof FITS)[number];
  interpolation: (typeof INTERPOLATIONS)[number];
  resampler: (typeof RESAMPLERS)[number];
  crop: { width: number; height: number } | null;
  color: (typeof COLORS)[number];
  scale: number;
  mean: number[];
  std: number[];
  layout: (typeof LAYOUTS)[number];
  dtype: (typeof DTYPES)[number];
  maxInputPixels: number;
}

const KEYS = ['type', 'input', 'width', 'height', 'fit', 'interpolation', 'resampler', 'crop', 'color', 'scale', 'mean', 'std', 'layout', 'dtype', 'maxInputPixels'] as const;
const MAX_SIDE = 16384;

function finite(name: string, value: unknown, nonZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || (nonZero && value === 0)) throw invalid(name, nonZero ? 'a finite non-zero number' : 'a finite number', value);
  return value;
}

function perChannel(name: string, value: unknown, channels: number, fallback: number, nonZero: boolean): number[] {
  if (value === undefined) return new Array(channels).fill(fallback);
  if (!Array.isArray(value) || (value.length !== 1 && value.length !== channels)) throw invalid(name, `an array of 1 or ${channels} numbers (one per channel)`, value);
  const v = value.map((x, i) => finite(`${name}[${i}]`, x, nonZero));
  return v.length === 1 ? new Array(channels).fill(v[0]) : v;
}

/** Validates a `preprocess` section of type image; `where` names it in errors (e.g. 'config.preprocess'). */
export function checkImagePreprocess(where: string, value: unknown): ImageSpec {
  const o = expectPlainObject(where, value);
  expectKnownKeys(where, o, KEYS);
  if (o.type !== 'image') throw invalid(`${where}.type`, "'image'", o.type);
  const color = o.color === undefined ? 'rgb' : expectOneOf(`${where}.color`, o.color, COLORS);
  const channels = color === 'grayscale' ? 1 : 3;
  const width = expectInteger(`${where}.width`, o.width, 1, MAX_SIDE);
  const height = expectInteger(`${where}.height`, o.height, 1, MAX_SIDE);
  let crop: ImageSpec['crop'] = null;
  if (o.crop !== undefined) {
    const c = expectPlainObject(`${where}.crop`, o.crop);
    expectKnownKeys(`${where}.crop`, c, ['width', 'height']);
    crop = { width: expectInteger(`${where}.crop.width`, c.width, 1, width), height: expectInteger(`${where}.crop.height`, c.height, 1, height) };
  }
  return {
    type: 'image',
    input: o.input === undefined ? null : expectString(`${where}.input`, o.input),
    width,
    height,
    fit: o.fit === undefined ? 'fill' : expectOneOf(`${where}.fit`, o.fit, FITS),
    interpolation: o.interpolation === undefined ? 'bilinear' : expectOneOf(`${where}.interpolation`, o.interpolation, INTERPOLATIONS),
    resampler: o.resampler === undefined ? 'pillow' : expectOneOf(`${where}.resampler`, o.resampler, RESAMPLERS),
    crop,
    color,
    scale: o.scale === undefined ? 1 : finite(`${where}.scale`, o.scale),
    mean: perChannel(`${where}.mean`, o.mean, channels, 0, false),
    std: perChannel(`${where}.std`, o.std, channels, 1, true),
    layout: o.layout === undefined ? 'NCHW' : expectOneOf(`${where}.layout`, o.layout, LAYOUTS),
    dtype: o.dtype === undefined ? 'float32' : expectOneOf(`${where}.dtype`, o.dtype, DTYPES),
    maxInputPixels: o.maxInputPixels === undefined ? 4096 * 4096 : expectInteger(`${where}.maxInputPixels`, o.maxInputPixels, 1, 2 ** 31 - 1),
  };
}

/** The dims of the tensor a spec produces (batch 1). */
export function imageDims(spec: ImageSpec): number[] {
  const w = spec.crop?.width ?? spec.width;
  const h = spec.crop?.height ?? spec.height;
  const c = spec.color === 'grayscale' ? 1 : 3;
  return spec.layout === 'NCHW' ? [1, c, h, w] : [1, h, w, c];
}

const KERNEL = { nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos3: 'lanczos3' } as const;

type Raw = { data: Uint8Array; width: number; height: number; channels: number };

function decodeError(err: unknown, spec: ImageSpec): NimifyError {
  const msg = (err as Error).message.split('\n')[0];
  if (/pixel limit/i.test(msg)) return new NimifyError('INVALID_ARGUMENT', `image: larger than maxInputPixels (${spec.maxInputPixels} pixels): ${msg}`);
  return new NimifyError('INVALID_ARGUMENT', `image: cannot decode (${msg}); expected JPEG, PNG or WebP bytes`);
}

/**
 * The source region and output size of the resize for `fit` (shared with the reference script,
 * scripts/fixtures/image_reference.py): 'fill' stretches the whole image; 'cover' takes the
 * centred region with the target's aspect ratio; 'contain' fits the whole image inside, the rest
 * of width × height being black (centred).
 */
export function fitGeometry(w: number, h: number, spec: Pick<ImageSpec, 'width' | 'height' | 'fit'>): { box: number[]; outW: number; outH: number; left: number; top: number } {
  const W = spec.width;
  const H = spec.height;
  if (spec.fit === 'cover') {
    const s = Math.max(W / w, H / h);
    const bw = W / s;
    const bh = H / s;
    const x0 = (w - bw) / 2;
    const y0 = (h - bh) / 2;
    return { box: [x0, y0, x0 + bw, y0 + bh], outW: W, outH: H, left: 0, top: 0 };
  }
  if (spec.fit === 'contain') {
    const s = Math.min(W / w, H / h);
    const outW = Math.max(1, Math.min(W, Math.floor(w * s + 0.5)));
    const outH = Math.max(1, Math.min(H, Math.floor(h * s + 0.5)));
    return { box: [0, 0, w, h], outW, outH, left: (W - outW) >> 1, top: (H - outH) >> 1 };
  }
  return { box: [0, 0, w, h], outW: W, outH: H, left: 0, top: 0 };
}

/** sharp reading `bytes` (the header's pixel count checked first), in sRGB, alpha flattened onto white. */
function decoder(sharp: typeof import('sharp').default, bytes: Uint8Array, spec: ImageSpec): import('sharp').Sharp {
  return sharp(bytes, { limitInputPixels: spec.maxInputPixels, failOn: 'error', sequentialRead: true })
    .toColourspace('srgb')
    .flatten({ background: { r: 255, g: 255, b: 255 } });
}

/** Decode at full size, then resample with Pillow's arithmetic: width × height RGB. */
async function pillowPixels(sharp: typeof import('sharp').default, bytes: Uint8Array, spec: ImageSpec): Promise<Raw> {
  let src: Raw;
  try {
    const { data, info } = await decoder(sharp, bytes, spec).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    src = { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    throw decodeError(err, spec);
  }
  const g = fitGeometry(src.width, src.height, spec);
  const c = src.channels;
  const resized = resample(src.data, src.width, src.height, c, g.outW, g.outH, spec.interpolation, g.box);
  if (g.outW === spec.width && g.outH === spec.height) return { data: resized, width: spec.width, height: spec.height, channels: c };
  // contain: the resized image centred on black.
  const canvas = new Uint8Array(spec.width * spec.height * c);
  for (let y = 0; y < g.outH; y++) canvas.set(resized.subarray(y * g.outW * c, (y + 1) * g.outW * c), ((g.top + y) * spec.width + g.left) * c);
  return { data: canvas, width: spec.width, height: spec.height, channels: c };
}

/** sharp's own decode-and-resize (shrink-on-load, libvips kernels): width × height RGB. */
async function libvipsPixels(sharp: typeof import('sharp').default, bytes: Uint8Array, spec: ImageSpec): Promise<Raw> {
  try {
    const { data, info } = await decoder(sharp, bytes, spec)
      .resize(spec.width, spec.height, { fit: spec.fit, kernel: KERNEL[spec.interpolation], background: { r: 0, g: 0, b: 0 } })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    throw decodeError(err, spec);
  }
}

/** The container by its magic bytes: the formats the pipeline takes (sharp would also decode SVG, GIF, TIFF…). */
export function imageFormat(b: Uint8Array): 'jpeg' | 'png' | 'webp' | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  return null;
}

/**
 * sharp, loaded on first use. An optional peer dependency (19 MB with libvips, which most users of
 * a model server never need): without it image preprocessing is UNSUPPORTED naming `npm install sharp`.
 */
export function sharpModule(): typeof import('sharp').default {
  return optionalModule<typeof import('sharp').default>('sharp', 'image preprocessing (preprocess.type "image")');
}

/**
 * Decodes `bytes` and builds the tensor data for `spec`. Throws INVALID_ARGUMENT (naming the
 * reason) for bytes that are not JPEG, PNG or WebP, truncated or corrupt data, and images over
 * maxInputPixels. Runs wherever it is called: the pool calls it in a worker.
 */
export async function imageToTensor(bytes: Uint8Array, spec: ImageSpec): Promise<{ data: Float32Array | Uint8Array; dims: number[] }> {
  if (imageFormat(bytes) === null) throw new NimifyError('INVALID_ARGUMENT', 'image: not a JPEG, PNG or WebP file (by its first bytes)');
  // Loaded lazily: the library's users who never preprocess never load libvips.
  const sharp = sharpModule();
  const px = spec.resampler === 'pillow' ? await pillowPixels(sharp, bytes, spec) : await libvipsPixels(sharp, bytes, spec);
  const dims = imageDims(spec);
  // The centre crop, read in place: rows top.., columns left.. of the resized image.
  const w = spec.crop?.width ?? spec.width;
  const h = spec.crop?.height ?? spec.height;
  const left = spec.crop ? (spec.width - spec.crop.width) >> 1 : 0;
  const top = spec.crop ? (spec.height - spec.crop.height) >> 1 : 0;
  const raw = px.data;
  const stride = px.channels;
  const c = spec.color === 'grayscale' ? 1 : 3;
  const hw = h * w;
  const out = spec.dtype === 'uint8' ? new Uint8Array(hw * c) : new Float32Array(hw * c);
  // Channel k of the output reads source channel order[k]; grayscale reads all three.
  const order = spec.color === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let k = 0; k < c; k++) {
    const src = order[k];
    const scale = spec.dtype === 'uint8' ? 1 : spec.scale / spec.std[k];
    const shift = spec.dtype === 'uint8' ? 0 : -spec.mean[k] / spec.std[k];
    // Element i of channel k sits at base + i * step.
    const base = spec.layout === 'NCHW' ? k * hw : k;
    const step = spec.layout === 'NCHW' ? 1 : c;
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0, p = ((top + y) * px.width + left) * stride; x < w; x++, i++, p += stride) {
        const v = c === 1 ? (raw[p] * 19595 + raw[p + 1] * 38470 + raw[p + 2] * 7471 + 0x8000) >> 16 : raw[p + src];
        out[base + i * step] = v * scale + shift;
      }
    }
  }
  return { data: out, dims };
}
