/**
 * Which shared libraries an ELF file needs and which of them this machine cannot find, for
 * `nimify doctor`'s "why is this execution provider not available" (e.g. ORT's CUDA provider
 * library needs libcudart.so.12, libcublasLt.so.12, libcudnn.so.9…). Reads DT_NEEDED and
 * DT_RUNPATH/DT_RPATH from the dynamic section of a 64-bit little-endian ELF and resolves each
 * name the way ld.so would, approximately: RPATH/RUNPATH ($ORIGIN expanded), LD_LIBRARY_PATH,
 * the ld.so cache (`ldconfig -p`), then the default directories. Nothing is loaded.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ElfDeps {
  needed: string[];
  runpath: string[];
}

/** `length` bytes of `fd` at `position`, or null when the file is shorter. */
function readAt(fd: number, position: number, length: number): Buffer | null {
  if (!Number.isSafeInteger(position) || position < 0 || length < 0 || length > 64 << 20) return null;
  const buf = Buffer.alloc(length);
  return fs.readSync(fd, buf, 0, length, position) === length ? buf : null;
}

/**
 * DT_NEEDED and run paths of `file`, or null when it is not a readable 64-bit little-endian ELF
 * (a truncated or corrupt one included). Reads only the headers, the dynamic section and its
 * string table, with positioned reads: a provider library can be hundreds of MB.
 */
export function elfDeps(file: string): ElfDeps | null {
  const fd = fs.openSync(file, 'r');
  try {
    const eh = readAt(fd, 0, 64);
    if (!eh || eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return null;
    const shoff = Number(eh.readBigUInt64LE(0x28));
    const shentsize = eh.readUInt16LE(0x3a);
    const shnum = eh.readUInt16LE(0x3c);
    if (shentsize < 0x40) return null;
    const table = readAt(fd, shoff, shnum * shentsize);
    if (!table) return null;
    const sections = Array.from({ length: shnum }, (_, i) => {
      const o = i * shentsize;
      return { type: table.readUInt32LE(o + 4), offset: Number(table.readBigUInt64LE(o + 0x18)), size: Number(table.readBigUInt64LE(o + 0x20)), link: table.readUInt32LE(o + 0x28) };
    });
    const dynamic = sections.find((s) => s.type === 6 /* SHT_DYNAMIC */);
    if (!dynamic) return { needed: [], runpath: [] };
    const strtab = sections[dynamic.link];
    const dyn = readAt(fd, dynamic.offset, dynamic.size);
    const strs = strtab ? readAt(fd, strtab.offset, strtab.size) : null;
    if (!dyn || !strs) return null;
    const str = (off: number): string | null => {
      const endAt = strs.indexOf(0, off);
      return off < strs.length && endAt !== -1 ? strs.toString('utf8', off, endAt) : null;
    };
    const out: ElfDeps = { needed: [], runpath: [] };
    for (let o = 0; o + 16 <= dyn.length; o += 16) {
      const tag = Number(dyn.readBigInt64LE(o));
      if (tag === 0) break; // DT_NULL
      if (tag !== 1 && tag !== 15 && tag !== 29) continue;
      const value = str(Number(dyn.readBigUInt64LE(o + 8)));
      if (value === null) return null;
      if (tag === 1) out.needed.push(value); // DT_NEEDED
      else out.runpath.push(...value.split(':').filter(Boolean)); // DT_RPATH, DT_RUNPATH
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

let ldCache: Map<string, string> | undefined;

/** The ld.so cache: soname → path (empty when ldconfig is not there). */
function ldconfigCache(): Map<string, string> {
  if (ldCache) return ldCache;
  ldCache = new Map();
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      const text = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      for (const line of text.split('\n')) {
        const m = /^\s*(\S+) \(([^)]*)\) => (\S+)/.exec(line);
        if (m && !ldCache.has(m[1]!) && (process.arch !== 'x64' || m[2]!.includes('x86-64'))) ldCache.set(m[1]!, m[3]!);
      }
      break;
    } catch {
      // try the next location
    }
  }
  return ldCache;
}

const DEFAULT_DIRS = ['/lib64', '/usr/lib64', '/lib', '/usr/lib', `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`];

/** Where `name` would be found for a library in `fromDir` with `runpath`, or undefined. */
export function findLibrary(name: string, fromDir: string, runpath: string[], env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...runpath.map((d) => d.replace(/\$ORIGIN|\$\{ORIGIN\}/g, fromDir)), ...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)];
  for (const d of dirs) {
    const p = path.join(d, name);
    if (fs.existsSync(p)) return p;
  }
  const cached = ldconfigCache().get(name);
  if (cached) return cached;
  for (const d of DEFAULT_DIRS) {
    const p = path.join(d, name);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** The libraries `file` needs that cannot be found (by soname), or null when `file` is not ELF. */
export function missingLibraries(file: string, env: NodeJS.ProcessEnv = process.env): string[] | null {
  const deps = elfDeps(file);
  if (!deps) return null;
  return deps.needed.filter((n) => findLibrary(n, path.dirname(file), deps.runpath, env) === undefined);
}
