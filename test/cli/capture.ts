import type { CliIo } from '../../src/cli/io';

/** A CliIo that keeps what a command writes, for main(argv, io) in tests. */
export function capture(env: NodeJS.ProcessEnv = {}): CliIo & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return { out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`), err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`), env, isTTY: false, stdout: () => out, stderr: () => err };
}
