/**
 * What a command's positional argument names: a server URL or a local path. The one rule for
 * "is this a URL" (bench, infer, tune) and for reading a KServe v2 server URL, owned here.
 */
import { NimifyError } from '../runtime/errors';

/** Any `scheme://…` is a URL (an unsupported scheme is then refused by parseServerUrl, not read as a file path). */
export const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

/** A URL path segment decoded, or INVALID_ARGUMENT naming `<url>` when its %-escapes are not UTF-8. */
function decodeSegment(segment: string, text: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new NimifyError('INVALID_ARGUMENT', `<url>: expected a path whose %-escapes are UTF-8, received ${JSON.stringify(text)} (cannot decode ${JSON.stringify(segment)})`);
  }
}

/** The URL the user gave, checked: http(s) only; a /v2/models/<m>[/versions/<v>] path names the model. */
export function parseServerUrl(text: string): { base: string; model: string | undefined; version: string | undefined } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new NimifyError('INVALID_ARGUMENT', `<url>: expected http(s)://host:port of a KServe v2 server, received ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new NimifyError('INVALID_ARGUMENT', `<url>: expected an http: or https: URL, received ${JSON.stringify(text)}`);
  }
  if (url.search || url.hash) throw new NimifyError('INVALID_ARGUMENT', `<url>: expected no query or fragment, received ${JSON.stringify(text)}`);
  const m = /^(.*?)\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/?$/.exec(url.pathname);
  const prefix = (m ? m[1] : url.pathname).replace(/\/+$/, '');
  return { base: `${url.origin}${prefix}`, model: m ? decodeSegment(m[2], text) : undefined, version: m?.[3] ? decodeSegment(m[3], text) : undefined };
}

/** The model and version a URL names, reconciled with --model/--version: a conflict is an error naming the flag. */
export function urlModel(u: { model: string | undefined; version: string | undefined }, flags: { model?: string; version?: string }): { model: string | undefined; version: string | undefined } {
  if (u.model !== undefined && flags.model !== undefined && flags.model !== u.model) {
    throw new NimifyError('INVALID_ARGUMENT', `--model: the URL names model '${u.model}', --model says '${flags.model}'`);
  }
  if (u.version !== undefined && flags.version !== undefined && flags.version !== u.version) {
    throw new NimifyError('INVALID_ARGUMENT', `--version: the URL names version '${u.version}', --version says '${flags.version}'`);
  }
  return { model: u.model ?? flags.model, version: u.version ?? flags.version };
}
