import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ClusterGateway, ExecChannel } from '@periscope/cluster-ops';
import { isRequestId } from '@periscope/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { SqliteAuditLog } from '../audit/audit-log';
import { AuditStore } from '../audit/audit-store';
import type { ClusterShellSettings } from '../config/server-config';
import { ShellDriver } from './shell-driver';

const EXEC: ExecChannel = {
  protocol: 'test',
  write: () => true,
  end: () => undefined,
  resize: () => undefined,
  resume: () => undefined,
  close: () => undefined,
};

const IO = {
  status: () => undefined,
  size: () => ({ cols: 80, rows: 24 }),
  handlers: { onOutput: () => true, onExit: () => undefined, onError: () => undefined },
};

const NOW = new Date().toISOString();

/** `rids` gets the request id each operation was given. */
function fakeGateway(calls: string[], rids: Record<string, string | undefined> = {}): ClusterGateway {
  const unused = (): Promise<never> => Promise.reject(new Error('unused'));
  return {
    clusterCa: unused,
    provisionShell: (_req, _onPhase, opts) => {
      calls.push('provision');
      rids['provision'] = opts?.requestId;
      return Promise.resolve();
    },
    openExec: (target) => {
      rids['attach'] = target.auditId;
      return Promise.resolve(EXEC);
    },
    listPods: unused,
    readPodFile: (_req, opts) => {
      calls.push('read');
      rids['read_log'] = opts?.requestId;
      return Promise.resolve({
        content: `{"timestamp":"${NOW}","pid":1,"argv":["kubectl","get","ns","--token=abc"],"exit_code":0,"duration_ms":5}\nnot json\n`,
        truncated: true,
      });
    },
    teardownShell: (_req, opts) => {
      calls.push('teardown');
      rids['teardown'] = opts?.requestId;
      return Promise.reject(new Error('apiserver away'));
    },
    reapShells: () => Promise.resolve([]),
  };
}

const SHELL = {
  namespace: 'periscope-system',
  transcriptMaxBytes: 1024,
  podStartTimeoutSeconds: 1,
  maxSessionSeconds: 60,
  pod: {},
} as ClusterShellSettings;

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000002';

/** A driver over `gateway` with short deadlines; answers it, the store and the release count. */
function driver(gateway: ClusterGateway): { d: ShellDriver; audit: AuditStore; released: () => number } {
  let released = 0;
  const audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'shell-driver-')), 'audit.db'), {
    sink: () => undefined,
  });
  const d = new ShellDriver(
    {
      sessionId: SID,
      subject: 'alice',
      tier: 'admin',
      cluster: 'lab',
      mode: 'bash',
      release: () => released++,
    },
    gateway,
    SHELL,
    new SqliteAuditLog(audit),
    pino({ level: 'silent' }),
    { readLogMs: 100, readLogSlackMs: 50, deleteMs: 150, provisionSlackMs: 200 },
  );
  return { d, audit, released: () => released };
}

const END = { reason: 'exit', exitCode: 0, bytesIn: 1, bytesOut: 2, durationMs: 3 };
const never = (): Promise<never> => new Promise(() => undefined);

