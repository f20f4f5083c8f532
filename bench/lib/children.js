'use strict';
// Child-process servers for the HTTP benchmarks (bench/http.js, bench/predict.js): each server
// runs as its own `node` process, so it does not share an event loop with the load generator.
// This module starts one and waits for its ready line, keeps the last lines it wrote, stops it,
// and makes sure every child it spawned is killed on the way out, whatever the way (an error, a
// signal, process.exit). It also reads a child's CPU time and waits for a child to go idle.
// What a benchmark does with a server's later output (count it, keep it) and what it asks it
// over IPC stay in the benchmark: they are passed in as options.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { ROOT, sleep } = require('./common');

// Every spawned child, until it exits.
const children = new Set();
function killChildren() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}

/**
 * Kills the children when this process exits or gets SIGINT / SIGTERM (then exits 130 / 143), for
 * the duration of a benchmark. Returns the function that kills what is left and removes the
 * handlers (call it in the benchmark's `finally`).
 */
function guardChildren() {
  const onSignal = (sig) => {
    killChildren();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', killChildren);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    killChildren();
    process.off('exit', killChildren);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/**
 * Spawns `node args...` in the checkout's root and resolves once a line of its stdout or stderr
 * matches `options.ready` (its group 1 = the server's URL); rejects when it is not ready after
 * 120 s or exits first, with its last 20 lines. Options:
 *   ready    the ready line's RegExp (required).
 *   ipc      open an IPC channel: the server gets ask() (a message with a fresh id; resolves with
 *            the child's answer carrying that id, or rejects after 30 s).
 *   onLine   called with each line written after the ready line (a benchmark's own bookkeeping
 *            of warnings and errors).
 * The server: { name, pid, url, log (the last 200 lines), command (as run, paths relative to the
 * checkout), exited() (null, or { code, signal }), stop() (SIGTERM, SIGKILL after 10 s), ask() }.
 */
function startServer(name, args, options) {
  const { ready, ipc = false, onLine: afterReady = null } = options;
  const stdio = ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio });
  children.add(child);
  const log = [];
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      children.delete(child);
      resolve(exited);
    });
  });
  const server = {
    name,
    pid: child.pid,
    url: null,
    log,
    command: `node ${args.map((a) => path.relative(ROOT, a) || a).join(' ')}`,
    exited: () => exited,
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const r = await exit;
      clearTimeout(timer);
      return r;
    },
  };
  if (ipc) {
    const pending = new Map();
    let nextId = 1;
    child.on('message', (m) => {
      const p = m && pending.get(m.id);
      if (p) {
        pending.delete(m.id);
        clearTimeout(p.timer);
        p.resolve(m);
      }
    });
    /** Sends `message` with a fresh id over IPC and resolves with the server's answer. */
    server.ask = (message) =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: no answer to ${JSON.stringify(message)} in 30 s`));
        }, 30_000);
        pending.set(id, { resolve, timer });
        child.send({ ...message, id });
      });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name}: not ready after 120 s`)), 120_000);
    const fail = (err) => {
      clearTimeout(timer);
      server.stop().finally(() => reject(new Error(`${err.message}\n${log.slice(-20).join('\n')}`)));
    };
    const onLine = (line) => {
      if (log.length >= 200) log.shift();
      log.push(line);
      const m = server.url === null && ready.exec(line);
      if (m) {
        clearTimeout(timer);
        server.url = m[1];
        resolve(server);
      } else if (server.url !== null && afterReady) {
        afterReady(line);
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    child.once('error', fail);
    exit.then((e) => server.url === null && fail(new Error(`${name}: exited (${e.code ?? e.signal}) before it was ready`)));
  });
}

/** user + system CPU seconds of a process, all its threads (Linux /proc; null elsewhere). */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/**
 * Waits until the process is idle (under 5 % of a core over `intervalMs`, at most `maxMs`), then
 * `settleMs` more. Each benchmark picks its own figures, and says why.
 */
async function quiesce(pid, { intervalMs, maxMs, settleMs }) {
  const idleSeconds = (0.05 * intervalMs) / 1000;
  const t0 = performance.now();
  let prev = cpuSeconds(pid);
  while (prev !== null && performance.now() - t0 < maxMs) {
    await sleep(intervalMs);
    const now = cpuSeconds(pid);
    if (now === null || now - prev < idleSeconds) break;
    prev = now;
  }
  await sleep(settleMs);
}

module.exports = { startServer, guardChildren, cpuSeconds, quiesce };
