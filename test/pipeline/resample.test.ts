/**
 * The resampler's edges (src/pipeline/resample.ts); its agreement with Pillow is checked through
 * the whole pipeline in reference.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { resample } from '../../src/pipeline/resample';
import { fitGeometry } from '../../src/pipeline/image';

describe('resample', () => {
  it('returns the source itself when nothing changes, and keeps flat images flat', () => {
    const src = new Uint8Array([10, 20, 30, 40, 50, 60]);
    expect(resample(src, 2, 1, 3, 2, 1, 'bicubic')).toBe(src);
    const flat = new Uint8Array(5 * 4 * 3).fill(77);
    for (const f of ['nearest', 'bilinear', 'bicubic', 'lanczos3'] as const) {
      for (const [w, h] of [[1, 1], [3, 2], [11, 9], [5, 4]]) expect(Array.from(new Set(resample(flat, 5, 4, 3, w, h, f)))).toEqual([77]);
    }
  });

  it('averages a 2×2 block to one pixel, and nearest picks the pixel under each centre', () => {
    const grey = new Uint8Array([0, 100, 200, 60]);
    expect(Array.from(resample(grey, 2, 2, 1, 1, 1, 'bilinear'))).toEqual([90]);
    expect(Array.from(resample(new Uint8Array([1, 2, 3, 4]), 4, 1, 1, 8, 1, 'nearest'))).toEqual([1, 1, 2, 2, 3, 3, 4, 4]);
    expect(Array.from(resample(new Uint8Array([1, 2, 3, 4, 5, 6]), 6, 1, 1, 3, 1, 'nearest'))).toEqual([2, 4, 6]);
  });

  it('fit geometry: cover takes the centred region, contain centres the whole image', () => {
    expect(fitGeometry(200, 100, { width: 50, height: 50, fit: 'cover' })).toEqual({ box: [50, 0, 150, 100], outW: 50, outH: 50, left: 0, top: 0 });
    expect(fitGeometry(200, 100, { width: 50, height: 50, fit: 'contain' })).toEqual({ box: [0, 0, 200, 100], outW: 50, outH: 25, left: 0, top: 12 });
    expect(fitGeometry(200, 100, { width: 50, height: 50, fit: 'fill' })).toEqual({ box: [0, 0, 200, 100], outW: 50, outH: 50, left: 0, top: 0 });
    expect(fitGeometry(1000, 1, { width: 10, height: 10, fit: 'contain' }).outH).toBe(1);
  });
});
