/**
 * The generated KServe manifests: a ServingRuntime nimify's image can be (kserve-container, v2,
 * onnx, Prometheus annotations) and an InferenceService selecting it, validated against pinned
 * subsets of the KServe CRDs (unknown fields refused) with the embedded containers, volumes and
 * tolerations validated as Kubernetes types; same context → same bytes.
 */
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { kserveManifests, runtimeName } from '../../src/deploy/kserve';
import { validateObject } from './k8s-validate';
import { sampleContext } from './sample-context';

type Obj = Record<string, any>;

const parse = (files: Record<string, string>) => ({
  runtime: YAML.parse(files['kserve/servingruntime.yaml']!) as Obj,
  isvc: YAML.parse(files['kserve/inferenceservice.yaml']!) as Obj,
});

describe('KServe manifests', () => {
  it('is deterministic and keyed under kserve/', () => {
    const a = kserveManifests(sampleContext());
    expect(Object.keys(a).sort()).toEqual(['kserve/inferenceservice.yaml', 'kserve/servingruntime.yaml']);
    expect(kserveManifests(sampleContext())).toEqual(a);
    expect(kserveManifests(sampleContext({ image: 'other/img:2' }))['kserve/servingruntime.yaml']).toContain('image: other/img:2');
  });

  it('ServingRuntime: kserve-container, protocol v2, onnx, Prometheus annotations, the context port', () => {
    const ctx = sampleContext();
    const { runtime } = parse(kserveManifests(ctx));
    expect(runtime.apiVersion).toBe('serving.kserve.io/v1alpha1');
    expect(runtime.kind).toBe('ServingRuntime');
    expect(runtime.metadata.name).toBe(runtimeName(ctx));
    // The port and path reach the pods from the runtime's spec.annotations; scraping is switched on
    // per InferenceService; autoSelect off, so no other ONNX InferenceService lands on this image.
    expect(runtime.spec.annotations).toEqual({ 'prometheus.kserve.io/port': '8000', 'prometheus.kserve.io/path': '/metrics' });
    expect(runtime.metadata.annotations).toBeUndefined();
    expect(runtime.spec.protocolVersions).toEqual(['v2']);
    expect(runtime.spec.supportedModelFormats).toEqual([{ name: 'onnx', version: '1', autoSelect: false }]);
    const [c] = runtime.spec.containers;
    expect(c.name).toBe('kserve-container');
    expect(c.image).toBe(ctx.image);
    expect(c.ports[0].containerPort).toBe(ctx.port);
    expect(Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value]))).toMatchObject({ NIMIFY_HOST: '0.0.0.0', NIMIFY_PORT: '8000' });
    expect(c.readinessProbe.httpGet.path).toBe('/v2/health/ready');
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(c.resources.limits['nvidia.com/gpu']).toBeUndefined();
  });

  it('InferenceService: predictor uses that runtime for the onnx format', () => {
    const ctx = sampleContext();
    const { runtime, isvc } = parse(kserveManifests(ctx));
    expect(isvc.apiVersion).toBe('serving.kserve.io/v1beta1');
    expect(isvc.kind).toBe('InferenceService');
    expect(isvc.metadata.name).toBe(ctx.name);
    expect(isvc.spec.predictor.model).toMatchObject({ modelFormat: { name: 'onnx' }, runtime: runtime.metadata.name, protocolVersion: 'v2' });
    expect(isvc.spec.predictor).toMatchObject({ minReplicas: 2, maxReplicas: 6 });
  });

  it('GPU: nvidia.com/gpu limit and toleration', () => {
    const { runtime } = parse(kserveManifests(sampleContext({ gpu: true })));
    expect(runtime.spec.containers[0].resources.limits['nvidia.com/gpu']).toBe(1);
    expect(runtime.spec.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  });

  it('refuses a malformed context', () => {
    expect(() => kserveManifests(sampleContext({ port: 0 }))).toThrow(/context\.port: expected an integer in \[1, 65535\], received number 0/);
  });

  describe('schema validation', () => {
    it('both manifests validate, for CPU and GPU contexts', async () => {
      for (const gpu of [false, true]) {
        const { runtime, isvc } = parse(kserveManifests(sampleContext({ gpu })));
        expect(await validateObject(runtime)).toEqual([]);
        expect(await validateObject(isvc)).toEqual([]);
      }
    });
    it('a misspelt InferenceService field is refused', async () => {
      const { isvc } = parse(kserveManifests(sampleContext()));
      isvc.spec.predictor.model.runtim = isvc.spec.predictor.model.runtime;
      expect((await validateObject(isvc)).join('\n')).toMatch(/InferenceService\/mlp-tiny\.spec\.predictor\.model: must NOT have additional properties/);
    });
    it('a misspelt field inside the embedded container is refused', async () => {
      const { runtime } = parse(kserveManifests(sampleContext()));
      runtime.spec.containers[0].imagePullPolcy = 'Always';
      expect(await validateObject(runtime)).toEqual(['ServingRuntime/mlp-tiny-runtime.spec.containers[0].imagePullPolcy: unknown field']);
    });
    it('an unknown protocol version is refused', async () => {
      const { runtime } = parse(kserveManifests(sampleContext()));
      runtime.spec.protocolVersions = ['v3'];
      expect((await validateObject(runtime)).join('\n')).toMatch(/spec\.protocolVersions\.0: must be equal to one of the allowed values/);
    });
  });
});
