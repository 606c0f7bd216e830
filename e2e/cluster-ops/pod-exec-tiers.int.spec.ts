import * as k8s from '@kubernetes/client-node';
import { DirectGateway, type ExecResult } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AGENT_REQUIRED } from '../charts/cases';
import { parseManifests, render, type K8sObject } from '../charts/helm';
import { TestClusterClient } from '../k8s/cluster';
import { startExecPod } from '../support/test-server';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `exec-tiers-${Date.now().toString(36)}`;
const release = `tiers-${Date.now().toString(36)}`;

/**
 * Pod exec runs as the human (impersonation narrowed to their tier); the tier ClusterRoles the
 * charts install decide. read = view (no exec), triage adds pods/exec.
 */
describe('pod exec as an operator of a tier, with the charts tier RBAC', () => {
  let clusterScoped: K8sObject[] = [];
  let gateway: DirectGateway;

  beforeAll(async () => {
    await startExecPod(cluster, ns, []);
    const objects = parseManifests(
      render(
        'periscope-agent',
        { agent: { ...AGENT_REQUIRED, registrationToken: { value: 'x' } }, clusterRBAC: { enabled: true } },
        { release, namespace: ns },
      ),
    );
    clusterScoped = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding');
    expect(clusterScoped.length).toBeGreaterThan(0);
    await cluster.apply(clusterScoped.map((o) => JSON.stringify(o)).join('\n'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig); // the admin identity impersonates, as an agent would
    gateway = new DirectGateway(kc, { preferClusterInfo: false });
  });

  afterAll(async () => {
    for (const o of clusterScoped)
      await cluster.kubectl(['delete', o.kind.toLowerCase(), o.metadata.name, '--ignore-not-found']);
  });

  function execAs(tier: string): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      gateway
        .openExec(
          {
            namespace: ns,
            pod: 'app',
            container: 'main',
            command: ['true'],
            tty: false,
            stdin: false,
            impersonate: { user: `${tier}-user@example.com`, groups: [`periscope-tier:${tier}`] },
          },
          {
            onOutput: () => true,
            onExit: resolve,
            onError: (m) => {
              reject(new Error(m));
            },
          },
        )
        .catch(reject);
    });
  }

  it('denies a read-tier operator (the apiserver refuses pods/exec)', async () => {
    await expect(execAs('read')).rejects.toThrow(
      /HTTP 403.*pods "app" is forbidden: User "read-user@example.com" cannot (create|get) resource "pods\/exec"/,
    );
  });

  it('allows a triage-tier operator', async () => {
    expect(await execAs('triage')).toEqual({ exitCode: 0, status: 'Success' });
  });
});