describe(ShellDriver.name, () => {
  it('reads the command log, tears down, gives the slot back and audits the close with every field', async () => {
    const calls: string[] = [];
    let released = 0;
    const audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'shell-driver-')), 'audit.db'), {
      sink: () => undefined,
    });
    const sid = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
    const rids: Record<string, string | undefined> = {};
    const d = new ShellDriver(
      {
        sessionId: sid,
        subject: 'alice',
        tier: 'admin',
        cluster: 'lab',
        mode: 'bash',
        release: () => released++,
      },
      fakeGateway(calls, rids),
      SHELL,
      new SqliteAuditLog(audit),
      pino({ level: 'silent' }),
    );
    await d.start(IO);
    await d.finish({ reason: 'idle', exitCode: null, bytesIn: 3, bytesOut: 9, durationMs: 1234 });
    expect(calls).toEqual(['provision', 'read', 'teardown']); // a failed teardown is left to the reaper
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
      commands: [
        {
          timestamp: NOW,
          pid: 1,
          argv: ['kubectl', 'get', 'ns', '--token=***'],
          argv_redacted: true,
          exit_code: 0,
          duration_ms: 5,
        },
      ],
      commands_source: 'operator',
      commands_skipped: 1,
      commands_dropped: 0,
      commands_redacted: 1,
      commands_truncated: true,
      // each operation's own request id (the Audit-ID of its apiserver calls)
      request_ids: rids,
    });
    expect(Object.keys(rids).sort()).toEqual(['attach', 'provision', 'read_log', 'teardown']);
    for (const rid of Object.values(rids)) expect(isRequestId(rid)).toBe(true);
    expect(new Set(Object.values(rids)).size).toBe(4);
  });

  it('a failed start names the request id of the failed operation (the apiserver audit event has it)', async () => {
    const rids: Record<string, string | undefined> = {};
    const gw = fakeGateway([], rids);
    const provisionShell = gw.provisionShell.bind(gw);
    gw.provisionShell = async (req, onPhase, opts) => {
      await provisionShell(req, onPhase, opts);
      throw new Error('pod failed (HTTP 403): exceeded quota');
    };
    const { d } = driver(gw);
    const err = await d.start(IO).catch((e: unknown) => e);
    expect(d.classifyStartError(err).error.message).toBe(
      `pod failed (HTTP 403): exceeded quota (request id ${rids['provision'] ?? 'none'})`,
    );
    // failing to attach names the attach's id instead
    const gw2 = fakeGateway([], rids);
    gw2.openExec = (target) => {
      rids['attach'] = target.auditId;
      return Promise.reject(new Error('exec refused (HTTP 404)'));
    };
    const { d: d2 } = driver(gw2);
    const err2 = await d2.start(IO).catch((e: unknown) => e);
    expect(d2.classifyStartError(err2).error.message).toBe(
      `exec refused (HTTP 404) (request id ${rids['attach'] ?? 'none'})`,
    );
  });

  it('ends when the command log read never answers: objects deleted, slot freed, one close saying why', async () => {
    const calls: string[] = [];
    const gw = fakeGateway(calls);
    gw.readPodFile = () => {
      calls.push('read');
      return never();
    };
    gw.teardownShell = () => {
      calls.push('teardown');
      return Promise.resolve();
    };
    const { d, audit, released } = driver(gw);
    await d.start(IO);
    const started = Date.now();
    await d.finish(END);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(calls).toEqual(['provision', 'read', 'teardown']);
    expect(released()).toBe(1);
    const closes = audit.bySession(SID).filter((e) => e.verb === 'cluster_shell_close');
    expect(closes).toHaveLength(1);
    expect(closes[0]?.body).toMatchObject({
      commands: [],
      commands_unavailable: 'reading the command log did not finish within 150 ms',
    });
  });

  it('ends when deleting the objects never answers', async () => {
    const calls: string[] = [];
    const gw = fakeGateway(calls);
    gw.teardownShell = () => {
      calls.push('teardown');
      return never();
    };
    const { d, audit, released } = driver(gw);
    await d.start(IO);
    await d.finish(END);
    expect(calls).toEqual(['provision', 'read', 'teardown']);
    expect(released()).toBe(1);
    expect(audit.bySession(SID).filter((e) => e.verb === 'cluster_shell_close')).toHaveLength(1);
  });

  it('a close during provisioning waits for it, does not attach, then tears down what it made', async () => {
    const calls: string[] = [];
    const gw = fakeGateway(calls);
    let provisioned: () => void = () => undefined;
    gw.provisionShell = () => {
      calls.push('provision');
      return new Promise<void>((r) => {
        provisioned = r;
      });
    };
    gw.openExec = () => {
      calls.push('attach');
      return Promise.resolve(EXEC);
    };
    const { d, audit, released } = driver(gw);
    const starting = d.start(IO);
    const finishing = d.finish(END);
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toEqual(['provision']); // nothing is deleted while the provision still runs
    provisioned();
    await expect(starting).rejects.toThrow(/ended while its pod was being provisioned/);
    await finishing;
    expect(calls).toEqual(['provision', 'read', 'teardown']);
    expect(released()).toBe(1);
    expect(audit.bySession(SID).filter((e) => e.verb === 'cluster_shell_close')).toHaveLength(1);
  });

  it('a provision that outlasts the wait is torn down again once it is done', async () => {
    const calls: string[] = [];
    const gw = fakeGateway(calls);
    let provisioned: () => void = () => undefined;
    gw.provisionShell = () => {
      calls.push('provision');
      return new Promise<void>((r) => {
        provisioned = r;
      });
    };
    gw.teardownShell = () => {
      calls.push('teardown');
      return Promise.resolve();
    };
    const { d, audit } = driver(gw);
    void d.start(IO).catch(() => undefined);
    await d.finish(END); // waits 1 s (pod start timeout) + 200 ms, then goes on
    expect(calls).toEqual(['provision', 'teardown']); // not provisioned: no read
    expect(audit.bySession(SID).filter((e) => e.verb === 'cluster_shell_close')).toHaveLength(1);
    provisioned();
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toEqual(['provision', 'teardown', 'teardown']);
  });

  it('a session that never started reads nothing and still closes', async () => {
    const calls: string[] = [];
    const gw = fakeGateway(calls);
    gw.teardownShell = () => {
      calls.push('teardown');
      return Promise.resolve();
    };
    const { d, audit, released } = driver(gw);
    await d.finish({ ...END, reason: 'client_disconnect' });
    expect(calls).toEqual(['teardown']);
    expect(released()).toBe(1);
    expect(audit.bySession(SID).filter((e) => e.verb === 'cluster_shell_close')).toHaveLength(1);
  });
});
