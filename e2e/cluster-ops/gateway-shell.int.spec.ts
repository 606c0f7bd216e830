import { randomUUID } from 'node:crypto';

import {
  DirectGateway,
  shellObjectName,
  SHELL_PATHS,
  type ClusterGateway,
  type ExecResult,
} from '@periscope/cluster-ops';
import type { ShellProvisionRequest } from '@periscope/protocol';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { registerClusterOps } from '../../apps/agent/src/cluster/cluster-op-handlers';
import { serveExecStream } from '../../apps/agent/src/exec/tunnel-exec';
import { AgentGateway } from '../../apps/server/src/tunnel/agent-gateway';
import type { TestCluster } from '../k8s/cluster';
import { log, startHarness, type Harness } from '../tunnel/tunnel-fixture';
import { SHELL_NS, startShellCluster } from './shell-cluster';

/**
 * The whole cluster-shell path below the browser, once through a direct gateway and once through
 * the agent tunnel, with the same calls: callers never branch on the backend.
 */
describe.each(['direct', 'agent'] as const)('a cluster-shell session through the %s gateway', (kind) => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let cluster: TestCluster;
  let harness: Harness | undefined;
  let gateway: ClusterGateway;

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir);
    cluster = env.cluster;
    const direct = new DirectGateway(env.provisionerKc, { preferClusterInfo: true });
    if (kind === 'direct') gateway = direct;
    else {
      harness = await startHarness();
      const agent = await harness.agent('edge-1', {
        onOpen: (s, o) => void serveExecStream(direct, s, o, log),
      });
      registerClusterOps(agent.rpc, direct, { enabled: true, tiers: ['admin'], namespace: SHELL_NS });
      const h = harness;
      const deadline = Date.now() + 10_000;
      while (!h.server.link('edge-1')?.mux.attached && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      gateway = new AgentGateway(() => h.server.link('edge-1'), 'edge-1');
    }
  });

  /** The provision request every case starts from (admin tier, bash, the test image), plus `extra`. */
  const shellRequest = (
    sessionId: string,
    extra: Omit<Partial<ShellProvisionRequest>, 'sessionId'> = {},
  ): ShellProvisionRequest => ({
    sessionId,
    namespace: SHELL_NS,
    tier: 'admin',
    subject: 'alice@example.com',
    image: env.image,
    imagePullPolicy: 'IfNotPresent',
    mode: 'bash',
    tokenSeconds: 3600,
    podStartTimeoutMs: 30_000,
    ...extra,
  });

  afterAll(async () => {
    await harness?.stop();
    await env.stop();
  });

  it('provisions with progress, runs a TTY shell whose kubectl calls are audited, reads the audit file, and tears down', async () => {
    const sessionId = randomUUID();
    const phases: string[] = [];
    await gateway.provisionShell(shellRequest(sessionId), (p) => phases.push(p));
    expect(phases).toEqual(
      expect.arrayContaining(['secret', 'identity', 'token', 'kubeconfig', 'pod', 'ready']),
    );

    let out = '';
    const exit = await new Promise<ExecResult>((resolve, reject) => {
      gateway
        .openExec(
          {
            sessionId,
            namespace: SHELL_NS,
            pod: shellObjectName(sessionId),
            container: 'shell',
            command: ['periscope-shell'],
            tty: true,
            stdin: true,
            cols: 120,
            rows: 40,
          },
          {
            onOutput: (_ch, b) => {
              out += Buffer.from(b).toString();
              return true;
            },
            onExit: resolve,
            onError: (m) => {
              reject(new Error(m));
            },
          },
        )
        .then((ch) => {
          const send = (s: string): void => {
            ch.write(Buffer.from(s));
          };
          send('stty size\n');
          send('kubectl auth whoami -o jsonpath="{.status.userInfo.username}"; echo\n');
          send('kubectl get ns does-not-exist\n');
          send('exit 7\n');
        }, reject);
    });
    expect(exit.exitCode).toBe(7);
    expect(out).toContain('40 120');
    expect(out).toContain('alice@example.com');

    const audit = await gateway.readPodFile({
      namespace: SHELL_NS,
      pod: shellObjectName(sessionId),
      container: 'shell',
      path: SHELL_PATHS.auditFile,
      maxBytes: 1024 * 1024,
    });
    const lines = audit.content
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { argv: string[]; exit_code: number });
    expect(lines.map((l) => [l.argv.slice(1).join(' '), l.exit_code])).toEqual([
      ['auth whoami -o jsonpath={.status.userInfo.username}', 0],
      ['get ns does-not-exist', 1],
    ]);
    expect(audit.truncated).toBe(false);

    await gateway.teardownShell({ sessionId, namespace: SHELL_NS });
    await cluster.waitFor(
      'objects gone',
      async () =>
        (
          await cluster.kubectlOk([
            '-n',
            SHELL_NS,
            'get',
            'pods,secrets',
            '-l',
            `periscope.io/session-id=${sessionId}`,
            '-o',
            'name',
          ])
        ).trim() === '',
    );
  });

  it('creates the pod with the pod template (resources, tolerations, PriorityClass, labels, annotations, pull secrets)', async () => {
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'scheduling.k8s.io/v1',
        kind: 'PriorityClass',
        metadata: { name: 'periscope-shell-gateway-test' },
        value: 500,
      }),
    );
    const sessionId = randomUUID();
    await gateway.provisionShell(
      shellRequest(sessionId, {
        resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '200m', memory: '128Mi' } },
        tolerations: [{ key: 'periscope.test/shell', operator: 'Exists', effect: 'NoSchedule' }],
        priorityClassName: 'periscope-shell-gateway-test',
        extraLabels: { team: 'sre' },
        annotations: { 'example.com/owner': 'sre' },
        imagePullSecrets: ['regcred'],
      }),
    );
    try {
      const pod = JSON.parse(
        await cluster.kubectlOk(['-n', SHELL_NS, 'get', 'pod', shellObjectName(sessionId), '-o', 'json']),
      ) as {
        metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
        spec: {
          priorityClassName?: string;
          imagePullSecrets?: { name: string }[];
          tolerations?: { key?: string }[];
          containers: { resources?: unknown }[];
        };
      };
      expect(pod.metadata.labels).toMatchObject({ team: 'sre', 'periscope.io/session-id': sessionId });
      expect(pod.metadata.annotations).toEqual({ 'example.com/owner': 'sre' });
      expect(pod.spec.priorityClassName).toBe('periscope-shell-gateway-test');
      expect(pod.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(pod.spec.tolerations?.[0]).toEqual({
        key: 'periscope.test/shell',
        operator: 'Exists',
        effect: 'NoSchedule',
      });
      expect(pod.spec.containers[0]?.resources).toEqual({
        requests: { cpu: '10m', memory: '16Mi' },
        limits: { cpu: '200m', memory: '128Mi' },
      });
    } finally {
      await gateway.teardownShell({ sessionId, namespace: SHELL_NS });
    }
  });

  it('reports the cluster CA and reaps leftovers', async () => {
    const ca = await gateway.clusterCa();
    expect(ca.caPem).toBe(cluster.info.caPem);
    const orphan = randomUUID();
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: shellObjectName(orphan),
          namespace: SHELL_NS,
          labels: { 'periscope.io/cluster-shell': 'true', 'periscope.io/session-id': orphan },
        },
      }),
    );
    expect(await gateway.reapShells({ namespace: SHELL_NS, liveSessionIds: [], graceMs: 0 })).toEqual([
      orphan,
    ]);
  });
});
