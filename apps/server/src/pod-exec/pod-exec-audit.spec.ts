import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ClusterGateway } from '@periscope/cluster-ops';
import { afterEach, describe, expect, it } from 'vitest';

import { SqliteAuditLog } from '../audit/audit-log';
import { AuditStore } from '../audit/audit-store';
import type { ExecAdmitted } from './pod-exec-admission.service';
import { PodExecDriver, execAuditFields } from './pod-exec-driver';

const admitted = (command: string[]): ExecAdmitted => ({
  sessionId: '0b7a4c1e-3f55-4a8e-9a51-6c2f0d7e9b10',
  principal: { subject: 'alice', email: 'alice@example.com', groups: [], tier: 'maintain' },
  subject: 'alice',
  cluster: 'lab',
  namespace: 'apps',
  pod: 'web',
  container: 'main',
  command,
  tty: false,
  settings: {
    idleSeconds: 600,
    idleWarnSeconds: 60,
    heartbeatSeconds: 30,
    maxSessionsPerUser: 5,
    maxSessionsTotal: 50,
  },
  release: () => undefined,
});

/** Commands a person may run in a pod, with the secrets in them that must not reach the audit store. */
const CASES: { command: string[]; secrets: string[]; kept: string[] }[] = [
  {
    command: ['./migrate', '--token=abc123', '--db', 'main'],
    secrets: ['abc123'],
    kept: ['./migrate', 'main'],
  },
  { command: ['app', '--password', 'hunter2'], secrets: ['hunter2'], kept: ['app', '--password'] },
  { command: ['sh', '-c', 'DB_PASSWORD=s3cr3t ./run'], secrets: ['s3cr3t'], kept: ['sh', '-c'] },
  { command: ['env', 'API_KEY=k-999', 'worker'], secrets: ['k-999'], kept: ['worker'] },
  {
    command: ['curl', '-H', 'Authorization: Bearer eyJtoken', 'https://bob:pw1@api.example.com/'],
    secrets: ['eyJtoken', 'pw1'],
    kept: ['curl'],
  },
];

const stores: AuditStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

describe('pod exec audit records', () => {
  it.each(CASES)(
    'hides the secret values of $command (flags and keys stay)',
    ({ command, secrets, kept }) => {
      const fields = execAuditFields(admitted(command), 'main');
      const stored = JSON.stringify(fields);
      for (const s of secrets) expect(stored).not.toContain(s);
      expect(fields['command']).toEqual(expect.arrayContaining(kept));
      expect(fields['command']).toHaveLength(command.length);
      expect(fields['command_redacted']).toBe(true);
    },
  );

  it('keeps a command without secrets exactly as given, unmarked', () => {
    const fields = execAuditFields(admitted(['sh', '-c', 'ls -la /tmp']), 'main');
    expect(fields['command']).toEqual(['sh', '-c', 'ls -la /tmp']);
    expect(fields).not.toHaveProperty('command_redacted');
  });

  it('never writes the secret to the audit store or its sink (exec_close of a real driver)', async () => {
    const lines: string[] = [];
    const audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'pod-exec-audit-')), 'audit.db'), {
      sink: (l) => lines.push(l),
    });
    stores.push(audit);
    const a = admitted(['psql', 'postgres://app:pa55word@db:5432/app', '--password=pa55word']);
    const driver = new PodExecDriver(
      a,
      {} as ClusterGateway,
      { mode: 'tier' } as never,
      new SqliteAuditLog(audit),
    );
    await driver.finish({ reason: 'exit', exitCode: 0, bytesIn: 1, bytesOut: 2, durationMs: 3 });
    const [close] = audit.bySession(a.sessionId);
    expect(close?.verb).toBe('exec_close');
    expect(close?.body['command']).toEqual(['psql', 'postgres://app:***@db:5432/app', '--password=***']);
    expect(JSON.stringify(close)).not.toContain('pa55word');
    expect(lines.join('\n')).not.toContain('pa55word');
  });
});
