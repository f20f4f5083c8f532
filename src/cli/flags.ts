/**
 * Command-line flags with NIMIFY_* environment fallbacks (container-friendly): serve's flag
 * `--foo-bar` can also be given as NIMIFY_FOO_BAR, another command's as NIMIFY_<COMMAND>_FOO_BAR
 * (envFor), except the INVOCATION_ONLY ones; a flag on the command line wins. Repeatable
 * flags take a comma-separated list from the environment. An unknown flag is refused with the
 * nearest known one suggested (environment variables are not checked: NIMIFY_* names that no
 * command reads are simply ignored, as a shared container environment needs).
 */
import { parseArgs } from 'node:util';
import { NimifyError } from '../runtime/errors';

export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** Shown in --help. */
  help: string;
  /** Value name in --help. */
  arg?: string;
  integer?: { min: number; max?: number };
  choices?: readonly string[];
}

export type FlagValues = Record<string, string | boolean | string[] | number | undefined>;

export function envName(flag: string): string {
  return `NIMIFY_${flag.replace(/-/g, '_').toUpperCase()}`;
}

/**
 * Flags never read from the environment: those that shape one invocation's output, so that a
 * variable set in a shared (container) environment cannot change what every command prints or
 * writes, and those whose values hold commas (`--input x=[1,2]`, `--shape x=1,64`), which a
 * variable could not carry since repeatable flags' variables are comma-separated lists.
 */
const INVOCATION_ONLY = new Set(['help', 'json', 'md', 'svg', 'output', 'out-dir', 'write', 'force', 'input', 'shape']);

/**
 * The environment variable that mirrors `flag` of `command`, or null for a flag that has none.
 * `serve`'s flags are NIMIFY_<FLAG> (what a container sets: NIMIFY_PORT, NIMIFY_HOST, …); every
 * other command's are NIMIFY_<COMMAND>_<FLAG>, so that serve's variables never change another
 * command (NIMIFY_REPOSITORY is serve's model path; tune has a --repository too) and one name
 * never means two things (bench's --concurrency is a list, tune's a number).
 */
export function envFor(flag: string, command: string): string | null {
  if (INVOCATION_ONLY.has(flag)) return null;
  return command === 'serve' ? envName(flag) : envName(`${command}-${flag}`);
}

/** Levenshtein distance, for "did you mean" suggestions of commands and flags. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo (or `word` is a prefix of exactly one). */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3))) return best;
  const prefixed = word.length >= 3 ? candidates.filter((c) => c.startsWith(word)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/**
 * The one positional argument a command takes (`what` names it in the error, e.g. "one model
 * (.onnx) or repository directory"); INVALID_ARGUMENT with the command's usage otherwise.
 */
export function onePositional(command: string, positionals: readonly string[], what: string, usage: string): string {
  if (positionals.length !== 1) {
    throw new NimifyError('INVALID_ARGUMENT', `${command}: expected ${what}, received ${positionals.length === 0 ? 'none' : positionals.join(' ')}\n\n${usage}`);
  }
  return positionals[0]!;
}

/** Refuses flags that no spec names, before parseArgs() would (its message has no suggestion). */
function checkKnown(argv: readonly string[], specs: Record<string, FlagSpec>): void {
  const byShort = new Map(Object.values(specs).flatMap((s) => (s.short ? [[s.short, s] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return;
    if (arg.startsWith('--')) {
      const [name, inline] = [arg.slice(2).split('=')[0]!, arg.includes('=')];
      if (Object.prototype.hasOwnProperty.call(specs, name)) {
        if (specs[name]!.type === 'string' && !inline) i++; // its value, whatever it looks like
        continue;
      }
      const near = suggest(name, Object.keys(specs));
      throw new NimifyError('INVALID_ARGUMENT', `unknown option '--${name}'${near ? ` (did you mean --${near}?)` : ''}`);
    }
    if (/^-[^-0-9.]/.test(arg)) {
      const spec = byShort.get(arg[1]!);
      if (spec === undefined) throw new NimifyError('INVALID_ARGUMENT', `unknown option '-${arg[1]}'`);
      if (spec.type === 'string' && arg.length === 2) i++;
    }
  }
}

export function parseFlags(argv: string[], specs: Record<string, FlagSpec>, env: NodeJS.ProcessEnv, command: string): { values: FlagValues; positionals: string[] } {
  checkKnown(argv, specs);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, { type: s.type, ...(s.multiple ? { multiple: true } : {}), ...(s.short ? { short: s.short } : {}) }])),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', (err as Error).message);
  }
  const values: FlagValues = {};
  for (const [flag, spec] of Object.entries(specs)) {
    let value = parsed.values[flag] as string | boolean | string[] | undefined;
    let source = `--${flag}`;
    const variable = envFor(flag, command);
    if (value === undefined && variable !== null && env[variable] !== undefined && env[variable] !== '') {
      const raw = env[variable]!;
      source = variable;
      if (spec.type === 'boolean') {
        if (!/^(1|0|true|false|yes|no)$/i.test(raw)) throw new NimifyError('INVALID_ARGUMENT', `${source}: expected true or false, received ${JSON.stringify(raw)}`);
        value = /^(1|true|yes)$/i.test(raw);
      } else {
        value = spec.multiple ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
      }
    }
    if (value === undefined) continue;
    if (spec.choices && typeof value === 'string' && !spec.choices.includes(value)) {
      throw new NimifyError('INVALID_ARGUMENT', `${source}: expected one of ${spec.choices.join(', ')}, received ${JSON.stringify(value)}`);
    }
    if (spec.integer && typeof value === 'string') {
      const n = Number(value);
      const { min, max = Number.MAX_SAFE_INTEGER } = spec.integer;
      if (!/^-?[0-9]+$/.test(value) || n < min || n > max) {
        throw new NimifyError('INVALID_ARGUMENT', `${source}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}, received ${JSON.stringify(value)}`);
      }
      values[flag] = n;
      continue;
    }
    values[flag] = value;
  }
  return { values, positionals: parsed.positionals };
}

export function flagHelp(specs: Record<string, FlagSpec>, command: string): string {
  const rows = Object.entries(specs).map(([flag, s]) => {
    const left = `  ${s.short ? `-${s.short}, ` : ''}--${flag}${s.type === 'string' ? ` <${s.arg ?? 'value'}>` : ''}`;
    const variable = envFor(flag, command);
    return `${left.padEnd(34)} ${s.help}${variable ? ` [${variable}]` : ''}`;
  });
  return rows.join('\n');
}
