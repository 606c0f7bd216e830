import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ClusterGateway } from '@periscope/cluster-ops';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { AuditStore } from '../audit/audit-store';
import type { ClusterShellSettings } from '../config/server-config';
import { parseCommands, ShellDriver } from './shell-driver';

function fakeGateway(calls: string[]): ClusterGateway {
  const unused = (): Promise<never> => Promise.reject(new Error('unused'));
  return {
    clusterCa: unused,
    provisionShell: unused,
    openExec: unused,
    listPods: unused,
    readPodFile: () => {
      calls.push('read');
      return Promise.resolve({
        content:
          '{"timestamp":"t","pid":1,"argv":["kubectl","get","ns"],"exit_code":0,"duration_ms":5}\nnot json\n',
        truncated: true,
      });
    },
    teardownShell: () => {
      calls.push('teardown');
      return Promise.reject(new Error('apiserver away'));
    },
    reapShells: () => Promise.resolve([]),
  };
}

const SHELL = { namespace: 'periscope-system', transcriptMaxBytes: 1024 } as ClusterShellSettings;

describe(ShellDriver.name, () => {
  it('reads the command log, tears down, gives the slot back and audits the close with every field', async () => {
    const calls: string[] = [];
    let released = 0;
    const audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'shell-driver-')), 'audit.db'), {
      sink: () => undefined,
    });
    const sid = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
    const d = new ShellDriver(
      {
        sessionId: sid,
        subject: 'alice',
        tier: 'admin',
        cluster: 'lab',
        mode: 'bash',
        release: () => released++,
      },
      fakeGateway(calls),
      SHELL,
      audit,
      pino({ level: 'silent' }),
    );
    await d.finish({ reason: 'idle', exitCode: null, bytesIn: 3, bytesOut: 9, durationMs: 1234 });
    expect(calls).toEqual(['read', 'teardown']); // a failed teardown is left to the reaper
    expect(released).toBe(1);
    const close = audit.bySession(sid).find((e) => e.verb === 'cluster_shell_close');
    expect(close?.body).toEqual({
      cluster: 'lab',
      mode: 'bash',
      tier: 'admin',
      session_id: sid,
      duration_ms: 1234,
      exit_code: null,
      bytes_in: 3,
      bytes_out: 9,
      close_reason: 'idle',
      commands: [{ timestamp: 't', pid: 1, argv: ['kubectl', 'get', 'ns'], exit_code: 0, duration_ms: 5 }],
      commands_skipped: 1,
      commands_truncated: true,
    });
  });

  it('parses audit lines, skipping bad ones', () => {
    expect(
      parseCommands(
        '{"timestamp":"t","pid":2,"argv":["helm","list"],"exit_code":1,"duration_ms":3}\n\n{"nope":1}\n',
      ),
    ).toEqual({
      commands: [{ timestamp: 't', pid: 2, argv: ['helm', 'list'], exit_code: 1, duration_ms: 3 }],
      skipped: 1,
    });
  });
});
