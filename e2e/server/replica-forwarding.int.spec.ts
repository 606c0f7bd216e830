import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { ReplicaRouter } from '../../apps/server/src/replicas/replica-router.service';
import { REPLICA_HEADER, signForward } from '../../apps/server/src/replicas/replica-signature';
import { TerminalSessions } from '../../apps/server/src/terminal/terminal-sessions.service';
import {
  startReplicaTrio,
  TRIO_PREFIX as PREFIX,
  TRIO_SECRET as SECRET,
  type ReplicaTrio,
  type TrioReplica,
} from '../support/replica-trio';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

/*
 * Replica-to-replica forwarding (issue 18, routing): three real server instances share one real
 * redis-server; a real agent holds the tunnel of cluster `edge` on replica B (e2e/support/replica-trio.ts).
 * Through replica A, a pod exec and a cluster shell on `edge` (real pods on a local control plane)
 * echo keystrokes and deliver 8 MiB of output whole; after A's side of the browser socket is cut,
 * the browser resumes through replica C with no byte lost or duplicated. Forged and stale
 * signatures are refused (403), a verified request is never forwarded again (503 replica_loop), an
 * owner that cannot be reached answers 503 replica_unreachable. What the extra hop costs (keystroke
 * RTT, throughput) is measured by e2e/bench/replica-forwarding-bench.ts, not here.
 */

let started: ReplicaTrio | undefined;
let ns: string;
function trio(): ReplicaTrio {
  if (started === undefined) throw new Error('the replicas did not start (see beforeAll)');
  return started;
}
const replica = (id: 'fwd-a' | 'fwd-b' | 'fwd-c'): TrioReplica => trio().replica(id);
const headers = (): Record<string, string> => trio().headers();
const openExec: ReplicaTrio['openExec'] = (via, body) => trio().openExec(via, body);

beforeAll(async () => {
  started = await startReplicaTrio(inject('cluster').binDir);
  ns = started.ns;
}, 240_000);

afterAll(async () => {
  await started?.stop();
}, 120_000);

