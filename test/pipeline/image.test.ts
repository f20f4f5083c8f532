/**
 * Image preprocessing (src/pipeline): config validation, the tensor an image becomes, and the
 * worker pool it runs in — bytes moved in (the caller's buffer detached), bad images answered
 * with a clear error, a throwing or dying worker failing only its own request, a full queue.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor } from '../../src';
import { checkImagePreprocess, imageDims } from '../../src/pipeline/image';
import { PreprocessPool } from '../../src/pipeline/pool';
import { ROOT } from '../helpers';

const DIGITS = path.join(ROOT, 'examples', 'digits');
const training = JSON.parse(fs.readFileSync(path.join(DIGITS, 'training.json'), 'utf8')) as { samples: { file: string; label: number; input: number[] }[] };
const DIGIT_SPEC = checkImagePreprocess('preprocess', { type: 'image', width: 8, height: 8, interpolation: 'nearest', color: 'grayscale', scale: 1 / 255 });

const pool = new PreprocessPool({ threads: 2 });
afterAll(() => pool.close());

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(NimifyError);
  expect((err as NimifyError).code).toBe(code);
  expect((err as Error).message).toMatch(pattern);
}

/** A 3×2 RGB PNG with known pixels. */
const PIXELS = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90];
const smallPng = () => sharp(Buffer.from(PIXELS), { raw: { width: 3, height: 2, channels: 3 } }).png().toBuffer();

/** A valid PNG header claiming width × height, with a few bytes of image data. */
function pngHeader(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
}

describe('preprocess config', () => {
  it('fills defaults and names the field of every mistake', () => {
    expect(checkImagePreprocess('p', { type: 'image', width: 224, height: 224 })).toEqual({
      type: 'image', input: null, width: 224, height: 224, fit: 'fill', interpolation: 'bilinear', resampler: 'pillow', crop: null, color: 'rgb',
      scale: 1, mean: [0, 0, 0], std: [1, 1, 1], layout: 'NCHW', dtype: 'float32', maxInputPixels: 4096 * 4096,
    });
    expect(imageDims(checkImagePreprocess('p', { type: 'image', width: 256, height: 240, crop: { width: 224, height: 200 }, layout: 'NHWC' }))).toEqual([1, 200, 224, 3]);
    const bad: [unknown, RegExp][] = [
      [{ type: 'audio', width: 1, height: 1 }, /p\.type: expected 'image'/],
      [{ type: 'image', width: 0, height: 1 }, /p\.width: expected an integer in \[1, 16384\]/],
      [{ type: 'image', width: 8, height: 8, fit: 'stretch' }, /p\.fit: expected one of 'fill', 'contain', 'cover', received the string "stretch"/],
      [{ type: 'image', width: 8, height: 8, interpolation: 'linear' }, /p\.interpolation: expected one of 'nearest', 'bilinear', 'bicubic', 'lanczos3'/],
      [{ type: 'image', width: 8, height: 8, resampler: 'opencv' }, /p\.resampler: expected one of 'pillow', 'libvips'/],
      [{ type: 'image', width: 8, height: 8, mean: [1, 2] }, /p\.mean: expected an array of 1 or 3 numbers/],
      [{ type: 'image', width: 8, height: 8, std: [1, 0, 1] }, /p\.std\[1\]: expected a finite non-zero number/],
      [{ type: 'image', width: 8, height: 8, crop: { width: 9, height: 8 } }, /p\.crop\.width: expected an integer in \[1, 8\]/],
      [{ type: 'image', width: 8, height: 8, colour: 'rgb' }, /p: unknown key 'colour'|colour/],
    ];
    for (const [value, pattern] of bad) expect(() => checkImagePreprocess('p', value)).toThrow(pattern);
  });
});

