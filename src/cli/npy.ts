/**
 * NumPy .npy files ↔ Tensors, for `nimify infer --input name=@file.npy` and `--output npy`.
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html — magic
 * "\x93NUMPY", version 1.0 (u16 header length), 2.0 or 3.0 (u32), a Python dict literal with
 * descr / fortran_order / shape, then the data. Only little-endian, C-order data of the numeric
 * and bool dtypes nimify has is accepted; anything else fails with the reason, never a silent
 * conversion.
 */
import { NimifyError } from '../runtime/errors';
import { CTORS, Tensor, type TensorType } from '../runtime/tensor';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

/** NumPy dtype (kind + size; byte order separate) → nimify type. bfloat16 and strings have no .npy dtype here. */
const DTYPE_TO_TYPE: Record<string, Exclude<TensorType, 'string' | 'bfloat16'>> = {
  f2: 'float16', f4: 'float32', f8: 'float64',
  i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64',
  b1: 'bool',
};
const TYPE_TO_DTYPE = Object.fromEntries(Object.entries(DTYPE_TO_TYPE).map(([d, t]) => [t, d])) as Record<string, string>;

function bad(where: string, what: string): NimifyError {
  return new NimifyError('INVALID_ARGUMENT', `${where}: ${what}`);
}

/** Parses .npy bytes into a Tensor (the data is copied into its own aligned buffer). */
export function readNpy(bytes: Uint8Array, where = 'npy'): Tensor {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw bad(where, 'not a .npy file (no \\x93NUMPY magic)');
  const major = buf[6]!;
  if (major !== 1 && major !== 2 && major !== 3) throw bad(where, `.npy format version ${major}.${buf[7]} is not supported (1.0, 2.0, 3.0 are)`);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > buf.length) throw bad(where, 'truncated .npy header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw bad(where, `malformed .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') throw bad(where, 'Fortran-order (column-major) arrays are not supported; save it with np.ascontiguousarray(a) first');
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  const code = m ? `${m[2]}${m[3]}` : descr;
  const type = DTYPE_TO_TYPE[code];
  if (m === null || type === undefined) throw bad(where, `dtype '${descr}' is not supported (expected one of ${Object.keys(DTYPE_TO_TYPE).join(', ')}, little-endian)`);
  if (m[1] === '>' && Number(m[3]) > 1) throw bad(where, `dtype '${descr}' is big-endian; save it little-endian (a.astype(a.dtype.newbyteorder('<')))`);
  const dims = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      if (!/^\d+$/.test(s)) throw bad(where, `malformed shape (${shapeText})`);
      return Number(s);
    });
  const count = dims.reduce((a, b) => a * b, 1);
  const ctor = CTORS[type];
  const dataStart = start + headerLen;
  const need = count * Number(m[3]);
  if (buf.length - dataStart !== need) throw bad(where, `shape (${dims.join(', ')}) of ${descr} needs ${need} data bytes, the file has ${buf.length - dataStart}`);
  const ab = new ArrayBuffer(need);
  new Uint8Array(ab).set(buf.subarray(dataStart, dataStart + need));
  return new Tensor(type, new ctor(ab, 0, count) as never, dims);
}

/** Encodes a Tensor as a version 1.0 .npy file (little-endian, C order). */
export function writeNpy(t: Tensor, where = 'npy'): Buffer {
  const code = TYPE_TO_DTYPE[t.type];
  if (code === undefined) throw new NimifyError('UNSUPPORTED', `${where}: a ${t.type} tensor has no .npy dtype; use --output json`);
  const descr = `${code.endsWith('1') ? '|' : '<'}${code}`;
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Magic + version + u16 length + header + '\n' is padded to a multiple of 64 bytes.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const pre = Buffer.alloc(10);
  MAGIC.copy(pre);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const data = t.data as unknown as ArrayBufferView;
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}
