/**
 * Command-line flags with NIMIFY_* environment fallbacks (container-friendly): every flag
 * `--foo-bar` can also be given as NIMIFY_FOO_BAR; a flag on the command line wins. Repeatable
 * flags take a comma-separated list from the environment.
 */
import { parseArgs } from 'node:util';
import { NimifyError } from '../errors';

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

export function parseFlags(argv: string[], specs: Record<string, FlagSpec>, env: NodeJS.ProcessEnv = process.env): { values: FlagValues; positionals: string[] } {
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
    if (value === undefined && env[envName(flag)] !== undefined && env[envName(flag)] !== '') {
      const raw = env[envName(flag)]!;
      source = envName(flag);
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

export function flagHelp(specs: Record<string, FlagSpec>): string {
  const rows = Object.entries(specs).map(([flag, s]) => {
    const left = `  ${s.short ? `-${s.short}, ` : ''}--${flag}${s.type === 'string' ? ` <${s.arg ?? 'value'}>` : ''}`;
    return `${left.padEnd(34)} ${s.help} [${envName(flag)}]`;
  });
  return rows.join('\n');
}
