/**
 * The drain of `nimify serve` on SIGTERM, on a real process and a real port, seen by clients that
 * keep their connections open (issue 14 item 7): no request written on an open connection is
 * reset or left unanswered; a request arriving while draining is served and its response closes
 * the connection; a quiet keep-alive connection is closed by the server; readiness fails from
 * the start of the drain; exit 0. The clients are raw sockets, so "written" and "answered" are
 * exact: a request counts as written once its bytes were handed to the kernel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MODELS, ROOT } from '../helpers';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function serve(model: string): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null>; output: () => string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'serve', path.join(MODELS, model), '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /serving .* at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]), exited, output: () => out });
    });
    child.stderr!.on('data', (d: Buffer) => (out += d));
    void exited.then((code) => reject(new Error(`exited ${code} before listening:\n${out}`)));
  });
}

interface Response {
  status: number;
  close: boolean;
  body: string;
}

/** One HTTP/1.1 keep-alive connection: send() writes a request, resolves with its response. */
class Conn {
  readonly socket: net.Socket;
  readonly connected: Promise<void>;
  /** Set when the socket failed: ECONNRESET (a reset), ECONNREFUSED (no listener), … */
  error: string | null = null;
  closed = false;
  readonly closedP: Promise<void>;
  #buf = Buffer.alloc(0);
  #waiting: { resolve: (r: Response) => void; reject: (e: Error) => void } | null = null;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (d: Buffer) => this.#onData(d));
    this.socket.on('error', (e: NodeJS.ErrnoException) => (this.error = e.code ?? e.message));
    this.closedP = new Promise((r) => this.socket.once('close', () => r()));
    this.socket.once('close', () => {
      this.closed = true;
      this.#waiting?.reject(new Error(`connection closed before the response (${this.error ?? 'no error'})`));
      this.#waiting = null;
    });
  }

  #onData(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buf.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.#buf.length < end + 4 + length) return;
    const body = this.#buf.subarray(end + 4, end + 4 + length).toString('utf8');
    this.#buf = this.#buf.subarray(end + 4 + length);
    const w = this.#waiting;
    this.#waiting = null;
    w?.resolve({ status: Number(head.split(' ')[1]), close: /\r\nconnection: *close/i.test(head), body });
  }

  /** Writes a request; `onWritten` runs once the kernel has its bytes. */
  send(method: string, url: string, body = '', onWritten?: () => void): Promise<Response> {
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      const head = `${method} ${url} HTTP/1.1\r\nHost: localhost\r\n${body ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n`;
      this.socket.write(head + body, () => onWritten?.());
    });
  }
}

const tinyBody = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });

describe('SIGTERM under keep-alive load', () => {
  it('64 keep-alive connections, 5 runs: every request written is answered (none reset or cut), exit 0', async () => {
    for (let run = 0; run < 5; run++) {
      const { child, port, exited, output } = await serve('mlp_tiny.onnx');
      const tally = { written: 0, answered: 0, reused: 0, closeAnswers: 0, lost: [] as string[], refused: 0, statuses: new Set<number>() };
      let signalled = false;
      // A client sends requests back to back on one connection; a `Connection: close` answer
      // makes it reconnect, which is refused once the listener closed (that is fine).
      const client = async (): Promise<void> => {
        while (true) {
          const c = new Conn(port);
          try {
            await c.connected;
          } catch {
            tally.refused++;
            return; // refused: the listener is closed
          }
          for (let nth = 0; ; nth++) {
            let written = false;
            try {
              const r = await c.send('POST', '/v2/models/mlp_tiny/infer', tinyBody, () => {
                written = true;
                tally.written++;
              });
              tally.answered++;
              if (nth === 1) tally.reused++;
              tally.statuses.add(r.status);
              if (r.close) {
                tally.closeAnswers++;
                c.socket.end();
                await c.closedP;
                break;
              }
            } catch (err) {
              // A request the kernel took and the server never answered: the defect.
              if (written) tally.lost.push(`${(err as Error).message} (run ${run}, request ${nth} on its connection, after ${signalled ? 'SIGTERM' : 'nothing'})`);
              c.socket.destroy();
              return;
            }
          }
        }
      };
      const clients = Array.from({ length: 64 }, client);
      // Under load first, until every connection has been reused (a connection the server has
      // not accepted yet sits in the kernel's accept queue, which the kernel resets when the
      // listener closes: no server can answer those).
      while (tally.reused < 64) await new Promise((r) => setTimeout(r, 10));
      signalled = true;
      child.kill('SIGTERM');
      await Promise.all(clients);
      expect(await exited, output()).toBe(0);
      expect(tally.lost, output()).toEqual([]);
      expect(tally.answered).toBe(tally.written);
      // The drain answered requests on open connections with `Connection: close`: each of the 64
      // connections ended that way (or was closed quiet), and reconnecting was refused.
      expect(tally.closeAnswers).toBeGreaterThan(0);
      expect(tally.refused).toBe(64);
      expect([...tally.statuses].filter((s) => s !== 200 && s !== 503)).toEqual([]);
    }
  }, 60_000);

  it('while draining: a request on an open connection is served with Connection: close, readiness fails, a quiet connection is closed by the server', async () => {
    const { child, port, exited, output } = await serve('slow.onnx');
    const busy = new Conn(port);
    const open = new Conn(port);
    const quiet = new Conn(port);
    await Promise.all([busy.connected, open.connected, quiet.connected]);
    for (const c of [open, quiet]) expect((await c.send('GET', '/v2/health/ready')).status).toBe(200);
    // A slow request keeps the drain going well past the SIGTERM: 5000 iterations take ~0.7 s on
    // this 2-core VM (1000 took ~140 ms on one, and were answered before the SIGTERM at 150 ms).
    const slowBody = JSON.stringify({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: 5000 }] });
    const slow = busy.send('POST', '/v2/models/slow/infer', slowBody);
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 50));
    // On a connection opened before the drain: answered (503 not ready: the server is draining), and the answer closes it.
    const ready = await open.send('GET', '/v2/health/ready');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ code: 'NOT_READY', error: expect.stringContaining('shutting down') });
    expect(ready.close).toBe(true);
    await open.closedP;
    // No new connection once the listener closed.
    await expect(new Conn(port).connected).rejects.toThrow(/ECONNREFUSED/);
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.close).toBe(true);
    // The quiet connection is closed by the server (not reset mid-request: it sent nothing), so the process can exit.
    await quiet.closedP;
    expect(quiet.error).toBeNull();
    expect(await exited, output()).toBe(0);
  }, 30_000);
});
