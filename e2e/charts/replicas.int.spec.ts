import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';
import { RENDER_CASES } from './cases';
import { one, parseManifests, render, type K8sObject } from './helm';

/**
 * Several server replicas against the real local apiserver: what the chart renders for
 * replicaCount 3 passes strict server-side validation and is stored as rendered — the spread
 * constraints (matchLabelKeys included, which an apiserver without the feature would drop
 * silently), the rolling update, the disruption budget and the downward-API variables. Pods are
 * not run here: see docs/helm-charts.md ("In-cluster deployment check") for why two replicas do
 * not run on the local node.
 */
const cluster = new TestClusterClient(inject('cluster'));
const id = Date.now().toString(36);
const release = `ha-${id}`;
const ns = `ha-srv-${id}`;

const toStream = (objects: K8sObject[]): string => objects.map((o) => JSON.stringify(o)).join('\n');

async function getJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await cluster.kubectlOk([...args, '-o', 'json'])) as T;
}

describe('periscope chart with three replicas, applied to the local apiserver', () => {
  const c = RENDER_CASES.find((r) => r.name === 'server-replicas');
  if (c === undefined) throw new Error('the server-replicas render case is missing from cases.ts');
  const objects = parseManifests(render('periscope', c.values, { release, namespace: ns }));
  const fullname = `${release}-periscope`;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    const input = toStream(objects);
    const dry = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], {
      input,
    });
    expect(dry.stderr, 'server-side dry run').toBe('');
    expect(dry.code).toBe(0);
    await cluster.kubectlOk(['apply', '--validate=strict', '-f', '-'], { input });
  });

  afterAll(async () => {
    await cluster.kubectl([
      'delete',
      'clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding',
      '-l',
      `app.kubernetes.io/instance=${release}`,
      '--ignore-not-found',
    ]);
    await cluster.kubectl(['-n', ns, 'delete', 'deployment,service,pdb,networkpolicy,configmap', '--all']);
  });

  it('stores the Deployment as rendered: replicas, rolling update, spread, downward API', async () => {
    interface Deployment {
      spec: {
        replicas: number;
        strategy: unknown;
        template: { spec: { topologySpreadConstraints: unknown; containers: { env: unknown[] }[] } };
      };
    }
    const rendered = one(objects, 'Deployment') as unknown as Deployment;
    const stored = await getJson<Deployment>(['-n', ns, 'get', 'deployment', fullname]);
    expect(stored.spec.replicas).toBe(3);
    expect(stored.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    expect(stored.spec.template.spec.topologySpreadConstraints).toEqual(
      rendered.spec.template.spec.topologySpreadConstraints,
    );
    expect(JSON.stringify(stored.spec.template.spec.topologySpreadConstraints)).toContain(
      'pod-template-hash',
    );
    const env = stored.spec.template.spec.containers[0]?.env ?? [];
    expect(env).toContainEqual({
      name: 'POD_IP',
      valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } },
    });
    expect(env).toContainEqual({
      name: 'PERISCOPE_REPLICA_ID',
      valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } },
    });
    expect(env).toContainEqual({ name: 'PERISCOPE_REPLICA_URL', value: 'http://$(POD_IP):8080' });
  });

  it('stores a disruption budget over the same pods that lets one go at a time', async () => {
    const pdb = await getJson<{ spec: unknown }>(['-n', ns, 'get', 'pdb', fullname]);
    const deployment = await getJson<{ spec: { selector: unknown } }>([
      '-n',
      ns,
      'get',
      'deployment',
      fullname,
    ]);
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: deployment.spec.selector });
  });

  it('points the UI and agent tunnel Services at every replica, without session affinity', async () => {
    const deployment = await getJson<{ spec: { selector: { matchLabels: Record<string, string> } } }>([
      '-n',
      ns,
      'get',
      'deployment',
      fullname,
    ]);
    for (const name of [fullname, `${fullname}-agent-tunnel`]) {
      const svc = await getJson<{ spec: { selector: unknown; sessionAffinity: string } }>([
        '-n',
        ns,
        'get',
        'service',
        name,
      ]);
      expect(svc.spec.selector, name).toEqual(deployment.spec.selector.matchLabels);
      // The apiserver's default: no stickiness.
      expect(svc.spec.sessionAffinity, name).toBe('None');
    }
  });
});
