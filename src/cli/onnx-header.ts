/**
 * The few ModelProto fields `nimify inspect` shows that ONNX Runtime's metadata API does not give:
 * IR version, producer version and the opset imports. Read straight from the file's protobuf
 * encoding (field numbers of onnx/onnx.proto; scripts/onnx-writer.js writes the same format): the
 * top-level fields only, the graph (field 7, nearly all of the bytes) is skipped by its length,
 * never parsed, and the file is read in small positioned chunks, so a multi-GB model costs a few
 * reads.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { NimifyError } from '../runtime/errors';

export interface OnnxHeader {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  domain: string;
  modelVersion: number;
  /** Operator sets the model imports; the default domain '' is reported as 'ai.onnx'. */
  opsets: Array<{ domain: string; version: number }>;
}

// ModelProto field → wire type it must have (0 varint, 2 length-delimited).
const MODEL_FIELDS: Record<number, 0 | 2> = { 1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2 };

class Reader {
  #buf = Buffer.alloc(0);
  #bufAt = 0;
  pos = 0;
  constructor(
    readonly fd: number,
    readonly size: number,
  ) {}

  #fill(n: number): void {
    if (this.pos >= this.#bufAt && this.pos + n <= this.#bufAt + this.#buf.length) return;
    const len = Math.min(Math.max(n, 64 * 1024), this.size - this.pos);
    if (len < n) throw new Error(`truncated at byte ${this.pos}`);
    this.#buf = Buffer.alloc(len);
    readSync(this.fd, this.#buf, 0, len, this.pos);
    this.#bufAt = this.pos;
  }

  byte(): number {
    this.#fill(1);
    return this.#buf[this.pos++ - this.#bufAt]!;
  }

  varint(): number {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.byte();
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return Number(BigInt.asIntN(64, v));
    }
    throw new Error(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.size) throw new Error(`a field of ${n} bytes at byte ${this.pos} runs past the end of the file`);
    this.#fill(n);
    const out = this.#buf.subarray(this.pos - this.#bufAt, this.pos - this.#bufAt + n);
    this.pos += n;
    return Buffer.from(out);
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.size) throw new Error(`a field of ${n} bytes at byte ${this.pos} runs past the end of the file`);
    this.pos += n;
  }
}

function parseOpset(bytes: Buffer): { domain: string; version: number } {
  let domain = '';
  let version = 0;
  let pos = 0;
  const varint = (): number => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= bytes.length) throw new Error('truncated opset_import');
      const b = bytes[pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return Number(BigInt.asIntN(64, v));
    }
    throw new Error('bad varint in opset_import');
  };
  while (pos < bytes.length) {
    const key = varint();
    const [field, wire] = [key >>> 3, key & 7];
    if (wire === 0) {
      const v = varint();
      if (field === 2) version = v;
    } else if (wire === 2) {
      const n = varint();
      if (pos + n > bytes.length) throw new Error('truncated opset_import');
      if (field === 1) domain = bytes.toString('utf8', pos, pos + n);
      pos += n;
    } else {
      throw new Error(`unexpected wire type ${wire} in opset_import`);
    }
  }
  return { domain: domain === '' ? 'ai.onnx' : domain, version };
}

/** Reads the header fields of an .onnx file; INVALID_MODEL when the file is not an ONNX ModelProto. */
export function readOnnxHeader(file: string): OnnxHeader {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NimifyError(code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_ARGUMENT', `model: cannot open '${file}' (${code ?? (err as Error).message})`);
  }
  try {
    const r = new Reader(fd, fstatSync(fd).size);
    const h: OnnxHeader = { irVersion: 0, producerName: '', producerVersion: '', domain: '', modelVersion: 0, opsets: [] };
    let sawGraph = false;
    try {
      while (r.pos < r.size) {
        const key = r.varint();
        const [field, wire] = [key >>> 3, key & 7];
        const expected = MODEL_FIELDS[field];
        if (expected === undefined || expected !== wire) throw new Error(`field ${field} with wire type ${wire} at byte ${r.pos} is not part of an ONNX ModelProto`);
        if (wire === 0) {
          const v = r.varint();
          if (field === 1) h.irVersion = v;
          else if (field === 5) h.modelVersion = v;
          continue;
        }
        const n = r.varint();
        if (field === 7) {
          sawGraph = true;
          r.skip(n);
        } else if (field === 2 || field === 3 || field === 4) {
          const s = r.bytes(n).toString('utf8');
          if (field === 2) h.producerName = s;
          else if (field === 3) h.producerVersion = s;
          else h.domain = s;
        } else if (field === 8) {
          h.opsets.push(parseOpset(r.bytes(n)));
        } else {
          r.skip(n);
        }
      }
      if (h.irVersion < 1 || h.irVersion > 100) throw new Error(`ir_version ${h.irVersion} is missing or implausible`);
      if (!sawGraph) throw new Error('it has no graph');
    } catch (err) {
      throw new NimifyError('INVALID_MODEL', `model: '${file}' is not an ONNX model: ${(err as Error).message}`);
    }
    return h;
  } finally {
    closeSync(fd);
  }
}
