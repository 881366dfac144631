import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        test: {
          // The real Kubernetes peers (kube-apiserver + etcd, kubelet and KubeVirt harnesses), built
          // from test/peers/<module>/ by the global setup; one file at a time (each starts its own).
          name: 'peers',
          include: ['test/peers/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/peers-setup.ts'],
          testTimeout: 120_000,
          // A cold Go build of Kubernetes happens in globalSetup; starting a control plane on a
          // busy 2-core machine still takes tens of seconds.
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 600_000,
          hookTimeout: 600_000,
          // The QEMU guests are heavy: run the e2e files one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
