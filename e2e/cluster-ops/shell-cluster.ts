import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';

import { template, type RenderResult } from '../charts/helm';
import { startTestCluster, type TestCluster, type TestClusterClient } from '../k8s/cluster';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout } from '../shell/image-layout';
import { shellNamespaceRbac } from './shell-rbac';

export const SHELL_NS = 'periscope-system';

/**
 * A fresh local cluster whose node runs the shell image's real files (bundled programs, real
 * kubectl and helm), with the shell namespace RBAC applied. `provisionerKc` acts as the
 * namespace-scoped provisioner ServiceAccount, like an agent or an in-cluster server. Every tier in
 * `tiers` (default: admin) is bound to `view`.
 */
export async function startShellCluster(
  binDir: string,
  opts: { apiserverArgs?: string[]; tiers?: string[] } = {},
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
  const tiers = opts.tiers ?? ['admin'];
  await cluster.apply(shellNamespaceRbac(SHELL_NS, tiers, Object.fromEntries(tiers.map((t) => [t, 'view']))));
  const token = (
    await cluster.kubectlOk(['-n', SHELL_NS, 'create', 'token', 'provisioner', '--duration=2h'])
  ).trim();
  const kubeconfig = cluster.kubeconfig('provisioner', { token });
  await waitForShellPolicy(cluster, SHELL_NS, kubeconfig);
  const provisionerKc = new k8s.KubeConfig();
  provisionerKc.loadFromFile(kubeconfig);
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

/**
 * Waits until the apiserver enforces the shell-identity admission policy for the provisioner
 * (a new policy takes a moment to load): a ServiceAccount of another name is refused.
 */
export async function waitForShellPolicy(
  cluster: TestClusterClient,
  ns: string,
  provisionerKubeconfig: string,
): Promise<void> {
  const probe = JSON.stringify({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'not-a-session', namespace: ns },
  });
  await cluster.waitFor('the shell-identity admission policy to be enforced', async () => {
    const r = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], {
      kubeconfig: provisionerKubeconfig,
      input: probe,
    });
    return r.code !== 0 && /ValidatingAdmissionPolicy/.test(r.stderr);
  });
}

/**
 * The documented RBAC install for a direct cluster (docs/cluster-shell.md "RBAC for direct
 * clusters"): the agent chart in `rbac-only` mode rendered by `helm template`, with `user` as the
 * provisioner's subject, the cluster shell in `namespace` for the admin tier, the apiserver egress
 * to loopback, and the admin tier's cluster RBAC. The caller checks the result and applies it.
 */
export function templateRbacOnly(user: string, namespace: string): RenderResult {
  return template(
    'periscope-agent',
    {
      mode: 'rbac-only',
      provisioner: { subject: { kind: 'User', name: user } },
      clusterShell: {
        enabled: true,
        namespace,
        tiers: ['admin'],
        networkPolicy: { apiserver: { cidrs: ['127.0.0.1/32'] } },
      },
      clusterRBAC: { enabled: true, adminTier: { enabled: true } },
    },
    { release: 'periscope-agent-rbac', namespace: 'default' },
  );
}