describe('replica-to-replica forwarding (agent tunnel on B, browser on A)', () => {
  it('lists pods of the agent cluster through A and C (forwarded to B); a direct cluster stays local', async () => {
    for (const via of [replica('fwd-a'), replica('fwd-c')]) {
      const res = await fetch(`${via.base}/api/clusters/edge/pods?namespace=${ns}`, { headers: headers() });
      expect(res.status, await res.clone().text()).toBe(200);
      const { pods } = (await res.json()) as { pods: { name: string }[] };
      expect(pods.map((p) => p.name)).toEqual(['app']);
      const direct = await fetch(`${via.base}/api/clusters/lab/pods?namespace=${ns}`, { headers: headers() });
      expect(direct.status).toBe(200);
    }
    // Signed out: the owner's own check answers, through the forward.
    const anonymous = await fetch(`${replica('fwd-a').base}/api/clusters/edge/pods?namespace=${ns}`);
    expect(anonymous.status).toBe(401);
  });

  it('a pod exec opened through A runs on B: keystrokes echo, 8 MiB of output arrives whole', async () => {
    const [a, b] = [replica('fwd-a'), replica('fwd-b')];
    const { sessionId, client } = await openExec(a, {});
    expect(b.app.get(TerminalSessions).get(sessionId)).toBeDefined();
    expect(a.app.get(TerminalSessions).get(sessionId)).toBeUndefined();
    expect(a.app.get(ReplicaRouter).forwardedSockets).toBe(1);
    client.type('echo "over $((40 + 2)) replicas"\n');
    await client.waitText('the echo through A and B', /over 42 replicas/);
    client.type('exit\n');
    await client.closed;
    expect(client.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });

    const lines = 1_200_000; // seq 1 1200000: 8,088,895 bytes
    const bulk = await openExec(a, { tty: false, command: ['seq', '1', String(lines)] });
    await bulk.client.closed;
    expect(bulk.client.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    const expected = Array.from({ length: lines }, (_, i) => `${i + 1}\n`).join('');
    const got = bulk.client.output();
    expect(got.length).toBe(Buffer.byteLength(expected));
    expect(createHash('sha256').update(got).digest('hex')).toBe(
      createHash('sha256').update(expected).digest('hex'),
    );
    await until(
      'A cleaned up its relayed sockets',
      () => a.app.get(ReplicaRouter).forwardedSockets === 0,
      5_000,
    );
  }, 120_000);

  it("after A's side of the browser socket is cut, the browser resumes through C: no byte lost or duplicated", async () => {
    const [a, c] = [replica('fwd-a'), replica('fwd-c')];
    const total = 300_000;
    const { sessionId, client } = await openExec(a, {
      tty: false,
      command: ['sh', '-c', `seq 1 ${total}; sleep 1`],
    });
    await until('some output', () => client.bytes > 100_000, 30_000);
    // Cut A's side: the browser-facing socket A relays (not a goodbye from the browser).
    expect(a.app.get(ReplicaRouter).cutForwardedSockets()).toBe(1);
    await client.closed;
    const received = client.bytes;
    await until('A holds no relayed socket', () => a.app.get(ReplicaRouter).forwardedSockets === 0, 5_000);
    const again = new TerminalClient(
      `${c.ws}/api/sessions/${sessionId}/attach?received=${received}`,
      headers(),
    );
    await again.opened;
    await again.closed;
    expect(again.frames[0]).toMatchObject({ type: 'hello', sessionId, resumed: true });
    expect(again.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    const all = Buffer.concat([client.output().subarray(0, received), again.output()]);
    const expected = Array.from({ length: total }, (_, i) => `${i + 1}\n`).join('');
    expect(all.length).toBe(Buffer.byteLength(expected));
    expect(createHash('sha256').update(all).digest('hex')).toBe(
      createHash('sha256').update(expected).digest('hex'),
    );
  }, 120_000);

  it('a cluster shell opened through A runs on B: keystrokes echo, 8 MiB of output arrives whole', async () => {
    const [a, b] = [replica('fwd-a'), replica('fwd-b')];
    const res = await fetch(`${a.base}/api/clusters/edge/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers() },
      body: '{}',
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${a.ws}${socketPath}`, headers());
    await client.opened;
    client.type('echo "shell over $((40 + 2)) replicas"\n');
    await client.waitText('the shell through A and B', /shell over 42 replicas/, 90_000);
    expect(b.app.get(TerminalSessions).get(sessionId)).toBeDefined();
    expect(a.app.get(TerminalSessions).get(sessionId)).toBeUndefined();
    // Bulk through the TTY, without its echo and CR/LF translation; prefixed lines the command
    // line itself cannot contain.
    const lines = 1_100_000; // "L1\n".."L1100000\n": 8,788,895 bytes
    client.type(`stty -echo -onlcr; seq 1 ${lines} | sed 's/^/L/'; echo "END-$((40 + 2))"\n`);
    await client.waitText('the bulk output', /END-42/, 90_000);
    const text = client.text();
    const from = text.indexOf('L1\nL2\n');
    const to = text.indexOf('END-42');
    const expected = Array.from({ length: lines }, (_, i) => `L${i + 1}\n`).join('');
    const got = Buffer.from(text.slice(from, to));
    let at = 0;
    while (at < expected.length && expected[at] === text[from + at]) at++;
    expect(
      got.length,
      `first difference at ${at}: ${JSON.stringify(text.slice(from + at - 40, from + at + 400))}`,
    ).toBe(Buffer.byteLength(expected));
    expect(createHash('sha256').update(got).digest('hex')).toBe(
      createHash('sha256').update(expected).digest('hex'),
    );
    client.type('exit\n');
    await client.closed;
  }, 180_000);

  it('the sessions API of a session held by B answers through C (DELETE ends it on B)', async () => {
    const [a, b, c] = [replica('fwd-a'), replica('fwd-b'), replica('fwd-c')];
    const { sessionId, client } = await openExec(a, {});
    const res = await fetch(`${c.base}/api/sessions/${sessionId}`, { method: 'DELETE', headers: headers() });
    expect(res.status, await res.clone().text()).toBeLessThan(300);
    await client.closed;
    await until(
      'the session ended on B',
      () => b.app.get(TerminalSessions).get(sessionId) === undefined,
      10_000,
    );
  }, 60_000);
});

describe('replica signatures and failures', () => {
  const podsPath = (): string => `/api/clusters/edge/pods?namespace=${ns}`;

  it('the owner refuses a forged, malformed or stale signature with 403 and accepts a genuine one', async () => {
    const b = replica('fwd-b');
    const path = podsPath();
    const cases: [string, string][] = [
      ['forged', signForward('another-secret-that-is-32-chars-long!', 'fwd-a', 'GET', path)],
      ['malformed', ''],
      ['malformed', 'v1;fwd-a;not-a-time;abc'],
      ['expired', signForward(SECRET, 'fwd-a', 'GET', path, Date.now() - 31_000)],
      ['forged', signForward(SECRET, 'fwd-a', 'GET', `${path}&other=1`)],
    ];
    for (const [reason, value] of cases) {
      const res = await fetch(`${b.base}${path}`, { headers: { ...headers(), [REPLICA_HEADER]: value } });
      expect(res.status, reason).toBe(403);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ error: 'E_FORBIDDEN', reason: 'replica_signature' });
      expect(String(body['message'])).toContain(reason);
      expect(String(body['message'])).toMatch(/PERISCOPE_REPLICA_SECRET/);
    }
    // A forged upgrade as well.
    const ws = new TerminalClient(`${b.ws}/api/clusters/edge/pods/${ns}/app/exec?ticket=x`, {
      ...headers(),
      [REPLICA_HEADER]: signForward('another-secret-that-is-32-chars-long!', 'fwd-a', 'GET', '/x'),
    });
    await expect(ws.opened).rejects.toThrow(/HTTP 403/);
    const good = await fetch(`${b.base}${path}`, {
      headers: { ...headers(), [REPLICA_HEADER]: signForward(SECRET, 'fwd-a', 'GET', path) },
    });
    expect(good.status).toBe(200);
  });

  it('a verified forwarded request that lands on a replica without the tunnel is not forwarded again (503 replica_loop)', async () => {
    const a = replica('fwd-a');
    const path = podsPath();
    const res = await fetch(`${a.base}${path}`, {
      headers: { ...headers(), [REPLICA_HEADER]: signForward(SECRET, 'fwd-c', 'GET', path) },
    });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'E_UNAVAILABLE', reason: 'replica_loop' });
  });

  it('an owner that cannot be reached or has no address: 503 replica_unreachable saying what is going on', async () => {
    const a = replica('fwd-a');
    // A replica `gone` "holds" cluster ghost's tunnel; first its address is a closed port, then it has none.
    const closed: Server = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) =>
      closed.close(() => {
        r();
      }),
    );
    await trio().store.set(`${PREFIX}own:agent:ghost`, 'gone', 'PX', 30_000);
    await trio().store.set(`${PREFIX}replica:gone`, `http://127.0.0.1:${port}`, 'PX', 30_000);
    const started = Date.now();
    const res = await fetch(`${a.base}/api/clusters/ghost/pods?namespace=${ns}`, { headers: headers() });
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(res.status).toBe(503);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ error: 'E_UNAVAILABLE', reason: 'replica_unreachable' });
    expect(String(body['message'])).toMatch(
      /cluster ghost is held by replica gone, which cannot be reached .*retry/,
    );
    const ws = new TerminalClient(`${a.ws}/api/clusters/ghost/pods/${ns}/app/exec?ticket=x`, headers());
    await expect(ws.opened).rejects.toThrow(/HTTP 503/);
    await trio().store.del(`${PREFIX}replica:gone`);
    const none = await fetch(`${a.base}/api/clusters/ghost/pods?namespace=${ns}`, { headers: headers() });
    expect(none.status).toBe(503);
    expect(String(((await none.json()) as Record<string, unknown>)['message'])).toMatch(
      /published no address/,
    );
    await trio().store.del(`${PREFIX}own:agent:ghost`);
  });
});
