/**
 * The one small vocabulary of argument checks used by every public entry point. Each check
 * throws NimifyError('INVALID_ARGUMENT') with a message naming the argument, what was expected
 * and what was received.
 */
import { NimifyError } from './errors';

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    case 'number':
    case 'bigint':
    case 'boolean':
      return `${typeof value} ${String(value)}`;
    case 'function':
      return 'a function';
    default: {
      const ctor = (value as object).constructor;
      return ctor && ctor !== Object ? `a ${ctor.name}` : 'an object';
    }
  }
}

export function invalid(name: string, expected: string, received: unknown): NimifyError {
  return new NimifyError('INVALID_ARGUMENT', `${name}: expected ${expected}, received ${describe(received)}`);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function expectPlainObject(name: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw invalid(name, 'a plain object', value);
  return value;
}

export function expectString(name: string, value: unknown, { nonEmpty = true } = {}): string {
  if (typeof value !== 'string' || (nonEmpty && value.length === 0)) {
    throw invalid(name, nonEmpty ? 'a non-empty string' : 'a string', value);
  }
  return value;
}

export function expectInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw invalid(name, `an integer ${range}`, value);
  }
  return value;
}

export function expectBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(name, 'true or false', value);
  return value;
}

export function expectPositiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalid(name, 'a finite number > 0', value);
  }
  return value;
}

export function expectOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalid(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}

/** Rejects keys outside `known`, so that a misspelt option fails instead of being ignored. */
export function expectKnownKeys(name: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new NimifyError(
        'INVALID_ARGUMENT',
        `${name}: unknown option '${key}' (known: ${known.join(', ')})`,
      );
    }
  }
}

export function expectDims(name: string, value: unknown): number[] {
  if (!Array.isArray(value)) throw invalid(name, 'an array of non-negative integers', value);
  for (let i = 0; i < value.length; i++) {
    const d = value[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalid(`${name}[${i}]`, 'a non-negative integer', d);
    }
  }
  return value as number[];
}

/** A plain file name (no folder part, no leading dot): a file beside a model's config, which can never leave its folder. */
export function expectFileName(name: string, value: unknown): string {
  const file = expectString(name, value);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(file)) throw invalid(name, "a file name in the model's folder (letters, digits, '.', '_', '-')", file);
  return file;
}
