/**
 * Parsing JSON a client or a file sent: every such text goes through here. secure-json-parse
 * refuses `__proto__` and `constructor.prototype` keys (prototype pollution through a parsed
 * object that is later spread or merged) instead of keeping them as own properties.
 */
import sjson from 'secure-json-parse';
import { NimifyError } from '../runtime/errors';

/** Parses untrusted JSON; a syntax error or a forbidden key is INVALID_ARGUMENT naming `where`. */
export function parseUntrustedJson(where: string, text: string): unknown {
  try {
    return sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `${where}: not valid JSON (${(err as Error).message})`);
  }
}
