import { randomUUID } from 'node:crypto';

import * as k8s from '@kubernetes/client-node';
import {
  discoverClusterCa,
  ProvisionError,
  ShellProvisioner,
  type ProvisionInput,
} from '@periscope/cluster-ops';
import { beforeAll, describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';
import { shellNamespaceRbac } from './shell-rbac';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `prov-${Date.now().toString(36)}`;

describe('shell provisioning failures leave nothing behind', () => {
  let provisioner: ShellProvisioner;
  let base: Omit<ProvisionInput, 'sessionId'>;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    await cluster.apply(shellNamespaceRbac(ns, ['admin'], { admin: 'view' }));
    // Provision as the namespace-scoped provisioner ServiceAccount, as the agent would.
    const token = (
      await cluster.kubectlOk(['-n', ns, 'create', 'token', 'provisioner', '--duration=1h'])
    ).trim();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.kubeconfig('provisioner', { token }));
    provisioner = new ShellProvisioner(kc);
    const { caPem, server } = await discoverClusterCa(kc, { preferClusterInfo: true });
    base = {
      namespace: ns,
      tier: 'admin',
      image: 'unmapped/periscope-shell:0',
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      subject: 'alice@example.com',
      server,
      caPem,
      tokenSeconds: 3600,
      podStartTimeoutMs: 5000,
    };
  });

  /** Shell objects of this namespace: Pods, Secrets, ServiceAccounts and the cluster-scoped identity. */
  async function leftovers(): Promise<string> {
    const list = (kinds: string, selector: string) =>
      cluster.kubectlOk(['-n', ns, 'get', kinds, '-l', selector, '-o', 'name']);
    return (
      (await list('pods,secrets,serviceaccounts', 'periscope.io/cluster-shell=true')) +
      (await list('clusterroles,clusterrolebindings', `periscope.io/shell-namespace=${ns}`))
    ).trim();
  }

  it('names the cause when the shell program cannot start', async () => {
    const err = await provisioner.provision({ ...base, sessionId: randomUUID() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProvisionError);
    expect((err as Error).message).toMatch(/container shell|periscope-shell/);
    expect(await leftovers()).toBe('');
  });

  it('names the cause when the pod cannot be scheduled', async () => {
    const err = await provisioner
      .provision({ ...base, sessionId: randomUUID(), nodeSelector: { 'periscope.io/pool': 'nowhere' } })
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /not ready within 5 s: not scheduled to any node \(nodeSelector periscope.io\/pool=nowhere/,
    );
    expect(await leftovers()).toBe('');
  });

  it('says so at once when the waiting pod is deleted, and cleans up', async () => {
    const sessionId = randomUUID();
    const phases: string[] = [];
    const pending = provisioner
      .provision(
        { ...base, sessionId, podStartTimeoutMs: 20_000, nodeSelector: { 'periscope.io/pool': 'nowhere' } },
        (p) => phases.push(p),
      )
      .catch((e: unknown) => e);
    // Wait until it is watching the unschedulable pod, then delete the pod under it.
    for (let i = 0; i < 100 && !phases.includes('scheduled'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(phases).toContain('scheduled');
    await cluster.kubectlOk(['-n', ns, 'delete', 'pod', `periscope-shell-${sessionId}`, '--wait=false']);
    const err = await pending;
    expect(err).toBeInstanceOf(ProvisionError);
    expect((err as Error).message).toBe('the session pod was deleted before it was ready');
    expect(phases).not.toContain('ready');
    expect(await leftovers()).toBe('');
  });

  it('reports a tier the provisioner may not impersonate as an identity failure, and cleans up', async () => {
    // This namespace's provisioner may impersonate periscope-tier:admin only, so RBAC's escalation
    // check refuses a session role for the read tier.
    const err = await provisioner
      .provision({ ...base, sessionId: randomUUID(), tier: 'read' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ phase: 'identity', status: 403 });
    expect((err as Error).message).toMatch(/attempting to grant RBAC permissions not currently held/);
    expect(await leftovers()).toBe('');
  });

  it('refuses a system: subject before creating anything', async () => {
    const sessionId = randomUUID();
    const err = await provisioner
      .provision({ ...base, sessionId, subject: 'system:kube-controller-manager' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProvisionError);
    expect(err).toMatchObject({ phase: 'identity', status: undefined });
    expect((err as Error).message).toMatch(/starts with "system:"/);
    const created = cluster
      .auditEvents()
      .filter((e) => e.verb === 'create' && e.objectRef?.name === `periscope-shell-${sessionId}`);
    expect(created).toEqual([]);
  });

  it('cannot provision outside its namespace', async () => {
    const err = await provisioner
      .provision({ ...base, namespace: 'default', sessionId: randomUUID() })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ phase: 'secret', status: 403 });
  });

  it('teardown is idempotent', async () => {
    const sid = randomUUID();
    await provisioner.teardown(ns, sid);
    await provisioner.teardown(ns, sid);
  });
});
