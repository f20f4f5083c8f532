/**
 * What every generated workload says about the server's container, written once: the health
 * routes the probes and the HEALTHCHECK use, the container's locked-down security context, and
 * the toleration a GPU node's taint needs. helm.ts, kserve.ts and dockerfile.ts import these.
 */

/** Ready once every model loaded and warmed up (src/server/routes/health.ts). */
export const READY_PATH = '/v2/health/ready';
/** Live while the process serves. */
export const LIVE_PATH = '/v2/health/live';

/** The container's security context: non-root, read-only root filesystem, no capabilities. */
export const CONTAINER_SECURITY = {
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
} as const;

/** The taint GPU nodes usually carry (the NVIDIA device plugin's convention). */
export const GPU_TOLERATION = { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' } as const;
