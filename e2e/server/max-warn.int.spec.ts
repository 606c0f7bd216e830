import 'reflect-metadata';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { testServerConfig, startExecPod, startTestServer, writeConfigDir } from '../support/test-server';

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
    await startExecPod(cluster, ns, [{ tier: 'admin', role: 'admin', name: 'admin-tier' }]);

    const dir = writeConfigDir('max-warn', inject('cluster').adminKubeconfig, {
      groupTiers: { admins: 'admin' },
      users: [{ subject: 'alice@example.com', groups: ['admins'] }],
    });
    const config = testServerConfig(dir, {
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
      PERISCOPE_PUBLIC_URL: ORIGIN,
    });
    config.clusterShell.maxSessionSeconds = MAX_SECONDS;
    config.clusterShell.maxSessionWarnSeconds = WARN_SECONDS;
    ({ server, base } = await startTestServer(config));
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
