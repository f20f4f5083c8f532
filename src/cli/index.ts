#!/usr/bin/env node
/**
 * The `nimify` command. Each subcommand lives in its own module (src/cli/<name>.ts, exporting
 * `run(argv, io)` and `USAGE`) and is imported only when it runs, so `nimify doctor` or
 * `nimify --help` never loads the server. Errors print their code and message; the exit code
 * comes from the one table in io.ts (EXIT).
 */
import { NimifyError } from '../runtime/errors';
import { version } from '../runtime/version';
import { suggest } from './flags';
import { EXIT, exitCodeFor, processIo, type CliIo } from './io';

interface Command {
  summary: string;
  load(): Promise<{ run(argv: string[], io: CliIo): Promise<number> }>;
}

export const COMMANDS: Record<string, Command> = {
  serve: { summary: 'serve <model.onnx | repository>     serve models over HTTP (KServe v2 / Triton protocol)', load: () => import('./serve') },
  inspect: { summary: 'inspect <model.onnx | repository>   inputs, outputs, metadata, completed config, latency per batch size', load: () => import('./inspect') },
  infer: { summary: 'infer <model.onnx | url>            one inference, in-process or against a running server', load: () => import('./infer') },
  bench: { summary: 'bench <model.onnx | url>            closed-loop load test: latency percentiles, throughput', load: () => import('./bench') },
  tune: { summary: 'tune <model.onnx>                   sweep instances × batching × threads, write the best config.json', load: () => import('./tune') },
  build: { summary: 'build <model.onnx | repository> -o <dir>  a deploy folder: Dockerfile, Helm chart, KServe, Grafana, README', load: () => import('./build') },
  doctor: { summary: 'doctor                              what this machine can run: ONNX Runtime, addon, CPU, providers', load: () => import('./doctor') },
};

export const USAGE = `usage: nimify <command> [options]

commands:
${Object.values(COMMANDS)
  .map((c) => `  ${c.summary}`)
  .join('\n')}

  nimify <command> --help    options of one command
  nimify --version           print the version

exit codes: 0 ok, 1 failure, 2 invalid input (a flag, argument, input or config), 3 (doctor) this machine cannot run a model`;

// Re-exported: the suggestion rule lives with the flag parser, which uses it for unknown flags.
export { editDistance, suggest } from './flags';

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v') {
    io.out(version);
    return EXIT.OK;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    if (command === 'help' && rest[0] !== undefined) {
      if (Object.prototype.hasOwnProperty.call(COMMANDS, rest[0])) return main([rest[0], '--help'], io);
      const near = suggest(rest[0], Object.keys(COMMANDS));
      io.err(`nimify help: unknown command ${JSON.stringify(rest[0])}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}\n\n${USAGE}`);
      return EXIT.USAGE;
    }
    (command === undefined ? io.err : io.out)(USAGE);
    return command === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const cmd = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (cmd === undefined) {
    const near = suggest(command, Object.keys(COMMANDS));
    io.err(`nimify: unknown command ${JSON.stringify(command)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  try {
    return await (await cmd.load()).run(rest, io);
  } catch (err) {
    if (err instanceof NimifyError) io.err(`nimify ${command}: ${err.code}: ${err.message}`);
    else io.err(`nimify ${command}: ${(err as Error)?.stack ?? String(err)}`);
    return exitCodeFor(err);
  }
}

/**
 * Ends the process once stdout and stderr have flushed what the command wrote. process.exit(), not
 * process.exitCode: a command may leave handles open (the preprocessing pool's worker threads, a
 * keep-alive socket, ORT's thread pool) and must still exit as soon as it is done; waiting on the
 * write callbacks first means output going to a pipe is never cut short (on POSIX, pipe writes
 * may be asynchronous: process.exit() right after a large write could drop its tail).
 */
export function exitAfterFlush(code: number): void {
  process.exitCode = code;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

if (require.main === module) {
  // A reader that goes away (`nimify inspect --json | head -1`) is not an error of the command.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
    throw err;
  });
  main(process.argv.slice(2)).then(exitAfterFlush, (err: unknown) => {
    process.stderr.write(`nimify: ${(err as Error)?.stack ?? String(err)}\n`);
    exitAfterFlush(EXIT.FAILURE);
  });
}
