/**
 * Image resampling with Pillow's arithmetic, so that a model sees the pixels its training
 * pipeline (Pillow, torchvision on PIL images) made: the same filters (bilinear, bicubic with
 * a = -0.5, Lanczos-3), the same support scaled by the downscale factor (antialiasing), the same
 * coefficients rounded to 22-bit fixed point, and the same two passes (horizontal over the rows
 * the vertical pass needs, then vertical), each rounded to 8 bits. Nearest-neighbour samples the
 * pixel whose area holds the output pixel's centre. A source box (float) selects the region that
 * is resampled (used for `fit: 'cover'`).
 *
 * Pure computation on interleaved 8-bit pixels; runs in the preprocessing workers.
 */
export type Filter = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos3';

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

function sinc(x: number): number {
  if (x === 0) return 1;
  const p = x * Math.PI;
  return Math.sin(p) / p;
}

const FILTERS: Record<Exclude<Filter, 'nearest'>, { support: number; f: (x: number) => number }> = {
  bilinear: {
    support: 1,
    f: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos3: { support: 3, f: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

interface Coefficients {
  /** Per output pixel: first source pixel, number of taps. */
  bounds: Int32Array;
  /** Per output pixel, `ksize` fixed-point weights (the first `taps` used). */
  weights: Int32Array;
  ksize: number;
}

/** C's (int) cast: truncation toward zero. */
const trunc = Math.trunc;

function coefficients(inSize: number, in0: number, in1: number, outSize: number, filter: (typeof FILTERS)[keyof typeof FILTERS]): Coefficients {
  const scale = (in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(trunc(center - support + 0.5), 0);
    const taps = Math.min(trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < taps; x++) {
      const w = filter.f((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < taps; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = w < 0 ? trunc(-0.5 + w * ONE) : trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = taps;
  }
  return { bounds, weights, ksize };
}

// Sums stay below 2^31 (255 × 2^22 × the filters' largest absolute weight sum, 1.3), so >> is exact.
const clip8 = (v: number): number => (v >= ONE * 256 ? 255 : v <= 0 ? 0 : v >> PRECISION_BITS);

/** Rows [first, first + rows) of `src` resampled horizontally to `outW`. */
function horizontal(src: Uint8Array, w: number, c: number, first: number, rows: number, outW: number, co: Coefficients): Uint8Array {
  const out = new Uint8Array(outW * rows * c);
  const { bounds, weights, ksize } = co;
  for (let y = 0; y < rows; y++) {
    const row = (first + y) * w * c;
    let o = y * outW * c;
    for (let xx = 0; xx < outW; xx++) {
      const taps = bounds[xx * 2 + 1];
      const kb = xx * ksize;
      let p = row + bounds[xx * 2] * c;
      if (c === 3) {
        // The common case, unrolled over the channels: one weight load per tap.
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let x = 0; x < taps; x++, p += 3) {
          const k = weights[kb + x];
          s0 += src[p] * k;
          s1 += src[p + 1] * k;
          s2 += src[p + 2] * k;
        }
        out[o++] = clip8(s0);
        out[o++] = clip8(s1);
        out[o++] = clip8(s2);
      } else {
        for (let ch = 0; ch < c; ch++) {
          let ss = HALF;
          for (let x = 0, q = p + ch; x < taps; x++, q += c) ss += src[q] * weights[kb + x];
          out[o++] = clip8(ss);
        }
      }
    }
  }
  return out;
}

/** `src` (w × any rows) resampled vertically to `outH` rows; bounds are relative to src's first row. */
function vertical(src: Uint8Array, w: number, c: number, outH: number, co: Coefficients, shift: number): Uint8Array {
  const out = new Uint8Array(w * outH * c);
  const { bounds, weights, ksize } = co;
  const stride = w * c;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - shift;
    const taps = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    const orow = yy * stride;
    for (let i = 0; i < stride; i++) {
      let ss = HALF;
      let p = ymin * stride + i;
      for (let y = 0; y < taps; y++, p += stride) ss += src[p] * weights[kb + y];
      out[orow + i] = clip8(ss);
    }
  }
  return out;
}

/** Pillow's nearest: the source pixel under each output pixel's centre (COORD = floor, clamped to the image). */
function nearest(src: Uint8Array, w: number, h: number, c: number, outW: number, outH: number, box: readonly number[]): Uint8Array {
  const out = new Uint8Array(outW * outH * c);
  const ax = (box[2] - box[0]) / outW;
  const ay = (box[3] - box[1]) / outH;
  const xs = new Int32Array(outW);
  // Accumulated as Pillow does (xo += a), so that the floors land on the same pixels.
  let xo = box[0] + ax * 0.5;
  for (let x = 0; x < outW; x++, xo += ax) xs[x] = Math.min(Math.max(Math.floor(xo), 0), w - 1);
  let yo = box[1] + ay * 0.5;
  for (let y = 0; y < outH; y++, yo += ay) {
    const yi = Math.min(Math.max(Math.floor(yo), 0), h - 1);
    for (let x = 0; x < outW; x++) {
      const s = (yi * w + xs[x]) * c;
      const d = (y * outW + x) * c;
      for (let ch = 0; ch < c; ch++) out[d + ch] = src[s + ch];
    }
  }
  return out;
}

/**
 * `src` (w × h, c interleaved 8-bit channels) resampled to outW × outH from the source region
 * `box` = [x0, y0, x1, y1] (default: the whole image), as Pillow's Image.resize(size, filter, box).
 */
export function resample(src: Uint8Array, w: number, h: number, c: number, outW: number, outH: number, filter: Filter, box: readonly number[] = [0, 0, w, h]): Uint8Array {
  if (outW === w && outH === h && box[0] === 0 && box[1] === 0 && box[2] === w && box[3] === h) return src;
  if (filter === 'nearest') return nearest(src, w, h, c, outW, outH, box);
  const f = FILTERS[filter];
  const needH = outW !== w || box[0] !== 0 || box[2] !== outW;
  const needV = outH !== h || box[1] !== 0 || box[3] !== outH;
  const ch = coefficients(w, box[0], box[2], outW, f);
  const cv = coefficients(h, box[1], box[3], outH, f);
  // The source rows the vertical pass reads.
  const first = cv.bounds[0];
  const last = cv.bounds[outH * 2 - 2] + cv.bounds[outH * 2 - 1];
  let img = src;
  let iw = w;
  let shift = 0;
  if (needH) {
    img = horizontal(src, w, c, first, last - first, outW, ch);
    iw = outW;
    shift = first;
  }
  if (needV) img = vertical(img, iw, c, outH, cv, shift);
  return img;
}
