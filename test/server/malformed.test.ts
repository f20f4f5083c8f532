import * as path from 'node:path';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as http from 'node:http';
import { it } from 'vitest';
import { buildServer } from '../../src';
import { MODELS } from '../helpers';

function raw(port: number, method: string, p: string, body?: string): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      let s = ''; res.on('data', (c) => (s += c)); res.on('end', () => resolve([res.statusCode!, s]));
    });
    req.on('error', reject);
    req.end(body);
  });
}

it('probe', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-mal-'));
  for (const m of ['mlp_tiny', 'a'.repeat(120)]) { fs.mkdirSync(path.join(tmp, m, '1'), { recursive: true }); fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(tmp, m, '1', 'model.onnx')); }
  const app = await buildServer({ repository: tmp, logger: false, controlMode: 'explicit', startupModels: ['*'] });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as any).port;
  const x64 = Array(64).fill(0.5);
  for (const u of ['/v2/models/%2e%2e', '/v2/models/%2e%2e/ready', '/v2/models/../../etc/passwd', '/v2/models/..', '/v2/models/mlp_tiny/versions/%2e%2e/ready', '/v2/models/mlp_tiny/versions/../ready', '/v2/models/' + 'a'.repeat(120), '/v2/models/%ZZ', '/v2/models/a%2Fb', '/v2/models/.', '//v2/models/mlp_tiny', '/v2/models/mlp_tiny?x=%ZZ', '/v2/models/mlp_tiny/versions/1%00']) {
    console.log('GET', u.slice(0, 60), ...(await raw(port, 'GET', u)).map((s) => String(s).slice(0, 200)));
  }
  for (const u of ['/v2/repository/models/%2e%2e/load', '/v2/repository/models/..%2F..%2Fetc/load', '/v2/repository/models/' + 'b'.repeat(300) + '/load']) {
    console.log('POST', u.slice(0, 60), ...(await raw(port, 'POST', u, '{}')).map((s) => String(s).slice(0, 200)));
  }
  const body = JSON.stringify({ parameters: { timeout: 1 }, inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x64 }] });
  for (let i = 0; i < 7; i++) console.log('to', ...(await raw(port, 'POST', '/v2/models/mlp_tiny/infer', body)).map((s) => String(s).slice(0, 150)));
  const ok = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: x64 }] });
  console.log('ok', ...(await raw(port, 'POST', '/v2/models/mlp_tiny/infer', ok)).map((s) => String(s).slice(0, 150)));
  const r = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', payload: { inputs: [{ name: 'x', shape: [33, 64], datatype: 'FP32', data: Array(33 * 64).fill(0) }] } });
  console.log('b33', r.statusCode, r.body.slice(0, 200));
  await app.close();
});
