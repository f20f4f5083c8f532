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

/** DT_NEEDED and run paths of `file`, or null when it is not a 64-bit little-endian ELF. */
export function elfDeps(file: string): ElfDeps | null {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return null;
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const sections = Array.from({ length: shnum }, (_, i) => {
    const o = shoff + i * shentsize;
    return { type: buf.readUInt32LE(o + 4), offset: Number(buf.readBigUInt64LE(o + 0x18)), size: Number(buf.readBigUInt64LE(o + 0x20)), link: buf.readUInt32LE(o + 0x28) };
  });
  const dynamic = sections.find((s) => s.type === 6 /* SHT_DYNAMIC */);
  if (!dynamic) return { needed: [], runpath: [] };
  const strtab = sections[dynamic.link];
  if (!strtab) return null;
  const str = (off: number) => {
    const start = strtab.offset + off;
    return buf.toString('utf8', start, buf.indexOf(0, start));
  };
  const out: ElfDeps = { needed: [], runpath: [] };
  for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.size; o += 16) {
    const tag = Number(buf.readBigInt64LE(o));
    const val = Number(buf.readBigUInt64LE(o + 8));
    if (tag === 0) break; // DT_NULL
    if (tag === 1) out.needed.push(str(val)); // DT_NEEDED
    else if (tag === 15 || tag === 29) out.runpath.push(...str(val).split(':').filter(Boolean)); // DT_RPATH, DT_RUNPATH
  }
  return out;
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
