#!/usr/bin/env node
/** The `nimify` command: subcommands dispatch here; errors print their code and message and exit 2 (usage) or 1. */
import { NimifyError } from '../errors';
import { version } from '../version';
import { serve } from './serve';

const USAGE = `usage: nimify <command> [options]

commands:
  serve <model.onnx | repository>   serve models over HTTP (Open Inference Protocol); nimify serve --help
  --version                         print the version`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const running = await serve(rest);
      return running === null ? 0 : running.stopped;
    }
    case '--version':
    case '-v':
      process.stdout.write(`${version}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`nimify: unknown command ${JSON.stringify(command)}\n\n${USAGE}\n`);
      return 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof NimifyError) {
        process.stderr.write(`nimify: ${err.code}: ${err.message}\n`);
        process.exit(err.code === 'INVALID_ARGUMENT' ? 2 : 1);
      }
      process.stderr.write(`nimify: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
