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

  async function leftovers(): Promise<string> {
    return (
      await cluster.kubectlOk([
        '-n',
        ns,
        'get',
        'pods,secrets',
        '-l',
        'periscope.io/cluster-shell=true',
        '-o',
        'name',
      ])
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

  it('reports a tier without a shell ServiceAccount as a token failure', async () => {
    const err = await provisioner
      .provision({ ...base, sessionId: randomUUID(), tier: 'read' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ phase: 'token', status: 404 });
    expect(await leftovers()).toBe('');
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
