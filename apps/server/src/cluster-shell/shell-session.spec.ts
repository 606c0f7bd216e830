import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ClusterGateway, ExecChannelHandlers } from '@periscope/cluster-ops';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type WebSocket from 'ws';

import { AuditStore } from '../audit/audit-store';
import type { ClusterShellSettings, ExecSettings } from '../config/server-config';
import { parseCommands, ShellSession } from './shell-session';

/** A socket stand-in that records frames; enough for the session's lifecycle logic. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  frames: Record<string, unknown>[] = [];
  pings = 0;
  closedWith: string | undefined;
  send(data: string | Uint8Array): void {
    if (typeof data === 'string') this.frames.push(JSON.parse(data) as Record<string, unknown>);
  }
  ping(): void {
    this.pings++;
  }
  close(_code: number, reason: string): void {
    this.closedWith = reason;
    this.readyState = 3;
  }
}

function fakeGateway(calls: string[]): ClusterGateway {
  return {
    clusterCa: () => Promise.reject(new Error('unused')),
    provisionShell: (_r, onPhase) => {
      calls.push('provision');
      onPhase?.('ready', 'session pod is ready');
      return Promise.resolve();
    },
    openExec: (_t, _h: ExecChannelHandlers) => {
      calls.push('exec');
      return Promise.resolve({
        protocol: 'v5',
        write: () => undefined,
        end: () => undefined,
        resize: () => undefined,
        resume: () => undefined,
        close: () => calls.push('exec.close'),
      });
    },
    readPodFile: () => {
      calls.push('read');
      return Promise.resolve({
        content:
          '{"timestamp":"t","pid":1,"argv":["kubectl","get","ns"],"exit_code":0,"duration_ms":5}\nnot json\n',
        truncated: false,
      });
    },
    teardownShell: () => {
      calls.push('teardown');
      return Promise.resolve();
    },
    reapShells: () => Promise.resolve([]),
  };
}

const SHELL: ClusterShellSettings = {
  enabled: true,
  mode: 'bash',
  tiers: ['admin'],
  namespace: 'periscope-system',
  idleSeconds: 2,
  podStartTimeoutSeconds: 30,
  transcriptMaxBytes: 1024,
  maxSessionsPerUser: 2,
  maxSessionsTotal: 10,
  image: 'img',
  imagePullPolicy: 'IfNotPresent',
  maxSessionSeconds: 600,
};
const EXEC: ExecSettings = {
  idleSeconds: 600,
  idleWarnSeconds: 1,
  heartbeatSeconds: 1,
  maxSessionsPerUser: 5,
  maxSessionsTotal: 50,
};

function session(shell: ClusterShellSettings = SHELL) {
  const ws = new FakeSocket();
  const calls: string[] = [];
  let released = 0;
  const audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'shell-session-')), 'audit.db'));
  const s = new ShellSession(
    ws as unknown as WebSocket,
    {
      sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000001',
      subject: 'alice',
      tier: 'admin',
      cluster: 'lab',
      mode: 'bash',
      release: () => released++,
    },
    fakeGateway(calls),
    shell,
    EXEC,
    audit,
    pino({ level: 'silent' }),
  );
  return { ws, calls, audit, s, released: () => released };
}

describe(ShellSession.name, () => {
  it('warns before the idle cut, cuts, and tears down once with the audit close', async () => {
    const { ws, calls, audit, s, released } = session();
    await s.run();
    const pong = setInterval(() => ws.emit('pong'), 300); // a live client that does not type
    await new Promise((r) => setTimeout(r, 3300));
    clearInterval(pong);
    expect(ws.frames.map((f) => f['type'])).toEqual(
      expect.arrayContaining(['hello', 'status', 'idle_warn', 'closed']),
    );
    expect(ws.frames).toContainEqual({ type: 'closed', reason: 'idle' });
    expect(calls).toEqual(['provision', 'exec', 'exec.close', 'read', 'teardown']);
    expect(released()).toBe(1);
    expect(ws.closedWith).toBe('idle');
    const close = audit
      .bySession('0190f0f0-aaaa-7bbb-8ccc-000000000001')
      .find((e) => e.verb === 'cluster_shell_close');
    expect(close?.body).toMatchObject({
      close_reason: 'idle',
      commands_skipped: 1,
      commands: [{ argv: ['kubectl', 'get', 'ns'], exit_code: 0 }],
    });
    await s.end('again', null); // a second end is a no-op
    expect(released()).toBe(1);
  }, 10_000);

  it('ends a session whose client stops answering heartbeats', async () => {
    const { ws, s } = session({ ...SHELL, idleSeconds: 600 });
    await s.run();
    await new Promise((r) => setTimeout(r, 2500)); // pings at 1 s and 2 s go unanswered
    expect(ws.pings).toBeGreaterThanOrEqual(1);
    expect(ws.closedWith).toBe('heartbeat_timeout');
    expect(ws.frames).toContainEqual({ type: 'closed', reason: 'heartbeat_timeout' });
  }, 10_000);

  it('keeps a session alive while the client answers heartbeats and types', async () => {
    const { ws, s } = session({ ...SHELL, idleSeconds: 600 });
    await s.run();
    const pong = setInterval(() => ws.emit('pong'), 300);
    await new Promise((r) => setTimeout(r, 2500));
    clearInterval(pong);
    expect(ws.closedWith).toBeUndefined();
    await s.end('test_done', null);
  }, 10_000);

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
