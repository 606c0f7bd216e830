/**
 * In-cluster deployment check, one server replica: both Helm charts installed with helm onto local
 * control planes whose node runs the server, agent and shell pods from the OCI image archives of
 * `npm run images` (this checkout's build; --strict-images: no pod runs host programs), then a
 * cluster shell through the helm-installed server and agent, checked to run the shell image's own
 * files. The set-up (topology, pod addresses, the Service stand-ins) is helm-deploy.ts's; the
 * two-replica check is helm-replicas.int.spec.ts. See docs/helm-charts.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TestCluster } from '../k8s/cluster';
import { until } from '../support/wait';
import {
  AGENT_IMAGE as agent,
  AGENT_NS,
  HelmDeployment,
  SERVER_IMAGE as server,
  SERVER_NS,
} from './helm-deploy';

describe('helm-installed server and agent on the local control plane', () => {
  const d = new HelmDeployment();
  const built = d.built;
  let hub: TestCluster | undefined;
  let edge: TestCluster | undefined;
  let publicURL = '';
  let cookie = '';

  beforeAll(async () => {
    await d.deploy();
    ({ hub, edge, publicURL, cookie } = d);
    // readiness and metrics are not on the public port
    expect((await fetch(`${publicURL}/readyz`)).status).toBe(404);
    expect((await fetch(`${publicURL}/metrics`)).status).toBe(404);
  }, 45 * 60_000); // a cold image build (two mmdebstrap runs, two npm ci) takes minutes

  afterAll(async () => {
    await d.stop();
  }, 300_000);

  it('runs the images the charts name, as the charts configure them', async () => {
    const pod = async (
      cluster: TestCluster,
      ns: string,
    ): Promise<{
      spec: { serviceAccountName: string; containers: { image: string }[] };
      status: { phase: string };
    }> =>
      (
        JSON.parse(
          await cluster.kubectlOk([
            '-n',
            ns,
            'get',
            'pods',
            '-l',
            'app.kubernetes.io/instance',
            '-o',
            'json',
          ]),
        ) as { items: never[] }
      ).items[0]!;
    const imageId = async (cluster: TestCluster, ns: string): Promise<string> =>
      (
        await cluster.kubectlOk([
          '-n',
          ns,
          'get',
          'pods',
          '-l',
          'app.kubernetes.io/instance',
          '-o',
          'jsonpath={.items[0].status.containerStatuses[0].imageID}',
        ])
      ).trim();
    // Run from the archives: the node reports the manifest digest it unpacked.
    expect(await imageId(hub!, SERVER_NS)).toBe(
      `${server.repository}@${built.get('periscope-server')!.manifestDigest}`,
    );
    expect(await imageId(edge!, AGENT_NS)).toBe(
      `${agent.repository}@${built.get('periscope-agent')!.manifestDigest}`,
    );
    const s = await pod(hub!, SERVER_NS);
    expect(s.spec.containers[0]!.image).toBe(`${server.repository}:${server.appVersion}`);
    expect(s.spec.serviceAccountName).toBe('periscope');
    expect(s.status.phase).toBe('Running');
    const a = await pod(edge!, AGENT_NS);
    expect(a.spec.containers[0]!.image).toBe(`${agent.repository}:${agent.appVersion}`);
    expect(a.spec.serviceAccountName).toBe('periscope-agent');

    // The server kept the agent CA in the Secret the chart named, through its in-cluster identity.
    const ca = await hub!.kubectl(['-n', SERVER_NS, 'get', 'secret', 'periscope-agent-ca', '-o', 'name']);
    expect(ca.code, ca.stderr).toBe(0);
    // The agent stored its identity in its state Secret with its own ServiceAccount.
    const state = await edge!.kubectl([
      '-n',
      AGENT_NS,
      'get',
      'secret',
      'periscope-agent-state',
      '-o',
      'name',
    ]);
    expect(state.code, state.stderr).toBe(0);
    const writer = edge!
      .auditEvents()
      .find(
        (e) =>
          e.verb === 'create' &&
          e.objectRef?.resource === 'secrets' &&
          e.objectRef.name === 'periscope-agent-state',
      );
    expect(writer?.user.username).toBe(`system:serviceaccount:${AGENT_NS}:periscope-agent`);

    // Each pod has its own loopback address (the local node's pod range), where it listens.
    const [serverPod] = await d.serverPods();
    const agentPod = await d.agentPod();
    expect(serverPod?.ip).toMatch(/^127\.1\.\d+\.\d+$/);
    expect(agentPod.ip).toMatch(/^127\.1\.\d+\.\d+$/);
    expect(agentPod.ip).not.toBe(serverPod?.ip);
    expect((await fetch(`${HelmDeployment.serverURL(serverPod!.ip)}/healthz`)).status).toBe(200);

    const agents = await fetch(`${publicURL}/api/agents`, { headers: { cookie } });
    expect(agents.status).toBe(200);
    expect(JSON.stringify(await agents.json())).toMatch(
      /"cluster":"edge"[^}]*"connected":true|"connected":true[^}]*"cluster":"edge"/,
    );
  });

  it('runs a cluster shell on the agent cluster through the helm-installed server and agent', async () => {
    await d.shellSession('edge', edge!, `system:serviceaccount:${AGENT_NS}:periscope-agent`);
  });

  it('runs a cluster shell on its own cluster through the in-cluster backend', async () => {
    await d.shellSession('hub', hub!, `system:serviceaccount:${SERVER_NS}:periscope`);
  });

  it('helm uninstall removes the agent and the server, and the agent drops off the server', async () => {
    const gone = async (cluster: TestCluster, ns: string): Promise<void> => {
      await cluster.waitFor(
        `the pods, ReplicaSets and Deployments of ${ns} to be gone`,
        async () =>
          (await cluster.kubectlOk(['-n', ns, 'get', 'deploy,rs,pods', '-o', 'name'])).trim() === '',
        60_000,
      );
    };
    const [serverPod] = await d.serverPods();
    await d.uninstall(edge!, 'periscope-agent', AGENT_NS);
    await gone(edge!, AGENT_NS);
    await until(
      'the server to see the agent disconnect',
      async () => {
        const r = await fetch(`${publicURL}/api/agents`, { headers: { cookie } });
        return /"connected":false/.test(await r.text());
      },
      60_000,
    );
    await d.uninstall(hub!, 'periscope', SERVER_NS);
    await gone(hub!, SERVER_NS);
    // Nothing listens at the server pod's address any more.
    await expect(fetch(`${HelmDeployment.serverURL(serverPod!.ip)}/healthz`)).rejects.toThrow();
  });
});