describe('image → tensor (in the pool)', () => {
  it('RGB, BGR, grayscale, NCHW/NHWC, scale/mean/std and uint8 give the exact values', async () => {
    const spec = (o: Record<string, unknown>) => checkImagePreprocess('p', { type: 'image', width: 3, height: 2, interpolation: 'nearest', ...o });
    const r = PIXELS.filter((_, i) => i % 3 === 0);
    const g = PIXELS.filter((_, i) => i % 3 === 1);
    const b = PIXELS.filter((_, i) => i % 3 === 2);
    let t = await pool.image(await smallPng(), spec({}));
    expect(t.dims).toEqual([1, 3, 2, 3]);
    expect(Array.from(t.data)).toEqual([...r, ...g, ...b]);
    t = await pool.image(await smallPng(), spec({ color: 'bgr', layout: 'NHWC', dtype: 'uint8' }));
    expect(t.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(t.data)).toEqual(r.flatMap((_, i) => [b[i], g[i], r[i]]));
    t = await pool.image(await smallPng(), spec({ scale: 1 / 255, mean: [0.5, 0.25, 0], std: [0.5, 0.25, 2] }));
    const want = [...r.map((v) => (v / 255 - 0.5) / 0.5), ...g.map((v) => (v / 255 - 0.25) / 0.25), ...b.map((v) => v / 255 / 2)];
    Array.from(t.data).forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    t = await pool.image(await smallPng(), spec({ color: 'grayscale' }));
    expect(t.dims).toEqual([1, 1, 2, 3]);
    expect(Array.from(t.data)).toEqual(r.map((_, i) => (r[i] * 19595 + g[i] * 38470 + b[i] * 7471 + 0x8000) >> 16));
  });

  it('the demo model reads every sample PNG right through the pool', async () => {
    const m = await loadModel(path.join(DIGITS, 'digits', '1', 'model.onnx'));
    for (const s of training.samples) {
      const t = await pool.image(fs.readFileSync(path.join(DIGITS, s.file)), DIGIT_SPEC);
      expect(t.dims).toEqual([1, 1, 8, 8]);
      // The PNG holds round(255 × value): within half a grey level of the training input.
      Array.from(t.data).forEach((v, i) => expect(Math.abs(v - s.input[i])).toBeLessThanOrEqual(0.5 / 255 + 1e-7));
      const logits = Array.from((await m.infer({ image: new Tensor('float32', t.data as Float32Array, t.dims) })).logits.data as Float32Array);
      expect(logits.indexOf(Math.max(...logits))).toBe(s.label);
    }
    await m.dispose();
  });

  it('moves the bytes into the worker: the caller’s buffer is detached', async () => {
    const bytes = new Uint8Array(await smallPng()); // a copy that owns its whole (JS-allocated) ArrayBuffer
    const buffer = bytes.buffer;
    expect(buffer.byteLength).toBeGreaterThan(0);
    await pool.image(bytes, DIGIT_SPEC);
    expect(buffer.byteLength).toBe(0);
    expect(bytes.byteLength).toBe(0);
    // A view into a larger buffer is copied instead: the larger buffer stays usable.
    const big = Buffer.concat([Buffer.alloc(10), await smallPng()]);
    await pool.image(big.subarray(10), DIGIT_SPEC);
    expect(big.byteLength).toBeGreaterThan(10);
  });

  it('bad images get INVALID_ARGUMENT with the reason; a decompression bomb is refused from its header', async () => {
    await rejectsWith(pool.image(Buffer.from('definitely not an image'), DIGIT_SPEC), 'INVALID_ARGUMENT', /image: not a JPEG, PNG or WebP file/);
    // Formats sharp decodes but the pipeline does not take (SVG would run librsvg, GIF, TIFF).
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    const gif = await sharp(Buffer.from(PIXELS), { raw: { width: 3, height: 2, channels: 3 } }).gif().toBuffer();
    const tiff = await sharp(Buffer.from(PIXELS), { raw: { width: 3, height: 2, channels: 3 } }).tiff().toBuffer();
    for (const b of [svg, gif, tiff]) await rejectsWith(pool.image(b, DIGIT_SPEC), 'INVALID_ARGUMENT', /image: not a JPEG, PNG or WebP file/);
    // A JPEG cut short after its header is still refused cleanly.
    const jpeg = await sharp(Buffer.from(PIXELS), { raw: { width: 3, height: 2, channels: 3 } }).jpeg().toBuffer();
    await rejectsWith(pool.image(jpeg.subarray(0, 30), DIGIT_SPEC), 'INVALID_ARGUMENT', /image: cannot decode/);
    const png = await smallPng();
    await rejectsWith(pool.image(png.subarray(0, png.length - 20), DIGIT_SPEC), 'INVALID_ARGUMENT', /image: cannot decode/);
    await rejectsWith(pool.image(Buffer.alloc(0), DIGIT_SPEC), 'INVALID_ARGUMENT', /image: the body is empty/);
    const started = Date.now();
    await rejectsWith(pool.image(pngHeader(30000, 30000), DIGIT_SPEC), 'INVALID_ARGUMENT', /larger than maxInputPixels \(16777216 pixels\)/);
    expect(Date.now() - started).toBeLessThan(5000); // refused from the header, never decoded
    // The pool keeps serving.
    expect((await pool.image(await smallPng(), DIGIT_SPEC)).dims).toEqual([1, 1, 8, 8]);
  });

  it('a worker that throws fails only its request; one that dies is replaced and the pool keeps serving', async () => {
    const png = await smallPng();
    const [thrown, fine] = await Promise.allSettled([pool.image(Buffer.from(png), DIGIT_SPEC, 'throw'), pool.image(Buffer.from(png), DIGIT_SPEC)]);
    expect(thrown.status).toBe('rejected');
    expect((thrown as PromiseRejectedResult).reason).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/image preprocessing failed in its worker: injected fault/) });
    expect(fine.status).toBe('fulfilled');
    await rejectsWith(pool.image(Buffer.from(png), DIGIT_SPEC, 'crash'), 'INTERNAL', /image preprocessing failed in its worker/);
    const after = await Promise.all(Array.from({ length: 4 }, () => pool.image(Buffer.from(png), DIGIT_SPEC)));
    expect(after.every((t) => t.dims.join() === '1,1,8,8')).toBe(true);
  });

  it('a full queue answers QUEUE_FULL; options are validated', async () => {
    const small = new PreprocessPool({ threads: 1, maxQueue: 2 });
    const png = await smallPng();
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => small.image(Buffer.from(png), DIGIT_SPEC)));
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as NimifyError).code));
    expect(codes).toContain('ok');
    expect(codes).toContain('QUEUE_FULL');
    expect(codes.every((c) => c === 'ok' || c === 'QUEUE_FULL')).toBe(true);
    await small.close();
    await rejectsWith(small.image(Buffer.from(png), DIGIT_SPEC), 'DISPOSED', /closed/);
    expect(() => new PreprocessPool({ threads: 0 })).toThrow(/options\.threads: expected an integer in \[1, 256\]/);
    expect(() => new PreprocessPool({ size: 2 } as never)).toThrow(/size/);
    expect(() => new PreprocessPool({ tasksPerThread: 0 })).toThrow(/options\.tasksPerThread: expected an integer in \[1, 64\]/);
    // No queue at all: with every worker busy, the next task is QUEUE_FULL (not an internal error).
    const none = new PreprocessPool({ threads: 1, tasksPerThread: 1, maxQueue: 0 });
    const settled = await Promise.allSettled([0, 1, 2].map(() => none.image(Buffer.from(png), DIGIT_SPEC)));
    expect(settled.filter((r) => r.status === 'rejected').map((r) => ((r as PromiseRejectedResult).reason as NimifyError).code)).toContain('QUEUE_FULL');
    expect(settled.filter((r) => r.status === 'rejected').every((r) => ((r as PromiseRejectedResult).reason as NimifyError).code === 'QUEUE_FULL')).toBe(true);
    await none.close();
    const wide = new PreprocessPool({ threads: 3, tasksPerThread: 4 });
    expect([wide.threads, wide.tasksPerThread, wide.capacity]).toEqual([3, 4, 12]);
    expect(new PreprocessPool({ threads: 1 }).capacity).toBe(2);
  });
});
