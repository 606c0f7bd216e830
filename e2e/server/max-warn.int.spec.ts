import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';

const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `maxwarn-${suffix}`;
const ORIGIN = 'http://localhost:8080';
/** Far below the settings' minimum (600 s), set on the loaded configuration to keep the test short. */
const MAX_SECONDS = 10;
const WARN_SECONDS = 6;

/**
 * The warning before the maximum length, through the real server and a pod exec on the real
 * apiserver: `max_warn` arrives WARN_SECONDS before the cut while the person keeps typing, then
 * `closed {reason: max_duration}`, and the close is audited with that reason.
 */
describe('max-length warning (max_warn) before the hard cut', () => {
  let server: NestExpressApplication;
  let base: string;
  let cookie: string;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    await cluster.apply(
      [
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'app', namespace: ns },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'main', image: 'busybox', command: ['sleep', '3600'] }],
          },
        },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'admin-tier', namespace: ns },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
          subjects: [{ kind: 'Group', name: 'periscope-tier:admin', apiGroup: 'rbac.authorization.k8s.io' }],
        },
      ]
        .map((o) => JSON.stringify(o))
        .join('\n'),
    );
    await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', 'pod/app', '--timeout=60s']);

    const dir = mkdtempSync(join(tmpdir(), 'periscope-max-warn-'));
    writeFileSync(
      join(dir, 'auth.yaml'),
      [
        'authorization:',
        '  mode: tier',
        '  groupTiers: { admins: admin }',
        'dev:',
        '  users:',
        '    - { subject: alice@example.com, groups: [admins] }',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      `clusters:\n  - { name: lab, backend: kubeconfig, kubeconfigPath: ${inject('cluster').adminKubeconfig} }\n`,
    );
    const config = loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
        PERISCOPE_PUBLIC_URL: ORIGIN,
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    );
    config.clusterShell.maxSessionSeconds = MAX_SECONDS;
    config.clusterShell.maxSessionWarnSeconds = WARN_SECONDS;
    server = await createServerApp(config);
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    cookie = await devLogin(base, 'alice@example.com');
  }, 120_000);

  afterAll(async () => {
    await server.close();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  it('warns with the seconds left while the person types, then ends the session at the maximum length', async () => {
    const headers = { cookie, origin: ORIGIN };
    const res = await fetch(`${base}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ container: 'main' }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const openedAt = Date.now();
    const client = new TerminalClient(`${base.replace('http', 'ws')}${socketPath}`, headers);
    await client.opened;
    client.type('echo ready\n');
    await client.waitText('the shell', /ready/);
    // Activity all along: the warning and the cut come anyway.
    const typing = setInterval(() => {
      client.type('echo tick\n');
    }, 500);
    let warnedAt = 0;
    const warned = new Promise<void>((resolve) => {
      client.ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary && (JSON.parse(data.toString()) as { type: string }).type === 'max_warn') {
          warnedAt = Date.now();
          resolve();
        }
      });
    });
    await warned;
    const closed = await client.closed;
    const closedAt = Date.now();
    clearInterval(typing);

    const warn = client.frame('max_warn');
    expect(warn).toEqual({ type: 'max_warn', secondsRemaining: expect.any(Number) as unknown });
    const left = warn?.['secondsRemaining'] as number;
    expect(left).toBeGreaterThanOrEqual(WARN_SECONDS - 1);
    expect(left).toBeLessThanOrEqual(WARN_SECONDS);
    // Sent about MAX - WARN seconds in (the session starts a little after the socket opens).
    expect(warnedAt - openedAt).toBeGreaterThanOrEqual((MAX_SECONDS - WARN_SECONDS) * 1000 - 500);
    expect(closedAt - warnedAt).toBeGreaterThanOrEqual((WARN_SECONDS - 1) * 1000);
    const types = client.frames.map((f) => f['type']);
    expect(types.filter((t) => t === 'max_warn')).toHaveLength(1);
    expect(types.indexOf('max_warn')).toBeLessThan(types.indexOf('closed'));
    expect(client.frame('closed')).toEqual({ type: 'closed', reason: 'max_duration' });
    expect(closed).toBe(1000);
    const audit = server.get(AuditStore).bySession(sessionId);
    expect(audit.map((e) => e.verb)).toEqual(['exec_open', 'exec_close']);
    expect(audit[1]).toMatchObject({ outcome: 'ok', body: { close_reason: 'max_duration' } });
  }, 60_000);
});
