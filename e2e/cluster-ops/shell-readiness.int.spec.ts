import 'reflect-metadata';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';

import { parseManifests } from '../charts/helm';
import { devLogin } from '../support/dev-login';
import { startTestServer, testServerConfig, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';
import { startShellCluster, templateRbacOnly, waitForShellPolicy } from './shell-cluster';

/**
 * Shell readiness of a direct (kubeconfig) cluster, end to end: the server reaches the local
 * apiserver as a plain user without the shell RBAC, so /api/clusters shows the shell unavailable
 * with what is missing and the open is refused up front (E_CLUSTER_SHELL_DISABLED, not a failed
 * provisioning); then the documented install step (helm template of the periscope-agent chart in
 * mode=rbac-only for that user | kubectl apply) is applied, and without a restart the cluster
 * offers the shell and a session runs.
 */
const NS = 'periscope-shell';
const SUBJECT = 'bob@example.com'; // a token-file user with no rights (e2e/k8s/cluster.ts)
const ORIGIN = 'http://localhost:8080';

describe('cluster-shell readiness of a kubeconfig cluster', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let server: NestExpressApplication;
  let base: string;
  let cookie: string;
  let kubeconfig: string;

  beforeAll(async () => {
    // A cluster whose node runs the shell image; its own test provisioner (another namespace,
    // another identity) does not matter here.
    env = await startShellCluster(inject('cluster').binDir);
    kubeconfig = env.cluster.kubeconfigForUser('bob');
    const dir = writeConfigDir('shell-readiness', kubeconfig, {
      groupTiers: { admins: 'admin' },
      users: [{ subject: 'alice@example.com', groups: ['admins'] }],
    });
    ({ server, base } = await startTestServer(
      testServerConfig(dir, {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: NS,
        PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
        // No round during the test: the install must be seen by the re-check on demand.
        PERISCOPE_CLUSTER_SHELL_READINESS_SECONDS: '3600',
        PERISCOPE_PUBLIC_URL: ORIGIN,
      }),
    ));
    cookie = await devLogin(base, 'alice@example.com');
  });

  afterAll(async () => {
    await server.close();
    await env.stop();
  });

  const lab = async (): Promise<{ clusterShellEnabled: boolean; clusterShellReason?: string }> => {
    const res = await fetch(`${base}/api/clusters`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      clusters: { name: string; clusterShellEnabled: boolean; clusterShellReason?: string }[];
    };
    const c = body.clusters.find((x) => x.name === 'lab');
    if (!c) throw new Error('no cluster lab in /api/clusters');
    return c;
  };
  const openTicket = (): Promise<Response> =>
    fetch(`${base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, origin: ORIGIN },
      body: '{}',
    });

  it('shows the shell unavailable with the missing piece and the install step, and refuses the open up front', async () => {
    const c = await until(
      'the readiness check to refuse lab',
      async () => {
        await new Promise((r) => setTimeout(r, 200));
        const v = await lab();
        return v.clusterShellEnabled ? undefined : v;
      },
      30_000,
    );
    expect(c.clusterShellReason).toMatch(
      new RegExp(
        `^cluster-shell RBAC missing on lab \\(as ${SUBJECT}\\): cannot create, get, watch, delete, list pods in namespace ${NS}; create pods/exec in namespace ${NS}; .*impersonate users.*; install with helm template periscope-agent-rbac charts/periscope-agent --set mode=rbac-only --set provisioner.subject.kind=User --set provisioner.subject.name=${SUBJECT} `,
      ),
    );
    const res = await openTicket();
    expect(res.status).toBe(403);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe('E_CLUSTER_SHELL_DISABLED');
    expect(body.message).toBe(`the cluster shell is not available on lab: ${c.clusterShellReason ?? ''}`);
    // Nothing was attempted on the cluster: no session objects, not even the namespace.
    const ns = await env.cluster.kubectl(['get', 'namespace', NS]);
    expect(ns.code).not.toBe(0);
  });

  it('offers the shell without a restart once the documented RBAC install is applied, and a session runs', async () => {
    // The documented step (docs/cluster-shell.md "RBAC for direct clusters"): helm template … | kubectl apply -f -
    const r = templateRbacOnly(SUBJECT, NS);
    expect(r.stderr).toBe('');
    expect(r.ok).toBe(true);
    expect(parseManifests(r.stdout).map((o) => o.kind)).not.toContain('Deployment');
    await env.cluster.kubectlOk(['apply', '-f', '-'], { input: r.stdout });
    await waitForShellPolicy(env.cluster, NS, kubeconfig);

    const c = await until(
      'lab to offer the shell',
      async () => {
        await new Promise((r) => setTimeout(r, 200));
        const v = await lab();
        return v.clusterShellEnabled ? v : undefined;
      },
      30_000,
    );
    expect(c.clusterShellReason).toBeUndefined();

    const res = await openTicket();
    expect(res.status, await res.clone().text()).toBe(201);
    const { ticket } = (await res.json()) as { ticket: string };
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/clusters/lab/shell?ticket=${ticket}`, {
      headers: { cookie, origin: ORIGIN },
    });
    const frames: Record<string, unknown>[] = [];
    let output = '';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) output += data.toString();
      else frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    const closed = new Promise<void>((resolve) =>
      ws.once('close', () => {
        resolve();
      }),
    );
    await new Promise((resolve) => ws.once('open', resolve));
    await until('the prompt', () => output.length > 0, 60_000);
    ws.send(Buffer.from('kubectl auth whoami -o jsonpath="{.status.userInfo.username}"; echo\n'));
    await until('whoami as the operator', () => output.includes('alice@example.com'), 30_000);
    ws.send(Buffer.from('exit 0\n'));
    await closed;
    expect(frames.filter((f) => f['type'] === 'error')).toEqual([]);
    expect(frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
  });
});
