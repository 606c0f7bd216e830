import 'reflect-metadata';

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { ShellAdmission } from '../../apps/server/src/cluster-shell/shell-admission.service';
import { createServerApp } from '../../apps/server/src/server-app';
import { until } from '../support/wait';
import { SHELL_NS, startShellCluster } from './shell-cluster';
import { devLogin } from '../support/dev-login';
import { testServerConfig } from '../support/test-server';

/** The cluster-shell socket end to end, as the browser will use it (without the browser). */
describe('cluster shell over the WebSocket endpoint', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let server: NestExpressApplication;
  let base: string;
  let cookie: string;

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir);
    const dir = mkdtempSync(join(tmpdir(), 'periscope-shell-socket-'));
    const kubeconfig = join(dir, 'provisioner.kubeconfig');
    writeFileSync(kubeconfig, env.provisionerKc.exportConfig());
    writeFileSync(
      join(dir, 'auth.yaml'),
      'authorization:\n  mode: tier\n  groupTiers: { admins: admin }\ndev:\n  users:\n    - { subject: alice@example.com, groups: [admins] }\n',
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      `clusters:\n  - { name: lab, backend: kubeconfig, kubeconfigPath: ${kubeconfig} }\n`,
    );
    server = await createServerApp(
      testServerConfig(dir, {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
        PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
        PERISCOPE_PUBLIC_URL: 'http://localhost:8080',
      }),
    );
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    cookie = await devLogin(base, 'alice@example.com');
  });

  afterAll(async () => {
    await server.close();
    await env.stop();
  });

  function refusal(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base.replace('http', 'ws')}${path}`, { headers });
      ws.on('open', () => {
        ws.close();
        reject(new Error('upgrade was accepted'));
      });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      ws.on('error', () => undefined);
    });
  }

  it('refuses cross-site origins and unauthenticated upgrades with the documented JSON', async () => {
    const evil = await refusal('/api/clusters/lab/shell', { origin: 'https://evil.example', cookie });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body)).toMatchObject({ error: 'E_FORBIDDEN' });
    const origin = 'http://localhost:8080';
    const noOrigin = await refusal('/api/clusters/lab/shell', { cookie });
    expect(noOrigin.status).toBe(403);
    expect(JSON.parse(noOrigin.body)).toMatchObject({ error: 'E_FORBIDDEN' });
    const anon = await refusal('/api/clusters/lab/shell', { origin });
    expect(anon.status).toBe(401);
    expect(JSON.parse(anon.body)).toMatchObject({ error: 'E_AUTH' });
    // before sign-in an unknown cluster answers the same 401 (no probing for names)
    expect((await refusal('/api/clusters/nope/shell', { origin })).status).toBe(401);
    const unknown = await refusal('/api/clusters/nope/shell', { cookie, origin });
    expect(unknown.status).toBe(404);
  });

  it('runs a session: hello, provisioning status, bash as the operator, exit code, audit open and close, nothing left', async () => {
    const res = await fetch(`${base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    expect(res.status).toBe(201);
    const { ticket, sessionId } = (await res.json()) as { ticket: string; sessionId: string };
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/clusters/lab/shell?ticket=${ticket}`, {
      headers: { cookie, origin: 'http://localhost:8080' },
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
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ type: 'resize', cols: 100, rows: 30 }));
    await until(
      'the prompt',
      () => frames.some((f) => f['type'] === 'status' && f['phase'] === 'attaching') && output.length > 0,
      60_000,
    );
    ws.send(Buffer.from('stty size; kubectl auth whoami -o jsonpath="{.status.userInfo.username}"; echo\n'));
    await until('whoami', () => output.includes('alice@example.com'), 30_000);
    ws.send(Buffer.from('exit 3\n'));
    await closed;

    expect(frames[0]).toMatchObject({
      type: 'hello',
      sessionId,
      kind: 'cluster_shell',
      cluster: 'lab',
      mode: 'bash',
    });
    expect(frames.filter((f) => f['type'] === 'status').map((f) => f['phase'])).toEqual(
      expect.arrayContaining(['secret', 'token', 'pod', 'ready']),
    );
    expect(frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 3 });
    expect(output).toContain('30 100');

    const audit = server.get(AuditStore).bySession(sessionId);
    expect(audit.map((e) => e.verb)).toEqual(['cluster_shell_open', 'cluster_shell_close']);
    expect(audit[0]!.body).toMatchObject({
      cluster: 'lab',
      mode: 'bash',
      tier: 'admin',
      session_id: sessionId,
    });
    const close = audit[1]!.body as {
      exit_code: number;
      close_reason: string;
      bytes_in: number;
      bytes_out: number;
      commands: { argv: string[]; exit_code: number }[];
    };
    expect(close).toMatchObject({ exit_code: 3, close_reason: 'exit' });
    expect(close.bytes_in).toBeGreaterThan(0);
    expect(close.bytes_out).toBeGreaterThan(0);
    expect(close.commands.map((c) => [c.argv.slice(1, 3).join(' '), c.exit_code])).toEqual([
      ['auth whoami', 0],
    ]);

    expect(server.get(ShellAdmission).caps.size).toBe(0);
    await env.cluster.waitFor(
      'the session objects to be gone',
      async () =>
        (
          await env.cluster.kubectlOk([
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

  it('stores the in-pod command log as operator-supplied: redacted, forged lines skipped, 1 MiB of padding cut to the cap', async () => {
    const res = await fetch(`${base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    expect(res.status).toBe(201);
    const { ticket, sessionId } = (await res.json()) as { ticket: string; sessionId: string };
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/clusters/lab/shell?ticket=${ticket}`, {
      headers: { cookie, origin: 'http://localhost:8080' },
    });
    let output = '';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) output += data.toString();
    });
    const closed = new Promise<void>((resolve) =>
      ws.once('close', () => {
        resolve();
      }),
    );
    await new Promise((r) => ws.once('open', r));
    await until('the prompt', () => output.length > 0, 60_000);
    // Real calls through the shell's kubectl and helm wrappers, with secrets on the command line.
    ws.send(
      Buffer.from(
        'kubectl --token=tok-abc123 version --client >/dev/null 2>&1; ' +
          'kubectl create secret generic db --from-literal=password=hunter2 --dry-run=client -o name >/dev/null 2>&1; ' +
          'helm template x /nonexistent --set db.password=hunter2 >/dev/null 2>&1; echo calls-$((1 + 1))-done\n',
      ),
    );
    await until('the calls', () => output.includes('calls-2-done'), 60_000); // not the echoed input
    // Then the operator edits the log: a forged line from long ago, and 1 MiB of padding.
    ws.send(
      Buffer.from(
        'f="$PERISCOPE_SHELL_AUDIT_FILE"; ' +
          `echo '{"timestamp":"1999-01-01T00:00:00.000Z","pid":1,"argv":["kubectl","delete","ns","prod"],"exit_code":0,"duration_ms":1}' >> "$f"; ` +
          'TZ=UTC printf -v now "%(%Y-%m-%dT%H:%M:%S)T.000Z" -1; ' +
          `line="{\\"timestamp\\":\\"$now\\",\\"pid\\":7,\\"argv\\":[\\"kubectl\\",\\"get\\",\\"pods\\",\\"${'x'.repeat(180)}\\"],\\"exit_code\\":0,\\"duration_ms\\":1}"; ` +
          'for ((i = 0; i < 5000; i++)); do printf "%s\\n" "$line"; done >> "$f"; ' +
          'echo "padded $(( $(wc -c < "$f") / 1024 )) KiB"\n',
      ),
    );
    await until('the padding', () => /padded \d+ KiB/.test(output), 60_000);
    expect(Number(/padded (\d+) KiB/.exec(output)?.[1])).toBeGreaterThan(1024);
    ws.send(Buffer.from('exit\n'));
    await closed;

    const close = server
      .get(AuditStore)
      .bySession(sessionId)
      .find((e) => e.verb === 'cluster_shell_close')?.body as {
      commands: { argv: string[]; argv_redacted?: boolean }[];
      commands_source: string;
      commands_skipped: number;
      commands_dropped: number;
      commands_redacted: number;
      commands_truncated: boolean;
    };
    expect(close.commands_source).toBe('operator');
    expect(close.commands.slice(0, 3).map((c) => c.argv)).toEqual([
      ['kubectl', '--token=***', 'version', '--client'],
      [
        'kubectl',
        'create',
        'secret',
        'generic',
        'db',
        '--from-literal=password=***',
        '--dry-run=client',
        '-o',
        'name',
      ],
      ['helm', 'template', 'x', '/nonexistent', '--set', 'db.password=***'],
    ]);
    expect(close.commands_redacted).toBe(3);
    expect(close.commands_skipped).toBe(1); // the forged line from 1999
    expect(close.commands.some((c) => c.argv.includes('prod'))).toBe(false);
    expect(close.commands_truncated).toBe(true);
    expect(close.commands_dropped).toBeGreaterThan(3000);
    expect(close.commands.length).toBeLessThanOrEqual(500);
    const stored = JSON.stringify(close);
    expect(Buffer.byteLength(JSON.stringify(close.commands))).toBeLessThanOrEqual(64 * 1024);
    expect(stored).not.toContain('hunter2');
    expect(stored).not.toContain('tok-abc123');
  });
});
