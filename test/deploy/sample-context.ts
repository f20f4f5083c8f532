/**
 * A DeployContext written by hand for the manifest generator tests (test/deploy/*): what
 * src/deploy/build.ts would compute for test/fixtures/models/mlp_tiny.onnx served as `mlp-tiny`.
 */
import type { DeployContext } from '../../src/deploy/context';

export function sampleContext(over: Partial<DeployContext> = {}): DeployContext {
  return {
    name: 'mlp-tiny',
    image: 'registry.example.com/team/mlp-tiny:0.1.0',
    port: 8000,
    gpu: false,
    replicas: { min: 2, max: 6 },
    autoscale: 'hpa',
    nimifyVersion: '0.1.0',
    packages: [],
    modelDir: '/models',
    drainTimeoutMs: 30_000,
    memoryMiB: { request: 256, limit: 512 },
    models: [
      {
        name: 'mlp_tiny',
        versions: ['1'],
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 64] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }],
        predict: false,
        needs: [],
        bytes: 70_000,
      },
    ],
    ...over,
  };
}
