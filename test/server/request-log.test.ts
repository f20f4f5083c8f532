/**
 * request.log (src/server/request-log.ts): pino's per-request child made only when the request
 * logs, with the same bindings; a route's own log level still gets its child at once.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { RequestLog, requestLogFactory } from '../../src/server/request-log';

function logger(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { log: pino({ level }, stream), lines };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('RequestLog', () => {
  it('makes no child for calls below the level, and one with the bindings for the first that logs', async () => {
    const { log, lines } = logger('warn');
    const child = vi.spyOn(log, 'child');
    const r = new RequestLog(log, { reqId: 'r-1' }, {});
    r.info({ a: 1 }, 'not logged');
    r.debug('not logged');
    r.trace('not logged');
    expect(child).not.toHaveBeenCalled();
    r.warn({ code: 'X' }, 'refused');
    r.error(new Error('boom'), 'failed');
    r.fatal('fatal %s', 'thing');
    r.silent('nothing');
    expect(child).toHaveBeenCalledTimes(1);
    await flush();
    expect(lines.map((l) => [l.level, l.reqId, l.msg])).toEqual([
      [40, 'r-1', 'refused'],
      [50, 'r-1', 'failed'],
      [60, 'r-1', 'fatal thing'],
    ]);
    expect(lines[0].code).toBe('X');
    expect((lines[1].err as { message: string }).message).toBe('boom');
  });

  it('follows the parent\'s level as it changes, reports and sets its own level, and makes grandchildren', async () => {
    const { log, lines } = logger('warn');
    const r = new RequestLog(log, { reqId: 'r-2' }, {});
    expect(r.level).toBe('warn');
    log.level = 'info';
    r.info('now logged');
    r.level = 'error';
    r.warn('not any more');
    expect(r.level).toBe('error');
    const g = r.child({ part: 'decode' });
    g.error('deep');
    await flush();
    expect(lines.map((l) => [l.reqId, l.part, l.msg])).toEqual([
      ['r-2', undefined, 'now logged'],
      ['r-2', 'decode', 'deep'],
    ]);
  });

  it('is what Fastify gets, unless the route sets its own level', () => {
    const { log } = logger('info');
    expect(requestLogFactory.call(null as never, log, { reqId: 'a' }, {}, null as never)).toBeInstanceOf(RequestLog);
    const own = requestLogFactory.call(null as never, log, { reqId: 'b' }, { level: 'debug' }, null as never);
    expect(own).not.toBeInstanceOf(RequestLog);
    expect(own.level).toBe('debug');
  });
});
