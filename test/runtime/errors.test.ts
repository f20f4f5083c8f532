import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, NimifyError } from '../../src';
import { fromNative } from '../../src/runtime/errors';

describe('NimifyError', () => {
  it('carries a stable code, category and HTTP status from the one table', () => {
    const e = new NimifyError('TIMEOUT', 'too slow');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('NimifyError');
    expect(e.code).toBe('TIMEOUT');
    expect(e.httpStatus).toBe(504);
    expect(e.category).toBe('timeout');
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 'TIMEOUT', message: 'too slow' });
  });

  it('maps every code to a 4xx/5xx status', () => {
    for (const [code, row] of Object.entries(ERROR_TABLE)) {
      expect(row.httpStatus, code).toBeGreaterThanOrEqual(400);
      expect(row.httpStatus, code).toBeLessThan(600);
      expect(row.description.length, code).toBeGreaterThan(10);
    }
    expect(ERROR_TABLE.INVALID_ARGUMENT.httpStatus).toBe(400);
    expect(ERROR_TABLE.NOT_FOUND.httpStatus).toBe(404);
  });

  it('converts addon errors by their code, unknown codes to INTERNAL', () => {
    const native = Object.assign(new Error('bad dims'), { code: 'INVALID_ARGUMENT' });
    const e = fromNative(native);
    expect(e).toBeInstanceOf(NimifyError);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toBe('bad dims');
    expect(e.cause).toBe(native);
    expect(fromNative(Object.assign(new Error('x'), { code: 'WAT' })).code).toBe('INTERNAL');
    expect(fromNative('boom').code).toBe('INTERNAL');
    expect(fromNative(e)).toBe(e);
  });
});
