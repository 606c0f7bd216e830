import 'reflect-metadata';

import * as k8s from '@kubernetes/client-node';
import { Backoff } from '@periscope/protocol';
import { describe, expect, inject, it } from 'vitest';

import { TunnelClient } from '../../apps/agent/src/tunnel/tunnel-client';
import { AgentCa } from '../../apps/server/src/agents/agent-ca';
import { SecretAgentRecords, SecretCaStore } from '../../apps/server/src/agents/ca-store';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { log } from './tunnel-fixture';

const cluster = new TestClusterClient(inject('cluster'));

describe('agent CA in a Kubernetes Secret', () => {
  it('is created once and shared by concurrently starting replicas', async () => {
    const ns = `ca-${Date.now().toString(36)}`;
    await cluster.createNamespace(ns);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig);
    const store = (): SecretCaStore =>
      new SecretCaStore(kc.makeApiClient(k8s.CoreV1Api), ns, 'periscope-agent-ca');
    const [a, b, c] = await Promise.all([
      AgentCa.loadOrCreate(store()),
      AgentCa.loadOrCreate(store()),
      AgentCa.loadOrCreate(store()),
    ]);
    expect(b.certPem).toBe(a.certPem);
    expect(c.certPem).toBe(a.certPem);
    const again = await AgentCa.loadOrCreate(store());
    expect(again.certPem).toBe(a.certPem);
    const keys = await cluster.kubectlOk([
      '-n',
      ns,
      'get',
      'secret',
      'periscope-agent-ca',
      '-o',
      'jsonpath={.data}',
    ]);
    expect(Object.keys(JSON.parse(keys) as object).sort()).toEqual(['ca.crt', 'ca.key']);
  });
});

describe('agent certificate records in a Kubernetes Secret', () => {
  it('keeps every concurrent update of several replicas (compare-and-set on the resourceVersion)', async () => {
    const ns = `records-${Date.now().toString(36)}`;
    await cluster.createNamespace(ns);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig);
    const replica = (): SecretAgentRecords =>
      new SecretAgentRecords(kc.makeApiClient(k8s.CoreV1Api), ns, 'periscope-agent-ca-agents');
    const cert = (i: number) => ({
      fingerprint: `f${i}`,
      serial: `0${i}`,
      notAfter: new Date(0).toISOString(),
      since: new Date(0).toISOString(),
      how: 'registered' as const,
    });
    // Three replicas, eight clusters each registering at once: no write is lost.
    const replicas = [replica(), replica(), replica()];
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (replicas[i % 3] ?? replica()).update((r) => ({ ...r, [`c${i}`]: { current: cert(i) } })),
      ),
    );
    const stored = await replica().load();
    expect(Object.keys(stored).sort()).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7']);
    await replica().update((r) => ({ ...r, c3: { current: null, revokedBy: 'root' } }));
    expect((await replica().load())['c3']).toEqual({ current: null, revokedBy: 'root' });
  });
});

describe('agent watchdog', () => {
  it('gives up (so Kubernetes restarts it) when the server stays unreachable', async () => {
    const port = await freePort(); // nothing listens here
    let gaveUp = 0;
    const client = new TunnelClient({
      serverUrl: `https://127.0.0.1:${port}`,
      cluster: 'edge-1',
      identity: () => ({ certPem: '', keyPem: '', caPem: '' }),
      graceMs: 1000,
      giveUpAfterMs: 800,
      onGiveUp: () => {
        gaveUp++;
      },
      onOpen: () => undefined,
      hello: () => ({
        cluster: 'edge-1',
        version: 't',
        clusterShell: { enabled: false, tiers: [], namespace: 'x' },
        certNotAfter: '',
      }),
      log,
      backoff: new Backoff({ initialMs: 50, maxMs: 100, jitter: 0.5, healthyMs: 1000 }),
    });
    client.start();
    await new Promise((r) => setTimeout(r, 1200));
    client.stop();
    expect(gaveUp).toBe(1);
  });
});
