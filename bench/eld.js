'use strict';
// Event-loop delay of a bench server, measured inside the server process and read by the bench
// runner over the child-process IPC channel (bench/predict.js, through the server's ask() from
// bench/lib/children.js). perf_hooks.monitorEventLoopDelay at a 1 ms resolution: a timer due
// every 1 ms records the time between its callbacks, so each sample is 1 ms plus how late the
// callback ran. Reported here as that lateness (sample − 1 ms, floored at 0, as
// @fastify/under-pressure does), in ms.
//
// Messages from the parent: { eld: 'reset', id } clears the histogram, { eld: 'read', id } answers
// { eld: 'read', id, p50Ms, p99Ms, maxMs, meanMs, samples }. Both answer with the same id. The
// answers themselves go through this process's event loop, so a blocked loop delays them (the
// parent's reads happen at the end of a window, where that does not matter).
const { monitorEventLoopDelay } = require('node:perf_hooks');

const RESOLUTION_MS = 1;

/** Starts the monitor and the IPC handler; no-op without an IPC channel (a server run by hand). */
function attachEventLoopDelayMonitor() {
  if (typeof process.send !== 'function') return null;
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  const late = (ns) => +Math.max(0, ns / 1e6 - RESOLUTION_MS).toFixed(3);
  process.on('message', (m) => {
    if (!m || typeof m !== 'object' || typeof m.eld !== 'string') return;
    if (m.eld === 'reset') {
      h.reset();
      process.send({ eld: 'reset', id: m.id });
    } else if (m.eld === 'read') {
      const samples = h.count;
      process.send({
        eld: 'read',
        id: m.id,
        samples,
        p50Ms: samples ? late(h.percentile(50)) : null,
        p99Ms: samples ? late(h.percentile(99)) : null,
        maxMs: samples ? late(h.max) : null,
        meanMs: samples ? late(h.mean) : null,
      });
    }
  });
  // The IPC channel must not keep a server alive on its own (SIGTERM closes the server).
  process.channel?.unref?.();
  return h;
}

module.exports = { attachEventLoopDelayMonitor, RESOLUTION_MS };
