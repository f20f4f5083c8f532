/**
 * What every generator of `nimify build` (src/deploy/*) is given: one description of the service,
 * computed once from the flags and the models' own metadata (src/deploy/build.ts), so that the
 * Dockerfile, the Helm chart, the KServe manifests and the dashboard agree on names, ports and
 * paths. Plain data: generators are pure functions of it (same context → byte-identical files).
 */
export interface DeployModel {
  /** Model name as served (`/v2/models/<name>`). */
  name: string;
  /** Versions present in the repository, ascending. */
  versions: string[];
  /** Inputs and outputs as served (KServe datatypes; -1 = variable dim). */
  inputs: Array<{ name: string; datatype: string; shape: number[] }>;
  outputs: Array<{ name: string; datatype: string; shape: number[] }>;
  /** Whether its config has a preprocess section (the /v1/models/<name>/predict route). */
  predict: boolean;
  /** Optional peer packages its pipeline needs in the image ('sharp' for images, 'tokenizers' for text). */
  needs: string[];
  /** Total bytes of its model files (a hint for memory requests). */
  bytes: number;
}

/**
 * The gRPC port beside HTTP port `httpPort` in what `nimify build` writes: the next one (8000 →
 * 8001, Triton's pair), or the one below for 65535. (`nimify serve` alone defaults to 8001.)
 */
export function grpcPortFor(httpPort: number): number {
  return httpPort < 65535 ? httpPort + 1 : httpPort - 1;
}

export interface DeployContext {
  /** Service name: a DNS-1035 label (Kubernetes names, chart name, container name). */
  name: string;
  /** Container image reference, `repo/name:tag`. */
  image: string;
  /** HTTP port the server listens on inside the container. */
  port: number;
  /** Build for NVIDIA GPUs (CUDA-capable base image, nvidia.com/gpu resources, tolerations). */
  gpu: boolean;
  /** Replica bounds for autoscaling (min = max = fixed replicas). */
  replicas: { min: number; max: number };
  autoscale: 'hpa' | 'keda' | 'none';
  /** The nimify version the image installs (`nimify@<version>`) unless packages are given. */
  nimifyVersion: string;
  /** Local tarballs copied into the build context (`packages/<file>`), installed instead of the registry. */
  packages: string[];
  /** Path of the model repository inside the image. */
  modelDir: string;
  /** The server's graceful-drain limit (ms); the pod's terminationGracePeriodSeconds exceeds it. */
  drainTimeoutMs: number;
  /** Memory request/limit hints (MiB) from the models' sizes. */
  memoryMiB: { request: number; limit: number };
  models: DeployModel[];
}
