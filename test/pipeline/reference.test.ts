/**
 * Equivalence: nimify's image pipeline (sharp decoding, Pillow-arithmetic resampling, in the
 * worker pool) against reference tensors computed independently with Pillow + numpy at fixture
 * time (scripts/fixtures/image_reference.py, committed in test/fixtures/reference/images): uint8
 * within 1, float within 1e-6, for every interpolation and fit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkImagePreprocess } from '../../src/pipeline/image';
import { PreprocessPool } from '../../src/pipeline/pool';
import { ROOT } from '../helpers';

const DIR = path.join(ROOT, 'test', 'fixtures', 'reference', 'images');
const ref = JSON.parse(fs.readFileSync(path.join(DIR, 'reference.json'), 'utf8')) as {
  cases: { file: string; spec: Record<string, unknown>; dims: number[]; dtype: string; data: number[] }[];
};

const pool = new PreprocessPool({ threads: 2 });
afterAll(() => pool.close());

describe('image preprocessing equals the Pillow + numpy reference', () => {
  it.each(ref.cases.map((c, i) => [i, c] as const))('case %i', async (_i, c) => {
    const spec = checkImagePreprocess('preprocess', c.spec);
    const t = await pool.image(fs.readFileSync(path.join(DIR, c.file)), spec);
    expect(t.dims).toEqual(c.dims);
    expect(t.data).toBeInstanceOf(c.dtype === 'uint8' ? Uint8Array : Float32Array);
    expect(t.data.length).toBe(c.data.length);
    const tol = c.dtype === 'uint8' ? 1 : 1e-6;
    let worst = 0;
    for (let k = 0; k < c.data.length; k++) worst = Math.max(worst, Math.abs(t.data[k] - c.data[k]));
    expect(worst, `${c.file} ${JSON.stringify(c.spec)}`).toBeLessThanOrEqual(tol);
  });
});
