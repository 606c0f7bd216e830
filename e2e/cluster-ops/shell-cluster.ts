import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';

import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout } from '../shell/image-layout';
import { shellNamespaceRbac } from './shell-rbac';

export const SHELL_NS = 'periscope-system';

/**
 * A fresh local cluster whose node runs the shell image's real files (bundled programs, real
 * kubectl and helm), with the shell namespace RBAC applied. `provisionerKc` acts as the
 * namespace-scoped provisioner ServiceAccount, like an agent or an in-cluster server.
 */
export async function startShellCluster(
  binDir: string,
  opts: { apiserverArgs?: string[] } = {},
): Promise<{
  cluster: TestCluster;
  provisionerKc: k8s.KubeConfig;
  image: string;
  stop: () => Promise<void>;
}> {
  const layout = readShellImageLayout();
  const work = mkdtempSync(join(tmpdir(), 'periscope-shell-cluster-'));
  const overlay = join(work, 'overlay');
  mkdirSync(overlay);
  assembleOverlay(overlay, layout, {
    bundles: bundleShellPrograms(join(work, 'dist')),
    tools: { kubectl: join(binDir, 'kubectl'), helm: join(binDir, 'helm') },
  });
  const cluster = await startTestCluster({
    imageMap: { [layout.image]: overlay },
    ...(opts.apiserverArgs ? { apiserverArgs: opts.apiserverArgs } : {}),
  });
  await cluster.createNamespace(SHELL_NS);
  await cluster.apply(shellNamespaceRbac(SHELL_NS, ['admin'], { admin: 'view' }));
  const token = (
    await cluster.kubectlOk(['-n', SHELL_NS, 'create', 'token', 'provisioner', '--duration=2h'])
  ).trim();
  const provisionerKc = new k8s.KubeConfig();
  provisionerKc.loadFromFile(cluster.kubeconfig('provisioner', { token }));
  return {
    cluster,
    provisionerKc,
    image: `${layout.image}:0.1.0`,
    stop: async () => {
      await cluster.stop();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
