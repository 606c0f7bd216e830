import { createHash, randomUUID } from 'node:crypto';

import * as k8s from '@kubernetes/client-node';
import { DirectGateway } from '@periscope/cluster-ops';
import { CHANNEL, RESET_CODE, type StreamExit } from '@periscope/protocol';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { serveExecStream } from '../../apps/agent/src/exec/tunnel-exec';
import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { TestClusterClient } from '../k8s/cluster';
import { log, startHarness, type Harness } from './tunnel-fixture';
import { startExecPod } from '../support/test-server';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `tx-${Date.now().toString(36)}`;

describe('exec through the agent tunnel into a real pod', () => {
  let h: Harness;
  let link: AgentLink;

  beforeAll(async () => {
    await startExecPod(cluster, ns, [], { pod: 'target', image: 'debian:bookworm-slim' });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig);
    h = await startHarness();
    const gateway = new DirectGateway(kc, { preferClusterInfo: false });
    await h.agent('edge-1', { onOpen: (stream, open) => void serveExecStream(gateway, stream, open, log) });
    link = await until('tunnel', () => {
      const l = h.server.link('edge-1');
      return l?.mux.attached ? l : undefined;
    });
  });

  afterAll(async () => {
    await h.stop();
  });

  function run(
    command: string[],
    opts: {
      tty?: boolean;
      cols?: number;
      rows?: number;
      rid?: string;
      impersonate?: { user: string; groups: string[]; extra?: Record<string, string[]> };
    } = {},
  ) {
    const out = {
      stdout: Buffer.alloc(0),
      stderr: '',
      exit: undefined as StreamExit | undefined,
      closed: undefined as string | undefined,
      chunks: [] as Buffer[],
    };
    const stream = link.mux.open(
      {
        sessionId: randomUUID(),
        ...(opts.rid !== undefined ? { rid: opts.rid } : {}),
        namespace: ns,
        pod: 'target',
        container: 'main',
        command,
        tty: opts.tty ?? false,
        stdin: true,
        ...(opts.cols !== undefined ? { cols: opts.cols, rows: opts.rows } : {}),
        ...(opts.impersonate ? { impersonate: opts.impersonate } : {}),
      },
      {
        onData: (ch, b) => {
          if (ch === CHANNEL.stderr) out.stderr += Buffer.from(b).toString();
          else out.chunks.push(Buffer.from(b));
          stream.consumed(ch, b.length);
        },
        onExit: (e) => {
          out.exit = e;
        },
        onClose: (code, reason) => {
          if (code !== RESET_CODE.closedByPeer) out.closed = reason;
        },
      },
    );
    const text = (): string => Buffer.concat(out.chunks).toString();
    return { stream, out, text };
  }

  it('passes stdin to the command, half-closes it, and returns output and exit 0', async () => {
    const r = run(['cat']);
    r.stream.write(CHANNEL.stdin, Buffer.from('through the tunnel\n'));
    r.stream.end(CHANNEL.stdin);
    const exit = await until('exit', () => r.out.exit);
    expect(r.text()).toBe('through the tunnel\n');
    expect(exit).toEqual({ exitCode: 0, status: 'Success' });
  });

  it('reports a non-zero exit code', async () => {
    const r = run(['sh', '-c', 'echo bad >&2; exit 3']);
    const exit = await until('exit', () => r.out.exit);
    expect(exit.exitCode).toBe(3);
    expect(r.out.stderr).toBe('bad\n');
  });

  it('reports 137 for a command killed by SIGKILL and 1 for a failing one', async () => {
    const killed = run(['sh', '-c', 'kill -9 $$']);
    expect((await until('exit', () => killed.out.exit)).exitCode).toBe(137);
    const failed = run(['false']);
    expect((await until('exit', () => failed.out.exit)).exitCode).toBe(1);
  });

  it('gives a TTY its initial size and follows a resize', async () => {
    const r = run(['sh', '-c', 'stty size; read x; stty size'], { tty: true, cols: 100, rows: 30 });
    await until('first size', () => r.text().includes('30 100'));
    r.stream.resize(120, 40);
    await new Promise((res) => setTimeout(res, 300));
    r.stream.write(CHANNEL.stdin, Buffer.from('\n'));
    await until('exit', () => r.out.exit);
    expect(r.text()).toContain('40 120');
  });

  it('streams 64 MiB of output with a matching checksum', async () => {
    const r = run(['sh', '-c', 'head -c 67108864 /dev/urandom | tee /tmp/blob; sha256sum /tmp/blob >&2']);
    await until('exit', () => r.out.exit, 60_000);
    const data = Buffer.concat(r.out.chunks);
    expect(data.length).toBe(64 * 1024 * 1024);
    expect(r.out.stderr.split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('execs as the impersonated identity and puts the request id in the apiserver audit log', async () => {
    const session = randomUUID();
    const rid = randomUUID();
    const r = run(['id', '-u'], {
      rid,
      impersonate: {
        user: 'carol@example.com',
        groups: ['system:masters'],
        extra: { 'audit.periscope.io/session-id': [session] },
      },
    });
    await until('exit', () => r.out.exit);
    await cluster.waitFor('the exec audit event', () =>
      Promise.resolve(
        cluster
          .auditEvents()
          .some(
            (e) =>
              e.objectRef?.subresource === 'exec' &&
              e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === session,
          ),
      ),
    );
    const event = cluster
      .auditEvents()
      .find(
        (e) =>
          e.objectRef?.subresource === 'exec' &&
          e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === session,
      )!;
    expect(event.impersonatedUser?.username).toBe('carol@example.com');
    expect(event.auditID).toBe(rid); // the stream's request id is the apiserver's Audit-ID
  });

  it('refuses an exec the impersonated identity may not do, with the apiserver reason', async () => {
    const r = run(['true'], { impersonate: { user: 'mallory@example.com', groups: ['nobody'] } });
    const reason = await until('reset', () => r.out.closed);
    expect(reason).toMatch(/403/);
    expect(reason).toMatch(/forbidden/i);
  });
});
