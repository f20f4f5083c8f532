/**
 * The checks the manifest generators (helm.ts, kserve.ts, grafana.ts) make on the DeployContext
 * they are given: src/deploy/build.ts validates the user's flags; these catch a context put
 * together by hand (tests, an embedding program) before it turns into a manifest Kubernetes would
 * reject later and further away.
 */
import { NimifyError } from '../../runtime/errors';
import { expectInteger, expectOneOf, expectPlainObject, expectString, invalid } from '../../runtime/validate';
import type { DeployContext } from '../context';

export const DNS_1035 = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Splits `repo/name:tag` (a registry port is not a tag; a digest is kept whole) into repository and tag. */
export function splitImage(image: string): { repository: string; tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { repository: image.slice(0, at), tag: image.slice(at) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { repository: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repository: image, tag: 'latest' };
}

export function checkContext(ctx: DeployContext, name = 'context'): DeployContext {
  expectPlainObject(name, ctx);
  const label = expectString(`${name}.name`, ctx.name);
  if (!DNS_1035.test(label)) throw invalid(`${name}.name`, 'a DNS-1035 label (a-z, 0-9, -; starts with a letter; at most 63)', label);
  const image = expectString(`${name}.image`, ctx.image);
  if (/\s/.test(image)) throw invalid(`${name}.image`, 'an image reference without spaces (repo/name:tag)', image);
  expectInteger(`${name}.port`, ctx.port, 1, 65535);
  if (typeof ctx.gpu !== 'boolean') throw invalid(`${name}.gpu`, 'true or false', ctx.gpu);
  expectPlainObject(`${name}.replicas`, ctx.replicas);
  const min = expectInteger(`${name}.replicas.min`, ctx.replicas.min, 1);
  expectInteger(`${name}.replicas.max`, ctx.replicas.max, min);
  expectOneOf(`${name}.autoscale`, ctx.autoscale, ['hpa', 'keda', 'none'] as const);
  expectString(`${name}.nimifyVersion`, ctx.nimifyVersion);
  const dir = expectString(`${name}.modelDir`, ctx.modelDir);
  if (!dir.startsWith('/')) throw invalid(`${name}.modelDir`, 'an absolute path inside the image', dir);
  expectInteger(`${name}.drainTimeoutMs`, ctx.drainTimeoutMs, 1);
  expectPlainObject(`${name}.memoryMiB`, ctx.memoryMiB);
  const request = expectInteger(`${name}.memoryMiB.request`, ctx.memoryMiB.request, 1);
  expectInteger(`${name}.memoryMiB.limit`, ctx.memoryMiB.limit, request);
  if (!Array.isArray(ctx.models) || ctx.models.length === 0) throw invalid(`${name}.models`, 'a non-empty array of models', ctx.models);
  ctx.models.forEach((m, i) => {
    expectString(`${name}.models[${i}].name`, m.name);
    if (!Array.isArray(m.versions) || m.versions.length === 0) throw invalid(`${name}.models[${i}].versions`, 'a non-empty array of version strings', m.versions);
  });
  if (new Set(ctx.models.map((m) => m.name)).size !== ctx.models.length) {
    throw new NimifyError('INVALID_ARGUMENT', `${name}.models: expected distinct model names, received ${ctx.models.map((m) => m.name).join(', ')}`);
  }
  return ctx;
}
