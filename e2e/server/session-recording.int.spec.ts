import 'reflect-metadata';

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { parseCast } from '../../apps/server/src/recording/asciicast';
import { RecordingService } from '../../apps/server/src/recording/recording.service';
import { FileRecordingStore, type RecordingSink } from '../../apps/server/src/recording/recording-store';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { readUntilCut } from '../support/streamed-body';
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

  let bulkSession = '';

  it('64 MiB of output: the recorded output is byte for byte what the client received (SHA-256)', async () => {
    const line = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-recorded';
    const { sessionId, client } = await openExec('lab', {
      container: 'main',
      tty: false,
      command: ['sh', '-c', `yes ${line} | head -c ${BULK}`],
    });
    bulkSession = sessionId;
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

  it('a recording larger than 4 MiB is read once, hashed as it streams: a modified byte cuts the response and is audited', async () => {
    expect(bulkSession).not.toBe('');
    const store = server.get(RecordingService).store;
    expect(store).toBeInstanceOf(FileRecordingStore);
    const file = join((store as FileRecordingStore).dir, `${bulkSession}.cast`);
    // one byte in the middle, same size: only the hash at the end can tell
    const fd = openSync(file, 'r+');
    const pos = 32 * 1024 * 1024;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, pos);
    writeSync(fd, Buffer.from([b[0] === 0x61 ? 0x62 : 0x61]), 0, 1, pos);
    closeSync(fd);
    const res = await fetch(`${base}/api/sessions/${bulkSession}/recording`, { headers: headers() });
    expect(res.status).toBe(200);
    const length = Number(res.headers.get('content-length'));
    expect(res.headers.get('x-periscope-recording-sha256')).toMatch(/^[0-9a-f]{64}$/);
    // the body never completes: the last chunk is held back and the connection cut
    const { bytes: got, cut } = await readUntilCut(res);
    expect(cut, `the transfer ended after ${got} of ${length} bytes without an error`).toBeDefined();
    expect(got).toBeLessThan(length);
    const audit = server.get(AuditStore);
    await until(
      'the integrity failure in the audit',
      () =>
        audit
          .bySession(bulkSession)
          .some(
            (e) =>
              e.verb === 'session_replay' &&
              e.outcome === 'error' &&
              e.body['integrity'] === 'failed' &&
              e.body['streamed'] === true,
          ),
      10_000,
    );
  });

  it('a stalled recording disk with a fast 128 MiB producer: output pauses (≤ 8 MiB held), memory stays bounded, nothing is lost', async () => {
    // Fault injection: the next recording's writes wait until released (a disk that stalls).
    const store = server.get(RecordingService).store;
    const create = store.create.bind(store);
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let writesWaiting = 0;
    store.create = async (id: string): Promise<RecordingSink> => {
      const sink = await create(id);
      return {
        write: async (chunk) => {
          writesWaiting++;
          await gate;
          await sink.write(chunk);
        },
        close: () => sink.close(),
      };
    };
    const SIZE = 128 * 1024 * 1024;
    const line = 'stalled-disk-0123456789abcdefghijklmnopqrstuvwxyz';
    let opened: Awaited<ReturnType<typeof openExec>>;
    try {
      opened = await openExec('lab', {
        container: 'main',
        tty: false,
        command: ['sh', '-c', `yes ${line} | head -c ${SIZE}`],
      });
    } finally {
      store.create = create;
    }
    const { sessionId, client } = opened;
    // The client reads as fast as it can and keeps only a hash (its own memory stays flat).
    const hash = createHash('sha256');
    client.ws.on('message', (d: Buffer, binary: boolean) => {
      if (!binary) return;
      hash.update(d);
      client.chunks.length = 0;
    });
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    try {
      await until('the first write to wait on the stalled disk', () => writesWaiting > 0, 30_000);
      // Stalled: the output stops once the recording holds its 8 MiB, instead of piling up.
      let last = -1;
      await until(
        'the output to stop while the disk is stalled',
        async () => {
          const now = client.bytes;
          const still = now === last;
          last = now;
          await new Promise((r) => setTimeout(r, 1000));
          return still && client.bytes === now;
        },
        60_000,
      );
      const stalledAt = client.bytes;
      await new Promise((r) => setTimeout(r, 2000));
      expect(client.bytes, 'bytes relayed while the disk stayed stalled').toBe(stalledAt);
      // 8 MiB held by the recording, plus what the session, the socket and the apiserver
      // connection buffer ahead of it (a few MiB): far from the 128 MiB produced.
      expect(stalledAt).toBeLessThan(24 * 1024 * 1024);
      const growth = (peak - rss0) / 2 ** 20;
      process.stdout.write(
        `[recording] stalled disk: ${(stalledAt / 2 ** 20).toFixed(1)} MiB relayed then paused; RSS growth ${growth.toFixed(1)} MiB; ${writesWaiting} write(s) waiting\n`,
      );
      expect(growth, 'RSS growth of the server (and this test) while stalled').toBeLessThan(64);
      expect(writesWaiting, 'one write at a time goes to the disk').toBe(1);
    } finally {
      clearInterval(sampler);
      release();
    }
    await client.closed;
    const close = await closeRecord(sessionId);
    // Everything the exec wrote reached the client and the recording, also after the long pause
    // (the local node used to cut the tail of an output its reader took more than 2 s to drain).
    expect(client.bytes).toBe(close['bytes_out']);
    expect(client.bytes).toBe(SIZE);
    expect(close['recording_truncated']).toBeUndefined();
    const file = await recording(sessionId);
    expect(close['recording_sha256']).toBe(createHash('sha256').update(file).digest('hex'));
    const out = createHash('sha256');
    for (const e of parseCast(file.toString('utf8')).events) if (e.code === 'o') out.update(e.data, 'utf8');
    expect(out.digest('hex'), 'the recorded output is what the client received').toBe(hash.digest('hex'));
  }, 240_000);

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
