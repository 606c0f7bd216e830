import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const lib = (name: string): string => fileURLToPath(new URL(`./libs/${name}/src/index.ts`, import.meta.url));

// SWC keeps NestJS decorator metadata intact, which esbuild would drop.
const swcPlugin = swc.vite({
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
  },
});

const alias = {
  // the agent's entry without @kubernetes/client-node (before the package's own alias, which would match first)
  '@periscope/cluster-ops/dist/lean': fileURLToPath(
    new URL('./libs/cluster-ops/src/lean.ts', import.meta.url),
  ),
  // the agent's Nest-free imports of single modules (`@periscope/observability/dist/heap`, …)
  '@periscope/observability/dist': fileURLToPath(new URL('./libs/observability/src', import.meta.url)),
  '@periscope/protocol': lib('protocol'),
  '@periscope/cluster-ops': lib('cluster-ops'),
  '@periscope/config': lib('config'),
  '@periscope/observability': lib('observability'),
};

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [swcPlugin],
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['apps/*/src/**/*.spec.ts', 'libs/*/src/**/*.spec.ts', 'e2e/**/*.spec.ts'],
          exclude: ['**/node_modules/**', '**/dist/**', '**/*.int.spec.ts'],
          environment: 'node',
          // Deadlines for a busy 2-core machine (CI runs beside other work): many unit tests start
          // processes (the shell wrapper, helm, nx, a type-aware lint). Tests whose own setup can
          // take minutes (a cold helm build, a cold lint program) set longer deadlines themselves.
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        plugins: [swcPlugin],
        resolve: { alias },
        test: {
          name: 'integration',
          include: ['apps/*/src/**/*.int.spec.ts', 'libs/*/src/**/*.int.spec.ts', 'e2e/**/*.int.spec.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          environment: 'node',
          globalSetup: ['e2e/k8s/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Files share one control plane; run them one at a time on two cores.
          fileParallelism: false,
        },
      },
    ],
  },
});
