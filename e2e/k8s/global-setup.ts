import type { TestProject } from 'vitest/node';

import { startTestCluster, type ClusterInfo, type TestCluster } from './cluster';

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

let cluster: TestCluster | undefined;

/** One local control plane for the integration project; test files use their own namespaces. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  cluster = await startTestCluster({
    log: (l) => {
      process.stderr.write(`[local-cluster] ${l}\n`);
    },
  });
  process.stderr.write(`[local-cluster] up in ${Date.now() - started} ms at ${cluster.url}\n`);
  project.provide('cluster', cluster.info);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}
