/**
 * Optional heavy packages (tokenizers; sharp where its platform build is missing) are loaded only
 * by the feature that needs them. When one is not installed, the feature fails with UNSUPPORTED
 * naming the package to install, instead of a bare MODULE_NOT_FOUND. Any other load failure
 * (e.g. a native library that does not fit this platform) keeps the package's own message.
 */
import { NimifyError } from './errors';

export function optionalModule<T>(name: string, feature: string, resolveFrom: string[] = [__dirname, process.cwd()]): T {
  let file: string;
  try {
    file = require.resolve(name, { paths: resolveFrom });
  } catch {
    throw new NimifyError('UNSUPPORTED', `${feature} needs the package '${name}', which is not installed: run \`npm install ${name}\` in your project`);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as T;
  } catch (err) {
    throw new NimifyError('UNSUPPORTED', `${feature} needs the package '${name}', which did not load: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
}
