/**
 * What every `nimify` subcommand gets and returns. A command module (src/cli/<name>.ts) exports
 * `run(argv, io)` and `USAGE`; it writes through `io` (never process.stdout directly) so tests can
 * capture its output, reads the environment through `io.env` (NIMIFY_* flags), and resolves with
 * its exit code (EXIT below). Errors it throws are printed by index.ts and mapped by exitCodeFor().
 */
import { NimifyError } from '../runtime/errors';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Whether stdout is a terminal (progress bars, colours); false in tests and pipes. */
  isTTY: boolean;
}

/** Documented exit codes (README "CLI reference"): one table, used by every command. */
export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** It ran and failed: a model that does not load, an inference that fails, a server that answers an error, a drain that timed out. */
  FAILURE: 1,
  /**
   * Invalid input (INVALID_ARGUMENT): an unknown command or flag, a bad flag value, a missing
   * argument, or inputs / a config.json that the model refuses. The caller must change what it
   * gave; retrying the same command cannot help.
   */
  USAGE: 2,
  /** `nimify doctor`: this machine cannot run a model (no addon or no ONNX Runtime). */
  NOT_RUNNABLE: 3,
} as const;

export function processIo(): CliIo {
  return {
    out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    env: process.env,
    isTTY: process.stdout.isTTY === true,
  };
}

/** The exit code of a command that threw: INVALID_ARGUMENT (a bad flag, value or input given on the command line) is 2, everything else 1. */
export function exitCodeFor(err: unknown): number {
  return err instanceof NimifyError && err.code === 'INVALID_ARGUMENT' ? EXIT.USAGE : EXIT.FAILURE;
}
