import 'reflect-metadata';

import { createHash } from 'node:crypto';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { parseCast } from '../../apps/server/src/recording/asciicast';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { testServerConfig, startExecPod, startTestServer, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `rec-${suffix}`;
const ORIGIN = 'http://localhost:8080';
const BULK = 64 * 1024 * 1024;

/**
 * Server-side recording of pod-exec sessions through the real server against the real
 * apiserver: a 64 MiB output is recorded byte for byte as the client received it; the per-cluster
 * mode (off, output+input) is applied; input typed with echo off is not written.
 */
describe('session recording (pod exec, 64 MiB, modes)', () => {
  let server: NestExpressApplication;
  let base: string;
  let wsBase: string;
  let cookie = '';

  beforeAll(async () => {
    await startExecPod(cluster, ns, [
      { tier: 'admin', role: 'cluster-admin', name: `rec-admin-${suffix}`, cluster: true },
    ]);
    const kc = inject('cluster').adminKubeconfig;
    const dir = writeConfigDir(
      'recording',
      kc,
      { groupTiers: { admins: 'admin' }, users: [{ subject: 'alice@example.com', groups: ['admins'] }] },
      [
        `{ name: lab, backend: kubeconfig, kubeconfigPath: ${kc} }`,
        `{ name: keys, backend: kubeconfig, kubeconfigPath: ${kc}, exec: { recording: output+input } }`,
        `{ name: norec, backend: kubeconfig, kubeconfigPath: ${kc}, exec: { recording: 'off' } }`,
      ],
    );
    ({ server, base } = await startTestServer(
      testServerConfig(dir, {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
        PERISCOPE_RECORDING_MAX_SESSION_MB: '256',
        PERISCOPE_PUBLIC_URL: ORIGIN,
      }),
    ));
    wsBase = base.replace('http', 'ws');
    cookie = await devLogin(base, 'alice@example.com');
  }, 120_000);

  afterAll(async () => {
    await server.close();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
    await cluster.kubectl(['delete', 'clusterrolebinding', `rec-admin-${suffix}`, '--ignore-not-found']);
  });

  const headers = (): Record<string, string> => ({ cookie, origin: ORIGIN });

  async function openExec(
    clusterName: string,
    body: Record<string, unknown>,
  ): Promise<{ sessionId: string; client: TerminalClient }> {
    const res = await fetch(`${base}/api/clusters/${clusterName}/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers() },
      body: JSON.stringify(body),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${wsBase}${socketPath}`, headers());
    await client.opened;
    return { sessionId, client };
  }

  async function closeRecord(sessionId: string): Promise<Record<string, unknown>> {
    const audit = server.get(AuditStore);
    let body: Record<string, unknown> | undefined;
    await until(
      'the close record',
      () => {
        body = audit.bySession(sessionId).find((e) => e.verb === 'exec_close')?.body;
        return body !== undefined;
      },
      30_000,
    );
    return body ?? {};
  }

  async function recording(sessionId: string): Promise<Buffer> {
    const res = await fetch(`${base}/api/sessions/${sessionId}/recording`, { headers: headers() });
    expect(res.status, res.status === 200 ? '' : await res.clone().text()).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  }

  it('64 MiB of output: the recorded output is byte for byte what the client received (SHA-256)', async () => {
    const line = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-recorded';
    const { sessionId, client } = await openExec('lab', {
      container: 'main',
      tty: false,
      command: ['sh', '-c', `yes ${line} | head -c ${BULK}`],
    });
    const started = Date.now();
    await client.closed;
    const seconds = (Date.now() - started) / 1000;
    const received = client.output();
    expect(received.length).toBe(BULK);
    const close = await closeRecord(sessionId);
    const file = await recording(sessionId);
    expect(close).toMatchObject({ recording_id: sessionId, recording_bytes: file.length });
    expect(close['recording_sha256']).toBe(createHash('sha256').update(file).digest('hex'));
    expect(close['recording_truncated']).toBeUndefined();
    const cast = parseCast(file.toString('utf8'));
    expect(cast.bad).toBe(0);
    const out = Buffer.from(
      cast.events
        .filter((e) => e.code === 'o')
        .map((e) => e.data)
        .join(''),
      'utf8',
    );
    expect(out.length).toBe(received.length);
    expect(createHash('sha256').update(out).digest('hex')).toBe(
      createHash('sha256').update(received).digest('hex'),
    );
    process.stdout.write(
      `[recording] 64 MiB in ${seconds.toFixed(1)} s with recording on; recording ${(file.length / 2 ** 20).toFixed(1)} MiB, ${cast.events.length} events\n`,
    );
  }, 180_000);

  it('output+input (per cluster): echoed lines are recorded redacted, lines typed with echo off are not', async () => {
    const { sessionId, client } = await openExec('keys', { container: 'main' });
    client.control({ type: 'resize', cols: 100, rows: 30 });
    await until('the prompt', () => client.bytes > 0, 30_000);
    client.type('echo visible --password=hunter2\n');
    await client.waitText('the echo', /visible --password=hunter2\r?\n/);
    client.type('stty -echo; read secret; stty echo; echo got-${#secret}\n');
    await new Promise((r) => setTimeout(r, 500));
    client.type('typed-with-echo-off\n');
    await client.waitText('the length', /got-19/);
    client.type('exit\n');
    await client.closed;
    const close = await closeRecord(sessionId);
    expect(close).toMatchObject({ recording_mode: 'output+input' });
    const text = (await recording(sessionId)).toString('utf8');
    expect(text).not.toContain('typed-with-echo-off');
    // (the output has what the terminal printed, the echo included: the input events are redacted)
    const events = parseCast(text).events;
    const inputs = events.filter((e) => e.code === 'i').map((e) => e.data);
    expect(inputs).toContain('echo visible --password=***\r');
    expect(inputs.some((i) => i.includes('hunter2'))).toBe(false);
    expect(events).toContainEqual(
      expect.objectContaining({ code: 'm', data: 'input not recorded (echo off)' }),
    );
    expect(events).toContainEqual(expect.objectContaining({ code: 'r', data: '100x30' }));
  });

  it('recording off (per cluster): no recording, and the API says so', async () => {
    const { sessionId, client } = await openExec('norec', {
      container: 'main',
      tty: false,
      command: ['true'],
    });
    await client.closed;
    const close = await closeRecord(sessionId);
    expect(close['recording_id']).toBeUndefined();
    const res = await fetch(`${base}/api/sessions/${sessionId}/recording`, { headers: headers() });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { message: string }).message).toContain('not recorded');
  });
});
